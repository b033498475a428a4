//! Training data: a folder of photos held in memory, sampled as random crops.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use image::RgbImage;
use rand::Rng;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::models::ImageModel;
use crate::nn::{from_host, to_host};

const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "bmp", "tif", "tiff", "ppm", "webp"];

/// All image files below `dir`, sorted (so a seed gives the same run everywhere).
pub fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))? {
            let path = entry.map_err(|e| Error::io(&d, e))?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().and_then(|e| e.to_str()).is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str())) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The Kodak folder: `explicit`, else `$NCODEC_DATA/kodak`, else `../shared/datasets/kodak`.
pub fn kodak_dir(explicit: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(d) = explicit {
        return Ok(d);
    }
    let candidates = [std::env::var_os("NCODEC_DATA").map(|d| PathBuf::from(d).join("kodak")), Some(PathBuf::from("../shared/datasets/kodak"))];
    candidates.into_iter().flatten().find(|p| p.is_dir()).ok_or_else(|| Error::Unsupported("no Kodak folder found: pass --data-dir or set NCODEC_DATA".into()))
}

/// How [`write_subset`] shrinks a training set to a byte budget.
#[derive(Debug, Clone)]
pub struct SubsetOptions {
    pub budget_bytes: u64,
    /// Longer side after downscaling (never below `crop` on the shorter side).
    pub max_side: u32,
    pub crop: u32,
    /// JPEG quality of the re-encoded photos.
    pub quality: u8,
    /// Which photos: each source folder is shuffled with it, so windows with different seeds
    /// train on different photos.
    pub seed: u64,
}

/// Writes a subset of the photos under `src` into `dest` as JPEGs, downscaled to
/// `max_side` (which also removes some noise and compression artefacts, as CompressAI's
/// training sets are downscaled),
/// taking one photo from each source folder in turn (so every source is represented) until
/// the next would pass the budget. Photos smaller than `crop` are skipped. Returns the
/// number of photos and their bytes. `dest` must be absent or empty; the photos are written
/// into a hidden sibling folder that takes `dest`'s name only when all of them are written, so
/// a failed run leaves nothing behind.
pub fn write_subset(src: &Path, dest: &Path, opts: &SubsetOptions) -> Result<(usize, u64)> {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let mut groups: std::collections::BTreeMap<PathBuf, Vec<PathBuf>> = Default::default();
    for f in image_files(src)? {
        groups.entry(f.parent().unwrap_or(src).to_path_buf()).or_default().push(f);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed);
    let mut queues: Vec<std::collections::VecDeque<PathBuf>> = groups
        .into_values()
        .map(|mut v| {
            v.shuffle(&mut rng);
            v.into()
        })
        .collect();
    if std::fs::read_dir(dest).is_ok_and(|mut d| d.next().is_some()) {
        return Err(Error::Unsupported(format!("{} is not empty: a subset is written into a new or empty folder", dest.display())));
    }
    let parent = crate::io::parent_dir(dest);
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let staging = tempfile::Builder::new().prefix(&crate::io::hidden_name(dest)).tempdir_in(parent).map_err(|e| crate::io::cannot_create(dest, e))?;
    let (mut count, mut bytes) = (0usize, 0u64);
    while queues.iter().any(|q| !q.is_empty()) {
        for q in queues.iter_mut() {
            let Some(path) = q.pop_front() else { continue };
            let img = crate::io::load_image(&path)?;
            let (w, h) = img.dimensions();
            if w.min(h) < opts.crop {
                continue;
            }
            let scale = (opts.max_side as f64 / w.max(h) as f64).max(opts.crop as f64 / w.min(h) as f64).min(1.0);
            let (sw, sh) = (((w as f64 * scale).round() as u32).max(opts.crop), ((h as f64 * scale).round() as u32).max(opts.crop));
            let img = if (sw, sh) == (w, h) { img } else { image::imageops::resize(&img, sw, sh, image::imageops::FilterType::Triangle) };
            let mut jpeg = vec![];
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, opts.quality).encode_image(&img).map_err(|e| Error::Image(format!("{}: {e}", path.display())))?;
            if bytes + jpeg.len() as u64 > opts.budget_bytes {
                continue;
            }
            let name = path.strip_prefix(src).unwrap_or(&path).with_extension("jpg").to_string_lossy().replace(['/', '\\'], "_");
            let out = staging.path().join(name);
            std::fs::write(&out, &jpeg).map_err(|e| Error::io(dest.join(out.file_name().unwrap_or_default()), e))?;
            (count, bytes) = (count + 1, bytes + jpeg.len() as u64);
        }
    }
    crate::io::set_output_permissions(staging.path(), dest, true)?;
    if dest.exists() {
        std::fs::remove_dir(dest).map_err(|e| Error::io(dest, e))?;
    }
    std::fs::rename(staging.keep(), dest).map_err(|e| Error::io(dest, e))?;
    Ok((count, bytes))
}

