//! Augmentations against torchvision's tensor ops (scripts/make_augment_fixtures.py), and the
//! statistics of the random parameters.

use std::collections::HashMap;
use std::path::PathBuf;

use rho_data::augment::{AugmentConfig, ClipPixels, ColorOp, CropBox};
use rho_data::rng::{stream, Purpose};
use safetensors::SafeTensors;

/// name → (shape, values)
fn fixture() -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let p =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/augment.safetensors");
    let bytes = std::fs::read(p).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(k, v)| {
            let data = v
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (k, (v.shape().to_vec(), data))
        })
        .collect()
}

/// [T, 3, H, W] → [T, H, W, 3]
fn to_hwc(shape: &[usize], v: &[f32]) -> ClipPixels {
    let (t, h, w) = (shape[0], shape[2], shape[3]);
    let mut out = vec![0f32; v.len()];
    for f in 0..t {
        for c in 0..3 {
            for y in 0..h {
                for x in 0..w {
                    out[((f * h + y) * w + x) * 3 + c] = v[((f * 3 + c) * h + y) * w + x];
                }
            }
        }
    }
    ClipPixels::new(t, h, w, out)
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn colour_ops_match_torchvision() {
    let fx = fixture();
    let (shape, clip) = &fx["clip"];
    for (name, op) in [
        ("brightness", Some(ColorOp::Brightness(1.3))),
        ("contrast", Some(ColorOp::Contrast(0.6))),
        ("saturation", Some(ColorOp::Saturation(1.5))),
        ("hue", Some(ColorOp::Hue(0.12))),
        ("grayscale", None),
    ] {
        let mut c = to_hwc(shape, clip);
        match op {
            Some(op) => c.apply_color(op),
            None => c.grayscale(),
        }
        let want = to_hwc(shape, &fx[name].1);
        let d = max_diff(&c.data, &want.data);
        assert!(d < 1e-5, "{name}: max |Δ| {d}");
    }
}

#[test]
fn crop_and_bilinear_resize_match_torchvision() {
    let fx = fixture();
    let (shape, clip) = &fx["clip"];
    let c = to_hwc(shape, clip);
    let b = CropBox {
        top: 2,
        left: 3,
        height: 7,
        width: 9,
    };
    let ours = c.crop_resize_normalize(b, 8, false, 0.0, 1.0); // [3, T, 8, 8]
    let (_, want) = &fx["crop"]; // [T, 3, 8, 8]
    let t = shape[0];
    let mut want_cf = vec![0f32; want.len()];
    for f in 0..t {
        for ch in 0..3 {
            for i in 0..64 {
                want_cf[(ch * t + f) * 64 + i] = want[(f * 3 + ch) * 64 + i];
            }
        }
    }
    assert!(max_diff(&ours, &want_cf) < 1e-5);
    // Flip mirrors each row; normalisation is (x − 0.45) / 0.225.
    let flipped = c.crop_resize_normalize(b, 8, true, 0.45, 0.225);
    for row in 0..3 * t * 8 {
        for x in 0..8 {
            let a = flipped[row * 8 + x];
            let b = (ours[row * 8 + 7 - x] - 0.45) / 0.225;
            assert!((a - b).abs() < 1e-5);
        }
    }
}

#[test]
fn blur_keeps_constants_and_mass() {
    let mut c = ClipPixels::new(1, 9, 11, vec![0.25; 9 * 11 * 3]);
    c.blur(1.5);
    assert!(c.data.iter().all(|v| (v - 0.25).abs() < 1e-6));
    let mut impulse = vec![0f32; 21 * 21 * 3];
    impulse[(10 * 21 + 10) * 3] = 1.0;
    let mut c = ClipPixels::new(1, 21, 21, impulse);
    c.blur(1.0);
    let red: Vec<f32> = c.data.chunks_exact(3).map(|p| p[0]).collect();
    assert!((red.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    // Gaussian profile: centre / one pixel away = exp(1/2) per axis.
    let ratio = red[10 * 21 + 10] / red[10 * 21 + 11];
    assert!((ratio - 0.5f32.exp()).abs() < 1e-3, "{ratio}");
}

#[test]
fn crop_parameters_follow_the_configured_distribution() {
    let cfg = AugmentConfig::default();
    let (h, w) = (256, 341);
    let mut areas = Vec::new();
    for i in 0..2000 {
        let mut rng = stream(1, 0, i, 0, Purpose::Augment);
        let b = cfg.sample_crop(h, w, &mut rng);
        assert!(b.top + b.height <= h && b.left + b.width <= w);
        let aspect = b.width as f64 / b.height as f64;
        assert!(aspect > 0.70 && aspect < 1.40, "{aspect}");
        areas.push((b.width * b.height) as f64 / (h * w) as f64);
    }
    let lo = areas.iter().cloned().fold(1.0, f64::min);
    let hi = areas.iter().cloned().fold(0.0, f64::max);
    let mean = areas.iter().sum::<f64>() / areas.len() as f64;
    assert!(lo > 0.19 && hi < 0.775, "{lo}..{hi}");
    // torchvision's RandomResizedCrop.get_params on a 256×341 frame, 20000 draws: mean 0.4570
    // (below the uniform 0.483 because tall boxes that do not fit are redrawn).
    assert!((mean - 0.457).abs() < 0.01, "mean area {mean}");
}

#[test]
fn augmentation_probabilities() {
    let cfg = AugmentConfig::default();
    let n = 4000;
    let (mut jit, mut gray, mut blur, mut flip) = (0, 0, 0, 0);
    for i in 0..n {
        let p = cfg.sample(128, 160, &mut stream(2, 0, i, 1, Purpose::Augment));
        jit += !p.jitter.is_empty() as usize;
        gray += p.grayscale as usize;
        blur += p.blur_sigma.is_some() as usize;
        flip += p.flip as usize;
        if let Some(s) = p.blur_sigma {
            assert!((0.1..=2.0).contains(&s));
        }
        for op in &p.jitter {
            match op {
                ColorOp::Hue(h) => assert!(h.abs() <= 0.15),
                ColorOp::Brightness(f) | ColorOp::Contrast(f) | ColorOp::Saturation(f) => {
                    assert!((0.4..=1.6).contains(f))
                }
            }
        }
    }
    let frac = |k: usize| k as f64 / n as f64;
    assert!((frac(jit) - 0.8).abs() < 0.03 && (frac(gray) - 0.2).abs() < 0.03);
    assert!((frac(blur) - 0.5).abs() < 0.03 && (frac(flip) - 0.5).abs() < 0.03);
}

#[test]
fn full_pipeline_output_shape_and_determinism() {
    let cfg = AugmentConfig {
        size: 32,
        ..AugmentConfig::default()
    };
    let clip = ClipPixels::from_u8(4, 48, 64, &vec![128u8; 4 * 48 * 64 * 3]);
    let p = cfg.sample(48, 64, &mut stream(3, 0, 0, 0, Purpose::Augment));
    let a = clip.clone().augment(&p, &cfg);
    let b = clip.augment(
        &cfg.sample(48, 64, &mut stream(3, 0, 0, 0, Purpose::Augment)),
        &cfg,
    );
    assert_eq!(a.len(), 3 * 4 * 32 * 32);
    assert_eq!(a, b);
}
