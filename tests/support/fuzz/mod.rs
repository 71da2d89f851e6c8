//! Fuzzing the parsers that read what the outside world sends, on stable
//! Rust with proptest: the playlist parsers and the tracker
//! ([`playlist`]), and the chat's IRC parser ([`irc`]). Each input must be
//! read (or refused) without any panic, caught or not, and within an
//! allocation bound; what the parsers return is counted, so a run can show
//! which outcomes and limits it reached.
//!
//! The test `tests/fuzz.rs` runs a short pass in CI; the `fuzz-bench`
//! binary runs a million cases or more. Both install [`CountingAllocator`].

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;

pub mod edges;
pub mod irc;
pub mod playlist;

pub use irc::{IrcFuzzReport, run_irc};
pub use playlist::{FuzzReport, allocation_bound, run};

/// Counts live and peak heap bytes, to bound what parsing one input costs.
pub struct CountingAllocator;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static PANICS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let now = LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size - layout.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

/// Heap bytes allocated beyond what was live when `f` started, at its peak.
/// Only meaningful with [`CountingAllocator`] installed and one thread busy.
pub fn peak_extra<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed).saturating_sub(base))
}

/// Count every panic, caught or not, from here on.
pub fn count_panics() {
    static HOOKED: std::sync::Once = std::sync::Once::new();
    HOOKED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
}

pub fn panics() -> usize {
    PANICS.load(Ordering::SeqCst)
}

/// Byte edits at random places: overwrite, insert or remove a byte, or one
/// of three format-specific edits (`special`, given the op 3 to 5 and the place).
pub(crate) fn mutate(
    bytes: &mut Vec<u8>,
    edits: Vec<(u8, prop::sample::Index, u8)>,
    special: impl Fn(&mut Vec<u8>, u8, usize),
) {
    for (op, at, value) in edits {
        if bytes.is_empty() {
            break;
        }
        let i = at.index(bytes.len());
        match op % 6 {
            0 => bytes[i] = value,
            1 => bytes.insert(i, value),
            2 => {
                bytes.remove(i);
            }
            op => special(bytes, op, i),
        }
    }
}

/// Serialises the fuzz runs of one test binary, and any test of that binary
/// that allocates much: the allocation bound is measured on a process-wide
/// counter, so two at once would blur it.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}
