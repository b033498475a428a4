//! The public codec API: the zoo of shipped codecs, and image encode/decode to `.ncod` bytes.
//!
//! ```text
//!  RgbImage ──pad to ×64──► tensor ──ImageModel::compress(q)──► sections ──Container──► bytes
//!  bytes ──Container::parse──► (codec, digest, q, W×H) ──ImageModel::decompress──► crop ──► RgbImage
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use burn::prelude::*;
use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::container::{Container, Header, Kind};
use crate::error::{Error, Result};
use crate::models::{PAD_MULTIPLE, Y_STRIDE};
use crate::nn::{from_host, to_host};
use crate::refine::Refinement;
use crate::weights::{self, LoadedModel};

/// The codec used when none is named.
pub const DEFAULT_CODEC: &str = "mlic";

/// Where shipped codecs live: `$NCODEC_CODECS`, else the `codecs/` folder of this source tree.
pub fn zoo_dir() -> PathBuf {
    std::env::var_os("NCODEC_CODECS").map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("codecs"))
}

/// A codec card (`codecs/<name>/card.toml`): what the model is, how it was trained, what it
/// measures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Card {
    pub name: String,
    pub architecture: String,
    pub description: String,
    /// Weight file, relative to the card.
    pub weights: String,
    pub weights_sha256: String,
    pub parameters: usize,
    pub training: Training,
    /// Kodak results measured from real bitstreams, one entry per quality level.
    #[serde(default)]
    pub kodak: Vec<RatePoint>,
    /// VQ codecs: how the Kodak images use each codebook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codebook_usage: Option<Vec<CodebookUsage>>,
    /// Video codecs: a test clip through real streams, with P-frames and all intra.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub video: Vec<VideoPoint>,
}

/// One quality level of a video codec on a clip (means over frames; bpp from stream bytes).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VideoPoint {
    pub clip: String,
    pub quality: u8,
    /// Intra period (1: every frame intra).
    pub gop: usize,
    pub bpp: f64,
    pub psnr_rgb: f64,
    pub psnr_yuv: f64,
    pub ms_ssim: f64,
    /// Seconds per frame to encode / decode on the machine that shipped the card.
    pub encode_s: f64,
    pub decode_s: f64,
}

/// Usage of one VQ codebook over a test set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CodebookUsage {
    pub quality: u8,
    pub level: usize,
    pub codes: usize,
    /// 2^entropy of the code histogram: the number of equally used codes it is worth.
    pub perplexity: f64,
    /// Codes never chosen.
    pub unused: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Training {
    pub data: String,
    pub images: usize,
    pub steps: usize,
    pub batch: usize,
    pub crop: usize,
    pub learning_rate: String,
    pub lambdas: Vec<f64>,
    pub hours: f64,
    pub hardware: String,
    pub command: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RatePoint {
    pub quality: u8,
    pub lambda: f64,
    pub bpp: f64,
    pub psnr: f64,
    pub ms_ssim: f64,
    /// Mean seconds per Kodak image (768x512) to encode / decode, on the machine that shipped
    /// the card (absent in cards written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encode_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decode_s: Option<f64>,
}

impl Card {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        toml::from_str(&text).map_err(|e| Error::Format(format!("{}: {e}", path.display())))
    }
}

