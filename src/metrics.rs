//! Image quality metrics on 8-bit RGB (CompressAI's convention: computed per image, on the
//! decoded 8-bit output, then averaged over images by the caller).

use image::RgbImage;

/// PSNR in dB over all RGB samples (peak 255). Identical images give +inf.
pub fn psnr(a: &RgbImage, b: &RgbImage) -> f64 {
    -10.0 * mse(a, b).log10()
}

/// Mean squared error over all RGB samples, on samples scaled to [0, 1] (the training loss's
/// scale: λ·255²·MSE).
pub fn mse(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let se: u64 = a.as_raw().iter().zip(b.as_raw()).map(|(&x, &y)| (x as i64 - y as i64).pow(2) as u64).sum();
    se as f64 / a.as_raw().len() as f64 / (255.0 * 255.0)
}

/// Smallest image side for which 5-scale MS-SSIM is defined.
pub const MS_SSIM_MIN_SIDE: u32 = 161;

/// Multi-scale SSIM (Wang, Simoncelli, Bovik 2003) on RGB, averaged over channels: 5 scales
/// with the standard weights, 11-tap Gaussian window (σ = 1.5), valid filtering, 2x2 average
/// pooling between scales (zero-padded on odd sizes, like pytorch-msssim). Images must be at
/// least [`MS_SSIM_MIN_SIDE`] pixels on each side (the window must fit at the coarsest scale);
/// for smaller images it is undefined and this returns NaN.
pub fn ms_ssim(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    if a.width().min(a.height()) < MS_SSIM_MIN_SIDE {
        return f64::NAN;
    }
    let (w, h) = (a.width() as usize, a.height() as usize);
    let mut total = 0.0;
    for c in 0..3 {
        let pa: Vec<f64> = a.pixels().map(|p| p.0[c] as f64).collect();
        let pb: Vec<f64> = b.pixels().map(|p| p.0[c] as f64).collect();
        total += ms_ssim_plane(pa, pb, w, h);
    }
    total / 3.0
}

const WEIGHTS: [f64; 5] = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333];
const WIN: usize = 11;
const SIGMA: f64 = 1.5;

fn ms_ssim_plane(mut a: Vec<f64>, mut b: Vec<f64>, mut w: usize, mut h: usize) -> f64 {
    let mut result = 1.0;
    for (level, &weight) in WEIGHTS.iter().enumerate() {
        let (ssim, cs) = ssim_cs(&a, &b, w, h);
        if level == WEIGHTS.len() - 1 {
            result *= ssim.max(0.0).powf(weight);
        } else {
            result *= cs.max(0.0).powf(weight);
            (a, _, _) = avg_pool2(&a, w, h);
            (b, w, h) = avg_pool2(&b, w, h);
        }
    }
    result
}

fn gaussian_window() -> [f64; WIN] {
    let mut g = [0.0; WIN];
    for (i, v) in g.iter_mut().enumerate() {
        let d = i as f64 - (WIN / 2) as f64;
        *v = (-d * d / (2.0 * SIGMA * SIGMA)).exp();
    }
    let s: f64 = g.iter().sum();
    g.map(|v| v / s)
}

/// Separable valid Gaussian filtering: output is (w-10)x(h-10).
fn filter(x: &[f64], w: usize, h: usize) -> Vec<f64> {
    let g = gaussian_window();
    let (ow, oh) = (w - WIN + 1, h - WIN + 1);
    let mut tmp = vec![0.0; ow * h];
    for y in 0..h {
        for x0 in 0..ow {
            tmp[y * ow + x0] = (0..WIN).map(|k| g[k] * x[y * w + x0 + k]).sum();
        }
    }
    let mut out = vec![0.0; ow * oh];
    for y0 in 0..oh {
        for x0 in 0..ow {
            out[y0 * ow + x0] = (0..WIN).map(|k| g[k] * tmp[(y0 + k) * ow + x0]).sum();
        }
    }
    out
}

/// Mean SSIM and mean contrast-structure term at one scale (data range 255).
fn ssim_cs(a: &[f64], b: &[f64], w: usize, h: usize) -> (f64, f64) {
    let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
    let mul = |p: &[f64], q: &[f64]| p.iter().zip(q).map(|(x, y)| x * y).collect::<Vec<_>>();
    let (mu_a, mu_b) = (filter(a, w, h), filter(b, w, h));
    let (s_aa, s_bb, s_ab) = (filter(&mul(a, a), w, h), filter(&mul(b, b), w, h), filter(&mul(a, b), w, h));
    let (mut ssim, mut cs) = (0.0, 0.0);
    for i in 0..mu_a.len() {
        let (ma, mb) = (mu_a[i], mu_b[i]);
        let va = s_aa[i] - ma * ma;
        let vb = s_bb[i] - mb * mb;
        let cov = s_ab[i] - ma * mb;
        let cs_i = (2.0 * cov + c2) / (va + vb + c2);
        cs += cs_i;
        ssim += (2.0 * ma * mb + c1) / (ma * ma + mb * mb + c1) * cs_i;
    }
    let n = mu_a.len() as f64;
    (ssim / n, cs / n)
}

