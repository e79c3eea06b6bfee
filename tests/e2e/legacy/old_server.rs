//! The old Python server, emulated (LEGACY-PROTOCOL.md, "How the existing server behaves"):
//! a receiving and a sending thread per connection, on flags that every connection shares.
//!
//! * Each `recv` of up to 1024 bytes is stripped of white space and compared whole with one
//!   command; anything else is answered with the text `Unknown command` on the frame socket.
//! * `0` (ignored while streaming): the sender reads a frame from the camera and throws it
//!   away, sends the next, and then waits for a `1` before it does anything else. A `1` that
//!   comes first is remembered and lets that wait pass at once.
//! * `3` streams (once the sender is not waiting for a `1`), `q` stops, `2` stops every
//!   sender, and the server exits when the next connection arrives.
//!
//! Unlike the old server it does not spin: an idle sender waits on a condition variable and the
//! "camera" paces each read at 30 fps. Its frames are real JPEGs with the frame number in a
//! COM segment (`oldcam frame=N`, no edgecam stamp). Tests can pause the receiving threads,
//! so that commands sent meanwhile arrive in one `recv` as they do on a busy board. Dropping
//! it stops every thread (bounded).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use crate::support::WAIT;

pub const WIDTH: u16 = 32;
pub const HEIGHT: u16 = 24;
const FRAME_INTERVAL: Duration = Duration::from_millis(33);
const FRAME_TAG: &[u8] = b"oldcam frame=";

/// What happened, in order, for tests to look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// One `recv`, as received.
    Received(String),
    /// `Unknown command` written (logged just before the write, like the frames).
    UnknownAnswered,
    /// Frame `n` sent as a single shot.
    Single(u64),
    /// Frame `n` sent while streaming.
    Streamed(u64),
    /// A receiving thread saw its connection end.
    Closed,
}

/// The flags of the old server, one set for all connections.
#[derive(Debug, Default)]
struct Flags {
    start: bool,
    confirm: bool,
    stream: bool,
    shutdown: bool,
}

#[derive(Debug, Default)]
struct State {
    flags: Flags,
    reading_paused: bool,
    /// The test is done with the server.
    stopping: bool,
    frames_read: u64,
    events: Vec<Event>,
    conns: Vec<TcpStream>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.lock());
        self.changed.notify_all();
    }

    fn log(&self, event: Event) {
        self.update(|s| s.events.push(event));
    }

    /// Waits until `ready` holds, or the server stops; `None` if it stopped.
    fn wait<'a>(
        &'a self,
        state: MutexGuard<'a, State>,
        ready: impl Fn(&State) -> bool,
    ) -> Option<MutexGuard<'a, State>> {
        let state = self
            .changed
            .wait_while(state, |s| !s.stopping && !ready(s))
            .unwrap_or_else(|e| e.into_inner());
        (!state.stopping).then_some(state)
    }

    /// Reads the camera: waits for the next frame time, then "encodes" the next frame.
    fn read_camera(&self) -> (u64, Vec<u8>) {
        std::thread::sleep(FRAME_INTERVAL);
        let n = {
            let mut state = self.lock();
            state.frames_read += 1;
            state.frames_read
        };
        (n, numbered_jpeg(n))
    }
}

/// A running emulated old server on 127.0.0.1.
#[derive(Debug)]
pub struct OldServer {
    pub addr: String,
    shared: Arc<Shared>,
    /// Disconnected once every thread of the server has ended.
    threads_done: mpsc::Receiver<()>,
}

