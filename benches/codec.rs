//! Criterion benchmarks: the shipped default codec on a 768x512 image, and range-coder
//! throughput on Gaussian-table symbols.
//!
//! `cargo bench --bench codec`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ncodec::codec::{Codec, DEFAULT_CODEC};
use ncodec::container::Container;
use ncodec::entropy::{CdfTable, SymbolDecoder, SymbolEncoder};

fn photo(w: u32, h: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        let n = (x.wrapping_mul(2654435761) ^ y.wrapping_mul(40503)) >> 28;
        image::Rgb([(x * 255 / w) as u8 ^ n as u8, (y * 255 / h) as u8, ((x + y) / 3) as u8])
    })
}

fn codec_bench(c: &mut Criterion) {
    let codec = match Codec::load(DEFAULT_CODEC) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("skipping codec benchmarks: {e}");
            return;
        }
    };
    let img = photo(768, 512);
    let q = codec.qualities() / 2;
    let bytes = codec.encode(&img, q).unwrap();
    let mut g = c.benchmark_group("mean-scale 768x512");
    g.sample_size(10);
    g.throughput(Throughput::Elements(768 * 512));
    g.bench_function("encode", |b| b.iter(|| codec.encode(&img, q).unwrap()));
    g.bench_function("decode", |b| b.iter(|| codec.decode(&Container::parse(&bytes).unwrap()).unwrap()));
    g.finish();
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
    let z: Vec<f32> = (0..n * h * w).map(|i| ((i * 37 % 11) as f32 - 5.0)).collect();
    let mut g = c.benchmark_group("hyper-synthesis N=96 M=160, z 12x8 (Kodak)");
    g.sample_size(20);
    g.bench_function("fixed point", |b| b.iter(|| int.forward(&z, h, w)));
    g.bench_function("float (default device)", |b| {
        b.iter(|| {
            let (s, mu) = hs.forward(Tensor::from_data(TensorData::new(z.clone(), [1, n, h, w]), &device));
            (ncodec::models::to_host(s), mu.map(ncodec::models::to_host))
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

criterion_group!(benches, codec_bench, hyper_synthesis_bench, range_coder_bench);
criterion_main!(benches);
