//! What every end-to-end test needs: a server on a free loopback port, raw connections, and
//! bounded waits (no test can hang: every wait has a deadline).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use edgecam::clock::SystemClock;
use edgecam::server::{Server, ServerConfig, ServerStats, StatsSnapshot};
use edgecam_core::camera::{Camera, CameraContext};
use edgecam_core::codec::FrameDecoder;
use edgecam_core::session::SessionConfig;
use edgecam_core::time::Clock;
use edgecam_encode::{Encoder, Passthrough, RustBackend};
use edgecam_transport_tcp::TcpTransport;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The longest any single wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

pub fn config() -> ServerConfig {
    ServerConfig {
        session: SessionConfig::default(),
        max_clients: 32,
        // Every test client comes from 127.0.0.1; the per-address limit has its own tests.
        max_clients_per_ip: 0,
        allow: None,
        users: None,
        legacy_allow: None,
        send_timeout: Duration::from_secs(2),
        stats_interval: None,
        http: true,
    }
}

/// Whether `tool` is installed. Where it is not, a test that needs it prints "skipped: ..."
/// and returns, except under CI (`CI` set), whose `.ci/run` installs it: there it fails.
pub fn have_tool(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()));
    have(found, &format!("{tool} not installed"))
}

/// [`have_tool`] for anything else a test needs (a file, a module, installed packages):
/// `found`, or else "skipped: `missing`" outside CI and a failure under CI.
pub fn have(found: bool, missing: &str) -> bool {
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{missing}, and CI must have it (.ci/run installs it)"
        );
        println!("skipped: {missing}");
    }
    found
}

/// An in-process server on 127.0.0.1 with an ephemeral port, serving any camera spec.
pub struct TestServer {
    pub addr: String,
    pub stop: CancellationToken,
    /// The server's counters, readable after it stopped too.
    pub stats: ServerStats,
    handle: JoinHandle<()>,
}

impl TestServer {
    pub async fn start(camera: &str) -> TestServer {
        TestServer::with_config(camera, config()).await
    }

    pub async fn with_config(camera: &str, config: ServerConfig) -> TestServer {
        TestServer::with_clock(camera, config, Arc::new(SystemClock::default())).await
    }

    /// A server whose camera, capture loop and sessions all read `clock`. With a
    /// `ManualClock`, turn the session timeouts off: a session sleeping on that clock until
    /// its deadline moves the clock there at once.
    pub async fn with_clock(
        camera: &str,
        config: ServerConfig,
        clock: Arc<dyn Clock>,
    ) -> TestServer {
        let context = CameraContext {
            clock: clock.clone(),
        };
        let camera = edgecam::backends::cameras()
            .create(camera, &context)
            .unwrap_or_else(|e| panic!("camera {camera:?}: {e}"));
        TestServer::with_camera(camera, config, clock).await
    }

    /// A server over a camera built here rather than from a spec (one over a simulated
    /// device, say), on `clock`.
    pub async fn with_camera(
        camera: Box<dyn Camera>,
        config: ServerConfig,
        clock: Arc<dyn Clock>,
    ) -> TestServer {
        let transport = TcpTransport::bind("127.0.0.1:0").await.unwrap();
        TestServer::with_transport(camera, config, clock, transport).await
    }

