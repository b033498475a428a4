//! The overfitted image codec as a user runs it: `ncenc --codec overfit`, `ncdec`, `ncodec
//! info`, and damaged streams.

mod common;

#[test]
fn overfit_streams_round_trip_through_the_binaries() {
    let dir = common::tempdir();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let img = ncodec::synthetic::scene(45, 31);
    img.save(p("in.png")).unwrap();
    let enc = common::run_bin(
        "ncenc",
        &[&p("in.png"), "-o", &p("a.ncod"), "--codec", "overfit", "-q", "3", "--preset", "fast", "--steps", "40", "--coarse-steps", "20", "--candidates", "2", "--backend", "cpu"],
    );
    let err = String::from_utf8_lossy(&enc.stderr);
    assert!(enc.status.success(), "{err}");
    assert!(err.contains("45x31 overfit q3") && err.contains("40 steps after 20 at half resolution, best of 2 initialisations"), "{err}");
    let reported: f64 = err.split("RGB PSNR ").nth(1).and_then(|s| s.split(' ').next()).unwrap().parse().unwrap();

    // ncdec needs nothing but the stream, and gets what the encoder measured.
    let dec = common::run_bin("ncdec", &[&p("a.ncod"), "-o", &p("out.png"), "--backend", "cpu"]);
    assert!(dec.status.success(), "{}", String::from_utf8_lossy(&dec.stderr));
    let out = image::open(p("out.png")).unwrap().to_rgb8();
    assert!((ncodec::metrics::psnr(&img, &out) - reported).abs() < 0.01);
    let info = common::run_bin("ncodec", &["info", &p("a.ncod")]);
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(text.contains("codec:     overfit") && text.contains("ARM width 8") && text.contains("multiplications per pixel"), "{text}");

    // Options that do not apply, and a truncated stream: errors, no output.
    let bad = common::run_bin("ncenc", &[&p("in.png"), "-o", &p("b.ncod"), "--codec", "overfit", "--preset", "fastest"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("unknown preset"));
    let bad = common::run_bin("ncenc", &[&p("in.png"), "-o", &p("b.ncod"), "--codec", "overfit", "--candidates", "0"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("--candidates 0"));
    assert!(!dir.path().join("b.ncod").exists());
    let bytes = std::fs::read(p("a.ncod")).unwrap();
    std::fs::write(p("cut.ncod"), &bytes[..bytes.len() - 9]).unwrap();
    let dec = common::run_bin("ncdec", &[&p("cut.ncod"), "-o", &p("cut.png")]);
    assert_eq!(dec.status.code(), Some(1));
    assert!(!dir.path().join("cut.png").exists());
}

/// `ncenc --codec overfit --bpp`: a search over λ on real stream sizes, reported probe by
/// probe; the stream written is within the target.
#[test]
fn a_rate_target_picks_lambda_from_real_bytes() {
    let dir = common::tempdir();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let img = ncodec::synthetic::scene(160, 128);
    img.save(p("in.png")).unwrap();
    let target = 1.0;
    let enc = common::run_bin("ncenc", &[&p("in.png"), "-o", &p("a.ncod"), "--codec", "overfit", "--bpp", "1", "--preset", "fast", "--steps", "60", "--coarse-steps", "30", "--backend", "cpu"]);
    let err = String::from_utf8_lossy(&enc.stderr);
    assert!(enc.status.success(), "{err}");
    let fits: usize = err.split(" fits: ").next().and_then(|s| s.rsplit('(').next()).and_then(|s| s.parse().ok()).unwrap_or(0);
    assert!(err.contains("fits 1 bpp") && (1..=5).contains(&fits) && err.matches("bpp,").count() == fits, "{err}");
    let bytes = std::fs::read(p("a.ncod")).unwrap();
    assert!(bytes.len() as f64 * 8.0 <= target * 160.0 * 128.0, "{} bytes: {err}", bytes.len());
    let dec = common::run_bin("ncdec", &[&p("a.ncod"), "-o", &p("out.png"), "--backend", "cpu"]);
    assert!(dec.status.success(), "{}", String::from_utf8_lossy(&dec.stderr));
}

/// `ncodec bench --codec overfit` fits every image at every quality asked for and reports
/// real bytes and encode times, labelled with the preset.
#[test]
fn bench_runs_the_overfitted_codec() {
    let dir = common::tempdir();
    let imgs = dir.path().join("imgs");
    std::fs::create_dir(&imgs).unwrap();
    // Large enough for MS-SSIM's five scales, which the report plots.
    ncodec::synthetic::scene(168, 164).save(imgs.join("a.png")).unwrap();
    let out = dir.path().join("out");
    let args = ["bench", "--dataset", "folder", "--data-dir", imgs.to_str().unwrap(), "--codec", "overfit", "--preset", "fast", "--steps", "120", "--coarse-steps", "40", "--quality", "1,8"];
    let run = common::run_bin("ncodec", &[&args[..], &["--anchors", "none", "--backend", "cpu", "--out", out.to_str().unwrap()]].concat());
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("ncodec-overfit-fast-120steps.json")).unwrap()).unwrap();
    let bpp: Vec<f64> = j["results"]["bpp"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(bpp.len(), 2);
    assert!(bpp[1] > bpp[0], "quality 8 spends more than quality 1: {bpp:?}");
    assert!(j["results"]["encoding_time"][0].as_f64().unwrap() > 0.0);
    assert!(j["description"].as_str().unwrap_or_default().contains("120 fitting steps after 40 at half resolution"), "{j}");

    // Resumed with one quality more, the run fits only that one and keeps the rows it had.
    let csv = |name: &str| std::fs::read_to_string(out.join(name)).unwrap();
    let before = csv("ncodec-overfit-fast-120steps.csv");
    let more = args.map(|a| if a == "1,8" { "1,4,8" } else { a });
    let run = common::run_bin("ncodec", &[&more[..], &["--anchors", "none", "--backend", "cpu", "--out", out.to_str().unwrap(), "--resume"]].concat());
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(String::from_utf8_lossy(&run.stderr).contains("2 of 3 rows from"), "{}", String::from_utf8_lossy(&run.stderr));
    let after = csv("ncodec-overfit-fast-120steps.csv");
    let rows = |t: &str| t.lines().skip(1).map(str::to_string).collect::<Vec<_>>();
    let (old, new) = (rows(&before), rows(&after));
    assert_eq!(new.len(), 3);
    // Encode times included: the rows were not measured again.
    assert_eq!((&new[0], &new[2]), (&old[0], &old[1]), "{after}");
    assert!(new[1].starts_with("a.png,4,"), "{after}");
}
