//! `ncenc`: encode an image or a video to an `.ncod` bitstream.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use ncodec::codec::{Codec, DEFAULT_CODEC};
use ncodec::refine::Refinement;
use ncodec::registry::Family;

#[derive(Parser)]
#[command(
    name = "ncenc",
    version,
    about = "Encode an image or a video with a learned ncodec codec",
    after_help = "Examples:\n  ncenc photo.png -o photo.ncod\n  ncenc photo.jpg -o photo.ncod -q 6\n  ncenc photo.png -o tiny.ncod --codec vq --bpp 0.05\n  cat in.png | ncenc - -o - > out.ncod\n  ncenc clip.mp4 -o clip.ncod --codec stem -q 4 --gop 32\n  ncenc clip.mp4 -o clip.ncod --codec nerv --bpp 0.1 --frames 50\n\nSee the codecs and their quality levels with `ncodec list`. Videos (.y4m, .yuv, .mp4, .mkv, ...)\nuse a video codec: `stem` (trained latent codec: intra frames plus P-frames coded with a\nspatiotemporal entropy model) or `nerv` (fits a small network per group of frames, which takes\nminutes on a CPU; the default for videos)."
)]
struct Args {
    /// Input image (PNG, JPEG, BMP, TIFF, PNM, WebP) or video (.y4m, .yuv, anything ffmpeg reads), or - for an image on stdin.
    input: PathBuf,
    /// Output .ncod file, or - for stdout.
    #[arg(short, long)]
    output: PathBuf,
    /// Quality level: 1 = smallest file … 8 (images, stem) / 6 (nerv) = best quality.
    #[arg(short, long, default_value_t = 4)]
    quality: u8,
    /// Codec from the zoo (`ncodec list`); default: mlic for images, nerv for videos.
    #[arg(short, long)]
    codec: Option<String>,
    /// Use this weight file instead of the zoo's (the stream records its digest).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Raw .yuv input: frame size WxH (else taken from the file name).
    #[arg(long, value_parser = ncodec::cli::parse_geometry)]
    geometry: Option<(usize, usize)>,
    /// Images: refine the latent with this many gradient steps on the rate-distortion cost
    /// before coding (slower encode, smaller file at equal quality; decoders need nothing new).
    /// 0 = off. About 20-50 is useful.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=1000))]
    refine: u16,
    /// First step size of --refine, in quantization steps of the latent (annealed to 0).
    #[arg(long, default_value_t = Refinement::DEFAULT_STEP_SIZE)]
    refine_step_size: f64,
    #[command(flatten)]
    nerv: ncodec::cli::NervArgs,
    #[command(flatten)]
    backend: ncodec::cli::BackendArgs,
    #[command(flatten)]
    limits: ncodec::cli::LimitArgs,
    #[command(flatten)]
    overfit: ncodec::cli::OverfitArgs,
    /// Print nothing on success.
    #[arg(long)]
    quiet: bool,
}

fn main() -> ExitCode {
    ncodec::cli::finish("ncenc", run(&Args::parse()))
}

fn run(args: &Args) -> ncodec::Result<()> {
    args.limits.apply();
    // --codec names the family; a weight file alone says what it holds.
    let family = match (args.codec.as_deref(), args.weights.as_deref()) {
        (Some(name), _) => Some(ncodec::registry::family_of_name(name)),
        (None, Some(w)) => Some(ncodec::registry::family_of_weights(w)?),
        (None, None) => None,
    };
    let video_codec = family.is_some_and(Family::is_video);
    if video_codec || ncodec::cli::is_video_path(&args.input) {
        if args.refine > 0 {
            return Err(ncodec::Error::Unsupported("--refine is for images; video codecs do not take it".into()));
        }
        if !video_codec && args.codec.is_some() {
            return Err(ncodec::Error::Unsupported(format!("'{}' is an image codec; videos are encoded with --codec stem or nerv", args.codec.as_deref().unwrap())));
        }
        return encode_video(args, family.unwrap_or(Family::Nerv));
    }
    let img = ncodec::io::load_image(&args.input)?;
    let backend = args.backend.select()?;
    if family == Some(Family::Overfit) {
        return encode_overfit(args, &img, backend);
    }
    let mut codec = Codec::open_on(args.codec.as_deref().unwrap_or(DEFAULT_CODEC), args.weights.as_deref(), backend.device)?;
    if args.codec.is_none() && args.weights.is_some() {
        // A weight file alone: the stream is named after what the file holds, not the default.
        codec.name = codec.architecture().name().to_string();
    }
    let start = Instant::now();
    let how = Refinement { steps: args.refine as usize, step_size: args.refine_step_size };
    let (bytes, quality) = match args.nerv.bpp {
        Some(target) => codec.encode_at_bpp_refined(&img, target, how)?,
        None => (codec.encode_refined(&img, args.quality, how)?, args.quality),
    };
    let secs = start.elapsed().as_secs_f64();
    ncodec::io::write_atomic(&args.output, &bytes)?;
    if !args.quiet {
        let px = img.width() as f64 * img.height() as f64;
        eprintln!("{}x{} {} q{}: {} bytes, {:.4} bpp, encoded in {:.2} s on {}", img.width(), img.height(), codec.name, quality, bytes.len(), bytes.len() as f64 * 8.0 / px, secs, backend.name);
    }
    Ok(())
}

