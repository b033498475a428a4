//! A curve's rows kept on disk as they finish, so that a long run (an overfitted codec fits
//! every image at every setting: hours on a CPU) can stop and go on: `ncodec bench --resume`
//! measures only the rows the journal lacks.
//!
//! ```text
//!  <out>/<curve>.rows.jsonl   line 1: {"description": <the codec's description>}
//!                             then one JSON array per finished row, appended and flushed
//!  open(resume) ──► rows of a journal whose description matches ──► evaluate skips them
//! ```
//! Floats are written as strings (Rust's shortest round-trip form), so NaN and infinity come
//! back exactly. A line cut short by an interrupted write is ignored. The description names
//! the codec's settings but not the build: resume with the binary that started the run.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::Row;
use crate::error::{Error, Result};

pub struct Journal {
    path: PathBuf,
    file: Mutex<File>,
}

type Line = (String, u32, usize, String, String, String, String, String, String, String);

fn encode(r: &Row) -> String {
    let f = |x: f64| x.to_string();
    let line: Line = (r.image.clone(), r.setting, r.bytes, f(r.bpp), f(r.psnr), f(r.psnr_y), f(r.psnr_yuv), f(r.ms_ssim), f(r.encode_s), f(r.decode_s));
    serde_json::to_string(&line).expect("a tuple of strings and integers serializes")
}

fn decode(line: &str) -> Option<Row> {
    let (image, setting, bytes, bpp, psnr, psnr_y, psnr_yuv, ms_ssim, encode_s, decode_s): Line = serde_json::from_str(line).ok()?;
    let f = |s: String| s.parse::<f64>().ok();
    Some(Row { image, setting, bytes, bpp: f(bpp)?, psnr: f(psnr)?, psnr_y: f(psnr_y)?, psnr_yuv: f(psnr_yuv)?, ms_ssim: f(ms_ssim)?, encode_s: f(encode_s)?, decode_s: f(decode_s)? })
}

fn header(description: &str) -> String {
    serde_json::json!({ "description": description }).to_string()
}

impl Journal {
    /// The journal of curve `name` in `dir`. With `resume`, also the rows an earlier run of the
    /// same description left there (later duplicates win); otherwise, or when the description
    /// differs, the journal starts empty.
    pub fn open(dir: &Path, name: &str, description: &str, resume: bool) -> Result<(Self, Vec<Row>)> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join(format!("{name}.rows.jsonl"));
        let mut rows: Vec<Row> = vec![];
        if resume && let Ok(f) = File::open(&path) {
            let mut lines = BufReader::new(f).lines();
            if lines.next().and_then(|l| l.ok()).as_deref() == Some(header(description).as_str()) {
                for row in lines.map_while(|l| l.ok()).filter_map(|l| decode(&l)) {
                    rows.retain(|r| (&r.image, r.setting) != (&row.image, row.setting));
                    rows.push(row);
                }
            }
        }
        // Rewritten whole, so a cut-short last line does not run into the next row.
        let mut text = header(description) + "\n";
        for r in &rows {
            text += &(encode(r) + "\n");
        }
        crate::io::write_atomic(&path, text.as_bytes())?;
        let file = std::fs::OpenOptions::new().append(true).open(&path).map_err(|e| Error::io(&path, e))?;
        Ok((Self { path, file: Mutex::new(file) }, rows))
    }

    /// Appends a finished row (flushed before returning).
    pub fn record(&self, row: &Row) -> Result<()> {
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        writeln!(f, "{}", encode(row)).and_then(|_| f.flush()).map_err(|e| Error::io(&self.path, e))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(image: &str, setting: u32, psnr: f64) -> Row {
        Row {
            image: image.into(),
            setting,
            bytes: 100 + setting as usize,
            bpp: 0.1 * setting as f64,
            psnr,
            psnr_y: 1.0 / 3.0,
            psnr_yuv: 2.5,
            ms_ssim: f64::NAN,
            encode_s: 12.345678901234567,
            decode_s: 0.001,
        }
    }

    fn same(a: &Row, b: &Row) -> bool {
        let eq = |x: f64, y: f64| x == y || (x.is_nan() && y.is_nan());
        a.image == b.image
            && a.setting == b.setting
            && a.bytes == b.bytes
            && eq(a.bpp, b.bpp)
            && eq(a.psnr, b.psnr)
            && eq(a.psnr_y, b.psnr_y)
            && eq(a.psnr_yuv, b.psnr_yuv)
            && eq(a.ms_ssim, b.ms_ssim)
            && eq(a.encode_s, b.encode_s)
            && eq(a.decode_s, b.decode_s)
    }

    #[test]
    fn rows_come_back_exactly_when_resumed_with_the_same_description() {
        let dir = tempfile::tempdir().unwrap();
        let written = [row("a, \"odd\".png", 1, 31.25), row("b.png", 1, f64::INFINITY), row("a, \"odd\".png", 2, 33.0)];
        let (j, old) = Journal::open(dir.path(), "c", "codec x", true).unwrap();
        assert!(old.is_empty());
        for r in &written {
            j.record(r).unwrap();
        }
        // A write cut short by an interruption, then a row measured again: the later one wins.
        let mut f = std::fs::OpenOptions::new().append(true).open(j.path()).unwrap();
        write!(f, "[\"b.png\",2,10").unwrap();
        drop((f, j));
        let (j, back) = Journal::open(dir.path(), "c", "codec x", true).unwrap();
        assert_eq!(back.len(), 3);
        assert!(written.iter().zip(&back).all(|(a, b)| same(a, b)), "{back:?}");
        j.record(&row("b.png", 1, 20.0)).unwrap();
        let (_, back) = Journal::open(dir.path(), "c", "codec x", true).unwrap();
        assert_eq!(back.len(), 3);
        assert!(same(&back[2], &row("b.png", 1, 20.0)), "{back:?}");
    }

    #[test]
    fn another_description_or_no_resume_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(dir.path(), "c", "codec x, 400 steps", false).unwrap();
        j.record(&row("a.png", 1, 30.0)).unwrap();
        drop(j);
        assert!(Journal::open(dir.path(), "c", "codec x, 800 steps", true).unwrap().1.is_empty());
        // That open started the journal afresh under the new description.
        assert!(Journal::open(dir.path(), "c", "codec x, 400 steps", true).unwrap().1.is_empty());
        let (j, _) = Journal::open(dir.path(), "c", "codec x, 400 steps", false).unwrap();
        j.record(&row("a.png", 1, 30.0)).unwrap();
        drop(j);
        assert!(Journal::open(dir.path(), "c", "codec x, 400 steps", false).unwrap().1.is_empty());
        assert!(Journal::open(dir.path(), "c", "codec x, 400 steps", true).unwrap().1.is_empty(), "a run without --resume starts over");
    }
}
