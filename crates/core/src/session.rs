//! The per-connection session state machine: the table in `LEGACY-PROTOCOL.md`, as plain data.
//!
//! Inputs come in through [`Session::handle_input`] (bytes from the client),
//! [`Session::handle_frame`] (a frame the capture loop published) and
//! [`Session::handle_timeout`]; decisions come out as return values and [`Event`]s from
//! [`Session::poll_event`]. Time is always a parameter.
//!
//! | state \ input   | `0`                              | `1`                        | `3`       | `q`  | `2`   |
//! |-----------------|----------------------------------|----------------------------|-----------|------|-------|
//! | Idle            | Requested (a frame captured from now on) | ignore (stray)     | Streaming | ignore | close |
//! | Requested       | remember one pending request     | ignore (nothing sent yet)  | Streaming | ignore | close |
//! | AwaitingConfirm | remember one pending request     | Idle, or Requested for the pending one | Streaming | ignore | close |
//! | Streaming       | ignore                           | ignore                     | ignore    | Idle | close |
//!
//! `Requested` is the protocol's AwaitingConfirm before its frame has gone out: it answers `0`
//! the same way, and it waits for a frame captured at or after the request. A confirm there
//! confirms nothing, so it is stray. Should the clock step back past a request (or the start
//! of a stream), the request is moved to the time the session notices, so it is answered by
//! the next frame instead of once the clock has caught up.
//!
//! Only a command that changes the state counts as activity (restarts the idle timeout, ends
//! the handshake). An "ignore" cell is no activity: it counts toward the garbage limit like
//! an unknown byte, so a peer cannot hold a connection with no-op commands, or keep a core
//! busy reading them.

use std::collections::VecDeque;
use std::time::Duration;

use crate::codec::{Command, Input, parse_commands};
use crate::frame::Frame;
use crate::time::Timestamp;

/// Limits of one session. `None` turns a timeout off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// How long a new connection may take to send its first command.
    pub handshake_timeout: Option<Duration>,
    /// How long a session may sit in Idle or AwaitingConfirm without a command that changes
    /// what it is owed.
    pub idle_timeout: Option<Duration>,
    /// Bytes in a row that change nothing (unknown bytes, and commands with no effect in their
    /// state; white space aside) after which the session is closed.
    pub max_noop_run: u32,
    /// Whether `2` asks the whole server to stop (it always ends the session).
    pub remote_shutdown: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            handshake_timeout: Some(Duration::from_secs(30)),
            idle_timeout: Some(Duration::from_secs(300)),
            max_noop_run: 64,
            remote_shutdown: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Idle,
    /// A single frame is owed: the first frame captured at or after `since` answers it.
    Requested {
        since: Timestamp,
        pending: Option<Timestamp>,
    },
    /// A single frame went out and waits for `1`; `pending` is a request that came meanwhile.
    AwaitingConfirm {
        pending: Option<Timestamp>,
    },
    /// Every frame captured at or after `since` is wanted (the newest one when behind).
    Streaming {
        since: Timestamp,
    },
    Closed(CloseReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent `2`.
    ClientShutdown,
    /// The client sent `max_noop_run` bytes in a row that changed nothing.
    Garbage,
    HandshakeTimeout,
    IdleTimeout,
    /// The connection ended or failed underneath the session.
    Disconnected,
    /// The server is stopping.
    ServerStopping,
    /// An HTTP request that needs no frame (a page, an error) was answered.
    Answered,
    /// The peer may not use the protocol it speaks here (a legacy client, where passwords
    /// are required).
    Refused,
}

/// Something the driver should know about, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A byte that is not a command; it is counted and never answered on the wire.
    Unknown(u8),
    /// A command that has no effect in the current state.
    Ignored(Command),
    /// The client sent `2` and the server allows that to stop it.
    ShutdownRequested,
    Closed(CloseReason),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionStats {
    pub commands: u64,
    pub ignored_commands: u64,
    pub unknown_bytes: u64,
    pub frames_sent: u64,
    /// Frames captured while streaming that this client never got because it was behind.
    pub frames_skipped: u64,
}

#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    state: State,
    started: Timestamp,
    /// The last command that changed the state, or the single frame sent since: what the idle
    /// timeout counts from. `None` until the first such command. A command that changes
    /// nothing is no activity: otherwise a no-op `q` now and then would hold a connection
    /// slot for ever.
    last_activity: Option<Timestamp>,
    /// Unknown bytes and no-op commands since the last command that changed the state.
    noop_run: u32,
    /// Sequence number of the last frame sent while streaming, for counting skips.
    last_streamed: Option<u64>,
    stats: SessionStats,
    events: VecDeque<Event>,
}

