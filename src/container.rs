//! The `.ncod` container: one versioned format for everything ncodec writes.
//!
//! ```text
//!  offset  size  field
//!  0       4     magic "NCOD"
//!  4       1     format version (2; 1 = before the fixed-point hyper-synthesis)
//!  5       1     kind (0 = image, 1 = video)
//!  6       1     codec name length L (1..=32), then L bytes of ASCII name
//!  .       8     first 8 bytes of the SHA-256 of the weight file used
//!  .       1     quality level (1-based, as given to ncenc -q)
//!  .       var   width, height (LEB128)
//!  .       var   section count S (LEB128; images 1..=16, video 1..=65536), then S lengths (LEB128)
//!  .       4     CRC-32 of the payload (all sections, in order)
//!  .       ...   payload: the sections back to back, nothing after them
//! ```
//! Parsing checks every field and the exact total length before the decoder allocates
//! anything that depends on the declared geometry.

use crate::bytes::{Reader, put_varint};
use crate::error::{Error, Result};

pub const MAGIC: &[u8; 4] = b"NCOD";
/// 2: Gaussian parameters come from the fixed-point hyper-synthesis. Version-1 streams
/// used the float one, whose tables this build cannot reproduce exactly.
pub const VERSION: u8 = 2;
const MAX_NAME: usize = 32;
const MAX_SECTIONS: usize = 16;
/// Video streams: a header section and one section per group of frames.
const MAX_VIDEO_SECTIONS: usize = 1 << 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Image = 0,
    Video = 1,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    pub codec: String,
    pub weights_digest: [u8; 8],
    pub quality: u8,
    pub width: u32,
    pub height: u32,
}

/// A parsed container: header plus the payload sections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub header: Header,
    pub sections: Vec<Vec<u8>>,
}

impl Container {
    pub fn to_bytes(&self) -> Vec<u8> {
        let h = &self.header;
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(h.kind as u8);
        out.push(h.codec.len() as u8);
        out.extend_from_slice(h.codec.as_bytes());
        out.extend_from_slice(&h.weights_digest);
        out.push(h.quality);
        put_varint(&mut out, h.width as u64);
        put_varint(&mut out, h.height as u64);
        put_varint(&mut out, self.sections.len() as u64);
        for s in &self.sections {
            put_varint(&mut out, s.len() as u64);
        }
        let mut crc = crc32fast::Hasher::new();
        self.sections.iter().for_each(|s| crc.update(s));
        out.extend_from_slice(&crc.finalize().to_le_bytes());
        self.sections.iter().for_each(|s| out.extend_from_slice(s));
        out
    }

    pub fn parse(bytes: &[u8]) -> Result<Self> {
        match Self::parse_lenient(bytes)? {
            (c, true) => Ok(c),
            (_, false) => Err(Error::Format("payload checksum mismatch (corrupt file)".into())),
        }
    }

    /// Fuzzing only: parses without verifying the payload checksum, so mutated payloads
    /// reach the decoders behind it.
    #[doc(hidden)]
    pub fn parse_ignoring_checksum(bytes: &[u8]) -> Result<Self> {
        Ok(Self::parse_lenient(bytes)?.0)
    }

    /// Parses the structure (every header field and length checked) and says whether the
    /// payload checksum matches, without failing on it: streams whose sections carry their own
    /// checksums (`stem` video) can then report which sections are damaged and decode the rest.
    pub fn parse_lenient(bytes: &[u8]) -> Result<(Self, bool)> {
        if bytes.is_empty() {
            return Err(Error::Format("empty input".into()));
        }
        let mut r = Reader::new(bytes, "header");
        if r.take(4)? != MAGIC {
            return Err(Error::Format("not an ncodec file (bad magic)".into()));
        }
        let version = r.byte()?;
        if version == 1 {
            return Err(Error::Unsupported("container version 1 was written by ncodec before its integer entropy path; re-encode the source with this build".into()));
        }
        if version != VERSION {
            return Err(Error::Unsupported(format!("container version {version} is not supported (this build reads {VERSION})")));
        }
        let kind = match r.byte()? {
            0 => Kind::Image,
            1 => Kind::Video,
            k => return Err(Error::Unsupported(format!("unknown stream kind {k}"))),
        };
        let name_len = r.byte()? as usize;
        if name_len == 0 || name_len > MAX_NAME {
            return Err(Error::Format("bad codec name length".into()));
        }
        let name = r.take(name_len)?;
        if !name.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_') {
            return Err(Error::Format("bad codec name".into()));
        }
        let codec = String::from_utf8(name.to_vec()).unwrap();
        let weights_digest: [u8; 8] = r.array()?;
        let quality = r.byte()?;
        let width = u32::try_from(r.varint()?).map_err(|_| Error::Format("width out of range".into()))?;
        let height = u32::try_from(r.varint()?).map_err(|_| Error::Format("height out of range".into()))?;
        crate::io::check_dimensions(width, height)?;
        let count = r.varint()? as usize;
        let max = if kind == Kind::Video { MAX_VIDEO_SECTIONS } else { MAX_SECTIONS };
        if count == 0 || count > max {
            return Err(Error::Format(format!("bad section count {count}")));
        }
        let lens: Vec<u64> = (0..count).map(|_| r.varint()).collect::<Result<_>>()?;
        let crc = r.u32_le()?;
        let total = lens.iter().try_fold(0u64, |a, &l| a.checked_add(l));
        let remaining = r.remaining() as u64;
        match total {
            Some(t) if t == remaining => {}
            Some(t) if t > remaining => return Err(Error::Format(format!("truncated: {remaining} payload bytes of {t}"))),
            _ => return Err(Error::Format("trailing bytes after the payload".into())),
        }
        let sections: Vec<Vec<u8>> = lens.iter().map(|&l| r.take(l as usize).map(<[u8]>::to_vec)).collect::<Result<_>>()?;
        let mut hasher = crc32fast::Hasher::new();
        sections.iter().for_each(|s| hasher.update(s));
        let intact = hasher.finalize() == crc;
        Ok((Self { header: Header { kind, codec, weights_digest, quality, width, height }, sections }, intact))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Container {
        Container { header: Header { kind: Kind::Image, codec: "mean-scale".into(), weights_digest: [7; 8], quality: 3, width: 768, height: 512 }, sections: vec![vec![1, 2, 3, 4], vec![9; 300]] }
    }

    #[test]
    fn round_trip() {
        let c = sample();
        assert_eq!(Container::parse(&c.to_bytes()).unwrap(), c);
    }

    #[test]
    fn version_1_streams_are_refused_with_a_reason() {
        let mut bytes = sample().to_bytes();
        bytes[4] = 1;
        let err = Container::parse(&bytes).unwrap_err().to_string();
        assert!(err.contains("re-encode"), "{err}");
    }

    #[test]
    fn every_truncation_and_bit_flip_is_an_error() {
        let bytes = sample().to_bytes();
        for n in 0..bytes.len() {
            assert!(Container::parse(&bytes[..n]).is_err(), "truncated at {n}");
        }
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                // A flip may still parse only if it lands in a field with no redundancy
                // (digest, quality); it must never panic and never return the original.
                if let Ok(c) = Container::parse(&b) {
                    assert_ne!(c, sample());
                }
            }
        }
    }

    #[test]
    fn refuses_huge_and_zero_geometry() {
        for (w, h) in [(0, 10), (10, 0), (100_000, 10), (16384, 16384)] {
            let mut c = sample();
            c.header.width = w;
            c.header.height = h;
            assert!(Container::parse(&c.to_bytes()).is_err(), "{w}x{h}");
        }
    }
}
