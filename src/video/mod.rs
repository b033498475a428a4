//! Video sequences as 8-bit 4:2:0 frames: readers for Y4M, raw `.yuv` and (through
//! ffmpeg-next) any container, plus per-frame quality metrics.
//!
//! ```text
//!  .y4m ──parse header──► frames      .yuv + WxH ──slice──► frames
//!  .mp4/.mkv/... ──ffmpeg demux+decode──swscale──► yuv420p frames
//!  metrics: PSNR-Y/U/V per frame → PSNR-YUV = (6Y+U+V)/8;  RGB via BT.709 limited range
//! ```

#[cfg(feature = "ffmpeg")]
pub mod anchors;
#[cfg(not(feature = "ffmpeg"))]
#[path = "no_ffmpeg.rs"]
pub mod anchors;
pub mod write;

use std::path::Path;

use image::RgbImage;

use crate::error::{Error, Result};

/// Decoded video bytes allowed in memory ([`crate::limits`], `--max-video-bytes`).
pub fn max_video_bytes() -> usize {
    usize::try_from(crate::limits::get().max_video_bytes).unwrap_or(usize::MAX)
}

/// Frames allowed in a sequence ([`crate::limits`], `--max-frames`).
pub fn max_frames() -> usize {
    usize::try_from(crate::limits::get().max_frames).unwrap_or(usize::MAX)
}

/// One 8-bit I420 frame, planes tightly packed (chroma is ceil(W/2) x ceil(H/2)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub y: Vec<u8>,
    pub u: Vec<u8>,
    pub v: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct Video {
    pub width: usize,
    pub height: usize,
    /// Frame rate as a fraction (num, den).
    pub fps: (u32, u32),
    pub frames: Vec<Frame>,
}

impl Video {
    pub fn chroma_size(&self) -> (usize, usize) {
        (self.width.div_ceil(2), self.height.div_ceil(2))
    }

    fn frame_bytes(width: usize, height: usize) -> usize {
        width * height + 2 * width.div_ceil(2) * height.div_ceil(2)
    }

    /// Opens `path` by extension: `.y4m`, `.yuv` (geometry from `geometry` or a `WxH` in the
    /// file name), anything else through ffmpeg. Keeps at most `max_frames` frames.
    pub fn open(path: &Path, geometry: Option<(usize, usize)>, max_frames: Option<usize>) -> Result<Self> {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        let limit = max_frames.unwrap_or(usize::MAX);
        match ext.as_str() {
            "y4m" => Self::read_y4m(&mut std::io::BufReader::new(std::fs::File::open(path).map_err(|e| Error::io(path, e))?), limit),
            "yuv" => {
                let (w, h) = geometry.or_else(|| geometry_from_name(path)).ok_or_else(|| Error::Unsupported(format!("{}: raw .yuv needs its size (WxH in the name or --geometry)", path.display())))?;
                Self::read_yuv(path, w, h, limit)
            }
            _ => anchors::decode_file(path, limit),
        }
    }

