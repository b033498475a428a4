//! `overfit`: an image codec with no trained weights (Cool-chic / C3 family). The encoder fits
//! a latent pyramid and a small decoder network to each image and sends both; the decoder is
//! a few hundred to a few thousand multiplications per pixel.
//!
//! ```text
//!  encode: image ──fit (Adam, soft-rounded noisy then rounded latents, MSE + λ·bpp)──► net
//!          net ──weights × 2^8, rounded──► section 1 (Laplace tables)
//!          latents ──rounded──► integer ARM + lattice-Laplace tables ──► section 2
//!  decode: section 1 ──► integer ARM ──► section 2 ──► latents (bit-exact everywhere)
//!          latents ──bilinear upsampling, synthesis (float, any backend)──► x̂
//! ```
//! Quality: `-q` picks λ; the preset picks the network size and the fitting steps.

pub mod arm;
pub mod cpu;
pub mod fit;
mod lanes;
pub mod model;
pub mod prior;
pub mod stream;

use burn::prelude::*;
use image::RgbImage;

pub use fit::{FitOptions, FitProgress};
pub use model::Architecture;

use crate::container::{Container, Header, Kind};
use crate::error::{Error, Result};
use model::{OverfitNet, QuantizedLayers, integer_arm, latent_tensors};

pub const CODEC_NAME: &str = "overfit";
/// λ of quality 1 (smallest files) … 8 (best quality).
pub const LAMBDAS: [f64; 8] = [0.02, 0.01, 0.005, 0.0025, 0.0012, 0.0006, 0.0003, 0.00015];

/// Effort presets: network size and fitting steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    Fast,
    Medium,
    Slow,
}

impl std::str::FromStr for Preset {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "fast" => Ok(Preset::Fast),
            "medium" => Ok(Preset::Medium),
            "slow" => Ok(Preset::Slow),
            _ => Err(Error::Unsupported(format!("unknown preset '{s}' (fast, medium, slow)"))),
        }
    }
}

impl Preset {
    pub fn architecture(self) -> Architecture {
        match self {
            Preset::Fast => Architecture { levels: 7, arm_hidden: 8, synthesis_width: 12 },
            // ARMs 12 or more wide fitted far worse at equal steps (256x256 crops of kodim01
            // and kodim05, 2000 steps: 16 wide 2.8 dB below 8 wide at the same rate on
            // kodim05; three seeds alike), and 8 is also faster.
            Preset::Medium => Architecture { levels: 7, arm_hidden: 8, synthesis_width: 16 },
            Preset::Slow => Architecture { levels: 7, arm_hidden: 8, synthesis_width: 24 },
        }
    }

    pub fn steps(self) -> usize {
        match self {
            Preset::Fast => 400,
            Preset::Medium => 4000,
            Preset::Slow => 8000,
        }
    }

    /// Steps of the half-resolution fit that starts the full one (a quarter of the cost per
    /// step). Short fits gain, most on smooth images: with the fast preset at q4, 400 steps at
    /// half resolution before the 400 give kodim03 30.99 dB at 0.156 bpp where 500 steps from
    /// zero latents, in more time, give 28.69 dB at 0.142 (kodim01: 27.24 dB at 0.511 bpp
    /// against 27.43 at 0.503). Medium's 400 + 1700 steps (the time of its former 1800 from
    /// zero latents) move BD-rate against WebP from −1.6 % to −6.8 % over three 256x256 crops
    /// at q2–q6 (README); with Laplace latents, 2400 steps after the 400 give −10.1 %, 4400
    /// −13.8 %. Medium runs 4000: 4400 took 282 s on kodim01 while this shared machine ran a
    /// third slower than usual, too close to 5 minutes. Slow, whose fit is long enough to move
    /// its latents, starts from zero.
    pub fn coarse_steps(self) -> usize {
        match self {
            Preset::Fast | Preset::Medium => 400,
            Preset::Slow => 0,
        }
    }

    /// The fitting options of quality `q` (1..=8).
    pub fn options(self, q: u8) -> Result<FitOptions> {
        Ok(FitOptions { arch: self.architecture(), lambda: Self::lambda(q)?, steps: self.steps(), lr: 1e-2, seed: 1, candidates: 1, coarse_steps: self.coarse_steps() })
    }

