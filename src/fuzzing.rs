//! Fuzzing entry points, shared by the cargo-fuzz targets (`fuzz/`) and the regression test
//! that replays their corpora in CI (`tests/fuzz_regressions.rs`). Each takes arbitrary bytes
//! and must return normally: any panic, hang or runaway allocation is a bug.
//!
//! ```text
//!  container      bytes ──Container::parse──► (re-serializes and parses to the same container)
//!  range_coder    byte 0: table; rest ──SymbolDecoder──► ≤ 4096 symbols
//!  image_decode   byte 0: architecture; rest ──container (checksum ignored, header pointed
//!                 at a tiny random model)──► Codec::decode
//!  nerv_decode    bytes ──container (checksum ignored)──► nerv::decode
//!  stem_decode    bytes ──container (checksum ignored, pointed at a tiny stem model)──►
//!                 stem::decode, strict and concealing
//!  y4m            bytes ──Video::read_y4m──► frames
//!  image_input    bytes ──io::decode_image (PNG, JPEG, BMP, TIFF, PNM, WebP; ≤ 96x96)──► RGB
//!  video_demux    bytes ──temporary file──► libavformat (allowed demuxers) ──libavcodec
//!                 (allowed decoders, frames ≤ MAX_FUZZ_PIXELS)──► ≤ 4 I420 frames
//! ```
//! Geometry is capped to [`MAX_FUZZ_PIXELS`] so one input cannot make an execution slow;
//! the real limits are tested separately.

#![doc(hidden)]

use std::sync::OnceLock;

use crate::codec::Codec;
use crate::container::{Container, Kind};
use crate::models::{Architecture, ModelConfig};

/// Largest decoded area (pixels × frames) an execution may ask for.
pub const MAX_FUZZ_PIXELS: u64 = 96 * 96 * 4;

pub const ARCHITECTURES: [Architecture; 6] =
    [Architecture::Factorized, Architecture::ScaleHyperprior, Architecture::MeanScaleHyperprior, Architecture::MultiReference, Architecture::Vq, Architecture::Stem];

/// A tiny randomly initialised model of `arch` (N = 8, M = 20), built once per process.
pub fn tiny_codec(arch: Architecture) -> &'static Codec {
    static CODECS: OnceLock<Vec<Codec>> = OnceLock::new();
    let codecs = CODECS.get_or_init(|| {
        let device = burn::prelude::Device::flex();
        ARCHITECTURES
            .iter()
            .map(|&a| {
                device.seed(7);
                let config = if a == Architecture::Vq {
                    ModelConfig { architecture: a, n: 8, m: 20, lambdas: vec![], vq: Some(crate::models::VqConfig::with(3, 16)), transforms: Default::default() }
                } else {
                    ModelConfig { architecture: a, n: 8, m: 20, lambdas: vec![0.001, 0.01, 0.1], vq: None, transforms: Default::default() }
                };
                let model = config.init(&device);
                let mut tables = model.export_tables();
                if let Some(vq) = tables.latent.vq_mut() {
                    vq.priors = crate::models::vq::flat_priors(&vq.config);
                }
                let bytes = crate::weights::to_bytes(&config, &model, &tables, crate::weights::Precision::F16);
                Codec::from_loaded(a.name(), crate::weights::from_bytes(&bytes, &device).expect("own weights load"), device.clone())
            })
            .collect()
    });
    &codecs[ARCHITECTURES.iter().position(|&a| a == arch).expect("known architecture")]
}

pub fn container(data: &[u8]) {
    if let Ok(c) = Container::parse(data) {
        let again = Container::parse(&c.to_bytes()).expect("a parsed container re-serializes to a valid one");
        assert_eq!(again, c);
    }
}

