//! Tests of the session state machine: one fixture per state and every command from each,
//! the garbage, timeout and frame rules, a property test against a model built from the
//! protocol table in `../shared/LEGACY-PROTOCOL.md` (read at test time), and a snapshot of a
//! protocol transcript.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

use super::*;

// ---------------------------------------------------------------------------------------------
// Helpers and fixtures
// ---------------------------------------------------------------------------------------------

/// When a fixture's session was created.
const START: Timestamp = Timestamp(1_000_000);
/// When a fixture's `0` or `3` arrived.
const T_REQUEST: Timestamp = Timestamp(1_100_000);
/// When a fixture's single frame was captured and sent.
const T_SENT: Timestamp = Timestamp(1_200_000);
/// When a fixture's second `0`, remembered as pending, arrived.
const T_PENDING: Timestamp = Timestamp(1_300_000);
/// When the input under test arrives.
const NOW: Timestamp = Timestamp(2_000_000);

const HANDSHAKE: Duration = Duration::from_secs(30);
const IDLE: Duration = Duration::from_secs(300);

const NO_EVENTS: [Event; 0] = [];

fn config() -> SessionConfig {
    SessionConfig {
        handshake_timeout: Some(HANDSHAKE),
        idle_timeout: Some(IDLE),
        max_noop_run: 64,
        remote_shutdown: false,
    }
}

fn frame(seq: u64, captured_at: Timestamp) -> Frame {
    Frame {
        jpeg: Bytes::new(),
        width: 1,
        height: 1,
        seq,
        captured_at,
    }
}

fn drain_events(session: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| session.poll_event()).collect()
}

/// Feeds `bytes` at `now` and returns the events that came of them.
fn input(session: &mut Session, bytes: &[u8], now: Timestamp) -> Vec<Event> {
    session.handle_input(bytes, now);
    drain_events(session)
}

fn idle() -> Session {
    Session::new(config(), START)
}

/// `0` at `T_REQUEST`, no frame yet.
fn requested() -> Session {
    let mut session = idle();
    assert_eq!(input(&mut session, b"0", T_REQUEST), NO_EVENTS);
    assert_eq!(
        session.state(),
        State::Requested {
            since: T_REQUEST,
            pending: None
        }
    );
    session
}

/// `0` at `T_REQUEST`, another `0` at `T_PENDING`, no frame yet.
fn requested_with_pending() -> Session {
    let mut session = requested();
    assert_eq!(input(&mut session, b"0", T_PENDING), NO_EVENTS);
    assert_eq!(
        session.state(),
        State::Requested {
            since: T_REQUEST,
            pending: Some(T_PENDING)
        }
    );
    session
}

/// `0` at `T_REQUEST`, its frame (seq 1) captured and sent at `T_SENT`.
fn awaiting_confirm() -> Session {
    let mut session = requested();
    assert!(session.handle_frame(&frame(1, T_SENT), T_SENT));
    assert_eq!(session.state(), State::AwaitingConfirm { pending: None });
    session
}

/// As [`awaiting_confirm`], then another `0` at `T_PENDING`.
fn awaiting_confirm_with_pending() -> Session {
    let mut session = awaiting_confirm();
    assert_eq!(input(&mut session, b"0", T_PENDING), NO_EVENTS);
    assert_eq!(
        session.state(),
        State::AwaitingConfirm {
            pending: Some(T_PENDING)
        }
    );
    session
}

/// `3` at `T_REQUEST`, no frame yet.
fn streaming() -> Session {
    let mut session = idle();
    assert_eq!(input(&mut session, b"3", T_REQUEST), NO_EVENTS);
    assert_eq!(session.state(), State::Streaming { since: T_REQUEST });
    session
}

/// `2` at `T_REQUEST`.
fn closed() -> Session {
    let mut session = idle();
    assert_eq!(
        input(&mut session, b"2", T_REQUEST),
        [Event::Closed(CloseReason::ClientShutdown)]
    );
    assert_eq!(session.state(), State::Closed(CloseReason::ClientShutdown));
    session
}

/// Sends the command `byte` at `NOW`; it must move the session to `to` without any event.
#[track_caller]
fn assert_moves(mut session: Session, byte: u8, to: State) {
    assert_eq!(input(&mut session, &[byte], NOW), NO_EVENTS);
    assert_eq!(session.state(), to);
    assert_eq!(session.stats().ignored_commands, 0);
}

/// Sends the command `byte` at `NOW`; it must be ignored: one `Ignored` event, counted, and
/// the state unchanged.
#[track_caller]
fn assert_ignored(mut session: Session, byte: u8) {
    let cmd = Command::from_byte(byte).expect("a command byte");
    let before = session.state();
    let ignored = session.stats().ignored_commands;
    assert_eq!(input(&mut session, &[byte], NOW), [Event::Ignored(cmd)]);
    assert_eq!(session.state(), before);
    assert_eq!(session.stats().ignored_commands, ignored + 1);
}

/// Sends `2` at `NOW`; it must close the session.
#[track_caller]
fn assert_shuts_down(mut session: Session) {
    assert_eq!(
        input(&mut session, b"2", NOW),
        [Event::Closed(CloseReason::ClientShutdown)]
    );
    assert_eq!(session.state(), State::Closed(CloseReason::ClientShutdown));
    assert!(!session.wants_frame());
    assert_eq!(session.poll_timeout(), None);
}

/// Sends the command `byte` at `NOW` to a closed session: nothing at all happens.
#[track_caller]
fn assert_no_effect(mut session: Session, byte: u8) {
    let before = session.state();
    let stats = session.stats().clone();
    assert_eq!(input(&mut session, &[byte], NOW), NO_EVENTS);
    assert_eq!(session.state(), before);
    assert_eq!(session.stats(), &stats);
}

// ---------------------------------------------------------------------------------------------
// Every command from every state
// ---------------------------------------------------------------------------------------------

#[test]
fn idle_single_requests_a_frame_captured_from_now_on() {
    assert_moves(
        idle(),
        b'0',
        State::Requested {
            since: NOW,
            pending: None,
        },
    );
}

#[test]
fn idle_confirm_is_stray() {
    assert_ignored(idle(), b'1');
}

#[test]
fn idle_stream_starts_streaming() {
    assert_moves(idle(), b'3', State::Streaming { since: NOW });
}

#[test]
fn idle_stop_is_ignored() {
    assert_ignored(idle(), b'q');
}

#[test]
fn idle_shutdown_closes() {
    assert_shuts_down(idle());
}

#[test]
fn requested_single_is_remembered_as_pending() {
    assert_moves(
        requested(),
        b'0',
        State::Requested {
            since: T_REQUEST,
            pending: Some(NOW),
        },
    );
}

