//! The server: accepts connections on any [`Transport`], tells each connection's protocol from
//! its first byte (legacy or HTTP, [`edgecam_core::protocol`]), runs one [`Session`] per
//! connection and feeds every session from the one capture loop. An HTTP stream is a session
//! that asked to stream, a snapshot one that asked for a single frame and has nothing more
//! to say; only their framing differs from the legacy protocol's.

pub mod access;
pub mod auth;
mod http;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use edgecam_core::camera::{Camera, CameraError, Capabilities};
use edgecam_core::codec::Command;
use edgecam_core::frame::Frame;
use edgecam_core::http::request::{Answer, HeadReader, RequestHead, Route};
use edgecam_core::http::response;
use edgecam_core::limit::{self, RateLimit};
use edgecam_core::protocol::{Framing, Protocol};
use edgecam_core::session::{CloseReason, Event, Session, SessionConfig};
use edgecam_core::time::{Clock, Timestamp};
use edgecam_core::transport::{ByteSink, ByteSource, Connection, Incoming, Transport};
use thiserror::Error;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::capture::{CaptureCounters, CaptureLoop, Demand};
use access::Networks;
use auth::{Users, Verdict};
use edgecam_encode::Encoder;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub session: SessionConfig,
    /// Connections beyond this many, of every protocol, are refused (an HTTP client gets
    /// `503`), with a log line.
    pub max_clients: usize,
    /// Connections from one address beyond this many are refused likewise; 0 for no limit.
    pub max_clients_per_ip: usize,
    /// The peers that may connect at all; `None` for everyone. Others are closed at once.
    pub allow: Option<Networks>,
    /// With users (`--auth-file`), every HTTP request needs one's password (HTTP Basic), and
    /// legacy connections, which cannot carry one, are refused unless from `legacy_allow`.
    pub users: Option<Arc<Users>>,
    pub legacy_allow: Option<Networks>,
    /// A session whose client has not taken a frame within this time is dropped.
    pub send_timeout: Duration,
    /// How often the stats line is logged; `None` for never.
    pub stats_interval: Option<Duration>,
    /// Whether connections that start with an HTTP request are served as HTTP (`--http`);
    /// without, every connection is the legacy protocol.
    pub http: bool,
}

