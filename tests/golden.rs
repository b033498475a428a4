//! Golden streams: committed SHA-256 digests of streams and decoded pixels made by the binaries
//! with the shipped weights, so a refactor that changes one bit of a stream or a pixel fails here.
//!
//! Every case runs `ncenc` and `ncdec` as a user does (on the CPU backend), never the library
//! API, so the library may be rebuilt freely underneath. Cases on generated inputs always run;
//! Kodak and BasketballPass cases run when the data sets are at hand.
//!
//! The digests live in `tests/golden/streams.tsv`, one line per case, with the digest of the
//! weight file each case used. Reshipping a codec changes its streams: the test then says which
//! codec's weights changed, and `NCODEC_BLESS=1 cargo test --release --test golden` rewrites the
//! file (check the diff: only the reshipped codec's lines may change).
//!
//! The float transforms take CPU-specific SIMD paths, so the digests belong to a kind of CPU:
//! the file records the one it was blessed on (model name and vector extensions), and on
//! another kind the test says so and checks nothing rather than fail for a reason no refactor
//! caused (bless there to get that machine's digests).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/streams.tsv");

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn run(bin: &str, args: &[&str]) {
    let exe = match bin {
        "ncenc" => env!("CARGO_BIN_EXE_ncenc"),
        _ => env!("CARGO_BIN_EXE_ncdec"),
    };
    let out = Command::new(exe).args(args).args(["--backend", "cpu", "--quiet"]).env_remove("NCODEC_CODECS").output().unwrap();
    assert!(out.status.success(), "{bin} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Digest of a shipped codec's weight file (the first 16 hex digits), or "-" for `nerv`.
fn weights_digest(codec: &str) -> String {
    if codec == "nerv" {
        return "-".into();
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("codecs").join(codec).join("weights.ncw");
    hex(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))[..16].to_string()
}

/// A 4:2:0 Y4M clip written byte by byte (no colour conversion of ours involved): a moving
/// gradient with texture, `n` frames of `w`x`h`.
fn generated_y4m(w: usize, h: usize, n: usize) -> Vec<u8> {
    let mut out = format!("YUV4MPEG2 W{w} H{h} F25:1 Ip A1:1 C420jpeg\n").into_bytes();
    for t in 0..n {
        out.extend_from_slice(b"FRAME\n");
        for y in 0..h {
            for x in 0..w {
                let noise = ((x * 2654435761) ^ (y * 40503) ^ (t * 97)) >> 7 & 15;
                out.push((16 + (x + 3 * t) * 200 / w + y * 20 / h + noise).min(255) as u8);
            }
        }
        for c in 0..2 {
            for y in 0..h / 2 {
                for x in 0..w / 2 {
                    out.push((96 + c * 40 + (x + y + t) % 48) as u8);
                }
            }
        }
    }
    out
}

struct Case {
    name: String,
    codec: &'static str,
    input: PathBuf,
    /// Output file name: `.png` (pixels hashed as 8-bit RGB) or `.y4m` (file bytes hashed).
    output: &'static str,
    args: Vec<String>,
}

/// Encodes and decodes one case; returns (stream digest, decoded-pixels digest).
fn digests(dir: &Path, case: &Case) -> (String, String) {
    let stream = dir.join(format!("{}.ncod", case.name.replace(' ', "_")));
    let decoded = dir.join(format!("{}{}", case.name.replace(' ', "_"), case.output));
    let mut args = vec![case.input.to_str().unwrap(), "-o", stream.to_str().unwrap(), "--codec", case.codec];
    args.extend(case.args.iter().map(String::as_str));
    run("ncenc", &args);
    run("ncdec", &[stream.to_str().unwrap(), "-o", decoded.to_str().unwrap()]);
    let pixels = if case.output == ".png" { image::open(&decoded).unwrap().to_rgb8().into_raw() } else { std::fs::read(&decoded).unwrap() };
    (hex(&std::fs::read(&stream).unwrap()), hex(&pixels))
}

fn cases(dir: &Path) -> Vec<Case> {
    let mut cases = Vec::new();
    let generated = dir.join("generated.png");
    common::test_image(200, 136, 7).save(&generated).unwrap();
    let clip = dir.join("generated.y4m");
    std::fs::write(&clip, generated_y4m(96, 64, 3)).unwrap();
    let data = common::datasets();
    let kodak = data.as_ref().map(|d| d.join("kodak/kodim01.png")).filter(|p| p.is_file());
    let basketball = data.as_ref().map(|d| d.join("video/basketballpass_416x240_50_100f.y4m")).filter(|p| p.is_file());
    if kodak.is_none() || basketball.is_none() {
        eprintln!("SKIPPED: the Kodak / BasketballPass cases (no ../shared/datasets or $NCODEC_DATA); generated inputs only");
    }

    for (codec, qualities) in [("mean-scale", [1, 4, 8]), ("mlic", [1, 4, 8]), ("vq", [1, 5, 9])] {
        for (input_name, input) in [("generated", Some(generated.clone())), ("kodim01", kodak.clone())] {
            let Some(input) = input else { continue };
            for q in qualities {
                cases.push(Case { name: format!("{codec} q{q} {input_name}"), codec, input: input.clone(), output: ".png", args: vec!["-q".into(), q.to_string()] });
            }
        }
    }
    let stem_args = |q: u32| vec!["-q".into(), q.to_string(), "--gop".into(), "2".into(), "--frames".into(), "3".into()];
    cases.push(Case { name: "stem q3 generated".into(), codec: "stem", input: clip.clone(), output: ".y4m", args: stem_args(3) });
    if let Some(clip) = &basketball {
        cases.push(Case { name: "stem q5 basketballpass".into(), codec: "stem", input: clip.clone(), output: ".y4m", args: stem_args(5) });
    }
    let nerv = ["-q", "1", "--epochs", "2", "--warm-epochs", "1", "--group", "2", "--frames", "3"];
    cases.push(Case { name: "nerv q1 generated".into(), codec: "nerv", input: clip, output: ".y4m", args: nerv.iter().map(|s| s.to_string()).collect() });
    cases
}

/// The kind of CPU the float transforms' results depend on: its model name and the vector
/// extensions that choose their SIMD paths.
fn machine() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).unwrap_or("unknown").trim().to_string();
    let flags: Vec<&str> = info.lines().find(|l| l.starts_with("flags")).map(|l| l.split_whitespace().collect()).unwrap_or_default();
    let simd: Vec<&str> = ["avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_bf16"].into_iter().filter(|f| flags.contains(f)).collect();
    format!("{model} ({})", simd.join(" "))
}

