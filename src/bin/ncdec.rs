//! `ncdec`: decode an `.ncod` bitstream to an image.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use ncodec::codec::Codec;
use ncodec::container::Container;

#[derive(Parser)]
#[command(
    name = "ncdec",
    version,
    about = "Decode an ncodec .ncod bitstream to an image",
    after_help = "Examples:\n  ncdec photo.ncod -o photo.png\n  ncdec - -o - < photo.ncod > photo.png\n\nThe output format follows the extension (PNG for stdout)."
)]
struct Args {
    /// Input .ncod file, or - for stdin.
    input: PathBuf,
    /// Output image (.png, .ppm, .bmp, .tif), or - for PNG on stdout.
    #[arg(short, long)]
    output: PathBuf,
    /// Use this weight file instead of the zoo's.
    #[arg(long)]
    weights: Option<PathBuf>,
    #[command(flatten)]
    backend: ncodec::cli::BackendArgs,
    #[arg(long)]
    quiet: bool,
}

fn main() -> ExitCode {
    ncodec::cli::finish("ncdec", run(&Args::parse()))
}

fn run(args: &Args) -> ncodec::Result<()> {
    let bytes = ncodec::io::read_input(&args.input)?;
    let container = Container::parse(&bytes)?;
    let backend = args.backend.select()?;
    let codec = Codec::open_on(&container.header.codec, args.weights.as_deref(), backend.device)?;
    let start = Instant::now();
    let img = codec.decode(&container)?;
    let secs = start.elapsed().as_secs_f64();
    let out = ncodec::io::encode_for_path(&img, &args.output)?;
    ncodec::io::write_atomic(&args.output, &out)?;
    if !args.quiet {
        eprintln!("{}x{} {} q{}: decoded in {:.2} s on {}", img.width(), img.height(), codec.name, container.header.quality, secs, backend.name);
    }
    Ok(())
}
