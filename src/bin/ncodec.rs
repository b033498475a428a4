//! `ncodec`: list, info, train, export, eval: the tools around the codec.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ncodec::models::{Architecture, ModelConfig};
use ncodec::train::{self, TrainOptions};
use ncodec::weights::Precision;

#[derive(Parser)]
#[command(name = "ncodec", version, about = "ncodec learned image and video codecs: zoo, transcoding, training and measurement tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    limits: ncodec::limits::LimitArgs,
}

/// λ per quality level, 1 (smallest file) … 8 (best quality): CompressAI's MSE set.
const DEFAULT_LAMBDAS: [f64; 8] = [0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800];

#[derive(Subcommand)]
enum Command {
    /// Train a model (resumable) and optionally export it to the zoo.
    Train {
        /// factorized | hyperprior | mean-scale | mlic | vq | stem
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
        /// Start from a shipped weight file (fresh optimizer). A mean-scale file can start an
        /// mlic model with the same N, M and λs: its transforms and hyperprior are copied.
        #[arg(long)]
        init_from: Option<PathBuf>,
        /// mlic only: train just the context model (and LRP) on latents of the frozen transforms.
        #[arg(long)]
        freeze_transforms: bool,
        /// Analysis/synthesis transforms. `gdn-residual` adds residual and attention stages;
        /// with --init-from a GDN model of the same codec they start as the identity.
        #[arg(long, value_enum, default_value = "gdn")]
        transforms: ncodec::models::Transforms,
        /// gdn-residual: learning rate of the residual stages as a multiple of --lr (new stages
        /// start at zero and have further to move than the trained layers around them).
        #[arg(long, default_value_t = 1.0)]
        residual_lr_scale: f64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Export the result as this weight file (fp16) when training stops.
        #[arg(long)]
        export: Option<PathBuf>,
        /// vq: residual levels.
        #[arg(long, default_value_t = 6)]
        vq_levels: usize,
        /// vq: codes per level.
        #[arg(long, default_value_t = 256)]
        vq_codes: usize,
        /// vq: what the decoder minimises.
        #[arg(long, value_enum, default_value = "mse")]
        vq_loss: ncodec::train_vq::VqLoss,
        /// vq: train the encoder too (straight-through, commitment loss) instead of only g_s.
        #[arg(long)]
        train_encoder: bool,
        /// stem: synthetic training sequences (moving crops of the training photos) to render.
        #[arg(long, default_value_t = 1200)]
        sequences: usize,
        /// Where training runs: cpu, wgpu, vulkan, cuda, auto (default: $NCODEC_DEVICE, else cpu).
        #[arg(long, value_parser = ncodec::cli::parse_backend)]
        backend: Option<ncodec::backend::Backend>,
        /// Throughput benchmark instead of training: time N steps of this model, batch and crop
        /// (after --warmup untimed ones) and print s/step and crops/s. Writes no checkpoint.
        #[arg(long, value_name = "N")]
        bench: Option<usize>,
        /// --bench: untimed steps first (kernel compilation, autotuning).
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        /// --bench: also append the result as one JSON line to this file.
        #[arg(long, requires = "bench")]
        bench_json: Option<PathBuf>,
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
        /// mlic: ship with latent residual prediction switched off.
        #[arg(long)]
        no_lrp: bool,
        /// Video codecs (stem): record the results of `ncodec bench --dataset video --data-dir
        /// CLIP --codec stem --out DIR` (its ncodec-stem and ncodec-stem-intra curves) in the card.
        #[arg(long, requires = "video_results")]
        video: Option<PathBuf>,
        #[arg(long, requires = "video")]
        video_results: Option<PathBuf>,
        /// The intra period that bench ran with.
        #[arg(long, default_value_t = ncodec::stem::DEFAULT_GOP)]
        gop: usize,
        /// Replace the shipped weights only when the new ones measure at least PCT % better
        /// (Kodak BD-rate, PSNR-RGB, against the shipped card's points); else keep them and
        /// say so.
        #[arg(long, value_name = "PCT")]
        if_better: Option<f64>,
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
    /// Transcode a video through a learned video codec and back: fit, write the stream,
    /// decode it, write the output (.y4m, .mp4/.mkv/.mov, or a folder of PNGs).
    /// Prints the stream's bpp (from its bytes), RGB PSNR, encode time and decode speed.
    Transcode {
        /// Input video: .y4m, .yuv (with --geometry or WxH in the name), or anything ffmpeg reads.
        input: PathBuf,
        /// Output video: .y4m, .mp4/.mkv/.mov (x264/x265, see --crf, --lossless), or folder/.
        output: PathBuf,
        /// Codec the video goes through.
        #[arg(long, default_value = "nerv")]
        via: String,
        /// Quality level: 1..=8 (stem), 1..=6 (nerv; --bpp overrides it).
        #[arg(short, long, default_value_t = 3)]
        quality: u8,
        /// Also keep the .ncod stream here.
        #[arg(long)]
        stream: Option<PathBuf>,
        /// Raw .yuv input: frame size WxH.
        #[arg(long)]
        geometry: Option<String>,
        #[command(flatten)]
        nerv: ncodec::cli::NervArgs,
        #[command(flatten)]
        video_out: ncodec::cli::VideoOutArgs,
        #[command(flatten)]
        backend: ncodec::cli::BackendArgs,
    },
    /// Print the header of an .ncod file.
    Info {
        file: PathBuf,
    },
    /// Rate-distortion benchmark from real bitstreams: ncodec models and the JPEG/WebP/AVIF
    /// anchors on the same images; writes JSON (CompressAI schema), CSV, SVG plots and a
    /// Markdown summary with BD-rates.
    Bench {
        /// kodak (files checked against datasets/kodak.toml), folder (any images in --data-dir),
        /// or video (--data-dir is a .y4m, .yuv or any container ffmpeg reads).
        #[arg(long, default_value = "kodak")]
        dataset: String,
        /// Folder of test images (default: $NCODEC_DATA/kodak or ../shared/datasets/kodak).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// ncodec codecs from the zoo, comma-separated ("none" for anchors only).
        #[arg(long, value_delimiter = ',', default_value = ncodec::codec::DEFAULT_CODEC)]
        codec: Vec<String>,
        /// Evaluate this weight file instead of the zoo's (one --codec only).
        #[arg(long)]
        weights: Option<PathBuf>,
        /// ncodec quality levels to run (default: all).
        #[arg(short, long, value_delimiter = ',')]
        quality: Option<Vec<u32>>,
        /// Classical anchors to run side by side: jpeg, webp, avif (images; default all three),
        /// x264, x265 (video; default both), or none.
        #[arg(long, value_delimiter = ',')]
        anchors: Option<Vec<String>>,
        /// Video mode: options of the video codecs (stem: --gop, -q default all; nerv: -q default 2,4).
        #[command(flatten)]
        nerv: ncodec::cli::NervArgs,
        /// Curves that BD-rates are computed against, comma-separated: one table each
        /// (default: jpeg for images, x264 for video).
        #[arg(long, value_delimiter = ',')]
        bd_anchor: Option<Vec<String>>,
        /// Results files to draw and compare: published ones (CompressAI JSON schema) are
        /// labelled as published; curves an earlier `ncodec bench` wrote stay measured.
        #[arg(long)]
        reference: Vec<PathBuf>,
        /// Only the first N images.
        #[arg(long)]
        limit: Option<usize>,
        /// Run images one at a time so encode/decode times are meaningful (slower).
        #[arg(long)]
        timing: bool,
        #[command(flatten)]
        backend: ncodec::cli::BackendArgs,
        /// Measurement only: also run each ncodec codec with its float hyper-synthesis (curve
        /// `<codec>-float-hyper`), to measure what the integer entropy path costs.
        #[arg(long, hide = true)]
        float_hyper: bool,
        /// Measurement only: also run each gain-unit codec below its lowest trained rate, with
        /// quality 1's gain scaled by each factor (curve `<codec>-extrapolated`, one setting per
        /// factor). Its streams are not standard ones: compare, do not ship.
        #[arg(long, value_delimiter = ',')]
        extrapolate: Option<Vec<f64>>,
        /// Also run each ncodec codec with encode-time latent refinement of N gradient steps
        /// (curve `<codec>-refine<N>`), comma-separated for several.
        #[arg(long, value_delimiter = ',')]
        refine: Vec<usize>,
        /// Anchor settings to run instead of each anchor's default sweep (images: quality, e.g.
        /// 1,3,5,10 for their lowest rates; video: CRF, e.g. 37,27,17,7).
        #[arg(long, value_delimiter = ',')]
        anchor_quality: Option<Vec<u32>>,
        #[arg(long, default_value = "bench-results")]
        out: PathBuf,
    },
    /// Stress-test cross-backend decoding: random images encoded on one backend, decoded on
    /// the other (and the reverse); counts latent mismatches (must be 0) and pixel differences.
    Crosscheck {
        /// Codec from the zoo.
        #[arg(long, default_value = ncodec::codec::DEFAULT_CODEC)]
        codec: String,
        /// Use this weight file instead of the zoo's.
        #[arg(long)]
        weights: Option<PathBuf>,
        /// First backend.
        #[arg(long, default_value = "cpu", value_parser = ncodec::cli::parse_backend)]
        a: ncodec::backend::Backend,
        /// Second backend.
        #[arg(long, default_value = "wgpu", value_parser = ncodec::cli::parse_backend)]
        b: ncodec::backend::Backend,
        /// Number of random images.
        #[arg(long, default_value_t = 1000)]
        count: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Largest image side in pixels (not `--max-side`: that is the global input limit).
        #[arg(long, default_value_t = 256)]
        side: u32,
    },
    /// Download a test set from its manifest (datasets/*.toml), resuming partial downloads and
    /// checking SHA-256: kodak (24 PNG) or uvg (7 .7z archives of raw 1080p YUV).
    Fetch {
        dataset: String,
        /// Target folder (default: $NCODEC_DATA/<dataset>, else data/<dataset>).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// A training subset under a byte budget, as downscaled JPEGs (what a GPU window carries:
    /// scripts/gpu-train.sh pack).
    Subset {
        /// Training photos (searched recursively).
        #[arg(long)]
        data: PathBuf,
        /// A new or empty folder; it appears only once every photo is written.
        #[arg(long)]
        out: PathBuf,
        /// Budget in MiB.
        #[arg(long, default_value_t = 10.0)]
        mib: f64,
        /// Longer side after downscaling.
        #[arg(long, default_value_t = 640)]
        side: u32,
        /// Skip photos smaller than this; never downscale below it.
        #[arg(long, default_value_t = 256)]
        crop: u32,
        #[arg(long, default_value_t = 90)]
        quality: u8,
        /// Which photos (each source folder is shuffled with it).
        #[arg(long, default_value_t = 1)]
        seed: u64,
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
        /// mlic: switch latent residual prediction off (ŷ reaches g_s unchanged).
        #[arg(long)]
        no_lrp: bool,
    },
}

fn main() -> ExitCode {
    ncodec::cli::finish("ncodec", run(Cli::parse()))
}

fn run(cli: Cli) -> ncodec::Result<()> {
    cli.limits.apply();
    match cli.command {
        Command::Train {
            codec, data, n, m, lambda, ckpt_dir, steps, minutes, batch, crop, lr, checkpoint_every, resume, init_from, freeze_transforms, transforms, residual_lr_scale, seed, export,
            vq_levels, vq_codes, vq_loss, train_encoder, sequences, backend, bench, warmup, bench_json,
        } => {
            if let Some(backend) = backend {
                ncodec::backend::set_default(backend.select()?)?;
            }
            let architecture = Architecture::from_name(&codec)
                .ok_or_else(|| ncodec::Error::Unsupported(format!("unknown codec architecture '{codec}'")))?;
            let config = if architecture == Architecture::Vq {
                ModelConfig { architecture, n, m, lambdas: vec![], vq: Some(ncodec::models::VqConfig::with(vq_levels, vq_codes)), transforms }
            } else {
                ModelConfig { architecture, n, m, lambdas: lambda.unwrap_or(DEFAULT_LAMBDAS.to_vec()), vq: None, transforms }
            };
            let vq = ncodec::train_vq::VqTrainOptions { loss: vq_loss, train_encoder, ..Default::default() };
            let opts = TrainOptions {
                config, data, ckpt_dir: ckpt_dir.clone(), steps, minutes, batch, crop, lr,
                checkpoint_every: checkpoint_every.max(1), resume, init_from, freeze_transforms, residual_lr_scale, seed, progress: true, vq, sequences,
            };
            if let Some(steps) = bench {
                let t = train::throughput(&opts, warmup, steps)?;
                println!(
                    "{} {} N={} M={} ({}), batch {} of {}x{}: {:.4} s/step (median of {}; min {:.4}, max {:.4}), {:.2} crops/s",
                    t.backend, t.codec, t.n, t.m, t.transforms, t.batch, t.crop, t.crop, t.median_s, t.steps, t.min_s, t.max_s, t.crops_per_s
                );
                if let Some(path) = bench_json {
                    use std::io::Write;
                    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| ncodec::Error::io(&path, e))?;
                    writeln!(f, "{}", serde_json::to_string(&t).expect("plain struct")).map_err(|e| ncodec::Error::io(&path, e))?;
                }
                return Ok(());
            }
            let state = train::train(&opts)?;
            eprintln!("stopped at step {} ({:.2} h of training in total)", state.step, state.seconds / 3600.0);
            if let Some(out) = export {
                export_ckpt(&ckpt_dir, &out, false, false)?;
            }
            Ok(())
        }
        Command::Fetch { dataset, dir } => fetch(&dataset, dir),
        Command::Subset { data, out, mib, side, crop, quality, seed } => {
            if !(mib > 0.0 && (1..=100).contains(&quality)) {
                return Err(ncodec::Error::Unsupported("--mib must be positive and --quality in 1..=100".into()));
            }
            let opts = ncodec::data::SubsetOptions { budget_bytes: (mib * 1048576.0) as u64, max_side: side, crop, quality, seed };
            let (count, bytes) = ncodec::data::write_subset(&data, &out, &opts)?;
            println!("{count} photos, {:.1} MiB, in {} (longer side <= {side}, JPEG q{quality}, seed {seed})", bytes as f64 / 1048576.0, out.display());
            Ok(())
        }
        Command::Export { ckpt_dir, out, fp32, no_lrp } => export_ckpt(&ckpt_dir, &out, fp32, no_lrp),
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
            let ms_ssim = ncodec::metrics::ms_ssim(&a, &b);
            let ms_ssim = if ms_ssim.is_nan() {
                format!("n/a (MS-SSIM needs at least {0}x{0} pixels)", ncodec::metrics::MS_SSIM_MIN_SIDE)
            } else {
                format!("{ms_ssim:.6}")
            };
            println!("psnr_rgb {:.4} ms_ssim_rgb {ms_ssim}", ncodec::metrics::psnr(&a, &b));
            Ok(())
        }
        Command::Demo { input, codec, out } => demo(input, &codec, &out),
        Command::Ship { ckpt_dir, name, data_dir, description, command, lr_schedule, no_lrp, video, video_results, gop, if_better } => {
            let (state, model) = load_for_export(&ckpt_dir, no_lrp)?;
            let video = video.zip(video_results).map(|(v, r)| (v, r, gop));
            ship(&ckpt_dir, &state, &model, &name, data_dir, &description, &command, &lr_schedule, video, if_better)
        }
        Command::Info { file } => info(&file),
        Command::Transcode { input, output, via, quality, stream, geometry, nerv, video_out, backend } => transcode(&input, &output, &via, quality, stream.as_deref(), geometry.as_deref(), &nerv, &video_out, &backend),
        Command::Crosscheck { codec, weights, a, b, count, seed, side } => crosscheck(&codec, weights.as_deref(), a, b, ncodec::crosscheck::Options { count, seed, max_side: side }),
        Command::Bench { dataset, data_dir, codec, weights, quality, anchors, nerv, bd_anchor, reference, limit, timing, backend, float_hyper, extrapolate, refine, anchor_quality, out } => {
            let video = dataset == "video";
            let anchors = anchors.unwrap_or_else(|| if video { vec!["x264".into(), "x265".into()] } else { vec!["jpeg".into(), "webp".into(), "avif".into()] });
            let bd_anchor = bd_anchor.unwrap_or_else(|| vec![if video { "x264" } else { "jpeg" }.into()]);
            let opts = BenchArgs { dataset, data_dir, codecs: codec, weights, quality, anchors, nerv, bd_anchor, reference, limit, timing, backend, float_hyper, extrapolate, refine, anchor_quality, out };
            bench(&opts)
        }
    }
}

