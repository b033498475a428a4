//! The curve we live on: Kodak BD-rate against mozjpeg for every weight file we shipped,
//! against the training compute behind it, read from the codec cards in git history.
//!
//! ```text
//!   git log codecs/<name>/card.toml ─► each shipped card: steps, hours, hardware, Kodak points
//!   assets/kodak-summary.md "## jpeg" ─► mozjpeg's Kodak curve (PSNR-RGB)
//!   BD-rate(mozjpeg → card) vs cumulative hours ─► assets/compute-curve.md + .svg
//! ```
//! Cumulative compute counts what a codec was built on: `mlic` starts from the `mean-scale`
//! weights shipped before it, so its hours add that card's. GPU minutes, when a card records
//! them (`[training] gpu_minutes`), are listed beside the CPU hours.
//!
//! ```sh
//! cargo run --release --example compute_curve            # writes assets/compute-curve.{md,svg}
//! ```

use std::process::Command;

use anyhow::{Context, Result, bail};
use plotters::prelude::*;

/// A codec and the codec whose shipped weights it started from.
const LINEAGE: [(&str, Option<&str>); 2] = [("mean-scale", None), ("mlic", Some("mean-scale"))];

struct Shipped {
    codec: &'static str,
    commit: String,
    date: String,
    steps: i64,
    hours: f64,
    gpu_minutes: f64,
    hardware: String,
    points: Vec<(f64, f64)>,
}

fn git(args: &[&str]) -> Result<String> {
    let out = Command::new("git").args(args).output().context("running git")?;
    if !out.status.success() {
        bail!("git {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// Every version of `codec`'s card in history, oldest first (commits whose card has no
/// Kodak points, e.g. a card format change, are skipped).
fn history(codec: &'static str) -> Result<Vec<Shipped>> {
    let path = format!("codecs/{codec}/card.toml");
    let mut out = Vec::new();
    for line in git(&["log", "--reverse", "--format=%h %cs", "--", &path])?.lines() {
        let (commit, date) = line.split_once(' ').context("git log line")?;
        let Ok(text) = git(&["show", &format!("{commit}:{path}")]) else {
            continue;
        };
        let card: toml::Value = toml::from_str(&text).with_context(|| format!("{commit}:{path}"))?;
        let training = card.get("training");
        let num = |key: &str| training.and_then(|t| t.get(key)).and_then(|v| v.as_float().or(v.as_integer().map(|i| i as f64)));
        let points: Vec<(f64, f64)> =
            card.get("kodak").and_then(|k| k.as_array()).map(|rows| rows.iter().filter_map(|r| Some((r.get("bpp")?.as_float()?, r.get("psnr")?.as_float()?))).collect()).unwrap_or_default();
        if points.len() < 4 {
            continue;
        }
        out.push(Shipped {
            codec,
            commit: commit.to_string(),
            date: date.to_string(),
            steps: num("steps").unwrap_or(0.0) as i64,
            hours: num("hours").unwrap_or(0.0),
            gpu_minutes: num("gpu_minutes").unwrap_or(0.0),
            hardware: training.and_then(|t| t.get("hardware")).and_then(|v| v.as_str()).unwrap_or("?").to_string(),
            points,
        });
    }
    // A commit that rewrote a card without new weights repeats the previous point.
    out.dedup_by(|b, a| b.steps == a.steps && b.points == a.points);
    Ok(out)
}

/// mozjpeg's (bpp, PSNR-RGB) points from the benchmark summary's `## jpeg` table.
fn mozjpeg(summary: &str) -> Result<Vec<(f64, f64)>> {
    let table = summary.split("\n## jpeg").nth(1).context("no '## jpeg' section in assets/kodak-summary.md")?;
    let points: Vec<(f64, f64)> = table
        .lines()
        .skip_while(|l| !l.starts_with("| setting"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            Some((cells.get(2)?.parse().ok()?, cells.get(3)?.parse().ok()?))
        })
        .collect();
    if points.len() < 4 {
        bail!("the jpeg table has {} rows", points.len());
    }
    Ok(points)
}

fn main() -> Result<()> {
    let anchor = mozjpeg(&std::fs::read_to_string("assets/kodak-summary.md")?)?;
    let mut rows: Vec<(Shipped, f64, f64)> = Vec::new();
    for (codec, base) in LINEAGE {
        let base_history = match base {
            Some(b) => history(LINEAGE.iter().find(|l| l.0 == b).unwrap().0)?,
            None => Vec::new(),
        };
        for s in history(codec)? {
            // The base codec's newest card at or before this one's date.
            let base_hours = base_history.iter().rev().find(|b| b.date <= s.date).map_or(0.0, |b| b.hours);
            let bd = ncodec::bdrate::bd_rate(&anchor, &s.points)?;
            rows.push((s, base_hours, bd));
        }
    }
    rows.sort_by(|a, b| (a.0.hours + a.1).total_cmp(&(b.0.hours + b.1)));

    let mut md = String::from(
        "# Kodak BD-rate against training compute\n\nOne row per shipped weight file (codec cards in git history), written by \
         `cargo run --release --example compute_curve`. BD-rate: PSNR-RGB, against mozjpeg's Kodak curve in \
         `assets/kodak-summary.md`, from the card's Kodak points (real bytes). Cumulative hours add the hours of \
         the weights a codec started from (mlic: the mean-scale shipped before it).\n\n\
         | codec | commit | date | steps | own CPU h | cumulative CPU h | GPU min | hardware | BD-rate vs mozjpeg |\n\
         | --- | --- | --- | ---: | ---: | ---: | ---: | --- | ---: |\n",
    );
    for (s, base, bd) in &rows {
        md += &format!("| {} | {} | {} | {} | {:.1} | {:.1} | {:.0} | {} | {:+.1} % |\n", s.codec, s.commit, s.date, s.steps, s.hours, s.hours + base, s.gpu_minutes, s.hardware, bd);
    }
    std::fs::write("assets/compute-curve.md", &md)?;

    let (xmax, ymin, ymax) = rows.iter().fold((1.0f64, 0.0f64, 0.0f64), |(x, lo, hi), (s, b, bd)| (x.max(s.hours + b), lo.min(*bd), hi.max(*bd)));
    let root = SVGBackend::new("assets/compute-curve.svg", (720, 440)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Kodak BD-rate vs mozjpeg (PSNR-RGB) against training compute", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..xmax * 1.1, (ymin - 5.0)..(ymax + 5.0))?;
    chart.configure_mesh().x_desc("cumulative CPU hours (2-core AMD EPYC)").y_desc("BD-rate vs mozjpeg, %").draw()?;
    for ((codec, _), colour) in LINEAGE.iter().zip([BLUE, RED]) {
        let series: Vec<(f64, f64)> = rows.iter().filter(|r| r.0.codec == *codec).map(|(s, b, bd)| (s.hours + b, *bd)).collect();
        chart.draw_series(LineSeries::new(series.clone(), colour.stroke_width(2)))?.label(*codec).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2)));
        chart.draw_series(series.into_iter().map(|p| Circle::new(p, 4, colour.filled())))?;
    }
    chart.draw_series(LineSeries::new([(0.0, 0.0), (xmax * 1.1, 0.0)], BLACK.mix(0.4)))?;
    chart.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.8)).draw()?;
    root.present()?;
    print!("{md}");
    Ok(())
}
