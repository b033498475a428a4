//! The training session every trainer shares: options and state, the step loop with its
//! time limit, log and progress bar, resumable checkpoints.
//!
//! ```text
//!  start_run ── TrainSet, TrainState{step 0} ──┐
//!  resume_run ── model + Adam state, step ─────┤  (each trainer builds its model and batches)
//!                                              ▼
//!  run(trainer):  while step < steps and within --minutes
//!                   loss = trainer.step(step)          one optimizer step on a fresh batch
//!                   every 25 steps: trainer.report()   ──► log.csv row, progress message
//!                   every --checkpoint-every steps: trainer.checkpoint(state)
//!                 trainer.checkpoint(state) at the end
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::grad_clipping::GradientClippingConfig;
use burn::module::Module;
use burn::optim::{AdamConfig, ModuleOptimizer};
use burn::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::data::TrainSet;
use crate::error::{Error, Result};
use crate::models::{ImageModel, ModelConfig};

/// Steps between two rows of `log.csv`.
pub const LOG_EVERY: usize = 25;

/// What to train, on what, for how long, and where its checkpoints go.
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
    /// Learning rate of the residual transform stages and the auxiliary paths, as a multiple of
    /// `lr`: parts added to a trained model start at zero and need to move further than the
    /// weights around them.
    pub residual_lr_scale: f64,
    pub seed: u64,
    pub progress: bool,
    /// VQ models only: loss and encoder training (see [`super::vq`]).
    pub vq: VqTrainOptions,
    /// Stem models only: synthetic training sequences to render (see [`super::stem`]).
    pub sequences: usize,
    /// Image codecs only: decays of the weight averages kept beside the run (see
    /// [`super::ema`]); empty for none.
    pub ema: Vec<f64>,
    /// Image codecs only: how often each quality level is drawn, one integer weight per level
    /// (see [`super::quality`]); empty for uniform.
    pub quality_weights: Vec<u32>,
    /// Image codecs only: the global step where the learning rate starts a cosine decay to
    /// `decay_floor` × `lr` at `steps` (see [`super::schedule`]); `None`: constant.
    pub decay_from: Option<usize>,
    pub decay_floor: f64,
    /// Image codecs only: the learning rate ramps up linearly over the first this many global
    /// steps (0: none; a resumed or initialised run past them is unaffected).
    pub warmup_steps: usize,
    /// Image crops only: shrink each crop by a random factor down to this (1: no rescaling;
    /// see [`crate::data::TrainSet::batch`]).
    pub rescale_min: f64,
    /// Image crops only: draw photos in proportion to their area, not uniformly (see
    /// [`crate::data::TrainSet::by_area`]).
    pub sample_by_area: bool,
}

/// What the decoder is trained to minimise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "tools", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum VqLoss {
    #[default]
    Mse,
    MsSsim,
}

/// VQ training's own options (`ncodec train --codec vq`).
#[derive(Debug, Clone)]
pub struct VqTrainOptions {
    pub loss: VqLoss,
    /// Train g_a too (straight-through estimator and commitment loss) instead of only g_s.
    pub train_encoder: bool,
    /// Commitment weight β (with `train_encoder`).
    pub commitment: f64,
    /// EMA decay of the codebook statistics.
    pub decay: f64,
}

impl Default for VqTrainOptions {
    fn default() -> Self {
        Self { loss: VqLoss::Mse, train_encoder: false, commitment: 0.25, decay: 0.99 }
    }
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

impl TrainState {
    /// The `state.json` of the checkpoint folder `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("state.json");
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Format(format!("{}: {e}", path.display())))
    }
}

/// One kind of training (image codecs, VQ, stem), as [`run`] drives it. A trainer owns its
/// model, optimizer, batch source and random generator.
pub trait Trainer {
    /// The columns of `log.csv` after `step,seconds`.
    fn log_columns(&self) -> &'static str;
    /// One optimizer step on a fresh batch (`step`: the steps done before it); returns the
    /// quantity whose finiteness says the run is healthy (the loss).
    fn step(&mut self, step: usize) -> Result<f64>;
    /// The `log.csv` row (after `step,seconds`) and the progress message for the steps since
    /// the last report.
    fn report(&mut self) -> (String, String);
    /// Writes a resumable checkpoint of everything the trainer holds.
    fn checkpoint(&mut self, state: &TrainState) -> Result<()>;
}

