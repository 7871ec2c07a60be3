//! A deterministic, labelled synthetic video dataset for `rho demo`, stored as JPEG frame folders
//! plus mmaction rawframe lists.
//!
//! # Why the data looks like this
//!
//! The demo must show, on a laptop CPU in minutes, that ρBYOL pre-training (pulling together
//! clips taken at different times of one video, under strong augmentation) learns features whose
//! linear probe / kNN clearly beat a randomly initialised network of the same shape. So the
//! videos are built like real footage, where two moments of one video share the *content* and
//! little else:
//!
//! * **The class persists.** A class is a pair (object shape, texture pattern); the texture lives
//!   in the object's own coordinate frame, so it moves, scales and turns with the object. Both
//!   survive every augmentation ρBYOL uses (crop, colour jitter incl. hue, grayscale, blur, flip):
//!   the texture's two colours always differ in brightness, and only one diagonal texture exists,
//!   so a horizontal flip never turns one class into another.
//! * **Scenes cut.** A video is `scenes` scenes; at each cut every nuisance factor below is drawn
//!   afresh (the class object stays), so clips from different scenes share only the class, while
//!   two crops of one moment (ρ = 1) share background and colours too: more clips spread over
//!   time give better features, the paper's finding, by construction.
//! * **Everything else drifts.** Per scene and over time: the object's colours (a random hue that
//!   drifts; colour never predicts the class), lighting (gain, contrast, offset, a moving light
//!   gradient), the background (random low-frequency colour waves that pan, zoom and crossfade
//!   into other random backgrounds), the object's position, size and angle, plus transient
//!   distractor objects (random shape, another texture) and occluders (a bar or blob crossing the
//!   frame) that only exist for a short part of the video, and a little pixel noise.
//!
//! A random network mostly responds to colour and low-level statistics, which here are nuisance;
//! invariance learned from temporal persistence plus colour augmentation isolates shape and
//! texture, which carry the label.
//!
//! # Classes
//!
//! With `S` = 10 shapes and `T` = 6 textures, class `c` is shape `c % S` with texture
//! `(c / S + c) % T`. Because gcd(S + 1, T) = 1 this is a bijection from `0..S*T` onto all pairs
//! ([`max_classes`] = 60), and the first classes differ in shape *and* (mostly) texture
//! (`disk_hstripes`, `square_vstripes`, `triangle_diagonal`, `cross_checker`, `ring_dots`,
//! `star_solid`, `diamond_hstripes`, `hexagon_vstripes`, …).
//!
//! # Determinism
//!
//! Every video is rendered from its own `ChaCha8Rng` keyed by (seed, split, class, video), so the
//! output is byte-identical for a configuration whatever the thread count, and a video does not
//! depend on how many classes or videos the configuration asks for.

use std::f32::consts::{FRAC_1_SQRT_2, TAU};
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::DataError;

/// Object shapes (the first half of a class).
const SHAPES: [&str; 10] = [
    "disk", "square", "triangle", "cross", "ring", "star", "diamond", "hexagon", "crescent", "ell",
];
/// Texture patterns in the object's frame (the second half of a class).
const TEXTURES: [&str; 6] = [
    "hstripes", "vstripes", "diagonal", "checker", "dots", "solid",
];

/// What [`generate`] makes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SynthConfig {
    /// Number of classes, `2..=max_classes()`.
    pub classes: usize,
    /// Training videos per class (≥ 1).
    pub train_per_class: usize,
    /// Test videos per class (may be 0).
    pub test_per_class: usize,
    /// Frames per video, `1..=99999`.
    pub frames: usize,
    /// Frame side in pixels (square frames), `16..=4096`.
    pub size: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// JPEG quality, `1..=100`.
    pub quality: u8,
    /// Scenes per video, `1..=frames`: at each cut every nuisance factor (background, colours,
    /// lighting, position, size, distractors) is drawn afresh, so clips from different scenes
    /// share only the class content, while two crops of one moment share everything.
    pub scenes: usize,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            classes: 8,
            train_per_class: 24,
            test_per_class: 8,
            frames: 64,
            size: 64,
            seed: 0,
            quality: 90,
            scenes: 4,
        }
    }
}

impl SynthConfig {
    /// Checks the ranges documented on the fields.
    pub fn validate(&self) -> Result<(), DataError> {
        let bad = |what: String| Err(DataError::Config(format!("synthetic dataset: {what}")));
        if !(2..=max_classes()).contains(&self.classes) {
            return bad(format!(
                "classes is {}, it must be between 2 and {} (the shape × texture pairs)",
                self.classes,
                max_classes()
            ));
        }
        if self.train_per_class == 0 {
            return bad("train_per_class is 0, it must be at least 1".into());
        }
        if !(1..=99_999).contains(&self.frames) {
            return bad(format!(
                "frames is {}, it must be between 1 and 99999",
                self.frames
            ));
        }
        if !(1..=self.frames).contains(&self.scenes) {
            return bad(format!(
                "scenes is {}, it must be between 1 and frames ({})",
                self.scenes, self.frames
            ));
        }
        if !(16..=4096).contains(&self.size) {
            return bad(format!(
                "size is {} pixels, it must be between 16 and 4096",
                self.size
            ));
        }
        if !(1..=100).contains(&self.quality) {
            return bad(format!(
                "quality is {}, a JPEG quality must be between 1 and 100",
                self.quality
            ));
        }
        Ok(())
    }
}

/// How many distinct classes the shape × texture design supports.
pub fn max_classes() -> usize {
    SHAPES.len() * TEXTURES.len()
}