#[derive(Debug, Error)]
pub enum ServerError {
    #[error(transparent)]
    Camera(#[from] CameraError),
    #[error("cannot start the capture thread")]
    CaptureThread(#[source] std::io::Error),
}

/// What one client has been sent, for the stats line and `/state`.
#[derive(Debug)]
struct ClientCounters {
    peer: String,
    /// For the per-address limit.
    ip: Option<std::net::IpAddr>,
    /// Set once the first byte told.
    protocol: OnceLock<Protocol>,
    /// Whether the connection is TLS; set once its handshake is done.
    tls: std::sync::atomic::AtomicBool,
    connected: std::time::Instant,
    sent: AtomicU64,
    skipped: AtomicU64,
}

/// What the camera is, for `/state`.
#[derive(Debug, Clone)]
struct CameraInfo {
    name: String,
    capabilities: Capabilities,
}

/// Everything a session task shares with the server.
#[derive(Debug)]
struct Shared {
    config: ServerConfig,
    clock: Arc<dyn Clock>,
    frames: watch::Receiver<Option<Frame>>,
    demand: Demand,
    /// Cancelled when the server stops; sessions then finish the frame in flight and close.
    stop: CancellationToken,
    capture: Arc<CaptureCounters>,
    camera: CameraInfo,
    started: std::time::Instant,
    clients: Mutex<BTreeMap<u64, Arc<ClientCounters>>>,
    next_id: AtomicU64,
    unknown_bytes: AtomicU64,
    frames_sent: AtomicU64,
    bytes_sent: AtomicU64,
    /// Clients dropped because they did not take a frame in time, or their connection failed.
    dropped: AtomicU64,
    /// Frames streaming clients were behind for, all clients together, finished ones included.
    skipped: AtomicU64,
    /// Connections refused because the server, or the peer's share of it, was full.
    refused: AtomicU64,
    /// Refused connections being told so (an HTTP `503`); bounded, so that a flood of them
    /// costs no more than [`MAX_REFUSING`] tasks.
    refusing: Arc<tokio::sync::Semaphore>,
    /// Log lines about refused connections, which a flood would otherwise repeat.
    refusal_lines: Mutex<RateLimit>,
    /// Commands from every client, ignored ones included.
    commands: AtomicU64,
    /// Frame rates over the last second, for `/state`.
    rates: Mutex<http::Rates>,
}

/// A running server's counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// Frames the camera delivered.
    pub captured: u64,
    /// Frames encoded (or passed through) and published: once each, however many clients
    /// are sent it.
    pub encoded: u64,
    /// Frames lost to camera read or encoding errors.
    pub capture_errors: u64,
    /// "NO SIGNAL" pictures published while the camera was gone.
    pub no_signal: u64,
    /// Times the capture loop stopped reading the camera because no session wanted a frame.
    pub capture_idle: u64,
    /// Frames written to clients, all clients together.
    pub frames_sent: u64,
    /// Commands received from clients, ignored ones included.
    pub commands: u64,
    pub unknown_bytes: u64,
    /// Clients dropped for not taking a frame in time or a failed connection.
    pub dropped: u64,
    /// Clients connected now.
    pub clients: usize,
}

/// A live view of a server's counters, which stays valid while [`Server::run`] runs and after.
#[derive(Debug, Clone)]
pub struct ServerStats {
    shared: Arc<Shared>,
}

impl ServerStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let (shared, capture) = (&self.shared, &self.shared.capture);
        StatsSnapshot {
            captured: capture.captured.load(Ordering::Relaxed),
            encoded: capture.encoded.load(Ordering::Relaxed),
            capture_errors: capture.errors.load(Ordering::Relaxed),
            no_signal: capture.no_signal.load(Ordering::Relaxed),
            capture_idle: capture.idle.load(Ordering::Relaxed),
            frames_sent: shared.frames_sent.load(Ordering::Relaxed),
            commands: shared.commands.load(Ordering::Relaxed),
            unknown_bytes: shared.unknown_bytes.load(Ordering::Relaxed),
            dropped: shared.dropped.load(Ordering::Relaxed),
            clients: lock(&shared.clients).len(),
        }
    }
}

/// A running server, ready to accept. [`Server::start`] opens the camera, so a camera that
/// cannot be opened is an error before anyone connects.
#[derive(Debug)]
pub struct Server<T: Transport> {
    transports: Vec<T>,
    shared: Arc<Shared>,
    tasks: TaskTracker,
    capture_done: oneshot::Receiver<()>,
}

impl<T: Transport> Server<T> {
    pub async fn start(
        transport: T,
        mut camera: Box<dyn Camera>,
        encoder: Encoder,
        clock: Arc<dyn Clock>,
        config: ServerConfig,
        stop: CancellationToken,
    ) -> Result<Self, ServerError> {
        let capabilities = camera.open().await?;
        let camera_info = CameraInfo {
            name: camera.name(),
            capabilities,
        };
        let (frames_tx, frames) = watch::channel(None);
        let capture = Arc::new(CaptureCounters::default());
        let demand = Demand::default();
        let capture_done = CaptureLoop {
            camera,
            encoder,
            clock: clock.clone(),
            demand: demand.clone(),
            frames: frames_tx,
            counters: capture.clone(),
            stop: stop.clone(),
        }
        .spawn()
        .map_err(ServerError::CaptureThread)?;
        let shared = Arc::new(Shared {
            config,
            clock,
            frames,
            demand,
            stop,
            capture,
            camera: camera_info,
            started: std::time::Instant::now(),
            clients: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(0),
            unknown_bytes: AtomicU64::new(0),
            frames_sent: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            refusing: Arc::new(tokio::sync::Semaphore::new(MAX_REFUSING)),
            refusal_lines: Mutex::new(RateLimit::repeats()),
            commands: AtomicU64::new(0),
            rates: Mutex::new(http::Rates::default()),
        });
        Ok(Server {
            transports: vec![transport],
            shared,
            tasks: TaskTracker::new(),
            capture_done,
        })
    }

