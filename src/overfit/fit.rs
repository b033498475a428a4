//! Encoding = fitting: latents and network optimised jointly for one image against
//! λ·MSE-free Cool-chic loss `MSE + λ·bpp`, then quantized and coded.
//!
//! ```text
//!  [--coarse-steps: the image halved (2x2 means), one level fewer, λ/4, fitted the same way;
//!   its levels become levels 1…, its networks these networks]
//!  zero latents, seeded network ──Adam: warm-up, lr held for half the steps, then cosine
//!      (latents 4× → 1×); with N candidates, N seeds for a tenth of the steps, best kept──►
//!      first 80 % of steps: soft-rounded noisy latents, temperature 0.3 → 0.1
//!      last 20 %:           rounded latents, straight-through gradients; the parameters
//!                           of the lowest rounded loss seen are the ones kept
//!  ──weights to steps chosen by rate-distortion, latents rounded──► stream (see `stream`)
//! ```

use std::time::Instant;

use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use image::RgbImage;

use super::cpu::{Adam, Problem, noise_rng};
use super::model::{ARM_LAYERS, Architecture, OverfitNet, Params, Quantization};
use crate::error::Result;
use crate::nn::{from_host, to_host};

#[derive(Debug, Clone)]
pub struct FitOptions {
    pub arch: Architecture,
    /// Rate weight of the loss `MSE + λ·bpp` (MSE of [0, 1] samples).
    pub lambda: f64,
    pub steps: usize,
    pub lr: f64,
    pub seed: u64,
    /// Initialisations tried (seeds `seed`, `seed + 1`, …): each runs the first
    /// [`warmup_steps`] and only the best continues (Cool-chic's warm-up).
    pub candidates: usize,
    /// Steps of a fit at half resolution whose latents and networks start this one (0: none).
    pub coarse_steps: usize,
}

/// Steps each candidate initialisation runs before one is kept: a tenth of the fit (none
/// with a single candidate). Short fits are a lottery: on a 256x256 crop of kodim01 at q4 and
/// 400 steps, seeds 1-4 gave 27.06, 24.17, 27.14 and 26.50 dB, and the loss after 40 steps
/// already told seed 2 apart. Three candidates cut the mean J of 8 seeds by 10 % on two crops
/// at 1.2× the time; 20 % more steps of one fit, the same time, did worse on one crop and
/// better on the other (README).
pub fn warmup_steps(opts: &FitOptions) -> usize {
    if opts.candidates > 1 { (opts.steps / 10).max(1) } else { 0 }
}

impl FitOptions {
    /// What to write after the step count where a fit starts at half resolution
    /// (" after N at half resolution"), else nothing.
    pub fn half_resolution_note(&self) -> String {
        if self.coarse_steps > 0 { format!(" after {} at half resolution", self.coarse_steps) } else { String::new() }
    }
}

/// Steps a fit makes in all (its progress counts to this): with a half-resolution start,
/// that fit's (where the candidates are tried) and then the full one's.
pub fn total_steps(opts: &FitOptions) -> usize {
    match coarse_options(opts) {
        Some(coarse) => total_steps(&coarse) + opts.steps,
        None => opts.steps + warmup_steps(opts) * opts.candidates.saturating_sub(1),
    }
}

/// Runs every candidate through the warm-up (`step(state, step index)` returns that step's
/// loss) and returns the one with the lowest loss summed over the warm-up's last quarter,
/// and the index of the step it continues from.
fn best_candidate<S>(opts: &FitOptions, mut init: impl FnMut(u64) -> S, mut step: impl FnMut(&mut S, usize) -> f64) -> (S, usize) {
    let warm = warmup_steps(opts);
    if warm == 0 {
        return (init(opts.seed), 0);
    }
    let tail = (warm / 4).max(1);
    let mut best: Option<(f64, S)> = None;
    for c in 0..opts.candidates as u64 {
        let mut state = init(opts.seed + c);
        let score: f64 = (0..warm).map(|k| step(&mut state, k)).skip(warm - tail).sum();
        if best.as_ref().is_none_or(|(b, _)| score < *b) {
            best = Some((score, state));
        }
    }
    (best.expect("two or more candidates").1, warm)
}

