//! Benchmark outputs: per-codec JSON (CompressAI's results schema) and per-image CSV, SVG
//! rate-distortion plots, and a Markdown summary with BD-rate/BD-PSNR against an anchor.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;
use serde_json::{Value, json};

use super::{Point, Row, summarize};
use crate::bdrate::{bd_quality, bd_rate};
use crate::error::{Error, Result};

/// One curve in a report: measured here, or loaded from a published results file.
#[derive(Debug, Clone)]
pub struct Curve {
    pub name: String,
    pub description: String,
    pub points: Vec<Point>,
    pub published: bool,
}

impl Curve {
    pub fn measured(name: &str, description: &str, rows: &[Row]) -> Self {
        Self { name: name.into(), description: description.into(), points: summarize(rows), published: false }
    }

    fn psnr(&self) -> Vec<(f64, f64)> {
        self.points.iter().map(|p| (p.bpp, p.psnr)).filter(|p| p.1.is_finite()).collect()
    }

    fn ms_ssim_db(&self) -> Vec<(f64, f64)> {
        self.points.iter().map(|p| (p.bpp, p.ms_ssim_db())).filter(|p| p.1.is_finite()).collect()
    }

    fn label(&self) -> String {
        if self.published { format!("{} (published)", self.name) } else { self.name.clone() }
    }
}

/// Writes `<name>.csv` (one row per image and setting) and `<name>.json` (CompressAI schema,
/// plus ncodec's extra keys) into `dir`.
pub fn write_codec(dir: &Path, name: &str, description: &str, rows: &[Row]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut csv = String::from("image,setting,bytes,bpp,psnr_rgb,psnr_y,psnr_yuv,ms_ssim_rgb,encode_s,decode_s\n");
    for r in rows {
        let _ = writeln!(csv, "{},{},{},{:.6},{:.4},{:.4},{:.4},{:.6},{:.4},{:.4}", r.image, r.setting, r.bytes, r.bpp, r.psnr, r.psnr_y, r.psnr_yuv, r.ms_ssim, r.encode_s, r.decode_s);
    }
    crate::io::write_atomic(&dir.join(format!("{name}.csv")), csv.as_bytes())?;
    let pts = summarize(rows);
    let col = |f: fn(&Point) -> f64| pts.iter().map(f).collect::<Vec<_>>();
    let json = json!({
        "name": name,
        "description": description,
        "source": "measured by ncodec bench",
        "results": {
            "setting": pts.iter().map(|p| p.setting).collect::<Vec<_>>(),
            "bpp": col(|p| p.bpp),
            "psnr-rgb": col(|p| p.psnr),
            "psnr-y": col(|p| p.psnr_y),
            "psnr-yuv": col(|p| p.psnr_yuv),
            "ms-ssim-rgb": col(|p| p.ms_ssim),
            "encoding_time": col(|p| p.encode_s),
            "decoding_time": col(|p| p.decode_s),
        }
    });
    crate::io::write_atomic(&dir.join(format!("{name}.json")), serde_json::to_string_pretty(&json).unwrap().as_bytes())
}

/// Reads back the per-image rows that [`write_codec`] wrote to `<dir>/<name>.csv`, by column
/// name, so a reader does not depend on the column order.
pub fn read_codec(dir: &Path, name: &str) -> Result<Vec<Row>> {
    let path = dir.join(format!("{name}.csv"));
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let bad = |what: String| Error::Format(format!("{}: {what}", path.display()));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().ok_or_else(|| bad("empty file".into()))?.split(',').collect();
    let col = |key: &str| header.iter().position(|h| *h == key).ok_or_else(|| bad(format!("no column '{key}'")));
    let [image, setting, bytes, bpp, psnr, psnr_y, psnr_yuv, ms_ssim, enc, dec] =
        ["image", "setting", "bytes", "bpp", "psnr_rgb", "psnr_y", "psnr_yuv", "ms_ssim_rgb", "encode_s", "decode_s"].map(col);
    let (image, setting, bytes) = (image?, setting?, bytes?);
    let floats = [bpp?, psnr?, psnr_y?, psnr_yuv?, ms_ssim?, enc?, dec?];
    lines
        .filter(|l| !l.is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            if f.len() != header.len() {
                return Err(bad(format!("row of {} fields, header has {}: {line}", f.len(), header.len())));
            }
            let number = |i: usize| f[i].parse::<f64>().map_err(|_| bad(format!("not a number: '{}'", f[i])));
            let [bpp, psnr, psnr_y, psnr_yuv, ms_ssim, encode_s, decode_s] = [0, 1, 2, 3, 4, 5, 6].map(|k| number(floats[k]));
            Ok(Row {
                image: f[image].to_string(),
                setting: f[setting].parse().map_err(|_| bad(format!("bad setting '{}'", f[setting])))?,
                bytes: f[bytes].parse().map_err(|_| bad(format!("bad byte count '{}'", f[bytes])))?,
                bpp: bpp?,
                psnr: psnr?,
                psnr_y: psnr_y?,
                psnr_yuv: psnr_yuv?,
                ms_ssim: ms_ssim?,
                encode_s: encode_s?,
                decode_s: decode_s?,
            })
        })
        .collect()
}

