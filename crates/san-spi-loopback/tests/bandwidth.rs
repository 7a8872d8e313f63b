//! A small RDMA-write bandwidth measurement, ignored by default:
//!
//! ```text
//! cargo test --release -p san-spi-loopback --test bandwidth -- --ignored --nocapture
//! ```
//!
//! Writes 1 MiB and 64 MiB blocks, four in flight, into a region of the peer — in one
//! process and across two (the test binary re-executes itself as the peer) — and prints
//! GB/s for each copy mode. `SAN_SPI_BW_SIZES=4096,65536` picks other block sizes.

use san_spi_core::transport::{
    block_on, Completion, Endpoint, Listener, MemAccess, Memory, RemoteTarget, Sge, Transport,
};
use san_spi_loopback::{CopyMode, LoopbackTransport};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "SAN_SPI_LOOPBACK_BW_CHILD";
const REGION: usize = 64 << 20;

fn wait_one<E: Endpoint>(ep: &E, deadline: Instant) -> Completion {
    let mut c = [Completion::default(); 1];
    loop {
        if ep.poll(&mut c) == 1 {
            return c[0];
        }
        assert!(Instant::now() < deadline, "no completion in time");
        ep.wait(Duration::from_millis(50));
    }
}

/// Writes `size`-byte blocks into `desc` until about `bytes` moved; returns GB/s.
fn measure<E: Endpoint>(t: &LoopbackTransport, ep: &E, desc: &[u8], size: usize) -> f64 {
    let mut src = vec![0x5Au8; size].into_boxed_slice();
    // SAFETY: `src` outlives its registration (deregistered below, after every completion).
    let h = unsafe { t.register(src.as_mut_ptr(), size, MemAccess::READ) }.unwrap();
    let sge = Sge {
        handle: h,
        addr: src.as_ptr() as u64,
        len: size as u32,
    };
    let target = RemoteTarget {
        descriptor: desc,
        offset: 0,
    };
    let ops = ((2usize << 30) / size).clamp(16, 2048);
    let window = 4;
    let deadline = Instant::now() + Duration::from_secs(120);
    // Warm up (page faults on both sides).
    for i in 0..window as u64 {
        ep.rdma_write(&[sge], target, i).unwrap();
    }
    for _ in 0..window {
        assert!(wait_one(ep, deadline).result.is_ok());
    }
    let start = Instant::now();
    let mut posted = 0;
    let mut done = 0;
    while done < ops {
        while posted < ops && posted - done < window {
            ep.rdma_write(&[sge], target, posted as u64).unwrap();
            posted += 1;
        }
        let c = wait_one(ep, deadline);
        assert_eq!(c.result, Ok(size as u32));
        done += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    t.deregister(h).unwrap();
    (ops * size) as f64 / secs / 1e9
}

fn sizes() -> Vec<usize> {
    match std::env::var("SAN_SPI_BW_SIZES") {
        Ok(s) => s.split(',').map(|x| x.trim().parse().unwrap()).collect(),
        Err(_) => vec![1 << 20, 64 << 20],
    }
}

fn run(label: &str, t: &LoopbackTransport, ep: &impl Endpoint, desc: &[u8]) {
    for size in sizes() {
        let gbs = measure(t, ep, desc, size);
        println!("{label}: RDMA write {:>8} KiB: {gbs:6.2} GB/s", size >> 10);
    }
}

fn in_process(t: LoopbackTransport, label: &str, port: u16) {
    let addr = SocketAddr::from(([198, 18, 0, 1], port));
    let listener = block_on(t.listen(addr)).unwrap();
    let server = std::thread::spawn(move || block_on(listener.accept()).unwrap());
    let client = block_on(t.connect(addr)).unwrap();
    let server = server.join().unwrap();
    assert_eq!(client.copy_mode(), t.copy_mode());
    let mut region = vec![0u8; REGION].into_boxed_slice();
    // SAFETY: `region` outlives its registration.
    let h = unsafe { t.register(region.as_mut_ptr(), REGION, MemAccess::READ_WRITE) }.unwrap();
    let mut desc = [0u8; 32];
    t.export(h, &mut desc).unwrap();
    run(label, &t, &client, &desc);
    client.close();
    server.close();
    t.deregister(h).unwrap();
}

/// The peer process: serves a region, sends its descriptor, waits for one message.
fn child(spec: &str) -> ! {
    let (ns, addr) = spec.split_once(' ').unwrap();
    let t = LoopbackTransport::new(ns);
    let t = if ns.ends_with("bounce") {
        t.with_copy_mode(CopyMode::Bounce)
    } else {
        t
    };
    let listener = block_on(t.listen(addr.parse().unwrap())).unwrap();
    let ep = block_on(listener.accept()).unwrap();
    let mut region = vec![0u8; REGION].into_boxed_slice();
    let mut desc = [0u8; 32];
    // SAFETY: both live until the process exits.
    let (h, hd) = unsafe {
        (
            t.register(region.as_mut_ptr(), REGION, MemAccess::READ_WRITE)
                .unwrap(),
            t.register(desc.as_mut_ptr(), 32, MemAccess::READ_WRITE)
                .unwrap(),
        )
    };
    t.export(h, &mut desc).unwrap();
    let sge = Sge {
        handle: hd,
        addr: desc.as_ptr() as u64,
        len: 32,
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    ep.post_send(&[sge], 1).unwrap();
    ep.post_recv(&[sge], 2).unwrap();
    let mut c = [Completion::default(); 4];
    let mut got = 0;
    while got < 2 && Instant::now() < deadline {
        got += ep.poll(&mut c);
        ep.wait(Duration::from_millis(50));
    }
    std::process::exit(0);
}

fn cross_process(mode: CopyMode, label: &str) {
    let ns = format!("bw-{}-{:?}", std::process::id(), mode).to_lowercase();
    let addr = "198.18.0.1:9401";
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "rdma_write_bandwidth",
            "--nocapture",
            "--ignored",
        ])
        .env(CHILD_ENV, format!("{ns} {addr}"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _child = Reap(child);
    let t = LoopbackTransport::new(ns).with_copy_mode(mode);
    let deadline = Instant::now() + Duration::from_secs(20);
    let ep = loop {
        match block_on(t.connect(addr.parse().unwrap())) {
            Ok(ep) => break ep,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "cannot connect to the child: {e}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    assert_eq!(ep.copy_mode(), mode);
    let mut desc = [0u8; 32];
    // SAFETY: `desc` outlives its registration.
    let hd = unsafe { t.register(desc.as_mut_ptr(), 32, MemAccess::READ_WRITE) }.unwrap();
    let sge = Sge {
        handle: hd,
        addr: desc.as_ptr() as u64,
        len: 32,
    };
    ep.post_recv(&[sge], 1).unwrap();
    assert_eq!(
        wait_one(&ep, Instant::now() + Duration::from_secs(20)).result,
        Ok(32)
    );
    run(label, &t, &ep, &desc);
    ep.post_send(&[sge], 2).unwrap();
    let _ = wait_one(&ep, Instant::now() + Duration::from_secs(20));
    ep.close();
    t.deregister(hd).unwrap();
}

#[test]
#[ignore = "a measurement: run with --ignored --nocapture in release"]
fn rdma_write_bandwidth() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child(&spec);
    }
    for (i, mode) in [CopyMode::Bounce, CopyMode::SingleCopy]
        .into_iter()
        .enumerate()
    {
        let t = LoopbackTransport::new(format!("bw-{}-in", std::process::id()));
        let label = format!("{mode:?}, in-process");
        in_process(
            t.with_copy_mode(mode),
            &format!("{label:>25}"),
            9400 + i as u16 * 2,
        );
        let label = format!("{mode:?}, cross-process");
        cross_process(mode, &format!("{label:>25}"));
    }
}
