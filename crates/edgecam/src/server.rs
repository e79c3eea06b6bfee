//! The server: accepts connections on any [`Transport`], runs one [`Session`] per connection
//! and feeds every session from the one capture loop.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edgecam_core::camera::{Camera, CameraError, Capabilities};
use edgecam_core::frame::Frame;
use edgecam_core::session::{CloseReason, Event, Session, SessionConfig};
use edgecam_core::time::{Clock, Timestamp};
use edgecam_core::transport::{CommandSource, Connection, FrameSink, Transport};
use thiserror::Error;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::capture::{CaptureCounters, CaptureLoop, Demand};
use edgecam_encode::Encoder;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub session: SessionConfig,
    /// Connections beyond this many are closed at once, with a log line.
    pub max_clients: usize,
    /// A session whose client has not taken a frame within this time is dropped.
    pub send_timeout: Duration,
    /// How often the stats line is logged; `None` for never.
    pub stats_interval: Option<Duration>,
}

#[derive(Debug, Error)]
pub enum ServerError {
    #[error(transparent)]
    Camera(#[from] CameraError),
    #[error("cannot start the capture thread")]
    CaptureThread(#[source] std::io::Error),
}

/// What one client has been sent, for the stats line.
#[derive(Debug, Default)]
struct ClientCounters {
    sent: AtomicU64,
    skipped: AtomicU64,
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
    clients: Mutex<BTreeMap<u64, (String, Arc<ClientCounters>)>>,
    unknown_bytes: AtomicU64,
    frames_sent: AtomicU64,
    /// Commands from every client, ignored ones included.
    commands: AtomicU64,
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
    /// Clients connected now.
    pub clients: usize,
}

/// A live view of a server's counters, which stays valid while [`Server::run`] runs and after.
#[derive(Debug, Clone)]
pub struct ServerStats {
    shared: Arc<Shared>,
    counters: Arc<CaptureCounters>,
}

impl ServerStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let (shared, capture) = (&self.shared, &self.counters);
        StatsSnapshot {
            captured: capture.captured.load(Ordering::Relaxed),
            encoded: capture.encoded.load(Ordering::Relaxed),
            capture_errors: capture.errors.load(Ordering::Relaxed),
            no_signal: capture.no_signal.load(Ordering::Relaxed),
            capture_idle: capture.idle.load(Ordering::Relaxed),
            frames_sent: shared.frames_sent.load(Ordering::Relaxed),
            commands: shared.commands.load(Ordering::Relaxed),
            unknown_bytes: shared.unknown_bytes.load(Ordering::Relaxed),
            clients: lock(&shared.clients).len(),
        }
    }
}