    /// λ of quality `q` (1..=8).
    pub fn lambda(q: u8) -> Result<f64> {
        LAMBDAS.get((q as usize).wrapping_sub(1)).copied().ok_or_else(|| Error::Unsupported(format!("overfit quality {q} (1..={})", LAMBDAS.len())))
    }
}

/// What an encode measured from its own bytes.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub bytes: Vec<u8>,
    /// RGB PSNR of what a decoder reconstructs from `bytes`.
    pub psnr: f64,
}

/// Fits `img` with `opts` and writes the stream (quality `q` goes in the header).
pub fn encode(img: &RgbImage, q: u8, opts: &FitOptions, device: &Device, progress: &mut dyn FnMut(FitProgress)) -> Result<Encoded> {
    crate::io::check_dimensions(img.width(), img.height())?;
    let net = fit::fit(img, opts, device, progress)?;
    let (h, w) = (img.height() as usize, img.width() as usize);
    let sizes = opts.arch.level_sizes(h, w);
    let exponents = weight_exponents(img, opts, &net, device)?;
    let layers = model::quantized_layers(&net, &exponents);
    let latents = model::integer_latents(&net);
    let sections = vec![stream::header_bytes(&opts.arch), stream::encode_weights(&layers, &exponents)?, stream::encode_latents(&integer_arm(&opts.arch, &layers), &latents, &sizes)?];
    let header = Header { kind: Kind::Image, codec: CODEC_NAME.into(), weights_digest: [0; 8], quality: q, width: img.width(), height: img.height() };
    let bytes = Container { header, sections }.to_bytes();
    // Measure what a decoder gets from these bytes.
    let decoded = decode(&Container::parse(&bytes)?, device)?;
    Ok(Encoded { psnr: crate::metrics::psnr(img, &decoded), bytes })
}

/// Most fits a `--bpp` search makes (each is a whole encode).
pub const MAX_RATE_PROBES: usize = 5;

/// What [`encode_at_bpp`] found.
#[derive(Debug, Clone)]
pub struct RateSearch {
    /// The largest stream within the target (the smallest one made if none is).
    pub encoded: Encoded,
    /// λ of that stream (its header carries the level whose λ is nearest, see
    /// [`nearest_quality`]).
    pub lambda: f64,
    /// Every fit made: (λ, bpp of its real bytes).
    pub probes: Vec<(f64, f64)>,
}

/// The level whose λ is nearest `lambda` (in log scale).
pub fn nearest_quality(lambda: f64) -> u8 {
    let distance = |l: &f64| (l.ln() - lambda.ln()).abs();
    (LAMBDAS.iter().enumerate().min_by(|a, b| distance(a.1).total_cmp(&distance(b.1))).map_or(0, |(i, _)| i) + 1) as u8
}