#[test]
fn requested_single_with_one_pending_already_is_ignored() {
    assert_ignored(requested_with_pending(), b'0');
}

#[test]
fn requested_confirm_is_stray() {
    assert_ignored(requested(), b'1');
}

#[test]
fn requested_stream_starts_streaming() {
    assert_moves(requested(), b'3', State::Streaming { since: NOW });
    assert_moves(
        requested_with_pending(),
        b'3',
        State::Streaming { since: NOW },
    );
}

#[test]
fn requested_stop_is_ignored() {
    assert_ignored(requested(), b'q');
}

#[test]
fn requested_shutdown_closes() {
    assert_shuts_down(requested());
    assert_shuts_down(requested_with_pending());
}

#[test]
fn awaiting_confirm_single_is_remembered_as_pending() {
    assert_moves(
        awaiting_confirm(),
        b'0',
        State::AwaitingConfirm { pending: Some(NOW) },
    );
}

#[test]
fn awaiting_confirm_single_with_one_pending_already_is_ignored() {
    assert_ignored(awaiting_confirm_with_pending(), b'0');
}

#[test]
fn awaiting_confirm_confirm_returns_to_idle() {
    assert_moves(awaiting_confirm(), b'1', State::Idle);
}

#[test]
fn awaiting_confirm_confirm_serves_the_pending_request() {
    assert_moves(
        awaiting_confirm_with_pending(),
        b'1',
        State::Requested {
            since: T_PENDING,
            pending: None,
        },
    );
}

#[test]
fn awaiting_confirm_stream_starts_streaming() {
    assert_moves(awaiting_confirm(), b'3', State::Streaming { since: NOW });
    assert_moves(
        awaiting_confirm_with_pending(),
        b'3',
        State::Streaming { since: NOW },
    );
}

#[test]
fn awaiting_confirm_stop_is_ignored() {
    assert_ignored(awaiting_confirm(), b'q');
}

#[test]
fn awaiting_confirm_shutdown_closes() {
    assert_shuts_down(awaiting_confirm());
    assert_shuts_down(awaiting_confirm_with_pending());
}

#[test]
fn streaming_single_is_ignored() {
    assert_ignored(streaming(), b'0');
}

#[test]
fn streaming_confirm_is_ignored() {
    assert_ignored(streaming(), b'1');
}

#[test]
fn streaming_stream_is_ignored() {
    assert_ignored(streaming(), b'3');
}

#[test]
fn streaming_stop_returns_to_idle() {
    assert_moves(streaming(), b'q', State::Idle);
}

#[test]
fn streaming_shutdown_closes() {
    assert_shuts_down(streaming());
}

#[test]
fn closed_single_has_no_effect() {
    assert_no_effect(closed(), b'0');
}

#[test]
fn closed_confirm_has_no_effect() {
    assert_no_effect(closed(), b'1');
}

#[test]
fn closed_stream_has_no_effect() {
    assert_no_effect(closed(), b'3');
}

#[test]
fn closed_stop_has_no_effect() {
    assert_no_effect(closed(), b'q');
}

#[test]
fn closed_shutdown_has_no_effect() {
    assert_no_effect(closed(), b'2');
}

#[test]
fn closed_ignores_unknown_bytes() {
    let mut session = closed();
    assert_eq!(input(&mut session, b"xyz", NOW), NO_EVENTS);
    assert_eq!(session.stats().unknown_bytes, 0);
}

// ---------------------------------------------------------------------------------------------
// Parsing: white space, coalesced commands, garbage, shutdown
// ---------------------------------------------------------------------------------------------

#[test]
fn white_space_is_skipped() {
    let mut session = idle();
    assert_eq!(input(&mut session, b" \t\r\n0\r\n \t", NOW), NO_EVENTS);
    assert_eq!(
        session.state(),
        State::Requested {
            since: NOW,
            pending: None
        }
    );
    assert_eq!(session.stats().commands, 1);
    assert_eq!(session.stats().unknown_bytes, 0);
}

#[test]
fn coalesced_stream_and_single_are_stream_then_an_ignored_single() {
    let mut session = idle();
    assert_eq!(
        input(&mut session, b"30", NOW),
        [Event::Ignored(Command::Single)]
    );
    assert_eq!(session.state(), State::Streaming { since: NOW });
    assert_eq!(session.stats().commands, 2);
}

#[test]
fn coalesced_single_and_stream_are_a_request_then_streaming() {
    let mut session = idle();
    assert_eq!(input(&mut session, b"03", NOW), NO_EVENTS);
    assert_eq!(session.state(), State::Streaming { since: NOW });
}

#[test]
fn sixty_four_unknown_bytes_in_a_row_close_the_session() {
    let mut session = idle();
    assert_eq!(
        input(&mut session, &[b'x'; 63], NOW),
        [Event::Unknown(b'x'); 63]
    );
    assert_eq!(session.state(), State::Idle);
    assert_eq!(
        input(&mut session, b"y", NOW),
        [Event::Unknown(b'y'), Event::Closed(CloseReason::Garbage)]
    );
    assert_eq!(session.state(), State::Closed(CloseReason::Garbage));
    assert_eq!(session.stats().unknown_bytes, 64);
}

#[test]
fn bytes_after_the_garbage_limit_are_not_looked_at() {
    let mut session = idle();
    let events = input(&mut session, &[0xff; 100], NOW);
    assert_eq!(events.len(), 65);
    assert_eq!(events[63], Event::Unknown(0xff));
    assert_eq!(events[64], Event::Closed(CloseReason::Garbage));
    assert_eq!(session.stats().unknown_bytes, 64);
}

#[test]
fn a_command_that_changes_the_state_resets_the_run() {
    let mut session = idle();
    // The run spans calls.
    input(&mut session, &[b'x'; 63], NOW);
    input(&mut session, b"3", NOW);
    input(&mut session, &[b'x'; 40], NOW);
    input(&mut session, &[b'x'; 23], NOW);
    assert_eq!(session.state(), State::Streaming { since: NOW });
    assert_eq!(session.stats().unknown_bytes, 126);
    assert_eq!(
        input(&mut session, b"x", NOW),
        [Event::Unknown(b'x'), Event::Closed(CloseReason::Garbage)]
    );
}

