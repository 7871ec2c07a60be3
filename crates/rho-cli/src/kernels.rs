//! GPU kernel warm-up: where CubeCL keeps its autotune results and compiled kernels, how hard it
//! tunes, and how many kernels a run compiled and tuned (docs/architecture.md, "GPU warm-up").
//!
//! On first use CubeCL compiles every kernel and autotunes each convolution and matmul shape
//! (forward, backward-data and backward-weight, over about 8 candidates each), which takes
//! minutes on a large network and looks like a hang. rho puts the caches in one stable folder
//! (default `~/.cache/rho/cubecl`, or `--kernel-cache` / `RHO_KERNEL_CACHE`) so every process of
//! a node and every later run reuses them, and counts the compilations and autotune results
//! CubeCL logs, so the first steps can say what they spend their time on.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

/// CubeCL's autotune effort (its `autotune.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AutotuneLevel {
    Minimal,
    Balanced,
    Extensive,
    Full,
}

#[derive(Args, Debug, Clone, Default)]
pub struct KernelArgs {
    /// Folder for CubeCL's autotune results and compiled kernels (cuda, wgpu); shared by every
    /// run and process that names it [env: RHO_KERNEL_CACHE; default ~/.cache/rho/cubecl].
    #[arg(long, global = true, value_name = "DIR")]
    pub kernel_cache: Option<PathBuf>,
    /// Autotune effort on cuda/wgpu: minimal tunes fewest candidates (fastest start), full the
    /// most [default: CubeCL's, balanced, or CUBECL_AUTOTUNE_LEVEL].
    #[arg(long, global = true, value_enum)]
    pub autotune_level: Option<AutotuneLevel>,
}

#[cfg_attr(not(any(feature = "cuda", feature = "wgpu")), allow(dead_code))]
impl KernelArgs {
    /// The cache folder: the flag, else `RHO_KERNEL_CACHE`, else `$XDG_CACHE_HOME/rho/cubecl`
    /// or `~/.cache/rho/cubecl`.
    pub fn cache_dir(&self) -> PathBuf {
        if let Some(d) = &self.kernel_cache {
            return d.clone();
        }
        if let Some(d) = std::env::var_os("RHO_KERNEL_CACHE").filter(|d| !d.is_empty()) {
            return PathBuf::from(d);
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir);
        base.join("rho").join("cubecl")
    }
}

/// The log files CubeCL writes this process's compilations and autotune results to.
#[derive(Debug, Clone)]
pub struct KernelLog {
    pub cache_dir: PathBuf,
    compilations: PathBuf,
    autotune: PathBuf,
}

/// Kernels compiled and shapes autotuned so far in this process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct KernelCounts {
    pub compiled: usize,
    pub autotuned: usize,
}

impl KernelLog {
    /// The two logs' sizes: they only change when CubeCL compiles or tunes something, so a
    /// caller polling every step reads the logs only then.
    pub fn size(&self) -> u64 {
        [&self.compilations, &self.autotune]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }

    pub fn counts(&self) -> KernelCounts {
        let count = |path: &Path, marker: &str| {
            std::fs::read_to_string(path)
                .map(|s| s.lines().filter(|l| l.contains(marker)).count())
                .unwrap_or(0)
        };
        KernelCounts {
            compiled: count(&self.compilations, "[Compiling kernel]"),
            autotuned: count(&self.autotune, "Fastest result"),
        }
    }
}

/// Sets CubeCL's configuration for this process (before any GPU work): the user's
/// `cubecl.toml` and `CUBECL_*` variables, then rho's cache folder, the autotune level and the
/// two logs. Returns `None` on builds without a GPU backend.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
pub fn configure(args: &KernelArgs) -> anyhow::Result<Option<KernelLog>> {
    use anyhow::Context;
    use cubecl_runtime::config::autotune::{AutotuneLevel as Level, AutotuneLogLevel};
    use cubecl_runtime::config::cache::CacheConfig;
    use cubecl_runtime::config::compilation::CompilationLogLevel;
    use cubecl_runtime::config::{CubeClRuntimeConfig, RuntimeConfig};

    let dir = args.cache_dir();
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)
        .with_context(|| format!("cannot create the kernel cache {}", dir.display()))?;
    let pid = std::process::id();
    let log = KernelLog {
        cache_dir: dir.clone(),
        compilations: logs.join(format!("compile-{pid}.log")),
        autotune: logs.join(format!("autotune-{pid}.log")),
    };
    let mut cfg = CubeClRuntimeConfig::from_current_dir().override_from_env();
    cfg.autotune.cache = CacheConfig::File(dir.join("autotune"));
    cfg.compilation.cache = Some(CacheConfig::File(dir.join("kernels")));
    if let Some(level) = args.autotune_level {
        cfg.autotune.level = match level {
            AutotuneLevel::Minimal => Level::Minimal,
            AutotuneLevel::Balanced => Level::Balanced,
            AutotuneLevel::Extensive => Level::Extensive,
            AutotuneLevel::Full => Level::Full,
        };
    }
    if matches!(cfg.compilation.logger.level, CompilationLogLevel::Disabled) {
        cfg.compilation.logger.level = CompilationLogLevel::Basic;
    }
    cfg.compilation.logger.file = Some(log.compilations.clone());
    if matches!(cfg.autotune.logger.level, AutotuneLogLevel::Disabled) {
        cfg.autotune.logger.level = AutotuneLogLevel::Minimal;
    }
    cfg.autotune.logger.file = Some(log.autotune.clone());
    CubeClRuntimeConfig::set(cfg);
    Ok(Some(LOG.get_or_init(|| log).clone()))
}

/// The process's kernel log, once [`configure`] set one up (GPU backends only).
pub fn log() -> Option<&'static KernelLog> {
    LOG.get()
}

static LOG: std::sync::OnceLock<KernelLog> = std::sync::OnceLock::new();

#[cfg(not(any(feature = "cuda", feature = "wgpu")))]
pub fn configure(_args: &KernelArgs) -> anyhow::Result<Option<KernelLog>> {
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_over_the_environment_default() {
        let a = KernelArgs {
            kernel_cache: Some("/x/y".into()),
            autotune_level: None,
        };
        assert_eq!(a.cache_dir(), PathBuf::from("/x/y"));
        let d = KernelArgs::default().cache_dir();
        assert!(d.ends_with("rho/cubecl"), "{}", d.display());
    }

    #[test]
    fn counts_read_cubecl_log_lines() {
        let dir = std::env::temp_dir().join(format!("rho-kernels-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = KernelLog {
            cache_dir: dir.clone(),
            compilations: dir.join("c.log"),
            autotune: dir.join("a.log"),
        };
        assert_eq!(log.counts(), KernelCounts::default());
        std::fs::write(
            &log.compilations,
            "[Compiling kernel] conv\n[Compiling kernel] matmul\n",
        )
        .unwrap();
        std::fs::write(
            &log.autotune,
            "Fastest result im2col-key. \n Top 3 times: []\n",
        )
        .unwrap();
        assert_eq!(
            log.counts(),
            KernelCounts {
                compiled: 2,
                autotuned: 1
            }
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
