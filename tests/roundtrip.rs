//! Library-level round trips for every architecture, on generated images.

mod common;

use common::{test_image, tiny_weights};
use ncodec::Codec;
use ncodec::container::Container;
use ncodec::models::Architecture;

const ARCHS: [Architecture; 4] = [Architecture::Factorized, Architecture::ScaleHyperprior, Architecture::MeanScaleHyperprior, Architecture::MultiReference];

#[test]
fn every_architecture_round_trips_deterministically() {
    let dir = common::tempdir();
    for arch in ARCHS {
        let codec = Codec::from_weights(arch.name(), &tiny_weights(dir.path(), arch, 3)).unwrap();
        // Odd sizes exercise the padding and cropping.
        for (w, h) in [(100, 70), (64, 64), (1, 1), (130, 3)] {
            let img = test_image(w, h, 5);
            for q in 1..=codec.qualities() {
                let bytes = codec.encode(&img, q).unwrap();
                assert_eq!(bytes, codec.encode(&img, q).unwrap(), "{arch:?}: encoding is not deterministic");
                let c = Container::parse(&bytes).unwrap();
                assert_eq!((c.header.width, c.header.height, c.header.quality), (w, h, q));
                let out = codec.decode(&c).unwrap();
                assert_eq!(out.dimensions(), (w, h));
                assert_eq!(out, codec.decode(&Container::parse(&bytes).unwrap()).unwrap(), "{arch:?}: decoding is not deterministic");
            }
        }
    }
}

/// The decoder rebuilds exactly the latent the encoder coded (for the multi-reference model:
/// every slice, both checkerboard passes, from the decoder's own references).
#[test]
fn decoded_latent_equals_encoded_latent() {
    let dir = common::tempdir();
    for arch in ARCHS {
        let codec = Codec::from_weights(arch.name(), &tiny_weights(dir.path(), arch, 6)).unwrap();
        for (w, h, q) in [(150, 90, 1), (64, 200, 3), (17, 5, 2)] {
            let (bytes, y_enc) = codec.encode_with_latent(&test_image(w, h, q as u32), q).unwrap();
            let y_dec = codec.decode_latent(&Container::parse(&bytes).unwrap()).unwrap();
            assert_eq!(y_enc, y_dec, "{arch:?} {w}x{h} q{q}: decoder's latent differs from the encoder's");
        }
    }
}

#[test]
fn decoder_matches_encoder_reconstruction_across_instances() {
    // Decoding in a fresh codec instance (fresh network, fresh tables) gives the same pixels:
    // nothing the decoder uses comes from the encoder's floating-point state.
    let dir = common::tempdir();
    let w = tiny_weights(dir.path(), Architecture::MeanScaleHyperprior, 4);
    let img = test_image(96, 80, 1);
    let bytes = Codec::from_weights("mean-scale", &w).unwrap().encode(&img, 2).unwrap();
    let a = Codec::from_weights("mean-scale", &w).unwrap().decode(&Container::parse(&bytes).unwrap()).unwrap();
    let b = Codec::from_weights("mean-scale", &w).unwrap().decode(&Container::parse(&bytes).unwrap()).unwrap();
    assert_eq!(a, b);
}

#[test]
fn streams_from_other_weights_are_refused() {
    let dir = common::tempdir();
    let a = Codec::from_weights("mean-scale", &tiny_weights(dir.path(), Architecture::MeanScaleHyperprior, 1)).unwrap();
    let b = Codec::from_weights("mean-scale", &tiny_weights(dir.path(), Architecture::MeanScaleHyperprior, 2)).unwrap();
    let bytes = a.encode(&test_image(64, 64, 0), 1).unwrap();
    let err = b.decode(&Container::parse(&bytes).unwrap()).unwrap_err().to_string();
    assert!(err.contains("other"), "{err}");
    let other_codec = Codec::from_weights("factorized", &tiny_weights(dir.path(), Architecture::Factorized, 1)).unwrap();
    assert!(other_codec.decode(&Container::parse(&bytes).unwrap()).is_err());
}

#[test]
fn corrupt_streams_error_without_panicking() {
    let dir = common::tempdir();
    for arch in ARCHS {
        let codec = Codec::from_weights(arch.name(), &tiny_weights(dir.path(), arch, 7)).unwrap();
        let bytes = codec.encode(&test_image(80, 72, 2), 2).unwrap();
        let decode = |b: &[u8]| Container::parse(b).and_then(|c| codec.decode(&c));
        assert!(decode(&[]).is_err());
        for n in (0..bytes.len()).step_by(7) {
            assert!(decode(&bytes[..n]).is_err(), "{arch:?}: truncation at {n} accepted");
        }
        // Flips in the payload are caught by the CRC; flips in the header by validation.
        for i in (0..bytes.len()).step_by(5) {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            let _ = decode(&b);
        }
        // A valid container around garbage payload: the range decoder must not panic.
        let mut c = Container::parse(&bytes).unwrap();
        for s in c.sections.iter_mut() {
            s.iter_mut().enumerate().for_each(|(i, v)| *v = (i as u8).wrapping_mul(151) ^ 0x5a);
        }
        let _ = codec.decode(&c);
    }
}

