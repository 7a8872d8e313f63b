//! `cargo xtask bench overlapped`: the overlapped completion path, with its baseline in the
//! same run.
//!
//! 1. One thread: post → complete → deliver (upcall mode, a switch that does nothing),
//!    operations per second. Target: ≥ 20 M ops/s.
//! 2. Two threads, completer → harvester. Ours: the completer posts and completes requests
//!    in poll-only mode, publishing each result through a `WSAOVERLAPPED` (the fields the
//!    shim writes, `Internal` last with release); the harvester polls them with
//!    `get_overlapped_result` and hands the structure back. Baseline: a bounded crossbeam
//!    channel of the same depth carrying the same payload (overlapped address, error,
//!    bytes) from the completer to the harvester. Printed: ns per operation, ns per
//!    message and their ratio. Target: ratio ≤ 1.0.
//! 3. A counting global allocator: allocations per operation in steady state (must be 0).

#![allow(clippy::incompatible_msrv, missing_docs)]

use san_spi_core::overlapped::{
    get_overlapped_result, CompletionMode, OperationTable, Outcome, OverlappedRequest,
    OverlappedResult,
};
use san_spi_core::upcall::{OverlappedFields, OverlappedMemory, ThreadId, Upcalls};
use san_spi_core::WsaError;
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts allocations.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The caller's `WSAOVERLAPPED` structures, as the shim would access them: atomics, with
/// `Internal` stored last (release) and loaded first (acquire). Addressed by index.
#[repr(align(64))]
#[derive(Default)]
struct Wsaoverlapped {
    internal: AtomicU64,
    internal_high: AtomicU64,
    offset: AtomicU32,
    offset_high: AtomicU32,
    /// Set by the harvester when the completer may reuse the structure.
    free: AtomicBool,
}

struct Memory {
    ovs: Vec<Wsaoverlapped>,
}

impl Memory {
    fn new(n: usize) -> Memory {
        let ovs: Vec<Wsaoverlapped> = (0..n).map(|_| Wsaoverlapped::default()).collect();
        for o in &ovs {
            o.free.store(true, Ordering::Relaxed);
        }
        Memory { ovs }
    }
    fn at(&self, overlapped: u64) -> &Wsaoverlapped {
        &self.ovs[overlapped as usize]
    }
}

impl OverlappedMemory for Memory {
    fn write_in_progress(&self, overlapped: u64) {
        self.at(overlapped).internal.store(0x103, Ordering::Relaxed);
    }
    fn write_result(&self, overlapped: u64, error: u32, flags: u32) {
        let o = self.at(overlapped);
        o.offset_high.store(error, Ordering::Relaxed);
        o.offset.store(flags, Ordering::Relaxed);
    }
    fn write_done(&self, overlapped: u64, bytes: u32) {
        let o = self.at(overlapped);
        o.internal_high.store(bytes as u64, Ordering::Relaxed);
        o.internal.store(0, Ordering::Release);
    }
    fn read(&self, overlapped: u64) -> OverlappedFields {
        let o = self.at(overlapped);
        let internal = o.internal.load(Ordering::Acquire);
        OverlappedFields {
            internal,
            internal_high: o.internal_high.load(Ordering::Relaxed),
            offset: o.offset.load(Ordering::Relaxed),
            offset_high: o.offset_high.load(Ordering::Relaxed),
        }
    }
    fn write_output(&self, _address: u64, _bytes: &[u8]) {}
}

impl Upcalls for Memory {
    fn complete_overlapped(
        &self,
        _socket: u64,
        overlapped: u64,
        _error: u32,
        bytes: u32,
    ) -> Result<(), WsaError> {
        // What the switch does with the structure; no event or port to signal here.
        self.write_done(overlapped, bytes);
        Ok(())
    }
    fn queue_apc(&self, _thread: &ThreadId, _context: u64) -> Result<(), WsaError> {
        Ok(())
    }
}

fn req(i: u64, event: u64) -> OverlappedRequest {
    OverlappedRequest {
        overlapped: i,
        event,
        completion_routine: 0,
        thread_id: None,
    }
}

