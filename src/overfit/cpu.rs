//! Fitting on the CPU without a tensor library: the whole network's forward and backward pass
//! written out for these tiny layers, on tiles of 32 pixels (or latents) in vector lanes (see
//! `lanes`), rows in parallel. A general backend runs every layer as a separate pass over
//! full-resolution tensors (and stores each activation for its backward); here a tile's few
//! dozen activations stay in cache and its sums in registers, which is where the time goes
//! for networks this small. Its cost is measured by `cargo bench --bench codec -- "fitting
//! step"`.
//!
//! ```text
//!  forward   θ ──noise or round──► ŷ ──bilinear up──► u[L] ──MLP──► o[3] ──+3x3──► x̃ ── MSE
//!            ŷ ──causal taps──► ARM MLP ──► (μ, log σ) ──► −log₂ p(ŷ)               ── bits
//!  backward  the same, reversed, per pixel; the context's gradients are gathered back to the
//!            latents they came from in a second pass (no two rows write one place)
//! ```
//! It computes what [`super::model::OverfitNet::forward`] computes (a test compares the loss
//! and every gradient with burn's autodiff), and the stream does not depend on which ran.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use std::ops::Range;
use std::sync::Mutex;

use super::arm::{CONTEXT, REACH};
use super::lanes::{self, Isa, LANES, TILE, V, simd_kernel};
use super::model::{ARM_LAYERS, Architecture, Layer, Params, Quantization, RESIDUAL_LEAK, Taps, soft_round_norm, soft_round_normed};
use super::prior::{SCALE_MAX, SCALE_MIN};

/// `[rows][cols]` → `[cols][rows]`.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols).flat_map(|c| (0..rows).map(move |r| m[r * cols + c])).collect()
}

/// Pixels (or latents) the networks take at a time: a tile of lane vectors.
const TILE_PIXELS: usize = TILE * LANES;

/// `n` rounded up to whole tiles: the width of the rows the networks run on.
fn tile_ceil(n: usize) -> usize {
    n.div_ceil(TILE_PIXELS) * TILE_PIXELS
}

/// A three-layer MLP (ReLU, ReLU, linear): the synthesis and the ARM alike.
struct Mlp {
    /// Per layer: weights `[out][in]`, the same transposed, and the bias.
    w: [Vec<f32>; 3],
    wt: [Vec<f32>; 3],
    b: [Vec<f32>; 3],
    /// Widths: input, two hidden layers, output.
    n: [usize; 4],
}

impl Mlp {
    fn new(layers: &[Layer], inputs: usize) -> Self {
        let n = [inputs, layers[0].1.len(), layers[1].1.len(), layers[2].1.len()];
        Self { w: std::array::from_fn(|i| layers[i].0.clone()), wt: std::array::from_fn(|i| transpose(&layers[i].0, n[i + 1], n[i])), b: std::array::from_fn(|i| layers[i].1.clone()), n }
    }

    #[inline(always)]
    fn forward<I: Isa>(&self, x: &[V], h: &mut [Vec<V>; 3]) {
        let [h1, h2, out] = h;
        lanes::dense::<I>(h1, &self.b[0], &self.wt[0], x, true);
        lanes::dense::<I>(h2, &self.b[1], &self.wt[1], h1, true);
        lanes::dense::<I>(out, &self.b[2], &self.wt[2], h2, false);
    }

    /// Backward from `dout` with the activations `h` of [`Mlp::forward`] on `x`; ∂/∂x into `dx`.
    #[inline(always)]
    fn backward<I: Isa>(&self, x: &[V], h: &[Vec<V>; 3], dout: &[V], d: &mut [Vec<V>; 2], g: &mut LaneGrads, dx: &mut [V]) {
        let [d1, d2] = d;
        lanes::dense_backward::<I>(dout, &h[1], &self.w[2], &mut g.w[2], &mut g.b[2], d2);
        lanes::relu_backward::<I>(d2, &h[1]);
        lanes::dense_backward::<I>(d2, &h[0], &self.w[1], &mut g.w[1], &mut g.b[1], d1);
        lanes::relu_backward::<I>(d1, &h[0]);
        lanes::dense_backward::<I>(d1, x, &self.w[0], &mut g.w[0], &mut g.b[0], dx);
    }
}

/// An MLP's weight and bias gradients, one accumulator per lane (summed at the end).
struct LaneGrads {
    w: [Vec<V>; 3],
    b: [Vec<V>; 3],
}

impl LaneGrads {
    fn zeros(m: &Mlp) -> Self {
        Self { w: std::array::from_fn(|i| vec![[0.0; LANES]; m.w[i].len()]), b: std::array::from_fn(|i| vec![[0.0; LANES]; m.b[i].len()]) }
    }

    fn add(&mut self, other: &Self) {
        for (a, b) in self.w.iter_mut().chain(self.b.iter_mut()).zip(other.w.iter().chain(other.b.iter())) {
            for (x, y) in a.iter_mut().zip(b) {
                for (p, q) in x.iter_mut().zip(y) {
                    *p += q;
                }
            }
        }
    }

    fn merge(mut self, other: Self) -> Self {
        self.add(&other);
        self
    }

    /// Adds the lane sums to three consecutive layers' gradients.
    fn add_to(&self, layers: &mut [Layer]) {
        for (i, (gw, gb)) in layers.iter_mut().take(3).enumerate() {
            gw.iter_mut().zip(&self.w[i]).for_each(|(p, q)| *p += lanes::sum(q));
            gb.iter_mut().zip(&self.b[i]).for_each(|(p, q)| *p += lanes::sum(q));
        }
    }
}

/// One thread's working space for an MLP on a tile (channel-major, [`TILE`] vectors each).
struct Scratch {
    x: Vec<V>,
    h: [Vec<V>; 3],
    d: [Vec<V>; 2],
    dout: Vec<V>,
    dx: Vec<V>,
}

impl Scratch {
    fn new(m: &Mlp) -> Self {
        let z = |n: usize| vec![[0f32; LANES]; n * TILE];
        Self { x: z(m.n[0]), h: [z(m.n[1]), z(m.n[2]), z(m.n[3])], d: [z(m.n[1]), z(m.n[2])], dout: z(m.n[3]), dx: z(m.n[0]) }
    }
}

simd_kernel!(
    /// The synthesis MLP on one row of upsampled latents (`[level][wp]`): its output planes
    /// `[3][wp]` into `out`.
    fn synthesis_forward_row(mlp: &Mlp, u_row: &[f32], out: &mut [f32], s: &mut Scratch) => synthesis_forward_kernel
);

#[inline(always)]
fn synthesis_forward_kernel<I: Isa>(mlp: &Mlp, u_row: &[f32], out: &mut [f32], s: &mut Scratch) {
    let wp = out.len() / 3;
    for at in (0..wp).step_by(TILE_PIXELS) {
        gather_tile(&mut s.x, u_row, wp, at);
        mlp.forward::<I>(&s.x, &mut s.h);
        scatter_tile(out, &s.h[2], wp, at);
    }
}

simd_kernel!(
    /// The synthesis MLP's backward on one row: `d_row` (`[3][wp]`, ∂loss/∂output, zero past
    /// the image) to weight gradients in `g` and ∂loss/∂u into `du_row` (`[level][wp]`).
    fn synthesis_backward_row(mlp: &Mlp, u_row: &[f32], d_row: &[f32], du_row: &mut [f32], g: &mut LaneGrads, s: &mut Scratch) => synthesis_backward_kernel
);

