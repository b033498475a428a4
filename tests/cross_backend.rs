//! Streams decode to the same latent whatever backend encoded or decodes them.
//!
//! The second backend is wgpu on Mesa's software Vulkan device (lavapipe), which CI installs
//! (`mesa-vulkan-drivers`). Without it the tests say so and pass locally, but fail under CI,
//! where the wgpu path must be exercised.
//!
//! Full stress run (≥ 1,000 images), as documented in the README:
//! `ncodec crosscheck --codec mean-scale --a cpu --b wgpu --count 1000`
//! or `NCODEC_STRESS_COUNT=1000 cargo test --release --test cross_backend -- --nocapture`.

mod common;

use common::*;
use ncodec::backend::{Backend, Selected};
use ncodec::codec::Codec;
use ncodec::crosscheck::{self, Options};
use ncodec::models::Architecture;
use ncodec::weights;

/// Reconstructions of one stream on two backends differ only by float rounding in g_s.
const MAX_PIXEL_DIFF: u8 = 3;
const MIN_PSNR_BETWEEN: f64 = 45.0;

fn second_backend() -> Option<Selected> {
    match Backend::WgpuCpu.select() {
        Ok(s) => Some(s),
        Err(e) if std::env::var_os("CI").is_some() => panic!("CI must run the wgpu path: {e}"),
        Err(e) => {
            eprintln!("skipped: {e}");
            None
        }
    }
}

fn cpu() -> Selected {
    Backend::Cpu.select().unwrap()
}

fn check(report: &crosscheck::Report) {
    eprintln!("{report:?}");
    assert_eq!(report.latent_mismatches, 0, "latent mismatches: {:?}", report.failures);
    assert!(report.max_pixel_diff <= MAX_PIXEL_DIFF, "backends' reconstructions differ by {}", report.max_pixel_diff);
    assert!(report.min_psnr_between >= MIN_PSNR_BETWEEN, "backends' reconstructions only {:.2} dB apart", report.min_psnr_between);
}

/// Every architecture, with random weights, both directions.
#[test]
fn every_architecture_decodes_identically_across_backends() {
    let Some(gpu) = second_backend() else { return };
    let dir = tempdir();
    for (k, arch) in [Architecture::Factorized, Architecture::ScaleHyperprior, Architecture::MeanScaleHyperprior, Architecture::MultiReference].into_iter().enumerate() {
        let path = tiny_weights(dir.path(), arch, 7 + k as u64);
        let a = Codec::open_on(arch.name(), Some(&path), cpu().device).unwrap();
        let b = Codec::open_on(arch.name(), Some(&path), gpu.device.clone()).unwrap();
        check(&crosscheck::run(&a, &b, Options { count: 6, seed: k as u64, max_side: 96 }, &|_| {}).unwrap());
    }
}

/// The shipped codecs on generated images of random sizes and contents: the CI-sized stress
/// test (`NCODEC_STRESS_COUNT` raises the count).
#[test]
fn shipped_codecs_stress() {
    let Some(gpu) = second_backend() else { return };
    let count = std::env::var("NCODEC_STRESS_COUNT").ok().and_then(|v| v.parse().ok()).unwrap_or(16);
    for (name, _) in ncodec::codec::list_codecs().unwrap() {
        let a = Codec::load_on(&name, cpu().device).unwrap();
        let b = Codec::load_on(&name, gpu.device.clone()).unwrap();
        let report = crosscheck::run(&a, &b, Options { count, seed: 2024, max_side: 200 }, &|_| {}).unwrap();
        eprintln!("{name}: {} images, 0 mismatches required", report.images);
        check(&report);
    }
}

/// Kodak images through the shipped codec, encoded on one backend and decoded on the other.
#[test]
fn kodak_decodes_identically_across_backends() {
    let Some(data) = datasets() else {
        eprintln!("skipped: no ../shared/datasets or $NCODEC_DATA with kodak/");
        return;
    };
    let Some(gpu) = second_backend() else { return };
    let limit = std::env::var("NCODEC_KODAK_COUNT").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let paths = ncodec::data::image_files(&data.join("kodak")).unwrap();
    let name = ncodec::codec::DEFAULT_CODEC;
    let a = Codec::load_on(name, cpu().device).unwrap();
    let b = Codec::load_on(name, gpu.device.clone()).unwrap();
    let mut report = crosscheck::Report::default();
    for (i, path) in paths.iter().take(limit).enumerate() {
        let img = ncodec::io::load_image(path).unwrap();
        report.check(&a, &b, &img, 4, i % 2 == 0, &path.display().to_string()).unwrap();
    }
    check(&report);
}