pub fn range_coder(data: &[u8]) {
    let Some((&t, rest)) = data.split_first() else { return };
    static TABLES: OnceLock<crate::entropy::GaussianConditional> = OnceLock::new();
    let g = TABLES.get_or_init(crate::entropy::GaussianConditional::new);
    let scale = ((t as i32) << 10) | t as i32;
    if let Ok(mut dec) = crate::entropy::SymbolDecoder::new(&rest[..rest.len() / 4 * 4]) {
        for _ in 0..4096 {
            if g.decode_one(scale, &mut dec).is_err() {
                break;
            }
        }
    }
}

fn small(c: &Container, frames: u64) -> bool {
    (c.header.width as u64) * (c.header.height as u64) * frames <= MAX_FUZZ_PIXELS
}

pub fn image_decode(data: &[u8]) {
    let Some((&a, rest)) = data.split_first() else { return };
    let codec = tiny_codec(ARCHITECTURES[a as usize % ARCHITECTURES.len()]);
    let Ok(mut c) = Container::parse_ignoring_checksum(rest) else { return };
    if c.header.kind != Kind::Image || !small(&c, 1) {
        return;
    }
    c.header.codec = codec.name.clone();
    c.header.weights_digest = codec.digest()[..8].try_into().unwrap();
    let _ = codec.decode(&c);
}

pub fn nerv_decode(data: &[u8]) {
    let Ok(mut c) = Container::parse_ignoring_checksum(data) else { return };
    c.header.kind = Kind::Video;
    c.header.codec = crate::nerv::CODEC_NAME.into();
    c.header.weights_digest = crate::nerv::format_digest();
    let Ok(info) = crate::nerv::stream_info(&c) else { return };
    if !small(&c, info.frames as u64) || info.config.parameters() > 200_000 {
        return;
    }
    let _ = crate::nerv::decode(&c, None, &burn::prelude::Device::flex());
}

pub fn overfit_decode(data: &[u8]) {
    let Ok(mut c) = Container::parse_ignoring_checksum(data) else { return };
    c.header.kind = Kind::Image;
    c.header.codec = crate::overfit::CODEC_NAME.into();
    if !small(&c, 1) {
        return;
    }
    let _ = crate::overfit::decode(&c, &burn::prelude::Device::flex());
}

pub fn stem_decode(data: &[u8]) {
    let codec = tiny_codec(Architecture::Stem);
    let Ok((mut c, _)) = Container::parse_lenient(data) else { return };
    c.header.kind = Kind::Video;
    c.header.codec = codec.name.clone();
    c.header.weights_digest = codec.digest()[..8].try_into().unwrap();
    let Ok(info) = crate::stem::stream_info(&c) else { return };
    if !small(&c, info.frames as u64) {
        return;
    }
    for conceal in [false, true] {
        let _ = crate::stem::decode(codec, &c, None, conceal, &mut |_, _| Ok(()));
    }
}

pub fn y4m(data: &[u8]) {
    let _ = crate::video::Video::read_y4m(&mut &data[..], 64);
}

pub fn image_input(data: &[u8]) {
    if let Ok(img) = crate::io::decode_image_within(data, MAX_FUZZ_PIXELS / 4) {
        assert!(img.width() as u64 * img.height() as u64 <= MAX_FUZZ_PIXELS / 4, "decoded past the limit");
    }
}

#[cfg(feature = "ffmpeg")]
pub fn video_demux(data: &[u8]) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    // ffmpeg reads paths, so each input goes through a file of its own (tests run in threads).
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!("ncodec-fuzz-demux-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
    if std::fs::write(&path, data).is_ok() {
        let _ = crate::video::anchors::decode_file_within(&path, 4, MAX_FUZZ_PIXELS / 4);
    }
    let _ = std::fs::remove_file(&path);
}