fn export_ckpt(ckpt_dir: &std::path::Path, out: &std::path::Path, fp32: bool, no_lrp: bool) -> ncodec::Result<()> {
    let (state, model) = load_for_export(ckpt_dir, no_lrp)?;
    let digest = train::export(ckpt_dir, &model, &state, out, if fp32 { Precision::F32 } else { Precision::F16 })?;
    eprintln!("exported step {} to {} (sha256 {})", state.step, out.display(), hex(&digest));
    Ok(())
}

fn list() -> ncodec::Result<()> {
    let codecs = ncodec::codec::list_codecs()?;
    if codecs.is_empty() {
        println!("no codecs shipped in {}", ncodec::codec::zoo_dir().display());
    }
    for (name, card) in codecs {
        println!("{name:<12} {} ({} parameters, {} quality levels: ncenc -q 1..{})", card.description, card.parameters, card.kodak.len(), card.kodak.len());
        for p in &card.kodak {
            let times = match (p.encode_s, p.decode_s) {
                (Some(e), Some(d)) => format!("  enc {e:.2} s / dec {d:.2} s"),
                _ => String::new(),
            };
            let lambda = if p.lambda > 0.0 { format!("λ={:<7}", p.lambda) } else { " ".repeat(9) };
            println!("    q{:<2} {lambda} Kodak {:.3} bpp  {:.2} dB PSNR  {:.4} MS-SSIM{times}", p.quality, p.bpp, p.psnr, p.ms_ssim);
        }
        for v in &card.video {
            let kind = if v.gop == 1 { "all intra".to_string() } else { format!("gop {}", v.gop) };
            println!("    q{:<2} {:<10} {} {:.4} bpp  {:.2} dB PSNR-RGB  {:.2} dB PSNR-YUV  enc {:.2} s / dec {:.2} s per frame", v.quality, kind, v.clip, v.bpp, v.psnr_rgb, v.psnr_yuv, v.encode_s, v.decode_s);
        }
    }
    println!("{:<12} video: HNeRV-style network fitted to each video at encode time (no shipped weights; ncenc CLIP -o OUT --codec nerv -q 1..{})", ncodec::nerv::CODEC_NAME, ncodec::nerv::QUALITIES);
    for q in 1..=ncodec::nerv::QUALITIES {
        let c = ncodec::nerv::config_for_quality(q)?;
        println!("    q{q}  {} decoder parameters per group, {} embedding values per 64x64 tile, widths {:?}", c.parameters(), c.embed_dim * c.grid().pow(2), c.widths);
    }
    Ok(())
}

