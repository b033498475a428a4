//! `ncodec train --codec vq`: training the residual-VQ codec (see [`crate::models::vq`]).
//!
//! ```text
//!  init     g_a, g_s from a trained hyperprior model (--init-from: mlic or mean-scale weights)
//!           codebooks: greedy residual k-means on training latents
//!  step     y ──RVQ (host)──► k_0..k_{L-1} ──EMA codebook update, dead-code restart
//!           quantizer dropout: sample b keeps its first L_b ~ U{1..L} levels, so one decoder
//!           serves every preset;  ŷ_b = Σ_{l<L_b} C_l[k_l]
//!           x̂ = g_s(ŷ),  loss = D(x, x̂)                 D: 650·MSE or 30·(1 − MS-SSIM)
//!           --train-encoder: ŷ = y + sg(ŷ − y) (straight-through), loss += β·‖y − sg(ŷ)‖²
//!  stop     checkpoint; k-means-reduced level-0 codebooks (weighted by code usage);
//!           priors counted on the training latents ──► <ckpt>/priors.bin (used by export)
//! ```
//! Codebooks move only by EMA (decay 0.99), never by gradient. With a frozen encoder (the
//! default) the latents are computed once and cached, and only g_s trains, scored on crop
//! interiors (a latent crop of a whole image decodes with zeros beyond its edges).

use std::path::Path;
use std::time::Instant;

use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::session::{self, TrainOptions, TrainState, Trainer, checkpoint, optimizer, resume_run, start_run};
pub use super::session::{VqLoss, VqTrainOptions};
use crate::data::LatentSet;
use crate::data::TrainSet;
use crate::error::{Error, Result};
use crate::models::vq::{self, Codebook, Codebooks, kmeans};
use crate::models::{ImageModel, VqConfig};
use crate::nn::{from_host, to_host};
use crate::weights;

/// Running codebook statistics: per level, EMA of code counts and of the residual sums.
struct Ema {
    counts: Vec<Vec<f64>>,
    sums: Vec<Vec<f64>>,
}

const EMA_MAGIC: &[u8; 4] = b"NVQE";

impl Ema {
    fn new(books: &Codebooks) -> Self {
        // Start as if every code had been seen once at its current value.
        let counts = books.levels.iter().map(|b| vec![1.0; b.len()]).collect();
        let sums = books.levels.iter().map(|b| b.codes.iter().map(|&v| v as f64).collect()).collect();
        Self { counts, sums }
    }

