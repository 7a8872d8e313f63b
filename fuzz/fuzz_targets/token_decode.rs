//! Overlapped tokens (`overlapped/mod.rs`): an `OperationTable` with live operations in
//! every completion mode is driven with arbitrary 32-bit tokens and 64-bit APC contexts,
//! next to the real tokens, tokens one bit-flip away from them and churned generations.
//!
//! A model of the table says which tokens are live. Asserted after every step:
//! - a token that is not live (forged, stale, repeated, 0, or a context with high bits)
//!   completes, forgets and harvests nothing (`Stale` / `false`), notifies nobody, and
//!   leaves every live operation pending;
//! - a live token completes exactly once, notified the way its mode asks (upcall, APC with
//!   the token as context, or nothing for poll-only), with the outcome visible through
//!   `get_overlapped_result`; an APC is harvested once by `take_apc`, with its routine,
//!   error, bytes and `WSAOVERLAPPED`;
//! - `post` returns non-zero tokens distinct from every live one, until the table is full
//!   (`TableFull`); `abort_socket` aborts exactly that socket's pending operations;
//! - `pending()` and `is_pending` agree with the model.
//!
//! Input: byte 0 sizes the table (2..=256 slots), then one step per opcode byte.
#![no_main]

#[path = "common/input.rs"]
mod input;

use input::Input;
use libfuzzer_sys::fuzz_target;
use san_spi_core::overlapped::{
    get_overlapped_result, ApcCall, CompleteError, CompletionMode, Delivery, OperationTable,
    Outcome, OverlappedRequest, OverlappedResult, TableFull, Token,
};
use san_spi_core::testing::FakeSwitch;
use san_spi_core::upcall::ThreadId;
use san_spi_core::WsaError;

const THREADS: [ThreadId; 2] = [
    ThreadId {
        thread_handle: 0x44,
        reserved: 0,
    },
    ThreadId {
        thread_handle: 0x48,
        reserved: 7,
    },
];

#[derive(Debug, Clone, Copy)]
struct Live {
    token: Token,
    socket: u64,
    overlapped: u64,
    mode: CompletionMode,
    routine: u64,
}

struct Model<'a> {
    table: OperationTable,
    switch: FakeSwitch,
    live: Vec<Live>,
    parked: Vec<(Token, ApcCall)>,
    upcalls: usize,
    refusing: bool,
    next_overlapped: u64,
    input: Input<'a>,
}

