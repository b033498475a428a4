//! x264 and x265 through ffmpeg-next (the system's libavcodec), as video anchors, and the
//! ffmpeg path that reads any container.
//!
//! ```text
//!  frames ──libx264/libx265 (preset medium, tune zerolatency, no B-frames, CRF)──► packets
//!  packets ──h264/hevc decoder──► frames        rate = sum of packet bytes (elementary stream)
//! ```
//! The low-delay setting is the one learned-video papers compare against; GOP is the
//! encoders' default (keyint 250), so these short clips are one intra frame + P frames.

use std::path::Path;

use ff::format::Pixel;
use ffmpeg_next as ff;

use super::{Frame, Video};
use crate::error::{Error, Result};

fn init() -> Result<()> {
    ff::init().map_err(|e| Error::Codec(format!("ffmpeg: {e}")))?;
    // Failures come back as errors with a message; keep libav*'s own log quiet.
    ff::util::log::set_level(ff::util::log::Level::Fatal);
    Ok(())
}

fn fferr(what: &str) -> impl Fn(ff::Error) -> Error + '_ {
    move |e| Error::Codec(format!("{what}: {e}"))
}

/// A video anchor: an encoder library, its decoder, and the CRF values swept.
pub struct VideoAnchor {
    pub name: &'static str,
    encoder: &'static str,
    decoder: ff::codec::Id,
}

pub const VIDEO_ANCHORS: [&str; 2] = ["x264", "x265"];

impl VideoAnchor {
    pub fn by_name(name: &str) -> Result<Self> {
        match name {
            "x264" => Ok(Self { name: "x264", encoder: "libx264", decoder: ff::codec::Id::H264 }),
            "x265" => Ok(Self { name: "x265", encoder: "libx265", decoder: ff::codec::Id::HEVC }),
            other => Err(Error::Unsupported(format!("unknown video anchor '{other}' (known: {})", VIDEO_ANCHORS.join(", ")))),
        }
    }

    pub fn description(&self) -> String {
        format!(
            "{} ({} through ffmpeg-next / libavcodec {}): preset medium, tune zerolatency, no B-frames, default GOP, CRF sweep; rate = elementary-stream bytes",
            self.name,
            self.encoder,
            libavcodec_version()
        )
    }

    /// CRF values, lowest rate first.
    pub fn settings(&self) -> Vec<u32> {
        vec![37, 32, 27, 22]
    }

    /// Encodes the sequence at `crf`; returns the elementary stream's packets.
    pub fn encode(&self, video: &Video, crf: u32) -> Result<Vec<Vec<u8>>> {
        let (_, packets) = encode_with(video, self.encoder, Rate::Crf(crf), false)?;
        Ok(packets.iter().map(|p| p.data().unwrap_or(&[]).to_vec()).collect())
    }

    pub fn decode(&self, packets: &[Vec<u8>], width: usize, height: usize, fps: (u32, u32)) -> Result<Video> {
        init()?;
        let codec = ff::decoder::find(self.decoder).ok_or_else(|| Error::Unsupported(format!("this libavcodec has no {:?} decoder", self.decoder)))?;
        let mut dec = ff::codec::context::Context::new_with_codec(codec).decoder().video().map_err(fferr("decoder"))?;
        let mut frames = vec![];
        for p in packets {
            dec.send_packet(&ff::Packet::copy(p)).map_err(fferr("decode"))?;
            receive_all(&mut dec, &mut frames, width, height)?;
        }
        dec.send_eof().map_err(fferr("decode"))?;
        receive_all(&mut dec, &mut frames, width, height)?;
        Ok(Video { width, height, fps, frames })
    }
}

/// How [`encode_with`] spends bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    Crf(u32),
    /// x264 `qp 0` / x265 `lossless=1` (of the 4:2:0 frames it is given).
    Lossless,
}

/// Encodes `video` with libx264/libx265 (low delay, no B-frames); returns the opened encoder
/// (its parameters describe the stream) and the packets with their timestamps, in the
/// encoder's time base (1/fps). `global_header`: extradata for containers that want it (mp4, mkv).
pub fn encode_with(video: &Video, encoder: &str, rate: Rate, global_header: bool) -> Result<(ff::encoder::Video, Vec<ff::Packet>)> {
    let mut enc = StreamEncoder::open(video.width, video.height, video.fps, encoder, rate, global_header)?;
    for f in &video.frames {
        enc.push(f)?;
    }
    enc.finish()
}

/// An x264/x265 encoder fed one frame at a time: only the compressed packets accumulate.
pub struct StreamEncoder {
    enc: ff::encoder::Video,
    packets: Vec<ff::Packet>,
    name: String,
    size: (usize, usize),
    next_pts: i64,
}