fn one_thread(n: u64) -> (f64, f64) {
    let mem = Memory::new(64);
    let table = OperationTable::with_capacity(64);
    // Warm up, then count allocations and time.
    for i in 0..1000 {
        let t = table
            .post(1, &req(i % 64, 0), CompletionMode::Upcall, &mem)
            .unwrap();
        table.complete(t, Outcome::ok(i as u32), &mem).unwrap();
    }
    let allocs = ALLOCS.load(Ordering::Relaxed);
    let start = Instant::now();
    for i in 0..n {
        let t = table
            .post(1, black_box(&req(i & 63, 0)), CompletionMode::Upcall, &mem)
            .unwrap();
        black_box(table.complete(t, Outcome::ok(i as u32), &mem)).unwrap();
    }
    let ns = start.elapsed().as_nanos() as f64 / n as f64;
    let per_op = (ALLOCS.load(Ordering::Relaxed) - allocs) as f64 / n as f64;
    (ns, per_op)
}

const DEPTH: usize = 256;

fn two_threads_ours(n: u64) -> f64 {
    let mem = Arc::new(Memory::new(DEPTH));
    let table = Arc::new(OperationTable::with_capacity(DEPTH));
    let (m2, t2) = (mem.clone(), table.clone());
    let start = Instant::now();
    let completer = std::thread::spawn(move || {
        for i in 0..n {
            let ov = i % DEPTH as u64;
            let o = m2.at(ov);
            while !o.free.load(Ordering::Acquire) {
                std::hint::spin_loop();
            }
            o.free.store(false, Ordering::Relaxed);
            let t = t2
                .post(1, &req(ov, 1), CompletionMode::PollOnly, &*m2)
                .unwrap();
            t2.complete(t, Outcome::ok(i as u32), &*m2).unwrap();
        }
    });
    let mut sum = 0u64;
    for i in 0..n {
        let ov = i % DEPTH as u64;
        loop {
            // The harvester waits for the completion it expects next: a poll, not a signal.
            if let OverlappedResult::Done { bytes, .. } = get_overlapped_result(&*mem, ov) {
                sum = sum.wrapping_add(bytes as u64);
                break;
            }
            std::hint::spin_loop();
        }
        let o = mem.at(ov);
        o.internal.store(0x103, Ordering::Relaxed);
        o.free.store(true, Ordering::Release);
    }
    completer.join().unwrap();
    black_box(sum);
    start.elapsed().as_nanos() as f64 / n as f64
}

#[derive(Clone, Copy)]
struct Payload {
    overlapped: u64,
    error: u32,
    bytes: u32,
}

fn two_threads_channel(n: u64) -> f64 {
    let (tx, rx) = crossbeam_channel::bounded::<Payload>(DEPTH);
    let start = Instant::now();
    let completer = std::thread::spawn(move || {
        for i in 0..n {
            tx.send(Payload {
                overlapped: i % DEPTH as u64,
                error: 0,
                bytes: i as u32,
            })
            .unwrap();
        }
    });
    let mut sum = 0u64;
    for _ in 0..n {
        let p = rx.recv().unwrap();
        sum = sum.wrapping_add(p.bytes as u64 + p.error as u64 + p.overlapped);
    }
    completer.join().unwrap();
    black_box(sum);
    start.elapsed().as_nanos() as f64 / n as f64
}

fn best(runs: usize, mut f: impl FnMut() -> f64) -> f64 {
    (0..runs).map(|_| f()).fold(f64::MAX, f64::min)
}

fn main() -> ExitCode {
    let quick = std::env::args().any(|a| a == "--quick");
    let n: u64 = if quick { 200_000 } else { 5_000_000 };
    let runs = if quick { 2 } else { 5 };
    println!("san-spi-core overlapped bench ({n} operations per run, best of {runs})");

    let mut allocs = 0.0f64;
    let one = best(runs, || {
        let (ns, a) = one_thread(n);
        allocs = allocs.max(a);
        ns
    });
    let mops = 1000.0 / one;
    println!("one thread  post → complete → deliver: {one:>7.1} ns/op = {mops:>6.1} M ops/s (target ≥ 20)");
    println!("allocations per operation (steady state): {allocs}");

    let ours = best(runs, || two_threads_ours(n));
    let chan = best(runs, || two_threads_channel(n));
    println!(
        "two threads completer → harvester: ours {ours:>7.1} ns/op | crossbeam channel {chan:>7.1} ns/msg | ratio {:.2} (target ≤ 1.0)",
        ours / chan
    );
    let ok = mops >= 20.0 && allocs == 0.0 && ours / chan <= 1.0;
    println!("targets: {}", if ok { "met" } else { "NOT all met" });
    if allocs == 0.0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
