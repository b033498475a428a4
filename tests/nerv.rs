//! The `nerv` video codec end to end: fitting, real bytes, decoding, seeking, writers, the
//! binaries, and an interrupted transcode.

mod common;

use std::path::Path;
use std::process::Command;

use image::RgbImage;
use ncodec::container::Container;
use ncodec::nerv::{self, FitOptions, NervConfig};
use ncodec::video::Video;

/// A smooth scene with a bright square sliding right, in RGB.
fn scene(w: u32, h: u32, n: usize) -> Vec<RgbImage> {
    (0..n)
        .map(|t| {
            RgbImage::from_fn(w, h, |x, y| {
                let inside = x >= 4 + 2 * t as u32 && x < 14 + 2 * t as u32 && (6..16).contains(&y);
                if inside { image::Rgb([230, 200, 60]) } else { image::Rgb([(30 + x * 150 / w) as u8, (60 + y * 120 / h) as u8, 120]) }
            })
        })
        .collect()
}

fn small_options(group: usize, warm: bool) -> FitOptions {
    FitOptions {
        config: NervConfig::with_c0(16, 2, 4, 24, 1.4),
        group,
        epochs: 150,
        warm_epochs: 60,
        batch: 8,
        lr: 5e-3,
        warm_lr_scale: 1.0,
        weight_bits: 8,
        embed_bits: 8,
        qat_fraction: 0.2,
        warm_start: warm,
        seed: 3,
    }
}

fn mean_frame_psnr(video: &Video) -> f64 {
    // What a decoder that only knows the mean colour would get: the bar to clear.
    let frames: Vec<RgbImage> = (0..video.frames.len()).map(|i| video.rgb(i)).collect();
    let n = frames.len() as f64 * (video.width * video.height) as f64;
    let mean: Vec<f64> = (0..3).map(|c| frames.iter().flat_map(|f| f.pixels().map(move |p| p.0[c] as f64)).sum::<f64>() / n).collect();
    let flat: Vec<RgbImage> = frames.iter().map(|f| RgbImage::from_pixel(f.width(), f.height(), image::Rgb([mean[0] as u8, mean[1] as u8, mean[2] as u8]))).collect();
    ncodec::video::quality_rgb(video, &flat).unwrap().0
}

#[test]
fn fit_encode_decode_seek_through_real_bytes() {
    let device = burn::prelude::Device::flex();
    let video = Video::from_rgb(&scene(40, 24, 6), (25, 1)).unwrap();
    let (bytes, reports) = nerv::encode(&video, 2, &small_options(3, true), &device, &mut |_| {}).unwrap();
    assert_eq!(reports.len(), 2);
    let c = Container::parse(&bytes).unwrap();
    assert_eq!(c.sections.len(), 3);
    assert_eq!(reports.iter().map(|r| r.bytes).sum::<usize>() + c.sections[0].len(), c.sections.iter().map(Vec::len).sum::<usize>());

    let (info, frames) = nerv::decode(&c, None, &device).unwrap();
    assert_eq!((info.width, info.height, info.frames, frames.len()), (40, 24, 6, 6));
    let (psnr, ..) = ncodec::video::quality_rgb(&video, &frames).unwrap();
    // The encoder's per-group PSNR is measured on what the decoder produces.
    let reported = reports.iter().map(|r| r.psnr * r.frames as f64).sum::<f64>() / 6.0;
    assert!((psnr - reported).abs() < 1e-6, "decoded {psnr} vs reported {reported}");
    let floor = mean_frame_psnr(&video);
    assert!(psnr > floor + 8.0, "fitted {psnr:.2} dB, mean-colour frames {floor:.2} dB");

    // Decoding is repeatable, and seeking gives the same frames as decoding everything.
    assert_eq!(nerv::decode(&c, None, &device).unwrap().1, frames);
    let (_, tail) = nerv::decode(&c, Some(4..6), &device).unwrap();
    assert_eq!(tail, frames[4..6].to_vec());
    assert!(nerv::decode(&c, Some(9..12), &device).is_err());
}

