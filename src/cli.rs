//! What the three binaries share: turning a result into a message and an exit status.

use std::process::ExitCode;

/// Success → 0; any error → one `tool: error: …` line on stderr and exit status 1.
pub fn finish(tool: &str, result: crate::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{tool}: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Options every binary that runs a network shares.
#[derive(clap::Args, Debug, Clone)]
pub struct BackendArgs {
    /// Where the transforms run: auto (a GPU if there is one, else the CPU), cpu, wgpu (a GPU,
    /// else Mesa's software Vulkan), wgpu-cpu, vulkan, cuda (GPU builds), ndarray. Streams decode identically
    /// whatever backend made them.
    #[arg(long, env = "NCODEC_DEVICE", default_value = "auto", value_parser = parse_backend)]
    pub backend: crate::backend::Backend,
}

/// clap value parser for backend names (see [`crate::backend::Backend`]).
pub fn parse_backend(s: &str) -> Result<crate::backend::Backend, String> {
    s.parse().map_err(|e: crate::Error| e.to_string())
}

impl BackendArgs {
    pub fn select(&self) -> crate::Result<crate::backend::Selected> {
        self.backend.select()
    }
}

/// Options of the image codec `overfit` (ncenc, `ncodec bench`).
#[derive(clap::Args, Debug, Clone)]
pub struct OverfitArgs {
    /// overfit: effort (fast, medium, slow): network size and fitting steps.
    #[arg(long, default_value = "medium")]
    pub preset: String,
    /// overfit: fitting steps instead of the preset's.
    #[arg(long)]
    pub steps: Option<usize>,
    /// overfit: steps of the half-resolution fit that starts the full one, instead of the
    /// preset's (0: start from zero latents).
    #[arg(long)]
    pub coarse_steps: Option<usize>,
    /// overfit: initialisations tried for a tenth of the steps each; the best continues.
    #[arg(long, default_value_t = 1)]
    pub candidates: usize,
}

impl OverfitArgs {
    /// The fitting options of quality `q`.
    pub fn options(&self, q: u8) -> crate::Result<crate::overfit::FitOptions> {
        let mut opts = self.preset.parse::<crate::overfit::Preset>()?.options(q)?;
        if let Some(s) = self.steps {
            opts.steps = s.max(1);
        }
        if let Some(c) = self.coarse_steps {
            opts.coarse_steps = c;
        }
        if !(1..=16).contains(&self.candidates) {
            return Err(crate::Error::Unsupported(format!("--candidates {} (1..=16)", self.candidates)));
        }
        opts.candidates = self.candidates;
        Ok(opts)
    }
}

/// Options of the video codec `nerv` (ncenc, `ncodec transcode`, `ncodec bench`).
#[derive(clap::Args, Debug, Clone)]
pub struct NervArgs {
    /// Target bits per pixel; overrides -q. Images: the best quality level whose real stream
    /// fits the target (the smallest level if none does); overfit: a search over λ, one whole
    /// fit per λ tried (at most 5). Video: picks the network size (the reported rate is
    /// measured from the stream's bytes).
    #[arg(long)]
    pub bpp: Option<f64>,
    /// Video: encode only the first N frames.
    #[arg(long)]
    pub frames: Option<usize>,
    /// Video: frames per group (one network per group; decoders seek by group).
    #[arg(long, default_value_t = 25)]
    pub group: usize,
    /// Video: fitting passes over the first group's tiles.
    #[arg(long, default_value_t = 60)]
    pub epochs: usize,
    /// Video: fitting passes over each later group, started from the previous group's network.
    #[arg(long, default_value_t = 15)]
    pub warm_epochs: usize,
    /// Video: 64x64 tiles per fitting step.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Video: peak learning rate (cosine decay per group).
    #[arg(long, default_value_t = 2e-3)]
    pub lr: f64,
    /// Video: peak learning rate of warm-started groups, as a fraction of --lr.
    #[arg(long, default_value_t = 1.0)]
    pub warm_lr_scale: f64,
    /// Video: HNeRV's parameter balance (kernels 1, 3, 5, 5… and widths shrinking by 1.2) at
    /// the preset's parameter count; about 3x the fitting and decoding compute.
    #[arg(long)]
    pub growing_kernels: bool,
    /// Video: fit every group from scratch (to measure what the warm start saves).
    #[arg(long)]
    pub no_warm_start: bool,
    /// Video: write every group's fitting curve (group, epoch, seconds, PSNR) as CSV here.
    #[arg(long)]
    pub fit_log: Option<std::path::PathBuf>,
    /// Video: seed of the network initialisation and tile order.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Video, stem: intra period in frames (every N-th frame is an intra frame; 0 = only the
    /// first). Decoders seek and recover from damage at intra frames.
    #[arg(long, default_value_t = crate::stem::DEFAULT_GOP)]
    pub gop: usize,
}

/// The progress bar of an encode: elapsed time, the bar, `counter` (an indicatif template such
/// as `"frame {pos}/{len}"`) and the encoder's message; hidden when `quiet`.
pub fn encode_bar(len: usize, counter: &str, quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len as u64);
    bar.set_style(indicatif::ProgressStyle::with_template(&format!("{{elapsed_precise}} [{{bar:30}}] {counter} {{msg}}")).unwrap().progress_chars("=> "));
    bar
}

