//! Training runs, checkpoints, resumes and exports (a tiny model on generated images).

mod common;

use burn::module::Module;
use ncodec::models::{Architecture, ModelConfig};
use ncodec::train::{TrainOptions, load_checkpoint, train};

use common::quick_train_options as quick_options;

/// Exports a checkpoint as `<name>.ncw` in `dir` and codes a generated image with it.
fn export_and_round_trip(model: &ncodec::models::ImageModel, state: &ncodec::train::TrainState, name: &str, dir: &std::path::Path) -> std::path::PathBuf {
    let out = dir.join(format!("{name}.ncw"));
    ncodec::train::export(dir, model, state, &out, ncodec::weights::Precision::F16).unwrap();
    let codec = ncodec::Codec::from_weights(name, &out).unwrap();
    let img = common::test_image(70, 65, 9);
    let bytes = codec.encode(&img, 2).unwrap();
    let back = codec.decode(&ncodec::container::Container::parse(&bytes).unwrap()).unwrap();
    assert_eq!(back.dimensions(), img.dimensions());
    out
}

#[test]
fn train_checkpoint_resume_export() {
    let dir = common::tempdir();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    for i in 0..3 {
        common::test_image(80, 72, i).save(data.join("sub").join(format!("{i}.png"))).unwrap();
    }
    let config = ModelConfig { architecture: Architecture::MeanScaleHyperprior, n: 8, m: 8, lambdas: vec![0.01, 0.05], vq: None, transforms: Default::default() };
    let mut opts = TrainOptions { ema: vec![0.9], quality_weights: vec![1, 3], ..quick_options(config.clone(), data, dir.path().join("ckpt")) };
    let refused = train(&TrainOptions { quality_weights: vec![1, 1, 1], ..opts.clone() });
    assert!(refused.is_err_and(|e| e.to_string().contains("3 weights for 2 quality levels")), "a weight per level");
    let s = train(&opts).unwrap();
    assert_eq!(s.step, 3);
    let device = ncodec::backend::device();
    let ema_dir = dir.path().join("ckpt/ema-0.9");
    let params = |m: &ncodec::models::ImageModel| ncodec::weights::to_bytes(&config, m, &m.export_tables(), ncodec::weights::Precision::F32);
    // Read now: the resumed run rewrites this folder.
    let earlier = params(&load_checkpoint(&ema_dir, &device).unwrap().1);
    copy_dir(&dir.path().join("ckpt"), &dir.path().join("ckpt-decay"));
    opts.steps = 5;
    opts.resume = true;
    let s = train(&opts).unwrap();
    assert_eq!(s.step, 5, "resume continues from the checkpoint");

    // A fork of the same checkpoint that decays the learning rate from step 3 sees the same
    // batches, so it ends elsewhere only through the rate; a decay that cannot end is refused.
    let decayed = TrainOptions { ckpt_dir: dir.path().join("ckpt-decay"), decay_from: Some(3), decay_floor: 0.01, ..opts.clone() };
    let refused = train(&TrainOptions { decay_from: Some(5), ..decayed.clone() });
    assert!(refused.is_err_and(|e| e.to_string().contains("--decay-from 5 must come before --steps 5")), "the decay ends at --steps");
    assert_eq!(train(&decayed).unwrap().step, 5);
    let at = |d: &str| params(&load_checkpoint(&dir.path().join(d), &device).unwrap().1);
    assert!(at("ckpt-decay") != at("ckpt"), "the decayed fork took smaller steps");
    let log = std::fs::read_to_string(dir.path().join("ckpt/log.csv")).unwrap();
    assert!(log.starts_with("step,"));

    // The weight average is a checkpoint of its own, at the run's step, between where the
    // weights were and where they are.
    let (ema_state, ema_model) = load_checkpoint(&ema_dir, &device).unwrap();
    assert_eq!(ema_state.step, 5);
    assert!(!ema_dir.join("optim.bpk").exists(), "an average has no optimizer state");
    export_and_round_trip(&ema_model, &ema_state, "mean-scale-ema", &ema_dir);
    let (state, model) = load_checkpoint(&dir.path().join("ckpt"), &device).unwrap();
    assert_eq!(state.step, 5);
    let (raw, averaged) = (params(&model), params(&ema_model));
    assert!(averaged != earlier, "the average moved on the resumed steps");
    assert!(averaged != raw, "the average trails the weights");
    let out = export_and_round_trip(&model, &state, "mean-scale", dir.path());

    // Training from the exported weights continues their step count (fresh optimizer).
    let mut fresh = opts.clone();
    fresh.ckpt_dir = dir.path().join("ckpt2");
    fresh.resume = false;
    fresh.init_from = Some(out.clone());
    fresh.steps = 6;
    // ... here on crops shrunk by up to 2x (the photos are 72 high: by at most 72/64).
    fresh.rescale_min = 0.5;
    let refused = train(&TrainOptions { rescale_min: 0.0, ..fresh.clone() });
    assert!(refused.is_err_and(|e| e.to_string().contains("--rescale-min must be in (0, 1]")));
    let s = train(&fresh).unwrap();
    assert_eq!(s.step, 6, "5 steps from the weights + 1 more");
    assert!(s.seconds >= state.seconds);

    // The same weights start a model with residual transforms: the new stages are added (as
    // the identity), the step count goes on, and the result exports and codes.
    let mut residual = fresh.clone();
    residual.ckpt_dir = dir.path().join("ckpt-residual");
    residual.config.transforms = ncodec::models::Transforms::GdnResidual;
    residual.steps = 7;
    residual.residual_lr_scale = 10.0;
    assert_eq!(train(&residual).unwrap().step, 7, "5 steps from the weights + 2 more");
    let (rstate, rmodel) = load_checkpoint(&residual.ckpt_dir, &device).unwrap();
    assert!(rmodel.num_params() > model.num_params(), "the residual stages add parameters");
    let rout = export_and_round_trip(&rmodel, &rstate, "mean-scale-residual", &residual.ckpt_dir);
    assert_eq!(ncodec::weights::load(&rout, &device).unwrap().config.transforms, ncodec::models::Transforms::GdnResidual);
    // Only GDN → residual is an upgrade; other changes are still refused.
    let mut other = residual.clone();
    other.ckpt_dir = dir.path().join("ckpt-other");
    other.config.n = 16;
    assert!(train(&other).is_err());

    // A different configuration refuses to resume from this checkpoint.
    opts.config.n = 16;
    opts.steps = 6;
    assert!(train(&opts).is_err());
}

