//! Frame-exact decoding on videos generated with the ffmpeg CLI: every frame's brightness encodes
//! its index, so each decoded frame can be checked against the frame it should be.
#![cfg(feature = "video")]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rho_data::decode::VideoDecoder;

const FRAMES: usize = 30;

/// Luma of frame n is 8n (limited range); RGB = (Y − 16)·255/219.
fn expected_rgb(n: usize) -> f64 {
    ((8.0 * n as f64 - 16.0) * 255.0 / 219.0).clamp(0.0, 255.0)
}

fn media_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("rho-decode-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let src = "color=c=black:s=64x48:r=15:d=2,geq=lum='N*8':cb=128:cr=128,format=yuv420p";
        let make = |name: &str, args: &[&str]| {
            let out = d.join(name);
            rho_data::synthetic::lavfi_video(&out, src, args)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        };
        make(
            "short_gop.mp4",
            &[
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-bf",
                "2",
                "-g",
                "4",
                "-qp",
                "0",
            ],
        );
        make(
            "long_gop.mp4",
            &[
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-bf",
                "2",
                "-g",
                "250",
                "-qp",
                "0",
            ],
        );
        make(
            "vp9.webm",
            &["-c:v", "libvpx-vp9", "-lossless", "1", "-g", "8"],
        );
        make("mpeg4.avi", &["-c:v", "mpeg4", "-q:v", "1", "-g", "6"]);
        let full = std::fs::read(d.join("short_gop.mp4")).unwrap();
        std::fs::write(d.join("truncated.mp4"), &full[..full.len() / 2]).unwrap();
        let noise: Vec<u8> = (0..50_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        std::fs::write(d.join("noise.mp4"), noise).unwrap();
        d
    })
}

fn mean(frame: &[u8]) -> f64 {
    frame.iter().map(|&b| b as f64).sum::<f64>() / frame.len() as f64
}

const GOOD: [&str; 4] = ["short_gop.mp4", "long_gop.mp4", "vp9.webm", "mpeg4.avi"];

#[test]
fn probe_counts_frames_rate_and_keyframes() {
    let d = media_dir();
    for name in GOOD {
        let v = VideoDecoder::open(&d.join(name)).unwrap();
        let p = v.probe();
        assert_eq!(p.num_frames, FRAMES, "{name}");
        assert!((p.fps - 15.0).abs() < 1e-6, "{name}: {}", p.fps);
        assert_eq!((p.width, p.height), (64, 48));
        assert!(!p.variable_frame_rate, "{name}");
    }
    let short = VideoDecoder::open(&d.join("short_gop.mp4")).unwrap();
    assert_eq!(
        short.probe().keyframes,
        (0..FRAMES).step_by(4).collect::<Vec<_>>()
    );
    let long = VideoDecoder::open(&d.join("long_gop.mp4")).unwrap();
    assert_eq!(long.probe().keyframes, [0]);
    assert_eq!(long.probe().max_gop(), FRAMES);
}

#[test]
fn every_frame_is_the_frame_it_claims_to_be() {
    let d = media_dir();
    for name in GOOD {
        let mut v = VideoDecoder::open(&d.join(name)).unwrap();
        let all: Vec<usize> = (0..FRAMES).collect();
        let out = v.read_frames(&all, None).unwrap();
        assert!(out.missing.is_empty(), "{name}: missing {:?}", out.missing);
        let fb = out.height * out.width * 3;
        for (i, f) in out.rgb.chunks_exact(fb).enumerate() {
            let m = mean(f);
            assert!(
                (m - expected_rgb(i)).abs() < 6.0,
                "{name} frame {i}: mean {m:.1}, expected {:.1}",
                expected_rgb(i)
            );
        }
    }
}

#[test]
fn sparse_reads_equal_the_decode_all_reference() {
    let d = media_dir();
    for name in GOOD {
        let mut v = VideoDecoder::open(&d.join(name)).unwrap();
        let all = v
            .read_frames(&(0..FRAMES).collect::<Vec<_>>(), None)
            .unwrap();
        let fb = all.height * all.width * 3;
        let wanted = [25, 3, 17, 26, 9, 3, 29];
        let out = v.read_frames(&wanted, None).unwrap();
        for (k, &i) in wanted.iter().enumerate() {
            assert_eq!(
                &out.rgb[k * fb..(k + 1) * fb],
                &all.rgb[i * fb..(i + 1) * fb],
                "{name} frame {i}"
            );
        }
        assert!(
            out.decoded <= FRAMES + 4,
            "{name}: decoded {} frames for 6 targets",
            out.decoded
        );
    }
}

#[test]
fn seeks_only_when_they_skip_work() {
    let d = media_dir();
    // One GOP: everything after the first positioning is decoded forward.
    let mut long = VideoDecoder::open(&d.join("long_gop.mp4")).unwrap();
    let out = long.read_frames(&[2, 5, 20, 28], None).unwrap();
    assert_eq!(out.seeks, 1);
    // GOP 4: frames 1 and 2 share a GOP (no seek between), 25 is far ahead (seek).
    let mut short = VideoDecoder::open(&d.join("short_gop.mp4")).unwrap();
    let out = short.read_frames(&[1, 2, 25], None).unwrap();
    assert_eq!(out.seeks, 2);
    assert!(out.decoded < 12, "decoded {}", out.decoded);
}

#[test]
fn short_side_resize_keeps_the_aspect() {
    let mut v = VideoDecoder::open(&media_dir().join("short_gop.mp4")).unwrap();
    let out = v.read_frames(&[10], Some(24)).unwrap();
    assert_eq!((out.width, out.height), (32, 24));
    assert!((mean(&out.rgb) - expected_rgb(10)).abs() < 6.0);
}

#[test]
fn bad_files_are_errors_that_name_the_file() {
    let d = media_dir();
    for name in ["noise.mp4", "missing.mp4"] {
        let e = VideoDecoder::open(&d.join(name))
            .err()
            .expect(name)
            .to_string();
        assert!(e.contains(name), "{e}");
    }
    // A truncated mp4 either fails to open (its index is gone) or yields what it has, padded:
    // never a panic.
    match VideoDecoder::open(&d.join("truncated.mp4")) {
        Err(e) => assert!(e.to_string().contains("truncated.mp4")),
        Ok(mut v) => {
            let out = v.read_frames(&[0, 29], None);
            if let Ok(out) = out {
                assert_eq!(out.rgb.len(), 2 * out.width * out.height * 3);
            }
        }
    }
}

#[test]
fn variable_frame_rate_is_detected_and_decoded_by_timestamp() {
    let out = media_dir().join("vfr.mp4");
    rho_data::synthetic::lavfi_video(
        &out,
        "color=c=gray:s=64x48:r=15:d=2",
        &[
            "-vf",
            "setpts='if(lt(N,15),N,N*2)/(15*TB)'",
            "-fps_mode",
            "vfr",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
        ],
    )
    .unwrap();
    let mut v = VideoDecoder::open(&out).unwrap();
    assert!(v.probe().variable_frame_rate);
    // Frame 16 of the nominal 15-fps grid falls in a gap: it takes the next frame that exists and is
    // reported, never a panic.
    let r = v.read_frames(&[2, 16, 30], None).unwrap();
    assert_eq!(r.rgb.len(), 3 * 64 * 48 * 3);
    assert!(!r.missing.is_empty());
}