const MACHINE_PREFIX: &str = "# machine: ";

/// The machine the committed digests were blessed on.
fn golden_machine() -> Option<String> {
    std::fs::read_to_string(GOLDEN).ok()?.lines().find_map(|l| l.strip_prefix(MACHINE_PREFIX).map(str::to_string))
}

/// `case name` → (weights, stream, pixels) from the committed file.
fn read_golden() -> BTreeMap<String, [String; 3]> {
    let text = std::fs::read_to_string(GOLDEN).unwrap_or_default();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 4, "malformed line in {GOLDEN}: {l}");
            (f[0].to_string(), [f[1].to_string(), f[2].to_string(), f[3].to_string()])
        })
        .collect()
}

#[test]
fn streams_and_pixels_match_the_committed_digests() {
    let dir = common::tempdir();
    let bless = std::env::var_os("NCODEC_BLESS").is_some();
    if let Some(recorded) = golden_machine().filter(|m| *m != machine() && !bless) {
        eprintln!("SKIPPED: the golden digests were blessed on {recorded}; this is {} (float SIMD paths differ)", machine());
        return;
    }
    let mut golden = read_golden();
    let mut failures = Vec::new();
    for case in cases(dir.path()) {
        let weights = weights_digest(case.codec);
        let (stream, pixels) = digests(dir.path(), &case);
        let now = [weights.clone(), stream, pixels];
        match golden.get(&case.name) {
            _ if bless => {
                golden.insert(case.name.clone(), now);
            }
            None => failures.push(format!("{}: no committed digest (bless to add it)", case.name)),
            Some(old) if old[0] != weights => {
                failures.push(format!("{}: codecs/{}/weights.ncw changed since the digests were recorded ({} -> {weights}); if it was reshipped, bless", case.name, case.codec, old[0]))
            }
            Some(old) if old[1] != now[1] => failures.push(format!("{}: the stream changed", case.name)),
            Some(old) if old[2] != now[2] => failures.push(format!("{}: the stream is the same, the decoded pixels changed", case.name)),
            Some(_) => {}
        }
    }
    if bless {
        let mut text =
            String::from("# case\tweights (sha256, 16 hex)\tstream sha256\tdecoded pixels sha256 (PNG: 8-bit RGB; Y4M: the file)\n# Written by NCODEC_BLESS=1 cargo test --release --test golden\n");
        text.push_str(&format!("{MACHINE_PREFIX}{}\n", machine()));
        for (name, [w, s, p]) in &golden {
            text.push_str(&format!("{name}\t{w}\t{s}\t{p}\n"));
        }
        std::fs::create_dir_all(Path::new(GOLDEN).parent().unwrap()).unwrap();
        std::fs::write(GOLDEN, text).unwrap();
        eprintln!("blessed {} cases into {GOLDEN}", golden.len());
    }
    assert!(failures.is_empty(), "golden streams differ (tests/golden.rs says how to bless an intended change):\n{}", failures.join("\n"));
}

#[test]
fn the_generated_clip_is_a_valid_y4m() {
    // The clip above is written by hand; the library must read it as 3 frames of 96x64.
    let dir = common::tempdir();
    let path = dir.path().join("c.y4m");
    std::fs::write(&path, generated_y4m(96, 64, 3)).unwrap();
    let video = ncodec::video::Video::open(&path, None, None).unwrap();
    assert_eq!((video.width, video.height, video.frames.len()), (96, 64, 3));
}
