//! `ncodec train`: train a model (resumable) and optionally export it to the zoo.

use std::path::PathBuf;

use ncodec::models::{Architecture, DEFAULT_LAMBDAS, ModelConfig};
use ncodec::train::{self, TrainOptions};

#[derive(clap::Args)]
pub struct Args {
    /// factorized | hyperprior | mean-scale | mlic | vq | stem
    #[arg(long, default_value = "mean-scale")]
    pub codec: String,
    /// Folder of training photos (searched recursively). Never the test set.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, default_value_t = 128)]
    pub n: usize,
    #[arg(long, default_value_t = 192)]
    pub m: usize,
    /// λ per quality level, comma-separated, lowest rate first.
    #[arg(long, value_delimiter = ',')]
    pub lambda: Option<Vec<f64>>,
    #[arg(long, default_value = "ckpt")]
    pub ckpt_dir: PathBuf,
    /// Train up to this global step.
    #[arg(long, default_value_t = 1_000_000)]
    pub steps: usize,
    /// Stop after this many minutes of this run (checkpoint first).
    #[arg(long)]
    pub minutes: Option<f64>,
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    #[arg(long, default_value_t = 256)]
    pub crop: usize,
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    #[arg(long, default_value_t = 200)]
    pub checkpoint_every: usize,
    /// Continue from the checkpoint in --ckpt-dir.
    #[arg(long)]
    pub resume: bool,
    /// Start from a shipped weight file (fresh optimizer). A mean-scale file can start an
    /// mlic model with the same N, M and λs: its transforms and hyperprior are copied.
    #[arg(long)]
    pub init_from: Option<PathBuf>,
    /// mlic only: train just the context model (and LRP) on latents of the frozen transforms.
    #[arg(long)]
    pub freeze_transforms: bool,
    /// Analysis/synthesis transforms. `gdn-residual` adds residual and attention stages;
    /// with --init-from a GDN model of the same codec they start as the identity.
    #[arg(long, value_enum, default_value = "gdn")]
    pub transforms: ncodec::models::Transforms,
    /// gdn-residual(-auxt): learning rate of the residual stages and the auxiliary paths as a
    /// multiple of --lr (grafted ones start at zero and have further to move than the trained
    /// layers around them).
    #[arg(long, default_value_t = 1.0)]
    pub residual_lr_scale: f64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Export the result as this weight file (fp16) when training stops.
    #[arg(long)]
    pub export: Option<PathBuf>,
    /// vq: residual levels.
    #[arg(long, default_value_t = 6)]
    pub vq_levels: usize,
    /// vq: codes per level.
    #[arg(long, default_value_t = 256)]
    pub vq_codes: usize,
    /// vq: what the decoder minimises.
    #[arg(long, value_enum, default_value = "mse")]
    pub vq_loss: ncodec::train::vq::VqLoss,
    /// vq: train the encoder too (straight-through, commitment loss) instead of only g_s.
    #[arg(long)]
    pub train_encoder: bool,
    /// stem: synthetic training sequences (moving crops of the training photos) to render.
    #[arg(long, default_value_t = 1200)]
    pub sequences: usize,
    /// Keep moving averages of the weights with these decays (comma-separated, e.g. 0.999),
    /// each checkpointed as its own folder `<ckpt-dir>/ema-<decay>/` that `export` and `ship`
    /// take as --ckpt-dir. Image codecs only.
    #[arg(long, value_delimiter = ',')]
    pub ema: Vec<f64>,
    /// How often each quality level is trained, one integer weight per level, lowest rate
    /// first (e.g. 1,1,1,1,2,2,2,2 trains the top half twice as often). Default: uniform.
    /// Image codecs only.
    #[arg(long, value_delimiter = ',')]
    pub quality_weights: Vec<u32>,
    /// From this global step on, the learning rate follows a cosine down to --decay-floor
    /// times --lr at --steps (e.g. a fork of a long run finishing to ship). Image codecs only.
    #[arg(long, value_name = "STEP")]
    pub decay_from: Option<usize>,
    /// Where the --decay-from cosine ends, as a multiple of --lr.
    #[arg(long, default_value_t = 0.1)]
    pub decay_floor: f64,
    /// Ramp the learning rate up linearly over the first this many global steps (a fresh
    /// start; 0: none). Image codecs only.
    #[arg(long, default_value_t = 0, value_name = "STEPS")]
    pub warmup_steps: usize,
    /// Shrink each training crop by a random factor between this and 1 (area filter; never
    /// below the crop over the photo's shorter side): more and differently sharp views of
    /// large photos. 1: crops at the photos' own scale. Not for stem.
    #[arg(long, default_value_t = 1.0)]
    pub rescale_min: f64,
    /// Draw training photos in proportion to their area (every pixel about equally likely to
    /// be trained on) instead of uniformly (every photo equally likely). Not for stem.
    #[arg(long)]
    pub sample_by_area: bool,
    /// Where training runs: cpu, wgpu, vulkan, cuda, auto (default: $NCODEC_DEVICE, else cpu).
    #[arg(long, value_parser = ncodec::cli::parse_backend)]
    pub backend: Option<ncodec::backend::Backend>,
    /// Throughput benchmark instead of training: time N steps of this model, batch and crop
    /// (after --warmup untimed ones) and print s/step and crops/s. Writes no checkpoint.
    #[arg(long, value_name = "N")]
    pub bench: Option<usize>,
    /// --bench: untimed steps first (kernel compilation, autotuning).
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// --bench: also append the result as one JSON line to this file.
    #[arg(long, requires = "bench")]
    pub bench_json: Option<PathBuf>,
}

