//! The `stem` video model's latent codec: the multi-reference model for intra frames, and a
//! P-frame context model (same hyperprior) that also references the previous decoded latent.

use burn::prelude::*;

use super::{LatentCoding, LatentTables, MultiRefLatent, compress_context, decode_context};
use crate::entropy::EntropyBottleneck;
use crate::error::{Error, Result};
use crate::models::multiref::{ContextModel, IntegerContext};
use crate::models::tables::{CodingTables, Compressed};

#[derive(Module, Debug)]
pub struct StemLatent {
    pub(crate) intra: MultiRefLatent,
    pub(crate) inter: ContextModel,
}

/// A single image through a stem model is an intra frame.
impl LatentCoding for StemLatent {
    fn forward(&self, y: Tensor<4>) -> (Tensor<4>, Vec<Tensor<4>>) {
        self.intra.forward(y)
    }

    fn bottleneck(&self) -> Option<&EntropyBottleneck> {
        self.intra.bottleneck()
    }

    fn latent_tables(&self) -> LatentTables {
        LatentTables::Stem { hyper: self.intra.hyper.h_s.integer(), context: self.intra.context.integer(), inter: self.inter.integer() }
    }

    fn compress(&self, y: Tensor<4>, q: usize, tables: &CodingTables) -> Result<Compressed> {
        self.intra.compress(y, q, tables)
    }

    fn decompress(&self, sections: &[Vec<u8>], q: usize, y_hw: [usize; 2], tables: &CodingTables, device: &Device) -> Result<(Vec<f32>, Option<Vec<i32>>)> {
        self.intra.decompress(sections, q, y_hw, tables, device)
    }
}

impl StemLatent {
    /// One frame's latent: an intra frame (`reference` None) or a P-frame referencing the
    /// previous frame's ŷ (Q12). Returns the sections, ŷ, and ŷ in Q12 (the next reference).
    pub(crate) fn compress_frame(&self, y: Tensor<4>, reference: Option<&[i32]>, tables: &CodingTables) -> Result<(Compressed, Vec<i32>)> {
        compress_context(&self.intra.hyper, y, frame_context(tables, reference.is_some())?, reference, tables)
    }

    /// Inverse of [`compress_frame`](Self::compress_frame).
    pub(crate) fn decompress_frame(&self, sections: &[Vec<u8>], y_hw: [usize; 2], reference: Option<&[i32]>, tables: &CodingTables) -> Result<DecodedFrame<'_>> {
        let (y_hat, hyper, y_q) = decode_context(sections, y_hw, frame_context(tables, reference.is_some())?, reference, tables)?;
        let lrp = if reference.is_some() { &self.inter } else { &self.intra.context };
        Ok(DecodedFrame { y_hat, hyper, y_q, lrp })
    }
}

/// A frame's entropy-decoded latent.
pub(crate) struct DecodedFrame<'a> {
    pub y_hat: Vec<f32>,
    /// Hyperprior features (Q12), what LRP needs.
    pub hyper: Vec<i32>,
    /// ŷ in Q12: the next frame's reference.
    pub y_q: Vec<i32>,
    /// The context model whose LRP reconstructs this frame.
    pub lrp: &'a ContextModel,
}

/// The context model that codes a video frame: the P-frame one when there is a reference.
fn frame_context(tables: &CodingTables, inter: bool) -> Result<&IntegerContext> {
    let context = if inter { tables.latent.inter() } else { tables.latent.context() };
    context.ok_or_else(|| Error::Codec("these coding tables are not a stem model's".into()))
}
