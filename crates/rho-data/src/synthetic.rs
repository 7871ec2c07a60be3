//! Small generated videos for tests, benchmarks and examples, made with the ffmpeg CLI.

use std::path::Path;
use std::process::Command;

use crate::error::DataError;

/// Writes `out` from the lavfi source `source` (e.g. `testsrc2=s=64x48:r=15:d=2`) with the
/// encoder arguments `codec` (e.g. `["-c:v", "libx264", "-preset", "ultrafast"]`).
pub fn lavfi_video(out: &Path, source: &str, codec: &[&str]) -> Result<(), DataError> {
    let fail = |reason: String| DataError::Decode {
        path: out.to_path_buf(),
        reason,
    };
    let st = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            source,
        ])
        .args(codec)
        .arg(out)
        .status()
        .map_err(|e| {
            fail(format!(
                "cannot run the ffmpeg CLI ({e}); scripts/setup.sh installs it"
            ))
        })?;
    if st.success() {
        Ok(())
    } else {
        Err(fail(format!("ffmpeg failed to generate `{source}`")))
    }
}

/// `n` short H.264 clips `v{i}.mp4` of w×h at `fps` for `seconds`, each with another hue, in `dir`
/// (kept when they already exist).
pub fn test_videos(
    dir: &Path,
    n: usize,
    w: usize,
    h: usize,
    fps: usize,
    seconds: f64,
) -> Result<Vec<std::path::PathBuf>, DataError> {
    std::fs::create_dir_all(dir).map_err(|e| DataError::Decode {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    (0..n)
        .map(|i| {
            let out = dir.join(format!("v{i}.mp4"));
            if !out.exists() {
                let src = format!(
                    "testsrc2=s={w}x{h}:r={fps}:d={seconds},hue=h={}",
                    (i * 47) % 360
                );
                lavfi_video(
                    &out,
                    &src,
                    &[
                        "-c:v",
                        "libx264",
                        "-preset",
                        "ultrafast",
                        "-g",
                        "8",
                        "-pix_fmt",
                        "yuv420p",
                    ],
                )?;
            }
            Ok(out)
        })
        .collect()
}