/// Fits `img` at λs chosen to reach `target_bpp` from real stream sizes: a first guess from
/// a typical rate curve, then secants in log λ / log bpp between the fits so far (a fit's
/// rate is not exactly monotone in λ: the search keeps the best stream seen, not the last).
/// Stops at a stream within 3 % under the target or after [`MAX_RATE_PROBES`] fits.
/// `progress` gets the probe's index with each fit's progress.
pub fn encode_at_bpp(img: &RgbImage, target_bpp: f64, opts: &FitOptions, device: &Device, progress: &mut dyn FnMut(usize, FitProgress)) -> Result<RateSearch> {
    if !(target_bpp.is_finite() && target_bpp > 0.0) {
        return Err(Error::Unsupported(format!("target rate {target_bpp} bpp is not a positive number")));
    }
    let pixels = img.width() as f64 * img.height() as f64;
    // bpp ∝ λ^−SLOPE near quality 4 (the fast preset on six Kodak images: 0.32 bpp at q4,
    // ×1.8 per halving of λ).
    const SLOPE: f64 = 0.85;
    let (lambda_min, lambda_max) = (LAMBDAS[LAMBDAS.len() - 1] / 16.0, LAMBDAS[0] * 16.0);
    let aim = 0.985 * target_bpp;
    let mut lambda = (LAMBDAS[3] * (0.32 / aim).powf(1.0 / SLOPE)).clamp(lambda_min, lambda_max);
    let mut found: Vec<(f64, f64, Encoded)> = vec![];
    for probe in 0..MAX_RATE_PROBES {
        let q = nearest_quality(lambda);
        let enc = encode(img, q, &FitOptions { lambda, ..opts.clone() }, device, &mut |p| progress(probe, p))?;
        let bpp = enc.bytes.len() as f64 * 8.0 / pixels;
        found.push((lambda, bpp, enc));
        if bpp <= target_bpp && bpp >= 0.97 * target_bpp {
            break;
        }
        // The nearest fits on either side of the target (by rate), or the last two.
        let under = found.iter().filter(|f| f.1 <= target_bpp).max_by(|a, b| a.1.total_cmp(&b.1));
        let over = found.iter().filter(|f| f.1 > target_bpp).min_by(|a, b| a.1.total_cmp(&b.1));
        let next = match (under, over) {
            (Some(a), Some(b)) if a.0 != b.0 && a.1 != b.1 => {
                // Secant between the two, in log-log.
                let t = (aim.ln() - a.1.ln()) / (b.1.ln() - a.1.ln());
                (a.0.ln() + t * (b.0.ln() - a.0.ln())).exp()
            }
            _ => {
                let slope = match found.as_slice() {
                    [.., a, b] if a.0 != b.0 && a.1 != b.1 => (-(b.1.ln() - a.1.ln()) / (b.0.ln() - a.0.ln())).clamp(0.3, 2.0),
                    _ => SLOPE,
                };
                lambda * (bpp / aim).powf(1.0 / slope)
            }
        };
        lambda = next.clamp(lambda_min, lambda_max);
        if found.iter().any(|f| (f.0 / lambda - 1.0).abs() < 1e-3) {
            break;
        }
    }
    let probes = found.iter().map(|f| (f.0, f.1)).collect();
    let fits = |f: &&(f64, f64, Encoded)| f.1 <= target_bpp;
    let best = match found.iter().filter(fits).max_by(|a, b| a.1.total_cmp(&b.1)) {
        Some(b) => b,
        None => found.iter().min_by(|a, b| a.1.total_cmp(&b.1)).expect("at least one probe"),
    };
    let (lambda, _, encoded) = best.clone();
    Ok(RateSearch { encoded, lambda, probes })
}

/// Tensors sharing a quantization step: the ARM's weights, its biases, the synthesis's
/// weights, its biases (indices as in [`Architecture::tensor_shapes`], weight then bias).
fn step_groups(tensors: usize) -> [Vec<usize>; 4] {
    let arm = 2 * model::ARM_LAYERS;
    let pick = |range: std::ops::Range<usize>, bias: usize| range.filter(|t| t % 2 == bias).collect();
    [pick(0..arm, 0), pick(0..arm, 1), pick(arm..tensors, 0), pick(arm..tensors, 1)]
}

/// Each tensor group's quantization step 2^−e, chosen by rate-distortion (Cool-chic does the
/// same): one pass over the groups, each trying e = 8 … 3 with the others fixed, keeping the
/// lowest `MSE + λ·(latent bits + weight bits)/pixels`.
fn weight_exponents(img: &RgbImage, opts: &FitOptions, net: &model::Params, device: &Device) -> Result<Vec<u8>> {
    let tensors = 2 * net.layers.len();
    let pixels = (img.width() * img.height()) as f64;
    let mut best = vec![prior::ARM_FRAC as u8; tensors];
    let cost = |exps: &[u8], (mse, bits): (f64, f64)| -> Result<f64> {
        let weight_bits = 8.0 * stream::encode_weights(&model::quantized_layers(net, exps), exps)?.len() as f64;
        Ok(mse + opts.lambda * (bits + weight_bits) / pixels)
    };
    // The network a decoder gets with these step exponents (the fitted latents).
    let decoded = |exps: &[u8]| model::Params { latents: net.latents.clone(), layers: model::dequantized(&model::quantized_layers(net, exps)) };
    let mut best_cost = cost(&best, fit::measure(img, &opts.arch, &[decoded(&best)], device)?[0])?;
    for group in step_groups(tensors) {
        let trials: Vec<Vec<u8>> = (3..prior::ARM_FRAC as u8)
            .map(|e| {
                let mut exps = best.clone();
                group.iter().for_each(|&t| exps[t] = e);
                exps
            })
            .collect();
        let candidates: Vec<_> = trials.iter().map(|e| decoded(e)).collect();
        for (exps, m) in trials.iter().zip(fit::measure(img, &opts.arch, &candidates, device)?) {
            let c = cost(exps, m)?;
            if c < best_cost {
                (best, best_cost) = (exps.clone(), c);
            }
        }
    }
    Ok(best)
}

