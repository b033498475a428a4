//! Rate-distortion training of the image codecs (factorized, hyperprior, mean-scale, mlic).
//!
//! Loss per sample: λ_q·255²·MSE(x, x̂) + bpp, with the quality level q drawn per sample so one
//! gain-conditioned model learns every rate point at once (uniformly, or as `--quality-weights`
//! says: [`super::quality`]). Models with an auxiliary linear path add 0.1 × its distance to
//! orthogonal projections ([`crate::models::auxt`]).
//!
//! With `freeze_transforms` (multi-reference models started from a mean-scale model) only the
//! context model trains, on latents computed once: y = g_a(x) does not change, so a step skips
//! g_a and its gradients. The loss is the same λ_q·255²·MSE + bpp(y), with x̂ = g_s(LRP(ŷ))
//! through the frozen g_s: LRP has to help the g_s that exists. (Training LRP towards y in
//! latent space instead cost 0.2–0.3 dB on Kodak: g_s was trained on quantized latents.)

use std::time::Instant;

use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::Int;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;

use super::ema::Ema;
use super::quality::QualitySampler;
use super::schedule::LrSchedule;
use super::session::{self, TrainOptions, TrainState, Trainer, checkpoint, optimizer, resume_run, start_run};
use crate::data::{LatentSet, TrainSet};
use crate::error::{Error, Result};
use crate::models::{Architecture, FrozenTargets, ImageModel, ModelConfig, Transforms};
use crate::weights;

pub struct StepStats {
    pub loss: f64,
    pub bpp: f64,
    pub mse: f64,
    /// With frozen transforms: the bpp of y under the mean-scale prior alone, same latents.
    pub reference_bpp: f64,
}

/// Weight of the auxiliary path's orthogonality penalty in the loss (AuxT's `--ortho 0.1`).
const ORTHO_WEIGHT: f64 = 0.1;

/// One optimization step; returns the batch statistics.
pub fn train_step(model: ImageModel, optim: &mut ModuleOptimizer, x: Tensor<4>, q: &[usize], lambdas: &[f64], lr: f64, residual_lr: f64) -> (ImageModel, StepStats) {
    let device = x.device();
    let [b, _, h, w] = x.dims();
    let qt = Tensor::<1, Int>::from_ints(q.iter().map(|&v| v as i64).collect::<Vec<_>>().as_slice(), &device);
    let lam: Vec<f32> = q.iter().map(|&v| (lambdas[v] * 255.0 * 255.0) as f32).collect();
    let lam = Tensor::<1>::from_data(TensorData::new(lam, [b]), &device);
    let out = model.forward(x.clone(), qt);
    let mse = (out.x_hat - x).powi_scalar(2).reshape([b as i32, -1]).mean_dim(1).reshape([b]);
    let mut rate = Tensor::<1>::zeros([b], &device);
    for lik in out.likelihoods {
        rate = rate + lik.log().reshape([b as i32, -1]).sum_dim(1).reshape([b]);
    }
    let bpp = rate.neg().div_scalar(std::f64::consts::LN_2 * (h * w) as f64);
    let mut loss = (lam * mse.clone() + bpp.clone()).mean();
    if let Some(penalty) = model.ortho_penalty() {
        loss = loss + penalty.mul_scalar(ORTHO_WEIGHT);
    }
    let stats = StepStats { loss: loss.clone().into_scalar_f64(), bpp: bpp.detach().mean().into_scalar_f64(), mse: mse.detach().mean().into_scalar_f64(), reference_bpp: 0.0 };
    let mut grads = loss.backward();
    // The residual stages and the auxiliary paths learn at --residual-lr-scale × lr: both may
    // have been added at zero to trained weights and have further to move.
    let mut stages: Vec<GradientsParams> = model.residual_stages().into_iter().flatten().map(|m| GradientsParams::from_module(&mut grads, m)).collect();
    if let Some((a, s)) = model.auxiliary_paths() {
        stages.push(GradientsParams::from_module(&mut grads, a));
        stages.push(GradientsParams::from_module(&mut grads, s));
    }
    let rest = GradientsParams::from_grads(grads, &model);
    let mut model = optim.step(lr, model, rest);
    for g in stages {
        model = optim.step(residual_lr, model, g);
    }
    (model, stats)
}

