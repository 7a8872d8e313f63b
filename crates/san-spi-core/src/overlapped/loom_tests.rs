//! Loom models of the operation table: every interleaving of complete vs close vs poll vs
//! APC delivery on 2–3 threads. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p san-spi-core --release --lib loom`.
//!
//! Each model asserts exactly one notification (or, in poll-only mode, exactly one final
//! result and none sent), no lost completion, and a free list that still holds every slot.

use super::*;
use crate::testing::{FakeSwitch, Upcall};
use loom::sync::Arc;
use loom::thread;

const THREAD: ThreadId = ThreadId {
    thread_handle: 7,
    reserved: 0,
};

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(f);
}

fn req(overlapped: u64, event: u64, routine: u64) -> OverlappedRequest {
    OverlappedRequest {
        overlapped,
        event,
        completion_routine: routine,
        thread_id: Some(THREAD),
    }
}

fn setup(r: OverlappedRequest) -> (Arc<OperationTable>, Arc<FakeSwitch>, Token) {
    let table = Arc::new(OperationTable::with_capacity(2));
    let sw = Arc::new(FakeSwitch::new());
    let token = table
        .post(1, &r, CompletionMode::of(&r).unwrap(), &*sw)
        .unwrap();
    (table, sw, token)
}

/// Every slot is free again and can be posted.
fn assert_all_slots_free(table: &OperationTable, sw: &FakeSwitch) {
    assert_eq!(table.pending(), 0);
    let r = req(0xF00, 0, 0);
    let a = table.post(9, &r, CompletionMode::Upcall, sw).unwrap();
    let b = table.post(9, &r, CompletionMode::Upcall, sw).unwrap();
    assert_ne!(a, b);
    assert!(table.post(9, &r, CompletionMode::Upcall, sw).is_err());
}

#[test]
fn loom_complete_vs_close_notifies_once() {
    model(|| {
        let (table, sw, token) = setup(req(0x100, 0, 0));
        let (t2, s2) = (table.clone(), sw.clone());
        let completer = thread::spawn(move || t2.complete(token, Outcome::ok(5), &*s2).is_ok());
        let aborted = table.abort_socket(1, &*sw);
        let completed = completer.join().unwrap();
        assert_eq!(completed as usize + aborted, 1, "exactly one of them wins");
        let ups = sw.upcalls();
        assert_eq!(ups.len(), 1);
        let (error, bytes) = match ups[0] {
            Upcall::CompleteOverlapped { error, bytes, .. } => (error, bytes),
            other => panic!("{:?}", other),
        };
        if completed {
            assert_eq!((error, bytes), (0, 5));
        } else {
            assert_eq!((error, bytes), (995, 0));
        }
        assert_all_slots_free(&table, &sw);
    });
}

#[test]
fn loom_complete_vs_poll_sees_no_torn_or_lost_result() {
    model(|| {
        let (table, sw, token) = setup(req(0x200, 1, 0));
        let (t2, s2) = (table.clone(), sw.clone());
        let completer = thread::spawn(move || {
            t2.complete(
                token,
                Outcome {
                    error: 10054,
                    bytes: 9,
                    flags: 1,
                },
                &*s2,
            )
        });
        let done = OverlappedResult::Done {
            bytes: 9,
            flags: 1,
            error: 10054,
        };
        let seen = get_overlapped_result(&*sw, 0x200);
        assert!(seen == OverlappedResult::Incomplete || seen == done);
        assert_eq!(completer.join().unwrap(), Ok(Delivery::PollOnly));
        assert_eq!(get_overlapped_result(&*sw, 0x200), done);
        assert!(sw.upcalls().is_empty(), "poll-only notifies nobody");
        assert_all_slots_free(&table, &sw);
    });
}

#[test]
fn loom_apc_is_harvested_exactly_once() {
    model(|| {
        let (table, sw, token) = setup(req(0x300, 0, 0x7000));
        let (t2, s2) = (table.clone(), sw.clone());
        let completer = thread::spawn(move || t2.complete(token, Outcome::ok(3), &*s2));
        // An APC thread racing with the completion (a forged early run).
        let early = table.take_apc(token.raw() as u64);
        assert_eq!(completer.join().unwrap(), Ok(Delivery::Apc));
        let queued = sw.run_apcs(&THREAD);
        assert_eq!(queued, vec![token.raw() as u64]);
        let late = table.take_apc(queued[0]);
        assert!(early.is_ok() != late.is_ok(), "harvested exactly once");
        let call = early.or(late).unwrap();
        assert_eq!((call.routine, call.bytes, call.error), (0x7000, 3, 0));
        assert_all_slots_free(&table, &sw);
    });
}

#[test]
fn loom_complete_vs_close_vs_apc_three_threads() {
    model(|| {
        let (table, sw, token) = setup(req(0x400, 0, 0x7000));
        let (t2, s2) = (table.clone(), sw.clone());
        let completer = thread::spawn(move || t2.complete(token, Outcome::ok(1), &*s2).is_ok());
        let (t3, s3) = (table.clone(), sw.clone());
        let closer = thread::spawn(move || t3.abort_socket(1, &*s3));
        let completed = completer.join().unwrap();
        let aborted = closer.join().unwrap();
        assert_eq!(completed as usize + aborted, 1);
        assert_eq!(sw.apcs_queued(), 1);
        let call = table.take_apc(sw.run_apcs(&THREAD)[0]).unwrap();
        assert_eq!(call.error, if completed { 0 } else { 995 });
        assert_all_slots_free(&table, &sw);
    });
}

#[test]
fn loom_concurrent_posts_share_the_free_list() {
    model(|| {
        let table = Arc::new(OperationTable::with_capacity(2));
        let sw = Arc::new(FakeSwitch::new());
        let handles: Vec<_> = (0..2u64)
            .map(|i| {
                let (t, s) = (table.clone(), sw.clone());
                thread::spawn(move || {
                    let r = req(0x500 + i, 0, 0);
                    let token = t.post(i, &r, CompletionMode::Upcall, &*s).unwrap();
                    t.complete(token, Outcome::ok(i as u32), &*s).unwrap();
                    token
                })
            })
            .collect();
        let tokens: Vec<Token> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(sw.completions_of(0x500), 1);
        assert_eq!(sw.completions_of(0x501), 1);
        for t in tokens {
            assert!(!table.is_pending(t));
        }
        assert_all_slots_free(&table, &sw);
    });
}
