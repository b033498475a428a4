//! `ncodec`: list, info, train, export, eval: the tools around the codec.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ncodec::models::{Architecture, ModelConfig};
use ncodec::train::{self, TrainOptions};
use ncodec::weights::Precision;

#[derive(Parser)]
#[command(name = "ncodec", version, about = "ncodec learned image codec: zoo, training and measurement tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// λ per quality level, 1 (smallest file) … 8 (best quality): CompressAI's MSE set.
const DEFAULT_LAMBDAS: [f64; 8] = [0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800];

#[derive(Subcommand)]
enum Command {
    /// Train a model (resumable) and optionally export it to the zoo.
    Train {
        /// factorized | hyperprior | mean-scale
        #[arg(long, default_value = "mean-scale")]
        codec: String,
        /// Folder of training photos (searched recursively). Never the test set.
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value_t = 128)]
        n: usize,
        #[arg(long, default_value_t = 192)]
        m: usize,
        /// λ per quality level, comma-separated, lowest rate first.
        #[arg(long, value_delimiter = ',')]
        lambda: Option<Vec<f64>>,
        #[arg(long, default_value = "ckpt")]
        ckpt_dir: PathBuf,
        /// Train up to this global step.
        #[arg(long, default_value_t = 1_000_000)]
        steps: usize,
        /// Stop after this many minutes of this run (checkpoint first).
        #[arg(long)]
        minutes: Option<f64>,
        #[arg(long, default_value_t = 8)]
        batch: usize,
        #[arg(long, default_value_t = 256)]
        crop: usize,
        #[arg(long, default_value_t = 1e-4)]
        lr: f64,
        #[arg(long, default_value_t = 200)]
        checkpoint_every: usize,
        /// Continue from the checkpoint in --ckpt-dir.
        #[arg(long)]
        resume: bool,
        /// Start from a shipped weight file (fresh optimizer).
        #[arg(long)]
        init_from: Option<PathBuf>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Export the result as this weight file (fp16) when training stops.
        #[arg(long)]
        export: Option<PathBuf>,
    },
    /// Encode and decode an image (a generated scene by default) at every quality level of the
    /// default codec and print bpp, PSNR and MS-SSIM.
    Demo {
        /// Image to use instead of the generated 768x512 scene.
        #[arg(long)]
        input: Option<PathBuf>,
        #[arg(long, default_value = ncodec::codec::DEFAULT_CODEC)]
        codec: String,
        /// Where the original, the .ncod streams and the decoded PNGs go.
        #[arg(long, default_value = "demo-out")]
        out: PathBuf,
    },
    /// Export a checkpoint into the zoo (fp16 weights), measure it on Kodak from real
    /// bitstreams, and write its card.
    Ship {
        #[arg(long, default_value = "ckpt/mean-scale")]
        ckpt_dir: PathBuf,
        /// Zoo name (codecs/<name>/).
        #[arg(long, default_value = "mean-scale")]
        name: String,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// One-line description for `ncodec list`.
        #[arg(long)]
        description: String,
        /// The command(s) that trained the checkpoint, recorded in the card.
        #[arg(long)]
        command: String,
        /// Learning-rate schedule, recorded in the card.
        #[arg(long)]
        lr_schedule: String,
    },
    /// List the shipped codecs, their quality levels and what they measure on Kodak.
    List,
    /// PSNR-RGB and MS-SSIM-RGB between two images of the same size.
    Metrics {
        reference: PathBuf,
        distorted: PathBuf,
    },
    /// Convert an image between formats (by extension), e.g. PNG to PPM for other encoders.
    Convert {
        input: PathBuf,
        output: PathBuf,
    },
    /// Print the header of an .ncod file.
    Info {
        file: PathBuf,
    },
    /// Measure rate-distortion on a folder of images from real bitstreams (bpp, PSNR, MS-SSIM).
    Bench {
        /// Folder of test images (default: $NCODEC_DATA/kodak or ../shared/datasets/kodak).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long, default_value = ncodec::codec::DEFAULT_CODEC)]
        codec: String,
        /// Evaluate this weight file instead of the zoo's.
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Quality levels to run (default: all).
        #[arg(short, long, value_delimiter = ',')]
        quality: Option<Vec<u8>>,
        /// Only the first N images.
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long, default_value = "bench-results")]
        out: PathBuf,
    },
    /// Export a checkpoint directory as a shippable weight file.
    Export {
        #[arg(long, default_value = "ckpt")]
        ckpt_dir: PathBuf,
        #[arg(short, long)]
        out: PathBuf,
        /// Store fp32 instead of fp16.
        #[arg(long)]
        fp32: bool,
    },
}