fn info(file: &std::path::Path) -> ncodec::Result<()> {
    let bytes = ncodec::io::read_input(file)?;
    let (c, stem, intact) = ncodec::stem::parse_any(&bytes)?;
    let h = &c.header;
    println!("file:      {} ({} bytes)", file.display(), bytes.len());
    println!("format:    ncod v{} {:?}", ncodec::container::VERSION, h.kind);
    println!("codec:     {} (weights {})", h.codec, hex(&h.weights_digest));
    println!("quality:   {}", h.quality);
    println!("geometry:  {}x{}", h.width, h.height);
    if stem {
        let i = ncodec::stem::stream_info(&c)?;
        println!("video:     {} frames at {}/{} fps, intra period {}", i.frames, i.fps.0, i.fps.1, i.gop);
        println!("bpp:       {:.4}", bytes.len() as f64 * 8.0 / (h.width as f64 * h.height as f64 * i.frames as f64));
        let sizes = ncodec::stem::frame_sizes(&c)?;
        let (intra, p): (Vec<_>, Vec<_>) = sizes.iter().partition(|s| s.1);
        let mean = |v: &[&(usize, bool, usize)]| v.iter().map(|s| s.2).sum::<usize>() as f64 / v.len().max(1) as f64;
        println!("frames:    {} intra (mean {:.0} bytes), {} P (mean {:.0} bytes)", intra.len(), mean(&intra), p.len(), mean(&p));
        if !intact {
            println!("checksum:  MISMATCH: some section is damaged (ncdec --conceal decodes around it)");
        }
        match ncodec::codec::Codec::load(&h.codec) {
            Ok(codec) if codec.digest()[..8] == h.weights_digest => println!("decodable: yes, with the installed '{}' weights", h.codec),
            Ok(codec) => println!("decodable: no: installed '{}' weights are {}", h.codec, hex(&codec.digest()[..8])),
            Err(e) => println!("decodable: no: {e}"),
        }
        return Ok(());
    }
    if h.kind == ncodec::container::Kind::Video {
        let i = ncodec::nerv::stream_info(&c)?;
        let c = &i.config;
        println!("video:     {} frames at {}/{} fps, {} groups of {} frames", i.frames, i.fps.0, i.fps.1, i.groups(), i.group);
        println!("network:   {} decoder parameters, {}x{} tiles, {} levels, embeddings {}x{}x{} per tile, widths {:?}", c.parameters(), c.tile, c.tile, c.levels, c.embed_dim, c.grid(), c.grid(), c.widths);
        println!("bpp:       {:.4}", bytes.len() as f64 * 8.0 / (h.width as f64 * h.height as f64 * i.frames as f64));
        let sizes: Vec<String> = ncodec::container::Container::parse(&bytes)?.sections.iter().map(|s| s.len().to_string()).collect();
        println!("sections:  header + {} groups ({} bytes)", i.groups(), sizes.join(" + "));
        println!("decodable: yes (the stream carries its network)");
        return Ok(());
    }
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

/// Writes the per-curve files, both plots and the Markdown summary for `curves`.
fn write_report(a: &BenchArgs, title: &str, setup: &str, mut curves: Vec<ncodec::bench::report::Curve>) -> ncodec::Result<()> {
    use ncodec::bench::report;
    for r in &a.reference {
        curves.push(report::load_reference(r)?);
    }
    if curves.is_empty() {
        return Err(ncodec::Error::Unsupported("nothing to benchmark: no codec, anchor or reference".into()));
    }
    std::fs::create_dir_all(&a.out).map_err(|e| ncodec::Error::io(&a.out, e))?;
    report::plot_svg(&a.out.join("rd-psnr.svg"), &format!("{title}: PSNR-RGB"), &curves, report::Metric::Psnr)?;
    report::plot_svg(&a.out.join("rd-ms-ssim.svg"), &format!("{title}: MS-SSIM-RGB"), &curves, report::Metric::MsSsimDb)?;
    let anchors: Vec<&str> = a.bd_anchor.iter().map(String::as_str).collect();
    let md = report::markdown(&format!("Rate-distortion on {title}"), setup, &curves, &anchors);
    ncodec::io::write_atomic(&a.out.join("summary.md"), md.as_bytes())?;
    println!("results in {}: <curve>.json/.csv, rd-psnr.svg, rd-ms-ssim.svg, summary.md", a.out.display());
    Ok(())
}

fn print_curve(curve: &ncodec::bench::report::Curve) {
    println!("{}:", curve.name);
    println!("  setting  bpp      PSNR-RGB  PSNR-YUV  MS-SSIM   enc ms  dec ms");
    for p in &curve.points {
        println!("  {:<8} {:.4}   {:>6.3}    {:>6.3}    {:.5}   {:>6.0}  {:>6.0}", p.setting, p.bpp, p.psnr, p.psnr_yuv, p.ms_ssim, p.encode_s * 1e3, p.decode_s * 1e3);
    }
}

fn bench_video(a: &BenchArgs) -> ncodec::Result<()> {
    use ncodec::bench::{self, report};
    let path = a.data_dir.clone().ok_or_else(|| ncodec::Error::Unsupported("video mode: pass the clip as --data-dir FILE (.y4m, .yuv or any container)".into()))?;
    let video = ncodec::video::Video::open(&path, None, a.nerv.frames)?;
    let name = path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
    // The image default means "ncodec's codec" here: the video codec.
    let codecs: Vec<&str> = a.codecs.iter().map(|c| if c == ncodec::codec::DEFAULT_CODEC { ncodec::nerv::CODEC_NAME } else { c.as_str() }).filter(|c| *c != "none").collect();
    if let Some(c) = codecs.iter().find(|c| !ncodec::cli::is_video_codec(c)) {
        return Err(ncodec::Error::Unsupported(format!("'{c}' is not a video codec (video: stem, nerv, or none for anchors only)")));
    }
    eprintln!("{name}: {}x{}, {} frames at {}/{} fps", video.width, video.height, video.frames.len(), video.fps.0, video.fps.1);
    let mut curves = vec![];
    if codecs.contains(&ncodec::stem::CODEC_NAME) {
        let backend = a.backend.select()?;
        let codec = ncodec::codec::Codec::open_on(ncodec::stem::CODEC_NAME, a.weights.as_deref(), backend.device)?;
        let qualities = a.quality.clone().unwrap_or_else(|| (1..=codec.qualities() as u32).collect());
        let frames = video.frames.len();
        // The P-frames' saving: the same codec with every frame an intra frame.
        for (label, gop) in [("ncodec-stem", ncodec::stem::intra_period(a.nerv.gop, frames)), ("ncodec-stem-intra", 1)] {
            let bar = indicatif::ProgressBar::new(qualities.len() as u64);
            bar.set_message(label);
            let rows = bench::evaluate_stem(&codec, &name, &video, &qualities, gop, &|_| bar.inc(1))?;
            bar.finish_and_clear();
            let kind = if gop == 1 { "all intra (every frame coded by the image model)".to_string() } else { format!("intra period {gop}, P-frames with the spatiotemporal entropy model") };
            let description = format!("ncodec stem (weights {}), {kind}, on {}; rate = .ncod bytes; {name}, {}x{}, {frames} frames", hex(&codec.digest()[..8]), backend.name, video.width, video.height);
            report::write_codec(&a.out, label, &description, &rows)?;
            let curve = report::Curve::measured(label, &description, &rows);
            print_curve(&curve);
            curves.push(curve);
        }
    }
    if codecs.contains(&ncodec::nerv::CODEC_NAME) {
        let backend = a.backend.select()?;
        let qualities = a.quality.clone().unwrap_or_else(|| vec![2, 4]);
        let bar = indicatif::ProgressBar::new(qualities.len() as u64);
        bar.set_message("fitting nerv");
        let rows = bench::evaluate_nerv(&a.nerv, &name, &video, &qualities, &backend.device, &|_| bar.inc(1))?;
        bar.finish_and_clear();
        let n = &a.nerv;
        let description = format!(
            "ncodec nerv (HNeRV-style, fitted per clip on {}): groups of {} frames, {} epochs first group, {} epochs per warm-started group, batch {} tiles of 64x64, lr {}; rate = .ncod bytes; {name}, {}x{}, {} frames",
            backend.name, n.group, n.epochs, n.warm_epochs, n.batch, n.lr, video.width, video.height, video.frames.len()
        );
        report::write_codec(&a.out, "ncodec-nerv", &description, &rows)?;
        let curve = report::Curve::measured("ncodec-nerv", &description, &rows);
        print_curve(&curve);
        curves.push(curve);
    }
    for an in a.anchors.iter().filter(|c| c.as_str() != "none") {
        let anchor = ncodec::video::anchors::VideoAnchor::by_name(an)?;
        let settings = a.anchor_quality.clone().unwrap_or_else(|| anchor.settings());
        let bar = indicatif::ProgressBar::new(settings.len() as u64);
        let rows = bench::evaluate_video(&anchor, &name, &video, &settings, &|_| bar.inc(1))?;
        bar.finish_and_clear();
        let description = format!("{}; {name}, {}x{}, {} frames", anchor.description(), video.width, video.height, video.frames.len());
        report::write_codec(&a.out, anchor.name, &description, &rows)?;
        let curve = report::Curve::measured(anchor.name, &anchor.description(), &rows);
        print_curve(&curve);
        curves.push(curve);
    }
    let setup = format!(
        "Sequence `{}`: {}x{}, {} frames, 8-bit 4:2:0. bpp = bits / (W·H·frames). PSNR-RGB and MS-SSIM per frame on RGB (source: BT.709 limited-range conversion with chroma replication; stem and nerv code and output RGB, the anchors' decoded 4:2:0 goes through the same conversion), averaged; PSNR-Y/YUV on 4:2:0 planes (stem/nerv output converted with BT.709 and 2x2 chroma averaging).",
        path.display(),
        video.width,
        video.height,
        video.frames.len()
    );
    write_report(a, &name, &setup, curves)
}

#[allow(clippy::too_many_arguments)]
fn transcode(
    input: &std::path::Path,
    output: &std::path::Path,
    via: &str,
    quality: u8,
    stream: Option<&std::path::Path>,
    geometry: Option<&str>,
    nerv: &ncodec::cli::NervArgs,
    video_out: &ncodec::cli::VideoOutArgs,
    backend: &ncodec::cli::BackendArgs,
) -> ncodec::Result<()> {
    if !ncodec::cli::is_video_codec(via) {
        return Err(ncodec::Error::Unsupported(format!("cannot transcode via '{via}' (video codecs: stem, nerv)")));
    }
    // Refuse a bad output before minutes of fitting.
    ncodec::video::write::output_kind(output)?;
    let geometry = geometry
        .map(|g| g.split_once('x').and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?))).ok_or_else(|| ncodec::Error::Unsupported(format!("--geometry {g}: expected WxH"))))
        .transpose()?;
    let video = ncodec::video::Video::open(input, geometry, nerv.frames)?;
    let backend = backend.select()?;
    if via == ncodec::stem::CODEC_NAME {
        return transcode_stem(&video, output, quality, stream, nerv, video_out, backend);
    }
    let enc = nerv.encode(&video, quality, &backend.device, false)?;
    if let Some(s) = stream {
        ncodec::io::write_atomic(s, &enc.bytes)?;
    }
    let t = std::time::Instant::now();
    let (info, frames) = ncodec::nerv::decode(&ncodec::container::Container::parse(&enc.bytes)?, None, &backend.device)?;
    let decode_s = t.elapsed().as_secs_f64();
    ncodec::video::write::write_video(output, &frames, info.fps, &video_out.options())?;
    let (psnr, _, psnr_yuv, _) = ncodec::video::quality_rgb(&video, &frames)?;
    let px = (video.width * video.height * video.frames.len()) as f64;
    eprintln!(
        "{}x{} x {} frames via nerv q{}: {} bytes, {:.4} bpp, RGB PSNR {:.2} dB (YUV {:.2}), encoded in {:.1} s, decoded at {:.1} fps on {}",
        video.width, video.height, video.frames.len(), enc.quality, enc.bytes.len(), enc.bytes.len() as f64 * 8.0 / px, psnr, psnr_yuv, enc.seconds, frames.len() as f64 / decode_s, backend.name
    );
    Ok(())
}

