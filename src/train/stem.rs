//! `ncodec train --codec stem`: trains the P-frame entropy model of the latent video codec on
//! short sequences, with the image model's transforms, hyperprior and intra context frozen.
//!
//! ```text
//!  photo ──synthetic motion (pan, zoom, a moving foreground patch, sensor noise)──► x_0 … x_{T−1}
//!        ──g_a (frozen, once: cached)──► y_0 … y_{T−1}
//!  per step, quality q per sequence:
//!    ŷ_0 = intra model (frozen)                          (what the decoder has for frame 0)
//!    ŷ_t = P-frame model(y_t | hyper_t, ŷ_{t−1})         t = 1 … T−1, ŷ_{t−1} the model's own
//!    loss = Σ_t bits(y_t) / pixels                       (error-propagation aware: each frame's
//!                                                          reference is the decoded previous one)
//! ```
//! Only the rate of P-frame latents is trained: the transforms are frozen, so distortion is the
//! image model's (ŷ differs only by where the quantization grid sits). The reference chain
//! keeps its gradient (straight-through rounding), so a frame learns to be a good reference.
//!
//! The sequences come from the training photos only: the one real clip with enough frames
//! (BasketballPass) is the evaluation clip and stays out of training.

use std::path::Path;
use std::time::Instant;

use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::Int;
use image::RgbImage;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::session::{self, TrainOptions, TrainState, Trainer, checkpoint, optimizer, resume_run, start_run};
use crate::data::TrainSet;
use crate::error::{Error, Result};
use crate::models::{Architecture, ImageModel, Y_STRIDE};
use crate::nn::{from_host, to_host};
use crate::weights;

/// Frames per training sequence (one intra frame, then P-frames).
pub const SEQUENCE_FRAMES: usize = 4;

/// Gain-free latents of synthetic sequences: `[sequence][frame]` → `[M][s][s]` (f16).
pub struct SequenceSet {
    latents: Vec<Vec<Vec<half::f16>>>,
    channels: usize,
    /// Latent side (crop / 16).
    side: usize,
}

/// How one synthetic sequence moves.
#[derive(Debug, Clone, Copy)]
struct Motion {
    /// Centre of frame 0 in the photo, velocity in pixels per frame, zoom per frame.
    centre: (f64, f64),
    velocity: (f64, f64),
    zoom: f64,
}

/// A foreground patch from another photo, moving on its own.
struct Foreground<'a> {
    photo: &'a RgbImage,
    /// Source corner in `photo`, side, position in frame 0, velocity.
    source: (usize, usize),
    side: usize,
    start: (f64, f64),
    velocity: (f64, f64),
}

/// Bilinear sample of `im` at (x, y), clamped to the image.
fn sample(im: &RgbImage, x: f64, y: f64, c: usize) -> f32 {
    let (w, h) = (im.width() as f64, im.height() as f64);
    let x = x.clamp(0.0, w - 1.0);
    let y = y.clamp(0.0, h - 1.0);
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let (x0, y0) = (x0 as u32, y0 as u32);
    let (x1, y1) = ((x0 + 1).min(im.width() - 1), (y0 + 1).min(im.height() - 1));
    let p = |x, y| im.get_pixel(x, y).0[c] as f64;
    let v = (p(x0, y0) * (1.0 - fx) + p(x1, y0) * fx) * (1.0 - fy) + (p(x0, y1) * (1.0 - fx) + p(x1, y1) * fx) * fy;
    (v / 255.0) as f32
}

