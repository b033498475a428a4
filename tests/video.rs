//! Video input (Y4M, raw YUV, containers through ffmpeg) and the x264/x265 anchors.

mod common;

use std::process::Command;

use ncodec::video::anchors::VideoAnchor;
use ncodec::video::{Frame, Video, quality};

/// A moving pattern: a gradient background with a square sliding right.
fn clip(w: usize, h: usize, n: usize) -> Video {
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let frames = (0..n)
        .map(|t| Frame {
            y: (0..w * h)
                .map(|i| {
                    let (x, y) = (i % w, i / w);
                    let inside = x >= 8 + 3 * t && x < 40 + 3 * t && (16..48).contains(&y);
                    if inside { 220 } else { (40 + (x * 120) / w + (y * 40) / h) as u8 }
                })
                .collect(),
            u: (0..cw * ch).map(|i| (100 + (i % cw) * 40 / cw) as u8).collect(),
            v: (0..cw * ch).map(|i| (140 - (i / cw) * 30 / ch) as u8).collect(),
        })
        .collect();
    Video { width: w, height: h, fps: (25, 1), frames }
}

fn y4m_bytes(v: &Video) -> Vec<u8> {
    v.to_y4m()
}

#[test]
fn y4m_and_yuv_read_back_exactly_and_reject_bad_input() {
    let v = clip(66, 50, 3);
    let bytes = y4m_bytes(&v);
    let back = Video::read_y4m(&mut &bytes[..], usize::MAX).unwrap();
    assert_eq!((back.width, back.height, back.fps), (66, 50, (25, 1)));
    assert_eq!(back.frames, v.frames);
    assert_eq!(Video::read_y4m(&mut &bytes[..], 2).unwrap().frames.len(), 2);
    // Truncated frame, wrong signature, unsupported chroma, absurd size: errors, not panics.
    assert!(Video::read_y4m(&mut &bytes[..bytes.len() - 10], usize::MAX).is_err());
    assert!(Video::read_y4m(&mut &b"YUV4MPEG3 W2 H2\n"[..], usize::MAX).is_err());
    assert!(Video::read_y4m(&mut &b"YUV4MPEG2 W16 H16 C444\nFRAME\n"[..], usize::MAX).is_err());
    assert!(Video::read_y4m(&mut &b"YUV4MPEG2 W99999999 H99999999\nFRAME\n"[..], usize::MAX).is_err());
    // Found by fuzzing: a header field starting with a multi-byte character.
    assert!(Video::read_y4m(&mut "YUV4MPEG2 W24 \u{1ff}ACE H16\n".as_bytes(), usize::MAX).is_err());

    let dir = common::tempdir();
    let raw: Vec<u8> = v.frames.iter().flat_map(|f| [f.y.clone(), f.u.clone(), f.v.clone()].concat()).collect();
    let p = dir.path().join("clip_66x50.yuv");
    std::fs::write(&p, &raw).unwrap();
    let yuv = Video::open(&p, None, None).unwrap();
    assert_eq!(yuv.frames, v.frames);
    std::fs::write(dir.path().join("noname.yuv"), &raw).unwrap();
    assert!(Video::open(&dir.path().join("noname.yuv"), None, None).is_err(), "raw YUV needs a size");
}

#[test]
fn x264_and_x265_roundtrip_with_rising_rate() {
    let v = clip(128, 96, 8);
    for name in ["x264", "x265"] {
        let a = VideoAnchor::by_name(name).unwrap();
        let lo = a.encode(&v, 37).unwrap();
        let hi = a.encode(&v, 22).unwrap();
        let (lo_bytes, hi_bytes): (usize, usize) = (lo.iter().map(Vec::len).sum(), hi.iter().map(Vec::len).sum());
        assert!(lo_bytes < hi_bytes, "{name}: {lo_bytes} vs {hi_bytes}");
        let dec_lo = a.decode(&lo, 128, 96, v.fps).unwrap();
        let dec_hi = a.decode(&hi, 128, 96, v.fps).unwrap();
        assert_eq!(dec_hi.frames.len(), 8, "{name}: every frame comes back");
        let (_, y_lo, _, _) = quality(&v, &dec_lo).unwrap();
        let (rgb_hi, y_hi, yuv_hi, _) = quality(&v, &dec_hi).unwrap();
        assert!(y_hi > y_lo && y_hi > 38.0, "{name}: PSNR-Y {y_lo:.2} → {y_hi:.2}");
        assert!(yuv_hi > 35.0 && rgb_hi > 30.0, "{name}: YUV {yuv_hi:.2} RGB {rgb_hi:.2}");
        assert!(a.decode(&[b"garbage".to_vec()], 128, 96, v.fps).map(|d| d.frames.is_empty()).unwrap_or(true));
    }
    assert!(VideoAnchor::by_name("vp9").is_err());
}