#[inline(always)]
fn synthesis_backward_kernel<I: Isa>(mlp: &Mlp, u_row: &[f32], d_row: &[f32], du_row: &mut [f32], g: &mut LaneGrads, s: &mut Scratch) {
    let wp = d_row.len() / 3;
    for at in (0..wp).step_by(TILE_PIXELS) {
        gather_tile(&mut s.x, u_row, wp, at);
        // Activations are recomputed: cheaper than storing a dozen planes.
        mlp.forward::<I>(&s.x, &mut s.h);
        gather_tile(&mut s.dout, d_row, wp, at);
        mlp.backward::<I>(&s.x, &s.h, &s.dout, &mut s.d, g, &mut s.dx);
        scatter_tile(du_row, &s.dx, wp, at);
    }
}

/// A tile (`[channel][TILE]` vectors) from planes `[channel][wp]`, pixels `at..` on.
#[inline(always)]
fn gather_tile(tile: &mut [V], planes: &[f32], wp: usize, at: usize) {
    for (c, vectors) in tile.chunks_exact_mut(TILE).enumerate() {
        for (p, v) in vectors.iter_mut().enumerate() {
            v.copy_from_slice(&planes[c * wp + at + p * LANES..][..LANES]);
        }
    }
}

/// [`gather_tile`]'s inverse: a tile into planes `[channel][wp]` at pixel `at`.
#[inline(always)]
fn scatter_tile(planes: &mut [f32], tile: &[V], wp: usize, at: usize) {
    for (c, vectors) in tile.chunks_exact(TILE).enumerate() {
        for (p, v) in vectors.iter().enumerate() {
            planes[c * wp + at + p * LANES..][..LANES].copy_from_slice(v);
        }
    }
}

/// Lanes of two vectors: what the [`Isa::PAIRS`] kernels take per step.
const PAIR: usize = 2 * LANES;

simd_kernel!(
    /// `out += Σ_t w[t]·src[offset[t]..][..len]`: one output row of a 3x3 convolution.
    fn conv_row(out: &mut [f32], w: &[f32], src: &[f32], offsets: &[usize]) => conv_row_kernel
);

#[inline(always)]
fn conv_row_kernel<I: Isa>(out: &mut [f32], w: &[f32], src: &[f32], offsets: &[usize]) {
    let n = out.len();
    let whole = n / LANES * LANES;
    // Every tap summed in registers, four lane vectors at a time (four independent chains),
    // then one store: tap by tap over the row, each pass read and wrote the whole row. The
    // sums run over the taps in order either way, so the result is the same.
    let mut at = 0;
    while at + 4 * LANES <= whole {
        if I::PAIRS {
            conv_pairs::<I, 2>(out, w, src, offsets, at)
        } else {
            conv_block::<I, 4>(out, w, src, offsets, at)
        }
        at += 4 * LANES;
    }
    while at < whole {
        conv_block::<I, 1>(out, w, src, offsets, at);
        at += LANES;
    }
    for (&wt, &o) in w.iter().zip(offsets) {
        for (y, x) in out[whole..].iter_mut().zip(&src[o + whole..o + n]) {
            *y += wt * x;
        }
    }
}

/// `K` lane vectors of [`conv_row_kernel`] from pixel `at` on (a fixed `K` keeps the sums in
/// registers and each tap's loads one bounds check).
#[inline(always)]
fn conv_block<I: Isa, const K: usize>(out: &mut [f32], w: &[f32], src: &[f32], offsets: &[usize], at: usize) {
    let y: &mut [f32] = &mut out[at..at + K * LANES];
    let mut acc = [I::splat(0.0); K];
    for (v, a) in acc.iter_mut().enumerate() {
        *a = I::load(y[v * LANES..][..LANES].try_into().unwrap());
    }
    for (&wt, &o) in w.iter().zip(offsets) {
        let wv = I::splat(wt);
        let x = &src[o + at..o + at + K * LANES];
        for (v, a) in acc.iter_mut().enumerate() {
            *a = I::madd(wv, I::load(x[v * LANES..][..LANES].try_into().unwrap()), *a);
        }
    }
    for (v, a) in acc.iter().enumerate() {
        I::store((&mut y[v * LANES..][..LANES]).try_into().unwrap(), *a);
    }
}

/// [`conv_block`] on `K` pairs of lane vectors ([`Isa::PAIRS`]): the same sums in the same
/// order.
#[inline(always)]
fn conv_pairs<I: Isa, const K: usize>(out: &mut [f32], w: &[f32], src: &[f32], offsets: &[usize], at: usize) {
    let y: &mut [f32] = &mut out[at..at + K * PAIR];
    let mut acc = [I::splat2(0.0); K];
    for (v, a) in acc.iter_mut().enumerate() {
        *a = I::load2(as_pair(&y[v * PAIR..][..PAIR]));
    }
    for (&wt, &o) in w.iter().zip(offsets) {
        let wv = I::splat2(wt);
        let x = &src[o + at..o + at + K * PAIR];
        for (v, a) in acc.iter_mut().enumerate() {
            *a = I::madd2(wv, I::load2(as_pair(&x[v * PAIR..][..PAIR])), *a);
        }
    }
    for (v, a) in acc.iter().enumerate() {
        I::store2(as_pair_mut(&mut y[v * PAIR..][..PAIR]), *a);
    }
}

/// 16 floats as two lane vectors.
#[inline(always)]
fn as_pair(x: &[f32]) -> &[V; 2] {
    let (pair, _) = x.as_chunks::<LANES>();
    pair.try_into().unwrap()
}

#[inline(always)]
fn as_pair_mut(x: &mut [f32]) -> &mut [V; 2] {
    let (pair, _) = x.as_chunks_mut::<LANES>();
    pair.try_into().unwrap()
}

simd_kernel!(
    /// `g[t] += Σ_x d[x]·src[offsets[t] + x]` for every tap `t` (`x` over `d`): one row's
    /// share of a convolution's weight gradient. Nine taps at a time, each summed in a
    /// register, so `d` is read once per nine.
    fn tap_dots(g: &mut [f32], d: &[f32], src: &[f32], offsets: &[usize]) => tap_dots_kernel
);

#[inline(always)]
fn tap_dots_kernel<I: Isa>(g: &mut [f32], d: &[f32], src: &[f32], offsets: &[usize]) {
    let n = d.len();
    let whole = n / LANES * LANES;
    for (g, offsets) in g.chunks_exact_mut(9).zip(offsets.chunks_exact(9)) {
        let offsets: &[usize; 9] = offsets.try_into().unwrap();
        if I::PAIRS {
            tap_dots_pairs::<I>(g, d, src, offsets);
            continue;
        }
        let mut acc = [I::splat(0.0); 9];
        for at in (0..whole).step_by(LANES) {
            let dv = I::load(d[at..at + LANES].try_into().unwrap());
            for t in 0..9 {
                acc[t] = I::madd(dv, I::load(src[offsets[t] + at..][..LANES].try_into().unwrap()), acc[t]);
            }
        }
        for t in 0..9 {
            let mut lanes_sum = [0f32; LANES];
            I::store(&mut lanes_sum, acc[t]);
            let tail: f32 = d[whole..].iter().zip(&src[offsets[t] + whole..offsets[t] + n]).map(|(a, b)| a * b).sum();
            g[t] += lanes::sum(&lanes_sum) + tail;
        }
    }
}

