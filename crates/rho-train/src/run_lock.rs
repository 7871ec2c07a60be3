//! `RunLock`: an output folder belongs to one run at a time. Two runs writing into one folder
//! would interleave their metrics and leave a run card that describes one run next to the
//! other's checkpoints; the second is refused instead, naming the holder.
//!
//! An OS advisory lock (`flock`) on `OUTPUT/.rho.lock`: released when the process ends, however
//! it ends, so a crash never leaves the folder locked. The file names the holder's PID and host.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::engine::TrainError;

/// Held for as long as the run writes into its folder.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    pub path: PathBuf,
    /// Temporary files of an earlier run that was killed mid-write, removed on acquiring.
    pub removed_temp_files: usize,
    /// False where the filesystem has no locks: the folder is then not protected.
    pub held: bool,
}

impl RunLock {
    /// Locks `dir` (creating it), or says who holds it.
    pub fn acquire(dir: &Path) -> Result<Self, TrainError> {
        let path = dir.join(".rho.lock");
        let io = |source| TrainError::Io {
            action: "lock",
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(|source| TrainError::Io {
            action: "create",
            path: dir.to_path_buf(),
            source,
        })?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(TrainError::Config(format!(
                    "{} is in use by another rho run ({}); wait for it to end, or give this run another output folder (--set output=...)",
                    dir.display(),
                    holder.trim()
                )));
            }
            // Some network filesystems (Lustre without flock, old NFS) have no locks: run
            // unlocked rather than not at all, and say so.
            Err(TryLockError::Error(e)) if no_locks_here(&e) => {
                return Ok(Self {
                    _file: file,
                    path,
                    removed_temp_files: 0,
                    held: false,
                })
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let me = format!("pid {} on host {}", std::process::id(), host_name());
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(me.as_bytes()))
            .and_then(|()| file.flush())
            .map_err(io)?;
        let removed_temp_files = remove_stale_temp_files(dir);
        Ok(Self {
            _file: file,
            path,
            removed_temp_files,
            held: true,
        })
    }
}

/// Files rho writes into a run folder; `.NAME.xxxxxx` (or `.NAME.tmp-PID`) is the temporary
/// file of an atomic write of NAME that a kill interrupted. With the lock held no other run
/// writes here, so every such file is stale. (On Linux the writes use unnamed temporary files,
/// which vanish with the process; other systems and older versions leave named ones.)
fn remove_stale_temp_files(dir: &Path) -> usize {
    const OUTPUTS: [&str; 7] = [
        "run_card.toml",
        "metrics.jsonl",
        "backbone.safetensors",
        "loss.png",
        "lr.png",
        "collapse.png",
        "knn.png",
    ];
    let stale = |name: &str| {
        let Some((target, _suffix)) = name.strip_prefix('.').and_then(|n| n.rsplit_once('.'))
        else {
            return false;
        };
        let target = target.split(".tmp-").next().unwrap_or(target);
        (target.starts_with("ckpt_") && target.ends_with(".rho")) || OUTPUTS.contains(&target)
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_str().is_some_and(stale))
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}

/// ENOLCK, ENOSYS or EOPNOTSUPP: the filesystem does not lock.
fn no_locks_here(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::Unsupported || matches!(e.raw_os_error(), Some(37 | 38 | 95))
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_folder_is_refused_naming_the_holder() {
        let dir = std::env::temp_dir().join(format!("rho-lock-{}", std::process::id()));
        let first = RunLock::acquire(&dir).unwrap();
        let e = RunLock::acquire(&dir).unwrap_err().to_string();
        assert!(
            e.contains(&format!("pid {}", std::process::id())) && e.contains("host"),
            "{e}"
        );
        drop(first);
        // A kill during a checkpoint write left its temporary file; the next run removes it.
        std::fs::write(dir.join(".ckpt_00000004.rho.Ab3dE9"), b"partial").unwrap();
        std::fs::write(dir.join(".ckpt_00000002.rho.tmp-123"), b"partial").unwrap();
        std::fs::write(dir.join(".keep.txt"), b"not ours").unwrap();
        let again = RunLock::acquire(&dir).unwrap();
        assert_eq!(again.removed_temp_files, 2);
        assert!(dir.join(".keep.txt").exists());
    }
}
