//! The `stem` latent video codec on tiny models and generated video: training from an mlic
//! model, real streams, bit-exact temporal references, seeking, damaged frames, the binaries.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use image::RgbImage;
use ncodec::container::Container;
use ncodec::models::{Architecture, ModelConfig};
use ncodec::stem;
use ncodec::train::{TrainOptions, load_checkpoint, train};
use ncodec::video::Video;

const LAMBDAS: [f64; 2] = [0.003, 0.03];

fn config(architecture: Architecture) -> ModelConfig {
    ModelConfig { architecture, n: 8, m: 20, lambdas: LAMBDAS.to_vec(), vq: None, transforms: Default::default() }
}

/// A tiny stem model (random, its P-frame model widened from its intra one), saved.
fn tiny_stem(dir: &Path) -> PathBuf {
    let device = ncodec::backend::device();
    device.seed(11);
    let cfg = config(Architecture::Stem);
    let model = cfg.init(&device).with_inter_from_intra();
    let path = dir.join("stem.ncw");
    ncodec::weights::save(&path, &cfg, &model, &model.export_tables(), ncodec::weights::Precision::F32).unwrap();
    path
}

/// A camera panning over a generated picture: `n` frames of 72x56, 3 px per frame.
fn panning(n: usize) -> Video {
    let big = common::test_image(200, 120, 4);
    let frames: Vec<RgbImage> = (0..n).map(|t| image::imageops::crop_imm(&big, 3 * t as u32, t as u32, 72, 56).to_image()).collect();
    Video::from_rgb(&frames, (25, 1)).unwrap()
}

/// Decoded frames with their indices, and the damage reported.
type Decoded = (Vec<(usize, RgbImage)>, Vec<stem::Damage>);

fn decode_all(codec: &ncodec::Codec, bytes: &[u8], range: Option<std::ops::Range<usize>>, conceal: bool) -> ncodec::Result<Decoded> {
    let (c, _) = Container::parse_lenient(bytes)?;
    let mut frames = vec![];
    let (_, damage) = stem::decode(codec, &c, range, conceal, &mut |k, img| {
        frames.push((k, img.clone()));
        Ok(())
    })?;
    Ok((frames, damage))
}

#[test]
fn stem_trains_from_an_mlic_model_and_resumes() {
    let dir = common::tempdir();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for i in 0..3 {
        common::test_image(160, 128, i).save(data.join(format!("{i}.png"))).unwrap();
    }
    let device = ncodec::backend::device();
    device.seed(5);
    let mlic_cfg = config(Architecture::MultiReference);
    let mlic = mlic_cfg.init(&device);
    let mlic_path = dir.path().join("mlic.ncw");
    ncodec::weights::save(&mlic_path, &mlic_cfg, &mlic, &mlic.export_tables(), ncodec::weights::Precision::F32).unwrap();

    let ckpt = dir.path().join("ckpt");
    let mut opts = TrainOptions { init_from: None, ..common::quick_train_options(config(Architecture::Stem), data, ckpt.clone()) };
    let err = train(&opts).unwrap_err().to_string();
    assert!(err.contains("--init-from"), "{err}");
    opts.init_from = Some(mlic_path.clone());
    assert_eq!(train(&opts).unwrap().step, 3);
    for f in ["sequences.bin", "model.bpk", "state.json", "log.csv"] {
        assert!(ckpt.join(f).exists(), "{f} written");
    }
    let log = std::fs::read_to_string(ckpt.join("log.csv")).unwrap();
    assert!(log.starts_with("step,seconds,bpp_y_p,bpp_y_intra"), "{log}");
    opts.steps = 4;
    opts.resume = true;
    assert_eq!(train(&opts).unwrap().step, 4, "resume continues");

    let (state, model) = load_checkpoint(&ckpt, &device).unwrap();
    assert_eq!(model.analysis_digest(), mlic.analysis_digest(), "the transforms stay the mlic model's");
    let out = dir.path().join("stem.ncw");
    ncodec::train::export(&ckpt, &model, &state, &out, ncodec::weights::Precision::F32).unwrap();
    let codec = ncodec::Codec::from_weights("stem", &out).unwrap();
    // Training moved only the P-frame model: stem's intra frames are the mlic model's streams.
    let mlic_codec = ncodec::Codec::from_weights("stem", &mlic_path).unwrap();
    let img = common::test_image(80, 64, 7);
    for q in 1..=2 {
        let sections = |c: &ncodec::Codec| Container::parse(&c.encode(&img, q).unwrap()).unwrap().sections;
        assert_eq!(sections(&codec), sections(&mlic_codec), "q{q}: intra coding unchanged by training");
    }
    assert!(codec.is_video());
    let video = panning(3);
    let bytes = stem::encode(&codec, &video, 2, 0, &mut |_, _| {}).unwrap();
    assert_eq!(decode_all(&codec, &bytes, None, false).unwrap().0.len(), 3);

    // An mlic model of other λs cannot start this stem model.
    let other = ModelConfig { lambdas: vec![0.01], ..config(Architecture::MultiReference) };
    let other_path = dir.path().join("other.ncw");
    let m = other.init(&device);
    ncodec::weights::save(&other_path, &other, &m, &m.export_tables(), ncodec::weights::Precision::F32).unwrap();
    let opts = TrainOptions { init_from: Some(other_path), ..common::quick_train_options(config(Architecture::Stem), dir.path().join("data"), dir.path().join("ckpt2")) };
    assert!(train(&opts).unwrap_err().to_string().contains("same N, M, λs and transforms"));

    // Nor can an mlic model with residual transforms start a GDN stem model: the error says
    // which --transforms the file needs.
    let residual = ModelConfig { transforms: ncodec::models::Transforms::GdnResidual, ..config(Architecture::MultiReference) };
    let residual_path = dir.path().join("residual.ncw");
    let m = residual.init(&device);
    ncodec::weights::save(&residual_path, &residual, &m, &m.export_tables(), ncodec::weights::Precision::F32).unwrap();
    let opts = TrainOptions { init_from: Some(residual_path), ..common::quick_train_options(config(Architecture::Stem), dir.path().join("data"), dir.path().join("ckpt3")) };
    assert!(train(&opts).unwrap_err().to_string().contains("--transforms gdn-residual"));
}

