//! The binaries as a user runs them: files, stdin/stdout, exit codes, no partial outputs.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{test_image, tiny_weights};
use ncodec::models::Architecture;

fn ncenc() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ncenc"))
}

fn ncdec() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ncdec"))
}

fn ncodec() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ncodec"))
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn encode_decode_files_and_pipes() {
    let dir = common::tempdir();
    let d = dir.path();
    let w = tiny_weights(d, Architecture::MeanScaleHyperprior, 11);
    let img = test_image(150, 90, 3);
    img.save(d.join("in.png")).unwrap();

    let enc = ncenc().args([path_str(&d.join("in.png")), "-o", path_str(&d.join("a.ncod")), "-q", "2", "--codec", "mean-scale", "--weights", path_str(&w)]).output().unwrap();
    assert!(enc.status.success(), "{}", String::from_utf8_lossy(&enc.stderr));
    let msg = String::from_utf8_lossy(&enc.stderr);
    assert!(msg.contains("bpp"), "{msg}");
    let bytes = std::fs::read(d.join("a.ncod")).unwrap();
    // Reported bpp is the file size.
    let bpp = bytes.len() as f64 * 8.0 / (150.0 * 90.0);
    assert!(msg.contains(&format!("{bpp:.4} bpp")), "{msg} vs {bpp:.4}");

    let dec = ncdec().args([path_str(&d.join("a.ncod")), "-o", path_str(&d.join("out.png")), "--weights", path_str(&w)]).output().unwrap();
    assert!(dec.status.success(), "{}", String::from_utf8_lossy(&dec.stderr));
    let out = image::open(d.join("out.png")).unwrap().to_rgb8();
    // ncdec's output equals the library decoder's reconstruction.
    let codec = ncodec::Codec::from_weights("mean-scale", &w).unwrap();
    let lib = codec.decode(&ncodec::container::Container::parse(&bytes).unwrap()).unwrap();
    assert_eq!(out, lib);

    // stdin → stdout gives the same bytes as the file path.
    let mut child = ncenc().args(["-", "-o", "-", "-q", "2", "--codec", "mean-scale", "--weights", path_str(&w)]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&std::fs::read(d.join("in.png")).unwrap()).unwrap();
    }
    let piped = child.wait_with_output().unwrap();
    assert!(piped.status.success());
    assert_eq!(piped.stdout, bytes);

    let info = ncodec().args(["info", path_str(&d.join("a.ncod"))]).output().unwrap();
    assert!(info.status.success());
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(text.contains("150x90") && text.contains("mean-scale"), "{text}");
}

#[test]
fn hostile_inputs_fail_cleanly_and_leave_no_output() {
    let dir = common::tempdir();
    let d = dir.path();
    let w = tiny_weights(d, Architecture::MeanScaleHyperprior, 12);
    test_image(64, 64, 1).save(d.join("in.png")).unwrap();
    let ok = ncenc().args([path_str(&d.join("in.png")), "-o", path_str(&d.join("a.ncod")), "--weights", path_str(&w), "-q", "1"]).output().unwrap();
    assert!(ok.status.success());
    let good = std::fs::read(d.join("a.ncod")).unwrap();

    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("flipped", flipped),
        ("text", b"hello, not a bitstream".to_vec()),
    ];
    for (name, bytes) in cases {
        let input = d.join(format!("{name}.ncod"));
        std::fs::write(&input, &bytes).unwrap();
        let out = d.join(format!("{name}.png"));
        let r = ncdec().args([path_str(&input), "-o", path_str(&out), "--weights", path_str(&w)]).output().unwrap();
        assert!(!r.status.success(), "{name}: accepted");
        assert_eq!(r.status.code(), Some(1), "{name}: not a clean exit");
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(err.starts_with("ncdec: error:") && !err.contains("panicked"), "{name}: {err}");
        assert!(!out.exists(), "{name}: partial output left behind");
        assert_eq!(std::fs::read(&input).unwrap(), bytes, "{name}: input touched");
    }

    // Encoder: unreadable and zero-size images.
    std::fs::write(d.join("bad.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let r = ncenc().args([path_str(&d.join("bad.png")), "-o", path_str(&d.join("bad.ncod")), "--weights", path_str(&w)]).output().unwrap();
    assert_eq!(r.status.code(), Some(1));
    assert!(!d.join("bad.ncod").exists());
    let r = ncenc().args(["/nonexistent/x.png", "-o", path_str(&d.join("x.ncod")), "--weights", path_str(&w)]).output().unwrap();
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("/nonexistent/x.png"));
}

#[test]
fn limits_are_flags_with_documented_defaults() {
    let dir = common::tempdir();
    let d = dir.path();
    let w = tiny_weights(d, Architecture::MeanScaleHyperprior, 5);
    test_image(150, 90, 1).save(d.join("in.png")).unwrap();
    let enc = |extra: &[&str]| ncenc().args([path_str(&d.join("in.png")), "-o", path_str(&d.join("a.ncod")), "-q", "2", "--codec", "mean-scale", "--weights", path_str(&w)]).args(extra).output().unwrap();
    let small = enc(&["--max-pixels", "10000"]);
    assert_eq!(small.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&small.stderr).contains("--max-pixels"), "{}", String::from_utf8_lossy(&small.stderr));
    assert!(!d.join("a.ncod").exists());
    assert!(enc(&["--max-pixels", "13500"]).status.success());
    let dec = ncdec().args([path_str(&d.join("a.ncod")), "-o", path_str(&d.join("b.png")), "--weights", path_str(&w), "--max-input-bytes", "16"]).output().unwrap();
    assert_eq!(dec.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&dec.stderr).contains("--max-input-bytes"));
    assert!(!d.join("b.png").exists());
    // The stream's own header is checked against the decoder's limits too.
    let dec = ncdec().args([path_str(&d.join("a.ncod")), "-o", path_str(&d.join("b.png")), "--weights", path_str(&w), "--max-side", "100"]).output().unwrap();
    assert_eq!(dec.status.code(), Some(1));
}
