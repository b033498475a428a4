//! Building blocks shared by every learned transform: padded convolutions and GDN.

pub mod attention;
pub mod fixed;
mod gdn;
pub mod ms_ssim;

pub use gdn::Gdn;

use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::prelude::*;

/// Tensor → host `f32` values (row-major).
pub fn to_host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.try_into_vec_as::<f32>().expect("f32 tensor data")
}

/// Host `f32` values (row-major) → a tensor of `shape` on `device`.
pub fn from_host<const D: usize>(v: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(v, shape), device)
}

/// round(x) in the forward pass, identity in the backward pass.
pub fn ste_round(x: Tensor<4>) -> Tensor<4> {
    let r = (x.clone().round() - x.clone()).detach();
    x + r
}

/// `k`x`k` convolution with "same" padding and the given stride (output = input / stride).
pub fn conv(cin: usize, cout: usize, k: usize, stride: usize, device: &Device) -> Conv2d {
    let p = k / 2;
    Conv2dConfig::new([cin, cout], [k, k]).with_stride([stride, stride]).with_padding(PaddingConfig2d::Explicit(p, p, p, p)).init(device)
}

/// `k`x`k` transposed convolution that exactly inverts the geometry of [`conv`]
/// (output = input * stride).
pub fn deconv(cin: usize, cout: usize, k: usize, stride: usize, device: &Device) -> ConvTranspose2d {
    let p = k / 2;
    ConvTranspose2dConfig::new([cin, cout], [k, k]).with_stride([stride, stride]).with_padding([p, p]).with_padding_out([stride - 1, stride - 1]).init(device)
}