    /// Folds a batch (`vectors` row-major, `idx[level][i]`) into the statistics and rebuilds
    /// the codebooks from them; codes whose count fell below `dead` restart at a random
    /// residual of the batch. Returns the number of restarts.
    fn update(&mut self, books: &mut Codebooks, vectors: &[f32], idx: &[Vec<u32>], decay: f64, rng: &mut impl Rng) -> usize {
        let dim = books.levels[0].dim;
        let n = vectors.len() / dim;
        let mut residual = vectors.to_vec();
        let mut restarts = 0;
        for (l, ks) in idx.iter().enumerate() {
            let k = books.levels[l].len();
            let (mut cnt, mut sum) = (vec![0f64; k], vec![0f64; k * dim]);
            for (i, &c) in ks.iter().enumerate() {
                cnt[c as usize] += 1.0;
                for (s, &v) in sum[c as usize * dim..(c as usize + 1) * dim].iter_mut().zip(&residual[i * dim..(i + 1) * dim]) {
                    *s += v as f64;
                }
            }
            // Residuals for the next level, with this level's codes before the update.
            let old = books.levels[l].clone();
            for (i, &c) in ks.iter().enumerate() {
                for (r, &v) in residual[i * dim..(i + 1) * dim].iter_mut().zip(old.code(c as usize)) {
                    *r -= v;
                }
            }
            let expected = n as f64 / k as f64;
            let (counts, sums) = (&mut self.counts[l], &mut self.sums[l]);
            let mut codes = old.codes.clone();
            for c in 0..k {
                counts[c] = decay * counts[c] + (1.0 - decay) * cnt[c];
                for d in 0..dim {
                    sums[c * dim + d] = decay * sums[c * dim + d] + (1.0 - decay) * sum[c * dim + d];
                }
                if counts[c] < 0.02 * expected.min(1.0) {
                    // Dead: move it onto data this level actually sees (the input residual).
                    let i = rng.gen_range(0..n);
                    let src: Vec<f64> = (0..dim).map(|d| residual[i * dim + d] as f64 + old.code(ks[i] as usize)[d] as f64).collect();
                    counts[c] = expected.max(1e-3);
                    for d in 0..dim {
                        sums[c * dim + d] = src[d] * counts[c];
                    }
                    restarts += 1;
                }
                for d in 0..dim {
                    codes[c * dim + d] = (sums[c * dim + d] / counts[c]) as f32;
                }
            }
            books.levels[l] = Codebook::new(dim, codes);
        }
        restarts
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = EMA_MAGIC.to_vec();
        out.extend_from_slice(&(self.counts.len() as u32).to_le_bytes());
        for (c, s) in self.counts.iter().zip(&self.sums) {
            out.extend_from_slice(&(c.len() as u32).to_le_bytes());
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend(c.iter().chain(s).flat_map(|v| v.to_le_bytes()));
        }
        out
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = crate::bytes::Reader::new(bytes, "VQ training state");
        if r.take(4)? != EMA_MAGIC {
            return Err(Error::Format("not a VQ training state".into()));
        }
        let levels = r.u32_le()? as usize;
        let (mut counts, mut sums) = (vec![], vec![]);
        for _ in 0..levels.min(16) {
            let (nc, ns) = (r.u32_le()? as usize, r.u32_le()? as usize);
            let mut read = |n: usize| -> Result<Vec<f64>> { Ok(r.take(n * 8)?.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect()) };
            counts.push(read(nc)?);
            sums.push(read(ns)?);
        }
        Ok(Self { counts, sums })
    }
}

/// Greedy residual k-means on `samples` random latent vectors: level l clusters what levels
/// < l left over.
fn init_codebooks(cfg: &VqConfig, latents: &LatentSet, samples: usize, rng: &mut impl Rng) -> Codebooks {
    let m = latents.channels();
    let mut points = Vec::with_capacity(samples * m);
    for _ in 0..samples {
        let (h, w, y) = latents.get(rng.gen_range(0..latents.len()));
        let i = rng.gen_range(0..h * w);
        points.extend((0..m).map(|c| y[c * h * w + i]));
    }
    let weights = vec![1.0; samples];
    let mut levels: Vec<Codebook> = vec![];
    for l in 0..cfg.levels {
        let book = kmeans(&points, &weights, m, cfg.codes, 12, rng);
        for p in points.chunks_exact_mut(m) {
            let k = book.nearest(p) as usize;
            for (v, c) in p.iter_mut().zip(book.code(k)) {
                *v -= c;
            }
        }
        let left: f64 = points.iter().map(|&v| (v * v) as f64).sum::<f64>() / samples as f64;
        eprintln!("codebook level {l}: k-means of {samples} vectors, residual energy {left:.3} per vector");
        levels.push(book);
    }
    let mut books = Codebooks { levels, reduced: vec![] };
    reduce_codebooks(cfg, &mut books, &vec![1.0; cfg.codes], rng);
    books
}

/// The reduced level-0 codebooks: k-means of the full codebook's codes weighted by usage
/// (the VQGAN-reduction recipe), so frequent codes keep their place.
fn reduce_codebooks(cfg: &VqConfig, books: &mut Codebooks, usage: &[f64], rng: &mut impl Rng) {
    let full = &books.levels[0];
    books.reduced = cfg.reduced_sizes().into_iter().map(|k| kmeans(&full.codes, usage, full.dim, k, 50, rng)).collect();
}

