//! The rate-distortion harness: anchors decode their own bytes faithfully, rates rise with the
//! setting, reports round-trip, and `ncodec bench` writes every output on generated images.

mod common;

use std::process::Command;

use common::{test_image, tiny_weights};
use ncodec::bench::report::{self, Curve, Metric};
use ncodec::bench::{Options, anchors, evaluate, measure};
use ncodec::models::Architecture;

/// A smooth, photo-like image big enough for MS-SSIM (≥ 161 px a side).
fn photo(w: u32, h: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        let (fx, fy) = (x as f64 / w as f64, y as f64 / h as f64);
        let r = 128.0 + 100.0 * (6.0 * fx).sin() * (4.0 * fy).cos();
        let g = 60.0 + 150.0 * fy + 20.0 * (20.0 * fx * fy).sin();
        let b = if x * 2 > w { 200.0 - 80.0 * fx } else { 40.0 + 60.0 * fy };
        image::Rgb([r as u8, g as u8, b as u8])
    })
}

#[test]
fn anchors_roundtrip_with_rising_rate_and_quality() {
    let img = photo(192, 176);
    // A colour-conversion or layout bug in a decoder path costs far more than these margins.
    for (name, min_top_psnr) in [("jpeg", 36.0), ("webp", 36.0), ("avif", 38.0)] {
        let codec = anchors::by_name(name).unwrap();
        let s = codec.settings();
        let (lo, hi) = (s[1], *s.last().unwrap());
        let a = measure(codec.as_ref(), "photo", &img, lo).unwrap();
        let b = measure(codec.as_ref(), "photo", &img, hi).unwrap();
        assert!(a.bytes < b.bytes, "{name}: {} vs {} bytes", a.bytes, b.bytes);
        assert!(a.psnr < b.psnr, "{name}: {} vs {} dB", a.psnr, b.psnr);
        assert!(b.psnr > min_top_psnr, "{name}: top setting only {:.2} dB", b.psnr);
        assert!(b.ms_ssim > 0.98 && b.ms_ssim <= 1.0, "{name}: {}", b.ms_ssim);
        assert!((a.bpp - a.bytes as f64 * 8.0 / (192.0 * 176.0)).abs() < 1e-12);
        // Bytes that are not this format are an error, not a panic.
        assert!(codec.decode(b"definitely not an image").is_err(), "{name}");
    }
    assert!(anchors::by_name("bpg").is_err());
}

#[test]
fn parallel_and_serial_evaluation_agree() {
    let imgs: Vec<(String, image::RgbImage)> = (0..3).map(|i| (format!("{i}.png"), test_image(64, 48, i))).collect();
    let jpeg = anchors::by_name("jpeg").unwrap();
    let par = evaluate(jpeg.as_ref(), &imgs, &[30, 70], Options { timing: false }, &|_| {}).unwrap();
    let ser = evaluate(jpeg.as_ref(), &imgs, &[30, 70], Options { timing: true }, &|_| {}).unwrap();
    assert_eq!(par.len(), 6);
    for (p, s) in par.iter().zip(&ser) {
        assert_eq!((&p.image, p.setting, p.bytes), (&s.image, s.setting, s.bytes));
        assert_eq!(p.psnr, s.psnr);
        assert!(p.ms_ssim.is_nan(), "MS-SSIM is undefined below 161 px");
    }
}

