//! The latents' probability model on the integer side: a discretized Laplace distribution
//! (Cool-chic's and C3's choice: its heavier tails fit overfitted latents better than a
//! Gaussian, README) whose mean and log-scale come from the fixed-point ARM (Q[`ARM_FRAC`]), mapped to one of
//! `SCALES × FRACTIONS` integer tables by integer arithmetic only.
//!
//! ```text
//!  μ (Q8) ──► c = round(μ), k = fraction bin of μ − c ─┐
//!  log σ (Q8) ──► i = round((log σ − log σ_min) / Δ) ───┴► table[i][k] ──► symbol ŷ − c
//! ```
//! The tables are built with `libm` (pure software f64) and quantized to integers, so every
//! machine codes with the same integers.

use std::sync::OnceLock;

use crate::entropy::CdfTable;

/// Fraction bits of the ARM's outputs.
pub const ARM_FRAC: u32 = 8;
/// Log-spaced scales from `SCALE_MIN` to `SCALE_MAX`.
pub const SCALES: usize = 64;
pub const SCALE_MIN: f64 = 0.11;
pub const SCALE_MAX: f64 = 64.0;
/// Bins of the mean's fractional part.
const FRACTIONS: usize = 8;

struct Tables {
    /// Built on first use: a decode needs a few dozen of the tables, and the wide ones cost
    /// milliseconds each.
    tables: Vec<OnceLock<CdfTable>>,
    /// ln(SCALE_MIN) and the log-scale step Δ between tables.
    log_min: f64,
    step: f64,
    /// ln(SCALE_MIN) in Q16 and 1/Δ in Q16.
    log_min_q16: i64,
    inv_step_q16: i64,
}

fn tables() -> &'static Tables {
    static T: OnceLock<Tables> = OnceLock::new();
    T.get_or_init(|| {
        let (lo, hi) = (libm::log(SCALE_MIN), libm::log(SCALE_MAX));
        let step = (hi - lo) / (SCALES - 1) as f64;
        Tables {
            tables: (0..SCALES * FRACTIONS).map(|_| OnceLock::new()).collect(),
            log_min: lo,
            step,
            log_min_q16: libm::round(lo * 65536.0) as i64,
            inv_step_q16: libm::round(65536.0 / step) as i64,
        }
    })
}

/// Table `index` = scale i · `FRACTIONS` + fraction bin k: the lattice Laplace distribution
/// of that scale centred on bin k's centre.
fn build(t: &Tables, index: usize) -> CdfTable {
    let (i, k) = (index / FRACTIONS, index % FRACTIONS);
    let cdf = |x: f64| if x < 0.0 { 0.5 * libm::exp(x) } else { 1.0 - 0.5 * libm::exp(-x) };
    let s = libm::exp(t.log_min + t.step * i as f64);
    // ±12 scales (+1), outside which lies e^−12 of the mass: it goes to the escape symbol.
    let r = libm::ceil(s * 12.0) as i32 + 1;
    // The centre of fraction bin k, in [-0.5, 0.5).
    let f = (k as f64 + 0.5) / FRACTIONS as f64 - 0.5;
    let pmf: Vec<f64> = (-r..=r).map(|v| cdf((v as f64 + 0.5 - f) / s) - cdf((v as f64 - 0.5 - f) / s)).collect();
    CdfTable::from_pmf(-r, &pmf).expect("lattice Laplace tables are valid")
}

/// Where a latent's symbol comes from: its table and the integer the symbol is relative to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    pub table: usize,
    pub centre: i32,
}

/// The table and centre for ARM outputs `mu` and `log_scale` (both Q[`ARM_FRAC`]).
pub fn choose(mu: i32, log_scale: i32) -> Choice {
    let t = tables();
    let one = 1i64 << ARM_FRAC;
    let mu = mu as i64;
    let centre = (mu + one / 2).div_euclid(one);
    let frac = mu - centre * one + one / 2; // in [0, one)
    let k = ((frac * FRACTIONS as i64) >> ARM_FRAC).clamp(0, FRACTIONS as i64 - 1);
    let log_q16 = (log_scale as i64) << (16 - ARM_FRAC);
    let i = ((log_q16 - t.log_min_q16) * t.inv_step_q16 + (1 << 31)) >> 32;
    let i = i.clamp(0, SCALES as i64 - 1);
    Choice { table: i as usize * FRACTIONS + k as usize, centre: centre.clamp(i32::MIN as i64 / 2, i32::MAX as i64 / 2) as i32 }
}

/// The integer table of a choice.
pub fn table(c: Choice) -> &'static CdfTable {
    let t = tables();
    t.tables[c.table].get_or_init(|| build(t, c.table))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(v: f64) -> i32 {
        (v * (1 << ARM_FRAC) as f64).round() as i32
    }

    #[test]
    fn choices_follow_the_mean_and_the_scale() {
        // The centre is the rounded mean; the scale index grows with log σ and saturates.
        assert_eq!(choose(q(2.3), q(0.0)).centre, 2);
        assert_eq!(choose(q(-2.6), q(0.0)).centre, -3);
        assert_eq!(choose(q(-0.5), q(0.0)).centre, 0);
        let idx = |ls: f64| choose(0, q(ls)).table / FRACTIONS;
        assert_eq!(idx(-10.0), 0);
        assert_eq!(idx(10.0), SCALES - 1);
        assert!(idx(0.0) < idx(1.0) && idx(1.0) < idx(2.0));
        // σ = 1 lands on the table whose scale is nearest 1.
        let s = libm::exp(libm::log(SCALE_MIN) + (libm::log(SCALE_MAX) - libm::log(SCALE_MIN)) * idx(0.0) as f64 / (SCALES - 1) as f64);
        assert!((s.ln()).abs() < 0.06, "{s}");
        // Fraction bins: a mean just above an integer and one just below pick different tables.
        assert_ne!(choose(q(1.1), 0).table, choose(q(0.9), 0).table);
    }

    #[test]
    fn a_confident_table_codes_its_centre_cheaply() {
        let t = table(choose(q(3.0), q(-2.0)));
        assert!(t.cost_bits(0) < 0.1);
        assert!(t.cost_bits(2) > 8.0);
    }
}
