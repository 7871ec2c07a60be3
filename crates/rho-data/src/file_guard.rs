//! Guards for opening users' files, which can block: a FIFO or a device blocks `open` forever,
//! and a file on a stalled network mount blocks any read. Non-regular files are refused before
//! they are opened ([`not_a_regular_file`]), and probes and decodes run under a deadline
//! ([`with_deadline`]) so the caller's thread always comes back.

use std::path::Path;
use std::time::Duration;

use crate::DataError;

/// What `path` is when it is not a regular file (after following symlinks): "a FIFO",
/// "a directory", ... `None` for a regular file or a path that cannot be inspected (its open
/// then reports why).
pub fn not_a_regular_file(path: &Path) -> Option<&'static str> {
    let t = std::fs::metadata(path).ok()?.file_type();
    if t.is_file() {
        return None;
    }
    if t.is_dir() {
        return Some("a directory");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return Some("a FIFO");
        }
        if t.is_char_device() || t.is_block_device() {
            return Some("a device");
        }
        if t.is_socket() {
            return Some("a socket");
        }
    }
    Some("not a regular file")
}

/// Refuses a non-regular `path` with a [`DataError::Decode`] naming what it is.
pub fn require_regular_file(path: &Path) -> Result<(), DataError> {
    match not_a_regular_file(path) {
        None => Ok(()),
        Some(kind) => Err(DataError::Decode {
            path: path.to_path_buf(),
            reason: format!("it is {kind}, not a video or image file"),
        }),
    }
}

/// Runs `work` (which reads `path`) on its own thread and gives up after `limit`: a read that
/// never returns costs one parked thread, not the caller. `what` names the work in the error
/// ("probing", "decoding").
pub fn with_deadline<T: Send + 'static>(
    path: &Path,
    limit: Duration,
    what: &str,
    work: impl FnOnce() -> Result<T, DataError> + Send + 'static,
) -> Result<T, DataError> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("rho-file-guard".into())
        .spawn(move || {
            let _ = tx.send(work());
        })
        .map_err(|e| DataError::Decode {
            path: path.to_path_buf(),
            reason: format!("cannot start a thread for {what} ({e})"),
        })?;
    match rx.recv_timeout(limit) {
        Ok(result) => result,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(DataError::Decode {
            path: path.to_path_buf(),
            reason: format!(
                "{what} took longer than {} s (a stalled network mount or a file that blocks); it was abandoned",
                limit.as_secs_f64()
            ),
        }),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(DataError::Decode {
            path: path.to_path_buf(),
            reason: format!("{what} stopped without a result (it panicked)"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocked_read_returns_at_the_deadline_and_a_fast_one_returns_its_value() {
        let p = Path::new("/data/v.mp4");
        let started = std::time::Instant::now();
        let err = with_deadline(p, Duration::from_millis(50), "probing", || {
            std::thread::sleep(Duration::from_secs(3600));
            Ok(())
        })
        .unwrap_err()
        .to_string();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(
            err.contains("/data/v.mp4") && err.contains("probing took longer than 0.05 s"),
            "{err}"
        );
        assert_eq!(
            with_deadline(p, Duration::from_secs(5), "probing", || Ok(7)).unwrap(),
            7
        );
        let panicked = with_deadline::<()>(p, Duration::from_secs(5), "probing", || panic!("x"));
        assert!(panicked.unwrap_err().to_string().contains("panicked"));
    }

    #[cfg(unix)]
    #[test]
    fn fifos_and_directories_are_named() {
        let d = std::env::temp_dir().join(format!("rho-guard-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let fifo = d.join("f.mp4");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            assert_eq!(not_a_regular_file(&fifo), Some("a FIFO"));
            let err = require_regular_file(&fifo).unwrap_err().to_string();
            assert!(err.contains("f.mp4") && err.contains("a FIFO"), "{err}");
        }
        assert_eq!(not_a_regular_file(&d), Some("a directory"));
        std::fs::write(d.join("x"), b"1").unwrap();
        assert_eq!(not_a_regular_file(&d.join("x")), None);
        assert_eq!(not_a_regular_file(&d.join("missing")), None);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