/// Valid inputs for every target, to seed the corpora: streams of each tiny image codec at
/// two sizes and qualities, a short nerv stream, a Y4M clip.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = vec![];
    for (i, &arch) in ARCHITECTURES.iter().enumerate() {
        for (w, h, q) in [(16, 16, 1), (40, 24, 3)] {
            let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 6) as u8, (y * 9) as u8, ((x + y) * 3) as u8]));
            let bytes = tiny_codec(arch).encode(&img, q).expect("tiny codec encodes");
            out.push(("container", bytes.clone()));
            out.push(("image_decode", [vec![i as u8], bytes].concat()));
        }
    }
    let frames: Vec<image::RgbImage> = (0..2).map(|t| image::RgbImage::from_fn(24, 16, |x, y| image::Rgb([(x * 9 + t * 30) as u8, (y * 14) as u8, 90]))).collect();
    let video = crate::video::Video::from_rgb(&frames, (25, 1)).expect("frames");
    let opts = crate::nerv::FitOptions {
        config: crate::nerv::NervConfig::with_c0(16, 2, 2, 8, 1.4),
        group: 1,
        epochs: 1,
        warm_epochs: 1,
        batch: 4,
        lr: 1e-3,
        warm_lr_scale: 1.0,
        weight_bits: 8,
        embed_bits: 8,
        qat_fraction: 0.5,
        warm_start: true,
        seed: 1,
    };
    let (nerv, _) = crate::nerv::encode(&video, 1, &opts, &burn::prelude::Device::flex(), &mut |_| {}).expect("tiny nerv encodes");
    out.push(("container", nerv.clone()));
    out.push(("nerv_decode", nerv));
    let stem = crate::stem::encode(tiny_codec(Architecture::Stem), &video, 2, 1, &mut |_, _| {}).expect("tiny stem encodes");
    out.push(("stem_decode", stem.clone()));
    let three = crate::video::Video::from_rgb(&[frames.clone(), frames[..1].to_vec()].concat(), (25, 1)).expect("frames");
    out.push(("stem_decode", crate::stem::encode(tiny_codec(Architecture::Stem), &three, 1, 2, &mut |_, _| {}).expect("tiny stem encodes")));
    out.push(("y4m", video.to_y4m()));
    let opts =
        crate::overfit::FitOptions { arch: crate::overfit::Architecture { levels: 3, arm_hidden: 4, synthesis_width: 4 }, lambda: 0.01, steps: 3, lr: 1e-2, seed: 1, candidates: 1, coarse_steps: 0 };
    let overfit = crate::overfit::encode(&frames[0], 2, &opts, &burn::prelude::Device::flex(), &mut |_| {}).expect("tiny overfit encodes");
    out.push(("container", overfit.bytes.clone()));
    out.push(("overfit_decode", overfit.bytes));
    let img = image::RgbImage::from_fn(24, 16, |x, y| image::Rgb([(x * 9) as u8, (y * 14) as u8, 90]));
    for format in [image::ImageFormat::Png, image::ImageFormat::Jpeg, image::ImageFormat::Bmp, image::ImageFormat::Tiff, image::ImageFormat::Pnm, image::ImageFormat::WebP] {
        let mut bytes = vec![];
        img.write_to(&mut std::io::Cursor::new(&mut bytes), format).expect("image encodes");
        out.push(("image_input", bytes));
    }
    #[cfg(feature = "ffmpeg")]
    for ext in ["mp4", "mkv", "avi"] {
        out.push(("video_demux", muxed(&video, ext)));
    }
    out.push(("range_coder", (0u8..=255).cycle().take(301).collect()));
    out
}

/// `video` in an x264 stream muxed as `ext`, read back as bytes.
#[cfg(feature = "ffmpeg")]
fn muxed(video: &crate::video::Video, ext: &str) -> Vec<u8> {
    use crate::video::anchors;
    let dir = tempfile::tempdir().expect("temporary folder");
    let path = dir.path().join(format!("seed.{ext}"));
    let (enc, packets) = anchors::encode_with(video, "libx264", anchors::Rate::Crf(30), matches!(ext, "mp4" | "mkv")).expect("x264 encodes");
    anchors::mux(&path, &enc, packets).expect("muxes");
    std::fs::read(&path).expect("muxed file")
}
