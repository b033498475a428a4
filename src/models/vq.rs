//! Residual vector quantization of the latent: the `vq` codec, for the extreme-low-rate regime
//! where scalar quantization blurs (McQuic, Zhu 2022; "Extreme image compression using
//! fine-tuned VQGANs", Mao 2023).
//!
//! ```text
//!  y = g_a(x)   [M, h, w]: one M-dim vector per 16x16 block of pixels
//!     │  level 0: k₀ = argmin ‖y − C₀[k]‖²            C₀: K codes, or at the lowest rates a
//!     │  level l: k_l = argmin ‖r_l − C_l[k]‖²        k-means-reduced C₀' of K' < K codes
//!     │           r_{l+1} = r_l − C_l[k_l]
//!     ▼  ŷ = Σ_{l < L_q} C_l[k_l]                      preset q uses its first L_q levels
//!  indices ──categorical priors (integer tables)──► range coder ──► bytes
//!     pass 0   level 0, checkerboard anchors     p(k₀)
//!     pass 1   level 0, the other positions      p(k₀ | k₀ of the left, else upper, anchor)
//!     pass 1+l level l ≥ 1, every position       p(k_l | k_{l−1} at the same position)
//!  ŷ ──g_s──► x̂
//! ```
//! Within a pass every symbol's context comes from earlier passes, so a pass decodes all its
//! positions independently (no raster-scan chain). The priors are count tables learned on the
//! training latents (maximum likelihood, smoothed towards the marginal with a strength chosen
//! on held-out images) and ship as integer frequencies: entropy decoding is integer-only and
//! identical on every machine; only g_s runs in float.

use burn::module::Param;
use burn::prelude::*;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::bytes::Reader;
use crate::entropy::coder::quantize_pmf;
use crate::entropy::{CdfTable, SymbolDecoder, SymbolEncoder};
use crate::error::{Error, Result};
use crate::nn::{from_host, to_host};

/// One rate point: how many residual levels are coded, and the size of the level-0 codebook
/// (the full `codes`, or a k-means reduction of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VqPreset {
    pub levels: usize,
    pub codes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VqConfig {
    /// Residual levels trained.
    pub levels: usize,
    /// Codes per level.
    pub codes: usize,
    /// Quality levels (`-q 1..`), lowest rate first.
    pub presets: Vec<VqPreset>,
}

impl VqConfig {
    /// `levels` levels of `codes` codes; presets: one level of a codebook reduced to `codes`/8,
    /// then 1, 2, … `levels` full levels.
    pub fn with(levels: usize, codes: usize) -> Self {
        let mut presets = vec![];
        if codes / 8 >= 2 {
            presets.push(VqPreset { levels: 1, codes: codes / 8 });
        }
        presets.extend((1..=levels).map(|l| VqPreset { levels: l, codes }));
        Self { levels, codes, presets }
    }

    pub fn check(&self) -> Result<()> {
        if !(1..=16).contains(&self.levels) || !(2..=4096).contains(&self.codes) {
            return Err(Error::Unsupported("VQ needs 1 to 16 levels of 2 to 4096 codes".into()));
        }
        if self.presets.is_empty() || self.presets.len() > 255 {
            return Err(Error::Unsupported("VQ needs 1 to 255 presets".into()));
        }
        for p in &self.presets {
            if !(1..=self.levels).contains(&p.levels) || !(2..=self.codes).contains(&p.codes) {
                return Err(Error::Unsupported(format!("VQ preset {p:?} outside {} levels of {} codes", self.levels, self.codes)));
            }
            // Finer levels were trained on the residuals of the full level-0 codebook.
            if p.codes < self.codes && p.levels != 1 {
                return Err(Error::Unsupported(format!("VQ preset {p:?}: a reduced level-0 codebook only codes one level")));
            }
        }
        Ok(())
    }

