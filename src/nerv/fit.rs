//! Encoding = fitting: one network per group of frames, each group started from the
//! previous group's weights (NIRVANA), quantization-aware at the end of every group's fit.
//!
//! ```text
//!  frames ──tiles (T×T, edge-padded, padding masked out of the loss)──► group g
//!  net_g = net_{g-1} (warm start) ──Adam, cosine lr, random tile batches──► float fit
//!        ──last qat_fraction of the steps: weights and embeddings fake-quantized──► QAT
//!        ──round to steps (frozen after group 0, so deltas to group g-1 stay small)──► QuantGroup
//!        ──stream::encode_group──► section bytes ──decode like a decoder──► PSNR
//! ```
//! Memory grows with the batch of tiles, not with the frame size.

use std::time::Instant;

use burn::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::Int;
use image::RgbImage;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::model::{NervConfig, NervDecoder, NervNet};
use super::stream::{QuantGroup, StreamInfo, decode_group, encode_group};
use crate::error::Result;
use crate::nn::{from_host, to_host};

#[derive(Debug, Clone)]
pub struct FitOptions {
    pub config: NervConfig,
    /// Frames per group.
    pub group: usize,
    /// Passes over the first group's tiles (and every group's when not warm-starting).
    pub epochs: usize,
    /// Passes over each later group's tiles when warm-starting.
    pub warm_epochs: usize,
    /// Tiles per step.
    pub batch: usize,
    pub lr: f64,
    /// Peak learning rate of warm-started groups, as a fraction of `lr`: they start close to
    /// a solution, and smaller moves keep the weight deltas cheap to code.
    pub warm_lr_scale: f64,
    pub weight_bits: u32,
    pub embed_bits: u32,
    /// Final share of each group's steps run with fake quantization.
    pub qat_fraction: f64,
    /// Start group g from group g-1's network (NIRVANA) instead of from scratch.
    pub warm_start: bool,
    pub seed: u64,
}

/// What the fit of one group measured.
#[derive(Debug, Clone)]
pub struct GroupReport {
    pub group: usize,
    pub frames: usize,
    pub epochs: usize,
    pub bytes: usize,
    /// RGB PSNR of the group as the decoder reconstructs it (mean over frames).
    pub psnr: f64,
    pub seconds: f64,
    /// (epoch, seconds since the group started, training PSNR of that epoch).
    pub curve: Vec<(usize, f64, f64)>,
}

/// Progress of a fit, for a progress bar.
pub enum Event<'a> {
    Epoch { group: usize, epoch: usize, epochs: usize, psnr: f64 },
    Group(&'a GroupReport),
}

/// Tiles of a run of frames, edge-padded, with the mask of real pixels.
pub struct Tiles {
    pub data: Vec<f32>,
    pub mask: Vec<f32>,
    pub count: usize,
}

pub fn tile_frames(frames: &[RgbImage], info: &StreamInfo) -> Tiles {
    let t = info.config.tile;
    let (rows, cols) = info.tile_grid();
    let count = frames.len() * rows * cols;
    let mut data = vec![0f32; count * 3 * t * t];
    let mut mask = vec![0f32; count * t * t];
    for (f, img) in frames.iter().enumerate() {
        for (r, c) in (0..rows).flat_map(|r| (0..cols).map(move |c| (r, c))) {
            let n = (f * rows + r) * cols + c;
            for y in 0..t {
                for x in 0..t {
                    let (sx, sy) = (c * t + x, r * t + y);
                    let inside = sx < info.width && sy < info.height;
                    let p = img.get_pixel(sx.min(info.width - 1) as u32, sy.min(info.height - 1) as u32).0;
                    for ch in 0..3 {
                        data[((n * 3 + ch) * t + y) * t + x] = p[ch] as f32 / 255.0;
                    }
                    mask[(n * t + y) * t + x] = if inside { 1.0 } else { 0.0 };
                }
            }
        }
    }
    Tiles { data, mask, count }
}

/// Decoded tiles [frames·tiles, 3, T, T] → cropped 8-bit frames.
pub fn untile(out: &[f32], frames: usize, info: &StreamInfo) -> Vec<RgbImage> {
    let t = info.config.tile;
    let (rows, cols) = info.tile_grid();
    (0..frames)
        .map(|f| {
            RgbImage::from_fn(info.width as u32, info.height as u32, |x, y| {
                let (x, y) = (x as usize, y as usize);
                let n = (f * rows + y / t) * cols + x / t;
                let px = |ch: usize| (out[((n * 3 + ch) * t + y % t) * t + x % t] * 255.0).round().clamp(0.0, 255.0) as u8;
                image::Rgb([px(0), px(1), px(2)])
            })
        })
        .collect()
}

