//! `ncdec`: decode an `.ncod` bitstream to an image or a video.

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
    about = "Decode an ncodec .ncod bitstream to an image or a video",
    after_help = "Examples:\n  ncdec photo.ncod -o photo.png\n  ncdec - -o - < photo.ncod > photo.png\n  ncdec clip.ncod -o clip.y4m\n  ncdec clip.ncod -o clip.mp4 --crf 16\n  ncdec clip.ncod -o frames/ --start 40 --frames 10\n\nImages: the output format follows the extension (PNG for stdout). Videos: .y4m, .mp4/.mkv/.mov\n(x264 or x265) or a folder of PNGs."
)]
struct Args {
    /// Input .ncod file, or - for stdin.
    input: PathBuf,
    /// Output image (.png, .ppm, .bmp, .tif, - for PNG on stdout) or video (.y4m, .mp4, .mkv, .mov, folder/).
    #[arg(short, long)]
    output: PathBuf,
    /// Use this weight file instead of the zoo's.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Video: first frame to decode (decoding starts at the group that holds it).
    #[arg(long, default_value_t = 0)]
    start: usize,
    /// Video: number of frames to decode (default: to the end).
    #[arg(long)]
    frames: Option<usize>,
    /// Video (stem): on a damaged frame, report it, repeat the last good frame in its place and
    /// the P-frames that depend on it, and resume at the next intra frame (default: fail).
    #[arg(long)]
    conceal: bool,
    #[command(flatten)]
    video_out: ncodec::cli::VideoOutArgs,
    #[command(flatten)]
    backend: ncodec::cli::BackendArgs,
    #[command(flatten)]
    limits: ncodec::cli::LimitArgs,
    #[arg(long)]
    quiet: bool,
}

fn main() -> ExitCode {
    ncodec::cli::finish("ncdec", run(&Args::parse()))
}

fn run(args: &Args) -> ncodec::Result<()> {
    args.limits.apply();
    let bytes = ncodec::io::read_input(&args.input)?;
    let (container, family, _) = ncodec::registry::parse_stream(&bytes)?;
    if family.is_video() && args.output.as_os_str() == "-" {
        return Err(ncodec::Error::Unsupported("video streams decode to a file or folder, not stdout".into()));
    }
    let backend = args.backend.select()?;
    if family.is_video() {
        return decode_video(args, &container, backend);
    }
    let start = Instant::now();
    let (img, name) = if family == ncodec::registry::Family::Overfit {
        if args.weights.is_some() {
            return Err(ncodec::Error::Unsupported("overfit streams carry their network: --weights does not apply".into()));
        }
        (ncodec::overfit::decode(&container, &backend.device)?, ncodec::overfit::CODEC_NAME.to_string())
    } else {
        let codec = Codec::open_on(&container.header.codec, args.weights.as_deref(), backend.device)?;
        (codec.decode(&container)?, codec.name)
    };
    let secs = start.elapsed().as_secs_f64();
    let out = ncodec::io::encode_for_path(&img, &args.output)?;
    ncodec::io::write_atomic(&args.output, &out)?;
    if !args.quiet {
        eprintln!("{}x{} {name} q{}: decoded in {:.2} s on {}", img.width(), img.height(), container.header.quality, secs, backend.name);
    }
    Ok(())
}

/// Any video codec: frames stream into the writer (a bad output is refused before decoding,
/// and a failed decode leaves nothing behind).
fn decode_video(args: &Args, container: &Container, backend: ncodec::backend::Selected) -> ncodec::Result<()> {
    let decoder = ncodec::registry::video_decoder(&container.header, args.weights.as_deref(), backend.device)?;
    let info = decoder.info(container)?;
    let mut writer = ncodec::video::write::VideoWriter::create(&args.output, info.fps, &args.video_out.options())?;
    let range = args.start..args.frames.map_or(usize::MAX, |n| args.start.saturating_add(n));
    let start = Instant::now();
    let mut count = 0usize;
    let damage = decoder.decode(container, Some(range), args.conceal, &mut |_, img| {
        count += 1;
        writer.push(img)
    })?;
    let secs = start.elapsed().as_secs_f64();
    writer.finish()?;
    for d in &damage {
        let resumed = if d.frames.end < info.frames { format!("; resumed at intra frame {}", d.frames.end) } else { String::new() };
        eprintln!("ncdec: warning: frames {}..={} damaged ({}), concealed with the last good frame{resumed}", d.frames.start, d.frames.end - 1, d.reason);
    }
    if !args.quiet {
        eprintln!("{}x{} {} q{}: {count} frames decoded in {secs:.2} s ({:.1} fps) on {}", info.width, info.height, decoder.name(), container.header.quality, count as f64 / secs, backend.name);
    }
    Ok(())
}