    /// Accepts on `transport` too (`--http-bind`): its connections are served like the first
    /// one's, and count toward the same `max_clients`.
    pub fn listen(&mut self, transport: T) {
        self.transports.push(transport);
    }

    /// Where the first transport listens.
    pub fn local_addr(&self) -> String {
        self.transports
            .first()
            .map(Transport::local_addr)
            .unwrap_or_default()
    }

    /// Where every transport listens, the first first.
    pub fn local_addrs(&self) -> Vec<String> {
        self.transports.iter().map(Transport::local_addr).collect()
    }

    pub fn capabilities(&self) -> &Capabilities {
        &self.shared.camera.capabilities
    }

    pub fn camera_name(&self) -> &str {
        &self.shared.camera.name
    }

    /// The server's counters, to read while it runs.
    pub fn stats(&self) -> ServerStats {
        ServerStats {
            shared: self.shared.clone(),
        }
    }

    /// Serves until the stop token is cancelled (Ctrl-C, or `2` with remote shutdown allowed),
    /// then lets every session finish the frame it is sending, releases the camera and returns.
    pub async fn run(self) {
        let shared = &self.shared;
        if let Some(every) = shared.config.stats_interval {
            self.tasks.spawn(stats_loop(shared.clone(), every));
        }
        if shared.config.http {
            self.tasks.spawn(http::rates_loop(shared.clone()));
        }
        for transport in self.transports {
            self.tasks
                .spawn(accept_loop(transport, shared.clone(), self.tasks.clone()));
        }
        shared.stop.cancelled().await;
        tracing::info!("stopping: finishing frames in flight");
        self.tasks.close();
        self.tasks.wait().await;
        let _ = self.capture_done.await;
        tracing::info!("stopped");
    }
}

/// Accepts connections on one transport until the server stops. Nothing here waits on a
/// peer: handshakes run in each connection's own task.
async fn accept_loop<T: Transport>(transport: T, shared: Arc<Shared>, tasks: TaskTracker) {
    loop {
        let accepted = tokio::select! {
            () = shared.stop.cancelled() => return,
            accepted = transport.accept() => accepted,
        };
        let incoming = match accepted {
            Ok(incoming) => incoming,
            Err(e) => {
                // Typically out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %crate::error_chain(&e), "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let ip = incoming.ip();
        if let (Some(allow), Some(ip)) = (&shared.config.allow, ip)
            && !allow.contains(ip)
        {
            shared.refused.fetch_add(1, Ordering::Relaxed);
            refusal_line(
                &shared,
                incoming.peer(),
                format_args!("refusing connection: not in --allow (add its network to --allow)"),
            );
            continue;
        }
        match register(&shared, incoming.peer(), ip) {
            Ok((id, counters)) => {
                tasks.spawn(run_session(shared.clone(), incoming, id, counters));
            }
            Err(full) => {
                shared.refused.fetch_add(1, Ordering::Relaxed);
                refusal_line(
                    &shared,
                    incoming.peer(),
                    format_args!("refusing connection: {} ({})", full.why(), full.remedy()),
                );
                // Told so if a task is free to tell it; else closed at once.
                if let Ok(permit) = shared.refusing.clone().try_acquire_owned() {
                    tasks.spawn(refuse(shared.clone(), incoming, full, permit));
                }
            }
        }
    }
}

/// Why a connection was refused for lack of room.
#[derive(Debug, Clone, Copy)]
enum Full {
    /// `--max-clients` connections are open.
    Server,
    /// `--max-clients-per-ip` connections from the peer's address are open.
    Address,
}

impl Full {
    fn why(self) -> &'static str {
        match self {
            Full::Server => "server full: too many clients",
            Full::Address => "server full for this address: too many clients from it",
        }
    }

    fn remedy(self) -> &'static str {
        match self {
            Full::Server => "raise --max-clients",
            Full::Address => "raise --max-clients-per-ip",
        }
    }
}

/// Refused connections told so at the same time, at most; more are closed at once.
const MAX_REFUSING: usize = 16;
/// How long a refused connection may take to show its protocol and take its answer.
const REFUSE_WAIT: Duration = Duration::from_secs(2);
/// What a refused HTTP client is told to wait before it tries again.
const RETRY_AFTER_SECS: u32 = 5;

