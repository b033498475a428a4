//! Rate-distortion measurement from real bitstream bytes, for ncodec and for the classical
//! anchors, on the same images in one run.
//!
//! ```text
//!  images ──► for each codec, each setting:  encode ──► bytes ──► decode ──► 8-bit RGB
//!                                               │                            │
//!                                     bpp = 8·len/pixels        PSNR-RGB, PSNR-Y/YUV, MS-SSIM
//!  rows (per image) ──► summarize (per-setting means over images) ──► report (JSON/CSV/SVG/MD)
//! ```
//! Means are per-image averages (CompressAI's convention). With `timing`, images run one after
//! another so encode/decode times are not inflated by contention; without it they run in
//! parallel (rayon) and the times are only indicative.

#[cfg(feature = "anchors")]
pub mod anchors;
#[cfg(not(feature = "anchors"))]
#[path = "no_anchors.rs"]
pub mod anchors;
pub mod journal;
pub mod report;

use std::path::PathBuf;
use std::time::Instant;

use image::RgbImage;
use rayon::prelude::*;
use serde::Serialize;

use crate::codec::Codec;
use crate::container::Container;
use crate::error::Result;
use crate::metrics::{ms_ssim, psnr, psnr_yuv};

/// Anything the harness can sweep: a codec with an integer rate setting (ncodec quality level,
/// JPEG/WebP/AVIF quality), lowest rate first.
pub trait RdCodec: Send + Sync {
    /// Short name for file names and legends.
    fn name(&self) -> String;
    /// Library, version and settings, written into the results.
    fn description(&self) -> String;
    /// Settings swept by default.
    fn settings(&self) -> Vec<u32>;
    fn encode(&self, img: &RgbImage, setting: u32) -> Result<Vec<u8>>;
    fn decode(&self, bytes: &[u8]) -> Result<RgbImage>;
    /// Decodes what `encode(_, setting)` made (for codecs whose streams need the setting).
    fn decode_setting(&self, bytes: &[u8], _setting: u32) -> Result<RgbImage> {
        self.decode(bytes)
    }
}

/// An ncodec model from the zoo (or a weight file) under the harness's interface.
pub struct Ncodec {
    pub name: String,
    pub codec: Codec,
    /// Encode-time latent refinement steps (0: plain encoder).
    pub refine: usize,
}

impl RdCodec for Ncodec {
    fn name(&self) -> String {
        format!("ncodec-{}", self.name)
    }
    fn description(&self) -> String {
        let refine = match self.refine {
            0 => String::new(),
            n => format!(", encoder latent refinement {n} steps"),
        };
        format!("ncodec {} (weights {}), quality 1..{}{refine}", self.name, crate::codec::hex(&self.codec.digest()[..8]), self.codec.qualities())
    }
    fn settings(&self) -> Vec<u32> {
        (1..=self.codec.qualities() as u32).collect()
    }
    fn encode(&self, img: &RgbImage, setting: u32) -> Result<Vec<u8>> {
        let q = u8::try_from(setting).map_err(|_| crate::Error::Unsupported(format!("quality {setting}")))?;
        self.codec.encode_refined(img, q, crate::refine::Refinement::steps(self.refine))
    }
    fn decode(&self, bytes: &[u8]) -> Result<RgbImage> {
        self.codec.decode(&Container::parse(bytes)?)
    }
}

/// The overfitted codec: every encode fits a network to the image (minutes per image).
pub struct Overfit {
    pub preset: String,
    pub opts: crate::overfit::FitOptions,
    pub device: burn::prelude::Device,
}

impl RdCodec for Overfit {
    fn name(&self) -> String {
        format!("ncodec-overfit-{}", self.preset)
    }
    fn description(&self) -> String {
        let a = &self.opts.arch;
        format!(
            "ncodec overfit, preset {} ({} fitting steps{}, best of {} initialisations, {} levels, ARM {} / synthesis {} wide, {:.0} MAC/pixel), quality 1..{}",
            self.preset,
            self.opts.steps,
            self.opts.half_resolution_note(),
            self.opts.candidates,
            a.levels,
            a.arm_hidden,
            a.synthesis_width,
            a.macs_per_pixel(),
            crate::overfit::LAMBDAS.len()
        )
    }
    fn settings(&self) -> Vec<u32> {
        (1..=crate::overfit::LAMBDAS.len() as u32).collect()
    }
    fn encode(&self, img: &RgbImage, setting: u32) -> Result<Vec<u8>> {
        let q = u8::try_from(setting).map_err(|_| crate::Error::Unsupported(format!("quality {setting}")))?;
        let opts = crate::overfit::FitOptions { lambda: crate::overfit::Preset::lambda(q)?, ..self.opts.clone() };
        Ok(crate::overfit::encode(img, q, &opts, &self.device, &mut |_| {})?.bytes)
    }
    fn decode(&self, bytes: &[u8]) -> Result<RgbImage> {
        crate::overfit::decode(&Container::parse(bytes)?, &self.device)
    }
}

