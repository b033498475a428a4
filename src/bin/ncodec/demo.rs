//! `ncodec demo`: encode and decode an image (a generated scene by default) at every quality level of the default codec and print bpp, PSNR and MS-SSIM.

use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// Image to use instead of the generated 768x512 scene.
    #[arg(long)]
    pub input: Option<PathBuf>,
    #[arg(long, default_value = ncodec::codec::DEFAULT_CODEC)]
    pub codec: String,
    /// Where the original, the .ncod streams and the decoded PNGs go.
    #[arg(long, default_value = "demo-out")]
    pub out: PathBuf,
}

pub fn run(a: Args) -> ncodec::Result<()> {
    let img = match &a.input {
        Some(p) => ncodec::io::load_image(p)?,
        None => ncodec::synthetic::scene(768, 512),
    };
    let out = a.out.as_path();
    std::fs::create_dir_all(out).map_err(|e| ncodec::Error::io(out, e))?;
    let png = Path::new("x.png");
    ncodec::io::write_atomic(&out.join("original.png"), &ncodec::io::encode_for_path(&img, png)?)?;
    let codec = ncodec::codec::Codec::load(&a.codec)?;
    let what = a.input.as_ref().map_or("generated scene".to_string(), |p| p.display().to_string());
    println!("{} on {what} ({}x{}), real bitstreams in {}:", a.codec, img.width(), img.height(), out.display());
    println!("  q   bytes    bpp      PSNR-RGB  MS-SSIM   encode  decode");
    let px = img.width() as f64 * img.height() as f64;
    for q in 1..=codec.qualities() {
        let t = std::time::Instant::now();
        let bytes = codec.encode(&img, q)?;
        let enc = t.elapsed().as_secs_f64();
        let stream = out.join(format!("q{q}.ncod"));
        ncodec::io::write_atomic(&stream, &bytes)?;
        let t = std::time::Instant::now();
        let dec = ncodec::decode_image(&ncodec::io::read_input(&stream)?)?;
        let dect = t.elapsed().as_secs_f64();
        ncodec::io::write_atomic(&out.join(format!("q{q}.png")), &ncodec::io::encode_for_path(&dec, png)?)?;
        println!(
            "  {q:<3} {:<8} {:.4}   {:>6.3}    {:.5}   {enc:.2} s  {dect:.2} s",
            bytes.len(),
            bytes.len() as f64 * 8.0 / px,
            ncodec::metrics::psnr(&img, &dec),
            ncodec::metrics::ms_ssim(&img, &dec)
        );
    }
    Ok(())
}