/// One step of context-model training on frozen transforms. `targets` come from the frozen
/// model on the plain device, `x` are the pixels of the latent crops; only the context
/// model's parameters are updated.
pub fn context_step(model: ImageModel, optim: &mut ModuleOptimizer, targets: FrozenTargets, x: Tensor<4>, q: &[usize], lambdas: &[f64], lr: f64) -> (ImageModel, StepStats) {
    let device = x.device();
    let [b, _, h, w] = x.dims();
    let y = targets.y.to_device(&device);
    let context = model.context().expect("frozen-transform training checks for a context model");
    let out = context.forward(y, targets.hyper.to_device(&device));
    let pixels = (b * h * w) as f64;
    let bpp = crate::entropy::total_bits(out.likelihoods, &device).div_scalar(pixels);
    let x_hat = model.synthesis(out.y_rec * targets.inv_gain.to_device(&device));
    // g_s decodes a crop of a whole image's latent with zeros beyond its edges, so its outer
    // pixels are wrong whatever LRP does: score the interior only.
    let border = (2 * crate::models::Y_STRIDE).min(h / 4);
    let interior = |t: Tensor<4>| t.narrow(2, border, h - 2 * border).narrow(3, border, w - 2 * border);
    let mse = (interior(x_hat) - interior(x)).powi_scalar(2).reshape([b as i32, -1]).mean_dim(1).reshape([b]);
    let lam: Vec<f32> = q.iter().map(|&v| (lambdas[v] * 255.0 * 255.0) as f32).collect();
    let distortion = (Tensor::<1>::from_data(TensorData::new(lam, [b]), &device) * mse.clone()).mean();
    let loss = bpp.clone() + distortion;
    let stats = StepStats { loss: loss.clone().into_scalar_f64(), bpp: bpp.detach().into_scalar_f64(), mse: mse.detach().mean().into_scalar_f64(), reference_bpp: targets.mean_scale_bits / pixels };
    let grads = loss.backward();
    let context = model.context().expect("checked above");
    let grads = GradientsParams::from_grads(grads, context);
    (optim.step(lr, model, grads), stats)
}

/// Where a training run's batches come from (one per run: the size difference is harmless).
#[allow(clippy::large_enum_variant)]
enum Source {
    Images(TrainSet),
    /// Frozen transforms: latents computed once, and the frozen model on the plain device.
    Latents {
        latents: LatentSet,
        set: TrainSet,
        frozen: ImageModel,
        medians: Vec<f32>,
        device: Device,
    },
}

trait ScalarF64 {
    fn into_scalar_f64(self) -> f64;
}

impl ScalarF64 for Tensor<1> {
    fn into_scalar_f64(self) -> f64 {
        crate::nn::to_host(self)[0] as f64
    }
}

pub fn train(opts: &TrainOptions) -> Result<TrainState> {
    let device = crate::backend::device().autodiff();
    let (set, mut state) = start_run(opts)?;
    let mut optim = optimizer();
    let model;
    let resumed = resume_run(opts, &mut state, &device)?;
    let was_resumed = resumed.is_some();
    if let Some((m, o)) = resumed {
        (model, optim) = (m, o);
    } else if let Some(init) = &opts.init_from {
        let loaded = weights::load(init, &device)?;
        if transplant(&loaded.config, &opts.config) {
            model = weights::init_prefix(&loaded.model, opts.config.init(&device)).map_err(|e| Error::Format(format!("{}: {e}", init.display())))?;
            eprintln!("initialised transforms and hyperprior from {}", init.display());
        } else if loaded.config != opts.config && !upgrades_transforms(&loaded.config, &opts.config) {
            return Err(Error::Unsupported(format!("{} has a different model configuration", init.display())));
        } else {
            // Each adds its part only where the loaded model lacks it.
            let mut m = loaded.model;
            if opts.config.transforms.has_residual_stages() {
                m = m.with_residual_transforms(&device);
            }
            if opts.config.transforms.has_auxiliary_path() {
                m = m.with_auxiliary_paths(&device);
            }
            model = m;
            // Continue the step count of the weights, so cards report the total training.
            if let Some(p) = loaded.provenance {
                state.step = p.steps;
                state.seconds = p.seconds;
            }
            eprintln!("initialised from {} (step {})", init.display(), state.step);
        }
    } else {
        model = opts.config.init(&device);
    }
    device.seed(opts.seed.wrapping_add(state.step as u64));
    let rng = StdRng::seed_from_u64(opts.seed.wrapping_add(state.step as u64));
    let qualities = QualitySampler::new(&opts.quality_weights, opts.config.qualities())?;
    if !opts.quality_weights.is_empty() {
        let p: Vec<String> = qualities.probabilities().iter().map(|p| format!("{:.3}", p)).collect();
        eprintln!("quality levels drawn with probabilities {}", p.join(", "));
    }
    let schedule = LrSchedule::new(opts.decay_from, opts.steps, opts.decay_floor)?.with_warmup(opts.warmup_steps);
    let emas = opts.ema.iter().map(|&d| if was_resumed { Ema::resume(&opts.ckpt_dir, &opts.config, &model, d, &device) } else { Ema::new(&model, d) }).collect();

    let source = if opts.freeze_transforms {
        if model.context().is_none() {
            return Err(Error::Unsupported("--freeze-transforms trains a context model: use --codec mlic".into()));
        }
        let plain = crate::backend::device();
        // The bottleneck medians come with the copy's tables instead of a second export.
        let loaded = weights::copy_to(&model, &opts.config, &plain);
        let (frozen, medians) = (loaded.model, loaded.tables.bottleneck.parts().0.to_vec());
        eprintln!("latents of {} training images and their mirror images (cached in {})", set.len(), opts.ckpt_dir.display());
        // Keyed by the frozen weights: a cache from other transforms is recomputed.
        let latents = LatentSet::cached(&opts.ckpt_dir.join("latents.bin"), &frozen.analysis_digest(), &set, &frozen, &plain)?;
        Source::Latents { latents, set, frozen, medians, device: plain }
    } else {
        Source::Images(set)
    };
    let mut trainer = ImageTrainer { opts, model: Some(model), optim, emas, source, qualities, schedule, rng, device, sums: Sums::default() };
    session::run(opts, state, &mut trainer)
}