/// [`tap_dots_kernel`]'s nine sums on pairs of lane vectors ([`Isa::PAIRS`]), 16 pixels a
/// step (so summed in another order).
#[inline(always)]
fn tap_dots_pairs<I: Isa>(g: &mut [f32], d: &[f32], src: &[f32], offsets: &[usize; 9]) {
    let n = d.len();
    let whole = n / PAIR * PAIR;
    let mut acc = [I::splat2(0.0); 9];
    for at in (0..whole).step_by(PAIR) {
        let dv = I::load2(as_pair(&d[at..at + PAIR]));
        for t in 0..9 {
            acc[t] = I::madd2(dv, I::load2(as_pair(&src[offsets[t] + at..][..PAIR])), acc[t]);
        }
    }
    for t in 0..9 {
        let mut lanes_sum = [[0f32; LANES]; 2];
        I::store2(&mut lanes_sum, acc[t]);
        let tail: f32 = d[whole..].iter().zip(&src[offsets[t] + whole..offsets[t] + n]).map(|(a, b)| a * b).sum();
        g[t] += lanes_sum.as_flattened().iter().sum::<f32>() + tail;
    }
}

simd_kernel!(
    /// Soft rounding with noise ([`Quantization::SoftRound`]) over a chunk of latents `y`:
    /// `o` holds the noise `u` on entry and `s(y) + u` on return, `so` gets `s(s(y) + u)`, and
    /// `dr`, `ds` the derivatives of the two with respect to `y`.
    fn soft_round_chunk(y: &[f32], o: &mut [f32], so: &mut [f32], dr: &mut [f32], ds: &mut [f32], temperature: f32) => soft_round_kernel
);

#[inline(always)]
fn soft_round_kernel<I: Isa>(y: &[f32], o: &mut [f32], so: &mut [f32], dr: &mut [f32], ds: &mut [f32], temperature: f32) {
    let n = y.len();
    let (o, so, dr, ds) = (&mut o[..n], &mut so[..n], &mut dr[..n], &mut ds[..n]);
    let norm = soft_round_norm(temperature);
    // Indexed rather than zipped: five zipped slices keep LLVM from vectorizing.
    for i in 0..n {
        let (sy, dsy) = soft_round_normed(y[i], temperature, norm);
        o[i] += sy;
        let (ss, dss) = soft_round_normed(o[i], temperature, norm);
        (so[i], dr[i], ds[i]) = (ss, dsy, dss * dsy);
    }
}

/// One level's latents as the ARM reads them: zero-padded by [`REACH`] rows above and
/// columns either side, and to whole tiles on the right.
struct PaddedLevel {
    y: Vec<f32>,
    /// Row stride.
    pw: usize,
    /// Latents per row, and the same rounded up to whole tiles.
    lw: usize,
    lwp: usize,
    lh: usize,
}

impl PaddedLevel {
    /// The level `y`, in `padded` (zeros, as long as [`PaddedLevel::len`] says).
    fn new(y: &[f32], [lh, lw]: [usize; 2], mut padded: Vec<f32>) -> Self {
        let (lwp, pw) = Self::widths(lw);
        debug_assert_eq!(padded.len(), Self::len([lh, lw]));
        for r in 0..lh {
            padded[(r + REACH) * pw + REACH..][..lw].copy_from_slice(&y[r * lw..(r + 1) * lw]);
        }
        Self { y: padded, pw, lw, lwp, lh }
    }

    fn widths(lw: usize) -> (usize, usize) {
        let lwp = tile_ceil(lw);
        (lwp, lwp + 2 * REACH)
    }

    fn len([lh, lw]: [usize; 2]) -> usize {
        (lh + REACH) * Self::widths(lw).1
    }

    /// Index of the latent at `(r, c)` offset by `(dy, dx)`.
    #[inline(always)]
    fn at(&self, r: usize, c: usize, (dy, dx): (isize, isize)) -> usize {
        ((r + REACH) as isize + dy) as usize * self.pw + ((c + REACH) as isize + dx) as usize
    }
}

simd_kernel!(
    /// The rate of one row of a level under the ARM, and its backward: bits (added to
    /// `bits`), ARM gradients into `g`, the direct ∂/∂ŷ into `dy_row` and ∂/∂context into
    /// `dctx_row` (`[tap][lwp]`); all gradients scaled by `scale`.
    fn rate_row(mlp: &Mlp, level: &PaddedLevel, r: usize, scale: f32, dy_row: &mut [f32], dctx_row: &mut [f32], bits: &mut f64, g: &mut LaneGrads, s: &mut Scratch) => rate_kernel
);

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn rate_kernel<I: Isa>(mlp: &Mlp, level: &PaddedLevel, r: usize, scale: f32, dy_row: &mut [f32], dctx_row: &mut [f32], bits: &mut f64, g: &mut LaneGrads, s: &mut Scratch) {
    let lwp = level.lwp;
    for at in (0..lwp).step_by(TILE_PIXELS) {
        for (x, &tap) in s.x.chunks_exact_mut(TILE).zip(CONTEXT.iter()) {
            for (p, v) in x.iter_mut().enumerate() {
                v.copy_from_slice(&level.y[level.at(r, at + p * LANES, tap)..][..LANES]);
            }
        }
        mlp.forward::<I>(&s.x, &mut s.h);
        // AVX-512 runs the Laplace's arithmetic 16 lanes wide, two lane vectors at a time.
        if I::PAIRS {
            let mut block_bits = [0f32; PAIR];
            for p in (0..TILE).step_by(2) {
                laplace_lanes(level, r, at, scale, &s.h[2], p, &mut s.dout, dy_row, &mut block_bits);
            }
            *bits += block_bits.iter().sum::<f32>() as f64;
        } else {
            let mut block_bits = [0f32; LANES];
            for p in 0..TILE {
                laplace_lanes(level, r, at, scale, &s.h[2], p, &mut s.dout, dy_row, &mut block_bits);
            }
            *bits += lanes::sum(&block_bits) as f64;
        }
        mlp.backward::<I>(&s.x, &s.h, &s.dout, &mut s.d, g, &mut s.dx);
        scatter_tile(dctx_row, &s.dx, lwp, at);
    }
}