/// 2x2 average pooling, stride 2; odd sizes get one zero row/column of padding on each side
/// counted in the average (PyTorch `avg_pool2d(kernel 2, padding = size % 2)`).
fn avg_pool2(x: &[f64], w: usize, h: usize) -> (Vec<f64>, usize, usize) {
    let (px, py) = (w % 2, h % 2);
    let (ow, oh) = ((w + 2 * px - 2) / 2 + 1, (h + 2 * py - 2) / 2 + 1);
    let at = |xx: isize, yy: isize| -> f64 { if xx < 0 || yy < 0 || xx >= w as isize || yy >= h as isize { 0.0 } else { x[yy as usize * w + xx as usize] } };
    let mut out = vec![0.0; ow * oh];
    for y in 0..oh {
        for xo in 0..ow {
            let (x0, y0) = ((2 * xo) as isize - px as isize, (2 * y) as isize - py as isize);
            out[y * ow + xo] = (at(x0, y0) + at(x0 + 1, y0) + at(x0, y0 + 1) + at(x0 + 1, y0 + 1)) / 4.0;
        }
    }
    (out, ow, oh)
}

/// Luma and YUV-weighted PSNR, as video papers report them: RGB → Y'CbCr with the BT.709
/// matrix, full range, in floating point (no rounding), peak 255 on every plane. Returns
/// (PSNR-Y, (6·PSNR-Y + PSNR-U + PSNR-V) / 8).
pub fn psnr_yuv(a: &RgbImage, b: &RgbImage) -> (f64, f64) {
    assert_eq!(a.dimensions(), b.dimensions());
    let mut se = [0.0f64; 3];
    for (p, q) in a.pixels().zip(b.pixels()) {
        let (ya, ua, va) = ycbcr_bt709(p.0);
        let (yb, ub, vb) = ycbcr_bt709(q.0);
        se[0] += (ya - yb).powi(2);
        se[1] += (ua - ub).powi(2);
        se[2] += (va - vb).powi(2);
    }
    let n = a.width() as f64 * a.height() as f64;
    let db = |s: f64| 10.0 * (255.0f64 * 255.0 / (s / n)).log10();
    let (y, u, v) = (db(se[0]), db(se[1]), db(se[2]));
    (y, (6.0 * y + u + v) / 8.0)
}

/// Full-range BT.709 Y'CbCr of one 8-bit RGB pixel (chroma centred on 128).
pub fn ycbcr_bt709([r, g, b]: [u8; 3]) -> (f64, f64, f64) {
    let (r, g, b) = (r as f64, g as f64, b as f64);
    let y = 0.2126 * r + 0.7152 * g + 0.0722 * b;
    (y, (b - y) / 1.8556 + 128.0, (r - y) / 1.5748 + 128.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise_image(w: u32, h: u32, seed: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let v = (x.wrapping_mul(73856093) ^ y.wrapping_mul(19349663) ^ seed.wrapping_mul(83492791)) >> 7;
            image::Rgb([(v & 255) as u8, ((v >> 8) & 255) as u8, ((x + y) & 255) as u8])
        })
    }

    #[test]
    fn identical_images() {
        let a = noise_image(200, 180, 1);
        assert!(psnr(&a, &a).is_infinite());
        assert!((ms_ssim(&a, &a) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn ms_ssim_is_nan_below_its_smallest_side() {
        let a = RgbImage::from_fn(MS_SSIM_MIN_SIDE, 96, |x, y| image::Rgb([(x % 251) as u8, (y * 3 % 256) as u8, 7]));
        assert!(ms_ssim(&a, &a).is_nan());
        let b = RgbImage::from_fn(MS_SSIM_MIN_SIDE, MS_SSIM_MIN_SIDE, |x, y| image::Rgb([(x % 251) as u8, (y * 3 % 256) as u8, 7]));
        assert!((ms_ssim(&b, &b) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn psnr_of_known_error() {
        let a = RgbImage::from_pixel(8, 8, image::Rgb([100, 100, 100]));
        let b = RgbImage::from_pixel(8, 8, image::Rgb([110, 100, 100]));
        // MSE = 100/3 over all samples.
        let want = 10.0 * (255.0f64.powi(2) / (100.0 / 3.0)).log10();
        assert!((psnr(&a, &b) - want).abs() < 1e-12);
    }

    #[test]
    fn ms_ssim_decreases_with_distortion() {
        let a = noise_image(256, 200, 2);
        let mild = RgbImage::from_fn(256, 200, |x, y| {
            let p = a.get_pixel(x, y).0;
            image::Rgb([p[0].saturating_add(3), p[1], p[2]])
        });
        let other = noise_image(256, 200, 3);
        let (m1, m2) = (ms_ssim(&a, &mild), ms_ssim(&a, &other));
        assert!(m1 < 1.0 && m1 > 0.9, "{m1}");
        assert!(m2 < m1, "{m2} vs {m1}");
    }

    #[test]
    fn pooling_matches_definition_on_odd_sizes() {
        let x: Vec<f64> = (0..15).map(|v| v as f64).collect(); // 5x3
        let (p, w, h) = avg_pool2(&x, 5, 3);
        assert_eq!((w, h), (3, 2));
        // top-left window covers padding (-1,-1)..(0,0): only x[0] = 0 is inside.
        assert_eq!(p[0], 0.0);
        // window at x in {1,2}, y in {-1,0}: (1 + 2) / 4
        assert_eq!(p[1], 0.75);
    }
}
