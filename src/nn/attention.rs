//! Linear attention (Katharopoulos et al. 2020, as used for MLIC++'s global references), in
//! float for training and in exact integers for coding.
//!
//! ```text
//!  φ(x) = relu(x) + ε                                  (ε = 2^-6: keeps the denominator > 0)
//!  KV[d][e] = Σ_{s ∈ keys} φ(K_s)[d] · V_s[e]          Z[d] = Σ_{s ∈ keys} φ(K_s)[d]
//!  out_t[e] = Σ_d φ(Q_t)[d] · KV[d][e]  /  Σ_d φ(Q_t)[d] · Z[d]
//! ```
//! Cost is linear in the number of positions (no N×N attention matrix), so global context
//! stays affordable at any image size. The integer version accumulates in i128 and ends with
//! one rounded integer division per output, so every machine gets the same bits.

use burn::prelude::*;
use burn::tensor::activation::relu;
use rayon::prelude::*;

use super::fixed::FRAC_BITS;

/// ε of the feature map, as a power of two so the float and fixed-point versions agree.
const EPS_LOG2: i32 = -6;

fn phi(x: Tensor<4>) -> Tensor<4> {
    relu(x).add_scalar(2f64.powi(EPS_LOG2))
}

/// Float linear attention over `[B, C, H, W]` maps. `key_mask` (`[1, 1, H, W]`, 0/1) restricts
/// the keys to a subset of positions (e.g. the decoded checkerboard anchors).
pub fn linear_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, key_mask: Option<Tensor<4>>) -> Tensor<4> {
    let [b, d, h, w] = q.dims();
    let e = v.dims()[1];
    let n = h * w;
    let phi_q = phi(q).reshape([b, d, n]);
    let phi_k = match key_mask {
        Some(m) => phi(k) * m,
        None => phi(k),
    }
    .reshape([b, d, n]);
    let v = v.reshape([b, e, n]);
    let kv = phi_k.clone().matmul(v.swap_dims(1, 2)); // [B, d, e]
    let z = phi_k.sum_dim(2); // [B, d, 1]
    let phi_q_t = phi_q.swap_dims(1, 2); // [B, n, d]
    let num = phi_q_t.clone().matmul(kv); // [B, n, e]
    let den = phi_q_t.matmul(z); // [B, n, 1]
    (num / den).swap_dims(1, 2).reshape([b, e, h, w])
}

/// Integer linear attention on `Q[FRAC_BITS]` maps laid out `[C][n]` (n = positions).
/// `q`, `k`: `d` channels; `v`: `e` channels; `keys`: the positions attended to (all when
/// `None`). Returns `[e][n]` in `Q[FRAC_BITS]`.
pub fn linear_attention_fixed(q: &[i32], k: &[i32], v: &[i32], d: usize, e: usize, n: usize, keys: Option<&[usize]>) -> Vec<i32> {
    assert!(q.len() == d * n && k.len() == d * n && v.len() == e * n, "attention inputs do not match");
    let eps = 1i64 << (FRAC_BITS as i32 + EPS_LOG2);
    let phi = |x: i32| (x as i64).max(0) + eps;
    let all: Vec<usize>;
    let keys = match keys {
        Some(k) => k,
        None => {
            all = (0..n).collect();
            &all
        }
    };
    // KV in Q[2·FRAC_BITS], Z in Q[FRAC_BITS]; one row per key channel, in parallel.
    let rows: Vec<(i128, Vec<i128>)> = (0..d)
        .into_par_iter()
        .map(|di| {
            let krow = &k[di * n..(di + 1) * n];
            let phis: Vec<i64> = keys.iter().map(|&s| phi(krow[s])).collect();
            let z = phis.iter().map(|&p| p as i128).sum();
            let kv = (0..e)
                .map(|ei| {
                    let vrow = &v[ei * n..(ei + 1) * n];
                    keys.iter().zip(&phis).map(|(&s, &p)| (p * vrow[s] as i64) as i128).sum()
                })
                .collect();
            (z, kv)
        })
        .collect();
    // Per position: Q[2·FRAC_BITS] denominator, Q[3·FRAC_BITS] numerators, Q[FRAC_BITS] quotient.
    let per_position: Vec<Vec<i32>> = (0..n)
        .into_par_iter()
        .map(|t| {
            let phq: Vec<i128> = (0..d).map(|di| phi(q[di * n + t]) as i128).collect();
            let den: i128 = phq.iter().zip(&rows).map(|(&p, (z, _))| p * z).sum();
            (0..e).map(|ei| round_div(phq.iter().zip(&rows).map(|(&p, (_, kv))| p * kv[ei]).sum(), den)).collect()
        })
        .collect();
    let mut out = vec![0i32; e * n];
    for (t, col) in per_position.iter().enumerate() {
        for (ei, &v) in col.iter().enumerate() {
            out[ei * n + t] = v;
        }
    }
    out
}

/// num / den rounded half up (den > 0), saturated to i32; 0 when den is 0 (no keys).
fn round_div(num: i128, den: i128) -> i32 {
    if den <= 0 {
        return 0;
    }
    let q = (2 * num + den).div_euclid(2 * den);
    q.clamp(-(i32::MAX as i128), i32::MAX as i128) as i32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::fixed::{to_fixed, to_float};
    use crate::nn::{from_host, to_host};

    #[test]
    fn fixed_matches_float_with_and_without_key_mask() {
        let device = crate::backend::device();
        let (d, e, h, w) = (4, 3, 5, 6);
        let n = h * w;
        let make = |c: usize, seed: usize| -> Vec<f32> { (0..c * n).map(|i| (((i * 7919 + seed * 104729) % 997) as f32 / 997.0 - 0.4) * 3.0).map(|v| to_float(to_fixed(v))).collect() };
        let (q, k, v) = (make(d, 1), make(d, 2), make(e, 3));
        let mask: Vec<f32> = (0..n).map(|i| ((i / w + i % w) % 2 == 0) as u8 as f32).collect();
        let anchors: Vec<usize> = (0..n).filter(|&i| mask[i] == 1.0).collect();
        for masked in [false, true] {
            let t = |x: &Vec<f32>, c| from_host(x.clone(), [1, c, h, w], &device);
            let key_mask = masked.then(|| from_host(mask.clone(), [1, 1, h, w], &device));
            let float = to_host(linear_attention(t(&q, d), t(&k, d), t(&v, e), key_mask));
            let fq = |x: &Vec<f32>| x.iter().map(|&v| to_fixed(v)).collect::<Vec<_>>();
            let fixed = linear_attention_fixed(&fq(&q), &fq(&k), &fq(&v), d, e, n, masked.then_some(&anchors[..]));
            let worst = float.iter().zip(&fixed).map(|(a, &b)| (a - to_float(b)).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-3, "integer attention off by {worst} (masked {masked})");
        }
    }

    #[test]
    fn output_is_a_convex_combination_of_values() {
        // One key: every query gets exactly that key's value.
        let (d, e, n) = (2, 2, 3);
        let q = vec![100, -5, 7, 0, 0, 4096];
        let k = vec![1, 2, 3, 4, 5, 6];
        let v = vec![10, 20, 30, -40, -50, -60];
        let out = linear_attention_fixed(&q, &k, &v, d, e, n, Some(&[1]));
        assert_eq!(out, vec![20, 20, 20, -50, -50, -50]);
        assert_eq!(round_div(5, 2), 3);
        assert_eq!(round_div(-5, 2), -2);
        assert_eq!(round_div(7, 0), 0);
    }
}
