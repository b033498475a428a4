//! Criterion benchmarks: every shipped image codec on a 768x512 image (side by side), the
//! overfitted codec's decoder beside mlic's on kodim01 and one step of its fitting, the
//! fixed-point entropy-parameter networks, and range-coder throughput.
//!
//! `cargo bench --bench codec`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ncodec::codec::Codec;
use ncodec::container::Container;
use ncodec::entropy::{CdfTable, SymbolDecoder, SymbolEncoder};

fn photo(w: u32, h: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        let n = (x.wrapping_mul(2654435761) ^ y.wrapping_mul(40503)) >> 28;
        image::Rgb([(x * 255 / w) as u8 ^ n as u8, (y * 255 / h) as u8, ((x + y) / 3) as u8])
    })
}

fn codec_bench(c: &mut Criterion) {
    let img = photo(768, 512);
    for (name, _) in ncodec::codec::list_codecs().unwrap_or_default() {
        let codec = Codec::load(&name).unwrap();
        let q = codec.qualities() / 2;
        let bytes = codec.encode(&img, q).unwrap();
        let mut g = c.benchmark_group(format!("{name} 768x512"));
        g.sample_size(10);
        g.throughput(Throughput::Elements(768 * 512));
        g.bench_function("encode", |b| b.iter(|| codec.encode(&img, q).unwrap()));
        g.bench_function("decode", |b| b.iter(|| codec.decode(&Container::parse(&bytes).unwrap()).unwrap()));
        g.finish();
    }
}

/// Decoding kodim01 (768x512), the overfitted codec's medium preset (813 MAC/pixel) beside
/// the flagship, both at q4. The overfit stream takes minutes to fit, so it is fitted once and
/// kept in `target/` (delete it to refit). Without Kodak a
/// synthetic image stands in and the network is fitted for 200 steps (same decoder size).
fn overfit_decode_bench(c: &mut Criterion) {
    use ncodec::overfit::{self, Preset};
    let kodak = ncodec::data::kodak_dir(None).ok().map(|d| d.join("kodim01.png")).filter(|p| p.is_file());
    let (img, label, steps) = match &kodak {
        Some(p) => (ncodec::io::load_image(p).unwrap(), "kodim01", Preset::Medium.steps()),
        None => (photo(768, 512), "synthetic 768x512", 200),
    };
    let device = ncodec::backend::device();
    let cache = std::path::PathBuf::from(format!("target/bench-overfit-v{}-medium-q4-{}-{steps}.ncod", overfit::stream::STREAM_VERSION, label.replace(' ', "-")));
    let bytes = std::fs::read(&cache).unwrap_or_else(|_| {
        eprintln!("fitting the overfit stream once ({steps} steps), kept in {}", cache.display());
        let mut opts = Preset::Medium.options(4).unwrap();
        opts.steps = steps;
        let bytes = overfit::encode(&img, 4, &opts, &device, &mut |_| {}).unwrap().bytes;
        let _ = std::fs::write(&cache, &bytes);
        bytes
    });
    let mlic = Codec::load("mlic").unwrap();
    let mlic_bytes = mlic.encode(&img, 4).unwrap();
    let mut g = c.benchmark_group(format!("decode {label}"));
    g.sample_size(20);
    g.throughput(Throughput::Elements(img.width() as u64 * img.height() as u64));
    g.bench_function("overfit medium q4", |b| b.iter(|| overfit::decode(&Container::parse(&bytes).unwrap(), &device).unwrap()));
    g.bench_function("overfit medium q4, latents only", |b| b.iter(|| overfit::decode_latents(&Container::parse(&bytes).unwrap()).unwrap().latents));
    g.bench_function("mlic q4", |b| b.iter(|| mlic.decode(&Container::parse(&mlic_bytes).unwrap()).unwrap()));
    g.finish();
}