    /// A server on a transport set up here (one serving TLS, say).
    pub async fn with_transport(
        camera: Box<dyn Camera>,
        config: ServerConfig,
        clock: Arc<dyn Clock>,
        transport: TcpTransport,
    ) -> TestServer {
        let stop = CancellationToken::new();
        let encoder = Encoder::new(Box::<RustBackend>::default(), 75, Passthrough::Stamped);
        let server = Server::start(transport, camera, encoder, clock, config, stop.clone())
            .await
            .unwrap();
        let addr = server.local_addr();
        let stats = server.stats();
        let handle = tokio::spawn(server.run());
        TestServer {
            addr,
            stop,
            stats,
            handle,
        }
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Waits (bounded by [`WAIT`]) until the server's counters satisfy `done`; `what` names
    /// the condition for the failure message. Returns the snapshot that did.
    pub async fn wait_for_stats(
        &self,
        what: &str,
        done: impl Fn(&StatsSnapshot) -> bool,
    ) -> StatsSnapshot {
        wait_for_stats(&self.stats, what, done).await
    }

    /// Stops the server and waits (bounded) until it has finished.
    pub async fn shutdown(self) {
        self.stop.cancel();
        self.finished().await;
    }

    /// Waits (bounded) until the server has stopped by itself.
    pub async fn finished(self) {
        tokio::time::timeout(WAIT, self.handle)
            .await
            .expect("server did not stop in time")
            .unwrap();
    }

    pub async fn connect(&self) -> Raw {
        Raw::connect(&self.addr).await
    }
}

/// A raw TCP client that writes exact bytes and reads frames.
pub struct Raw {
    pub stream: TcpStream,
    buf: BytesMut,
    decoder: FrameDecoder,
}

impl Raw {
    pub async fn connect(addr: &str) -> Raw {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .unwrap()
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Raw {
            stream,
            buf: BytesMut::new(),
            decoder: FrameDecoder::default(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// The next frame, `None` if the server closed the connection, panics after `within`.
    pub async fn frame_within(&mut self, within: Duration) -> Option<Bytes> {
        tokio::time::timeout(within, self.next_frame())
            .await
            .expect("no frame in time")
    }

    pub async fn frame(&mut self) -> Bytes {
        self.frame_within(WAIT).await.expect("connection closed")
    }

    /// `true` if nothing at all arrives within `quiet` (the connection stays open and silent).
    pub async fn silent_for(&mut self, quiet: Duration) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut byte = [0u8; 1];
        tokio::time::timeout(quiet, self.stream.peek(&mut byte))
            .await
            .is_err()
    }

    /// Waits (bounded) for the server to close the connection; bytes before that are returned.
    pub async fn closed(&mut self) -> Vec<u8> {
        let mut rest = self.buf.split().to_vec();
        tokio::time::timeout(WAIT, self.stream.read_to_end(&mut rest))
            .await
            .expect("server did not close the connection")
            .ok();
        rest
    }

    /// The next frame, `None` if the server closed the connection (or it failed); unbounded.
    pub async fn next_frame(&mut self) -> Option<Bytes> {
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buf).unwrap() {
                return Some(frame);
            }
            if self.stream.read_buf(&mut self.buf).await.unwrap_or(0) == 0 {
                return None;
            }
        }
    }
}

/// The stamp edgecam puts in every frame it encodes.
pub fn stamp(frame: &[u8]) -> edgecam_core::jpeg::Stamp {
    edgecam_core::jpeg::Stamp::find(frame).expect("frame carries no edgecam stamp")
}

/// The sequence number edgecam stamped into `frame`.
pub fn seq(frame: &[u8]) -> u64 {
    stamp(frame).seq
}

/// A server config changed by `change`, for the tests that need other limits.
pub fn config_with(change: impl FnOnce(&mut ServerConfig)) -> ServerConfig {
    let mut config = config();
    change(&mut config);
    config
}

/// Asserts that `frame` is one whole baseline JPEG (`FF D8` .. `FF D9`) that decodes to a
/// `width` x `height` picture.
pub fn assert_jpeg(frame: &[u8], width: u16, height: u16) {
    assert!(
        edgecam_core::jpeg::is_jpeg(frame),
        "not a whole JPEG image: {} bytes starting {:02X?}",
        frame.len(),
        &frame[..frame.len().min(4)]
    );
    let mut decoder = jpeg_decoder::Decoder::new(frame);
    let pixels = decoder.decode().expect("the frame does not decode");
    let info = decoder.info().unwrap();
    assert_eq!((info.width, info.height), (width, height));
    assert_eq!(
        pixels.len(),
        usize::from(width) * usize::from(height) * info.pixel_format.pixel_bytes()
    );
}

/// Splits what a server sent into whole frames; panics if anything but whole frames is there
/// (text, a bad length, or a frame cut short).
pub fn whole_frames(bytes: &[u8]) -> Vec<Bytes> {
    let mut buf = BytesMut::from(bytes);
    let mut decoder = FrameDecoder::default();
    let mut frames = Vec::new();
    while let Some(frame) = decoder.decode(&mut buf).expect("not a frame stream") {
        assert!(
            edgecam_core::jpeg::is_jpeg(&frame),
            "a frame payload is not a JPEG image"
        );
        frames.push(frame);
    }
    assert!(
        buf.is_empty(),
        "{} bytes after the last whole frame: a frame was cut short",
        buf.len()
    );
    frames
}

/// Asserts that the sequence numbers strictly increase.
pub fn assert_increasing(seqs: &[u64]) {
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "seqs do not increase: {seqs:?}"
    );
}