    /// Sizes of the reduced level-0 codebooks, ascending: one parameter tensor each.
    pub fn reduced_sizes(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.presets.iter().map(|p| p.codes).filter(|&c| c < self.codes).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// One prior set per distinct level-0 size: (level-0 codes, levels it must cover).
    pub fn prior_sets(&self) -> Vec<(usize, usize)> {
        let mut sizes: Vec<usize> = self.presets.iter().map(|p| p.codes).collect();
        sizes.sort_unstable();
        sizes.dedup();
        sizes.into_iter().map(|c| (c, self.presets.iter().filter(|p| p.codes == c).map(|p| p.levels).max().unwrap())).collect()
    }
}

/// The codebooks as model parameters (so they load, save and checkpoint like any weight).
/// Training updates them by EMA on the host, never by gradient.
#[derive(Module, Debug)]
pub struct VqLatent {
    /// `[levels, codes, M]`.
    codebooks: Param<Tensor<3>>,
    /// One `[K', M]` per [`VqConfig::reduced_sizes`] entry.
    reduced: Vec<Param<Tensor<2>>>,
    #[module(skip)]
    config: VqConfig,
}

impl VqLatent {
    pub fn new(cfg: &VqConfig, m: usize, device: &Device) -> Self {
        let normal = burn::tensor::Distribution::Normal(0.0, 1.0);
        let codebooks = Param::from_tensor(Tensor::<3>::random([cfg.levels, cfg.codes, m], normal, device));
        let reduced = cfg.reduced_sizes().into_iter().map(|k| Param::from_tensor(Tensor::<2>::random([k, m], normal, device))).collect();
        Self { codebooks, reduced, config: cfg.clone() }
    }

    pub fn config(&self) -> &VqConfig {
        &self.config
    }

    /// M, the dimension of the code vectors.
    pub fn dim(&self) -> usize {
        self.codebooks.dims()[2]
    }

    /// The codebooks as host values.
    pub fn host(&self) -> Codebooks {
        let [l, k, m] = self.codebooks.dims();
        let all = to_host(self.codebooks.val());
        let levels = (0..l).map(|i| Codebook::new(m, all[i * k * m..(i + 1) * k * m].to_vec())).collect();
        let reduced = self.reduced.iter().map(|p| Codebook::new(m, to_host(p.val()))).collect();
        Codebooks { levels, reduced }
    }

    /// These parameters with the values of `books` (same shapes).
    pub fn with_host(mut self, books: &Codebooks) -> Self {
        let [l, k, m] = self.codebooks.dims();
        let flat: Vec<f32> = books.levels.iter().flat_map(|c| c.codes.iter().copied()).collect();
        assert_eq!(flat.len(), l * k * m, "codebook shapes");
        self.codebooks = self.codebooks.map(|t| from_host(flat, [l, k, m], &t.device()));
        self.reduced = self.reduced.into_iter().zip(&books.reduced).map(|(p, c)| p.map(|t| from_host(c.codes.clone(), t.dims(), &t.device()))).collect();
        self
    }
}

/// One codebook: `len()` codes of `dim` values, row-major.
#[derive(Debug, Clone)]
pub struct Codebook {
    pub dim: usize,
    pub codes: Vec<f32>,
    /// ½‖c‖² per code: nearest = argmax (v·c − ½‖c‖²).
    half_norms: Vec<f32>,
}

impl Codebook {
    pub fn new(dim: usize, codes: Vec<f32>) -> Self {
        let half_norms = codes.chunks_exact(dim).map(|c| 0.5 * c.iter().map(|v| v * v).sum::<f32>()).collect();
        Self { dim, codes, half_norms }
    }

    pub fn len(&self) -> usize {
        self.half_norms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.half_norms.is_empty()
    }

    pub fn code(&self, k: usize) -> &[f32] {
        &self.codes[k * self.dim..(k + 1) * self.dim]
    }

    /// Index of the code nearest to `v` (ties: the lowest index).
    pub fn nearest(&self, v: &[f32]) -> u32 {
        let mut best = (f32::NEG_INFINITY, 0u32);
        for (k, c) in self.codes.chunks_exact(self.dim).enumerate() {
            let s = dot(v, c) - self.half_norms[k];
            if s > best.0 {
                best = (s, k as u32);
            }
        }
        best.1
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight partial sums: lets the compiler vectorize without reassociation flags.
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + ra.iter().zip(rb).map(|(x, y)| x * y).sum::<f32>()
}

/// Every codebook of a model, on the host.
#[derive(Debug, Clone)]
pub struct Codebooks {
    /// The trained residual levels (full size).
    pub levels: Vec<Codebook>,
    /// Reduced level-0 codebooks, in [`VqConfig::reduced_sizes`] order.
    pub reduced: Vec<Codebook>,
}

impl Codebooks {
    /// The level-0 codebook with `codes` entries.
    pub fn first(&self, codes: usize) -> Result<&Codebook> {
        if self.levels.first().is_some_and(|c| c.len() == codes) {
            return Ok(&self.levels[0]);
        }
        self.reduced.iter().find(|c| c.len() == codes).ok_or_else(|| Error::Format(format!("no level-0 codebook of {codes} codes")))
    }