/// Names of the shipped codecs (folders of the zoo with a card), sorted.
pub fn list_codecs() -> Result<Vec<(String, Card)>> {
    let dir = zoo_dir();
    let mut out = vec![];
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(&dir, e)),
    };
    for entry in entries.flatten() {
        let card = entry.path().join("card.toml");
        if card.exists() {
            out.push((entry.file_name().to_string_lossy().into_owned(), Card::load(&card)?));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// A loaded codec: weights, integer tables and the device it runs on.
pub struct Codec {
    pub name: String,
    pub card: Option<Card>,
    loaded: LoadedModel,
    device: Device,
}

impl Codec {
    /// Loads a shipped codec by name from the zoo, on the default device.
    pub fn load(name: &str) -> Result<Self> {
        Self::load_on(name, crate::backend::device())
    }

    /// Loads a shipped codec by name onto `device`.
    pub fn load_on(name: &str, device: Device) -> Result<Self> {
        let dir = zoo_dir().join(name);
        let card_path = dir.join("card.toml");
        if !card_path.exists() {
            let known: Vec<String> = list_codecs().unwrap_or_default().into_iter().map(|c| c.0).collect();
            return Err(Error::Unsupported(format!("unknown codec '{name}' (shipped: {})", known.join(", "))));
        }
        let card = Card::load(&card_path)?;
        let mut codec = Self::from_weights_on(name, &dir.join(&card.weights), device)?;
        codec.card = Some(card);
        Ok(codec)
    }

    /// The zoo's codec `name`, or the weight file `weights` under that name when given, on the
    /// default device.
    pub fn open(name: &str, weights: Option<&Path>) -> Result<Self> {
        Self::open_on(name, weights, crate::backend::device())
    }

    /// [`open`](Self::open) onto `device`.
    pub fn open_on(name: &str, weights: Option<&Path>, device: Device) -> Result<Self> {
        match weights {
            Some(w) => Self::from_weights_on(name, w, device),
            None => Self::load_on(name, device),
        }
    }

    /// A codec from any weight file (e.g. a fresh export), named `name` in the streams it writes.
    pub fn from_weights(name: &str, path: &Path) -> Result<Self> {
        Self::from_weights_on(name, path, crate::backend::device())
    }

    pub fn from_weights_on(name: &str, path: &Path, device: Device) -> Result<Self> {
        let loaded = weights::load(path, &device)?;
        Ok(Self { name: name.to_string(), card: None, loaded, device })
    }

    /// A codec from an in-memory model (tests, experiments).
    pub fn from_loaded(name: &str, loaded: LoadedModel, device: Device) -> Self {
        Self { name: name.to_string(), card: None, loaded, device }
    }

    /// Measurement only: run the float hyper-synthesis on the device instead of the integer
    /// one, to quantify what the integer path costs. Streams made this way are not portable.
    #[doc(hidden)]
    pub fn use_float_hyper(&mut self, on: bool) {
        self.loaded.tables.float_hyper = on;
    }

    /// Measurement only: quality 1 with its gain scaled by `factor` (< 1: below the lowest
    /// trained rate). Streams made this way carry the same weight digest but decode correctly
    /// only with a codec scaled the same way.
    #[doc(hidden)]
    pub fn with_lowest_gain_scaled(mut self, factor: f64) -> Self {
        self.loaded.model = self.loaded.model.with_gain_scaled(0, factor);
        self
    }

    /// The model's architecture, from its weight file.
    pub fn architecture(&self) -> crate::models::Architecture {
        self.loaded.config.architecture
    }

    /// Number of quality levels (ncenc -q 1..=levels).
    pub fn qualities(&self) -> u8 {
        self.loaded.config.qualities() as u8
    }

    pub fn digest(&self) -> [u8; 32] {
        self.loaded.digest
    }

    /// Encodes an 8-bit RGB image at `quality` (1 = smallest file … `qualities()` = best).
    pub fn encode(&self, img: &RgbImage, quality: u8) -> Result<Vec<u8>> {
        Ok(self.encode_with_latent(img, quality)?.0)
    }

    /// Encodes at the best quality level whose stream is at most `bpp` bits per pixel (the
    /// lowest level if even that is larger), by bisection on real stream sizes (the rate grows
    /// with the level). Returns the stream and the level.
    pub fn encode_at_bpp(&self, img: &RgbImage, bpp: f64) -> Result<(Vec<u8>, u8)> {
        if !(bpp.is_finite() && bpp > 0.0) {
            return Err(Error::Unsupported(format!("target rate {bpp} bpp is not a positive number")));
        }
        let budget = bpp * img.width() as f64 * img.height() as f64 / 8.0;
        let (mut lo, mut hi) = (1u8, self.qualities());
        let mut best = (self.encode(img, lo)?, lo);
        if best.0.len() as f64 > budget {
            return Ok(best);
        }
        // Invariant: level `lo` fits.
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            let bytes = self.encode(img, mid)?;
            if bytes.len() as f64 <= budget {
                (lo, best) = (mid, (bytes, mid));
            } else {
                hi = mid - 1;
            }
        }
        Ok(best)
    }

    /// [`encode`](Self::encode), also returning the quantized latent ŷ the stream carries, as
    /// every decoder will reconstruct it (see [`decode_latent`](Self::decode_latent)).
    pub fn encode_with_latent(&self, img: &RgbImage, quality: u8) -> Result<(Vec<u8>, Vec<f32>)> {
        crate::io::check_dimensions(img.width(), img.height())?;
        self.check_quality(quality)?;
        let x = image_to_tensor(img, &self.device);
        let coded = self.loaded.model.compress(x, quality as usize - 1, &self.loaded.tables)?;
        Ok((self.stream(img, quality, coded.sections), coded.y_hat))
    }

    /// [`encode_at_bpp`](Self::encode_at_bpp), then the level it picked refined (see
    /// [`encode_refined`](Self::encode_refined)) when the refined stream still fits.
    pub fn encode_at_bpp_refined(&self, img: &RgbImage, bpp: f64, how: Refinement) -> Result<(Vec<u8>, u8)> {
        let (plain, quality) = self.encode_at_bpp(img, bpp)?;
        if how.steps == 0 {
            return Ok((plain, quality));
        }
        let refined = self.encode_refined(img, quality, how)?;
        let budget = bpp * img.width() as f64 * img.height() as f64 / 8.0;
        Ok((if refined.len() as f64 <= budget.max(plain.len() as f64) { refined } else { plain }, quality))
    }

    /// [`encode`](Self::encode) with encode-time latent refinement (see [`crate::refine`]):
    /// slower, and the stream is never worse in λ·MSE + bpp than the plain one, as measured on
    /// its real bytes and 8-bit decoded pixels. Decoders need nothing new.
    pub fn encode_refined(&self, img: &RgbImage, quality: u8, how: Refinement) -> Result<Vec<u8>> {
        if how.steps == 0 {
            return self.encode(img, quality);
        }
        crate::io::check_dimensions(img.width(), img.height())?;
        self.check_quality(quality)?;
        let (model, tables, q) = (&self.loaded.model, &self.loaded.tables, quality as usize - 1);
        let x = image_to_tensor(img, &self.device);
        let size = (img.height() as usize, img.width() as usize);
        let y0 = model.latent(x.clone(), q);
        let refined = crate::refine::refine_latent(model, &self.loaded.config, x, y0.clone(), size, q, how)?;
        let lambda = self.loaded.config.lambdas[q] * 255.0 * 255.0;
        let pixels = (img.width() * img.height()) as f64;
        let cost = |bytes: &[u8]| -> Result<f64> {
            let decoded = self.decode(&Container::parse(bytes)?)?;
            Ok(lambda * crate::metrics::mse(img, &decoded) + bytes.len() as f64 * 8.0 / pixels)
        };
        let plain = self.stream(img, quality, model.compress_latent(y0, q, tables)?.sections);
        let better = self.stream(img, quality, model.compress_latent(refined, q, tables)?.sections);
        Ok(if cost(&better)? < cost(&plain)? { better } else { plain })
    }

    /// The container of an image stream made by this codec.
    fn stream(&self, img: &RgbImage, quality: u8, sections: Vec<Vec<u8>>) -> Vec<u8> {
        let header = Header { kind: Kind::Image, codec: self.name.clone(), weights_digest: self.loaded.digest[..8].try_into().unwrap(), quality, width: img.width(), height: img.height() };
        Container { header, sections }.to_bytes()
    }

    /// Whether this is a video codec (`stem`): it codes frames with [`encode_frame`](Self::encode_frame).
    pub fn is_video(&self) -> bool {
        self.loaded.config.architecture == crate::models::Architecture::Stem
    }

    /// Video codecs: codes one frame at `quality` as an intra frame (`reference` None) or a
    /// P-frame on the previous frame's latent. Returns the frame's sections and its latent
    /// (Q12), the next frame's reference.
    pub fn encode_frame(&self, img: &RgbImage, quality: u8, reference: Option<&[i32]>) -> Result<(Vec<Vec<u8>>, Vec<i32>)> {
        crate::io::check_dimensions(img.width(), img.height())?;
        self.check_quality(quality)?;
        let x = image_to_tensor(img, &self.device);
        let (coded, y_q) = self.loaded.model.compress_frame(x, quality as usize - 1, reference, &self.loaded.tables)?;
        Ok((coded.sections, y_q))
    }

    /// Video codecs: inverse of [`encode_frame`](Self::encode_frame) for a `width`x`height`
    /// frame. With `pixels` false only the latent is decoded (integer work, to reach a later
    /// frame) and no image is returned.
    pub fn decode_frame(&self, sections: &[Vec<u8>], quality: u8, (width, height): (u32, u32), reference: Option<&[i32]>, pixels: bool) -> Result<(Option<RgbImage>, Vec<i32>)> {
        self.check_quality(quality)?;
        let y_hw = [padded(height) / Y_STRIDE, padded(width) / Y_STRIDE];
        let (x_hat, y_q) = self.loaded.model.decompress_frame(sections, quality as usize - 1, y_hw, reference, &self.loaded.tables, &self.device, pixels)?;
        Ok((x_hat.map(|x| tensor_to_image(x, width, height)), y_q))
    }

    /// Checks that a stream header names this codec and its weights.
    pub fn check_header(&self, h: &Header) -> Result<()> {
        if h.codec != self.name {
            return Err(Error::Unsupported(format!("stream was made by codec '{}', not '{}'", h.codec, self.name)));
        }
        if h.weights_digest[..] != self.loaded.digest[..8] {
            return Err(Error::Unsupported(format!(
                "stream was made with other '{}' weights (digest {}, installed {}): decoding it would give garbage",
                h.codec,
                hex(&h.weights_digest),
                hex(&self.loaded.digest[..8])
            )));
        }
        self.check_quality(h.quality).map_err(|_| Error::Format(format!("quality {} out of range", h.quality)))
    }

    /// VQ codecs: codebooks and presets.
    pub fn vq_config(&self) -> Option<&crate::models::VqConfig> {
        self.loaded.tables.latent.vq().map(|v| &v.config)
    }

    /// VQ codecs: the code indices (`[levels][positions]`) of `img` at `quality`.
    pub fn vq_indices(&self, img: &RgbImage, quality: u8) -> Result<Vec<Vec<u32>>> {
        self.check_quality(quality)?;
        self.loaded.model.vq_indices(image_to_tensor(img, &self.device), quality as usize - 1, &self.loaded.tables)
    }

    /// Decodes a parsed container made by this codec.
    pub fn decode(&self, c: &Container) -> Result<RgbImage> {
        let (q, y_hw) = self.check_stream(c)?;
        let x_hat = self.loaded.model.decompress(&c.sections, q, y_hw, &self.loaded.tables, &self.device)?;
        Ok(tensor_to_image(x_hat, c.header.width, c.header.height))
    }

    /// Entropy-decodes a stream's latent ŷ without synthesizing pixels. Integer work only: the
    /// result is the same on every backend and machine.
    pub fn decode_latent(&self, c: &Container) -> Result<Vec<f32>> {
        let (q, y_hw) = self.check_stream(c)?;
        self.loaded.model.decode_latent(&c.sections, q, y_hw, &self.loaded.tables, &self.device)
    }

    fn check_quality(&self, quality: u8) -> Result<()> {
        if (1..=self.qualities()).contains(&quality) { Ok(()) } else { Err(Error::Unsupported(format!("quality {quality} out of range 1..={}", self.qualities()))) }
    }

    /// Checks that `c` was made by this codec and these weights; returns (quality index, latent size).
    fn check_stream(&self, c: &Container) -> Result<(usize, [usize; 2])> {
        let h = &c.header;
        self.check_header(h)?;
        let (pw, ph) = (padded(h.width), padded(h.height));
        Ok((h.quality as usize - 1, [ph / Y_STRIDE, pw / Y_STRIDE]))
    }
}

/// Encodes with a shipped codec by name.
pub fn encode_image(img: &RgbImage, codec: &str, quality: u8) -> Result<Vec<u8>> {
    shared_codec(codec)?.encode(img, quality)
}

/// Decodes any `.ncod` image stream, loading the codec its header names.
pub fn decode_image(bytes: &[u8]) -> Result<RgbImage> {
    let c = Container::parse(bytes)?;
    shared_codec(&c.header.codec)?.decode(&c)
}

/// Loaded codecs are cached per process: loading builds the network and tables.
fn shared_codec(name: &str) -> Result<Arc<Codec>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Codec>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(c) = cache.lock().unwrap().get(name) {
        return Ok(c.clone());
    }
    let codec = Arc::new(Codec::load(name)?);
    cache.lock().unwrap().insert(name.to_string(), codec.clone());
    Ok(codec)
}

