//! Shipping a trained checkpoint into the zoo: export fp16 weights, measure them on Kodak from
//! real streams, gate them against the shipped card, and write the new card.
//!
//! ```text
//! checkpoint ──export(fp16)──► hidden candidate beside codecs/<name>/weights.ncw
//!                                 │
//!                 Kodak (24 images, real .ncod bytes) ──► points
//!                                 │
//!            --if-better: BD-rate vs the shipped card ──► Kept (candidate deleted)
//!                                 │
//!            weights.ncw replaced, card.toml + kodak.json/.csv written ──► Shipped
//! ```

use std::path::{Path, PathBuf};

use burn::module::Module;

use crate::bench::{self, Point, RdCodec};
use crate::codec::{Card, CodebookUsage, Codec, RatePoint, Training, VideoPoint, hex, zoo_dir};
use crate::error::{Error, Result};
use crate::models::ImageModel;
use crate::train::{self, TrainState};
use crate::weights::Precision;

/// A video bench's results to record in a video codec's card.
#[derive(Debug, Clone)]
pub struct VideoResults {
    /// The clip that `ncodec bench --dataset video` ran on.
    pub clip: PathBuf,
    /// Its `--out` folder (with `ncodec-stem.csv` and `ncodec-stem-intra.csv`).
    pub results: PathBuf,
    /// The intra period it ran with.
    pub gop: usize,
}

/// What to ship and what its card says.
#[derive(Debug, Clone)]
pub struct ShipOptions {
    pub ckpt_dir: PathBuf,
    /// Zoo name: `codecs/<name>/` (under [`zoo_dir`]).
    pub name: String,
    /// The Kodak folder (checked against the built-in manifest).
    pub kodak: PathBuf,
    pub description: String,
    /// The command(s) that trained the checkpoint.
    pub command: String,
    pub lr_schedule: String,
    /// Where the weights were trained over their whole history; `None`: the checkpoint's
    /// own line (its last run only).
    pub hardware: Option<String>,
    /// mlic: ship with latent residual prediction switched off.
    pub no_lrp: bool,
    pub video: Option<VideoResults>,
    /// Replace the shipped weights only when the new ones measure at least this many percent
    /// better (Kodak BD-rate, PSNR-RGB, against the shipped card's points).
    pub if_better: Option<f64>,
}

/// What [`ship`] did.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Written to the zoo; `bd_rate` against the card it replaced, when the gate was asked for.
    Shipped { step: usize, dir: PathBuf, points: Vec<Point>, bd_rate: Option<f64> },
    /// The gate said no: the shipped weights and card are untouched.
    Kept { bd_rate: f64, shipped_step: usize, points: Vec<Point> },
}

/// A checkpoint's model, optionally with LRP switched off.
pub fn load_for_export(ckpt_dir: &Path, no_lrp: bool) -> Result<(TrainState, ImageModel)> {
    let (state, model) = train::load_checkpoint(ckpt_dir, &crate::backend::device())?;
    Ok((state, if no_lrp { model.without_lrp() } else { model }))
}

/// Exports, measures, gates and ships; `progress` sees each Kodak image as it is measured.
pub fn ship(opts: &ShipOptions, progress: &(dyn Fn(&bench::Row) + Sync)) -> Result<Outcome> {
    // The card is the only record of how shipped weights were made: refuse a blank line (a
    // script's failed substitution once passed an empty --lr-schedule) before anything is written.
    let texts = [("--description", &opts.description), ("--command", &opts.command), ("--lr-schedule", &opts.lr_schedule)];
    if let Some((flag, _)) = texts.into_iter().chain(opts.hardware.as_ref().map(|h| ("--hardware", h))).find(|(_, text)| text.trim().is_empty()) {
        return Err(Error::Unsupported(format!("{flag} is empty: the card records how the weights were made")));
    }
    let (state, model) = load_for_export(&opts.ckpt_dir, opts.no_lrp)?;
    let dir = zoo_dir().join(&opts.name);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let weights = dir.join("weights.ncw");
    // Measured from a hidden file beside the shipped one, which stays until the new weights
    // have passed the gate; dropped (deleted) on any failure.
    let candidate = crate::io::temp_sibling(&weights, ".ncw")?;
    let digest = train::export(&opts.ckpt_dir, &model, &state, candidate.path(), Precision::F16)?;
    let images = bench::load_images(&crate::manifest::Manifest::builtin("kodak")?.verify(&opts.kodak)?)?;
    let codec = bench::Ncodec { name: opts.name.clone(), codec: Codec::from_weights(&opts.name, candidate.path())?, refine: 0 };
    let rows = bench::evaluate(&codec, &images, &codec.settings(), bench::Options { timing: true }, progress)?;
    let points = bench::summarize(&rows);
    let mut bd = None;
    if let Some(pct) = opts.if_better
        && let Some(shipped) = Card::load(&dir.join("card.toml")).ok().filter(|c| !c.kodak.is_empty())
    {
        let old: Vec<(f64, f64)> = shipped.kodak.iter().map(|p| (p.bpp, p.psnr)).collect();
        let new: Vec<(f64, f64)> = points.iter().map(|p| (p.bpp, p.psnr)).collect();
        let rate = crate::bdrate::bd_rate(&old, &new)?;
        if rate > -pct {
            return Ok(Outcome::Kept { bd_rate: rate, shipped_step: shipped.training.steps, points });
        }
        bd = Some(rate);
    }
    crate::io::set_output_permissions(candidate.path(), &weights, false)?;
    candidate.persist(&weights).map_err(|e| Error::io(&weights, e.error))?;
    let card = Card {
        name: opts.name.clone(),
        architecture: architecture_line(&state),
        description: opts.description.clone(),
        weights: "weights.ncw".into(),
        weights_sha256: hex(&digest),
        parameters: model.num_params(),
        training: Training {
            data: format!("{} ({} images; Kodak never used)", state.data, state.images),
            images: state.images,
            steps: state.step,
            batch: state.batch,
            crop: state.crop,
            learning_rate: opts.lr_schedule.clone(),
            lambdas: state.config.lambdas.clone(),
            hours: (state.seconds / 360.0).round() / 10.0,
            hardware: opts.hardware.clone().unwrap_or_else(|| state.hardware.clone()),
            command: opts.command.clone(),
        },
        kodak: points.iter().map(|p| rate_point(p, &state.config.lambdas)).collect(),
        codebook_usage: codebook_usage(&codec.codec, &images)?,
        video: match &opts.video {
            Some(v) => video_points(v)?,
            None => vec![],
        },
    };
    let text = format!(
        "# Codec card: generated by `ncodec ship`; Kodak numbers are means over the 24 images of\n# {}, measured from real .ncod bytes (bpp = file bytes x 8 / pixels), RGB 8-bit output.\n{}",
        opts.kodak.display(),
        toml::to_string(&card).map_err(|e| Error::Codec(e.to_string()))?
    );
    crate::io::write_atomic(&dir.join("card.toml"), text.as_bytes())?;
    bench::report::write_codec(&dir, "kodak", &format!("ncodec {} on Kodak", opts.name), &rows)?;
    Ok(Outcome::Shipped { step: state.step, dir, points, bd_rate: bd })
}

