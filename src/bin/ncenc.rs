//! `ncenc`: encode an image to an `.ncod` bitstream.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use ncodec::codec::{Codec, DEFAULT_CODEC};

#[derive(Parser)]
#[command(
    name = "ncenc",
    version,
    about = "Encode an image with a learned ncodec codec",
    after_help = "Examples:\n  ncenc photo.png -o photo.ncod\n  ncenc photo.jpg -o photo.ncod -q 6\n  cat in.png | ncenc - -o - > out.ncod\n\nSee the codecs and their quality levels with `ncodec list`."
)]
struct Args {
    /// Input image (PNG, JPEG, BMP, TIFF, PNM, WebP), or - for stdin.
    input: PathBuf,
    /// Output .ncod file, or - for stdout.
    #[arg(short, long)]
    output: PathBuf,
    /// Quality level: 1 = smallest file … 8 = best quality.
    #[arg(short, long, default_value_t = 4)]
    quality: u8,
    /// Codec from the zoo (`ncodec list`).
    #[arg(short, long, default_value = DEFAULT_CODEC)]
    codec: String,
    /// Use this weight file instead of the zoo's (the stream records its digest).
    #[arg(long)]
    weights: Option<PathBuf>,
    #[command(flatten)]
    backend: ncodec::cli::BackendArgs,
    /// Print nothing on success.
    #[arg(long)]
    quiet: bool,
}

fn main() -> ExitCode {
    ncodec::cli::finish("ncenc", run(&Args::parse()))
}

fn run(args: &Args) -> ncodec::Result<()> {
    let img = ncodec::io::load_image(&args.input)?;
    let backend = args.backend.select()?;
    let codec = Codec::open_on(&args.codec, args.weights.as_deref(), backend.device)?;
    let start = Instant::now();
    let bytes = codec.encode(&img, args.quality)?;
    let secs = start.elapsed().as_secs_f64();
    ncodec::io::write_atomic(&args.output, &bytes)?;
    if !args.quiet {
        let px = img.width() as f64 * img.height() as f64;
        eprintln!(
            "{}x{} {} q{}: {} bytes, {:.4} bpp, encoded in {:.2} s on {}",
            img.width(), img.height(), codec.name, args.quality, bytes.len(), bytes.len() as f64 * 8.0 / px, secs, backend.name
        );
    }
    Ok(())
}