pub fn train(opts: &TrainOptions) -> Result<TrainState> {
    let cfg = opts.config.vq.clone().ok_or_else(|| Error::Unsupported("VQ training needs a VQ configuration".into()))?;
    let vopts = &opts.vq;
    let scored = if vopts.train_encoder { opts.crop } else { opts.crop - 2 * (2 * crate::models::Y_STRIDE).min(opts.crop / 4) };
    if vopts.loss == VqLoss::MsSsim && scored < crate::nn::ms_ssim::MIN_SIDE {
        return Err(Error::Unsupported(format!("the MS-SSIM loss needs {} scored pixels a side; --crop {} scores {scored}", crate::nn::ms_ssim::MIN_SIDE, opts.crop)));
    }
    if !opts.crop.is_multiple_of(crate::models::Y_STRIDE) || opts.crop < 2 * crate::models::Y_STRIDE {
        return Err(Error::Unsupported(format!("--crop must be a multiple of {0} and at least {1}", crate::models::Y_STRIDE, 2 * crate::models::Y_STRIDE)));
    }
    let device = crate::backend::device().autodiff();
    let plain = crate::backend::device();
    let dir = &opts.ckpt_dir;
    let (set, mut state) = start_run(opts)?;
    let (model, optim, resumed) = match resume_run(opts, &mut state, &device)? {
        Some((m, o)) => (m, o, true),
        None => {
            let init = opts.init_from.as_ref().ok_or_else(|| Error::Unsupported("VQ training starts from a trained model's transforms: give --init-from (e.g. codecs/mlic/weights.ncw)".into()))?;
            let loaded = weights::load(init, &device)?;
            if (loaded.config.n, loaded.config.m, loaded.config.transforms) != (opts.config.n, opts.config.m, opts.config.transforms) {
                let c = &loaded.config;
                return Err(Error::Unsupported(format!("{} has N={}, M={}, --transforms {}; give the same --n, --m and --transforms", init.display(), c.n, c.m, c.transforms.flag())));
            }
            eprintln!("transforms from {}", init.display());
            (opts.config.init(&device).with_transforms_of(&loaded.model), optimizer(), false)
        }
    };
    let mut rng = StdRng::seed_from_u64(opts.seed.wrapping_add(state.step as u64));
    device.seed(opts.seed.wrapping_add(state.step as u64));

    let latents = latents_of(&model, opts, &set, &plain)?;
    let ema_path = dir.join("vq_ema.bin");
    let (books, ema) = if resumed {
        let books = model.vq_latent().expect("VQ model").host();
        let ema = Ema::from_bytes(&std::fs::read(&ema_path).map_err(|e| Error::io(&ema_path, e))?)?;
        if ema.counts.len() != books.levels.len() {
            return Err(Error::Format(format!("{} does not match the model", ema_path.display())));
        }
        (books, ema)
    } else {
        let t = Instant::now();
        let books = init_codebooks(&cfg, &latents, 20_000, &mut rng);
        eprintln!("codebooks initialised in {:.0} s", t.elapsed().as_secs_f64());
        let ema = Ema::new(&books);
        (books, ema)
    };

    let mut trainer = VqTrainer { opts, cfg: cfg.clone(), model: Some(model), optim, books, ema, ema_path, set, latents, rng, plain, device, acc: Accumulator::default() };
    let state = session::run(opts, state, &mut trainer)?;
    // Reduced codebooks and priors, from the latents of the final encoder.
    let t = &mut trainer;
    if vopts.train_encoder {
        t.latents = latents_of(t.model.as_ref().expect("the model is put back after every step"), opts, &t.set, &t.plain)?;
    }
    let usage: Vec<f64> = t.ema.counts[0].clone();
    reduce_codebooks(&cfg, &mut t.books, &usage, &mut t.rng);
    eprintln!("learning the priors on {} training latents", t.set.len());
    let refs: Vec<(usize, usize, &[f32])> = (0..t.latents.len()).step_by(2).map(|i| t.latents.get(i)).collect();
    let (priors, bits) = vq::fit_priors(&cfg, &t.books, &refs)?;
    for (s, b) in priors.iter().zip(&bits) {
        let parts: Vec<String> = b.iter().map(|v| format!("{v:.2}")).collect();
        eprintln!("  level-0 codes {:>4}: held-out bits/symbol per pass [{}]", s.first_codes, parts.join(", "));
    }
    crate::io::write_atomic(&dir.join("priors.bin"), &vq::priors_to_bytes(&priors))?;
    // The reduced codebooks go into the final checkpoint with the model.
    trainer.checkpoint(&state)?;
    Ok(state)
}