fn main() -> ExitCode {
    ncodec::cli::finish("ncodec", run(Cli::parse()))
}

fn run(cli: Cli) -> ncodec::Result<()> {
    match cli.command {
        Command::Train {
            codec, data, n, m, lambda, ckpt_dir, steps, minutes, batch, crop, lr, checkpoint_every, resume, init_from, seed, export,
        } => {
            let architecture = Architecture::from_name(&codec)
                .ok_or_else(|| ncodec::Error::Unsupported(format!("unknown codec architecture '{codec}'")))?;
            let config = ModelConfig { architecture, n, m, lambdas: lambda.unwrap_or(DEFAULT_LAMBDAS.to_vec()) };
            let opts = TrainOptions {
                config, data, ckpt_dir: ckpt_dir.clone(), steps, minutes, batch, crop, lr,
                checkpoint_every: checkpoint_every.max(1), resume, init_from, seed, progress: true,
            };
            let state = train::train(&opts)?;
            eprintln!("stopped at step {} ({:.2} h of training in total)", state.step, state.seconds / 3600.0);
            if let Some(out) = export {
                export_ckpt(&ckpt_dir, &out, false)?;
            }
            Ok(())
        }
        Command::Export { ckpt_dir, out, fp32 } => export_ckpt(&ckpt_dir, &out, fp32),
        Command::List => list(),
        Command::Convert { input, output } => {
            let img = ncodec::io::load_image(&input)?;
            ncodec::io::write_atomic(&output, &ncodec::io::encode_for_path(&img, &output)?)
        }
        Command::Metrics { reference, distorted } => {
            let (a, b) = (ncodec::io::load_image(&reference)?, ncodec::io::load_image(&distorted)?);
            if a.dimensions() != b.dimensions() {
                return Err(ncodec::Error::Unsupported(format!("sizes differ: {:?} vs {:?}", a.dimensions(), b.dimensions())));
            }
            println!("psnr_rgb {:.4} ms_ssim_rgb {:.6}", ncodec::metrics::psnr(&a, &b), ncodec::metrics::ms_ssim(&a, &b));
            Ok(())
        }
        Command::Demo { input, codec, out } => demo(input, &codec, &out),
        Command::Ship { ckpt_dir, name, data_dir, description, command, lr_schedule } => ship(&ckpt_dir, &name, data_dir, &description, &command, &lr_schedule),
        Command::Info { file } => info(&file),
        Command::Bench { data_dir, codec, weights, quality, limit, out } => bench(data_dir, &codec, weights, quality, limit, &out),
    }
}

fn export_ckpt(ckpt_dir: &std::path::Path, out: &std::path::Path, fp32: bool) -> ncodec::Result<()> {
    let device = ncodec::backend::device();
    let (state, model) = train::load_checkpoint(ckpt_dir, &device)?;
    let digest = train::export(&model, &state.config, out, if fp32 { Precision::F32 } else { Precision::F16 })?;
    eprintln!("exported step {} to {} (sha256 {})", state.step, out.display(), hex(&digest));
    Ok(())
}

fn list() -> ncodec::Result<()> {
    let codecs = ncodec::codec::list_codecs()?;
    if codecs.is_empty() {
        println!("no codecs shipped in {}", ncodec::codec::zoo_dir().display());
    }
    for (name, card) in codecs {
        println!("{name:<12} {} ({} parameters, {} quality levels: ncenc -q 1..{})", card.description, card.parameters, card.training.lambdas.len(), card.training.lambdas.len());
        for p in &card.kodak {
            println!("    q{}  λ={:<7} Kodak {:.3} bpp  {:.2} dB PSNR  {:.4} MS-SSIM", p.quality, p.lambda, p.bpp, p.psnr, p.ms_ssim);
        }
    }
    Ok(())
}