#[test]
fn an_ignored_command_counts_toward_the_garbage_run() {
    // 50 MB of `q` used to be read to the end: a no-op is garbage like an unknown byte.
    let mut session = idle();
    let events = input(&mut session, &[b'q'; 1000], NOW);
    assert_eq!(events.len(), 65);
    assert_eq!(events[63], Event::Ignored(Command::Stop));
    assert_eq!(events[64], Event::Closed(CloseReason::Garbage));
    assert_eq!(session.stats().ignored_commands, 64);
    // Unknown bytes and no-ops add up.
    let mut session = streaming();
    input(&mut session, &[b'x'; 32], NOW);
    input(&mut session, &[b'0'; 31], NOW);
    assert_eq!(session.state(), State::Streaming { since: T_REQUEST });
    assert_eq!(
        input(&mut session, b"1", NOW),
        [
            Event::Ignored(Command::Confirm),
            Event::Closed(CloseReason::Garbage)
        ]
    );
}

#[test]
fn white_space_does_not_reset_the_garbage_run() {
    let mut session = idle();
    input(&mut session, &b"x\r\n".repeat(63), NOW);
    assert_eq!(session.state(), State::Idle);
    assert_eq!(
        input(&mut session, b" x", NOW),
        [Event::Unknown(b'x'), Event::Closed(CloseReason::Garbage)]
    );
}

#[test]
fn shutdown_with_remote_shutdown_allowed_asks_the_server_to_stop_then_closes() {
    let mut session = Session::new(
        SessionConfig {
            remote_shutdown: true,
            ..config()
        },
        START,
    );
    input(&mut session, b"3", T_REQUEST);
    assert_eq!(
        input(&mut session, b"2", NOW),
        [
            Event::ShutdownRequested,
            Event::Closed(CloseReason::ClientShutdown)
        ]
    );
    assert_eq!(session.state(), State::Closed(CloseReason::ClientShutdown));
}

#[test]
fn nothing_after_shutdown_in_the_same_chunk_is_looked_at() {
    let mut session = idle();
    assert_eq!(
        input(&mut session, b"2x03", NOW),
        [Event::Closed(CloseReason::ClientShutdown)]
    );
    assert_eq!(session.stats().commands, 1);
    assert_eq!(session.stats().unknown_bytes, 0);
}

#[test]
fn closing_from_the_driver_happens_once() {
    let mut session = streaming();
    session.close(CloseReason::Disconnected);
    session.close(CloseReason::ServerStopping);
    assert_eq!(
        drain_events(&mut session),
        [Event::Closed(CloseReason::Disconnected)]
    );
    assert_eq!(session.state(), State::Closed(CloseReason::Disconnected));
}

// ---------------------------------------------------------------------------------------------
// Timeouts
// ---------------------------------------------------------------------------------------------

#[test]
fn a_silent_connection_hits_the_handshake_timeout() {
    let mut session = idle();
    let deadline = START + HANDSHAKE;
    assert_eq!(session.poll_timeout(), Some(deadline));
    session.handle_timeout(Timestamp(deadline.0 - 1));
    assert_eq!(session.state(), State::Idle);
    session.handle_timeout(deadline);
    assert_eq!(
        session.state(),
        State::Closed(CloseReason::HandshakeTimeout)
    );
    assert_eq!(
        drain_events(&mut session),
        [Event::Closed(CloseReason::HandshakeTimeout)]
    );
    assert_eq!(session.poll_timeout(), None);
}

#[test]
fn unknown_bytes_do_not_complete_the_handshake() {
    let mut session = idle();
    input(&mut session, b"x", NOW);
    assert_eq!(session.poll_timeout(), Some(START + HANDSHAKE));
}

#[test]
fn the_first_command_replaces_the_handshake_timeout_with_the_idle_timeout() {
    let mut session = awaiting_confirm();
    input(&mut session, b"1", NOW);
    let deadline = NOW + IDLE;
    assert_eq!(session.poll_timeout(), Some(deadline));
    session.handle_timeout(START + HANDSHAKE);
    session.handle_timeout(Timestamp(deadline.0 - 1));
    assert_eq!(session.state(), State::Idle);
    session.handle_timeout(deadline);
    assert_eq!(session.state(), State::Closed(CloseReason::IdleTimeout));
    assert_eq!(
        drain_events(&mut session),
        [Event::Closed(CloseReason::IdleTimeout)]
    );
}

#[test]
fn no_op_commands_hold_no_connection() {
    // The slot-holding attack: a `q` now and then, which changes nothing, used to restart
    // the idle timeout for ever. It neither ends the handshake nor restarts the idle timer.
    let mut session = idle();
    input(&mut session, b"q", START + Duration::from_secs(10));
    input(&mut session, b"1", START + Duration::from_secs(20));
    assert_eq!(session.poll_timeout(), Some(START + HANDSHAKE));
    session.handle_timeout(START + HANDSHAKE);
    assert_eq!(
        session.state(),
        State::Closed(CloseReason::HandshakeTimeout)
    );

    let mut session = awaiting_confirm();
    input(&mut session, b"1", NOW);
    for minute in 1..=4 {
        input(&mut session, b"q", NOW + Duration::from_secs(60 * minute));
    }
    assert_eq!(session.poll_timeout(), Some(NOW + IDLE));
    session.handle_timeout(NOW + IDLE);
    assert_eq!(session.state(), State::Closed(CloseReason::IdleTimeout));
}

#[test]
fn awaiting_confirm_has_an_idle_timeout() {
    let mut session = awaiting_confirm_with_pending();
    let deadline = T_PENDING + IDLE;
    assert_eq!(session.poll_timeout(), Some(deadline));
    session.handle_timeout(Timestamp(deadline.0 - 1));
    assert!(!session.is_closed());
    session.handle_timeout(deadline);
    assert_eq!(session.state(), State::Closed(CloseReason::IdleTimeout));
}

/// "How long a session may sit in Idle or AwaitingConfirm without a command": a client whose
/// frame took long to come (a stalled camera) still gets the whole idle timeout to confirm it.
#[test]
fn the_idle_timer_of_awaiting_confirm_starts_when_the_frame_goes_out() {
    let mut session = requested();
    let sent_at = T_REQUEST + IDLE + Duration::from_secs(1);
    assert!(session.handle_frame(&frame(1, sent_at), sent_at));
    assert_eq!(session.state(), State::AwaitingConfirm { pending: None });
    assert_eq!(session.poll_timeout(), Some(sent_at + IDLE));
    session.handle_timeout(sent_at);
    assert_eq!(session.state(), State::AwaitingConfirm { pending: None });
}

#[test]
fn requested_has_no_idle_timeout() {
    let mut session = requested();
    assert_eq!(session.poll_timeout(), None);
    session.handle_timeout(T_REQUEST + IDLE * 10);
    assert_eq!(
        session.state(),
        State::Requested {
            since: T_REQUEST,
            pending: None
        }
    );
}

