//! The image anchors of a build without the `anchors` feature (the lean GPU build): the
//! names are known, and asking for one says which feature brings it.

use super::RdCodec;
use crate::error::{Error, Result};

/// The anchors `ncodec bench` knows, by name.
pub const ANCHORS: [&str; 3] = ["jpeg", "webp", "avif"];

pub fn by_name(name: &str) -> Result<Box<dyn RdCodec>> {
    Err(Error::Unsupported(format!("anchor '{name}': this build has no `anchors` feature (mozjpeg, libwebp, rav1e/dav1d)")))
}