/// (shape, texture) of a class; a bijection on `0..max_classes()` (see the module doc).
fn class_parts(class: usize) -> (usize, usize) {
    (
        class % SHAPES.len(),
        (class / SHAPES.len() + class) % TEXTURES.len(),
    )
}

/// The name of a class, e.g. `disk_hstripes`.
fn class_name(class: usize) -> String {
    let (s, t) = class_parts(class);
    format!("{}_{}", SHAPES[s], TEXTURES[t])
}

/// Which half of the dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SynthSplit {
    Train,
    Test,
}

impl SynthSplit {
    fn dir(self) -> &'static str {
        match self {
            SynthSplit::Train => "train",
            SynthSplit::Test => "test",
        }
    }
}

/// A generated dataset on disk.
#[derive(Debug, Clone)]
pub struct SynthDataset {
    /// The output folder; list entries are relative to it.
    pub root: PathBuf,
    /// `root/train.txt`: `train/<class>/<NNNN> <frames> <label>` per line.
    pub train_list: PathBuf,
    /// `root/test.txt`, same format.
    pub test_list: PathBuf,
    /// Class names, index = label (also in `root/classes.txt`).
    pub classes: Vec<String>,
    /// Videos written, train and test together.
    pub videos: usize,
}

/// Writes the dataset of `cfg` under `out`: `train/<class>/<NNNN>/img_00001.jpg …`, the same
/// under `test/`, then `classes.txt`, `train.txt`, `test.txt` and `synth.json` (the config).
/// The lists are written last and atomically, so an interrupted run leaves no list naming
/// missing frames. Read a list with `VideoIndex::frame_folders(&out.join("train.txt"), out)`.
pub fn generate(cfg: &SynthConfig, out: &Path) -> Result<SynthDataset, DataError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    generate_with_threads(cfg, out, threads)
}

/// One video to write: where and what.
struct Job {
    split: SynthSplit,
    class: usize,
    video: usize,
    /// Folder relative to the output root.
    rel: String,
}

fn generate_with_threads(
    cfg: &SynthConfig,
    out: &Path,
    threads: usize,
) -> Result<SynthDataset, DataError> {
    cfg.validate()?;
    std::fs::create_dir_all(out).map_err(|e| io_err(out, "create the output folder", e))?;
    // Lists of an earlier run must not outlive frames this run is about to overwrite.
    for name in ["train.txt", "test.txt", "classes.txt", "synth.json"] {
        let p = out.join(name);
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io_err(&p, "remove the stale list", e))
            }
            _ => {}
        }
    }
    let classes: Vec<String> = (0..cfg.classes).map(class_name).collect();
    let mut jobs = Vec::new();
    for (split, per_class) in [
        (SynthSplit::Train, cfg.train_per_class),
        (SynthSplit::Test, cfg.test_per_class),
    ] {
        for (class, name) in classes.iter().enumerate() {
            for video in 0..per_class {
                let rel = format!("{}/{name}/{video:04}", split.dir());
                jobs.push(Job {
                    split,
                    class,
                    video,
                    rel,
                });
            }
        }
    }
    let chunk = jobs
        .len()
        .div_ceil(threads.clamp(1, jobs.len().max(1)))
        .max(1);
    let results: Vec<Result<(), DataError>> = std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().try_for_each(|j| write_video(cfg, out, j))))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    results.into_iter().collect::<Result<(), _>>()?;

    let list = |split: SynthSplit| -> String {
        jobs.iter()
            .filter(|j| j.split == split)
            .map(|j| format!("{} {} {}\n", j.rel, cfg.frames, j.class))
            .collect()
    };
    let train_list = out.join("train.txt");
    let test_list = out.join("test.txt");
    write_atomic(&out.join("classes.txt"), &(classes.join("\n") + "\n"))?;
    write_atomic(&train_list, &list(SynthSplit::Train))?;
    write_atomic(&test_list, &list(SynthSplit::Test))?;
    let json = serde_json::to_string_pretty(cfg).unwrap_or_default() + "\n";
    write_atomic(&out.join("synth.json"), &json)?;
    Ok(SynthDataset {
        root: out.to_path_buf(),
        train_list,
        test_list,
        classes,
        videos: jobs.len(),
    })
}

/// Renders one video and writes its frames as `img_00001.jpg`, ….
fn write_video(cfg: &SynthConfig, out: &Path, job: &Job) -> Result<(), DataError> {
    let dir = out.join(&job.rel);
    std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, "create the frame folder", e))?;
    let pixels = render_video(cfg, job.split, job.class, job.video);
    let side = cfg.size as u16;
    let mut jpeg = Vec::new();
    for (t, frame) in pixels.chunks_exact(cfg.size * cfg.size * 3).enumerate() {
        let file = dir.join(format!("img_{:05}.jpg", t + 1));
        jpeg.clear();
        let mut enc = jpeg_encoder::Encoder::new(&mut jpeg, cfg.quality);
        // Full-resolution chroma: the textures are fine coloured patterns.
        enc.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_4_4);
        enc.encode(frame, side, side, jpeg_encoder::ColorType::Rgb)
            .map_err(|e| DataError::Write {
                path: file.clone(),
                reason: format!("cannot encode the JPEG frame: {e}"),
            })?;
        std::fs::write(&file, &jpeg).map_err(|e| io_err(&file, "write the frame", e))?;
    }
    Ok(())
}

/// Writes `path` atomically and durably (temporary file, fsync, rename; `atomic-write-file`).
fn write_atomic(path: &Path, text: &str) -> Result<(), DataError> {
    use std::io::Write;
    let mut f = atomic_write_file::AtomicWriteFile::open(path)
        .map_err(|e| io_err(path, "create a temporary file for", e))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.commit())
        .map_err(|e| io_err(path, "write", e))
}