pub struct TrainSet {
    images: Vec<RgbImage>,
    /// Running sums of the images' areas when photos are drawn in proportion to them
    /// ([`TrainSet::by_area`]); empty: uniformly.
    cumulative_area: Vec<u64>,
}

impl TrainSet {
    /// Decodes every image under `dir` that is at least `crop` on both sides.
    pub fn load(dir: &Path, crop: usize) -> Result<Self> {
        let files = image_files(dir)?;
        let images: Vec<RgbImage> = files.par_iter().filter_map(|p| crate::io::load_image(p).ok()).filter(|im| im.width() as usize >= crop && im.height() as usize >= crop).collect();
        if images.is_empty() {
            return Err(Error::Unsupported(format!("no training images of at least {crop}x{crop} under {}", dir.display())));
        }
        Ok(Self { images, cumulative_area: Vec::new() })
    }

    /// Draw each photo in proportion to its area, so that every pixel of the set is about as
    /// likely to be trained on as any other, instead of every photo as likely as any other
    /// (which gives the small photos of a mixed set most of the crops: the 481x321 BSDS photos
    /// of ours are 79 % of the photos and 46 % of the pixels). A draw still takes one random
    /// number, so the crops' positions and flips follow the same draws.
    pub fn by_area(mut self) -> Self {
        let mut total = 0u64;
        self.cumulative_area = self
            .images
            .iter()
            .map(|im| {
                total += im.width() as u64 * im.height() as u64;
                total
            })
            .collect();
        self
    }

    /// The photo a crop comes from: one `u64` of `rng` either way.
    fn draw(&self, rng: &mut impl Rng) -> &RgbImage {
        let i = match self.cumulative_area.last() {
            Some(&total) => {
                let at = below(rng, total as usize) as u64;
                self.cumulative_area.partition_point(|&c| c <= at)
            }
            None => below(rng, self.images.len()),
        };
        &self.images[i]
    }

    pub fn len(&self) -> usize {
        self.images.len()
    }

