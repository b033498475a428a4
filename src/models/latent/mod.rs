//! Latent codecs: everything between the gained latent y = g_a(x)·gain[q] and the ŷ that g_s
//! decodes, one file per kind behind one interface ([`LatentCoding`]), composed from the
//! entropy models of [`crate::entropy`] the way CompressAI composes its latent codecs:
//!
//! ```text
//!  factorized       y ──EntropyBottleneck──► bytes
//!  hyperprior       y ──h_a──► z ──EntropyBottleneck──► bytes[0]
//!                              ẑ ──h_s (fixed point)──► (σ, μ) ──GaussianConditional(y)──► bytes[1]
//!  multi_reference  hyperprior, but y is coded slice by slice, each slice's (σ, μ) refined from
//!                   decoded references (see [`super::multiref`]) ──► bytes[1]
//!  vq               y ──residual VQ──► code indices ──learned categorical priors──► bytes
//!  stem             video: intra frames as multi_reference; P-frames with a second context
//!                   model that also references ŷ_{t−1}
//! ```
//! Each kind trains through `forward` (ŷ and likelihoods), codes through `compress` and
//! `decompress`. Adding one: its file, a variant of [`LatentCodec`] (what the weight file
//! stores) and its line in [`LatentCodec::coding`].

mod factorized;
mod hyperprior;
mod multi_reference;
mod stem;
mod vq;

use burn::prelude::*;

pub use hyperprior::HyperpriorLatent;
pub(crate) use hyperprior::{compress_z, decompress_z};
pub use multi_reference::MultiRefLatent;
pub(crate) use multi_reference::{compress_context, decode_context};
pub use stem::StemLatent;

use super::ContextModel;
pub use super::tables::LatentTables;
use super::tables::{CodingTables, Compressed};
use super::vq::VqLatent;
use crate::entropy::EntropyBottleneck;
use crate::error::Result;

/// One latent codec: training pass, coding, and what its integer tables hold.
pub trait LatentCoding {
    /// Training: ŷ as the decoder will see it (straight-through rounding or quantization) and
    /// the likelihoods of everything coded (noisy proxies of the rate).
    fn forward(&self, y: Tensor<4>) -> (Tensor<4>, Vec<Tensor<4>>);
    /// The entropy bottleneck whose integer tables the weight file ships (none for VQ, whose
    /// priors are learned from data).
    fn bottleneck(&self) -> Option<&EntropyBottleneck>;
    /// The per-kind part of its coding tables (fixed-point networks, codebooks).
    fn latent_tables(&self) -> LatentTables;
    /// y (`[1, M, h, w]`, after the quality gain) at quality index `q` → sections and ŷ.
    fn compress(&self, y: Tensor<4>, q: usize, tables: &CodingTables) -> Result<Compressed>;
    /// Sections → ŷ (`[M][h][w]`) and, with a context model, the hyperprior features (Q12)
    /// that latent residual prediction needs. Integer work only (unless `tables.float_hyper`).
    fn decompress(&self, sections: &[Vec<u8>], q: usize, y_hw: [usize; 2], tables: &CodingTables, device: &Device) -> Result<(Vec<f32>, Option<Vec<i32>>)>;
}

/// The latent codec of a model, as its weights are stored (a variant per kind). One per model,
/// never moved in a loop: the variants' size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum LatentCodec {
    Factorized(EntropyBottleneck),
    Hyperprior(HyperpriorLatent),
    MultiRef(MultiRefLatent),
    Vq(VqLatent),
    Stem(StemLatent),
}

impl LatentCodec {
    /// The one place that knows every kind.
    pub fn coding(&self) -> &dyn LatentCoding {
        match self {
            LatentCodec::Factorized(c) => c,
            LatentCodec::Hyperprior(c) => c,
            LatentCodec::MultiRef(c) => c,
            LatentCodec::Vq(c) => c,
            LatentCodec::Stem(c) => c,
        }
    }

    /// The multi-reference model (also stem's intra model), if there is one.
    pub fn multi_ref(&self) -> Option<&MultiRefLatent> {
        match self {
            LatentCodec::MultiRef(mr) => Some(mr),
            LatentCodec::Stem(s) => Some(&s.intra),
            _ => None,
        }
    }

    /// Stem's P-frame context model.
    pub fn inter_context(&self) -> Option<&ContextModel> {
        match self {
            LatentCodec::Stem(s) => Some(&s.inter),
            _ => None,
        }
    }
}

pub(crate) fn check_len(len: usize, want: usize) -> Result<()> {
    if len == want { Ok(()) } else { Err(crate::error::Error::Format("latent geometry does not match the hyperprior".into())) }
}
