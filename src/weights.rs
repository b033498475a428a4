//! The `.ncw` weight file: model structure, parameters (fp16 or fp32) and the integer
//! entropy-coding tables, identified by its SHA-256 digest.
//!
//! ```text
//!  "NCW1" | u32 header length | header (JSON: ModelConfig, dtype)
//!  | u32 tensor count | per tensor: u8 rank, u32 dims[rank], values (f16/f32 LE)
//!  | u32 channels | per channel: f32 median, i32 offset, u32 n, u32 freqs[n]
//!  [ | VQ models: "VQP1" prior tables (see `models::vq::priors_to_bytes`) ]
//! ```
//! Parameters are stored in the module's visit order; loading checks every shape.

use std::path::Path;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;
use half::f16;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::bytes::Reader;
use crate::entropy::BottleneckTables;
use crate::error::{Error, Result};
use crate::models::{CodingTables, ImageModel, ModelConfig};
use crate::nn::{from_host, to_host};

const MAGIC: &[u8; 4] = b"NCW1";
/// Refuse absurd files before allocating for them.
const MAX_TENSORS: usize = 4096;
const MAX_ELEMENTS: usize = 64 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    F16,
    F32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Header {
    config: ModelConfig,
    precision: Precision,
    /// Absent in files written before it existed, and in untrained models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    provenance: Option<Provenance>,
}

/// How much training produced the weights, so `train --init-from` continues the count.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub steps: usize,
    pub seconds: f64,
}

/// A loaded model ready to code: network, integer tables and the weight digest.
pub struct LoadedModel {
    pub config: ModelConfig,
    pub model: ImageModel,
    pub tables: CodingTables,
    pub digest: [u8; 32],
    pub provenance: Option<Provenance>,
}

struct Collect(Vec<(Vec<usize>, Vec<f32>)>);

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push((param.dims().to_vec(), to_host(param.val())));
    }
}

struct Assign {
    tensors: std::vec::IntoIter<(Vec<usize>, Vec<f32>)>,
    error: Option<String>,
    /// Keep the model's own values once the file's tensors run out (see [`init_prefix`]).
    prefix: bool,
}

impl ModuleMapper for Assign {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let want = param.dims();
        match self.tensors.next() {
            Some((dims, values)) if dims == want => param.map(|t| {
                let grad = t.is_require_grad();
                let new = from_host(values, want, &t.device());
                if grad { new.require_grad() } else { new }
            }),
            Some((dims, _)) => {
                self.error.get_or_insert(format!("parameter shape {dims:?} where the model has {want:?}"));
                param
            }
            None if self.prefix => param,
            None => {
                self.error.get_or_insert("weight file has too few parameters".into());
                param
            }
        }
    }
}

/// Serializes a model and its tables. Returns the file bytes.
pub fn to_bytes(config: &ModelConfig, model: &ImageModel, tables: &CodingTables, precision: Precision) -> Vec<u8> {
    to_bytes_trained(config, model, tables, precision, None)
}

/// [`to_bytes`] recording the training that produced the weights.
pub fn to_bytes_trained(config: &ModelConfig, model: &ImageModel, tables: &CodingTables, precision: Precision, provenance: Option<Provenance>) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    let header = serde_json::to_vec(&Header { config: config.clone(), precision, provenance }).unwrap();
    put_u32(&mut out, header.len() as u32);
    out.extend_from_slice(&header);
    let mut collect = Collect(vec![]);
    model.visit(&mut collect);
    put_u32(&mut out, collect.0.len() as u32);
    for (dims, values) in &collect.0 {
        out.push(dims.len() as u8);
        for &d in dims {
            put_u32(&mut out, d as u32);
        }
        for &v in values {
            match precision {
                Precision::F16 => out.extend_from_slice(&f16::from_f32(v).to_le_bytes()),
                Precision::F32 => out.extend_from_slice(&v.to_le_bytes()),
            }
        }
    }
    let (medians, offsets, freqs) = tables.bottleneck.parts();
    put_u32(&mut out, medians.len() as u32);
    for c in 0..medians.len() {
        out.extend_from_slice(&medians[c].to_le_bytes());
        out.extend_from_slice(&offsets[c].to_le_bytes());
        put_u32(&mut out, freqs[c].len() as u32);
        for &f in &freqs[c] {
            put_u32(&mut out, f);
        }
    }
    if let Some(vq) = tables.latent.vq().filter(|v| !v.priors.is_empty()) {
        out.extend_from_slice(&crate::models::vq::priors_to_bytes(&vq.priors));
    }
    out
}

pub fn save(path: &Path, config: &ModelConfig, model: &ImageModel, tables: &CodingTables, precision: Precision) -> Result<[u8; 32]> {
    save_trained(path, config, model, tables, precision, None)
}

/// [`save`] recording the training that produced the weights.
pub fn save_trained(path: &Path, config: &ModelConfig, model: &ImageModel, tables: &CodingTables, precision: Precision, provenance: Option<Provenance>) -> Result<[u8; 32]> {
    let bytes = to_bytes_trained(config, model, tables, precision, provenance);
    crate::io::write_atomic(path, &bytes)?;
    Ok(Sha256::digest(&bytes).into())
}

pub fn load(path: &Path, device: &Device) -> Result<LoadedModel> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    from_bytes(&bytes, device).map_err(|e| Error::Format(format!("{}: {e}", path.display())))
}