impl Raw {
    /// Connects with a small receive buffer, so that a client that does not read stops the
    /// server's writes soon.
    pub async fn connect_with_recv_buffer(addr: &str, bytes: u32) -> Raw {
        let addr: std::net::SocketAddr = addr.parse().unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(bytes).unwrap();
        let stream = tokio::time::timeout(WAIT, socket.connect(addr)).await;
        Raw::wrap(stream.unwrap().unwrap())
    }

    /// Connects from the loopback address `source` (any of 127/8 reaches the server), as if
    /// from another host.
    pub async fn connect_from(addr: &str, source: &str) -> Raw {
        let addr: std::net::SocketAddr = addr.parse().unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(std::net::SocketAddr::new(source.parse().unwrap(), 0))
            .unwrap();
        let stream = tokio::time::timeout(WAIT, socket.connect(addr)).await;
        Raw::wrap(stream.unwrap().unwrap())
    }

    fn wrap(stream: TcpStream) -> Raw {
        stream.set_nodelay(true).unwrap();
        Raw {
            stream,
            buf: BytesMut::new(),
            decoder: FrameDecoder::default(),
        }
    }

    /// The next `n` frames' sequence numbers.
    pub async fn seqs(&mut self, n: usize) -> Vec<u64> {
        let mut seqs = Vec::with_capacity(n);
        for _ in 0..n {
            seqs.push(seq(&self.frame().await));
        }
        seqs
    }

    /// Every frame that arrives within `span` from now; panics if the server closes the
    /// connection meanwhile.
    pub async fn frames_for(&mut self, span: Duration) -> Vec<Bytes> {
        let deadline = tokio::time::Instant::now() + span;
        let mut frames = Vec::new();
        while let Ok(frame) = tokio::time::timeout_at(deadline, self.next_frame()).await {
            frames.push(frame.expect("connection closed while streaming"));
        }
        frames
    }

    /// The stamps of every frame that arrives within `span` from now.
    pub async fn stamps_for(&mut self, span: Duration) -> Vec<edgecam_core::jpeg::Stamp> {
        let frames = self.frames_for(span).await;
        frames.iter().map(|frame| stamp(frame)).collect()
    }

    /// Reads frames until none has come for `quiet` (bounded by [`WAIT`] in all); returns them.
    pub async fn drain(&mut self, quiet: Duration) -> Vec<Bytes> {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut frames = Vec::new();
        while let Ok(frame) = tokio::time::timeout(quiet, self.next_frame()).await {
            frames.push(frame.expect("connection closed while draining"));
            assert!(
                tokio::time::Instant::now() < deadline,
                "frames kept coming for {WAIT:?}"
            );
        }
        frames
    }
}

/// What a finished `edgecam` process left behind.
#[derive(Debug)]
pub struct Finished {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// The real `edgecam` binary as a child process. Every wait on it is bounded by [`WAIT`]; a
/// child still running when this is dropped is killed.
#[derive(Debug)]
pub struct Edgecam {
    child: std::process::Child,
    stdout: std::sync::mpsc::Receiver<String>,
    stderr: std::sync::mpsc::Receiver<String>,
}

impl Edgecam {
    pub fn spawn(args: &[&str]) -> Edgecam {
        Edgecam::spawn_with(args, |_| {})
    }

