//! `ncodec ship`: export a checkpoint into the zoo (fp16 weights), measure it on Kodak from real bitstreams, and write its card.

use std::path::PathBuf;

use ncodec::ship::{Outcome, ShipOptions, VideoResults};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "ckpt/mean-scale")]
    pub ckpt_dir: PathBuf,
    /// Zoo name (codecs/<name>/).
    #[arg(long, default_value = "mean-scale")]
    pub name: String,
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// One-line description for `ncodec list`.
    #[arg(long)]
    pub description: String,
    /// The command(s) that trained the checkpoint, recorded in the card.
    #[arg(long)]
    pub command: String,
    /// Learning-rate schedule, recorded in the card.
    #[arg(long)]
    pub lr_schedule: String,
    /// Where the weights were trained, recorded in the card. Default: the checkpoint's own
    /// line, which names only the machine of the last run (a run from --init-from or
    /// --resume does not know the earlier ones).
    #[arg(long)]
    pub hardware: Option<String>,
    /// mlic: ship with latent residual prediction switched off.
    #[arg(long)]
    pub no_lrp: bool,
    /// Video codecs (stem): record the results of `ncodec bench --dataset video --data-dir
    /// CLIP --codec stem --out DIR` (its ncodec-stem and ncodec-stem-intra curves) in the card.
    #[arg(long, requires = "video_results")]
    pub video: Option<PathBuf>,
    #[arg(long, requires = "video")]
    pub video_results: Option<PathBuf>,
    /// The intra period that bench ran with.
    #[arg(long, default_value_t = ncodec::stem::DEFAULT_GOP)]
    pub gop: usize,
    /// Replace the shipped weights only when the new ones measure at least PCT % better
    /// (Kodak BD-rate, PSNR-RGB, against the shipped card's points); else keep them and
    /// say so.
    #[arg(long, value_name = "PCT")]
    pub if_better: Option<f64>,
}

pub fn run(a: Args) -> ncodec::Result<()> {
    let opts = ShipOptions {
        ckpt_dir: a.ckpt_dir,
        name: a.name.clone(),
        kodak: ncodec::data::kodak_dir(a.data_dir)?,
        description: a.description,
        command: a.command,
        lr_schedule: a.lr_schedule,
        hardware: a.hardware,
        no_lrp: a.no_lrp,
        video: a.video.zip(a.video_results).map(|(clip, results)| VideoResults { clip, results, gop: a.gop }),
        if_better: a.if_better,
    };
    let bar = indicatif::ProgressBar::new(0);
    let points = match ncodec::ship::ship(&opts, &|_| bar.inc(1))? {
        Outcome::Kept { bd_rate, shipped_step, points } => {
            bar.finish_and_clear();
            println!("not shipped: Kodak BD-rate {bd_rate:+.2} % against the shipped {} (step {shipped_step}); --if-better asks for -{} % or less", a.name, a.if_better.unwrap_or(0.0));
            points
        }
        Outcome::Shipped { step, dir, points, bd_rate } => {
            bar.finish_and_clear();
            if let Some(bd) = bd_rate {
                println!("Kodak BD-rate {bd:+.2} % against the shipped {}: shipped", a.name);
            }
            println!("shipped {} (step {step}) to {}", a.name, dir.display());
            points
        }
    };
    for p in &points {
        println!("  q{} {:.4} bpp {:.3} dB {:.5}", p.setting, p.bpp, p.psnr, p.ms_ssim);
    }
    Ok(())
}