/// Runs a decoded group's network on frames `wanted` (indices within the group):
/// embeddings → frames. Tiles go through in batches so memory stays bounded whatever the
/// frame size.
pub fn synthesize(group: &QuantGroup, info: &StreamInfo, wanted: std::ops::Range<usize>, device: &Device) -> Vec<RgbImage> {
    let cfg = &info.config;
    let decoder = NervDecoder::from_tensors(cfg, &group.weights_f32(), device);
    let g = cfg.grid();
    let per_tile = cfg.embed_dim * g * g;
    let embeds = group.embeds_f32(g * g);
    let per_frame = info.tiles_per_frame();
    let (first, tiles) = (wanted.start * per_frame, wanted.len() * per_frame);
    let chunk = (1 << 22) / (3 * cfg.tile * cfg.tile).max(1) + 1;
    let mut out = Vec::with_capacity(tiles * 3 * cfg.tile * cfg.tile);
    for start in (first..first + tiles).step_by(chunk) {
        let n = chunk.min(first + tiles - start);
        let e = from_host(embeds[start * per_tile..(start + n) * per_tile].to_vec(), [n, cfg.embed_dim, g, g], device);
        out.extend(to_host(decoder.forward(e, None)));
    }
    untile(&out, wanted.len(), info)
}

fn optimizer() -> ModuleOptimizer {
    AdamConfig::new().with_epsilon(1e-8).with_grad_clipping(Some(GradientClippingConfig::Norm(1.0))).init()
}

/// Per-tensor steps: the largest magnitude maps to the largest `bits`-bit level.
fn steps_for(tensors: &[Vec<f32>], bits: u32) -> Vec<f32> {
    let levels = ((1u32 << (bits - 1)) - 1) as f32;
    tensors.iter().map(|t| (t.iter().fold(0f32, |m, v| m.max(v.abs())) / levels).max(1e-8)).collect()
}

fn quantize(v: &[f32], step: f32) -> Vec<i32> {
    v.iter().map(|&x| (x / step).round() as i32).collect()
}

/// Per-channel fake quantization of embeddings [n, d, g, g] to `bits` (steps from the batch).
fn fake_quant_embeds(e: Tensor<4>, bits: u32) -> Tensor<4> {
    let levels = ((1u32 << (bits - 1)) - 1) as f64;
    let step = e.clone().detach().abs().max_dim(0).max_dim(2).max_dim(3).div_scalar(levels).clamp_min(1e-8);
    let q = (e.clone() / step.clone()).round() * step;
    e.clone() + (q - e).detach()
}

fn psnr_of_mse(mse: f64) -> f64 {
    10.0 * (1.0 / mse.max(1e-12)).log10()
}

