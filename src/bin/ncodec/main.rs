//! `ncodec`: the tools around the codecs: the zoo, measurement, training, transcoding.
//!
//! A thin shell: each subcommand lives in its own file, parses its arguments and prints what
//! the library did; the work itself (training, shipping, benchmarking) is in the library.

mod bench;
mod convert;
mod crosscheck;
mod demo;
mod export;
mod fetch;
mod info;
mod list;
mod metrics;
mod ship;
mod subset;
mod train;
mod transcode;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "ncodec", version, about = "ncodec learned image and video codecs: zoo, transcoding, training and measurement tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    limits: ncodec::cli::LimitArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model (resumable) and optionally export it to the zoo.
    Train(train::Args),
    /// Encode and decode an image (a generated scene by default) at every quality level of the
    /// default codec and print bpp, PSNR and MS-SSIM.
    Demo(demo::Args),
    /// Export a checkpoint into the zoo (fp16 weights), measure it on Kodak from real
    /// bitstreams, and write its card.
    Ship(ship::Args),
    /// List the shipped codecs, their quality levels and what they measure on Kodak.
    List,
    /// PSNR-RGB and MS-SSIM-RGB between two images of the same size.
    Metrics(metrics::Args),
    /// Convert an image between formats (by extension), e.g. PNG to PPM for other encoders.
    Convert(convert::Args),
    /// Transcode a video through a learned video codec and back: fit, write the stream,
    /// decode it, write the output (.y4m, .mp4/.mkv/.mov, or a folder of PNGs).
    /// Prints the stream's bpp (from its bytes), RGB PSNR, encode time and decode speed.
    Transcode(transcode::Args),
    /// Print the header of an .ncod file.
    Info(info::Args),
    /// Rate-distortion benchmark from real bitstreams: ncodec models and the JPEG/WebP/AVIF
    /// anchors on the same images; writes JSON (CompressAI schema), CSV, SVG plots and a
    /// Markdown summary with BD-rates.
    Bench(bench::Args),
    /// Stress-test cross-backend decoding: random images encoded on one backend, decoded on
    /// the other (and the reverse); counts latent mismatches (must be 0) and pixel differences.
    Crosscheck(crosscheck::Args),
    /// Download a test set from its manifest (datasets/*.toml), resuming partial downloads and
    /// checking SHA-256: kodak (24 PNG) or uvg (7 .7z archives of raw 1080p YUV).
    Fetch(fetch::Args),
    /// A training subset under a byte budget, as downscaled JPEGs (what a GPU window carries:
    /// scripts/gpu-train.sh pack).
    Subset(subset::Args),
    /// Export a checkpoint directory as a shippable weight file.
    Export(export::Args),
}

fn main() -> ExitCode {
    ncodec::cli::finish("ncodec", run(Cli::parse()))
}

fn run(cli: Cli) -> ncodec::Result<()> {
    cli.limits.apply();
    match cli.command {
        Command::Train(a) => train::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Ship(a) => ship::run(a),
        Command::List => list::run(),
        Command::Metrics(a) => metrics::run(a),
        Command::Convert(a) => convert::run(a),
        Command::Transcode(a) => transcode::run(a),
        Command::Info(a) => info::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Crosscheck(a) => crosscheck::run(a),
        Command::Fetch(a) => fetch::run(a),
        Command::Subset(a) => subset::run(a),
        Command::Export(a) => export::run(a),
    }
}