/// Registers a new connection, counted from here (not from its task) so that a burst of
/// connections is counted as it is accepted; or says why there is no room.
fn register(
    shared: &Shared,
    peer: &str,
    ip: Option<std::net::IpAddr>,
) -> Result<(u64, Arc<ClientCounters>), Full> {
    let mut clients = lock(&shared.clients);
    if clients.len() >= shared.config.max_clients {
        return Err(Full::Server);
    }
    let per_ip = shared.config.max_clients_per_ip;
    if per_ip > 0 && ip.is_some() && clients.values().filter(|c| c.ip == ip).count() >= per_ip {
        return Err(Full::Address);
    }
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed) + 1;
    let counters = Arc::new(ClientCounters {
        peer: peer.to_owned(),
        ip,
        protocol: OnceLock::new(),
        tls: std::sync::atomic::AtomicBool::new(false),
        connected: std::time::Instant::now(),
        sent: AtomicU64::new(0),
        skipped: AtomicU64::new(0),
    });
    clients.insert(id, counters.clone());
    Ok((id, counters))
}

/// One log line for a refused connection, at most one a second with a count of the rest.
/// Refusals come in floods (a full server, a password guesser), so their lines are limited.
fn refusal_line(shared: &Shared, peer: &str, message: std::fmt::Arguments<'_>) {
    if let limit::Verdict::Log { suppressed } =
        lock(&shared.refusal_lines).check(std::time::Instant::now())
    {
        tracing::warn!(%peer, suppressed, "{message}");
    }
}