fn io_err(path: &Path, what: &str, e: std::io::Error) -> DataError {
    DataError::Write {
        path: path.to_path_buf(),
        reason: format!(
            "cannot {what} ({e}); choose an output folder that is writable and has free space"
        ),
    }
}

/// Renders video `video` of `split` into frames [frames, size, size, 3] RGB u8 (no disk).
///
/// Panics if `class >= max_classes()`.
pub fn render_video(cfg: &SynthConfig, split: SynthSplit, class: usize, video: usize) -> Vec<u8> {
    assert!(
        class < max_classes(),
        "synthetic class {class} does not exist (there are {})",
        max_classes()
    );
    let mut rng = video_rng(cfg.seed, split, class, video);
    let scenes = cfg.scenes.clamp(1, cfg.frames.max(1));
    let plans: Vec<VideoPlan> = (0..scenes)
        .map(|_| VideoPlan::draw(&mut rng, class))
        .collect();
    let frame_len = cfg.size * cfg.size * 3;
    let mut out = vec![0u8; cfg.frames * frame_len];
    if frame_len == 0 {
        return out;
    }
    let mut buf = vec![0f32; frame_len];
    for (t, frame) in out.chunks_exact_mut(frame_len).enumerate() {
        // Scene k covers frames [k·F/K, (k+1)·F/K); time runs 0 → 1 inside each scene.
        let k = (t * scenes / cfg.frames).min(scenes - 1);
        let (first, end) = (k * cfg.frames / scenes, (k + 1) * cfg.frames / scenes);
        let u = (t - first) as f32 / (end - first).saturating_sub(1).max(1) as f32;
        plans[k].render_frame(cfg.size, u, &mut rng, &mut buf, frame);
    }
    out
}

/// The RNG of one video, keyed by (seed, split, class, video) without collisions.
fn video_rng(seed: u64, split: SynthSplit, class: usize, video: usize) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&(split as u64).to_le_bytes());
    key[16..24].copy_from_slice(&(class as u64).to_le_bytes());
    key[24..].copy_from_slice(&(video as u64).to_le_bytes());
    ChaCha8Rng::from_seed(key)
}

// ---------------------------------------------------------------------------------------------
// Per-video plan: every random choice, drawn once; frames are functions of the time u ∈ [0, 1].

/// A value that moves from `a` to `b` over the video (smoothstep), plus two slow wobbles
/// `amp · sin(2π · freq · u + phase)`.
#[derive(Debug, Clone, Copy)]
struct Drift {
    a: f32,
    b: f32,
    wobble: [[f32; 3]; 2],
}

impl Drift {
    /// Start and end drawn independently from `lo..hi`, wobbles of amplitude up to `amp`.
    fn new(rng: &mut ChaCha8Rng, lo: f32, hi: f32, amp: f32) -> Self {
        let a = rng.random_range(lo..hi);
        let b = rng.random_range(lo..hi);
        Self::between(rng, a, b, amp)
    }

    fn between(rng: &mut ChaCha8Rng, a: f32, b: f32, amp: f32) -> Self {
        let mut wave = || {
            [
                amp * rng.random::<f32>(),
                rng.random_range(0.5..2.5),
                rng.random_range(0.0..TAU),
            ]
        };
        let wobble = [wave(), wave()];
        Self { a, b, wobble }
    }

    fn at(&self, u: f32) -> f32 {
        let w: f32 = self
            .wobble
            .iter()
            .map(|[amp, freq, phase]| amp * (TAU * freq * u + phase).sin())
            .sum();
        self.a + (self.b - self.a) * smoothstep(u) + w
    }
}

fn smoothstep(u: f32) -> f32 {
    let u = u.clamp(0.0, 1.0);
    u * u * (3.0 - 2.0 * u)
}

/// A random magnitude in `lo..hi` with a random sign.
fn signed(rng: &mut ChaCha8Rng, lo: f32, hi: f32) -> f32 {
    let m = rng.random_range(lo..hi);
    if rng.random_bool(0.5) {
        m
    } else {
        -m
    }
}

/// One plane wave `amp · sin(2π (k · p) + phase)`, `p` in frame sides.
#[derive(Debug, Clone, Copy)]
struct Wave {
    k: [f32; 2],
    phase: f32,
    amp: f32,
}

/// A smooth random colour field: a base colour plus two tinted sums of low-frequency waves.
#[derive(Debug, Clone)]
struct Background {
    base: [f32; 3],
    tints: [[f32; 3]; 2],
    waves: [[Wave; 2]; 2],
}

impl Background {
    fn draw(rng: &mut ChaCha8Rng) -> Self {
        let base = std::array::from_fn(|_| rng.random_range(35.0..220.0));
        let tints = std::array::from_fn(|_| std::array::from_fn(|_| rng.random_range(-55.0..55.0)));
        let waves = std::array::from_fn(|_| {
            std::array::from_fn(|_| {
                let (f, dir) = (rng.random_range(0.4..4.0), rng.random_range(0.0..TAU));
                Wave {
                    k: [f * dir.cos(), f * dir.sin()],
                    phase: rng.random_range(0.0..TAU),
                    amp: rng.random_range(0.3..1.0),
                }
            })
        });
        Self { base, tints, waves }
    }

    fn sample(&self, x: f32, y: f32) -> [f32; 3] {
        let field = |ws: &[Wave; 2]| -> f32 {
            ws.iter()
                .map(|w| w.amp * (TAU * (w.k[0] * x + w.k[1] * y) + w.phase).sin())
                .sum()
        };
        let (f0, f1) = (field(&self.waves[0]), field(&self.waves[1]));
        std::array::from_fn(|c| self.base[c] + self.tints[0][c] * f0 + self.tints[1][c] * f1)
    }
}