/// An mlic model started from a mean-scale file trains only its context model on cached
/// latents: the transforms stay bit-identical, and the result codes real streams.
#[test]
fn frozen_transform_context_training() {
    let dir = common::tempdir();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for i in 0..2 {
        common::test_image(96, 80, i).save(data.join(format!("{i}.png"))).unwrap();
    }
    let device = ncodec::backend::device();
    let lambdas = vec![0.01, 0.05];
    let base_config = ModelConfig { architecture: Architecture::MeanScaleHyperprior, n: 8, m: 10, lambdas: lambdas.clone(), vq: None, transforms: Default::default() };
    let base = base_config.init(&device);
    let base_path = dir.path().join("base.ncw");
    ncodec::weights::save(&base_path, &base_config, &base, &base.export_tables(), ncodec::weights::Precision::F32).unwrap();

    let config = ModelConfig { architecture: Architecture::MultiReference, ..base_config };
    let mut opts = TrainOptions { init_from: Some(base_path), freeze_transforms: true, ..quick_options(config, data, dir.path().join("ckpt")) };
    assert_eq!(train(&opts).unwrap().step, 3);
    assert!(dir.path().join("ckpt/latents.bin").exists(), "latents are cached");
    opts.steps = 4;
    opts.resume = true;
    assert_eq!(train(&opts).unwrap().step, 4);
    let log = std::fs::read_to_string(dir.path().join("ckpt/log.csv")).unwrap();
    assert!(log.starts_with("step,seconds,loss,bpp_y,mse,psnr,mean_scale_bpp_y"), "{log}");

    let (state, model) = load_checkpoint(&dir.path().join("ckpt"), &device).unwrap();
    assert_eq!(model.analysis_digest(), base.analysis_digest(), "g_a must not change");
    export_and_round_trip(&model, &state, "mlic", dir.path());

    // Freezing needs a context model to train.
    let mut wrong = opts.clone();
    wrong.config.architecture = Architecture::MeanScaleHyperprior;
    wrong.ckpt_dir = dir.path().join("ckpt3");
    wrong.resume = false;
    wrong.init_from = None;
    assert!(train(&wrong).is_err());
}

