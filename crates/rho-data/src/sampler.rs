//! `ClipSampler`: which source frames make up the ρ clips of one video (docs/method.md §3.1).
//!
//! A clip is T frames at stride τ, its raw span scaled to the video's frame rate with 30 fps as
//! the reference: ℓ = max(1, T·τ·fps/30) source frames. Each clip's start is uniform over the whole
//! video ("global" sampling, clips may overlap), or, with a maximum timespan t, all starts lie
//! within t seconds of each other (paper Table 4; t = 0 puts every clip at the same time). The
//! frame indices are T values evenly spaced from start to start + ℓ − 1, truncated and clamped.
//! Clips are returned in time order, so one decode pass serves them all, together with the random
//! order in which they are handed to the method (the released code permutes them).

use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::DataError;
use crate::rng::{stream, Purpose};

/// Frame rate the stride τ refers to.
pub const REFERENCE_FPS: f64 = 30.0;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClipSamplerConfig {
    /// Frames per clip (T).
    pub frames: usize,
    /// Temporal stride at 30 fps (τ).
    pub stride: usize,
    /// Clips per video (ρ). ρ = 1 yields one clip that the pipeline crops twice.
    pub rho: usize,
    /// Maximum time between the clips' starts, in seconds; `None` samples over the whole video.
    pub max_timespan_s: Option<f64>,
}

/// What the sampler needs to know of a video.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoTiming {
    pub num_frames: usize,
    pub fps: f64,
}

/// One clip: its source-frame indices (non-decreasing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClipFrames {
    pub start: usize,
    pub frames: Vec<usize>,
}

/// The clips of one video, sorted by start, and the order in which to hand them out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClipPlan {
    pub clips: Vec<ClipFrames>,
    /// `output_order[i]` is the index in `clips` of the i-th clip given to the method.
    pub output_order: Vec<usize>,
}

impl ClipPlan {
    /// Every source frame the plan needs, sorted and without repeats (what the decoder converts).
    pub fn wanted_frames(&self) -> Vec<usize> {
        let mut f: Vec<usize> = self
            .clips
            .iter()
            .flat_map(|c| c.frames.iter().copied())
            .collect();
        f.sort_unstable();
        f.dedup();
        f
    }
}

impl ClipSamplerConfig {
    pub fn validate(&self) -> Result<(), DataError> {
        if self.frames == 0 || self.stride == 0 || self.rho == 0 {
            return Err(DataError::Config(format!(
                "frames ({}), stride ({}) and rho ({}) must all be at least 1",
                self.frames, self.stride, self.rho
            )));
        }
        if matches!(self.max_timespan_s, Some(t) if !(t >= 0.0)) {
            return Err(DataError::Config("max_timespan_s must be ≥ 0".into()));
        }
        Ok(())
    }

    /// Raw span ℓ in source frames for a video at `fps`.
    pub fn span(&self, fps: f64) -> usize {
        ((self.frames * self.stride) as f64 * fps / REFERENCE_FPS).max(1.0) as usize
    }

    /// Seconds of video one clip covers.
    pub fn span_seconds(&self) -> f64 {
        (self.frames * self.stride) as f64 / REFERENCE_FPS
    }

    /// The plan for `video`, drawn from the stream of (seed, epoch, sample).
    pub fn plan(
        &self,
        video: VideoTiming,
        seed: u64,
        epoch: u64,
        sample: u64,
    ) -> Result<ClipPlan, DataError> {
        self.validate()?;
        if video.num_frames == 0 || !(video.fps > 0.0) {
            return Err(DataError::Config(format!(
                "a video with {} frames at {} fps cannot be sampled",
                video.num_frames, video.fps
            )));
        }
        let mut rng = stream(seed, epoch, sample, 0, Purpose::Temporal);
        let span = self.span(video.fps);
        let last_start = video.num_frames.saturating_sub(span); // max(N − ℓ, 0)
        let starts: Vec<usize> = match self.max_timespan_s {
            None => (0..self.rho)
                .map(|_| rng.random_range(0..=last_start))
                .collect(),
            Some(t) => {
                let window = ((t * video.fps).round() as usize).min(last_start);
                let base = rng.random_range(0..=last_start - window);
                (0..self.rho)
                    .map(|_| base + rng.random_range(0..=window))
                    .collect()
            }
        };
        let mut clips: Vec<ClipFrames> = starts
            .into_iter()
            .map(|start| ClipFrames {
                start,
                frames: linspace_indices(start, span, self.frames, video.num_frames),
            })
            .collect();
        clips.sort_by_key(|c| c.start);
        let mut output_order: Vec<usize> = (0..clips.len()).collect();
        output_order.shuffle(&mut rng);
        Ok(ClipPlan {
            clips,
            output_order,
        })
    }
}