#[test]
fn stem_streams_decode_bit_exactly_seek_and_conceal_damage() {
    let dir = common::tempdir();
    let codec = ncodec::Codec::from_weights("stem", &tiny_stem(dir.path())).unwrap();
    let video = panning(7);

    // The decoder rebuilds every frame's latent (the next frame's reference) exactly.
    let mut enc_ref: Option<Vec<i32>> = None;
    let mut dec_ref: Option<Vec<i32>> = None;
    for k in 0..4 {
        let (parts, y_enc) = codec.encode_frame(&video.rgb(k), 2, enc_ref.as_deref()).unwrap();
        let (img, y_dec) = codec.decode_frame(&parts, 2, (72, 56), dec_ref.as_deref(), true).unwrap();
        assert_eq!(y_dec, y_enc, "frame {k}: decoded latent == encoded latent");
        assert_eq!(img.unwrap().dimensions(), (72, 56));
        if k == 2 {
            // A P-frame really depends on its reference.
            let zero = vec![0; y_enc.len()];
            if let Ok((_, wrong)) = codec.decode_frame(&parts, 2, (72, 56), Some(&zero), false) {
                assert_ne!(wrong, y_enc, "decoding against another reference gives another latent");
            }
        }
        (enc_ref, dec_ref) = (Some(y_enc), Some(y_dec));
    }

    let bytes = stem::encode(&codec, &video, 2, 3, &mut |_, _| {}).unwrap();
    assert_eq!(bytes, stem::encode(&codec, &video, 2, 3, &mut |_, _| {}).unwrap(), "encoding is deterministic");
    let c = Container::parse(&bytes).unwrap();
    let info = stem::stream_info(&c).unwrap();
    assert_eq!((info.frames, info.gop, info.fps), (7, 3, (25, 1)));
    let sizes = stem::frame_sizes(&c).unwrap();
    assert_eq!(sizes.iter().filter(|s| s.1).map(|s| s.0).collect::<Vec<_>>(), vec![0, 3, 6]);
    let (all, damage) = decode_all(&codec, &bytes, None, false).unwrap();
    assert!(damage.is_empty());
    assert_eq!(all.iter().map(|f| f.0).collect::<Vec<_>>(), (0..7).collect::<Vec<_>>());
    assert_eq!(all, decode_all(&codec, &bytes, None, false).unwrap().0, "decoding is deterministic");
    let psnr = ncodec::metrics::psnr(&video.rgb(4), &all[4].1);
    assert!(psnr.is_finite() && psnr > 5.0, "a real reconstruction: {psnr}");

    // Seeking: from frame 4 the decoder starts at intra frame 3 and gives the same frames.
    let (part, _) = decode_all(&codec, &bytes, Some(4..6), false).unwrap();
    assert_eq!(part, all[4..6].to_vec());

    // A damaged P-frame (frame 4): strict decoding fails and names the frame; concealment
    // repeats frame 3 for frames 4 and 5, and frame 6 (intra) onwards decodes as before.
    let mut bad = c.clone();
    let last = bad.sections[1 + 4].len() - 1;
    bad.sections[1 + 4][last] ^= 0x40;
    let bad_bytes = bad.to_bytes();
    assert!(Container::parse(&bad_bytes).is_ok(), "the container's own checksum is recomputed by to_bytes");
    let mut corrupt = bytes.clone();
    let at = bytes.len() - c.sections[6].len() - c.sections[7].len() - 1;
    corrupt[at] ^= 0x40;
    assert!(Container::parse(&corrupt).is_err(), "flipped in place, the payload checksum catches it");
    for damaged in [bad_bytes, corrupt] {
        let err = decode_all(&codec, &damaged, None, false).unwrap_err().to_string();
        assert!(err.contains("frame 4"), "{err}");
        let (frames, damage) = decode_all(&codec, &damaged, None, true).unwrap();
        assert_eq!(damage.len(), 1);
        assert_eq!(damage[0].frames, 4..6);
        assert_eq!(frames.len(), 7);
        assert_eq!(frames[..4], all[..4]);
        assert_eq!(frames[4].1, all[3].1, "concealed with the last good frame");
        assert_eq!(frames[5].1, all[3].1);
        assert_eq!(frames[6], all[6], "resumes at the next intra frame");
    }

    // Structure damage is an error, never a panic: every truncation.
    for n in (0..bytes.len()).step_by(7) {
        assert!(decode_all(&codec, &bytes[..n], None, true).is_err(), "truncated at {n}");
    }
    // Streams of other weights are refused.
    let other = ncodec::Codec::from_weights("stem", &common::tiny_weights(dir.path(), Architecture::MultiReference, 2)).unwrap();
    assert!(decode_all(&other, &bytes, None, false).is_err());
}

