//! glibc's allocator, set to keep freed memory for reuse (docs/architecture.md, "Allocation
//! churn").
//!
//! By default glibc serves every block above its dynamic mmap threshold (at most 32 MiB) with a
//! fresh `mmap`, and gives memory at the top of the heap back to the kernel once more than
//! 128 KiB of it is free. A training step frees and reallocates the same activation and gradient
//! buffers every step (Slow R-50's are 51 MB at [2, 3, 8, 112, 112]), so each one was faulted in
//! and zeroed by the kernel again: 16 % of a one-thread step in `perf`. Raising both thresholds
//! makes those blocks come from, and return to, the heap. The price is the memory that stays
//! mapped: peak RSS is unchanged for Slow R-50, and 70 MiB higher for the demo (294 → 364 MiB),
//! which runs 1.2× faster.

/// Blocks up to this size come from the heap, and this much free memory stays mapped.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const RETAINED_BYTES: libc::c_int = 1 << 30;

/// The largest mmap threshold that older glibc releases accept (half their 64 MiB heap).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const OLD_GLIBC_MAX_MMAP_THRESHOLD: libc::c_int = 32 << 20;

/// Applies the thresholds, unless the user sets either of them (through the `MALLOC_*_`
/// variables or `GLIBC_TUNABLES`; then theirs stand). Call it first thing in `main`.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if user_sets_thresholds() {
            return;
        }
        // SAFETY: mallopt only sets allocator parameters (under glibc's own lock); it is called
        // before other threads exist.
        unsafe {
            let mmap_set = libc::mallopt(libc::M_MMAP_THRESHOLD, RETAINED_BYTES) == 1
                || libc::mallopt(libc::M_MMAP_THRESHOLD, OLD_GLIBC_MAX_MMAP_THRESHOLD) == 1;
            // A trim threshold without a mmap threshold turns glibc's dynamic mmap threshold
            // off and maps every block above 128 KiB: worse than the defaults.
            if mmap_set {
                libc::mallopt(libc::M_TRIM_THRESHOLD, RETAINED_BYTES);
            }
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn user_sets_thresholds() -> bool {
    let env_set = ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    let tunables = std::env::var_os("GLIBC_TUNABLES")
        .map(|t| t.to_string_lossy().into_owned())
        .unwrap_or_default();
    env_set
        || tunables.contains("glibc.malloc.mmap_threshold")
        || tunables.contains("glibc.malloc.trim_threshold")
}
