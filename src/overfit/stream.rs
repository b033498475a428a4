//! The overfit bitstream, in the ncodec container (kind image, codec `overfit`).
//!
//! ```text
//!  section 0: version, levels, ARM width, synthesis width                     (LEB128 each)
//!  section 1: per tensor (ARM layers, then synthesis; weight then bias) a Laplace table
//!             byte, then every tensor's integers (step 2^−8), range-coded
//!  section 2: the latents, level 0 (finest) first, raster order, each coded with the table
//!             the integer ARM picks from its decoded neighbours
//! ```
//! Declared sizes are checked before anything is allocated; a latent or weight beyond the
//! bounds an encoder can produce is a format error.

use super::arm::{IntegerArm, Predictor, Raster};
use super::model::{Architecture, MAX_LATENT, MAX_WEIGHT, QuantizedLayers};
use super::prior::{self, ARM_FRAC};
use crate::bytes::{Reader, put_varint};
use crate::entropy::laplace::{TABLES, best_table, laplace_tables};
use crate::entropy::{SymbolDecoder, SymbolEncoder};
use crate::error::{Error, Result};

/// 2: a quantization step per tensor. 3: the latents' tables are Laplace distributions (they
/// were Gaussian). 4: two residual 3x3 layers end the synthesis (there was one).
pub const STREAM_VERSION: u8 = 4;

pub fn header_bytes(arch: &Architecture) -> Vec<u8> {
    let mut out = vec![STREAM_VERSION];
    for v in [arch.levels, arch.arm_hidden, arch.synthesis_width] {
        put_varint(&mut out, v as u64);
    }
    out
}

pub fn parse_header(bytes: &[u8]) -> Result<Architecture> {
    let mut r = Reader::new(bytes, "overfit header");
    let version = r.byte()?;
    if version != STREAM_VERSION {
        return Err(Error::Unsupported(format!("overfit stream version {version} (this decoder reads {STREAM_VERSION})")));
    }
    let arch = Architecture { levels: r.varint_usize()?, arm_hidden: r.varint_usize()?, synthesis_width: r.varint_usize()? };
    arch.check()?;
    if r.remaining() != 0 {
        return Err(Error::Format("trailing bytes in the overfit header".into()));
    }
    Ok(arch)
}

/// The network's quantized tensors (weight then bias of every layer): per tensor its table
/// and its step exponent `e` (values are multiples of 2^(`ARM_FRAC` − e) in the Q8 units of
/// [`QuantizedLayers`], i.e. of 2^−e), then the values divided by that multiple.
pub fn encode_weights(layers: &[(Vec<i32>, Vec<i32>)], exponents: &[u8]) -> Result<Vec<u8>> {
    let tensors: Vec<&Vec<i32>> = layers.iter().flat_map(|(w, b)| [w, b]).collect();
    if exponents.len() != tensors.len() || exponents.iter().any(|&e| e as u32 > ARM_FRAC) {
        return Err(Error::Format("one step exponent per tensor, at most the ARM's fraction bits".into()));
    }
    let symbols: Vec<Vec<i32>> = tensors.iter().zip(exponents).map(|(t, &e)| t.iter().map(|&v| v >> (ARM_FRAC - e as u32)).collect()).collect();
    if tensors.iter().zip(&symbols).zip(exponents).any(|((t, s), &e)| t.iter().zip(s).any(|(&v, &q)| q << (ARM_FRAC - e as u32) != v)) {
        return Err(Error::Format("a weight is not a multiple of its tensor's step".into()));
    }
    let choices: Vec<u8> = symbols.iter().map(|t| best_table(t).0).collect();
    let mut enc = SymbolEncoder::new();
    let tables = laplace_tables();
    for (t, &c) in symbols.iter().zip(&choices) {
        for &v in t.iter() {
            enc.encode(v, &tables[c as usize])?;
        }
    }
    let mut out = choices;
    out.extend(exponents);
    out.extend(enc.finish()?);
    Ok(out)
}

