//! `ncodec fetch`: download a test set from its manifest (datasets/*.toml), resuming partial downloads and checking SHA-256: kodak (24 PNG) or uvg (7 .7z archives of raw 1080p YUV).

use std::path::PathBuf;

use ncodec::fetch::Outcome;

#[derive(clap::Args)]
pub struct Args {
    pub dataset: String,
    /// Target folder (default: $NCODEC_DATA/<dataset>, else data/<dataset>).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

pub fn run(a: Args) -> ncodec::Result<()> {
    let dataset = a.dataset.as_str();
    let m = ncodec::manifest::Manifest::builtin(dataset)?;
    let dir = a.dir.unwrap_or_else(|| match std::env::var_os("NCODEC_DATA") {
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
