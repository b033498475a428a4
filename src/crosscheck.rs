//! Cross-backend decoding check: streams made on one backend must decode to exactly the same
//! latent on another, and to pixels within a small tolerance.
//!
//! ```text
//!  random image ──codec A.encode──► stream, ŷ_enc ──codec B.decode_latent──► ŷ_dec   (must be ŷ_enc, bit for bit)
//!                                          └────► A.decode, B.decode ──► pixel difference (float g_s on each)
//!  directions alternate: even images A→B, odd images B→A
//! ```
//! Used by the cross-backend tests (small counts in CI) and by `ncodec crosscheck` for the
//! full stress run.

use image::RgbImage;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::codec::Codec;
use crate::container::Container;
use crate::error::Result;

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub count: usize,
    pub seed: u64,
    /// Images are 1..=max_side pixels wide and high.
    pub max_side: u32,
}

/// What one run found.
#[derive(Debug, Clone)]
pub struct Report {
    pub images: usize,
    /// Streams whose decoded latent differs from the encoder's in any element.
    pub latent_mismatches: usize,
    /// Largest |A − B| over all decoded 8-bit samples of the same stream.
    pub max_pixel_diff: u8,
    /// Lowest PSNR between the two backends' decodes of one stream (∞ when identical).
    pub min_psnr_between: f64,
    /// Samples (over all images) that differ at all between the two decodes.
    pub differing_samples: u64,
    pub samples: u64,
    /// Descriptions of the first few mismatches, for the error message.
    pub failures: Vec<String>,
}

/// Runs the check between two loaded copies of the same codec (same weights) on different
/// backends. `progress` is called after every image.
pub fn run(a: &Codec, b: &Codec, opts: Options, progress: &dyn Fn(&Report)) -> Result<Report> {
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let mut report = Report::default();
    for i in 0..opts.count {
        let img = random_image(&mut rng, opts.max_side);
        let quality = rng.gen_range(1..=a.qualities());
        report.check(a, b, &img, quality, i % 2 == 0, &format!("image {i}"))?;
        progress(&report);
    }
    Ok(report)
}

impl Default for Report {
    fn default() -> Self {
        Self { images: 0, latent_mismatches: 0, max_pixel_diff: 0, min_psnr_between: f64::INFINITY, differing_samples: 0, samples: 0, failures: vec![] }
    }
}

impl Report {
    /// Encodes `img` on `a` (or on `b` when `!a_encodes`), decodes the stream's latent on the
    /// other side and its pixels on both, and records the outcome. Errors only when encoding
    /// fails; a mismatch is counted, not returned.
    pub fn check(&mut self, a: &Codec, b: &Codec, img: &RgbImage, quality: u8, a_encodes: bool, label: &str) -> Result<()> {
        assert_eq!(a.digest(), b.digest(), "cross-checking needs the same weights on both sides");
        let (enc, dec) = if a_encodes { (a, b) } else { (b, a) };
        let (bytes, y_enc) = enc.encode_with_latent(img, quality)?;
        let stream = Container::parse(&bytes)?;
        self.images += 1;
        if let Err(why) = self.compare(&stream, &y_enc, dec, a, b) {
            self.latent_mismatches += 1;
            if self.failures.len() < 5 {
                self.failures.push(format!("{label} ({}x{}, q{quality}): {why}", img.width(), img.height()));
            }
        }
        Ok(())
    }

    /// Checks one stream; `Err` describes a mismatch (a decode error counts as one: the other
    /// side just wrote this stream).
    fn compare(&mut self, stream: &Container, y_enc: &[f32], dec: &Codec, a: &Codec, b: &Codec) -> std::result::Result<(), String> {
        let y_dec = dec.decode_latent(stream).map_err(|e| format!("decoding failed: {e}"))?;
        let differ = if y_dec.len() == y_enc.len() { y_enc.iter().zip(&y_dec).filter(|(p, q)| p.to_bits() != q.to_bits()).count() } else { y_enc.len() };
        if differ > 0 {
            return Err(format!("{differ} of {} latent elements differ", y_enc.len()));
        }
        let pa = a.decode(stream).map_err(|e| format!("decoding failed: {e}"))?;
        let pb = b.decode(stream).map_err(|e| format!("decoding failed: {e}"))?;
        let mut max = 0u8;
        for (p, q) in pa.as_raw().iter().zip(pb.as_raw()) {
            let d = p.abs_diff(*q);
            max = max.max(d);
            self.differing_samples += (d != 0) as u64;
        }
        self.max_pixel_diff = self.max_pixel_diff.max(max);
        self.samples += pa.as_raw().len() as u64;
        self.min_psnr_between = self.min_psnr_between.min(crate::metrics::psnr(&pa, &pb));
        Ok(())
    }
}

/// A random test image: random size (biased towards small and odd sizes) and one of several
/// contents that stress different latent statistics.
pub fn random_image(rng: &mut StdRng, max_side: u32) -> RgbImage {
    let mut side = || if rng.gen_bool(0.7) { rng.gen_range(1..=max_side.min(96)) } else { rng.gen_range(1..=max_side) };
    let (w, h) = (side(), side());
    let kind = rng.gen_range(0..4);
    let seed: u32 = rng.r#gen();
    match kind {
        // Photo-like scene, offset so crops differ.
        0 => {
            let (ox, oy) = (seed % 300, (seed >> 9) % 200);
            let scene = crate::synthetic::scene(w + ox, h + oy);
            image::imageops::crop_imm(&scene, ox, oy, w, h).to_image()
        }
        // White noise: large latents, escapes in the range coder.
        1 => {
            let mut r = StdRng::seed_from_u64(seed as u64);
            RgbImage::from_fn(w, h, |_, _| image::Rgb([r.r#gen(), r.r#gen(), r.r#gen()]))
        }
        // Flat colour: latents near the medians.
        2 => {
            let c = seed.to_le_bytes();
            RgbImage::from_pixel(w, h, image::Rgb([c[0], c[1], c[2]]))
        }
        // Gradients and hard edges.
        _ => RgbImage::from_fn(w, h, |x, y| {
            let edge = if (x + seed % 7) * 2 > w + y / 2 { 90 } else { 0 };
            image::Rgb([(x * 255 / w.max(1)) as u8, ((y * 255 / h.max(1)) as u8).saturating_add(edge), ((x ^ y) as u8).wrapping_mul(seed as u8 | 1)])
        }),
    }
}