/// Progress of a fit, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub struct FitProgress {
    pub step: usize,
    pub steps: usize,
    /// PSNR of the last step's reconstruction (with the quantization of that phase).
    pub psnr: f64,
    /// The ARM's estimate of the latents' rate (bits per pixel, without the network).
    pub bpp: f64,
    pub seconds: f64,
}

/// The image as planar [0, 1] samples (`[3][H][W]`).
pub fn planar(img: &RgbImage) -> Vec<f32> {
    let n = (img.width() * img.height()) as usize;
    let mut out = vec![0f32; 3 * n];
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * n + i] = p[c] as f32 / 255.0;
        }
    }
    out
}

/// The image as a `[1, 3, H, W]` tensor of [0, 1] samples.
pub fn image_tensor(img: &RgbImage, device: &Device) -> Tensor<4> {
    from_host(planar(img), [1, 3, img.height() as usize, img.width() as usize], device)
}

/// Soft-rounded noisy latents for the first 80 % of the steps, the temperature falling
/// linearly from 0.3 to 0.1 (C3's recipe), then rounded ones with straight-through
/// gradients. On a 256x256 crop of kodim01 at q4, 1000 steps: uniform noise in place of soft
/// rounding gave 0.628 bpp at 25.52 dB, this 0.447 bpp at 25.51 dB; a 90 % or 70 % first
/// phase, temperatures 0.5→0.2 or 0.2→0.05, or twice the learning rate all did worse.
fn quantization_at(opts: &FitOptions, step: usize) -> Quantization {
    let soft_end = opts.steps * 4 / 5;
    if step >= soft_end {
        return Quantization::Round;
    }
    let t = step as f32 / soft_end as f32;
    Quantization::SoftRound { temperature: 0.3 - 0.2 * t }
}

/// Whether the `done`-th step of a fit (counted from 0, over all candidates) reports its
/// progress: the first, every 10th (so the reported counts are 1, 10, 20, …), and the last.
fn reports(opts: &FitOptions, done: usize) -> bool {
    done == 0 || (done + 1).is_multiple_of(10) || done + 1 == total_steps(opts)
}

impl FitProgress {
    fn after(done: usize, opts: &FitOptions, mse: f64, bpp: f64, start: Instant) -> Self {
        Self { step: done + 1, steps: total_steps(opts), psnr: -10.0 * mse.max(1e-12).log10(), bpp, seconds: start.elapsed().as_secs_f64() }
    }
}

/// How much faster the latents learn than the networks at the first step, falling linearly
/// to 1× at the last. Latents start at zero and must travel several quantization steps,
/// which at 1e-2 per step takes most of a short fit. On a 256x256 crop of kodim01 at q4
/// (J = MSE + λ·bpp from real bytes): 400 steps J 0.004667 → 0.003560, 1000 steps 0.003139 →
/// 0.003019, 2000 steps 0.002857 → 0.002868; a constant 4× did as well at 400 steps and
/// worse at 2000 (0.002915), 8× falling to 1× worse at 400 (0.003733).
const LATENT_LR_BOOST: f64 = 4.0;

/// The networks' and the latents' learning rates at `step`.
fn learning_rates(opts: &FitOptions, step: usize) -> (f64, f64) {
    let lr = learning_rate(opts, step);
    let boost = 1.0 + (LATENT_LR_BOOST - 1.0) * (1.0 - step as f64 / opts.steps as f64);
    (lr, lr * boost)
}

