//! Clip augmentations of the released SSL configs (docs/method.md §3.2), one parameter set per
//! clip shared by all its frames: colour jitter (p 0.8, random order), grayscale (p 0.2),
//! Gaussian blur (p 0.5), normalisation, random resized crop and horizontal flip. Colour
//! statistics (contrast's mean) are taken over the whole clip, as the released code does with
//! its tall image.

use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Decoded frames of one clip: [T, H, W, 3] RGB in [0, 1], interleaved as decoders give them.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipPixels {
    pub t: usize,
    pub h: usize,
    pub w: usize,
    pub data: Vec<f32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AugmentConfig {
    /// Output side (224).
    pub size: usize,
    /// Random-resized-crop area fraction range ("aug+": [0.2, 0.766]).
    pub area: (f64, f64),
    /// Aspect-ratio range, sampled log-uniformly.
    pub aspect: (f64, f64),
    pub flip_p: f64,
    /// Brightness, contrast, saturation, hue strengths ("aug+": 0.6, 0.6, 0.6, 0.15).
    pub jitter: [f64; 4],
    pub jitter_p: f64,
    pub grayscale_p: f64,
    pub blur_p: f64,
    pub blur_sigma: (f64, f64),
    pub mean: f32,
    pub std: f32,
}

impl Default for AugmentConfig {
    /// The released configs' "aug+" pipeline.
    fn default() -> Self {
        Self {
            size: 224,
            area: (0.2, 0.766),
            aspect: (3.0 / 4.0, 4.0 / 3.0),
            flip_p: 0.5,
            jitter: [0.6, 0.6, 0.6, 0.15],
            jitter_p: 0.8,
            grayscale_p: 0.2,
            blur_p: 0.5,
            blur_sigma: (0.1, 2.0),
            mean: 0.45,
            std: 0.225,
        }
    }
}

/// One colour operation with its factor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ColorOp {
    Brightness(f32),
    Contrast(f32),
    Saturation(f32),
    Hue(f32),
}

/// Crop box in source pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropBox {
    pub top: usize,
    pub left: usize,
    pub height: usize,
    pub width: usize,
}

/// Everything random about one clip's augmentation.
#[derive(Debug, Clone, PartialEq)]
pub struct AugmentParams {
    pub jitter: Vec<ColorOp>,
    pub grayscale: bool,
    pub blur_sigma: Option<f32>,
    pub crop: CropBox,
    pub flip: bool,
}

impl AugmentConfig {
    /// Checks every range and probability, naming the first bad one (sampling would panic).
    pub fn validate(&self) -> Result<(), String> {
        let range = |name: &str, (lo, hi): (f64, f64), max: f64| {
            if lo.is_finite() && hi.is_finite() && 0.0 < lo && lo <= hi && hi <= max {
                Ok(())
            } else {
                Err(format!(
                    "{name} = [{lo}, {hi}] must satisfy 0 < low ≤ high ≤ {max}"
                ))
            }
        };
        range("area", self.area, 1.0)?;
        range("aspect", self.aspect, f64::MAX)?;
        range("blur_sigma", self.blur_sigma, f64::MAX)?;
        for (name, p) in [
            ("flip_p", self.flip_p),
            ("jitter_p", self.jitter_p),
            ("grayscale_p", self.grayscale_p),
            ("blur_p", self.blur_p),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("{name} = {p} is not a probability in [0, 1]"));
            }
        }
        let [b, c, s, h] = self.jitter;
        if ![b, c, s].iter().all(|v| v.is_finite() && *v >= 0.0) || !(0.0..=0.5).contains(&h) {
            return Err(format!(
                "jitter = [{b}, {c}, {s}, {h}]: brightness, contrast and saturation must be ≥ 0 and hue in [0, 0.5]"
            ));
        }
        if self.size == 0 {
            return Err("the crop size must be at least 1".into());
        }
        Ok(())
    }

    /// Draws the parameters for a clip of h×w frames.
    pub fn sample<R: Rng>(&self, h: usize, w: usize, rng: &mut R) -> AugmentParams {
        let jitter = if rng.random_bool(self.jitter_p) {
            let [b, c, s, hue] = self.jitter;
            let f = |rng: &mut R, x: f64| rng.random_range((1.0 - x).max(0.0)..=1.0 + x) as f32;
            let mut ops = vec![
                ColorOp::Brightness(f(rng, b)),
                ColorOp::Contrast(f(rng, c)),
                ColorOp::Saturation(f(rng, s)),
                ColorOp::Hue(rng.random_range(-hue..=hue) as f32),
            ];
            ops.shuffle(rng);
            ops
        } else {
            Vec::new()
        };
        let grayscale = rng.random_bool(self.grayscale_p);
        let blur_sigma = rng
            .random_bool(self.blur_p)
            .then(|| rng.random_range(self.blur_sigma.0..=self.blur_sigma.1) as f32);
        let crop = self.sample_crop(h, w, rng);
        let flip = rng.random_bool(self.flip_p);
        AugmentParams {
            jitter,
            grayscale,
            blur_sigma,
            crop,
            flip,
        }
    }

    /// torchvision's `RandomResizedCrop.get_params`: 10 tries, then a centre crop.
    pub fn sample_crop<R: Rng>(&self, h: usize, w: usize, rng: &mut R) -> CropBox {
        let area = (h * w) as f64;
        let (lr0, lr1) = (self.aspect.0.ln(), self.aspect.1.ln());
        for _ in 0..10 {
            let target = area * rng.random_range(self.area.0..=self.area.1);
            let ratio = rng.random_range(lr0..=lr1).exp();
            let cw = (target * ratio).sqrt().round() as usize;
            let ch = (target / ratio).sqrt().round() as usize;
            if cw > 0 && ch > 0 && cw <= w && ch <= h {
                let top = rng.random_range(0..=h - ch);
                let left = rng.random_range(0..=w - cw);
                return CropBox {
                    top,
                    left,
                    height: ch,
                    width: cw,
                };
            }
        }
        let in_ratio = w as f64 / h as f64;
        let (cw, ch) = if in_ratio < self.aspect.0 {
            (w, ((w as f64 / self.aspect.0).round() as usize).min(h))
        } else if in_ratio > self.aspect.1 {
            (((h as f64 * self.aspect.1).round() as usize).min(w), h)
        } else {
            (w, h)
        };
        CropBox {
            top: (h - ch) / 2,
            left: (w - cw) / 2,
            height: ch,
            width: cw,
        }
    }
}

