//! Where the top quality levels lose their dB: the coded reconstruction against the same
//! transforms without quantization, per quality level, on the first images of a folder.
//!
//! ```text
//!   x ─g_a·gain_q─► y ─┬─ code (real stream) ─► x̂_coded     bpp from the stream's bytes
//!                      ├─ round(y)  ─g_s·1/gain_q─► x̂_round  (rounding without the means)
//!                      └─ y         ─g_s·1/gain_q─► x̂_∞      (no quantization at all)
//! ```
//! If x̂_∞ stays close to x̂_coded at the top levels, the transforms (their capacity and
//! training) are the ceiling, not the entropy model or the quantizer; if x̂_∞ is far above,
//! quantization is. It also prints how much of the latent is non-zero after rounding and how
//! many channels carry signal, the questions behind "is M wide enough".
//!
//! ```sh
//! cargo run --release --example ceiling -- codecs/mlic/weights.ncw ../shared/datasets/kodak 6 1,4,6,7,8
//! ```

use std::path::PathBuf;

use ncodec::codec::{Codec, image_to_tensor, tensor_to_image};
use ncodec::metrics::psnr;
use ncodec::nn::to_host;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [weights, folder, limit, qualities] = args.as_slice() else {
        anyhow::bail!("usage: ceiling WEIGHTS FOLDER LIMIT Q1,Q2,... (qualities 1-based)");
    };
    let weights = PathBuf::from(weights);
    let limit: usize = limit.parse()?;
    let qualities: Vec<u8> = qualities.split(',').map(str::parse).collect::<Result<_, _>>()?;
    let device = ncodec::backend::device();
    let codec = Codec::from_weights("ceiling", &weights)?;
    let loaded = ncodec::weights::load(&weights, &device)?;
    let model = &loaded.model;
    let images: Vec<_> = ncodec::data::image_files(&PathBuf::from(folder))?.into_iter().take(limit).collect();

    println!("| q | bpp (stream) | PSNR coded | PSNR round(y) | PSNR no quantization | non-zero after rounding | channels with std > 0.5 | max abs y |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for &q in &qualities {
        let (mut bpp, mut coded, mut rounded, mut exact, mut nonzero, mut active, mut max_abs) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0f32);
        for path in &images {
            let img = ncodec::io::load_image(path)?;
            let (w, h) = img.dimensions();
            let stream = codec.encode(&img, q)?;
            bpp += stream.len() as f64 * 8.0 / (w as f64 * h as f64);
            coded += psnr(&img, &codec.decode(&ncodec::container::Container::parse(&stream)?)?);

            let y = model.latent(image_to_tensor(&img, &device), q as usize - 1);
            let [_, m, yh, yw] = y.dims();
            let host = to_host(y.clone());
            nonzero += host.iter().filter(|v| v.round() != 0.0).count() as f64 / host.len() as f64;
            max_abs = host.iter().fold(max_abs, |a, v| a.max(v.abs()));
            let per = yh * yw;
            active += (0..m)
                .filter(|c| {
                    let s = &host[c * per..(c + 1) * per];
                    let mean = s.iter().sum::<f32>() / per as f32;
                    (s.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / per as f32).sqrt() > 0.5
                })
                .count() as f64;
            rounded += psnr(&img, &tensor_to_image(model.synthesis_at(y.clone().round(), q as usize - 1), w, h));
            exact += psnr(&img, &tensor_to_image(model.synthesis_at(y, q as usize - 1), w, h));
        }
        let n = images.len() as f64;
        println!(
            "| {q} | {:.4} | {:.3} | {:.3} | {:.3} | {:.1} % | {:.1} of {} | {:.1} |",
            bpp / n,
            coded / n,
            rounded / n,
            exact / n,
            100.0 * nonzero / n,
            active / n,
            model.latent_channels(),
            max_abs
        );
    }
    Ok(())
}