/// A short-lived object of random shape and a texture other than the class's.
#[derive(Debug, Clone)]
struct Distractor {
    shape: usize,
    texture: usize,
    start: f32,
    len: f32,
    x: Drift,
    y: Drift,
    /// Diameter in frame sides.
    scale: f32,
    angle: f32,
    fg: [f32; 3],
    bg: [f32; 3],
}

/// A short-lived solid occluder crossing the frame.
#[derive(Debug, Clone)]
struct Occluder {
    start: f32,
    len: f32,
    colour: [f32; 3],
    kind: OccluderKind,
}

#[derive(Debug, Clone)]
enum OccluderKind {
    /// An infinite bar with unit `normal`, sweeping along it through the frame.
    Bar { normal: [f32; 2], half_width: f32 },
    /// An ellipse moving from `from` to `to` (frame sides, both outside the frame).
    Blob {
        from: [f32; 2],
        to: [f32; 2],
        radii: [f32; 2],
    },
}

/// Every random choice of one video.
#[derive(Debug, Clone)]
struct VideoPlan {
    shape: usize,
    texture: usize,
    tex_phase: [f32; 2],
    /// Object centre and diameter in frame sides, angle in radians.
    x: Drift,
    y: Drift,
    scale: Drift,
    angle: Drift,
    /// Hue of the texture foreground (turns); the background of the texture is `hue_gap` away.
    hue: Drift,
    hue_gap: f32,
    sat: [f32; 2],
    val: [f32; 2],
    /// Crossfaded over the video: 0 → 1 over the first half, 1 → 2 over the second.
    backgrounds: [Background; 3],
    pan: [Drift; 2],
    zoom: Drift,
    gain: Drift,
    contrast: Drift,
    bias: Drift,
    light_dir: Drift,
    light_amount: Drift,
    distractors: Vec<Distractor>,
    occluders: Vec<Occluder>,
    noise: f32,
}

/// A random colour pair with a clear brightness difference (survives grayscale).
fn contrasting_values(rng: &mut ChaCha8Rng) -> [f32; 2] {
    let mut v = [rng.random_range(0.75..1.0), rng.random_range(0.12..0.45)];
    if rng.random_bool(0.5) {
        v.swap(0, 1);
    }
    v
}

/// A window `(start, len)` of the video, `len` in `lo..hi`.
fn window(rng: &mut ChaCha8Rng, lo: f32, hi: f32) -> (f32, f32) {
    let len = rng.random_range(lo..hi);
    (rng.random_range(0.0..1.0 - len), len)
}

impl VideoPlan {
    fn draw(rng: &mut ChaCha8Rng, class: usize) -> Self {
        let (shape, texture) = class_parts(class);
        let tex_phase = [rng.random_range(0.0..1.0), rng.random_range(0.0..1.0)];
        let x = Drift::new(rng, 0.25, 0.75, 0.05);
        let y = Drift::new(rng, 0.25, 0.75, 0.05);
        let scale = Drift::new(rng, 0.42, 0.62, 0.02);
        let angle = Drift::new(rng, -0.3, 0.3, 0.05);
        let h0 = rng.random::<f32>();
        let h1 = h0 + signed(rng, 0.12, 0.4);
        let hue = Drift::between(rng, h0, h1, 0.03);
        let hue_gap = rng.random_range(0.25..0.75);
        let sat = [rng.random_range(0.45..1.0), rng.random_range(0.3..1.0)];
        let val = contrasting_values(rng);
        let backgrounds = std::array::from_fn(|_| Background::draw(rng));
        let pan = [
            Drift::new(rng, -0.5, 0.5, 0.05),
            Drift::new(rng, -0.5, 0.5, 0.05),
        ];
        let zoom = Drift::new(rng, 0.8, 1.25, 0.03);
        let gain = Drift::new(rng, 0.7, 1.2, 0.04);
        let contrast = Drift::new(rng, 0.7, 1.15, 0.03);
        let bias = Drift::new(rng, -20.0, 20.0, 4.0);
        let light_dir = Drift::new(rng, 0.0, TAU, 0.2);
        let light_amount = Drift::new(rng, 0.0, 0.35, 0.03);

        let distractors = (0..rng.random_range(1..=3))
            .map(|_| {
                let (start, len) = window(rng, 0.1, 0.25);
                let other = rng.random_range(1..TEXTURES.len());
                let (x0, y0) = (rng.random_range(0.1..0.9), rng.random_range(0.1..0.9));
                let (dx, dy) = (signed(rng, 0.0, 0.15), signed(rng, 0.0, 0.15));
                let h = rng.random::<f32>();
                let v = contrasting_values(rng);
                Distractor {
                    shape: rng.random_range(0..SHAPES.len()),
                    texture: (texture + other) % TEXTURES.len(),
                    start,
                    len,
                    x: Drift::between(rng, x0, x0 + dx, 0.02),
                    y: Drift::between(rng, y0, y0 + dy, 0.02),
                    scale: rng.random_range(0.15..0.28),
                    angle: rng.random_range(-0.6..0.6),
                    fg: hsv(h, rng.random_range(0.3..1.0), v[0]),
                    bg: hsv(
                        h + rng.random_range(0.2..0.8),
                        rng.random_range(0.3..1.0),
                        v[1],
                    ),
                }
            })
            .collect();

        let occluders = (0..rng.random_range(0..=2))
            .map(|_| {
                let (start, len) = window(rng, 0.1, 0.3);
                let colour = std::array::from_fn(|_| rng.random_range(15.0..240.0));
                let a = rng.random_range(0.0..TAU);
                let kind = if rng.random_bool(0.5) {
                    OccluderKind::Bar {
                        normal: [a.cos(), a.sin()],
                        half_width: rng.random_range(0.04..0.09),
                    }
                } else {
                    let b = a + std::f32::consts::PI + rng.random_range(-0.6..0.6);
                    OccluderKind::Blob {
                        from: [0.5 + 0.85 * a.cos(), 0.5 + 0.85 * a.sin()],
                        to: [0.5 + 0.85 * b.cos(), 0.5 + 0.85 * b.sin()],
                        radii: [rng.random_range(0.1..0.22), rng.random_range(0.1..0.22)],
                    }
                };
                Occluder {
                    start,
                    len,
                    colour,
                    kind,
                }
            })
            .collect();

        Self {
            shape,
            texture,
            tex_phase,
            x,
            y,
            scale,
            angle,
            hue,
            hue_gap,
            sat,
            val,
            backgrounds,
            pan,
            zoom,
            gain,
            contrast,
            bias,
            light_dir,
            light_amount,
            distractors,
            occluders,
            noise: rng.random_range(1.5..5.0),
        }
    }

