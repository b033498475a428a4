//! Entropy models: what turns latents into bits.
//!
//! Training uses the differentiable likelihoods; coding uses only integer tables
//! ([`coder::CdfTable`]), so encoder and decoder agree bit for bit.

pub mod bottleneck;
pub mod coder;
pub mod gaussian;

pub use bottleneck::{BottleneckTables, EntropyBottleneck};
pub use coder::{CdfTable, SymbolDecoder, SymbolEncoder};
pub use gaussian::{GaussianConditional, GaussianParams, gaussian_likelihood};
