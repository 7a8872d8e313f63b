//! An idle connection burns no CPU, and neither does one whose next message waits for a
//! receive. Alone in its own test binary so that no other test's work is counted.

use san_spi_core::transport::{block_on, Endpoint, Listener, MemAccess, Transport};
use san_spi_loopback::LoopbackTransport;
use std::time::Duration;

fn process_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a live local the call fills.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn cpu_while_sleeping(d: Duration) -> Duration {
    let before = process_cpu();
    std::thread::sleep(d);
    process_cpu() - before
}

#[test]
fn idle_and_blocked_connections_burn_no_cpu() {
    let t = LoopbackTransport::new(format!("idle-{}", std::process::id()));
    let addr = "198.18.0.1:9400".parse().unwrap();
    let listener = block_on(t.listen(addr)).unwrap();
    let server = std::thread::spawn(move || block_on(listener.accept()).unwrap());
    let client = block_on(t.connect(addr)).unwrap();
    let server = server.join().unwrap();
    // Let both progress threads finish spinning and park.
    std::thread::sleep(Duration::from_millis(200));
    let idle = cpu_while_sleeping(Duration::from_millis(500));
    assert!(
        idle < Duration::from_millis(50),
        "idle connection used {idle:?} of CPU in 500 ms"
    );

    // A message the server has no receive for: it waits in the ring, nobody spins on it.
    let mut src = san_spi_testkit::RegisteredBuf::new(&t, 100, 1, MemAccess::READ).unwrap();
    client.post_send(&[src.sge(0..100)], 1).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let blocked = cpu_while_sleeping(Duration::from_millis(500));
    assert!(
        blocked < Duration::from_millis(50),
        "a message waiting for a receive made the connection use {blocked:?} of CPU in 500 ms"
    );
    drop(server);
    drop(client);
    src.deregister().unwrap();
}
