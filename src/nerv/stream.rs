//! The nerv bitstream: a stream header, then one section per group of frames holding that
//! group's quantized decoder weights and embeddings, range-coded with integer Laplace tables.
//!
//! ```text
//!  section 0 (header): version, frames, fps, frames per group, tile, levels, embed dim,
//!                      widths, kernels                                       (LEB128 each)
//!  section 1+g (group g):
//!    per decoder tensor:     f32 step, byte mode<<7 | table   (mode 1: delta to group g-1)
//!    per embedding channel:  f32 step, byte mode<<7 | table   (mode 1: delta to the same
//!                                                              tile of the previous frame)
//!    range-coded symbols: tensors in order, then embeddings channel by channel
//! ```
//! A group decodes from its own section plus the *weights* of the groups before it (integer
//! work, no network), so a decoder can seek to any group and run the network only there.
//! The encoder picks each table (and each delta mode) by the exact code length of the
//! symbols under that table.

use super::model::NervConfig;
use crate::bytes::{Reader, put_varint};
use crate::entropy::laplace::{TABLES, best_table, laplace_tables};
use crate::entropy::{SymbolDecoder, SymbolEncoder};
use crate::error::{Error, Result};

pub const STREAM_VERSION: u8 = 1;
/// Declared-size limits, checked before any allocation they imply.
pub const MAX_FRAMES: usize = 1 << 20;
pub const MAX_GROUP: usize = 4096;
pub const MAX_PARAMETERS: usize = 1 << 24;
pub const MAX_EMBEDDINGS_PER_GROUP: usize = 1 << 24;

/// What section 0 says about the whole stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    pub width: usize,
    pub height: usize,
    pub frames: usize,
    pub fps: (u32, u32),
    /// Frames per group (the last group may be shorter).
    pub group: usize,
    pub config: NervConfig,
}

impl StreamInfo {
    pub fn groups(&self) -> usize {
        self.frames.div_ceil(self.group)
    }

    /// Tile rows and columns covering a frame.
    pub fn tile_grid(&self) -> (usize, usize) {
        (self.height.div_ceil(self.config.tile), self.width.div_ceil(self.config.tile))
    }

    pub fn tiles_per_frame(&self) -> usize {
        let (r, c) = self.tile_grid();
        r * c
    }

    /// Frames `start..end` of group `g`.
    pub fn group_frames(&self, g: usize) -> std::ops::Range<usize> {
        g * self.group..((g + 1) * self.group).min(self.frames)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let c = &self.config;
        let mut out = vec![STREAM_VERSION];
        for v in [self.frames, self.fps.0 as usize, self.fps.1 as usize, self.group, c.tile, c.levels, c.embed_dim] {
            put_varint(&mut out, v as u64);
        }
        c.widths.iter().chain(&c.kernels).for_each(|&w| put_varint(&mut out, w as u64));
        out
    }

    /// Parses and checks section 0 against the container's geometry and every limit.
    pub fn parse(bytes: &[u8], width: usize, height: usize) -> Result<Self> {
        let mut r = Reader::new(bytes, "nerv stream header");
        let version = r.byte()?;
        if version != STREAM_VERSION {
            return Err(Error::Unsupported(format!("nerv stream version {version} (this build reads {STREAM_VERSION})")));
        }
        let mut next = || r.varint_usize();
        let (frames, num, den, group) = (next()?, next()?, next()?, next()?);
        let (tile, levels, embed_dim) = (next()?, next()?, next()?);
        if levels > super::model::MAX_LEVELS {
            return Err(Error::Format(format!("nerv: {levels} levels")));
        }
        let widths = (0..=levels).map(|_| next()).collect::<Result<Vec<_>>>()?;
        let kernels = (0..=levels).map(|_| next()).collect::<Result<Vec<_>>>()?;
        if r.remaining() != 0 {
            return Err(Error::Format("nerv header has trailing bytes".into()));
        }
        let config = NervConfig { tile, levels, embed_dim, widths, kernels };
        config.check()?;
        let max_frames = MAX_FRAMES.min(crate::video::max_frames());
        if !(1..=max_frames).contains(&frames) || !(1..=MAX_GROUP).contains(&group) {
            return Err(Error::Unsupported(format!("nerv: {frames} frames in groups of {group} (limits {max_frames}, {MAX_GROUP})")));
        }
        let fps = (u32::try_from(num).unwrap_or(0), u32::try_from(den).unwrap_or(0));
        if fps.0 == 0 || fps.1 == 0 {
            return Err(Error::Format("nerv: bad frame rate".into()));
        }
        let info = Self { width, height, frames, fps, group, config };
        if info.config.parameters() > MAX_PARAMETERS {
            return Err(Error::Unsupported(format!("nerv: {} decoder parameters (limit {MAX_PARAMETERS})", info.config.parameters())));
        }
        if info.embeddings_per_group() > MAX_EMBEDDINGS_PER_GROUP {
            return Err(Error::Unsupported(format!("nerv: {} embedding values per group (limit {MAX_EMBEDDINGS_PER_GROUP})", info.embeddings_per_group())));
        }
        Ok(info)
    }

