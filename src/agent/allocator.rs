//! The allocator's behaviour for a process that runs for years: glibc's malloc, told
//! at start to give memory back.
//!
//! Left at its defaults, glibc's malloc keeps what a long-running agent frees:
//!
//! - its mmap threshold is dynamic: the first time a buffer above 128 KiB (a `/metrics`
//!   render is megabytes at 5,000 targets) is freed, the threshold rises to that size,
//!   so every later render comes from the heap, and a freed render stays in the heap;
//! - every thread that allocates may get its own arena (up to 8 per core), and freed
//!   memory in one arena is never reused by another.
//!
//! Measured at 5,000 tcp targets with both formats scraped every 15 s (docs/performance.md,
//! "Where the memory goes"): the defaults held about 10 MB more than a fixed threshold and
//! two arenas. So [`tune`] fixes the mmap threshold at 128 KiB (big buffers are mapped and
//! unmapped, always returned) and caps the arenas at 2 — the runtime's workers and the
//! blocking render thread contend little, since the agent's allocations are small and
//! short. A user who sets `GLIBC_TUNABLES` or `MALLOC_ARENA_MAX`/`MALLOC_MMAP_THRESHOLD_`
//! keeps their own setting. A build against another C library (musl) changes nothing.

/// The fixed mmap threshold: glibc's own starting value, no longer allowed to rise.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD_BYTES: libc::c_int = 128 * 1024;

/// Arenas for the runtime's workers and the blocking threads to share.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENA_MAX: libc::c_int = 2;

/// Sets the allocator up for a long-running process; call first thing in `main`,
/// before any thread starts.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let user_tunables = std::env::var_os("GLIBC_TUNABLES").is_some();
        if !user_tunables && std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
            set(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
        }
        if !user_tunables && std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            set(libc::M_ARENA_MAX, ARENA_MAX);
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set(parameter: libc::c_int, value: libc::c_int) {
    // SAFETY: mallopt only changes malloc's parameters; it is called before other
    // threads exist, and an unknown parameter is refused with 0, not undefined.
    let accepted = unsafe { libc::mallopt(parameter, value) };
    if accepted == 0 {
        // Not fatal: the agent runs as before, with glibc's defaults.
        eprintln!("mailprobe: the C library refused malloc parameter {parameter} = {value}");
    }
}