#[test]
fn stem_binaries_encode_decode_and_conceal() {
    let dir = common::tempdir();
    let weights = tiny_stem(dir.path());
    let w = weights.to_str().unwrap();
    let src = dir.path().join("in.y4m");
    std::fs::write(&src, panning(7).to_y4m()).unwrap();
    let stream = dir.path().join("clip.ncod");
    let (s, st) = (src.to_str().unwrap(), stream.to_str().unwrap());
    let enc = common::run_bin("ncenc", &[s, "-o", st, "--codec", "stem", "--weights", w, "-q", "2", "--gop", "3"]);
    assert!(enc.status.success(), "{}", String::from_utf8_lossy(&enc.stderr));
    assert!(String::from_utf8_lossy(&enc.stderr).contains("stem q2 gop 3"));
    // The registry reads the family from a weight file alone: the same stream without --codec.
    let by_weights = dir.path().join("by-weights.ncod");
    let enc = common::run_bin("ncenc", &[s, "-o", by_weights.to_str().unwrap(), "--weights", w, "-q", "2", "--gop", "3", "--quiet"]);
    assert!(enc.status.success(), "{}", String::from_utf8_lossy(&enc.stderr));
    assert_eq!(std::fs::read(&by_weights).unwrap(), std::fs::read(&stream).unwrap());
    // nerv has no weights to take.
    let enc = common::run_bin("ncenc", &[s, "-o", by_weights.to_str().unwrap(), "--codec", "nerv", "--weights", w]);
    assert!(!enc.status.success() && String::from_utf8_lossy(&enc.stderr).contains("--weights does not apply"));
    let info = common::run_bin("ncodec", &["info", st]);
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(text.contains("7 frames at 25/1 fps, intra period 3") && text.contains("3 intra"), "{text}");

    let out = dir.path().join("out.y4m");
    let o = out.to_str().unwrap();
    let dec = common::run_bin("ncdec", &[st, "-o", o, "--weights", w]);
    assert!(dec.status.success(), "{}", String::from_utf8_lossy(&dec.stderr));
    assert_eq!(Video::open(&out, None, None).unwrap().frames.len(), 7);
    // Every output kind streams into place with the usual permissions (temporary files are 0600).
    let (mp4, pngs) = (dir.path().join("out.mp4"), dir.path().join("frames"));
    for o in [&mp4, &pngs] {
        let dec = common::run_bin("ncdec", &[st, "-o", o.to_str().unwrap(), "--weights", w, "--quiet"]);
        assert!(dec.status.success(), "{}", String::from_utf8_lossy(&dec.stderr));
    }
    assert_eq!(Video::open(&mp4, None, None).unwrap().frames.len(), 7);
    assert_eq!(std::fs::read_dir(&pngs).unwrap().count(), 7);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&out), mode(&mp4), mode(&pngs)), (0o644, 0o644, 0o755));
    }
    let dec = common::run_bin("ncdec", &[st, "-o", dir.path().join("part.y4m").to_str().unwrap(), "--weights", w, "--start", "4", "--frames", "2"]);
    assert!(dec.status.success());
    assert_eq!(Video::open(&dir.path().join("part.y4m"), None, None).unwrap().frames.len(), 2);

    // Damage frame 4 in place: strict decoding fails with no output; --conceal reports it.
    let mut bytes = std::fs::read(&stream).unwrap();
    let c = Container::parse(&bytes).unwrap();
    let at = bytes.len() - c.sections[6].len() - c.sections[7].len() - 1;
    bytes[at] ^= 1;
    let bad = dir.path().join("bad.ncod");
    std::fs::write(&bad, &bytes).unwrap();
    let b = bad.to_str().unwrap();
    let bad_out = dir.path().join("bad.y4m");
    let dec = common::run_bin("ncdec", &[b, "-o", bad_out.to_str().unwrap(), "--weights", w]);
    assert!(!dec.status.success());
    let err = String::from_utf8_lossy(&dec.stderr);
    assert!(err.contains("frame 4") && !err.contains("panicked"), "{err}");
    assert!(!bad_out.exists(), "no partial output");
    let dec = common::run_bin("ncdec", &[b, "-o", bad_out.to_str().unwrap(), "--weights", w, "--conceal"]);
    assert!(dec.status.success(), "{}", String::from_utf8_lossy(&dec.stderr));
    let err = String::from_utf8_lossy(&dec.stderr);
    assert!(err.contains("frames 4..=5 damaged") && err.contains("resumed at intra frame 6"), "{err}");
    assert_eq!(Video::open(&bad_out, None, None).unwrap().frames.len(), 7);
    assert!(String::from_utf8_lossy(&common::run_bin("ncodec", &["info", b]).stdout).contains("MISMATCH"));

    // An image codec is not a video codec.
    let e = common::run_bin("ncenc", &[s, "-o", st, "--codec", "mlic"]);
    assert!(!e.status.success());
}