/// The Laplace rate of `N` latents of row `r`: those of the tile's vectors `p..p + N/LANES`,
/// the tile starting at latent `tile_at`, given the ARM's output tile `arm_out` (`[μ, log b]`,
/// channel-major): bits into `block_bits`, ∂bits/∂(μ, log b) into the same places of the
/// tile's `dout`, ∂bits/∂ŷ into `dy_row`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn laplace_lanes<const N: usize>(level: &PaddedLevel, r: usize, tile_at: usize, scale: f32, arm_out: &[V], p: usize, dout: &mut [V], dy_row: &mut [f32], block_bits: &mut [f32; N]) {
    let (smin, smax) = (SCALE_MIN as f32, SCALE_MAX as f32);
    let (m, at) = (N / LANES, tile_at + p * LANES);
    let y: &[f32; N] = level.y[level.at(r, at, (0, 0))..][..N].try_into().unwrap();
    let mu: &[f32; N] = arm_out[p..p + m].as_flattened().try_into().unwrap();
    let log_scale: &[f32; N] = arm_out[TILE + p..TILE + p + m].as_flattened().try_into().unwrap();
    let (mut dmu, mut dls, mut dy) = ([0f32; N], [0f32; N], [0f32; N]);
    for l in 0..N {
        let raw = lanes::exp(log_scale[l]);
        let inv = 1.0 / raw.clamp(smin, smax);
        let e = y[l] - mu[l];
        let v = e.abs();
        let (hi, lo) = ((0.5 - v) * inv, (-0.5 - v) * inv);
        // p = F(hi) − F(lo) (F the Laplace CDF) through upper tails (lo < 0), which
        // keeps far tails accurate.
        // The tails are also the densities (e^−|x|/2), so they serve the backward too.
        let (t_hi, t_lo) = (lanes::laplace_upper_tail(hi.abs()), lanes::laplace_upper_tail(-lo));
        let f_hi = if hi > 0.0 { 1.0 - t_hi } else { t_hi };
        let p = f_hi - t_lo;
        let valid = at + l < level.lw;
        let counted = if valid { p.max(1e-9) } else { 1.0 };
        block_bits[l] -= lanes::log2(counted);
        let live = valid && p >= 1e-9;
        // ∂bits/∂v and ∂bits/∂σ through p.
        let db_dp = if live { -scale / (p * std::f32::consts::LN_2) } else { 0.0 };
        let (pdf_hi, pdf_lo) = (t_hi, t_lo);
        let dv = db_dp * (pdf_lo - pdf_hi) * inv;
        let dsigma = db_dp * (lo * pdf_lo - hi * pdf_hi) * inv;
        let sign = if e > 0.0 {
            1.0
        } else if e < 0.0 {
            -1.0
        } else {
            0.0
        };
        dy[l] = dv * sign;
        dmu[l] = -dv * sign;
        dls[l] = if raw > smin && raw < smax { dsigma * raw } else { 0.0 };
    }
    dout[p..p + m].as_flattened_mut().copy_from_slice(&dmu);
    dout[TILE + p..TILE + p + m].as_flattened_mut().copy_from_slice(&dls);
    dy_row[at..at + N].copy_from_slice(&dy);
}

/// Slope of the leaky ReLU between the residual layers at `x`: its output is `x·slope(x)`,
/// and a gradient through it is scaled by the slope at its input.
#[inline(always)]
fn leak_slope(x: f32) -> f32 {
    if x > 0.0 { 1.0 } else { RESIDUAL_LEAK }
}

/// Per input sample of a resampling, a span of its outputs.
type Spans = Vec<Range<usize>>;

/// For each input sample `a` of a 1-D bilinear resampling, the outputs that read it: a
/// contiguous span, since the taps never decrease.
fn readers(t: &Taps, inputs: usize) -> Spans {
    (0..inputs).map(|a| t.i1.partition_point(|&i| i < a)..t.i0.partition_point(|&i| i <= a)).collect()
}

/// The weight with which output `d` of a resampling reads input `a`.
#[inline(always)]
fn tap_weight(t: &Taps, d: usize, a: usize) -> f32 {
    let mut f = 0.0;
    if t.i0[d] == a {
        f += 1.0 - t.w1[d];
    }
    if t.i1[d] == a {
        f += t.w1[d];
    }
    f
}

/// Latents per parallel chunk of the element-wise passes (noise, Adam).
const NOISE_CHUNK: usize = 1 << 14;

/// What one step measured.
#[derive(Debug, Clone, Copy)]
pub struct StepLoss {
    pub mse: f64,
    pub bits: f64,
}

/// The shapes and taps of a fit; the target image as planar [0, 1] samples.
pub struct Problem {
    pub arch: Architecture,
    pub height: usize,
    pub width: usize,
    pub sizes: Vec<[usize; 2]>,
    target: Vec<f32>,
    taps: Vec<(Taps, Taps)>,
    /// Per level, for each latent row and column, the image rows and columns that read it.
    readers: Vec<(Spans, Spans)>,
    /// Every row of the levels smaller than the image, as (level, row), level by level; and
    /// where each such level's rows start in that list (`None`: the level is full size).
    resampled_rows: Vec<(usize, usize)>,
    resampled_from: Vec<Option<usize>>,
    /// Buffers kept from step to step: fresh ones of this size cost more in page faults
    /// than in arithmetic.
    pool: Mutex<Vec<Vec<f32>>>,
}

impl Problem {
    /// `target`: the image as planar [0, 1] samples; empty when only [`Problem::reconstruct`]
    /// is called (decoding).
    pub fn new(arch: Architecture, height: usize, width: usize, target: Vec<f32>) -> Self {
        let sizes = arch.level_sizes(height, width);
        let taps: Vec<_> = sizes.iter().map(|&[h, w]| (Taps::new(h, height), Taps::new(w, width))).collect();
        let readers = taps.iter().zip(&sizes).map(|((ty, tx), &[h, w])| (readers(ty, h), readers(tx, w))).collect();
        let (mut resampled_rows, mut resampled_from) = (vec![], vec![]);
        for (l, &[h, w]) in sizes.iter().enumerate() {
            let full = [h, w] == [height, width];
            resampled_from.push((!full).then_some(resampled_rows.len()));
            if !full {
                resampled_rows.extend((0..h).map(|a| (l, a)));
            }
        }
        Self { arch, height, width, sizes, target, taps, readers, resampled_rows, resampled_from, pool: Mutex::new(vec![]) }
    }

    /// `n` zeros, in a recycled buffer when one is large enough (the smallest such).
    fn zeros(&self, n: usize) -> Vec<f32> {
        let mut v = self.scratch(n);
        v.par_chunks_mut(NOISE_CHUNK).for_each(|c| c.fill(0.0));
        v
    }

    /// A buffer of `n` values from the pool, holding whatever it held: for callers that
    /// write every element before reading any (zeroing tens of megabytes a step showed up).
    fn scratch(&self, n: usize) -> Vec<f32> {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        let fit = pool.iter().enumerate().filter(|(_, v)| v.capacity() >= n).min_by_key(|(_, v)| v.capacity()).map(|(i, _)| i);
        let mut v = fit.map(|i| pool.swap_remove(i)).unwrap_or_else(|| Vec::with_capacity(n));
        drop(pool);
        v.truncate(n);
        v.resize(n, 0.0);
        v
    }

    fn recycle(&self, buffers: impl IntoIterator<Item = Vec<f32>>) {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        pool.extend(buffers);
        // A step takes back what it gives; the bound only guards against a buffer that is not.
        pool.truncate(128);
    }

    /// Returns gradients from [`Problem::loss_and_grads`] to the buffer pool.
    pub fn recycle_gradients(&self, grads: Params) {
        self.recycle(grads.latents);
    }