/// Drives `trainer` from `state.step` to `opts.steps` (or `opts.minutes` of wall time),
/// logging, showing progress and checkpointing; returns the state at the last checkpoint.
pub fn run(opts: &TrainOptions, mut state: TrainState, trainer: &mut dyn Trainer) -> Result<TrainState> {
    let mut log = open_log(&opts.ckpt_dir, &format!("step,seconds,{}", trainer.log_columns()), state.step)?;
    let bar = progress_bar(opts, &state);
    let start = Instant::now();
    let base_seconds = state.seconds;
    while state.step < opts.steps {
        if opts.minutes.is_some_and(|m| start.elapsed().as_secs_f64() > m * 60.0) {
            break;
        }
        let loss = trainer.step(state.step)?;
        state.step += 1;
        state.seconds = base_seconds + start.elapsed().as_secs_f64();
        if !loss.is_finite() {
            return Err(Error::Codec(format!("loss became {loss} at step {}", state.step)));
        }
        if state.step.is_multiple_of(LOG_EVERY) || state.step == opts.steps {
            let (row, message) = trainer.report();
            bar.set_message(message);
            writeln!(log, "{},{:.1},{row}", state.step, state.seconds).ok();
        }
        bar.set_position(state.step as u64);
        if state.step.is_multiple_of(opts.checkpoint_every) {
            trainer.checkpoint(&state)?;
        }
    }
    trainer.checkpoint(&state)?;
    bar.finish();
    Ok(state)
}

/// Adam as every trainer uses it.
pub(crate) fn optimizer() -> ModuleOptimizer {
    // PyTorch's ε: burn's default (1e-5) damps the many small post-clipping gradients.
    AdamConfig::new().with_epsilon(1e-8).with_grad_clipping(Some(GradientClippingConfig::Norm(1.0))).init()
}

/// The run's `log.csv` in `dir`, opened for appending at `step` (the step the run starts or
/// resumes at); `header` starts a new one. Rows past `step` were written by a run stopped
/// after its last checkpoint: those steps are trained again, so their rows are dropped
/// (rewritten atomically) rather than left as duplicates.
fn open_log(dir: &Path, header: &str, step: usize) -> Result<std::fs::File> {
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
fn progress_bar(opts: &TrainOptions, state: &TrainState) -> ProgressBar {
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
    super::ema::check_decays(&opts.ema)?;
    if !opts.quality_weights.is_empty() {
        super::quality::QualitySampler::new(&opts.quality_weights, opts.config.qualities())?;
    }
    super::schedule::LrSchedule::new(opts.decay_from, opts.steps, opts.decay_floor)?;
    if !(opts.rescale_min > 0.0 && opts.rescale_min <= 1.0) {
        return Err(Error::Unsupported(format!("--rescale-min must be in (0, 1], not {}", opts.rescale_min)));
    }
    std::fs::create_dir_all(&opts.ckpt_dir).map_err(|e| Error::io(&opts.ckpt_dir, e))?;
    let set = TrainSet::load(&opts.data, opts.crop)?;
    let set = if opts.sample_by_area { set.by_area() } else { set };
    let state = TrainState {
        config: opts.config.clone(),
        step: 0,
        seconds: 0.0,
        batch: opts.batch,
        crop: opts.crop,
        lr: opts.lr,
        data: opts.data.display().to_string(),
        images: set.len(),
        hardware: crate::backend::hardware_description(),
    };
    Ok((set, state))
}

/// With `--resume` and a checkpoint in the folder: its model and optimizer, and `state`
/// continued from its step count. `None` when there is nothing to resume.
pub(crate) fn resume_run(opts: &TrainOptions, state: &mut TrainState, device: &Device) -> Result<Option<(ImageModel, ModuleOptimizer)>> {
    let dir = &opts.ckpt_dir;
    if !(opts.resume && dir.join("state.json").exists()) {
        return Ok(None);
    }
    let prev = TrainState::load(dir)?;
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

/// Writes model, optimizer and state into `dir`, each replacing its previous file only once
/// complete.
pub(crate) fn checkpoint(model: &ImageModel, optim: &ModuleOptimizer, state: &TrainState, dir: &Path) -> Result<()> {
    write_checkpoint(model, Some(optim), state, dir)
}

/// Writes model and state into `dir` (a checkpoint without optimizer state, as the weight
/// averages keep), each replacing its previous file only once complete.
pub(crate) fn checkpoint_model(model: &ImageModel, state: &TrainState, dir: &Path) -> Result<()> {
    write_checkpoint(model, None, state, dir)
}

fn write_checkpoint(model: &ImageModel, optim: Option<&ModuleOptimizer>, state: &TrainState, dir: &Path) -> Result<()> {
    // Write next to the old files, then rename, state.json last: a kill mid-write keeps the
    // previous checkpoint, and the state never names a step whose files are not all in place.
    let (tmp_model, tmp_optim) = (dir.join("model.tmp.bpk"), dir.join("optim.tmp.bpk"));
    model.clone().save_file(&tmp_model).map_err(|e| Error::Codec(format!("saving checkpoint: {e:?}")))?;
    if let Some(optim) = optim {
        optim.save(&tmp_optim).map_err(|e| Error::Codec(format!("saving optimizer: {e:?}")))?;
    }
    std::fs::rename(&tmp_model, dir.join("model.bpk")).map_err(|e| Error::io(dir, e))?;
    if optim.is_some() {
        std::fs::rename(&tmp_optim, dir.join("optim.bpk")).map_err(|e| Error::io(dir, e))?;
    }
    crate::io::write_atomic(&dir.join("state.json"), &serde_json::to_vec_pretty(state).unwrap())
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