/// The integer part of a decoded stream.
pub struct Decoded {
    pub arch: Architecture,
    pub layers: QuantizedLayers,
    /// Each pyramid level's latents, row-major.
    pub latents: Vec<Vec<i32>>,
}

/// The integer part of decoding (bit-exact on every machine): architecture, quantized
/// layers and latents of a stream.
pub fn decode_latents(c: &Container) -> Result<Decoded> {
    if c.header.kind != Kind::Image || c.header.codec != CODEC_NAME {
        return Err(Error::Unsupported(format!("not an overfit stream ('{}')", c.header.codec)));
    }
    crate::io::check_dimensions(c.header.width, c.header.height)?;
    let [head, weights, latents] = c.sections.as_slice() else { return Err(Error::Format("an overfit stream has 3 sections".into())) };
    let arch = stream::parse_header(head)?;
    let layers = stream::decode_weights(&arch, weights)?;
    let sizes = arch.level_sizes(c.header.height as usize, c.header.width as usize);
    let latents = stream::decode_latents(&integer_arm(&arch, &layers), &sizes, latents)?;
    Ok(Decoded { arch, layers, latents })
}

/// Decodes a stream to an image: integer work for the latents, then the synthesis on `device`
/// (on the CPU backend, the fitting pass's own lanes; elsewhere burn's tensors).
pub fn decode(c: &Container, device: &Device) -> Result<RgbImage> {
    let Decoded { arch, layers, latents } = decode_latents(c)?;
    let (h, w) = (c.header.height as usize, c.header.width as usize);
    if fit::runs_on_cpu(device) {
        let params = model::Params { latents: vec![], layers: model::dequantized(&layers) };
        let y: Vec<Vec<f32>> = latents.iter().map(|l| l.iter().map(|&v| v as f32).collect()).collect();
        let x = cpu::Problem::new(arch, h, w, vec![]).reconstruct(&params, &y);
        return Ok(crate::codec::planar_to_image(&x, [h, w], c.header.width, c.header.height));
    }
    decode_with_tensors(&arch, &layers, &latents, [h, w], device)
}

