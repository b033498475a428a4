//! Rate-distortion measurement of a codec on a folder of images, from real bitstream bytes.
//!
//! Every row is one image at one quality: encode to `.ncod` bytes, decode those bytes, compare
//! the 8-bit output to the original. Means are per-image averages (CompressAI's convention).

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::codec::Codec;
use crate::container::Container;
use crate::error::{Error, Result};
use crate::metrics::{ms_ssim, psnr};

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub image: String,
    pub quality: u8,
    pub bytes: usize,
    pub bpp: f64,
    pub psnr: f64,
    pub ms_ssim: f64,
    pub encode_s: f64,
    pub decode_s: f64,
}

/// Per-quality means over images.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub quality: u8,
    pub bpp: f64,
    pub psnr: f64,
    pub ms_ssim: f64,
    pub encode_s: f64,
    pub decode_s: f64,
}

pub fn evaluate(codec: &Codec, images: &[PathBuf], qualities: &[u8], mut progress: impl FnMut(&Row)) -> Result<Vec<Row>> {
    let mut rows = vec![];
    for path in images {
        let img = crate::io::load_image(path)?;
        let px = img.width() as f64 * img.height() as f64;
        for &q in qualities {
            let t = Instant::now();
            let bytes = codec.encode(&img, q)?;
            let encode_s = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let out = codec.decode(&Container::parse(&bytes)?)?;
            let decode_s = t.elapsed().as_secs_f64();
            let row = Row {
                image: path.file_name().unwrap_or_default().to_string_lossy().into_owned(),
                quality: q,
                bytes: bytes.len(),
                bpp: bytes.len() as f64 * 8.0 / px,
                psnr: psnr(&img, &out),
                ms_ssim: ms_ssim(&img, &out),
                encode_s,
                decode_s,
            };
            progress(&row);
            rows.push(row);
        }
    }
    Ok(rows)
}

pub fn summarize(rows: &[Row]) -> Vec<Point> {
    let mut qs: Vec<u8> = rows.iter().map(|r| r.quality).collect();
    qs.sort();
    qs.dedup();
    qs.into_iter()
        .map(|q| {
            let sel: Vec<&Row> = rows.iter().filter(|r| r.quality == q).collect();
            let mean = |f: &dyn Fn(&Row) -> f64| sel.iter().map(|r| f(r)).sum::<f64>() / sel.len() as f64;
            Point {
                quality: q,
                bpp: mean(&|r| r.bpp),
                psnr: mean(&|r| r.psnr),
                ms_ssim: mean(&|r| r.ms_ssim),
                encode_s: mean(&|r| r.encode_s),
                decode_s: mean(&|r| r.decode_s),
            }
        })
        .collect()
}

/// Writes `<name>.csv` (per image) and `<name>.json` (CompressAI results schema) into `dir`.
pub fn write_results(dir: &Path, name: &str, description: &str, rows: &[Row]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut csv = String::from("image,quality,bytes,bpp,psnr_rgb,ms_ssim_rgb,encode_s,decode_s\n");
    for r in rows {
        csv += &format!("{},{},{},{:.6},{:.4},{:.6},{:.4},{:.4}\n", r.image, r.quality, r.bytes, r.bpp, r.psnr, r.ms_ssim, r.encode_s, r.decode_s);
    }
    crate::io::write_atomic(&dir.join(format!("{name}.csv")), csv.as_bytes())?;
    let pts = summarize(rows);
    let json = serde_json::json!({
        "name": name,
        "description": description,
        "results": {
            "quality": pts.iter().map(|p| p.quality).collect::<Vec<_>>(),
            "bpp": pts.iter().map(|p| p.bpp).collect::<Vec<_>>(),
            "psnr-rgb": pts.iter().map(|p| p.psnr).collect::<Vec<_>>(),
            "ms-ssim-rgb": pts.iter().map(|p| p.ms_ssim).collect::<Vec<_>>(),
            "encoding_time": pts.iter().map(|p| p.encode_s).collect::<Vec<_>>(),
            "decoding_time": pts.iter().map(|p| p.decode_s).collect::<Vec<_>>(),
        }
    });
    crate::io::write_atomic(&dir.join(format!("{name}.json")), serde_json::to_string_pretty(&json).unwrap().as_bytes())
}