/// The check itself can fail: a decoder whose hyper-synthesis differs from the encoder's is
/// caught. Here it holds other weights under the same digest, which shifts the Gaussian
/// parameters as a non-deterministic float hyper-synthesis would.
#[test]
fn a_different_hyper_synthesis_is_detected() {
    let dir = tempdir();
    let good = tiny_weights(dir.path(), Architecture::MeanScaleHyperprior, 1);
    let other = tiny_weights(dir.path(), Architecture::MeanScaleHyperprior, 2);
    let device = cpu().device;
    let a = Codec::open_on("mean-scale", Some(&good), device.clone()).unwrap();
    let mut loaded = weights::load(&other, &device).unwrap();
    loaded.digest = a.digest(); // pretend it is the same model
    let b = Codec::from_loaded("mean-scale", loaded, device);
    let report = crosscheck::run(&a, &b, Options { count: 4, seed: 5, max_side: 64 }, &|_| {}).unwrap();
    assert_eq!(report.latent_mismatches, 4, "{report:?}");
}

/// stem video: P-frames encoded on one backend decode to the encoder's latents on the other,
/// frame after frame (a mismatch would propagate down the GOP), and the pixels agree.
#[test]
fn stem_gop_decodes_identically_across_backends() {
    let Some(gpu) = second_backend() else { return };
    let dir = tempdir();
    let device = ncodec::backend::device();
    device.seed(13);
    let config = ncodec::models::ModelConfig { architecture: Architecture::Stem, n: 8, m: 20, lambdas: vec![0.003, 0.03], vq: None, transforms: Default::default() };
    let model = config.init(&device).with_inter_from_intra();
    let path = dir.path().join("stem.ncw");
    weights::save(&path, &config, &model, &model.export_tables(), weights::Precision::F32).unwrap();
    let big = test_image(160, 120, 3);
    let frames: Vec<image::RgbImage> = (0..5).map(|t| image::imageops::crop_imm(&big, 3 * t, t, 80, 64).to_image()).collect();
    for (enc_dev, dec_dev) in [(cpu().device, gpu.device.clone()), (gpu.device.clone(), cpu().device)] {
        let enc = Codec::open_on("stem", Some(&path), enc_dev).unwrap();
        let dec = Codec::open_on("stem", Some(&path), dec_dev).unwrap();
        let (mut r_enc, mut r_dec): (Option<Vec<i32>>, Option<Vec<i32>>) = (None, None);
        for (k, f) in frames.iter().enumerate() {
            let (parts, y_enc) = enc.encode_frame(f, 2, r_enc.as_deref()).unwrap();
            let (img, y_dec) = dec.decode_frame(&parts, 2, (80, 64), r_dec.as_deref(), true).unwrap();
            assert_eq!(y_dec, y_enc, "frame {k}: latent mismatch across backends");
            let (same, _) = enc.decode_frame(&parts, 2, (80, 64), r_enc.as_deref(), true).unwrap();
            let diff = same.unwrap().as_raw().iter().zip(img.unwrap().as_raw()).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
            assert!(diff <= MAX_PIXEL_DIFF, "frame {k}: pixels differ by {diff}");
            (r_enc, r_dec) = (Some(y_enc), Some(y_dec));
        }
    }
}

/// overfit: streams fitted on either backend decode on both; the latents and network come from
/// integer work (the same everywhere), the pixels of the float synthesis agree within one level.
#[test]
fn overfit_decodes_identically_across_backends() {
    use ncodec::container::Container;
    use ncodec::overfit::{self, Architecture, FitOptions};
    let Some(gpu) = second_backend() else { return };
    let img = test_image(41, 27, 5);
    let opts = FitOptions { arch: Architecture { levels: 4, arm_hidden: 4, synthesis_width: 6 }, lambda: 0.002, steps: 40, lr: 1e-2, seed: 3, candidates: 1, coarse_steps: 10 };
    for fit_on in [cpu().device, gpu.device.clone()] {
        let enc = overfit::encode(&img, 4, &opts, &fit_on, &mut |_| {}).unwrap();
        let c = Container::parse(&enc.bytes).unwrap();
        let (a, b) = (overfit::decode(&c, &cpu().device).unwrap(), overfit::decode(&c, &gpu.device).unwrap());
        let diff = a.as_raw().iter().zip(b.as_raw()).map(|(x, y)| x.abs_diff(*y)).max().unwrap();
        assert!(diff <= 1, "fitted on {fit_on:?}: the backends' pixels differ by {diff}");
        assert!(ncodec::metrics::psnr(&a, &b) > MIN_PSNR_BETWEEN);
        // What the encoder measured is what a decoder on its own backend reconstructs.
        let own = if fit_on == cpu().device { &a } else { &b };
        assert_eq!(ncodec::metrics::psnr(&img, own), enc.psnr);
    }
}
