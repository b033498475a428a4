//! The factorized prior (Ballé 2017): y coded by one entropy bottleneck, no side information.

use burn::prelude::*;

use super::{LatentCoding, LatentTables};
use crate::entropy::{EntropyBottleneck, SymbolDecoder, SymbolEncoder};
use crate::error::{Error, Result};
use crate::models::tables::{CodingTables, Compressed};
use crate::nn::ste_round;
use crate::nn::to_host;

impl LatentCoding for EntropyBottleneck {
    fn forward(&self, y: Tensor<4>) -> (Tensor<4>, Vec<Tensor<4>>) {
        let (_, lik) = EntropyBottleneck::forward(self, y.clone());
        (ste_round(y), vec![lik])
    }

    fn bottleneck(&self) -> Option<&EntropyBottleneck> {
        Some(self)
    }

    fn latent_tables(&self) -> LatentTables {
        LatentTables::Factorized
    }

    fn compress(&self, y: Tensor<4>, _q: usize, tables: &CodingTables) -> Result<Compressed> {
        let [_, _, h, w] = y.dims();
        let mut enc = SymbolEncoder::new();
        let y_hat = tables.bottleneck.compress(&to_host(y), h * w, &mut enc)?;
        Ok(Compressed { sections: vec![enc.finish()?], y_hat })
    }

    fn decompress(&self, sections: &[Vec<u8>], _q: usize, [h, w]: [usize; 2], tables: &CodingTables, _device: &Device) -> Result<(Vec<f32>, Option<Vec<i32>>)> {
        let [bytes] = sections else { return Err(Error::Format("expected 1 section".into())) };
        let mut dec = SymbolDecoder::new(bytes)?;
        Ok((tables.bottleneck.decompress(h * w, &mut dec)?, None))
    }
}
