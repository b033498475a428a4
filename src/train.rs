//! `ncodec train`: rate-distortion training with burn autodiff, resumable checkpoints, and
//! export of shippable weights (fp16 + integer tables) into the codec zoo.
//!
//! Loss per sample: λ_q·255²·MSE(x, x̂) + bpp, with the quality level q drawn per sample so one
//! gain-conditioned model learns every rate point at once.
//!
//! With `freeze_transforms` (multi-reference models started from a mean-scale model) only the
//! context model trains, on latents computed once: y = g_a(x) does not change, so a step skips
//! g_a and its gradients. The loss is the same λ_q·255²·MSE + bpp(y), with x̂ = g_s(LRP(ŷ))
//! through the frozen g_s: LRP has to help the g_s that exists. (Training LRP towards y in
//! latent space instead cost 0.2–0.3 dB on Kodak: g_s was trained on quantized latents.)

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::grad_clipping::GradientClippingConfig;
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::Int;
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng};
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::data::{LatentSet, TrainSet};
use crate::error::{Error, Result};
use crate::models::{Architecture, FrozenTargets, ImageModel, ModelConfig, Transforms};
use crate::weights::{self, Precision};

#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub config: ModelConfig,
    pub data: PathBuf,
    /// Checkpoints, log and state live here.
    pub ckpt_dir: PathBuf,
    /// Stop at this (global) step.
    pub steps: usize,
    /// Stop after this much wall time in this run.
    pub minutes: Option<f64>,
    pub batch: usize,
    pub crop: usize,
    pub lr: f64,
    pub checkpoint_every: usize,
    pub resume: bool,
    /// Start from a shipped `.ncw` (fresh optimizer state). A mean-scale file can start a
    /// multi-reference model: its transforms and hyperprior are copied in.
    pub init_from: Option<PathBuf>,
    /// Train only the context model of a multi-reference model (see the module comment).
    pub freeze_transforms: bool,
    /// Learning rate of the residual transform stages, as a multiple of `lr`: stages added to
    /// a trained model start at zero and need to move further than the weights around them.
    pub residual_lr_scale: f64,
    pub seed: u64,
    pub progress: bool,
    /// VQ models only: loss and encoder training (see [`crate::train_vq`]).
    pub vq: crate::train_vq::VqTrainOptions,
    /// Stem models only: synthetic training sequences to render (see [`crate::train_stem`]).
    pub sequences: usize,
}

/// What a checkpoint directory records besides the tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainState {
    pub config: ModelConfig,
    pub step: usize,
    /// Wall-clock seconds spent training, over all runs.
    pub seconds: f64,
    pub batch: usize,
    pub crop: usize,
    pub lr: f64,
    pub data: String,
    pub images: usize,
    pub hardware: String,
}

pub struct StepStats {
    pub loss: f64,
    pub bpp: f64,
    pub mse: f64,
    /// With frozen transforms: the bpp of y under the mean-scale prior alone, same latents.
    pub reference_bpp: f64,
}