/// The card's one-line architecture.
fn architecture_line(state: &TrainState) -> String {
    let c = &state.config;
    match &c.vq {
        Some(vq) => format!(
            "{} (N={}, M={}), residual VQ: {} levels x {} codes; presets (levels, level-0 codes): {}",
            c.architecture.name(),
            c.n,
            c.m,
            vq.levels,
            vq.codes,
            vq.presets.iter().map(|p| format!("({}, {})", p.levels, p.codes)).collect::<Vec<_>>().join(" ")
        ),
        None => format!("{} (N={}, M={}), {}, {} gain-unit quality levels", c.architecture.name(), c.n, c.m, c.transforms.name(), c.qualities()),
    }
}

/// A Kodak point as the card records it (rounded to what the measurement can tell apart).
fn rate_point(p: &Point, lambdas: &[f64]) -> RatePoint {
    RatePoint {
        quality: p.setting as u8,
        lambda: lambdas.get(p.setting as usize - 1).copied().unwrap_or(0.0),
        bpp: round(p.bpp, 1e4),
        psnr: round(p.psnr, 1e3),
        ms_ssim: round(p.ms_ssim, 1e5),
        encode_s: Some(round(p.encode_s, 1e3)),
        decode_s: Some(round(p.decode_s, 1e3)),
    }
}

fn round(v: f64, scale: f64) -> f64 {
    (v * scale).round() / scale
}

/// Video codecs: the stem curves a video bench wrote (intra period `gop`, and all intra), one
/// point per quality, times per frame.
fn video_points(v: &VideoResults) -> Result<Vec<VideoPoint>> {
    let frames = crate::video::Video::open(&v.clip, None, None)?.frames.len();
    let clip = v.clip.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let mut out = vec![];
    for (curve, gop) in [("ncodec-stem", crate::stem::intra_period(v.gop, frames)), ("ncodec-stem-intra", 1)] {
        for r in bench::report::read_codec(&v.results, curve)? {
            out.push(VideoPoint {
                clip: clip.clone(),
                quality: r.setting as u8,
                gop,
                bpp: round(r.bpp, 1e4),
                psnr_rgb: round(r.psnr, 1e3),
                psnr_yuv: round(r.psnr_yuv, 1e3),
                ms_ssim: round(r.ms_ssim, 1e5),
                encode_s: round(r.encode_s / frames as f64, 1e3),
                decode_s: round(r.decode_s / frames as f64, 1e3),
            });
        }
    }
    Ok(out)
}

/// VQ codecs: per codebook, how Kodak uses it (perplexity, unused codes): the full levels at
/// the best preset, and each reduced level-0 codebook at its preset. `None` for other codecs.
pub fn codebook_usage(codec: &Codec, images: &[(String, image::RgbImage)]) -> Result<Option<Vec<CodebookUsage>>> {
    let Some(cfg) = codec.vq_config() else { return Ok(None) };
    let mut out = vec![];
    for (q, preset) in cfg.presets.iter().enumerate() {
        let best = q + 1 == cfg.presets.len();
        if preset.codes == cfg.codes && !best {
            continue;
        }
        let mut per_level: Vec<Vec<u32>> = vec![vec![]; preset.levels];
        for im in images {
            for (l, ks) in codec.vq_indices(&im.1, q as u8 + 1)?.into_iter().enumerate() {
                per_level[l].extend(ks);
            }
        }
        for (l, ks) in per_level.iter().enumerate() {
            let codes = if l == 0 { preset.codes } else { cfg.codes };
            let (perplexity, unused) = crate::models::vq::usage(ks, codes);
            out.push(CodebookUsage { quality: q as u8 + 1, level: l, codes, perplexity: round(perplexity, 10.0), unused });
        }
    }
    Ok(Some(out))
}
