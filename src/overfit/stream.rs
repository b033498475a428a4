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

use super::arm::{IntegerArm, gather};
use super::model::{Architecture, MAX_LATENT, MAX_WEIGHT, QuantizedLayers};
use super::prior;
use crate::bytes::{Reader, put_varint};
use crate::entropy::laplace::{TABLES, best_table, laplace_tables};
use crate::entropy::{SymbolDecoder, SymbolEncoder};
use crate::error::{Error, Result};

pub const STREAM_VERSION: u8 = 1;

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

/// The network's quantized tensors (weight then bias of every layer), each with its best table.
pub fn encode_weights(layers: &[(Vec<i32>, Vec<i32>)]) -> Result<Vec<u8>> {
    let tensors: Vec<&Vec<i32>> = layers.iter().flat_map(|(w, b)| [w, b]).collect();
    let choices: Vec<u8> = tensors.iter().map(|t| best_table(t).0).collect();
    let mut enc = SymbolEncoder::new();
    let tables = laplace_tables();
    for (t, &c) in tensors.iter().zip(&choices) {
        for &v in t.iter() {
            enc.encode(v, &tables[c as usize])?;
        }
    }
    let mut out = choices;
    out.extend(enc.finish()?);
    Ok(out)
}

pub fn decode_weights(arch: &Architecture, bytes: &[u8]) -> Result<QuantizedLayers> {
    let shapes = arch.tensor_shapes();
    let n = 2 * shapes.len();
    if bytes.len() < n {
        return Err(Error::Format("truncated overfit weights".into()));
    }
    let (choices, coded) = bytes.split_at(n);
    if choices.iter().any(|&c| c as usize >= TABLES) {
        return Err(Error::Format("bad weight table index".into()));
    }
    let tables = laplace_tables();
    let mut dec = SymbolDecoder::new(coded)?;
    let mut tensor = |len: usize, table: u8| -> Result<Vec<i32>> {
        (0..len)
            .map(|_| {
                let v = dec.decode(&tables[table as usize])?;
                if v.abs() > MAX_WEIGHT { Err(Error::Format("overfit weight out of range".into())) } else { Ok(v) }
            })
            .collect()
    };
    shapes.iter().enumerate().map(|(i, s)| Ok((tensor(s.iter().product(), choices[2 * i])?, tensor(s[0], choices[2 * i + 1])?))).collect()
}

/// Codes the latents with the tables the integer ARM picks from their decoded neighbours.
pub fn encode_latents(arm: &IntegerArm, latents: &[Vec<i32>], sizes: &[[usize; 2]]) -> Result<Vec<u8>> {
    let mut enc = SymbolEncoder::new();
    let mut scratch = [vec![], vec![]];
    for (y, &[h, w]) in latents.iter().zip(sizes) {
        for r in 0..h {
            for c in 0..w {
                let (mu, log_scale) = arm.predict(&gather(y, w, r, c), &mut scratch);
                let choice = prior::choose(mu, log_scale);
                enc.encode(y[r * w + c] - choice.centre, prior::table(choice))?;
            }
        }
    }
    enc.finish()
}

pub fn decode_latents(arm: &IntegerArm, sizes: &[[usize; 2]], bytes: &[u8]) -> Result<Vec<Vec<i32>>> {
    let mut dec = SymbolDecoder::new(bytes)?;
    let mut scratch = [vec![], vec![]];
    let mut out = Vec::with_capacity(sizes.len());
    for &[h, w] in sizes {
        let mut y = vec![0i32; h * w];
        for r in 0..h {
            for c in 0..w {
                let (mu, log_scale) = arm.predict(&gather(&y, w, r, c), &mut scratch);
                let choice = prior::choose(mu, log_scale);
                let v = (dec.decode(prior::table(choice))? as i64) + choice.centre as i64;
                if v.abs() > MAX_LATENT as i64 {
                    return Err(Error::Format("overfit latent out of range (corrupt stream)".into()));
                }
                y[r * w + c] = v as i32;
            }
        }
        out.push(y);
    }
    Ok(out)
}
