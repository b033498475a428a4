//! Scale and mean-scale hyperpriors (Ballé 2018, Minnen 2018): side information z tells the
//! Gaussian conditional of y its scales (and means).

use burn::prelude::*;

use super::{LatentCoding, LatentTables, check_len};
use crate::entropy::{EntropyBottleneck, GaussianParams, SymbolDecoder, SymbolEncoder, gaussian_likelihood};
use crate::error::{Error, Result};
use crate::models::tables::{CodingTables, Compressed};
use crate::models::transforms::{HyperAnalysis, HyperSynthesis};
use crate::nn::ste_round;
use crate::nn::{from_host, to_host};

#[derive(Module, Debug)]
pub struct HyperpriorLatent {
    pub(crate) h_a: HyperAnalysis,
    pub(crate) h_s: HyperSynthesis,
    pub(crate) z_bottleneck: EntropyBottleneck,
}

impl HyperpriorLatent {
    pub(crate) fn new(n: usize, m: usize, mean_scale: bool, device: &Device) -> Self {
        Self { h_a: HyperAnalysis::new(n, m, mean_scale, device), h_s: HyperSynthesis::new(n, m, mean_scale, device), z_bottleneck: EntropyBottleneck::new(n, device) }
    }

    /// h_s's output as one tensor (scales, then means): the context model's hyper input.
    pub(crate) fn hyper_features(&self, z_hat: Tensor<4>) -> Tensor<4> {
        let (scales, means) = self.h_s.forward(z_hat);
        match means {
            Some(mu) => Tensor::cat(vec![scales, mu], 1),
            None => scales,
        }
    }

    /// ẑ → Gaussian parameters, in fixed point (or through the float h_s when measuring).
    fn gaussian_params(&self, z_hat: Vec<f32>, [zh, zw]: [usize; 2], tables: &CodingTables, device: &Device) -> Result<GaussianParams> {
        let n = tables.bottleneck.channels();
        check_len(z_hat.len(), n * zh * zw)?;
        match tables.latent.hyper() {
            Some(int) if !tables.float_hyper => Ok(int.forward(&z_hat, zh, zw)),
            _ => {
                let (scales, means) = self.h_s.forward(from_host(z_hat, [1, n, zh, zw], device));
                Ok(GaussianParams::from_float(&to_host(scales), means.map(to_host).as_deref()))
            }
        }
    }
}

impl LatentCoding for HyperpriorLatent {
    fn forward(&self, y: Tensor<4>) -> (Tensor<4>, Vec<Tensor<4>>) {
        let z = self.h_a.forward(y.clone());
        let (z_tilde, z_lik) = self.z_bottleneck.forward(z);
        let (scales, means) = self.h_s.forward(z_tilde);
        let noise = Tensor::random(y.shape(), burn::tensor::Distribution::Uniform(-0.5, 0.5), &y.device());
        let y_lik = gaussian_likelihood(y.clone() + noise, scales, means.clone());
        // Noise for the rate term, straight-through rounding for what the decoder sees.
        let y_hat = match means {
            Some(mu) => ste_round(y - mu.clone()) + mu,
            None => ste_round(y),
        };
        (y_hat, vec![y_lik, z_lik])
    }

    fn bottleneck(&self) -> Option<&EntropyBottleneck> {
        Some(&self.z_bottleneck)
    }

    fn latent_tables(&self) -> LatentTables {
        LatentTables::Hyperprior { hyper: self.h_s.integer() }
    }

    fn compress(&self, y: Tensor<4>, _q: usize, tables: &CodingTables) -> Result<Compressed> {
        let device = y.device();
        let y_host = to_host(y.clone());
        let (z_section, z_hat, zhw) = compress_z(self, y, tables)?;
        // Derive the Gaussian parameters from ẑ exactly as the decoder will.
        let params = self.gaussian_params(z_hat, zhw, tables, &device)?;
        let mut y_enc = SymbolEncoder::new();
        let y_hat = tables.gaussian.compress(&y_host, &params, &mut y_enc)?;
        Ok(Compressed { sections: vec![z_section, y_enc.finish()?], y_hat })
    }

    fn decompress(&self, sections: &[Vec<u8>], _q: usize, y_hw: [usize; 2], tables: &CodingTables, device: &Device) -> Result<(Vec<f32>, Option<Vec<i32>>)> {
        let [h, w] = y_hw;
        let m = self.h_a.input_channels();
        let (z_hat, zhw, y_bytes) = decompress_z(sections, y_hw, tables)?;
        let params = self.gaussian_params(z_hat, zhw, tables, device)?;
        check_len(params.len(), m * h * w)?;
        let mut y_dec = SymbolDecoder::new(y_bytes)?;
        Ok((tables.gaussian.decompress(&params, &mut y_dec)?, None))
    }
}

/// z ──h_a──► bottleneck ──► (section, ẑ, (zh, zw)).
pub(crate) fn compress_z(hp: &HyperpriorLatent, y: Tensor<4>, tables: &CodingTables) -> Result<(Vec<u8>, Vec<f32>, [usize; 2])> {
    let z = hp.h_a.forward(y);
    let [_, _, zh, zw] = z.dims();
    let mut z_enc = SymbolEncoder::new();
    let z_hat = tables.bottleneck.compress(&to_host(z), zh * zw, &mut z_enc)?;
    Ok((z_enc.finish()?, z_hat, [zh, zw]))
}

/// The two sections of a hyperprior stream: decodes ẑ, returns it with its size and the y bytes.
pub(crate) fn decompress_z<'a>(sections: &'a [Vec<u8>], [h, w]: [usize; 2], tables: &CodingTables) -> Result<(Vec<f32>, [usize; 2], &'a [u8])> {
    let [z_bytes, y_bytes] = sections else { return Err(Error::Format("expected 2 sections".into())) };
    let (zh, zw) = (h.div_ceil(4), w.div_ceil(4));
    let mut z_dec = SymbolDecoder::new(z_bytes)?;
    Ok((tables.bottleneck.decompress(zh * zw, &mut z_dec)?, [zh, zw], y_bytes))
}
