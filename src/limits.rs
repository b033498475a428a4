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
    Limits { max_side: v(0, d.max_side), max_pixels: v(1, d.max_pixels), max_input_bytes: v(2, d.max_input_bytes), max_video_bytes: v(3, d.max_video_bytes), max_frames: v(4, d.max_frames) }
}

/// Replaces the limits for this process (zero fields keep their default).
pub fn set(l: Limits) {
    for (i, v) in [l.max_side, l.max_pixels, l.max_input_bytes, l.max_video_bytes, l.max_frames].into_iter().enumerate() {
        CURRENT[i].store(v, Ordering::Relaxed);
    }
}
