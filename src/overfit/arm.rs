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
pub(crate) const REACH: usize = 2;
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

/// [`IntegerArm::predict`] as coding runs it, with the same answers, sooner:
/// - answers are remembered by context: the all-zero one (half the latents of kodim01 at q4)
///   and the others in a direct-mapped cache (the other 240 k contexts there are 20 k
///   distinct ones);
/// - on x86-64 with AVX2, four outputs per instruction: `vpmuldq` multiplies the low 32 bits
///   of each 64-bit lane exactly, so the sums are the scalar ones, bit for bit (activations
///   are within ±2^30 and weights within ±2^20, so both fit 32 bits).
pub struct Predictor<'a> {
    arm: &'a IntegerArm,
    at_zero: (i32, i32),
    /// Contexts packed as 12 × i16 (latents are within ±2^15) and their answers; an all-zero
    /// key marks an empty slot (that context never reaches the cache).
    cache: Vec<([u64; 3], (i32, i32))>,
    /// Per layer: the weights transposed to `[input][output]` and the biases in Q16, as i64
    /// lanes, outputs padded to a multiple of 4 with zeros; `None` without AVX2.
    packed: Option<Vec<Packed>>,
}

struct Packed {
    inputs: usize,
    groups: usize,
    columns: Vec<i64>,
    bias: Vec<i64>,
}

impl<'a> Predictor<'a> {
    pub fn new(arm: &'a IntegerArm) -> Self {
        Self { arm, at_zero: arm.predict(&[0; CONTEXT.len()]), cache: vec![([0; 3], (0, 0)); 1 << CACHE_BITS], packed: has_avx2().then(|| Self::pack(arm)) }
    }

    fn pack(arm: &IntegerArm) -> Vec<Packed> {
        arm.layers
            .iter()
            .map(|l| {
                let groups = l.outputs.div_ceil(4);
                let mut columns = vec![0i64; l.inputs * 4 * groups];
                let mut bias = vec![0i64; 4 * groups];
                for o in 0..l.outputs {
                    for i in 0..l.inputs {
                        columns[i * 4 * groups + o] = l.weight[o * l.inputs + i] as i64;
                    }
                    bias[o] = (l.bias[o] as i64) << ARM_FRAC;
                }
                Packed { inputs: l.inputs, groups, columns, bias }
            })
            .collect()
    }

    #[inline]
    pub fn predict(&mut self, ctx: &[i32; CONTEXT.len()]) -> (i32, i32) {
        if ctx.iter().all(|&v| v == 0) {
            return self.at_zero;
        }
        let Some(key) = pack_context(ctx) else { return self.compute(ctx) };
        let slot = (key[0].wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ key[1].wrapping_mul(0xc2b2_ae3d_27d4_eb4f) ^ key[2].wrapping_mul(0x1656_67b1_9e37_79f9)) >> (64 - CACHE_BITS);
        let entry = &self.cache[slot as usize];
        if entry.0 == key {
            return entry.1;
        }
        let answer = self.compute(ctx);
        self.cache[slot as usize] = (key, answer);
        answer
    }

    fn compute(&self, ctx: &[i32; CONTEXT.len()]) -> (i32, i32) {
        match &self.packed {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `packed` is only built when the CPU has AVX2.
            Some(layers) => unsafe { predict_avx2(layers, ctx) },
            _ => self.arm.predict(ctx),
        }
    }
}

/// Slots of the answer cache (32 bytes each).
const CACHE_BITS: u32 = 12;

/// A context as 12 × i16 in three words; `None` if a value does not fit 16 bits.
fn pack_context(ctx: &[i32; CONTEXT.len()]) -> Option<[u64; 3]> {
    let mut key = [0u64; 3];
    for (j, &v) in ctx.iter().enumerate() {
        let v = i16::try_from(v).ok()?;
        key[j / 4] |= (v as u16 as u64) << (16 * (j % 4));
    }
    Some(key)
}

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx2");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// [`IntegerArm::predict`] on packed layers, four outputs at a time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn predict_avx2(layers: &[Packed], ctx: &[i32; CONTEXT.len()]) -> (i32, i32) {
    let (mut a, mut b) = ([0i64; MAX_WIDTH], [0i64; MAX_WIDTH]);
    for (x, &v) in a.iter_mut().zip(ctx) {
        *x = (v as i64) << ARM_FRAC;
    }
    let last = layers.len() - 1;
    for (l, layer) in layers.iter().enumerate() {
        let x = &a[..layer.inputs];
        // Up to 16 outputs per pass, their sums held in registers.
        for g0 in (0..layer.groups).step_by(4) {
            let out = &mut b[4 * g0..];
            match layer.groups - g0 {
                1 => groups_avx2::<1>(layer, g0, x, out),
                2 => groups_avx2::<2>(layer, g0, x, out),
                3 => groups_avx2::<3>(layer, g0, x, out),
                _ => groups_avx2::<4>(layer, g0, x, out),
            }
            for v in &mut out[..4 * (layer.groups - g0).min(4)] {
                *v = (*v >> ARM_FRAC).clamp(-ACT_LIMIT, ACT_LIMIT);
                if l < last {
                    *v = (*v).max(0);
                }
            }
        }
        std::mem::swap(&mut a, &mut b);
    }
    (a[0] as i32, a[1] as i32)
}

