//! What the loopback's 8-byte latency is made of: three ping-pongs between two threads, in
//! alternating rounds (the host may move the vCPUs during a run), timed with the TSC.
//!
//! ```text
//! cargo run --release -p san-spi-loopback --example bound -- [ROUNDS] [ITERS]
//! ```
//!
//! - `floor`: the bench's raw shared-memory spin ping-pong — a sequence number alone on its
//!   cache line, the payload on another, copied in and out. Nothing is checked.
//! - `model`: the least a transport under this project's rules can do per message, with no
//!   locks and nothing shared but the rings: the sender checks its SGE against a small
//!   registration table and writes one sealed 64-byte record (header, 8-byte payload, then
//!   the seal with release); the receiver sees the seal, checks the header (kind, flags,
//!   length), takes the oldest posted receive, checks its SGE against the table, copies the
//!   payload, writes the completion into the caller's array and publishes its head. Single
//!   threaded per side (no locks), no progress thread, no close or peer-death handling.
//! - `loopback`: `san-spi-loopback` itself, one transport per side (as two processes).
//!
//! Environment: `RING=BYTES` sets the loopback's ring capacity (it makes no difference to
//! this latency: 64 KiB, 256 KiB and the default 4 MiB measure the same).
//!
//! Prints, per round, the typical round trip of each (TSC ticks, the mean of the middle half) and the ratios to the
//! floor: the gap between `model` and `floor` is what validation and a completion queue
//! cost before any locking or generality; the gap between `loopback` and `model` is what
//! the real transport adds.

use san_spi_core::transport::{
    block_on, Completion, Endpoint, Listener, MemAccess, Memory, Op, Sge, Transport,
};
use san_spi_loopback::LoopbackTransport;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

fn tsc() -> u64 {
    // SAFETY: rdtsc has no preconditions on x86_64.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// The mean of the middle half: as robust as the median to the host's interruptions, and
/// finer than the TSC's step here (26 ticks on this VM) since it averages many samples.
fn typical(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    let mid = &v[v.len() / 4..v.len() * 3 / 4];
    mid.iter().sum::<u64>() / mid.len() as u64
}

/// A value alone on two cache lines.
#[repr(align(128))]
struct Line(AtomicU64);

/// The bench's floor: sequence number and payload on separate lines.
fn floor(iters: usize) -> u64 {
    let (ab, ba) = (Line(AtomicU64::new(0)), Line(AtomicU64::new(0)));
    let (ab_data, ba_data) = (Line(AtomicU64::new(0)), Line(AtomicU64::new(0)));
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 1..=iters as u64 {
                while ab.0.load(Ordering::Acquire) != i {
                    std::hint::spin_loop();
                }
                let v = ab_data.0.load(Ordering::Relaxed);
                ba_data.0.store(v, Ordering::Relaxed);
                ba.0.store(i, Ordering::Release);
            }
        });
        let mut rtts = Vec::with_capacity(iters);
        for i in 1..=iters as u64 {
            let t0 = tsc();
            ab_data.0.store(i, Ordering::Relaxed);
            ab.0.store(i, Ordering::Release);
            while ba.0.load(Ordering::Acquire) != i {
                std::hint::spin_loop();
            }
            std::hint::black_box(ba_data.0.load(Ordering::Relaxed));
            rtts.push(tsc() - t0);
        }
        typical(rtts)
    })
}

const RECORDS: u64 = 1024;
const WORDS: usize = 8;

fn seal(pos: u64) -> u64 {
    pos.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5A4E_5344_5345_414C
}

/// A consumer's head, on a line of its own.
struct Ring {
    head: Line,
}

impl Ring {
    fn new() -> Ring {
        Ring {
            head: Line(AtomicU64::new(0)),
        }
    }
}

/// One direction's records, each one 64-byte line: seal, kind/flags/len, token, a, b, three
/// payload words.
#[repr(align(64))]
struct Record([AtomicU64; WORDS]);

struct Records(Vec<Record>);

impl Records {
    fn new() -> Records {
        Records(
            (0..RECORDS)
                .map(|_| Record(std::array::from_fn(|_| AtomicU64::new(0))))
                .collect(),
        )
    }
}

#[derive(Clone, Copy)]
struct Reg {
    key: u64,
    addr: u64,
    len: u64,
    access: u8,
}

