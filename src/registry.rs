//! The codec registry: from a `--codec` name or a stream's header to the family of codec that
//! handles it, and for video streams the decoder, behind one interface.
//!
//! ```text
//!  --codec NAME ─────────► family_of_name ─┐
//!  weight file ─────────► family_of_weights ┤
//!  .ncod bytes ─parse_stream─► header ─────┼─► Family::Image ─► codec::Codec (zoo weights)
//!                                          ├─► Family::Overfit ─► overfit::decode (network in the stream)
//!                                          ├─► Family::Stem  ─┐
//!                                          └─► Family::Nerv  ─┴► video_decoder ─► dyn VideoDecoder
//! ```
//!
//! Image codecs are the zoo's weight files ([`Codec`]); `stem` is a trained video codec with
//! weights in the zoo; `nerv` carries its network in the stream and needs no weights.

use std::ops::Range;
use std::path::Path;

use burn::prelude::Device;
use image::RgbImage;

use crate::codec::Codec;
use crate::container::{Container, Header, Kind};
use crate::error::{Error, Result};

/// What kind of codec a name or a stream belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Trained image codecs of the zoo (mlic, mean-scale, vq, ...).
    Image,
    /// The latent video codec: intra frames and P-frames with trained weights.
    Stem,
    /// The implicit video codec: a network fitted per video, carried in the stream.
    Nerv,
    /// The overfitted image codec: latents and a small network fitted per image, carried in
    /// the stream (no weights in the zoo).
    Overfit,
}

impl Family {
    pub fn is_video(self) -> bool {
        matches!(self, Family::Stem | Family::Nerv)
    }
}

/// The family a `--codec` name selects.
pub fn family_of_name(name: &str) -> Family {
    match name {
        crate::nerv::CODEC_NAME => Family::Nerv,
        crate::stem::CODEC_NAME => Family::Stem,
        crate::overfit::CODEC_NAME => Family::Overfit,
        _ => Family::Image,
    }
}

/// The family of the model in a weight file (its header says which architecture).
pub fn family_of_weights(path: &Path) -> Result<Family> {
    Ok(match crate::weights::read_config(path)?.architecture {
        crate::models::Architecture::Stem => Family::Stem,
        _ => Family::Image,
    })
}

/// The family of a stream: the container says image or video, the codec name which video
/// codec (every video codec but nerv is stem-like: zoo weights, intra and P-frames).
pub fn family_of_stream(h: &Header) -> Family {
    match h.kind {
        Kind::Image if h.codec == crate::overfit::CODEC_NAME => Family::Overfit,
        Kind::Image => Family::Image,
        Kind::Video if h.codec == crate::nerv::CODEC_NAME => Family::Nerv,
        Kind::Video => Family::Stem,
    }
}

/// Parses a stream and names its family; also says whether every section's checksum held. A
/// damaged stem stream still parses (its decoder finds the damaged frames and can conceal
/// them); any other damaged stream is an error here.
pub fn parse_stream(bytes: &[u8]) -> Result<(Container, Family, bool)> {
    let (c, intact) = Container::parse_lenient(bytes)?;
    let family = family_of_stream(&c.header);
    if !intact && family != Family::Stem {
        return Err(Error::Format("payload checksum mismatch (corrupt file)".into()));
    }
    Ok((c, family, intact))
}

/// What a video stream holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoInfo {
    pub width: u32,
    pub height: u32,
    pub frames: usize,
    pub fps: (u32, u32),
}

/// Frames a decoder could not decode, and why (stem, with concealment).
pub use crate::stem::Damage;

/// Decoding of a video stream, whatever its codec.
pub trait VideoDecoder {
    /// The codec's name as streams record it.
    fn name(&self) -> &str;
    /// Geometry, frame count and rate of a parsed stream.
    fn info(&self, c: &Container) -> Result<VideoInfo>;
    /// Decodes the frames in `range` (all when `None`), handing each to `sink` in order with its
    /// index. `conceal`: repeat the last good frame over damaged ones and report them, where the
    /// codec can (stem), instead of failing.
    fn decode(&self, c: &Container, range: Option<Range<usize>>, conceal: bool, sink: &mut dyn FnMut(usize, &RgbImage) -> Result<()>) -> Result<Vec<Damage>>;
}

/// The decoder of a video stream with this header: stem with the zoo's weights (or
/// `weights`), nerv from the stream alone. Errors for image streams.
pub fn video_decoder(h: &Header, weights: Option<&Path>, device: Device) -> Result<Box<dyn VideoDecoder>> {
    match family_of_stream(h) {
        Family::Image | Family::Overfit => Err(Error::Unsupported(format!("'{}' streams are images, not video", h.codec))),
        Family::Stem => Ok(Box::new(Codec::open_on(&h.codec, weights, device)?)),
        Family::Nerv => Ok(Box::new(NervDecoder(device))),
    }
}

