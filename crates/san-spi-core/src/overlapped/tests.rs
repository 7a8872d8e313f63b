use super::*;
use crate::testing::{FakeSwitch, Upcall};
use crate::upcall::OverlappedFields;
use proptest::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

const THREAD: ThreadId = ThreadId {
    thread_handle: 0xABC,
    reserved: 0x1,
};

fn req(overlapped: u64, event: u64, routine: u64) -> OverlappedRequest {
    OverlappedRequest {
        overlapped,
        event,
        completion_routine: routine,
        thread_id: if routine != 0 { Some(THREAD) } else { None },
    }
}

fn post(table: &OperationTable, sw: &FakeSwitch, socket: u64, r: &OverlappedRequest) -> Token {
    table
        .post(socket, r, CompletionMode::of(r).unwrap(), sw)
        .unwrap()
}

/// R-OVL-2: without a routine the request completes through `WPUCompleteOverlappedRequest`,
/// from any thread, with the error and byte count.
#[test]
fn r_ovl_2_null_routine_completes_by_upcall_from_any_thread() {
    let sw = Arc::new(FakeSwitch::new());
    let table = Arc::new(OperationTable::with_capacity(8));
    let r = req(0x1000, 0x20, 0);
    assert_eq!(CompletionMode::of(&r), Ok(CompletionMode::Upcall));
    let token = post(&table, &sw, 9, &r);
    assert_eq!(sw.read(0x1000).internal, WSS_OPERATION_IN_PROGRESS);
    let (t2, s2) = (table.clone(), sw.clone());
    std::thread::spawn(move || t2.complete(token, Outcome::ok(77), &*s2).unwrap())
        .join()
        .unwrap();
    assert_eq!(
        sw.upcalls(),
        vec![Upcall::CompleteOverlapped {
            socket: 9,
            overlapped: 0x1000,
            error: 0,
            bytes: 77
        }]
    );
    assert_eq!(
        get_overlapped_result(&*sw, 0x1000),
        OverlappedResult::Done {
            bytes: 77,
            flags: 0,
            error: 0
        }
    );
    assert_eq!(table.pending(), 0);
}

/// R-OVL-3: low bit set → the switch is still told (event, no port); `hEvent == 1` → no
/// notification at all, the result is only in the `WSAOVERLAPPED`.
#[test]
fn r_ovl_3_low_bit_skips_port_and_poll_only_notifies_nobody() {
    assert_eq!(
        CompletionMode::of(&req(1, 0x41, 0)),
        Ok(CompletionMode::EventNoPort)
    );
    assert_eq!(
        CompletionMode::of(&req(1, 1, 0)),
        Ok(CompletionMode::PollOnly)
    );
    assert_eq!(
        CompletionMode::of(&req(1, 0, 0)),
        Ok(CompletionMode::Upcall)
    );

    let sw = FakeSwitch::new();
    let table = OperationTable::with_capacity(8);
    let ev = post(&table, &sw, 1, &req(0x10, 0x41, 0));
    assert_eq!(
        table.complete(ev, Outcome::ok(3), &sw),
        Ok(Delivery::Upcall)
    );
    assert_eq!(sw.completions_of(0x10), 1);

    let poll = post(&table, &sw, 1, &req(0x20, 1, 0));
    assert_eq!(
        get_overlapped_result(&sw, 0x20),
        OverlappedResult::Incomplete
    );
    let out = Outcome {
        error: WsaError::ConnReset.code() as u32,
        bytes: 5,
        flags: 2,
    };
    assert_eq!(table.complete(poll, out, &sw), Ok(Delivery::PollOnly));
    assert_eq!(sw.upcalls().len(), 1, "poll-only sends no notification");
    assert_eq!(
        get_overlapped_result(&sw, 0x20),
        OverlappedResult::Done {
            bytes: 5,
            flags: 2,
            error: 10054
        }
    );
}

