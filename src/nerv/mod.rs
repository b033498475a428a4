//! `nerv`: an implicit neural video codec (HNeRV decoder, NIRVANA-style groups). The
//! bitstream *is* a small network per group of frames plus per-tile embeddings; encoding is
//! fitting that network, decoding is running it.
//!
//! ```text
//!  video ──RGB frames (BT.709 limited range from YUV)──► groups of G frames
//!  group g: fit NervNet (warm start from g-1) ──quantize──► QuantGroup ──range coder──► section 1+g
//!  decoder: section 0 (geometry) ─► for each group ≤ wanted: integer-decode weights (deltas
//!           chain through earlier groups) ─► run the decoder network on that group's embeddings
//! ```
//! Rates come from the container's bytes; the stream carries everything (no weight file).

pub mod fit;
pub mod model;
pub mod stream;

use std::ops::Range;

use burn::prelude::Device;
use image::RgbImage;
use sha2::{Digest, Sha256};

pub use fit::{Event, FitOptions, GroupReport};
pub use model::NervConfig;
pub use stream::StreamInfo;

use crate::container::{Container, Header, Kind};
use crate::error::{Error, Result};
use crate::video::Video;

pub const CODEC_NAME: &str = "nerv";
/// Quality levels of `ncenc --codec nerv -q`.
pub const QUALITIES: u8 = 6;

/// Identifies the nerv stream format in the container's digest field (streams carry their
/// own weights, so there is no weight file to name).
pub fn format_digest() -> [u8; 8] {
    Sha256::digest(format!("ncodec-nerv-stream-v{}", stream::STREAM_VERSION)).as_slice()[..8].try_into().unwrap()
}

/// The network for quality `q` (1 = smallest): decoder width and embedding channels.
pub fn config_for_quality(q: u8) -> Result<NervConfig> {
    let (c0, d) = match q {
        1 => (24, 4),
        2 => (32, 6),
        3 => (44, 8),
        4 => (60, 8),
        5 => (80, 12),
        6 => (104, 16),
        _ => return Err(Error::Unsupported(format!("nerv quality {q} out of range 1..={QUALITIES}"))),
    };
    Ok(NervConfig::with_c0(64, 5, d, c0, 1.45))
}

/// Quality `q`'s parameter budget in HNeRV's balance: kernels growing with the level
/// (1, 3, 5, …) and widths shrinking by 1.2, widest first width that stays within the
/// preset's parameter count. About 3x the compute per pixel of [`config_for_quality`].
pub fn balanced_config_for_quality(q: u8) -> Result<NervConfig> {
    let base = config_for_quality(q)?;
    let budget = base.parameters();
    let make = |c0: usize| NervConfig::with_c0(base.tile, base.levels, base.embed_dim, c0, 1.2).with_growing_kernels();
    let c0 = (8..=model::MAX_WIDTH).take_while(|&c| make(c).parameters() <= budget).last().unwrap_or(8);
    Ok(make(c0))
}

/// The largest preset whose *expected* size fits `bpp` (the measured rate is what the
/// stream's bytes say). Expected: the first group's weights at `BITS_FIRST` bits each, later
/// groups' (delta-coded) weights at `BITS_LATER`, embeddings at `BITS_EMBED` — measured on
/// BasketballPass at q2 with the default fitting (170.8 kB; this model says 170.5 kB).
pub fn quality_for_bpp(bpp: f64, width: usize, height: usize, frames: usize, group: usize) -> u8 {
    const BITS_FIRST: f64 = 6.3;
    const BITS_LATER: f64 = 5.2;
    const BITS_EMBED: f64 = 4.5;
    let budget = bpp * (width * height * frames) as f64;
    let groups = frames.div_ceil(group.max(1)) as f64;
    (1..=QUALITIES)
        .rev()
        .find(|&q| {
            let cfg = config_for_quality(q).expect("preset");
            let p = cfg.parameters() as f64;
            let tiles = (width.div_ceil(cfg.tile) * height.div_ceil(cfg.tile)) as f64;
            let embeds = tiles * frames as f64 * (cfg.embed_dim * cfg.grid().pow(2)) as f64;
            p * BITS_FIRST + p * (groups - 1.0) * BITS_LATER + embeds * BITS_EMBED <= budget
        })
        .unwrap_or(1)
}