    /// [`Edgecam::spawn`], with the command adjusted first (its folder, its environment).
    pub fn spawn_with(args: &[&str], adjust: impl FnOnce(&mut std::process::Command)) -> Edgecam {
        use std::io::{BufRead, Read};
        use std::process::{Command, Stdio};
        let mut command = Command::new(env!("CARGO_BIN_EXE_edgecam"));
        command.args(args).env_remove("RUST_LOG");
        adjust(&mut command);
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start edgecam");
        let (line_tx, stdout) = std::sync::mpsc::channel();
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if line_tx.send(line).is_err() {
                    return;
                }
            }
        });
        let (err_tx, stderr) = std::sync::mpsc::channel();
        let mut err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            let _ = err_tx.send(text);
        });
        Edgecam {
            child,
            stdout,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line on stdout; panics if none comes within [`WAIT`].
    pub fn stdout_line(&self) -> String {
        self.stdout
            .recv_timeout(WAIT)
            .expect("edgecam printed no line in time")
    }

    /// Sends a signal (`TERM`, `INT`, ...) with `kill -s`.
    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args(["-s", name, &self.child.id().to_string()])
            .status()
            .expect("cannot run kill");
        assert!(status.success(), "kill -s {name} failed");
    }

    /// Waits until the process has exited and returns what it printed (the lines not yet taken
    /// with [`Edgecam::stdout_line`]); kills it and panics if that takes longer than
    /// [`TOOL_WAIT`] (a client command waits on its server, slow on a loaded machine).
    pub fn finish(mut self) -> Finished {
        let deadline = std::time::Instant::now() + TOOL_WAIT;
        let left = || deadline.saturating_duration_since(std::time::Instant::now());
        let mut stdout = String::new();
        loop {
            match self.stdout.recv_timeout(left()) {
                Ok(line) => {
                    stdout.push_str(&line);
                    stdout.push('\n');
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    panic!("edgecam did not exit within {TOOL_WAIT:?} (killed)")
                }
            }
        }
        let stderr = self
            .stderr
            .recv_timeout(left())
            .expect("edgecam did not close stderr in time");
        let status = self.child.wait().unwrap();
        Finished {
            status,
            stdout,
            stderr,
        }
    }
}

