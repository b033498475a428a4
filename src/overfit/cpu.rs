//! Fitting on the CPU without a tensor library: the whole network's forward and backward pass
//! written out for these tiny layers, one pixel (or latent) at a time, rows in parallel.
//! A general backend runs every layer as a separate pass over full-resolution tensors (and
//! stores each activation for its backward); here a pixel's few dozen activations stay in
//! registers, which is where the time goes for networks this small.
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

use super::arm::CONTEXT;
use super::model::{ARM_LAYERS, Architecture, Params, Quantization};
use super::prior::{SCALE_MAX, SCALE_MIN};

/// Bilinear taps (PyTorch's `align_corners = false`) from `inp` samples to `out`.
#[derive(Debug, Clone)]
struct Taps {
    i0: Vec<usize>,
    i1: Vec<usize>,
    w1: Vec<f32>,
}

impl Taps {
    fn new(inp: usize, out: usize) -> Self {
        let scale = inp as f32 / out as f32;
        let (mut i0, mut i1, mut w1) = (vec![], vec![], vec![]);
        for d in 0..out {
            let src = (scale * (d as f32 + 0.5) - 0.5).max(0.0);
            let a = (src.floor() as usize).min(inp - 1);
            i0.push(a);
            i1.push((a + 1).min(inp - 1));
            w1.push(src - a as f32);
        }
        Self { i0, i1, w1 }
    }
}

/// `acc += x·a`, elementwise (the form that vectorizes).
#[inline(always)]
fn axpy(acc: &mut [f32], x: &[f32], a: f32) {
    for (p, q) in acc.iter_mut().zip(x) {
        *p += q * a;
    }
}

/// One layer's forward: `out = bias + Σ_i x[i]·wt[i]` (`wt` transposed: a row of outputs per
/// input), then ReLU if asked. Zero inputs (after a ReLU, outside a level) are skipped.
#[inline(always)]
fn dense(out: &mut [f32], bias: &[f32], wt: &[f32], x: &[f32], relu: bool) {
    out.copy_from_slice(bias);
    let n = out.len();
    for (i, &xi) in x.iter().enumerate() {
        if xi != 0.0 {
            axpy(out, &wt[i * n..(i + 1) * n], xi);
        }
    }
    if relu {
        out.iter_mut().for_each(|v| *v = v.max(0.0));
    }
}

/// `[rows][cols]` → `[cols][rows]`.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols).flat_map(|c| (0..rows).map(move |r| m[r * cols + c])).collect()
}

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
}

// Single precision is plenty for a training signal; erfc keeps the tails' relative accuracy.
fn std_cdf(x: f64) -> f64 {
    0.5 * libm::erfcf((-x / std::f64::consts::SQRT_2) as f32) as f64
}

fn std_pdf(x: f64) -> f64 {
    ((-0.5 * x * x) as f32).exp() as f64 * 0.398_942_3
}

impl Problem {
    pub fn new(arch: Architecture, height: usize, width: usize, target: Vec<f32>) -> Self {
        let sizes = arch.level_sizes(height, width);
        let taps = sizes.iter().map(|&[h, w]| (Taps::new(h, height), Taps::new(w, width))).collect();
        Self { arch, height, width, sizes, target, taps }
    }

    /// Loss terms and the gradient of `mse + λ·bits/pixels` for latents quantized as `q`
    /// (`noise` draws the uniform noise of [`Quantization::Noise`]).
    pub fn loss_and_grads(&self, p: &Params, lambda: f64, q: Quantization, noise: &mut StdRng) -> (StepLoss, Params) {
        let y_hat: Vec<Vec<f32>> = p
            .latents
            .iter()
            .map(|l| match q {
                Quantization::Noise => l.iter().map(|&v| v + noise.gen_range(-0.5f32..0.5)).collect(),
                Quantization::Round => l.iter().map(|&v| v.round()).collect(),
            })
            .collect();
        let mut grads = p.zeros_like();
        let pixels = (self.height * self.width) as f64;
        let (mse, dy_syn) = self.synthesis(p, &y_hat, &mut grads);
        let mut bits = 0.0;
        for (l, y) in y_hat.iter().enumerate() {
            let (b, dy) = self.rate(p, y, self.sizes[l], (lambda / pixels) as f32, &mut grads);
            bits += b;
            grads.latents[l].iter_mut().zip(&dy).for_each(|(g, d)| *g += d);
        }
        for (g, d) in grads.latents.iter_mut().zip(&dy_syn) {
            g.iter_mut().zip(d).for_each(|(a, b)| *a += b);
        }
        (StepLoss { mse, bits }, grads)
    }

