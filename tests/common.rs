//! Helpers shared by the integration tests: generated images and tiny models (no data sets).

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use image::RgbImage;
use ncodec::models::{Architecture, ModelConfig};
use ncodec::weights::{self, Precision};

/// A deterministic photo-like test image: gradients, an edge, and texture.
pub fn test_image(w: u32, h: u32, seed: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let n = (x.wrapping_mul(2654435761) ^ y.wrapping_mul(40503) ^ seed.wrapping_mul(97)) >> 27;
        let edge = if x * 3 > w + y { 60 } else { 0 };
        image::Rgb([((x * 255 / w.max(1)) as u8).wrapping_add(n as u8), ((y * 255 / h.max(1)) as u8).saturating_add(edge), (((x + y) * 2) as u8) ^ (seed as u8)])
    })
}

/// Writes a randomly initialised tiny model of `arch` with its tables; returns the path.
pub fn tiny_weights(dir: &Path, arch: Architecture, seed: u64) -> PathBuf {
    let device = ncodec::backend::device();
    device.seed(seed);
    let config = ModelConfig { architecture: arch, n: 8, m: 12, lambdas: vec![0.001, 0.01, 0.1], vq: None, transforms: Default::default() };
    let model = config.init(&device);
    let tables = model.export_tables();
    let path = dir.join(format!("{}-{seed}.ncw", arch.name()));
    weights::save(&path, &config, &model, &tables, Precision::F16).unwrap();
    path
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// `../shared/datasets` or `$NCODEC_DATA`, if present.
pub fn datasets() -> Option<PathBuf> {
    let candidates = [std::env::var_os("NCODEC_DATA").map(PathBuf::from), Some(PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/datasets")))];
    candidates.into_iter().flatten().find(|p| p.join("kodak").is_dir())
}

/// Training options for a few quick steps: batch 2, 64x64 crops, checkpoint every 2 steps.
pub fn quick_train_options(config: ModelConfig, data: PathBuf, ckpt_dir: PathBuf) -> ncodec::train::TrainOptions {
    ncodec::train::TrainOptions {
        config,
        data,
        ckpt_dir,
        steps: 3,
        minutes: None,
        batch: 2,
        crop: 64,
        lr: 1e-3,
        checkpoint_every: 2,
        resume: false,
        init_from: None,
        freeze_transforms: false,
        residual_lr_scale: 1.0,
        seed: 1,
        progress: false,
        vq: Default::default(),
        sequences: 4,
        ema: vec![],
        quality_weights: vec![],
        decay_from: None,
        decay_floor: 0.1,
        warmup_steps: 0,
        rescale_min: 1.0,
        sample_by_area: false,
    }
}

/// Runs one of the binaries as a user would (without NCODEC_DEVICE from the environment).
pub fn run_bin(bin: &str, args: &[&str]) -> std::process::Output {
    let exe = match bin {
        "ncenc" => env!("CARGO_BIN_EXE_ncenc"),
        "ncdec" => env!("CARGO_BIN_EXE_ncdec"),
        _ => env!("CARGO_BIN_EXE_ncodec"),
    };
    std::process::Command::new(exe).args(args).env_remove("NCODEC_DEVICE").output().unwrap()
}