#[test]
fn bad_geometry_and_quality_are_refused() {
    let dir = common::tempdir();
    let codec = Codec::from_weights("mean-scale", &tiny_weights(dir.path(), Architecture::MeanScaleHyperprior, 1)).unwrap();
    assert!(codec.encode(&image::RgbImage::new(0, 0), 1).is_err());
    assert!(codec.encode(&image::RgbImage::new(5, 0), 1).is_err());
    assert!(codec.encode(&test_image(8, 8, 0), 0).is_err());
    assert!(codec.encode(&test_image(8, 8, 0), codec.qualities() + 1).is_err());
    assert!(ncodec::io::check_dimensions(20000, 10).is_err());
    assert!(ncodec::io::check_dimensions(8192, 8192).is_err());
    // A huge-dimension PNG header is refused before its pixels are allocated.
    let chunk = |kind: &[u8], data: &[u8]| {
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        c.extend_from_slice(kind);
        c.extend_from_slice(data);
        c.extend_from_slice(&crc32fast::hash(&[kind, data].concat()).to_be_bytes());
        c
    };
    let mut ihdr = 100_000u32.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    let png = [b"\x89PNG\r\n\x1a\n".to_vec(), chunk(b"IHDR", &ihdr), chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00]), chunk(b"IEND", &[])].concat();
    let err = ncodec::io::decode_image(&png).unwrap_err().to_string();
    assert!(err.contains("100000x100000"), "{err}");
}

#[test]
fn weight_files_reject_corruption() {
    let dir = common::tempdir();
    let path = tiny_weights(dir.path(), Architecture::ScaleHyperprior, 1);
    let bytes = std::fs::read(&path).unwrap();
    let device = ncodec::backend::device();
    assert!(ncodec::weights::from_bytes(&bytes, &device).is_ok());
    for n in [0, 3, 10, bytes.len() / 2, bytes.len() - 1] {
        assert!(ncodec::weights::from_bytes(&bytes[..n], &device).is_err(), "truncated at {n}");
    }
    let mut extra = bytes.clone();
    extra.push(0);
    assert!(ncodec::weights::from_bytes(&extra, &device).is_err());
}

/// A model with residual transforms (and one with an auxiliary linear path beside them) saves,
/// loads and codes like the others; a weight file
/// whose header claims transforms its tensors do not have is refused, as is an unknown kind.
#[test]
fn residual_transforms_round_trip_and_headers_are_checked() {
    use ncodec::models::{ModelConfig, Transforms};
    use ncodec::weights::{self, Precision};
    let dir = common::tempdir();
    let device = ncodec::backend::device();
    device.seed(8);
    let img = test_image(90, 70, 2);
    let mut sizes = Vec::new();
    for transforms in [Transforms::GdnResidualAuxT, Transforms::GdnResidual] {
        let config = ModelConfig { architecture: Architecture::MultiReference, n: 8, m: 12, lambdas: vec![0.003, 0.03], vq: None, transforms };
        let model = config.init(&device);
        let path = dir.path().join("residual.ncw");
        weights::save(&path, &config, &model, &model.export_tables(), Precision::F16).unwrap();
        sizes.push(std::fs::metadata(&path).unwrap().len());
        assert_eq!(weights::load(&path, &device).unwrap().config.transforms, transforms);
        let codec = Codec::from_weights("mlic", &path).unwrap();
        for q in 1..=2 {
            let (bytes, y_enc) = codec.encode_with_latent(&img, q).unwrap();
            let c = Container::parse(&bytes).unwrap();
            assert_eq!(codec.decode_latent(&c).unwrap(), y_enc);
            assert_eq!(codec.decode(&c).unwrap().dimensions(), (90, 70));
        }
    }
    assert!(sizes[0] > sizes[1], "the auxiliary path's weights are in the file");
    let path = dir.path().join("residual.ncw");

    // Rewrites the JSON header of a weight file.
    let with_header = |bytes: &[u8], edit: &dyn Fn(String) -> String| {
        let len = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
        let header = edit(String::from_utf8(bytes[8..8 + len].to_vec()).unwrap());
        [&bytes[..4], &(header.len() as u32).to_le_bytes()[..], header.as_bytes(), &bytes[8 + len..]].concat()
    };
    let residual = std::fs::read(&path).unwrap();
    assert!(weights::from_bytes(&residual, &device).is_ok());
    let unknown = with_header(&residual, &|h| h.replace("gdn-residual", "gdn-transformer"));
    assert!(weights::from_bytes(&unknown, &device).is_err(), "unknown transforms");
    let claims_aux = with_header(&residual, &|h| h.replace("gdn-residual", "gdn-residual-auxt"));
    assert!(weights::from_bytes(&claims_aux, &device).is_err(), "header claims an auxiliary path the file lacks");
    let gdn = std::fs::read(tiny_weights(dir.path(), Architecture::MultiReference, 8)).unwrap();
    let claims_residual = with_header(&gdn, &|h| h.replacen("\"lambdas\"", "\"transforms\":\"gdn-residual\",\"lambdas\"", 1));
    assert_ne!(claims_residual, gdn);
    assert!(weights::from_bytes(&claims_residual, &device).is_err(), "header claims stages the file lacks");
}