/// R-OVL-4: with a routine, `hEvent` is ignored (even 1) and the APC goes to the copied
/// `WSATHREADID`; a routine without a thread id is WSAEFAULT.
#[test]
fn r_ovl_4_routine_ignores_event_and_uses_copied_thread_id() {
    let mut caller_thread_id = THREAD;
    let r = OverlappedRequest {
        overlapped: 0x30,
        event: 1,
        completion_routine: 0x7777,
        thread_id: Some(caller_thread_id),
    };
    assert_eq!(CompletionMode::of(&r), Ok(CompletionMode::Apc(THREAD)));
    let sw = FakeSwitch::new();
    let table = OperationTable::with_capacity(8);
    let token = post(&table, &sw, 2, &r);
    caller_thread_id.thread_handle = 0xDEAD; // the caller reuses its structure
    assert_ne!(caller_thread_id, THREAD);
    assert_eq!(
        table.complete(token, Outcome::ok(1), &sw),
        Ok(Delivery::Apc)
    );
    assert_eq!(
        sw.upcalls(),
        vec![Upcall::QueueApc {
            thread: THREAD,
            context: token.raw() as u64
        }]
    );
    let no_thread = OverlappedRequest {
        thread_id: None,
        ..r
    };
    assert_eq!(CompletionMode::of(&no_thread), Err(WsaError::Fault));
}

/// R-OVL-5: the APC context fits 32 bits and gives back the routine and the result, once;
/// the routine is then called with `dwFlags = 0`.
#[test]
fn r_ovl_5_apc_context_identifies_the_result_once() {
    let sw = FakeSwitch::new();
    let table = OperationTable::with_capacity(MAX_CAPACITY);
    let token = post(&table, &sw, 2, &req(0x40, 0, 0x8888));
    let out = Outcome {
        error: 10054,
        bytes: 12,
        flags: 0,
    };
    table.complete(token, out, &sw).unwrap();
    let contexts = sw.run_apcs(&THREAD);
    assert_eq!(contexts.len(), 1);
    assert!(contexts[0] <= u32::MAX as u64);
    assert_eq!(
        table.take_apc(contexts[0]),
        Ok(ApcCall {
            routine: 0x8888,
            error: 10054,
            bytes: 12,
            overlapped: 0x40
        })
    );
    assert_eq!(table.take_apc(contexts[0]), Err(CompleteError::Stale));
    assert_eq!(table.pending(), 0);
}

/// R-OVL-6: a second completion and a completion after an abort are rejected; closing a
/// socket aborts exactly its pending requests with WSA_OPERATION_ABORTED.
#[test]
fn r_ovl_6_exactly_once_and_abort_on_close() {
    let sw = FakeSwitch::new();
    let table = OperationTable::with_capacity(16);
    let a = post(&table, &sw, 1, &req(0x100, 0, 0));
    let b = post(&table, &sw, 1, &req(0x200, 1, 0));
    let c = post(&table, &sw, 2, &req(0x300, 0, 0));
    let d = post(&table, &sw, 1, &req(0x400, 0, 0x9999));
    assert!(table.is_pending(d));
    table.complete(a, Outcome::ok(1), &sw).unwrap();
    assert_eq!(
        table.complete(a, Outcome::ok(1), &sw),
        Err(CompleteError::Stale)
    );
    assert_eq!(table.abort_socket(1, &sw), 2); // b and d, not a (done) nor c (other socket)
    assert_eq!(
        table.complete(b, Outcome::ok(9), &sw),
        Err(CompleteError::Stale)
    );
    assert_eq!(table.abort_socket(1, &sw), 0);
    assert!(table.is_pending(c));
    assert_eq!(
        get_overlapped_result(&sw, 0x200),
        OverlappedResult::Done {
            bytes: 0,
            flags: 0,
            error: 995
        }
    );
    let apc = table.take_apc(sw.run_apcs(&THREAD)[0]).unwrap();
    assert_eq!(apc.error, 995);
    assert_eq!(sw.completions_of(0x100), 1);
    assert_eq!(sw.completions_of(0x300), 0);
}

