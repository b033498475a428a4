//! `ncodec list`: list the shipped codecs, their quality levels and what they measure on Kodak.

pub fn run() -> ncodec::Result<()> {
    let codecs = ncodec::codec::list_codecs()?;
    if codecs.is_empty() {
        println!("no codecs shipped in {}", ncodec::codec::zoo_dir().display());
    }
    for (name, card) in codecs {
        println!("{name:<12} {} ({} parameters, {} quality levels: ncenc -q 1..{})", card.description, card.parameters, card.kodak.len(), card.kodak.len());
        for p in &card.kodak {
            let times = match (p.encode_s, p.decode_s) {
                (Some(e), Some(d)) => format!("  enc {e:.2} s / dec {d:.2} s"),
                _ => String::new(),
            };
            let lambda = if p.lambda > 0.0 { format!("λ={:<7}", p.lambda) } else { " ".repeat(9) };
            println!("    q{:<2} {lambda} Kodak {:.3} bpp  {:.2} dB PSNR  {:.4} MS-SSIM{times}", p.quality, p.bpp, p.psnr, p.ms_ssim);
        }
        for v in &card.video {
            let kind = if v.gop == 1 { "all intra".to_string() } else { format!("gop {}", v.gop) };
            println!(
                "    q{:<2} {:<10} {} {:.4} bpp  {:.2} dB PSNR-RGB  {:.2} dB PSNR-YUV  enc {:.2} s / dec {:.2} s per frame",
                v.quality, kind, v.clip, v.bpp, v.psnr_rgb, v.psnr_yuv, v.encode_s, v.decode_s
            );
        }
    }
    println!("{:<12} video: HNeRV-style network fitted to each video at encode time (no shipped weights; ncenc CLIP -o OUT --codec nerv -q 1..{})", ncodec::nerv::CODEC_NAME, ncodec::nerv::QUALITIES);
    for q in 1..=ncodec::nerv::QUALITIES {
        let c = ncodec::nerv::config_for_quality(q)?;
        println!("    q{q}  {} decoder parameters per group, {} embedding values per 64x64 tile, widths {:?}", c.parameters(), c.embed_dim * c.grid().pow(2), c.widths);
    }
    println!(
        "{:<12} image: latent pyramid and a small network fitted to each image at encode time, sent in the stream (no shipped weights; experimental: ncenc IMG -o OUT --codec overfit -q 1..{} --preset fast|medium|slow)",
        ncodec::overfit::CODEC_NAME,
        ncodec::overfit::LAMBDAS.len()
    );
    for p in [ncodec::overfit::Preset::Fast, ncodec::overfit::Preset::Medium, ncodec::overfit::Preset::Slow] {
        let a = p.architecture();
        println!(
            "    {:<7} {} fitting steps, {} levels, ARM width {}, synthesis width {}: {:.0} MAC/pixel to decode",
            format!("{p:?}").to_lowercase(),
            p.steps(),
            a.levels,
            a.arm_hidden,
            a.synthesis_width,
            a.macs_per_pixel()
        );
    }
    Ok(())
}
