//! `ncodec bench`: rate-distortion benchmark from real bitstreams: ncodec models and the JPEG/WebP/AVIF anchors on the same images; writes JSON (CompressAI schema), CSV, SVG plots and a Markdown summary with BD-rates.

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// kodak (files checked against datasets/kodak.toml), folder (any images in --data-dir),
    /// or video (--data-dir is a .y4m, .yuv or any container ffmpeg reads).
    #[arg(long, default_value = "kodak")]
    pub dataset: String,
    /// Folder of test images (default: $NCODEC_DATA/kodak or ../shared/datasets/kodak).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// ncodec codecs from the zoo, comma-separated ("none" for anchors only).
    #[arg(long, value_delimiter = ',', default_value = ncodec::codec::DEFAULT_CODEC)]
    pub codec: Vec<String>,
    /// Evaluate this weight file instead of the zoo's (one --codec only).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// ncodec quality levels to run (default: all).
    #[arg(short, long, value_delimiter = ',')]
    pub quality: Option<Vec<u32>>,
    /// Classical anchors to run side by side: jpeg, webp, avif (images; default all three),
    /// x264, x265 (video; default both), or none.
    #[arg(long, value_delimiter = ',')]
    pub anchors: Option<Vec<String>>,
    /// Video mode: options of the video codecs (stem: --gop, -q default all; nerv: -q default 2,4).
    #[command(flatten)]
    pub nerv: ncodec::cli::NervArgs,
    #[command(flatten)]
    pub overfit: ncodec::cli::OverfitArgs,
    /// Curves that BD-rates are computed against, comma-separated: one table each
    /// (default: jpeg for images, x264 for video).
    #[arg(long, value_delimiter = ',')]
    pub bd_anchor: Option<Vec<String>>,
    /// Results files to draw and compare: published ones (CompressAI JSON schema) are
    /// labelled as published; curves an earlier `ncodec bench` wrote stay measured.
    #[arg(long)]
    pub reference: Vec<PathBuf>,
    /// Only the first N images.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Run images one at a time so encode/decode times are meaningful (slower).
    #[arg(long)]
    pub timing: bool,
    #[command(flatten)]
    pub backend: ncodec::cli::BackendArgs,
    /// Measurement only: also run each ncodec codec with its float hyper-synthesis (curve
    /// `<codec>-float-hyper`), to measure what the integer entropy path costs.
    #[arg(long, hide = true)]
    pub float_hyper: bool,
    /// Measurement only: also run each gain-unit codec below its lowest trained rate, with
    /// quality 1's gain scaled by each factor (curve `<codec>-extrapolated`, one setting per
    /// factor). Its streams are not standard ones: compare, do not ship.
    #[arg(long, value_delimiter = ',')]
    pub extrapolate: Option<Vec<f64>>,
    /// Also run each ncodec codec with encode-time latent refinement of N gradient steps
    /// (curve `<codec>-refine<N>`), comma-separated for several.
    #[arg(long, value_delimiter = ',')]
    pub refine: Vec<usize>,
    /// Anchor settings to run instead of each anchor's default sweep (images: quality, e.g.
    /// 1,3,5,10 for their lowest rates; video: CRF, e.g. 37,27,17,7).
    #[arg(long, value_delimiter = ',')]
    pub anchor_quality: Option<Vec<u32>>,
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
    /// Go on with an interrupted run: reuse the rows it left in --out (each curve's finished
    /// rows are kept in `<curve>.rows.jsonl`) when the codec's settings are the same, and
    /// measure only the rest. Resume with the build that started the run.
    #[arg(long)]
    pub resume: bool,
}