/// `ncodec transcode --via stem` (shipped weights): the output it writes is what `ncdec` makes
/// of the stream it keeps, and its report names the codec and intra period.
#[test]
fn transcode_via_stem_writes_what_ncdec_decodes() {
    let dir = common::tempdir();
    let d = dir.path();
    let src = d.join("in.y4m");
    std::fs::write(&src, panning(4).to_y4m()).unwrap();
    let p = |name: &str| d.join(name).to_str().unwrap().to_string();
    let out = common::run_bin("ncodec", &["transcode", &p("in.y4m"), &p("out.y4m"), "--via", "stem", "-q", "2", "--gop", "3", "--stream", &p("kept.ncod"), "--backend", "cpu"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("4 frames via stem q2 gop 3") && err.contains("RGB PSNR"), "{err}");
    let dec = common::run_bin("ncdec", &[&p("kept.ncod"), "-o", &p("dec.y4m"), "--backend", "cpu", "--quiet"]);
    assert!(dec.status.success(), "{}", String::from_utf8_lossy(&dec.stderr));
    assert_eq!(std::fs::read(d.join("out.y4m")).unwrap(), std::fs::read(d.join("dec.y4m")).unwrap());
    // An image codec is refused before any work, and leaves nothing behind.
    let out = common::run_bin("ncodec", &["transcode", &p("in.y4m"), &p("bad.y4m"), "--via", "mlic"]);
    assert!(!out.status.success() && !d.join("bad.y4m").exists());
}

/// Killing `ncdec` at any moment of a streaming decode leaves either nothing or the whole
/// output, never a partial file or a temporary one (the output is an unnamed file until it
/// is complete), and the input untouched.
#[test]
fn killed_stem_decode_leaves_nothing_partial() {
    let dir = common::tempdir();
    let weights = tiny_stem(dir.path());
    let big = common::test_image(400, 300, 9);
    let frames: Vec<RgbImage> = (0..40).map(|t| image::imageops::crop_imm(&big, 2 * t as u32, t as u32, 192, 128).to_image()).collect();
    let video = Video::from_rgb(&frames, (25, 1)).unwrap();
    let codec = ncodec::Codec::from_weights("stem", &weights).unwrap();
    let bytes = stem::encode(&codec, &video, 2, 8, &mut |_, _| {}).unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let input = work.join("clip.ncod");
    std::fs::write(&input, &bytes).unwrap();
    let exe = env!("CARGO_BIN_EXE_ncdec");
    for (i, wait_ms) in [30u64, 120, 300, 600].into_iter().enumerate() {
        let out = work.join(format!("out{i}.y4m"));
        let mut child = Command::new(exe).arg(&input).arg("-o").arg(&out).arg("--weights").arg(&weights).arg("--quiet").spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(wait_ms));
        let _ = child.kill();
        child.wait().unwrap();
        let names: Vec<String> = std::fs::read_dir(&work).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert!(names.iter().all(|n| n == "clip.ncod" || n.starts_with("out") && n.ends_with(".y4m")), "left behind: {names:?}");
        if out.exists() {
            assert_eq!(Video::open(&out, None, None).unwrap().frames.len(), 40, "a present output is complete");
        }
        assert_eq!(std::fs::read(&input).unwrap(), bytes, "input untouched");
    }
}