/// The model configuration a weight file holds, read from its header alone (what the registry
/// needs to tell an image model from a video one before loading anything).
pub fn read_config(path: &Path) -> Result<ModelConfig> {
    use std::io::Read;
    let describe = |e: Error| Error::Format(format!("{}: {e}", path.display()));
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // Magic and header length, then the header itself: [`read_header`] parses the two together.
    let mut head = vec![0u8; 8];
    file.read_exact(&mut head).map_err(|_| describe(Error::Format("not an ncodec weight file".into())))?;
    let hlen = u32::from_le_bytes(head[4..].try_into().unwrap()) as usize;
    // Headers are a few hundred bytes of JSON; a larger length is a damaged or hostile file.
    if hlen > 1 << 20 {
        return Err(describe(Error::Format("weight header too large".into())));
    }
    head.resize(8 + hlen, 0);
    file.read_exact(&mut head[8..]).map_err(|_| describe(Error::Format("truncated weight header".into())))?;
    Ok(read_header(&mut Reader::new(&head, "weight file")).map_err(describe)?.config)
}

/// Starts `model` from another model whose parameters are a prefix of its own (a mean-scale
/// model's transforms and hyperprior inside a multi-reference model): those are copied, the
/// rest keep their initial values.
pub fn init_prefix(source: &ImageModel, model: ImageModel) -> Result<ImageModel> {
    let mut collect = Collect(vec![]);
    source.visit(&mut collect);
    let mut assign = Assign { tensors: collect.0.into_iter(), error: None, prefix: true };
    let model = model.map(&mut assign);
    match assign.error {
        Some(e) => Err(Error::Format(e)),
        None => Ok(model),
    }
}

type Tensors = Vec<(Vec<usize>, Vec<f32>)>;

/// A copy of `model` (parameters and coding tables, fp32) on `device`, through the weight
/// format itself: what moves a model between backends (e.g. onto the autodiff device).
pub fn copy_to(model: &ImageModel, config: &ModelConfig, device: &Device) -> LoadedModel {
    let bytes = to_bytes(config, model, &model.export_tables(), Precision::F32);
    from_bytes(&bytes, device).expect("a model's own serialization loads")
}

pub fn from_bytes(bytes: &[u8], device: &Device) -> Result<LoadedModel> {
    let digest: [u8; 32] = Sha256::digest(bytes).into();
    let (header, tensors, bottleneck, priors) = parse(bytes)?;
    let config = header.config;
    let mut assign = Assign { tensors: tensors.into_iter(), error: None, prefix: false };
    let model = config.init(device).map(&mut assign);
    if let Some(e) = assign.error {
        return Err(Error::Format(e));
    }
    if assign.tensors.next().is_some() {
        return Err(Error::Format("weight file has too many parameters".into()));
    }
    let mut tables = model.coding_tables(bottleneck);
    match (tables.latent.vq_mut(), priors) {
        (Some(vq), Some(priors)) => vq.set_priors(priors)?,
        (None, Some(_)) => return Err(Error::Format("VQ priors in a weight file of another model".into())),
        _ => {}
    }
    Ok(LoadedModel { config, model, tables, digest, provenance: header.provenance })
}

/// The magic and the JSON header at the start of a weight file.
fn read_header(r: &mut Reader) -> Result<Header> {
    if r.take(4)? != MAGIC {
        return Err(Error::Format("not an ncodec weight file".into()));
    }
    let hlen = r.u32_le()? as usize;
    serde_json::from_slice(r.take(hlen)?).map_err(|e| Error::Format(format!("weight header: {e}")))
}

/// Header, parameters and bottleneck tables of a weight file, all checked for sanity.
fn parse(bytes: &[u8]) -> Result<(Header, Tensors, BottleneckTables, Option<Vec<crate::models::PriorSet>>)> {
    let mut r = Reader::new(bytes, "weight file");
    let header = read_header(&mut r)?;
    let count = r.u32_le()? as usize;
    if count > MAX_TENSORS {
        return Err(Error::Format("too many tensors".into()));
    }
    let mut tensors = Vec::with_capacity(count);
    for _ in 0..count {
        let rank = r.take(1)?[0] as usize;
        let dims: Vec<usize> = (0..rank).map(|_| r.u32_le().map(|d| d as usize)).collect::<Result<_>>()?;
        let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).filter(|&n| n <= MAX_ELEMENTS);
        let n = n.ok_or_else(|| Error::Format("tensor too large".into()))?;
        let values = match header.precision {
            Precision::F16 => r.take(n * 2)?.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            Precision::F32 => r.take(n * 4)?.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
        };
        tensors.push((dims, values));
    }
    let channels = r.u32_le()? as usize;
    if channels > 1 << 16 {
        return Err(Error::Format("too many bottleneck channels".into()));
    }
    let (mut medians, mut offsets, mut freqs) = (vec![], vec![], vec![]);
    for _ in 0..channels {
        medians.push(f32::from_le_bytes(r.array()?));
        offsets.push(i32::from_le_bytes(r.array()?));
        let n = r.u32_le()? as usize;
        let f: Vec<u32> = r.take(n.checked_mul(4).ok_or_else(|| Error::Format("table too large".into()))?)?.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect();
        freqs.push(f);
    }
    let priors = if r.remaining() > 0 { Some(crate::models::vq::priors_from_reader(&mut r)?) } else { None };
    if r.remaining() != 0 {
        return Err(Error::Format("trailing bytes in weight file".into()));
    }
    header.config.check().map_err(|e| Error::Format(format!("implausible model configuration: {e}")))?;
    let bottleneck = BottleneckTables::new(medians, offsets, freqs)?;
    Ok((header, tensors, bottleneck, priors))
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}
