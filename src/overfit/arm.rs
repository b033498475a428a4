//! The auto-regressive probability model (ARM): a small MLP that predicts the mean and
//! log-scale of each latent from its causal neighbours in the same pyramid level.
//!
//! ```text
//!  training (float, all positions at once):
//!    ŷ [1,1,h,w] ──masked 3x5 conv 1→H (the K causal taps), ReLU──► 1x1 conv H→H, ReLU,
//!                H→2 ──► (μ, log σ) per position
//!  coding (fixed point, raster order):
//!    ŷ neighbours (integers) ──integer MLP, weights Q8──► (μ, log σ) in Q8 ──► prior::choose
//! ```
//! The same integer MLP runs in the encoder and the decoder, so both pick the same table for
//! every latent on every machine.

use burn::prelude::*;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;

use super::prior::ARM_FRAC;

/// Causal neighbours (dy, dx): two rows above (5 wide) and two to the left.
pub const CONTEXT: [(isize, isize); 12] = [(-2, -2), (-2, -1), (-2, 0), (-2, 1), (-2, 2), (-1, -2), (-1, -1), (-1, 0), (-1, 1), (-1, 2), (0, -2), (0, -1)];
/// Widest layer a stream may declare (the ARM's and the synthesis's; checked by the parser).
pub const MAX_WIDTH: usize = 64;
/// Rows above and columns either side the context reaches.
const REACH: usize = 2;
/// The window holding the context: (rows, columns).
const WINDOW: [usize; 2] = [REACH + 1, 2 * REACH + 1];

/// The ARM's first layer on a whole level at once: the 12 causal neighbours are the first 12
/// positions (row-major) of a 3x5 window whose bottom row ends left of the latent, so the layer
/// is one masked 3x5 convolution (`weight` `[A, K, 1, 1]` becomes the window's first K taps).
pub fn first_layer(y: Tensor<4>, weight: Tensor<4>, bias: Tensor<1>) -> Tensor<4> {
    let [b, c, h, w] = y.dims();
    let [a, k, _, _] = weight.dims();
    let device = y.device();
    let window = Tensor::cat(vec![weight.reshape([a, k]), Tensor::zeros([a, WINDOW[0] * WINDOW[1] - k], &device)], 1).reshape([a, 1, WINDOW[0], WINDOW[1]]);
    let padded = Tensor::cat(vec![Tensor::zeros([b, c, REACH, w], &device), y], 2);
    let side = Tensor::zeros([b, c, h + REACH, REACH], &device);
    let padded = Tensor::cat(vec![side.clone(), padded, side], 3);
    conv2d(padded, window, Some(bias), ConvOptions::new([1, 1], [0, 0], [1, 1], 1))
}

/// One integer layer: `weight[o][i]` and `bias[o]`, both Q8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntLayer {
    pub inputs: usize,
    pub outputs: usize,
    pub weight: Vec<i32>,
    pub bias: Vec<i32>,
}

/// The ARM in fixed point: layers with ReLU between them, the last with two outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegerArm {
    pub layers: Vec<IntLayer>,
}

/// Activations are kept in ±2^30 so that no sum of products can overflow i64 (a hostile
/// stream's weights and latents are bounded by the parser).
const ACT_LIMIT: i64 = 1 << 30;

impl IntegerArm {
    /// (μ, log σ) in Q8 for one latent from its context values (integers).
    pub fn predict(&self, ctx: &[i32; CONTEXT.len()]) -> (i32, i32) {
        // Fixed buffers (widths are bounded by the parser): this runs once per latent.
        let (mut a, mut b) = ([0i64; MAX_WIDTH], [0i64; MAX_WIDTH]);
        // Inputs are integers: the first layer's Q8 weights make Q8 activations directly.
        for (x, &v) in a.iter_mut().zip(ctx) {
            *x = (v as i64) << ARM_FRAC;
        }
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let x = &a[..layer.inputs];
            for (o, out) in b[..layer.outputs].iter_mut().enumerate() {
                let row = &layer.weight[o * layer.inputs..(o + 1) * layer.inputs];
                let acc = row.iter().zip(x).fold((layer.bias[o] as i64) << ARM_FRAC, |acc, (&w, &x)| acc + x * w as i64);
                let v = (acc >> ARM_FRAC).clamp(-ACT_LIMIT, ACT_LIMIT);
                *out = if l < last { v.max(0) } else { v };
            }
            std::mem::swap(&mut a, &mut b);
        }
        (a[0] as i32, a[1] as i32)
    }
}