    /// Loss terms and the gradient of `mse + λ·bits/pixels` for latents quantized as `q`
    /// (`noise` draws the uniform noise of [`Quantization::Noise`]).
    pub fn loss_and_grads(&self, p: &Params, lambda: f64, q: Quantization, noise: &mut StdRng) -> (StepLoss, Params) {
        let (y_rate, y_syn, chain) = self.quantize(p, q, noise);
        // Fresh gradient planes would cost page faults each step: the latents' come from the
        // pool ([`Problem::recycle_gradients`] gives them back).
        let mut grads = p.zeros_like_in(|n| self.zeros(n));
        let pixels = (self.height * self.width) as f64;
        let (mse, dy_syn) = self.synthesis(p, y_syn.as_ref().unwrap_or(&y_rate), &mut grads);
        let arm = Mlp::new(&p.layers[..ARM_LAYERS], CONTEXT.len());
        let mut arm_grads = LaneGrads::zeros(&arm);
        let mut bits = 0.0;
        for (l, y) in y_rate.iter().enumerate() {
            let (b, dy) = self.rate(&arm, y, self.sizes[l], (lambda / pixels) as f32, &mut arm_grads);
            bits += b;
            grads.latents[l].iter_mut().zip(&dy).for_each(|(g, d)| *g += d);
            self.recycle([dy]);
        }
        arm_grads.add_to(&mut grads.layers[..ARM_LAYERS]);
        match &chain {
            // ∂ŷ_rate/∂y and ∂ŷ_syn/∂y of soft rounding.
            Some((d_rate, d_syn)) => {
                for (((g, ds), dr), dsy) in grads.latents.iter_mut().zip(&dy_syn).zip(d_rate).zip(d_syn) {
                    g.par_iter_mut().zip(ds).zip(dr).zip(dsy).for_each(|(((g, ds), dr), dsy)| *g = *g * dr + ds * dsy);
                }
            }
            None => {
                for (g, d) in grads.latents.iter_mut().zip(&dy_syn) {
                    g.iter_mut().zip(d).for_each(|(a, b)| *a += b);
                }
            }
        }
        let chain = chain.into_iter().flat_map(|(a, b)| a.into_iter().chain(b));
        self.recycle(y_rate.into_iter().chain(y_syn.into_iter().flatten()).chain(dy_syn).chain(chain));
        (StepLoss { mse, bits }, grads)
    }

    /// The latents as the rate sees them and, where they differ, as the synthesis sees them;
    /// for soft rounding also the derivatives of both with respect to the latents.
    #[allow(clippy::type_complexity)]
    fn quantize(&self, p: &Params, q: Quantization, noise: &mut StdRng) -> (Vec<Vec<f32>>, Option<Vec<Vec<f32>>>, Option<(Vec<Vec<f32>>, Vec<Vec<f32>>)>) {
        // Noise in parallel chunks, each seeded from one draw of `noise` (the same every run).
        let seed: u64 = noise.r#gen();
        let soft = matches!(q, Quantization::SoftRound { .. });
        let (mut rate, mut syn, mut d_rate, mut d_syn) = (vec![], vec![], vec![], vec![]);
        for (l, lat) in p.latents.iter().enumerate() {
            let n = lat.len();
            // Soft rounding's extra planes; the other quantizers need none. Every element is
            // written below.
            let extra = || if soft { self.scratch(n) } else { Vec::new() };
            let (mut r, mut s, mut dr, mut ds) = (self.scratch(n), extra(), extra(), extra());
            let chunk = NOISE_CHUNK;
            let chunk_rng = |i: usize| StdRng::seed_from_u64(seed ^ ((l as u64) << 48) ^ i as u64);
            let parts = r.par_chunks_mut(chunk).zip(lat.par_chunks(chunk)).enumerate();
            match q {
                Quantization::Noise => parts.for_each(|(i, (o, v))| {
                    let mut rng = chunk_rng(i);
                    o.iter_mut().zip(v).for_each(|(o, &v)| *o = v + rng.gen_range(-0.5f32..0.5));
                }),
                Quantization::Round => parts.for_each(|(_, (o, v))| o.iter_mut().zip(v).for_each(|(o, &v)| *o = v.round())),
                Quantization::SoftRound { temperature } => {
                    parts.zip(s.par_chunks_mut(chunk).zip(dr.par_chunks_mut(chunk).zip(ds.par_chunks_mut(chunk)))).for_each(|((i, (o, v)), (so, (dro, dso)))| {
                        let mut rng = chunk_rng(i);
                        o.iter_mut().for_each(|o| *o = rng.gen_range(-0.5f32..0.5));
                        soft_round_chunk(v, o, so, dro, dso, temperature);
                    })
                }
            }
            rate.push(r);
            syn.push(s);
            d_rate.push(dr);
            d_syn.push(ds);
        }
        if soft { (rate, Some(syn), Some((d_rate, d_syn))) } else { (rate, None, None) }
    }

    /// Every level bilinearly upsampled to full resolution, `[row][level][wp]` (zero past
    /// the image). Columns first, on each level's own rows (a level of 1/f resolution then
    /// costs 1/f of a plane in gathers), then rows as whole-row blends.
    fn upsample(&self, y_hat: &[Vec<f32>], wp: usize) -> Vec<f32> {
        let (h, w, levels) = (self.height, self.width, self.sizes.len());
        let mut across = self.scratch(self.resampled_rows.len() * w);
        across.par_chunks_mut(w).zip(&self.resampled_rows).for_each(|(out, &(l, a))| {
            let (_, tx) = &self.taps[l];
            let line = &y_hat[l][a * self.sizes[l][1]..][..self.sizes[l][1]];
            for (x, o) in out.iter_mut().enumerate() {
                let (p, q) = (line[tx.i0[x]], line[tx.i1[x]]);
                *o = p + (q - p) * tx.w1[x];
            }
        });
        // Every element written: each level's row, then zeros to the lane vector's end.
        let mut u = self.scratch(h * levels * wp);
        u.par_chunks_mut(levels * wp).enumerate().for_each(|(r, row)| {
            for (l, out) in row.chunks_exact_mut(wp).enumerate() {
                let (out, tail) = out.split_at_mut(w);
                tail.fill(0.0);
                let Some(first) = self.resampled_from[l] else {
                    out.copy_from_slice(&y_hat[l][r * w..][..w]);
                    continue;
                };
                let (ty, _) = &self.taps[l];
                let line = |a: usize| &across[(first + a) * w..][..w];
                let (top, bottom, f) = (line(ty.i0[r]), line(ty.i1[r]), ty.w1[r]);
                out.iter_mut().zip(top.iter().zip(bottom)).for_each(|(o, (p, q))| *o = p + (q - p) * f);
            }
        });
        self.recycle([across]);
        u
    }

    /// The upsampling's adjoint: ∂/∂u (`[row][level][wp]`) back onto each level's latents.
    /// Each latent row, then each latent, gathers what the rows and columns that read it
    /// received (the taps are monotone, so those are a contiguous span), so no two threads
    /// and no two consecutive sums write one place.
    fn upsample_adjoint(&self, du: &[f32], wp: usize) -> Vec<Vec<f32>> {
        let (w, levels) = (self.width, self.sizes.len());
        let mut down = self.scratch(self.resampled_rows.len() * w);
        down.par_chunks_mut(w).zip(&self.resampled_rows).for_each(|(out, &(l, a))| {
            let (ty, _) = &self.taps[l];
            out.fill(0.0);
            for r in self.readers[l].0[a].clone() {
                let f = tap_weight(ty, r, a);
                out.iter_mut().zip(&du[(r * levels + l) * wp..][..w]).for_each(|(o, g)| *o += f * g);
            }
        });
        let dy = (0..levels)
            .map(|l| {
                let [lh, lw] = self.sizes[l];
                let mut out = self.scratch(lh * lw);
                let Some(first) = self.resampled_from[l] else {
                    out.par_chunks_mut(w).enumerate().for_each(|(r, o)| o.copy_from_slice(&du[(r * levels + l) * wp..][..w]));
                    return out;
                };
                let (_, tx) = &self.taps[l];
                out.par_chunks_mut(lw).enumerate().for_each(|(a, o)| {
                    let line = &down[(first + a) * w..][..w];
                    for (c, o) in o.iter_mut().enumerate() {
                        *o = self.readers[l].1[c].clone().map(|x| line[x] * tap_weight(tx, x, c)).sum();
                    }
                });
                out
            })
            .collect();
        self.recycle([down]);
        dy
    }