fn padded(v: u32) -> usize {
    (v as usize).div_ceil(PAD_MULTIPLE) * PAD_MULTIPLE
}

/// [1, 3, H', W'] in [0, 1], padded to multiples of 64 by repeating the last row/column
/// (cheaper to code than a hard edge to zero).
pub fn image_to_tensor(img: &RgbImage, device: &Device) -> Tensor<4> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (pw, ph) = (padded(img.width()), padded(img.height()));
    let mut v = vec![0f32; 3 * pw * ph];
    for y in 0..ph {
        for x in 0..pw {
            let p = img.get_pixel(x.min(w - 1) as u32, y.min(h - 1) as u32).0;
            for c in 0..3 {
                v[(c * ph + y) * pw + x] = p[c] as f32 / 255.0;
            }
        }
    }
    from_host(v, [1, 3, ph, pw], device)
}

/// Crops the top-left `width`x`height` and rounds to 8-bit.
pub fn tensor_to_image(x: Tensor<4>, width: u32, height: u32) -> RgbImage {
    let [_, _, ph, pw] = x.dims();
    planar_to_image(&to_host(x), [ph, pw], width, height)
}

/// Planar `[3][ph][pw]` samples in [0, 1]: the top-left `width`x`height`, rounded to 8-bit
/// (rows in parallel).
pub fn planar_to_image(v: &[f32], [ph, pw]: [usize; 2], width: u32, height: u32) -> RgbImage {
    use rayon::prelude::*;
    let w = width as usize;
    let mut rgb = vec![0u8; 3 * w * height as usize];
    rgb.par_chunks_mut(3 * w.max(1)).enumerate().for_each(|(y, out)| {
        for c in 0..3 {
            for (o, &f) in out[c..].iter_mut().step_by(3).zip(&v[(c * ph + y) * pw..][..w]) {
                *o = (f * 255.0).round().clamp(0.0, 255.0) as u8;
            }
        }
    });
    RgbImage::from_raw(width, height, rgb).expect("three bytes per pixel")
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