pub fn decode_weights(arch: &Architecture, bytes: &[u8]) -> Result<QuantizedLayers> {
    let shapes = arch.tensor_shapes();
    let n = 2 * shapes.len();
    if bytes.len() < 2 * n {
        return Err(Error::Format("truncated overfit weights".into()));
    }
    let (choices, rest) = bytes.split_at(n);
    let (exponents, coded) = rest.split_at(n);
    if choices.iter().any(|&c| c as usize >= TABLES) || exponents.iter().any(|&e| e as u32 > ARM_FRAC) {
        return Err(Error::Format("bad weight table index or step".into()));
    }
    let tables = laplace_tables();
    let mut dec = SymbolDecoder::new(coded)?;
    let mut tensor = |len: usize, i: usize| -> Result<Vec<i32>> {
        let shift = ARM_FRAC - exponents[i] as u32;
        (0..len)
            .map(|_| {
                let v = dec.decode(&tables[choices[i] as usize])? as i64 * (1i64 << shift);
                if v.abs() > MAX_WEIGHT as i64 { Err(Error::Format("overfit weight out of range".into())) } else { Ok(v as i32) }
            })
            .collect()
    };
    shapes.iter().enumerate().map(|(i, s)| Ok((tensor(s.iter().product(), 2 * i)?, tensor(s[0], 2 * i + 1)?))).collect()
}

/// Codes the latents with the tables the integer ARM picks from their decoded neighbours.
pub fn encode_latents(arm: &IntegerArm, latents: &[Vec<i32>], sizes: &[[usize; 2]]) -> Result<Vec<u8>> {
    let mut enc = SymbolEncoder::new();
    let mut arm = Predictor::new(arm);
    for (y, &[h, w]) in latents.iter().zip(sizes) {
        let y = Raster::from_level(y, [h, w]);
        for r in 0..h {
            for c in 0..w {
                let (mu, log_scale) = arm.predict(&y.context(r, c));
                let choice = prior::choose(mu, log_scale);
                enc.encode(y.get(r, c) - choice.centre, prior::table(choice))?;
            }
        }
    }
    enc.finish()
}

pub fn decode_latents(arm: &IntegerArm, sizes: &[[usize; 2]], bytes: &[u8]) -> Result<Vec<Vec<i32>>> {
    let mut dec = SymbolDecoder::new(bytes)?;
    let mut arm = Predictor::new(arm);
    let mut out = Vec::with_capacity(sizes.len());
    for &[h, w] in sizes {
        let mut y = Raster::new([h, w]);
        for r in 0..h {
            for c in 0..w {
                let (mu, log_scale) = arm.predict(&y.context(r, c));
                let choice = prior::choose(mu, log_scale);
                let v = (dec.decode(prior::table(choice))? as i64) + choice.centre as i64;
                if v.abs() > MAX_LATENT as i64 {
                    return Err(Error::Format("overfit latent out of range (corrupt stream)".into()));
                }
                y.set(r, c, v as i32);
            }
        }
        out.push(y.level());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Weights round-trip at every tensor's own step; a value off its step, an exponent past
    /// the ARM's fraction bits, or a truncated section is refused.
    #[test]
    fn weights_round_trip_at_their_own_steps() {
        let arch = Architecture { levels: 2, arm_hidden: 3, synthesis_width: 4 };
        let shapes = arch.tensor_shapes();
        let exponents: Vec<u8> = (0..2 * shapes.len()).map(|t| (t % 9) as u8).collect();
        let layers: QuantizedLayers = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let tensor = |len: usize, t: usize| (0..len).map(|j| ((j as i32 * 37 + t as i32) % 21 - 10) << (ARM_FRAC - exponents[t] as u32)).collect::<Vec<i32>>();
                (tensor(s.iter().product(), 2 * i), tensor(s[0], 2 * i + 1))
            })
            .collect();
        let bytes = encode_weights(&layers, &exponents).unwrap();
        assert_eq!(decode_weights(&arch, &bytes).unwrap(), layers);
        let mut off = layers.clone();
        off[0].0[0] += 1;
        assert!(encode_weights(&off, &exponents).is_err(), "tensor 0 has step 2^-0: 1/256 is not a multiple");
        let mut bad = bytes.clone();
        bad[2 * shapes.len()] = ARM_FRAC as u8 + 1;
        assert!(decode_weights(&arch, &bad).is_err());
        assert!(decode_weights(&arch, &bytes[..2 * shapes.len() + 1]).is_err());
    }
}
