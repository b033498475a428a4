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
        let stdout = |e| Error::io("standard output", e);
        out.write_all(bytes).map_err(stdout)?;
        out.flush().map_err(stdout)?;
        return Ok(());
    }
    let mut f = AtomicFile::create(path)?;
    f.write_all(bytes)?;
    f.commit()
}

/// A file written piece by piece that appears at its path only when [`commit`](Self::commit)
/// moves it into place; dropped uncommitted (error, panic), it is deleted.
///
/// On Linux the data goes to an unnamed `O_TMPFILE` in the target's folder, linked under a
/// hidden name and renamed over the target only at commit: a process killed while writing
/// leaves nothing behind. Elsewhere (or where the file system lacks `O_TMPFILE`) it is a
/// hidden named temporary file, removed on drop.
pub struct AtomicFile {
    tmp: std::io::BufWriter<Tmp>,
    path: std::path::PathBuf,
}

enum Tmp {
    #[cfg(target_os = "linux")]
    Unnamed(std::fs::File),
    Named(tempfile::NamedTempFile),
}

impl Write for Tmp {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            #[cfg(target_os = "linux")]
            Tmp::Unnamed(f) => f.write(buf),
            Tmp::Named(f) => f.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            #[cfg(target_os = "linux")]
            Tmp::Unnamed(f) => f.flush(),
            Tmp::Named(f) => f.flush(),
        }
    }
}

impl Tmp {
    fn file(&self) -> &std::fs::File {
        match self {
            #[cfg(target_os = "linux")]
            Tmp::Unnamed(f) => f,
            Tmp::Named(f) => f.as_file(),
        }
    }
}

impl AtomicFile {
    pub fn create(path: &Path) -> Result<Self> {
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::fs::OpenOptionsExt;
            if let Ok(f) = std::fs::OpenOptions::new().write(true).read(true).custom_flags(libc::O_TMPFILE).mode(0o600).open(parent_dir(path)) {
                return Ok(Self { tmp: std::io::BufWriter::new(Tmp::Unnamed(f)), path: path.to_path_buf() });
            }
        }
        Ok(Self { tmp: std::io::BufWriter::new(Tmp::Named(temp_sibling(path, "")?)), path: path.to_path_buf() })
    }

    pub fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        self.tmp.write_all(bytes).map_err(|e| Error::io(&self.path, e))
    }

    pub fn commit(self) -> Result<()> {
        let path = self.path;
        let tmp = self.tmp.into_inner().map_err(|e| Error::io(&path, e.into_error()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            tmp.file().set_permissions(std::fs::Permissions::from_mode(output_mode(&path, false))).map_err(|e| Error::io(&path, e))?;
        }
        tmp.file().sync_all().map_err(|e| Error::io(&path, e))?;
        match tmp {
            #[cfg(target_os = "linux")]
            Tmp::Unnamed(f) => persist_unnamed(f, &path),
            Tmp::Named(t) => t.persist(&path).map(drop).map_err(|e| Error::io(&path, e.error)),
        }
    }
}

/// Temporary files and folders are created 0600 / 0700: the output `file` (about to become
/// `target`) gets the usual mode (0644, folders 0755) or keeps the mode of what it replaces.
pub fn set_output_permissions(file: &Path, target: &Path, folder: bool) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(output_mode(target, folder))).map_err(|e| Error::io(target, e))?;
    }
    #[cfg(not(unix))]
    let _ = (file, target, folder);
    Ok(())
}

#[cfg(unix)]
fn output_mode(target: &Path, folder: bool) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(target).map(|m| m.permissions().mode()).unwrap_or(if folder { 0o755 } else { 0o644 })
}

/// A hidden temporary file beside `target` (`.name.ncodec-XXXXXX` + `suffix`), removed on drop
/// unless persisted.
pub fn temp_sibling(target: &Path, suffix: &str) -> Result<tempfile::NamedTempFile> {
    tempfile::Builder::new().prefix(&hidden_name(target)).suffix(suffix).tempfile_in(parent_dir(target)).map_err(|e| cannot_create(target, e))
}

