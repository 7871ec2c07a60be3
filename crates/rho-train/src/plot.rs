//! The PNGs rho writes: training curves ([`LinePlot`]: loss, learning rate, collapse monitors,
//! kNN), grouped bars ([`BarChart`]: the demo) and confusion matrices ([`confusion_png`]).
//!
//! They are drawn by plotters into an RGB buffer, with text rendered by ab_glyph from DejaVu
//! Sans compiled into the binary (the `dejavu` crate), so no system font is needed, and encoded
//! by the `png` crate. A noisy per-step curve is drawn faint, with a smoothed curve over it (an
//! exponential moving average, debiased as TensorBoard's smoothing is).

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One curve.
pub struct Series {
    pub name: String,
    pub color: [u8; 3],
    pub points: Vec<(f64, f64)>,
}

pub struct LinePlot {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// Draw each series faint with a smoothed curve over it (per-step metrics).
    pub smooth: bool,
    pub series: Vec<Series>,
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

const W: usize = 800;
const H: usize = 450;
const FONT: &str = "sans-serif";

/// Registers the embedded font with plotters once per process.
fn font() -> &'static str {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // The bytes are a valid TrueType font compiled in; a failure only loses the text.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
    });
    FONT
}

fn rgb(c: [u8; 3]) -> RGBColor {
    RGBColor(c[0], c[1], c[2])
}

fn draw_err<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> std::io::Error {
    std::io::Error::other(format!("drawing the plot: {e}"))
}

