//! Fixed-point convolutions for everything that decides a probability table.
//!
//! Encoder and decoder must derive bit-identical entropy parameters, and a float network does
//! not: GPUs, CPU SIMD widths and summation orders all round differently. These layers compute
//! with integers only (Ballé et al. 2019, "Integer networks for data compression"), so every
//! machine and backend gets the same answer:
//!
//! ```text
//!  activations  i32, Q[FRAC_BITS]            (value = a / 2^FRAC_BITS)
//!  weights      i32 in ±32767, Q[shift_o]     (per output channel, power-of-two scale)
//!  accumulate   i64: Σ a·w + bias             (|a|<2^31, |w|<2^15, ≤2^16 terms: no overflow)
//!  requantize   (acc + 2^(shift_o−1)) >> shift_o, saturate to i32, then ReLU / leaky ReLU
//! ```
//! The float weights are converted exactly once, with IEEE operations that give the same
//! result everywhere (multiplication by powers of two and round-to-nearest).

use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, ConvTranspose2d};
use rayon::prelude::*;

use crate::nn::to_host;

/// Fractional bits of every fixed-point activation.
pub const FRAC_BITS: u32 = 12;
const ONE: f32 = (1u32 << FRAC_BITS) as f32;
/// Largest weight magnitude after quantization (16-bit weights).
const WEIGHT_MAX: f32 = 32767.0;
/// Leaky-ReLU slope 0.01 in Q16 (655/65536 = 0.009995).
const LEAKY_SLOPE_Q16: i64 = 655;
/// Weights are never scaled by more than 2^MAX_SHIFT, so biases stay far inside i64.
const MAX_SHIFT: u32 = 30;
/// More input taps than this could overflow the i64 accumulator; no ncodec layer is close.
const MAX_TAPS: usize = 1 << 16;

/// Float → fixed point, round half away from zero, saturating (NaN → 0).
pub fn to_fixed(v: f32) -> i32 {
    let r = (v * ONE).round();
    if r.is_nan() { 0 } else { r.clamp(-(i32::MAX as f32), i32::MAX as f32) as i32 }
}

/// Fixed point → float (exact for |a| < 2^24·2^-FRAC_BITS, and deterministic everywhere).
pub fn to_float(a: i32) -> f32 {
    a as f32 / ONE
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    None,
    Relu,
    /// Slope 0.01 on the negative side.
    LeakyRelu,
}

/// One fixed-point convolution (regular or transposed), weights in `[out][in][k][k]` order.
#[derive(Debug, Clone)]
pub struct FixedConv {
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    pad: usize,
    /// Extra rows/columns at the end of a transposed convolution's output.
    pad_out: usize,
    transposed: bool,
    weights: Vec<i32>,
    bias: Vec<i64>,
    shift: Vec<u32>,
    act: Activation,
}

impl FixedConv {
    /// From a trained square convolution with symmetric explicit padding.
    pub fn from_conv(c: &Conv2d, act: Activation) -> Self {
        let [cout, cin, k, k2] = c.weight.dims();
        assert!(k == k2 && c.groups == 1 && c.dilation == [1, 1] && c.stride[0] == c.stride[1], "square plain convolutions only");
        let pad = match c.padding {
            PaddingConfig2d::Explicit(t, l, b, r) if t == l && l == b && b == r => t,
            PaddingConfig2d::Valid => 0,
            ref p => panic!("unsupported padding {p:?}"),
        };
        let w = to_host(c.weight.val());
        let bias = c.bias.as_ref().map(|b| to_host(b.val()));
        Self::quantize(cin, cout, k, c.stride[0], pad, 0, false, &w, bias.as_deref(), act)
    }