/// A zoo codec with stem weights decodes stem streams (its weight digest must match theirs).
impl VideoDecoder for Codec {
    fn name(&self) -> &str {
        &self.name
    }

    fn info(&self, c: &Container) -> Result<VideoInfo> {
        let i = crate::stem::stream_info(c)?;
        Ok(VideoInfo { width: i.width, height: i.height, frames: i.frames, fps: i.fps })
    }

    fn decode(&self, c: &Container, range: Option<Range<usize>>, conceal: bool, sink: &mut dyn FnMut(usize, &RgbImage) -> Result<()>) -> Result<Vec<Damage>> {
        Ok(crate::stem::decode(self, c, range, conceal, sink)?.1)
    }
}

/// The nerv decoder: the network comes from the stream; the device runs it.
pub struct NervDecoder(pub Device);

impl VideoDecoder for NervDecoder {
    fn name(&self) -> &str {
        crate::nerv::CODEC_NAME
    }

    fn info(&self, c: &Container) -> Result<VideoInfo> {
        let i = crate::nerv::stream_info(c)?;
        Ok(VideoInfo { width: i.width as u32, height: i.height as u32, frames: i.frames, fps: i.fps })
    }

    fn decode(&self, c: &Container, range: Option<Range<usize>>, _conceal: bool, sink: &mut dyn FnMut(usize, &RgbImage) -> Result<()>) -> Result<Vec<Damage>> {
        let start = range.as_ref().map_or(0, |r| r.start);
        let (_, frames) = crate::nerv::decode(c, range, &self.0)?;
        for (k, frame) in frames.iter().enumerate() {
            sink(start + k, frame)?;
        }
        Ok(vec![])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(kind: Kind, codec: &str) -> Container {
        let header = Header { kind, codec: codec.into(), weights_digest: [0; 8], quality: 1, width: 8, height: 8 };
        Container { header, sections: vec![vec![1, 2, 3], vec![4, 5]] }
    }

    #[test]
    fn names_and_headers_map_to_their_families() {
        assert_eq!(family_of_name("nerv"), Family::Nerv);
        assert_eq!(family_of_name("stem"), Family::Stem);
        assert_eq!(family_of_name("mlic"), Family::Image);
        assert_eq!(family_of_name("overfit"), Family::Overfit);
        assert_eq!(family_of_stream(&stream(Kind::Image, "overfit").header), Family::Overfit);
        assert!(!Family::Overfit.is_video());
        assert_eq!(family_of_stream(&stream(Kind::Video, "nerv").header), Family::Nerv);
        // A video stream of another trained codec is stem-like; an image stream named like a
        // video codec is still an image.
        assert_eq!(family_of_stream(&stream(Kind::Video, "stem-small").header), Family::Stem);
        assert_eq!(family_of_stream(&stream(Kind::Image, "stem").header), Family::Image);
        assert!(video_decoder(&stream(Kind::Image, "mlic").header, None, crate::backend::device()).is_err());
    }

    #[test]
    fn weight_files_name_their_family_from_the_header() {
        use crate::models::{Architecture, ModelConfig};
        let dir = std::env::temp_dir().join(format!("ncodec-registry-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let device = crate::backend::device();
        for (arch, family) in [(Architecture::MeanScaleHyperprior, Family::Image), (Architecture::Stem, Family::Stem)] {
            let config = ModelConfig { architecture: arch, n: 8, m: 12, lambdas: vec![0.01], vq: None, transforms: Default::default() };
            let model = config.init(&device);
            let path = dir.join(format!("{}.ncw", arch.name()));
            crate::weights::save(&path, &config, &model, &model.export_tables(), crate::weights::Precision::F16).unwrap();
            assert_eq!(family_of_weights(&path).unwrap(), family);
            // A header longer than the file, and a file of something else, are errors.
            let mut bytes = std::fs::read(&path).unwrap();
            bytes.truncate(20);
            std::fs::write(&path, &bytes).unwrap();
            assert!(family_of_weights(&path).is_err());
            std::fs::write(&path, b"not weights at all").unwrap();
            assert!(family_of_weights(&path).is_err());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_stem_streams_parse_with_a_damaged_payload() {
        for (kind, codec, parses) in [(Kind::Image, "mlic", false), (Kind::Video, "nerv", false), (Kind::Video, "stem", true)] {
            let mut bytes = stream(kind, codec).to_bytes();
            assert_eq!(parse_stream(&bytes).unwrap().1, family_of_stream(&stream(kind, codec).header));
            *bytes.last_mut().unwrap() ^= 0xff;
            let parsed = parse_stream(&bytes);
            assert_eq!(parsed.is_ok(), parses, "{codec}");
            if let Ok((_, _, intact)) = parsed {
                assert!(!intact);
            }
        }
    }
}
