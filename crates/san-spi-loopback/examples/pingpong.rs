//! An 8-byte send/receive ping-pong between two loopback endpoints in one process, for
//! profiling the hot path (`perf record --call-graph dwarf`): prints the one-way p50.

use san_spi_core::transport::{
    block_on, Completion, Endpoint, Listener, MemAccess, Memory, Op, Sge, Transport,
};
use san_spi_loopback::LoopbackTransport;
use std::time::Instant;

fn main() {
    let iters: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let t = LoopbackTransport::new(format!("pingpong-{}", std::process::id()));
    let addr = "198.18.0.1:9900".parse().unwrap();
    let l = block_on(t.listen(addr)).unwrap();
    let s = std::thread::spawn(move || block_on(l.accept()).unwrap());
    let c = block_on(t.connect(addr)).unwrap();
    let s = s.join().unwrap();
    let mut mem = vec![0u8; 64].into_boxed_slice();
    // SAFETY: `mem` outlives the registration and every operation below.
    let h = unsafe { t.register(mem.as_mut_ptr(), 64, MemAccess::READ_WRITE) }.unwrap();
    let sge = |off: u64| Sge {
        handle: h,
        addr: mem.as_ptr() as u64 + off,
        len: 8,
    };
    for i in 0..4 {
        c.post_recv(&[sge(16)], i).unwrap();
        s.post_recv(&[sge(32)], i).unwrap();
    }
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut cs = [Completion::default(); 8];
            let mut done = 0;
            while done < iters {
                let n = s.poll(&mut cs);
                for x in &cs[..n] {
                    if x.op == Op::Recv {
                        s.post_recv(&[sge(32)], 0).unwrap();
                        s.post_send(&[sge(40)], 0).unwrap();
                        done += 1;
                    }
                }
            }
        });
        let mut rtts = Vec::with_capacity(iters);
        let mut cs = [Completion::default(); 8];
        for _ in 0..iters {
            let t0 = Instant::now();
            c.post_send(&[sge(0)], 0).unwrap();
            'wait: loop {
                let n = c.poll(&mut cs);
                for x in &cs[..n] {
                    if x.op == Op::Recv {
                        c.post_recv(&[sge(16)], 0).unwrap();
                        break 'wait;
                    }
                }
            }
            rtts.push(t0.elapsed().as_nanos() as u64);
        }
        rtts.sort_unstable();
        println!(
            "one-way p50 {} ns, p99 {} ns",
            rtts[iters / 2] / 2,
            rtts[iters * 99 / 100] / 2
        );
    });
    drop((c, s));
    t.deregister(h).unwrap();
}