/// Measurement only: a gain-unit codec pushed below its lowest trained rate, quality 1's gain
/// scaled by one factor per setting (setting i uses `codecs[i - 1]`).
pub struct Extrapolated {
    pub name: String,
    pub codecs: Vec<(f64, Codec)>,
}

impl Extrapolated {
    fn get(&self, setting: u32) -> Result<&Codec> {
        let i = (setting as usize).checked_sub(1).filter(|&i| i < self.codecs.len());
        Ok(&self.codecs[i.ok_or_else(|| crate::Error::Unsupported(format!("setting {setting}")))?].1)
    }
}

impl RdCodec for Extrapolated {
    fn name(&self) -> String {
        format!("ncodec-{}-extrapolated", self.name)
    }
    fn description(&self) -> String {
        let f: Vec<String> = self.codecs.iter().map(|(f, _)| format!("{f}")).collect();
        format!("ncodec {} at quality 1 with its gain scaled by {} (below the trained range; measurement only)", self.name, f.join(", "))
    }
    fn settings(&self) -> Vec<u32> {
        (1..=self.codecs.len() as u32).collect()
    }
    fn encode(&self, img: &RgbImage, setting: u32) -> Result<Vec<u8>> {
        self.get(setting)?.encode(img, 1)
    }
    fn decode(&self, _bytes: &[u8]) -> Result<RgbImage> {
        Err(crate::Error::Unsupported(format!("{}: the stream does not say its gain factor", self.name())))
    }
    fn decode_setting(&self, bytes: &[u8], setting: u32) -> Result<RgbImage> {
        self.get(setting)?.decode(&Container::parse(bytes)?)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub image: String,
    pub setting: u32,
    pub bytes: usize,
    pub bpp: f64,
    pub psnr: f64,
    pub psnr_y: f64,
    pub psnr_yuv: f64,
    /// NaN for images under `MS_SSIM_MIN_SIDE` pixels a side (the 5-scale window does not fit).
    pub ms_ssim: f64,
    pub encode_s: f64,
    pub decode_s: f64,
}

/// Per-setting means over images.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub setting: u32,
    pub bpp: f64,
    pub psnr: f64,
    pub psnr_y: f64,
    pub psnr_yuv: f64,
    pub ms_ssim: f64,
    pub encode_s: f64,
    pub decode_s: f64,
}

impl Point {
    /// MS-SSIM on the dB scale used in plots: −10·log10(1 − MS-SSIM).
    pub fn ms_ssim_db(&self) -> f64 {
        -10.0 * (1.0 - self.ms_ssim).log10()
    }
}

/// How to run an evaluation.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Serial, uncontended runs so times are meaningful.
    pub timing: bool,
}

/// Measures one image at one setting.
pub fn measure(codec: &dyn RdCodec, name: &str, img: &RgbImage, setting: u32) -> Result<Row> {
    let t = Instant::now();
    let bytes = codec.encode(img, setting)?;
    let encode_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let out = codec.decode_setting(&bytes, setting)?;
    let decode_s = t.elapsed().as_secs_f64();
    if out.dimensions() != img.dimensions() {
        return Err(crate::Error::Codec(format!("{}: decoded {:?}, expected {:?}", codec.name(), out.dimensions(), img.dimensions())));
    }
    let (psnr_y, psnr_yuv) = psnr_yuv(img, &out);
    Ok(Row {
        image: name.to_string(),
        setting,
        bytes: bytes.len(),
        bpp: bytes.len() as f64 * 8.0 / (img.width() as f64 * img.height() as f64),
        psnr: psnr(img, &out),
        psnr_y,
        psnr_yuv,
        ms_ssim: ms_ssim(img, &out),
        encode_s,
        decode_s,
    })
}