    /// Reads a YUV4MPEG2 stream (4:2:0 8-bit only).
    pub fn read_y4m(r: &mut impl std::io::BufRead, max_frames: usize) -> Result<Self> {
        use std::io::{BufRead, Read};
        let bad = |m: &str| Error::Format(format!("y4m: {m}"));
        let mut header = Vec::new();
        r.by_ref().take(4096).read_until(b'\n', &mut header).map_err(Error::Stream)?;
        let header = std::str::from_utf8(&header).map_err(|_| bad("header is not text"))?.trim_end();
        let mut fields = header.split(' ');
        if fields.next() != Some("YUV4MPEG2") {
            return Err(bad("missing YUV4MPEG2 signature"));
        }
        let (mut w, mut h, mut fps) = (0usize, 0usize, (25u32, 1u32));
        for f in fields {
            // The tag is the first character, which need not be ASCII in a hostile header.
            let tag_len = f.chars().next().map_or(0, char::len_utf8);
            let (tag, val) = f.split_at(tag_len);
            match tag {
                "W" => w = val.parse().map_err(|_| bad("bad width"))?,
                "H" => h = val.parse().map_err(|_| bad("bad height"))?,
                "F" => {
                    let (n, d) = val.split_once(':').ok_or_else(|| bad("bad frame rate"))?;
                    fps = (n.parse().map_err(|_| bad("bad frame rate"))?, d.parse().map_err(|_| bad("bad frame rate"))?);
                }
                "C" if !val.starts_with("420") => return Err(Error::Unsupported(format!("y4m colour space C{val}: only 4:2:0 8-bit is supported"))),
                _ => {}
            }
        }
        crate::io::check_dimensions(u32::try_from(w).unwrap_or(u32::MAX), u32::try_from(h).unwrap_or(u32::MAX))?;
        let fb = Self::frame_bytes(w, h);
        let mut frames = vec![];
        let mut line = Vec::new();
        while frames.len() < max_frames {
            line.clear();
            let n = r.by_ref().take(1024).read_until(b'\n', &mut line).map_err(Error::Stream)?;
            if n == 0 {
                break;
            }
            if !line.starts_with(b"FRAME") {
                return Err(bad("expected FRAME marker"));
            }
            if (frames.len() + 1) * fb > max_video_bytes() || frames.len() >= self::max_frames() {
                return Err(Error::Unsupported(format!("y4m: more than {} bytes or {} frames (raise with --max-video-bytes / --max-frames)", max_video_bytes(), self::max_frames())));
            }
            // Read what is there rather than allocating what the header claims.
            let mut buf = Vec::new();
            r.by_ref().take(fb as u64).read_to_end(&mut buf).map_err(Error::Stream)?;
            if buf.len() < fb {
                return Err(bad("truncated frame"));
            }
            frames.push(split_i420(buf, w, h));
        }
        if frames.is_empty() {
            return Err(bad("no frames"));
        }
        Ok(Self { width: w, height: h, fps, frames })
    }

    /// Reads raw I420 frames of the given size.
    pub fn read_yuv(path: &Path, w: usize, h: usize, max_frames: usize) -> Result<Self> {
        use std::io::Read;
        crate::io::check_dimensions(u32::try_from(w).unwrap_or(u32::MAX), u32::try_from(h).unwrap_or(u32::MAX))?;
        let fb = Self::frame_bytes(w, h);
        let mut f = std::io::BufReader::new(std::fs::File::open(path).map_err(|e| Error::io(path, e))?);
        let mut frames = vec![];
        while frames.len() < max_frames {
            if (frames.len() + 1) * fb > max_video_bytes() {
                return Err(Error::Unsupported(format!("{}: more than {} bytes of frames (raise with --max-video-bytes)", path.display(), max_video_bytes())));
            }
            let mut buf = vec![0u8; fb];
            match f.read_exact(&mut buf) {
                Ok(()) if frames.len() >= self::max_frames() => {
                    return Err(Error::Unsupported(format!("{}: more than {} frames (raise with --max-frames)", path.display(), self::max_frames())));
                }
                Ok(()) => frames.push(split_i420(buf, w, h)),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(Error::io(path, e)),
            }
        }
        if frames.is_empty() {
            return Err(Error::Format(format!("{}: shorter than one {w}x{h} frame", path.display())));
        }
        Ok(Self { width: w, height: h, fps: (30, 1), frames })
    }

    /// Frame `i` as 8-bit RGB: BT.709 limited range, chroma upsampled by replication.
    pub fn rgb(&self, i: usize) -> RgbImage {
        let f = &self.frames[i];
        let (cw, _) = self.chroma_size();
        RgbImage::from_fn(self.width as u32, self.height as u32, |x, y| {
            let (x, y) = (x as usize, y as usize);
            let c = (y / 2) * cw + x / 2;
            let yy = (f.y[y * self.width + x] as f64 - 16.0) * (255.0 / 219.0);
            let u = (f.u[c] as f64 - 128.0) * (255.0 / 224.0);
            let v = (f.v[c] as f64 - 128.0) * (255.0 / 224.0);
            let r = yy + 1.5748 * v;
            let g = yy - 0.187324 * u - 0.468124 * v;
            let b = yy + 1.8556 * u;
            let q = |t: f64| t.round().clamp(0.0, 255.0) as u8;
            image::Rgb([q(r), q(g), q(b)])
        })
    }
}