/// Fits `video` and returns the `.ncod` bytes and the per-group reports.
pub fn encode(video: &Video, quality: u8, opts: &FitOptions, device: &Device, progress: &mut dyn FnMut(Event)) -> Result<(Vec<u8>, Vec<GroupReport>)> {
    let frames: Vec<RgbImage> = (0..video.frames.len()).map(|i| video.rgb(i)).collect();
    let (sections, reports) = fit::fit_video(&frames, video.fps, opts, device, progress)?;
    let header = Header { kind: Kind::Video, codec: CODEC_NAME.into(), weights_digest: format_digest(), quality, width: video.width as u32, height: video.height as u32 };
    Ok((Container { header, sections }.to_bytes(), reports))
}

/// Stream facts of a parsed nerv container.
pub fn stream_info(c: &Container) -> Result<StreamInfo> {
    let h = &c.header;
    if h.kind != Kind::Video || h.codec != CODEC_NAME {
        return Err(Error::Unsupported(format!("not a nerv video stream (codec '{}')", h.codec)));
    }
    if h.weights_digest != format_digest() {
        return Err(Error::Unsupported("nerv stream of another format version: re-encode it with this build".into()));
    }
    let info = StreamInfo::parse(&c.sections[0], h.width as usize, h.height as usize)?;
    if c.sections.len() != 1 + info.groups() {
        return Err(Error::Format(format!("nerv: {} sections for {} groups", c.sections.len(), info.groups())));
    }
    Ok(info)
}

/// Decodes frames `range` (clamped to the stream) of a nerv container. Earlier groups are
/// only entropy-decoded (their weights seed the deltas); the network runs on the groups that
/// hold the wanted frames.
pub fn decode(c: &Container, range: Option<Range<usize>>, device: &Device) -> Result<(StreamInfo, Vec<RgbImage>)> {
    let info = stream_info(c)?;
    let range = range.unwrap_or(0..info.frames);
    let range = range.start.min(info.frames)..range.end.min(info.frames);
    if range.is_empty() {
        return Err(Error::Unsupported(format!("no frames in the requested range (the stream has {})", info.frames)));
    }
    if range.len().saturating_mul(info.width * info.height * 3) > crate::video::max_video_bytes() {
        return Err(Error::Unsupported("requested frames exceed the decoded-video memory limit (--max-video-bytes)".into()));
    }
    let mut out = Vec::with_capacity(range.len());
    let mut prev = None;
    for g in 0..info.groups() {
        let frames = info.group_frames(g);
        if frames.start >= range.end {
            break;
        }
        let group = stream::decode_group(&c.sections[1 + g], prev.as_ref(), &info, frames.len())?;
        if frames.end > range.start {
            // Only the wanted frames of this group go through the network.
            let (a, b) = (range.start.max(frames.start), range.end.min(frames.end));
            out.extend(fit::synthesize(&group, &info, a - frames.start..b - frames.start, device));
        }
        prev = Some(group);
    }
    Ok((info, out))
}

#[cfg(test)]
mod tests {
    #[test]
    fn more_bits_never_pick_a_smaller_network() {
        let mut last = 1;
        for i in 1..200 {
            let q = super::quality_for_bpp(i as f64 * 0.01, 416, 240, 100, 25);
            assert!(q >= last);
            last = q;
        }
        assert_eq!((super::quality_for_bpp(0.0, 416, 240, 100, 25), last), (1, super::QUALITIES));
        // The calibration point: 0.137 bpp was measured at q2 on this geometry.
        assert_eq!(super::quality_for_bpp(0.137, 416, 240, 100, 25), 2);
    }

    #[test]
    fn balanced_presets_spread_parameters_within_the_budget() {
        for q in 1..=super::QUALITIES {
            let (base, bal) = (super::config_for_quality(q).unwrap(), super::balanced_config_for_quality(q).unwrap());
            bal.check().unwrap();
            assert!(bal.parameters() <= base.parameters() && bal.parameters() * 10 > base.parameters() * 8, "q{q}");
            // The largest block holds a smaller share of the parameters than in the plain preset.
            let share = |c: &super::NervConfig| {
                let sizes: Vec<usize> = c.tensor_shapes().iter().map(|s| s.iter().product()).collect();
                *sizes.iter().max().unwrap() as f64 / c.parameters() as f64
            };
            assert!(share(&bal) < share(&base), "q{q}: {} vs {}", share(&bal), share(&base));
        }
    }
}