    /// From a trained square transposed convolution.
    pub fn from_deconv(d: &ConvTranspose2d, act: Activation) -> Self {
        let [cin, cout, k, k2] = d.weight.dims();
        assert!(k == k2 && d.groups == 1 && d.dilation == [1, 1] && d.stride[0] == d.stride[1], "square plain convolutions only");
        assert!(d.padding[0] == d.padding[1] && d.padding_out[0] == d.padding_out[1]);
        // burn stores [in][out][k][k]; reorder to [out][in][k][k].
        let src = to_host(d.weight.val());
        let mut w = vec![0f32; src.len()];
        for i in 0..cin {
            for o in 0..cout {
                let (s, t) = ((i * cout + o) * k * k, (o * cin + i) * k * k);
                w[t..t + k * k].copy_from_slice(&src[s..s + k * k]);
            }
        }
        let bias = d.bias.as_ref().map(|b| to_host(b.val()));
        Self::quantize(cin, cout, k, d.stride[0], d.padding[0], d.padding_out[0], true, &w, bias.as_deref(), act)
    }

    #[allow(clippy::too_many_arguments)]
    fn quantize(cin: usize, cout: usize, k: usize, stride: usize, pad: usize, pad_out: usize, transposed: bool, w: &[f32], bias: Option<&[f32]>, act: Activation) -> Self {
        assert!(cin * k * k <= MAX_TAPS, "layer too wide for the i64 accumulator");
        let taps = cin * k * k;
        let mut weights = Vec::with_capacity(w.len());
        let mut shifts = Vec::with_capacity(cout);
        let mut biases = Vec::with_capacity(cout);
        for o in 0..cout {
            let row = &w[o * taps..(o + 1) * taps];
            let max = row.iter().fold(0f32, |m, v| if v.abs() > m { v.abs() } else { m });
            // Largest power-of-two scale that keeps every weight of this channel within 16 bits.
            let mut shift = 0;
            while shift < MAX_SHIFT && max * (1u64 << (shift + 1)) as f32 <= WEIGHT_MAX {
                shift += 1;
            }
            let scale = (1u64 << shift) as f32;
            weights.extend(row.iter().map(|v| (v * scale).round().clamp(-WEIGHT_MAX, WEIGHT_MAX) as i32));
            let b = bias.map_or(0.0, |b| b[o]) as f64;
            let bq = (b * (1u64 << (shift + FRAC_BITS)) as f64).round();
            let limit = (1u64 << 62) as f64;
            biases.push(bq.clamp(-limit, limit) as i64);
            shifts.push(shift);
        }
        Self { cin, cout, k, stride, pad, pad_out, transposed, weights, bias: biases, shift: shifts, act }
    }

    /// Output (height, width) for an input of (h, w).
    pub fn output_size(&self, h: usize, w: usize) -> (usize, usize) {
        let (k, s, p) = (self.k, self.stride, self.pad);
        let f = |n: usize| if self.transposed { ((n - 1) * s + k + self.pad_out).saturating_sub(2 * p) } else { (n + 2 * p).saturating_sub(k) / s + 1 };
        (f(h), f(w))
    }

    /// `x`: `[cin][h][w]` fixed-point activations. Returns `[cout][oh][ow]` and (oh, ow).
    pub fn forward(&self, x: &[i32], h: usize, w: usize) -> (Vec<i32>, usize, usize) {
        assert_eq!(x.len(), self.cin * h * w, "input does not match the layer");
        let (oh, ow) = self.output_size(h, w);
        let mut out = vec![0i32; self.cout * oh * ow];
        // Stride-1 convolutions read a zero-padded copy of the input, so that every tap is one
        // long contiguous multiply-accumulate over the whole plane.
        let padded = (!self.transposed && self.stride == 1).then(|| Padded::new(x, self.cin, h, w, self.pad, self.k));
        out.par_chunks_mut(oh * ow).enumerate().for_each(|(o, plane)| {
            let acc = match &padded {
                Some(p) => self.conv_channel_flat(o, p, oh, ow),
                None if self.transposed => self.deconv_channel(o, x, h, w, oh, ow),
                None => self.conv_channel(o, x, h, w, oh, ow),
            };
            for (dst, a) in plane.iter_mut().zip(acc) {
                *dst = self.finish(o, a);
            }
        });
        (out, oh, ow)
    }