/// Reads a results file in CompressAI's schema (`psnr-rgb` or `psnr`, `ms-ssim-rgb` or
/// `ms-ssim`), e.g. the VTM/BPG curves CompressAI publishes, as a published curve; a file that
/// `ncodec bench` wrote (its `source` says so) stays a measured curve, with all its columns.
pub fn load_reference(path: &Path) -> Result<Curve> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| Error::Format(format!("{}: {e}", path.display())))?;
    let bad = |what: &str| Error::Format(format!("{}: {what}", path.display()));
    let results = v.get("results").ok_or_else(|| bad("no \"results\" object"))?;
    let series = |keys: &[&str]| -> Option<Vec<f64>> {
        let arr = keys.iter().find_map(|k| results.get(*k))?.as_array()?;
        arr.iter().map(|x| x.as_f64()).collect()
    };
    let bpp = series(&["bpp"]).ok_or_else(|| bad("no numeric \"bpp\" array"))?;
    let psnr = series(&["psnr-rgb", "psnr"]).ok_or_else(|| bad("no numeric \"psnr-rgb\"/\"psnr\" array"))?;
    let ms = series(&["ms-ssim-rgb", "ms-ssim"]).unwrap_or_else(|| vec![f64::NAN; bpp.len()]);
    if psnr.len() != bpp.len() || ms.len() != bpp.len() || bpp.is_empty() || bpp.iter().any(|&b| b.is_nan() || b <= 0.0) {
        return Err(bad("bpp/psnr/ms-ssim arrays must be non-empty, of equal length, with bpp > 0"));
    }
    let name = v.get("name").and_then(|n| n.as_str()).map(str::to_string).unwrap_or_else(|| path.file_stem().unwrap_or_default().to_string_lossy().into_owned());
    let description = v.get("description").and_then(|n| n.as_str()).unwrap_or("").to_string();
    let measured = v.get("source").and_then(|s| s.as_str()) == Some("measured by ncodec bench");
    let column = |key: &str| series(&[key]).filter(|c| c.len() == bpp.len()).unwrap_or_else(|| vec![f64::NAN; bpp.len()]);
    let (setting, psnr_y, psnr_yuv, enc, dec) = (column("setting"), column("psnr-y"), column("psnr-yuv"), column("encoding_time"), column("decoding_time"));
    let points = (0..bpp.len())
        .map(|i| Point {
            setting: if setting[i].is_finite() { setting[i] as u32 } else { i as u32 },
            bpp: bpp[i],
            psnr: psnr[i],
            psnr_y: psnr_y[i],
            psnr_yuv: psnr_yuv[i],
            ms_ssim: ms[i],
            encode_s: enc[i],
            decode_s: dec[i],
        })
        .collect();
    Ok(Curve { name, description, points, published: !measured })
}

/// Which quality axis a plot or BD figure uses.
#[derive(Debug, Clone, Copy)]
pub enum Metric {
    Psnr,
    MsSsimDb,
}

impl Metric {
    fn series(self, c: &Curve) -> Vec<(f64, f64)> {
        match self {
            Metric::Psnr => c.psnr(),
            Metric::MsSsimDb => c.ms_ssim_db(),
        }
    }
    fn axis(self) -> &'static str {
        match self {
            Metric::Psnr => "PSNR-RGB (dB)",
            Metric::MsSsimDb => "MS-SSIM-RGB (dB, -10 log10(1 - MS-SSIM))",
        }
    }
}

