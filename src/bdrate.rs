//! Bjøntegaard deltas between two rate-distortion curves, with piecewise cubic Hermite
//! (PCHIP, Fritsch–Carlson monotone slopes as in SciPy) interpolation and exact integration
//! over the overlapping interval.
//!
//! ```text
//!  BD-rate: x = quality (PSNR), y = ln(rate);  mean(y_test − y_anchor) over the common x
//!           range → (e^Δ − 1)·100 %   (negative = test needs fewer bits)
//!  BD-PSNR: x = ln(rate), y = PSNR;  mean(y_test − y_anchor) over the common x range, in dB
//! ```

use crate::error::{Error, Result};

/// One curve: (rate, quality) points, any order.
pub type Curve = [(f64, f64)];

/// BD-rate of `test` against `anchor`, in percent.
pub fn bd_rate(anchor: &Curve, test: &Curve) -> Result<f64> {
    let a: Vec<(f64, f64)> = anchor.iter().map(|&(r, q)| (q, r.ln())).collect();
    let t: Vec<(f64, f64)> = test.iter().map(|&(r, q)| (q, r.ln())).collect();
    Ok((mean_difference(&a, &t)?.exp() - 1.0) * 100.0)
}

/// BD-PSNR (or BD of any quality metric) of `test` against `anchor`.
pub fn bd_quality(anchor: &Curve, test: &Curve) -> Result<f64> {
    let a: Vec<(f64, f64)> = anchor.iter().map(|&(r, q)| (r.ln(), q)).collect();
    let t: Vec<(f64, f64)> = test.iter().map(|&(r, q)| (r.ln(), q)).collect();
    mean_difference(&a, &t)
}

/// Mean of (test(x) − anchor(x)) over the overlap of the two x ranges.
fn mean_difference(anchor: &[(f64, f64)], test: &[(f64, f64)]) -> Result<f64> {
    let a = Pchip::new(anchor)?;
    let t = Pchip::new(test)?;
    let lo = a.xs[0].max(t.xs[0]);
    let hi = a.xs[a.xs.len() - 1].min(t.xs[t.xs.len() - 1]);
    // NaN ends compare false: refused like curves that do not overlap.
    if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
        return Err(Error::Unsupported("the two curves do not overlap".into()));
    }
    Ok((t.integral(lo, hi) - a.integral(lo, hi)) / (hi - lo))
}

struct Pchip {
    xs: Vec<f64>,
    ys: Vec<f64>,
    ds: Vec<f64>,
}

impl Pchip {
    fn new(points: &[(f64, f64)]) -> Result<Self> {
        let mut p: Vec<(f64, f64)> = points.to_vec();
        if p.len() < 2 || p.iter().any(|(x, y)| !x.is_finite() || !y.is_finite()) {
            return Err(Error::Unsupported("a curve needs at least two finite points".into()));
        }
        p.sort_by(|a, b| a.0.total_cmp(&b.0));
        if p.windows(2).any(|w| w[1].0 <= w[0].0) {
            return Err(Error::Unsupported("a curve has two points with the same abscissa".into()));
        }
        let (xs, ys): (Vec<f64>, Vec<f64>) = p.into_iter().unzip();
        let n = xs.len();
        let h: Vec<f64> = (0..n - 1).map(|k| xs[k + 1] - xs[k]).collect();
        let delta: Vec<f64> = (0..n - 1).map(|k| (ys[k + 1] - ys[k]) / h[k]).collect();
        let mut ds = vec![0.0; n];
        if n == 2 {
            ds = vec![delta[0]; 2];
        } else {
            for k in 1..n - 1 {
                if delta[k - 1] * delta[k] > 0.0 {
                    let (w1, w2) = (2.0 * h[k] + h[k - 1], h[k] + 2.0 * h[k - 1]);
                    ds[k] = (w1 + w2) / (w1 / delta[k - 1] + w2 / delta[k]);
                }
            }
            ds[0] = edge_slope(h[0], h[1], delta[0], delta[1]);
            ds[n - 1] = edge_slope(h[n - 2], h[n - 3], delta[n - 2], delta[n - 3]);
        }
        Ok(Self { xs, ys, ds })
    }

