//! `ncodec export`: export a checkpoint directory as a shippable weight file.

use std::path::{Path, PathBuf};

use ncodec::codec::hex;
use ncodec::weights::Precision;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "ckpt")]
    pub ckpt_dir: PathBuf,
    #[arg(short, long)]
    pub out: PathBuf,
    /// Store fp32 instead of fp16.
    #[arg(long)]
    pub fp32: bool,
    /// mlic: switch latent residual prediction off (ŷ reaches g_s unchanged).
    #[arg(long)]
    pub no_lrp: bool,
}

pub fn run(a: Args) -> ncodec::Result<()> {
    export(&a.ckpt_dir, &a.out, a.fp32, a.no_lrp)
}

/// Writes the checkpoint in `ckpt_dir` as a weight file (`train --export` uses it too).
pub fn export(ckpt_dir: &Path, out: &Path, fp32: bool, no_lrp: bool) -> ncodec::Result<()> {
    let (state, model) = ncodec::ship::load_for_export(ckpt_dir, no_lrp)?;
    let digest = ncodec::train::export(ckpt_dir, &model, &state, out, if fp32 { Precision::F32 } else { Precision::F16 })?;
    eprintln!("exported step {} to {} (sha256 {})", state.step, out.display(), hex(&digest));
    Ok(())
}