/// Runs `codec` at every setting on every image; `progress` is called once per finished row.
pub fn evaluate(codec: &dyn RdCodec, images: &[(String, RgbImage)], settings: &[u32], opts: Options, progress: &(dyn Fn(&Row) + Sync)) -> Result<Vec<Row>> {
    evaluate_resuming(codec, images, settings, opts, &[], progress)
}

/// [`evaluate`], taking the rows in `done` (an interrupted run's, see [`journal`]) as measured:
/// only the (image, setting) pairs they lack are encoded; `progress` sees only those.
pub fn evaluate_resuming(codec: &dyn RdCodec, images: &[(String, RgbImage)], settings: &[u32], opts: Options, done: &[Row], progress: &(dyn Fn(&Row) + Sync)) -> Result<Vec<Row>> {
    let jobs: Vec<(usize, u32)> = (0..images.len()).flat_map(|i| settings.iter().map(move |&s| (i, s))).collect();
    let run = |&(i, s): &(usize, u32)| -> Result<Row> {
        if let Some(row) = done.iter().find(|r| r.image == images[i].0 && r.setting == s) {
            return Ok(row.clone());
        }
        let row = measure(codec, &images[i].0, &images[i].1, s)?;
        progress(&row);
        Ok(row)
    };
    let rows: Result<Vec<Row>> = if opts.timing { jobs.iter().map(run).collect() } else { jobs.par_iter().map(run).collect() };
    rows
}

/// Loads images once (in the given order), named by file name.
pub fn load_images(paths: &[PathBuf]) -> Result<Vec<(String, RgbImage)>> {
    // Indexed parallel iterators keep their order when collected.
    paths.par_iter().map(|p| Ok((p.file_name().unwrap_or_default().to_string_lossy().into_owned(), crate::io::load_image(p)?))).collect()
}

pub fn summarize(rows: &[Row]) -> Vec<Point> {
    let mut settings: Vec<u32> = rows.iter().map(|r| r.setting).collect();
    settings.sort();
    settings.dedup();
    settings
        .into_iter()
        .map(|s| {
            let sel: Vec<&Row> = rows.iter().filter(|r| r.setting == s).collect();
            let mean = |f: &dyn Fn(&Row) -> f64| sel.iter().map(|r| f(r)).sum::<f64>() / sel.len() as f64;
            Point {
                setting: s,
                bpp: mean(&|r| r.bpp),
                psnr: mean(&|r| r.psnr),
                psnr_y: mean(&|r| r.psnr_y),
                psnr_yuv: mean(&|r| r.psnr_yuv),
                ms_ssim: mean(&|r| r.ms_ssim),
                encode_s: mean(&|r| r.encode_s),
                decode_s: mean(&|r| r.decode_s),
            }
        })
        .collect()
}

/// Runs a video anchor at every setting on one sequence; one row per setting, with
/// bpp = bits / (W·H·frames) and per-frame metric means (see [`crate::video::quality`]).
pub fn evaluate_video(anchor: &crate::video::anchors::VideoAnchor, name: &str, video: &crate::video::Video, settings: &[u32], progress: &(dyn Fn(&Row) + Sync)) -> Result<Vec<Row>> {
    let mut rows = vec![];
    for &s in settings {
        let t = Instant::now();
        let packets = anchor.encode(video, s)?;
        let encode_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let dec = anchor.decode(&packets, video.width, video.height, video.fps)?;
        let decode_s = t.elapsed().as_secs_f64();
        let bytes: usize = packets.iter().map(Vec::len).sum();
        let (psnr, psnr_y, psnr_yuv, ms_ssim) = crate::video::quality(video, &dec)?;
        let row =
            Row { image: name.to_string(), setting: s, bytes, bpp: bytes as f64 * 8.0 / (video.width * video.height * video.frames.len()) as f64, psnr, psnr_y, psnr_yuv, ms_ssim, encode_s, decode_s };
        progress(&row);
        rows.push(row);
    }
    Ok(rows)
}