/// Fits every group and writes the stream. Returns the container sections (header first)
/// and one report per group.
pub fn fit_video(frames: &[RgbImage], fps: (u32, u32), opts: &FitOptions, device: &Device, progress: &mut dyn FnMut(Event)) -> Result<(Vec<Vec<u8>>, Vec<GroupReport>)> {
    let (width, height) = (frames[0].width() as usize, frames[0].height() as usize);
    let info = StreamInfo { width, height, frames: frames.len(), fps, group: opts.group, config: opts.config.clone() };
    opts.config.check()?;
    let train_device = device.clone().autodiff();
    let mut sections = vec![info.to_bytes()];
    let mut reports = vec![];
    let mut net: Option<NervNet> = None;
    let mut frozen_steps: Option<Vec<f32>> = None;
    let mut prev: Option<QuantGroup> = None;
    let mut rng = StdRng::seed_from_u64(opts.seed);
    for g in 0..info.groups() {
        let range = info.group_frames(g);
        let n_frames = range.len();
        let start = Instant::now();
        let tiles = tile_frames(&frames[range], &info);
        let t = opts.config.tile;
        let x_all = from_host(tiles.data, [tiles.count, 3, t, t], &train_device);
        let m_all = from_host(tiles.mask, [tiles.count, 1, t, t], &train_device);
        let warm = opts.warm_start && net.is_some();
        let mut model = match net.take() {
            Some(n) if opts.warm_start => n,
            _ => NervNet::new(&opts.config, opts.seed, &train_device),
        };
        let epochs = if warm { opts.warm_epochs } else { opts.epochs }.max(1);
        let batch = opts.batch.clamp(1, tiles.count);
        let steps_per_epoch = tiles.count.div_ceil(batch);
        let total = epochs * steps_per_epoch;
        let qat_from = ((1.0 - opts.qat_fraction) * total as f64) as usize;
        let mut optim = optimizer();
        let mut curve = vec![];
        let mut step = 0usize;
        for epoch in 0..epochs {
            let mut order: Vec<usize> = (0..tiles.count).collect();
            order.shuffle(&mut rng);
            let (mut se, mut px) = (0f64, 0f64);
            for idx in order.chunks(batch) {
                let ids = Tensor::<1, Int>::from_ints(idx.iter().map(|&i| i as i64).collect::<Vec<_>>().as_slice(), &train_device);
                let x = x_all.clone().select(0, ids.clone());
                let m = m_all.clone().select(0, ids);
                let qat = step >= qat_from;
                let mut e = model.encoder.forward(x.clone());
                let steps = if qat {
                    e = fake_quant_embeds(e, opts.embed_bits);
                    Some(frozen_steps.clone().unwrap_or_else(|| steps_for(&model.decoder.tensors(), opts.weight_bits)))
                } else {
                    None
                };
                let x_hat = model.decoder.forward(e, steps.as_deref());
                let err = (x_hat - x).powi_scalar(2) * m.clone();
                let valid = to_host(m.sum())[0] as f64 * 3.0;
                let sum = err.sum();
                se += to_host(sum.clone().detach())[0] as f64;
                px += valid;
                let loss = sum.div_scalar(valid.max(1.0));
                // Cosine decay to 1 % of the rate; a short warm-up for fits from scratch.
                let progress_frac = step as f64 / total.max(1) as f64;
                let peak = if warm { opts.lr * opts.warm_lr_scale } else { opts.lr };
                let mut lr = peak * (0.01 + 0.99 * 0.5 * (1.0 + (std::f64::consts::PI * progress_frac).cos()));
                if !warm && step < 50 {
                    lr *= (step + 1) as f64 / 50.0;
                }
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                model = optim.step(lr, model, grads);
                step += 1;
            }
            let psnr = psnr_of_mse(se / px.max(1.0));
            curve.push((epoch + 1, start.elapsed().as_secs_f64(), psnr));
            progress(Event::Epoch { group: g, epoch: epoch + 1, epochs, psnr });
        }
        // Quantize: weight steps are frozen after the first group (deltas need equal steps).
        let weights = model.decoder.tensors();
        let steps = match (&frozen_steps, opts.warm_start) {
            (Some(s), true) => s.clone(),
            _ => steps_for(&weights, opts.weight_bits),
        };
        if opts.warm_start {
            frozen_steps = Some(steps.clone());
        }
        let embeds = to_host(model.encoder.forward(x_all.clone()).detach());
        let quant = quantize_group(&weights, &steps, &embeds, &opts.config, opts.embed_bits);
        let bytes = encode_group(&quant, prev.as_ref(), &info, n_frames)?;
        // Measure what a decoder gets from these bytes.
        let decoded = decode_group(&bytes, prev.as_ref(), &info, n_frames)?;
        let recon = synthesize(&decoded, &info, 0..n_frames, device);
        let psnr = info.group_frames(g).zip(&recon).map(|(i, r)| crate::metrics::psnr(&frames[i], r)).sum::<f64>() / n_frames as f64;
        let report = GroupReport { group: g, frames: n_frames, epochs, bytes: bytes.len(), psnr, seconds: start.elapsed().as_secs_f64(), curve };
        progress(Event::Group(&report));
        reports.push(report);
        sections.push(bytes);
        prev = Some(decoded);
        net = Some(model);
    }
    Ok((sections, reports))
}

fn quantize_group(weights: &[Vec<f32>], steps: &[f32], embeds: &[f32], cfg: &NervConfig, embed_bits: u32) -> QuantGroup {
    let d = cfg.embed_dim;
    let cells = cfg.grid().pow(2);
    let levels = ((1u32 << (embed_bits - 1)) - 1) as f32;
    let mut embed_steps = vec![0f32; d];
    for (i, &v) in embeds.iter().enumerate() {
        let c = (i / cells) % d;
        embed_steps[c] = embed_steps[c].max(v.abs());
    }
    embed_steps.iter_mut().for_each(|s| *s = (*s / levels).max(1e-8));
    QuantGroup {
        weights: weights.iter().zip(steps).map(|(w, &s)| quantize(w, s)).collect(),
        weight_steps: steps.to_vec(),
        embeds: embeds.iter().enumerate().map(|(i, &v)| (v / embed_steps[(i / cells) % d]).round() as i32).collect(),
        embed_steps,
    }
}