/// One optimization step; returns the batch statistics.
pub fn train_step(
    model: ImageModel,
    optim: &mut ModuleOptimizer,
    x: Tensor<4>,
    q: &[usize],
    lambdas: &[f64],
    lr: f64,
    residual_lr: f64,
) -> (ImageModel, StepStats) {
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
    let loss = (lam * mse.clone() + bpp.clone()).mean();
    let stats = StepStats {
        loss: loss.clone().into_scalar_f64(),
        bpp: bpp.detach().mean().into_scalar_f64(),
        mse: mse.detach().mean().into_scalar_f64(),
        reference_bpp: 0.0,
    };
    let mut grads = loss.backward();
    let stages = model.residual_stages().map(|[a, s]| [GradientsParams::from_module(&mut grads, a), GradientsParams::from_module(&mut grads, s)]);
    let rest = GradientsParams::from_grads(grads, &model);
    let mut model = optim.step(lr, model, rest);
    for g in stages.into_iter().flatten() {
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
    let stats = StepStats {
        loss: loss.clone().into_scalar_f64(),
        bpp: bpp.detach().into_scalar_f64(),
        mse: mse.detach().mean().into_scalar_f64(),
        reference_bpp: targets.mean_scale_bits / pixels,
    };
    let grads = loss.backward();
    let context = model.context().expect("checked above");
    let grads = GradientsParams::from_grads(grads, context);
    (optim.step(lr, model, grads), stats)
}

/// Where a training run's batches come from.
enum Source {
    Images(TrainSet),
    /// Frozen transforms: latents computed once, and the frozen model on the plain device.
    Latents { latents: LatentSet, set: TrainSet, frozen: ImageModel, medians: Vec<f32>, device: Device },
}

trait ScalarF64 {
    fn into_scalar_f64(self) -> f64;
}

impl ScalarF64 for Tensor<1> {
    fn into_scalar_f64(self) -> f64 {
        crate::models::to_host(self)[0] as f64
    }
}

pub(crate) fn optimizer() -> ModuleOptimizer {
    // PyTorch's ε: burn's default (1e-5) damps the many small post-clipping gradients.
    AdamConfig::new().with_epsilon(1e-8).with_grad_clipping(Some(GradientClippingConfig::Norm(1.0))).init()
}

pub fn hardware_description() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cpu}, {} threads, burn {} backend", rayon::current_num_threads(), crate::backend::name())
}