/// A running server, ready to accept. [`Server::start`] opens the camera, so a camera that
/// cannot be opened is an error before anyone connects.
#[derive(Debug)]
pub struct Server<T: Transport> {
    transport: T,
    shared: Arc<Shared>,
    counters: Arc<CaptureCounters>,
    capabilities: Capabilities,
    camera_name: String,
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
        let camera_name = camera.name();
        let (frames_tx, frames) = watch::channel(None);
        let counters = Arc::new(CaptureCounters::default());
        let demand = Demand::default();
        let capture_done = CaptureLoop {
            camera,
            encoder,
            clock: clock.clone(),
            demand: demand.clone(),
            frames: frames_tx,
            counters: counters.clone(),
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
            clients: Mutex::new(BTreeMap::new()),
            unknown_bytes: AtomicU64::new(0),
            frames_sent: AtomicU64::new(0),
            commands: AtomicU64::new(0),
        });
        Ok(Server {
            transport,
            shared,
            counters,
            capabilities,
            camera_name,
            tasks: TaskTracker::new(),
            capture_done,
        })
    }

    pub fn local_addr(&self) -> String {
        self.transport.local_addr()
    }

    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    pub fn camera_name(&self) -> &str {
        &self.camera_name
    }

    /// The server's counters, to read while it runs.
    pub fn stats(&self) -> ServerStats {
        ServerStats {
            shared: self.shared.clone(),
            counters: self.counters.clone(),
        }
    }

    /// Serves until the stop token is cancelled (Ctrl-C, or `2` with remote shutdown allowed),
    /// then lets every session finish the frame it is sending, releases the camera and returns.
    pub async fn run(self) {
        let shared = &self.shared;
        if let Some(every) = shared.config.stats_interval {
            self.tasks
                .spawn(stats_loop(shared.clone(), self.counters.clone(), every));
        }
        let mut next_id = 0u64;
        loop {
            let accepted = tokio::select! {
                () = shared.stop.cancelled() => break,
                accepted = self.transport.accept() => accepted,
            };
            let conn = match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %crate::error_chain(&e), "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            // Registered here, not in the session task, so a burst of connections is counted
            // as it is accepted.
            let counters = {
                let mut clients = lock(&shared.clients);
                if clients.len() >= shared.config.max_clients {
                    tracing::warn!(
                        peer = %conn.peer,
                        max_clients = shared.config.max_clients,
                        "refusing connection: too many clients (raise --max-clients)"
                    );
                    continue;
                }
                next_id += 1;
                let counters = Arc::new(ClientCounters::default());
                clients.insert(next_id, (conn.peer.clone(), counters.clone()));
                counters
            };
            self.tasks
                .spawn(run_session(shared.clone(), conn, next_id, counters));
        }
        tracing::info!("stopping: finishing frames in flight");
        self.tasks.close();
        self.tasks.wait().await;
        let _ = self.capture_done.await;
        tracing::info!("stopped");
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Drives one session: bytes in, frames out, until the session closes.
async fn run_session<R: CommandSource, W: FrameSink>(
    shared: Arc<Shared>,
    conn: Connection<R, W>,
    id: u64,
    counters: Arc<ClientCounters>,
) {
    let Connection {
        mut reader,
        mut writer,
        peer,
    } = conn;
    tracing::info!(%peer, "client connected");
    let clock = &shared.clock;
    let mut session = Session::new(shared.config.session.clone(), clock.now());
    let mut frames = shared.frames.clone();
    let mut wanting = false;
    // False once the client has shut down its sending side: it may still be reading a stream.
    let mut reading = true;
    let mut buf = [0u8; 1024];
    loop {
        if !reading && !session.wants_frame() {
            // No command can come any more, and nothing is owed.
            session.close(CloseReason::Disconnected);
        }
        while let Some(event) = session.poll_event() {
            log_event(&shared, &peer, event);
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
        tokio::select! {
            biased;
            () = shared.stop.cancelled() => session.close(CloseReason::ServerStopping),
            read = reader.read(&mut buf), if reading => match read {
                Ok(0) => reading = false,
                Ok(n) => {
                    let before = session.stats().commands;
                    session.handle_input(&buf[..n], clock.now());
                    let commands = session.stats().commands - before;
                    shared.commands.fetch_add(commands, Ordering::Relaxed);
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
                        counters.skipped.store(skipped, Ordering::Relaxed);
                        if send(&shared, &peer, &mut writer, &frame).await {
                            counters.sent.fetch_add(1, Ordering::Relaxed);
                            shared.frames_sent.fetch_add(1, Ordering::Relaxed);
                        } else {
                            session.close(CloseReason::Disconnected);
                        }
                    }
                    (Ok(()), _) => {}
                }
            },
            () = sleep_until(clock.as_ref(), deadline) => session.handle_timeout(clock.now()),
        }
    }
    while let Some(event) = session.poll_event() {
        log_event(&shared, &peer, event);
    }
    if wanting {
        shared.demand.release();
    }
    let _ = tokio::time::timeout(shared.config.send_timeout, writer.close()).await;
    lock(&shared.clients).remove(&id);
    let stats = session.stats();
    tracing::info!(
        %peer,
        frames_sent = stats.frames_sent,
        frames_skipped = stats.frames_skipped,
        unknown_bytes = stats.unknown_bytes,
        "client disconnected"
    );
}

/// Sends one frame within the send timeout; `false` when the client is to be dropped.
async fn send<W: FrameSink>(shared: &Shared, peer: &str, writer: &mut W, frame: &Frame) -> bool {
    let timeout = shared.config.send_timeout;
    match tokio::time::timeout(timeout, writer.send_frame(frame)).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %crate::error_chain(&e), "dropping client");
            false
        }
        Err(_) => {
            tracing::warn!(%peer, timeout = ?timeout, "dropping client: it did not take a frame in time");
            false
        }
    }
}

async fn sleep_until(clock: &dyn Clock, deadline: Option<Timestamp>) {
    match deadline {
        Some(deadline) => clock.sleep_until(deadline).await,
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
            tracing::warn!(%peer, "closing: the client sent nothing but unknown bytes");
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
async fn stats_loop(shared: Arc<Shared>, counters: Arc<CaptureCounters>, every: Duration) {
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
            .map(|(peer, c)| {
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
