//! Zero-mean discretized Laplace tables at log-spaced scales, for coding the quantized
//! weights of networks that travel in a stream (nerv's decoder, the overfitted image codec's
//! synthesis and probability model): one table per tensor, picked by exact code length.

use std::sync::OnceLock;

use super::CdfTable;

pub const TABLES: usize = 64;
const SCALE_MIN: f64 = 0.02;
const SCALE_MAX: f64 = 400.0;
const TAIL: f64 = 1e-6;

/// Discretized Laplace tables at log-spaced scales (libm: the same integers everywhere).
pub fn laplace_tables() -> &'static [CdfTable] {
    static T: OnceLock<Vec<CdfTable>> = OnceLock::new();
    T.get_or_init(|| {
        (0..TABLES)
            .map(|i| {
                let b = libm::exp(libm::log(SCALE_MIN) + (libm::log(SCALE_MAX) - libm::log(SCALE_MIN)) * i as f64 / (TABLES - 1) as f64);
                let cdf = |x: f64| if x < 0.0 { 0.5 * libm::exp(x / b) } else { 1.0 - 0.5 * libm::exp(-x / b) };
                let r = libm::ceil(b * libm::log(1.0 / TAIL)) as i32;
                let pmf: Vec<f64> = (-r..=r).map(|v| cdf(v as f64 + 0.5) - cdf(v as f64 - 0.5)).collect();
                CdfTable::from_pmf(-r, &pmf).expect("laplace tables are valid")
            })
            .collect()
    })
}

/// The table (and its cost) that codes `values` in the fewest bits: a guess from the mean
/// absolute value, refined over its neighbours.
pub fn best_table(values: &[i32]) -> (u8, f64) {
    let tables = laplace_tables();
    let mean_abs = values.iter().map(|&v| v.unsigned_abs() as f64).sum::<f64>() / values.len().max(1) as f64;
    let guess = ((mean_abs.max(SCALE_MIN).ln() - SCALE_MIN.ln()) / (SCALE_MAX.ln() - SCALE_MIN.ln()) * (TABLES - 1) as f64).round() as i64;
    let mut best = (0u8, f64::INFINITY);
    for i in (guess - 3).max(0)..=(guess + 3).min(TABLES as i64 - 1) {
        let bits: f64 = values.iter().map(|&v| tables[i as usize].cost_bits(v)).sum();
        if bits < best.1 {
            best = (i as u8, bits);
        }
    }
    best
}
