//! Encode-time latent refinement (Campos 2019; Yang 2020, "Improving Inference for Neural
//! Image Compression"; MLICv2's optional encoder step). The decoder is fixed, so the encoder
//! may send any latent: g_a's output is only an amortised first guess, and a few steps of
//! gradient descent on the rate-distortion cost of *this* image find a latent that codes
//! better. Streams stay ordinary streams; decoders cannot tell.
//!
//! ```text
//!  x ──g_a·gain──► y₀ ──┐
//!                       ▼              ┌──────────────── steps × ───────────────┐
//!                       y ──► forward_latent (noisy rate, straight-through ŷ) ──► x̂, p(ŷ)
//!                       ▲       loss = λ·255²·MSE(x̂, x) + bits / pixels           │ ∂loss/∂y
//!                       └───────────── Adam, step size annealed to 0 ◄────────────┘
//!  y₀ and y* both go through compress_latent; the stream kept is the one whose real cost
//!  (file bytes, 8-bit decoded pixels) is lower, so refinement never makes a stream worse.
//! ```
//! Only y moves: z = h_a(y) follows it inside the loss, so the hyperprior is re-derived for
//! the refined latent, and the integer path decides every probability as usual.

use burn::module::Module;
use burn::optim::{AdamConfig, Optimizer};
use burn::prelude::*;

use crate::error::{Error, Result};
use crate::models::{Architecture, ImageModel, ModelConfig};

/// How hard the encoder searches.
#[derive(Clone, Copy, Debug)]
pub struct Refinement {
    /// Gradient steps (0: no refinement).
    pub steps: usize,
    /// Adam's first step size, in quantization steps of the latent; annealed linearly to 0.
    pub step_size: f64,
}

impl Refinement {
    /// Chosen on a training photo (never Kodak): 0.05 and 0.1 did equally well over 30 steps,
    /// 0.2 overshot (no stream better than the plain one).
    pub const DEFAULT_STEP_SIZE: f64 = 0.05;

    pub fn steps(steps: usize) -> Self {
        Self { steps, step_size: Self::DEFAULT_STEP_SIZE }
    }
}

const SEED: u64 = 0x6e63_6f64_6563;
static SEARCH: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Whether `architecture` has a continuous latent that refinement can move (not VQ codes, not
/// the video codec's frame chain).
pub fn supports(architecture: Architecture) -> bool {
    matches!(architecture, Architecture::Factorized | Architecture::ScaleHyperprior | Architecture::MeanScaleHyperprior | Architecture::MultiReference)
}

/// Refines `y0` = [`ImageModel::latent`] of the padded image `x` (`[1, 3, H', W']`, on the
/// inference device) whose real size is `size` = (height, width), at quality index `q`.
/// Returns y* on x's device.
pub fn refine_latent(model: &ImageModel, config: &ModelConfig, x: Tensor<4>, y0: Tensor<4>, size: (usize, usize), q: usize, how: Refinement) -> Result<Tensor<4>> {
    if !supports(config.architecture) {
        return Err(Error::Unsupported(format!("latent refinement needs a continuous latent; {} has none", config.architecture.name())));
    }
    if !(how.step_size.is_finite() && how.step_size > 0.0 && how.step_size <= 10.0) {
        return Err(Error::Unsupported(format!("refinement step size {} is not in (0, 10]", how.step_size)));
    }
    let lambda = *config.lambdas.get(q).ok_or_else(|| Error::Unsupported(format!("quality index {q} out of range")))?;
    let plain = x.device();
    if how.steps == 0 {
        return Ok(y0);
    }
    // A copy of the network on the autodiff device, as constants: only y is a variable.
    let ad = plain.clone().autodiff();
    // The rate term's noise comes from the backend's process-wide generator: a fixed seed, and
    // one search at a time, make the search (and so the stream) the same on every run, as long
    // as nothing else in the process draws random numbers meanwhile (ncenc draws none).
    let _one_at_a_time = SEARCH.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    ad.seed(SEED);
    let net = crate::weights::copy_to(model, config, &ad).model.no_grad();
    let (h, w) = size;
    let target = x.to_device(&ad).autodiff().narrow(2, 0, h).narrow(3, 0, w);
    let qt = Tensor::<1, Int>::from_ints([q as i64], &ad);
    let adam = AdamConfig::new().with_epsilon(1e-8).build();
    let mut state = None;
    let mut y = y0;
    for t in 1..=how.steps {
        let var = y.clone().to_device(&ad).autodiff().require_grad();
        let out = net.forward_latent(var.clone(), qt.clone());
        let mse = (out.x_hat.narrow(2, 0, h).narrow(3, 0, w) - target.clone()).powi_scalar(2).mean();
        let bpp = crate::entropy::total_bits(out.likelihoods, &ad).div_scalar((h * w) as f64);
        let loss = mse.mul_scalar(lambda * 255.0 * 255.0) + bpp;
        let grad = var.grad(&loss.backward()).ok_or_else(|| Error::Codec("latent refinement: no gradient reached y".into()))?.to_device(&plain);
        let size_t = how.step_size * (1.0 - (t - 1) as f64 / how.steps as f64);
        (y, state) = adam.step(size_t, y, grad, state);
    }
    Ok(y)
}
