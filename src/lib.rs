//! ncodec: learned image codecs with real bitstreams.

pub mod backend;
pub mod bytes;
pub mod cli;
pub mod data;
pub mod entropy;
pub mod error;
pub mod fetch;
pub mod fuzzing;
pub mod io;
pub mod limits;
pub mod models;
pub mod nerv;
pub mod nn;
pub mod refine;
pub mod ship;
pub mod train;
pub mod train_stem;
pub mod train_vq;
pub mod weights;

pub use error::{Error, Result};
pub mod codec;
pub mod container;
pub mod manifest;
pub mod metrics;

pub use codec::{Codec, decode_image, encode_image};
pub mod bench;
pub mod stem;
pub mod synthetic;
pub mod video;
pub mod bdrate;
pub mod crosscheck;