/// Running sums of the step statistics between two log rows.
#[derive(Default)]
struct Sums {
    loss: f64,
    bpp: f64,
    mse: f64,
    reference_bpp: f64,
    steps: usize,
}

/// Image-codec training as the session drives it.
struct ImageTrainer<'a> {
    opts: &'a TrainOptions,
    /// Taken by each step (burn's optimizer consumes the model) and put back.
    model: Option<ImageModel>,
    optim: ModuleOptimizer,
    /// The weight averages (`--ema`), updated after every step.
    emas: Vec<Ema>,
    source: Source,
    /// Draws each sample's quality level (`--quality-weights`).
    qualities: QualitySampler,
    /// The learning rate's multiplier by global step (`--decay-from`).
    schedule: LrSchedule,
    rng: StdRng,
    device: Device,
    sums: Sums,
}

impl Trainer for ImageTrainer<'_> {
    fn log_columns(&self) -> &'static str {
        match self.source {
            Source::Images(_) => "loss,bpp,mse,psnr",
            Source::Latents { .. } => "loss,bpp_y,mse,psnr,mean_scale_bpp_y",
        }
    }

    fn step(&mut self, step: usize) -> Result<f64> {
        let opts = self.opts;
        let lr = opts.lr * self.schedule.factor(step);
        let q: Vec<usize> = (0..opts.batch).map(|_| self.qualities.draw(&mut self.rng)).collect();
        let model = self.model.take().expect("the model is put back after every step");
        let (model, stats) = match &self.source {
            Source::Images(set) => {
                let x = set.batch(&mut self.rng, opts.batch, opts.crop, opts.rescale_min, &self.device);
                train_step(model, &mut self.optim, x, &q, &opts.config.lambdas, lr, lr * opts.residual_lr_scale)
            }
            Source::Latents { latents, set, frozen, medians, device: plain } => {
                let size = opts.crop / crate::models::Y_STRIDE;
                let (y_raw, x) = latents.batch(set, &mut self.rng, opts.batch, size, plain)?;
                let qt = Tensor::<1, Int>::from_ints(q.iter().map(|&v| v as i64).collect::<Vec<_>>().as_slice(), plain);
                let targets = frozen.frozen_targets(y_raw, qt, medians)?;
                context_step(model, &mut self.optim, targets, x.to_device(&self.device), &q, &opts.config.lambdas, lr)
            }
        };
        for ema in &mut self.emas {
            ema.update(&model);
        }
        self.model = Some(model);
        let s = &mut self.sums;
        (s.loss, s.bpp, s.mse, s.reference_bpp, s.steps) = (s.loss + stats.loss, s.bpp + stats.bpp, s.mse + stats.mse, s.reference_bpp + stats.reference_bpp, s.steps + 1);
        Ok(stats.loss)
    }

    fn report(&mut self) -> (String, String) {
        let s = std::mem::take(&mut self.sums);
        let n = s.steps.max(1) as f64;
        let (loss, bpp, mse) = (s.loss / n, s.bpp / n, s.mse / n);
        let psnr = 10.0 * (1.0 / mse).log10();
        match self.source {
            Source::Images(_) => (format!("{loss:.5},{bpp:.4},{mse:.6},{psnr:.3}"), format!("loss {loss:.4} bpp {bpp:.3} psnr {psnr:.2}")),
            Source::Latents { .. } => {
                let reference = s.reference_bpp / n;
                (format!("{loss:.5},{bpp:.5},{mse:.6},{psnr:.3},{reference:.5}"), format!("bpp(y) {bpp:.4} vs mean-scale {reference:.4} ({:+.2} %) psnr {psnr:.2}", 100.0 * (bpp / reference - 1.0)))
            }
        }
    }

    fn checkpoint(&mut self, state: &TrainState) -> Result<()> {
        let model = self.model.as_ref().expect("the model is put back after every step");
        for ema in &self.emas {
            ema.checkpoint(model, state, &self.opts.ckpt_dir)?;
        }
        checkpoint(model, &self.optim, state, &self.opts.ckpt_dir)
    }
}

