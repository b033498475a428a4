//! The fuzz targets' entry points (`ncodec::fuzzing`, driven by cargo-fuzz in `fuzz/`) on
//! every committed regression input (`fuzz/regressions/<target>/`: inputs that once crashed
//! or hung, kept forever) and on deterministic mutations of valid seeds, so CI exercises the
//! same code paths without libFuzzer.

use std::path::Path;

use ncodec::fuzzing;

fn run(target: &str, data: &[u8]) {
    match target {
        "container" => fuzzing::container(data),
        "range_coder" => fuzzing::range_coder(data),
        "image_decode" => fuzzing::image_decode(data),
        "nerv_decode" => fuzzing::nerv_decode(data),
        "stem_decode" => fuzzing::stem_decode(data),
        "overfit_decode" => fuzzing::overfit_decode(data),
        "y4m" => fuzzing::y4m(data),
        #[cfg(feature = "ffmpeg")]
        "video_demux" => fuzzing::video_demux(data),
        // Demuxing needs the system FFmpeg; builds without it (the libtorch route's) skip these.
        #[cfg(not(feature = "ffmpeg"))]
        "video_demux" => {}
        "image_input" => fuzzing::image_input(data),
        other => panic!("unknown fuzz target {other}"),
    }
}

#[test]
fn committed_regression_inputs_stay_fixed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut count = 0;
    for dir in std::fs::read_dir(&root).unwrap() {
        let dir = dir.unwrap().path();
        let target = dir.file_name().unwrap().to_string_lossy().into_owned();
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            run(&target, &std::fs::read(&f).unwrap());
            count += 1;
        }
    }
    assert!(count > 0, "no regression inputs under {}", root.display());
}

/// xorshift: reproducible mutations without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(5) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            2 => v.truncate(rng.below(v.len() + 1)),
            3 => {
                let i = rng.below(v.len() + 1);
                v.insert(i, rng.next() as u8);
            }
            _ if !v.is_empty() => {
                // Interesting values in place: 0, 0xff, 0x7f, 0x80.
                let i = rng.below(v.len());
                v[i] = [0, 0xff, 0x7f, 0x80][rng.below(4)];
            }
            _ => {}
        }
    }
    v
}

#[test]
fn mutated_seeds_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut runs = 0;
    for (target, seed) in fuzzing::seeds() {
        run(target, &seed);
        let n = if matches!(target, "nerv_decode" | "image_decode" | "stem_decode") { 60 } else { 400 };
        for _ in 0..n {
            run(target, &mutate(&seed, &mut rng));
            runs += 1;
        }
    }
    assert!(runs > 4000, "{runs}");
}

/// Writes the seeds as starting corpora for cargo-fuzz:
/// `cargo test --release --test fuzz_regressions -- --ignored` (see SECURITY.md).
#[test]
#[ignore]
fn write_seed_corpora() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (i, (target, seed)) in fuzzing::seeds().into_iter().enumerate() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{i}")), seed).unwrap();
    }
}

/// The image and video seeds are inputs the readers accept, so fuzzing starts from the
/// decoders' paths, not from their first "unknown format" check.
#[test]
#[cfg(feature = "ffmpeg")]
fn image_and_video_seeds_are_valid_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let (mut images, mut videos) = (0, 0);
    for (i, (target, seed)) in fuzzing::seeds().into_iter().enumerate() {
        match target {
            "image_input" => {
                let img = ncodec::io::decode_image(&seed).unwrap_or_else(|e| panic!("image seed {i}: {e}"));
                assert_eq!((img.width(), img.height()), (24, 16));
                images += 1;
            }
            "video_demux" => {
                let p = dir.path().join(format!("seed-{i}"));
                std::fs::write(&p, &seed).unwrap();
                let v = ncodec::video::anchors::decode_file(&p, 8).unwrap_or_else(|e| panic!("video seed {i}: {e}"));
                assert_eq!((v.width, v.height, v.frames.len()), (24, 16, 2));
                videos += 1;
            }
            _ => {}
        }
    }
    assert_eq!((images, videos), (6, 3));
}