/// Share of the steps after the warm-up at the full learning rate before the cosine decay.
/// Short fits gain most: on 256x256 crops at q4 and 400 steps, mean J of 8 seeds 0.003589 →
/// 0.003301 (kodim01) and 0.002720 → 0.002191 (kodim03), every seed better; all of kodim03
/// 0.002115 → 0.001917; at 1800 steps −0.2 % and −2.7 % (2 seeds). 0.7 did as well as 0.5.
const LR_HOLD: f64 = 0.5;

fn learning_rate(opts: &FitOptions, step: usize) -> f64 {
    let warmup = (opts.steps / 50).max(1);
    if step < warmup {
        return opts.lr * (step + 1) as f64 / warmup as f64;
    }
    let t = ((step - warmup) as f64 / (opts.steps - warmup).max(1) as f64 - LR_HOLD).max(0.0) / (1.0 - LR_HOLD);
    opts.lr * (0.5 * (1.0 + (std::f64::consts::PI * t).cos())).max(0.01)
}

/// Fits the network to `img`; returns every parameter on the host. On the CPU backend the
/// hand-written pass of [`super::cpu`] runs it; on any other, burn's autodiff.
pub fn fit(img: &RgbImage, opts: &FitOptions, device: &Device, progress: &mut dyn FnMut(FitProgress)) -> Result<Params> {
    fit_samples(planar(img), img.height() as usize, img.width() as usize, opts, device, progress)
}

/// Rate weight of the half-resolution fit against the full one's: its latents are the full
/// fit's levels 1…, whose bits the full fit spreads over four times the pixels. (1 and 1/16
/// did as well on 256x256 crops: the coarse fit only has to land near the right place.)
const COARSE_LAMBDA_SCALE: f64 = 0.25;

/// The options of the half-resolution fit that starts a fit with `opts`, if it has one: one
/// level fewer (its levels are the full fit's levels 1…), the same networks, and the
/// initialisations tried there, where they are cheap.
fn coarse_options(opts: &FitOptions) -> Option<FitOptions> {
    (opts.coarse_steps > 0 && opts.arch.levels > 1).then(|| FitOptions {
        arch: Architecture { levels: opts.arch.levels - 1, ..opts.arch },
        steps: opts.coarse_steps,
        coarse_steps: 0,
        lambda: opts.lambda * COARSE_LAMBDA_SCALE,
        ..opts.clone()
    })
}

/// Fits `[3][H][W]` samples: first at half resolution when `opts` asks for it, then at full
/// resolution from that fit; progress counts through both.
fn fit_samples(samples: Vec<f32>, h: usize, w: usize, opts: &FitOptions, device: &Device, progress: &mut dyn FnMut(FitProgress)) -> Result<Params> {
    let Some(coarse) = coarse_options(opts) else {
        return fit_from(samples, h, w, opts, None, device, progress);
    };
    let clock = Instant::now();
    let (total, before) = (total_steps(opts), total_steps(&coarse));
    let small =
        fit_samples(half_resolution(&samples, h, w), h.div_ceil(2), w.div_ceil(2), &coarse, device, &mut |p| progress(FitProgress { steps: total, seconds: clock.elapsed().as_secs_f64(), ..p }))?;
    let full = FitOptions { candidates: 1, coarse_steps: 0, ..opts.clone() };
    fit_from(samples, h, w, &full, Some(&small), device, &mut |p| progress(FitProgress { step: before + p.step, steps: total, seconds: clock.elapsed().as_secs_f64(), ..p }))
}

/// One fit at the samples' resolution, from seeded networks and zero latents, or from a
/// half-resolution fit (`warm`).
fn fit_from(samples: Vec<f32>, h: usize, w: usize, opts: &FitOptions, warm: Option<&Params>, device: &Device, progress: &mut dyn FnMut(FitProgress)) -> Result<Params> {
    let start = |seed: u64| {
        let mut params = OverfitNet::new(&opts.arch, h, w, seed, device).to_params();
        if let Some(coarse) = warm {
            lift(&mut params, coarse, opts.arch.levels);
        }
        params
    };
    if runs_on_cpu(device) { Ok(fit_cpu(samples, h, w, opts, &start, progress)) } else { fit_tensors(samples, h, w, opts, &start, device, progress) }
}

