//! `ncodec metrics`: pSNR-RGB and MS-SSIM-RGB between two images of the same size.

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    pub reference: PathBuf,
    pub distorted: PathBuf,
}

pub fn run(a: Args) -> ncodec::Result<()> {
    let (x, y) = (ncodec::io::load_image(&a.reference)?, ncodec::io::load_image(&a.distorted)?);
    if x.dimensions() != y.dimensions() {
        return Err(ncodec::Error::Unsupported(format!("sizes differ: {:?} vs {:?}", x.dimensions(), y.dimensions())));
    }
    let ms_ssim = ncodec::metrics::ms_ssim(&x, &y);
    let ms_ssim = if ms_ssim.is_nan() { format!("n/a (MS-SSIM needs at least {0}x{0} pixels)", ncodec::metrics::MS_SSIM_MIN_SIDE) } else { format!("{ms_ssim:.6}") };
    println!("psnr_rgb {:.4} ms_ssim_rgb {ms_ssim}", ncodec::metrics::psnr(&x, &y));
    Ok(())
}