/// Draws quality vs bpp for every curve into an SVG file.
pub fn plot_svg(path: &Path, title: &str, curves: &[Curve], metric: Metric) -> Result<()> {
    let all: Vec<(f64, f64)> = curves.iter().flat_map(|c| metric.series(c)).collect();
    if all.is_empty() {
        return Err(Error::Unsupported(format!("nothing to plot for {}", path.display())));
    }
    let (x_max, y_min, y_max) = all.iter().fold((0.0f64, f64::MAX, f64::MIN), |(x, lo, hi), &(b, q)| (x.max(b), lo.min(q), hi.max(q)));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 600)).into_drawing_area();
        let err = |e: &dyn std::fmt::Display| Error::Codec(format!("plot: {e}"));
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x_max * 1.05, (y_min - 0.5).floor()..(y_max + 0.5).ceil())
            .map_err(|e| err(&e))?;
        chart.configure_mesh().x_desc("bits per pixel").y_desc(metric.axis()).draw().map_err(|e| err(&e))?;
        for (i, c) in curves.iter().enumerate() {
            let mut pts = metric.series(c);
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            let color = Palette99::pick(i).to_rgba();
            let style = ShapeStyle { color, filled: false, stroke_width: if c.published { 1 } else { 2 } };
            chart.draw_series(LineSeries::new(pts.clone(), style)).map_err(|e| err(&e))?.label(c.label()).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            chart.draw_series(pts.into_iter().map(move |p| Circle::new(p, 3, color.filled()))).map_err(|e| err(&e))?;
        }
        chart.configure_series_labels().position(SeriesLabelPosition::LowerRight).background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    crate::io::write_atomic(path, svg.as_bytes())
}

fn fmt_delta(v: Result<f64>, unit: &str) -> String {
    match v {
        Ok(v) if v.is_finite() => format!("{v:+.2}{unit}"),
        _ => "n/a (no overlap)".into(),
    }
}

/// The Markdown summary: every curve's points, then BD figures against each of `anchors`.
pub fn markdown(title: &str, setup: &str, curves: &[Curve], anchors: &[&str]) -> String {
    let mut md = format!("# {title}\n\n{setup}\n\n");
    md += "Rates are real file sizes (bits / pixel); metrics are per-image means on the decoded 8-bit RGB output.\n";
    md += "PSNR-Y and PSNR-YUV use BT.709 full-range Y'CbCr, YUV = (6·Y + U + V) / 8.\n\n";
    for c in curves {
        let _ = writeln!(md, "## {}\n\n{}\n", c.label(), c.description);
        md += "| setting | bpp | PSNR-RGB | PSNR-Y | PSNR-YUV | MS-SSIM | MS-SSIM dB | enc ms | dec ms |\n";
        md += "|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
        for p in &c.points {
            let _ = writeln!(
                md,
                "| {} | {:.4} | {:.2} | {:.2} | {:.2} | {:.5} | {:.2} | {:.0} | {:.0} |",
                p.setting,
                p.bpp,
                p.psnr,
                p.psnr_y,
                p.psnr_yuv,
                p.ms_ssim,
                p.ms_ssim_db(),
                p.encode_s * 1e3,
                p.decode_s * 1e3
            );
        }
        md += "\n";
    }
    for &anchor_name in anchors {
        let Some(a) = curves.iter().find(|c| c.name == anchor_name) else { continue };
        let _ = writeln!(md, "## Bjøntegaard deltas against {}\n", a.label());
        md += "Negative BD-rate = fewer bits for the same quality. Piecewise-cubic (PCHIP) interpolation over the overlapping range.\n\n";
        md += "| codec | BD-rate (PSNR) | BD-PSNR | BD-rate (MS-SSIM dB) |\n|---|---:|---:|---:|\n";
        for c in curves.iter().filter(|c| c.name != anchor_name) {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                c.label(),
                fmt_delta(bd_rate(&a.psnr(), &c.psnr()), " %"),
                fmt_delta(bd_quality(&a.psnr(), &c.psnr()), " dB"),
                fmt_delta(bd_rate(&a.ms_ssim_db(), &c.ms_ssim_db()), " %"),
            );
        }
        md += "\n";
    }
    md
}
