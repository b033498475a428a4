//! Dataset manifests (`datasets/<name>.toml`): the files of a test set with their official
//! download location and SHA-256, so a local copy is checked before any number is measured on
//! it, and `ncodec fetch` can download it with resume.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub name: String,
    /// "images" or "video".
    pub kind: String,
    pub count: usize,
    /// Files are downloaded from `base_url` + file name unless they name their own `url`.
    pub base_url: String,
    pub geometry: String,
    pub files: Vec<ManifestFile>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ManifestFile {
    pub name: String,
    /// Hex SHA-256 of the file; absent where not pinned yet.
    pub sha256: Option<String>,
    pub url: Option<String>,
    /// Frames of a video sequence.
    pub frames: Option<usize>,
}

impl ManifestFile {
    pub fn url(&self, m: &Manifest) -> String {
        self.url.clone().unwrap_or_else(|| format!("{}{}", m.base_url, self.name))
    }
}

/// Manifests compiled into the binary, so an installed `ncodec` needs no source tree.
const BUILTIN: [(&str, &str); 2] = [("kodak", include_str!("../datasets/kodak.toml")), ("uvg", include_str!("../datasets/uvg.toml"))];

/// Hex SHA-256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|e| Error::io(path, e))?;
    Ok(crate::codec::hex(&h.finalize()))
}

impl Manifest {
    pub fn builtin(name: &str) -> Result<Self> {
        let (_, text) = BUILTIN.iter().find(|(n, _)| *n == name).ok_or_else(|| {
            let known: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
            Error::Unsupported(format!("unknown dataset '{name}' (known: {})", known.join(", ")))
        })?;
        Self::parse(text)
    }

    pub fn parse(text: &str) -> Result<Self> {
        let m: Self = toml::from_str(text).map_err(|e| Error::Format(format!("manifest: {e}")))?;
        if m.files.iter().any(|f| f.name.contains('/') || f.name.contains('\\') || f.name.starts_with('.')) {
            return Err(Error::Format(format!("manifest {}: file names must be plain names", m.name)));
        }
        Ok(m)
    }

    /// The manifest's files inside `dir`, in manifest order, each checked against its digest.
    pub fn verify(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        let mut out = Vec::with_capacity(self.files.len());
        for f in &self.files {
            let path = dir.join(&f.name);
            let got = sha256_file(&path)?;
            match &f.sha256 {
                Some(want) if *want != got => {
                    return Err(Error::Format(format!("{}: SHA-256 {got} does not match the {} manifest ({want})", path.display(), self.name)));
                }
                _ => out.push(path),
            }
        }
        Ok(out)
    }
}