impl StreamEncoder {
    pub fn open(width: usize, height: usize, fps: (u32, u32), encoder: &str, rate: Rate, global_header: bool) -> Result<Self> {
        init()?;
        let codec = ff::encoder::find_by_name(encoder).ok_or_else(|| Error::Unsupported(format!("this libavcodec has no {encoder}")))?;
        let mut enc = ff::codec::context::Context::new_with_codec(codec).encoder().video().map_err(fferr(encoder))?;
        enc.set_width(width as u32);
        enc.set_height(height as u32);
        enc.set_format(Pixel::YUV420P);
        enc.set_time_base(ff::Rational::new(fps.1 as i32, fps.0 as i32));
        enc.set_frame_rate(Some(ff::Rational::new(fps.0 as i32, fps.1 as i32)));
        enc.set_max_b_frames(0);
        if global_header {
            enc.set_flags(ff::codec::Flags::GLOBAL_HEADER);
        }
        let mut opts = ff::Dictionary::new();
        opts.set("preset", "medium");
        opts.set("tune", "zerolatency");
        let x265 = encoder == "libx265";
        match rate {
            Rate::Crf(crf) => opts.set("crf", &crf.to_string()),
            Rate::Lossless if x265 => {}
            Rate::Lossless => opts.set("qp", "0"),
        }
        if x265 {
            opts.set("x265-params", if rate == Rate::Lossless { "bframes=0:log-level=error:lossless=1" } else { "bframes=0:log-level=error" });
        }
        let enc = enc.open_with(opts).map_err(fferr(encoder))?;
        Ok(Self { enc, packets: vec![], name: encoder.to_string(), size: (width, height), next_pts: 0 })
    }

    fn drain(&mut self) {
        let mut p = ff::Packet::empty();
        while self.enc.receive_packet(&mut p).is_ok() {
            // One frame long (time base 1/fps): without it mp4 edit lists cut the last frame.
            p.set_duration(1);
            self.packets.push(std::mem::replace(&mut p, ff::Packet::empty()));
        }
    }

    pub fn push(&mut self, f: &Frame) -> Result<()> {
        let mut frame = to_ff_frame(self.size, f);
        frame.set_pts(Some(self.next_pts));
        self.next_pts += 1;
        self.enc.send_frame(&frame).map_err(fferr(&self.name))?;
        self.drain();
        Ok(())
    }

    /// Flushes the encoder: the encoder (its parameters describe the stream) and every packet.
    pub fn finish(mut self) -> Result<(ff::encoder::Video, Vec<ff::Packet>)> {
        self.enc.send_eof().map_err(fferr(&self.name))?;
        self.drain();
        Ok((self.enc, self.packets))
    }
}

/// Muxes encoded packets into a container file at `path` (format from its extension).
pub fn mux(path: &Path, enc: &ff::encoder::Video, packets: Vec<ff::Packet>) -> Result<()> {
    let err = |e: ff::Error| Error::Codec(format!("{}: {e}", path.display()));
    let mut octx = ff::format::output(path).map_err(err)?;
    let codec = ff::encoder::find(enc.id()).ok_or_else(|| Error::Unsupported("muxer: encoder vanished".into()))?;
    let mut ost = octx.add_stream(codec).map_err(err)?;
    ost.set_parameters(enc);
    ost.set_time_base(enc.time_base());
    octx.write_header().map_err(err)?;
    let out_tb = octx.stream(0).expect("one stream").time_base();
    for mut p in packets {
        p.set_stream(0);
        p.rescale_ts(enc.time_base(), out_tb);
        p.write_interleaved(&mut octx).map_err(err)?;
    }
    octx.write_trailer().map_err(err)
}

fn libavcodec_version() -> String {
    let v = ff::codec::version();
    format!("{}.{}.{}", v >> 16, (v >> 8) & 0xff, v & 0xff)
}

fn to_ff_frame((width, height): (usize, usize), f: &Frame) -> ff::frame::Video {
    let mut frame = ff::frame::Video::new(Pixel::YUV420P, width as u32, height as u32);
    let (cw, ch) = (width.div_ceil(2), height.div_ceil(2));
    for (plane, data, w, h) in [(0, &f.y, width, height), (1, &f.u, cw, ch), (2, &f.v, cw, ch)] {
        let stride = frame.stride(plane);
        let dst = frame.data_mut(plane);
        for row in 0..h {
            dst[row * stride..row * stride + w].copy_from_slice(&data[row * w..row * w + w]);
        }
    }
    frame
}

/// Copies a decoded frame into tight I420 planes, converting other pixel formats first.
fn from_ff_frame(frame: &ff::frame::Video, width: usize, height: usize) -> Result<Frame> {
    if frame.width() as usize != width || frame.height() as usize != height {
        return Err(Error::Format(format!("decoded frame is {}x{}, expected {width}x{height}", frame.width(), frame.height())));
    }
    let converted;
    let frame = if frame.format() == Pixel::YUV420P {
        frame
    } else {
        let mut sws = ff::software::scaling::Context::get(frame.format(), frame.width(), frame.height(), Pixel::YUV420P, frame.width(), frame.height(), ff::software::scaling::Flags::BILINEAR)
            .map_err(fferr("swscale"))?;
        let mut out = ff::frame::Video::empty();
        sws.run(frame, &mut out).map_err(fferr("swscale"))?;
        converted = out;
        &converted
    };
    let (cw, ch) = (width.div_ceil(2), height.div_ceil(2));
    let plane = |i: usize, w: usize, h: usize| -> Vec<u8> {
        let (stride, data) = (frame.stride(i), frame.data(i));
        (0..h).flat_map(|r| data[r * stride..r * stride + w].iter().copied()).collect()
    };
    Ok(Frame { y: plane(0, width, height), u: plane(1, cw, ch), v: plane(2, cw, ch) })
}