fn info(file: &std::path::Path) -> ncodec::Result<()> {
    let bytes = ncodec::io::read_input(file)?;
    let c = ncodec::container::Container::parse(&bytes)?;
    let h = &c.header;
    println!("file:      {} ({} bytes)", file.display(), bytes.len());
    println!("format:    ncod v{} {:?}", ncodec::container::VERSION, h.kind);
    println!("codec:     {} (weights {})", h.codec, hex(&h.weights_digest));
    println!("quality:   {}", h.quality);
    println!("geometry:  {}x{}", h.width, h.height);
    println!("bpp:       {:.4}", bytes.len() as f64 * 8.0 / (h.width as f64 * h.height as f64));
    let sizes: Vec<String> = c.sections.iter().map(|s| s.len().to_string()).collect();
    println!("sections:  {} ({} bytes)", c.sections.len(), sizes.join(" + "));
    match ncodec::codec::Codec::load(&h.codec) {
        Ok(codec) if codec.digest()[..8] == h.weights_digest => println!("decodable: yes, with the installed '{}' weights", h.codec),
        Ok(codec) => println!("decodable: no: installed '{}' weights are {}", h.codec, hex(&codec.digest()[..8])),
        Err(e) => println!("decodable: no: {e}"),
    }
    Ok(())
}

/// The test-set folder: explicit, else $NCODEC_DATA/kodak, else ../shared/datasets/kodak.
fn default_kodak(dir: Option<PathBuf>) -> ncodec::Result<PathBuf> {
    if let Some(d) = dir {
        return Ok(d);
    }
    let candidates = [
        std::env::var_os("NCODEC_DATA").map(|d| PathBuf::from(d).join("kodak")),
        Some(PathBuf::from("../shared/datasets/kodak")),
    ];
    candidates.into_iter().flatten().find(|p| p.is_dir()).ok_or_else(|| {
        ncodec::Error::Unsupported("no Kodak folder found: pass --data-dir or set NCODEC_DATA".into())
    })
}