    /// Stride-1 convolution on the padded input: accumulators laid out with the padded row
    /// pitch (the extra columns are computed and dropped).
    fn conv_channel_flat(&self, o: usize, p: &Padded, oh: usize, ow: usize) -> Vec<i64> {
        let k = self.k;
        let len = oh * p.pitch;
        let mut acc = vec![self.bias[o]; len];
        let taps = &self.weights[o * self.cin * k * k..(o + 1) * self.cin * k * k];
        for i in 0..self.cin {
            let plane = p.plane(i);
            for ky in 0..k {
                for kx in 0..k {
                    let wt = taps[(i * k + ky) * k + kx] as i64;
                    if wt != 0 {
                        let off = ky * p.pitch + kx;
                        mac(&mut acc, &plane[off..off + len], wt);
                    }
                }
            }
        }
        (0..oh).flat_map(|y| acc[y * p.pitch..y * p.pitch + ow].to_vec()).collect()
    }

    /// Requantize one accumulator to Q[FRAC_BITS] and apply the activation.
    fn finish(&self, o: usize, acc: i64) -> i32 {
        let s = self.shift[o];
        let v = if s == 0 { acc } else { (acc + (1i64 << (s - 1))) >> s };
        let v = v.clamp(-(i32::MAX as i64), i32::MAX as i64);
        let v = match self.act {
            Activation::None => v,
            Activation::Relu => v.max(0),
            Activation::LeakyRelu if v < 0 => (v * LEAKY_SLOPE_Q16 + (1 << 15)) >> 16,
            Activation::LeakyRelu => v,
        };
        v as i32
    }

    fn conv_channel(&self, o: usize, x: &[i32], h: usize, w: usize, oh: usize, ow: usize) -> Vec<i64> {
        let (k, s, p) = (self.k, self.stride, self.pad as isize);
        let mut acc = vec![self.bias[o]; oh * ow];
        let taps = &self.weights[o * self.cin * k * k..(o + 1) * self.cin * k * k];
        for i in 0..self.cin {
            let plane = &x[i * h * w..(i + 1) * h * w];
            for ky in 0..k {
                for kx in 0..k {
                    let wt = taps[(i * k + ky) * k + kx] as i64;
                    if wt == 0 {
                        continue;
                    }
                    // Output columns whose input column ox·s + kx − p lies inside the image.
                    let (x0, x1) = valid_range(ow, s, kx as isize - p, w);
                    for oy in 0..oh {
                        let iy = (oy * s) as isize + ky as isize - p;
                        if iy < 0 || iy >= h as isize || x0 >= x1 {
                            continue;
                        }
                        let row = &plane[iy as usize * w..(iy as usize + 1) * w];
                        let dst = &mut acc[oy * ow..(oy + 1) * ow];
                        if s == 1 {
                            let off = (x0 as isize + kx as isize - p) as usize;
                            mac(&mut dst[x0..x1], &row[off..off + (x1 - x0)], wt);
                        } else {
                            for ox in x0..x1 {
                                dst[ox] += wt * row[(ox * s + kx) - p as usize] as i64;
                            }
                        }
                    }
                }
            }
        }
        acc
    }