    /// Greedy residual quantization of `n` row-major vectors: indices `[levels][n]` and the
    /// reconstruction (row-major).
    pub fn quantize(&self, vectors: &[f32], levels: usize, first: &Codebook) -> (Vec<Vec<u32>>, Vec<f32>) {
        let dim = first.dim;
        let n = vectors.len() / dim;
        let mut idx = vec![vec![0u32; n]; levels];
        let mut recon = vec![0f32; vectors.len()];
        let per_vector: Vec<(Vec<u32>, Vec<f32>)> = vectors
            .par_chunks_exact(dim)
            .map(|v| {
                let mut r = v.to_vec();
                let mut out = vec![0f32; dim];
                let mut ks = Vec::with_capacity(levels);
                for l in 0..levels {
                    let book = if l == 0 { first } else { &self.levels[l] };
                    let k = book.nearest(&r);
                    for ((ri, oi), ci) in r.iter_mut().zip(&mut out).zip(book.code(k as usize)) {
                        *ri -= ci;
                        *oi += ci;
                    }
                    ks.push(k);
                }
                (ks, out)
            })
            .collect();
        for (i, (ks, out)) in per_vector.into_iter().enumerate() {
            for (l, k) in ks.into_iter().enumerate() {
                idx[l][i] = k;
            }
            recon[i * dim..(i + 1) * dim].copy_from_slice(&out);
        }
        (idx, recon)
    }

    /// Σ_l C_l[k_l] for every position (row-major). Indices must be in range.
    pub fn reconstruct(&self, idx: &[Vec<u32>], first: &Codebook) -> Vec<f32> {
        let dim = first.dim;
        let n = idx.first().map_or(0, |v| v.len());
        let mut out = vec![0f32; n * dim];
        for (l, ks) in idx.iter().enumerate() {
            let book = if l == 0 { first } else { &self.levels[l] };
            for (i, &k) in ks.iter().enumerate() {
                for (o, c) in out[i * dim..(i + 1) * dim].iter_mut().zip(book.code(k as usize)) {
                    *o += c;
                }
            }
        }
        out
    }
}

/// `[M][n]` planar latent → `n` row-major M-vectors.
pub fn planar_to_vectors(y: &[f32], m: usize) -> Vec<f32> {
    transpose(y, m, y.len() / m)
}

/// Inverse of [`planar_to_vectors`].
pub fn vectors_to_planar(v: &[f32], m: usize) -> Vec<f32> {
    transpose(v, v.len() / m, m)
}

/// A row-major `rows` x `cols` matrix, transposed.
fn transpose(a: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; a.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = a[r * cols + c];
        }
    }
    t
}

/// Perplexity (2^entropy of the empirical code distribution) and unused codes of one level.
pub fn usage(idx: &[u32], codes: usize) -> (f64, usize) {
    let mut counts = vec![0u64; codes];
    for &k in idx {
        counts[k as usize] += 1;
    }
    let n = idx.len().max(1) as f64;
    let h: f64 = counts.iter().filter(|&&c| c > 0).map(|&c| -(c as f64 / n) * (c as f64 / n).log2()).sum();
    (h.exp2(), counts.iter().filter(|&&c| c == 0).count())
}

// ---------------------------------------------------------------------------------------------
// Priors

/// One categorical table per context: `contexts` x (`symbols` + escape) frequencies.
#[derive(Debug, Clone)]
pub struct ContextTables {
    pub symbols: usize,
    freqs: Vec<u16>,
    tables: Vec<CdfTable>,
}

