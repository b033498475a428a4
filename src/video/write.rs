//! Writing decoded video: Y4M, a folder of PNGs, or mp4/mkv/mov through libx264/libx265.
//!
//! ```text
//!  RGB frames ──BT.709 limited range, 2x2 chroma average──► I420 ──► .y4m
//!                                                             └──► x264/x265 (CRF or lossless) ──mux──► .mp4/.mkv/.mov
//!  RGB frames ──PNG──► dir/frame_000001.png …
//! ```
//! Frames stream in one at a time ([`VideoWriter`]): each output is assembled in a hidden
//! temporary file or folder beside the target and moved into place with one rename, so a
//! failed or killed run leaves no partial output and memory does not grow with the length.

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
        let mut out = y4m_header(self.width, self.height, self.fps).into_bytes();
        for f in &self.frames {
            out.extend(f.y4m_frame());
        }
        out
    }
}

fn y4m_header(width: usize, height: usize, fps: (u32, u32)) -> String {
    format!("YUV4MPEG2 W{width} H{height} F{}:{} Ip A1:1 C420jpeg\n", fps.0, fps.1)
}

impl Frame {
    /// One Y4M frame: marker and planes.
    fn y4m_frame(&self) -> Vec<u8> {
        [b"FRAME\n".as_slice(), &self.y, &self.u, &self.v].concat()
    }
}

/// Writes `frames` to `path` as [`output_kind`] says.
pub fn write_video(path: &Path, frames: &[RgbImage], fps: (u32, u32), opts: &OutputOptions) -> Result<()> {
    let mut w = VideoWriter::create(path, fps, opts)?;
    for f in frames {
        w.push(f)?;
    }
    w.finish()
}

/// Writes a video frame by frame, holding at most one frame (plus, for mp4/mkv/mov, the
/// compressed packets): decoders stream into it with bounded memory. Nothing appears at the
/// path until [`finish`](Self::finish); dropped before that, it leaves nothing behind.
pub struct VideoWriter {
    sink: Sink,
    fps: (u32, u32),
    size: Option<(u32, u32)>,
    frames: usize,
}

enum Sink {
    Y4m(crate::io::AtomicFile),
    /// Hidden temporary folder and the target it is renamed to.
    PngDir(tempfile::TempDir, std::path::PathBuf),
    Container {
        path: std::path::PathBuf,
        opts: OutputOptions,
        enc: Option<anchors::StreamEncoder>,
    },
}

impl VideoWriter {
    /// Checks the output kind (and, for folders, that the target is absent or empty) before
    /// any frame is decoded.
    pub fn create(path: &Path, fps: (u32, u32), opts: &OutputOptions) -> Result<Self> {
        let sink = match output_kind(path)? {
            OutputKind::Y4m => Sink::Y4m(crate::io::AtomicFile::create(path)?),
            OutputKind::PngDir => {
                let trimmed = path.to_string_lossy().trim_end_matches('/').to_string();
                let target = std::path::PathBuf::from(trimmed);
                if target.exists() {
                    let empty = std::fs::read_dir(&target).map_err(|e| Error::io(&target, e))?.next().is_none();
                    if !empty {
                        return Err(Error::Unsupported(format!("{}: folder exists and is not empty", target.display())));
                    }
                }
                // Removed on drop unless renamed into place.
                let tmp = tempfile::Builder::new().prefix(&crate::io::hidden_name(&target)).tempdir_in(crate::io::parent_dir(&target)).map_err(|e| crate::io::cannot_create(&target, e))?;
                Sink::PngDir(tmp, target)
            }
            OutputKind::Container => Sink::Container { path: path.to_path_buf(), opts: opts.clone(), enc: None },
        };
        Ok(Self { sink, fps, size: None, frames: 0 })
    }

    pub fn push(&mut self, img: &RgbImage) -> Result<()> {
        let size = *self.size.get_or_insert((img.width(), img.height()));
        if size != (img.width(), img.height()) {
            return Err(Error::Codec("frames of different sizes in one video".into()));
        }
        let (w, h) = (size.0 as usize, size.1 as usize);
        match &mut self.sink {
            Sink::Y4m(f) => {
                if self.frames == 0 {
                    f.write_all(y4m_header(w, h, self.fps).as_bytes())?;
                }
                f.write_all(&Frame::from_rgb(img).y4m_frame())?;
            }
            Sink::PngDir(tmp, _) => {
                let p = tmp.path().join(format!("frame_{:06}.png", self.frames + 1));
                img.save(&p).map_err(|e| Error::Image(format!("{}: {e}", p.display())))?;
            }
            Sink::Container { opts, enc, .. } => {
                if enc.is_none() {
                    *enc = Some(anchors::StreamEncoder::open(w, h, self.fps, &opts.encoder, opts.rate, true)?);
                }
                enc.as_mut().expect("opened above").push(&Frame::from_rgb(img))?;
            }
        }
        self.frames += 1;
        Ok(())
    }

    /// Moves the finished output into place.
    pub fn finish(self) -> Result<()> {
        if self.frames == 0 {
            return Err(Error::Unsupported("no frames to write".into()));
        }
        match self.sink {
            Sink::Y4m(f) => f.commit(),
            Sink::PngDir(tmp, path) => {
                crate::io::set_output_permissions(tmp.path(), &path, true)?;
                if path.exists() {
                    std::fs::remove_dir(&path).map_err(|e| Error::io(&path, e))?;
                }
                std::fs::rename(tmp.path(), &path).map_err(|e| Error::io(&path, e))?;
                // Renamed: nothing left for the guard to delete.
                let _ = tmp.keep();
                Ok(())
            }
            Sink::Container { path, enc, .. } => {
                let (enc, packets) = enc.expect("at least one frame").finish()?;
                // Mux into a hidden temporary file beside the target (same extension: the muxer
                // goes by it), then rename over the target; dropped on failure.
                let ext = format!(".{}", path.extension().unwrap_or_default().to_string_lossy());
                let tmp = crate::io::temp_sibling(&path, &ext)?;
                anchors::mux(tmp.path(), &enc, packets)?;
                crate::io::set_output_permissions(tmp.path(), &path, false)?;
                tmp.persist(&path).map_err(|e| Error::io(&path, e.error))?;
                Ok(())
            }
        }
    }
}