fn bench(data_dir: Option<PathBuf>, codec_name: &str, weights: Option<PathBuf>, quality: Option<Vec<u8>>, limit: Option<usize>, out: &std::path::Path) -> ncodec::Result<()> {
    let dir = default_kodak(data_dir)?;
    let mut images = ncodec::data::image_files(&dir)?;
    images.truncate(limit.unwrap_or(usize::MAX));
    let codec = ncodec::codec::Codec::open(codec_name, weights.as_deref())?;
    let qualities = quality.unwrap_or_else(|| (1..=codec.qualities()).collect());
    let bar = indicatif::ProgressBar::new((images.len() * qualities.len()) as u64);
    let rows = ncodec::bench::evaluate(&codec, &images, &qualities, |r| {
        bar.set_message(format!("{} q{}", r.image, r.quality));
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    let name = format!("ncodec-{codec_name}");
    ncodec::bench::write_results(out, &name, &format!("ncodec {codec_name}, {} images from {}", images.len(), dir.display()), &rows)?;
    println!("{codec_name} on {} images of {}:", images.len(), dir.display());
    println!("  q   bpp      PSNR-RGB  MS-SSIM   enc s   dec s");
    for p in ncodec::bench::summarize(&rows) {
        println!("  {:<3} {:.4}   {:>6.3}    {:.5}   {:.3}   {:.3}", p.quality, p.bpp, p.psnr, p.ms_ssim, p.encode_s, p.decode_s);
    }
    println!("results: {}/{name}.json, {name}.csv", out.display());
    Ok(())
}

fn demo(input: Option<PathBuf>, codec_name: &str, out: &std::path::Path) -> ncodec::Result<()> {
    let img = match &input {
        Some(p) => ncodec::io::load_image(p)?,
        None => ncodec::synthetic::scene(768, 512),
    };
    std::fs::create_dir_all(out).map_err(|e| ncodec::Error::io(out, e))?;
    ncodec::io::write_atomic(&out.join("original.png"), &ncodec::io::encode_for_path(&img, std::path::Path::new("x.png"))?)?;
    let codec = ncodec::codec::Codec::load(codec_name)?;
    let what = input.as_ref().map_or("generated scene".to_string(), |p| p.display().to_string());
    println!("{codec_name} on {what} ({}x{}), real bitstreams in {}:", img.width(), img.height(), out.display());
    println!("  q   bytes    bpp      PSNR-RGB  MS-SSIM   encode  decode");
    let px = img.width() as f64 * img.height() as f64;
    for q in 1..=codec.qualities() {
        let t = std::time::Instant::now();
        let bytes = codec.encode(&img, q)?;
        let enc = t.elapsed().as_secs_f64();
        let stream = out.join(format!("q{q}.ncod"));
        ncodec::io::write_atomic(&stream, &bytes)?;
        let t = std::time::Instant::now();
        let dec = ncodec::decode_image(&ncodec::io::read_input(&stream)?)?;
        let dect = t.elapsed().as_secs_f64();
        ncodec::io::write_atomic(&out.join(format!("q{q}.png")), &ncodec::io::encode_for_path(&dec, std::path::Path::new("x.png"))?)?;
        println!(
            "  {q:<3} {:<8} {:.4}   {:>6.3}    {:.5}   {enc:.2} s  {dect:.2} s",
            bytes.len(), bytes.len() as f64 * 8.0 / px, ncodec::metrics::psnr(&img, &dec), ncodec::metrics::ms_ssim(&img, &dec)
        );
    }
    Ok(())
}

fn ship(ckpt_dir: &std::path::Path, name: &str, data_dir: Option<PathBuf>, description: &str, command: &str, lr_schedule: &str) -> ncodec::Result<()> {
    use burn::module::Module;
    let device = ncodec::backend::device();
    let (state, model) = train::load_checkpoint(ckpt_dir, &device)?;
    let dir = ncodec::codec::zoo_dir().join(name);
    std::fs::create_dir_all(&dir).map_err(|e| ncodec::Error::io(&dir, e))?;
    let weights = dir.join("weights.ncw");
    let digest = train::export(&model, &state.config, &weights, Precision::F16)?;
    let kodak = default_kodak(data_dir)?;
    let images = ncodec::data::image_files(&kodak)?;
    let codec = ncodec::codec::Codec::from_weights(name, &weights)?;
    let qualities: Vec<u8> = (1..=codec.qualities()).collect();
    let bar = indicatif::ProgressBar::new((images.len() * qualities.len()) as u64);
    let rows = ncodec::bench::evaluate(&codec, &images, &qualities, |_| bar.inc(1))?;
    bar.finish_and_clear();
    let points = ncodec::bench::summarize(&rows);
    let card = ncodec::codec::Card {
        name: name.to_string(),
        architecture: format!("{} (N={}, M={}), {} gain-unit quality levels", state.config.architecture.name(), state.config.n, state.config.m, state.config.qualities()),
        description: description.to_string(),
        weights: "weights.ncw".into(),
        weights_sha256: hex(&digest),
        parameters: model.num_params(),
        training: ncodec::codec::Training {
            data: format!("{} ({} images; Kodak never used)", state.data, state.images),
            images: state.images,
            steps: state.step,
            batch: state.batch,
            crop: state.crop,
            learning_rate: lr_schedule.to_string(),
            lambdas: state.config.lambdas.clone(),
            hours: (state.seconds / 360.0).round() / 10.0,
            hardware: state.hardware.clone(),
            command: command.to_string(),
        },
        kodak: points
            .iter()
            .map(|p| ncodec::codec::RatePoint {
                quality: p.quality,
                lambda: state.config.lambdas[p.quality as usize - 1],
                bpp: (p.bpp * 1e4).round() / 1e4,
                psnr: (p.psnr * 1e3).round() / 1e3,
                ms_ssim: (p.ms_ssim * 1e5).round() / 1e5,
            })
            .collect(),
    };
    let text = format!(
        "# Codec card: generated by `ncodec ship`; Kodak numbers are means over the 24 images of\n# {}, measured from real .ncod bytes (bpp = file bytes x 8 / pixels), RGB 8-bit output.\n{}",
        kodak.display(),
        toml::to_string(&card).map_err(|e| ncodec::Error::Codec(e.to_string()))?
    );
    ncodec::io::write_atomic(&dir.join("card.toml"), text.as_bytes())?;
    ncodec::bench::write_results(&dir, "kodak", &format!("ncodec {name} on Kodak"), &rows)?;
    println!("shipped {name} (step {}) to {}", state.step, dir.display());
    for p in points {
        println!("  q{} {:.4} bpp {:.3} dB {:.5}", p.quality, p.bpp, p.psnr, p.ms_ssim);
    }
    Ok(())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