impl ContextTables {
    fn from_freqs(contexts: usize, symbols: usize, freqs: Vec<u16>) -> Result<Self> {
        if freqs.len() != contexts * (symbols + 1) {
            return Err(Error::Format("VQ prior table has the wrong size".into()));
        }
        let tables = freqs.chunks_exact(symbols + 1).map(|f| CdfTable::from_frequencies(0, &f.iter().map(|&v| v as u32).collect::<Vec<_>>())).collect::<Result<_>>()?;
        Ok(Self { symbols, freqs, tables })
    }

    pub fn contexts(&self) -> usize {
        self.tables.len()
    }
}

/// The priors for one level-0 codebook size: passes `[anchors, non-anchors, level 1, ...]`.
#[derive(Debug, Clone)]
pub struct PriorSet {
    pub first_codes: usize,
    pub passes: Vec<ContextTables>,
}

impl PriorSet {
    /// Levels these priors can code.
    pub fn levels(&self) -> usize {
        self.passes.len() - 1
    }
}

/// Uniform priors for every preset of `cfg` (tests and fuzzing: a valid, untrained model).
pub fn flat_priors(cfg: &VqConfig) -> Vec<PriorSet> {
    let table = |contexts: usize, symbols: usize| {
        let freqs = quantize_pmf(&vec![1.0 / symbols as f64; symbols]).into_iter().map(|f| f as u16);
        ContextTables::from_freqs(contexts, symbols, freqs.collect::<Vec<_>>().repeat(contexts)).expect("uniform tables are valid")
    };
    cfg.prior_sets()
        .into_iter()
        .map(|(first, levels)| {
            let mut passes = vec![table(1, first), table(first, first)];
            let mut prev = first;
            for _ in 1..levels {
                passes.push(table(prev, cfg.codes));
                prev = cfg.codes;
            }
            PriorSet { first_codes: first, passes }
        })
        .collect()
}

const PRIOR_MAGIC: &[u8; 4] = b"VQP1";
const MAX_PRIOR_CELLS: usize = 1 << 24;

/// Serializes prior sets (the trailing block of a VQ weight file).
pub fn priors_to_bytes(sets: &[PriorSet]) -> Vec<u8> {
    let mut out = PRIOR_MAGIC.to_vec();
    let put = |out: &mut Vec<u8>, v: usize| out.extend_from_slice(&(v as u32).to_le_bytes());
    put(&mut out, sets.len());
    for s in sets {
        put(&mut out, s.first_codes);
        put(&mut out, s.passes.len());
        for p in &s.passes {
            put(&mut out, p.contexts());
            put(&mut out, p.symbols);
            out.extend(p.freqs.iter().flat_map(|f| f.to_le_bytes()));
        }
    }
    out
}

/// Reads what [`priors_to_bytes`] wrote, checking every size before allocating.
pub fn priors_from_reader(r: &mut Reader) -> Result<Vec<PriorSet>> {
    if r.take(4)? != PRIOR_MAGIC {
        return Err(Error::Format("not a VQ prior block".into()));
    }
    let count = r.u32_le()? as usize;
    if count > 255 {
        return Err(Error::Format("too many VQ prior sets".into()));
    }
    let mut sets = Vec::with_capacity(count);
    let mut cells = 0usize;
    for _ in 0..count {
        let first_codes = r.u32_le()? as usize;
        let npass = r.u32_le()? as usize;
        if !(2..=17).contains(&npass) {
            return Err(Error::Format("VQ prior set with an implausible number of passes".into()));
        }
        let mut passes = Vec::with_capacity(npass);
        for _ in 0..npass {
            let (contexts, symbols) = (r.u32_le()? as usize, r.u32_le()? as usize);
            cells = contexts.checked_mul(symbols + 1).and_then(|c| c.checked_add(cells)).filter(|&c| c <= MAX_PRIOR_CELLS).ok_or_else(|| Error::Format("VQ prior tables too large".into()))?;
            let freqs = r.take(contexts * (symbols + 1) * 2)?.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
            passes.push(ContextTables::from_freqs(contexts, symbols, freqs)?);
        }
        sets.push(PriorSet { first_codes, passes });
    }
    Ok(sets)
}

