//! Encode-time latent refinement: streams stay standard streams, the encoder is deterministic,
//! and the stream kept is never worse than the plain encoder's in real λ·MSE + bpp.

mod common;

use common::{tempdir, test_image, tiny_weights};
use image::RgbImage;
use ncodec::codec::Codec;
use ncodec::container::Container;
use ncodec::models::Architecture;
use ncodec::refine::Refinement;

/// The search draws its noise from the backend's process-wide generator, as does building a
/// tiny model: these tests run one at a time so neither disturbs the other.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Real rate-distortion cost of a stream: λ·255²·MSE of its 8-bit decoded pixels + bpp.
fn cost(codec: &Codec, img: &RgbImage, bytes: &[u8], lambda: f64) -> f64 {
    let decoded = codec.decode(&Container::parse(bytes).unwrap()).unwrap();
    lambda * 255.0 * 255.0 * ncodec::metrics::mse(img, &decoded) + bytes.len() as f64 * 8.0 / (img.width() * img.height()) as f64
}

#[test]
fn refined_streams_decode_with_the_plain_decoder_and_cost_no_more() {
    let _serial = serial();
    let dir = tempdir();
    // Not a multiple of 64: the loss must ignore the padding the decoder crops away.
    let img = test_image(100, 70, 3);
    for arch in [Architecture::Factorized, Architecture::ScaleHyperprior, Architecture::MeanScaleHyperprior, Architecture::MultiReference] {
        let weights = tiny_weights(dir.path(), arch, 11);
        let encoder = Codec::from_weights(arch.name(), &weights).unwrap();
        let decoder = Codec::from_weights(arch.name(), &weights).unwrap();
        for quality in [1u8, 3] {
            let lambda = [0.001, 0.01, 0.1][quality as usize - 1];
            let plain = encoder.encode(&img, quality).unwrap();
            let refined = encoder.encode_refined(&img, quality, Refinement::steps(12)).unwrap();
            let again = encoder.encode_refined(&img, quality, Refinement::steps(12)).unwrap();
            assert_eq!(refined, again, "{arch:?} q{quality}: the refining encoder is deterministic");
            let (c_plain, c_refined) = (cost(&decoder, &img, &plain, lambda), cost(&decoder, &img, &refined, lambda));
            assert!(c_refined <= c_plain, "{arch:?} q{quality}: refined cost {c_refined} > plain {c_plain}");
            // A fresh decoder reads the refined stream to the same pixels as the encoder's own.
            let c = Container::parse(&refined).unwrap();
            assert_eq!(decoder.decode(&c).unwrap(), encoder.decode(&c).unwrap());
        }
    }
}

#[test]
fn refinement_lowers_the_real_cost_of_the_shipped_codecs() {
    let _serial = serial();
    // The shipped g_a is an amortised guess: a search on one image must beat it measurably,
    // summed over three quality levels (at one level the plain stream may already be best, and
    // is then kept).
    let img = ncodec::synthetic::scene(192, 128);
    for name in ["mean-scale", "mlic"] {
        let codec = Codec::load(name).unwrap();
        let lambdas = &codec.card.as_ref().unwrap().training.lambdas;
        let (mut plain, mut refined) = (0.0, 0.0);
        for quality in [2u8, 4, 6] {
            let lambda = lambdas[quality as usize - 1];
            let p = cost(&codec, &img, &codec.encode(&img, quality).unwrap(), lambda);
            let r = cost(&codec, &img, &codec.encode_refined(&img, quality, Refinement::steps(20)).unwrap(), lambda);
            eprintln!("{name} q{quality}: cost {p:.4} -> {r:.4} ({:+.2} %)", 100.0 * (r / p - 1.0));
            assert!(r <= p);
            (plain, refined) = (plain + p, refined + r);
        }
        // mean-scale: -1.8/-2.4/-8.8 %. The end-to-end fine-tuned mlic (8100 steps) gains little
        // on this generated scene (-0.2 % at q6 only; -2.4 % on a training photo at q4), so it
        // is held to "never worse" above.
        if name == "mean-scale" {
            assert!(refined < 0.99 * plain, "{name}: refinement should lower the real cost by > 1 %: {plain} -> {refined}");
        }
    }
}

#[test]
fn refinement_needs_a_continuous_latent() {
    let _serial = serial();
    let vq = ncodec::fuzzing::tiny_codec(Architecture::Vq);
    let err = vq.encode_refined(&test_image(64, 64, 1), 1, Refinement::steps(2)).unwrap_err().to_string();
    assert!(err.contains("continuous latent"), "{err}");
    // Zero steps is the plain encoder.
    let ms = ncodec::fuzzing::tiny_codec(Architecture::MeanScaleHyperprior);
    let img = test_image(64, 64, 1);
    assert_eq!(ms.encode_refined(&img, 1, Refinement::steps(0)).unwrap(), ms.encode(&img, 1).unwrap());
}
