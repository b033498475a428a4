//! The VQ codec end to end on a tiny model and generated images: training (frozen and
//! trainable encoder), checkpoint/resume, priors, export, and real bitstreams.

mod common;

use ncodec::container::Container;
use ncodec::models::{Architecture, ModelConfig, VqConfig};
use ncodec::train::vq::{VqLoss, VqTrainOptions};
use ncodec::train::{TrainOptions, load_checkpoint, train};

/// Generated training photos and a tiny mean-scale model to take the transforms from.
fn setup(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for i in 0..3 {
        common::test_image(112, 96, i).save(data.join(format!("{i}.png"))).unwrap();
    }
    let device = ncodec::backend::device();
    device.seed(3);
    let base_config = ModelConfig { architecture: Architecture::MeanScaleHyperprior, n: 8, m: 12, lambdas: vec![0.01], vq: None, transforms: Default::default() };
    let base = base_config.init(&device);
    let base_path = dir.join("base.ncw");
    ncodec::weights::save(&base_path, &base_config, &base, &base.export_tables(), ncodec::weights::Precision::F32).unwrap();
    (data, base_path)
}

fn options(data: std::path::PathBuf, base: std::path::PathBuf, ckpt: std::path::PathBuf) -> TrainOptions {
    let config = ModelConfig { architecture: Architecture::Vq, n: 8, m: 12, lambdas: vec![], vq: Some(VqConfig::with(3, 16)), transforms: Default::default() };
    TrainOptions { init_from: Some(base), ..common::quick_train_options(config, data, ckpt) }
}

#[test]
fn vq_trains_resumes_exports_and_codes_real_bitstreams() {
    let dir = common::tempdir();
    let (data, base) = setup(dir.path());
    let ckpt = dir.path().join("ckpt");
    let mut opts = options(data, base.clone(), ckpt.clone());
    assert_eq!(train(&opts).unwrap().step, 3);
    for f in ["priors.bin", "vq_ema.bin", "latents.bin", "model.bpk", "log.csv"] {
        assert!(ckpt.join(f).exists(), "{f} written");
    }
    opts.steps = 4;
    opts.resume = true;
    assert_eq!(train(&opts).unwrap().step, 4, "resume continues");
    let log = std::fs::read_to_string(ckpt.join("log.csv")).unwrap();
    assert!(log.starts_with("step,seconds,loss,mse,psnr"), "{log}");

    let device = ncodec::backend::device();
    let (state, model) = load_checkpoint(&ckpt, &device).unwrap();
    let base_model = ncodec::weights::load(&base, &device).unwrap().model;
    assert_eq!(model.analysis_digest(), base_model.analysis_digest(), "the frozen encoder does not move");
    let out = dir.path().join("vq.ncw");
    ncodec::train::export(&ckpt, &model, &state, &out, ncodec::weights::Precision::F16).unwrap();

    let codec = ncodec::Codec::from_weights("vq", &out).unwrap();
    assert_eq!(codec.qualities(), 4, "presets: reduced codebook, then 1..3 levels");
    let img = common::test_image(100, 70, 5);
    let mut sizes = vec![];
    for q in 1..=codec.qualities() {
        let (bytes, y_hat) = codec.encode_with_latent(&img, q).unwrap();
        let c = Container::parse(&bytes).unwrap();
        assert_eq!(codec.decode_latent(&c).unwrap(), y_hat, "q{q}: the decoder rebuilds the encoder's latent exactly");
        let back = codec.decode(&c).unwrap();
        assert_eq!(back.dimensions(), img.dimensions());
        let idx = codec.vq_indices(&img, q).unwrap();
        let cfg = codec.vq_config().unwrap();
        let preset = cfg.presets[q as usize - 1];
        assert_eq!(idx.len(), preset.levels);
        assert!(idx[0].iter().all(|&k| (k as usize) < preset.codes));
        sizes.push(bytes.len());
    }
    assert!(sizes[3] > sizes[1], "three levels cost more than one: {sizes:?}");
    assert!(sizes[1] >= sizes[0], "the reduced codebook costs no more than the full one: {sizes:?}");

    // --bpp: the best level whose real stream fits, the smallest when none does.
    let px = (img.width() * img.height()) as f64;
    let target = (sizes[2] as f64 + 0.5) * 8.0 / px;
    let (bytes, q) = codec.encode_at_bpp(&img, target).unwrap();
    assert_eq!((bytes.len(), q), (sizes[2], 3), "sizes {sizes:?}");
    assert_eq!(codec.encode_at_bpp(&img, 1e-6).unwrap().1, 1);
    assert_eq!(codec.encode_at_bpp(&img, 1e3).unwrap().1, 4);
    assert!(codec.encode_at_bpp(&img, f64::NAN).is_err());

    // Truncated and corrupted sections: errors, never panics.
    let bytes = codec.encode(&img, 4).unwrap();
    let mut c = Container::parse(&bytes).unwrap();
    let section = c.sections[0].clone();
    for cut in [0, 4, section.len() / 2] {
        c.sections[0] = section[..cut].to_vec();
        let _ = codec.decode(&c);
    }
    for i in 0..section.len().min(64) {
        let mut s = section.clone();
        s[i] ^= 0x5a;
        c.sections[0] = s;
        let _ = codec.decode(&c);
    }
    c.sections.push(vec![]);
    assert!(codec.decode(&c).is_err(), "a VQ stream has exactly one section");
}

#[test]
fn trainable_encoder_moves_g_a_and_ms_ssim_needs_large_crops() {
    let dir = common::tempdir();
    let (data, base) = setup(dir.path());
    let mut opts = options(data, base.clone(), dir.path().join("ckpt"));
    opts.steps = 2;
    opts.vq = VqTrainOptions { train_encoder: true, ..Default::default() };
    train(&opts).unwrap();
    let device = ncodec::backend::device();
    let (_, model) = load_checkpoint(&dir.path().join("ckpt"), &device).unwrap();
    let base_model = ncodec::weights::load(&base, &device).unwrap().model;
    assert_ne!(model.analysis_digest(), base_model.analysis_digest(), "straight-through gradients reach g_a");

    opts.ckpt_dir = dir.path().join("ckpt2");
    opts.vq = VqTrainOptions { loss: VqLoss::MsSsim, ..Default::default() };
    let err = train(&opts).unwrap_err().to_string();
    assert!(err.contains("MS-SSIM"), "{err}");

    opts.init_from = None;
    opts.vq = VqTrainOptions::default();
    assert!(train(&opts).is_err(), "VQ training needs transforms to start from");
}