#[test]
fn streaming_has_no_idle_timeout() {
    let mut session = streaming();
    assert_eq!(session.poll_timeout(), None);
    session.handle_timeout(T_REQUEST + IDLE * 10);
    assert_eq!(session.state(), State::Streaming { since: T_REQUEST });
}

#[test]
fn stopping_a_stream_starts_the_idle_timer() {
    let mut session = streaming();
    input(&mut session, b"q", NOW);
    assert_eq!(session.poll_timeout(), Some(NOW + IDLE));
}

#[test]
fn timeouts_can_be_turned_off() {
    let mut session = Session::new(
        SessionConfig {
            handshake_timeout: None,
            idle_timeout: None,
            ..config()
        },
        START,
    );
    assert_eq!(session.poll_timeout(), None);
    session.handle_timeout(START + HANDSHAKE * 10);
    input(&mut session, b"q", NOW);
    assert_eq!(session.poll_timeout(), None);
    session.handle_timeout(NOW + IDLE * 10);
    assert_eq!(session.state(), State::Idle);
}

// ---------------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------------

#[test]
fn wants_frame_exactly_while_requested_or_streaming() {
    assert!(!idle().wants_frame());
    assert!(requested().wants_frame());
    assert!(requested_with_pending().wants_frame());
    assert!(!awaiting_confirm().wants_frame());
    assert!(!awaiting_confirm_with_pending().wants_frame());
    assert!(streaming().wants_frame());
    assert!(!closed().wants_frame());
}

#[test]
fn no_frame_is_sent_in_idle_awaiting_confirm_or_closed() {
    for mut session in [
        idle(),
        awaiting_confirm(),
        awaiting_confirm_with_pending(),
        closed(),
    ] {
        let before = session.state();
        let sent = session.stats().frames_sent;
        assert!(
            !session.handle_frame(&frame(100, NOW), NOW),
            "sent in {before:?}"
        );
        assert_eq!(session.state(), before);
        assert_eq!(session.stats().frames_sent, sent);
    }
}

#[test]
fn a_single_request_is_answered_by_one_frame_then_waits_for_the_confirm() {
    let mut session = requested();
    assert!(session.handle_frame(&frame(7, NOW), NOW));
    assert_eq!(session.state(), State::AwaitingConfirm { pending: None });
    assert!(!session.handle_frame(&frame(8, NOW), NOW));
    assert_eq!(session.stats().frames_sent, 1);
}

#[test]
fn a_frame_captured_before_a_single_request_is_never_sent_for_it() {
    let mut session = requested();
    assert!(!session.handle_frame(&frame(1, Timestamp(T_REQUEST.0 - 1)), NOW));
    assert_eq!(
        session.state(),
        State::Requested {
            since: T_REQUEST,
            pending: None
        }
    );
    assert!(session.handle_frame(&frame(2, T_REQUEST), NOW));
    assert_eq!(session.state(), State::AwaitingConfirm { pending: None });
}

#[test]
fn a_frame_captured_before_a_pending_request_is_never_sent_for_it() {
    let mut session = awaiting_confirm_with_pending();
    input(&mut session, b"1", NOW);
    assert!(!session.handle_frame(&frame(2, Timestamp(T_PENDING.0 - 1)), NOW));
    assert!(session.handle_frame(&frame(3, T_PENDING), NOW));
    assert_eq!(session.state(), State::AwaitingConfirm { pending: None });
}

#[test]
fn a_pending_request_keeps_waiting_while_its_predecessor_is_answered() {
    let mut session = requested_with_pending();
    assert!(session.handle_frame(&frame(1, NOW), NOW));
    assert_eq!(
        session.state(),
        State::AwaitingConfirm {
            pending: Some(T_PENDING)
        }
    );
}

#[test]
fn a_frame_captured_before_streaming_started_is_not_streamed() {
    let mut session = streaming();
    assert!(!session.handle_frame(&frame(1, Timestamp(T_REQUEST.0 - 1)), NOW));
    assert!(session.handle_frame(&frame(2, T_REQUEST), NOW));
    assert_eq!(session.stats().frames_sent, 1);
}

#[test]
fn streaming_counts_the_frames_a_slow_client_skipped() {
    let mut session = streaming();
    for (seq, skipped) in [(10, 0), (11, 0), (14, 2), (15, 2), (20, 6)] {
        assert!(session.handle_frame(&frame(seq, NOW), NOW), "seq {seq}");
        assert_eq!(session.stats().frames_skipped, skipped, "after seq {seq}");
    }
    assert_eq!(session.stats().frames_sent, 5);
}

#[test]
fn streaming_never_sends_a_frame_twice_or_an_older_one() {
    let mut session = streaming();
    assert!(session.handle_frame(&frame(5, NOW), NOW));
    assert!(!session.handle_frame(&frame(5, NOW), NOW));
    assert!(!session.handle_frame(&frame(4, NOW), NOW));
    assert!(session.handle_frame(&frame(6, NOW), NOW));
    assert_eq!(session.stats().frames_sent, 2);
    assert_eq!(session.stats().frames_skipped, 0);
}

#[test]
fn frames_captured_between_two_streams_are_not_counted_as_skipped() {
    let mut session = streaming();
    assert!(session.handle_frame(&frame(1, NOW), NOW));
    input(&mut session, b"q", NOW);
    let later = NOW + Duration::from_secs(1);
    input(&mut session, b"3", later);
    assert!(session.handle_frame(&frame(30, later), later));
    assert_eq!(session.stats().frames_skipped, 0);
}

/// Frames a camera delivers every 33 ms from `from`, each offered as it is captured.
fn frames_from(first_seq: u64, from: Timestamp) -> impl Iterator<Item = Frame> {
    (0..).map(move |i| frame(first_seq + i, from + Duration::from_millis(33 * i)))
}

/// The clock is set back a minute after the request: frames are stamped "before" it from then
/// on, and the request is answered by the second such frame (the first may be from before the
/// step, so it is not taken), not once the clock has caught up a minute later.
#[test]
fn a_single_request_is_answered_after_the_clock_steps_back_past_it() {
    let mut session = requested();
    let stepped_back = Timestamp(T_REQUEST.0 - 60_000);
    let sent: Vec<bool> = frames_from(1, stepped_back)
        .take(3)
        .map(|f| session.handle_frame(&f, f.captured_at))
        .collect();
    assert_eq!(sent, [false, true, false]);
    assert_eq!(session.state(), State::AwaitingConfirm { pending: None });
}

#[test]
fn a_pending_request_is_answered_after_the_clock_steps_back_past_it() {
    let mut session = awaiting_confirm_with_pending();
    let stepped_back = Timestamp(T_REQUEST.0 - 60_000);
    input(&mut session, b"1", stepped_back);
    let sent: Vec<bool> = frames_from(2, stepped_back)
        .take(3)
        .map(|f| session.handle_frame(&f, f.captured_at))
        .collect();
    assert_eq!(sent, [false, true, false]);
}

