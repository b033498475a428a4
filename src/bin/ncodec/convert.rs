//! `ncodec convert`: convert an image between formats (by extension), e.g. PNG to PPM for other encoders.

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    pub input: PathBuf,
    pub output: PathBuf,
}

pub fn run(a: Args) -> ncodec::Result<()> {
    let img = ncodec::io::load_image(&a.input)?;
    ncodec::io::write_atomic(&a.output, &ncodec::io::encode_for_path(&img, &a.output)?)
}
