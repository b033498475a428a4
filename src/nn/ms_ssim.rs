//! Differentiable MS-SSIM (Wang 2003) for training, matching [`crate::metrics::ms_ssim`]:
//! 11-tap Gaussian window (σ = 1.5), valid filtering, five scales with 2x2 average pooling,
//! computed per colour channel and averaged, data range 1.

use burn::prelude::*;
use burn::tensor::module::{avg_pool2d, conv2d};
use burn::tensor::ops::{AvgPoolOptions, ConvOptions};

const WEIGHTS: [f64; 5] = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333];
const WIN: usize = 11;
const SIGMA: f64 = 1.5;
const C1: f64 = 0.01 * 0.01;
const C2: f64 = 0.03 * 0.03;

/// Smallest side the five scales need (the last one must still hold an 11x11 window).
pub const MIN_SIDE: usize = (WIN - 1) * 16 + 1;

/// MS-SSIM per sample (`[B]`) of images `x`, `y` (`[B, C, H, W]`, values in [0, 1]).
pub fn ms_ssim(mut x: Tensor<4>, mut y: Tensor<4>) -> Tensor<1> {
    let [b, c, h, w] = x.dims();
    assert!(h >= MIN_SIDE && w >= MIN_SIDE, "MS-SSIM needs images of at least {MIN_SIDE}x{MIN_SIDE}");
    let device = x.device();
    let g: Vec<f32> = {
        let v: Vec<f64> = (0..WIN).map(|i| (-((i as f64 - 5.0).powi(2)) / (2.0 * SIGMA * SIGMA)).exp()).collect();
        let s: f64 = v.iter().sum();
        v.iter().map(|x| (x / s) as f32).collect()
    };
    let rows = Tensor::<4>::from_data(TensorData::new(g.repeat(c), [c, 1, 1, WIN]), &device);
    let cols = Tensor::<4>::from_data(TensorData::new(g.repeat(c), [c, 1, WIN, 1]), &device);
    let blur = |t: Tensor<4>| {
        let opts = || ConvOptions::new([1, 1], [0, 0], [1, 1], c);
        conv2d(conv2d(t, rows.clone(), None, opts()), cols.clone(), None, opts())
    };
    let mut result = Tensor::<2>::ones([b, c], &device);
    for (level, &weight) in WEIGHTS.iter().enumerate() {
        let (mx, my) = (blur(x.clone()), blur(y.clone()));
        let sxx = blur(x.clone() * x.clone()) - mx.clone() * mx.clone();
        let syy = blur(y.clone() * y.clone()) - my.clone() * my.clone();
        let sxy = blur(x.clone() * y.clone()) - mx.clone() * my.clone();
        let cs = (sxy * 2.0 + C2) / (sxx + syy + C2);
        let term = if level == WEIGHTS.len() - 1 {
            let l = (mx.clone() * my.clone() * 2.0 + C1) / (mx.powi_scalar(2) + my.powi_scalar(2) + C1);
            l * cs
        } else {
            cs
        };
        let mean = term.mean_dim(3).mean_dim(2).reshape([b, c]);
        // relu as in the metric; a floor keeps the power's gradient finite.
        result = result * mean.clamp_min(1e-6).powf_scalar(weight);
        if level < WEIGHTS.len() - 1 {
            let pool = || AvgPoolOptions::new([2, 2]);
            x = avg_pool2d(x, pool());
            y = avg_pool2d(y, pool());
        }
    }
    result.mean_dim(1).reshape([b])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{from_host, to_host};

    #[test]
    fn matches_the_metric() {
        let (w, h) = (176u32, 192u32);
        let a = crate::synthetic::scene(w, h);
        let bimg = image::RgbImage::from_fn(w, h, |x, y| {
            let p = a.get_pixel(x, y).0;
            image::Rgb([p[0].saturating_add(((x * 7 + y * 3) % 23) as u8), p[1] / 2 + 40, p[2]])
        });
        let device = crate::backend::device();
        let t = |im: &image::RgbImage| {
            let mut v = vec![0f32; 3 * (w * h) as usize];
            for (x, y, p) in im.enumerate_pixels() {
                for c in 0..3 {
                    v[(c * h as usize + y as usize) * w as usize + x as usize] = p.0[c] as f32 / 255.0;
                }
            }
            from_host(v, [1, 3, h as usize, w as usize], &device)
        };
        let got = to_host(ms_ssim(t(&a), t(&bimg)))[0] as f64;
        let want = crate::metrics::ms_ssim(&a, &bimg);
        assert!((got - want).abs() < 2e-3, "burn {got} vs metric {want}");
        assert!(want < 0.99);
    }
}