    pub fn image(&self, i: usize) -> &RgbImage {
        &self.images[i]
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// A batch of random `crop`x`crop` patches with random flips, values in [0, 1]. With
    /// `rescale_min` < 1 each patch is also shrunk by a random factor s in
    /// [max(rescale_min, crop / shorter side), 1]: a (crop/s)² window averaged down to crop²
    /// (area filter), so large photos give more, and differently sharp, views. Every patch
    /// takes the same random draws whatever `rescale_min`, so runs that differ only in it
    /// see the same images, positions and flips.
    pub fn batch(&self, rng: &mut impl Rng, batch: usize, crop: usize, rescale_min: f64, device: &Device) -> Tensor<4> {
        let mut v = vec![0f32; batch * 3 * crop * crop];
        for b in 0..batch {
            let im = self.draw(rng);
            let (w, h) = (im.width() as usize, im.height() as usize);
            let lowest = rescale_min.max(crop as f64 / w.min(h) as f64);
            let u: f64 = rng.r#gen();
            let scale = if lowest < 1.0 { lowest + u * (1.0 - lowest) } else { 1.0 };
            // The window the patch is averaged from; within the image by construction.
            let window = ((crop as f64 / scale).ceil() as usize).min(w.min(h));
            let x0 = below(rng, w - window + 1);
            let y0 = below(rng, h - window + 1);
            let (fx, fy) = (rng.gen_bool(0.5), rng.gen_bool(0.5));
            let (cols, rows) = (area_taps(x0, scale, crop, w), area_taps(y0, scale, crop, h));
            for y in 0..crop {
                let row = &rows[if fy { crop - 1 - y } else { y }];
                for x in 0..crop {
                    let col = &cols[if fx { crop - 1 - x } else { x }];
                    let mut p = [0f32; 3];
                    for &(sy, wy) in row {
                        for &(sx, wx) in col {
                            let q = im.get_pixel(sx as u32, sy as u32).0;
                            for c in 0..3 {
                                p[c] += wy * wx * q[c] as f32;
                            }
                        }
                    }
                    for c in 0..3 {
                        v[((b * 3 + c) * crop + y) * crop + x] = p[c] / 255.0;
                    }
                }
            }
        }
        Tensor::from_data(TensorData::new(v, [batch, 3, crop, crop]), device)
    }
}

/// A uniform index below `n` from exactly one `u64` of `rng` (multiply-shift; `gen_range`
/// may take more draws for some ranges, which would shift every later crop of a run whose
/// ranges differ, as a rescaled one's do).
fn below(rng: &mut impl Rng, n: usize) -> usize {
    ((rng.r#gen::<u64>() as u128 * n as u128) >> 64) as usize
}

/// For each of `n` output samples of a 1-D shrink by `scale` (≤ 1) starting at source index
/// `start`: the source indices its footprint [start + i/scale, start + (i+1)/scale) covers and
/// their weights (the overlap, summing to 1), clamped to `len` source samples. At scale 1
/// each output takes one source sample whole.
fn area_taps(start: usize, scale: f64, n: usize, len: usize) -> Vec<Vec<(usize, f32)>> {
    let step = 1.0 / scale;
    (0..n)
        .map(|i| {
            let (lo, hi) = (i as f64 * step, (i + 1) as f64 * step);
            let mut taps = vec![];
            let mut k = lo.floor() as usize;
            while (k as f64) < hi && start + k < len {
                let overlap = (hi.min(k as f64 + 1.0) - lo.max(k as f64)) / step;
                if overlap > 1e-9 {
                    taps.push((start + k, overlap as f32));
                }
                k += 1;
            }
            let total: f32 = taps.iter().map(|t| t.1).sum();
            taps.iter_mut().for_each(|t| t.1 /= total);
            taps
        })
        .collect()
}

impl TrainSet {
    /// Image `i` (mirrored left-right when `mirror`) as a `[1, 3, H, W]` tensor in [0, 1].
    fn image_tensor(&self, i: usize, mirror: bool, device: &Device) -> Tensor<4> {
        let im = &self.images[i];
        let (w, h) = (im.width() as usize, im.height() as usize);
        let mut v = vec![0f32; 3 * h * w];
        for (x, y, p) in im.enumerate_pixels() {
            let x = if mirror { w - 1 - x as usize } else { x as usize };
            for c in 0..3 {
                v[(c * h + y as usize) * w + x] = p.0[c] as f32 / 255.0;
            }
        }
        from_host(v, [1, 3, h, w], device)
    }
}

/// Gain-free latents g_a(x) of every training image and of its mirror image, for training an
/// entropy model on frozen transforms: one analysis pass per image instead of one per step.
pub struct LatentSet {
    /// (height, width, `[M][h][w]` values).
    latents: Vec<(usize, usize, Vec<f32>)>,
    channels: usize,
}

const LATENT_MAGIC: &[u8; 4] = b"NCL1";

impl LatentSet {
    /// The latents cached at `cache` if it was written for `key` (e.g. the transforms' digest)
    /// and this training set, else computed and cached there (fp16: training needs no more).
    pub fn cached(cache: &Path, key: &[u8; 32], set: &TrainSet, model: &ImageModel, device: &Device) -> Result<Self> {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(key);
        for im in &set.images {
            h.update(im.width().to_le_bytes());
            h.update(im.height().to_le_bytes());
            h.update(&im.as_raw()[..im.as_raw().len().min(4096)]);
        }
        let key: [u8; 32] = h.finalize().into();
        let key = &key;
        if let Ok(bytes) = std::fs::read(cache) {
            match Self::from_bytes(&bytes, key) {
                Some(s) => return Ok(s),
                None => eprintln!("ignoring stale latent cache {}", cache.display()),
            }
        }
        let s = Self::compute(set, model, device);
        crate::io::write_atomic(cache, &s.to_bytes(key))?;
        Ok(s)
    }

    fn to_bytes(&self, key: &[u8; 32]) -> Vec<u8> {
        let mut out = LATENT_MAGIC.to_vec();
        out.extend_from_slice(key);
        for v in [self.latents.len(), self.channels] {
            out.extend_from_slice(&(v as u32).to_le_bytes());
        }
        for (h, w, y) in &self.latents {
            out.extend_from_slice(&(*h as u32).to_le_bytes());
            out.extend_from_slice(&(*w as u32).to_le_bytes());
            out.extend(y.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()));
        }
        out
    }

    fn from_bytes(bytes: &[u8], key: &[u8; 32]) -> Option<Self> {
        let mut r = crate::bytes::Reader::new(bytes, "latent cache");
        if r.take(4).ok()? != LATENT_MAGIC || r.take(32).ok()? != key {
            return None;
        }
        let (count, channels) = (r.u32_le().ok()? as usize, r.u32_le().ok()? as usize);
        let mut latents = Vec::with_capacity(count.min(1 << 16));
        for _ in 0..count {
            let (h, w) = (r.u32_le().ok()? as usize, r.u32_le().ok()? as usize);
            let n = channels.checked_mul(h)?.checked_mul(w)?.checked_mul(2)?;
            let y = r.take(n).ok()?.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect();
            latents.push((h, w, y));
        }
        (r.remaining() == 0).then_some(Self { latents, channels })
    }

    pub fn compute(set: &TrainSet, model: &ImageModel, device: &Device) -> Self {
        let mut latents = vec![];
        let mut channels = 0;
        for i in 0..set.len() {
            for mirror in [false, true] {
                let y = model.analyze(set.image_tensor(i, mirror, device));
                let [_, m, h, w] = y.dims();
                channels = m;
                latents.push((h, w, to_host(y)));
            }
            if (i + 1) % 100 == 0 {
                eprintln!("analysed {} of {} training images", i + 1, set.len());
            }
        }
        Self { latents, channels }
    }

    pub fn len(&self) -> usize {
        self.latents.len()
    }

    /// Latent `i`: (height, width, `[M][h][w]`). Even `i`: training image `i / 2`; odd: its
    /// mirror image.
    pub fn get(&self, i: usize) -> (usize, usize, &[f32]) {
        let (h, w, y) = &self.latents[i];
        (*h, *w, y)
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    pub fn is_empty(&self) -> bool {
        self.latents.is_empty()
    }

    /// `batch` random `size`x`size` latent crops of `set`'s images (`[batch, M, size, size]`)
    /// and the matching `16·size` pixel crops (`[batch, 3, 16·size, 16·size]`). Crops lie
    /// inside the image, so every latent has its 16x16 pixels.
    pub fn batch(&self, set: &TrainSet, rng: &mut impl Rng, batch: usize, size: usize, device: &Device) -> Result<(Tensor<4>, Tensor<4>)> {
        let stride = crate::models::Y_STRIDE;
        // (latent index, rows and columns of latents fully inside the image)
        let fits: Vec<(usize, usize, usize)> = (0..self.latents.len())
            .map(|j| {
                let im = &set.images[j / 2];
                (j, im.height() as usize / stride, im.width() as usize / stride)
            })
            .filter(|&(_, h, w)| h >= size && w >= size)
            .collect();
        if fits.is_empty() || self.latents.len() != 2 * set.len() {
            return Err(Error::Unsupported(format!("no training image of at least {0}x{0} pixels with cached latents", size * stride)));
        }
        let m = self.channels;
        let px = size * stride;
        let mut v = Vec::with_capacity(batch * m * size * size);
        let mut pixels = Vec::with_capacity(batch * 3 * px * px);
        for _ in 0..batch {
            let (j, fh, fw) = fits[rng.gen_range(0..fits.len())];
            let (_, w, y) = &self.latents[j];
            let (y0, x0) = (rng.gen_range(0..=fh - size), rng.gen_range(0..=fw - size));
            for c in 0..m {
                for r in 0..size {
                    let start = (c * self.latents[j].0 + y0 + r) * w + x0;
                    v.extend_from_slice(&y[start..start + size]);
                }
            }
            let im = &set.images[j / 2];
            let iw = im.width() as usize;
            for c in 0..3 {
                for r in 0..px {
                    for x in 0..px {
                        let sx = x0 * stride + x;
                        let sx = if j % 2 == 1 { iw - 1 - sx } else { sx };
                        pixels.push(im.get_pixel(sx as u32, (y0 * stride + r) as u32).0[c] as f32 / 255.0);
                    }
                }
            }
        }
        Ok((from_host(v, [batch, m, size, size], device), from_host(pixels, [batch, 3, px, px], device)))
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn area_taps_cover_each_footprint_with_unit_weight() {
        let identity = area_taps(5, 1.0, 4, 100);
        assert_eq!(identity, vec![vec![(5, 1.0)], vec![(6, 1.0)], vec![(7, 1.0)], vec![(8, 1.0)]]);
        let half = area_taps(0, 0.5, 3, 100);
        assert_eq!(half, vec![vec![(0, 0.5), (1, 0.5)], vec![(2, 0.5), (3, 0.5)], vec![(4, 0.5), (5, 0.5)]]);
        for taps in area_taps(3, 0.7, 50, 200) {
            let total: f32 = taps.iter().map(|t| t.1).sum();
            assert!((total - 1.0).abs() < 1e-5 && taps.len() <= 3, "{taps:?}");
        }
        // Clamped to the source: the last footprint may reach past it and keeps what is inside.
        assert!(area_taps(0, 0.75, 3, 4).iter().flatten().all(|&(k, _)| k < 4));
    }

    /// A horizontal ramp 2 levels per pixel: a patch's span of values is twice its source
    /// window's width.
    fn ramp_set(width: u32, height: u32) -> TrainSet {
        TrainSet { images: vec![RgbImage::from_fn(width, height, |x, _| image::Rgb([(2 * x) as u8; 3]))], cumulative_area: Vec::new() }
    }

    fn spans(set: &TrainSet, rescale_min: f64, seed: u64) -> Vec<f32> {
        let device = Device::flex();
        let x = set.batch(&mut StdRng::seed_from_u64(seed), 16, 32, rescale_min, &device);
        let v = to_host(x);
        v.chunks(3 * 32 * 32).map(|p| 255.0 * (p.iter().cloned().fold(f32::MIN, f32::max) - p.iter().cloned().fold(f32::MAX, f32::min))).collect()
    }

    #[test]
    fn rescaled_patches_average_wider_windows() {
        let set = ramp_set(120, 64);
        // Without rescaling every patch is a plain 32-pixel window (flipped or not): span 62.
        assert!(spans(&set, 1.0, 7).iter().all(|&s| (s - 62.0).abs() < 1e-3));
        // Shrinking by s ∈ [0.5, 1] averages windows of 32..64 pixels: spans up to ~126, more
        // than one patch wider than any plain one, none narrower.
        let rescaled = spans(&set, 0.5, 7);
        assert!(rescaled.iter().all(|&s| s > 60.0 && s < 128.0), "{rescaled:?}");
        assert!(rescaled.iter().filter(|&&s| s > 70.0).count() > 1, "{rescaled:?}");
        // The shorter side (here 40) bounds the shrink: at most 40 / 32.
        let short = spans(&ramp_set(120, 40), 0.5, 7);
        assert!(short.iter().all(|&s| s < 2.0 * 40.0), "{short:?}");
    }

    /// Photos drawn by area come in proportion to it; uniform draws do not look at size. Each
    /// photo is one flat grey, so a crop names its photo.
    #[test]
    fn photos_drawn_by_area_come_in_proportion_to_their_crop_positions() {
        // Areas 1 : 4 : 16.
        let sides = [16u32, 32, 64];
        let grey = |i: usize| RgbImage::from_pixel(sides[i], sides[i], image::Rgb([10 + 50 * i as u8; 3]));
        let set = TrainSet { images: (0..3).map(grey).collect(), cumulative_area: Vec::new() };
        let counts = |set: &TrainSet| {
            let x = to_host(set.batch(&mut StdRng::seed_from_u64(5), 910, 16, 1.0, &Device::flex()));
            let mut n = [0usize; 3];
            for patch in x.chunks(3 * 16 * 16) {
                n[((patch[0] * 255.0).round() as usize - 10) / 50] += 1;
            }
            n
        };
        let uniform = counts(&set);
        assert!(uniform.iter().all(|&c| c.abs_diff(303) < 60), "{uniform:?}");
        let by_area = counts(&set.by_area());
        // Expected 43, 173 and 693 of 910.
        assert!(by_area[0].abs_diff(43) < 20 && by_area[1].abs_diff(173) < 35 && by_area[2].abs_diff(693) < 40, "{by_area:?}");
    }

    #[test]
    fn indices_are_uniform() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut counts = [0usize; 5];
        for _ in 0..50_000 {
            counts[below(&mut rng, 5)] += 1;
        }
        assert!(counts.iter().all(|&c| c.abs_diff(10_000) < 400), "{counts:?}");
    }

    #[test]
    fn rescaling_draws_the_same_images() {
        // A constant image per index shows which image each patch came from.
        let set = TrainSet { images: (0..5).map(|i| RgbImage::from_pixel(64, 48, image::Rgb([40 * i as u8; 3]))).collect(), cumulative_area: Vec::new() };
        let device = Device::flex();
        let firsts = |rescale_min| to_host(set.batch(&mut StdRng::seed_from_u64(3), 12, 16, rescale_min, &device)).chunks(3 * 16 * 16).map(|p| (p[0] * 255.0).round() as u8).collect::<Vec<_>>();
        assert_eq!(firsts(1.0), firsts(0.4));
    }
}