    /// Transposed convolution, split by output phase (oy mod s, ox mod s) so that every inner
    /// loop is a contiguous multiply-accumulate.
    fn deconv_channel(&self, o: usize, x: &[i32], h: usize, w: usize, oh: usize, ow: usize) -> Vec<i64> {
        let (k, s, p) = (self.k, self.stride, self.pad as isize);
        let taps = &self.weights[o * self.cin * k * k..(o + 1) * self.cin * k * k];
        // Phase (ry, rx) holds outputs oy = s·Y + ry; its size is ceil((oh − ry) / s).
        let phase_len = |n: usize, r: usize| (n.saturating_sub(r)).div_ceil(s);
        let mut phases: Vec<Vec<i64>> = (0..s * s).map(|r| vec![0i64; phase_len(oh, r / s) * phase_len(ow, r % s)]).collect();
        for i in 0..self.cin {
            let plane = &x[i * h * w..(i + 1) * h * w];
            for ky in 0..k {
                // oy = iy·s + ky − p = s·Y + ry  ⇒  Y = iy + dy.
                let ry = (ky as isize - p).rem_euclid(s as isize);
                let dy = (ky as isize - p - ry) / s as isize;
                let ph = phase_len(oh, ry as usize);
                for kx in 0..k {
                    let wt = taps[(i * k + ky) * k + kx] as i64;
                    if wt == 0 {
                        continue;
                    }
                    let rx = (kx as isize - p).rem_euclid(s as isize);
                    let dx = (kx as isize - p - rx) / s as isize;
                    let pw = phase_len(ow, rx as usize);
                    let acc = &mut phases[ry as usize * s + rx as usize];
                    let (x0, x1) = (dx.max(0) as usize, (w as isize + dx).clamp(0, pw as isize) as usize);
                    if x0 >= x1 {
                        continue;
                    }
                    for iy in 0..h {
                        let yy = iy as isize + dy;
                        if yy < 0 || yy >= ph as isize {
                            continue;
                        }
                        let src = &plane[iy * w + (x0 as isize - dx) as usize..iy * w + (x1 as isize - dx) as usize];
                        mac(&mut acc[yy as usize * pw + x0..yy as usize * pw + x1], src, wt);
                    }
                }
            }
        }
        let mut out = vec![self.bias[o]; oh * ow];
        for (r, acc) in phases.iter().enumerate() {
            let (ry, rx) = (r / s, r % s);
            let pw = phase_len(ow, rx);
            for (yy, row) in acc.chunks(pw.max(1)).enumerate().take(phase_len(oh, ry)) {
                for (xx, v) in row.iter().enumerate() {
                    out[(yy * s + ry) * ow + xx * s + rx] += v;
                }
            }
        }
        out
    }
}

/// Output columns `ox` in `[x0, x1)` with `0 <= ox·s + off < w`.
fn valid_range(ow: usize, s: usize, off: isize, w: usize) -> (usize, usize) {
    let x0 = if off >= 0 { 0 } else { ((-off) as usize).div_ceil(s) };
    let last = w as isize - 1 - off; // ox·s <= last
    let x1 = if last < 0 { 0 } else { (last as usize / s + 1).min(ow) };
    (x0.min(x1), x1)
}

/// Input planes with `pad` zeros on every side and slack at the end for the last taps.
struct Padded {
    data: Vec<i32>,
    pitch: usize,
    plane_len: usize,
}

impl Padded {
    fn new(x: &[i32], c: usize, h: usize, w: usize, pad: usize, k: usize) -> Self {
        let pitch = w + 2 * pad;
        let plane_len = (h + 2 * pad) * pitch + k;
        let mut data = vec![0i32; c * plane_len];
        for (i, plane) in data.chunks_mut(plane_len).enumerate() {
            for y in 0..h {
                let dst = (y + pad) * pitch + pad;
                plane[dst..dst + w].copy_from_slice(&x[(i * h + y) * w..(i * h + y + 1) * w]);
            }
        }
        Self { data, pitch, plane_len }
    }

    fn plane(&self, i: usize) -> &[i32] {
        &self.data[i * self.plane_len..(i + 1) * self.plane_len]
    }
}

/// `dst[j] += w · src[j]`. Integer results are the same whichever instructions compute them,
/// so the AVX2 build (4 signed 32×32→64 products per instruction) is picked at run time.
#[inline]
fn mac(dst: &mut [i64], src: &[i32], w: i64) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked above).
        return unsafe { mac_avx2(dst, src, w) };
    }
    mac_portable(dst, src, w)
}

