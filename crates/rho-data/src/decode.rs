//! `VideoDecoder`: frame-exact sparse decoding with FFmpeg (docs/data.md §0, §5).
//!
//! On open, one demux pass (no decoding) lists the keyframes and counts the video packets. Reading
//! a sorted set of wanted frames then decodes forward and seeks only when it skips work: when
//! the keyframe at or before the next wanted frame lies after the current position (never twice
//! into one GOP). Only wanted frames are converted to RGB, resized on the way so their short side
//! is `short_side`. One single-threaded decoder per reader: parallelism comes from workers.

use std::path::{Path, PathBuf};

use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;
use ffmpeg_next as ffmpeg;

use crate::error::DataError;

/// What one demux pass learns about a video.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoProbe {
    /// Video packets, i.e. frames (WebM carries no frame count of its own).
    pub num_frames: usize,
    /// The count the container states, when it states one.
    pub container_frames: Option<usize>,
    pub fps: f64,
    pub width: u32,
    pub height: u32,
    pub duration_s: f64,
    /// Frame indices of keyframes, ascending.
    pub keyframes: Vec<usize>,
    /// Frame durations differ by more than half a frame somewhere.
    pub variable_frame_rate: bool,
    pub codec: String,
}

impl VideoProbe {
    /// Longest distance between keyframes, in frames.
    pub fn max_gop(&self) -> usize {
        let mut k = self.keyframes.clone();
        k.push(self.num_frames);
        k.windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or(self.num_frames)
    }
}

/// Frames read for a set of wanted indices.
#[derive(Debug, Clone, Default)]
pub struct DecodedFrames {
    pub height: usize,
    pub width: usize,
    /// RGB24, one `height × width × 3` block per wanted index, in the order asked.
    pub rgb: Vec<u8>,
    /// Frames the decoder produced (the work done).
    pub decoded: usize,
    pub seeks: usize,
    /// Wanted indices the stream did not have: each got the next frame that exists, or the last
    /// frame when it lies past the end.
    pub missing: Vec<usize>,
}

/// A video opened for reading.
pub struct VideoDecoder {
    path: PathBuf,
    input: ffmpeg::format::context::Input,
    stream: usize,
    decoder: ffmpeg::decoder::Video,
    probe: VideoProbe,
    time_base: f64,
    start_pts: i64,
}

fn err(path: &Path, reason: impl Into<String>) -> DataError {
    DataError::Decode {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// FFmpeg's global set-up, once per process; its log is silenced (errors reach us as values).
fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = ffmpeg::init();
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Fatal);
    });
}