pub fn train(opts: &TrainOptions) -> Result<TrainState> {
    match opts.config.architecture {
        Architecture::Vq => return crate::train_vq::train(opts),
        Architecture::Stem => return crate::train_stem::train(opts),
        _ => {}
    }
    let device = crate::backend::device().autodiff();
    let (set, mut state) = start_run(opts)?;
    let mut optim = optimizer();
    let mut model;
    if let Some((m, o)) = resume_run(opts, &mut state, &device)? {
        (model, optim) = (m, o);
    } else if let Some(init) = &opts.init_from {
        let loaded = weights::load(init, &device)?;
        if transplant(&loaded.config, &opts.config) {
            model = weights::init_prefix(&loaded.model, opts.config.init(&device)).map_err(|e| Error::Format(format!("{}: {e}", init.display())))?;
            eprintln!("initialised transforms and hyperprior from {}", init.display());
        } else if loaded.config != opts.config && !adds_residual_stages(&loaded.config, &opts.config) {
            return Err(Error::Unsupported(format!("{} has a different model configuration", init.display())));
        } else {
            model = if loaded.config == opts.config { loaded.model } else { loaded.model.with_residual_transforms(&device) };
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
    let mut rng = StdRng::seed_from_u64(opts.seed.wrapping_add(state.step as u64));

    let source = if opts.freeze_transforms {
        if model.context().is_none() {
            return Err(Error::Unsupported("--freeze-transforms trains a context model: use --codec mlic".into()));
        }
        let plain = crate::backend::device();
        // The bottleneck medians come with the copy's tables instead of a second export.
        let loaded = reload(&model, &opts.config, &plain);
        let (frozen, medians) = (loaded.model, loaded.tables.bottleneck.parts().0.to_vec());
        eprintln!("latents of {} training images and their mirror images (cached in {})", set.len(), opts.ckpt_dir.display());
        // Keyed by the frozen weights: a cache from other transforms is recomputed.
        let latents = LatentSet::cached(&opts.ckpt_dir.join("latents.bin"), &frozen.analysis_digest(), &set, &frozen, &plain)?;
        Source::Latents { latents, set, frozen, medians, device: plain }
    } else {
        Source::Images(set)
    };
    let header = match source {
        Source::Images(_) => "step,seconds,loss,bpp,mse,psnr",
        Source::Latents { .. } => "step,seconds,loss,bpp_y,mse,psnr,mean_scale_bpp_y",
    };
    let mut log = open_log(&opts.ckpt_dir, header, state.step)?;
    let bar = progress_bar(opts, &state);
    let start = Instant::now();
    let base_seconds = state.seconds;
    let q_levels = opts.config.qualities();
    let (mut acc_loss, mut acc_bpp, mut acc_mse, mut acc_ref, mut acc_n) = (0.0, 0.0, 0.0, 0.0, 0usize);
    while state.step < opts.steps {
        if opts.minutes.is_some_and(|m| start.elapsed().as_secs_f64() > m * 60.0) {
            break;
        }
        let q: Vec<usize> = (0..opts.batch).map(|_| rng.gen_range(0..q_levels)).collect();
        let (m, stats) = match &source {
            Source::Images(set) => {
                let x = set.batch(&mut rng, opts.batch, opts.crop, &device);
                train_step(model, &mut optim, x, &q, &opts.config.lambdas, opts.lr, opts.lr * opts.residual_lr_scale)
            }
            Source::Latents { latents, set, frozen, medians, device: plain } => {
                let size = opts.crop / crate::models::Y_STRIDE;
                let (y_raw, x) = latents.batch(set, &mut rng, opts.batch, size, plain)?;
                let qt = Tensor::<1, Int>::from_ints(q.iter().map(|&v| v as i64).collect::<Vec<_>>().as_slice(), plain);
                let targets = frozen.frozen_targets(y_raw, qt, medians)?;
                context_step(model, &mut optim, targets, x.to_device(&device), &q, &opts.config.lambdas, opts.lr)
            }
        };
        model = m;
        state.step += 1;
        state.seconds = base_seconds + start.elapsed().as_secs_f64();
        if !stats.loss.is_finite() {
            return Err(Error::Codec(format!("loss became {} at step {}", stats.loss, state.step)));
        }
        acc_loss += stats.loss;
        acc_bpp += stats.bpp;
        acc_mse += stats.mse;
        acc_ref += stats.reference_bpp;
        acc_n += 1;
        if state.step % 25 == 0 || state.step == opts.steps {
            let n = acc_n as f64;
            let (loss, bpp, mse) = (acc_loss / n, acc_bpp / n, acc_mse / n);
            let psnr = 10.0 * (1.0 / mse).log10();
            let line = match source {
                Source::Images(_) => {
                    bar.set_message(format!("loss {loss:.4} bpp {bpp:.3} psnr {psnr:.2}"));
                    format!("{loss:.5},{bpp:.4},{mse:.6},{psnr:.3}")
                }
                Source::Latents { .. } => {
                    let reference = acc_ref / n;
                    bar.set_message(format!("bpp(y) {bpp:.4} vs mean-scale {reference:.4} ({:+.2} %) psnr {psnr:.2}", 100.0 * (bpp / reference - 1.0)));
                    format!("{loss:.5},{bpp:.5},{mse:.6},{psnr:.3},{reference:.5}")
                }
            };
            writeln!(log, "{},{:.1},{line}", state.step, state.seconds).ok();
            (acc_loss, acc_bpp, acc_mse, acc_ref, acc_n) = (0.0, 0.0, 0.0, 0.0, 0);
        }
        bar.set_position(state.step as u64);
        if state.step % opts.checkpoint_every == 0 {
            checkpoint(&model, &optim, &state, &opts.ckpt_dir)?;
        }
    }
    checkpoint(&model, &optim, &state, &opts.ckpt_dir)?;
    bar.finish();
    Ok(state)
}

/// The run's `log.csv` in `dir`, opened for appending at `step` (the step the run starts or
/// resumes at); `header` starts a new one. Rows past `step` were written by a run stopped
/// after its last checkpoint: those steps are trained again, so their rows are dropped
/// (rewritten atomically) rather than left as duplicates.
pub(crate) fn open_log(dir: &Path, header: &str, step: usize) -> Result<std::fs::File> {
    let path = dir.join("log.csv");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let past = |line: &str| line.split(',').next().and_then(|f| f.parse::<usize>().ok()).is_some_and(|s| s > step);
        if text.lines().any(past) {
            let kept: String = text.lines().filter(|l| !past(l)).map(|l| format!("{l}\n")).collect();
            crate::io::write_atomic(&path, kept.as_bytes())?;
        }
    }
    let new_log = !path.exists();
    let mut log = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| Error::io(&path, e))?;
    if new_log {
        writeln!(log, "{header}").ok();
    }
    Ok(log)
}