/// Tells a refused connection so where its protocol allows: an HTTP client gets `503` with
/// `Retry-After`; a legacy connection is closed, since nothing but frames may go on its wire.
async fn refuse<I: Incoming>(
    shared: Arc<Shared>,
    incoming: I,
    full: Full,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    let peer = incoming.peer().to_owned();
    let telling = tokio::time::timeout(REFUSE_WAIT, async {
        let mut conn = incoming.establish().await?;
        let mut first = [0u8; 1];
        if conn.reader.read(&mut first).await? == 0
            || Protocol::detect(first[0], shared.config.http) != Protocol::Http
        {
            return Ok(false);
        }
        let answer = response::unavailable(RETRY_AFTER_SECS, full.why());
        conn.writer.write_all(&[&answer]).await?;
        conn.writer.close().await?;
        // The request's rest is read, so that closing does not reset the connection before
        // the client has read the answer.
        let mut rest = [0u8; 1024];
        while conn.reader.read(&mut rest).await? > 0 {}
        Ok::<_, edgecam_core::transport::TransportError>(true)
    });
    let told = tokio::select! {
        () = shared.stop.cancelled() => return,
        told = telling => told,
    };
    tracing::debug!(%peer, ?told, "refused connection done");
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a connection's bytes are, as far as the session task has read them.
#[derive(Debug)]
enum Wire {
    /// Nothing has arrived yet.
    Undecided,
    /// Legacy command bytes, fed to the session.
    Legacy,
    /// An HTTP request head, still arriving.
    HttpHead(HeadReader),
    /// The request was read: what the peer sends now is only counted (`extra` bytes), and
    /// too much of it closes the connection.
    HttpAnswered { extra: usize },
}

/// Runs one connection's handshake, then its session; unregisters it at the end.
async fn run_session<I: Incoming>(
    shared: Arc<Shared>,
    incoming: I,
    id: u64,
    counters: Arc<ClientCounters>,
) {
    let peer = incoming.peer().to_owned();
    let wait = shared
        .config
        .session
        .handshake_timeout
        .unwrap_or(ESTABLISH_WAIT);
    let established = tokio::select! {
        // A stop does not wait for handshakes.
        () = shared.stop.cancelled() => None,
        established = tokio::time::timeout(wait, incoming.establish()) => Some(established),
    };
    match established {
        None => {}
        Some(Ok(Ok(conn))) => serve_session(&shared, conn, id, &counters).await,
        Some(Ok(Err(e))) => {
            tracing::info!(%peer, error = %crate::error_chain(&e), "closing: the connection failed before its first byte")
        }
        Some(Err(_)) => {
            tracing::info!(%peer, seconds = wait.as_secs_f64(), "closing: the handshake did not end within the handshake timeout")
        }
    }
    lock(&shared.clients).remove(&id);
}

/// How long a handshake (TLS) may take when the handshake timeout is off.
const ESTABLISH_WAIT: Duration = Duration::from_secs(30);

/// Drives one session: bytes in, frames out, until the session closes.
async fn serve_session<R: ByteSource, W: ByteSink>(
    shared: &Arc<Shared>,
    conn: Connection<R, W>,
    id: u64,
    counters: &ClientCounters,
) {
    let Connection {
        mut reader,
        mut writer,
        peer,
        secure,
    } = conn;
    counters.tls.store(secure, Ordering::Relaxed);
    tracing::info!(%peer, tls = secure, "client connected");
    let clock = &shared.clock;
    let mut session = Session::new(shared.config.session.clone(), clock.now());
    let mut frames = shared.frames.clone();
    let mut wire = Wire::Undecided;
    let mut framing = Framing::Legacy;
    // The last frame sent on a multipart stream and when, to send again after a quiet second.
    let mut last_part: Option<(Frame, tokio::time::Instant)> = None;
    let mut wanting = false;
    // True once no command can come any more: a legacy client shut down its sending side (it
    // may still be reading a stream), or an HTTP client's one request was read.
    let mut commands_over = false;
    // False once the peer's side has ended. An HTTP peer is read on after its request, so
    // that one that went away is noticed even while no frame is being written.
    let mut reading = true;
    let mut buf = [0u8; 1024];
    loop {
        if commands_over && !session.wants_frame() {
            // Nothing is owed, and nothing more can be asked for.
            session.close(CloseReason::Disconnected);
        }
        while let Some(event) = session.poll_event() {
            log_event(shared, &peer, event);
        }
        if session.is_closed() {
            break;
        }
        if session.wants_frame() != wanting {
            wanting = !wanting;
            if wanting {
                shared.demand.want();
            } else {
                shared.demand.release();
            }
        }
        let deadline = session.poll_timeout();
        let repeat_at = last_part
            .as_ref()
            .filter(|_| wanting)
            .map(|(_, at)| *at + REPEAT_AFTER);
        tokio::select! {
            biased;
            () = shared.stop.cancelled() => session.close(CloseReason::ServerStopping),
            read = reader.read(&mut buf), if reading => match read {
                Ok(0) if matches!(wire, Wire::HttpAnswered { .. }) => {
                    // HTTP clients do not half-close: the viewer is gone.
                    session.close(CloseReason::Disconnected);
                }
                Ok(0) => {
                    reading = false;
                    commands_over = true;
                }
                Ok(n) => {
                    let input = Input { shared, peer: &peer, id, counters };
                    match input.bytes(&mut wire, &mut session, &buf[..n]).await {
                        Next::Read => {}
                        Next::Frames(f, head) => {
                            framing = f;
                            commands_over = true;
                            if !head.is_empty() && !send(shared, &peer, &mut writer, &[&head]).await {
                                session.close(CloseReason::Disconnected);
                            }
                        }
                        Next::Answer(bytes) => {
                            commands_over = true;
                            if send(shared, &peer, &mut writer, &[&bytes]).await {
                                session.close(CloseReason::Answered);
                            } else {
                                session.close(CloseReason::Disconnected);
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(%peer, error = %crate::error_chain(&e), "read failed");
                    session.close(CloseReason::Disconnected);
                }
            },
            changed = frames.changed(), if wanting => {
                let frame = frames.borrow_and_update().clone();
                match (changed, frame) {
                    (Err(_), _) => session.close(CloseReason::ServerStopping),
                    (Ok(()), Some(frame)) if session.handle_frame(&frame, clock.now()) => {
                        let skipped = session.stats().frames_skipped;
                        let newly_skipped = skipped - counters.skipped.swap(skipped, Ordering::Relaxed);
                        shared.skipped.fetch_add(newly_skipped, Ordering::Relaxed);
                        if send_frame(shared, &peer, &mut writer, framing, &frame).await {
                            counters.sent.fetch_add(1, Ordering::Relaxed);
                            if matches!(framing, Framing::Multipart { .. }) {
                                last_part = Some((frame, tokio::time::Instant::now()));
                            }
                        } else {
                            session.close(CloseReason::Disconnected);
                        }
                    }
                    (Ok(()), _) => {}
                }
            },
            () = sleep_until_instant(repeat_at) => {
                // Browsers show a part once the next begins; a camera that stopped (a frozen
                // scene, a stalled pipe) would leave the page a frame behind, and some proxies
                // drop a connection that is quiet for long. So the newest frame goes again.
                if let Some((frame, at)) = last_part.as_mut() {
                    *at = tokio::time::Instant::now();
                    if !send_frame(shared, &peer, &mut writer, framing, frame).await {
                        session.close(CloseReason::Disconnected);
                    }
                }
            },
            () = sleep_until(clock.as_ref(), deadline) => session.handle_timeout(clock.now()),
        }
    }
    while let Some(event) = session.poll_event() {
        log_event(shared, &peer, event);
    }
    if wanting {
        shared.demand.release();
    }
    let _ = tokio::time::timeout(shared.config.send_timeout, writer.close()).await;
    let stats = session.stats();
    tracing::info!(
        %peer,
        protocol = counters.protocol.get().map_or("none", |p| p.name()),
        frames_sent = stats.frames_sent,
        frames_skipped = stats.frames_skipped,
        unknown_bytes = stats.unknown_bytes,
        "client disconnected"
    );
}

/// A multipart stream with no new frame for this long sends the newest frame again.
const REPEAT_AFTER: Duration = Duration::from_secs(1);

/// What the session task does after a peer's bytes.
enum Next {
    /// Read on.
    Read,
    /// The request was for frames, framed like this, after the head given (if any); nothing
    /// more is read.
    Frames(Framing, Vec<u8>),
    /// Send this whole response and close.
    Answer(Vec<u8>),
}

/// How long a request may wait for its password to be checked (they are checked one at a
/// time) before it is answered `503`.
const AUTH_WAIT: Duration = Duration::from_secs(10);

/// The realm of `401` answers: browsers show it in their password prompt.
const REALM: &str = "edgecam";

/// A peer's bytes, taken by the protocol its first byte chose.
struct Input<'a> {
    shared: &'a Shared,
    peer: &'a str,
    id: u64,
    counters: &'a ClientCounters,
}

/// Bytes an HTTP peer may send after its request (no route takes a body) before it is closed.
const MAX_HTTP_EXTRA: usize = 64 * 1024;

impl Input<'_> {
    async fn bytes(&self, wire: &mut Wire, session: &mut Session, bytes: &[u8]) -> Next {
        let now = self.shared.clock.now();
        if let (Wire::Undecided, Some(&first)) = (&wire, bytes.first()) {
            let protocol = Protocol::detect(first, self.shared.config.http);
            let _ = self.counters.protocol.set(protocol);
            tracing::debug!(peer = %self.peer, protocol = protocol.name(), "protocol");
            *wire = match protocol {
                Protocol::Legacy => Wire::Legacy,
                Protocol::Http => Wire::HttpHead(HeadReader::new()),
            };
            if protocol == Protocol::Legacy && !self.legacy_allowed() {
                refusal_line(
                    self.shared,
                    self.peer,
                    format_args!(
                        "refusing legacy connection: passwords are required (--auth-file) and \
                         the legacy protocol cannot carry one; let the old scripts in from \
                         their network with --legacy-allow CIDR"
                    ),
                );
                session.close(CloseReason::Refused);
                return Next::Read;
            }
        }
        match wire {
            Wire::Undecided => Next::Read,
            Wire::HttpAnswered { extra } => {
                *extra = extra.saturating_add(bytes.len());
                if *extra > MAX_HTTP_EXTRA {
                    tracing::info!(peer = %self.peer, "closing: the HTTP client keeps sending after its request");
                    session.close(CloseReason::Garbage);
                }
                Next::Read
            }
            Wire::Legacy => {
                let before = session.stats().commands;
                session.handle_input(bytes, now);
                let commands = session.stats().commands - before;
                self.shared.commands.fetch_add(commands, Ordering::Relaxed);
                Next::Read
            }
            Wire::HttpHead(reader) => {
                let head = match reader.push(bytes) {
                    Ok(None) => return Next::Read,
                    Ok(Some(head)) => head,
                    Err(e) => {
                        *wire = Wire::HttpAnswered { extra: 0 };
                        tracing::info!(peer = %self.peer, error = %e, "bad HTTP request");
                        return Next::Answer(response::error(e.status(), &e.to_string()));
                    }
                };
                *wire = Wire::HttpAnswered { extra: 0 };
                self.request(session, head).await
            }
        }
    }

    /// Whether a legacy connection may go on: always without passwords; with them, only
    /// from `--legacy-allow`.
    fn legacy_allowed(&self) -> bool {
        let config = &self.shared.config;
        config.users.is_none()
            || matches!(
                (&config.legacy_allow, self.counters.ip),
                (Some(allow), Some(ip)) if allow.contains(ip)
            )
    }

    /// What a whole request head is answered with: `401` without a user's password where
    /// passwords are required (`OPTIONS` aside: browsers send no credentials with it), else
    /// what its route asks for.
    async fn request(&self, session: &mut Session, head: RequestHead) -> Next {
        let answer = edgecam_core::http::request::route(&head);
        tracing::debug!(peer = %self.peer, path = %head.path, ?answer, "HTTP request");
        if let (Some(users), false) = (&self.shared.config.users, answer == Answer::Options) {
            let check = tokio::time::timeout(AUTH_WAIT, users.check(head.header("authorization")));
            match check.await {
                Err(_) => {
                    // Password checks run one at a time: a crowd of guessers makes a queue.
                    refusal_line(
                        self.shared,
                        self.peer,
                        format_args!(
                            "refusing HTTP request: its password was not checked within {AUTH_WAIT:?} (503)"
                        ),
                    );
                    return Next::Answer(response::unavailable(
                        RETRY_AFTER_SECS,
                        "too many password checks at once",
                    ));
                }
                Ok(Verdict::Allowed { user }) => {
                    tracing::debug!(peer = %self.peer, %user, "HTTP user");
                }
                Ok(Verdict::Denied(reason)) => {
                    let reason = crate::error_chain(&reason);
                    refusal_line(
                        self.shared,
                        self.peer,
                        format_args!("refusing HTTP request for {}: {reason} (401)", head.path),
                    );
                    return Next::Answer(response::unauthorized(REALM));
                }
            }
        }
        let now = self.shared.clock.now();
        match answer {
            Answer::Serve {
                route: Route::Stream { advance_headers },
                head_only: true,
            } => Next::Answer(response::stream_head(true, advance_headers)),
            Answer::Serve {
                route: Route::Stream { advance_headers },
                head_only: false,
            } => {
                session.handle_command(Command::Stream, now);
                self.shared.commands.fetch_add(1, Ordering::Relaxed);
                Next::Frames(
                    Framing::Multipart { advance_headers },
                    response::stream_head(false, advance_headers),
                )
            }
            Answer::Serve {
                route: Route::Snapshot,
                head_only,
            } => {
                session.handle_command(Command::Single, now);
                self.shared.commands.fetch_add(1, Ordering::Relaxed);
                Next::Frames(Framing::Snapshot { head_only }, Vec::new())
            }
            Answer::Serve { route, head_only } => {
                Next::Answer(http::render(self.shared, route, head_only, self.id))
            }
            Answer::Options => Next::Answer(response::options()),
            Answer::Error(status, message) => Next::Answer(response::error(status, message)),
        }
    }
}

/// Frames one frame for `framing` and sends it; `false` when the client is to be dropped.
async fn send_frame<W: ByteSink>(
    shared: &Shared,
    peer: &str,
    writer: &mut W,
    framing: Framing,
    frame: &Frame,
) -> bool {
    let framed = match framing.frame(frame) {
        Ok(framed) => framed,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "dropping client: the frame cannot be framed");
            return false;
        }
    };
    let body: &[u8] = if framed.body { &frame.jpeg } else { b"" };
    let sent = send(
        shared,
        peer,
        writer,
        &[framed.head.as_bytes(), body, framed.tail],
    )
    .await;
    if sent {
        shared.frames_sent.fetch_add(1, Ordering::Relaxed);
    }
    sent
}

