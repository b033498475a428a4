//! The training backend's transposed convolution against a direct implementation: forward
//! values and gradients (finite differences). A wrong kernel would silently cripple training.

use burn::prelude::*;
use burn::tensor::module::conv_transpose2d;
use burn::tensor::ops::ConvTransposeOptions;

fn lcg(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect()
}

/// out[o, y, x] = sum_{i,ky,kx} in[i, iy, ix] * w[i, o, ky, kx] where y = iy*s - p + ky.
#[allow(clippy::too_many_arguments)] // the transposed convolution's own parameters, spelled out
fn naive(inp: &[f32], w: &[f32], cin: usize, cout: usize, h: usize, wd: usize, k: usize, s: usize, p: usize, op: usize) -> (Vec<f32>, usize, usize) {
    let (oh, ow) = ((h - 1) * s + k - 2 * p + op, (wd - 1) * s + k - 2 * p + op);
    let mut out = vec![0f32; cout * oh * ow];
    for i in 0..cin {
        for iy in 0..h {
            for ix in 0..wd {
                let v = inp[(i * h + iy) * wd + ix];
                for o in 0..cout {
                    for ky in 0..k {
                        for kx in 0..k {
                            let y = (iy * s + ky) as isize - p as isize;
                            let x = (ix * s + kx) as isize - p as isize;
                            if y >= 0 && x >= 0 && (y as usize) < oh && (x as usize) < ow {
                                out[(o * oh + y as usize) * ow + x as usize] += v * w[((i * cout + o) * k + ky) * k + kx];
                            }
                        }
                    }
                }
            }
        }
    }
    (out, oh, ow)
}

#[test]
fn conv_transpose2d_forward_and_gradient() {
    check(3, 2, 4, 5, 1, 7);
    check(24, 16, 6, 7, 2, 97);
}

fn check(cin: usize, cout: usize, h: usize, wd: usize, batch: usize, stride_w: usize) {
    let (k, s, p, op) = (5, 2, 2, 1);
    let device = ncodec::backend::device().autodiff();
    let inp_all = lcg(batch * cin * h * wd, 1);
    let w = lcg(cin * cout * k * k, 2);
    let per = cin * h * wd;
    let (_, oh, ow) = naive(&inp_all[..per], &w, cin, cout, h, wd, k, s, p, op);
    let want: Vec<f32> = (0..batch).flat_map(|b| naive(&inp_all[b * per..(b + 1) * per], &w, cin, cout, h, wd, k, s, p, op).0).collect();
    let r = lcg(batch * cout * oh * ow, 3);
    let x = Tensor::<4>::from_data(TensorData::new(inp_all.clone(), [batch, cin, h, wd]), &device).require_grad();
    let wt = Tensor::<4>::from_data(TensorData::new(w.clone(), [cin, cout, k, k]), &device).require_grad();
    let opts = ConvTransposeOptions::new([s, s], [p, p], [op, op], [1, 1], 1);
    let out = conv_transpose2d(x.clone(), wt.clone(), None, opts);
    assert_eq!(out.dims(), [batch, cout, oh, ow]);
    let got = ncodec::nn::to_host(out.clone());
    for (a, b) in got.iter().zip(&want) {
        assert!((a - b).abs() < 1e-4, "forward {a} vs {b}");
    }
    let rt = Tensor::<4>::from_data(TensorData::new(r.clone(), [batch, cout, oh, ow]), &device);
    let loss = (out * rt).sum();
    let grads = loss.backward();
    let gw = ncodec::nn::to_host(wt.grad(&grads).unwrap());
    let gx = ncodec::nn::to_host(x.grad(&grads).unwrap());
    let objective = |inp: &[f32], w: &[f32]| -> f64 {
        let o: Vec<f32> = (0..batch).flat_map(|b| naive(&inp[b * per..(b + 1) * per], w, cin, cout, h, wd, k, s, p, op).0).collect();
        o.iter().zip(&r).map(|(a, b)| *a as f64 * *b as f64).sum()
    };
    let inp = inp_all;
    let eps = 1e-2f32;
    for idx in (0..w.len()).step_by(stride_w) {
        let (mut a, mut b) = (w.clone(), w.clone());
        a[idx] += eps;
        b[idx] -= eps;
        let fd = (objective(&inp, &a) - objective(&inp, &b)) / (2.0 * eps as f64);
        assert!((gw[idx] as f64 - fd).abs() < 1e-3, "dW[{idx}] {} vs {fd}", gw[idx]);
    }
    for idx in (0..inp.len()).step_by(stride_w / 7 + 1) {
        let (mut a, mut b) = (inp.clone(), inp.clone());
        a[idx] += eps;
        b[idx] -= eps;
        let fd = (objective(&a, &w) - objective(&b, &w)) / (2.0 * eps as f64);
        assert!((gx[idx] as f64 - fd).abs() < 1e-3, "dX[{idx}] {} vs {fd}", gx[idx]);
    }
}