    /// Renders the frame at time `u` into `out` (RGB u8), using `buf` as f32 scratch.
    fn render_frame(
        &self,
        size: usize,
        u: f32,
        rng: &mut ChaCha8Rng,
        buf: &mut [f32],
        out: &mut [u8],
    ) {
        let n = size as f32;
        self.render_background(size, u, buf);

        for d in &self.distractors {
            let s = (u - d.start) / d.len;
            if !(0.0..=1.0).contains(&s) {
                continue;
            }
            draw_object(
                buf,
                size,
                &Placed {
                    shape: d.shape,
                    texture: d.texture,
                    tex_phase: [0.0, 0.0],
                    centre: [d.x.at(s) * n, d.y.at(s) * n],
                    radius: d.scale * n / 2.0,
                    angle: d.angle,
                    fg: d.fg,
                    bg: d.bg,
                    // Fades in and out over a fifth of its window each.
                    alpha: (s.min(1.0 - s) * 5.0).min(1.0),
                },
            );
        }

        let hue = self.hue.at(u);
        draw_object(
            buf,
            size,
            &Placed {
                shape: self.shape,
                texture: self.texture,
                tex_phase: self.tex_phase,
                centre: [self.x.at(u) * n, self.y.at(u) * n],
                radius: self.scale.at(u).clamp(0.38, 0.66) * n / 2.0,
                angle: self.angle.at(u),
                fg: hsv(hue, self.sat[0], self.val[0]),
                bg: hsv(hue + self.hue_gap, self.sat[1], self.val[1]),
                alpha: 1.0,
            },
        );

        for o in &self.occluders {
            let s = (u - o.start) / o.len;
            if (0.0..=1.0).contains(&s) {
                draw_occluder(buf, size, o, s);
            }
        }

        self.finish(size, u, rng, buf, out);
    }

    /// The camera's view of the crossfading backgrounds.
    fn render_background(&self, size: usize, u: f32, buf: &mut [f32]) {
        let n = size as f32;
        let zoom = self.zoom.at(u).max(0.5);
        let (px, py) = (self.pan[0].at(u), self.pan[1].at(u));
        let mix = (u * 2.0).clamp(0.0, 1.999);
        let i = mix as usize;
        let w = smoothstep(mix - i as f32);
        let (b0, b1) = (&self.backgrounds[i], &self.backgrounds[i + 1]);
        for y in 0..size {
            let sy = ((y as f32 + 0.5) / n - 0.5) / zoom + 0.5 + py;
            for x in 0..size {
                let sx = ((x as f32 + 0.5) / n - 0.5) / zoom + 0.5 + px;
                let c = if w <= 0.0 {
                    b0.sample(sx, sy)
                } else {
                    let (c0, c1) = (b0.sample(sx, sy), b1.sample(sx, sy));
                    std::array::from_fn(|k| c0[k] + (c1[k] - c0[k]) * w)
                };
                buf[(y * size + x) * 3..][..3].copy_from_slice(&c);
            }
        }
    }