/// A temporary sibling of `target` could not be created: the error names the output and its
/// folder, not the temporary name the user never asked for.
pub(crate) fn cannot_create(target: &Path, e: std::io::Error) -> Error {
    let why = std::io::Error::from(e.kind());
    Error::io(target, std::io::Error::new(e.kind(), format!("cannot create a file in {}: {why}", parent_dir(target).display())))
}

/// `.name.ncodec-`: the prefix of hidden temporary siblings of `path`.
pub(crate) fn hidden_name(path: &Path) -> String {
    format!(".{}.ncodec-", path.file_name().unwrap_or_default().to_string_lossy())
}

/// Gives an `O_TMPFILE` a name: linked beside the target under a hidden name, then renamed
/// over it (a rename replaces atomically; a link would refuse an existing target). Without
/// /proc, the data is copied into a named temporary file instead.
#[cfg(target_os = "linux")]
fn persist_unnamed(mut f: std::fs::File, path: &Path) -> Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::io::AsRawFd;
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let link = parent_dir(path).join(format!("{}{}-{n}", hidden_name(path), std::process::id()));
    let from = CString::new(format!("/proc/self/fd/{}", f.as_raw_fd())).expect("no NUL");
    let to = CString::new(link.as_os_str().as_bytes()).map_err(|_| Error::Unsupported(format!("{}: path contains NUL", path.display())))?;
    // SAFETY: both are valid NUL-terminated paths; linkat only reads them.
    let linked = unsafe { libc::linkat(libc::AT_FDCWD, from.as_ptr(), libc::AT_FDCWD, to.as_ptr(), libc::AT_SYMLINK_FOLLOW) } == 0;
    if !linked {
        use std::io::Seek;
        let mut named = temp_sibling(path, "")?;
        f.seek(std::io::SeekFrom::Start(0)).map_err(|e| Error::io(path, e))?;
        std::io::copy(&mut f, &mut named).map_err(|e| Error::io(path, e))?;
        named.as_file().set_permissions(f.metadata().map_err(|e| Error::io(path, e))?.permissions()).map_err(|e| Error::io(path, e))?;
        named.as_file().sync_all().map_err(|e| Error::io(path, e))?;
        return named.persist(path).map(drop).map_err(|e| Error::io(path, e.error));
    }
    std::fs::rename(&link, path).map_err(|e| {
        let _ = std::fs::remove_file(&link);
        Error::io(path, e)
    })
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
        return Err(Error::Unsupported(format!("image is {width}x{height}; the limit is {} per side and {} pixels (raise with --max-side / --max-pixels)", l.max_side, l.max_pixels)));
    }
    Ok(())
}

/// Decodes any format `image` reads into 8-bit RGB, checking the size from the header first.
pub fn decode_image(bytes: &[u8]) -> Result<RgbImage> {
    decode_image_within(bytes, crate::limits::get().max_pixels)
}

/// [`decode_image`] with its own area cap (the fuzz target keeps images tiny).
pub fn decode_image_within(bytes: &[u8], max_pixels: u64) -> Result<RgbImage> {
    let reader = ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(|e| Error::Image(e.to_string()))?;
    let mut decoder = reader.into_decoder().map_err(|e| Error::Image(e.to_string()))?;
    let (w, h) = decoder.dimensions();
    check_dimensions(w, h)?;
    if w as u64 * h as u64 > max_pixels {
        return Err(Error::Unsupported(format!("image is {w}x{h}, more than {max_pixels} pixels")));
    }
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(max_pixels.saturating_mul(8));
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
        Some(ext) => image::ImageFormat::from_extension(ext).ok_or_else(|| Error::Unsupported(format!("{}: unknown image extension", path.display())))?,
    };
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), format).map_err(|e| Error::Image(e.to_string()))?;
    Ok(out)
}
