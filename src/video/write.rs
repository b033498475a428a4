//! Writing decoded video: Y4M, a folder of PNGs, or mp4/mkv/mov through libx264/libx265.
//!
//! ```text
//!  RGB frames ──BT.709 limited range, 2x2 chroma average──► I420 ──► .y4m
//!                                                             └──► x264/x265 (CRF or lossless) ──mux──► .mp4/.mkv/.mov
//!  RGB frames ──PNG──► dir/frame_000001.png …
//! ```
//! Every output is assembled in memory (or in a hidden temporary folder for PNGs) and moved
//! into place with one rename, so a failed or killed run leaves no partial output.

use std::path::Path;

use image::RgbImage;

use super::anchors::{self, Rate};
use super::{Frame, Video};
use crate::error::{Error, Result};

/// How container outputs (mp4, mkv, mov) are encoded.
#[derive(Debug, Clone)]
pub struct OutputOptions {
    /// `libx264` or `libx265`.
    pub encoder: String,
    pub rate: Rate,
}

impl Default for OutputOptions {
    fn default() -> Self {
        Self { encoder: "libx264".into(), rate: Rate::Crf(18) }
    }
}

/// What a path asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputKind {
    Y4m,
    PngDir,
    Container,
}

/// By extension: `.y4m`; a container ffmpeg muxes (`.mp4`, `.mkv`, `.mov`); a path ending in
/// `/`, an existing folder or a name without extension is a folder of PNGs.
pub fn output_kind(path: &Path) -> Result<OutputKind> {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    if path.to_string_lossy().ends_with('/') || path.is_dir() || ext.is_none() {
        return Ok(OutputKind::PngDir);
    }
    match ext.as_deref() {
        Some("y4m") => Ok(OutputKind::Y4m),
        Some("mp4" | "mkv" | "mov") => Ok(OutputKind::Container),
        Some(e) => Err(Error::Unsupported(format!("{}: cannot write video as .{e} (use .y4m, .mp4, .mkv, .mov or a folder)", path.display()))),
        None => unreachable!(),
    }
}

impl Frame {
    /// 8-bit RGB → I420, BT.709 limited range (the inverse of [`Video::rgb`]); chroma is
    /// the mean of each 2x2 block.
    pub fn from_rgb(img: &RgbImage) -> Self {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let mut y = vec![0u8; w * h];
        let mut cb = vec![0f64; cw * ch];
        let mut cr = vec![0f64; cw * ch];
        let mut count = vec![0f64; cw * ch];
        for (x0, y0, p) in img.enumerate_pixels() {
            let [r, g, b] = p.0.map(f64::from);
            let luma = 0.2126 * r + 0.7152 * g + 0.0722 * b;
            y[y0 as usize * w + x0 as usize] = (16.0 + luma * 219.0 / 255.0).round().clamp(0.0, 255.0) as u8;
            let c = (y0 as usize / 2) * cw + x0 as usize / 2;
            cb[c] += (b - luma) / 1.8556;
            cr[c] += (r - luma) / 1.5748;
            count[c] += 1.0;
        }
        let q = |v: f64, n: f64| (128.0 + v / n * 224.0 / 255.0).round().clamp(0.0, 255.0) as u8;
        Frame { y, u: cb.iter().zip(&count).map(|(&v, &n)| q(v, n)).collect(), v: cr.iter().zip(&count).map(|(&v, &n)| q(v, n)).collect() }
    }
}

impl Video {
    pub fn from_rgb(frames: &[RgbImage], fps: (u32, u32)) -> Result<Self> {
        let first = frames.first().ok_or_else(|| Error::Unsupported("no frames".into()))?;
        let (w, h) = (first.width() as usize, first.height() as usize);
        Ok(Self { width: w, height: h, fps, frames: frames.iter().map(Frame::from_rgb).collect() })
    }

    /// YUV4MPEG2 bytes (4:2:0, 8-bit).
    pub fn to_y4m(&self) -> Vec<u8> {
        let mut out = format!("YUV4MPEG2 W{} H{} F{}:{} Ip A1:1 C420jpeg\n", self.width, self.height, self.fps.0, self.fps.1).into_bytes();
        for f in &self.frames {
            out.extend_from_slice(b"FRAME\n");
            out.extend_from_slice(&f.y);
            out.extend_from_slice(&f.u);
            out.extend_from_slice(&f.v);
        }
        out
    }
}

/// Writes `frames` to `path` as [`output_kind`] says.
pub fn write_video(path: &Path, frames: &[RgbImage], fps: (u32, u32), opts: &OutputOptions) -> Result<()> {
    match output_kind(path)? {
        OutputKind::Y4m => crate::io::write_atomic(path, &Video::from_rgb(frames, fps)?.to_y4m()),
        OutputKind::PngDir => write_png_dir(path, frames),
        OutputKind::Container => {
            let video = Video::from_rgb(frames, fps)?;
            let (enc, packets) = anchors::encode_with(&video, &opts.encoder, opts.rate, true)?;
            // Mux into a hidden temporary file beside the target (same extension: the muxer
            // goes by it), then rename over the target; dropped on failure.
            let ext = format!(".{}", path.extension().unwrap_or_default().to_string_lossy());
            let tmp = tempfile::Builder::new().prefix(&hidden_prefix(path)).suffix(&ext).tempfile_in(crate::io::parent_dir(path)).map_err(|e| Error::io(path, e))?;
            anchors::mux(tmp.path(), &enc, packets)?;
            tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
            Ok(())
        }
    }
}

/// Name prefix of hidden temporary siblings of `path`: `.name.ncodec-`.
fn hidden_prefix(path: &Path) -> String {
    format!(".{}.ncodec-", path.file_name().unwrap_or_default().to_string_lossy())
}

/// PNGs into a hidden sibling folder, then one rename. The target must not exist or be an
/// empty folder (never overwrite someone's files one by one).
fn write_png_dir(path: &Path, frames: &[RgbImage]) -> Result<()> {
    let trimmed = path.to_string_lossy().trim_end_matches('/').to_string();
    let path = Path::new(&trimmed);
    if path.exists() {
        let empty = std::fs::read_dir(path).map_err(|e| Error::io(path, e))?.next().is_none();
        if !empty {
            return Err(Error::Unsupported(format!("{}: folder exists and is not empty", path.display())));
        }
    }
    // Removed on drop unless renamed into place.
    let tmp = tempfile::Builder::new().prefix(&hidden_prefix(path)).tempdir_in(crate::io::parent_dir(path)).map_err(|e| Error::io(path, e))?;
    for (i, f) in frames.iter().enumerate() {
        let p = tmp.path().join(format!("frame_{:06}.png", i + 1));
        f.save(&p).map_err(|e| Error::Image(format!("{}: {e}", p.display())))?;
    }
    if path.exists() {
        std::fs::remove_dir(path).map_err(|e| Error::io(path, e))?;
    }
    std::fs::rename(tmp.path(), path).map_err(|e| Error::io(path, e))?;
    // Renamed: nothing left for the guard to delete.
    let _ = tmp.keep();
    Ok(())
}