/// One step of the overfitted codec's fitting on the CPU at a Kodak size (768x512), the
/// medium preset's networks: the loss and every gradient (soft rounding, the phase most steps
/// run in), then Adam. The encoder's time is this times its steps.
fn overfit_fit_step_bench(c: &mut Criterion) {
    use ncodec::overfit::Preset;
    use ncodec::overfit::cpu::{Adam, Problem, noise_rng};
    use ncodec::overfit::model::{OverfitNet, Quantization};
    let (w, h) = (768usize, 512usize);
    let img = photo(w as u32, h as u32);
    let arch = Preset::Medium.options(4).unwrap().arch;
    let problem = Problem::new(arch, h, w, ncodec::overfit::fit::planar(&img));
    let mut params = OverfitNet::new(&arch, h, w, 1, &ncodec::backend::device()).to_params();
    // Latents spread over a few integers, as a fit's are after its first steps.
    for (l, y) in params.latents.iter_mut().enumerate() {
        y.iter_mut().enumerate().for_each(|(i, v)| *v = ((i * 7 + l) % 9) as f32 * 0.5 - 2.0);
    }
    let mut adam = Adam::new(&params);
    let mut noise = noise_rng(1);
    let mut g = c.benchmark_group("overfit fitting step 768x512");
    g.sample_size(20);
    g.throughput(Throughput::Elements((w * h) as u64));
    g.bench_function("medium, soft rounding", |b| {
        b.iter(|| {
            let (_, grads) = problem.loss_and_grads(&params, 0.0025, Quantization::SoftRound { temperature: 0.3 }, &mut noise);
            adam.step(&mut params, &grads, 1e-5, 1e-5);
            problem.recycle_gradients(grads);
        })
    });
    g.finish();
}

/// The multi-reference context model in fixed point (all slices, both passes) for a Kodak-size
/// latent (48x32, M=160): the part of mlic's decoding that mean-scale does not have.
fn context_bench(c: &mut Criterion) {
    use ncodec::entropy::GaussianConditional;
    use ncodec::models::multiref::ContextModel;
    let device = ncodec::backend::device();
    let (m, h, w) = (160, 32, 48);
    let int = ContextModel::new(m, &device).integer();
    let y: Vec<f32> = (0..m * h * w).map(|i| ((i * 7919 % 23) as f32 - 11.0) * 0.7).collect();
    let hyper: Vec<i32> = (0..2 * m * h * w).map(|i| if i < m * h * w { 4096 + (i as i32 * 37 % 8192) } else { (i as i32 * 53 % 16384) - 8192 }).collect();
    let g = GaussianConditional::new();
    let mut group = c.benchmark_group("mlic context model, Kodak-size latent");
    group.sample_size(10);
    group.bench_function("fixed point, encode side", |b| b.iter(|| int.compress(&y, &hyper, None, [h, w], &g).unwrap().0));
    group.finish();
}

/// What the integer entropy path costs in time: the fixed-point hyper-synthesis (pure Rust,
/// rayon) against the float one on the default device, at the shipped size for a Kodak image.
fn hyper_synthesis_bench(c: &mut Criterion) {
    use burn::prelude::*;
    use ncodec::models::transforms::HyperSynthesis;
    let device = ncodec::backend::device();
    let (n, m, h, w) = (96, 160, 8, 12);
    let hs = HyperSynthesis::new(n, m, true, &device);
    let int = hs.integer();
    let z: Vec<f32> = (0..n * h * w).map(|i| (i * 37 % 11) as f32 - 5.0).collect();
    let mut g = c.benchmark_group("hyper-synthesis N=96 M=160, z 12x8 (Kodak)");
    g.sample_size(20);
    g.bench_function("fixed point", |b| b.iter(|| int.forward(&z, h, w)));
    g.bench_function("float (default device)", |b| {
        b.iter(|| {
            let (s, mu) = hs.forward(Tensor::from_data(TensorData::new(z.clone(), [1, n, h, w]), &device));
            (ncodec::nn::to_host(s), mu.map(ncodec::nn::to_host))
        })
    });
    g.finish();
}

fn range_coder_bench(c: &mut Criterion) {
    let pmf: Vec<f64> = (-20..=20).map(|v: i32| (-(v * v) as f64 / 50.0).exp() / 12.533).collect();
    let table = CdfTable::from_pmf(-20, &pmf).unwrap();
    let n = 1 << 20;
    let symbols: Vec<i32> = (0..n).map(|i: u32| ((i.wrapping_mul(2654435761) >> 24) as i32 % 15) - 7).collect();
    let mut enc = SymbolEncoder::new();
    symbols.iter().for_each(|&s| enc.encode(s, &table).unwrap());
    let coded = enc.finish().unwrap();
    let mut g = c.benchmark_group("range coder");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("encode 1M symbols", |b| {
        b.iter(|| {
            let mut enc = SymbolEncoder::new();
            symbols.iter().for_each(|&s| enc.encode(s, &table).unwrap());
            enc.finish().unwrap()
        })
    });
    g.bench_function("decode 1M symbols", |b| {
        b.iter(|| {
            let mut dec = SymbolDecoder::new(&coded).unwrap();
            (0..n).map(|_| dec.decode(&table).unwrap() as i64).sum::<i64>()
        })
    });
    g.finish();
}

criterion_group!(benches, codec_bench, overfit_decode_bench, overfit_fit_step_bench, context_bench, hyper_synthesis_bench, range_coder_bench);
criterion_main!(benches);