/// Runs the `stem` video codec at each quality with intra period `gop` on one sequence, through
/// real bytes: encode, parse, decode frame by frame, measure (as [`evaluate_nerv`]).
pub fn evaluate_stem(codec: &crate::Codec, name: &str, video: &crate::video::Video, qualities: &[u32], gop: usize, progress: &(dyn Fn(&Row) + Sync)) -> Result<Vec<Row>> {
    let mut rows = vec![];
    for &q in qualities {
        let q = u8::try_from(q).map_err(|_| crate::Error::Unsupported(format!("stem quality {q}")))?;
        let t = Instant::now();
        let bytes = crate::stem::encode(codec, video, q, gop, &mut |_, _| {})?;
        let encode_s = t.elapsed().as_secs_f64();
        let mut row = decode_video_to(codec, video, &bytes, None)?;
        (row.image, row.setting, row.encode_s) = (name.to_string(), q as u32, encode_s);
        progress(&row);
        rows.push(row);
    }
    Ok(rows)
}

/// Decodes a video stream of `video` frame by frame with `decoder` (into `output` when given),
/// measuring every frame against the source as it goes: a [`Row`] of the means (rate from the
/// bytes, decode time without the measuring and writing).
pub fn decode_video_to(decoder: &dyn crate::registry::VideoDecoder, video: &crate::video::Video, bytes: &[u8], output: Option<(&std::path::Path, &crate::video::write::OutputOptions)>) -> Result<Row> {
    let c = Container::parse(bytes)?;
    let info = decoder.info(&c)?;
    if (info.width as usize, info.height as usize, info.frames) != (video.width, video.height, video.frames.len()) {
        return Err(crate::Error::Codec(format!("the stream holds {}x{}x{} frames, the source {}x{}x{}", info.width, info.height, info.frames, video.width, video.height, video.frames.len())));
    }
    let mut writer = output.map(|(p, o)| crate::video::write::VideoWriter::create(p, info.fps, o)).transpose()?;
    let mut per = vec![];
    let t = Instant::now();
    let mut decode_s = 0.0;
    decoder.decode(&c, None, false, &mut |k, img| {
        decode_s += t.elapsed().as_secs_f64();
        per.push(crate::video::frame_quality(video, k, &crate::video::Frame::from_rgb(img), img));
        if let Some(w) = &mut writer {
            w.push(img)?;
        }
        decode_s -= t.elapsed().as_secs_f64();
        Ok(())
    })?;
    decode_s += t.elapsed().as_secs_f64();
    if let Some(w) = writer {
        w.finish()?;
    }
    if per.len() != video.frames.len() {
        return Err(crate::Error::Codec(format!("decoded {} frames of {}", per.len(), video.frames.len())));
    }
    let (psnr, psnr_y, psnr_yuv, ms_ssim) = crate::video::mean_of(&per);
    let row = Row {
        image: String::new(),
        setting: c.header.quality as u32,
        bytes: bytes.len(),
        bpp: bytes.len() as f64 * 8.0 / (video.width * video.height * video.frames.len()) as f64,
        psnr,
        psnr_y,
        psnr_yuv,
        ms_ssim,
        encode_s: 0.0,
        decode_s,
    };
    Ok(row)
}

/// Runs the `nerv` video codec at each quality on one sequence, through real bytes: fit,
/// write the container, parse it back, decode, measure (RGB metrics on the RGB frames the
/// decoder returns; YUV metrics after the writers' BT.709 conversion).
pub fn evaluate_nerv(args: &crate::cli::NervArgs, name: &str, video: &crate::video::Video, qualities: &[u32], device: &burn::prelude::Device, progress: &(dyn Fn(&Row) + Sync)) -> Result<Vec<Row>> {
    let mut rows = vec![];
    for &q in qualities {
        let q = u8::try_from(q).map_err(|_| crate::Error::Unsupported(format!("nerv quality {q}")))?;
        // One fitting log per quality: <stem>-q<q>.csv.
        let mut args = args.clone();
        args.fit_log = args.fit_log.map(|p| p.with_file_name(format!("{}-q{q}.csv", p.file_stem().unwrap_or_default().to_string_lossy())));
        let enc = args.encode(video, q, device, true)?;
        let mut row = decode_video_to(&crate::registry::NervDecoder(device.clone()), video, &enc.bytes, None)?;
        (row.image, row.encode_s) = (name.to_string(), enc.seconds);
        progress(&row);
        rows.push(row);
    }
    Ok(rows)
}
