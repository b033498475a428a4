//! Metrics and BD-rate against values computed independently by `scripts/fixtures.py`
//! (numpy/scipy: a transcription of pytorch-msssim, and SciPy's PCHIP + quad integration).

use image::RgbImage;
use ncodec::bdrate::{bd_quality, bd_rate};
use ncodec::metrics::{ms_ssim, psnr};

/// The same pair as `image_pair` in scripts/fixtures.py.
fn image_pair(w: u32, h: u32) -> (RgbImage, RgbImage) {
    let refv = |x: u32, y: u32, c: u32| ((x * 7 + y * 13 + c * 29) % 256) as i32;
    let dist = |x: u32, y: u32, c: u32| {
        let noise = ((x * y + 3 * c) % 7) as i32 - 3;
        let blur = (((x / 4 + y / 4 + c) % 5) * 2) as i32;
        (refv(x, y, c) + noise + blur).clamp(0, 255)
    };
    let a = RgbImage::from_fn(w, h, |x, y| image::Rgb([0, 1, 2].map(|c| refv(x, y, c) as u8)));
    let b = RgbImage::from_fn(w, h, |x, y| image::Rgb([0, 1, 2].map(|c| dist(x, y, c) as u8)));
    (a, b)
}

#[test]
fn psnr_and_ms_ssim_match_the_reference() {
    for (w, h, want_psnr, want_msssim) in [(256, 200, 33.704217957093, 0.998700202781), (181, 163, 33.709793586548, 0.999146920084)] {
        let (a, b) = image_pair(w, h);
        let (p, m) = (psnr(&a, &b), ms_ssim(&a, &b));
        assert!((p - want_psnr).abs() < 1e-9, "{w}x{h} psnr {p} vs {want_psnr}");
        assert!((m - want_msssim).abs() < 1e-9, "{w}x{h} ms-ssim {m} vs {want_msssim}");
    }
}

#[test]
fn bd_rate_matches_scipy() {
    let jpeg = [(0.2578, 26.664), (0.4505, 29.144), (0.6101, 30.491), (0.7433, 31.422), (0.8692, 32.174), (1.0049, 32.908)];
    let test = [(0.21, 27.9), (0.33, 29.8), (0.52, 31.9), (0.80, 34.1), (1.12, 35.9)];
    let r = bd_rate(&jpeg, &test).unwrap();
    let q = bd_quality(&jpeg, &test).unwrap();
    assert!((r - -36.996525737475).abs() < 1e-6, "bd-rate {r}");
    assert!((q - 2.164761610629).abs() < 1e-8, "bd-psnr {q}");
}