    fn embeddings_per_group(&self) -> usize {
        let g = self.config.grid();
        self.group.saturating_mul(self.tiles_per_frame()).saturating_mul(self.config.embed_dim * g * g)
    }
}

/// One group's quantized decoder and embeddings: integers and their steps.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantGroup {
    pub weight_steps: Vec<f32>,
    /// One integer tensor per decoder tensor, in [`NervConfig::tensor_shapes`] order.
    pub weights: Vec<Vec<i32>>,
    /// One step per embedding channel.
    pub embed_steps: Vec<f32>,
    /// [tiles, d, g, g], tiles frame-major (all tiles of frame 0, then frame 1, ...).
    pub embeds: Vec<i32>,
}

impl QuantGroup {
    pub fn weights_f32(&self) -> Vec<Vec<f32>> {
        self.weights.iter().zip(&self.weight_steps).map(|(w, &s)| w.iter().map(|&v| v as f32 * s).collect()).collect()
    }

    /// Dequantized embeddings; `cells` = grid² values per channel per tile.
    pub fn embeds_f32(&self, cells: usize) -> Vec<f32> {
        let d = self.embed_steps.len();
        self.embeds.iter().enumerate().map(|(i, &v)| v as f32 * self.embed_steps[(i / cells) % d]).collect()
    }
}

/// Per-channel views of the embeddings: for channel c, frame f, tile t, cell k the value at
/// ((f·tiles + t)·d + c)·cells + k.
struct EmbedLayout {
    frames: usize,
    tiles: usize,
    d: usize,
    cells: usize,
}

impl EmbedLayout {
    fn index(&self, f: usize, t: usize, c: usize, k: usize) -> usize {
        ((f * self.tiles + t) * self.d + c) * self.cells + k
    }

    /// Channel c's values in coding order (frame, tile, cell); `delta`: minus the previous
    /// frame's value at the same place (the first frame as is).
    fn channel(&self, e: &[i32], c: usize, delta: bool) -> Vec<i32> {
        let mut out = Vec::with_capacity(self.frames * self.tiles * self.cells);
        for f in 0..self.frames {
            for t in 0..self.tiles {
                for k in 0..self.cells {
                    let v = e[self.index(f, t, c, k)];
                    let p = if delta && f > 0 { e[self.index(f - 1, t, c, k)] } else { 0 };
                    out.push(v.wrapping_sub(p));
                }
            }
        }
        out
    }

    /// Inverse of [`channel`](Self::channel): writes channel c of `e` from coded symbols.
    fn set_channel(&self, e: &mut [i32], c: usize, symbols: &[i32], delta: bool) {
        let mut it = symbols.iter();
        for f in 0..self.frames {
            for t in 0..self.tiles {
                for k in 0..self.cells {
                    let p = if delta && f > 0 { e[self.index(f - 1, t, c, k)] } else { 0 };
                    e[self.index(f, t, c, k)] = it.next().copied().unwrap_or(0).wrapping_add(p);
                }
            }
        }
    }
}

