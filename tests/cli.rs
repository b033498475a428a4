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
fn refine_flag_writes_standard_streams_and_refuses_what_it_cannot_do() {
    let dir = common::tempdir();
    let d = dir.path();
    let w = tiny_weights(d, Architecture::MultiReference, 5);
    test_image(90, 70, 2).save(d.join("in.png")).unwrap();
    let encode = |input: &str, out: &str, extra: &[&str]| {
        let mut args = vec![path_str(&d.join(input)).to_string(), "-o".into(), path_str(&d.join(out)).to_string(), "--codec".into(), "mlic".into(), "--weights".into(), path_str(&w).to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        ncenc().args(args).output().unwrap()
    };
    let enc = |out: &str, extra: &[&str]| encode("in.png", out, extra);
    let out = enc("r.ncod", &["-q", "2", "--refine", "4"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dec = ncdec().args([path_str(&d.join("r.ncod")), "-o", path_str(&d.join("r.png")), "--weights", path_str(&w)]).output().unwrap();
    assert!(dec.status.success(), "{}", String::from_utf8_lossy(&dec.stderr));
    // The same search twice writes the same bytes.
    assert!(enc("r2.ncod", &["-q", "2", "--refine", "4"]).status.success());
    assert_eq!(std::fs::read(d.join("r.ncod")).unwrap(), std::fs::read(d.join("r2.ncod")).unwrap());
    // With a rate target: the level --bpp picks, refined only while it still fits.
    let out = enc("t.ncod", &["--bpp", "3.0", "--refine", "3"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let plain = enc("p.ncod", &["--bpp", "3.0"]);
    assert!(plain.status.success());
    let budget = (3.0f64 * 90.0 * 70.0 / 8.0).max(std::fs::metadata(d.join("p.ncod")).unwrap().len() as f64);
    assert!(std::fs::metadata(d.join("t.ncod")).unwrap().len() as f64 <= budget);
    // Refused with a message, nothing written: out of range, and for videos.
    std::fs::write(d.join("clip.y4m"), b"YUV4MPEG2 W8 H8 F25:1 C420jpeg\n").unwrap();
    for (input, extra, want) in [
        ("in.png", &["--refine", "5000"][..], "5000"),
        ("in.png", &["-q", "2", "--refine", "2", "--refine-step-size=-1"][..], "step size"),
        ("clip.y4m", &["--refine", "2"][..], "--refine is for images"),
    ] {
        let out = encode(input, "bad.ncod", extra);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(want), "{err}");
        assert!(!d.join("bad.ncod").exists());
    }
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
    // Without --codec, a stream made from a weight file is named after the file's architecture.
    let info = ncodec().args(["info", path_str(&d.join("a.ncod"))]).output().unwrap();
    assert!(String::from_utf8_lossy(&info.stdout).contains("mean-scale"), "{}", String::from_utf8_lossy(&info.stdout));

    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    let cases: Vec<(&str, Vec<u8>)> = vec![("empty", vec![]), ("truncated", good[..good.len() / 2].to_vec()), ("flipped", flipped), ("text", b"hello, not a bitstream".to_vec())];
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
    let enc =
        |extra: &[&str]| ncenc().args([path_str(&d.join("in.png")), "-o", path_str(&d.join("a.ncod")), "-q", "2", "--codec", "mean-scale", "--weights", path_str(&w)]).args(extra).output().unwrap();
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

/// Output that cannot be written: a full device, a file-size limit hit mid-write, a folder
/// without write permission. Each is one clear `error:` line naming what failed, exit status 1,
/// and nothing left behind (no output, no temporary sibling), the input untouched.
#[test]
fn write_failures_are_clear_errors_and_leave_nothing() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let dir = common::tempdir();
    let d = dir.path();
    let w = tiny_weights(d, Architecture::MeanScaleHyperprior, 13);
    test_image(64, 48, 2).save(d.join("in.png")).unwrap();
    let ok = ncenc().args([path_str(&d.join("in.png")), "-o", path_str(&d.join("a.ncod")), "-q", "1", "--weights", path_str(&w)]).output().unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let listing = || {
        let mut v: Vec<String> = std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    };
    let before = listing();
    let input = std::fs::read(d.join("a.ncod")).unwrap();
    let check = |what: &str, r: std::process::Output, tool: &str, expect: &str| {
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(1), "{what}: {err}");
        let line = err.lines().find(|l| l.starts_with(&format!("{tool}: error:"))).unwrap_or_else(|| panic!("{what}: no error line in {err}"));
        assert!(line.contains(expect) && !err.contains("panicked"), "{what}: {err}");
    };

    // A full device: stdout on /dev/full (ENOSPC from write(2)).
    let full = || std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let r = ncdec().args([path_str(&d.join("a.ncod")), "-o", "-", "--weights", path_str(&w)]).stdout(full()).output().unwrap();
    check("ncdec to a full device", r, "ncdec", "standard output: No space left on device");
    let r = ncenc().args([path_str(&d.join("in.png")), "-o", "-", "-q", "1", "--weights", path_str(&w)]).stdout(full()).output().unwrap();
    check("ncenc to a full device", r, "ncenc", "standard output: No space left on device");

    // A write that fails part-way into a file (the file-size limit, EFBIG, stands in for a
    // disk filling up: the same write(2) error path).
    let limited = |cmd: &mut Command| {
        // SAFETY: only async-signal-safe libc calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                let lim = libc::rlimit { rlim_cur: 16, rlim_max: 16 };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    };
    let mut cmd = ncdec();
    cmd.args([path_str(&d.join("a.ncod")), "-o", path_str(&d.join("out.png")), "--weights", path_str(&w)]);
    limited(&mut cmd);
    check("ncdec hitting the file-size limit", cmd.output().unwrap(), "ncdec", "out.png: File too large");
    let mut cmd = ncenc();
    cmd.args([path_str(&d.join("in.png")), "-o", path_str(&d.join("b.ncod")), "-q", "3", "--weights", path_str(&w)]);
    limited(&mut cmd);
    check("ncenc hitting the file-size limit", cmd.output().unwrap(), "ncenc", "b.ncod: File too large");
    assert_eq!(listing(), before, "a failed write left something behind");

    // A folder the user may not write to. Root bypasses permission bits, so as root the
    // tools run as `nobody` (the folders are opened up for reading first).
    let ro = d.join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_user = |mut cmd: Command| {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            cmd.uid(65534).gid(65534);
        }
        cmd
    };
    let mut cmd = ncdec();
    cmd.args([path_str(&d.join("a.ncod")), "-o", path_str(&ro.join("out.png")), "--weights", path_str(&w)]);
    let r = match as_user(cmd).output() {
        Ok(r) => r,
        // No CAP_SETUID, or the binaries under a folder `nobody` cannot enter.
        Err(e) => return eprintln!("read-only folder case skipped: cannot run the tools as nobody: {e}"),
    };
    check("ncdec into a read-only folder", r, "ncdec", &format!("out.png: cannot create a file in {}: permission denied", ro.display()));
    let mut cmd = ncenc();
    cmd.args([path_str(&d.join("in.png")), "-o", path_str(&ro.join("a.ncod")), "-q", "1", "--weights", path_str(&w)]);
    let r = as_user(cmd).output().unwrap();
    check("ncenc into a read-only folder", r, "ncenc", "a.ncod: cannot create a file in");
    assert_eq!(std::fs::read_dir(&ro).unwrap().count(), 0, "something was written into the read-only folder");
    assert_eq!(std::fs::read(d.join("a.ncod")).unwrap(), input, "input touched");
}

#[test]
fn crosscheck_and_subset_run_as_a_user_runs_them() {
    let dir = common::tempdir();
    let d = dir.path();
    let w = tiny_weights(d, Architecture::MeanScaleHyperprior, 4);
    // crosscheck used to panic at argument parsing (its --max-side clashed with the global limit).
    let out = ncodec().args(["crosscheck", "--codec", "mean-scale", "--weights", path_str(&w), "--a", "cpu", "--b", "cpu", "--count", "3", "--side", "40"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(report.contains("0 latent mismatches"), "{report}");

    // subset: downscaled JPEGs under the budget, photos smaller than the crop skipped.
    let photos = d.join("photos");
    std::fs::create_dir_all(photos.join("a")).unwrap();
    std::fs::create_dir_all(photos.join("b")).unwrap();
    for i in 0..4 {
        test_image(400, 300, i).save(photos.join("a").join(format!("{i}.png"))).unwrap();
        test_image(300, 300, i + 10).save(photos.join("b").join(format!("{i}.png"))).unwrap();
    }
    test_image(100, 300, 20).save(photos.join("b/small.png")).unwrap();
    let out = ncodec().args(["subset", "--data", path_str(&photos), "--out", path_str(&d.join("sub")), "--side", "200", "--crop", "128", "--mib", "0.03"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let files: Vec<_> = std::fs::read_dir(d.join("sub")).unwrap().map(|e| e.unwrap().path()).collect();
    let total: u64 = files.iter().map(|f| std::fs::metadata(f).unwrap().len()).sum();
    assert!(!files.is_empty() && total <= (0.03 * 1048576.0) as u64, "{} files, {total} bytes", files.len());
    assert!(
        files.iter().any(|f| f.file_name().unwrap().to_string_lossy().starts_with("a_")) && files.iter().any(|f| f.file_name().unwrap().to_string_lossy().starts_with("b_")),
        "both folders represented"
    );
    for f in &files {
        let img = image::open(f).unwrap();
        assert!(img.width().max(img.height()) <= 200 && img.width().min(img.height()) >= 128, "{}: {}x{}", f.display(), img.width(), img.height());
    }
    assert!(!files.iter().any(|f| f.to_string_lossy().contains("small")));

    // A folder that holds files is refused and left as it was.
    let again = ncodec().args(["subset", "--data", path_str(&photos), "--out", path_str(&d.join("sub")), "--crop", "128", "--mib", "0.03"]).output().unwrap();
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("not empty"));
    assert_eq!(std::fs::read_dir(d.join("sub")).unwrap().count(), files.len());
    // A photo that does not decode fails the run, which leaves no folder and no staging sibling.
    std::fs::write(photos.join("b/broken.png"), b"not a png").unwrap();
    let failed = ncodec().args(["subset", "--data", path_str(&photos), "--out", path_str(&d.join("sub2")), "--crop", "128", "--mib", "0.03"]).output().unwrap();
    assert!(!failed.status.success(), "a broken photo must fail the run");
    let left: Vec<String> = std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| n.contains("sub2")).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// The subcommands a user runs around a model, in the order they would: train a few steps,
/// export, ship into a zoo of its own (`NCODEC_CODECS`; with the Kodak set at hand) and list
/// it; list and demo on the shipped zoo; the image helpers (metrics, convert); and a fetch of
/// a data set that does not exist.
#[test]
fn a_model_goes_from_train_to_demo_as_a_user_runs_it() {
    let dir = common::tempdir();
    let d = dir.path();
    let photos = d.join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    for i in 0..4 {
        test_image(96, 80, i).save(photos.join(format!("{i}.png"))).unwrap();
    }
    let zoo = d.join("zoo");
    std::fs::create_dir_all(&zoo).unwrap();
    // In the test's own zoo, or (`shipped`) in the repository's.
    let run_in = |shipped: bool, args: &[&str]| {
        let mut cmd = ncodec();
        if !shipped {
            cmd.env("NCODEC_CODECS", &zoo);
        }
        let out = cmd.args(args).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "ncodec {}: {text}", args.join(" "));
        text
    };
    let run = |args: &[&str]| run_in(false, args);
    let ckpt = d.join("ckpt");
    #[rustfmt::skip]
    run(&["train", "--codec", "mean-scale", "--data", path_str(&photos), "--n", "8", "--m", "12", "--lambda", "0.001,0.01,0.1",
          "--steps", "2", "--batch", "2", "--crop", "64", "--checkpoint-every", "1", "--ckpt-dir", path_str(&ckpt)]);
    assert!(ckpt.join("state.json").is_file() && ckpt.join("model.bpk").is_file());

    let w = d.join("w.ncw");
    run(&["export", "--ckpt-dir", path_str(&ckpt), "-o", path_str(&w)]);
    assert!(ncodec::weights::load(&w, &ncodec::backend::device()).is_ok(), "export wrote a readable weight file");

    // ship measures the Kodak set named by its manifest (digests checked), so it needs the data.
    if let Some(data) = common::datasets() {
        // A blank card line is refused before anything is written.
        #[rustfmt::skip]
        let blank = ncodec().env("NCODEC_CODECS", &zoo).args(["ship", "--ckpt-dir", path_str(&ckpt), "--name", "tiny", "--data-dir", path_str(&data.join("kodak")),
              "--description", "a test model", "--command", "see the test", "--lr-schedule", " "]).output().unwrap();
        assert!(!blank.status.success() && String::from_utf8_lossy(&blank.stderr).contains("--lr-schedule is empty"), "{blank:?}");
        assert!(!zoo.join("tiny").exists(), "a refused ship writes nothing");
        #[rustfmt::skip]
        run(&["ship", "--ckpt-dir", path_str(&ckpt), "--name", "tiny", "--data-dir", path_str(&data.join("kodak")),
              "--description", "a test model", "--command", "see the test", "--lr-schedule", "constant",
              "--hardware", "a test machine, then another"]);
        let card = std::fs::read_to_string(zoo.join("tiny/card.toml")).unwrap();
        assert!(card.contains("[[kodak]]") && card.contains("steps = 2"), "{card}");
        assert!(card.contains("hardware = \"a test machine, then another\""), "{card}");
        assert!(run(&["list"]).contains("tiny"));
    } else {
        eprintln!("ship skipped: no ../shared/datasets or $NCODEC_DATA with kodak/");
    }

    // list and demo on the shipped zoo.
    let zoo_list = run_in(true, &["list"]);
    assert!(zoo_list.contains("mlic") && zoo_list.contains("mean-scale"), "{zoo_list}");
    let demo = d.join("demo");
    run_in(true, &["demo", "--codec", "mean-scale", "--input", path_str(&photos.join("0.png")), "--out", path_str(&demo)]);
    let streams = std::fs::read_dir(&demo).unwrap().filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "ncod")).count();
    assert_eq!(streams, 8, "one stream per quality level of mean-scale");

    let (a, b) = (photos.join("0.png"), photos.join("1.png"));
    let same = run(&["metrics", path_str(&a), path_str(&a)]);
    let differ = run(&["metrics", path_str(&a), path_str(&b)]);
    assert!(same.contains("psnr_rgb inf") && differ.contains("psnr_rgb") && !differ.contains("inf"), "{same} / {differ}");
    let ppm = d.join("0.ppm");
    run(&["convert", path_str(&a), path_str(&ppm)]);
    assert_eq!(image::open(&ppm).unwrap().to_rgb8(), image::open(&a).unwrap().to_rgb8());

    let out = ncodec().args(["fetch", "no-such-set", "--dir", path_str(&d.join("sets"))]).output().unwrap();
    assert!(!out.status.success() && !String::from_utf8_lossy(&out.stderr).contains("panicked"));
    assert!(!d.join("sets").exists(), "a refused fetch leaves nothing");
}
