//! glibc's allocator, set to keep freed memory for reuse (docs/architecture.md, "Allocation
//! churn").
//!
//! By default glibc serves every block above its dynamic mmap threshold (at most 32 MiB) with a
//! fresh `mmap`, and gives memory at the top of the heap back to the kernel once more than
//! 128 KiB of it is free. A training step frees and reallocates the same activation and gradient
//! buffers every step (Slow R-50's are 51 MB at [2, 3, 8, 112, 112]), so each one was faulted in
//! and zeroed by the kernel again: 16 % of a one-thread step in `perf`. Raising both thresholds
//! makes those blocks come from, and return to, the heap, as PyTorch's CPU caching does in its
//! own way. The price is the memory that stays mapped: peak RSS is unchanged for Slow R-50, and
//! 70 MiB higher for the demo (294 → 364 MiB), which runs 1.2× faster.

/// Blocks up to this size come from the heap, and this much free memory stays mapped.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const RETAINED_BYTES: libc::c_int = 1 << 30;

/// Applies the thresholds, unless the user tunes glibc's malloc through `GLIBC_TUNABLES`
/// (then theirs stand). Call it first thing in `main`, before any thread starts.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let user_tuned = std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc"));
        if user_tuned {
            return;
        }
        // SAFETY: mallopt only sets allocator parameters; it is called before other threads
        // exist. A rejected value (return 0) leaves glibc's default, which is still correct.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, RETAINED_BYTES);
            libc::mallopt(libc::M_TRIM_THRESHOLD, RETAINED_BYTES);
        }
    }
}