    /// The upsampled latents (`[row][level][wp]`) and the synthesis MLP's output planes,
    /// `[3][H+2][W+2]`, zero-padded by one for the 3x3 convolution.
    fn mlp_planes(&self, mlp: &Mlp, y_hat: &[Vec<f32>], wp: usize) -> (Vec<f32>, Vec<f32>) {
        let (h, w, levels) = (self.height, self.width, self.sizes.len());
        let u = self.upsample(y_hat, wp);
        let (ph, pw) = (h + 2, w + 2);
        // Every element written: each row's 3 planes, whole lane vectors.
        let mut rows = self.scratch(h * 3 * wp);
        rows.par_chunks_mut(3 * wp).enumerate().for_each_init(|| Scratch::new(mlp), |s, (r, out)| synthesis_forward_row(mlp, &u[r * levels * wp..][..levels * wp], out, s));
        let mut o = self.zeros(3 * ph * pw);
        o.par_chunks_mut(pw).enumerate().for_each(|(row, out)| {
            let (k, pr) = (row / ph, row % ph);
            if pr > 0 && pr <= h {
                out[1..=w].copy_from_slice(&rows[(pr - 1) * 3 * wp + k * wp..][..w]);
            }
        });
        self.recycle([rows]);
        (u, o)
    }

    /// Taps of the 3x3 convolution as offsets into a padded plane, `[ic][ky][kx]`.
    fn conv_taps(ph: usize, pw: usize) -> Vec<usize> {
        (0..27).map(|t| (t / 9) * ph * pw + (t / 3 % 3) * pw + t % 3).collect()
    }

    /// The residual 3x3 layers' inputs: `o` (the MLP's planes) and, for each layer but the
    /// last, its output through the leaky ReLU ([`RESIDUAL_LEAK`]), all padded `[3][H+2][W+2]`
    /// with zero borders.
    fn residual_inputs(&self, convs: &[Layer], o: Vec<f32>) -> Vec<Vec<f32>> {
        let (h, w) = (self.height, self.width);
        let (ph, pw) = (h + 2, w + 2);
        let taps = Self::conv_taps(ph, pw);
        let mut xs = vec![o];
        for conv in &convs[..convs.len() - 1] {
            let src = xs.last().unwrap();
            let mut out = self.zeros(3 * ph * pw);
            self.for_padded_rows(&mut out, |k, r, v| {
                self.residual_forward_row(src, conv, k, r, v, &taps);
                v.iter_mut().for_each(|v| *v *= leak_slope(*v));
            });
            xs.push(out);
        }
        xs
    }

    /// `f(channel, r, row)` on every image row `r` of padded planes `[3][H+2][W+2]` (the W
    /// samples between the zero borders, which stay untouched), rows in parallel.
    fn for_padded_rows(&self, planes: &mut [f32], f: impl Fn(usize, usize, &mut [f32]) + Sync) {
        let (w, ph) = (self.width, self.height + 2);
        planes.par_chunks_mut(w + 2).enumerate().for_each(|(row, v)| {
            let (k, pr) = (row / ph, row % ph);
            if pr > 0 && pr < ph - 1 {
                f(k, pr - 1, &mut v[1..=w]);
            }
        });
    }

    /// One row `r` of output channel `k` of a residual layer's forward: `x + bias + conv3x3(x)`
    /// (`x` padded `[3][H+2][W+2]`, zero borders) into `row`.
    fn residual_forward_row(&self, x: &[f32], (wr, br): &Layer, k: usize, r: usize, row: &mut [f32], taps: &[usize]) {
        let (w, ph, pw) = (self.width, self.height + 2, self.width + 2);
        row.iter_mut().zip(&x[k * ph * pw + (r + 1) * pw + 1..][..w]).for_each(|(v, x)| *v = x + br[k]);
        conv_row(row, &wr[k * 27..(k + 1) * 27], &x[r * pw..], taps);
    }

    /// One row `r` of input channel `ic` of a residual layer's backward: `d + conv3x3ᵀ(d)`
    /// (`d` padded `[3][H+2][W+2]`, zero borders) into `row`. Output (r+1−ky, x+1−kx) reads
    /// the input at (r, x) through tap (ky, kx), i.e. d's padded plane at (r+2−ky, x+2−kx).
    fn residual_backward_row(&self, d: &[f32], wr: &[f32], r: usize, ic: usize, row: &mut [f32], flipped: &[usize]) {
        let (w, ph, pw) = (self.width, self.height + 2, self.width + 2);
        row.copy_from_slice(&d[ic * ph * pw + (r + 1) * pw + 1..][..w]);
        let mut wt = [0f32; 27];
        for (t, v) in wt.iter_mut().enumerate() {
            // wr[k][ic][ky][kx] for t = (k, ky, kx).
            *v = wr[((t / 9) * 3 + ic) * 9 + t % 9];
        }
        conv_row(row, &wt, &d[r * pw..], flipped);
    }

    /// Decoding on the CPU: the synthesis of `p`'s layers on latents `y` (integers as f32),
    /// planar `[3][H][W]` samples (unclamped; [0, 1] is the image's range). Needs no target.
    pub fn reconstruct(&self, p: &Params, y: &[Vec<f32>]) -> Vec<f32> {
        let (h, w) = (self.height, self.width);
        let mlp = Mlp::new(&p.layers[ARM_LAYERS..ARM_LAYERS + 3], self.sizes.len());
        let convs = &p.layers[ARM_LAYERS + 3..];
        let last = convs.last().unwrap();
        let (ph, pw) = (h + 2, w + 2);
        let (u, o) = self.mlp_planes(&mlp, y, tile_ceil(w));
        let xs = self.residual_inputs(convs, o);
        let x = xs.last().unwrap();
        let taps = Self::conv_taps(ph, pw);
        let mut out = vec![0f32; 3 * h * w];
        out.par_chunks_mut(w).enumerate().for_each(|(row, v)| {
            self.residual_forward_row(x, last, row / h, row % h, v, &taps);
        });
        self.recycle(xs);
        self.recycle([u]);
        out
    }