/// stem transcode: encode, keep the stream if asked, decode frame by frame into the output
/// (bounded memory), measuring each frame against the source on the way.
fn transcode_stem(video: &ncodec::video::Video, output: &std::path::Path, quality: u8, stream: Option<&std::path::Path>, nerv: &ncodec::cli::NervArgs, video_out: &ncodec::cli::VideoOutArgs, backend: ncodec::backend::Selected) -> ncodec::Result<()> {
    let codec = ncodec::codec::Codec::open_on(ncodec::stem::CODEC_NAME, None, backend.device)?;
    let enc = ncodec::cli::encode_stem(&codec, video, quality, nerv, false)?;
    if let Some(s) = stream {
        ncodec::io::write_atomic(s, &enc.bytes)?;
    }
    let row = ncodec::bench::decode_stem_to(&codec, video, &enc.bytes, Some((output, &video_out.options())))?;
    eprintln!(
        "{}x{} x {} frames via stem q{quality} gop {}: {} bytes, {:.4} bpp, RGB PSNR {:.2} dB (YUV {:.2}), encoded in {:.1} s, decoded at {:.1} fps on {}",
        video.width, video.height, video.frames.len(), ncodec::stem::intra_period(nerv.gop, video.frames.len()), enc.bytes.len(), row.bpp, row.psnr, row.psnr_yuv, enc.seconds, video.frames.len() as f64 / row.decode_s, backend.name
    );
    Ok(())
}

