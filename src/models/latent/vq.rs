//! Residual vector quantization of y with learned categorical priors (see
//! [`crate::models::vq`]): quality levels pick the codebook depth; gains are 1.

use burn::prelude::*;

use super::{LatentCoding, LatentTables};
use crate::entropy::{EntropyBottleneck, SymbolDecoder, SymbolEncoder};
use crate::error::{Error, Result};
use crate::models::tables::{CodingTables, Compressed, VqTables};
use crate::models::vq::{self, VqLatent};
use crate::nn::{from_host, to_host};

impl LatentCoding for VqLatent {
    fn forward(&self, y: Tensor<4>) -> (Tensor<4>, Vec<Tensor<4>>) {
        // Every level, straight through; VQ training has its own trainer (train::vq).
        let [b, m, h, w] = y.dims();
        let books = self.host();
        let vectors: Vec<f32> = to_host(y.clone().detach()).chunks(m * h * w).flat_map(|s| vq::planar_to_vectors(s, m)).collect();
        let (_, recon) = books.quantize(&vectors, books.levels.len(), &books.levels[0]);
        let planar: Vec<f32> = recon.chunks(m * h * w).flat_map(|s| vq::vectors_to_planar(s, m)).collect();
        let q = from_host(planar, [b, m, h, w], &y.device());
        (y.clone() + (q - y).detach(), vec![])
    }

    /// Priors are learned from data, not from the model: see [`vq::fit_priors`].
    fn bottleneck(&self) -> Option<&EntropyBottleneck> {
        None
    }

    fn latent_tables(&self) -> LatentTables {
        LatentTables::Vq(VqTables { config: self.config().clone(), books: self.host(), priors: vec![] })
    }

    fn compress(&self, y: Tensor<4>, q: usize, tables: &CodingTables) -> Result<Compressed> {
        let [_, m, h, w] = y.dims();
        let vt = tables.vq_tables()?;
        let (first, levels, priors) = vt.preset(q)?;
        let (mut idx, recon) = vt.books.quantize(&vq::planar_to_vectors(&to_host(y), m), levels, first);
        let mut enc = SymbolEncoder::new();
        vq::code_indices(&mut idx, h, w, priors, &mut vq::Encode(&mut enc))?;
        Ok(Compressed { sections: vec![enc.finish()?], y_hat: vq::vectors_to_planar(&recon, m) })
    }

    fn decompress(&self, sections: &[Vec<u8>], q: usize, [h, w]: [usize; 2], tables: &CodingTables, _device: &Device) -> Result<(Vec<f32>, Option<Vec<i32>>)> {
        let [bytes] = sections else { return Err(Error::Format("expected 1 section".into())) };
        let m = self.dim();
        let vt = tables.vq_tables()?;
        let (first, levels, priors) = vt.preset(q)?;
        let mut idx = vec![vec![0u32; h * w]; levels];
        let mut dec = SymbolDecoder::new(bytes)?;
        vq::code_indices(&mut idx, h, w, priors, &mut vq::Decode(&mut dec))?;
        Ok((vq::vectors_to_planar(&vt.books.reconstruct(&idx, first), m), None))
    }
}
