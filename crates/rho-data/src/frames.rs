//! JPEG frame folders (mmaction's rawframes: `img_00001.jpg`, … 1-based), decoded with the
//! pure-Rust `zune-jpeg` and resized to the short side like decoded video.

use std::path::Path;

use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

use crate::error::DataError;

/// Frames `wanted` (0-based) of a folder of `total_frames` JPEGs as RGB24 [n, h, w, 3], with the
/// short side resized to `short_side`. Indices past the end take the last frame.
pub fn read_frame_folder(
    dir: &Path,
    total_frames: usize,
    wanted: &[usize],
    short_side: Option<u32>,
) -> Result<(usize, usize, Vec<u8>), DataError> {
    let err = |reason: String| DataError::Decode {
        path: dir.to_path_buf(),
        reason,
    };
    if total_frames == 0 {
        return Err(err("the frame list says 0 frames".into()));
    }
    let mut out = Vec::new();
    let mut size = None;
    for &i in wanted {
        let file = dir.join(format!("img_{:05}.jpg", i.min(total_frames - 1) + 1));
        if let Some(kind) = crate::file_guard::not_a_regular_file(&file) {
            return Err(err(format!("{} is {kind}, not a JPEG", file.display())));
        }
        let bytes = std::fs::read(&file).map_err(|e| err(format!("{}: {e}", file.display())))?;
        let opts = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::RGB);
        let mut dec = JpegDecoder::new_with_options(bytes.as_slice(), opts);
        let rgb = dec
            .decode()
            .map_err(|e| err(format!("{}: {e:?}", file.display())))?;
        let info = dec
            .info()
            .ok_or_else(|| err(format!("{}: no image header", file.display())))?;
        let (w, h) = (info.width as usize, info.height as usize);
        if rgb.len() != w * h * 3 {
            return Err(err(format!("{}: not an RGB image", file.display())));
        }
        let (oh, ow) = match short_side {
            Some(s) if w <= h => (
                ((h as f64 * s as f64 / w as f64).round() as usize).max(1),
                s as usize,
            ),
            Some(s) => (
                s as usize,
                ((w as f64 * s as f64 / h as f64).round() as usize).max(1),
            ),
            None => (h, w),
        };
        if *size.get_or_insert((oh, ow)) != (oh, ow) {
            return Err(err(format!(
                "{}: frame size changes inside the folder",
                file.display()
            )));
        }
        out.extend(resize_rgb(&rgb, h, w, oh, ow));
    }
    let (h, w) = size.unwrap_or((0, 0));
    Ok((h, w, out))
}

/// Bilinear resize of RGB24 (align_corners = false).
pub fn resize_rgb(src: &[u8], h: usize, w: usize, oh: usize, ow: usize) -> Vec<u8> {
    if (h, w) == (oh, ow) {
        return src.to_vec();
    }
    let axis = |o: usize, len: usize, out: usize| -> (usize, usize, f32) {
        let s = ((o as f32 + 0.5) * len as f32 / out as f32 - 0.5).max(0.0);
        let i0 = (s.floor() as usize).min(len - 1);
        (i0, (i0 + 1).min(len - 1), s - i0 as f32)
    };
    let mut dst = vec![0u8; oh * ow * 3];
    for y in 0..oh {
        let (y0, y1, ly) = axis(y, h, oh);
        for x in 0..ow {
            let (x0, x1, lx) = axis(x, w, ow);
            for c in 0..3 {
                let p = |yy: usize, xx: usize| src[(yy * w + xx) * 3 + c] as f32;
                let v = (p(y0, x0) * (1.0 - lx) + p(y0, x1) * lx) * (1.0 - ly)
                    + (p(y1, x0) * (1.0 - lx) + p(y1, x1) * lx) * ly;
                dst[(y * ow + x) * 3 + c] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    dst
}