impl VideoDecoder {
    /// Opens `path` and runs the keyframe pre-scan.
    pub fn open(path: &Path) -> Result<Self, DataError> {
        init();
        if !path.exists() {
            return Err(err(path, "no such file"));
        }
        crate::file_guard::require_regular_file(path)?;
        let mut input =
            ffmpeg::format::input(path).map_err(|e| err(path, format!("cannot open ({e})")))?;
        let (stream, time_base, start_pts, fps, container_frames, params, duration) = {
            let s = input
                .streams()
                .best(ffmpeg::media::Type::Video)
                .ok_or_else(|| err(path, "no video stream"))?;
            let tb = f64::from(s.time_base());
            let rate = s.avg_frame_rate();
            let rate = if rate.numerator() > 0 && rate.denominator() > 0 {
                rate
            } else {
                s.rate()
            };
            let fps = f64::from(rate);
            let start = if s.start_time() == ffmpeg::ffi::AV_NOPTS_VALUE {
                0
            } else {
                s.start_time()
            };
            let frames = (s.frames() > 0).then_some(s.frames() as usize);
            let dur = if s.duration() > 0 {
                s.duration() as f64 * tb
            } else {
                input.duration().max(0) as f64 / 1e6
            };
            (s.index(), tb, start, fps, frames, s.parameters(), dur)
        };
        if !(fps > 0.0 && fps.is_finite()) {
            return Err(err(path, "the video stream has no frame rate"));
        }
        let mut ctx = ffmpeg::codec::context::Context::from_parameters(params)
            .map_err(|e| err(path, e.to_string()))?;
        ctx.set_threading(ffmpeg::threading::Config {
            kind: ffmpeg::threading::Type::Frame,
            count: 1,
            ..Default::default()
        });
        let decoder = ctx
            .decoder()
            .video()
            .map_err(|e| err(path, format!("no decoder ({e})")))?;
        let codec = decoder
            .codec()
            .map(|c| c.name().to_string())
            .unwrap_or_default();

        // Pre-scan: packet count, keyframes and frame durations, without decoding.
        let mut keyframes = Vec::new();
        let mut pts_list = Vec::new();
        let mut packets = 0usize;
        let mut packet = ffmpeg::Packet::empty();
        loop {
            match packet.read(&mut input) {
                Ok(()) if packet.stream() == stream => {
                    packets += 1;
                    if let Some(pts) = packet.pts() {
                        let idx = ((pts - start_pts) as f64 * time_base * fps)
                            .round()
                            .max(0.0) as usize;
                        pts_list.push(pts);
                        if packet.is_key() {
                            keyframes.push(idx);
                        }
                    }
                }
                Ok(()) => {}
                Err(ffmpeg::Error::Eof) => break,
                Err(ffmpeg::Error::InvalidData) => continue,
                Err(e) => {
                    return Err(err(
                        path,
                        format!("demux error after {packets} packets ({e})"),
                    ))
                }
            }
        }
        if packets == 0 {
            return Err(err(path, "the video stream has no packets"));
        }
        keyframes.sort_unstable();
        keyframes.dedup();
        if keyframes.first() != Some(&0) {
            keyframes.insert(0, 0);
        }
        pts_list.sort_unstable();
        let deltas: Vec<i64> = pts_list
            .windows(2)
            .map(|w| w[1] - w[0])
            .filter(|d| *d > 0)
            .collect();
        let nominal = 1.0 / (fps * time_base);
        let variable_frame_rate = deltas
            .iter()
            .any(|&d| (d as f64 - nominal).abs() > 0.5 * nominal);
        let (width, height) = (decoder.width(), decoder.height());
        let probe = VideoProbe {
            num_frames: packets,
            container_frames,
            fps,
            width,
            height,
            duration_s: if duration > 0.0 {
                duration
            } else {
                packets as f64 / fps
            },
            keyframes,
            variable_frame_rate,
            codec,
        };
        let mut me = Self {
            path: path.to_path_buf(),
            input,
            stream,
            decoder,
            probe,
            time_base,
            start_pts,
        };
        me.seek_to(0)?;
        Ok(me)
    }

    pub fn probe(&self) -> &VideoProbe {
        &self.probe
    }

    fn frame_index(&self, pts: i64) -> usize {
        ((pts - self.start_pts) as f64 * self.time_base * self.probe.fps)
            .round()
            .max(0.0) as usize
    }

    /// Seeks to the keyframe at or before frame `idx` and flushes the decoder.
    fn seek_to(&mut self, idx: usize) -> Result<(), DataError> {
        let start_us = self.start_pts as f64 * self.time_base * 1e6;
        let ts = (start_us + idx as f64 / self.probe.fps * 1e6) as i64;
        self.input
            .seek(ts, ..ts)
            .map_err(|e| err(&self.path, format!("seek to frame {idx} failed ({e})")))?;
        self.decoder.flush();
        Ok(())
    }

    fn last_keyframe_at_or_before(&self, idx: usize) -> usize {
        match self.probe.keyframes.binary_search(&idx) {
            Ok(i) => self.probe.keyframes[i],
            Err(0) => 0,
            Err(i) => self.probe.keyframes[i - 1],
        }
    }

    /// Output size for `short_side` (even sizes, aspect kept).
    pub fn output_size(&self, short_side: Option<u32>) -> (u32, u32) {
        let (w, h) = (self.probe.width, self.probe.height);
        match short_side {
            Some(s) if w.min(h) > 0 => {
                if w <= h {
                    (s, ((h as f64 * s as f64 / w as f64).round() as u32).max(1))
                } else {
                    (((w as f64 * s as f64 / h as f64).round() as u32).max(1), s)
                }
            }
            _ => (w, h),
        }
    }

