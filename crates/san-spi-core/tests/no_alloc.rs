//! Emitting and parsing address lists of up to 16 entries does not touch the heap.
//!
//! A counting global allocator wraps the system one for this test binary only; the test
//! runs single-threaded inside one `#[test]` so no other test allocates meanwhile.

use san_spi_core::addr::{SocketAddressList, SocketAddressListRepr, Width};
use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts allocations.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
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

#[test]
fn emit_and_parse_of_up_to_16_addresses_do_not_allocate() {
    let addrs: Vec<SocketAddr> = (0..17u8)
        .map(|i| {
            if i % 2 == 0 {
                SocketAddr::from(([10, 0, 0, i], 0))
            } else {
                SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, i as u16], 0))
            }
        })
        .collect();
    let mut buf = vec![0u8; 4096];
    for width in Width::ALL {
        for n in 0..=16 {
            let repr = SocketAddressListRepr {
                addresses: &addrs[..n],
            };
            let before = ALLOCS.load(Ordering::SeqCst);
            let len = repr.emit(&mut buf, width, 0x1000).unwrap();
            let list = SocketAddressList::new_checked(&buf[..len], width, 0x1000).unwrap();
            let back = SocketAddressListRepr::parse(&list).unwrap();
            let after = ALLOCS.load(Ordering::SeqCst);
            assert_eq!(back.addresses.as_slice(), &addrs[..n]);
            assert_eq!(after - before, 0, "{n} addresses at {width} allocated");
        }
    }
    // 17 spill to the heap when parsed: the counter does see allocations.
    let repr = SocketAddressListRepr {
        addresses: &addrs[..],
    };
    let len = repr.emit(&mut buf, Width::W64, 0).unwrap();
    let before = ALLOCS.load(Ordering::SeqCst);
    let list = SocketAddressList::new_checked(&buf[..len], Width::W64, 0).unwrap();
    let back = SocketAddressListRepr::parse(&list).unwrap();
    assert!(ALLOCS.load(Ordering::SeqCst) > before);
    assert_eq!(back.addresses.len(), 17);
}
