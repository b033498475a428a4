//! ncodec: learned image and video codecs with real bitstreams.
//!
//! The core (always built): the container, weight files, entropy coding, latent codecs and
//! models, the image codecs ([`Codec`]), the video codecs (`stem`, `nerv`) and video I/O.
//! With the `tools` feature (on by default): training, shipping, benchmarking, crosscheck,
//! dataset downloads and the command-line helpers the binaries are made of.

pub mod backend;
pub mod bdrate;
pub mod bytes;
pub mod codec;
pub mod container;
pub mod entropy;
pub mod error;
// Fuzz entry points run the codecs on the CPU backend.
#[cfg(feature = "flex")]
pub mod fuzzing;
pub mod io;
pub mod limits;
pub mod manifest;
pub mod metrics;
pub mod models;
pub mod nerv;
pub mod nn;
pub mod overfit;
pub mod refine;
pub mod registry;
pub mod stem;
pub mod synthetic;
pub mod video;
pub mod weights;

#[cfg(feature = "tools")]
pub mod bench;
#[cfg(feature = "tools")]
pub mod cli;
#[cfg(feature = "tools")]
pub mod crosscheck;
#[cfg(feature = "tools")]
pub mod data;
#[cfg(feature = "tools")]
pub mod fetch;
#[cfg(feature = "tools")]
pub mod ship;
#[cfg(feature = "tools")]
pub mod train;

pub use codec::{Codec, decode_image, encode_image};
pub use error::{Error, Result};