    /// Reads the frames `wanted` (any order, repeats allowed) as RGB24 at `short_side`.
    pub fn read_frames(
        &mut self,
        wanted: &[usize],
        short_side: Option<u32>,
    ) -> Result<DecodedFrames, DataError> {
        let (ow, oh) = self.output_size(short_side);
        let frame_bytes = (ow * oh * 3) as usize;
        let mut targets: Vec<usize> = wanted.to_vec();
        targets.sort_unstable();
        targets.dedup();
        let mut got: Vec<Option<Vec<u8>>> = vec![None; targets.len()];
        let mut out = DecodedFrames {
            height: oh as usize,
            width: ow as usize,
            ..Default::default()
        };
        if targets.is_empty() {
            return Ok(out);
        }
        let mut scaler: Option<scaling::Context> = None;
        let mut frame = ffmpeg::frame::Video::empty();
        let mut rgb = ffmpeg::frame::Video::empty();
        let mut next = 0usize; // first target not yet filled
        let mut pos: Option<usize> = None; // index of the last decoded frame
        let mut last_rgb: Option<Vec<u8>> = None;
        // Start: seek unless the first target is in the first GOP (we are at the start after open
        // or after the last read, which may be anywhere: always position explicitly).
        self.seek_to(targets[0])?;
        out.seeks += 1;
        let mut packet = ffmpeg::Packet::empty();
        let mut eof = false;
        while next < targets.len() {
            if !eof {
                match packet.read(&mut self.input) {
                    Ok(()) if packet.stream() == self.stream => {
                        if self.decoder.send_packet(&packet).is_err() {
                            continue; // a corrupt packet: skip it, keep going
                        }
                    }
                    Ok(()) => continue,
                    Err(ffmpeg::Error::Eof) => {
                        eof = true;
                        let _ = self.decoder.send_eof();
                    }
                    Err(ffmpeg::Error::InvalidData) => continue,
                    Err(e) => return Err(err(&self.path, format!("read error ({e})"))),
                }
            }
            let mut produced = false;
            while self.decoder.receive_frame(&mut frame).is_ok() {
                produced = true;
                out.decoded += 1;
                let idx = frame
                    .timestamp()
                    .map(|p| self.frame_index(p))
                    .unwrap_or_else(|| pos.map_or(0, |p| p + 1));
                pos = Some(idx);
                if idx < targets[next] {
                    continue;
                }
                // Convert once; fill every target up to this frame (targets the stream skipped,
                // e.g. dropped frames of a variable-frame-rate file, take this frame).
                if scaler.is_none() {
                    scaler = Some(
                        scaling::Context::get(
                            frame.format(),
                            frame.width(),
                            frame.height(),
                            Pixel::RGB24,
                            ow,
                            oh,
                            scaling::Flags::BILINEAR,
                        )
                        .map_err(|e| err(&self.path, format!("cannot convert frames ({e})")))?,
                    );
                }
                if let Some(s) = scaler.as_mut() {
                    s.run(&frame, &mut rgb)
                        .map_err(|e| err(&self.path, format!("conversion failed ({e})")))?;
                }
                let bytes = copy_rgb(&rgb, ow as usize, oh as usize);
                while next < targets.len() && targets[next] <= idx {
                    if targets[next] < idx {
                        out.missing.push(targets[next]);
                    }
                    got[next] = Some(bytes.clone());
                    next += 1;
                }
                last_rgb = Some(bytes);
                if next == targets.len() {
                    break;
                }
                // Seek rule: jump only if the next target's keyframe lies ahead of us.
                let k = self.last_keyframe_at_or_before(targets[next]);
                if k > idx + 1 {
                    self.seek_to(targets[next])?;
                    out.seeks += 1;
                    break;
                }
            }
            if eof && !produced {
                break;
            }
        }
        // Past the end: durations lie; pad with the last frame decoded.
        if next < targets.len() {
            let fill = last_rgb.ok_or_else(|| err(&self.path, "no frame could be decoded"))?;
            for slot in got.iter_mut().skip(next) {
                *slot = Some(fill.clone());
            }
            out.missing.extend_from_slice(&targets[next..]);
        }
        out.rgb.reserve(wanted.len() * frame_bytes);
        for w in wanted {
            let i = targets
                .binary_search(w)
                .map_err(|_| err(&self.path, "internal: lost a target"))?;
            out.rgb.extend_from_slice(
                got[i]
                    .as_ref()
                    .ok_or_else(|| err(&self.path, "internal: unfilled target"))?,
            );
        }
        Ok(out)
    }
}

fn copy_rgb(frame: &ffmpeg::frame::Video, w: usize, h: usize) -> Vec<u8> {
    let stride = frame.stride(0);
    let data = frame.data(0);
    let mut v = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        v.extend_from_slice(&data[y * stride..y * stride + w * 3]);
    }
    v
}
