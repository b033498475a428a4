//! Dataset manifests (`datasets/<name>.toml`): the files of a test set with their SHA-256, so
//! a local copy is checked before any number is measured on it.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub name: String,
    pub kind: String,
    pub count: usize,
    pub base_url: String,
    pub geometry: String,
    pub files: Vec<ManifestFile>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ManifestFile {
    pub name: String,
    pub sha256: String,
}

/// Manifests compiled into the binary, so an installed `ncodec` needs no source tree.
const BUILTIN: [(&str, &str); 1] = [("kodak", include_str!("../datasets/kodak.toml"))];

impl Manifest {
    pub fn builtin(name: &str) -> Result<Self> {
        let (_, text) = BUILTIN
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| Error::Unsupported(format!("unknown dataset '{name}' (known: kodak, or pass --dataset folder)")))?;
        toml::from_str(text).map_err(|e| Error::Format(format!("manifest {name}: {e}")))
    }

    /// The manifest's files inside `dir`, in manifest order, each checked against its digest.
    pub fn verify(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        let mut out = Vec::with_capacity(self.files.len());
        for f in &self.files {
            let path = dir.join(&f.name);
            let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            let got = crate::codec::hex(&Sha256::digest(&bytes));
            if got != f.sha256 {
                return Err(Error::Format(format!("{}: SHA-256 {got} does not match the {} manifest ({})", path.display(), self.name, f.sha256)));
            }
            out.push(path);
        }
        Ok(out)
    }
}
