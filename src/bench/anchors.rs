//! Classical anchor codecs for rate-distortion comparisons, each through a binding to the
//! real library, run here on the same images as ncodec (never published numbers).
//!
//! ```text
//!  JPEG  mozjpeg (libjpeg-turbo fork): 4:2:0, optimised Huffman, trellis, progressive
//!  WebP  libwebp (bundled by libwebp-sys): lossy, method 4 (the library default)
//!  AVIF  rav1e via ravif, speed 6, 10-bit 4:4:4 BT.601 full range; decoded with system dav1d
//! ```
//! Every anchor decodes its own bytes with a real decoder, so the distortion is measured on
//! what a user would see, and the rate is the byte length of the complete file.

use image::RgbImage;

use super::RdCodec;
use crate::error::{Error, Result};

/// The anchors `ncodec bench` knows, by name.
pub const ANCHORS: [&str; 3] = ["jpeg", "webp", "avif"];

pub fn by_name(name: &str) -> Result<Box<dyn RdCodec>> {
    match name {
        "jpeg" => Ok(Box::new(Jpeg)),
        "webp" => Ok(Box::new(WebP)),
        "avif" => Ok(Box::new(Avif { speed: 6 })),
        other => Err(Error::Unsupported(format!("unknown anchor '{other}' (known: {})", ANCHORS.join(", ")))),
    }
}

fn failed(codec: &str, what: impl std::fmt::Display) -> Error {
    Error::Codec(format!("{codec}: {what}"))
}

/// libjpeg reports errors by unwinding through the Rust error manager; contain them here.
fn catch<T>(codec: &str, f: impl FnOnce() -> std::io::Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(|e| failed(codec, e)),
        Err(_) => Err(failed(codec, "library error")),
    }
}

pub struct Jpeg;

impl RdCodec for Jpeg {
    fn name(&self) -> String {
        "jpeg".into()
    }
    fn description(&self) -> String {
        "JPEG: mozjpeg 4 (crate mozjpeg 0.10), 4:2:0, optimised Huffman, trellis quantisation, progressive; quality 5..95".into()
    }
    fn settings(&self) -> Vec<u32> {
        vec![5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95]
    }
    fn encode(&self, img: &RgbImage, quality: u32) -> Result<Vec<u8>> {
        catch("jpeg", || {
            let mut c = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_RGB);
            c.set_size(img.width() as usize, img.height() as usize);
            c.set_quality(quality as f32);
            c.set_chroma_sampling_pixel_sizes((2, 2), (2, 2));
            let mut started = c.start_compress(Vec::new())?;
            started.write_scanlines(img.as_raw())?;
            started.finish()
        })
    }
    fn decode(&self, bytes: &[u8]) -> Result<RgbImage> {
        catch("jpeg", || {
            let d = mozjpeg::Decompress::new_mem(bytes)?;
            let mut rgb = d.rgb()?;
            let (w, h) = (rgb.width() as u32, rgb.height() as u32);
            let px: Vec<u8> = rgb.read_scanlines()?;
            rgb.finish()?;
            RgbImage::from_raw(w, h, px).ok_or_else(|| std::io::Error::other("short image"))
        })
    }
}

pub struct WebP;

impl RdCodec for WebP {
    fn name(&self) -> String {
        "webp".into()
    }
    fn description(&self) -> String {
        "WebP: libwebp 1.x (crate webp 0.3 / libwebp-sys), lossy, default method 4, 4:2:0; quality 5..95".into()
    }
    fn settings(&self) -> Vec<u32> {
        vec![5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95]
    }
    fn encode(&self, img: &RgbImage, quality: u32) -> Result<Vec<u8>> {
        let enc = webp::Encoder::from_rgb(img.as_raw(), img.width(), img.height());
        let mem = enc.encode_simple(false, quality as f32).map_err(|e| failed("webp", format!("{e:?}")))?;
        Ok(mem.to_vec())
    }
    fn decode(&self, bytes: &[u8]) -> Result<RgbImage> {
        let img = webp::Decoder::new(bytes).decode().ok_or_else(|| failed("webp", "undecodable stream"))?;
        if img.is_alpha() {
            return Err(failed("webp", "unexpected alpha"));
        }
        RgbImage::from_raw(img.width(), img.height(), img.to_vec()).ok_or_else(|| failed("webp", "short image"))
    }
}

pub struct Avif {
    /// rav1e speed preset, 0 (slowest) ..= 10.
    pub speed: u8,
}