/// T indices evenly spaced over [start, start + span − 1], truncated, clamped to the video.
fn linspace_indices(start: usize, span: usize, t: usize, num_frames: usize) -> Vec<usize> {
    let (a, b) = (start as f64, (start + span - 1) as f64);
    (0..t)
        .map(|i| {
            let x = if t == 1 {
                a
            } else {
                a + (b - a) * i as f64 / (t - 1) as f64
            };
            (x as usize).min(num_frames - 1)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(rho: usize, t: Option<f64>) -> ClipSamplerConfig {
        ClipSamplerConfig {
            frames: 8,
            stride: 8,
            rho,
            max_timespan_s: t,
        }
    }

    #[test]
    fn span_scales_with_fps() {
        assert_eq!(cfg(2, None).span(30.0), 64);
        assert_eq!(cfg(2, None).span(60.0), 128);
        assert_eq!(cfg(2, None).span(15.0), 32);
        assert!((cfg(2, None).span_seconds() - 64.0 / 30.0).abs() < 1e-12);
    }

    #[test]
    fn indices_match_linspace_and_stay_in_the_video() {
        // numpy: np.linspace(10, 73, 8).astype(int)
        assert_eq!(
            linspace_indices(10, 64, 8, 1000),
            [10, 19, 28, 37, 46, 55, 64, 73]
        );
        // a video shorter than the span: clamped to its last frame
        assert_eq!(
            linspace_indices(0, 64, 8, 20),
            [0, 9, 18, 19, 19, 19, 19, 19]
        );
    }

    #[test]
    fn plans_are_deterministic_sorted_and_within_the_video() {
        let v = VideoTiming {
            num_frames: 300,
            fps: 30.0,
        };
        for sample in 0..50 {
            let p = cfg(4, None).plan(v, 7, 1, sample).unwrap();
            assert_eq!(p, cfg(4, None).plan(v, 7, 1, sample).unwrap());
            assert!(p.clips.windows(2).all(|w| w[0].start <= w[1].start));
            assert!(p
                .clips
                .iter()
                .all(|c| c.start <= 300 - 64 && c.frames.iter().all(|&f| f < 300)));
            let mut o = p.output_order.clone();
            o.sort();
            assert_eq!(o, [0, 1, 2, 3]);
        }
        assert_ne!(
            cfg(4, None).plan(v, 7, 1, 0).unwrap(),
            cfg(4, None).plan(v, 7, 2, 0).unwrap()
        );
    }

    #[test]
    fn timespan_bounds_the_distance_between_clips() {
        let v = VideoTiming {
            num_frames: 3000,
            fps: 30.0,
        };
        for sample in 0..100 {
            let p = cfg(3, Some(1.0)).plan(v, 1, 0, sample).unwrap();
            let first = p.clips.first().unwrap().start;
            let last = p.clips.last().unwrap().start;
            assert!(last - first <= 30, "{first}..{last}");
            let same = cfg(3, Some(0.0)).plan(v, 1, 0, sample).unwrap();
            assert!(same.clips.iter().all(|c| c.start == same.clips[0].start));
        }
        // Global sampling spreads clips over the whole video.
        let spread = (0..100)
            .map(|s| {
                let p = cfg(2, None).plan(v, 1, 0, s).unwrap();
                p.clips[1].start - p.clips[0].start
            })
            .max()
            .unwrap();
        assert!(spread > 1500);
    }

    #[test]
    fn starts_cover_the_whole_range_uniformly() {
        let v = VideoTiming {
            num_frames: 164,
            fps: 30.0,
        }; // starts in 0..=100
        let mut hist = [0usize; 4];
        let n = 4000;
        for s in 0..n {
            let st = cfg(1, None).plan(v, 3, 0, s).unwrap().clips[0].start;
            assert!(st <= 100);
            hist[(st * 4 / 101).min(3)] += 1;
        }
        for h in hist {
            assert!(
                (h as f64 - n as f64 / 4.0).abs() < 0.1 * n as f64 / 4.0,
                "{hist:?}"
            );
        }
    }

    #[test]
    fn bad_settings_are_errors() {
        let v = VideoTiming {
            num_frames: 10,
            fps: 30.0,
        };
        assert!(ClipSamplerConfig {
            frames: 0,
            ..cfg(1, None)
        }
        .plan(v, 0, 0, 0)
        .is_err());
        assert!(cfg(1, Some(-1.0)).plan(v, 0, 0, 0).is_err());
        assert!(cfg(1, None)
            .plan(
                VideoTiming {
                    num_frames: 0,
                    fps: 30.0
                },
                0,
                0,
                0
            )
            .is_err());
    }
}
