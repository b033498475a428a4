//! `ncodec fetch`: download a dataset from its manifest, resuming partial downloads and
//! checking every file's SHA-256.
//!
//! ```text
//!  for each file:  DIR/name present and digest ok ──► skip
//!                  DIR/name.part (n bytes) ──GET Range: bytes=n-──► 206: append │ 200: restart
//!                  complete ──► SHA-256 ──ok──► rename to DIR/name │ mismatch ──► delete, error
//! ```
//! An interrupted run leaves only `.part` files, which the next run continues.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::manifest::{Manifest, sha256_file};

/// Largest file we accept from any server (the UVG archives are a few GB).
const MAX_FILE_BYTES: u64 = 16 << 30;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Already present with the right digest.
    Present,
    /// Downloaded (or resumed) and verified; `resumed_from` bytes were already on disk.
    Downloaded { bytes: u64, resumed_from: u64 },
    /// Downloaded, but the manifest pins no digest: this is what it measured.
    Unpinned { sha256: String },
}

/// Fetches every file of `m` into `dir`; `progress(name, done, total)` reports bytes.
pub fn fetch(m: &Manifest, dir: &Path, progress: &dyn Fn(&str, u64, Option<u64>)) -> Result<Vec<(PathBuf, Outcome)>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let agent = ureq::AgentBuilder::new().timeout_connect(std::time::Duration::from_secs(30)).timeout_read(std::time::Duration::from_secs(120)).build();
    let mut out = vec![];
    for f in &m.files {
        let path = dir.join(&f.name);
        if path.exists() {
            let got = sha256_file(&path)?;
            match &f.sha256 {
                Some(want) if *want == got => {
                    out.push((path, Outcome::Present));
                    continue;
                }
                Some(_) => {
                    return Err(Error::Format(format!("{} exists but its SHA-256 {got} is not the manifest's: remove it to download again", path.display())));
                }
                None => {
                    out.push((path, Outcome::Unpinned { sha256: got }));
                    continue;
                }
            }
        }
        let part = dir.join(format!("{}.part", f.name));
        let (bytes, resumed_from) = download(&agent, &f.url(m), &part, &|done, total| progress(&f.name, done, total))?;
        let got = sha256_file(&part)?;
        let outcome = match &f.sha256 {
            Some(want) if *want != got => {
                let _ = std::fs::remove_file(&part);
                return Err(Error::Format(format!("{}: downloaded SHA-256 {got} does not match the manifest ({want}); the partial file was removed", f.name)));
            }
            Some(_) => Outcome::Downloaded { bytes, resumed_from },
            None => Outcome::Unpinned { sha256: got },
        };
        std::fs::rename(&part, &path).map_err(|e| Error::io(&path, e))?;
        out.push((path, outcome));
    }
    Ok(out)
}

/// Downloads `url` into `part`, continuing from its current length. Returns (total bytes,
/// bytes that were already there).
fn download(agent: &ureq::Agent, url: &str, part: &Path, progress: &dyn Fn(u64, Option<u64>)) -> Result<(u64, u64)> {
    let have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    let mut req = agent.get(url);
    if have > 0 {
        req = req.set("Range", &format!("bytes={have}-"));
    }
    let resp = match req.call() {
        Ok(r) => r,
        // The file was already complete: the server says the range starts past its end.
        Err(ureq::Error::Status(416, _)) if have > 0 => return Ok((have, have)),
        // ureq's message names the URL already.
        Err(e) => return Err(Error::Unsupported(e.to_string())),
    };
    let resuming = resp.status() == 206 && have > 0;
    let length: Option<u64> = resp.header("Content-Length").and_then(|v| v.parse().ok());
    let start = if resuming { have } else { 0 };
    let total = length.map(|l| l + start);
    if total.is_some_and(|t| t > MAX_FILE_BYTES) {
        return Err(Error::Unsupported(format!("{url}: {} bytes is more than the {} byte limit", total.unwrap(), MAX_FILE_BYTES)));
    }
    let mut file = std::fs::OpenOptions::new().create(true).write(true).append(resuming).truncate(!resuming).open(part).map_err(|e| Error::io(part, e))?;
    let mut reader = resp.into_reader().take(MAX_FILE_BYTES - start + 1);
    let mut buf = vec![0u8; 1 << 16];
    let mut done = start;
    loop {
        let n = reader.read(&mut buf).map_err(|e| Error::Unsupported(format!("{url}: {e} (run again to resume)")))?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n]).map_err(|e| Error::io(part, e))?;
        done += n as u64;
        if done > MAX_FILE_BYTES {
            return Err(Error::Unsupported(format!("{url}: more than {MAX_FILE_BYTES} bytes")));
        }
        progress(done, total);
    }
    file.sync_all().map_err(|e| Error::io(part, e))?;
    if total.is_some_and(|t| t != done) {
        return Err(Error::Unsupported(format!("{url}: connection closed at {done} of {} bytes (run again to resume)", total.unwrap())));
    }
    Ok((done, start))
}