/// Frame `t` of a synthetic sequence: `[3][crop][crop]` in [0, 1].
fn render(photo: &RgbImage, motion: &Motion, fg: Option<&Foreground>, t: usize, crop: usize) -> Vec<f32> {
    let scale = motion.zoom.powi(t as i32);
    let cx = motion.centre.0 + motion.velocity.0 * t as f64;
    let cy = motion.centre.1 + motion.velocity.1 * t as f64;
    let half = crop as f64 / 2.0;
    let mut out = vec![0f32; 3 * crop * crop];
    for c in 0..3 {
        for y in 0..crop {
            for x in 0..crop {
                let sx = cx + (x as f64 - half) * scale;
                let sy = cy + (y as f64 - half) * scale;
                out[(c * crop + y) * crop + x] = sample(photo, sx, sy, c);
            }
        }
    }
    if let Some(f) = fg {
        let (px, py) = (f.start.0 + f.velocity.0 * t as f64, f.start.1 + f.velocity.1 * t as f64);
        for c in 0..3 {
            for y in 0..f.side {
                for x in 0..f.side {
                    let (dx, dy) = (px + x as f64, py + y as f64);
                    if dx < 0.0 || dy < 0.0 || dx >= crop as f64 || dy >= crop as f64 {
                        continue;
                    }
                    // Sub-pixel position: sample the patch at the fractional offset.
                    let v = sample(f.photo, (f.source.0 + x) as f64 - px.fract(), (f.source.1 + y) as f64 - py.fract(), c);
                    out[(c * crop + dy as usize) * crop + dx as usize] = v;
                }
            }
        }
    }
    out
}

/// A random motion that keeps every frame inside the photo (`None` if the photo is too small).
fn random_motion(rng: &mut impl Rng, photo: &RgbImage, crop: usize, frames: usize) -> Option<Motion> {
    let (w, h) = (photo.width() as f64, photo.height() as f64);
    // Two in five sequences are static shots; the rest pan, mostly slowly (speed 8·u², u
    // uniform: median 2 px per frame, at most 8), as cameras do at 25–60 fps.
    let speed = if rng.gen_bool(0.4) { 0.0 } else { 8.0 * rng.gen_range(0.0f64..1.0).powi(2) };
    let angle = rng.gen_range(0.0..std::f64::consts::TAU);
    let zoom: f64 = if rng.gen_bool(0.3) { rng.gen_range(0.98..1.02) } else { 1.0 };
    let velocity = (speed * angle.cos(), speed * angle.sin());
    let span = (frames - 1) as f64;
    let max_scale = zoom.max(1.0 / zoom).powf(span).max(1.0);
    let half = crop as f64 / 2.0 * max_scale + 1.0;
    let (lo_x, hi_x) = (half - velocity.0.min(0.0) * span, w - half - velocity.0.max(0.0) * span);
    let (lo_y, hi_y) = (half - velocity.1.min(0.0) * span, h - half - velocity.1.max(0.0) * span);
    if lo_x >= hi_x || lo_y >= hi_y {
        return None;
    }
    Some(Motion { centre: (rng.gen_range(lo_x..hi_x), rng.gen_range(lo_y..hi_y)), velocity, zoom })
}

impl SequenceSet {
    /// The sequences cached at `cache` for `key` (the transforms' digest), else rendered from
    /// `set`, analysed with `model` and cached.
    /// `count` sequences of [`SEQUENCE_FRAMES`] frames.
    #[allow(clippy::too_many_arguments)]
    pub fn cached(cache: &Path, key: &[u8; 32], set: &TrainSet, model: &ImageModel, count: usize, crop: usize, seed: u64, device: &Device) -> Result<Self> {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(key);
        h.update(format!("stem-sequences-v2 {count} {SEQUENCE_FRAMES} {crop} {seed} {}", set.len()));
        let key: [u8; 32] = h.finalize().into();
        if let Ok(bytes) = std::fs::read(cache) {
            match Self::from_bytes(&bytes, &key) {
                Some(s) => return Ok(s),
                None => eprintln!("ignoring stale sequence cache {}", cache.display()),
            }
        }
        let s = Self::render(set, model, count, crop, seed, device)?;
        crate::io::write_atomic(cache, &s.to_bytes(&key))?;
        Ok(s)
    }

