//! Entropy models: what turns latents into bits.
//!
//! Training uses the differentiable likelihoods; coding uses only integer tables
//! ([`coder::CdfTable`]), so encoder and decoder agree bit for bit.

pub mod bottleneck;
pub mod coder;
pub mod gaussian;
pub mod laplace;

pub use bottleneck::{BottleneckTables, EntropyBottleneck};
pub use coder::{CdfTable, SymbolDecoder, SymbolEncoder};
pub use gaussian::{GaussianConditional, GaussianParams, gaussian_likelihood};

use burn::prelude::*;

/// The information content −Σ log₂ p of every element of `likelihoods` (training's rate term).
pub fn total_bits(likelihoods: Vec<Tensor<4>>, device: &Device) -> Tensor<1> {
    let nats = likelihoods.into_iter().fold(Tensor::<1>::zeros([1], device), |acc, lik| acc + lik.log().sum());
    nats.neg().div_scalar(std::f64::consts::LN_2)
}