/// The sums (bias included, before the shift) of output groups `g0..g0 + G` of `layer`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn groups_avx2<const G: usize>(layer: &Packed, g0: usize, x: &[i64], out: &mut [i64]) {
    use std::arch::x86_64::*;
    let stride = 4 * layer.groups;
    let bias = &layer.bias[4 * g0..4 * (g0 + G)];
    // SAFETY (loads and stores): unaligned, of 4 i64 within slices checked to hold them.
    let mut acc: [__m256i; G] = std::array::from_fn(|g| unsafe { _mm256_loadu_si256(bias[4 * g..4 * g + 4].as_ptr().cast()) });
    for (i, &xi) in x.iter().enumerate() {
        let xv = _mm256_set1_epi64x(xi);
        let row = &layer.columns[i * stride + 4 * g0..i * stride + 4 * (g0 + G)];
        for (g, acc) in acc.iter_mut().enumerate() {
            let w = unsafe { _mm256_loadu_si256(row[4 * g..4 * g + 4].as_ptr().cast()) };
            *acc = _mm256_add_epi64(*acc, _mm256_mul_epi32(xv, w));
        }
    }
    for (g, acc) in acc.into_iter().enumerate() {
        unsafe { _mm256_storeu_si256(out[4 * g..4 * g + 4].as_mut_ptr().cast(), acc) };
    }
}

/// One pyramid level in raster order with a zero border (`REACH` rows above, `REACH` columns
/// either side), so a latent's context is plain loads: what coding reads and writes.
pub struct Raster {
    width: usize,
    stride: usize,
    values: Vec<i32>,
}

impl Raster {
    pub fn new([h, w]: [usize; 2]) -> Self {
        let stride = w + 2 * REACH;
        Self { width: w, stride, values: vec![0; (h + REACH) * stride] }
    }

    /// A level's values (row-major `h × w`) with the border around them.
    pub fn from_level(y: &[i32], size: [usize; 2]) -> Self {
        let mut r = Self::new(size);
        for (row, src) in y.chunks(size[1]).enumerate() {
            let start = (row + REACH) * r.stride + REACH;
            r.values[start..start + size[1]].copy_from_slice(src);
        }
        r
    }

    /// The context of (r, c): rows above r and columns before c are the decoded ones.
    #[inline]
    pub fn context(&self, r: usize, c: usize) -> [i32; CONTEXT.len()] {
        // The window's top-left corner is (r − REACH, c − REACH) in the level, (r, c) here.
        let top = &self.values[r * self.stride + c..];
        std::array::from_fn(|j| {
            let (dy, dx) = CONTEXT[j];
            top[(dy + REACH as isize) as usize * self.stride + (dx + REACH as isize) as usize]
        })
    }

    #[inline]
    pub fn get(&self, r: usize, c: usize) -> i32 {
        self.values[(r + REACH) * self.stride + c + REACH]
    }

    #[inline]
    pub fn set(&mut self, r: usize, c: usize, v: i32) {
        self.values[(r + REACH) * self.stride + c + REACH] = v;
    }

    /// The level without its border, row-major.
    pub fn level(&self) -> Vec<i32> {
        let mut out = Vec::with_capacity(self.values.len());
        for row in self.values[REACH * self.stride..].chunks(self.stride) {
            out.extend_from_slice(&row[REACH..REACH + self.width]);
        }
        out
    }
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
        let raster = Raster::from_level(&y, [h, w]);
        assert_eq!(raster.level(), y);
        for r in 0..h {
            for c in 0..w {
                let g = raster.context(r, c);
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

    /// The predictor (packed AVX2 layers, answer cache) computes the scalar MLP bit for bit,
    /// out to the bounds a stream may reach, where activations saturate.
    #[test]
    fn the_packed_predictor_is_the_scalar_one() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        for (width, scale) in [(8, 1 << 9), (5, 1 << 12), (12, 1 << 10), (21, crate::overfit::model::MAX_WEIGHT)] {
            let mut layer = |inputs: usize, outputs: usize| IntLayer {
                inputs,
                outputs,
                weight: (0..inputs * outputs).map(|_| rng.gen_range(-scale..=scale)).collect(),
                bias: (0..outputs).map(|_| rng.gen_range(-scale..=scale)).collect(),
            };
            let arm = IntegerArm { layers: vec![layer(CONTEXT.len(), width), layer(width, width), layer(width, 2)] };
            let mut predictor = Predictor::new(&arm);
            let max = crate::overfit::model::MAX_LATENT;
            for k in 0..2000 {
                let bound = [2, 20, max][k % 3];
                let ctx: [i32; CONTEXT.len()] = std::array::from_fn(|_| rng.gen_range(-bound..=bound));
                assert_eq!(predictor.predict(&ctx), arm.predict(&ctx), "width {width}, context {ctx:?}");
                // Again: from the cache (small contexts repeat), the same answer.
                assert_eq!(predictor.predict(&ctx), arm.predict(&ctx), "width {width}, context {ctx:?} (cached)");
            }
        }
    }
}