/// Checks that prior sets fit the codebooks of `cfg`: every preset has its set, and every
/// pass's contexts are the previous level's codes (so no decoded index can leave a table).
pub fn check_priors(cfg: &VqConfig, sets: &[PriorSet]) -> Result<()> {
    for (codes, levels) in cfg.prior_sets() {
        let s = sets.iter().find(|s| s.first_codes == codes).ok_or_else(|| Error::Format(format!("no VQ priors for {codes} level-0 codes")))?;
        if s.levels() < levels {
            return Err(Error::Format("VQ priors cover too few levels".into()));
        }
    }
    for s in sets {
        let p = &s.passes;
        let ok = p[0].contexts() == 1
            && p[0].symbols == s.first_codes
            && p[1].contexts() == s.first_codes
            && p[1].symbols == s.first_codes
            && (2..p.len()).all(|i| p[i].symbols == cfg.codes && p[i].contexts() == p[i - 1].symbols)
            && s.levels() <= cfg.levels;
        if !ok {
            return Err(Error::Format("VQ prior tables do not match the codebooks".into()));
        }
    }
    Ok(())
}

/// The range coder seen from [`code_indices`]: encoding reads a symbol, decoding writes it.
pub trait IndexIo {
    fn symbol(&mut self, value: &mut u32, table: &CdfTable) -> Result<()>;
}

pub struct Encode<'a>(pub &'a mut SymbolEncoder);
pub struct Decode<'a>(pub &'a mut SymbolDecoder);

impl IndexIo for Encode<'_> {
    fn symbol(&mut self, value: &mut u32, table: &CdfTable) -> Result<()> {
        self.0.encode(*value as i32, table)
    }
}

impl IndexIo for Decode<'_> {
    fn symbol(&mut self, value: &mut u32, table: &CdfTable) -> Result<()> {
        let v = self.0.decode(table)?;
        if v < 0 || v as usize >= table.len() {
            return Err(Error::Format("code index out of range".into()));
        }
        *value = v as u32;
        Ok(())
    }
}

/// Codes `idx` (`[levels][h·w]`) in the pass order of the module diagram.
pub fn code_indices(idx: &mut [Vec<u32>], h: usize, w: usize, set: &PriorSet, io: &mut impl IndexIo) -> Result<()> {
    for_each_symbol(idx, h, w, set, |value, table| io.symbol(value, table))
}

/// Calls `f(symbol, its table)` for every symbol in coding order.
fn for_each_symbol(idx: &mut [Vec<u32>], h: usize, w: usize, set: &PriorSet, mut f: impl FnMut(&mut u32, &CdfTable) -> Result<()>) -> Result<()> {
    if idx.len() > set.levels() {
        return Err(Error::Format("more VQ levels than priors".into()));
    }
    let Some((first, finer)) = idx.split_first_mut() else { return Ok(()) };
    for anchor in [true, false] {
        for i in 0..h {
            for j in 0..w {
                if ((i + j) % 2 == 0) != anchor {
                    continue;
                }
                let table = if anchor {
                    &set.passes[0].tables[0]
                } else {
                    let ctx = if j > 0 { first[i * w + j - 1] } else { first[(i - 1) * w + j] };
                    &set.passes[1].tables[ctx as usize]
                };
                f(&mut first[i * w + j], table)?;
            }
        }
    }
    let mut prev: &[u32] = first;
    for (l, ks) in finer.iter_mut().enumerate() {
        let pass = &set.passes[2 + l];
        for (k, &ctx) in ks.iter_mut().zip(prev) {
            f(k, &pass.tables[ctx as usize])?;
        }
        prev = ks;
    }
    Ok(())
}

/// Occurrence counts per pass, context and symbol (what [`fit_priors`] learns from).
struct Counts {
    passes: Vec<(usize, usize, Vec<u64>)>,
}

impl Counts {
    fn new(shapes: &[(usize, usize)]) -> Self {
        Self { passes: shapes.iter().map(|&(c, s)| (c, s, vec![0u64; c * s])).collect() }
    }

    /// Walks `idx` like the coder does and counts (context, symbol) per pass.
    fn count(&mut self, idx: &[Vec<u32>], h: usize, w: usize) {
        let (first, finer) = idx.split_first().unwrap();
        for i in 0..h {
            for j in 0..w {
                let k = first[i * w + j] as usize;
                if (i + j) % 2 == 0 {
                    self.passes[0].2[k] += 1;
                } else {
                    let ctx = if j > 0 { first[i * w + j - 1] } else { first[(i - 1) * w + j] } as usize;
                    let s = self.passes[1].1;
                    self.passes[1].2[ctx * s + k] += 1;
                }
            }
        }
        let mut prev: &[u32] = first;
        for (l, ks) in finer.iter().enumerate() {
            let s = self.passes[2 + l].1;
            for (&k, &ctx) in ks.iter().zip(prev) {
                self.passes[2 + l].2[ctx as usize * s + k as usize] += 1;
            }
            prev = ks;
        }
    }
}