fn fetch(dataset: &str, dir: Option<PathBuf>) -> ncodec::Result<()> {
    use ncodec::fetch::Outcome;
    let m = ncodec::manifest::Manifest::builtin(dataset)?;
    let dir = dir.unwrap_or_else(|| match std::env::var_os("NCODEC_DATA") {
        Some(d) => PathBuf::from(d).join(dataset),
        None => PathBuf::from("data").join(dataset),
    });
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(indicatif::ProgressStyle::with_template("{prefix:>40} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}").unwrap());
    let results = ncodec::fetch::fetch(&m, &dir, &|name, done, total| {
        bar.set_prefix(name.to_string());
        bar.set_length(total.unwrap_or(done));
        bar.set_position(done);
    })?;
    bar.finish_and_clear();
    for (path, outcome) in &results {
        match outcome {
            Outcome::Present => println!("ok        {}", path.display()),
            Outcome::Downloaded { bytes, resumed_from: 0 } => println!("fetched   {} ({bytes} bytes, SHA-256 ok)", path.display()),
            Outcome::Downloaded { bytes, resumed_from } => println!("resumed   {} ({bytes} bytes, {resumed_from} were already here, SHA-256 ok)", path.display()),
            Outcome::Unpinned { sha256 } => println!("unpinned  {} sha256 {sha256} (no digest in the manifest to check against)", path.display()),
        }
    }
    if m.kind == "video" {
        println!("unpack each archive with `7z x FILE.7z -o{}` (Debian: apt install p7zip-full) to get the raw .yuv", dir.display());
    }
    println!("{} files of {} in {}", results.len(), m.name, dir.display());
    Ok(())
}

