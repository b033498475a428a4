//! File I/O shared by the binaries: atomic writes (no partial outputs), bounded reads, and
//! image decoding with dimension limits checked before any pixel buffer is allocated.

use std::io::{Read, Write};
use std::path::Path;

use image::{ImageDecoder, ImageReader, RgbImage};

use crate::error::{Error, Result};

// Image side, pixel count and input size limits live in [`crate::limits`]. The transforms
// hold ~N floats per pixel at half resolution, so the default 16 MP keeps peak memory to a few
// GB; larger images need tiling.

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so a
/// failure never leaves a partial file behind. `-` writes to stdout.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if path.as_os_str() == "-" {
        let mut out = std::io::stdout().lock();
        out.write_all(bytes)?;
        out.flush()?;
        return Ok(());
    }
    let dir = parent_dir(path);
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
    tmp.write_all(bytes).map_err(|e| Error::io(path, e))?;
    // Temporary files are created 0600; give the output the usual mode (or keep the mode of
    // the file it replaces).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).map(|m| m.permissions().mode()).unwrap_or(0o644);
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(mode)).map_err(|e| Error::io(path, e))?;
    }
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// The folder `path` is in (`.` for a bare file name): where its temporary sibling goes.
pub(crate) fn parent_dir(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Reads a whole file (or stdin for `-`), refusing anything over the input-size limit.
pub fn read_input(path: &Path) -> Result<Vec<u8>> {
    let max = crate::limits::get().max_input_bytes;
    let mut buf = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin().lock().take(max.saturating_add(1)).read_to_end(&mut buf)?;
    } else {
        let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        f.take(max.saturating_add(1)).read_to_end(&mut buf).map_err(|e| Error::io(path, e))?;
    }
    if buf.len() as u64 > max {
        return Err(Error::Unsupported(format!("{}: input larger than {max} bytes (raise with --max-input-bytes)", path.display())));
    }
    Ok(buf)
}

/// Checks image geometry against the limits.
pub fn check_dimensions(width: u32, height: u32) -> Result<()> {
    if width == 0 || height == 0 {
        return Err(Error::Unsupported(format!("image has zero size ({width}x{height})")));
    }
    let l = crate::limits::get();
    if width as u64 > l.max_side || height as u64 > l.max_side || width as u64 * height as u64 > l.max_pixels {
        return Err(Error::Unsupported(format!(
            "image is {width}x{height}; the limit is {} per side and {} pixels (raise with --max-side / --max-pixels)",
            l.max_side, l.max_pixels
        )));
    }
    Ok(())
}

/// Decodes any format `image` reads into 8-bit RGB, checking the size from the header first.
pub fn decode_image(bytes: &[u8]) -> Result<RgbImage> {
    let reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::Image(e.to_string()))?;
    let mut decoder = reader.into_decoder().map_err(|e| Error::Image(e.to_string()))?;
    let (w, h) = decoder.dimensions();
    check_dimensions(w, h)?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(crate::limits::get().max_pixels.saturating_mul(8));
    decoder.set_limits(limits).map_err(|e| Error::Image(e.to_string()))?;
    let img = image::DynamicImage::from_decoder(decoder).map_err(|e| Error::Image(e.to_string()))?;
    Ok(img.to_rgb8())
}

pub fn load_image(path: &Path) -> Result<RgbImage> {
    decode_image(&read_input(path)?).map_err(|e| match e {
        Error::Image(m) => Error::Image(format!("{}: {m}", path.display())),
        other => other,
    })
}

/// Encodes an image in the format named by `path`'s extension (PNG for `-` or no extension).
pub fn encode_for_path(img: &RgbImage, path: &Path) -> Result<Vec<u8>> {
    let format = match path.extension().and_then(|e| e.to_str()) {
        None => image::ImageFormat::Png,
        Some(ext) => image::ImageFormat::from_extension(ext)
            .ok_or_else(|| Error::Unsupported(format!("{}: unknown image extension", path.display())))?,
    };
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), format).map_err(|e| Error::Image(e.to_string()))?;
    Ok(out)
}
