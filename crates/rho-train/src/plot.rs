//! `LinePlot`: small PNG line charts of training curves (loss, learning rate, collapse monitors),
//! drawn with an 8×8 bitmap font so no system font is needed.

use std::path::Path;

use font8x8::UnicodeFonts;

/// One curve.
pub struct Series {
    pub name: String,
    pub color: [u8; 3],
    pub points: Vec<(f64, f64)>,
}

pub struct LinePlot {
    pub title: String,
    pub x_label: String,
    pub series: Vec<Series>,
}

const W: usize = 640;
const H: usize = 360;
const LEFT: usize = 80;
const RIGHT: usize = 20;
const TOP: usize = 40;
const BOTTOM: usize = 40;

/// An RGB pixel buffer with lines, rectangles and 8×8 text.
pub(crate) struct Canvas {
    pub w: usize,
    pub h: usize,
    pub px: Vec<u8>,
}

impl Canvas {
    pub fn new(w: usize, h: usize) -> Self {
        Self {
            w,
            h,
            px: vec![255; w * h * 3],
        }
    }
    pub fn set(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < self.w && (y as usize) < self.h {
            let i = (y as usize * self.w + x as usize) * 3;
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }
    pub fn rect(&mut self, x: i64, y: i64, w: i64, h: i64, c: [u8; 3]) {
        for yy in y..y + h {
            for xx in x..x + w {
                self.set(xx, yy, c);
            }
        }
    }
    /// Writes a PNG (atomically).
    pub fn save_png(&self, path: &Path) -> std::io::Result<()> {
        let mut bytes = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut bytes, self.w as u32, self.h as u32);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let mut writer = enc.write_header().map_err(std::io::Error::other)?;
            writer
                .write_image_data(&self.px)
                .map_err(std::io::Error::other)?;
        }
        rho_model::weights::write_atomically(path, &bytes)
    }
    pub fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: [u8; 3]) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            self.set(x, y, c);
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }
    pub fn text(&mut self, x: i64, y: i64, s: &str, c: [u8; 3]) {
        for (k, ch) in s.chars().enumerate() {
            if let Some(glyph) = font8x8::BASIC_FONTS.get(ch) {
                for (row, bits) in glyph.iter().enumerate() {
                    for col in 0..8 {
                        if bits & (1 << col) != 0 {
                            self.set(x + (k * 8 + col) as i64, y + row as i64, c);
                        }
                    }
                }
            }
        }
    }
}