/// Smoothing strengths tried on held-out images (pseudo-counts spread like the marginal).
const ALPHAS: [f64; 7] = [0.5, 2.0, 8.0, 32.0, 128.0, 512.0, 2048.0];

/// Learns the priors of every preset from training latents (`(h, w, [M][h][w])`): counts on
/// nine images in ten, picks each pass's smoothing on the tenth, then counts everything.
/// Returns the sets and, per set and pass, the held-out bits per symbol.
pub fn fit_priors(cfg: &VqConfig, books: &Codebooks, latents: &[(usize, usize, &[f32])]) -> Result<(Vec<PriorSet>, Vec<Vec<f64>>)> {
    let mut sets = vec![];
    let mut report = vec![];
    for (first_codes, levels) in cfg.prior_sets() {
        let first = books.first(first_codes)?;
        let mut shapes = vec![(1, first_codes), (first_codes, first_codes)];
        let mut prev = first_codes;
        for _ in 1..levels {
            shapes.push((prev, cfg.codes));
            prev = cfg.codes;
        }
        let (mut train, mut held) = (Counts::new(&shapes), Counts::new(&shapes));
        for (n, &(h, w, y)) in latents.iter().enumerate() {
            let m = y.len() / (h * w);
            let (idx, _) = books.quantize(&planar_to_vectors(y, m), levels, first);
            if n % 10 == 9 { held.count(&idx, h, w) } else { train.count(&idx, h, w) }
        }
        let mut passes = vec![];
        let mut bits = vec![];
        for (p, &(contexts, symbols)) in shapes.iter().enumerate() {
            let (tr, he) = (&train.passes[p].2, &held.passes[p].2);
            let marg_train = marginal(tr, symbols);
            let best = ALPHAS.iter().map(|&a| (held_out_bits(tr, &marg_train, he, contexts, symbols, a), a)).min_by(|x, y| x.0.total_cmp(&y.0)).unwrap();
            bits.push(best.0);
            let all: Vec<u64> = tr.iter().zip(he).map(|(a, b)| a + b).collect();
            let marg_all = marginal(&all, symbols);
            let freqs: Vec<u16> = (0..contexts)
                .flat_map(|c| {
                    let pmf = smoothed(&all[c * symbols..(c + 1) * symbols], &marg_all, best.1);
                    quantize_pmf(&pmf).into_iter().map(|f| u16::try_from(f).expect("a frequency below 2^16 when there are 2+ symbols"))
                })
                .collect();
            passes.push(ContextTables::from_freqs(contexts, symbols, freqs)?);
        }
        sets.push(PriorSet { first_codes, passes });
        report.push(bits);
    }
    Ok((sets, report))
}

fn marginal(counts: &[u64], symbols: usize) -> Vec<f64> {
    let mut m = vec![1.0f64; symbols];
    for (i, &c) in counts.iter().enumerate() {
        m[i % symbols] += c as f64;
    }
    let s: f64 = m.iter().sum();
    m.iter().map(|v| v / s).collect()
}

/// p(symbol | context) = (n(s) + α·p(s)) / (n + α) for one context's counts `row`, with p
/// the marginal `marg`.
fn smoothed(row: &[u64], marg: &[f64], alpha: f64) -> Vec<f64> {
    let total: f64 = row.iter().sum::<u64>() as f64 + alpha;
    row.iter().zip(marg).map(|(&n, &p)| (n as f64 + alpha * p) / total).collect()
}

/// Mean bits per held-out symbol under counts `train` (marginal `marg`) smoothed with `alpha`.
fn held_out_bits(train: &[u64], marg: &[f64], held: &[u64], contexts: usize, symbols: usize, alpha: f64) -> f64 {
    let (mut bits, mut n) = (0.0, 0u64);
    for c in 0..contexts {
        let row = &held[c * symbols..(c + 1) * symbols];
        if row.iter().all(|&v| v == 0) {
            continue;
        }
        let p = smoothed(&train[c * symbols..(c + 1) * symbols], marg, alpha);
        for (s, &k) in row.iter().enumerate() {
            if k > 0 {
                bits -= k as f64 * p[s].log2();
                n += k;
            }
        }
    }
    bits / n.max(1) as f64
}

