//! `cargo xtask bench core`: address-list emit and ioctl decode, each beside a baseline
//! measured in the same run, with a counting allocator proving emit does not allocate.
//!
//! Baselines: emit is compared with a plain `copy_from_slice` of the finished list (the
//! least work that puts those bytes in a caller buffer); decode is compared with the bare
//! shifts and masks, without the known-code lookup.
//!
//! Targets: 16 addresses ≤ 1 µs; zero allocations for lists of up to 16.

// Benchmarks build with the workspace's stable toolchain, never with the 1.63 MSRV compiler.
#![allow(clippy::incompatible_msrv, missing_docs)]

use san_spi_core::addr::{SocketAddressListRepr, Width};
use san_spi_core::ioctl::{IoctlCode, KNOWN_CODES};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Best-of-5 nanoseconds per call of `f`, each batch running about `budget / 5`.
fn ns_per_op(budget: Duration, mut f: impl FnMut()) -> f64 {
    let mut iters = 1u64;
    loop {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        if t.elapsed() > budget / 50 {
            break;
        }
        iters *= 2;
    }
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        best = best.min(t.elapsed().as_nanos() as f64 / iters as f64);
    }
    best
}

fn addrs(n: usize) -> Vec<SocketAddr> {
    (0..n)
        .map(|i| {
            if i % 2 == 0 {
                SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 0))
            } else {
                let ip = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i as u16);
                SocketAddr::V6(SocketAddrV6::new(ip, 0, 0, 0))
            }
        })
        .collect()
}

fn main() -> ExitCode {
    let quick = std::env::args().any(|a| a == "--quick");
    let budget = Duration::from_millis(if quick { 50 } else { 500 });
    let mut ok = true;
    println!("san-spi-core bench (ns/op, best of 5; ratio = ours / baseline)");
    for n in [1usize, 16, 256] {
        let list = addrs(n);
        let repr = SocketAddressListRepr {
            addresses: &list[..],
        };
        let len = repr.buffer_len(Width::W64);
        let mut buf = vec![0u8; len];
        let mut reference = vec![0u8; len];
        repr.emit(&mut reference, Width::W64, 0x1000).unwrap();

        let before = ALLOCS.load(Ordering::Relaxed);
        let runs = 1000;
        for _ in 0..runs {
            black_box(repr.emit(black_box(&mut buf[..]), Width::W64, black_box(0x1000))).unwrap();
        }
        let allocs = (ALLOCS.load(Ordering::Relaxed) - before) as f64 / runs as f64;

        let ours = ns_per_op(budget, || {
            black_box(repr.emit(black_box(&mut buf[..]), Width::W64, black_box(0x1000))).unwrap();
        });
        let base = ns_per_op(budget, || {
            black_box(&mut buf[..]).copy_from_slice(black_box(&reference[..]));
        });
        println!(
            "emit {n:>3} addrs ({len:>5} B, 64-bit): {ours:>9.1} ns/op | memcpy {base:>7.1} ns/op | ratio {:>5.1}x | allocs/op {allocs}",
            ours / base
        );
        if n <= 16 && allocs != 0.0 {
            println!("  FAIL: emit of {n} addresses allocates");
            ok = false;
        }
        if n == 16 {
            let verdict = if ours <= 1000.0 { "meets" } else { "MISSES" };
            println!("  target 16 addresses <= 1000 ns/op: {verdict}");
            ok &= ours <= 1000.0;
        }
    }

    let codes: Vec<u32> = KNOWN_CODES
        .iter()
        .map(|k| k.code.raw())
        .chain([0x9840_0001, 0x1234_5678, 0xFFFF_FFFF])
        .collect();
    let mut i = 0usize;
    let ours = ns_per_op(budget, || {
        let c = IoctlCode::from_raw(black_box(codes[i % codes.len()]));
        black_box((c.flags(), c.ioctl_type(), c.family(), c.number(), c.name()));
        i += 1;
    });
    let base = ns_per_op(budget, || {
        let raw = black_box(codes[i % codes.len()]);
        black_box((
            raw >> 29,
            (raw >> 27) & 3,
            (raw >> 16) & 0x7FF,
            raw & 0xFFFF,
        ));
        i += 1;
    });
    println!(
        "ioctl decode (fields + name):     {ours:>9.1} ns/op | bare shifts {base:>5.1} ns/op | ratio {:>5.1}x",
        ours / base
    );
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
