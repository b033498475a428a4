//! Generalized divisive normalization (Ballé et al. 2016).
//!
//! ```text
//!   GDN:  y_i = x_i / sqrt(beta_i + sum_j gamma_ij * x_j^2)
//!   IGDN: y_i = x_i * sqrt(beta_i + sum_j gamma_ij * x_j^2)
//! ```
//! `beta` and `gamma` must stay positive; they are stored as square roots (`b`, `g`) so any
//! parameter value is valid, with a small floor on `beta` so the denominator never vanishes.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;

const BETA_FLOOR: f32 = 1e-6;

#[derive(Module, Debug)]
pub struct Gdn {
    /// sqrt(beta - floor), one per channel.
    b: Param<Tensor<1>>,
    /// sqrt(gamma), [out, in].
    g: Param<Tensor<2>>,
    inverse: bool,
}

impl Gdn {
    pub fn new(channels: usize, inverse: bool, device: &Device) -> Self {
        let b = Tensor::ones([channels], device);
        // gamma = 0.1 I as in the paper; off-diagonal entries start small but non-zero so that
        // the squared parameterization still receives gradients there.
        let mut g = vec![0.01f32; channels * channels];
        for i in 0..channels {
            g[i * channels + i] = 0.1f32.sqrt();
        }
        let g = Tensor::from_data(TensorData::new(g, [channels, channels]), device);
        Self { b: Param::from_tensor(b), g: Param::from_tensor(g), inverse }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [c, _] = self.g.dims();
        let beta = self.b.val().powi_scalar(2).add_scalar(BETA_FLOOR);
        let gamma = self.g.val().powi_scalar(2).reshape([c, c, 1, 1]);
        let norm = conv2d(x.clone().powi_scalar(2), gamma, Some(beta), ConvOptions::new([1, 1], [0, 0], [1, 1], 1)).sqrt();
        if self.inverse { x * norm } else { x / norm }
    }
}