    fn render(set: &TrainSet, model: &ImageModel, count: usize, crop: usize, seed: u64, device: &Device) -> Result<Self> {
        use rayon::prelude::*;
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_57e3);
        let mut latents = Vec::with_capacity(count);
        let mut channels = 0;
        let start = Instant::now();
        let mut misses = 0;
        while latents.len() < count {
            let photo = set.image(rng.gen_range(0..set.len()));
            let Some(motion) = random_motion(&mut rng, photo, crop, SEQUENCE_FRAMES) else {
                misses += 1;
                if misses > 1000 * (count + 1) {
                    return Err(Error::Unsupported(format!("no training photo is large enough for moving {crop}x{crop} crops")));
                }
                continue;
            };
            let fg = rng.gen_bool(0.5).then(|| {
                let other = set.image(rng.gen_range(0..set.len()));
                let side = rng.gen_range(48..=112).min(other.width() as usize).min(other.height() as usize);
                let speed = rng.gen_range(1.0..10.0);
                let angle = rng.gen_range(0.0..std::f64::consts::TAU);
                Foreground {
                    photo: other,
                    source: (rng.gen_range(0..=other.width() as usize - side), rng.gen_range(0..=other.height() as usize - side)),
                    side,
                    start: (rng.gen_range(0.0..(crop - side) as f64), rng.gen_range(0.0..(crop - side) as f64)),
                    velocity: (speed * angle.cos(), speed * angle.sin()),
                }
            });
            let noise_seed: u64 = rng.r#gen();
            let frames: Vec<f32> = (0..SEQUENCE_FRAMES)
                .into_par_iter()
                .flat_map(|t| {
                    // Sensor noise, new in every frame: static content is never bit-identical.
                    let mut noise = StdRng::seed_from_u64(noise_seed ^ t as u64);
                    let normal = rand::distributions::Uniform::new(-1.0f32, 1.0);
                    render(photo, &motion, fg.as_ref(), t, crop).into_iter().map(|v| (v + 1.5 / 255.0 * (noise.sample(normal) + noise.sample(normal))).clamp(0.0, 1.0)).collect::<Vec<_>>()
                })
                .collect();
            let y = model.analyze(from_host(frames, [SEQUENCE_FRAMES, 3, crop, crop], device));
            let [_, m, s, _] = y.dims();
            channels = m;
            let y = to_host(y);
            latents.push(y.chunks_exact(m * s * s).map(|f| f.iter().map(|&v| half::f16::from_f32(v)).collect()).collect());
            if latents.len() % 100 == 0 {
                eprintln!("rendered and analysed {} of {count} sequences ({:.0} s)", latents.len(), start.elapsed().as_secs_f64());
            }
        }
        Ok(Self { latents, channels, side: crop / Y_STRIDE })
    }

    fn to_bytes(&self, key: &[u8; 32]) -> Vec<u8> {
        let mut out = b"NCS1".to_vec();
        out.extend_from_slice(key);
        for v in [self.latents.len(), SEQUENCE_FRAMES, self.channels, self.side] {
            out.extend_from_slice(&(v as u32).to_le_bytes());
        }
        for f in self.latents.iter().flatten() {
            out.extend(f.iter().flat_map(|v| v.to_le_bytes()));
        }
        out
    }

    fn from_bytes(bytes: &[u8], key: &[u8; 32]) -> Option<Self> {
        let mut r = crate::bytes::Reader::new(bytes, "sequence cache");
        if r.take(4).ok()? != b"NCS1" || r.take(32).ok()? != key {
            return None;
        }
        let [count, frames, channels, side] = [(); 4].map(|_| r.u32_le().map(|v| v as usize));
        let (count, frames, channels, side) = (count.ok()?, frames.ok()?, channels.ok()?, side.ok()?);
        let n = channels.checked_mul(side)?.checked_mul(side)?;
        let mut latents = Vec::with_capacity(count.min(1 << 16));
        for _ in 0..count {
            let mut seq = Vec::with_capacity(frames);
            for _ in 0..frames {
                seq.push(r.take(n.checked_mul(2)?).ok()?.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]])).collect());
            }
            latents.push(seq);
        }
        (r.remaining() == 0).then_some(Self { latents, channels, side })
    }

    /// `batch` random sequences, each randomly mirrored/transposed (the same way for all its
    /// frames): one `[batch, M, s, s]` tensor per frame.
    fn batch(&self, rng: &mut impl Rng, batch: usize, device: &Device) -> Vec<Tensor<4>> {
        let (m, s) = (self.channels, self.side);
        let picks: Vec<(usize, bool, bool)> = (0..batch).map(|_| (rng.gen_range(0..self.latents.len()), rng.gen_bool(0.5), rng.gen_bool(0.5))).collect();
        (0..SEQUENCE_FRAMES)
            .map(|t| {
                let mut v = Vec::with_capacity(batch * m * s * s);
                for &(i, flip, transpose) in &picks {
                    let f = &self.latents[i][t];
                    for c in 0..m {
                        for y in 0..s {
                            for x in 0..s {
                                let (sy, sx) = if transpose { (x, y) } else { (y, x) };
                                let sx = if flip { s - 1 - sx } else { sx };
                                v.push(f[(c * s + sy) * s + sx].to_f32());
                            }
                        }
                    }
                }
                from_host(v, [batch, m, s, s], device)
            })
            .collect()
    }
}