pub fn run(a: Args) -> ncodec::Result<()> {
    if let Some(backend) = a.backend {
        ncodec::backend::set_default(backend.select()?)?;
    }
    let architecture = Architecture::from_name(&a.codec).ok_or_else(|| ncodec::Error::Unsupported(format!("unknown codec architecture '{}'", a.codec)))?;
    let config = if architecture == Architecture::Vq {
        ModelConfig { architecture, n: a.n, m: a.m, lambdas: vec![], vq: Some(ncodec::models::VqConfig::with(a.vq_levels, a.vq_codes)), transforms: a.transforms }
    } else {
        ModelConfig { architecture, n: a.n, m: a.m, lambdas: a.lambda.unwrap_or(DEFAULT_LAMBDAS.to_vec()), vq: None, transforms: a.transforms }
    };
    let vq = ncodec::train::vq::VqTrainOptions { loss: a.vq_loss, train_encoder: a.train_encoder, ..Default::default() };
    let opts = TrainOptions {
        config,
        data: a.data,
        ckpt_dir: a.ckpt_dir.clone(),
        steps: a.steps,
        minutes: a.minutes,
        batch: a.batch,
        crop: a.crop,
        lr: a.lr,
        checkpoint_every: a.checkpoint_every.max(1),
        resume: a.resume,
        init_from: a.init_from,
        freeze_transforms: a.freeze_transforms,
        residual_lr_scale: a.residual_lr_scale,
        seed: a.seed,
        progress: true,
        vq,
        sequences: a.sequences,
        ema: a.ema,
        quality_weights: a.quality_weights,
        decay_from: a.decay_from,
        decay_floor: a.decay_floor,
        warmup_steps: a.warmup_steps,
        rescale_min: a.rescale_min,
        sample_by_area: a.sample_by_area,
    };
    if let Some(steps) = a.bench {
        let t = train::throughput(&opts, a.warmup, steps)?;
        println!(
            "{} {} N={} M={} ({}), batch {} of {}x{}: {:.4} s/step (median of {}; min {:.4}, max {:.4}), {:.2} crops/s",
            t.backend, t.codec, t.n, t.m, t.transforms, t.batch, t.crop, t.crop, t.median_s, t.steps, t.min_s, t.max_s, t.crops_per_s
        );
        if let Some(path) = a.bench_json {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| ncodec::Error::io(&path, e))?;
            writeln!(f, "{}", serde_json::to_string(&t).expect("plain struct")).map_err(|e| ncodec::Error::io(&path, e))?;
        }
        return Ok(());
    }
    let state = train::train(&opts)?;
    eprintln!("stopped at step {} ({:.2} h of training in total)", state.step, state.seconds / 3600.0);
    if let Some(out) = a.export {
        crate::export::export(&a.ckpt_dir, &out, false, false)?;
    }
    Ok(())
}