/// Tokens: forged, zero, out-of-range generation and reused-slot tokens are rejected and
/// touch no caller memory.
#[test]
fn stale_and_forged_tokens_touch_nothing() {
    let sw = FakeSwitch::new();
    let table = OperationTable::with_capacity(2);
    let t1 = post(&table, &sw, 1, &req(0x10, 0, 0));
    table.complete(t1, Outcome::ok(0), &sw).unwrap();
    let t2 = post(&table, &sw, 1, &req(0x20, 0, 0));
    let t3 = post(&table, &sw, 1, &req(0x30, 0, 0));
    assert_ne!(t1, t2);
    assert_ne!(t1, t3);
    let before = (sw.upcalls(), sw.read(0x20), sw.read(0x30));
    for raw in [t1.raw(), 1, 2, 3, u32::MAX, t2.raw() ^ 0x100, t3.raw() + 4] {
        if let Some(t) = Token::from_raw(raw) {
            if t == t2 || t == t3 {
                continue;
            }
            assert_eq!(
                table.complete(t, Outcome::ok(1), &sw),
                Err(CompleteError::Stale)
            );
            assert!(table.take_apc(raw as u64).is_err());
        }
    }
    assert!(table.take_apc(0).is_err());
    assert!(table.take_apc(1 << 40).is_err());
    assert_eq!(before, (sw.upcalls(), sw.read(0x20), sw.read(0x30)));
    assert_eq!(
        table.post(1, &req(0x40, 0, 0), CompletionMode::Upcall, &sw),
        Err(TableFull { capacity: 2 })
    );
}

/// A refused upcall is reported; the slot is not leaked and the result stays readable.
#[test]
fn refused_upcalls_are_reported_and_free_the_slot() {
    let sw = FakeSwitch::new();
    let table = OperationTable::with_capacity(2);
    sw.refuse_upcalls(Some(WsaError::Inval));
    let a = post(&table, &sw, 1, &req(0x10, 0, 0));
    let b = post(&table, &sw, 1, &req(0x20, 0, 0x1));
    assert_eq!(
        table.complete(a, Outcome::ok(4), &sw),
        Err(CompleteError::Upcall(WsaError::Inval))
    );
    assert_eq!(
        table.complete(b, Outcome::ok(4), &sw),
        Err(CompleteError::Upcall(WsaError::Inval))
    );
    assert_eq!(table.pending(), 0);
    assert_eq!(
        get_overlapped_result(&sw, 0x20),
        OverlappedResult::Done {
            bytes: 4,
            flags: 0,
            error: 0
        }
    );
}

/// `WSS_OPERATION_IN_PROGRESS` is 0x103 and means incomplete.
#[test]
fn in_progress_value_means_incomplete() {
    let sw = FakeSwitch::new();
    sw.set_fields(
        0x50,
        OverlappedFields {
            internal: 0x103,
            internal_high: 9,
            offset: 0,
            offset_high: 0,
        },
    );
    assert_eq!(
        get_overlapped_result(&sw, 0x50),
        OverlappedResult::Incomplete
    );
}

