//! `ncodec crosscheck`: stress-test cross-backend decoding: random images encoded on one backend, decoded on the other (and the reverse); counts latent mismatches (must be 0) and pixel differences.

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Codec from the zoo.
    #[arg(long, default_value = ncodec::codec::DEFAULT_CODEC)]
    pub codec: String,
    /// Use this weight file instead of the zoo's.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// First backend.
    #[arg(long, default_value = "cpu", value_parser = ncodec::cli::parse_backend)]
    pub a: ncodec::backend::Backend,
    /// Second backend.
    #[arg(long, default_value = "wgpu", value_parser = ncodec::cli::parse_backend)]
    pub b: ncodec::backend::Backend,
    /// Number of random images.
    #[arg(long, default_value_t = 1000)]
    pub count: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Largest image side in pixels (not `--max-side`: that is the global input limit).
    #[arg(long, default_value_t = 256)]
    pub side: u32,
}

pub fn run(a: Args) -> ncodec::Result<()> {
    let opts = ncodec::crosscheck::Options { count: a.count, seed: a.seed, max_side: a.side };
    let (sa, sb) = (a.a.select()?, a.b.select()?);
    let ca = ncodec::codec::Codec::open_on(&a.codec, a.weights.as_deref(), sa.device)?;
    let cb = ncodec::codec::Codec::open_on(&a.codec, a.weights.as_deref(), sb.device)?;
    eprintln!("{}: {} random images up to {}x{} px, seed {}, A = {}, B = {}", a.codec, opts.count, opts.max_side, opts.max_side, opts.seed, sa.name, sb.name);
    let bar = indicatif::ProgressBar::new(opts.count as u64);
    bar.set_style(indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} eta {eta}").unwrap());
    let start = std::time::Instant::now();
    let r = ncodec::crosscheck::run(&ca, &cb, opts, &|r| {
        bar.set_message(format!("latent mismatches {}", r.latent_mismatches));
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    println!(
        "{} images in {:.0} s: {} latent mismatches; pixels: max |A-B| = {}, {:.4} % of samples differ, lowest PSNR(A, B) = {:.2} dB",
        r.images,
        start.elapsed().as_secs_f64(),
        r.latent_mismatches,
        r.max_pixel_diff,
        100.0 * r.differing_samples as f64 / r.samples.max(1) as f64,
        r.min_psnr_between
    );
    for f in &r.failures {
        println!("  mismatch: {f}");
    }
    if r.latent_mismatches > 0 {
        return Err(ncodec::Error::Codec(format!("{} of {} streams decoded to a different latent", r.latent_mismatches, r.images)));
    }
    Ok(())
}