/// The overfitted codec: fit the image (minutes; with --bpp, one fit per λ tried), write the
/// stream, report what it decodes to.
fn encode_overfit(args: &Args, img: &image::RgbImage, backend: ncodec::backend::Selected) -> ncodec::Result<()> {
    if args.weights.is_some() || args.refine > 0 {
        return Err(ncodec::Error::Unsupported("overfit fits its own network: --weights and --refine do not apply (pick -q or --bpp, and --preset)".into()));
    }
    let opts = args.overfit.options(args.quality)?;
    let start = Instant::now();
    let (enc, quality, searched) = match args.nerv.bpp {
        Some(target) => {
            let mut bar: Option<(usize, indicatif::ProgressBar)> = None;
            let found = ncodec::overfit::encode_at_bpp(img, target, &opts, &backend.device, &mut |probe, p| {
                if bar.as_ref().is_none_or(|(b, _)| *b != probe) {
                    if let Some((_, b)) = bar.take() {
                        b.finish_and_clear();
                    }
                    let label = format!("fit {}/{} {{pos}}/{{len}}", probe + 1, ncodec::overfit::MAX_RATE_PROBES);
                    bar = Some((probe, ncodec::cli::encode_bar(ncodec::overfit::fit::total_steps(&opts), &label, args.quiet)));
                }
                show_fit(&bar.as_ref().expect("bar just made").1, p);
            })?;
            if let Some((_, b)) = bar {
                b.finish_and_clear();
            }
            let probes: Vec<String> = found.probes.iter().map(|(l, b)| format!("λ {l:.5}: {b:.4} bpp")).collect();
            let within = found.encoded.bytes.len() as f64 * 8.0 <= target * img.width() as f64 * img.height() as f64;
            let verdict = if within { format!("λ {:.5} fits {target} bpp", found.lambda) } else { format!("no fit reached {target} bpp; the smallest stream is kept") };
            (found.encoded, ncodec::overfit::nearest_quality(found.lambda), Some(format!("{verdict} ({} fits: {})", found.probes.len(), probes.join(", "))))
        }
        None => {
            let bar = ncodec::cli::encode_bar(ncodec::overfit::fit::total_steps(&opts), "step {pos}/{len}", args.quiet);
            let enc = ncodec::overfit::encode(img, args.quality, &opts, &backend.device, &mut |p| show_fit(&bar, p))?;
            bar.finish_and_clear();
            (enc, args.quality, None)
        }
    };
    ncodec::io::write_atomic(&args.output, &enc.bytes)?;
    if !args.quiet {
        let px = img.width() as f64 * img.height() as f64;
        if let Some(s) = searched {
            eprintln!("{s}");
        }
        eprintln!(
            "{}x{} overfit q{} ({:.0} MAC/pixel, {} steps{}{}): {} bytes, {:.4} bpp, RGB PSNR {:.2} dB, encoded in {:.1} s on {}",
            img.width(),
            img.height(),
            quality,
            opts.arch.macs_per_pixel(),
            opts.steps,
            opts.half_resolution_note(),
            if opts.candidates > 1 { format!(", best of {} initialisations", opts.candidates) } else { String::new() },
            enc.bytes.len(),
            enc.bytes.len() as f64 * 8.0 / px,
            enc.psnr,
            start.elapsed().as_secs_f64(),
            backend.name
        );
    }
    Ok(())
}

/// A fit's progress on its bar.
fn show_fit(bar: &indicatif::ProgressBar, p: ncodec::overfit::FitProgress) {
    bar.set_position(p.step as u64);
    bar.set_message(format!("{:.2} dB, {:.3} bpp (latents)", p.psnr, p.bpp));
}

/// A video through the registry's video codec (nerv when no --codec names one).
fn encode_video(args: &Args, family: Family) -> ncodec::Result<()> {
    let video = ncodec::video::Video::open(&args.input, args.geometry, args.nerv.frames)?;
    let backend = args.backend.select()?;
    let enc = ncodec::cli::encode_video(family, &video, args.quality, &args.nerv, args.weights.as_deref(), &backend.device, args.quiet)?;
    ncodec::io::write_atomic(&args.output, &enc.bytes)?;
    if !args.quiet {
        eprintln!("{}", enc.summary(&video, &backend.name));
    }
    Ok(())
}