/// Many threads post and complete at once: every request is notified once.
#[test]
fn concurrent_post_complete_notifies_each_once() {
    let sw = Arc::new(FakeSwitch::new());
    let table = Arc::new(OperationTable::with_capacity(64));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let (table, sw) = (table.clone(), sw.clone());
            std::thread::spawn(move || {
                for i in 0..2000u64 {
                    let ov = (t << 32) | (i + 1);
                    let token = loop {
                        match table.post(t, &req(ov, 0, 0), CompletionMode::Upcall, &*sw) {
                            Ok(tok) => break tok,
                            Err(_) => std::thread::yield_now(),
                        }
                    };
                    table.complete(token, Outcome::ok(i as u32), &*sw).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let ups = sw.upcalls();
    assert_eq!(ups.len(), 8000);
    let mut seen = std::collections::HashSet::new();
    for u in ups {
        if let Upcall::CompleteOverlapped { overlapped, .. } = u {
            assert!(seen.insert(overlapped), "{overlapped:#x} notified twice");
        }
    }
    assert_eq!(table.pending(), 0);
}

fn sw_apcs_waiting(sw: &FakeSwitch) -> usize {
    sw.queued_apcs(&THREAD)
}

#[derive(Debug, Clone)]
enum Op {
    Post { socket: u8, mode: u8 },
    Complete { which: usize, bytes: u16 },
    CompleteForged { raw: u32 },
    Abort { socket: u8 },
    RunApcs,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..3, 0u8..4).prop_map(|(socket, mode)| Op::Post { socket, mode }),
        3 => (any::<usize>(), any::<u16>()).prop_map(|(which, bytes)| Op::Complete { which, bytes }),
        1 => any::<u32>().prop_map(|raw| Op::CompleteForged { raw }),
        1 => (0u8..3).prop_map(|socket| Op::Abort { socket }),
        1 => Just(Op::RunApcs),
    ]
}

proptest! {
    /// R-OVL-6 against a reference model: random post / complete / forged complete / close /
    /// APC sequences; every posted request gets exactly one result (notification, poll
    /// result or APC), with the right error and byte count, and the table drains.
    #[test]
    fn r_ovl_6_random_sequences_match_the_model(ops in proptest::collection::vec(op(), 1..120)) {
        let sw = FakeSwitch::new();
        let table = OperationTable::with_capacity(8);
        // Model: overlapped → (token, mode, socket) for pending; overlapped → expected outcome.
        let mut pending: Vec<(u64, Token, u8, u64)> = Vec::new();
        let mut expected: HashMap<u64, (u8, u32, u32)> = HashMap::new();
        let mut next_ov = 0x1000u64;
        let mut apc_results: HashMap<u64, (u32, u32)> = HashMap::new();
        for op in ops {
            match op {
                Op::Post { socket, mode } => {
                    let r = match mode {
                        0 => req(next_ov, 0x10, 0),
                        1 => req(next_ov, 0x11, 0),
                        2 => req(next_ov, 1, 0),
                        _ => req(next_ov, 0, 0x5555),
                    };
                    match table.post(socket as u64, &r, CompletionMode::of(&r).unwrap(), &sw) {
                        Ok(t) => pending.push((next_ov, t, mode, socket as u64)),
                        // APC results not yet harvested still hold their slots.
                        Err(e) => prop_assert_eq!(pending.len() + sw_apcs_waiting(&sw), e.capacity),
                    }
                    next_ov += 0x10;
                }
                Op::Complete { which, bytes } => {
                    if pending.is_empty() { continue; }
                    let (ov, t, mode, _) = pending.remove(which % pending.len());
                    prop_assert!(table.complete(t, Outcome::ok(bytes as u32), &sw).is_ok());
                    expected.insert(ov, (mode, 0, bytes as u32));
                    prop_assert_eq!(table.complete(t, Outcome::ok(1), &sw), Err(CompleteError::Stale));
                }
                Op::CompleteForged { raw } => {
                    let live = pending.iter().any(|p| p.1.raw() == raw);
                    if let (false, Some(t)) = (live, Token::from_raw(raw)) {
                        prop_assert_eq!(table.complete(t, Outcome::ok(1), &sw), Err(CompleteError::Stale));
                    }
                }
                Op::Abort { socket } => {
                    let (gone, keep): (Vec<_>, Vec<_>) = pending.drain(..).partition(|p| p.3 == socket as u64);
                    pending = keep;
                    prop_assert_eq!(table.abort_socket(socket as u64, &sw), gone.len());
                    for (ov, _, mode, _) in gone {
                        expected.insert(ov, (mode, 995, 0));
                    }
                }
                Op::RunApcs => {
                    for ctx in sw.run_apcs(&THREAD) {
                        let call = table.take_apc(ctx).unwrap();
                        prop_assert!(apc_results.insert(call.overlapped, (call.error, call.bytes)).is_none());
                        prop_assert_eq!(call.routine, 0x5555);
                    }
                }
            }
        }
        for ctx in sw.run_apcs(&THREAD) {
            let call = table.take_apc(ctx).unwrap();
            prop_assert!(apc_results.insert(call.overlapped, (call.error, call.bytes)).is_none());
        }
        prop_assert_eq!(table.pending(), pending.len());
        for (ov, (mode, error, bytes)) in &expected {
            let notified = sw.completions_of(*ov);
            match mode {
                0 | 1 => prop_assert_eq!(notified, 1),
                2 => prop_assert_eq!(notified, 0),
                _ => {
                    prop_assert_eq!(notified, 0);
                    prop_assert_eq!(apc_results.get(ov), Some(&(*error, *bytes)));
                }
            }
            let polled = get_overlapped_result(&sw, *ov);
            prop_assert_eq!(polled, OverlappedResult::Done { bytes: *bytes, flags: 0, error: *error });
        }
        for (ov, ..) in &pending {
            prop_assert_eq!(get_overlapped_result(&sw, *ov), OverlappedResult::Incomplete);
            prop_assert_eq!(sw.completions_of(*ov), 0);
        }
        prop_assert_eq!(apc_results.len(), expected.values().filter(|e| e.0 == 3).count());
    }
}