/// Whether `device` is the CPU backend (where the hand-written pass is the faster one).
pub(crate) fn runs_on_cpu(device: &Device) -> bool {
    #[cfg(feature = "flex")]
    return *device == Device::flex();
    #[cfg(not(feature = "flex"))]
    {
        let _ = device;
        false
    }
}

/// `[3][H][W]` samples averaged over 2x2 blocks (edges repeated when a side is odd).
fn half_resolution(samples: &[f32], h: usize, w: usize) -> Vec<f32> {
    let (hs, ws) = (h.div_ceil(2), w.div_ceil(2));
    let mut out = Vec::with_capacity(3 * hs * ws);
    for c in 0..3 {
        let plane = &samples[c * h * w..(c + 1) * h * w];
        for y in 0..hs {
            let (y0, y1) = (2 * y, (2 * y + 1).min(h - 1));
            for x in 0..ws {
                let (x0, x1) = (2 * x, (2 * x + 1).min(w - 1));
                out.push(0.25 * (plane[y0 * w + x0] + plane[y0 * w + x1] + plane[y1 * w + x0] + plane[y1 * w + x1]));
            }
        }
    }
    out
}

/// Puts a half-resolution fit (one level fewer) into `params`: its levels become levels 1…,
/// its networks these networks, the synthesis's input from level 0 keeping its initial weights.
fn lift(params: &mut Params, coarse: &Params, levels: usize) {
    for (fine, c) in params.latents[1..].iter_mut().zip(&coarse.latents) {
        fine.copy_from_slice(c);
    }
    for (i, (layer, c)) in params.layers.iter_mut().zip(&coarse.layers).enumerate() {
        if i == ARM_LAYERS {
            // Weight [out][levels]; the coarse one is [out][levels − 1].
            for (o, row) in layer.0.chunks_mut(levels).enumerate() {
                row[1..].copy_from_slice(&c.0[o * (levels - 1)..(o + 1) * (levels - 1)]);
            }
        } else {
            layer.0.copy_from_slice(&c.0);
        }
        layer.1.copy_from_slice(&c.1);
    }
}

/// The hand-written pass, from the parameters `start(seed)`.
fn fit_cpu(samples: Vec<f32>, h: usize, w: usize, opts: &FitOptions, start: &dyn Fn(u64) -> Params, progress: &mut dyn FnMut(FitProgress)) -> Params {
    let pixels = (w * h) as f64;
    let problem = Problem::new(opts.arch, h, w, samples);
    let clock = Instant::now();
    let mut done = 0;
    let mut best = KeepBest::default();
    let init = |seed: u64| {
        let params = start(seed);
        let adam = Adam::new(&params);
        (params, adam, noise_rng(seed))
    };
    // One step of a run; offers the parameters to `best` when `keep` (after the warm-up).
    let mut step = |(params, adam, noise): &mut (Params, Adam, rand::rngs::StdRng), step: usize, best: Option<&mut KeepBest<Params>>| {
        let q = quantization_at(opts, step);
        let (loss, grads) = problem.loss_and_grads(params, opts.lambda, q, noise);
        let j = loss.mse + opts.lambda * loss.bits / pixels;
        if let (Quantization::Round, Some(best)) = (q, best) {
            best.offer(j, params);
        }
        let (lr, latent_lr) = learning_rates(opts, step);
        adam.step(params, &grads, lr, latent_lr);
        problem.recycle_gradients(grads);
        if reports(opts, done) {
            progress(FitProgress::after(done, opts, loss.mse, loss.bits / pixels, clock));
        }
        done += 1;
        j
    };
    let (mut run, first) = best_candidate(opts, init, |run, k| step(run, k, None));
    for k in first..opts.steps {
        step(&mut run, k, Some(&mut best));
    }
    best.or(run.0)
}

