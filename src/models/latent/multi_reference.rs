//! The multi-reference model (MLIC++-style): the mean-scale hyperprior, with y coded in channel
//! slices and checkerboard passes whose Gaussian parameters a context model refines from what
//! is already decoded (see [`crate::models::multiref`]).

use burn::prelude::*;

use super::{HyperpriorLatent, LatentCoding, LatentTables, check_len, compress_z, decompress_z};
use crate::entropy::EntropyBottleneck;
use crate::error::{Error, Result};
use crate::models::multiref::{ContextModel, IntegerContext};
use crate::models::tables::{CodingTables, Compressed};
use crate::models::transforms::IntegerHyperSynthesis;
use crate::nn::to_host;

/// The mean-scale hyperprior with the multi-reference context model on top.
#[derive(Module, Debug)]
pub struct MultiRefLatent {
    pub(crate) hyper: HyperpriorLatent,
    pub(crate) context: ContextModel,
}

impl LatentCoding for MultiRefLatent {
    fn forward(&self, y: Tensor<4>) -> (Tensor<4>, Vec<Tensor<4>>) {
        let hp = &self.hyper;
        let (z_tilde, z_lik) = hp.z_bottleneck.forward(hp.h_a.forward(y.clone()));
        let out = self.context.forward(y, hp.hyper_features(z_tilde));
        (out.y_rec, out.likelihoods.into_iter().chain([z_lik]).collect())
    }

    fn bottleneck(&self) -> Option<&EntropyBottleneck> {
        Some(&self.hyper.z_bottleneck)
    }

    fn latent_tables(&self) -> LatentTables {
        LatentTables::MultiRef { hyper: self.hyper.h_s.integer(), context: self.context.integer() }
    }

    fn compress(&self, y: Tensor<4>, _q: usize, tables: &CodingTables) -> Result<Compressed> {
        let (_, context) = integer_multiref(tables)?;
        Ok(compress_context(&self.hyper, y, context, None, tables)?.0)
    }

    fn decompress(&self, sections: &[Vec<u8>], _q: usize, y_hw: [usize; 2], tables: &CodingTables, _device: &Device) -> Result<(Vec<f32>, Option<Vec<i32>>)> {
        let (_, context) = integer_multiref(tables)?;
        let (y_hat, hyper, _) = decode_context(sections, y_hw, context, None, tables)?;
        Ok((y_hat, Some(hyper)))
    }
}

/// y ──(z section, ŷ section)── with the multi-reference `context` (and a reference latent for
/// P-frames); also returns ŷ in Q12.
pub(crate) fn compress_context(hp: &HyperpriorLatent, y: Tensor<4>, context: &IntegerContext, reference: Option<&[i32]>, tables: &CodingTables) -> Result<(Compressed, Vec<i32>)> {
    let [_, _, h, w] = y.dims();
    let y_host = to_host(y.clone());
    let (z_section, z_hat, zhw) = compress_z(hp, y, tables)?;
    let (int_hyper, _) = integer_multiref(tables)?;
    let hyper = hyper_raw(int_hyper, &z_hat, zhw, tables)?;
    let (y_section, y_hat, y_q) = context.compress(&y_host, &hyper, reference, [h, w], &tables.gaussian)?;
    Ok((Compressed { sections: vec![z_section, y_section], y_hat }, y_q))
}

/// Inverse of [`compress_context`]: ŷ (float), the hyperprior features (Q12) and ŷ (Q12).
pub(crate) fn decode_context(sections: &[Vec<u8>], y_hw: [usize; 2], context: &IntegerContext, reference: Option<&[i32]>, tables: &CodingTables) -> Result<(Vec<f32>, Vec<i32>, Vec<i32>)> {
    let (z_hat, zhw, y_bytes) = decompress_z(sections, y_hw, tables)?;
    let (int_hyper, _) = integer_multiref(tables)?;
    let hyper = hyper_raw(int_hyper, &z_hat, zhw, tables)?;
    let (y_hat, y_q) = context.decompress(y_bytes, &hyper, reference, y_hw, &tables.gaussian)?;
    Ok((y_hat, hyper, y_q))
}

fn integer_multiref(tables: &CodingTables) -> Result<(&IntegerHyperSynthesis, &IntegerContext)> {
    match (tables.latent.hyper(), tables.latent.context()) {
        (Some(h), Some(c)) => Ok((h, c)),
        _ => Err(Error::Codec("these coding tables are not a multi-reference model's".into())),
    }
}

/// Fixed-point h_s output for the context model (`[2M][4zh][4zw]`, scales then means).
fn hyper_raw(int: &IntegerHyperSynthesis, z_hat: &[f32], [zh, zw]: [usize; 2], tables: &CodingTables) -> Result<Vec<i32>> {
    check_len(z_hat.len(), tables.bottleneck.channels() * zh * zw)?;
    Ok(int.forward_raw(z_hat, zh, zw))
}