/// [`IntegerArm::predict`] with the answer for an all-zero context kept: at low rates most
/// contexts are all zero, and the answer is the same every time.
pub struct Predictor<'a> {
    arm: &'a IntegerArm,
    at_zero: (i32, i32),
}

impl<'a> Predictor<'a> {
    pub fn new(arm: &'a IntegerArm) -> Self {
        Self { arm, at_zero: arm.predict(&[0; CONTEXT.len()]) }
    }

    #[inline]
    pub fn predict(&self, ctx: &[i32; CONTEXT.len()]) -> (i32, i32) {
        if ctx.iter().all(|&v| v == 0) { self.at_zero } else { self.arm.predict(ctx) }
    }
}

/// The context values of position (r, c) in a level of width `w` stored row-major in `y`
/// (rows above r and columns before c already decoded).
pub fn gather(y: &[i32], w: usize, r: usize, c: usize) -> [i32; CONTEXT.len()] {
    let mut ctx = [0i32; CONTEXT.len()];
    for (j, &(dy, dx)) in CONTEXT.iter().enumerate() {
        let (rr, cc) = (r as isize + dy, c as isize + dx);
        if rr >= 0 && cc >= 0 && (cc as usize) < w {
            ctx[j] = y[rr as usize * w + cc as usize];
        }
    }
    ctx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{from_host, to_host};

    #[test]
    fn the_masked_convolution_sees_exactly_the_raster_context() {
        let device = crate::backend::device();
        let (h, w, a) = (5, 7, 3);
        let k = CONTEXT.len();
        let y: Vec<i32> = (0..h * w).map(|i| (i as i32 * 7) % 11 - 5).collect();
        let weight: Vec<f32> = (0..a * k).map(|i| ((i * 5) % 9) as f32 - 4.0).collect();
        let bias = vec![0.5, -1.0, 2.0];
        let out = first_layer(from_host(y.iter().map(|&v| v as f32).collect(), [1, 1, h, w], &device), from_host(weight.clone(), [a, k, 1, 1], &device), from_host(bias.clone(), [a], &device));
        let out = to_host(out);
        for r in 0..h {
            for c in 0..w {
                let g = gather(&y, w, r, c);
                for o in 0..a {
                    let want: f32 = bias[o] + (0..k).map(|j| weight[o * k + j] * g[j] as f32).sum::<f32>();
                    assert_eq!(out[o * h * w + r * w + c], want, "({r},{c}) unit {o}");
                }
            }
        }
    }

    #[test]
    fn the_integer_arm_computes_its_mlp() {
        // One hidden unit summing the context, then μ = h, log σ = -h + 1.
        let k = CONTEXT.len();
        let one = 1 << ARM_FRAC;
        let arm = IntegerArm { layers: vec![IntLayer { inputs: k, outputs: 1, weight: vec![one; k], bias: vec![0] }, IntLayer { inputs: 1, outputs: 2, weight: vec![one, -one], bias: vec![0, one] }] };
        let mut ctx = [0; 12];
        ctx[11] = 3;
        ctx[0] = 2;
        assert_eq!(arm.predict(&ctx), (5 * one, -4 * one));
        // ReLU on the hidden layer.
        ctx[0] = -10;
        assert_eq!(arm.predict(&ctx), (0, one));
        // The cached all-zero answer is the computed one.
        let bias =
            IntegerArm { layers: vec![IntLayer { inputs: k, outputs: 1, weight: vec![one; k], bias: vec![3 * one] }, IntLayer { inputs: 1, outputs: 2, weight: vec![one, -one], bias: vec![0, one] }] };
        assert_eq!(Predictor::new(&bias).predict(&[0; 12]), bias.predict(&[0; 12]));
        assert_eq!(bias.predict(&[0; 12]), (3 * one, -2 * one));
    }
}