/// The parameters (host ones, or a module on its device) of the lowest loss offered: the
/// fits offer the rounded loss a decoder gets, which straight-through steps do not always
/// lower (C3 and Cool-chic keep the best too).
struct KeepBest<T> {
    best: Option<(f64, T)>,
}

impl<T: Clone> Default for KeepBest<T> {
    fn default() -> Self {
        Self { best: None }
    }
}

impl<T: Clone> KeepBest<T> {
    fn offer(&mut self, loss: f64, params: &T) {
        if self.best.as_ref().is_none_or(|(b, _)| loss < *b) {
            self.best = Some((loss, params.clone()));
        }
    }

    fn or(self, last: T) -> T {
        self.best.map_or(last, |(_, p)| p)
    }
}

/// The distortion (MSE of [0, 1] samples) and the ARM's estimate of the latents' bits of
/// each candidate network, latents rounded: what a decoder of those parameters reconstructs.
pub fn measure(img: &RgbImage, arch: &Architecture, candidates: &[Params], device: &Device) -> Result<Vec<(f64, f64)>> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if runs_on_cpu(device) {
        let problem = Problem::new(*arch, h, w, planar(img));
        return Ok(candidates.iter().map(|p| problem.loss_and_grads(p, 0.0, Quantization::Round, &mut noise_rng(0)).0).map(|l| (l.mse, l.bits)).collect());
    }
    let x = image_tensor(img, device);
    let sizes = arch.level_sizes(h, w);
    candidates
        .iter()
        .map(|p| {
            let out = OverfitNet::from_params(arch, &sizes, p, device).forward(Quantization::Round);
            let mse = to_host((out.x_hat - x.clone()).powi_scalar(2).mean())[0] as f64;
            Ok((mse, to_host(out.bits)[0] as f64))
        })
        .collect()
}