/// Latents of `model`'s g_a on the training set, cached by its digest: codebook init,
/// frozen-encoder batches and the priors.
fn latents_of(model: &ImageModel, opts: &TrainOptions, set: &TrainSet, plain: &Device) -> Result<LatentSet> {
    let frozen = crate::weights::copy_to(model, &opts.config, plain).model;
    LatentSet::cached(&opts.ckpt_dir.join("latents.bin"), &frozen.analysis_digest(), set, &frozen, plain)
}

/// VQ decoder and codebook training as the session drives it.
struct VqTrainer<'a> {
    opts: &'a TrainOptions,
    cfg: VqConfig,
    /// Taken by each step (burn's optimizer consumes the model) and put back.
    model: Option<ImageModel>,
    optim: ModuleOptimizer,
    /// The codebooks on the host: moved by EMA, folded into the model at each checkpoint.
    books: Codebooks,
    ema: Ema,
    ema_path: std::path::PathBuf,
    set: TrainSet,
    latents: LatentSet,
    rng: StdRng,
    plain: Device,
    device: Device,
    acc: Accumulator,
}

impl Trainer for VqTrainer<'_> {
    fn log_columns(&self) -> &'static str {
        "loss,mse,psnr,psnr_all_levels,perplexity_level0,restarts"
    }

    fn step(&mut self, step: usize) -> Result<f64> {
        let m = self.opts.config.m;
        let size = self.opts.crop / crate::models::Y_STRIDE;
        let model = self.model.take().expect("the model is put back after every step");
        // y on the host for the quantizer; x and (with a trainable encoder) y on the device.
        let (x, y_dev, y_host, border) = if self.opts.vq.train_encoder {
            let x = self.set.batch(&mut self.rng, self.opts.batch, self.opts.crop, self.opts.rescale_min, &self.device);
            let y = model.analyze(x.clone());
            let host = to_host(y.clone().detach());
            (x, Some(y), host, 0)
        } else {
            let (y, x) = self.latents.batch(&self.set, &mut self.rng, self.opts.batch, size, &self.plain)?;
            (x.to_device(&self.device), None, to_host(y), (2 * crate::models::Y_STRIDE).min(self.opts.crop / 4))
        };
        let [b, _, h, w] = x.dims();
        let (s_h, s_w) = (h / crate::models::Y_STRIDE, w / crate::models::Y_STRIDE);
        let per = m * s_h * s_w;
        let vectors: Vec<f32> = y_host.chunks(per).flat_map(|s| vq::planar_to_vectors(s, m)).collect();
        let (idx, _) = self.books.quantize(&vectors, self.cfg.levels, &self.books.levels[0]);
        // Quantizer dropout: sample i decodes from its first `keep[i]` levels.
        let keep: Vec<usize> = (0..b).map(|_| self.rng.gen_range(1..=self.cfg.levels)).collect();
        let positions = s_h * s_w;
        let mut y_q = Vec::with_capacity(vectors.len());
        for (i, &k) in keep.iter().enumerate() {
            let part: Vec<Vec<u32>> = idx[..k].iter().map(|ks| ks[i * positions..(i + 1) * positions].to_vec()).collect();
            y_q.extend(vq::vectors_to_planar(&self.books.reconstruct(&part, &self.books.levels[0]), m));
        }
        let (perplexity, _) = vq::usage(&idx[0], self.cfg.codes);
        let restarts = self.ema.update(&mut self.books, &vectors, &idx, self.opts.vq.decay, &mut self.rng);
        let y_q = from_host(y_q, [b, m, s_h, s_w], &self.device);
        let (y_hat, commitment) = match y_dev {
            Some(y) => {
                let commit = (y.clone() - y_q.clone()).powi_scalar(2).mean().mul_scalar(self.opts.vq.commitment);
                (y.clone() + (y_q - y).detach(), Some(commit))
            }
            None => (y_q, None),
        };
        let x_hat = model.synthesis(y_hat);
        let interior = |t: Tensor<4>| if border == 0 { t } else { t.narrow(2, border, h - 2 * border).narrow(3, border, w - 2 * border) };
        let (x_hat, x) = (interior(x_hat), interior(x));
        let mse_each = (x_hat.clone() - x.clone()).powi_scalar(2).reshape([b as i32, -1]).mean_dim(1).reshape([b]);
        let distortion = match self.opts.vq.loss {
            VqLoss::Mse => mse_each.clone().mean().mul_scalar(650.0),
            VqLoss::MsSsim => crate::nn::ms_ssim::ms_ssim(x_hat.clamp(0.0, 1.0), x).neg().add_scalar(1.0).mean().mul_scalar(30.0),
        };
        let loss = match commitment {
            Some(c) => distortion + c,
            None => distortion,
        };
        let loss_value = to_host(loss.clone())[0] as f64;
        if !loss_value.is_finite() {
            return Err(Error::Codec(format!("loss became {loss_value} at step {}", step + 1)));
        }
        let mse = to_host(mse_each.detach());
        let grads = loss.backward();
        let grads = if self.opts.vq.train_encoder { GradientsParams::from_grads(grads, &model) } else { GradientsParams::from_grads(grads, model.synthesis_module()) };
        self.model = Some(self.optim.step(self.opts.lr, model, grads));
        self.acc.add(loss_value, &mse, &keep, self.cfg.levels, perplexity, restarts);
        Ok(loss_value)
    }

    fn report(&mut self) -> (String, String) {
        let l = self.acc.take();
        (
            format!("{:.5},{:.6},{:.3},{:.3},{:.1},{}", l.loss, l.mse, l.psnr, l.psnr_all, l.perplexity, l.restarts),
            format!("psnr {:.2} (all levels {:.2}) perplexity₀ {:.0} restarts {}", l.psnr, l.psnr_all, l.perplexity, l.restarts),
        )
    }

    fn checkpoint(&mut self, state: &TrainState) -> Result<()> {
        let model = self.model.take().expect("the model is put back after every step").with_codebooks(&self.books);
        crate::io::write_atomic(&self.ema_path, &self.ema.to_bytes())?;
        checkpoint(&model, &self.optim, state, &self.opts.ckpt_dir)?;
        self.model = Some(model);
        Ok(())
    }
}