fn check(regs: &[Reg], sge: &Sge, need: u8) -> bool {
    regs.iter().any(|r| {
        r.key == sge.handle.raw()
            && r.access & need == need
            && sge.addr >= r.addr
            && sge.addr + sge.len as u64 <= r.addr + r.len
    })
}

/// One end of the model transport (single threaded).
struct Side<'a> {
    tx: &'a Records,
    tx_head: &'a Ring,
    rx: &'a Records,
    rx_head: &'a Ring,
    tx_pos: u64,
    cached_head: u64,
    rx_pos: u64,
    regs: Vec<Reg>,
    recvs: [(u64, Sge); 16],
    recv_head: usize,
    recv_tail: usize,
    sends_done: u64,
}

impl Side<'_> {
    #[inline(never)]
    fn post_recv(&mut self, sge: Sge, token: u64) -> bool {
        if !check(&self.regs, &sge, 2) || self.recv_tail - self.recv_head == 16 {
            return false;
        }
        self.recvs[self.recv_tail % 16] = (token, sge);
        self.recv_tail += 1;
        true
    }

    #[inline(never)]
    fn post_send(&mut self, sge: Sge, token: u64) -> bool {
        if !check(&self.regs, &sge, 1) || sge.len > 24 {
            return false;
        }
        if self.tx_pos - self.cached_head >= RECORDS {
            self.cached_head = self.tx_head.head.0.load(Ordering::Acquire);
            if self.tx_pos - self.cached_head >= RECORDS {
                return false;
            }
        }
        let r = &self.tx.0[(self.tx_pos % RECORDS) as usize].0;
        // SAFETY: the SGE lies in a registration checked above (the example's own memory).
        let payload = unsafe { std::ptr::read_unaligned(sge.addr as *const u64) };
        r[1].store(1 | (3 << 16) | ((sge.len as u64) << 32), Ordering::Relaxed);
        r[2].store(token, Ordering::Relaxed);
        r[5].store(payload, Ordering::Relaxed);
        r[0].store(seal(self.tx_pos), Ordering::Release);
        self.tx_pos += 1;
        self.sends_done += 1;
        true
    }

    #[inline(never)]
    fn poll(&mut self, out: &mut [Completion]) -> usize {
        let r = &self.rx.0[(self.rx_pos % RECORDS) as usize].0;
        if r[0].load(Ordering::Acquire) != seal(self.rx_pos) {
            return 0;
        }
        let h = r[1].load(Ordering::Relaxed);
        let (kind, flags, len) = (h & 0xFFFF, (h >> 16) & 0xFFFF, h >> 32);
        if kind != 1 || flags != 3 || len > 24 || self.recv_head == self.recv_tail {
            return 0; // the model's peer is trusted to be well formed; a real one fails here
        }
        let (token, sge) = self.recvs[self.recv_head % 16];
        if !check(&self.regs, &sge, 2) {
            return 0;
        }
        self.recv_head += 1;
        let n = len.min(sge.len as u64) as usize;
        let payload = r[5].load(Ordering::Relaxed).to_le_bytes();
        // SAFETY: the SGE lies in a write registration checked above.
        unsafe { std::ptr::copy_nonoverlapping(payload.as_ptr(), sge.addr as *mut u8, n) };
        self.rx_pos += 1;
        self.rx_head.head.0.store(self.rx_pos, Ordering::Release);
        out[0] = Completion::new(token, Op::Recv, Ok(n as u32));
        1
    }
}