/// Sends `bufs` within the send timeout; `false` when the client is to be dropped.
async fn send<W: ByteSink>(shared: &Shared, peer: &str, writer: &mut W, bufs: &[&[u8]]) -> bool {
    let timeout = shared.config.send_timeout;
    match tokio::time::timeout(timeout, writer.write_all(bufs)).await {
        Ok(Ok(())) => {
            let len: usize = bufs.iter().map(|b| b.len()).sum();
            shared.bytes_sent.fetch_add(len as u64, Ordering::Relaxed);
            return true;
        }
        Ok(Err(e)) => tracing::info!(%peer, error = %crate::error_chain(&e), "dropping client"),
        Err(_) => {
            tracing::warn!(%peer, timeout = ?timeout, "dropping client: it did not take a frame in time");
        }
    };
    shared.dropped.fetch_add(1, Ordering::Relaxed);
    false
}

async fn sleep_until(clock: &dyn Clock, deadline: Option<Timestamp>) {
    match deadline {
        Some(deadline) => clock.sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_instant(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn log_event(shared: &Shared, peer: &str, event: Event) {
    match event {
        Event::Unknown(byte) => {
            shared.unknown_bytes.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, byte = %std::ascii::escape_default(byte), "unknown command byte ignored");
        }
        Event::Ignored(cmd) => tracing::debug!(%peer, ?cmd, "command has no effect in this state"),
        Event::ShutdownRequested => {
            tracing::info!(%peer, "client asked the server to stop (remote shutdown is allowed)");
            shared.stop.cancel();
        }
        Event::Closed(CloseReason::Garbage) => {
            tracing::warn!(%peer, "closing: the client keeps sending bytes that change nothing (unknown bytes, no-op commands)");
        }
        Event::Closed(CloseReason::HandshakeTimeout) => {
            tracing::info!(%peer, "closing: no command within the handshake timeout");
        }
        Event::Closed(CloseReason::IdleTimeout) => {
            tracing::info!(%peer, "closing: idle for longer than the idle timeout");
        }
        Event::Closed(reason) => tracing::debug!(%peer, ?reason, "session closed"),
    }
}

/// Logs one line every `every`: clients, rates, and each client's skipped frames.
async fn stats_loop(shared: Arc<Shared>, every: Duration) {
    let counters = &shared.capture;
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    let mut last = (0, 0, 0);
    loop {
        tokio::select! {
            () = shared.stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let clients = lock(&shared.clients);
        let sent = shared.frames_sent.load(Ordering::Relaxed);
        let captured = counters.captured.load(Ordering::Relaxed);
        let encoded = counters.encoded.load(Ordering::Relaxed);
        if clients.is_empty() && (captured, encoded, sent) == last {
            // Nothing to report on an idle server.
            continue;
        }
        let secs = every.as_secs_f64();
        let rate = |now: u64, before: u64| now.saturating_sub(before) as f64 / secs;
        let skipped: Vec<String> = clients
            .values()
            .map(|c| {
                let peer = &c.peer;
                let sent = c.sent.load(Ordering::Relaxed);
                let skipped = c.skipped.load(Ordering::Relaxed);
                format!("{peer}:sent={sent},skipped={skipped}")
            })
            .collect();
        tracing::info!(
            clients = clients.len(),
            fps_captured = format_args!("{:.1}", rate(captured, last.0)),
            fps_encoded = format_args!("{:.1}", rate(encoded, last.1)),
            fps_sent = format_args!("{:.1}", rate(sent, last.2)),
            camera_errors = counters.errors.load(Ordering::Relaxed),
            unknown_bytes = shared.unknown_bytes.load(Ordering::Relaxed),
            per_client = %skipped.join(" "),
            "stats"
        );
        last = (captured, encoded, sent);
    }
}