fn check_step(s: f32) -> Result<f32> {
    if s.is_finite() && s > 0.0 && s < 1e6 { Ok(s) } else { Err(Error::Format(format!("nerv: bad quantization step {s}"))) }
}

/// Codes group `frames` frames of quantized data; `prev` (the previous group) allows delta
/// coding of weight tensors whose step did not change.
pub fn encode_group(g: &QuantGroup, prev: Option<&QuantGroup>, info: &StreamInfo, frames: usize) -> Result<Vec<u8>> {
    let layout = EmbedLayout { frames, tiles: info.tiles_per_frame(), d: info.config.embed_dim, cells: info.config.grid().pow(2) };
    let mut head = Vec::new();
    let mut coded: Vec<(u8, Vec<i32>)> = vec![];
    for (i, (w, &step)) in g.weights.iter().zip(&g.weight_steps).enumerate() {
        let mut choice = (0u8, w.clone(), best_table(w));
        if let Some(p) = prev.filter(|p| p.weight_steps[i].to_bits() == step.to_bits()) {
            let d: Vec<i32> = w.iter().zip(&p.weights[i]).map(|(a, b)| a.wrapping_sub(*b)).collect();
            let t = best_table(&d);
            if t.1 < choice.2.1 {
                choice = (1, d, t);
            }
        }
        head.extend_from_slice(&step.to_le_bytes());
        head.push(choice.0 << 7 | choice.2.0);
        coded.push((choice.2.0, choice.1));
    }
    for c in 0..layout.d {
        let (abs, del) = (layout.channel(&g.embeds, c, false), layout.channel(&g.embeds, c, true));
        let (ta, td) = (best_table(&abs), best_table(&del));
        let (mode, symbols, t) = if td.1 < ta.1 { (1u8, del, td) } else { (0, abs, ta) };
        head.extend_from_slice(&g.embed_steps[c].to_le_bytes());
        head.push(mode << 7 | t.0);
        coded.push((t.0, symbols));
    }
    let tables = laplace_tables();
    let mut enc = SymbolEncoder::new();
    for (t, symbols) in &coded {
        for &v in symbols {
            enc.encode(v, &tables[*t as usize])?;
        }
    }
    head.extend(enc.finish()?);
    Ok(head)
}

