//! Resource limits on untrusted input, checked before the allocation they imply. Defaults
//! are in `SECURITY.md`; the binaries raise them with `--max-*` flags (one process-wide
//! setting, read wherever a declared size is checked).

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest image or frame side, pixels.
    pub max_side: u64,
    /// Largest image or frame area, pixels.
    pub max_pixels: u64,
    /// Largest input file read into memory, bytes.
    pub max_input_bytes: u64,
    /// Largest decoded video held in memory, bytes.
    pub max_video_bytes: u64,
    /// Most frames in a video stream.
    pub max_frames: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_side: 16384, max_pixels: 1 << 24, max_input_bytes: 1 << 30, max_video_bytes: 8 << 30, max_frames: 1 << 20 }
    }
}

static CURRENT: [AtomicU64; 5] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

/// The limits in force (the defaults until [`set`] is called).
pub fn get() -> Limits {
    let d = Limits::default();
    let v = |i: usize, default: u64| match CURRENT[i].load(Ordering::Relaxed) {
        0 => default,
        x => x,
    };
    Limits {
        max_side: v(0, d.max_side),
        max_pixels: v(1, d.max_pixels),
        max_input_bytes: v(2, d.max_input_bytes),
        max_video_bytes: v(3, d.max_video_bytes),
        max_frames: v(4, d.max_frames),
    }
}

/// Replaces the limits for this process (zero fields keep their default).
pub fn set(l: Limits) {
    for (i, v) in [l.max_side, l.max_pixels, l.max_input_bytes, l.max_video_bytes, l.max_frames].into_iter().enumerate() {
        CURRENT[i].store(v, Ordering::Relaxed);
    }
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
        let d = Limits::default();
        set(Limits {
            max_side: self.max_side.unwrap_or(d.max_side),
            max_pixels: self.max_pixels.unwrap_or(d.max_pixels),
            max_input_bytes: self.max_input_bytes.unwrap_or(d.max_input_bytes),
            max_video_bytes: self.max_video_bytes.unwrap_or(d.max_video_bytes),
            max_frames: self.max_frames.unwrap_or(d.max_frames),
        });
    }
}
