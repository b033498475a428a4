//! An auxiliary linear transform beside g_a and g_s (AuxT: Li et al., "On Disentangled
//! Training for Nonlinear Transform in Learned Image Compression", ICLR 2025).
//!
//! ```text
//!  g_a:  x ─c1─GDN─(+)─c2─GDN─(+)─c3─GDN─(+)─c4─(+)─► y
//!                   ▲          ▲          ▲       ▲
//!  aux:  x ──WLS────┴──WLS─────┴──WLS─────┴──WLS──┘          WLS  = Haar DWT (C → 4C, /2),
//!                                                                   per-subband scale,
//!  g_s:  ŷ ─d1─IGDN─(+)─d2─IGDN─(+)─d3─IGDN─(+)─d4─(+)─► x̂          1x1 linear (4C → C')
//!                    ▲           ▲           ▲       ▲        iWLS = 1x1 linear (C → 4C'),
//!  aux:  ŷ ──iWLS────┴──iWLS─────┴──iWLS─────┴──iWLS─┘              scale⁻¹, inverse DWT (×2)
//! ```
//! The linear path does the energy compaction a wavelet transform does, so the nonlinear
//! stages only learn what a linear transform cannot; the paper reports 2–3x faster
//! convergence. Its 1x1 projections are pulled towards orthogonal matrices by
//! [`ortho_penalty`](AuxAnalysis::ortho_penalty), which the trainer adds to the loss.
//! The path stays in the model: encoder and decoder run it like every other layer.
//! [`AuxAnalysis::grafted`] starts it with zero projections, so adding it to trained
//! transforms (`--init-from` a model without it) keeps their function; at zero the penalty's
//! gradient is zero too, and the projections grow only as the rate-distortion loss asks.

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::module::{conv_transpose2d, conv2d};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};

use super::transforms::zero_conv;
use crate::nn::conv;

/// The four orthonormal 2x2 Haar filters (LL, LH, HL, HH), row-major.
const HAAR: [[f32; 4]; 4] = [[0.5, 0.5, 0.5, 0.5], [0.5, 0.5, -0.5, -0.5], [0.5, -0.5, 0.5, -0.5], [0.5, -0.5, -0.5, 0.5]];

/// Log-scales of the subbands at the start (the paper's: the three first subbands × e^0.5).
const START_LOG_SCALE: [f32; 4] = [0.5, 0.5, 0.5, 0.0];

/// Grouped-convolution weights [4C, 1, 2, 2]: channel c's subbands are outputs 4c..4c+4.
fn haar_weight(channels: usize, device: &Device) -> Tensor<4> {
    let w: Vec<f32> = (0..channels).flat_map(|_| HAAR.iter().flatten().copied()).collect();
    Tensor::from_data(TensorData::new(w, [4 * channels, 1, 2, 2]), device)
}

/// Haar DWT of every channel: (B, C, H, W) → (B, 4C, H/2, W/2). Orthonormal, so
/// [`inverse_dwt`] is its adjoint and its inverse.
pub fn dwt(x: Tensor<4>) -> Tensor<4> {
    let (c, device) = (x.dims()[1], x.device());
    conv2d(x, haar_weight(c, &device), None, ConvOptions::new([2, 2], [0, 0], [1, 1], c))
}

/// (B, 4C, H, W) → (B, C, 2H, 2W), the inverse of [`dwt`].
pub fn inverse_dwt(x: Tensor<4>) -> Tensor<4> {
    let (c, device) = (x.dims()[1] / 4, x.device());
    conv_transpose2d(x, haar_weight(c, &device), None, ConvTransposeOptions::new([2, 2], [0, 0], [0, 0], [1, 1], c))
}

fn start_log_scales(channels: usize, device: &Device) -> Param<Tensor<4>> {
    let s: Vec<f32> = (0..channels).flat_map(|_| START_LOG_SCALE).collect();
    Param::from_tensor(Tensor::from_data(TensorData::new(s, [1, 4 * channels, 1, 1]), device))
}

/// mean((G − I)²) with G the Gram matrix of the 1x1 projection's smaller side: zero exactly
/// when its rows (or columns) are orthonormal.
fn ortho_penalty(projection: &Conv2d) -> Tensor<1> {
    let [out, inp, _, _] = projection.weight.dims();
    let w = projection.weight.val().reshape([out, inp]);
    let gram = if inp > out { w.clone().matmul(w.transpose()) } else { w.clone().transpose().matmul(w) };
    let k = gram.dims()[0];
    let eye = Tensor::<2>::eye(k, &gram.device());
    (gram - eye).powi_scalar(2).mean()
}