fn model(iters: usize) -> u64 {
    let (ab, ba) = (Records::new(), Records::new());
    let (ab_head, ba_head) = (Ring::new(), Ring::new());
    let mem = vec![0u8; 1024].into_boxed_slice();
    let base = mem.as_ptr() as u64;
    let key = san_spi_core::transport::MemoryHandle::new(0x1234_5678_9ABC).unwrap();
    let regs = vec![
        Reg {
            key: key.raw(),
            addr: base,
            len: 1024,
            access: 3,
        };
        4
    ];
    let sge = |off: u64| Sge {
        handle: key,
        addr: base + off * 64,
        len: 8,
    };
    let side = |tx, tx_head, rx, rx_head| Side {
        tx,
        tx_head,
        rx,
        rx_head,
        tx_pos: 0,
        cached_head: 0,
        rx_pos: 0,
        regs: regs.clone(),
        recvs: [(0, sge(0)); 16],
        recv_head: 0,
        recv_tail: 0,
        sends_done: 0,
    };
    let mut client = side(&ab, &ab_head, &ba, &ba_head);
    let mut server = side(&ba, &ba_head, &ab, &ab_head);
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut cs = [Completion::default(); 4];
            for i in 0..4 {
                server.post_recv(sge(2), i);
            }
            for _ in 0..iters {
                while server.poll(&mut cs) == 0 {
                    std::hint::spin_loop();
                }
                server.post_send(sge(3), 0);
                server.post_recv(sge(2), 0);
            }
            done.store(true, Ordering::Release);
        });
        let mut cs = [Completion::default(); 4];
        for i in 0..4 {
            client.post_recv(sge(1), i);
        }
        let mut rtts = Vec::with_capacity(iters);
        for _ in 0..iters {
            let t0 = tsc();
            client.post_send(sge(0), 0);
            while client.poll(&mut cs) == 0 {
                std::hint::spin_loop();
            }
            rtts.push(tsc() - t0);
            client.post_recv(sge(1), 0);
        }
        drop(mem);
        typical(rtts)
    })
}

fn loopback(iters: usize, round: usize) -> u64 {
    let name = format!("bound-{}-{round}", std::process::id());
    let cap: usize = std::env::var("RING")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(san_spi_loopback::DEFAULT_RING_CAPACITY);
    let (ts, tc) = (
        LoopbackTransport::new(&name).with_ring_capacity(cap),
        LoopbackTransport::new(&name).with_ring_capacity(cap),
    );
    let addr = "198.18.0.1:9901".parse().unwrap();
    let l = block_on(ts.listen(addr)).unwrap();
    let acceptor = std::thread::spawn(move || block_on(l.accept()).unwrap());
    let c = block_on(tc.connect(addr)).unwrap();
    let s = acceptor.join().unwrap();
    let mut mem = vec![0u8; 1024].into_boxed_slice();
    // SAFETY: `mem` outlives both registrations and every operation below.
    let hs = unsafe { ts.register(mem.as_mut_ptr(), 1024, MemAccess::READ_WRITE) }.unwrap();
    // SAFETY: as above.
    let hc = unsafe { tc.register(mem.as_mut_ptr(), 1024, MemAccess::READ_WRITE) }.unwrap();
    let base = mem.as_ptr() as u64;
    let sge = |handle, off: u64| Sge {
        handle,
        addr: base + off * 64,
        len: 8,
    };
    for i in 0..4 {
        c.post_recv(&[sge(hc, 1)], i).unwrap();
        s.post_recv(&[sge(hs, 2)], i).unwrap();
    }
    let typical = std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut cs = [Completion::default(); 8];
            let mut done = 0;
            while done < iters {
                let n = s.poll(&mut cs);
                if n == 0 {
                    std::hint::spin_loop();
                }
                for x in &cs[..n] {
                    if x.op == Op::Recv {
                        s.post_send(&[sge(hs, 3)], 0).unwrap();
                        s.post_recv(&[sge(hs, 2)], 0).unwrap();
                        done += 1;
                    }
                }
            }
        });
        let mut cs = [Completion::default(); 8];
        let mut rtts = Vec::with_capacity(iters);
        for _ in 0..iters {
            let t0 = tsc();
            c.post_send(&[sge(hc, 0)], 0).unwrap();
            'wait: loop {
                let n = c.poll(&mut cs);
                if n == 0 {
                    std::hint::spin_loop();
                }
                for x in &cs[..n] {
                    if x.op == Op::Recv {
                        break 'wait;
                    }
                }
            }
            rtts.push(tsc() - t0);
            c.post_recv(&[sge(hc, 1)], 0).unwrap();
        }
        typical(rtts)
    });
    drop((c, s));
    ts.deregister(hs).unwrap();
    tc.deregister(hc).unwrap();
    typical
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(6);
    let iters: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    println!("round trip, TSC ticks, mean of the middle half ({iters} round trips each, rounds alternate)");
    println!("round     floor     model  loopback   model/floor  loopback/floor");
    for round in 0..rounds {
        let f = floor(iters);
        let m = model(iters);
        let l = loopback(iters, round);
        println!(
            "{round:>5} {f:>9} {m:>9} {l:>9} {:>12.2}× {:>14.2}×",
            m as f64 / f as f64,
            l as f64 / f as f64
        );
    }
}