    /// Synthesis forward and backward: the MSE, weight gradients into `grads`, and the
    /// gradient of the MSE with respect to every level's ŷ.
    fn synthesis(&self, p: &Params, y_hat: &[Vec<f32>], grads: &mut Params) -> (f64, Vec<Vec<f32>>) {
        let (h, w, levels) = (self.height, self.width, self.sizes.len());
        let wp = tile_ceil(w);
        let mlp = Mlp::new(&p.layers[ARM_LAYERS..ARM_LAYERS + 3], levels);
        let convs = &p.layers[ARM_LAYERS + 3..];
        let last = convs.last().unwrap();
        let (ph, pw) = (h + 2, w + 2);
        let (u, o) = self.mlp_planes(&mlp, y_hat, wp);
        let xs = self.residual_inputs(convs, o);
        let x = xs.last().unwrap();
        let taps = Self::conv_taps(ph, pw);
        // x̃ = x + conv3x3(x) + bias; the loss and d = ∂MSE/∂x̃ (zero-padded too).
        let n = (3 * h * w) as f64;
        let mut d = self.zeros(3 * ph * pw);
        let sse: f64 = d
            .par_chunks_mut(pw)
            .enumerate()
            .map(|(row, dr)| {
                let (k, pr) = (row / ph, row % ph);
                if pr == 0 || pr == ph - 1 {
                    return 0.0;
                }
                let r = pr - 1;
                let mut v = vec![0f32; w];
                self.residual_forward_row(x, last, k, r, &mut v, &taps);
                let mut sse = 0.0f64;
                for (x, (vx, t)) in v.iter().zip(&self.target[k * h * w + r * w..][..w]).enumerate() {
                    let e = vx - t;
                    sse += (e as f64) * (e as f64);
                    dr[x + 1] = (2.0 * e as f64 / n) as f32;
                }
                sse
            })
            .sum();
        let flipped: Vec<usize> = (0..27).map(|t| (t / 9) * ph * pw + (2 - t / 3 % 3) * pw + 2 - t % 3).collect();
        // Back through the residual layers, last first: `d` is ∂/∂(layer i's output).
        for i in (0..convs.len()).rev() {
            let (input, (wr, _)) = (&xs[i], &convs[i]);
            // ∂/∂wr[k][t] = Σ d[k]·(input shifted by tap t).
            let gr = (0..h)
                .into_par_iter()
                .fold(
                    || vec![0f32; 81],
                    |mut g, r| {
                        for k in 0..3 {
                            let dk = &d[k * ph * pw + (r + 1) * pw + 1..][..w];
                            tap_dots(&mut g[k * 27..(k + 1) * 27], dk, &input[r * pw..], &taps);
                        }
                        g
                    },
                )
                .reduce(
                    || vec![0f32; 81],
                    |mut a, b| {
                        a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                        a
                    },
                );
            let (gwr, gbr) = &mut grads.layers[ARM_LAYERS + 3 + i];
            gwr.iter_mut().zip(&gr).for_each(|(a, b)| *a += b);
            for k in 0..3 {
                gbr[k] += d[k * ph * pw..(k + 1) * ph * pw].iter().sum::<f32>();
            }
            if i == 0 {
                break;
            }
            // ∂/∂(layer i's input), through the leaky ReLU that made it (padded, zero borders).
            let mut d_in = self.zeros(3 * ph * pw);
            self.for_padded_rows(&mut d_in, |ic, r, v| {
                self.residual_backward_row(&d, wr, r, ic, v, &flipped);
                v.iter_mut().zip(&input[ic * ph * pw + (r + 1) * pw + 1..][..w]).for_each(|(g, x)| *g *= leak_slope(*x));
            });
            self.recycle([std::mem::replace(&mut d, d_in)]);
        }
        // ∂/∂o, `[row][3][wp]`, zero past the image.
        let mut d_o = self.scratch(h * 3 * wp);
        d_o.par_chunks_mut(3 * wp).enumerate().for_each(|(r, out)| {
            for ic in 0..3 {
                out[ic * wp + w..(ic + 1) * wp].fill(0.0);
                self.residual_backward_row(&d, &convs[0].0, r, ic, &mut out[ic * wp..][..w], &flipped);
            }
        });
        // MLP backward, rows in parallel; ∂/∂u kept per pixel.
        // Every element written: each row's planes, whole lane vectors.
        let mut du = self.scratch(h * levels * wp);
        let lane_grads = du
            .par_chunks_mut(levels * wp)
            .enumerate()
            .fold(
                || (LaneGrads::zeros(&mlp), Scratch::new(&mlp)),
                |(mut g, mut s), (r, du_row)| {
                    synthesis_backward_row(&mlp, &u[r * levels * wp..][..levels * wp], &d_o[r * 3 * wp..][..3 * wp], du_row, &mut g, &mut s);
                    (g, s)
                },
            )
            .map(|(g, _)| g)
            .reduce(|| LaneGrads::zeros(&mlp), LaneGrads::merge);
        lane_grads.add_to(&mut grads.layers[ARM_LAYERS..]);
        let dy = self.upsample_adjoint(&du, wp);
        self.recycle(xs);
        self.recycle([u, d, d_o, du]);
        (sse / n, dy)
    }

    /// One level's rate under the ARM: bits, ARM gradients (scaled by `scale`) into `grads`,
    /// and the scaled gradient with respect to the level's ŷ.
    fn rate(&self, arm: &Mlp, y: &[f32], size: [usize; 2], scale: f32, grads: &mut LaneGrads) -> (f64, Vec<f32>) {
        let level = PaddedLevel::new(y, size, self.zeros(PaddedLevel::len(size)));
        let (lh, lw, lwp, k) = (level.lh, level.lw, level.lwp, CONTEXT.len());
        // Per row: bits, the direct ∂/∂ŷ, ∂/∂context (`[row][tap][lwp]`) and the ARM's gradients.
        // Every element written by `rate_row` (whole lane vectors, every tap).
        let mut dy = self.scratch(lh * lwp);
        let mut dctx = self.scratch(lh * k * lwp);
        let (bits, g) = dy
            .par_chunks_mut(lwp)
            .zip(dctx.par_chunks_mut(k * lwp))
            .enumerate()
            .fold(
                || (0.0f64, LaneGrads::zeros(arm), Scratch::new(arm)),
                |(mut bits, mut g, mut s), (r, (dy_row, dctx_row))| {
                    rate_row(arm, &level, r, scale, dy_row, dctx_row, &mut bits, &mut g, &mut s);
                    (bits, g, s)
                },
            )
            .map(|(b, g, _)| (b, g))
            .reduce(|| (0.0, LaneGrads::zeros(arm)), |(a, x), (b, y)| (a + b, x.merge(y)));
        grads.add(&g);
        // Gather: latent (r, c) is neighbour j of position (r − oy, c − ox). Every element
        // written (each row starts as a copy).
        let mut out = self.scratch(lh * lw);
        out.par_chunks_mut(lw).enumerate().for_each(|(r, row)| {
            row.copy_from_slice(&dy[r * lwp..][..lw]);
            for (j, &(oy, ox)) in CONTEXT.iter().enumerate() {
                let qr = r as isize - oy;
                if qr < 0 || qr >= lh as isize {
                    continue;
                }
                let src = &dctx[(qr as usize * k + j) * lwp..][..lwp];
                // Columns c with 0 ≤ c − ox < lw.
                let (c0, c1) = ((ox.max(0)) as usize, ((lw as isize + ox).min(lw as isize)).max(0) as usize);
                for c in c0..c1 {
                    row[c] += src[(c as isize - ox) as usize];
                }
            }
        });
        self.recycle([dy, dctx, level.y]);
        (bits, out)
    }
}

/// Adam (β = 0.9, 0.999; ε = 1e-8) over every parameter.
pub struct Adam {
    m: Params,
    v: Params,
    t: i32,
}

impl Adam {
    pub fn new(p: &Params) -> Self {
        Self { m: p.zeros_like(), v: p.zeros_like(), t: 0 }
    }

    /// One step: the latents at `latent_lr`, the networks at `lr`.
    pub fn step(&mut self, p: &mut Params, g: &Params, lr: f64, latent_lr: f64) {
        self.t += 1;
        let (b1, b2) = (0.9f32, 0.999f32);
        let (c1, c2) = (1.0 - b1.powi(self.t), 1.0 - b2.powi(self.t));
        let levels = p.latents.len();
        for (i, (((x, g), m), v)) in p.slices_mut().into_iter().zip(g.slices()).zip(self.m.slices_mut()).zip(self.v.slices_mut()).enumerate() {
            let lr = if i < levels { latent_lr as f32 } else { lr as f32 };
            x.par_chunks_mut(NOISE_CHUNK).zip(g.par_chunks(NOISE_CHUNK)).zip(m.par_chunks_mut(NOISE_CHUNK)).zip(v.par_chunks_mut(NOISE_CHUNK)).for_each(|(((x, g), m), v)| {
                for (((x, &g), m), v) in x.iter_mut().zip(g).zip(m).zip(v) {
                    *m = b1 * *m + (1.0 - b1) * g;
                    *v = b2 * *v + (1.0 - b2) * g * g;
                    *x -= lr * (*m / c1) / ((*v / c2).sqrt() + 1e-8);
                }
            });
        }
    }
}