#[test]
fn containers_read_through_ffmpeg() {
    // An x264 stream written as a raw .h264 file is read back by the generic ffmpeg path.
    let v = clip(128, 96, 5);
    let a = VideoAnchor::by_name("x264").unwrap();
    let packets = a.encode(&v, 18).unwrap();
    let dir = common::tempdir();
    let p = dir.path().join("clip.h264");
    std::fs::write(&p, packets.concat()).unwrap();
    let back = Video::open(&p, None, Some(4)).unwrap();
    assert_eq!((back.width, back.height, back.frames.len()), (128, 96, 4));
    let (_, y, _, _) = quality(&Video { frames: v.frames[..4].to_vec(), ..v.clone() }, &back).unwrap();
    assert!(y > 38.0, "{y}");
    std::fs::write(dir.path().join("junk.mp4"), b"not a video").unwrap();
    assert!(Video::open(&dir.path().join("junk.mp4"), None, None).is_err());

    // The usual containers are read.
    for ext in ["mp4", "mkv", "avi", "ts"] {
        let (enc, packets) = ncodec::video::anchors::encode_with(&v, "libx264", ncodec::video::anchors::Rate::Crf(18), matches!(ext, "mp4" | "mkv")).unwrap();
        let p = dir.path().join(format!("clip.{ext}"));
        ncodec::video::anchors::mux(&p, &enc, packets).unwrap();
        let back = Video::open(&p, None, None).unwrap();
        assert_eq!((back.width, back.height, back.frames.len()), (128, 96, 5), "{ext}");
    }
    // Hostile files may not make ffmpeg follow references to other files: a playlist and a
    // concat script naming a readable clip are refused as formats, not followed.
    let target = dir.path().join("clip.mp4");
    let playlist = format!("#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n{}\n#EXT-X-ENDLIST\n", target.display());
    let concat = format!("ffconcat version 1.0\nfile '{}'\n", target.display());
    for (name, text) in [("list.m3u8", playlist), ("list.ffconcat", concat)] {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        let e = Video::open(&p, None, None).unwrap_err().to_string();
        assert!(e.contains("not a video ncodec reads"), "{name}: {e}");
    }
    // A frame larger than --max-pixels is refused by the container check and by ffmpeg's own.
    let e = ncodec::video::anchors::decode_file_within(&target, 10, 128 * 96 - 1).unwrap_err().to_string();
    assert!(e.contains("more than"), "{e}");
}

#[test]
fn video_bench_on_basketballpass() {
    let Some(data) = common::datasets() else {
        eprintln!("skipping: no ../shared/datasets or $NCODEC_DATA (BasketballPass not available)");
        return;
    };
    let clip = data.join("video/basketballpass_416x240_50_100f.y4m");
    if !clip.exists() {
        eprintln!("skipping: {} is absent", clip.display());
        return;
    }
    let out = common::tempdir();
    let run =
        Command::new(env!("CARGO_BIN_EXE_ncodec")).args(["bench", "--dataset", "video", "--codec", "none", "--frames", "10", "--data-dir"]).arg(&clip).arg("--out").arg(out.path()).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    for f in ["x264.json", "x265.json", "x264.csv", "rd-psnr.svg", "summary.md"] {
        assert!(out.path().join(f).is_file(), "missing {f}");
    }
    let md = std::fs::read_to_string(out.path().join("summary.md")).unwrap();
    assert!(md.contains("against x264") && md.contains("| x265 |"), "{md}");
}
