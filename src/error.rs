//! One error type for the library: every failure on untrusted input is an `Error`, never a panic.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("I/O error: {0}")]
    Stream(#[from] std::io::Error),
    /// Malformed or corrupt input (bitstream, weight file, table).
    #[error("invalid data: {0}")]
    Format(String),
    /// Input that is well-formed but refused (size limits, unknown codec, wrong weights).
    #[error("{0}")]
    Unsupported(String),
    #[error("image: {0}")]
    Image(String),
    /// A failure inside the codec itself (should not happen on valid input).
    #[error("codec error: {0}")]
    Codec(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}