struct BenchArgs {
    dataset: String,
    data_dir: Option<PathBuf>,
    codecs: Vec<String>,
    weights: Option<PathBuf>,
    quality: Option<Vec<u32>>,
    anchors: Vec<String>,
    nerv: ncodec::cli::NervArgs,
    bd_anchor: Vec<String>,
    reference: Vec<PathBuf>,
    limit: Option<usize>,
    timing: bool,
    backend: ncodec::cli::BackendArgs,
    float_hyper: bool,
    extrapolate: Option<Vec<f64>>,
    refine: Vec<usize>,
    anchor_quality: Option<Vec<u32>>,
    out: PathBuf,
}

fn bench(a: &BenchArgs) -> ncodec::Result<()> {
    use ncodec::bench::{self, RdCodec, report};
    if a.dataset == "video" {
        return bench_video(a);
    }
    let dir = default_kodak(a.data_dir.clone())?;
    let mut paths = match a.dataset.as_str() {
        "folder" => ncodec::data::image_files(&dir)?,
        name => ncodec::manifest::Manifest::builtin(name)?.verify(&dir)?,
    };
    paths.truncate(a.limit.unwrap_or(usize::MAX));
    if paths.is_empty() {
        return Err(ncodec::Error::Unsupported(format!("no images in {}", dir.display())));
    }
    let images = bench::load_images(&paths)?;
    let mut codecs: Vec<Box<dyn RdCodec>> = vec![];
    let ncodecs: Vec<&String> = a.codecs.iter().filter(|c| c.as_str() != "none").collect();
    if a.weights.is_some() && ncodecs.len() != 1 {
        return Err(ncodec::Error::Unsupported("--weights needs exactly one --codec".into()));
    }
    let backend = a.backend.select()?;
    for name in ncodecs {
        let codec = ncodec::codec::Codec::open_on(name, a.weights.as_deref(), backend.device.clone())?;
        codecs.push(Box::new(bench::Ncodec { name: name.clone(), codec, refine: 0 }));
        if a.float_hyper {
            let mut codec = ncodec::codec::Codec::open_on(name, a.weights.as_deref(), backend.device.clone())?;
            codec.use_float_hyper(true);
            codecs.push(Box::new(bench::Ncodec { name: format!("{name}-float-hyper"), codec, refine: 0 }));
        }
        for &steps in a.refine.iter().filter(|&&n| n > 0) {
            let codec = ncodec::codec::Codec::open_on(name, a.weights.as_deref(), backend.device.clone())?;
            codecs.push(Box::new(bench::Ncodec { name: format!("{name}-refine{steps}"), codec, refine: steps }));
        }
        if let Some(factors) = a.extrapolate.as_ref().filter(|_| name != "vq") {
            let open = || ncodec::codec::Codec::open_on(name, a.weights.as_deref(), backend.device.clone());
            let scaled = factors.iter().map(|&f| Ok((f, open()?.with_lowest_gain_scaled(f)))).collect::<ncodec::Result<Vec<_>>>()?;
            codecs.push(Box::new(bench::Extrapolated { name: name.clone(), codecs: scaled }));
        }
    }
    for name in a.anchors.iter().filter(|c| c.as_str() != "none") {
        codecs.push(bench::anchors::by_name(name)?);
    }
    let opts = bench::Options { timing: a.timing };
    let mut curves = vec![];
    for codec in &codecs {
        let is_ncodec = codec.name().starts_with("ncodec-");
        let extrapolated = codec.name().ends_with("-extrapolated");
        let settings = match (&a.quality, &a.anchor_quality, is_ncodec) {
            (Some(q), _, true) if !extrapolated => q.clone(),
            (_, Some(q), false) => q.clone(),
            _ => codec.settings(),
        };
        let bar = indicatif::ProgressBar::new((images.len() * settings.len()) as u64);
        bar.set_style(indicatif::ProgressStyle::with_template("{prefix:>18} {bar:30} {pos}/{len} eta {eta}").unwrap());
        bar.set_prefix(codec.name());
        let rows = bench::evaluate(codec.as_ref(), &images, &settings, opts, &|_| bar.inc(1))?;
        bar.finish_and_clear();
        let description = format!("{}; {} images of {}", codec.description(), images.len(), dir.display());
        report::write_codec(&a.out, &codec.name(), &description, &rows)?;
        let curve = report::Curve::measured(&codec.name(), &codec.description(), &rows);
        print_curve(&curve);
        curves.push(curve);
    }
    let title = format!("{} ({} images)", a.dataset, images.len());
    let setup = format!(
        "Images: {} from `{}`. Timing: {}. Machine: {}; ncodec transforms on {}.",
        images.len(),
        dir.display(),
        if a.timing { "serial runs, one image at a time" } else { "images in parallel (times indicative only; use --timing)" },
        ncodec::train::hardware_description(),
        backend.name
    );
    write_report(a, &title, &setup, curves)
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

/// A checkpoint's model, optionally with LRP switched off.
fn load_for_export(ckpt_dir: &std::path::Path, no_lrp: bool) -> ncodec::Result<(train::TrainState, ncodec::models::ImageModel)> {
    let (state, model) = train::load_checkpoint(ckpt_dir, &ncodec::backend::device())?;
    Ok((state, if no_lrp { model.without_lrp() } else { model }))
}

#[allow(clippy::too_many_arguments)]
fn ship(
    ckpt_dir: &std::path::Path,
    state: &train::TrainState,
    model: &ncodec::models::ImageModel,
    name: &str,
    data_dir: Option<PathBuf>,
    description: &str,
    command: &str,
    lr_schedule: &str,
    video: Option<(PathBuf, PathBuf, usize)>,
    if_better: Option<f64>,
) -> ncodec::Result<()> {
    use burn::module::Module;
    let dir = ncodec::codec::zoo_dir().join(name);
    std::fs::create_dir_all(&dir).map_err(|e| ncodec::Error::io(&dir, e))?;
    let weights = dir.join("weights.ncw");
    // Measured from a hidden file beside the shipped one, which stays until the new weights
    // have passed the gate; dropped (deleted) on any failure.
    let candidate = ncodec::io::temp_sibling(&weights, ".ncw")?;
    let digest = train::export(ckpt_dir, model, state, candidate.path(), Precision::F16)?;
    let kodak = default_kodak(data_dir)?;
    let images = ncodec::bench::load_images(&ncodec::manifest::Manifest::builtin("kodak")?.verify(&kodak)?)?;
    let codec = ncodec::bench::Ncodec { name: name.to_string(), codec: ncodec::codec::Codec::from_weights(name, candidate.path())?, refine: 0 };
    use ncodec::bench::RdCodec;
    let qualities = codec.settings();
    let bar = indicatif::ProgressBar::new((images.len() * qualities.len()) as u64);
    let opts = ncodec::bench::Options { timing: true };
    let rows = ncodec::bench::evaluate(&codec, &images, &qualities, opts, &|_| bar.inc(1))?;
    bar.finish_and_clear();
    let points = ncodec::bench::summarize(&rows);
    if let Some(pct) = if_better {
        let shipped = ncodec::codec::Card::load(&dir.join("card.toml")).ok().filter(|c| !c.kodak.is_empty());
        if let Some(shipped) = shipped {
            let old: Vec<(f64, f64)> = shipped.kodak.iter().map(|p| (p.bpp, p.psnr)).collect();
            let new: Vec<(f64, f64)> = points.iter().map(|p| (p.bpp, p.psnr)).collect();
            let bd = ncodec::bdrate::bd_rate(&old, &new)?;
            if bd > -pct {
                println!("not shipped: Kodak BD-rate {bd:+.2} % against the shipped {name} (step {}); --if-better asks for -{pct} % or less", shipped.training.steps);
                print_points(&points);
                return Ok(());
            }
            println!("Kodak BD-rate {bd:+.2} % against the shipped {name} (step {}): shipping", shipped.training.steps);
        }
    }
    ncodec::io::set_output_permissions(candidate.path(), &weights, false)?;
    candidate.persist(&weights).map_err(|e| ncodec::Error::io(&weights, e.error))?;
    let card = ncodec::codec::Card {
        name: name.to_string(),
        architecture: match &state.config.vq {
            Some(vq) => format!(
                "{} (N={}, M={}), residual VQ: {} levels x {} codes; presets (levels, level-0 codes): {}",
                state.config.architecture.name(), state.config.n, state.config.m, vq.levels, vq.codes,
                vq.presets.iter().map(|p| format!("({}, {})", p.levels, p.codes)).collect::<Vec<_>>().join(" ")
            ),
            None => format!("{} (N={}, M={}), {}, {} gain-unit quality levels", state.config.architecture.name(), state.config.n, state.config.m, state.config.transforms.name(), state.config.qualities()),
        },
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
                quality: p.setting as u8,
                lambda: state.config.lambdas.get(p.setting as usize - 1).copied().unwrap_or(0.0),
                bpp: (p.bpp * 1e4).round() / 1e4,
                psnr: (p.psnr * 1e3).round() / 1e3,
                ms_ssim: (p.ms_ssim * 1e5).round() / 1e5,
                encode_s: Some((p.encode_s * 1e3).round() / 1e3),
                decode_s: Some((p.decode_s * 1e3).round() / 1e3),
            })
            .collect(),
        codebook_usage: vq_usage(&codec.codec, &images)?,
        video: match video {
            Some((clip, results, gop)) => video_points(&clip, &results, gop)?,
            None => vec![],
        },
    };
    let text = format!(
        "# Codec card: generated by `ncodec ship`; Kodak numbers are means over the 24 images of\n# {}, measured from real .ncod bytes (bpp = file bytes x 8 / pixels), RGB 8-bit output.\n{}",
        kodak.display(),
        toml::to_string(&card).map_err(|e| ncodec::Error::Codec(e.to_string()))?
    );
    ncodec::io::write_atomic(&dir.join("card.toml"), text.as_bytes())?;
    ncodec::bench::report::write_codec(&dir, "kodak", &format!("ncodec {name} on Kodak"), &rows)?;
    println!("shipped {name} (step {}) to {}", state.step, dir.display());
    print_points(&points);
    Ok(())
}

