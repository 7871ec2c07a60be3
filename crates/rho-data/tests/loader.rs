//! The loader on generated videos: batch shapes, determinism across worker counts, exact resume,
//! and bad files that are substituted instead of stopping the run.
#![cfg(feature = "video")]

use std::path::PathBuf;

use rho_data::augment::AugmentConfig;
use rho_data::sampler::ClipSamplerConfig;
use rho_data::{
    LoaderConfig, LoaderPosition, ShortVideoPolicy, VideoEntry, VideoIndex, VideoLoader,
    VideoSource,
};

fn videos() -> Vec<PathBuf> {
    static V: std::sync::OnceLock<Vec<PathBuf>> = std::sync::OnceLock::new();
    V.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("rho-loader-test-{}", std::process::id()));
        rho_data::synthetic::test_videos(&dir, 6, 80, 64, 15, 2.0).unwrap()
    })
    .clone()
}

fn index(paths: &[PathBuf]) -> VideoIndex {
    VideoIndex {
        entries: paths
            .iter()
            .enumerate()
            .map(|(i, p)| VideoEntry {
                source: VideoSource::File(p.clone()),
                label: Some(i % 3),
            })
            .collect(),
        classes: vec!["a".into(), "b".into(), "c".into()],
    }
}

fn cfg(workers: usize, rho: usize) -> LoaderConfig {
    LoaderConfig {
        batch_size: 2,
        workers,
        prefetch: 2,
        seed: 9,
        sampler: ClipSamplerConfig {
            frames: 4,
            stride: 4,
            rho,
            max_timespan_s: None,
        },
        augment: AugmentConfig {
            size: 32,
            ..AugmentConfig::default()
        },
        short_side: 48,
        decode_timeout_s: 30.0,
        max_substitutions: 5,
        short_videos: ShortVideoPolicy::Pad,
        frame_folder_fps: 30.0,
        views: Default::default(),
        shard: Default::default(),
    }
}

fn all_batches(loader: &mut VideoLoader) -> Vec<(Vec<usize>, Vec<f32>)> {
    loader
        .epoch()
        .map(|b| b.unwrap())
        .map(|b| (b.samples, b.clips))
        .collect()
}

#[test]
fn batches_have_the_documented_shape() {
    let mut l = VideoLoader::new(index(&videos()), cfg(2, 3)).unwrap();
    let b = l.epoch().next().unwrap().unwrap();
    assert_eq!(b.shape, [2, 3, 3, 4, 32, 32]);
    assert_eq!(b.clips.len(), b.shape.iter().product::<usize>());
    assert!(b.clips.iter().all(|v| v.is_finite()));
    // ρ = 1: two crops of one clip.
    let mut l = VideoLoader::new(index(&videos()), cfg(1, 1)).unwrap();
    let b = l.epoch().next().unwrap().unwrap();
    assert_eq!(b.shape[1], 2);
}

#[test]
fn the_same_batches_whatever_the_worker_count() {
    let one = all_batches(&mut VideoLoader::new(index(&videos()), cfg(1, 2)).unwrap());
    let three = all_batches(&mut VideoLoader::new(index(&videos()), cfg(3, 2)).unwrap());
    assert_eq!(one.len(), 3);
    assert_eq!(one, three);
    // A new epoch is a new order and new crops.
    let mut l = VideoLoader::new(index(&videos()), cfg(2, 2)).unwrap();
    let e0 = all_batches(&mut l);
    assert_eq!(
        l.position(),
        LoaderPosition {
            epoch: 1,
            cursor: 0
        }
    );
    let e1 = all_batches(&mut l);
    assert_ne!(e0, e1);
}

#[test]
fn a_restored_position_continues_exactly() {
    let straight = all_batches(&mut VideoLoader::new(index(&videos()), cfg(2, 2)).unwrap());
    let mut first = VideoLoader::new(index(&videos()), cfg(2, 2)).unwrap();
    let taken: Vec<_> = first.epoch().take(1).map(|b| b.unwrap()).collect();
    assert_eq!(taken[0].samples, straight[0].0);
    let saved = first.position();
    assert_eq!(
        saved,
        LoaderPosition {
            epoch: 0,
            cursor: 1
        }
    );
    let mut resumed = VideoLoader::new(index(&videos()), cfg(1, 2)).unwrap();
    resumed.set_position(saved);
    let rest = all_batches(&mut resumed);
    assert_eq!(rest, straight[1..].to_vec());
}