/// Renders `draw` into a white `w`×`h` RGB buffer.
fn render(
    w: usize,
    h: usize,
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> std::io::Result<()>,
) -> std::io::Result<Vec<u8>> {
    let mut px = vec![255u8; w * h * 3];
    {
        let root = BitMapBackend::with_buffer(&mut px, (w as u32, h as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        draw(&root)?;
        root.present().map_err(draw_err)?;
    }
    Ok(px)
}

/// Writes RGB pixels as a PNG, atomically.
pub fn save_rgb_png(path: &Path, w: usize, h: usize, px: &[u8]) -> std::io::Result<()> {
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, w as u32, h as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(std::io::Error::other)?;
        writer.write_image_data(px).map_err(std::io::Error::other)?;
    }
    rho_model::weights::write_atomically(path, &bytes)
}

/// An exponential moving average over about `n / 40` points, debiased at the start so the
/// curve begins at the data (TensorBoard's smoothing).
pub fn smoothed(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let window = (points.len() as f64 / 40.0).clamp(1.0, 100.0);
    let w = 1.0 - 2.0 / (window + 1.0);
    let (mut avg, mut weight) = (0.0, 0.0);
    points
        .iter()
        .map(|&(x, y)| {
            avg = w * avg + (1.0 - w) * y;
            weight = w * weight + (1.0 - w);
            (x, avg / weight)
        })
        .collect()
}

/// The range of the finite points, padded so no curve runs along the frame.
fn bounds(series: &[Series]) -> (std::ops::Range<f64>, std::ops::Range<f64>) {
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in series.iter().flat_map(|s| &s.points) {
        if x.is_finite() && y.is_finite() {
            (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
        }
    }
    if x0 > x1 {
        return (0.0..1.0, 0.0..1.0);
    }
    if x1 - x0 < 1e-12 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-9 + y1.abs() * 1e-3);
    (x0..x1, y0 - pad..y1 + pad)
}

impl LinePlot {
    /// Renders to RGB pixels (`W` × `H`).
    pub fn render(&self) -> std::io::Result<(usize, usize, Vec<u8>)> {
        let px = render(W, H, |root| self.draw(root))?;
        Ok((W, H, px))
    }

    fn draw(&self, root: &DrawingArea<BitMapBackend<'_>, Shift>) -> std::io::Result<()> {
        let f = font();
        let (xr, yr) = bounds(&self.series);
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (f, 22))
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(72)
            .build_cartesian_2d(xr, yr)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .label_style((f, 14))
            .axis_desc_style((f, 15))
            .x_label_formatter(&|x| tidy(*x))
            .y_label_formatter(&|y| tidy(*y))
            .light_line_style(TRANSPARENT)
            .bold_line_style(RGBColor(225, 225, 225))
            .draw()
            .map_err(draw_err)?;
        for s in &self.series {
            let points: Vec<(f64, f64)> = s
                .points
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect();
            let color = rgb(s.color);
            let curve = if self.smooth && points.len() > 20 {
                let faint = LineSeries::new(points.iter().copied(), color.mix(0.22));
                chart.draw_series(faint).map_err(draw_err)?;
                smoothed(&points)
            } else {
                points
            };
            chart
                .draw_series(LineSeries::new(curve, color.stroke_width(2)))
                .map_err(draw_err)?
                .label(&s.name)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], color.stroke_width(3))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font((f, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .draw()
            .map_err(draw_err)
    }

    /// Writes a PNG (atomically).
    pub fn save_png(&self, path: &Path) -> std::io::Result<()> {
        let (w, h, px) = self.render()?;
        save_rgb_png(path, w, h, &px)
    }
}

impl BarChart {
    pub fn render(&self) -> std::io::Result<(usize, usize, Vec<u8>)> {
        let px = render(W, H, |root| self.draw(root))?;
        Ok((W, H, px))
    }

    fn draw(&self, root: &DrawingArea<BitMapBackend<'_>, Shift>) -> std::io::Result<()> {
        let f = font();
        let groups = self.groups.len().max(1);
        let names: Vec<String> = self.groups.iter().map(|g| g.0.clone()).collect();
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (f, 20))
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..groups as f64, 0.0..self.max * 1.08)
            .map_err(draw_err)?;
        // Ticks at every half group: the centres carry the group names.
        let group_name = |x: &f64| {
            let centre = (x - 0.5).round();
            match (x - 0.5 - centre).abs() < 1e-6 && centre >= 0.0 {
                true => names.get(centre as usize).cloned().unwrap_or_default(),
                false => String::new(),
            }
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(2 * groups + 1)
            .x_label_formatter(&group_name)
            .y_desc("top-1 %")
            .label_style((f, 15))
            .axis_desc_style((f, 15))
            .y_label_formatter(&|y| tidy(*y))
            .light_line_style(TRANSPARENT)
            .bold_line_style(RGBColor(225, 225, 225))
            .draw()
            .map_err(draw_err)?;
        let n = self.series.len().max(1);
        let value_style =
            TextStyle::from((f, 15).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
        for (s, (name, color)) in self.series.iter().enumerate() {
            let color = rgb(*color);
            let (a, b) = (bar_edge(s, n), bar_edge(s + 1, n) - 0.02);
            let values: Vec<(f64, f64)> = self
                .groups
                .iter()
                .enumerate()
                .map(|(g, (_, v))| {
                    (
                        g as f64,
                        v.get(s).copied().unwrap_or(0.0).clamp(0.0, self.max),
                    )
                })
                .collect();
            chart
                .draw_series(
                    values
                        .iter()
                        .map(|&(g, v)| Rectangle::new([(g + a, 0.0), (g + b, v)], color.filled())),
                )
                .map_err(draw_err)?
                .label(name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled())
                });
            chart
                .draw_series(values.iter().map(|&(g, v)| {
                    Text::new(
                        format!("{v:.1}"),
                        (g + (a + b) / 2.0, v),
                        value_style.clone(),
                    )
                }))
                .map_err(draw_err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font((f, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .draw()
            .map_err(draw_err)
    }

    pub fn save_png(&self, path: &Path) -> std::io::Result<()> {
        let (w, h, px) = self.render()?;
        save_rgb_png(path, w, h, &px)
    }
}

/// A tick label without trailing zeros ("100", "0.25", "-1.2", "3e-4").
fn tidy(v: f64) -> String {
    let a = v.abs();
    if a < 1e-12 {
        return "0".into();
    }
    if !(1e-3..1e6).contains(&a) {
        return format!("{v:.1e}");
    }
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// Where bar `s` of `n` starts within its group, as a fraction of the group's width (the
/// group keeps 15 % free on each side).
fn bar_edge(s: usize, n: usize) -> f64 {
    0.15 + 0.7 * s as f64 / n as f64
}

/// A row-normalised confusion matrix (rows: true class, columns: predicted), darker = more;
/// the diagonal blue, errors red.
pub fn confusion_png(
    confusion: &[Vec<usize>],
    title: &str,
) -> std::io::Result<(usize, usize, Vec<u8>)> {
    let c = confusion.len().max(1);
    let cell = (520 / c).clamp(4, 48);
    let (w, h) = ((c * cell + 140).max(480), c * cell + 130);
    let px = render(w, h, |root| {
        let f = font();
        let mut chart = ChartBuilder::on(root)
            .caption(title, (f, 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d((0..c - 1).into_segmented(), (0..c - 1).into_segmented())
            .map_err(draw_err)?;
        // Class ids at the cell centres; true class 0 on the top row.
        let class = |flip: bool| {
            move |v: &SegmentValue<usize>| match v {
                SegmentValue::CenterOf(i) if *i < c => match flip {
                    true => (c - 1 - i).to_string(),
                    false => i.to_string(),
                },
                _ => String::new(),
            }
        };
        let (xs, ys) = (class(false), class(true));
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("predicted class")
            .y_desc("true class")
            .x_labels(c.min(20))
            .y_labels(c.min(20))
            .x_label_formatter(&xs)
            .y_label_formatter(&ys)
            .label_style((f, 12))
            .axis_desc_style((f, 14))
            .draw()
            .map_err(draw_err)?;
        let cells = confusion.iter().enumerate().flat_map(|(i, row)| {
            let total = row.iter().sum::<usize>().max(1) as f64;
            row.iter().enumerate().map(move |(j, v)| {
                let shade = 255 - (255.0 * *v as f64 / total).round() as u8;
                let color = if i == j {
                    RGBColor(shade, shade, 255)
                } else {
                    RGBColor(255, shade, shade)
                };
                let y = c - 1 - i;
                let at = |x: usize, y: usize| (SegmentValue::Exact(x), SegmentValue::Exact(y));
                Rectangle::new([at(j, y), at(j + 1, y + 1)], color.filled())
            })
        });
        chart.draw_series(cells).map_err(draw_err)?;
        Ok(())
    })?;
    Ok((w, h, px))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smoothing_starts_at_the_data_and_follows_a_step() {
        let pts: Vec<(f64, f64)> = (0..400)
            .map(|i| (i as f64, if i < 200 { 1.0 } else { 3.0 }))
            .collect();
        let s = smoothed(&pts);
        assert_eq!(s[0].1, 1.0);
        assert!((s[199].1 - 1.0).abs() < 1e-12);
        assert!(s[205].1 > 1.0 && s[205].1 < 3.0);
        assert!((s[399].1 - 3.0).abs() < 1e-6);
    }

    #[test]
    fn curves_bars_and_confusion_render_to_pngs() {
        let p = LinePlot {
            title: "loss".into(),
            x_label: "step".into(),
            y_label: "loss".into(),
            smooth: true,
            series: vec![Series {
                name: "loss".into(),
                color: [200, 0, 0],
                points: (0..500)
                    .map(|i| {
                        (
                            i as f64,
                            (-(i as f64) / 100.0).exp() + 0.1 * ((i * 7919) % 13) as f64 / 13.0,
                        )
                    })
                    .collect(),
            }],
        };
        let (w, h, px) = p.render().unwrap();
        assert_eq!(px.len(), w * h * 3);
        // The curve, its faint raw version and dark text are all there.
        let count = |f: &dyn Fn(&[u8]) -> bool| px.chunks(3).filter(|c| f(c)).count();
        assert!(
            count(&|c| c[0] > 150 && c[1] < 60 && c[2] < 60) > 300,
            "no smoothed curve"
        );
        assert!(
            count(&|c| c[0] > 230 && c[1] > 150 && c[1] < 230) > 300,
            "no faint raw curve"
        );
        assert!(
            count(&|c| c[0] < 80 && c[1] < 80 && c[2] < 80) > 200,
            "no text"
        );
        let dir = std::env::temp_dir().join(format!("rho-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        p.save_png(&dir.join("l.png")).unwrap();
        assert_eq!(&std::fs::read(dir.join("l.png")).unwrap()[1..4], b"PNG");
        let bars = BarChart {
            title: "demo".into(),
            groups: vec![
                ("linear".into(), vec![80.0, 20.0]),
                ("kNN".into(), vec![70.0, 15.0]),
            ],
            series: vec![
                ("learned".into(), [200, 60, 30]),
                ("random".into(), [120, 120, 120]),
            ],
            max: 100.0,
        };
        bars.save_png(&dir.join("b.png")).unwrap();
        let (cw, ch, cpx) = confusion_png(&[vec![5, 1], vec![0, 6]], "confusion").unwrap();
        save_rgb_png(&dir.join("c.png"), cw, ch, &cpx).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