#[test]
fn warm_start_reaches_the_first_groups_quality_sooner() {
    // Group 1 fitted from group 0's network needs fewer epochs to reach a PSNR than from
    // scratch (NIRVANA's point); measured on the fit curves of both runs.
    let device = burn::prelude::Device::flex();
    let video = Video::from_rgb(&scene(40, 24, 6), (25, 1)).unwrap();
    let mut warm_opts = small_options(3, true);
    warm_opts.warm_epochs = 150;
    let (_, warm) = nerv::encode(&video, 2, &warm_opts, &device, &mut |_| {}).unwrap();
    let (_, cold) = nerv::encode(&video, 2, &small_options(3, false), &device, &mut |_| {}).unwrap();
    // The bar: what the fit from scratch reaches after 40 epochs.
    let target = cold[1].curve[39].2;
    let reach = |curve: &[(usize, f64, f64)]| curve.iter().find(|p| p.2 >= target).map_or(usize::MAX, |p| p.0);
    let (w, c) = (reach(&warm[1].curve), reach(&cold[1].curve));
    let show = |curve: &[(usize, f64, f64)]| curve.iter().step_by(10).map(|p| format!("{:.1}", p.2)).collect::<Vec<_>>().join(" ");
    assert!(w * 3 <= c, "warm start reached {target:.2} dB after {w} epochs, cold after {c}\nwarm {}\ncold {}", show(&warm[1].curve), show(&cold[1].curve));
}

#[test]
fn corrupt_and_truncated_streams_are_errors_not_panics() {
    let device = burn::prelude::Device::flex();
    let video = Video::from_rgb(&scene(40, 24, 2), (25, 1)).unwrap();
    let mut opts = small_options(1, true);
    opts.epochs = 2;
    opts.warm_epochs = 1;
    let (bytes, _) = nerv::encode(&video, 1, &opts, &device, &mut |_| {}).unwrap();
    for n in (0..bytes.len()).step_by(7) {
        assert!(Container::parse(&bytes[..n]).is_err());
    }
    // Past the checksum: flip bits inside the sections and re-seal them.
    let c = Container::parse(&bytes).unwrap();
    for s in 0..c.sections.len() {
        for bit in (0..c.sections[s].len() * 8).step_by(97) {
            let mut bad = c.clone();
            bad.sections[s][bit / 8] ^= 1 << (bit % 8);
            let _ = nerv::decode(&bad, None, &device);
        }
    }
    // An image codec refuses a video stream, and the reverse.
    assert!(ncodec::decode_image(&bytes).is_err());
}