/// The synthesis through burn's tensors on `device` (any backend).
fn decode_with_tensors(arch: &Architecture, layers: &QuantizedLayers, latents: &[Vec<i32>], [h, w]: [usize; 2], device: &Device) -> Result<RgbImage> {
    let net = OverfitNet::decoder(arch, layers, device);
    let x = net.synthesize(latent_tensors(latents, &arch.level_sizes(h, w), device), [h, w]);
    Ok(crate::codec::tensor_to_image(x, w as u32, h as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--bpp`: the search lands within the target, above the smallest level's rate, from
    /// real bytes.
    #[test]
    fn a_rate_target_is_met_from_real_bytes() {
        let device = Device::flex();
        let img = crate::synthetic::scene(160, 128);
        let pixels = 160.0 * 128.0;
        let opts = FitOptions { arch: Architecture { levels: 4, arm_hidden: 4, synthesis_width: 6 }, lambda: 0.0, steps: 150, lr: 1e-2, seed: 1, candidates: 1, coarse_steps: 0 };
        let rate = |q: u8| encode(&img, q, &FitOptions { lambda: Preset::lambda(q).unwrap(), ..opts.clone() }, &device, &mut |_| {}).unwrap().bytes.len() as f64 * 8.0 / pixels;
        let (low, high) = (rate(1), rate(8));
        assert!(high > 1.5 * low, "q1 {low} bpp, q8 {high} bpp");
        let target = (low * high).sqrt();
        let mut fits = vec![];
        let found = encode_at_bpp(&img, target, &opts, &device, &mut |probe, p| fits.push((probe, p.step))).unwrap();
        let bpp = found.encoded.bytes.len() as f64 * 8.0 / pixels;
        assert!(bpp <= target && bpp > low, "{bpp} bpp for a target of {target} (q1 {low}, q8 {high}); probes {:?}", found.probes);
        assert!((1..=MAX_RATE_PROBES).contains(&found.probes.len()));
        assert_eq!(fits.iter().filter(|f| f.1 == 150).count(), found.probes.len(), "every probe is a whole fit");
        let c = Container::parse(&found.encoded.bytes).unwrap();
        assert_eq!(c.header.quality, nearest_quality(found.lambda));
        assert_eq!(crate::metrics::psnr(&img, &decode(&c, &device).unwrap()), found.encoded.psnr);
        assert!(encode_at_bpp(&img, f64::NAN, &opts, &device, &mut |_, _| {}).is_err());
        assert!(encode_at_bpp(&img, 0.0, &opts, &device, &mut |_, _| {}).is_err());
    }

    /// A fit started at half resolution: progress counts through both fits (the candidates
    /// tried in the small one), and the small fit carries over: two full-resolution steps
    /// from it reconstruct far better than two from zero latents.
    #[test]
    fn a_half_resolution_fit_starts_the_full_one() {
        let device = Device::flex();
        let img = crate::synthetic::scene(37, 23);
        let opts = FitOptions { arch: Architecture { levels: 4, arm_hidden: 4, synthesis_width: 6 }, lambda: 0.002, steps: 2, lr: 1e-2, seed: 1, candidates: 2, coarse_steps: 100 };
        let mut curve = vec![];
        let warm = encode(&img, 4, &opts, &device, &mut |p| curve.push(p)).unwrap();
        // Two candidates for 10 steps each and 90 more at half resolution, then 2.
        assert_eq!(fit::total_steps(&opts), 112);
        assert!(curve.iter().all(|p| p.steps == 112) && curve.windows(2).all(|w| w[0].step < w[1].step));
        assert_eq!(curve.last().unwrap().step, 112);
        let cold = encode(&img, 4, &FitOptions { coarse_steps: 0, ..opts.clone() }, &device, &mut |_| {}).unwrap();
        assert!(warm.psnr > cold.psnr + 3.0, "{} dB from the small fit, {} dB from zero", warm.psnr, cold.psnr);
        assert_eq!(crate::metrics::psnr(&img, &decode(&Container::parse(&warm.bytes).unwrap(), &device).unwrap()), warm.psnr);
    }

    #[test]
    fn a_small_image_round_trips_through_bytes() {
        let device = crate::backend::device();
        let img = crate::synthetic::scene(37, 23);
        let opts = FitOptions { arch: Architecture { levels: 4, arm_hidden: 4, synthesis_width: 6 }, lambda: 0.002, steps: 60, lr: 1e-2, seed: 1, candidates: 2, coarse_steps: 0 };
        let mut curve = vec![];
        let enc = encode(&img, 4, &opts, &device, &mut |p| curve.push(p)).unwrap();
        // Two candidates for 6 steps each, then 54 more for the one kept.
        assert_eq!(curve.last().unwrap().step, 66);
        assert!(curve.iter().all(|p| p.steps == 66));
        let c = Container::parse(&enc.bytes).unwrap();
        let dec = decode(&c, &device).unwrap();
        assert_eq!(crate::metrics::psnr(&img, &dec), enc.psnr);
        // The fit learned something: the decoded image beats the first step's reconstruction.
        assert!(enc.psnr > curve[0].psnr + 2.0, "{} dB after {} dB", enc.psnr, curve[0].psnr);
        // The CPU's own synthesis and burn's tensors give the same pixels, within one level.
        let d = decode_latents(&c).unwrap();
        let tensors = decode_with_tensors(&d.arch, &d.layers, &d.latents, [23, 37], &Device::flex()).unwrap();
        let cpu = decode(&c, &Device::flex()).unwrap();
        assert!(cpu.as_raw().iter().zip(tensors.as_raw()).all(|(a, b)| a.abs_diff(*b) <= 1));
        assert!(crate::metrics::psnr(&cpu, &tensors) > 60.0);
        // Damaged latents are an error or another image, never a panic.
        let mut bad = c.clone();
        let n = bad.sections[2].len();
        bad.sections[2][n / 2] ^= 0x5a;
        let _ = decode(&bad, &device);
        bad.sections.pop();
        assert!(decode(&bad, &device).is_err());
    }
}