/// k-means of `points` (row-major, `dim` wide) weighted by `weights`, from `k` distinct seeds
/// chosen by weighted k-means++ with `rng`; `iters` Lloyd iterations. An empty cluster is
/// re-seeded with the point farthest from its centre.
pub fn kmeans(points: &[f32], weights: &[f64], dim: usize, k: usize, iters: usize, rng: &mut impl rand::Rng) -> Codebook {
    let n = points.len() / dim;
    assert!(n >= k && k > 0, "k-means needs at least k points");
    let pt = |i: usize| &points[i * dim..(i + 1) * dim];
    let dist = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>();
    // k-means++ seeding.
    let mut centres: Vec<f32> = pt(rng.gen_range(0..n)).to_vec();
    let mut d2: Vec<f32> = (0..n).map(|i| dist(pt(i), &centres[..dim])).collect();
    while centres.len() < k * dim {
        let total: f64 = d2.iter().zip(weights).map(|(&d, &w)| d as f64 * w).sum();
        let pick = if total > 0.0 {
            let mut t = rng.gen_range(0.0..total);
            (0..n)
                .find(|&i| {
                    t -= d2[i] as f64 * weights[i];
                    t <= 0.0
                })
                .unwrap_or(n - 1)
        } else {
            rng.gen_range(0..n)
        };
        let c = pt(pick).to_vec();
        d2.par_iter_mut().enumerate().for_each(|(i, d)| *d = d.min(dist(&points[i * dim..(i + 1) * dim], &c)));
        centres.extend(c);
    }
    let mut book = Codebook::new(dim, centres);
    for _ in 0..iters {
        let assign: Vec<u32> = points.par_chunks_exact(dim).map(|p| book.nearest(p)).collect();
        let mut sums = vec![0f64; k * dim];
        let mut mass = vec![0f64; k];
        for (i, &a) in assign.iter().enumerate() {
            mass[a as usize] += weights[i];
            for (s, v) in sums[a as usize * dim..(a as usize + 1) * dim].iter_mut().zip(pt(i)) {
                *s += weights[i] * *v as f64;
            }
        }
        let mut codes = book.codes.clone();
        for c in 0..k {
            if mass[c] > 0.0 {
                for d in 0..dim {
                    codes[c * dim + d] = (sums[c * dim + d] / mass[c]) as f32;
                }
            } else {
                let far = (0..n)
                    .max_by(|&a, &b| {
                        let (da, db) = (dist(pt(a), book.code(assign[a] as usize)), dist(pt(b), book.code(assign[b] as usize)));
                        da.total_cmp(&db)
                    })
                    .unwrap();
                codes[c * dim..(c + 1) * dim].copy_from_slice(pt(far));
            }
        }
        book = Codebook::new(dim, codes);
    }
    book
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn random_books(m: usize, levels: usize, codes: usize, seed: u64) -> Codebooks {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        use rand::Rng;
        let levels = (0..levels).map(|l| Codebook::new(m, (0..codes * m).map(|_| rng.gen_range(-1.0..1.0) / (l + 1) as f32).collect())).collect();
        Codebooks { levels, reduced: vec![] }
    }

    #[test]
    fn nearest_is_the_true_nearest() {
        let books = random_books(8, 1, 50, 3);
        let b = &books.levels[0];
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        use rand::Rng;
        for _ in 0..200 {
            let v: Vec<f32> = (0..8).map(|_| rng.gen_range(-1.5..1.5)).collect();
            let k = b.nearest(&v) as usize;
            let d = |c: &[f32]| c.iter().zip(&v).map(|(a, b)| (a - b) * (a - b)).sum::<f32>();
            let best = (0..b.len()).map(|i| d(b.code(i))).fold(f32::INFINITY, f32::min);
            assert!(d(b.code(k)) <= best + 1e-5);
        }
    }

    #[test]
    fn more_levels_never_increase_the_error() {
        let books = random_books(6, 4, 32, 1);
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        use rand::Rng;
        let v: Vec<f32> = (0..6 * 300).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let mut last = f32::INFINITY;
        for levels in 1..=4 {
            let (idx, recon) = books.quantize(&v, levels, &books.levels[0]);
            assert_eq!(books.reconstruct(&idx, &books.levels[0]), recon);
            let err: f32 = v.iter().zip(&recon).map(|(a, b)| (a - b) * (a - b)).sum();
            assert!(err <= last + 1e-3, "{levels} levels: {err} > {last}");
            last = err;
        }
    }

    #[test]
    fn planar_round_trip() {
        let y: Vec<f32> = (0..3 * 10).map(|v| v as f32).collect();
        let v = planar_to_vectors(&y, 3);
        assert_eq!(&v[..3], &[0.0, 10.0, 20.0]);
        assert_eq!(vectors_to_planar(&v, 3), y);
    }

    #[test]
    fn kmeans_finds_separated_clusters() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        use rand::Rng;
        let centres = [[0.0f32, 0.0], [10.0, 0.0], [0.0, 10.0]];
        let pts: Vec<f32> = (0..300)
            .flat_map(|i| {
                let c = centres[i % 3];
                [c[0] + rng.gen_range(-0.5..0.5), c[1] + rng.gen_range(-0.5..0.5)]
            })
            .collect();
        let book = kmeans(&pts, &vec![1.0; 300], 2, 3, 10, &mut rng);
        for c in centres {
            let k = book.nearest(&c) as usize;
            let d: f32 = book.code(k).iter().zip(c).map(|(a, b)| (a - b).abs()).sum();
            assert!(d < 0.3, "centre {c:?} recovered as {:?}", book.code(k));
        }
    }

    #[test]
    fn priors_code_indices_round_trip_and_learn_structure() {
        let cfg = VqConfig { levels: 2, codes: 16, presets: vec![VqPreset { levels: 2, codes: 16 }] };
        let books = random_books(4, 2, 16, 5);
        // Smooth latents: neighbours share codes, so the spatial context must pay off.
        let mut lat = vec![];
        for s in 0..20 {
            let (h, w) = (6, 7);
            let mut y = vec![0f32; 4 * h * w];
            for c in 0..4 {
                for i in 0..h * w {
                    y[c * h * w + i] = ((s * 7 + c * 3 + i / 9) as f32 * 0.37).sin();
                }
            }
            lat.push((h, w, y));
        }
        let refs: Vec<(usize, usize, &[f32])> = lat.iter().map(|(h, w, y)| (*h, *w, y.as_slice())).collect();
        let (sets, bits) = fit_priors(&cfg, &books, &refs).unwrap();
        check_priors(&cfg, &sets).unwrap();
        assert_eq!(bits[0].len(), 3);
        let bytes = priors_to_bytes(&sets);
        let back = priors_from_reader(&mut Reader::new(&bytes, "t")).unwrap();
        assert_eq!(back[0].passes[1].freqs, sets[0].passes[1].freqs);
        let (h, w) = (6, 7);
        let (mut idx, _) = books.quantize(&planar_to_vectors(&lat[3].2, 4), 2, &books.levels[0]);
        let original = idx.clone();
        let mut enc = SymbolEncoder::new();
        code_indices(&mut idx, h, w, &back[0], &mut Encode(&mut enc)).unwrap();
        let bytes = enc.finish().unwrap();
        let mut got = vec![vec![0u32; h * w]; 2];
        let mut dec = SymbolDecoder::new(&bytes).unwrap();
        code_indices(&mut got, h, w, &back[0], &mut Decode(&mut dec)).unwrap();
        assert_eq!(got, original);
        // Raw indices cost 4 bits each; the learned priors must do better on such data.
        assert!((bytes.len() * 8) < 2 * h * w * 4, "{} bytes", bytes.len());
    }

    #[test]
    fn hostile_prior_blocks_are_rejected() {
        let mut bytes = PRIOR_MAGIC.to_vec();
        bytes.extend_from_slice(&1u32.to_le_bytes());
        bytes.extend_from_slice(&4u32.to_le_bytes());
        bytes.extend_from_slice(&2u32.to_le_bytes());
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(priors_from_reader(&mut Reader::new(&bytes, "t")).is_err());
    }
}