impl OldServer {
    pub fn start() -> OldServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let shared = Arc::new(Shared::default());
        let (done, threads_done) = mpsc::channel();
        let accept_shared = shared.clone();
        std::thread::spawn(move || accept_loop(&listener, &accept_shared, &done));
        OldServer {
            addr,
            shared,
            threads_done,
        }
    }

    /// Holds back the `recv` of connections accepted from now on until the guard is dropped.
    pub fn pause_reading(&self) -> ReadingPaused<'_> {
        self.shared.update(|s| s.reading_paused = true);
        ReadingPaused(self)
    }

    pub fn events(&self) -> Vec<Event> {
        self.shared.lock().events.clone()
    }

    /// Every `recv` so far, as received.
    pub fn received(&self) -> Vec<String> {
        let received = |e| match e {
            Event::Received(chunk) => Some(chunk),
            _ => None,
        };
        self.events().into_iter().filter_map(received).collect()
    }

    /// The numbers of the frames sent as single shots.
    pub fn singles(&self) -> Vec<u64> {
        let single = |e| match e {
            Event::Single(n) => Some(n),
            _ => None,
        };
        self.events().into_iter().filter_map(single).collect()
    }

    /// Whether a client's `2` told the server to stop.
    pub fn shut_down_by_client(&self) -> bool {
        self.shared.lock().flags.shutdown
    }

    /// Waits (bounded) until the events satisfy `ready`.
    pub fn wait_for(&self, what: &str, ready: impl Fn(&[Event]) -> bool) {
        let (state, timeout) = self
            .shared
            .changed
            .wait_timeout_while(self.shared.lock(), WAIT, |s| !ready(&s.events))
            .unwrap_or_else(|e| e.into_inner());
        assert!(
            !timeout.timed_out(),
            "old server: no {what} within {WAIT:?}; events: {:?}",
            state.events
        );
    }

    /// Waits (bounded) until `n` frames have been streamed.
    pub fn wait_streamed(&self, n: usize) {
        self.wait_for("streamed frames", |events| {
            events
                .iter()
                .filter(|e| matches!(e, Event::Streamed(_)))
                .count()
                >= n
        });
    }

    /// Waits (bounded) until `n` connections have ended.
    pub fn wait_closed(&self, n: usize) {
        self.wait_for("closed connections", |events| {
            events.iter().filter(|e| **e == Event::Closed).count() >= n
        });
    }
}

impl Drop for OldServer {
    fn drop(&mut self) {
        self.shared.update(|s| {
            s.stopping = true;
            for conn in &s.conns {
                let _ = conn.shutdown(Shutdown::Both);
            }
        });
        // Wake the accept loop (it may have exited already, after a `2`).
        let _ = TcpStream::connect(&self.addr);
        // Nothing is ever sent: this returns when the last thread has dropped its sender.
        if let Err(mpsc::RecvTimeoutError::Timeout) = self.threads_done.recv_timeout(WAIT) {
            eprintln!("old server: threads still running after {WAIT:?}");
        }
    }
}

/// Stops holding back `recv`s when dropped.
#[derive(Debug)]
pub struct ReadingPaused<'a>(&'a OldServer);

impl Drop for ReadingPaused<'_> {
    fn drop(&mut self) {
        self.0.shared.update(|s| s.reading_paused = false);
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>, done: &mpsc::Sender<()>) {
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let mut state = shared.lock();
        if state.stopping || state.flags.shutdown {
            return;
        }
        let paused = state.reading_paused;
        state.conns.push(conn.try_clone().unwrap());
        drop(state);
        let writer = Arc::new(Mutex::new(conn.try_clone().unwrap()));
        let closed = Arc::new(AtomicBool::new(false));
        let (s, w, c, d) = (shared.clone(), writer.clone(), closed.clone(), done.clone());
        std::thread::spawn(move || {
            receive(&s, conn, &w, paused);
            c.store(true, Ordering::SeqCst);
            s.log(Event::Closed);
            drop(d);
        });
        let (s, d) = (shared.clone(), done.clone());
        std::thread::spawn(move || {
            send_frames(&s, &writer, &closed);
            drop(d);
        });
    }
}

/// The receiving thread: one command per `recv`.
fn receive(shared: &Shared, mut conn: TcpStream, writer: &Mutex<TcpStream>, paused: bool) {
    if paused && shared.wait(shared.lock(), |s| !s.reading_paused).is_none() {
        return;
    }
    let mut buf = [0u8; 1024];
    loop {
        let n = match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let chunk = String::from_utf8_lossy(&buf[..n]).into_owned();
        let mut known = false;
        shared.update(|s| {
            s.events.push(Event::Received(chunk));
            known = s.flags.apply(python_strip(&buf[..n]));
        });
        if !known {
            shared.log(Event::UnknownAnswered);
            if lock(writer).write_all(b"Unknown command").is_err() {
                return;
            }
        }
    }
}