/// Statistics of one step: bits per pixel of the P-frames' ŷ, and (when asked for) of the
/// same latents coded as intra frames (the all-intra reference).
struct StemStats {
    bpp: f64,
    intra_bpp: Option<f64>,
}

fn bpp_of(likelihoods: Vec<Tensor<4>>, pixels: f64) -> Tensor<1> {
    let device = likelihoods[0].device();
    crate::entropy::total_bits(likelihoods, &device).div_scalar(pixels)
}

/// One step on a batch of latent sequences (`frames[t]`: `[B, M, s, s]`, gain-free).
/// `compare`: also measure the P-frames as intra frames (a quarter more work).
#[allow(clippy::too_many_arguments)]
fn stem_step(
    model: ImageModel,
    optim: &mut ModuleOptimizer,
    frozen: &ImageModel,
    medians: &[f32],
    frames: Vec<Tensor<4>>,
    q: &[usize],
    lr: f64,
    compare: bool,
    device: &Device,
) -> Result<(ImageModel, StemStats)> {
    let plain = frames[0].device();
    let [b, _, s, _] = frames[0].dims();
    let qt = Tensor::<1, Int>::from_ints(q.iter().map(|&v| v as i64).collect::<Vec<_>>().as_slice(), &plain);
    let intra = frozen.context().expect("stem models have an intra context model");
    let mut reference: Option<Tensor<4>> = None;
    let mut bpp = Tensor::<1>::zeros([1], device);
    let mut intra_bpp = 0.0;
    let pixels = (b * s * s * Y_STRIDE * Y_STRIDE * (frames.len() - 1)) as f64;
    let inter = model.inter_context().expect("stem model");
    for y_raw in frames {
        let targets = frozen.frozen_targets(y_raw, qt.clone(), medians)?;
        reference = Some(match reference {
            None => intra.forward(targets.y.clone(), targets.hyper.clone()).y_hat.to_device(device),
            Some(r) => {
                if compare {
                    intra_bpp += to_host(bpp_of(intra.forward(targets.y.clone(), targets.hyper.clone()).likelihoods, pixels))[0] as f64;
                }
                let out = inter.forward_with(targets.y.to_device(device), targets.hyper.to_device(device), Some(r));
                bpp = bpp + bpp_of(out.likelihoods, pixels);
                out.y_hat
            }
        });
    }
    let stats = StemStats { bpp: to_host(bpp.clone())[0] as f64, intra_bpp: compare.then_some(intra_bpp) };
    let grads = GradientsParams::from_grads(bpp.backward(), model.inter_context().expect("stem model"));
    Ok((optim.step(lr, model, grads), stats))
}

