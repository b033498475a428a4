//! The video anchors and container input of a build without the `ffmpeg` feature (the lean
//! build a GPU machine runs, which has none of the system's libav* libraries).
//!
//! Same names as the ffmpeg module, so callers compile unchanged; every entry point answers
//! with an error that names the feature. The encoder and packet types cannot be constructed
//! (they hold [`Infallible`]), so the methods past the entry points are provably unreachable.

use std::convert::Infallible;
use std::path::Path;

use super::{Frame, Video};
use crate::error::{Error, Result};

fn not_built(what: &str) -> Error {
    Error::Unsupported(format!("{what} needs ffmpeg: this build has no `ffmpeg` feature (.y4m and .yuv video still work)"))
}

/// A video anchor (x264, x265); none exists in this build.
pub struct VideoAnchor {
    pub name: &'static str,
    never: Infallible,
}

pub const VIDEO_ANCHORS: [&str; 2] = ["x264", "x265"];

impl VideoAnchor {
    pub fn by_name(name: &str) -> Result<Self> {
        Err(not_built(&format!("video anchor '{name}'")))
    }

    pub fn description(&self) -> String {
        match self.never {}
    }

    pub fn settings(&self) -> Vec<u32> {
        match self.never {}
    }

    pub fn encode(&self, _video: &Video, _crf: u32) -> Result<Vec<Vec<u8>>> {
        match self.never {}
    }

    pub fn decode(&self, _packets: &[Vec<u8>], _width: usize, _height: usize, _fps: (u32, u32)) -> Result<Video> {
        match self.never {}
    }
}

/// How an encoder spends bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    Crf(u32),
    Lossless,
}

/// An opened encoder's description of its stream; none exists in this build.
pub struct Encoded(Infallible);

/// A compressed packet; none exists in this build.
pub struct Packet(Infallible);

pub fn encode_with(_video: &Video, encoder: &str, _rate: Rate, _global_header: bool) -> Result<(Encoded, Vec<Packet>)> {
    Err(not_built(encoder))
}

/// An x264/x265 encoder; none exists in this build.
pub struct StreamEncoder(Infallible);

impl StreamEncoder {
    pub fn open(_width: usize, _height: usize, _fps: (u32, u32), encoder: &str, _rate: Rate, _global_header: bool) -> Result<Self> {
        Err(not_built(&format!("writing video with {encoder}")))
    }

    pub fn push(&mut self, _f: &Frame) -> Result<()> {
        match self.0 {}
    }

    pub fn finish(self) -> Result<(Encoded, Vec<Packet>)> {
        match self.0 {}
    }
}

pub fn mux(_path: &Path, enc: &Encoded, _packets: Vec<Packet>) -> Result<()> {
    match enc.0 {}
}

pub fn decode_file(path: &Path, _max_frames: usize) -> Result<Video> {
    Err(not_built(&format!("reading {}", path.display())))
}

pub fn decode_file_within(path: &Path, max_frames: usize, _max_pixels: u64) -> Result<Video> {
    decode_file(path, max_frames)
}