/// `projection` with its weights and bias at zero (the same shape).
fn zeroed(projection: Conv2d, device: &Device) -> Conv2d {
    let [out, inp, _, _] = projection.weight.dims();
    zero_conv(inp, out, 1, device)
}

/// Each stage fed by the last, starting from `x`: every stage's output, in order.
fn chain<S>(stages: &[S], x: Tensor<4>, forward: impl Fn(&S, Tensor<4>) -> Tensor<4>) -> Vec<Tensor<4>> {
    stages
        .iter()
        .scan(x, |a, s| {
            *a = forward(s, a.clone());
            Some(a.clone())
        })
        .collect()
}

/// Σ of [`ortho_penalty`] over a path's projections.
fn path_penalty<'a>(projections: impl Iterator<Item = &'a Conv2d>) -> Tensor<1> {
    projections.map(ortho_penalty).reduce(|a, b| a + b).expect("four stages")
}

/// Wavelet linear shortcut: DWT, per-subband scale, 1x1 projection to `out` channels.
#[derive(Module, Debug)]
pub struct WaveletShortcut {
    log_scale: Param<Tensor<4>>,
    projection: Conv2d,
}

impl WaveletShortcut {
    fn new(inp: usize, out: usize, device: &Device) -> Self {
        Self { log_scale: start_log_scales(inp, device), projection: conv(4 * inp, out, 1, 1, device) }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.projection.forward(dwt(x) * self.log_scale.val().exp())
    }

    fn zeroed(self, device: &Device) -> Self {
        Self { projection: zeroed(self.projection, device), ..self }
    }
}

/// The mirror of [`WaveletShortcut`]: 1x1 projection to 4·`out`, scale⁻¹, inverse DWT.
#[derive(Module, Debug)]
pub struct InverseWaveletShortcut {
    log_scale: Param<Tensor<4>>,
    projection: Conv2d,
}

impl InverseWaveletShortcut {
    fn new(inp: usize, out: usize, device: &Device) -> Self {
        Self { log_scale: start_log_scales(out, device), projection: conv(inp, 4 * out, 1, 1, device) }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        inverse_dwt(self.projection.forward(x) * self.log_scale.val().neg().exp())
    }

    fn zeroed(self, device: &Device) -> Self {
        Self { projection: zeroed(self.projection, device), ..self }
    }
}

/// The linear path beside g_a: one shortcut per stride-2 stage, each fed by the last.
#[derive(Module, Debug)]
pub struct AuxAnalysis {
    stages: Vec<WaveletShortcut>,
}

impl AuxAnalysis {
    /// 3 → n → n → n → m channels, as g_a's stages.
    pub fn new(n: usize, m: usize, device: &Device) -> Self {
        Self { stages: [(3, n), (n, n), (n, n), (n, m)].into_iter().map(|(i, o)| WaveletShortcut::new(i, o, device)).collect() }
    }

    /// The same path with its projections at zero: it adds nothing until trained, so it can
    /// be grafted onto a trained g_a.
    pub fn grafted(n: usize, m: usize, device: &Device) -> Self {
        Self { stages: Self::new(n, m, device).stages.into_iter().map(|s| s.zeroed(device)).collect() }
    }

    /// The four stages' outputs (at /2, /4, /8 and /16) for input `x`.
    pub fn forward(&self, x: Tensor<4>) -> Vec<Tensor<4>> {
        chain(&self.stages, x, WaveletShortcut::forward)
    }

    /// Σ over the projections of their distance to orthogonality.
    pub fn ortho_penalty(&self) -> Tensor<1> {
        path_penalty(self.stages.iter().map(|s| &s.projection))
    }
}

/// The linear path beside g_s: one inverse shortcut per stride-2 stage.
#[derive(Module, Debug)]
pub struct AuxSynthesis {
    stages: Vec<InverseWaveletShortcut>,
}

impl AuxSynthesis {
    /// m → n → n → n → 3 channels, as g_s's stages.
    pub fn new(n: usize, m: usize, device: &Device) -> Self {
        Self { stages: [(m, n), (n, n), (n, n), (n, 3)].into_iter().map(|(i, o)| InverseWaveletShortcut::new(i, o, device)).collect() }
    }

    /// See [`AuxAnalysis::grafted`].
    pub fn grafted(n: usize, m: usize, device: &Device) -> Self {
        Self { stages: Self::new(n, m, device).stages.into_iter().map(|s| s.zeroed(device)).collect() }
    }