/// The progress bar of a run (hidden unless `opts.progress`), at the run's current step.
pub(crate) fn progress_bar(opts: &TrainOptions, state: &TrainState) -> ProgressBar {
    let bar = if opts.progress { ProgressBar::new(opts.steps as u64) } else { ProgressBar::hidden() };
    bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} {per_sec} eta {eta} {msg}").unwrap());
    bar.set_position(state.step as u64);
    bar
}

/// Checks the options, creates the checkpoint folder, loads the training set and starts the
/// run's state at step 0.
pub(crate) fn start_run(opts: &TrainOptions) -> Result<(TrainSet, TrainState)> {
    opts.config.check()?;
    if !(opts.residual_lr_scale.is_finite() && opts.residual_lr_scale > 0.0) {
        return Err(Error::Unsupported("--residual-lr-scale must be a positive number".into()));
    }
    std::fs::create_dir_all(&opts.ckpt_dir).map_err(|e| Error::io(&opts.ckpt_dir, e))?;
    let set = TrainSet::load(&opts.data, opts.crop)?;
    let state = TrainState {
        config: opts.config.clone(),
        step: 0,
        seconds: 0.0,
        batch: opts.batch,
        crop: opts.crop,
        lr: opts.lr,
        data: opts.data.display().to_string(),
        images: set.len(),
        hardware: hardware_description(),
    };
    Ok((set, state))
}

/// With `--resume` and a checkpoint in the folder: its model and optimizer, and `state`
/// continued from its step count. `None` when there is nothing to resume.
pub(crate) fn resume_run(opts: &TrainOptions, state: &mut TrainState, device: &Device) -> Result<Option<(ImageModel, ModuleOptimizer)>> {
    let dir = &opts.ckpt_dir;
    let state_path = dir.join("state.json");
    if !(opts.resume && state_path.exists()) {
        return Ok(None);
    }
    let prev: TrainState = serde_json::from_slice(&std::fs::read(&state_path).map_err(|e| Error::io(&state_path, e))?)
        .map_err(|e| Error::Format(format!("{}: {e}", state_path.display())))?;
    if prev.config != opts.config {
        return Err(Error::Unsupported(format!("checkpoint in {} is for a different model configuration", dir.display())));
    }
    (state.step, state.seconds) = (prev.step, prev.seconds);
    let model = opts.config.init(device).load_file(dir.join("model.bpk"));
    let mut optim = optimizer();
    let optim_path = dir.join("optim.bpk");
    if optim_path.exists() {
        optim = optim.load(&optim_path).map_err(|e| Error::Format(format!("{}: {e:?}", optim_path.display())))?;
    }
    eprintln!("resuming at step {} ({:.1} h trained so far)", state.step, state.seconds / 3600.0);
    Ok(Some((model, optim)))
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
    let mut model = opts.config.init(&device);
    let mut optim = optimizer();
    device.seed(opts.seed);
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let q_levels = opts.config.qualities();
    let mut times = Vec::with_capacity(steps);
    for i in 0..warmup + steps {
        let q: Vec<usize> = (0..opts.batch).map(|_| rng.gen_range(0..q_levels)).collect();
        let start = Instant::now();
        let x = set.batch(&mut rng, opts.batch, opts.crop, &device);
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
        hardware: hardware_description(),
    })
}

/// `--init-from` a mean-scale file (`from`) into a multi-reference model of the same transforms.
fn transplant(from: &ModelConfig, to: &ModelConfig) -> bool {
    to.architecture == Architecture::MultiReference
        && from.architecture == Architecture::MeanScaleHyperprior
        && (from.n, from.m, &from.lambdas, from.transforms) == (to.n, to.m, &to.lambdas, to.transforms)
}

/// `--init-from` a GDN model into the same model with residual transforms (new stages start
/// as the identity, see [`crate::models::transforms`]).
fn adds_residual_stages(from: &ModelConfig, to: &ModelConfig) -> bool {
    from.transforms == Transforms::Gdn && to.transforms == Transforms::GdnResidual && ModelConfig { transforms: to.transforms, ..from.clone() } == *to
}