    /// ∫ p(x) dx from `lo` to `hi` (both inside the knot range), segment by segment.
    fn integral(&self, lo: f64, hi: f64) -> f64 {
        (0..self.xs.len() - 1)
            .map(|k| {
                let (x0, x1) = (self.xs[k], self.xs[k + 1]);
                let (a, b) = (lo.max(x0), hi.min(x1));
                if b <= a { 0.0 } else { self.segment_integral(k, (b - x0) / (x1 - x0)) - self.segment_integral(k, (a - x0) / (x1 - x0)) }
            })
            .sum()
    }

    /// ∫ from the start of segment `k` to the fraction `s` of it, from the integrated Hermite basis.
    fn segment_integral(&self, k: usize, s: f64) -> f64 {
        let h = self.xs[k + 1] - self.xs[k];
        let (s2, s3, s4) = (s * s, s * s * s, s * s * s * s);
        let h00 = s4 / 2.0 - s3 + s;
        let h10 = s4 / 4.0 - 2.0 * s3 / 3.0 + s2 / 2.0;
        let h01 = -s4 / 2.0 + s3;
        let h11 = s4 / 4.0 - s3 / 3.0;
        h * (self.ys[k] * h00 + h * self.ds[k] * h10 + self.ys[k + 1] * h01 + h * self.ds[k + 1] * h11)
    }
}

/// SciPy's one-sided three-point end slope, kept shape-preserving.
fn edge_slope(h0: f64, h1: f64, d0: f64, d1: f64) -> f64 {
    let d = ((2.0 * h0 + h1) * d0 - h0 * d1) / (h0 + h1);
    if d.signum() != d0.signum() {
        0.0
    } else if d0.signum() != d1.signum() && d.abs() > 3.0 * d0.abs() {
        3.0 * d0
    } else {
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANCHOR: [(f64, f64); 5] = [(0.25, 26.7), (0.45, 29.1), (0.61, 30.5), (0.74, 31.4), (1.0, 32.9)];

    #[test]
    fn self_is_zero() {
        assert!(bd_rate(&ANCHOR, &ANCHOR).unwrap().abs() < 1e-12);
        assert!(bd_quality(&ANCHOR, &ANCHOR).unwrap().abs() < 1e-12);
    }

    #[test]
    fn ten_percent_more_rate_is_plus_ten_percent() {
        let shifted: Vec<(f64, f64)> = ANCHOR.iter().map(|&(r, q)| (r * 1.1, q)).collect();
        let bd = bd_rate(&ANCHOR, &shifted).unwrap();
        assert!((bd - 10.0).abs() < 1e-9, "{bd}");
        assert!((bd_rate(&shifted, &ANCHOR).unwrap() + 100.0 / 11.0).abs() < 1e-9);
    }

    #[test]
    fn constant_quality_offset_is_bd_psnr() {
        let better: Vec<(f64, f64)> = ANCHOR.iter().map(|&(r, q)| (r, q + 1.5)).collect();
        assert!((bd_quality(&ANCHOR, &better).unwrap() - 1.5).abs() < 1e-9);
        assert!(bd_rate(&ANCHOR, &better).unwrap() < 0.0);
    }

    #[test]
    fn integral_of_cubic_data_is_exact_for_lines() {
        let line: Vec<(f64, f64)> = (0..6).map(|i| (i as f64, 2.0 * i as f64 + 1.0)).collect();
        let p = Pchip::new(&line).unwrap();
        // ∫_0.5^4.25 (2x + 1) dx
        let want = (4.25f64.powi(2) + 4.25) - (0.25 + 0.5);
        assert!((p.integral(0.5, 4.25) - want).abs() < 1e-12);
    }

    #[test]
    fn disjoint_or_degenerate_curves_are_errors() {
        assert!(bd_rate(&[(0.1, 20.0), (0.2, 21.0)], &[(0.3, 30.0), (0.4, 31.0)]).is_err());
        assert!(bd_rate(&[(0.1, 20.0)], &ANCHOR).is_err());
        assert!(bd_rate(&[(0.1, 20.0), (0.2, 20.0)], &ANCHOR).is_err());
    }
}