impl Model<'_> {
    fn is_live(&self, raw: u32) -> Option<usize> {
        self.live.iter().position(|l| l.token.raw() == raw)
    }

    fn check(&self) {
        assert_eq!(self.table.pending(), self.live.len() + self.parked.len());
        for l in &self.live {
            assert!(self.table.is_pending(l.token), "{l:?} not pending");
        }
        for (t, _) in &self.parked {
            assert!(!self.table.is_pending(*t), "parked {t:?} pending");
        }
        assert_eq!(
            self.switch.upcalls().len(),
            self.upcalls,
            "unexpected upcall"
        );
    }

    fn post(&mut self) {
        let socket = u64::from(self.input.u8() % 4);
        let sel = self.input.u8();
        let overlapped = self.next_overlapped;
        self.next_overlapped += 0x40;
        let (event, routine, thread_id) = match sel % 4 {
            0 => (u64::from(sel) & !1, 0, None),
            1 => (0x89, 0, None),
            2 => (1, 0, None),
            _ => (
                u64::from(sel),
                0x7000 + u64::from(sel),
                Some(THREADS[(sel >> 7) as usize]),
            ),
        };
        self.post_request(socket, overlapped, event, routine, thread_id);
    }

    fn post_request(
        &mut self,
        socket: u64,
        overlapped: u64,
        event: u64,
        routine: u64,
        thread_id: Option<ThreadId>,
    ) -> Option<Token> {
        let req = OverlappedRequest {
            overlapped,
            event,
            completion_routine: routine,
            thread_id,
        };
        let mode = CompletionMode::of(&req).expect("a valid request");
        let r = self.table.post(socket, &req, mode, &self.switch);
        if self.live.len() + self.parked.len() == self.table.capacity() {
            assert_eq!(
                r,
                Err(TableFull {
                    capacity: self.table.capacity()
                })
            );
            return None;
        }
        let token = r.expect("a free slot");
        assert_ne!(token.raw(), 0);
        assert_eq!(Token::from_raw(token.raw()), Some(token));
        let mask = self.table.capacity() as u32 - 1;
        for other in self
            .live
            .iter()
            .map(|l| l.token)
            .chain(self.parked.iter().map(|p| p.0))
        {
            assert_ne!(token, other, "token issued twice");
            assert_ne!(token.raw() & mask, other.raw() & mask, "slot issued twice");
        }
        assert_eq!(
            get_overlapped_result(&self.switch, overlapped),
            OverlappedResult::Incomplete
        );
        self.live.push(Live {
            token,
            socket,
            overlapped,
            mode,
            routine,
        });
        Some(token)
    }

    fn outcome(&mut self) -> Outcome {
        let error = match self.input.u8() % 4 {
            0 => 0,
            1 => WsaError::ConnReset.code() as u32,
            2 => WsaError::OperationAborted.code() as u32,
            _ => self.input.u32(),
        };
        Outcome {
            error,
            bytes: self.input.u32(),
            flags: self.input.u32() & 0x8000,
        }
    }

    /// Completes the live operation at `i` through the table and checks its notification.
    fn expect_completion(
        &mut self,
        i: usize,
        outcome: Outcome,
        r: Result<Delivery, CompleteError>,
    ) {
        let l = self.live.remove(i);
        let refused = CompleteError::Upcall(WsaError::NoBufs);
        let done = OverlappedResult::Done {
            bytes: outcome.bytes,
            flags: outcome.flags,
            error: outcome.error,
        };
        let result = get_overlapped_result(&self.switch, l.overlapped);
        match l.mode {
            CompletionMode::Upcall | CompletionMode::EventNoPort => {
                if self.refusing {
                    assert_eq!(r, Err(refused));
                    assert_eq!(result, OverlappedResult::Incomplete);
                } else {
                    assert_eq!(r, Ok(Delivery::Upcall));
                    self.upcalls += 1;
                    assert_eq!(result, done);
                }
            }
            CompletionMode::PollOnly => {
                assert_eq!(r, Ok(Delivery::PollOnly));
                assert_eq!(result, done);
            }
            CompletionMode::Apc(_) => {
                assert_eq!(result, done);
                if self.refusing {
                    assert_eq!(r, Err(refused));
                } else {
                    assert_eq!(r, Ok(Delivery::Apc));
                    self.upcalls += 1;
                    let call = ApcCall {
                        routine: l.routine,
                        error: outcome.error,
                        bytes: outcome.bytes,
                        overlapped: l.overlapped,
                    };
                    self.parked.push((l.token, call));
                }
            }
            CompletionMode::Synchronous => unreachable!("never posted"),
        }
    }

    fn complete_raw(&mut self, raw: u32) {
        let outcome = self.outcome();
        let Some(token) = Token::from_raw(raw) else {
            assert_eq!(raw, 0);
            return;
        };
        let r = self.table.complete(token, outcome, &self.switch);
        match self.is_live(raw) {
            Some(i) => self.expect_completion(i, outcome, r),
            None => assert_eq!(r, Err(CompleteError::Stale), "{token:?}"),
        }
    }

    fn take_apc(&mut self, context: u64) {
        let r = self.table.take_apc(context);
        let parked = u32::try_from(context)
            .ok()
            .and_then(|raw| self.parked.iter().position(|p| p.0.raw() == raw));
        match parked {
            Some(i) => {
                let (_, call) = self.parked.remove(i);
                assert_eq!(r, Ok(call));
            }
            None => assert_eq!(r, Err(CompleteError::Stale), "context {context:#x}"),
        }
    }

    fn forget(&mut self, raw: u32) {
        let Some(token) = Token::from_raw(raw) else {
            return;
        };
        let forgotten = self.table.forget(token);
        match self.is_live(raw) {
            Some(i) => {
                assert!(forgotten);
                self.live.remove(i);
            }
            None => assert!(!forgotten, "{token:?} forgotten"),
        }
    }

    fn abort(&mut self, socket: u64) {
        let n = self.table.abort_socket(socket, &self.switch);
        let mine: Vec<usize> = (0..self.live.len())
            .filter(|&i| self.live[i].socket == socket)
            .collect();
        assert_eq!(n, mine.len(), "aborted count for socket {socket}");
        let aborted = Outcome::err(WsaError::OperationAborted);
        // Remove from the back so the indices stay valid.
        for &i in mine.iter().rev() {
            let r = match self.live[i].mode {
                CompletionMode::Upcall | CompletionMode::EventNoPort if self.refusing => {
                    Err(CompleteError::Upcall(WsaError::NoBufs))
                }
                CompletionMode::Apc(_) if self.refusing => {
                    Err(CompleteError::Upcall(WsaError::NoBufs))
                }
                CompletionMode::Upcall | CompletionMode::EventNoPort => Ok(Delivery::Upcall),
                CompletionMode::PollOnly => Ok(Delivery::PollOnly),
                _ => Ok(Delivery::Apc),
            };
            self.expect_completion(i, aborted, r);
        }
    }

    /// A live or parked token, chosen by `sel`, if any.
    fn some_token(&self, sel: u8) -> Option<Token> {
        let n = self.live.len() + self.parked.len();
        if n == 0 {
            return None;
        }
        let i = sel as usize % n;
        Some(match self.live.get(i) {
            Some(l) => l.token,
            None => self.parked[i - self.live.len()].0,
        })
    }

    fn step(&mut self) {
        match self.input.u8() % 12 {
            0 | 1 => self.post(),
            2 => {
                // A live (or parked) token, as it is.
                let sel = self.input.u8();
                let raw = self.some_token(sel).map_or(0, Token::raw);
                self.complete_raw(raw);
            }
            3 => {
                let raw = self.input.u32();
                self.complete_raw(raw);
            }
            4 => {
                // A real token with some bits flipped: another generation or slot.
                let sel = self.input.u8();
                let flip = self.input.u32();
                let raw = self.some_token(sel).map_or(0, Token::raw) ^ flip;
                self.complete_raw(raw);
            }
            5 => {
                let context = self.input.u64();
                self.take_apc(context);
            }
            6 => {
                // A parked context, possibly with high bits set.
                let sel = self.input.u8();
                let high = u64::from(self.input.u8() & 3) << 32;
                if !self.parked.is_empty() {
                    let raw = self.parked[sel as usize % self.parked.len()].0.raw();
                    self.take_apc(high | u64::from(raw));
                }
            }
            7 => {
                let sel = self.input.u8();
                let raw = match self.some_token(sel) {
                    Some(t) if sel & 1 == 0 => t.raw(),
                    _ => self.input.u32(),
                };
                self.forget(raw);
            }
            8 => {
                let sel = self.input.u8();
                let socket = if sel < 0xF0 {
                    u64::from(sel % 5)
                } else {
                    self.input.u64()
                };
                self.abort(socket);
            }
            9 => {
                self.refusing = self.input.bool();
                self.switch
                    .refuse_upcalls(self.refusing.then_some(WsaError::NoBufs));
            }
            10 => {
                let raw = self.input.u32();
                if let Some(t) = Token::from_raw(raw) {
                    assert_eq!(self.table.is_pending(t), self.is_live(raw).is_some());
                }
            }
            _ => {
                // Churn: advance the generation of the slot on top of the free list.
                let n = self.input.u8() % 16;
                for _ in 0..n {
                    let ov = self.next_overlapped;
                    self.next_overlapped += 0x40;
                    let Some(t) = self.post_request(9, ov, 1, 0, None) else {
                        break;
                    };
                    let r = self.table.complete(t, Outcome::ok(1), &self.switch);
                    let i = self.is_live(t.raw()).expect("just posted");
                    self.expect_completion(i, Outcome::ok(1), r);
                }
            }
        }
        self.check();
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let capacity = 2usize << (input.u8() % 8);
    let table = OperationTable::with_capacity(capacity);
    assert_eq!(table.capacity(), capacity);
    assert!(Token::from_raw(0).is_none());
    let mut m = Model {
        table,
        switch: FakeSwitch::new(),
        live: Vec::new(),
        parked: Vec::new(),
        upcalls: 0,
        refusing: false,
        next_overlapped: 0x1_0000,
        input,
    };
    for _ in 0..64 {
        if m.input.is_empty() {
            break;
        }
        m.step();
    }
    // Whatever happened, every operation can still be finished and the table drains.
    m.switch.refuse_upcalls(None);
    m.refusing = false;
    for socket in 0..4 {
        m.abort(socket);
    }
    m.abort(9);
    while let Some((t, _)) = m.parked.first().copied() {
        m.take_apc(u64::from(t.raw()));
    }
    m.check();
    assert_eq!(m.table.pending(), 0);
});