/// A copy of `model` (parameters and coding tables) on `device`.
pub(crate) fn reload(model: &ImageModel, config: &ModelConfig, device: &Device) -> weights::LoadedModel {
    let bytes = weights::to_bytes(config, model, &model.export_tables(), Precision::F32);
    weights::from_bytes(&bytes, device).expect("a model's own serialization loads")
}

pub(crate) fn checkpoint(model: &ImageModel, optim: &ModuleOptimizer, state: &TrainState, dir: &Path) -> Result<()> {
    // Write next to the old files, then rename: a kill mid-write keeps the previous checkpoint.
    let tmp_model = dir.join("model.tmp.bpk");
    let tmp_optim = dir.join("optim.tmp.bpk");
    model.clone().save_file(&tmp_model).map_err(|e| Error::Codec(format!("saving checkpoint: {e:?}")))?;
    optim.save(&tmp_optim).map_err(|e| Error::Codec(format!("saving optimizer: {e:?}")))?;
    std::fs::rename(&tmp_model, dir.join("model.bpk")).map_err(|e| Error::io(dir, e))?;
    std::fs::rename(&tmp_optim, dir.join("optim.bpk")).map_err(|e| Error::io(dir, e))?;
    crate::io::write_atomic(&dir.join("state.json"), &serde_json::to_vec_pretty(state).unwrap())
}

/// Loads a checkpoint directory's model (inference device) for export or evaluation.
pub fn load_checkpoint(dir: &Path, device: &Device) -> Result<(TrainState, ImageModel)> {
    let state_path = dir.join("state.json");
    let state: TrainState = serde_json::from_slice(&std::fs::read(&state_path).map_err(|e| Error::io(&state_path, e))?)
        .map_err(|e| Error::Format(format!("{}: {e}", state_path.display())))?;
    // A checkpoint brought back from another machine may hold the exported fp16 weights
    // (`weights.ncw`) instead of the full-precision record, which is too large to carry.
    let exported = dir.join("weights.ncw");
    if !dir.join("model.bpk").exists() && exported.exists() {
        let loaded = weights::load(&exported, device)?;
        if loaded.config != state.config {
            return Err(Error::Format(format!("{}: weights of another model configuration than {}", exported.display(), state_path.display())));
        }
        return Ok((state, loaded.model));
    }
    let model = state.config.init(device).load_file(dir.join("model.bpk"));
    Ok((state, model))
}

/// The integer tables to ship with a checkpoint's model: derived from the model, plus for VQ
/// models the priors its training run learned (`<dir>/priors.bin`).
pub fn checkpoint_tables(dir: &Path, model: &ImageModel) -> Result<crate::models::CodingTables> {
    let mut tables = model.export_tables();
    if let Some(vq) = &mut tables.vq {
        vq.set_priors(crate::train_vq::load_priors(dir)?)?;
    }
    Ok(tables)
}

/// Exports a checkpoint (the model in `dir`) as a shippable weight file (fp16 or fp32) with
/// its integer tables.
pub fn export(dir: &Path, model: &ImageModel, state: &TrainState, out: &Path, precision: Precision) -> Result<[u8; 32]> {
    let tables = checkpoint_tables(dir, model)?;
    let provenance = weights::Provenance { steps: state.step, seconds: state.seconds };
    weights::save_trained(out, &state.config, model, &tables, precision, Some(provenance))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_log_drops_the_rows_past_its_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let header = "step,seconds,loss";
        std::fs::write(dir.path().join("log.csv"), format!("{header}\n25,1,3.0\n50,2,2.9\n75,3,2.8\n")).unwrap();
        let mut log = open_log(dir.path(), header, 50).unwrap();
        writeln!(log, "75,4,2.7").unwrap();
        drop(log);
        let text = std::fs::read_to_string(dir.path().join("log.csv")).unwrap();
        assert_eq!(text, format!("{header}\n25,1,3.0\n50,2,2.9\n75,4,2.7\n"));
        // A fresh folder gets the header once.
        let fresh = tempfile::tempdir().unwrap();
        drop(open_log(fresh.path(), header, 0).unwrap());
        assert_eq!(std::fs::read_to_string(fresh.path().join("log.csv")).unwrap(), format!("{header}\n"));
    }
}