    /// Synthesis forward and backward: the MSE, weight gradients into `grads`, and the
    /// gradient of the MSE with respect to every level's ŷ.
    fn synthesis(&self, p: &Params, y_hat: &[Vec<f32>], grads: &mut Params) -> (f64, Vec<Vec<f32>>) {
        let (h, w, levels) = (self.height, self.width, self.sizes.len());
        let s = self.arch.synthesis_width;
        let [(w1, b1), (w2, b2), (w3, b3), (wr, br)] = [&p.layers[ARM_LAYERS], &p.layers[ARM_LAYERS + 1], &p.layers[ARM_LAYERS + 2], &p.layers[ARM_LAYERS + 3]];
        // Transposed weights: each layer runs as axpys over its outputs, which vectorize.
        let (w1t, w2t, w3t) = (transpose(w1, s, levels), transpose(w2, s, s), transpose(w3, 3, s));
        let upsample_at = |r: usize, c: usize, u: &mut [f32]| {
            for (l, (ty, tx)) in self.taps.iter().enumerate() {
                let lw = self.sizes[l][1];
                let y = &y_hat[l];
                let (a0, a1, fy) = (ty.i0[r] * lw, ty.i1[r] * lw, ty.w1[r]);
                let (c0, c1, fx) = (tx.i0[c], tx.i1[c], tx.w1[c]);
                let top = y[a0 + c0] * (1.0 - fx) + y[a0 + c1] * fx;
                let bottom = y[a1 + c0] * (1.0 - fx) + y[a1 + c1] * fx;
                u[l] = top * (1.0 - fy) + bottom * fy;
            }
        };
        let mlp = |u: &[f32], h1: &mut [f32], h2: &mut [f32], o: &mut [f32; 3]| {
            dense(h1, b1, &w1t, u, true);
            dense(h2, b2, &w2t, h1, true);
            dense(o, b3, &w3t, h2, false);
        };
        // Forward: the MLP's output planes o, zero-padded by one for the 3x3 convolution.
        let (ph, pw) = (h + 2, w + 2);
        let mut o = vec![0f32; 3 * ph * pw];
        {
            let rows: Vec<Vec<[f32; 3]>> = (0..h)
                .into_par_iter()
                .map(|r| {
                    let (mut u, mut h1, mut h2, mut out) = (vec![0f32; levels], vec![0f32; s], vec![0f32; s], [0f32; 3]);
                    (0..w)
                        .map(|x| {
                            upsample_at(r, x, &mut u);
                            mlp(&u, &mut h1, &mut h2, &mut out);
                            out
                        })
                        .collect()
                })
                .collect();
            for (r, row) in rows.iter().enumerate() {
                for (x, v) in row.iter().enumerate() {
                    for k in 0..3 {
                        o[k * ph * pw + (r + 1) * pw + x + 1] = v[k];
                    }
                }
            }
        }
        // x̃ = o + conv3x3(o) + bias; the loss and d = ∂MSE/∂x̃ (zero-padded too).
        let n = (3 * h * w) as f64;
        let mut d = vec![0f32; 3 * ph * pw];
        let sse: f64 = d
            .par_chunks_mut(pw)
            .enumerate()
            .map(|(row, dr)| {
                let (k, pr) = (row / ph, row % ph);
                if pr == 0 || pr == ph - 1 {
                    return 0.0;
                }
                let r = pr - 1;
                let mut sse = 0.0f64;
                for x in 0..w {
                    let mut v = o[k * ph * pw + pr * pw + x + 1] + br[k];
                    for ic in 0..3 {
                        for ky in 0..3 {
                            let src = &o[ic * ph * pw + (r + ky) * pw + x..][..3];
                            let wk = &wr[((k * 3 + ic) * 3 + ky) * 3..][..3];
                            v += wk[0] * src[0] + wk[1] * src[1] + wk[2] * src[2];
                        }
                    }
                    let e = v - self.target[k * h * w + r * w + x];
                    sse += (e as f64) * (e as f64);
                    dr[x + 1] = (2.0 * e as f64 / n) as f32;
                }
                sse
            })
            .sum();
        // Residual convolution's gradients (one pass), and ∂/∂o = d + conv3x3ᵀ(d).
        let gr = (0..h)
            .into_par_iter()
            .fold(
                || vec![0f32; 81],
                |mut g, r| {
                    for x in 0..w {
                        for k in 0..3 {
                            let dk = d[k * ph * pw + (r + 1) * pw + x + 1];
                            for ic in 0..3 {
                                for ky in 0..3 {
                                    let src = &o[ic * ph * pw + (r + ky) * pw + x..][..3];
                                    let gk = &mut g[((k * 3 + ic) * 3 + ky) * 3..][..3];
                                    gk[0] += dk * src[0];
                                    gk[1] += dk * src[1];
                                    gk[2] += dk * src[2];
                                }
                            }
                        }
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
        let (gwr, gbr) = &mut grads.layers[ARM_LAYERS + 3];
        gwr.iter_mut().zip(&gr).for_each(|(a, b)| *a += b);
        for k in 0..3 {
            gbr[k] += d[k * ph * pw..(k + 1) * ph * pw].iter().sum::<f32>();
        }
        let d_o: Vec<f32> = (0..3 * h)
            .into_par_iter()
            .flat_map_iter(|row| {
                let (ic, r) = (row / h, row % h);
                let (d, wr) = (&d, wr);
                (0..w).map(move |x| {
                    let mut v = d[ic * ph * pw + (r + 1) * pw + x + 1];
                    for k in 0..3 {
                        for ky in 0..3 {
                            // Output (r + 1 − ky, x + 1 − kx) reads o at (r, x) through tap (ky, kx).
                            let src = &d[k * ph * pw + (r + 2 - ky) * pw + x..][..3];
                            let wk = &wr[((k * 3 + ic) * 3 + ky) * 3..][..3];
                            v += wk[0] * src[2] + wk[1] * src[1] + wk[2] * src[0];
                        }
                    }
                    v
                })
            })
            .collect();
        // MLP backward per pixel (activations recomputed), rows in parallel; ∂/∂u kept per pixel.
        let mut du = vec![0f32; levels * h * w];
        let zero = || (vec![0f32; w1.len()], vec![0f32; s], vec![0f32; w2.len()], vec![0f32; s], vec![0f32; w3.len()], vec![0f32; 3]);
        let layer_grads = du
            .par_chunks_mut(levels * w)
            .enumerate()
            .fold(zero, |mut g, (r, du_row)| {
                let (mut u, mut h1, mut h2, mut out) = (vec![0f32; levels], vec![0f32; s], vec![0f32; s], [0f32; 3]);
                let (mut dh1, mut dh2) = (vec![0f32; s], vec![0f32; s]);
                for x in 0..w {
                    upsample_at(r, x, &mut u);
                    mlp(&u, &mut h1, &mut h2, &mut out);
                    let dout = [d_o[r * w + x], d_o[h * w + r * w + x], d_o[2 * h * w + r * w + x]];
                    dh2.iter_mut().for_each(|v| *v = 0.0);
                    for (k, &dk) in dout.iter().enumerate() {
                        g.5[k] += dk;
                        axpy(&mut g.4[k * s..(k + 1) * s], &h2, dk);
                        axpy(&mut dh2, &w3[k * s..(k + 1) * s], dk);
                    }
                    dh1.iter_mut().for_each(|v| *v = 0.0);
                    for j in 0..s {
                        if h2[j] <= 0.0 {
                            continue;
                        }
                        g.3[j] += dh2[j];
                        axpy(&mut g.2[j * s..(j + 1) * s], &h1, dh2[j]);
                        axpy(&mut dh1, &w2[j * s..(j + 1) * s], dh2[j]);
                    }
                    let mut du_x = [0f32; super::model::MAX_LEVELS];
                    for j in 0..s {
                        if h1[j] <= 0.0 {
                            continue;
                        }
                        g.1[j] += dh1[j];
                        axpy(&mut g.0[j * levels..(j + 1) * levels], &u, dh1[j]);
                        axpy(&mut du_x[..levels], &w1[j * levels..(j + 1) * levels], dh1[j]);
                    }
                    for i in 0..levels {
                        du_row[i * w + x] = du_x[i];
                    }
                }
                g
            })
            .reduce(zero, |mut a, b| {
                for (x, y) in [(&mut a.0, &b.0), (&mut a.1, &b.1), (&mut a.2, &b.2), (&mut a.3, &b.3), (&mut a.4, &b.4), (&mut a.5, &b.5)] {
                    x.iter_mut().zip(y).for_each(|(p, q)| *p += q);
                }
                a
            });
        for (i, (gw, gb)) in [(layer_grads.0, layer_grads.1), (layer_grads.2, layer_grads.3), (layer_grads.4, layer_grads.5)].into_iter().enumerate() {
            let (w, b) = &mut grads.layers[ARM_LAYERS + i];
            w.iter_mut().zip(&gw).for_each(|(p, q)| *p += q);
            b.iter_mut().zip(&gb).for_each(|(p, q)| *p += q);
        }
        // Upsampling's adjoint: each level's share of ∂/∂u back onto its latents.
        let dy: Vec<Vec<f32>> = (0..levels)
            .into_par_iter()
            .map(|l| {
                let (ty, tx) = &self.taps[l];
                let [lh, lw] = self.sizes[l];
                let mut rows = vec![0f32; h * lw];
                for r in 0..h {
                    for x in 0..w {
                        let g = du[r * levels * w + l * w + x];
                        rows[r * lw + tx.i0[x]] += g * (1.0 - tx.w1[x]);
                        rows[r * lw + tx.i1[x]] += g * tx.w1[x];
                    }
                }
                let mut out = vec![0f32; lh * lw];
                for r in 0..h {
                    for c in 0..lw {
                        out[ty.i0[r] * lw + c] += rows[r * lw + c] * (1.0 - ty.w1[r]);
                        out[ty.i1[r] * lw + c] += rows[r * lw + c] * ty.w1[r];
                    }
                }
                out
            })
            .collect();
        (sse / n, dy)
    }

    /// One level's rate under the ARM: bits, ARM gradients (scaled by `scale`) into `grads`,
    /// and the scaled gradient with respect to the level's ŷ.
    fn rate(&self, p: &Params, y: &[f32], [lh, lw]: [usize; 2], scale: f32, grads: &mut Params) -> (f64, Vec<f32>) {
        let a = self.arch.arm_hidden;
        let k = CONTEXT.len();
        let [(w1, b1), (w2, b2), (w3, b3)] = [&p.layers[0], &p.layers[1], &p.layers[2]];
        let (w1t, w2t) = (transpose(w1, a, k), transpose(w2, a, a));
        let ln2 = std::f64::consts::LN_2;
        let ctx_at = |r: usize, c: usize, ctx: &mut [f32]| {
            for (j, &(dy, dx)) in CONTEXT.iter().enumerate() {
                let (rr, cc) = (r as isize + dy, c as isize + dx);
                ctx[j] = if rr >= 0 && cc >= 0 && (cc as usize) < lw { y[rr as usize * lw + cc as usize] } else { 0.0 };
            }
        };
        // Per row: bits, the direct ∂/∂ŷ, ∂/∂context, and the ARM's weight gradients.
        let mut dy = vec![0f32; lh * lw];
        let mut dctx = vec![0f32; lh * lw * k];
        let zero = || (0.0f64, vec![0f32; w1.len()], vec![0f32; a], vec![0f32; w2.len()], vec![0f32; a], vec![0f32; w3.len()], vec![0f32; 2]);
        let acc = dy
            .par_chunks_mut(lw)
            .zip(dctx.par_chunks_mut(lw * k))
            .enumerate()
            .fold(zero, |mut g, (r, (dy_row, dctx_row))| {
                let (mut ctx, mut h1, mut h2) = (vec![0f32; k], vec![0f32; a], vec![0f32; a]);
                let (mut dh1, mut dh2) = (vec![0f32; a], vec![0f32; a]);
                for c in 0..lw {
                    ctx_at(r, c, &mut ctx);
                    dense(&mut h1, b1, &w1t, &ctx, true);
                    dense(&mut h2, b2, &w2t, &h1, true);
                    let mu = b3[0] + w3[..a].iter().zip(&h2).map(|(x, y)| x * y).sum::<f32>();
                    let log_scale = b3[1] + w3[a..].iter().zip(&h2).map(|(x, y)| x * y).sum::<f32>();
                    let raw = (log_scale as f64).exp();
                    let sigma = raw.clamp(SCALE_MIN, SCALE_MAX);
                    let e = y[r * lw + c] as f64 - mu as f64;
                    let v = e.abs();
                    let (hi, lo) = ((0.5 - v) / sigma, (-0.5 - v) / sigma);
                    let p = std_cdf(hi) - std_cdf(lo);
                    let floored = p < 1e-9;
                    g.0 += -(p.max(1e-9)).log2();
                    if floored {
                        continue;
                    }
                    // ∂bits/∂v and ∂bits/∂σ through p = Φ(hi) − Φ(lo).
                    let db_dp = -1.0 / (p * ln2) * scale as f64;
                    let dv = db_dp * (std_pdf(lo) - std_pdf(hi)) / sigma;
                    let dsigma = db_dp * (lo * std_pdf(lo) - hi * std_pdf(hi)) / sigma;
                    let sign = if e > 0.0 {
                        1.0
                    } else if e < 0.0 {
                        -1.0
                    } else {
                        0.0
                    };
                    dy_row[c] += (dv * sign) as f32;
                    let dmu = (-dv * sign) as f32;
                    let dls = if raw > SCALE_MIN && raw < SCALE_MAX { (dsigma * raw) as f32 } else { 0.0 };
                    // ARM backward.
                    g.6[0] += dmu;
                    g.6[1] += dls;
                    for i in 0..a {
                        dh2[i] = if h2[i] > 0.0 { dmu * w3[i] + dls * w3[a + i] } else { 0.0 };
                    }
                    axpy(&mut g.5[..a], &h2, dmu);
                    axpy(&mut g.5[a..], &h2, dls);
                    dh1.iter_mut().for_each(|v| *v = 0.0);
                    for j in 0..a {
                        if dh2[j] == 0.0 {
                            continue;
                        }
                        g.4[j] += dh2[j];
                        axpy(&mut g.3[j * a..(j + 1) * a], &h1, dh2[j]);
                        axpy(&mut dh1, &w2[j * a..(j + 1) * a], dh2[j]);
                    }
                    let dc = &mut dctx_row[c * k..(c + 1) * k];
                    for j in 0..a {
                        if h1[j] <= 0.0 {
                            continue;
                        }
                        g.2[j] += dh1[j];
                        axpy(&mut g.1[j * k..(j + 1) * k], &ctx, dh1[j]);
                        axpy(dc, &w1[j * k..(j + 1) * k], dh1[j]);
                    }
                }
                g
            })
            .reduce(zero, |mut x, y| {
                x.0 += y.0;
                for (p, q) in [(&mut x.1, &y.1), (&mut x.2, &y.2), (&mut x.3, &y.3), (&mut x.4, &y.4), (&mut x.5, &y.5), (&mut x.6, &y.6)] {
                    p.iter_mut().zip(q).for_each(|(s, t)| *s += t);
                }
                x
            });
        for (i, (gw, gb)) in [(&acc.1, &acc.2), (&acc.3, &acc.4), (&acc.5, &acc.6)].into_iter().enumerate() {
            let (w, b) = &mut grads.layers[i];
            w.iter_mut().zip(gw).for_each(|(p, q)| *p += q);
            b.iter_mut().zip(gb).for_each(|(p, q)| *p += q);
        }
        // Gather: latent (r, c) is neighbour j of position (r − dy, c − dx).
        dy.par_chunks_mut(lw).enumerate().for_each(|(r, row)| {
            for (c, v) in row.iter_mut().enumerate() {
                for (j, &(oy, ox)) in CONTEXT.iter().enumerate() {
                    let (qr, qc) = (r as isize - oy, c as isize - ox);
                    if qr >= 0 && qc >= 0 && (qr as usize) < lh && (qc as usize) < lw {
                        *v += dctx[(qr as usize * lw + qc as usize) * k + j];
                    }
                }
            }
        });
        (acc.0, dy)
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

    pub fn step(&mut self, p: &mut Params, g: &Params, lr: f64) {
        self.t += 1;
        let (b1, b2) = (0.9f32, 0.999f32);
        let (c1, c2) = (1.0 - b1.powi(self.t), 1.0 - b2.powi(self.t));
        for (((x, g), m), v) in p.slices_mut().into_iter().zip(g.slices()).zip(self.m.slices_mut()).zip(self.v.slices_mut()) {
            for i in 0..x.len() {
                m[i] = b1 * m[i] + (1.0 - b1) * g[i];
                v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
                x[i] -= lr as f32 * (m[i] / c1) / ((v[i] / c2).sqrt() + 1e-8);
            }
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
    use crate::overfit::fit::image_tensor;
    use crate::overfit::model::OverfitNet;
    use burn::prelude::*;

    /// The hand-written pass against burn's autodiff on the same parameters: loss terms and
    /// every gradient (rounded latents, so both see the same ŷ).
    #[test]
    fn the_cpu_pass_matches_burns_autodiff() {
        let arch = Architecture { levels: 3, arm_hidden: 4, synthesis_width: 5 };
        let (h, w) = (11usize, 13usize);
        let img = crate::synthetic::scene(w as u32, h as u32);
        let plain = Device::flex();
        let mut params = OverfitNet::new(&arch, h, w, 3, &plain).to_params();
        let mut rng = StdRng::seed_from_u64(5);
        for l in &mut params.latents {
            // Within ±1.5: farther out burn's f32 Gaussian CDF loses the tails this pass keeps in f64.
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