/// What [`throughput`] measured: one model, batch and crop on one backend.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub backend: String,
    pub codec: String,
    pub n: usize,
    pub m: usize,
    pub transforms: String,
    pub batch: usize,
    pub crop: usize,
    pub warmup: usize,
    pub steps: usize,
    /// Seconds per optimisation step (forward, backward, Adam), over the timed steps.
    pub median_s: f64,
    pub min_s: f64,
    pub max_s: f64,
    /// `batch / median_s`.
    pub crops_per_s: f64,
    pub hardware: String,
}

/// Training throughput: `warmup` untimed steps (kernel compilation, autotuning, allocator
/// growth), then `steps` timed ones of the full training step on `opts`' model (freshly
/// initialised: speed does not depend on the weights), batch and crop. Each step ends by
/// reading its loss back to the host, so a step's time includes all its device work.
/// Writes nothing: no checkpoint, no log.
pub fn throughput(opts: &TrainOptions, warmup: usize, steps: usize) -> Result<Throughput> {
    opts.config.check()?;
    if steps == 0 {
        return Err(Error::Unsupported("--bench needs at least one timed step".into()));
    }
    if matches!(opts.config.architecture, Architecture::Vq | Architecture::Stem) {
        return Err(Error::Unsupported("--bench measures the image training step (factorized, hyperprior, mean-scale, mlic)".into()));
    }
    let device = crate::backend::device().autodiff();
    let set = TrainSet::load(&opts.data, opts.crop)?;
    let set = if opts.sample_by_area { set.by_area() } else { set };
    let mut model = opts.config.init(&device);
    let mut optim = optimizer();
    device.seed(opts.seed);
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let qualities = QualitySampler::new(&opts.quality_weights, opts.config.qualities())?;
    let mut times = Vec::with_capacity(steps);
    for i in 0..warmup + steps {
        let q: Vec<usize> = (0..opts.batch).map(|_| qualities.draw(&mut rng)).collect();
        let start = Instant::now();
        let x = set.batch(&mut rng, opts.batch, opts.crop, opts.rescale_min, &device);
        let (m, stats) = train_step(model, &mut optim, x, &q, &opts.config.lambdas, opts.lr, opts.lr * opts.residual_lr_scale);
        model = m;
        if !stats.loss.is_finite() {
            return Err(Error::Codec(format!("loss became {} at benchmark step {}", stats.loss, i + 1)));
        }
        if i >= warmup {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let median_s = if steps % 2 == 1 { times[steps / 2] } else { 0.5 * (times[steps / 2 - 1] + times[steps / 2]) };
    Ok(Throughput {
        backend: crate::backend::name().to_string(),
        codec: opts.config.architecture.name().to_string(),
        n: opts.config.n,
        m: opts.config.m,
        transforms: opts.config.transforms.name().to_string(),
        batch: opts.batch,
        crop: opts.crop,
        warmup,
        steps,
        median_s,
        min_s: times[0],
        max_s: times[steps - 1],
        crops_per_s: opts.batch as f64 / median_s,
        hardware: crate::backend::hardware_description(),
    })
}

/// `--init-from` a mean-scale file (`from`) into a multi-reference model of the same transforms.
fn transplant(from: &ModelConfig, to: &ModelConfig) -> bool {
    to.architecture == Architecture::MultiReference
        && from.architecture == Architecture::MeanScaleHyperprior
        && (from.n, from.m, &from.lambdas, from.transforms) == (to.n, to.m, &to.lambdas, to.transforms)
}

/// `--init-from` a model into the same model with more transforms: residual stages, an
/// auxiliary path or both, each added so that the function does not change (see
/// [`crate::models::transforms`] and [`crate::models::auxt`]).
fn upgrades_transforms(from: &ModelConfig, to: &ModelConfig) -> bool {
    let (a, b) = (from.transforms, to.transforms);
    let more = |has: fn(Transforms) -> bool| has(b) || !has(a);
    a != b && more(Transforms::has_residual_stages) && more(Transforms::has_auxiliary_path) && ModelConfig { transforms: b, ..from.clone() } == *to
}