/// Decodes one group section; `prev` must be the previous group's decoded data whenever the
/// section uses weight deltas.
pub fn decode_group(bytes: &[u8], prev: Option<&QuantGroup>, info: &StreamInfo, frames: usize) -> Result<QuantGroup> {
    let cfg = &info.config;
    let layout = EmbedLayout { frames, tiles: info.tiles_per_frame(), d: cfg.embed_dim, cells: cfg.grid().pow(2) };
    let shapes = cfg.tensor_shapes();
    let mut r = Reader::new(bytes, "nerv group");
    let entry = |r: &mut Reader| -> Result<(f32, bool, usize)> {
        let step = check_step(f32::from_le_bytes(r.array()?))?;
        let b = r.byte()?;
        let table = (b & 0x7f) as usize;
        if table >= TABLES {
            return Err(Error::Format(format!("nerv: table {table}")));
        }
        Ok((step, b & 0x80 != 0, table))
    };
    let weight_heads = (0..shapes.len()).map(|_| entry(&mut r)).collect::<Result<Vec<_>>>()?;
    let embed_heads = (0..cfg.embed_dim).map(|_| entry(&mut r)).collect::<Result<Vec<_>>>()?;
    let mut dec = SymbolDecoder::new(&bytes[r.position()..])?;
    let tables = laplace_tables();
    let mut weights = Vec::with_capacity(shapes.len());
    for (i, (shape, &(step, delta, t))) in shapes.iter().zip(&weight_heads).enumerate() {
        let n: usize = shape.iter().product();
        let base = if delta {
            let p = prev.ok_or_else(|| Error::Format("nerv: first group codes a weight delta".into()))?;
            if p.weight_steps[i].to_bits() != step.to_bits() {
                return Err(Error::Format("nerv: weight delta across a step change".into()));
            }
            Some(&p.weights[i])
        } else {
            None
        };
        let mut w = Vec::with_capacity(n);
        for j in 0..n {
            let v = dec.decode(&tables[t])?;
            w.push(base.map_or(v, |b| v.wrapping_add(b[j])));
        }
        weights.push(w);
    }
    let per_channel = layout.frames * layout.tiles * layout.cells;
    let mut embeds = vec![0i32; per_channel * layout.d];
    for (c, &(_, delta, t)) in embed_heads.iter().enumerate() {
        let symbols = (0..per_channel).map(|_| dec.decode(&tables[t])).collect::<Result<Vec<_>>>()?;
        layout.set_channel(&mut embeds, c, &symbols, delta);
    }
    Ok(QuantGroup { weight_steps: weight_heads.iter().map(|h| h.0).collect(), weights, embed_steps: embed_heads.iter().map(|h| h.0).collect(), embeds })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> StreamInfo {
        StreamInfo { width: 40, height: 24, frames: 5, fps: (25, 1), group: 3, config: NervConfig::with_c0(16, 2, 3, 12, 1.5) }
    }

    fn group(seed: i32, info: &StreamInfo, frames: usize) -> QuantGroup {
        let cfg = &info.config;
        let weights = cfg.tensor_shapes().iter().map(|s| (0..s.iter().product::<usize>() as i32).map(|i| ((i * 7 + seed) % 23) - 11).collect()).collect();
        let n = frames * info.tiles_per_frame() * cfg.embed_dim * cfg.grid().pow(2);
        QuantGroup {
            weight_steps: vec![0.01; cfg.tensor_shapes().len()],
            weights,
            embed_steps: (0..cfg.embed_dim).map(|c| 0.1 + c as f32).collect(),
            embeds: (0..n as i32).map(|i| (i / 5) % 9 - 4 + if i == 7 { 100_000 } else { 0 }).collect(),
        }
    }

    #[test]
    fn header_round_trips_and_limits_hold() {
        let i = info();
        assert_eq!(StreamInfo::parse(&i.to_bytes(), 40, 24).unwrap(), i);
        assert_eq!((i.groups(), i.group_frames(1)), (2, 3..5));
        let bytes = i.to_bytes();
        for n in 0..bytes.len() {
            assert!(StreamInfo::parse(&bytes[..n], 40, 24).is_err());
        }
        let huge = StreamInfo { group: 4096, config: NervConfig::with_c0(16, 1, 256, 12, 1.5), ..i.clone() };
        assert!(StreamInfo::parse(&huge.to_bytes(), 16384, 1024).is_err());
    }

    #[test]
    fn groups_round_trip_with_and_without_deltas() {
        let i = info();
        let g0 = group(0, &i, 3);
        let mut g1 = group(0, &i, 2);
        g1.weights[0][0] += 1; // mostly equal to g0: deltas win
        let b0 = encode_group(&g0, None, &i, 3).unwrap();
        let b1 = encode_group(&g1, Some(&g0), &i, 2).unwrap();
        assert_eq!(decode_group(&b0, None, &i, 3).unwrap(), g0);
        let d1 = decode_group(&b1, Some(&g0), &i, 2).unwrap();
        assert_eq!(d1, g1);
        assert!(b1[4] & 0x80 != 0, "first tensor should be delta-coded");
        assert!(decode_group(&b1, None, &i, 2).is_err());
        assert!(b1.len() < encode_group(&g1, None, &i, 2).unwrap().len());
    }

    #[test]
    fn corrupt_groups_never_panic() {
        let i = info();
        let g0 = group(3, &i, 3);
        let b0 = encode_group(&g0, None, &i, 3).unwrap();
        for n in 0..b0.len() {
            let _ = decode_group(&b0[..n], None, &i, 3);
        }
        for k in 0..b0.len() * 8 {
            let mut b = b0.clone();
            b[k / 8] ^= 1 << (k % 8);
            let _ = decode_group(&b, Some(&g0), &i, 3);
        }
    }
}
