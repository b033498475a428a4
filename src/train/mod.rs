//! Training, above the codec API: `ncodec train` for every model, resumable checkpoints, and
//! export of shippable weights (fp16 + integer tables) into the codec zoo.
//!
//! ```text
//!                    ┌ image::train  factorized, hyperprior, mean-scale, mlic (λ·255²·MSE + bpp,
//!                    │               λ drawn per sample: `quality`)
//!  train(opts) ──────┼ vq::train     residual-VQ decoder and codebooks
//!   by architecture  └ stem::train   P-frame entropy model on synthetic sequences
//!                           │ each builds a Trainer (model, optimizer, batches) ...
//!                           ▼
//!                    session::run   ... that one loop drives: time limit, log.csv, progress,
//!                                   checkpoints (model.bpk, optim.bpk, state.json;
//!                                   ema-<d>/: weight averages, see `ema`)
//!  load_checkpoint / export ──► weights file (fp16 or fp32, integer tables, provenance)
//! ```

pub mod ema;
pub mod image;
pub mod quality;
pub mod schedule;
pub mod session;
pub mod stem;
pub mod vq;

use std::path::Path;

use burn::module::Module;
use burn::prelude::*;

pub use image::{StepStats, Throughput, context_step, throughput, train_step};
pub use session::{TrainOptions, TrainState, Trainer, VqLoss, VqTrainOptions};

use crate::error::{Error, Result};
use crate::models::{Architecture, ImageModel};
use crate::weights::{self, Precision};

/// Trains the model `opts` describes, by its architecture; returns the state at the last
/// checkpoint.
pub fn train(opts: &TrainOptions) -> Result<TrainState> {
    if matches!(opts.config.architecture, Architecture::Vq | Architecture::Stem) {
        let image_only = [
            ("--ema averages the weights", !opts.ema.is_empty()),
            ("--quality-weights weights the λ levels", !opts.quality_weights.is_empty()),
            ("--decay-from decays the learning rate", opts.decay_from.is_some()),
            ("--warmup-steps ramps up the learning rate", opts.warmup_steps > 0),
        ];
        if let Some((what, _)) = image_only.iter().find(|(_, given)| *given) {
            return Err(Error::Unsupported(format!("{what} of image-codec training (factorized, hyperprior, mean-scale, mlic)")));
        }
    }
    if opts.config.architecture == Architecture::Stem && opts.rescale_min < 1.0 {
        return Err(Error::Unsupported("--rescale-min rescales the crops of image and vq training; stem renders its own sequences".into()));
    }
    if opts.config.architecture == Architecture::Stem && opts.sample_by_area {
        return Err(Error::Unsupported("--sample-by-area draws the photos of image and vq training; stem renders its own sequences".into()));
    }
    match opts.config.architecture {
        Architecture::Vq => vq::train(opts),
        Architecture::Stem => stem::train(opts),
        _ => image::train(opts),
    }
}

/// Loads a checkpoint directory's model (inference device) for export or evaluation.
pub fn load_checkpoint(dir: &Path, device: &Device) -> Result<(TrainState, ImageModel)> {
    let state = TrainState::load(dir)?;
    // A checkpoint brought back from another machine may hold the exported fp16 weights
    // (`weights.ncw`) instead of the full-precision record, which is too large to carry.
    let exported = dir.join("weights.ncw");
    if !dir.join("model.bpk").exists() && exported.exists() {
        let loaded = weights::load(&exported, device)?;
        if loaded.config != state.config {
            return Err(Error::Format(format!("{}: weights of another model configuration than {}", exported.display(), dir.join("state.json").display())));
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
    if let Some(vq) = tables.latent.vq_mut() {
        vq.set_priors(vq::load_priors(dir)?)?;
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