#[test]
fn writers_round_trip_y4m_and_png_folders() {
    let dir = common::tempdir();
    let frames = scene(34, 18, 3);
    let y4m = dir.path().join("out.y4m");
    ncodec::video::write::write_video(&y4m, &frames, (30, 1), &Default::default()).unwrap();
    let back = Video::open(&y4m, None, None).unwrap();
    assert_eq!((back.width, back.height, back.fps, back.frames.len()), (34, 18, (30, 1), 3));
    let (psnr, ..) = ncodec::video::quality_rgb(&back, &frames).unwrap();
    assert!(psnr > 30.0, "RGB → I420 → RGB lost too much: {psnr:.2} dB");

    let pngs = dir.path().join("frames");
    ncodec::video::write::write_video(&pngs, &frames, (30, 1), &Default::default()).unwrap();
    let first = image::open(pngs.join("frame_000001.png")).unwrap().to_rgb8();
    assert_eq!(first, frames[0]);
    // A non-empty folder is never overwritten file by file.
    assert!(ncodec::video::write::write_video(&pngs, &frames, (30, 1), &Default::default()).is_err());
    assert!(ncodec::video::write::write_video(&dir.path().join("x.avi"), &frames, (30, 1), &Default::default()).is_err());
    // Only the two outputs: no temporary files left.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

fn bin(name: &str) -> Command {
    Command::new(match name {
        "ncenc" => env!("CARGO_BIN_EXE_ncenc"),
        "ncdec" => env!("CARGO_BIN_EXE_ncdec"),
        _ => env!("CARGO_BIN_EXE_ncodec"),
    })
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn binaries_encode_decode_and_transcode_video() {
    let dir = common::tempdir();
    let d = dir.path();
    let src = d.join("in.y4m");
    std::fs::write(&src, Video::from_rgb(&scene(70, 40, 3), (25, 1)).unwrap().to_y4m()).unwrap();
    let fast = ["--epochs", "3", "--warm-epochs", "2", "--group", "2"];

    let out = bin("ncenc").args([s(&src), "-o", s(&d.join("a.ncod")), "-q", "1"]).args(fast).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let msg = String::from_utf8_lossy(&out.stderr);
    let size = std::fs::metadata(d.join("a.ncod")).unwrap().len();
    assert!(msg.contains(&format!("{size} bytes")) && msg.contains(&format!("{:.4} bpp", size as f64 * 8.0 / (70.0 * 40.0 * 3.0))), "{msg}");

    for target in ["b.y4m", "b.mp4", "b.mkv", "frames/"] {
        let out = bin("ncdec").args([s(&d.join("a.ncod")), "-o", s(&d.join(target))]).output().unwrap();
        assert!(out.status.success(), "{target}: {}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(Video::open(&d.join("b.y4m"), None, None).unwrap().frames.len(), 3);
    let mp4 = Video::open(&d.join("b.mp4"), None, None).unwrap();
    assert_eq!((mp4.width, mp4.height, mp4.frames.len()), (70, 40, 3));
    assert_eq!(std::fs::read_dir(d.join("frames")).unwrap().count(), 3);
    let one = bin("ncdec").args([s(&d.join("a.ncod")), "-o", s(&d.join("c.y4m")), "--start", "2", "--frames", "1"]).output().unwrap();
    assert!(one.status.success());
    assert_eq!(Video::open(&d.join("c.y4m"), None, None).unwrap().frames.len(), 1);

    let out = bin("ncodec").args(["transcode", s(&src), s(&d.join("t.mp4")), "--lossless", "-q", "1"]).args(fast).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("RGB PSNR"));

    // Bad inputs: a clear error, a failure status, no output.
    std::fs::write(d.join("bad.y4m"), b"YUV4MPEG2 W10 H10\nFRAME\nshort").unwrap();
    std::fs::write(d.join("bad.mp4"), b"definitely not an mp4 file").unwrap();
    for bad in ["bad.y4m", "bad.mp4", "missing.mkv"] {
        let out = bin("ncenc").args([s(&d.join(bad)), "-o", s(&d.join("x.ncod"))]).args(fast).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{bad}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("error:"), "{bad}");
        assert!(!d.join("x.ncod").exists());
    }
    let out = bin("ncenc").args([s(&src), "-o", s(&d.join("x.ncod")), "--codec", "mlic"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let out = bin("ncdec").args([s(&d.join("a.ncod")), "-o", s(&d.join("x.gif"))]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!d.join("x.gif").exists());
}

#[test]
fn killed_transcode_leaves_no_output_and_an_intact_input() {
    let dir = common::tempdir();
    let d = dir.path();
    let src = d.join("in.y4m");
    let original = Video::from_rgb(&scene(70, 40, 4), (25, 1)).unwrap().to_y4m();
    std::fs::write(&src, &original).unwrap();
    let transcode = |target: &str| {
        let mut c = bin("ncodec");
        c.args(["transcode", s(&src), s(&d.join(target)), "--epochs", "100000", "--stream", s(&d.join("out.ncod"))]);
        c
    };
    let encode = || {
        let mut c = bin("ncenc");
        c.args([s(&src), "-o", s(&d.join("out.ncod")), "--epochs", "100000"]);
        c
    };
    for (target, mut cmd) in [("out.mp4", transcode("out.mp4")), ("out.y4m", transcode("out.y4m")), ("outdir/", transcode("outdir/")), ("out.ncod", encode())] {
        let mut child = cmd.stderr(std::process::Stdio::null()).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1500));
        assert!(child.try_wait().unwrap().is_none(), "transcode ended before it was killed");
        child.kill().unwrap();
        child.wait().unwrap();
        let left: Vec<String> = std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(left, vec!["in.y4m".to_string()], "after killing the run writing {target}");
        assert_eq!(std::fs::read(&src).unwrap(), original);
    }
}
