//! `ncodec transcode`: transcode a video through a learned video codec and back: fit, write the stream, decode it, write the output (.y4m, .mp4/.mkv/.mov, or a folder of PNGs). Prints the stream's bpp (from its bytes), RGB PSNR, encode time and decode speed.

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Input video: .y4m, .yuv (with --geometry or WxH in the name), or anything ffmpeg reads.
    pub input: PathBuf,
    /// Output video: .y4m, .mp4/.mkv/.mov (x264/x265, see --crf, --lossless), or folder/.
    pub output: PathBuf,
    /// Codec the video goes through.
    #[arg(long, default_value = "nerv")]
    pub via: String,
    /// Quality level: 1..=8 (stem), 1..=6 (nerv; --bpp overrides it).
    #[arg(short, long, default_value_t = 3)]
    pub quality: u8,
    /// Also keep the .ncod stream here.
    #[arg(long)]
    pub stream: Option<PathBuf>,
    /// Raw .yuv input: frame size WxH.
    #[arg(long, value_parser = ncodec::cli::parse_geometry)]
    pub geometry: Option<(usize, usize)>,
    #[command(flatten)]
    pub nerv: ncodec::cli::NervArgs,
    #[command(flatten)]
    pub video_out: ncodec::cli::VideoOutArgs,
    #[command(flatten)]
    pub backend: ncodec::cli::BackendArgs,
}

pub fn run(a: Args) -> ncodec::Result<()> {
    let family = ncodec::registry::family_of_name(&a.via);
    if !family.is_video() {
        return Err(ncodec::Error::Unsupported(format!("cannot transcode via '{}' (video codecs: stem, nerv)", a.via)));
    }
    // Refuse a bad output before minutes of fitting.
    ncodec::video::write::output_kind(&a.output)?;
    let video = ncodec::video::Video::open(&a.input, a.geometry, a.nerv.frames)?;
    let backend = a.backend.select()?;
    let enc = ncodec::cli::encode_video(family, &video, a.quality, &a.nerv, None, &backend.device, false)?;
    if let Some(s) = &a.stream {
        ncodec::io::write_atomic(s, &enc.bytes)?;
    }
    // Decode frame by frame into the output (bounded memory), measuring each against the source.
    let header = ncodec::container::Container::parse(&enc.bytes)?.header;
    let decoder = ncodec::registry::video_decoder(&header, None, backend.device.clone())?;
    let row = ncodec::bench::decode_video_to(decoder.as_ref(), &video, &enc.bytes, Some((&a.output, &a.video_out.options())))?;
    let gop = enc.gop.map(|g| format!(" gop {g}")).unwrap_or_default();
    eprintln!(
        "{}x{} x {} frames via {} q{}{gop}: {} bytes, {:.4} bpp, RGB PSNR {:.2} dB (YUV {:.2}), encoded in {:.1} s, decoded at {:.1} fps on {}",
        video.width,
        video.height,
        video.frames.len(),
        decoder.name(),
        enc.quality,
        enc.bytes.len(),
        row.bpp,
        row.psnr,
        row.psnr_yuv,
        enc.seconds,
        video.frames.len() as f64 / row.decode_s,
        backend.name
    );
    Ok(())
}
