//! `stem`: the latent video codec ("Spatiotemporal Entropy Model is All You Need"). One image
//! autoencoder codes every frame; temporal redundancy is removed by the entropy model only.
//!
//! ```text
//!  frame k ──g_a──► y_k ──h_a──► z_k ──bottleneck──► z section
//!                    │            ẑ_k ──h_s (fixed point)──► hyper_k
//!                    └─ intra (k % gop == 0):  multi-reference model(y_k | hyper_k)          ─► y section
//!                       P-frame:              the same + temporal reference ŷ_{k−1} (Q12) ─► y section
//!  decoder: ŷ_k = same models, same integers ─► (LRP) ─► g_s ─► frame k;  ŷ_k is frame k+1's reference
//! ```
//! Stream (a [`Kind::Video`] container, digest of the stem weights):
//! ```text
//!  section 0:    u32 CRC-32 of the rest | version, frames, fps num, fps den, gop   (LEB128)
//!  section 1+k:  u32 CRC-32 of the rest | LEB128 z length | z bytes | y bytes       (frame k)
//! ```
//! Every section checks itself, so a damaged frame is found and reported on its own; decoding
//! can go on at the next intra frame (the P-frames between depend on the damaged one).
//! Decoding is streaming: frame k needs only the previous frame's latent, so memory does not
//! grow with the length of the video.

use std::ops::Range;

use image::RgbImage;

use crate::bytes::{Reader, put_varint};
use crate::codec::Codec;
use crate::container::{Container, Header, Kind};
use crate::error::{Error, Result};
use crate::video::Video;

pub const CODEC_NAME: &str = "stem";
pub const STREAM_VERSION: u8 = 1;
/// Frames per intra period when none is given.
pub const DEFAULT_GOP: usize = 32;

/// What section 0 says about the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    pub width: u32,
    pub height: u32,
    pub frames: usize,
    pub fps: (u32, u32),
    /// Intra period: frame k is an intra frame when k % gop == 0.
    pub gop: usize,
}

impl StreamInfo {
    pub fn is_intra(&self, k: usize) -> bool {
        k.is_multiple_of(self.gop)
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut body = vec![STREAM_VERSION];
        for v in [self.frames, self.fps.0 as usize, self.fps.1 as usize, self.gop] {
            put_varint(&mut body, v as u64);
        }
        checked(body)
    }

    fn parse(section: &[u8], header: &Header) -> Result<Self> {
        let body = verify(section).map_err(|e| Error::Format(format!("stem stream header: {e}")))?;
        let mut r = Reader::new(body, "stem stream header");
        let version = r.byte()?;
        if version != STREAM_VERSION {
            return Err(Error::Unsupported(format!("stem stream version {version} (this build reads {STREAM_VERSION})")));
        }
        let (frames, num, den, gop) = (r.varint_usize()?, r.varint_usize()?, r.varint_usize()?, r.varint_usize()?);
        if r.remaining() != 0 {
            return Err(Error::Format("stem stream header has trailing bytes".into()));
        }
        if frames == 0 || frames > crate::video::max_frames() {
            return Err(Error::Unsupported(format!("stem: {frames} frames (limit {}, raise with --max-frames)", crate::video::max_frames())));
        }
        let fps = (u32::try_from(num).unwrap_or(0), u32::try_from(den).unwrap_or(0));
        if fps.0 == 0 || fps.1 == 0 || gop == 0 {
            return Err(Error::Format("stem: bad frame rate or intra period".into()));
        }
        Ok(Self { width: header.width, height: header.height, frames, fps, gop })
    }
}

/// `body` with its CRC-32 in front.
fn checked(body: Vec<u8>) -> Vec<u8> {
    let mut out = crc32fast::hash(&body).to_le_bytes().to_vec();
    out.extend(body);
    out
}

/// The body of a section whose CRC-32 matches.
fn verify(section: &[u8]) -> Result<&[u8]> {
    let mut r = Reader::new(section, "section");
    let crc = r.u32_le()?;
    let body = &section[4..];
    if crc32fast::hash(body) != crc {
        return Err(Error::Format("checksum mismatch (damaged section)".into()));
    }
    Ok(body)
}

/// A frame's (z, y) sections packed into one section.
fn frame_section(sections: &[Vec<u8>]) -> Result<Vec<u8>> {
    let [z, y] = sections else { return Err(Error::Codec("a stem frame has two parts".into())) };
    let mut body = vec![];
    put_varint(&mut body, z.len() as u64);
    body.extend_from_slice(z);
    body.extend_from_slice(y);
    Ok(checked(body))
}

fn split_frame(section: &[u8]) -> Result<Vec<Vec<u8>>> {
    let body = verify(section)?;
    let mut r = Reader::new(body, "frame section");
    let z_len = r.varint_usize()?;
    if z_len > r.remaining() {
        return Err(Error::Format("z part longer than the section".into()));
    }
    let z = r.take(z_len)?.to_vec();
    Ok(vec![z, r.take(r.remaining())?.to_vec()])
}