/// Generated training photos in `dir/data`.
fn photos(dir: &std::path::Path) -> std::path::PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for i in 0..2 {
        common::test_image(72, 72, i).save(data.join(format!("{i}.png"))).unwrap();
    }
    data
}

#[test]
fn throughput_benchmark_times_steps_and_writes_nothing_else() {
    let dir = common::tempdir();
    let data = photos(dir.path());
    let config = ModelConfig { architecture: Architecture::MultiReference, n: 8, m: 12, lambdas: vec![0.01, 0.05], vq: None, transforms: ncodec::models::Transforms::GdnResidual };
    let opts = quick_options(config, data.clone(), dir.path().join("ckpt"));
    let t = ncodec::train::throughput(&opts, 1, 3).unwrap();
    assert_eq!((t.steps, t.warmup, t.batch, t.crop), (3, 1, 2, 64));
    assert!(t.min_s > 0.0 && t.min_s <= t.median_s && t.median_s <= t.max_s);
    assert!((t.crops_per_s - 2.0 / t.median_s).abs() < 1e-9);
    assert_eq!(t.codec, "mlic");
    assert!(!dir.path().join("ckpt").exists(), "a benchmark writes no checkpoint");
    assert!(ncodec::train::throughput(&opts, 0, 0).is_err(), "no timed step, no result");

    // The CLI's --bench line and its JSON record.
    let json = dir.path().join("bench.jsonl");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ncodec"))
        .args(["train", "--codec", "mean-scale", "--n", "8", "--m", "12", "--lambda", "0.01,0.05", "--batch", "2", "--crop", "64", "--backend", "cpu", "--bench", "2", "--warmup", "1"])
        .arg("--data")
        .arg(&data)
        .arg("--ckpt-dir")
        .arg(dir.path().join("ckpt-cli"))
        .arg("--bench-json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(line.contains("s/step") && line.contains("crops/s"), "{line}");
    let record: serde_json::Value = serde_json::from_str(std::fs::read_to_string(&json).unwrap().trim()).unwrap();
    assert_eq!(record["steps"], 2);
    assert_eq!(record["backend"], "flex");
    assert!(record["crops_per_s"].as_f64().unwrap() > 0.0);
    assert!(!dir.path().join("ckpt-cli").exists());

    // A backend this build lacks is a clear error, not a fallback.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ncodec")).args(["train", "--bench", "1", "--backend", "vulkan", "--data"]).arg(&data).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("vulkan"), "{err}");
}

/// A checkpoint brought back from a GPU machine holds `weights.ncw` and `state.json` only:
/// it exports to the same weights and ships like a full one.
#[test]
fn checkpoint_of_exported_weights_loads() {
    let dir = common::tempdir();
    let data = photos(dir.path());
    let config = ModelConfig { architecture: Architecture::MeanScaleHyperprior, n: 8, m: 8, lambdas: vec![0.01, 0.05], vq: None, transforms: Default::default() };
    let opts = quick_options(config, data, dir.path().join("ckpt"));
    let state = train(&opts).unwrap();
    let device = ncodec::backend::device();
    let (_, model) = load_checkpoint(&opts.ckpt_dir, &device).unwrap();
    ncodec::train::export(&opts.ckpt_dir, &model, &state, &dir.path().join("a.ncw"), ncodec::weights::Precision::F16).unwrap();

    let light = dir.path().join("light");
    std::fs::create_dir_all(&light).unwrap();
    std::fs::copy(dir.path().join("a.ncw"), light.join("weights.ncw")).unwrap();
    std::fs::copy(opts.ckpt_dir.join("state.json"), light.join("state.json")).unwrap();
    let (state2, model2) = load_checkpoint(&light, &device).unwrap();
    assert_eq!((state2.step, state2.config.clone()), (state.step, state.config.clone()));
    assert_eq!(model2.num_params(), model.num_params());
    // Re-exported (tables derived again from the fp16 parameters), it codes images.
    export_and_round_trip(&model2, &state2, "mean-scale", &light);

    // Weights of another configuration beside the state are refused.
    let other = common::tiny_weights(dir.path(), Architecture::Factorized, 3);
    std::fs::copy(other, light.join("weights.ncw")).unwrap();
    assert!(load_checkpoint(&light, &device).is_err());
}

/// Copies a checkpoint folder (files and the weight averages' subfolders).
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// A model with the auxiliary linear path trains from scratch (its orthogonality penalty in
/// the loss), checkpoints, exports and codes; a warm-up of the learning rate changes where
/// the same draws take it.
#[test]
fn auxiliary_path_trains_from_scratch_and_the_warmup_takes_smaller_steps() {
    use ncodec::models::Transforms;
    let dir = common::tempdir();
    let data = photos(dir.path());
    let config = ModelConfig { architecture: Architecture::MultiReference, n: 8, m: 12, lambdas: vec![0.01, 0.05], vq: None, transforms: Transforms::GdnResidualAuxT };
    let mut plain = TrainOptions { steps: 1, ..quick_options(config.clone(), data, dir.path().join("ckpt")) };
    assert_eq!(train(&plain).unwrap().step, 1);
    // Both go on from the same step-1 checkpoint on the same draws; the warm-up's rate at
    // steps 1 and 2 is 2/3 and 3/3 of --lr.
    copy_dir(&plain.ckpt_dir, &dir.path().join("ckpt-warm"));
    plain.resume = true;
    plain.steps = 3;
    let warm = TrainOptions { warmup_steps: 3, ckpt_dir: dir.path().join("ckpt-warm"), ..plain.clone() };
    assert_eq!(train(&plain).unwrap().step, 3);
    assert_eq!(train(&warm).unwrap().step, 3);
    let device = ncodec::backend::device();
    let params = |d: &std::path::Path| {
        let m = load_checkpoint(d, &device).unwrap().1;
        ncodec::weights::to_bytes(&config, &m, &m.export_tables(), ncodec::weights::Precision::F32)
    };
    assert!(params(&plain.ckpt_dir) != params(&warm.ckpt_dir), "the warm-up changed the steps");
    let (state, model) = load_checkpoint(&plain.ckpt_dir, &device).unwrap();
    let out = export_and_round_trip(&model, &state, "mlic", &plain.ckpt_dir);
    assert_eq!(ncodec::weights::load(&out, &device).unwrap().config.transforms, Transforms::GdnResidualAuxT);

    // Grafting: a model without the path starts one that has it (the path added at zero, the
    // step count going on); the way back is refused.
    let residual = TrainOptions {
        config: ModelConfig { transforms: Transforms::GdnResidual, ..config.clone() },
        ckpt_dir: dir.path().join("ckpt-res"),
        steps: 1,
        ..quick_options(config.clone(), plain.data.clone(), dir.path().join("x"))
    };
    train(&residual).unwrap();
    let (rstate, rmodel) = load_checkpoint(&residual.ckpt_dir, &device).unwrap();
    let rout = export_and_round_trip(&rmodel, &rstate, "mlic", &residual.ckpt_dir);
    let graft = TrainOptions { init_from: Some(rout), ckpt_dir: dir.path().join("ckpt-graft"), steps: 2, ..plain.clone() };
    let graft = TrainOptions { resume: false, ..graft };
    assert_eq!(train(&graft).unwrap().step, 2, "1 step from the weights + 1 more");
    assert_eq!(load_checkpoint(&graft.ckpt_dir, &device).unwrap().0.config.transforms, Transforms::GdnResidualAuxT);
    let back = TrainOptions { init_from: Some(out), ckpt_dir: dir.path().join("ckpt-back"), ..residual.clone() };
    assert!(train(&back).is_err_and(|e| e.to_string().contains("different model configuration")));
}
