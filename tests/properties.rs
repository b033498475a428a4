//! Property tests (proptest): round trips at random sizes for every architecture, bit flips
//! that never panic, and the explicit conversion of grayscale and RGBA inputs.

use image::{GrayImage, Rgb, RgbImage, RgbaImage};
use ncodec::container::Container;
use ncodec::fuzzing::{ARCHITECTURES, tiny_codec};
use proptest::prelude::*;

fn image(w: u32, h: u32, seed: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let n = (x.wrapping_mul(2654435761) ^ y.wrapping_mul(40503) ^ seed) >> 24;
        Rgb([(x * 7 + n) as u8, (y * 5) as u8 ^ seed as u8, n as u8])
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    /// 1x1 up to odd sizes: the stream decodes to the input's size, and encoding and
    /// decoding are repeatable to the byte and the pixel.
    #[test]
    fn round_trips_at_any_size(w in 1u32..70, h in 1u32..70, seed in any::<u32>(), arch in 0usize..4, q in 1u8..=3) {
        let codec = tiny_codec(ARCHITECTURES[arch]);
        let img = image(w, h, seed);
        let bytes = codec.encode(&img, q).unwrap();
        prop_assert_eq!(&bytes, &codec.encode(&img, q).unwrap());
        let c = Container::parse(&bytes).unwrap();
        prop_assert_eq!((c.header.width, c.header.height, c.header.quality), (w, h, q));
        let dec = codec.decode(&c).unwrap();
        prop_assert_eq!(dec.dimensions(), (w, h));
        prop_assert_eq!(dec, codec.decode(&c).unwrap());
    }

    /// Random bit flips anywhere (checksum re-sealed or not) give an error or an image, never
    /// a panic.
    #[test]
    fn bit_flips_never_panic(w in 1u32..40, h in 1u32..40, arch in 0usize..4, flips in proptest::collection::vec(any::<usize>(), 1..6)) {
        let codec = tiny_codec(ARCHITECTURES[arch]);
        let mut bytes = codec.encode(&image(w, h, 9), 2).unwrap();
        for f in flips {
            let bit = f % (bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
        }
        if let Ok(c) = Container::parse(&bytes) {
            let _ = codec.decode(&c);
        }
        if let Ok(c) = Container::parse_ignoring_checksum(&bytes) {
            let _ = codec.decode(&c);
        }
    }

    /// Grayscale is replicated to R = G = B; RGBA drops alpha (no compositing): the colour
    /// channels are coded as they are.
    #[test]
    fn gray_and_rgba_inputs_convert_explicitly(w in 1u32..20, h in 1u32..20, v in any::<u8>(), rgba in any::<[u8; 4]>()) {
        let mut png = Vec::new();
        GrayImage::from_pixel(w, h, image::Luma([v])).write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
        let gray = ncodec::io::decode_image(&png).unwrap();
        prop_assert!(gray.pixels().all(|p| p.0 == [v, v, v]));
        let mut png = Vec::new();
        RgbaImage::from_pixel(w, h, image::Rgba(rgba)).write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
        let rgb = ncodec::io::decode_image(&png).unwrap();
        prop_assert!(rgb.pixels().all(|p| p.0 == [rgba[0], rgba[1], rgba[2]]));
    }
}