fn fit_tensors(samples: Vec<f32>, h: usize, w: usize, opts: &FitOptions, start: &dyn Fn(u64) -> Params, device: &Device, progress: &mut dyn FnMut(FitProgress)) -> Result<Params> {
    let train_device = device.clone().autodiff();
    let x = from_host(samples, [1, 3, h, w], &train_device);
    let sizes = opts.arch.level_sizes(h, w);
    let pixels = (w * h) as f64;
    let clock = Instant::now();
    let mut done = 0;
    let mut best = KeepBest::default();
    let init = |seed: u64| {
        let optim: ModuleOptimizer = AdamConfig::new().with_epsilon(1e-8).init();
        (Some(OverfitNet::from_params(&opts.arch, &sizes, &start(seed), &train_device)), optim)
    };
    let mut step = |(model, optim): &mut (Option<OverfitNet>, ModuleOptimizer), step: usize, best: Option<&mut KeepBest<OverfitNet>>| {
        let net = model.take().expect("a model between steps");
        let q = quantization_at(opts, step);
        let out = net.forward(q);
        let mse = (out.x_hat - x.clone()).powi_scalar(2).mean();
        let bpp = out.bits.div_scalar(pixels);
        let loss = mse.clone() + bpp.clone().mul_scalar(opts.lambda);
        let measured = reports(opts, done).then(|| (to_host(mse.clone().detach())[0] as f64, to_host(bpp.clone().detach())[0] as f64));
        let j = to_host(loss.clone().detach())[0] as f64;
        if let (Quantization::Round, Some(best)) = (q, best) {
            best.offer(j, &net);
        }
        let mut grads = loss.backward();
        // Two steps of one optimiser (its state is per parameter): latents, then networks.
        let latents = GradientsParams::from_params(&mut grads, &net, &net.latent_ids());
        let networks = GradientsParams::from_grads(grads, &net);
        let (lr, latent_lr) = learning_rates(opts, step);
        let net = optim.step(latent_lr, net, latents);
        *model = Some(optim.step(lr, net, networks));
        if let Some((mse, bpp)) = measured {
            progress(FitProgress::after(done, opts, mse, bpp, clock));
        }
        done += 1;
        j
    };
    let (mut run, first) = best_candidate(opts, init, |run, k| step(run, k, None));
    for k in first..opts.steps {
        step(&mut run, k, Some(&mut best));
    }
    Ok(best.or(run.0.expect("a model after the last step")).to_params())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2x2 means, the last row and column repeated when a side is odd.
    #[test]
    fn half_resolution_averages_blocks() {
        let (h, w) = (3, 5);
        let samples: Vec<f32> = (0..3 * h * w).map(|i| i as f32).collect();
        let small = half_resolution(&samples, h, w);
        assert_eq!(small.len(), 3 * 2 * 3);
        // Channel 0: rows 0-1 of columns 0-1, columns 4 and 4 (repeated), row 2 twice.
        assert_eq!(&small[..6], &[3.0, 5.0, 6.5, 10.5, 12.5, 14.0]);
        assert_eq!(small[6], 3.0 + 15.0);
    }

    /// The small fit's levels become levels 1…, its networks these networks; the synthesis's
    /// weights from level 0 stay as they were.
    #[test]
    fn lifting_places_the_small_fit() {
        let arch = Architecture { levels: 3, arm_hidden: 2, synthesis_width: 2 };
        let device = Device::flex();
        let mut full = OverfitNet::new(&arch, 8, 6, 1, &device).to_params();
        let small = OverfitNet::new(&Architecture { levels: 2, ..arch }, 4, 3, 2, &device).to_params();
        let mut small = small;
        small.latents.iter_mut().flatten().enumerate().for_each(|(i, v)| *v = i as f32 + 1.0);
        let level0 = full.latents[0].clone();
        let first_column: Vec<f32> = full.layers[ARM_LAYERS].0.chunks(3).map(|r| r[0]).collect();
        lift(&mut full, &small, 3);
        assert_eq!(full.latents[0], level0);
        assert_eq!(&full.latents[1..], &small.latents[..]);
        for (i, (layer, s)) in full.layers.iter().zip(&small.layers).enumerate() {
            assert_eq!(layer.1, s.1);
            if i == ARM_LAYERS {
                for (o, row) in layer.0.chunks(3).enumerate() {
                    assert_eq!((row[0], &row[1..]), (first_column[o], &s.0[2 * o..2 * o + 2]));
                }
            } else {
                assert_eq!(layer.0, s.0);
            }
        }
    }

    /// The warm-up keeps the candidate whose loss is lowest at its end, not on average, and
    /// the kept one continues from where it stopped.
    #[test]
    fn the_candidate_lowest_at_the_end_of_the_warmup_continues() {
        let arch = Architecture { levels: 2, arm_hidden: 2, synthesis_width: 2 };
        let opts = FitOptions { arch, lambda: 0.0, steps: 40, lr: 0.0, seed: 10, candidates: 3, coarse_steps: 0 };
        let loss = |seed: u64, k: usize| match seed {
            10 => 3.0,
            11 if k < 3 => 9.0,
            11 => 0.5,
            _ => 1.0,
        };
        let (state, first) = best_candidate(
            &opts,
            |seed| (seed, 0usize),
            |s, k| {
                s.1 += 1;
                loss(s.0, k)
            },
        );
        assert_eq!((state, first), ((11, 4), 4));
        assert_eq!(total_steps(&opts), 48);
        let single = FitOptions { candidates: 1, ..opts };
        let (state, first) = best_candidate(&single, |seed| (seed, 0usize), |_, _| unreachable!("no warm-up with one candidate"));
        assert_eq!((state, first, total_steps(&single)), ((10, 0), 0, 40));
    }
}
