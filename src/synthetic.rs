//! A procedural photo-like scene, so demos, tests and benchmarks need no data set.

use image::RgbImage;

/// Sky gradient, a sun, two layers of hills, a striped field and fine texture.
pub fn scene(width: u32, height: u32) -> RgbImage {
    let (w, h) = (width.max(1) as f64, height.max(1) as f64);
    RgbImage::from_fn(width, height, |x, y| {
        let (u, v) = (x as f64 / w, y as f64 / h);
        let hash = ((x.wrapping_mul(2654435761) ^ y.wrapping_mul(2246822519)).wrapping_mul(3266489917) >> 24) as f64 / 255.0;
        let texture = (hash - 0.5) * 14.0;
        let far = 0.55 + 0.08 * (u * 9.0).sin() + 0.03 * (u * 31.0).sin();
        let near = 0.72 + 0.06 * (u * 5.0 + 1.0).sin();
        let (r, g, b) = if v > near {
            let stripe = ((u * 40.0 + v * 25.0).sin() * 0.5 + 0.5) * 40.0;
            (70.0 + stripe + texture, 120.0 + stripe * 0.5 + texture, 40.0 + texture)
        } else if v > far {
            (60.0 + 30.0 * v + texture * 0.6, 90.0 + 20.0 * u + texture * 0.6, 110.0 + texture * 0.6)
        } else {
            let d = ((u - 0.75).powi(2) + (v - 0.22).powi(2)).sqrt();
            let sun = if d < 0.07 { 120.0 } else { 40.0 * (-(d - 0.07) * 12.0).exp() };
            (110.0 + 90.0 * v + sun, 150.0 + 70.0 * v + sun * 0.9, 230.0 - 30.0 * v + sun * 0.3)
        };
        image::Rgb([r.clamp(0.0, 255.0) as u8, g.clamp(0.0, 255.0) as u8, b.clamp(0.0, 255.0) as u8])
    })
}
