//! Training data: a folder of photos held in memory, sampled as random crops.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use image::RgbImage;
use rand::Rng;
use rayon::prelude::*;

use crate::error::{Error, Result};

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
            } else if path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
            {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

pub struct TrainSet {
    images: Vec<RgbImage>,
}

impl TrainSet {
    /// Decodes every image under `dir` that is at least `crop` on both sides.
    pub fn load(dir: &Path, crop: usize) -> Result<Self> {
        let files = image_files(dir)?;
        let images: Vec<RgbImage> = files
            .par_iter()
            .filter_map(|p| crate::io::load_image(p).ok())
            .filter(|im| im.width() as usize >= crop && im.height() as usize >= crop)
            .collect();
        if images.is_empty() {
            return Err(Error::Unsupported(format!("no training images of at least {crop}x{crop} under {}", dir.display())));
        }
        Ok(Self { images })
    }

    pub fn len(&self) -> usize {
        self.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// A batch of random `crop`x`crop` patches with random flips, values in [0, 1].
    pub fn batch(&self, rng: &mut impl Rng, batch: usize, crop: usize, device: &Device) -> Tensor<4> {
        let mut v = vec![0f32; batch * 3 * crop * crop];
        for b in 0..batch {
            let im = &self.images[rng.gen_range(0..self.images.len())];
            let x0 = rng.gen_range(0..=im.width() as usize - crop);
            let y0 = rng.gen_range(0..=im.height() as usize - crop);
            let (fx, fy) = (rng.gen_bool(0.5), rng.gen_bool(0.5));
            for y in 0..crop {
                for x in 0..crop {
                    let sx = if fx { crop - 1 - x } else { x };
                    let sy = if fy { crop - 1 - y } else { y };
                    let p = im.get_pixel((x0 + sx) as u32, (y0 + sy) as u32).0;
                    for c in 0..3 {
                        v[((b * 3 + c) * crop + y) * crop + x] = p[c] as f32 / 255.0;
                    }
                }
            }
        }
        Tensor::from_data(TensorData::new(v, [batch, 3, crop, crop]), device)
    }
}