/// Checks `gop` (0 = only the first frame is an intra frame).
pub fn intra_period(gop: usize, frames: usize) -> usize {
    if gop == 0 { frames.max(1) } else { gop }
}

/// Encodes `video` (all frames) at `quality` with intra period `gop` (0: first frame only).
/// `progress(k, bytes)` after each frame.
pub fn encode(codec: &Codec, video: &Video, quality: u8, gop: usize, progress: &mut dyn FnMut(usize, usize)) -> Result<Vec<u8>> {
    if !codec.is_video() {
        return Err(Error::Unsupported(format!("'{}' is not a video codec", codec.name)));
    }
    if video.frames.len() >= 1 << 16 {
        return Err(Error::Unsupported("stem streams hold at most 65535 frames".into()));
    }
    let info = StreamInfo { width: video.width as u32, height: video.height as u32, frames: video.frames.len(), fps: video.fps, gop: intra_period(gop, video.frames.len()) };
    let mut sections = vec![info.to_bytes()];
    let mut reference: Option<Vec<i32>> = None;
    for k in 0..info.frames {
        let r = if info.is_intra(k) { None } else { reference.as_deref() };
        let (parts, y_q) = codec.encode_frame(&video.rgb(k), quality, r)?;
        sections.push(frame_section(&parts)?);
        progress(k, sections.last().map_or(0, Vec::len));
        reference = Some(y_q);
    }
    let header = Header { kind: Kind::Video, codec: codec.name.clone(), weights_digest: codec.digest()[..8].try_into().unwrap(), quality, width: info.width, height: info.height };
    Ok(Container { header, sections }.to_bytes())
}

/// Stream facts of a parsed stem container.
pub fn stream_info(c: &Container) -> Result<StreamInfo> {
    if c.header.kind != Kind::Video {
        return Err(Error::Unsupported("not a video stream".into()));
    }
    let info = StreamInfo::parse(&c.sections[0], &c.header)?;
    if c.sections.len() != 1 + info.frames {
        return Err(Error::Format(format!("stem: {} sections for {} frames", c.sections.len(), info.frames)));
    }
    Ok(info)
}

/// Frames that could not be decoded, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub frames: Range<usize>,
    pub reason: String,
}

/// Decodes frames `range` (clamped to the stream) one at a time into `sink(k, frame)`.
/// Decoding starts at the intra frame at or before `range.start`.
///
/// A damaged frame (bad checksum or undecodable payload) is an error, unless `conceal`: then
/// it and the P-frames that depend on it are replaced by the last good frame (mid-grey before
/// any), decoding resumes at the next intra frame, and the damaged ranges are returned.
pub fn decode(codec: &Codec, c: &Container, range: Option<Range<usize>>, conceal: bool, sink: &mut dyn FnMut(usize, &RgbImage) -> Result<()>) -> Result<(StreamInfo, Vec<Damage>)> {
    codec.check_header(&c.header)?;
    if !codec.is_video() {
        return Err(Error::Unsupported(format!("'{}' is not a video codec", codec.name)));
    }
    let info = stream_info(c)?;
    let range = range.unwrap_or(0..info.frames);
    let range = range.start.min(info.frames)..range.end.min(info.frames);
    if range.is_empty() {
        return Err(Error::Unsupported(format!("no frames in the requested range (the stream has {})", info.frames)));
    }
    let size = (info.width, info.height);
    let first = range.start - range.start % info.gop;
    let mut reference: Option<Vec<i32>> = None;
    let mut last_good: Option<RgbImage> = None;
    let mut damage: Vec<Damage> = vec![];
    for k in first..range.end {
        let wanted = range.contains(&k);
        let decoded = if info.is_intra(k) || reference.is_some() {
            let r = if info.is_intra(k) { None } else { reference.as_deref() };
            split_frame(&c.sections[1 + k]).and_then(|parts| codec.decode_frame(&parts, c.header.quality, size, r, wanted))
        } else {
            Err(Error::Format("its reference frame is damaged".into()))
        };
        match decoded {
            Ok((img, y_q)) => {
                reference = Some(y_q);
                if let Some(img) = img {
                    sink(k, &img)?;
                    last_good = Some(img);
                }
            }
            Err(e) if !conceal => return Err(Error::Format(format!("frame {k}: {e}"))),
            Err(e) => {
                reference = None;
                match damage.last_mut() {
                    Some(d) if d.frames.end == k => d.frames.end = k + 1,
                    _ => damage.push(Damage { frames: k..k + 1, reason: e.to_string() }),
                }
                if wanted {
                    let grey = || RgbImage::from_pixel(size.0, size.1, image::Rgb([128, 128, 128]));
                    sink(k, last_good.as_ref().unwrap_or(&grey()))?;
                }
            }
        }
    }
    Ok((info, damage))
}

/// Per-frame sizes of a stem stream: (frame, intra, bytes).
pub fn frame_sizes(c: &Container) -> Result<Vec<(usize, bool, usize)>> {
    let info = stream_info(c)?;
    Ok((0..info.frames).map(|k| (k, info.is_intra(k), c.sections[1 + k].len())).collect())
}