/// Reads the priors a VQ training run left in its checkpoint directory.
pub fn load_priors(dir: &Path) -> Result<Vec<vq::PriorSet>> {
    let path = dir.join("priors.bin");
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    vq::priors_from_reader(&mut crate::bytes::Reader::new(&bytes, "VQ priors"))
}

#[derive(Default)]
struct Accumulator {
    loss: f64,
    mse: f64,
    n: usize,
    mse_all: f64,
    n_all: usize,
    perplexity: f64,
    steps: usize,
    restarts: usize,
}

struct LogLine {
    loss: f64,
    mse: f64,
    psnr: f64,
    psnr_all: f64,
    perplexity: f64,
    restarts: usize,
}

impl Accumulator {
    fn add(&mut self, loss: f64, mse: &[f32], keep: &[usize], levels: usize, perplexity: f64, restarts: usize) {
        self.loss += loss;
        for (&e, &k) in mse.iter().zip(keep) {
            self.mse += e as f64;
            self.n += 1;
            if k == levels {
                self.mse_all += e as f64;
                self.n_all += 1;
            }
        }
        self.perplexity += perplexity;
        self.steps += 1;
        self.restarts += restarts;
    }

    fn take(&mut self) -> LogLine {
        let psnr = |mse: f64| 10.0 * (1.0 / mse).log10();
        let mse = self.mse / self.n.max(1) as f64;
        let line = LogLine {
            loss: self.loss / self.steps.max(1) as f64,
            mse,
            psnr: psnr(mse),
            psnr_all: if self.n_all > 0 { psnr(self.mse_all / self.n_all as f64) } else { f64::NAN },
            perplexity: self.perplexity / self.steps.max(1) as f64,
            restarts: self.restarts,
        };
        *self = Self::default();
        line
    }
}