/// ITU-R 601 luma as torchvision computes it.
fn luma(r: f32, g: f32, b: f32) -> f32 {
    0.2989 * r + 0.587 * g + 0.114 * b
}

impl ClipPixels {
    pub fn new(t: usize, h: usize, w: usize, data: Vec<f32>) -> Self {
        assert_eq!(
            data.len(),
            t * h * w * 3,
            "ClipPixels: {t}×{h}×{w}×3 values expected"
        );
        Self { t, h, w, data }
    }

    /// From 8-bit RGB.
    pub fn from_u8(t: usize, h: usize, w: usize, bytes: &[u8]) -> Self {
        Self::new(t, h, w, bytes.iter().map(|&b| b as f32 / 255.0).collect())
    }

    pub fn apply_color(&mut self, op: ColorOp) {
        match op {
            ColorOp::Brightness(f) => self
                .data
                .iter_mut()
                .for_each(|x| *x = (*x * f).clamp(0.0, 1.0)),
            ColorOp::Contrast(f) => {
                let n = (self.data.len() / 3) as f64;
                let mean = (self
                    .data
                    .chunks_exact(3)
                    .map(|p| luma(p[0], p[1], p[2]) as f64)
                    .sum::<f64>()
                    / n) as f32;
                self.data
                    .iter_mut()
                    .for_each(|x| *x = (f * *x + (1.0 - f) * mean).clamp(0.0, 1.0));
            }
            ColorOp::Saturation(f) => self.data.chunks_exact_mut(3).for_each(|p| {
                let g = luma(p[0], p[1], p[2]);
                p.iter_mut()
                    .for_each(|x| *x = (f * *x + (1.0 - f) * g).clamp(0.0, 1.0));
            }),
            ColorOp::Hue(shift) => self.data.chunks_exact_mut(3).for_each(|p| {
                let (h, s, v) = rgb_to_hsv(p[0], p[1], p[2]);
                let (r, g, b) = hsv_to_rgb((h + shift).rem_euclid(1.0), s, v);
                p[0] = r;
                p[1] = g;
                p[2] = b;
            }),
        }
    }

    pub fn grayscale(&mut self) {
        self.data.chunks_exact_mut(3).for_each(|p| {
            let g = luma(p[0], p[1], p[2]);
            p.iter_mut().for_each(|x| *x = g);
        });
    }