    /// The four stages' outputs (at ×2, ×4, ×8 and ×16 the latent's size) for latent `y`.
    pub fn forward(&self, y: Tensor<4>) -> Vec<Tensor<4>> {
        chain(&self.stages, y, InverseWaveletShortcut::forward)
    }

    pub fn ortho_penalty(&self) -> Tensor<1> {
        path_penalty(self.stages.iter().map(|s| &s.projection))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(t: Tensor<4>) -> Vec<f32> {
        crate::nn::to_host(t)
    }

    #[test]
    fn the_inverse_dwt_undoes_the_dwt_and_the_dwt_keeps_energy() {
        let device = Device::flex();
        let x = Tensor::<4>::random([2, 3, 8, 12], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        let d = dwt(x.clone());
        assert_eq!(d.dims(), [2, 12, 4, 6]);
        let energy = |v: &[f32]| v.iter().map(|a| (*a as f64).powi(2)).sum::<f64>();
        let (xv, dv) = (host(x.clone()), host(d.clone()));
        assert!((energy(&xv) - energy(&dv)).abs() < 1e-3 * energy(&xv));
        let back = host(inverse_dwt(d));
        let worst = xv.iter().zip(&back).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(worst < 1e-5, "round trip off by {worst}");
    }

    #[test]
    fn a_grafted_path_keeps_the_transforms_function() {
        use crate::models::transforms::{Analysis, Synthesis, Transforms};
        let device = Device::flex();
        let (n, m) = (8, 12);
        let x = Tensor::<4>::random([1, 3, 32, 48], burn::tensor::Distribution::Default, &device);
        let y = Tensor::<4>::random([1, m, 2, 3], burn::tensor::Distribution::Normal(0.0, 2.0), &device);
        let g_a = Analysis::new(n, m, Transforms::GdnResidual, &device);
        let g_s = Synthesis::new(n, m, Transforms::GdnResidual, &device);
        let (before_a, before_s) = (host(g_a.forward(x.clone())), host(g_s.forward(y.clone())));
        let (g_a, g_s) = (g_a.with_auxiliary_path(&device), g_s.with_auxiliary_path(&device));
        assert!(g_a.auxiliary_path().is_some() && g_s.auxiliary_path().is_some());
        assert_eq!(host(g_a.forward(x.clone())), before_a);
        assert_eq!(host(g_s.forward(y)), before_s);
        // A fresh (random) path changes it.
        assert_ne!(host(Analysis::new(n, m, Transforms::GdnResidualAuxT, &device).forward(x)), before_a);
    }

    #[test]
    fn the_dwt_of_a_constant_is_all_low_band() {
        let device = Device::flex();
        let d = host(dwt(Tensor::<4>::ones([1, 1, 4, 4], &device)));
        // LL = 2 (0.5 × four ones), the detail bands 0.
        assert!(d[..4].iter().all(|v| (v - 2.0).abs() < 1e-6));
        assert!(d[4..].iter().all(|v| v.abs() < 1e-6));
    }

    #[test]
    fn the_paths_match_the_transform_shapes_and_the_penalty_sees_orthogonality() {
        let device = Device::flex();
        let (n, m) = (8, 12);
        let x = Tensor::<4>::zeros([1, 3, 32, 48], &device);
        let a = AuxAnalysis::new(n, m, &device);
        let dims: Vec<[usize; 4]> = a.forward(x).iter().map(|t| t.dims()).collect();
        assert_eq!(dims, vec![[1, n, 16, 24], [1, n, 8, 12], [1, n, 4, 6], [1, m, 2, 3]]);
        let s = AuxSynthesis::new(n, m, &device);
        let dims: Vec<[usize; 4]> = s.forward(Tensor::<4>::zeros([1, m, 2, 3], &device)).iter().map(|t| t.dims()).collect();
        assert_eq!(dims, vec![[1, n, 4, 6], [1, n, 8, 12], [1, n, 16, 24], [1, 3, 32, 48]]);
        // A random start is far from orthogonal; an identity-like projection is exactly so.
        assert!(crate::nn::to_host(a.ortho_penalty())[0] > 1e-3);
        let mut p = conv(4, 4, 1, 1, &device);
        p.weight = Param::from_tensor(Tensor::<2>::eye(4, &device).reshape([4, 4, 1, 1]));
        assert!(crate::nn::to_host(ortho_penalty(&p))[0] < 1e-12);
    }
}