impl Session {
    pub fn new(config: SessionConfig, now: Timestamp) -> Self {
        Session {
            config,
            state: State::Idle,
            started: now,
            last_activity: None,
            noop_run: 0,
            last_streamed: None,
            stats: SessionStats::default(),
            events: VecDeque::new(),
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn stats(&self) -> &SessionStats {
        &self.stats
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed(_))
    }

    /// Whether the next captured frame may be sent: the capture loop only encodes while some
    /// session wants a frame.
    pub fn wants_frame(&self) -> bool {
        matches!(
            self.state,
            State::Requested { .. } | State::Streaming { .. }
        )
    }

    /// Bytes from the client. Anything after a closing command is not looked at.
    pub fn handle_input(&mut self, bytes: &[u8], now: Timestamp) {
        for input in parse_commands(bytes) {
            if self.is_closed() {
                return;
            }
            match input {
                Input::Command(cmd) => self.handle_command(cmd, now),
                Input::Unknown(byte) => {
                    self.stats.unknown_bytes += 1;
                    self.events.push_back(Event::Unknown(byte));
                    self.count_noop();
                }
            }
        }
    }

    pub fn handle_command(&mut self, cmd: Command, now: Timestamp) {
        if self.is_closed() {
            return;
        }
        self.stats.commands += 1;
        let next = match (self.state, cmd) {
            (State::Closed(_), _) => return,
            (_, Command::Shutdown) => {
                if self.config.remote_shutdown {
                    self.events.push_back(Event::ShutdownRequested);
                }
                State::Closed(CloseReason::ClientShutdown)
            }
            (State::Streaming { .. }, Command::Stop) => State::Idle,
            (State::Streaming { .. }, _) => return self.ignore(cmd),
            (_, Command::Stream) => {
                self.last_streamed = None;
                State::Streaming { since: now }
            }
            (State::Idle, Command::Single) => State::Requested {
                since: now,
                pending: None,
            },
            (
                State::Requested {
                    since,
                    pending: None,
                },
                Command::Single,
            ) => State::Requested {
                since,
                pending: Some(now),
            },
            (State::AwaitingConfirm { pending: None }, Command::Single) => {
                State::AwaitingConfirm { pending: Some(now) }
            }
            (State::AwaitingConfirm { pending }, Command::Confirm) => match pending {
                Some(since) => State::Requested {
                    since,
                    pending: None,
                },
                None => State::Idle,
            },
            // A second pending request, a confirm with nothing to confirm, a stop while not
            // streaming.
            (_, Command::Single | Command::Confirm | Command::Stop) => return self.ignore(cmd),
        };
        self.noop_run = 0;
        self.last_activity = Some(now);
        self.set_state(next);
    }

    /// Offers a freshly captured frame at `now`. `true` means it must be sent now; the session
    /// has already moved on as if it had been. The client's time to confirm a single frame
    /// counts from here, not from its request.
    ///
    /// "Captured at or after the request" is told by comparing `frame.captured_at` with the
    /// request's time, both read from the same clock. Should that clock step back past the
    /// request (a wall clock set back during an outage), no frame would ever compare as later
    /// until the clock caught up again: so when `now` is before the request, the request is
    /// moved to `now` (it was made no later than that) and this frame, which may be from
    /// before the step, is not taken; the next one captured from `now` on answers it.
    pub fn handle_frame(&mut self, frame: &Frame, now: Timestamp) -> bool {
        if self.rebase_after_clock_step(now) {
            return false;
        }
        match self.state {
            State::Requested { since, pending } if frame.captured_at >= since => {
                self.last_activity = Some(now);
                self.set_state(State::AwaitingConfirm { pending });
            }
            State::Streaming { since } if frame.captured_at >= since => {
                match self.last_streamed {
                    Some(last) if frame.seq <= last => return false,
                    Some(last) => self.stats.frames_skipped += frame.seq - last - 1,
                    None => {}
                }
                self.last_streamed = Some(frame.seq);
            }
            _ => return false,
        }
        self.stats.frames_sent += 1;
        true
    }

    /// Moves a request made "after" `now` to `now`, since the clock went back meanwhile (a
    /// pending request is moved when it is served); `true` if it did. `set_state` logs it.
    fn rebase_after_clock_step(&mut self, now: Timestamp) -> bool {
        let next = match self.state {
            State::Requested { since, pending } if now < since => State::Requested {
                since: now,
                pending,
            },
            State::Streaming { since } if now < since => State::Streaming { since: now },
            _ => return false,
        };
        self.set_state(next);
        true
    }

    /// Ends the session from the driver's side (peer gone, server stopping).
    pub fn close(&mut self, reason: CloseReason) {
        if !self.is_closed() {
            self.set_state(State::Closed(reason));
        }
    }

    /// When [`Session::handle_timeout`] should next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        match (self.last_activity, self.state) {
            (_, State::Closed(_)) => None,
            (None, _) => self.config.handshake_timeout.map(|t| self.started + t),
            (Some(last), State::Idle | State::AwaitingConfirm { .. }) => {
                self.config.idle_timeout.map(|t| last + t)
            }
            (Some(_), State::Requested { .. } | State::Streaming { .. }) => None,
        }
    }

    pub fn handle_timeout(&mut self, now: Timestamp) {
        if self.poll_timeout().is_some_and(|deadline| deadline <= now) {
            let reason = if self.last_activity.is_none() {
                CloseReason::HandshakeTimeout
            } else {
                CloseReason::IdleTimeout
            };
            self.close(reason);
        }
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn ignore(&mut self, cmd: Command) {
        self.stats.ignored_commands += 1;
        self.events.push_back(Event::Ignored(cmd));
        self.count_noop();
    }

    /// One more byte that changed nothing; too many in a row close the session.
    fn count_noop(&mut self) {
        self.noop_run += 1;
        if self.noop_run >= self.config.max_noop_run {
            self.close(CloseReason::Garbage);
        }
    }

    /// The one place the state changes.
    fn set_state(&mut self, next: State) {
        tracing::debug!(from = ?self.state, to = ?next, "session state");
        if let State::Closed(reason) = next {
            self.events.push_back(Event::Closed(reason));
        }
        self.state = next;
    }
}

#[cfg(test)]
mod tests;