/// A seeded generator for the noise of a fit.
pub fn noise_rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overfit::lanes::Plain;

    /// The plain kernels (CPUs without AVX2 and FMA) against the ones this CPU runs: the same
    /// rate, gradients and context gradients on random latents and weights.
    #[test]
    fn the_plain_kernels_agree_with_the_dispatched_ones() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut layer = |o: usize, i: usize| -> Layer { ((0..o * i).map(|_| rng.gen_range(-0.5f32..0.5)).collect(), (0..o).map(|_| rng.gen_range(-0.2f32..0.2)).collect()) };
        let layers = vec![layer(6, CONTEXT.len()), layer(6, 6), layer(2, 6)];
        let arm = Mlp::new(&layers, CONTEXT.len());
        let size = [5, 19];
        let y: Vec<f32> = (0..size[0] * size[1]).map(|_| rng.gen_range(-3.0f32..3.0).round()).collect();
        let level = PaddedLevel::new(&y, size, vec![0.0; PaddedLevel::len(size)]);
        let run = |plain: bool| {
            let (mut dy, mut dctx, mut bits) = (vec![0f32; level.lwp], vec![0f32; CONTEXT.len() * level.lwp], 0.0);
            let (mut g, mut s) = (LaneGrads::zeros(&arm), Scratch::new(&arm));
            for r in 0..size[0] {
                if plain {
                    rate_kernel::<Plain>(&arm, &level, r, 0.1, &mut dy, &mut dctx, &mut bits, &mut g, &mut s);
                } else {
                    rate_row(&arm, &level, r, 0.1, &mut dy, &mut dctx, &mut bits, &mut g, &mut s);
                }
            }
            let mut grads = layers.clone();
            grads.iter_mut().for_each(|(w, b)| (w.fill(0.0), b.fill(0.0)).1);
            g.add_to(&mut grads);
            (bits, dy, dctx, grads)
        };
        let (a, b) = (run(true), run(false));
        assert!((a.0 - b.0).abs() < 1e-4 * a.0, "bits {} vs {}", a.0, b.0);
        let close = |x: &[f32], y: &[f32]| x.iter().zip(y).all(|(p, q)| (p - q).abs() <= 1e-4 * (1.0 + p.abs()));
        assert!(close(&a.1, &b.1) && close(&a.2, &b.2));
        assert!(a.3.iter().zip(&b.3).all(|(p, q)| close(&p.0, &q.0) && close(&p.1, &q.1)));
        assert!(a.3[0].0.iter().any(|&v| v != 0.0), "the test reaches the first layer's gradient");
    }
    use crate::overfit::fit::image_tensor;
    use crate::overfit::model::OverfitNet;
    use burn::prelude::*;

    /// Soft rounding's gradient through both paths (rate and synthesis) against central
    /// differences of the loss, with the same noise for every evaluation.
    #[test]
    fn soft_rounding_gradients_match_finite_differences() {
        let arch = Architecture { levels: 2, arm_hidden: 4, synthesis_width: 4 };
        let (h, w) = (6usize, 7usize);
        let img = crate::synthetic::scene(w as u32, h as u32);
        let mut params = OverfitNet::new(&arch, h, w, 2, &Device::flex()).to_params();
        let mut rng = StdRng::seed_from_u64(9);
        for l in &mut params.latents {
            l.iter_mut().for_each(|v| *v = rng.gen_range(-2.0f32..2.0));
        }
        let problem = Problem::new(arch, h, w, crate::nn::to_host(image_tensor(&img, &Device::flex())));
        let (lambda, q) = (0.05, Quantization::SoftRound { temperature: 0.3 });
        let loss = |p: &Params| {
            let (l, g) = problem.loss_and_grads(p, lambda, q, &mut noise_rng(4));
            (l.mse + lambda * l.bits / (h * w) as f64, g)
        };
        let (_, grads) = loss(&params);
        let eps = 1e-2f32;
        let mut checked = 0;
        for (level, i) in [(0, 3), (0, 20), (1, 2), (1, 5)] {
            let mut plus = params.clone();
            plus.latents[level][i] += eps;
            let mut minus = params.clone();
            minus.latents[level][i] -= eps;
            let numeric = (loss(&plus).0 - loss(&minus).0) / (2.0 * eps as f64);
            let analytic = grads.latents[level][i] as f64;
            assert!((numeric - analytic).abs() <= 0.05 * analytic.abs().max(numeric.abs()) + 1e-6, "latent {level}/{i}: {analytic} vs {numeric}");
            checked += (analytic.abs() > 1e-5) as usize;
        }
        assert!(checked >= 3, "the gradients checked are not all zero");
    }

    /// The hand-written pass against burn's autodiff on the same parameters: loss terms and
    /// every gradient (rounded latents, so both see the same ŷ).
    #[test]
    fn the_cpu_pass_matches_burns_autodiff() {
        // Narrow layers (remainder blocks) and the presets' widths (whole blocks of four).
        for arch in [Architecture { levels: 3, arm_hidden: 4, synthesis_width: 5 }, Architecture { levels: 3, arm_hidden: 16, synthesis_width: 16 }] {
            matches_burns_autodiff(arch);
        }
    }

    fn matches_burns_autodiff(arch: Architecture) {
        // 37 wide: two tiles of the networks, a remainder in every row pass.
        let (h, w) = (11usize, 37usize);
        let img = crate::synthetic::scene(w as u32, h as u32);
        let plain = Device::flex();
        let mut params = OverfitNet::new(&arch, h, w, 3, &plain).to_params();
        let mut rng = StdRng::seed_from_u64(5);
        for l in &mut params.latents {
            // Within ±1.5: farther out burn's f32 CDF loses the tails this pass keeps.
            l.iter_mut().for_each(|v| *v = rng.gen_range(-1.5f32..1.5));
        }
        let lambda = 0.01;
        let problem = Problem::new(arch, h, w, crate::nn::to_host(image_tensor(&img, &plain)));
        let (loss, grads) = problem.loss_and_grads(&params, lambda, Quantization::Round, &mut noise_rng(1));

        let ad = plain.clone().autodiff();
        let net = OverfitNet::from_params(&arch, &problem.sizes, &params, &ad);
        let out = net.forward(Quantization::Round);
        let mse = (out.x_hat - image_tensor(&img, &ad)).powi_scalar(2).mean();
        let bits = out.bits;
        let total = mse.clone() + bits.clone().div_scalar((h * w) as f64).mul_scalar(lambda);
        let reference = net.gradients(&total.backward());
        let (mse, bits) = (crate::nn::to_host(mse)[0] as f64, crate::nn::to_host(bits)[0] as f64);
        assert!((loss.mse - mse).abs() <= 1e-5 * mse, "mse {} vs {mse}", loss.mse);
        assert!((loss.bits - bits).abs() <= 1e-3 * bits, "bits {} vs {bits}", loss.bits);
        for (i, (a, b)) in grads.slices().into_iter().zip(reference.slices()).enumerate() {
            let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
            let worst = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(worst <= 2e-3 * scale, "parameter tensor {i}: differs by {worst} (largest gradient {scale})");
        }
    }
}