/// One line per quality level: what `ship` measured on Kodak.
fn print_points(points: &[ncodec::bench::Point]) {
    for p in points {
        println!("  q{} {:.4} bpp {:.3} dB {:.5}", p.setting, p.bpp, p.psnr, p.ms_ssim);
    }
}

/// Video codecs: the stem curves a video bench of `clip` wrote in `results` (intra period
/// `gop`, and all intra), per quality.
fn video_points(clip: &std::path::Path, results: &std::path::Path, gop: usize) -> ncodec::Result<Vec<ncodec::codec::VideoPoint>> {
    let video = ncodec::video::Video::open(clip, None, None)?;
    let frames = video.frames.len();
    let name = clip.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let mut out = vec![];
    for (curve, gop) in [("ncodec-stem", ncodec::stem::intra_period(gop, frames)), ("ncodec-stem-intra", 1)] {
        let path = results.join(format!("{curve}.csv"));
        let text = std::fs::read_to_string(&path).map_err(|e| ncodec::Error::io(&path, e))?;
        for line in text.lines().skip(1) {
            let f: Vec<f64> = line.split(',').skip(1).map(|v| v.parse().unwrap_or(f64::NAN)).collect();
            let [setting, _, bpp, psnr, _, psnr_yuv, ms_ssim, enc, dec] = f[..] else {
                return Err(ncodec::Error::Format(format!("{}: unexpected row {line}", path.display())));
            };
            let round = |v: f64, d: f64| (v * d).round() / d;
            out.push(ncodec::codec::VideoPoint {
                clip: name.clone(),
                quality: setting as u8,
                gop,
                bpp: round(bpp, 1e4),
                psnr_rgb: round(psnr, 1e3),
                psnr_yuv: round(psnr_yuv, 1e3),
                ms_ssim: round(ms_ssim, 1e5),
                encode_s: round(enc / frames as f64, 1e3),
                decode_s: round(dec / frames as f64, 1e3),
            });
        }
    }
    Ok(out)
}