#[inline(always)]
fn mac_portable(dst: &mut [i64], src: &[i32], w: i64) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d += w * s as i64;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn mac_avx2(dst: &mut [i64], src: &[i32], w: i64) {
    mac_portable(dst, src, w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{conv, deconv};
    use burn::prelude::*;

    fn compare(float: Tensor<4>, fixed: &[i32], tol: f32) {
        let f = to_host(float);
        assert_eq!(f.len(), fixed.len());
        let worst = f.iter().zip(fixed).map(|(a, &b)| (a - to_float(b)).abs()).fold(0f32, f32::max);
        assert!(worst < tol, "fixed-point result off by {worst}");
    }

    fn input(c: usize, h: usize, w: usize, device: &Device) -> (Tensor<4>, Vec<i32>) {
        let v: Vec<f32> = (0..c * h * w).map(|i| ((i * 7919 % 1000) as f32 / 100.0 - 5.0).round()).collect();
        let q = v.iter().map(|&x| to_fixed(x)).collect();
        (Tensor::from_data(TensorData::new(v, [1, c, h, w]), device), q)
    }

    #[test]
    fn conv_matches_float() {
        let device = crate::backend::device();
        for (k, s, h, w) in [(3, 1, 5, 7), (5, 1, 4, 9), (5, 2, 8, 6), (5, 2, 7, 9), (1, 1, 3, 3), (3, 1, 1, 1)] {
            let layer = conv(6, 4, k, s, &device);
            let (x, xq) = input(6, h, w, &device);
            let f = FixedConv::from_conv(&layer, Activation::None);
            let (y, oh, ow) = f.forward(&xq, h, w);
            let yf = layer.forward(x);
            assert_eq!(yf.dims(), [1, 4, oh, ow]);
            compare(yf, &y, 2e-3);
        }
    }

    #[test]
    fn deconv_matches_float() {
        let device = crate::backend::device();
        for (k, s, h, w) in [(5, 2, 3, 4), (5, 2, 1, 1), (3, 2, 4, 5)] {
            let layer = deconv(5, 3, k, s, &device);
            let (x, xq) = input(5, h, w, &device);
            let f = FixedConv::from_deconv(&layer, Activation::None);
            let (y, oh, ow) = f.forward(&xq, h, w);
            let yf = layer.forward(x);
            assert_eq!(yf.dims(), [1, 3, oh, ow]);
            compare(yf, &y, 2e-3);
        }
    }

    /// The run-time-dispatched multiply-accumulate (AVX2 where present) equals the portable one,
    /// extremes included: what makes decoding independent of the CPU's instruction set.
    #[test]
    fn dispatched_mac_equals_portable() {
        let src: Vec<i32> = (0..1003)
            .map(|i: i64| match i % 5 {
                0 => i32::MAX,
                1 => -i32::MAX,
                _ => ((i * 2654435761) % 200_001 - 100_000) as i32,
            })
            .collect();
        for w in [32767i64, -32767, 1, 0, -12345] {
            let (mut a, mut b) = (vec![7i64; src.len()], vec![7i64; src.len()]);
            mac(&mut a, &src, w);
            mac_portable(&mut b, &src, w);
            assert_eq!(a, b);
            assert_eq!(a[0], 7 + w * i32::MAX as i64);
        }
    }

    #[test]
    fn activations_round_as_documented() {
        let device = crate::backend::device();
        let mut f = FixedConv::from_conv(&conv(1, 1, 1, 1, &device), Activation::LeakyRelu);
        f.shift = vec![0];
        assert_eq!(f.finish(0, 1000), 1000);
        assert_eq!(f.finish(0, -100_000), -999); // −100000·655/65536 = −999.48 → −999
        f.act = Activation::Relu;
        assert_eq!(f.finish(0, -5), 0);
        assert_eq!(f.finish(0, i64::MAX), i32::MAX);
        assert_eq!(to_fixed(f32::NAN), 0);
        assert_eq!(to_fixed(1e30), i32::MAX);
    }
}
