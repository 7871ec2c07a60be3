//! Test-time views (docs/method.md §5.1): n temporal clips spread uniformly over the video, each
//! seen through k spatial crops (left/centre/right, or top/centre/bottom for portrait frames) of a
//! frame resized to the crop size on its short side: 10 × 3 views in the paper.

use crate::augment::CropBox;
use crate::sampler::{ClipFrames, ClipPlan, ClipSamplerConfig, VideoTiming};

/// Starts of `n` clips of `span` frames: ⌊(N − ℓ)·i / n⌋, as PySlowFast's test sampling.
pub fn temporal_starts(num_frames: usize, span: usize, n: usize) -> Vec<usize> {
    let delta = num_frames.saturating_sub(span);
    (0..n).map(|i| delta * i / n.max(1)).collect()
}

/// The evaluation plan: `n` clips in time order, handed out in that order.
pub fn eval_plan(cfg: &ClipSamplerConfig, video: VideoTiming, n: usize) -> ClipPlan {
    let starts = temporal_starts(video.num_frames, cfg.span(video.fps), n);
    plan_at(cfg, video, starts)
}

/// One clip in the middle of the video, start ⌊(N − ℓ)/2⌋ (feature extraction's centre view;
/// the 1-clip test view of [`eval_plan`] starts at 0, as PySlowFast's does).
pub fn centre_plan(cfg: &ClipSamplerConfig, video: VideoTiming) -> ClipPlan {
    let delta = video.num_frames.saturating_sub(cfg.span(video.fps));
    plan_at(cfg, video, vec![delta / 2])
}

/// Clips of `cfg.frames` frames spread over a span from each of `starts`.
fn plan_at(cfg: &ClipSamplerConfig, video: VideoTiming, starts: Vec<usize>) -> ClipPlan {
    let span = cfg.span(video.fps);
    let clips = starts
        .into_iter()
        .map(|start| {
            let frames = (0..cfg.frames)
                .map(|i| {
                    let x = if cfg.frames == 1 {
                        start as f64
                    } else {
                        start as f64 + (span - 1) as f64 * i as f64 / (cfg.frames - 1) as f64
                    };
                    (x as usize).min(video.num_frames.saturating_sub(1))
                })
                .collect();
            ClipFrames { start, frames }
        })
        .collect::<Vec<_>>();
    let output_order = (0..clips.len()).collect();
    ClipPlan {
        clips,
        output_order,
    }
}

/// `k` square crops of side `size` along the long side of an h×w frame (k = 1: centre only).
pub fn spatial_crops(h: usize, w: usize, size: usize, k: usize) -> Vec<CropBox> {
    let size_h = size.min(h);
    let size_w = size.min(w);
    let positions = |len: usize, s: usize| -> Vec<usize> {
        let room = len - s;
        match k {
            0 => vec![],
            1 => vec![room / 2],
            _ => (0..k)
                .map(|i| {
                    if i == k / 2 && k % 2 == 1 {
                        room / 2
                    } else {
                        room * i / (k - 1)
                    }
                })
                .collect(),
        }
    };
    if h > w {
        positions(h, size_h)
            .into_iter()
            .map(|top| CropBox {
                top,
                left: (w - size_w) / 2,
                height: size_h,
                width: size_w,
            })
            .collect()
    } else {
        positions(w, size_w)
            .into_iter()
            .map(|left| CropBox {
                top: (h - size_h) / 2,
                left,
                height: size_h,
                width: size_w,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_uniform_clips() {
        assert_eq!(
            temporal_starts(300, 64, 10),
            [0, 23, 47, 70, 94, 118, 141, 165, 188, 212]
        );
        assert_eq!(temporal_starts(30, 64, 3), [0, 0, 0]);
        let cfg = ClipSamplerConfig {
            frames: 8,
            stride: 8,
            rho: 1,
            max_timespan_s: None,
        };
        let p = eval_plan(
            &cfg,
            VideoTiming {
                num_frames: 300,
                fps: 30.0,
            },
            10,
        );
        assert_eq!(p.clips.len(), 10);
        assert_eq!(p.clips[9].frames.last(), Some(&(212 + 63)));
    }

    #[test]
    fn three_crops_left_centre_right_and_top_centre_bottom() {
        let c = spatial_crops(256, 340, 256, 3);
        let lefts: Vec<usize> = c.iter().map(|b| b.left).collect();
        assert_eq!(lefts, [0, 42, 84]);
        assert!(c
            .iter()
            .all(|b| b.top == 0 && b.width == 256 && b.height == 256));
        let p = spatial_crops(340, 256, 256, 3);
        let tops: Vec<usize> = p.iter().map(|b| b.top).collect();
        assert_eq!(tops, [0, 42, 84]);
        assert_eq!(
            spatial_crops(256, 340, 224, 1)[0],
            CropBox {
                top: 16,
                left: 58,
                height: 224,
                width: 224
            }
        );
    }
}