    /// Separable Gaussian blur of every frame (radius ⌈3σ⌉, reflected borders).
    pub fn blur(&mut self, sigma: f32) {
        let r = (3.0 * sigma).ceil().max(1.0) as isize;
        let k: Vec<f32> = (-r..=r)
            .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
            .collect();
        let sum: f32 = k.iter().sum();
        let k: Vec<f32> = k.iter().map(|v| v / sum).collect();
        let (h, w) = (self.h as isize, self.w as isize);
        let reflect = |i: isize, n: isize| -> usize {
            let mut i = i;
            while i < 0 || i >= n {
                i = if i < 0 { -i } else { 2 * (n - 1) - i };
                if n == 1 {
                    return 0;
                }
            }
            i as usize
        };
        let frame = self.h * self.w * 3;
        let mut tmp = vec![0f32; frame];
        for f in self.data.chunks_exact_mut(frame) {
            for y in 0..h {
                for x in 0..w {
                    for c in 0..3 {
                        let mut acc = 0.0;
                        for (j, kv) in k.iter().enumerate() {
                            let xx = reflect(x + j as isize - r, w);
                            acc += kv * f[((y * w) as usize + xx) * 3 + c];
                        }
                        tmp[((y * w + x) * 3) as usize + c] = acc;
                    }
                }
            }
            for y in 0..h {
                for x in 0..w {
                    for c in 0..3 {
                        let mut acc = 0.0;
                        for (j, kv) in k.iter().enumerate() {
                            let yy = reflect(y + j as isize - r, h);
                            acc += kv * tmp[(yy * self.w + x as usize) * 3 + c];
                        }
                        f[((y * w + x) * 3) as usize + c] = acc;
                    }
                }
            }
        }
    }

    /// Crops `b`, resizes bilinearly (align_corners = false, no antialias) to size×size, flips,
    /// normalises, and returns channel-first [3, T, size, size].
    pub fn crop_resize_normalize(
        &self,
        b: CropBox,
        size: usize,
        flip: bool,
        mean: f32,
        std: f32,
    ) -> Vec<f32> {
        let (t, w) = (self.t, self.w);
        let plane = size * size;
        let mut out = vec![0f32; 3 * t * plane];
        let axis = |o: usize, len: usize| -> (usize, usize, f32) {
            let scale = len as f32 / size as f32;
            let src = ((o as f32 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(len - 1);
            let i1 = (i0 + 1).min(len - 1);
            (i0, i1, src - i0 as f32)
        };
        let xs: Vec<(usize, usize, f32)> = (0..size).map(|o| axis(o, b.width)).collect();
        for f in 0..t {
            let frame = &self.data[f * self.h * w * 3..(f + 1) * self.h * w * 3];
            for oy in 0..size {
                let (y0, y1, ly) = axis(oy, b.height);
                let (r0, r1) = ((b.top + y0) * w, (b.top + y1) * w);
                for ox in 0..size {
                    let (x0, x1, lx) = xs[ox];
                    let (c0, c1) = (b.left + x0, b.left + x1);
                    let dst_x = if flip { size - 1 - ox } else { ox };
                    for c in 0..3 {
                        let p = |row: usize, col: usize| frame[(row + col) * 3 + c];
                        let top = p(r0, c0) * (1.0 - lx) + p(r0, c1) * lx;
                        let bot = p(r1, c0) * (1.0 - lx) + p(r1, c1) * lx;
                        let v = top * (1.0 - ly) + bot * ly;
                        out[c * t * plane + f * plane + oy * size + dst_x] = (v - mean) / std;
                    }
                }
            }
        }
        out
    }

    /// The whole pipeline of docs/method.md §3.2 with `params`.
    pub fn augment(mut self, params: &AugmentParams, cfg: &AugmentConfig) -> Vec<f32> {
        for op in &params.jitter {
            self.apply_color(*op);
        }
        if params.grayscale {
            self.grayscale();
        }
        if let Some(s) = params.blur_sigma {
            self.blur(s);
        }
        self.crop_resize_normalize(params.crop, cfg.size, params.flip, cfg.mean, cfg.std)
    }
}

/// torchvision's `_rgb2hsv` (h in [0, 1)).
fn rgb_to_hsv(r: f32, g: f32, b: f32) -> (f32, f32, f32) {
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    let cr = maxc - minc;
    if cr == 0.0 {
        return (0.0, 0.0, maxc);
    }
    let s = cr / maxc;
    let (rc, gc, bc) = ((maxc - r) / cr, (maxc - g) / cr, (maxc - b) / cr);
    let h = if maxc == r {
        bc - gc
    } else if maxc == g {
        2.0 + rc - bc
    } else {
        4.0 + gc - rc
    };
    ((h / 6.0 + 1.0).rem_euclid(1.0), s, maxc)
}

/// torchvision's `_hsv2rgb`.
fn hsv_to_rgb(h: f32, s: f32, v: f32) -> (f32, f32, f32) {
    let i = (h * 6.0).floor();
    let f = h * 6.0 - i;
    let i = (i as i32).rem_euclid(6);
    let p = (v * (1.0 - s)).clamp(0.0, 1.0);
    let q = (v * (1.0 - s * f)).clamp(0.0, 1.0);
    let t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0);
    match i {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    }
}