fn label(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 {
        return "0".into();
    }
    if v != 0.0 && !(1e-2..1e5).contains(&a) {
        format!("{v:.1e}")
    } else if a >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

impl LinePlot {
    /// Renders to RGB pixels (W × H).
    pub fn render(&self) -> (usize, usize, Vec<u8>) {
        let mut cv = Canvas::new(W, H);
        let pts = self
            .series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|(x, y)| x.is_finite() && y.is_finite());
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(x, y) in pts {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
        if x0 > x1 {
            (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
        }
        if x1 - x0 < 1e-12 {
            x1 = x0 + 1.0;
        }
        if y1 - y0 < 1e-12 {
            y0 -= 0.5;
            y1 += 0.5;
        }
        let (pw, ph) = ((W - LEFT - RIGHT) as f64, (H - TOP - BOTTOM) as f64);
        let to_px = |x: f64, y: f64| -> (i64, i64) {
            (
                LEFT as i64 + ((x - x0) / (x1 - x0) * pw) as i64,
                (H - BOTTOM) as i64 - ((y - y0) / (y1 - y0) * ph) as i64,
            )
        };
        let axis = [90, 90, 90];
        cv.line(to_px(x0, y0), to_px(x1, y0), axis);
        cv.line(to_px(x0, y0), to_px(x0, y1), axis);
        for i in 0..=4 {
            let f = i as f64 / 4.0;
            let (yv, xv) = (y0 + f * (y1 - y0), x0 + f * (x1 - x0));
            let (_, py) = to_px(x0, yv);
            let (px, _) = to_px(xv, y0);
            cv.line((LEFT as i64 - 4, py), (LEFT as i64, py), axis);
            cv.text(4, py - 4, &label(yv), axis);
            cv.line(
                (px, (H - BOTTOM) as i64),
                (px, (H - BOTTOM) as i64 + 4),
                axis,
            );
            let text = label(xv);
            let lx = (px - 12).min((W - 8 * text.len()) as i64);
            cv.text(lx, (H - BOTTOM) as i64 + 8, &text, axis);
        }
        cv.text(LEFT as i64, 12, &self.title, [0, 0, 0]);
        cv.text(
            (W / 2) as i64 - 4 * self.x_label.len() as i64,
            (H - 12) as i64,
            &self.x_label,
            axis,
        );
        for (k, s) in self.series.iter().enumerate() {
            cv.text(
                (W - RIGHT - 160) as i64,
                (TOP + 4 + 12 * k) as i64,
                &s.name,
                s.color,
            );
            let mut prev: Option<(i64, i64)> = None;
            for &(x, y) in s
                .points
                .iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
            {
                let p = to_px(x, y);
                if let Some(q) = prev {
                    cv.line(q, p, s.color);
                }
                prev = Some(p);
            }
        }
        (W, H, cv.px)
    }

    /// Writes a PNG (atomically).
    pub fn save_png(&self, path: &Path) -> std::io::Result<()> {
        let (w, h, px) = self.render();
        Canvas { w, h, px }.save_png(path)
    }
}

/// Grouped bars (e.g. learned versus random features, per protocol), values in [0, `max`].
pub struct BarChart {
    pub title: String,
    /// (group name, one value per series).
    pub groups: Vec<(String, Vec<f64>)>,
    /// (series name, colour).
    pub series: Vec<(String, [u8; 3])>,
    pub max: f64,
}

impl BarChart {
    pub fn render(&self) -> (usize, usize, Vec<u8>) {
        let mut cv = Canvas::new(W, H);
        cv.text(LEFT as i64, 14, &self.title, [0, 0, 0]);
        let (x0, y0, x1, y1) = (
            LEFT as i64,
            TOP as i64,
            (W - RIGHT) as i64,
            (H - BOTTOM) as i64,
        );
        cv.line((x0, y1), (x1, y1), [0, 0, 0]);
        cv.line((x0, y0), (x0, y1), [0, 0, 0]);
        for k in 0..=4 {
            let v = self.max * k as f64 / 4.0;
            let y = y1 - ((y1 - y0) as f64 * k as f64 / 4.0) as i64;
            cv.line((x0 - 4, y), (x0, y), [0, 0, 0]);
            cv.text(8, y - 4, &label(v), [0, 0, 0]);
        }
        let slot = (x1 - x0) / self.groups.len().max(1) as i64;
        let bar = slot / (self.series.len() as i64 + 1);
        for (g, (name, values)) in self.groups.iter().enumerate() {
            let gx = x0 + g as i64 * slot + bar / 2;
            for (s, v) in values.iter().enumerate() {
                let hgt = ((v / self.max).clamp(0.0, 1.0) * (y1 - y0) as f64) as i64;
                let color = self.series.get(s).map(|s| s.1).unwrap_or([0, 0, 0]);
                cv.rect(gx + s as i64 * bar, y1 - hgt, bar - 4, hgt, color);
                cv.text(
                    gx + s as i64 * bar,
                    y1 - hgt - 12,
                    &format!("{v:.1}"),
                    [0, 0, 0],
                );
            }
            cv.text(gx, y1 + 10, name, [0, 0, 0]);
        }
        for (k, (name, color)) in self.series.iter().enumerate() {
            let y = (TOP + 4 + 12 * k) as i64;
            cv.rect(x1 - 160, y, 8, 8, *color);
            cv.text(x1 - 148, y, name, [0, 0, 0]);
        }
        (W, H, cv.px)
    }

    pub fn save_png(&self, path: &Path) -> std::io::Result<()> {
        let (w, h, px) = self.render();
        Canvas { w, h, px }.save_png(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_curves_inside_the_frame() {
        let p = LinePlot {
            title: "loss".into(),
            x_label: "step".into(),
            series: vec![Series {
                name: "loss".into(),
                color: [200, 0, 0],
                points: (0..50)
                    .map(|i| (i as f64, (-(i as f64) / 10.0).exp()))
                    .collect(),
            }],
        };
        let (w, h, px) = p.render();
        assert_eq!(px.len(), w * h * 3);
        // The curve starts at the top-left of the plot area and ends bottom-right: red pixels there.
        let red = |x: usize, y: usize| {
            (y.saturating_sub(2)..y + 3)
                .any(|yy| (x.saturating_sub(2)..x + 3).any(|xx| px[(yy * w + xx) * 3] == 200))
        };
        assert!(red(LEFT, TOP));
        assert!(red(W - RIGHT - 1, H - BOTTOM - 1));
        let file = std::env::temp_dir().join(format!("rho-plot-{}.png", std::process::id()));
        p.save_png(&file).unwrap();
        assert_eq!(&std::fs::read(&file).unwrap()[1..4], b"PNG");
    }
}
