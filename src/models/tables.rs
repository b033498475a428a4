//! What coding needs besides the network: integer tables derived from a trained model, and
//! what compression produces.

use crate::entropy::{BottleneckTables, GaussianConditional};
use crate::error::{Error, Result};
use crate::models::multiref::IntegerContext;
use crate::models::transforms::IntegerHyperSynthesis;
use crate::models::vq::{self, Codebook, Codebooks, PriorSet, VqConfig};

/// The per-kind part of [`CodingTables`]: what each latent codec derives from its weights, one
/// variant per kind, so a table set holds exactly what its codec needs (a stem model's three
/// fixed-point networks, a VQ model's codebooks) and nothing it does not. One per loaded model:
/// the variants' size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum LatentTables {
    /// A factorized model codes with the bottleneck tables alone.
    Factorized,
    /// Fixed-point h_s.
    Hyperprior { hyper: IntegerHyperSynthesis },
    /// Fixed-point h_s and context model.
    MultiRef { hyper: IntegerHyperSynthesis, context: IntegerContext },
    /// Codebooks and priors.
    Vq(VqTables),
    /// The intra frame's h_s and context model, and the P-frame context model.
    Stem { hyper: IntegerHyperSynthesis, context: IntegerContext, inter: IntegerContext },
}

impl LatentTables {
    /// The fixed-point h_s of every hyperprior-based kind.
    pub fn hyper(&self) -> Option<&IntegerHyperSynthesis> {
        match self {
            LatentTables::Hyperprior { hyper } | LatentTables::MultiRef { hyper, .. } | LatentTables::Stem { hyper, .. } => Some(hyper),
            LatentTables::Factorized | LatentTables::Vq(_) => None,
        }
    }

    /// The intra context model (multi-reference and stem).
    pub fn context(&self) -> Option<&IntegerContext> {
        match self {
            LatentTables::MultiRef { context, .. } | LatentTables::Stem { context, .. } => Some(context),
            _ => None,
        }
    }

    /// The P-frame context model (stem).
    pub fn inter(&self) -> Option<&IntegerContext> {
        match self {
            LatentTables::Stem { inter, .. } => Some(inter),
            _ => None,
        }
    }

    /// The VQ part.
    pub fn vq(&self) -> Option<&VqTables> {
        match self {
            LatentTables::Vq(v) => Some(v),
            _ => None,
        }
    }

    /// The VQ part, to install priors.
    pub fn vq_mut(&mut self) -> Option<&mut VqTables> {
        match self {
            LatentTables::Vq(v) => Some(v),
            _ => None,
        }
    }
}

/// Integer entropy-coding state derived from a trained model: the bottleneck tables shipped in
/// the weight file, the Gaussian tables, and the parts its latent codec derives.
#[derive(Debug, Clone)]
pub struct CodingTables {
    pub bottleneck: BottleneckTables,
    pub gaussian: GaussianConditional,
    pub latent: LatentTables,
    /// Run the float h_s on the device instead of the fixed-point one. Only for measuring what
    /// the integer path costs: streams coded this way decode correctly only on the same backend.
    pub float_hyper: bool,
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
    /// The VQ part, which a VQ model's coding needs (tables of another model are an error).
    pub(crate) fn vq_tables(&self) -> Result<&VqTables> {
        self.latent.vq().ok_or_else(|| Error::Codec("these coding tables are not a VQ model's".into()))
    }

    /// The tables of a model: its bottleneck's and the parts its latent codec derives.
    pub fn new(bottleneck: BottleneckTables, latent: LatentTables) -> Self {
        Self { bottleneck, gaussian: GaussianConditional::new(), latent, float_hyper: false }
    }
}

/// What [`ImageModel::compress`] produces: the coded sections and the quantized latent ŷ
/// (`[M][h][w]`, before the inverse gain) that any decoder will reconstruct from them.
pub struct Compressed {
    pub sections: Vec<Vec<u8>>,
    pub y_hat: Vec<f32>,
}