pub fn run(a: Args) -> ncodec::Result<()> {
    let a = &a;
    use ncodec::bench::{self, RdCodec, report};
    if a.dataset == "video" {
        return bench_video(a);
    }
    let dir = ncodec::data::kodak_dir(a.data_dir.clone())?;
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
    let ncodecs: Vec<&String> = a.codec.iter().filter(|c| c.as_str() != "none").collect();
    if a.weights.is_some() && ncodecs.len() != 1 {
        return Err(ncodec::Error::Unsupported("--weights needs exactly one --codec".into()));
    }
    let backend = a.backend.select()?;
    for name in ncodecs {
        if ncodec::registry::family_of_name(name) == ncodec::registry::Family::Overfit {
            if a.weights.is_some() {
                return Err(ncodec::Error::Unsupported("overfit fits its own network: --weights does not apply".into()));
            }
            let opts = a.overfit.options(1)?;
            // The label names what differs from the preset (results are cached by it).
            let mut preset = a.overfit.steps.map_or(a.overfit.preset.clone(), |s| format!("{}-{s}steps", a.overfit.preset));
            if opts.candidates > 1 {
                preset += &format!("-{}candidates", opts.candidates);
            }
            codecs.push(Box::new(bench::Overfit { preset, opts, device: backend.device.clone() }));
            continue;
        }
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
    for name in a.anchors().iter().filter(|c| c.as_str() != "none") {
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
        let (journal, done) = bench::journal::Journal::open(&a.out, &codec.name(), &codec.description(), a.resume)?;
        let reused = done.iter().filter(|r| settings.contains(&r.setting) && images.iter().any(|(n, _)| *n == r.image)).count();
        if reused > 0 {
            // (Nothing inside `suspend` may touch the bar: it holds the bar's lock.)
            let msg = format!("{}: {reused} of {} rows from {}", codec.name(), images.len() * settings.len(), journal.path().display());
            bar.suspend(|| eprintln!("{msg}"));
            bar.inc(reused as u64);
        }
        let record = |row: &bench::Row| {
            bar.inc(1);
            if let Err(e) = journal.record(row) {
                bar.suspend(|| eprintln!("warning: {e} (the run goes on, but a resumed one would measure this row again)"));
            }
        };
        let rows = bench::evaluate_resuming(codec.as_ref(), &images, &settings, opts, &done, &record)?;
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
        ncodec::backend::hardware_description(),
        backend.name
    );
    write_report(a, &title, &setup, curves)
}

fn bench_video(a: &Args) -> ncodec::Result<()> {
    use ncodec::bench::{self, report};
    let path = a.data_dir.clone().ok_or_else(|| ncodec::Error::Unsupported("video mode: pass the clip as --data-dir FILE (.y4m, .yuv or any container)".into()))?;
    let video = ncodec::video::Video::open(&path, None, a.nerv.frames)?;
    let name = path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
    // The image default means "ncodec's codec" here: the video codec.
    let codecs: Vec<&str> = a.codec.iter().map(|c| if c == ncodec::codec::DEFAULT_CODEC { ncodec::nerv::CODEC_NAME } else { c.as_str() }).filter(|c| *c != "none").collect();
    if let Some(c) = codecs.iter().find(|c| !ncodec::registry::family_of_name(c).is_video()) {
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
            let description = format!(
                "ncodec stem (weights {}), {kind}, on {}; rate = .ncod bytes; {name}, {}x{}, {frames} frames",
                ncodec::codec::hex(&codec.digest()[..8]),
                backend.name,
                video.width,
                video.height
            );
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
            backend.name,
            n.group,
            n.epochs,
            n.warm_epochs,
            n.batch,
            n.lr,
            video.width,
            video.height,
            video.frames.len()
        );
        report::write_codec(&a.out, "ncodec-nerv", &description, &rows)?;
        let curve = report::Curve::measured("ncodec-nerv", &description, &rows);
        print_curve(&curve);
        curves.push(curve);
    }
    for an in a.anchors().iter().filter(|c| c.as_str() != "none") {
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

/// Writes the per-curve files, both plots and the Markdown summary for `curves`.
fn write_report(a: &Args, title: &str, setup: &str, mut curves: Vec<ncodec::bench::report::Curve>) -> ncodec::Result<()> {
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
    let bd_anchors = a.bd_anchors();
    let anchors: Vec<&str> = bd_anchors.iter().map(String::as_str).collect();
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

impl Args {
    fn video(&self) -> bool {
        self.dataset == "video"
    }

    /// The anchors asked for, else JPEG, WebP and AVIF for images and x264, x265 for video.
    fn anchors(&self) -> Vec<String> {
        let default: &[&str] = if self.video() { &["x264", "x265"] } else { &["jpeg", "webp", "avif"] };
        self.anchors.clone().unwrap_or_else(|| default.iter().map(|s| s.to_string()).collect())
    }

    /// The curves BD-rates are computed against, else JPEG (images) or x264 (video).
    fn bd_anchors(&self) -> Vec<String> {
        self.bd_anchor.clone().unwrap_or_else(|| vec![if self.video() { "x264" } else { "jpeg" }.into()])
    }
}