/// Trains stem's P-frame model on top of a trained mlic model (`--init-from`), whose parts
/// stay frozen.
pub fn train(opts: &TrainOptions) -> Result<TrainState> {
    let device = crate::backend::device().autodiff();
    let plain = crate::backend::device();
    let (set, mut state) = start_run(opts)?;
    let mut optim = optimizer();
    let init = opts.init_from.as_ref().ok_or_else(|| Error::Unsupported("stem training starts from a trained mlic model: pass --init-from codecs/mlic/weights.ncw".into()))?;
    let loaded = weights::load(init, &device)?;
    let want = (Architecture::MultiReference, opts.config.n, opts.config.m, &opts.config.lambdas, opts.config.transforms);
    if (loaded.config.architecture, loaded.config.n, loaded.config.m, &loaded.config.lambdas, loaded.config.transforms) != want {
        let flag = loaded.config.transforms.flag();
        return Err(Error::Unsupported(format!("{}: stem needs an mlic model with the same N, M, λs and transforms (this one has --transforms {flag})", init.display())));
    }
    let (model, fresh) = match resume_run(opts, &mut state, &device)? {
        Some((m, o)) => {
            optim = o;
            (m, false)
        }
        None => (opts.config.init(&device), true),
    };
    // The frozen parts are the mlic model's, exactly (also when resuming a checkpoint): stem's
    // intra frames are mlic streams.
    let model = weights::init_prefix(&loaded.model, model).map_err(|e| Error::Format(format!("{}: {e}", init.display())))?;
    let model = if fresh {
        eprintln!("initialised transforms, hyperprior and intra context from {}", init.display());
        model.with_inter_from_intra()
    } else {
        model
    };
    device.seed(opts.seed.wrapping_add(state.step as u64));
    let rng = StdRng::seed_from_u64(opts.seed.wrapping_add(state.step as u64));
    let loaded = crate::weights::copy_to(&model, &opts.config, &plain);
    let (frozen, medians) = (loaded.model, loaded.tables.bottleneck.parts().0.to_vec());
    let sequences = SequenceSet::cached(&opts.ckpt_dir.join("sequences.bin"), &frozen.analysis_digest(), &set, &frozen, opts.sequences, opts.crop, opts.seed, &plain)?;
    let mut trainer = StemTrainer { opts, model: Some(model), optim, frozen, medians, sequences, rng, plain, device, sums: Sums::default() };
    session::run(opts, state, &mut trainer)
}

/// Running sums between two log rows. Every 5th step also codes its P-frames as intra frames:
/// the saving is measured on those.
#[derive(Default)]
struct Sums {
    bpp: f64,
    steps: usize,
    compared_bpp: f64,
    compared_intra: f64,
}

/// P-frame model training as the session drives it.
struct StemTrainer<'a> {
    opts: &'a TrainOptions,
    /// Taken by each step (burn's optimizer consumes the model) and put back.
    model: Option<ImageModel>,
    optim: ModuleOptimizer,
    frozen: ImageModel,
    medians: Vec<f32>,
    sequences: SequenceSet,
    rng: StdRng,
    plain: Device,
    device: Device,
    sums: Sums,
}

impl Trainer for StemTrainer<'_> {
    fn log_columns(&self) -> &'static str {
        "bpp_y_p,bpp_y_intra,saving_percent"
    }

    fn step(&mut self, step: usize) -> Result<f64> {
        let opts = self.opts;
        let q: Vec<usize> = (0..opts.batch).map(|_| self.rng.gen_range(0..opts.config.qualities())).collect();
        let frames = self.sequences.batch(&mut self.rng, opts.batch, &self.plain);
        let model = self.model.take().expect("the model is put back after every step");
        let (model, stats) = stem_step(model, &mut self.optim, &self.frozen, &self.medians, frames, &q, opts.lr, step.is_multiple_of(5), &self.device)?;
        self.model = Some(model);
        let s = &mut self.sums;
        (s.bpp, s.steps) = (s.bpp + stats.bpp, s.steps + 1);
        if let Some(intra) = stats.intra_bpp {
            (s.compared_bpp, s.compared_intra) = (s.compared_bpp + stats.bpp, s.compared_intra + intra);
        }
        Ok(stats.bpp)
    }

    fn report(&mut self) -> (String, String) {
        let s = std::mem::take(&mut self.sums);
        let bpp = s.bpp / s.steps.max(1) as f64;
        let saving = if s.compared_intra > 0.0 { 100.0 * (1.0 - s.compared_bpp / s.compared_intra) } else { f64::NAN };
        (format!("{bpp:.5},{:.5},{saving:.2}", s.compared_intra / 5.0), format!("P-frame bpp(y) {bpp:.4}, {saving:.1} % below intra"))
    }

    fn checkpoint(&mut self, state: &TrainState) -> Result<()> {
        checkpoint(self.model.as_ref().expect("the model is put back after every step"), &self.optim, state, &self.opts.ckpt_dir)
    }
}