fn receive_all(dec: &mut ff::decoder::Video, frames: &mut Vec<Frame>, width: usize, height: usize) -> Result<()> {
    let mut f = ff::frame::Video::empty();
    while dec.receive_frame(&mut f).is_ok() {
        frames.push(from_ff_frame(&f, width, height)?);
        if frames.len() * (width * height * 3 / 2) > super::max_video_bytes() || frames.len() > super::max_frames() {
            return Err(Error::Unsupported("decoded video exceeds --max-video-bytes / --max-frames".into()));
        }
    }
    Ok(())
}

/// The demuxers ncodec lets libavformat use on input files (libavformat's names). Hostile
/// files only reach these: common containers and raw elementary streams, none that follows
/// references to other files or URLs (playlists, concat, image sequences).
pub const DEMUXERS: &str = "mov,mp4,matroska,webm,avi,mpegts,mpeg,mpegvideo,flv,ivf,h264,hevc,m4v,obu,nut,ogg,mjpeg";

/// The video decoders allowed on input files (libavcodec's names).
pub const DECODERS: &str = "h264,hevc,vp8,vp9,av1,libdav1d,mpeg4,mpeg1video,mpeg2video,mjpeg,ffv1,theora,rawvideo,prores,h263";

/// Any container/codec ffmpeg reads → I420 frames (first video stream). Input goes only
/// through [`DEMUXERS`] and [`DECODERS`], from local files, with ffmpeg's own frame-size
/// check set to `--max-pixels` so a bitstream cannot make it allocate a larger frame.
pub fn decode_file(path: &Path, max_frames: usize) -> Result<Video> {
    decode_file_within(path, max_frames, crate::limits::get().max_pixels)
}

/// [`decode_file`] with its own frame-area cap (the fuzz target keeps frames tiny).
pub fn decode_file_within(path: &Path, max_frames: usize, max_pixels: u64) -> Result<Video> {
    init()?;
    let open = |e: ff::Error| Error::Format(format!("{}: {e}", path.display()));
    let mut options = ff::Dictionary::new();
    options.set("protocol_whitelist", "file");
    options.set("format_whitelist", DEMUXERS);
    options.set("codec_whitelist", DECODERS);
    let mut input =
        ff::format::input_with_dictionary(path, options).map_err(|e| Error::Format(format!("{}: not a video ncodec reads ({e}); containers: {DEMUXERS}; raw: .y4m, .yuv", path.display())))?;
    let stream = input.streams().best(ff::media::Type::Video).ok_or_else(|| Error::Format(format!("{}: no video stream", path.display())))?;
    let index = stream.index();
    let rate = stream.avg_frame_rate();
    let context = ff::codec::context::Context::from_parameters(stream.parameters()).map_err(open)?;
    // The container's geometry, checked before the decoder allocates anything for it.
    // SAFETY: `context` owns a valid AVCodecContext; these are plain int fields.
    let (w, h) = unsafe { ((*context.as_ptr()).width.max(0) as usize, (*context.as_ptr()).height.max(0) as usize) };
    crate::io::check_dimensions(w as u32, h as u32)?;
    if w as u64 * h as u64 > max_pixels {
        return Err(Error::Unsupported(format!("{}: video is {w}x{h}, more than {max_pixels} pixels", path.display())));
    }
    let codec = ff::codec::decoder::find(context.id()).ok_or_else(|| Error::Format(format!("{}: no decoder for {:?}", path.display(), context.id())))?;
    let mut options = ff::Dictionary::new();
    options.set("codec_whitelist", DECODERS);
    options.set("max_pixels", &max_pixels.min(i32::MAX as u64).to_string());
    let mut dec =
        context.decoder().open_as_with(codec, options).and_then(|d| d.video()).map_err(|e| Error::Format(format!("{}: cannot decode {} ({e}); decoders: {DECODERS}", path.display(), codec.name())))?;
    let mut frames = vec![];
    for (s, packet) in input.packets() {
        if s.index() != index {
            continue;
        }
        dec.send_packet(&packet).map_err(open)?;
        receive_all(&mut dec, &mut frames, w, h)?;
        if frames.len() >= max_frames {
            break;
        }
    }
    let _ = dec.send_eof();
    receive_all(&mut dec, &mut frames, w, h)?;
    frames.truncate(max_frames);
    if frames.is_empty() {
        return Err(Error::Format(format!("{}: no decodable frames", path.display())));
    }
    let fps = if rate.numerator() > 0 && rate.denominator() > 0 { (rate.numerator() as u32, rate.denominator() as u32) } else { (25, 1) };
    Ok(Video { width: w, height: h, fps, frames })
}