fn split_i420(mut buf: Vec<u8>, w: usize, h: usize) -> Frame {
    let c = w.div_ceil(2) * h.div_ceil(2);
    let v = buf.split_off(w * h + c);
    let u = buf.split_off(w * h);
    Frame { y: buf, u, v }
}

/// `..._1920x1080_...yuv` → (1920, 1080).
fn geometry_from_name(path: &Path) -> Option<(usize, usize)> {
    let name = path.file_name()?.to_str()?;
    name.split(|c: char| !c.is_ascii_alphanumeric()).find_map(|tok| {
        let (a, b) = tok.split_once('x')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    })
}

fn plane_psnr(a: &[u8], b: &[u8]) -> f64 {
    let se: u64 = a.iter().zip(b).map(|(&x, &y)| (x as i64 - y as i64).pow(2) as u64).sum();
    10.0 * (255.0f64 * 255.0 / (se as f64 / a.len() as f64)).log10()
}

/// Per-sequence means of per-frame metrics: (PSNR-RGB, PSNR-Y, PSNR-YUV, MS-SSIM-RGB).
pub fn quality(orig: &Video, dec: &Video) -> Result<(f64, f64, f64, f64)> {
    check_same_geometry(orig, dec.width, dec.height, dec.frames.len())?;
    Ok(mean_metrics(orig, |i| (dec.frames[i].clone(), dec.rgb(i))))
}

/// [`quality`] of frames decoded straight to RGB (learned video codecs): PSNR-RGB and
/// MS-SSIM on those RGB frames; PSNR-Y/YUV after converting them to I420 like the writers do.
pub fn quality_rgb(orig: &Video, dec: &[RgbImage]) -> Result<(f64, f64, f64, f64)> {
    let (w, h) = dec.first().map_or((0, 0), |f| (f.width() as usize, f.height() as usize));
    check_same_geometry(orig, w, h, dec.len())?;
    Ok(mean_metrics(orig, |i| (Frame::from_rgb(&dec[i]), dec[i].clone())))
}

fn check_same_geometry(orig: &Video, w: usize, h: usize, n: usize) -> Result<()> {
    if (orig.width, orig.height, orig.frames.len()) != (w, h, n) {
        return Err(Error::Codec(format!("decoded {w}x{h}x{n} frames, expected {}x{}x{}", orig.width, orig.height, orig.frames.len())));
    }
    Ok(())
}

/// Means over frames of (PSNR-RGB, PSNR-Y, PSNR-YUV, MS-SSIM-RGB); `decoded(i)` gives frame
/// i as I420 and as RGB.
fn mean_metrics(orig: &Video, decoded: impl Fn(usize) -> (Frame, RgbImage) + Sync) -> (f64, f64, f64, f64) {
    use rayon::prelude::*;
    let per: Vec<(f64, f64, f64, f64)> = (0..orig.frames.len())
        .into_par_iter()
        .map(|i| {
            let (b, rb) = decoded(i);
            frame_quality(orig, i, &b, &rb)
        })
        .collect();
    mean_of(&per)
}

/// (PSNR-RGB, PSNR-Y, PSNR-YUV, MS-SSIM-RGB) of one decoded frame (as I420 and as RGB)
/// against frame `i` of `orig`; MS-SSIM is NaN for frames too small for it.
pub fn frame_quality(orig: &Video, i: usize, yuv: &Frame, rgb: &RgbImage) -> (f64, f64, f64, f64) {
    let a = &orig.frames[i];
    let (y, u, v) = (plane_psnr(&a.y, &yuv.y), plane_psnr(&a.u, &yuv.u), plane_psnr(&a.v, &yuv.v));
    let ra = orig.rgb(i);
    let ms = crate::metrics::ms_ssim(&ra, rgb);
    (crate::metrics::psnr(&ra, rgb), y, (6.0 * y + u + v) / 8.0, ms)
}

/// Component-wise means of per-frame [`frame_quality`] values.
pub fn mean_of(per: &[(f64, f64, f64, f64)]) -> (f64, f64, f64, f64) {
    let n = per.len() as f64;
    let mean = |f: fn(&(f64, f64, f64, f64)) -> f64| per.iter().map(f).sum::<f64>() / n;
    (mean(|p| p.0), mean(|p| p.1), mean(|p| p.2), mean(|p| p.3))
}
