//! Range coding of integer symbols with integer probability tables (constriction).
//!
//! Every table covers a contiguous range `offset .. offset + n` plus one *escape* symbol. A value
//! outside the range codes the escape followed by an Elias-gamma style tail made of uniform
//! symbols, so any `i32` is encodable and no symbol ever has probability zero.
//!
//! Probabilities reach the coder only as `u32` frequencies summing to `1 << PRECISION`:
//! encoder and decoder build identical tables from identical integers.

use constriction::stream::model::{ContiguousCategoricalEntropyModel, UniformModel};
use constriction::stream::queue::{DefaultRangeDecoder, DefaultRangeEncoder};
use constriction::stream::{Decode, Encode};

use crate::error::{Error, Result};

/// Bits of probability resolution in every table.
pub const PRECISION: usize = 16;
const TOTAL: u64 = 1 << PRECISION;
/// Symbols per tail chunk (8 bits) and the largest bit length a tail can have.
const CHUNK_BITS: u32 = 8;
const MAX_TAIL_BITS: u32 = 32;

type Categorical = ContiguousCategoricalEntropyModel<u32, Vec<u32>, PRECISION>;
type Uniform = UniformModel<u32, PRECISION>;

/// One integer probability table: symbols `offset .. offset + n`, then the escape symbol.
#[derive(Debug, Clone)]
pub struct CdfTable {
    offset: i32,
    n: u32,
    model: Categorical,
    /// Ideal code length of each in-range symbol, then of the escape symbol (bits).
    costs: Vec<f32>,
}

impl CdfTable {
    /// From integer frequencies (`n` symbols followed by the escape), each >= 1, summing to
    /// `1 << PRECISION`. Frequencies read from a weight file go through here, so bad ones are an
    /// error, not a panic.
    pub fn from_frequencies(offset: i32, freqs: &[u32]) -> Result<Self> {
        if freqs.len() < 2 || freqs.contains(&0) {
            return Err(Error::Format("probability table with a zero or missing entry".into()));
        }
        let sum: u64 = freqs.iter().map(|&f| f as u64).sum();
        if sum != TOTAL {
            return Err(Error::Format(format!("probability table sums to {sum}, not {TOTAL}")));
        }
        let model = Categorical::from_nonzero_fixed_point_probabilities(freqs, false).map_err(|()| Error::Format("invalid probability table".into()))?;
        let costs = freqs.iter().map(|&f| (PRECISION as f64 - (f as f64).log2()) as f32).collect();
        Ok(Self { offset, n: (freqs.len() - 1) as u32, model, costs })
    }

    /// From a probability mass function over `offset .. offset + pmf.len()`; whatever mass is
    /// missing from `pmf` (the tails) goes to the escape symbol.
    pub fn from_pmf(offset: i32, pmf: &[f64]) -> Result<Self> {
        Self::from_frequencies(offset, &quantize_pmf(pmf))
    }

    /// Ideal code length of `value` in bits (an escaped value: the escape symbol plus its tail),
    /// for an encoder choosing between tables; never used to report a rate.
    pub fn cost_bits(&self, value: i32) -> f64 {
        let rel = value as i64 - self.offset as i64;
        if (0..self.n as i64).contains(&rel) {
            return self.costs[rel as usize] as f64;
        }
        let dist = if rel < 0 { -rel } else { rel - self.n as i64 + 1 } as u64;
        let bits = 64 - dist.leading_zeros();
        self.costs[self.n as usize] as f64 + 1.0 + (MAX_TAIL_BITS as f64 + 1.0).log2() + (bits - 1) as f64
    }

    pub fn offset(&self) -> i32 {
        self.offset
    }

    pub fn len(&self) -> usize {
        self.n as usize
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
}

/// Turns a pmf (whose missing mass becomes the escape symbol) into frequencies that are all at
/// least 1 and sum to exactly `1 << PRECISION`. Pure integer/f64 arithmetic in a fixed order,
/// so the result is the same on every machine for the same input.
pub fn quantize_pmf(pmf: &[f64]) -> Vec<u32> {
    let n = pmf.len() + 1;
    assert!((n as u64) < TOTAL / 2, "table too large for {PRECISION}-bit precision");
    let tail = (1.0 - pmf.iter().sum::<f64>()).max(0.0);
    let spare = (TOTAL - n as u64) as f64; // every symbol gets 1 for free
    let mut freqs: Vec<u32> = pmf.iter().chain(std::iter::once(&tail)).map(|&p| 1 + (p.clamp(0.0, 1.0) * spare).round() as u32).collect();
    // Fix the rounding error on the most probable symbol(s).
    let mut sum: i64 = freqs.iter().map(|&f| f as i64).sum();
    while sum != TOTAL as i64 {
        let (imax, _) = freqs.iter().enumerate().max_by_key(|(i, f)| (**f, usize::MAX - i)).unwrap();
        if sum > TOTAL as i64 {
            let take = (sum - TOTAL as i64).min(freqs[imax] as i64 - 1);
            freqs[imax] -= take as u32;
            sum -= take;
        } else {
            freqs[imax] += (TOTAL as i64 - sum) as u32;
            sum = TOTAL as i64;
        }
    }
    freqs
}

/// Encodes symbols in order into one range-coded substream.
pub struct SymbolEncoder {
    inner: DefaultRangeEncoder,
}

impl Default for SymbolEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl SymbolEncoder {
    pub fn new() -> Self {
        Self { inner: DefaultRangeEncoder::new() }
    }