#[test]
fn reports_roundtrip_and_compare() {
    let dir = common::tempdir();
    let d = dir.path();
    let imgs = vec![("a.png".to_string(), photo(176, 176))];
    let jpeg = anchors::by_name("jpeg").unwrap();
    let rows = evaluate(jpeg.as_ref(), &imgs, &[20, 50, 80, 95], Options::default(), &|_| {}).unwrap();
    report::write_codec(d, "jpeg", "test", &rows).unwrap();
    // Our own JSON is a valid reference file, and reads back as the same measured curve,
    // every column included; without its `source` it reads as a published curve.
    let back = report::load_reference(&d.join("jpeg.json")).unwrap();
    let measured = Curve::measured("jpeg", "test", &rows);
    assert!(!back.published);
    for (p, q) in back.points.iter().zip(&measured.points) {
        assert!((p.bpp - q.bpp).abs() < 1e-12 && (p.psnr - q.psnr).abs() < 1e-12 && (p.ms_ssim - q.ms_ssim).abs() < 1e-12);
        assert!(p.setting == q.setting && (p.psnr_yuv - q.psnr_yuv).abs() < 1e-12 && (p.encode_s - q.encode_s).abs() < 1e-12);
    }
    let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join("jpeg.json")).unwrap()).unwrap();
    json.as_object_mut().unwrap().remove("source");
    std::fs::write(d.join("published.json"), json.to_string()).unwrap();
    let published = report::load_reference(&d.join("published.json")).unwrap();
    assert!(published.published);
    let csv = std::fs::read_to_string(d.join("jpeg.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 4);
    // The per-image CSV reads back row for row, by column name (what a stem card records).
    let again = report::read_codec(d, "jpeg").unwrap();
    assert_eq!(again.len(), rows.len());
    for (a, b) in again.iter().zip(&rows) {
        assert!(a.image == b.image && a.setting == b.setting && a.bytes == b.bytes, "{a:?} vs {b:?}");
        assert!((a.bpp - b.bpp).abs() < 1e-6 && (a.psnr - b.psnr).abs() < 1e-4 && (a.psnr_yuv - b.psnr_yuv).abs() < 1e-4 && (a.decode_s - b.decode_s).abs() < 1e-4);
    }
    let swapped = csv.replacen("image,setting,bytes,bpp", "setting,image,bytes,bpp", 1);
    let swapped: String = swapped
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let mut f: Vec<&str> = l.split(',').collect();
            if i > 0 {
                f.swap(0, 1);
            }
            f.join(",") + "\n"
        })
        .collect();
    std::fs::write(d.join("swapped.csv"), swapped).unwrap();
    assert_eq!(report::read_codec(d, "swapped").unwrap()[2].setting, rows[2].setting, "columns are found by name");
    std::fs::write(d.join("short.csv"), "image,setting,bytes,bpp\na.png,1,10,0.5\n").unwrap();
    assert!(report::read_codec(d, "short").is_err(), "a CSV without the metric columns is refused");

    // The same curve under another name is 0 % / 0 dB from the anchor; a curve with every rate
    // 10 % higher is +10 %.
    let mut shifted = measured.clone();
    shifted.name = "jpeg+10%".into();
    shifted.points.iter_mut().for_each(|p| p.bpp *= 1.1);
    let mut same = measured.clone();
    same.name = "copy".into();
    let md = report::markdown("t", "s", &[measured.clone(), same, shifted.clone()], &["jpeg"]);
    assert!(md.contains("| copy | +0.00 % | +0.00 dB | +0.00 % |"), "{md}");
    assert!(md.contains("| jpeg+10% | +10.00 % |"), "{md}");

    report::plot_svg(&d.join("p.svg"), "title", &[measured, shifted, back, published], Metric::Psnr).unwrap();
    let svg = std::fs::read_to_string(d.join("p.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("jpeg+10%") && svg.contains("(published)"));

    // Malformed reference files are refused with a message.
    std::fs::write(d.join("bad.json"), r#"{"results": {"bpp": [0.1, 0.2], "psnr": [30]}}"#).unwrap();
    assert!(report::load_reference(&d.join("bad.json")).is_err());
    std::fs::write(d.join("bad2.json"), "not json").unwrap();
    assert!(report::load_reference(&d.join("bad2.json")).is_err());
}

#[test]
fn bench_command_writes_every_output() {
    let dir = common::tempdir();
    let d = dir.path();
    let imgs = d.join("imgs");
    std::fs::create_dir(&imgs).unwrap();
    photo(192, 192).save(imgs.join("one.png")).unwrap();
    test_image(200, 170, 4).save(imgs.join("two.png")).unwrap();
    let w = tiny_weights(d, Architecture::MeanScaleHyperprior, 21);
    let out = d.join("out");
    let run = Command::new(env!("CARGO_BIN_EXE_ncodec"))
        .args(["bench", "--dataset", "folder", "--data-dir"])
        .arg(&imgs)
        .args(["--codec", "mean-scale", "--weights"])
        .arg(&w)
        .args(["--anchors", "jpeg,webp", "--timing", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    for f in ["ncodec-mean-scale.json", "ncodec-mean-scale.csv", "jpeg.json", "jpeg.csv", "webp.json", "webp.csv", "rd-psnr.svg", "rd-ms-ssim.svg", "summary.md"] {
        assert!(out.join(f).is_file(), "missing {f}");
    }
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("ncodec-mean-scale.json")).unwrap()).unwrap();
    for k in ["bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time"] {
        assert_eq!(j["results"][k].as_array().map(|a| a.len()), Some(3), "{k}");
    }
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.contains("Bjøntegaard deltas against jpeg") && md.contains("| webp |"), "{md}");

    // A Kodak run against a folder that is not Kodak is refused by the manifest check.
    let bad = Command::new(env!("CARGO_BIN_EXE_ncodec")).args(["bench", "--dataset", "kodak", "--data-dir"]).arg(&imgs).args(["--anchors", "none", "--codec", "none"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("kodim01.png"));
}
