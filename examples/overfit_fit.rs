//! Fits the overfit codec to one image and reports the fitting curve, the stream's size and
//! the decoded PSNR: `cargo run --release --example overfit_fit -- IMAGE Q STEPS [LEVELS ARM SYN LR SEED CANDIDATES COARSE]` (defaults: the medium preset's networks;
//! COARSE, the steps of a half-resolution fit first, 0 as in the README's earlier tables).

fn main() -> ncodec::Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let img = ncodec::io::load_image(std::path::Path::new(&a[0]))?;
    let q: u8 = a[1].parse().unwrap();
    let arg = |i: usize, d: f64| a.get(i).map_or(d, |s| s.parse().unwrap());
    let mut opts = ncodec::overfit::Preset::Medium.options(q)?;
    opts.steps = arg(2, 1000.0) as usize;
    let a0 = opts.arch;
    opts.arch =
        ncodec::overfit::Architecture { levels: arg(3, a0.levels as f64) as usize, arm_hidden: arg(4, a0.arm_hidden as f64) as usize, synthesis_width: arg(5, a0.synthesis_width as f64) as usize };
    opts.lr = arg(6, 1e-2);
    opts.seed = arg(7, 1.0) as u64;
    opts.candidates = arg(8, opts.candidates as f64) as usize;
    opts.coarse_steps = arg(9, 0.0) as usize;
    let device = ncodec::backend::device();
    println!("{:?}, {:.0} MAC/pixel", opts, opts.arch.macs_per_pixel());
    let enc = ncodec::overfit::encode(&img, q, &opts, &device, &mut |p| {
        if p.step % 100 == 0 || p.step == p.steps {
            println!("step {:5} {:7.1} s  {:.2} dB  {:.4} bpp (latents, estimate)", p.step, p.seconds, p.psnr, p.bpp);
        }
    })?;
    let px = (img.width() * img.height()) as f64;
    println!("stream {} bytes, {:.4} bpp, decoded PSNR {:.2} dB", enc.bytes.len(), enc.bytes.len() as f64 * 8.0 / px, enc.psnr);
    Ok(())
}