/// BT.601 luma weights, the matrix ravif writes into the file for YCbCr.
const KR: f64 = 0.299;
const KB: f64 = 0.114;

impl RdCodec for Avif {
    fn name(&self) -> String {
        "avif".into()
    }
    fn description(&self) -> String {
        format!("AVIF: rav1e 0.8 via ravif 0.13, speed {}, 10-bit 4:4:4 YCbCr BT.601 full range; decoded with dav1d (system libdav1d); quality 20..95", self.speed)
    }
    fn settings(&self) -> Vec<u32> {
        vec![20, 35, 50, 60, 70, 80, 90, 95]
    }
    fn encode(&self, img: &RgbImage, quality: u32) -> Result<Vec<u8>> {
        let px: Vec<ravif::RGB8> = img.pixels().map(|p| ravif::RGB8::new(p[0], p[1], p[2])).collect();
        let enc = ravif::Encoder::new()
            .with_quality(quality as f32)
            .with_speed(self.speed)
            .with_bit_depth(ravif::BitDepth::Ten)
            .with_internal_color_model(ravif::ColorModel::YCbCr)
            // One encode per image; the harness parallelises across images instead.
            .with_num_threads(Some(1));
        let out = enc.encode_rgb(ravif::Img::new(px.as_slice(), img.width() as usize, img.height() as usize)).map_err(|e| failed("avif", e))?;
        Ok(out.avif_file)
    }
    fn decode(&self, bytes: &[u8]) -> Result<RgbImage> {
        let parsed = avif_parse::read_avif(&mut std::io::Cursor::new(bytes)).map_err(|e| failed("avif", format!("{e:?}")))?;
        let obu: Vec<u8> = parsed.primary_item.to_vec();
        // One still frame: no frame threading, so the picture is ready as soon as its data is in.
        let mut settings = dav1d::Settings::new();
        settings.set_n_threads(1);
        settings.set_max_frame_delay(1);
        let mut dec = dav1d::Decoder::with_settings(&settings).map_err(|e| failed("avif", e))?;
        let mut sent = dec.send_data(obu, None, None, None);
        let mut attempts = 0;
        let pic = loop {
            match sent {
                Ok(()) => {}
                Err(e) if e.is_again() => sent = dec.send_pending_data(),
                Err(e) => return Err(failed("avif", e)),
            }
            match dec.get_picture() {
                Ok(p) => break p,
                Err(e) if e.is_again() && attempts < 64 => attempts += 1,
                Err(e) => return Err(failed("avif", format!("no picture: {e}"))),
            }
        };
        if pic.pixel_layout() != dav1d::PixelLayout::I444 {
            return Err(failed("avif", "expected 4:4:4"));
        }
        ycbcr444_to_rgb(&pic)
    }
}

/// Full-range BT.601 YCbCr (8 or 10 bit) → 8-bit RGB, the inverse of ravif's forward matrix.
fn ycbcr444_to_rgb(pic: &dav1d::Picture) -> Result<RgbImage> {
    use dav1d::PlanarImageComponent::{U, V, Y};
    let (w, h) = (pic.width(), pic.height());
    let depth = pic.bit_depth();
    let bytes_per = if depth > 8 { 2 } else { 1 };
    let planes = [pic.plane(Y), pic.plane(U), pic.plane(V)];
    let strides = [pic.stride(Y) as usize, pic.stride(U) as usize, pic.stride(V) as usize];
    let sample = |c: usize, x: u32, y: u32| -> f64 {
        let i = y as usize * strides[c] + x as usize * bytes_per;
        let p = &planes[c];
        if bytes_per == 2 { u16::from_le_bytes([p[i], p[i + 1]]) as f64 } else { p[i] as f64 }
    };
    let max = ((1u32 << depth) - 1) as f64;
    let half = (max * 0.5).round();
    let to8 = 255.0 / max;
    let kg = 1.0 - KR - KB;
    let mut out = RgbImage::new(w, h);
    for (x, y, px) in out.enumerate_pixels_mut() {
        let (l, cb, cr) = (sample(0, x, y), sample(1, x, y) - half, sample(2, x, y) - half);
        let r = l + 2.0 * (1.0 - KR) * cr;
        let b = l + 2.0 * (1.0 - KB) * cb;
        let g = (l - KR * r - KB * b) / kg;
        let q = |v: f64| (v * to8).round().clamp(0.0, 255.0) as u8;
        *px = image::Rgb([q(r), q(g), q(b)]);
    }
    Ok(out)
}
