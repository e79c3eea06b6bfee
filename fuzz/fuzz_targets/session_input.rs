//! The server's side of a connection: the client's bytes through `parse_commands`, and the
//! `Session` state machine driven by them, interleaved with captured frames, timeouts and
//! closes, time only moving forward.
//!
//! Input: a list of operations, each an opcode byte and its arguments (see `Op`); the bytes
//! the client sends are taken from the input as they are. Asserts: no panic; `parse_commands`
//! yields one input per byte that is not white space, commands for command bytes; once closed
//! a session stays closed, wants no frame, sends none, has no timeout and takes no more input;
//! `frames_sent` counts exactly the frames `handle_frame` said to send; a frame is only sent
//! while the session wanted one; a timeout is only acted on at or after its deadline.

#![no_main]

use std::time::Duration;

use bytes::Bytes;
use edgecam_core::codec::{Command, Input, parse_commands};
use edgecam_core::frame::Frame;
use edgecam_core::session::{CloseReason, Event, Session, SessionConfig};
use edgecam_core::time::Timestamp;
use libfuzzer_sys::fuzz_target;

/// Reads the input front to back; runs dry into zeros.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
}

fn check_parse(bytes: &[u8]) {
    let inputs: Vec<Input> = parse_commands(bytes).collect();
    let kept: Vec<u8> = bytes
        .iter()
        .copied()
        .filter(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .collect();
    assert_eq!(inputs.len(), kept.len());
    for (input, byte) in inputs.iter().zip(kept) {
        match input {
            Input::Command(cmd) => assert_eq!(cmd.byte(), byte),
            Input::Unknown(b) => {
                assert_eq!(*b, byte);
                assert_eq!(Command::from_byte(byte), None);
            }
        }
    }
}

fn timeout(r: &mut Reader<'_>) -> Option<Duration> {
    match r.byte() % 4 {
        0 => None,
        1 => Some(Duration::ZERO),
        2 => Some(Duration::from_micros(u64::from(r.u16()))),
        _ => Some(Duration::MAX),
    }
}

fuzz_target!(|data: &[u8]| {
    check_parse(data);

    let mut r = Reader(data);
    let config = SessionConfig {
        handshake_timeout: timeout(&mut r),
        idle_timeout: timeout(&mut r),
        max_noop_run: u32::from(r.byte() % 80),
        remote_shutdown: r.byte() & 1 == 1,
    };
    // Wall-clock microseconds, as the server's clock gives them; sometimes near the end of
    // time, where deadlines saturate.
    let mut now = Timestamp(match r.byte() % 3 {
        0 => 0,
        1 => 1_700_000_000_000_000,
        _ => u64::MAX - u64::from(r.u16()),
    });
    let mut session = Session::new(config, now);
    let mut seq = 0u64;
    let mut captured_at = now;
    let mut sent = 0u64;
    while !r.0.is_empty() {
        let was_closed = session.is_closed();
        let before = session.state();
        match r.byte() % 8 {
            // Client bytes, as one read delivered them.
            0..=2 => {
                let n = usize::from(r.byte() % 32);
                let bytes = r.bytes(n);
                check_parse(bytes);
                session.handle_input(bytes, now);
            }
            // A frame captured a little before or at `now`, numbered as the capture loop
            // numbers them (only growing; the same frame may be offered again).
            3 => {
                seq = seq.saturating_add(u64::from(r.byte() % 4));
                let age = r.u16();
                captured_at = captured_at.max(Timestamp(now.0.saturating_sub(u64::from(age))));
                let frame = Frame {
                    jpeg: Bytes::from_static(&[0xFF, 0xD8, 0xFF, 0xD9]),
                    width: 1,
                    height: 1,
                    seq,
                    captured_at,
                };
                let wanted = session.wants_frame();
                if session.handle_frame(&frame, now) {
                    assert!(wanted, "sent a frame in {before:?}, which wants none");
                    sent += 1;
                }
            }
            // Time passes.
            4 | 5 => {
                now = now + Duration::from_micros(u64::from(r.u16()) << (r.byte() % 24));
            }
            // The driver's timer fires.
            6 => {
                let deadline = session.poll_timeout();
                session.handle_timeout(now);
                if session.is_closed() && !was_closed {
                    assert!(
                        deadline.is_some_and(|d| d <= now),
                        "closed before its deadline"
                    );
                }
            }
            _ => session.close(match r.byte() % 2 {
                0 => CloseReason::Disconnected,
                _ => CloseReason::ServerStopping,
            }),
        }
        if was_closed {
            assert_eq!(session.state(), before, "a closed session changed state");
        }
        if session.is_closed() {
            assert!(!session.wants_frame());
            assert_eq!(session.poll_timeout(), None);
        }
        assert_eq!(session.stats().frames_sent, sent);
        let mut closes = 0;
        while let Some(event) = session.poll_event() {
            if let Event::Closed(_) = event {
                closes += 1;
            }
        }
        assert!(closes <= 1);
        assert!(!was_closed || closes == 0, "closed twice");
    }
});