#[test]
fn a_stream_goes_on_after_the_clock_steps_back_past_its_start() {
    let mut session = streaming();
    let stepped_back = Timestamp(T_REQUEST.0 - 60_000);
    let sent: Vec<bool> = frames_from(1, stepped_back)
        .take(4)
        .map(|f| session.handle_frame(&f, f.captured_at))
        .collect();
    assert_eq!(sent, [false, true, true, true]);
}

/// The first frame offered after a step back may have been captured before the request (on the
/// old clock, after it on the new one): it is not sent for it.
#[test]
fn a_frame_from_before_the_request_is_not_sent_because_the_clock_stepped_back() {
    let mut session = requested();
    let before_request = frame(1, Timestamp(T_REQUEST.0 - 1));
    let stepped_back = Timestamp(T_REQUEST.0 - 60_000);
    assert!(!session.handle_frame(&before_request, stepped_back));
    assert_eq!(
        session.state(),
        State::Requested {
            since: stepped_back,
            pending: None
        }
    );
}

// ---------------------------------------------------------------------------------------------
// Property test against a model built from the protocol table
// ---------------------------------------------------------------------------------------------

// The protocol table, read from LEGACY-PROTOCOL.md itself, so that the model follows the
// spec's words rather than a copy of the implementation.

/// A row of the protocol table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum SpecState {
    Idle,
    AwaitingConfirm,
    Streaming,
}

impl SpecState {
    fn parse(name: &str) -> Option<SpecState> {
        match name {
            "Idle" => Some(SpecState::Idle),
            "AwaitingConfirm" => Some(SpecState::AwaitingConfirm),
            "Streaming" => Some(SpecState::Streaming),
            _ => None,
        }
    }
}

/// What a cell of the protocol table says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SpecAction {
    /// "ignore", "ignore (stray)".
    Ignore,
    /// "close session".
    Close,
    /// A bare state name.
    Goto(SpecState),
    /// "send the next frame captured after this request; then <state>".
    SendNextFrame { then: SpecState },
    /// "remember one pending request, served right after the confirm".
    RememberPending,
    /// "Idle (serve a pending request, if any)".
    IdleServingPending,
}

impl SpecAction {
    fn parse(cell: &str) -> Option<SpecAction> {
        let cell = cell.trim();
        if cell == "ignore" || cell.starts_with("ignore (") {
            return Some(SpecAction::Ignore);
        }
        if cell == "close session" {
            return Some(SpecAction::Close);
        }
        if cell == "remember one pending request, served right after the confirm" {
            return Some(SpecAction::RememberPending);
        }
        if cell == "Idle (serve a pending request, if any)" {
            return Some(SpecAction::IdleServingPending);
        }
        if let Some(then) =
            cell.strip_prefix("send the next frame captured after this request; then ")
        {
            return SpecState::parse(then).map(|then| SpecAction::SendNextFrame { then });
        }
        SpecState::parse(cell).map(SpecAction::Goto)
    }
}

/// LEGACY-PROTOCOL.md's session table: one action per (state, command).
#[derive(Debug)]
struct SpecTable {
    cells: std::collections::HashMap<(SpecState, Command), SpecAction>,
}

/// Where the spec lives: `shared/` beside the repository (CI clones it there too).
const SPEC_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/LEGACY-PROTOCOL.md"
);

impl SpecTable {
    fn load() -> SpecTable {
        let text = std::fs::read_to_string(SPEC_PATH).unwrap_or_else(|e| {
            panic!(
                "cannot read the protocol spec {SPEC_PATH}: {e}. The session model is built \
                 from its table; put shared/ beside the repository"
            )
        });
        SpecTable::parse(&text).unwrap_or_else(|e| panic!("{SPEC_PATH}: {e}"))
    }

    /// The table whose header starts `| state \ input |`; every state and command must be
    /// there, every cell must say something the model knows.
    fn parse(text: &str) -> Result<SpecTable, String> {
        let split = |line: &str| -> Vec<String> {
            let line = line.trim().trim_start_matches('|').trim_end_matches('|');
            line.split('|').map(|c| c.trim().to_owned()).collect()
        };
        let mut lines = text
            .lines()
            .skip_while(|l| !l.trim_start().starts_with("| state \\ input"));
        let header = lines
            .next()
            .ok_or("no session table (a header `| state \\ input | ...`)")?;
        let commands: Vec<Command> = split(header)[1..]
            .iter()
            .map(|c| {
                let byte = c.trim_matches('`');
                match byte.as_bytes() {
                    [b] => model_command(*b).ok_or(format!("the column {c} is not a command")),
                    _ => Err(format!("the column {c} is not one command byte")),
                }
            })
            .collect::<Result<_, _>>()?;
        let mut cells = std::collections::HashMap::new();
        for line in lines
            .skip(1)
            .take_while(|l| l.trim_start().starts_with('|'))
        {
            let row = split(line);
            let state =
                SpecState::parse(&row[0]).ok_or(format!("unknown state row {:?}", row[0]))?;
            if row.len() != commands.len() + 1 {
                return Err(format!(
                    "the row {state:?} has {} cells, not {}",
                    row.len() - 1,
                    commands.len()
                ));
            }
            for (cmd, cell) in commands.iter().zip(&row[1..]) {
                let action = SpecAction::parse(cell).ok_or(format!(
                    "the cell {state:?} x {cmd:?} says {cell:?}, which the model does not know: \
                     teach SpecAction::parse the new words (and check the implementation)"
                ))?;
                cells.insert((state, *cmd), action);
            }
        }
        for state in [
            SpecState::Idle,
            SpecState::AwaitingConfirm,
            SpecState::Streaming,
        ] {
            for cmd in [
                Command::Single,
                Command::Confirm,
                Command::Stream,
                Command::Stop,
                Command::Shutdown,
            ] {
                if !cells.contains_key(&(state, cmd)) {
                    return Err(format!("the session table has no cell {state:?} x {cmd:?}"));
                }
            }
        }
        Ok(SpecTable { cells })
    }

    fn action(&self, state: SpecState, cmd: Command) -> SpecAction {
        self.cells[&(state, cmd)]
    }

    /// Where a single frame leaves the session: the `then` of Idle's `0`.
    fn after_single_frame(&self) -> SpecState {
        match self.action(SpecState::Idle, Command::Single) {
            SpecAction::SendNextFrame { then } => then,
            other => panic!("Idle x `0` is {other:?}, not a single frame"),
        }
    }
}