/// VQ codecs: per codebook, how Kodak uses it (perplexity, unused codes): the full levels at
/// the best preset, and each reduced level-0 codebook at its preset.
fn vq_usage(codec: &ncodec::codec::Codec, images: &[(String, image::RgbImage)]) -> ncodec::Result<Option<Vec<ncodec::codec::CodebookUsage>>> {
    let Some(cfg) = codec.vq_config() else { return Ok(None) };
    let mut out = vec![];
    for (q, preset) in cfg.presets.iter().enumerate() {
        let best = q + 1 == cfg.presets.len();
        if preset.codes == cfg.codes && !best {
            continue;
        }
        let mut per_level: Vec<Vec<u32>> = vec![vec![]; preset.levels];
        for im in images {
            for (l, ks) in codec.vq_indices(&im.1, q as u8 + 1)?.into_iter().enumerate() {
                per_level[l].extend(ks);
            }
        }
        for (l, ks) in per_level.iter().enumerate() {
            let codes = if l == 0 { preset.codes } else { cfg.codes };
            let (perplexity, unused) = ncodec::models::vq::usage(ks, codes);
            out.push(ncodec::codec::CodebookUsage { quality: q as u8 + 1, level: l, codes, perplexity: (perplexity * 10.0).round() / 10.0, unused });
        }
    }
    Ok(Some(out))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn crosscheck(name: &str, weights: Option<&std::path::Path>, a: ncodec::backend::Backend, b: ncodec::backend::Backend, opts: ncodec::crosscheck::Options) -> ncodec::Result<()> {
    let (sa, sb) = (a.select()?, b.select()?);
    let ca = ncodec::codec::Codec::open_on(name, weights, sa.device)?;
    let cb = ncodec::codec::Codec::open_on(name, weights, sb.device)?;
    eprintln!("{name}: {} random images up to {}x{} px, seed {}, A = {}, B = {}", opts.count, opts.max_side, opts.max_side, opts.seed, sa.name, sb.name);
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