    pub fn encode(&mut self, value: i32, table: &CdfTable) -> Result<()> {
        let rel = value as i64 - table.offset as i64;
        if (0..table.n as i64).contains(&rel) {
            self.inner.encode_symbol(rel as usize, &table.model).map_err(coder_err)?;
            return Ok(());
        }
        self.inner.encode_symbol(table.n as usize, &table.model).map_err(coder_err)?;
        // Distance past the nearest end of the range (>= 1), plus which side.
        let (above, dist) = if rel < 0 { (0usize, (-rel) as u64) } else { (1usize, (rel - table.n as i64 + 1) as u64) };
        self.encode_uniform(above, 2)?;
        let bits = 64 - dist.leading_zeros();
        self.encode_uniform(bits as usize, MAX_TAIL_BITS as usize + 1)?;
        // The leading 1 bit is implicit; the rest goes out in 8-bit chunks, low first.
        let mut rest = dist & !(1u64 << (bits - 1));
        let mut left = bits - 1;
        while left > 0 {
            let take = left.min(CHUNK_BITS);
            self.encode_uniform((rest & ((1 << take) - 1)) as usize, 1 << take)?;
            rest >>= take;
            left -= take;
        }
        Ok(())
    }

    fn encode_uniform(&mut self, symbol: usize, size: usize) -> Result<()> {
        self.inner.encode_symbol(symbol, Uniform::new(size)).map_err(coder_err)
    }

    /// The coded bytes (little-endian 32-bit words).
    pub fn finish(self) -> Result<Vec<u8>> {
        let words = self.inner.into_compressed().map_err(|_| Error::Codec("range coder flush failed".into()))?;
        Ok(words.iter().flat_map(|w| w.to_le_bytes()).collect())
    }
}

/// Decodes what a [`SymbolEncoder`] wrote, with the same tables in the same order.
pub struct SymbolDecoder {
    inner: DefaultRangeDecoder,
}

impl SymbolDecoder {
    pub fn new(bytes: &[u8]) -> Result<Self> {
        if !bytes.len().is_multiple_of(4) {
            return Err(Error::Format("range-coded section length is not a multiple of 4".into()));
        }
        let words: Vec<u32> = bytes.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect();
        let inner = DefaultRangeDecoder::from_compressed(words).map_err(|_| Error::Format("corrupt range-coded section".into()))?;
        Ok(Self { inner })
    }

    pub fn decode(&mut self, table: &CdfTable) -> Result<i32> {
        let s = self.inner.decode_symbol(&table.model).map_err(decode_err)?;
        if s < table.n as usize {
            return Ok(table.offset + s as i32);
        }
        let above = self.decode_uniform(2)?;
        let bits = self.decode_uniform(MAX_TAIL_BITS as usize + 1)? as u32;
        if bits == 0 {
            return Err(Error::Format("corrupt escape code".into()));
        }
        let mut dist = 1u64 << (bits - 1);
        let (mut shift, mut left) = (0u32, bits - 1);
        while left > 0 {
            let take = left.min(CHUNK_BITS);
            dist |= (self.decode_uniform(1 << take)? as u64) << shift;
            shift += take;
            left -= take;
        }
        let value = if above == 1 { table.offset as i64 + table.n as i64 - 1 + dist as i64 } else { table.offset as i64 - dist as i64 };
        i32::try_from(value).map_err(|_| Error::Format("escaped value out of range".into()))
    }

    fn decode_uniform(&mut self, size: usize) -> Result<usize> {
        self.inner.decode_symbol(Uniform::new(size)).map_err(decode_err)
    }
}

fn coder_err<E: std::fmt::Debug>(e: E) -> Error {
    Error::Codec(format!("range encoder: {e:?}"))
}

fn decode_err<E: std::fmt::Debug>(e: E) -> Error {
    Error::Format(format!("corrupt range-coded data: {e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaussian_table() -> CdfTable {
        let pmf: Vec<f64> = (-5..=5).map(|v: i32| (-(v * v) as f64 / 4.0).exp() / 3.5449).collect();
        CdfTable::from_pmf(-5, &pmf).unwrap()
    }

    #[test]
    fn quantized_pmf_is_valid() {
        for pmf in [vec![1.0], vec![0.5, 0.5], vec![1e-12; 300], vec![0.999999, 1e-9, 0.0]] {
            let f = quantize_pmf(&pmf);
            assert_eq!(f.len(), pmf.len() + 1);
            assert!(f.iter().all(|&x| x >= 1));
            assert_eq!(f.iter().map(|&x| x as u64).sum::<u64>(), TOTAL);
        }
    }

    #[test]
    fn round_trip_including_escapes() {
        let t = gaussian_table();
        let values = [0, 1, -1, 5, -5, 6, -6, 100, -100, 70000, i32::MAX, i32::MIN, 3, 0];
        let mut enc = SymbolEncoder::new();
        for &v in &values {
            enc.encode(v, &t).unwrap();
        }
        let bytes = enc.finish().unwrap();
        let mut dec = SymbolDecoder::new(&bytes).unwrap();
        for &v in &values {
            assert_eq!(dec.decode(&t).unwrap(), v);
        }
    }

    #[test]
    fn rejects_bad_tables() {
        assert!(CdfTable::from_frequencies(0, &[0, 65536]).is_err());
        assert!(CdfTable::from_frequencies(0, &[1, 2]).is_err());
        assert!(CdfTable::from_frequencies(0, &[65535]).is_err());
    }

    #[test]
    fn garbage_never_panics() {
        let t = gaussian_table();
        for seed in 0..64u32 {
            let bytes: Vec<u8> = (0..64u32).map(|i| (i.wrapping_mul(2654435761).wrapping_add(seed * 77) >> 13) as u8).collect();
            if let Ok(mut dec) = SymbolDecoder::new(&bytes) {
                for _ in 0..200 {
                    let _ = dec.decode(&t);
                }
            }
        }
    }
}