/// The command bytes of LEGACY-PROTOCOL.md's first table, for the model (not the codec's).
fn model_command(byte: u8) -> Option<Command> {
    match byte {
        b'0' => Some(Command::Single),
        b'1' => Some(Command::Confirm),
        b'3' => Some(Command::Stream),
        b'q' => Some(Command::Stop),
        b'2' => Some(Command::Shutdown),
        _ => None,
    }
}

fn spec() -> &'static SpecTable {
    static SPEC: std::sync::OnceLock<SpecTable> = std::sync::OnceLock::new();
    SPEC.get_or_init(SpecTable::load)
}

#[test]
fn the_protocol_table_is_read_from_the_spec() {
    use Command::*;
    use SpecAction::*;
    use SpecState::*;
    let table = spec();
    assert_eq!(
        table.action(Idle, Single),
        SendNextFrame {
            then: AwaitingConfirm
        }
    );
    assert_eq!(table.action(AwaitingConfirm, Confirm), IdleServingPending);
    assert_eq!(table.action(Streaming, Stop), Goto(Idle));
    assert_eq!(table.cells.len(), 15);
}

#[test]
fn a_table_the_model_cannot_read_is_an_error_that_names_the_cell() {
    let spec = std::fs::read_to_string(SPEC_PATH).expect("the protocol spec");
    // The Streaming row's `0`.
    let changed = spec.replacen(
        "\n| Streaming | ignore |",
        "\n| Streaming | send it anyway |",
        1,
    );
    assert_ne!(spec, changed);
    let error = SpecTable::parse(&changed).expect_err("a cell the model cannot read");
    assert!(error.contains("Streaming x Single"), "{error}");
    assert!(SpecTable::parse("no table here").is_err());
}

/// What a session should do, from the protocol table read out of LEGACY-PROTOCOL.md and
/// `SessionConfig`'s docs, without calling into `Session` or the codec.
#[derive(Debug)]
struct Model {
    config: SessionConfig,
    phase: State,
    started: Timestamp,
    /// When the idle timer last restarted (the last command, or a single frame going out);
    /// `None` until the first command.
    active_at: Option<Timestamp>,
    noop_run: u32,
    last_streamed: Option<u64>,
    stats: SessionStats,
    /// Single frames confirmed by `1`, or given up by `3` before their confirm came.
    singles_settled: u64,
    /// Whether the client sent `2` (while the session was open).
    shut_down: bool,
}

impl Model {
    fn new(config: SessionConfig, now: Timestamp) -> Self {
        Model {
            config,
            phase: State::Idle,
            started: now,
            active_at: None,
            noop_run: 0,
            last_streamed: None,
            stats: SessionStats::default(),
            singles_settled: 0,
            shut_down: false,
        }
    }

    fn is_closed(&self) -> bool {
        matches!(self.phase, State::Closed(_))
    }

    fn input(&mut self, bytes: &[u8], now: Timestamp, events: &mut Vec<Event>) {
        for &byte in bytes {
            if self.is_closed() {
                return;
            }
            match byte {
                b' ' | b'\t' | b'\r' | b'\n' => {}
                _ if model_command(byte).is_some() => {
                    let cmd = model_command(byte).unwrap_or(Command::Single);
                    self.command(cmd, now, events);
                }
                _ => {
                    self.stats.unknown_bytes += 1;
                    events.push(Event::Unknown(byte));
                    self.noop(events);
                }
            }
        }
    }

    /// One more byte that changed nothing: `max_noop_run` in a row close the session.
    fn noop(&mut self, events: &mut Vec<Event>) {
        self.noop_run += 1;
        if self.noop_run >= self.config.max_noop_run {
            self.close(CloseReason::Garbage, events);
        }
    }

    /// The protocol table's cell for this state and command, as read from
    /// LEGACY-PROTOCOL.md. `Requested` is the table's AwaitingConfirm before its frame went
    /// out: it takes that row, except that a confirm there confirms nothing.
    fn command(&mut self, cmd: Command, now: Timestamp, events: &mut Vec<Event>) {
        self.stats.commands += 1;
        let row = match self.phase {
            State::Idle => SpecState::Idle,
            State::Requested { .. } | State::AwaitingConfirm { .. } => SpecState::AwaitingConfirm,
            State::Streaming { .. } => SpecState::Streaming,
            State::Closed(_) => return,
        };
        let next = match (spec().action(row, cmd), self.phase) {
            (SpecAction::Close, _) => {
                if cmd == Command::Shutdown && self.config.remote_shutdown {
                    events.push(Event::ShutdownRequested);
                }
                self.shut_down = cmd == Command::Shutdown;
                self.close(CloseReason::ClientShutdown, events);
                return;
            }
            (SpecAction::Ignore, _) => None,
            (SpecAction::Goto(SpecState::Idle), _) => Some(State::Idle),
            (SpecAction::Goto(SpecState::Streaming), _) => Some(State::Streaming { since: now }),
            (SpecAction::Goto(SpecState::AwaitingConfirm), _) => {
                panic!(
                    "the table sends {cmd:?} to AwaitingConfirm without a frame: no model for that"
                )
            }
            (SpecAction::SendNextFrame { .. }, _) => Some(State::Requested {
                since: now,
                pending: None,
            }),
            // "one" pending request: a second is ignored.
            (
                SpecAction::RememberPending,
                State::Requested {
                    since,
                    pending: None,
                },
            ) => Some(State::Requested {
                since,
                pending: Some(now),
            }),
            (SpecAction::RememberPending, State::AwaitingConfirm { pending: None }) => {
                Some(State::AwaitingConfirm { pending: Some(now) })
            }
            (SpecAction::RememberPending, _) => None,
            // Nothing went out yet, so there is nothing to confirm.
            (SpecAction::IdleServingPending, State::Requested { .. }) => None,
            (SpecAction::IdleServingPending, State::AwaitingConfirm { pending }) => {
                Some(pending.map_or(State::Idle, |since| State::Requested {
                    since,
                    pending: None,
                }))
            }
            (action, phase) => panic!("no model for {action:?} in {phase:?}"),
        };
        let Some(next) = next else {
            // An ignored command is no activity: it counts toward the garbage limit.
            self.stats.ignored_commands += 1;
            events.push(Event::Ignored(cmd));
            self.noop(events);
            return;
        };
        self.noop_run = 0;
        self.active_at = Some(now);
        if matches!(self.phase, State::AwaitingConfirm { .. }) {
            self.singles_settled += 1;
        }
        if matches!(next, State::Streaming { .. }) {
            self.last_streamed = None;
        }
        self.phase = next;
    }