impl Flags {
    /// One whole stripped `recv` chunk; `false` if it is not a command.
    fn apply(&mut self, command: &[u8]) -> bool {
        match command {
            b"0" if !self.stream => self.start = true,
            b"0" => {}
            b"1" => self.confirm = true,
            b"3" => self.stream = true,
            b"q" => self.stream = false,
            b"2" => self.shutdown = true,
            _ => return false,
        }
        true
    }
}

/// The sending thread: streams, or sends a single frame and waits for its `1`.
fn send_frames(shared: &Shared, writer: &Mutex<TcpStream>, closed: &AtomicBool) {
    let is_closed = || closed.load(Ordering::SeqCst);
    let active = |s: &State| s.flags.shutdown || s.flags.stream || s.flags.start;
    loop {
        let Some(mut state) = shared.wait(shared.lock(), |s| active(s) || is_closed()) else {
            return;
        };
        if state.flags.shutdown || is_closed() {
            return;
        }
        let single = !state.flags.stream;
        if single {
            state.flags.start = false;
        }
        drop(state);
        if single {
            shared.read_camera();
        }
        let (n, jpeg) = shared.read_camera();
        // Logged first, so that a test that has the frame always finds it in the log.
        shared.log(if single {
            Event::Single(n)
        } else {
            Event::Streamed(n)
        });
        if send_frame(writer, &jpeg).is_err() {
            return;
        }
        if single {
            let confirmed = |s: &State| s.flags.confirm || s.flags.shutdown;
            let Some(mut state) = shared.wait(shared.lock(), |s| confirmed(s) || is_closed())
            else {
                return;
            };
            state.flags.confirm = false;
        }
    }
}

/// `sendall(struct.pack('>I', len(jpeg)) + jpeg)`.
fn send_frame(writer: &Mutex<TcpStream>, jpeg: &[u8]) -> std::io::Result<()> {
    let mut wire = u32::try_from(jpeg.len()).unwrap().to_be_bytes().to_vec();
    wire.extend_from_slice(jpeg);
    lock(writer).write_all(&wire)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Python's `bytes.strip()`.
fn python_strip(mut bytes: &[u8]) -> &[u8] {
    let space = |b: &u8| b" \t\n\r\x0b\x0c".contains(b);
    while let [first, rest @ ..] = bytes
        && space(first)
    {
        bytes = rest;
    }
    while let [rest @ .., last] = bytes
        && space(last)
    {
        bytes = rest;
    }
    bytes
}

/// Frame `n` of the camera: a small real JPEG with `oldcam frame=N` in a COM segment.
fn numbered_jpeg(n: u64) -> Vec<u8> {
    static PICTURE: OnceLock<Vec<u8>> = OnceLock::new();
    let picture = PICTURE.get_or_init(|| {
        let pixels: Vec<u8> = (0..usize::from(WIDTH) * usize::from(HEIGHT) * 3)
            .map(|i| (i * 7 % 256) as u8)
            .collect();
        let mut jpeg = Vec::new();
        jpeg_encoder::Encoder::new(&mut jpeg, 95)
            .encode(&pixels, WIDTH, HEIGHT, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        jpeg
    });
    let text = [FRAME_TAG, n.to_string().as_bytes()].concat();
    let segment_len = u16::try_from(text.len() + 2).unwrap().to_be_bytes();
    [
        &picture[..2],
        &[0xFF, 0xFE],
        &segment_len,
        &text,
        &picture[2..],
    ]
    .concat()
}

/// The number of a frame from [`OldServer`].
pub fn frame_number(jpeg: &[u8]) -> u64 {
    let at = jpeg
        .windows(FRAME_TAG.len())
        .position(|w| w == FRAME_TAG)
        .expect("not a frame of the old server")
        + FRAME_TAG.len();
    let digits: Vec<u8> = jpeg[at..]
        .iter()
        .copied()
        .take_while(u8::is_ascii_digit)
        .collect();
    String::from_utf8(digits).unwrap().parse().unwrap()
}