/// What a stem encode reports.
pub struct StemEncoded {
    pub bytes: Vec<u8>,
    pub seconds: f64,
}

/// Encodes `video` with the stem codec `codec` at quality `q` and `--gop`, with a progress bar.
pub fn encode_stem(codec: &crate::codec::Codec, video: &crate::video::Video, q: u8, args: &NervArgs, quiet: bool) -> crate::Result<StemEncoded> {
    if args.bpp.is_some() {
        return Err(crate::Error::Unsupported("--bpp is not supported by the stem video codec yet: pick a quality with -q".into()));
    }
    let bar = encode_bar(video.frames.len(), "frame {pos}/{len} {per_sec}", quiet);
    let start = std::time::Instant::now();
    let mut total = 0;
    let bytes = crate::stem::encode(codec, video, q, args.gop, &mut |_, b| {
        total += b;
        bar.set_message(format!("{total} B"));
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    Ok(StemEncoded { bytes, seconds: start.elapsed().as_secs_f64() })
}

/// What a video encode reports, whatever its codec.
pub struct VideoEncoded {
    /// The codec's name as the stream records it.
    pub codec: &'static str,
    pub bytes: Vec<u8>,
    /// The quality coded (nerv's `--bpp` picks one).
    pub quality: u8,
    pub seconds: f64,
    /// stem: the intra period used.
    pub gop: Option<usize>,
    /// nerv: the RGB PSNR of the fitted network as the encoder measured it.
    pub fit_psnr: Option<f64>,
}

impl VideoEncoded {
    /// One line for the user: geometry, codec, quality, rate, speed.
    pub fn summary(&self, video: &crate::video::Video, backend: &str) -> String {
        let codec = self.codec;
        let frames = video.frames.len();
        let bpp = self.bytes.len() as f64 * 8.0 / (video.width * video.height * frames) as f64;
        let gop = self.gop.map(|g| format!(" gop {g}")).unwrap_or_default();
        let psnr = self.fit_psnr.map(|p| format!(", RGB PSNR {p:.2} dB")).unwrap_or_default();
        format!(
            "{}x{} x {frames} frames, {codec} q{}{gop}: {} bytes, {bpp:.4} bpp{psnr}, encoded in {:.1} s ({:.2} fps) on {backend}",
            video.width,
            video.height,
            self.quality,
            self.bytes.len(),
            self.seconds,
            frames as f64 / self.seconds
        )
    }
}

/// Encodes `video` with the video codec of `family` at quality `q`: stem with the zoo's weights
/// (or `weights`) and `--gop`, nerv fitted with the options of `args`; with a progress bar.
pub fn encode_video(
    family: crate::registry::Family,
    video: &crate::video::Video,
    q: u8,
    args: &NervArgs,
    weights: Option<&std::path::Path>,
    device: &burn::prelude::Device,
    quiet: bool,
) -> crate::Result<VideoEncoded> {
    use crate::registry::Family;
    match family {
        Family::Stem => {
            let codec = crate::codec::Codec::open_on(crate::stem::CODEC_NAME, weights, device.clone())?;
            let e = encode_stem(&codec, video, q, args, quiet)?;
            Ok(VideoEncoded { codec: crate::stem::CODEC_NAME, bytes: e.bytes, quality: q, seconds: e.seconds, gop: Some(crate::stem::intra_period(args.gop, video.frames.len())), fit_psnr: None })
        }
        Family::Nerv if weights.is_some() => Err(crate::Error::Unsupported("nerv carries its network in the stream: --weights does not apply".into())),
        Family::Nerv => {
            let e = args.encode(video, q, device, quiet)?;
            let psnr = e.reports.iter().map(|r| r.psnr * r.frames as f64).sum::<f64>() / video.frames.len() as f64;
            Ok(VideoEncoded { codec: crate::nerv::CODEC_NAME, bytes: e.bytes, quality: e.quality, seconds: e.seconds, gop: None, fit_psnr: Some(psnr) })
        }
        Family::Image | Family::Overfit => Err(crate::Error::Unsupported("an image codec does not encode video (video codecs: stem, nerv)".into())),
    }
}

/// What a nerv encode reports.
pub struct NervEncoded {
    pub bytes: Vec<u8>,
    pub quality: u8,
    pub reports: Vec<crate::nerv::GroupReport>,
    pub seconds: f64,
}

impl NervArgs {
    /// Fits `video` at quality `q` (or the size `--bpp` asks for), showing a progress bar with
    /// the fitting PSNR; writes the fit log if asked.
    pub fn encode(&self, video: &crate::video::Video, q: u8, device: &burn::prelude::Device, quiet: bool) -> crate::Result<NervEncoded> {
        let quality = match self.bpp {
            Some(b) => crate::nerv::quality_for_bpp(b, video.width, video.height, video.frames.len(), self.group),
            None => q,
        };
        let opts = crate::nerv::FitOptions {
            config: if self.growing_kernels { crate::nerv::balanced_config_for_quality(quality)? } else { crate::nerv::config_for_quality(quality)? },
            group: self.group.max(1),
            epochs: self.epochs,
            warm_epochs: self.warm_epochs,
            batch: self.batch,
            lr: self.lr,
            warm_lr_scale: self.warm_lr_scale,
            weight_bits: 8,
            embed_bits: 8,
            qat_fraction: 0.2,
            warm_start: !self.no_warm_start,
            seed: self.seed,
        };
        let groups = video.frames.len().div_ceil(opts.group);
        let bar = encode_bar(groups, "group {pos}/{len}", quiet);
        let mut log = String::from("group,epoch,seconds,train_psnr\n");
        let mut done = String::new();
        let start = std::time::Instant::now();
        let (bytes, reports) = crate::nerv::encode(video, quality, &opts, device, &mut |e| match e {
            crate::nerv::Event::Epoch { epoch, epochs, psnr, .. } => bar.set_message(format!("epoch {epoch}/{epochs} fit {psnr:.2} dB{done}")),
            crate::nerv::Event::Group(r) => {
                for (ep, s, p) in &r.curve {
                    log.push_str(&format!("{},{ep},{s:.2},{p:.3}\n", r.group));
                }
                done = format!(" | last group {:.2} dB, {} B", r.psnr, r.bytes);
                bar.inc(1);
            }
        })?;
        bar.finish_and_clear();
        if let Some(p) = &self.fit_log {
            crate::io::write_atomic(p, log.as_bytes())?;
        }
        Ok(NervEncoded { bytes, quality, reports, seconds: start.elapsed().as_secs_f64() })
    }
}

/// Extensions read as video.
pub fn is_video_path(path: &std::path::Path) -> bool {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    matches!(ext.as_str(), "y4m" | "yuv" | "mp4" | "mkv" | "webm" | "mov" | "avi" | "m4v" | "ts" | "mpg" | "mpeg" | "flv" | "264" | "265" | "h264" | "hevc" | "ivf")
}

/// How decoded video is written (ncdec, `ncodec transcode`).
#[derive(clap::Args, Debug, Clone)]
pub struct VideoOutArgs {
    /// Video output to .mp4/.mkv/.mov: encoder, x264 or x265.
    #[arg(long, default_value = "x264", value_parser = ["x264", "x265"])]
    pub out_codec: String,
    /// Video output to .mp4/.mkv/.mov: constant rate factor.
    #[arg(long, default_value_t = 18)]
    pub crf: u32,
    /// Video output to .mp4/.mkv/.mov: lossless (of the 4:2:0 frames) instead of --crf.
    #[arg(long)]
    pub lossless: bool,
}

impl VideoOutArgs {
    pub fn options(&self) -> crate::video::write::OutputOptions {
        crate::video::write::OutputOptions {
            encoder: format!("lib{}", self.out_codec),
            rate: if self.lossless { crate::video::anchors::Rate::Lossless } else { crate::video::anchors::Rate::Crf(self.crf) },
        }
    }
}

/// `--geometry WxH` of raw .yuv input.
pub fn parse_geometry(s: &str) -> Result<(usize, usize), String> {
    let (w, h) = s.split_once('x').ok_or("expected WxH")?;
    Ok((w.parse().map_err(|_| "bad width")?, h.parse().map_err(|_| "bad height")?))
}

/// `--max-*` flags shared by the binaries.
#[derive(clap::Args, Debug, Clone)]
pub struct LimitArgs {
    /// Refuse images/frames wider or taller than this (default 16384).
    #[arg(long, global = true)]
    pub max_side: Option<u64>,
    /// Refuse images/frames with more pixels than this (default 16777216 = 16 MP).
    #[arg(long, global = true)]
    pub max_pixels: Option<u64>,
    /// Refuse input files larger than this many bytes (default 1 GiB).
    #[arg(long, global = true)]
    pub max_input_bytes: Option<u64>,
    /// Refuse to hold more than this many bytes of decoded video (default 8 GiB).
    #[arg(long, global = true)]
    pub max_video_bytes: Option<u64>,
    /// Refuse videos with more frames than this (default 1048576).
    #[arg(long, global = true)]
    pub max_frames: Option<u64>,
}

impl LimitArgs {
    /// Puts the flags into force.
    pub fn apply(&self) {
        let d = crate::limits::Limits::default();
        crate::limits::set(crate::limits::Limits {
            max_side: self.max_side.unwrap_or(d.max_side),
            max_pixels: self.max_pixels.unwrap_or(d.max_pixels),
            max_input_bytes: self.max_input_bytes.unwrap_or(d.max_input_bytes),
            max_video_bytes: self.max_video_bytes.unwrap_or(d.max_video_bytes),
            max_frames: self.max_frames.unwrap_or(d.max_frames),
        });
    }
}