#[test]
fn bad_files_are_substituted_counted_and_reported_once() {
    let dir = std::env::temp_dir().join(format!("rho-loader-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let noise = dir.join("noise.mp4");
    std::fs::write(&noise, vec![7u8; 4096]).unwrap();
    let empty = dir.join("empty.mp4");
    std::fs::write(&empty, b"").unwrap();
    let mut paths = videos();
    paths.extend([noise.clone(), empty.clone(), dir.join("missing.mp4")]);
    let mut l = VideoLoader::new(index(&paths), cfg(2, 2)).unwrap();
    for _ in 0..2 {
        let batches: Vec<_> = l.epoch().collect();
        assert_eq!(batches.len(), 4);
        for b in batches {
            let b = b.unwrap();
            assert!(
                b.samples.iter().all(|&s| s < 6),
                "a bad video was used: {:?}",
                b.samples
            );
        }
    }
    let seen = l.bad.seen.lock().unwrap();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.contains_key(&noise) && seen.contains_key(&empty));
}

#[test]
fn short_videos_are_padded_or_substituted_by_policy() {
    // Clips of 16×8 at 30 fps span 128 frames; the 2-s test videos at 15 fps have 30.
    let mut c = cfg(1, 2);
    c.sampler.frames = 16;
    c.sampler.stride = 8;
    let mut padded = VideoLoader::new(index(&videos()), c.clone()).unwrap();
    assert!(padded.epoch().next().unwrap().is_ok());
    c.short_videos = ShortVideoPolicy::Substitute;
    c.max_substitutions = 2;
    let mut strict = VideoLoader::new(index(&videos()), c).unwrap();
    let e = strict.epoch().next().unwrap().err().unwrap().to_string();
    assert!(e.contains("substitutes all failed"), "{e}");
    assert_eq!(strict.bad.seen.lock().unwrap().len().min(1), 1);
}

#[test]
fn frame_folders_load_like_videos() {
    let dir = std::env::temp_dir().join(format!("rho-frames-{}", std::process::id()));
    let mut entries = Vec::new();
    for v in 0..2 {
        let d = dir.join(format!("vid{v}"));
        std::fs::create_dir_all(&d).unwrap();
        rho_data::synthetic::lavfi_video(&d.join("img_%05d.jpg"), "testsrc2=s=80x64:r=30:d=1", &[])
            .unwrap();
        entries.push(VideoEntry {
            source: VideoSource::FrameDir {
                dir: d,
                total_frames: 30,
            },
            label: Some(v),
        });
    }
    let index = VideoIndex {
        entries,
        classes: vec![],
    };
    let mut l = VideoLoader::new(index, cfg(1, 2)).unwrap();
    let b = l.epoch().next().unwrap().unwrap();
    assert_eq!(b.shape, [2, 2, 3, 4, 32, 32]);
    assert!(l.bad.seen.lock().unwrap().is_empty());
}

#[test]
fn test_views_cover_every_video_in_order_and_are_fixed() {
    let paths = &videos()[..5];
    let mut c = cfg(2, 1);
    c.views = rho_data::ViewMode::Test { clips: 3, crops: 2 };
    c.short_side = 32;
    let loader = VideoLoader::new(index(paths), c.clone()).unwrap();
    let batches: Vec<_> = loader.in_order().map(|b| b.unwrap()).collect();
    // 5 videos in batches of 2: the last batch is partial, nothing is dropped or shuffled.
    assert_eq!(
        batches
            .iter()
            .map(|b| b.samples.clone())
            .collect::<Vec<_>>(),
        [vec![0, 1], vec![2, 3], vec![4]]
    );
    assert_eq!(batches[0].shape, [2, 6, 3, 4, 32, 32]);
    assert_eq!(batches[2].clips.len(), 6 * 3 * 4 * 32 * 32);
    assert_eq!(batches[1].labels, [Some(2), Some(0)]);
    // No randomness: another seed and worker count give the same pixels.
    c.seed = 1234;
    c.workers = 1;
    let again: Vec<_> = VideoLoader::new(index(paths), c)
        .unwrap()
        .in_order()
        .map(|b| b.unwrap().clips)
        .collect();
    assert_eq!(again[0], batches[0].clips);
    // The two crops of a clip differ (left and right of a landscape frame).
    let view = 3 * 4 * 32 * 32;
    assert_ne!(batches[0].clips[..view], batches[0].clips[view..2 * view]);
}

#[test]
fn single_view_mode_yields_one_augmented_clip() {
    let mut c = cfg(2, 4);
    c.views = rho_data::ViewMode::Single;
    let mut loader = VideoLoader::new(index(&videos()), c).unwrap();
    let b = loader.epoch().next().unwrap().unwrap();
    assert_eq!(b.shape, [2, 1, 3, 4, 32, 32]);
    assert_eq!(b.clips.len(), 2 * 3 * 4 * 32 * 32);
}

#[test]
fn shards_together_load_exactly_the_single_process_batches() {
    let whole = all_batches(&mut VideoLoader::new(index(&videos()), cfg(2, 2)).unwrap());
    let shard = |rank| {
        let mut c = cfg(1, 2);
        c.shard = rho_data::Shard { rank, world: 2 };
        all_batches(&mut VideoLoader::new(index(&videos()), c).unwrap())
    };
    let (r0, r1) = (shard(0), shard(1));
    assert_eq!(r0.len(), whole.len());
    for ((w, a), b) in whole.iter().zip(&r0).zip(&r1) {
        assert_eq!(a.0.len(), 1);
        assert_eq!([a.0.clone(), b.0.clone()].concat(), w.0);
        assert_eq!([a.1.clone(), b.1.clone()].concat(), w.1);
    }
    // A batch that does not split evenly is refused with a message naming the fix.
    let mut c = cfg(1, 2);
    c.shard = rho_data::Shard { rank: 0, world: 3 };
    let err = VideoLoader::new(index(&videos()), c)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("multiple of the number of devices"), "{err}");
}