    /// Whether the frame should be sent; moves on as if it had been.
    fn frame(&mut self, seq: u64, captured_at: Timestamp, now: Timestamp) -> bool {
        // A clock set back past the request: the request counts from now, and this frame,
        // maybe from before the step, does not answer it.
        match &mut self.phase {
            State::Requested { since, .. } | State::Streaming { since } if now < *since => {
                *since = now;
                return false;
            }
            _ => {}
        }
        match self.phase {
            State::Requested { since, pending } if captured_at >= since => {
                // "send the next frame captured after this request; then <state>"
                self.phase = match spec().after_single_frame() {
                    SpecState::AwaitingConfirm => State::AwaitingConfirm { pending },
                    other => panic!("no model for a single frame followed by {other:?}"),
                };
                // The client may sit `idle_timeout` in AwaitingConfirm, counted from now: the
                // wait for the frame is not its idleness.
                self.active_at = Some(now);
            }
            State::Streaming { since }
                if captured_at >= since && self.last_streamed.is_none_or(|last| seq > last) =>
            {
                if let Some(last) = self.last_streamed {
                    self.stats.frames_skipped += seq - last - 1;
                }
                self.last_streamed = Some(seq);
            }
            _ => return false,
        }
        self.stats.frames_sent += 1;
        true
    }

    fn deadline(&self) -> Option<Timestamp> {
        match (self.phase, self.active_at) {
            (State::Closed(_), _) => None,
            (_, None) => self.config.handshake_timeout.map(|t| self.started + t),
            (State::Idle | State::AwaitingConfirm { .. }, Some(active)) => {
                self.config.idle_timeout.map(|t| active + t)
            }
            (State::Requested { .. } | State::Streaming { .. }, Some(_)) => None,
        }
    }

    fn timeout(&mut self, now: Timestamp, events: &mut Vec<Event>) {
        if self.deadline().is_some_and(|deadline| deadline <= now) {
            let reason = match self.active_at {
                None => CloseReason::HandshakeTimeout,
                Some(_) => CloseReason::IdleTimeout,
            };
            self.close(reason, events);
        }
    }

    fn close(&mut self, reason: CloseReason, events: &mut Vec<Event>) {
        if !self.is_closed() {
            events.push(Event::Closed(reason));
            self.phase = State::Closed(reason);
        }
    }
}

/// One step of the property test.
#[derive(Clone)]
enum Op {
    /// Bytes from the client, in one `handle_input` call.
    Input(Vec<u8>),
    /// The camera's next frame, `gap` sequence numbers after the last one and captured up to
    /// `lag` µs before it is offered (the time it took to encode), never before the last one.
    Frame { gap: u64, lag: u64 },
    /// The last frame is offered again.
    Reoffer,
    /// Time passes, in µs.
    Advance(u64),
    /// The clock is set back, in µs.
    StepBack(u64),
    /// The driver calls `handle_timeout`, whether a deadline has passed or not.
    Timeout,
}

/// Client bytes as text, so that a shrunk counterexample reads like a transcript.
impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Input(bytes) => write!(f, "Input(b\"{}\")", bytes.escape_ascii()),
            Op::Frame { gap, lag } => write!(f, "Frame {{ gap: {gap}, lag: {lag} }}"),
            Op::Reoffer => f.write_str("Reoffer"),
            Op::Advance(micros) => write!(f, "Advance({micros})"),
            Op::StepBack(micros) => write!(f, "StepBack({micros})"),
            Op::Timeout => f.write_str("Timeout"),
        }
    }
}

fn input_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        12 => prop::sample::select(&b"013q"[..]),
        1 => Just(b'2'),
        2 => prop::sample::select(&b" \t\r\n"[..]),
        3 => any::<u8>(),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => prop::collection::vec(input_byte(), 1..4).prop_map(Op::Input),
        6 => (1u64..4, prop_oneof![Just(0u64), 0u64..300])
            .prop_map(|(gap, lag)| Op::Frame { gap, lag }),
        1 => Just(Op::Reoffer),
        // Mostly short steps, sometimes past every timeout.
        4 => prop_oneof![0u64..100, 0u64..5_000].prop_map(Op::Advance),
        1 => (0u64..5_000).prop_map(Op::StepBack),
        2 => Just(Op::Timeout),
    ]
}

fn session_config() -> impl Strategy<Value = SessionConfig> {
    (
        prop::option::weighted(0.8, 1u64..2_000),
        prop::option::weighted(0.8, 1u64..3_000),
        2u32..8,
        any::<bool>(),
    )
        .prop_map(
            |(handshake, idle, max_noop_run, remote_shutdown)| SessionConfig {
                handshake_timeout: handshake.map(Duration::from_micros),
                idle_timeout: idle.map(Duration::from_micros),
                max_noop_run,
                remote_shutdown,
            },
        )
}

/// A session and the model, driven side by side.
#[derive(Debug)]
struct Harness {
    session: Session,
    model: Model,
    now: Timestamp,
    last_frame: Option<Frame>,
    /// Frames the session sent to answer single-shot requests.
    singles_sent: u64,
}

impl Harness {
    fn new(config: SessionConfig) -> Self {
        Harness {
            session: Session::new(config.clone(), START),
            model: Model::new(config, START),
            now: START,
            last_frame: None,
            singles_sent: 0,
        }
    }

