//! What coding needs besides the network: integer tables derived from a trained model, and
//! what compression produces.

use crate::entropy::{BottleneckTables, GaussianConditional};
use crate::error::{Error, Result};
use crate::models::multiref::IntegerContext;
use crate::models::transforms::IntegerHyperSynthesis;
use crate::models::vq::{self, Codebook, Codebooks, PriorSet, VqConfig};

/// Fixed-point parts of [`CodingTables`] that a latent codec derives from its weights.
#[derive(Default)]
pub struct IntegerParts {
    pub hyper: Option<IntegerHyperSynthesis>,
    pub context: Option<IntegerContext>,
    pub inter: Option<IntegerContext>,
    pub vq: Option<VqTables>,
}

/// Integer entropy-coding state derived from a trained model: the bottleneck tables shipped in
/// the weight file, the Gaussian tables, and the fixed-point hyper-synthesis.
#[derive(Debug, Clone)]
pub struct CodingTables {
    pub bottleneck: BottleneckTables,
    pub gaussian: GaussianConditional,
    /// Fixed-point h_s (hyperprior models only).
    pub hyper: Option<IntegerHyperSynthesis>,
    /// Fixed-point context model (multi-reference and stem models).
    pub context: Option<IntegerContext>,
    /// Fixed-point P-frame context model (stem models only).
    pub inter: Option<IntegerContext>,
    /// Run the float h_s on the device instead of the fixed-point one. Only for measuring what
    /// the integer path costs: streams coded this way decode correctly only on the same backend.
    pub float_hyper: bool,
    /// Codebooks and priors (VQ models only).
    pub vq: Option<VqTables>,
}

/// What a VQ model codes with, on the host.
#[derive(Debug, Clone)]
pub struct VqTables {
    pub config: VqConfig,
    pub books: Codebooks,
    /// Empty until learned ([`vq::fit_priors`]) or loaded from a weight file.
    pub priors: Vec<PriorSet>,
}

impl VqTables {
    /// Installs learned or loaded priors after checking they fit the codebooks.
    pub fn set_priors(&mut self, priors: Vec<PriorSet>) -> Result<()> {
        vq::check_priors(&self.config, &priors)?;
        self.priors = priors;
        Ok(())
    }

    /// The level-0 codebook, levels and priors of quality index `q`.
    pub(crate) fn preset(&self, q: usize) -> Result<(&Codebook, usize, &PriorSet)> {
        let p = self.config.presets.get(q).ok_or_else(|| Error::Format("quality out of range".into()))?;
        let set = self.priors.iter().find(|s| s.first_codes == p.codes).ok_or_else(|| Error::Codec("this VQ model has no priors (export it with `ncodec export`)".into()))?;
        Ok((self.books.first(p.codes)?, p.levels, set))
    }
}

impl CodingTables {
    /// The VQ part, which a VQ model's coding needs.
    pub(crate) fn vq_tables(&self) -> Result<&VqTables> {
        self.vq.as_ref().ok_or_else(|| Error::Codec("VQ tables are missing".into()))
    }

    /// The tables of a model: its bottleneck's and the parts its latent codec derives.
    pub fn new(bottleneck: BottleneckTables, parts: IntegerParts) -> Self {
        let IntegerParts { hyper, context, inter, vq } = parts;
        Self { bottleneck, gaussian: GaussianConditional::new(), hyper, context, inter, float_hyper: false, vq }
    }
}

/// What [`ImageModel::compress`] produces: the coded sections and the quantized latent ŷ
/// (`[M][h][w]`, before the inverse gain) that any decoder will reconstruct from them.
pub struct Compressed {
    pub sections: Vec<Vec<u8>>,
    pub y_hat: Vec<f32>,
}
