//! `ncodec subset`: a training subset under a byte budget, as downscaled JPEGs (what a GPU window carries: scripts/gpu-train.sh pack).

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Training photos (searched recursively).
    #[arg(long)]
    pub data: PathBuf,
    /// A new or empty folder; it appears only once every photo is written.
    #[arg(long)]
    pub out: PathBuf,
    /// Budget in MiB.
    #[arg(long, default_value_t = 10.0)]
    pub mib: f64,
    /// Longer side after downscaling.
    #[arg(long, default_value_t = 640)]
    pub side: u32,
    /// Skip photos smaller than this; never downscale below it.
    #[arg(long, default_value_t = 256)]
    pub crop: u32,
    #[arg(long, default_value_t = 90)]
    pub quality: u8,
    /// Which photos (each source folder is shuffled with it).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

pub fn run(a: Args) -> ncodec::Result<()> {
    if !(a.mib > 0.0 && (1..=100).contains(&a.quality)) {
        return Err(ncodec::Error::Unsupported("--mib must be positive and --quality in 1..=100".into()));
    }
    let opts = ncodec::data::SubsetOptions { budget_bytes: (a.mib * 1048576.0) as u64, max_side: a.side, crop: a.crop, quality: a.quality, seed: a.seed };
    let (count, bytes) = ncodec::data::write_subset(&a.data, &a.out, &opts)?;
    println!("{count} photos, {:.1} MiB, in {} (longer side <= {}, JPEG q{}, seed {})", bytes as f64 / 1048576.0, a.out.display(), a.side, a.quality, a.seed);
    Ok(())
}