    /// Lighting (contrast, gain, a directional gradient, offset), noise and quantisation.
    fn finish(&self, size: usize, u: f32, rng: &mut ChaCha8Rng, buf: &[f32], out: &mut [u8]) {
        let n = size as f32;
        let (gain, contrast, bias) = (self.gain.at(u), self.contrast.at(u), self.bias.at(u));
        let (ly, lx) = self.light_dir.at(u).sin_cos();
        let amount = self.light_amount.at(u).clamp(0.0, 0.45) * 2.0;
        for y in 0..size {
            let fy = (y as f32 + 0.5) / n - 0.5;
            for x in 0..size {
                let fx = (x as f32 + 0.5) / n - 0.5;
                let light = gain * (1.0 + amount * (fx * lx + fy * ly));
                let i = (y * size + x) * 3;
                for c in 0..3 {
                    let r = rng.random::<u32>();
                    // Triangular noise in [-1, 1].
                    let tri = ((r & 0xff) + ((r >> 8) & 0xff)) as f32 / 255.0 - 1.0;
                    let v =
                        (128.0 + (buf[i + c] - 128.0) * contrast) * light + bias + self.noise * tri;
                    out[i + c] = v.round().clamp(0.0, 255.0) as u8;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Drawing: shapes as signed distances (soft edges = cheap anti-aliasing) and textures.

/// An object placed in a frame.
struct Placed {
    shape: usize,
    texture: usize,
    tex_phase: [f32; 2],
    /// Centre and radius in pixels.
    centre: [f32; 2],
    radius: f32,
    angle: f32,
    fg: [f32; 3],
    bg: [f32; 3],
    alpha: f32,
}

/// Blends a textured shape over `buf`, visiting only its bounding box.
fn draw_object(buf: &mut [f32], size: usize, o: &Placed) {
    if o.alpha <= 0.0 || o.radius <= 0.0 {
        return;
    }
    let reach = o.radius * 1.3 + 1.5;
    let span = |c: f32| {
        let lo = (c - reach).floor().clamp(0.0, size as f32) as usize;
        let hi = (c + reach).ceil().clamp(0.0, size as f32) as usize;
        lo..hi
    };
    let (sin, cos) = o.angle.sin_cos();
    for y in span(o.centre[1]) {
        let dy = (y as f32 + 0.5 - o.centre[1]) / o.radius;
        for x in span(o.centre[0]) {
            let dx = (x as f32 + 0.5 - o.centre[0]) / o.radius;
            // Into the object's frame (rotate by -angle), radius 1.
            let q = [cos * dx + sin * dy, -sin * dx + cos * dy];
            let cover = (0.5 - shape_sdf(o.shape, q) * o.radius).clamp(0.0, 1.0) * o.alpha;
            if cover <= 0.0 {
                continue;
            }
            let t = texture(o.texture, q, o.tex_phase, o.radius);
            let i = (y * size + x) * 3;
            for c in 0..3 {
                let col = o.bg[c] + (o.fg[c] - o.bg[c]) * t;
                buf[i + c] += (col - buf[i + c]) * cover;
            }
        }
    }
}

/// Signed distance (negative inside) of shape `shape` at `p`, object units (the shape fits the
/// unit disk, roughly). `y` points down, as in images.
fn shape_sdf(shape: usize, p: [f32; 2]) -> f32 {
    let up = [p[0], -p[1]];
    match shape {
        0 => len(p) - 0.95,
        1 => sd_box(p, [0.0, 0.0], [0.78, 0.78]),
        2 => sd_star(up, 1.05, 3, 2.0),
        3 => sd_box(p, [0.0, 0.0], [0.95, 0.3]).min(sd_box(p, [0.0, 0.0], [0.3, 0.95])),
        4 => (len(p) - 0.68).abs() - 0.3,
        5 => sd_star(up, 1.05, 5, 3.0),
        6 => sd_rhombus(p, [0.68, 1.0]),
        7 => sd_star(up, 0.95, 6, 2.0),
        8 => (len(p) - 0.95).max(0.78 - len([p[0] - 0.45, p[1] + 0.2])),
        _ => sd_box(p, [-0.4, 0.0], [0.3, 0.85]).min(sd_box(p, [0.025, 0.575], [0.725, 0.275])),
    }
}

fn len(p: [f32; 2]) -> f32 {
    p[0].hypot(p[1])
}

/// Axis-aligned box with centre `c` and half extents `h`.
fn sd_box(p: [f32; 2], c: [f32; 2], h: [f32; 2]) -> f32 {
    let d = [(p[0] - c[0]).abs() - h[0], (p[1] - c[1]).abs() - h[1]];
    len([d[0].max(0.0), d[1].max(0.0)]) + d[0].max(d[1]).min(0.0)
}

/// Regular star with `n` points of radius `r` and sharpness `m` in `2..=n` (2: a regular
/// polygon), one point along +y (Inigo Quilez's `sdStar`).
fn sd_star(p: [f32; 2], r: f32, n: u32, m: f32) -> f32 {
    let an = std::f32::consts::PI / n as f32;
    let en = std::f32::consts::PI / m;
    let (acs, ecs) = ([an.cos(), an.sin()], [en.cos(), en.sin()]);
    let bn = p[0].atan2(p[1]).rem_euclid(2.0 * an) - an;
    let l = len(p);
    let mut q = [l * bn.cos() - r * acs[0], l * bn.sin().abs() - r * acs[1]];
    let t = (-(q[0] * ecs[0] + q[1] * ecs[1])).clamp(0.0, r * acs[1] / ecs[1]);
    q = [q[0] + ecs[0] * t, q[1] + ecs[1] * t];
    len(q) * q[0].signum()
}

/// Rhombus with half diagonals `b` (Inigo Quilez's `sdRhombus`).
fn sd_rhombus(p: [f32; 2], b: [f32; 2]) -> f32 {
    let p = [p[0].abs(), p[1].abs()];
    let ndot = |a: [f32; 2], c: [f32; 2]| a[0] * c[0] - a[1] * c[1];
    let h = (ndot([b[0] - 2.0 * p[0], b[1] - 2.0 * p[1]], b) / (b[0] * b[0] + b[1] * b[1]))
        .clamp(-1.0, 1.0);
    let d = len([p[0] - 0.5 * b[0] * (1.0 - h), p[1] - 0.5 * b[1] * (1.0 + h)]);
    d * (p[0] * b[1] + p[1] * b[0] - b[0] * b[1]).signum()
}

/// Texture `kind` at `q` (object units): 1 = foreground colour, 0 = background colour, with
/// soft transitions about one pixel wide (`px` = pixels per object unit).
fn texture(kind: usize, q: [f32; 2], phase: [f32; 2], px: f32) -> f32 {
    /// Period in object units: about 3.3 periods across the object.
    const PERIOD: f32 = 0.6;
    let k = TAU / PERIOD;
    let (x, y) = (q[0] + phase[0] * PERIOD, q[1] + phase[1] * PERIOD);
    // sin(k s) changes by k / px per pixel at its zero crossings.
    let band = |s: f32| (0.5 + s * px / k).clamp(0.0, 1.0);
    match kind {
        0 => band((k * y).sin()),
        1 => band((k * x).sin()),
        2 => band((k * (x + y) * FRAC_1_SQRT_2).sin()),
        3 => band((k * x).sin() * (k * y).sin() * 2.0),
        4 => {
            let (cx, cy) = (x / PERIOD, y / PERIOD);
            let r = len([cx - cx.round(), cy - cy.round()]);
            (0.5 - (r - 0.32) * PERIOD * px).clamp(0.0, 1.0)
        }
        _ => 1.0,
    }
}

/// Draws an occluder at `s` ∈ [0, 1] of its window.
fn draw_occluder(buf: &mut [f32], size: usize, o: &Occluder, s: f32) {
    let n = size as f32;
    for y in 0..size {
        let py = (y as f32 + 0.5) / n;
        for x in 0..size {
            let px = (x as f32 + 0.5) / n;
            // Signed distance in frame sides.
            let d = match &o.kind {
                OccluderKind::Bar { normal, half_width } => {
                    let along = -0.8 + 1.6 * s;
                    ((px - 0.5) * normal[0] + (py - 0.5) * normal[1] - along).abs() - half_width
                }
                OccluderKind::Blob { from, to, radii } => {
                    let c = [
                        from[0] + (to[0] - from[0]) * s,
                        from[1] + (to[1] - from[1]) * s,
                    ];
                    (len([(px - c[0]) / radii[0], (py - c[1]) / radii[1]]) - 1.0)
                        * radii[0].min(radii[1])
                }
            };
            let cover = (0.5 - d * n).clamp(0.0, 1.0);
            if cover > 0.0 {
                let i = (y * size + x) * 3;
                for c in 0..3 {
                    buf[i + c] += (o.colour[c] - buf[i + c]) * cover;
                }
            }
        }
    }
}

/// HSV (hue in turns, wraps) to RGB on 0..255.
fn hsv(h: f32, s: f32, v: f32) -> [f32; 3] {
    let h = h.rem_euclid(1.0) * 6.0;
    let f = h - h.floor();
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    let (r, g, b) = match h as u32 {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    };
    [r * 255.0, g * 255.0, b * 255.0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{VideoIndex, VideoSource};

    fn tiny() -> SynthConfig {
        SynthConfig {
            classes: 3,
            train_per_class: 2,
            test_per_class: 1,
            frames: 8,
            size: 32,
            seed: 7,
            quality: 90,
            scenes: 2,
        }
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rho-synth-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
        assert_eq!(a.len(), b.len());
        let s: u64 = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y) as u64).sum();
        s as f64 / a.len() as f64
    }

    #[test]
    fn classes_are_distinct_pairs() {
        let mut seen = std::collections::BTreeSet::new();
        for c in 0..max_classes() {
            assert!(seen.insert(class_parts(c)), "class {c} repeats a pair");
        }
        assert_eq!(class_name(0), "disk_hstripes");
        assert_eq!(class_name(5), "star_solid");
    }

    #[test]
    fn render_is_deterministic() {
        let cfg = tiny();
        let a = render_video(&cfg, SynthSplit::Train, 1, 0);
        assert_eq!(a.len(), cfg.frames * cfg.size * cfg.size * 3);
        assert_eq!(a, render_video(&cfg, SynthSplit::Train, 1, 0));
        assert_ne!(a, render_video(&cfg, SynthSplit::Train, 1, 1));
        assert_ne!(a, render_video(&cfg, SynthSplit::Test, 1, 0));
        let other_seed = SynthConfig { seed: 8, ..cfg };
        assert_ne!(a, render_video(&other_seed, SynthSplit::Train, 1, 0));
    }

    #[test]
    fn generate_writes_readable_lists_and_frames() {
        let cfg = tiny();
        let out = tmp("gen");
        let ds = generate(&cfg, &out).unwrap();
        assert_eq!(ds.videos, 9);
        assert_eq!(
            ds.classes,
            ["disk_hstripes", "square_vstripes", "triangle_diagonal"]
        );
        let classes_txt = std::fs::read_to_string(out.join("classes.txt")).unwrap();
        assert_eq!(classes_txt.lines().collect::<Vec<_>>(), ds.classes);
        for (list, split, per_class) in [
            (&ds.train_list, SynthSplit::Train, cfg.train_per_class),
            (&ds.test_list, SynthSplit::Test, cfg.test_per_class),
        ] {
            let idx = VideoIndex::frame_folders(list, &out).unwrap();
            assert_eq!(idx.len(), cfg.classes * per_class);
            let mut counts = vec![0; cfg.classes];
            for (i, e) in idx.entries.iter().enumerate() {
                let label = e.label.unwrap();
                counts[label] += 1;
                let VideoSource::FrameDir { dir, total_frames } = &e.source else {
                    panic!("not a frame folder")
                };
                assert_eq!(*total_frames, cfg.frames);
                let jpgs = std::fs::read_dir(dir)
                    .unwrap()
                    .filter(|f| {
                        let f = f.as_ref().unwrap().path();
                        f.extension().is_some_and(|x| x == "jpg")
                    })
                    .count();
                assert_eq!(jpgs, cfg.frames, "{}", dir.display());
                let (h, w, px) =
                    crate::frames::read_frame_folder(dir, *total_frames, &[0], None).unwrap();
                assert_eq!((h, w), (cfg.size, cfg.size));
                let video = i % per_class;
                let want = render_video(&cfg, split, label, video);
                let d = mean_abs_diff(&px, &want[..px.len()]);
                assert!(d < 8.0, "{}: JPEG differs by {d}", dir.display());
            }
            assert!(counts.iter().all(|&c| c == per_class), "{counts:?}");
        }
        assert!(!out.join("train.txt.tmp").exists());
        std::fs::remove_dir_all(&out).unwrap();
    }

    #[test]
    fn output_does_not_depend_on_threads() {
        let cfg = SynthConfig {
            frames: 3,
            ..tiny()
        };
        let (a, b) = (tmp("t1"), tmp("t3"));
        generate_with_threads(&cfg, &a, 1).unwrap();
        generate_with_threads(&cfg, &b, 3).unwrap();
        let list = std::fs::read_to_string(a.join("train.txt")).unwrap()
            + &std::fs::read_to_string(a.join("test.txt")).unwrap();
        assert_eq!(
            list,
            std::fs::read_to_string(b.join("train.txt")).unwrap()
                + &std::fs::read_to_string(b.join("test.txt")).unwrap()
        );
        for line in list.lines() {
            let rel = line.split(' ').next().unwrap();
            for t in 1..=cfg.frames {
                let f = format!("{rel}/img_{t:05}.jpg");
                assert_eq!(
                    std::fs::read(a.join(&f)).unwrap(),
                    std::fs::read(b.join(&f)).unwrap(),
                    "{f}"
                );
            }
        }
        std::fs::remove_dir_all(&a).unwrap();
        std::fs::remove_dir_all(&b).unwrap();
    }

    /// The design's property: within a video, the start and the end look very different
    /// (background, colours, lighting, position all drift); only shape and texture persist.
    #[test]
    fn videos_drift_over_time() {
        let cfg = SynthConfig {
            frames: 16,
            size: 48,
            ..SynthConfig::default()
        };
        let frame = cfg.size * cfg.size * 3;
        let mut total = 0.0;
        let mut n = 0;
        for class in 0..4 {
            for video in 0..2 {
                let v = render_video(&cfg, SynthSplit::Train, class, video);
                let last = (cfg.frames - 1) * frame;
                total += mean_abs_diff(&v[..frame], &v[last..]);
                n += 1;
            }
        }
        let mean = total / n as f64;
        assert!(mean > 20.0, "frame 0 vs last differ by only {mean:.1}");
    }

    #[test]
    fn bad_configs_are_errors() {
        let out = tmp("bad");
        let base = tiny();
        for cfg in [
            SynthConfig {
                classes: max_classes() + 1,
                ..base.clone()
            },
            SynthConfig {
                classes: 1,
                ..base.clone()
            },
            SynthConfig {
                size: 15,
                ..base.clone()
            },
            SynthConfig {
                frames: 0,
                ..base.clone()
            },
            SynthConfig {
                train_per_class: 0,
                ..base.clone()
            },
            SynthConfig {
                quality: 0,
                ..base.clone()
            },
        ] {
            let e = generate(&cfg, &out).unwrap_err();
            assert!(matches!(e, DataError::Config(_)), "{e}");
        }
        assert!(!out.exists());
    }

    #[test]
    fn default_config_render_time() {
        let cfg = SynthConfig::default();
        let t = std::time::Instant::now();
        let v = render_video(&cfg, SynthSplit::Train, 5, 0);
        let dt = t.elapsed();
        assert_eq!(v.len(), 64 * 64 * 64 * 3);
        println!(
            "synth: one default video ({} frames of {}²) rendered in {:.1} ms ({:.2} ms/frame)",
            cfg.frames,
            cfg.size,
            dt.as_secs_f64() * 1e3,
            dt.as_secs_f64() * 1e3 / cfg.frames as f64
        );
    }

    /// Writes `/tmp/synth_preview/`: a contact sheet `sheet.jpg` / `sheet.ppm` (one row per class;
    /// videos 0 and 1 at frames 0, 21, 42, 63, magnified ×2) and the first and last frames of
    /// two videos. Run with `--ignored`.
    #[test]
    #[ignore]
    fn write_preview() {
        let cfg = SynthConfig::default();
        let dir = Path::new("/tmp/synth_preview");
        std::fs::create_dir_all(dir).unwrap();
        let (s, zoom, times) = (cfg.size, 2, [0, 21, 42, 63]);
        let cols = times.len() * 2;
        let (w, h) = (cols * s * zoom, cfg.classes * s * zoom);
        let mut sheet = vec![0u8; w * h * 3];
        for class in 0..cfg.classes {
            for video in 0..2 {
                let v = render_video(&cfg, SynthSplit::Train, class, video);
                for (k, &t) in times.iter().enumerate() {
                    let col = video * times.len() + k;
                    for y in 0..s * zoom {
                        for x in 0..s * zoom {
                            let src = ((t * s + y / zoom) * s + x / zoom) * 3;
                            let dst = ((class * s * zoom + y) * w + col * s * zoom + x) * 3;
                            sheet[dst..dst + 3].copy_from_slice(&v[src..src + 3]);
                        }
                    }
                }
                if class < 2 && video == 0 {
                    for t in [0, cfg.frames - 1] {
                        let frame = &v[t * s * s * 3..(t + 1) * s * s * 3];
                        let f = dir.join(format!("{}_t{t:02}.jpg", class_name(class)));
                        jpeg_encoder::Encoder::new_file(&f, 95)
                            .unwrap()
                            .encode(frame, s as u16, s as u16, jpeg_encoder::ColorType::Rgb)
                            .unwrap();
                    }
                }
            }
        }
        let mut ppm = format!("P6\n{w} {h}\n255\n").into_bytes();
        ppm.extend_from_slice(&sheet);
        std::fs::write(dir.join("sheet.ppm"), ppm).unwrap();
        jpeg_encoder::Encoder::new_file(dir.join("sheet.jpg"), 95)
            .unwrap()
            .encode(&sheet, w as u16, h as u16, jpeg_encoder::ColorType::Rgb)
            .unwrap();
    }
}
