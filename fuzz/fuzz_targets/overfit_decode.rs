#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ncodec::fuzzing::overfit_decode(data));