impl Drop for Edgecam {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `edgecam ARGS` to the end (bounded by [`WAIT`]).
pub fn edgecam(args: &[&str]) -> Finished {
    Edgecam::spawn(args).finish()
}

impl Raw {
    /// One single shot as the legacy client does it: `0`, the frame, `1`.
    pub async fn snap(&mut self) -> Bytes {
        self.send(b"0").await;
        let frame = self.frame().await;
        self.send(b"1").await;
        frame
    }
}

impl TestServer {
    /// A new client that sent `3` and has had its first frame.
    pub async fn streamer(&self) -> Raw {
        let mut client = self.connect().await;
        client.send(b"3").await;
        client.frame().await;
        client
    }
}

impl Raw {
    /// [`Raw::connect`] for a task of its own.
    pub async fn connect_owned(addr: String) -> Raw {
        Raw::connect(&addr).await
    }
}

/// A receive buffer far smaller than one frame: a client that does not read fills it at once.
pub const TINY_RECV_BUFFER: u32 = 4096;

/// Polls `stats` until `done` holds; panics with `what` and the last snapshot after [`WAIT`].
pub async fn wait_for_stats(
    stats: &ServerStats,
    what: &str,
    done: impl Fn(&StatsSnapshot) -> bool,
) -> StatsSnapshot {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let snapshot = stats.snapshot();
        if done(&snapshot) {
            return snapshot;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {WAIT:?}: {what}; the server's counters: {snapshot:?}"
        );
        // Polling: the counters have no change notification.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A child process in a process group of its own, for tests that run real tools (a browser,
/// nginx, ffmpeg). Dropping it kills the whole group, so nothing it started outlives the test,
/// even when the test panics.
pub struct Process {
    name: String,
    child: std::process::Child,
    stdout: Option<std::thread::JoinHandle<Vec<u8>>>,
    stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
}

/// What a finished [`Process`] printed.
#[derive(Debug)]
pub struct Output {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Process {
    /// Starts `command` with stdin closed and stdout and stderr collected; `name` is for messages.
    pub fn spawn(name: &str, mut command: std::process::Command) -> Process {
        use std::os::unix::process::CommandExt;
        use std::process::Stdio;
        let mut child = command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let collect = |mut pipe: Box<dyn std::io::Read + Send>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = pipe.read_to_end(&mut bytes);
                bytes
            })
        };
        let stdout = Some(collect(Box::new(child.stdout.take().unwrap())));
        let stderr = Some(collect(Box::new(child.stderr.take().unwrap())));
        Process {
            name: name.to_owned(),
            child,
            stdout,
            stderr,
        }
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits until the process exits by itself; kills it and panics, with what it printed, if
    /// that takes longer than `within`.
    pub async fn finish(mut self, within: Duration) -> Output {
        let deadline = tokio::time::Instant::now() + within;
        while self.running() {
            if tokio::time::Instant::now() >= deadline {
                self.kill();
                let output = self.output();
                panic!(
                    "{} did not finish within {within:?} (killed); it printed:\n{}\n{}",
                    self.name, output.stdout, output.stderr
                );
            }
            // Polling: a child's exit has no async notification without tokio's `process`.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.output()
    }
    /// Kills the process (and its group), then returns what it printed.
    pub fn stop(mut self) -> Output {
        self.kill();
        self.output()
    }

    fn kill(&mut self) {
        let group = i32::try_from(self.child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw);
        if let Some(group) = group {
            // ESRCH: the group is gone already, which is what we want.
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
        let _ = self.child.wait();
    }

    /// The exit status and output; the process has exited (or was killed).
    fn output(&mut self) -> Output {
        let status = self.child.wait().unwrap();
        let text = |pipe: Option<std::thread::JoinHandle<Vec<u8>>>| {
            pipe.map(|t| String::from_utf8_lossy(&t.join().unwrap_or_default()).into_owned())
                .unwrap_or_default()
        };
        Output {
            status,
            stdout: text(self.stdout.take()),
            stderr: text(self.stderr.take()),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // The group too: a browser's or a server's own children are in it.
        self.kill();
    }
}

/// `pixels` (RGB) as a `width` x `height` JPEG.
pub fn encode_jpeg(pixels: &[u8], width: u16, height: u16) -> Vec<u8> {
    let mut jpeg = Vec::new();
    jpeg_encoder::Encoder::new(&mut jpeg, 85)
        .encode(pixels, width, height, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    jpeg
}

/// A `width` x `height` JPEG of one colour.
pub fn solid_jpeg(rgb: [u8; 3], width: u16, height: u16) -> Vec<u8> {
    encode_jpeg(
        &rgb.repeat(usize::from(width) * usize::from(height)),
        width,
        height,
    )
}

/// A `width` x `height` JPEG with texture in it, different for each `variant`.
pub fn textured_jpeg(width: u16, height: u16, variant: u64) -> Vec<u8> {
    let pixels: Vec<u8> = (0..usize::from(width) * usize::from(height) * 3)
        .map(|i| (i * 7 % 251 + variant as usize * 31) as u8)
        .collect();
    encode_jpeg(&pixels, width, height)
}

/// [`textured_jpeg`] stamped with `seq`, as an edgecam server sends its frames.
pub fn stamped_jpeg(width: u16, height: u16, seq: u64) -> Vec<u8> {
    let mut jpeg = textured_jpeg(width, height, seq);
    edgecam_core::jpeg::Stamp {
        seq,
        captured_at: edgecam_core::time::Timestamp(1_700_000_000_000_000 + seq * 33_000),
    }
    .insert_into(&mut jpeg);
    jpeg
}

/// `jpeg` with its DHT segments taken out, as many UVC cameras send their frames.
pub fn without_huffman_tables(jpeg: &[u8]) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    let mut at = 2;
    while jpeg[at + 1] != 0xDA {
        let len = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
        if jpeg[at + 1] != 0xC4 {
            out.extend_from_slice(&jpeg[at..at + 2 + len]);
        }
        at += 2 + len;
    }
    out.extend_from_slice(&jpeg[at..]);
    out
}

/// How long a real client may take: ffprobe, GStreamer and curl start slowly on a loaded CI
/// machine (the browser and relay tests run beside these).
pub const TOOL_WAIT: Duration = Duration::from_secs(40);

/// Runs `program` to its end (bounded by [`TOOL_WAIT`]) and returns what it printed.
pub async fn run(program: &str, args: &[&str]) -> Output {
    let mut command = std::process::Command::new(program);
    command.args(args);
    Process::spawn(program, command).finish(TOOL_WAIT).await
}