    /// Applies `op` to both, then checks they agree, and the protocol's promises on the
    /// session's own outputs.
    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let mut expected = Vec::new();
        match op {
            Op::Input(bytes) => {
                self.session.handle_input(bytes, self.now);
                self.model.input(bytes, self.now, &mut expected);
            }
            Op::Frame { gap, lag } => {
                let last = self.last_frame.as_ref();
                let seq = last.map_or(0, |f| f.seq) + gap;
                // A camera's times do not go back, unless its clock does.
                let earliest = last.map_or(START, |f| f.captured_at).min(self.now);
                let captured_at = Timestamp(self.now.0.saturating_sub(*lag)).max(earliest);
                let next = frame(seq, captured_at);
                self.offer(&next)?;
                self.last_frame = Some(next);
            }
            Op::Reoffer => {
                if let Some(last) = self.last_frame.clone() {
                    self.offer(&last)?;
                }
            }
            Op::Advance(micros) => self.now = Timestamp(self.now.0 + micros),
            Op::StepBack(micros) => self.now = Timestamp(self.now.0.saturating_sub(*micros)),
            Op::Timeout => {
                self.session.handle_timeout(self.now);
                self.model.timeout(self.now, &mut expected);
            }
        }
        let (session, model) = (&mut self.session, &self.model);
        prop_assert_eq!(drain_events(session), expected, "events");
        prop_assert_eq!(session.state(), model.phase, "state");
        prop_assert_eq!(
            session.wants_frame(),
            matches!(
                model.phase,
                State::Requested { .. } | State::Streaming { .. }
            ),
            "wants_frame in {:?}",
            model.phase
        );
        prop_assert_eq!(session.poll_timeout(), model.deadline(), "deadline");
        prop_assert_eq!(session.stats(), &model.stats, "stats");
        prop_assert!(
            self.singles_sent <= model.singles_settled + 1,
            "{} single frames sent, only {} confirmed or given up",
            self.singles_sent,
            model.singles_settled
        );
        if model.shut_down {
            prop_assert_eq!(
                session.state(),
                State::Closed(CloseReason::ClientShutdown),
                "after `2`"
            );
        }
        Ok(())
    }

    fn offer(&mut self, frame: &Frame) -> Result<(), TestCaseError> {
        let before = self.session.state();
        let phase = self.model.phase;
        let sent = self.session.handle_frame(frame, self.now);
        prop_assert_eq!(
            sent,
            self.model.frame(frame.seq, frame.captured_at, self.now),
            "whether seq {} is sent",
            frame.seq
        );
        if sent {
            prop_assert!(
                matches!(before, State::Requested { .. } | State::Streaming { .. }),
                "frame sent in {:?}",
                before
            );
        }
        if let (true, State::Requested { since, .. }) = (sent, phase) {
            self.singles_sent += 1;
            prop_assert!(
                frame.captured_at >= since,
                "single frame captured at {} for a request at {}",
                frame.captured_at,
                since
            );
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(Config {
        cases: 1024,
        rng_seed: RngSeed::Fixed(0xED6E_CA11),
        failure_persistence: None,
        ..Config::default()
    })]

    #[test]
    fn session_follows_the_protocol_model(
        config in session_config(),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        let mut harness = Harness::new(config);
        for op in &ops {
            harness.step(op)?;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Protocol transcript
// ---------------------------------------------------------------------------------------------

/// Drives one session through a script at explicit times and writes down what a person
/// debugging the protocol wants to read: client bytes (`C>`), frames sent (`S>`), events and
/// state changes (`--`).
#[derive(Debug)]
struct Transcript {
    session: Session,
    lines: Vec<String>,
}

impl Transcript {
    fn connect(config: SessionConfig, at: Timestamp) -> Self {
        let session = Session::new(config, at);
        let lines = vec![format!(
            "t={at} connect, state {}",
            describe_state(session.state())
        )];
        Transcript { session, lines }
    }

    fn client(&mut self, at: u64, bytes: &[u8]) {
        let at = Timestamp(at);
        self.lines
            .push(format!("t={at} C> {}", bytes.escape_ascii()));
        let before = self.session.state();
        let lines = self.lines.len();
        self.session.handle_input(bytes, at);
        self.effects(before);
        if self.lines.len() == lines {
            self.lines.push("  -- no effect".to_owned());
        }
    }

    fn frame(&mut self, at: u64, seq: u64) {
        self.frame_captured(at, seq, at);
    }

    fn frame_captured(&mut self, at: u64, seq: u64, captured_at: u64) {
        let (at, captured_at) = (Timestamp(at), Timestamp(captured_at));
        self.lines
            .push(format!("t={at} camera seq={seq} captured t={captured_at}"));
        let before = self.session.state();
        let skipped = self.session.stats().frames_skipped;
        if self.session.handle_frame(&frame(seq, captured_at), at) {
            let skipped = self.session.stats().frames_skipped - skipped;
            let note = if skipped > 0 {
                format!(" ({skipped} skipped before it)")
            } else {
                String::new()
            };
            self.lines.push(format!("  S> frame seq={seq}{note}"));
        } else {
            self.lines.push("  -- not sent".to_owned());
        }
        self.effects(before);
    }

    fn effects(&mut self, before: State) {
        for event in drain_events(&mut self.session) {
            self.lines
                .push(format!("  -- event {}", describe_event(event)));
        }
        let after = self.session.state();
        if after != before {
            self.lines.push(format!(
                "  -- state {} -> {}",
                describe_state(before),
                describe_state(after)
            ));
        }
    }

    fn finish(mut self) -> String {
        let stats = self.session.stats();
        self.lines.push(format!(
            "stats: commands={} ignored={} unknown={} sent={} skipped={}",
            stats.commands,
            stats.ignored_commands,
            stats.unknown_bytes,
            stats.frames_sent,
            stats.frames_skipped
        ));
        self.lines.join("\n")
    }
}

fn describe_state(state: State) -> String {
    match state {
        State::Idle => "Idle".to_owned(),
        State::Requested {
            since,
            pending: None,
        } => format!("Requested(since t={since})"),
        State::Requested {
            since,
            pending: Some(pending),
        } => format!("Requested(since t={since}, pending t={pending})"),
        State::AwaitingConfirm { pending: None } => "AwaitingConfirm".to_owned(),
        State::AwaitingConfirm {
            pending: Some(pending),
        } => format!("AwaitingConfirm(pending t={pending})"),
        State::Streaming { since } => format!("Streaming(since t={since})"),
        State::Closed(reason) => format!("Closed({reason:?})"),
    }
}

fn describe_event(event: Event) -> String {
    match event {
        Event::Unknown(byte) => format!("Unknown(b'{}')", byte.escape_ascii()),
        other => format!("{other:?}"),
    }
}

/// A legacy client's single shots, a pending request, a stream with a slow client, the
/// legacy client's coalesced `30`, a stop, a stray byte and its exit (`2` twice).
#[test]
fn protocol_transcript() {
    let mut t = Transcript::connect(config(), Timestamp(0));
    t.client(100, b"0");
    // Captured before the request, offered late: it does not answer it.
    t.frame_captured(20_000, 1, 50);
    t.frame(53_333, 2);
    t.frame(86_666, 3);
    t.client(3_100_000, b"1");
    t.client(5_000_000, b"0");
    t.client(5_000_300, b"0");
    t.frame(5_020_000, 4);
    t.frame(5_053_333, 5);
    t.client(8_030_000, b"1");
    t.frame(8_053_333, 6);
    t.client(8_060_000, b"3");
    t.frame(8_086_666, 7);
    t.frame(8_120_000, 8);
    // Seq 9 was captured while the client was still busy with seq 8.
    t.frame(8_186_666, 10);
    t.frame(8_220_000, 11);
    t.client(8_230_000, b"30");
    t.frame(8_253_333, 12);
    t.client(9_000_000, b"q");
    t.frame(9_020_000, 13);
    t.client(9_500_000, b"x");
    t.client(10_000_000, b"2");
    t.client(10_000_100, b"2");
    insta::assert_snapshot!(t.finish());
}
