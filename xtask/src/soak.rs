//! `cargo xtask soak [--minutes N]`: one `edgecam serve` under mixed load for N minutes, and
//! the `soak` CI leg (2 minutes).
//!
//! It builds edgecam in release, starts `edgecam serve` on a free loopback port with the
//! synthetic camera and its faults (see [`camera_spec`]) and `--max-clients 96` (see
//! [`MAX_CLIENTS`]), warms it up, and then drives it from threads, each class of client from
//! its own loopback address (Linux routes all of 127/8 to `lo`), none with more than 8
//! connections from one address, so that a per-address limit of 8 refuses no class because
//! of another:
//!
//! - well-behaved: 2 legacy streamers (`3`, every frame read), 2 HTTP `/stream` readers (the
//!   multipart parts parsed, repeats of a frame not counted), 2 legacy single-shooters (`0`,
//!   the frame, `1`; ten shots a connection) and 2 HTTP `/snapshot` loopers;
//! - slow readers, legacy and HTTP, that sleep 500 ms after each frame (so they skip frames);
//! - garbage senders (bytes that are no command and start no HTTP request) and no-op senders
//!   (`q` over and over, never streaming);
//! - slot-holders, 8 connections from each of 4 addresses: 16 that send nothing, 16 that send
//!   one `q` every 3 s; each reconnects whenever the server closes it;
//! - churn: 4 threads connecting and disconnecting, 5,000 cycles a minute in all, in eight
//!   ways (closed at once, reset, after `0` unread, after a single shot, after an unread
//!   snapshot request, after one streamed frame, mid-request, after `2`);
//!
//! while the camera loses every 50th frame, disconnects once a third of the way in (down for
//! 3 s) and stalls once for 2 s two thirds of the way in.
//!
//! It samples the server's open fds, threads and RSS from `/proc/PID` after warm-up, every 2 s,
//! and at the end, once every client has closed and the server has seen them all go; it reads
//! the server's counters from `/metrics`. It prints those figures and, for each client, the
//! frames it got per second and as a share of the frames the server published (the camera's
//! real rate, outages and lost frames included), and it fails, naming the bound and the
//! figures, when:
//!
//! - open fds at the end exceed those at the start by more than [`FD_GROWTH`], threads by more
//!   than [`THREAD_GROWTH`] or RSS by more than [`RSS_GROWTH_KB`];
//! - a well-behaved streamer got less than [`MIN_STREAM_SHARE`] of the published frames;
//! - a single-shooter or snapshot loop failed more than [`MAX_FAILED_SHARE`] of its tries;
//! - the churn made fewer than [`CHURN_PER_MINUTE`] cycles a minute;
//! - the server exited, kept connections open after every client closed, or did not stop
//!   with exit status 0 on SIGTERM.
//!
//! Every socket operation has a timeout, every load thread ends by the deadline, and the server
//! is stopped on every path (a guard kills it when dropped). Its log goes to
//! `<target>/xtask/soak/server.log`.

use crate::kill;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use socket2::{Domain, Protocol, Socket, Type};

use crate::{Ctx, Tally, board::target_dir};

pub(crate) const USAGE: &str = "\
Usage: cargo xtask soak [--minutes N]

Builds edgecam in release and runs one `edgecam serve` (synthetic camera with faults) on
loopback under mixed load for N minutes (default 2; a decimal, e.g. 0.5): legacy and HTTP
streamers, single shots and snapshots, slow readers, garbage and no-op senders,
slot-holders and connect/disconnect churn, each class from its own 127.0.0.x address.
Prints the server's open fds, threads and RSS at start, maximum and end, and each client's
frames per second against the camera's. Fails when fds, threads or RSS grow past their
bounds once every client has closed, a well-behaved streamer gets under 95% of the frames
the server published, single shots or snapshots fail more than 1% of tries, the churn
falls short of 5,000 cycles a minute, or the server exits or does not stop cleanly on
SIGTERM. The server's log goes to <target>/xtask/soak/server.log. Linux only (/proc).

Options:
  --minutes N   how long the load runs
";

/// What CI runs.
pub(crate) const CI_MINUTES: f64 = 2.0;

/// The longest soak `--minutes` takes: a day.
const MAX_MINUTES: f64 = 24.0 * 60.0;

/// Open fds the server may have at the end beyond those at the start. Both are counted with no
/// client connected, so they should be equal; a few are allowed for what the runtime opens on
/// demand. Over a 2-minute run's 10,000 churn cycles, leaking one fd in 600 cycles fails.
const FD_GROWTH: u64 = 16;

/// Threads the server may have at the end beyond those at the start: its threads are fixed
/// (the runtime's workers, the capture thread), but the runtime's blocking pool may keep an
/// idle thread for 10 s. A thread per connection, or one that never ends, shows at once.
const THREAD_GROWTH: u64 = 4;

/// RSS the server may have at the end beyond that at the start, in kB: 8 MiB. The start is
/// measured after a warm-up that has encoded and sent frames over both protocols, but the
/// allocator keeps some of what the peak load took (frames in flight to slow clients, the
/// buffers of some 80 connections at once) and does not give it back: under 1 MiB in
/// trials, where the whole server stayed under 10 MiB. 8 MiB is about 500 bytes for each of
/// a 2-minute run's 15,000-odd connections, and 35 bytes for each of a 30-minute one's.
const RSS_GROWTH_KB: u64 = 8 * 1024;

/// The least share of the frames the server published that a well-behaved streamer must get.
const MIN_STREAM_SHARE: f64 = 0.95;

/// The largest share of a single-shooter's or snapshot loop's tries that may fail.
const MAX_FAILED_SHARE: f64 = 0.01;

/// Connect/disconnect cycles the churn threads must make, all together, per minute of load.
const CHURN_PER_MINUTE: f64 = 5000.0;

/// `--max-clients`. The load holds some 52 connections at all times (32 of them slot-holders),
/// and churn adds sessions that linger until they are served: a legacy `0` and a close is
/// owed a frame, and that waits out a camera stall (2 s) or outage (a NO SIGNAL picture a
/// second), some 13 such cycles a second. So 64 would fill up in the camera's faults and
/// refuse well-behaved clients for the churn's sake; 96 leaves room for all of it today, and
/// with at most 8 per address (4 churn addresses: 32) too.
const MAX_CLIENTS: usize = 96;

/// The camera: the natural scene (real JPEG sizes), at 30 fps.
const CAMERA: &str = "sim:640x480@30";
const CAMERA_FPS: f64 = 30.0;

/// How long a connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a read or a write may block: the server's own send timeout, and more than the
/// camera's stall and outage leave between two frames.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Load after which the rates are measured: the clients have connected by then.
const RAMP: Duration = Duration::from_secs(3);
/// How often the server process is sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// How often the progress line goes to stderr.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// How long the server may take to start listening.
const START_LIMIT: Duration = Duration::from_secs(30);
/// How long the server may take to see every client go, after they have closed.
const SETTLE_LIMIT: Duration = Duration::from_secs(15);
/// How long the load threads may take to end after the deadline.
const JOIN_LIMIT: Duration = Duration::from_secs(15);
/// How long the server may take to exit after SIGTERM.
const STOP_LIMIT: Duration = Duration::from_secs(10);

/// A legacy frame longer than this is a protocol error, not a frame.
const MAX_FRAME: usize = 16 << 20;
/// An HTTP line longer than this is a protocol error.
const MAX_LINE: usize = 8 << 10;
/// Header lines an HTTP head may have.
const MAX_HEADERS: usize = 64;
/// The multipart boundary line the server sends.
const BOUNDARY: &str = "--edgecam-boundary";

/// How long a slow reader sleeps after each frame.
const SLOW_SLEEP: Duration = Duration::from_millis(500);
/// Single shots on one connection before the shooter reconnects.
const SHOTS_PER_CONNECTION: u32 = 10;
/// Connections each slot-holder thread keeps open: the per-address limit.
const HOLDER_SLOTS: usize = 8;
/// How often a `q` holder sends its `q`.
const HOLDER_Q_EVERY: Duration = Duration::from_secs(3);
/// How often a slot-holder checks whether the server closed a slot.
const HOLDER_CHECK_EVERY: Duration = Duration::from_millis(500);
/// Churn threads, each from its own address.
const CHURN_THREADS: u8 = 4;
/// How long a client waits before it connects again after losing its connection, so that a
/// server that closes every connection at once is not met with a busy loop.
const RETRY_AFTER: Duration = Duration::from_millis(100);

#[derive(Debug, PartialEq)]
pub(crate) struct Args {
    pub minutes: f64,
}

/// `None` for `--help`.
pub(crate) fn parse_args(args: &[OsString]) -> Result<Option<Args>> {
    let mut parsed = Args {
        minutes: CI_MINUTES,
    };
    let mut args = args.iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(arg) = args.next() {
        let minutes = match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--minutes" => args
                .next()
                .with_context(|| format!("--minutes needs a number of minutes\n\n{USAGE}"))?,
            _ => match arg.strip_prefix("--minutes=") {
                Some(minutes) => minutes.to_owned(),
                None => bail!("`{arg}` is not an option of `cargo xtask soak`\n\n{USAGE}"),
            },
        };
        parsed.minutes = minutes
            .parse::<f64>()
            .ok()
            .filter(|m| m.is_finite() && *m > 0.0 && *m <= MAX_MINUTES)
            .with_context(|| {
                format!("--minutes takes a number of minutes above 0, up to {MAX_MINUTES}, got `{minutes}`")
            })?;
    }
    Ok(Some(parsed))
}

/// `cargo xtask soak [args]`.
pub(crate) fn run(ctx: &Ctx, args: &[OsString]) -> Result<()> {
    let Some(args) = parse_args(args)? else {
        print!("{USAGE}");
        return Ok(());
    };
    if let Err(why) = probe() {
        bail!("cannot soak: {why}");
    }
    soak(ctx, args.minutes)
}

/// The CI leg: [`CI_MINUTES`].
pub(crate) fn ci(ctx: &Ctx) -> Result<()> {
    soak(ctx, CI_MINUTES)
}

/// Whether this machine can soak: the server is sampled from `/proc`.
pub(crate) fn probe() -> Result<(), String> {
    if Path::new("/proc/self/status").is_file() && Path::new("/proc/self/fd").is_dir() {
        Ok(())
    } else {
        Err("no /proc/self/status and /proc/self/fd: the soak samples the server from Linux's /proc".to_owned())
    }
}

/// The camera with its faults for a soak of `seconds`: every 50th frame lost throughout; one
/// disconnect a third of the way in, down for 3 s (NO SIGNAL pictures meanwhile); one 2 s stall
/// two thirds of the way in. The sim disconnects and stalls once per camera, so only the lost
/// frames recur.
fn camera_spec(seconds: f64) -> String {
    // Frame numbers count from the server's start; the warm-up takes some 100 frames.
    let frame_at = |share: f64| 100 + (seconds * share * CAMERA_FPS) as u64;
    format!(
        "{CAMERA}#scene=natural&fail_after={}&down_ms=3000&error_every=50&stall_after={}&stall_ms=2000",
        frame_at(1.0 / 3.0),
        frame_at(2.0 / 3.0),
    )
}

fn soak(ctx: &Ctx, minutes: f64) -> Result<()> {
    let build = ["build", "--release", "--locked", "-p", "edgecam"];
    ctx.run(&build, &[], &mut Tally::default())?;
    let target = target_dir(ctx)?;
    let binary = target.join("release").join("edgecam");
    if !binary.is_file() {
        bail!(
            "`cargo build --release -p edgecam` left no {}: is the target directory elsewhere?",
            binary.display()
        );
    }
    let scratch = target.join("xtask").join("soak");
    fs::create_dir_all(&scratch)
        .with_context(|| format!("could not create {}", scratch.display()))?;
    let log = scratch.join("server.log");
    let duration = Duration::from_secs_f64(minutes * 60.0);
    let camera = camera_spec(duration.as_secs_f64());

    let mut server = Server::start(&binary, &camera, &log)?;
    let outcome = drive(&mut server, duration, &camera);
    let stopped = server.stop();
    let mut report = match outcome {
        Ok(report) => report,
        Err(err) => {
            bail!(
                "the soak could not finish: {err:#}\nthe server's log is {}{}",
                log.display(),
                log_tail(&log)
            );
        }
    };
    report.stopped = Some(stopped);
    print!("{report}");
    let failures = report.failures();
    if failures.is_empty() {
        println!("ok: every bound held");
        return Ok(());
    }
    bail!(
        "the soak failed {} bound{}:\n  {}\nthe server's log is {}",
        failures.len(),
        if failures.len() == 1 { "" } else { "s" },
        failures.join("\n  "),
        log.display()
    )
}

/// The last lines of the server's log, to show with an error; not the lines of it closing
/// the garbage senders, which come many times a second and are what the soak asks for.
fn log_tail(log: &Path) -> String {
    let Ok(text) = fs::read_to_string(log) else {
        return String::new();
    };
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| !line.contains("the client sent nothing but unknown bytes"))
        .collect();
    let tail = &lines[lines.len().saturating_sub(15)..];
    let mut out = String::from("; its last lines but the garbage senders':");
    for line in tail {
        out.push_str("\n    ");
        out.push_str(line);
    }
    out
}

// ---------------------------------------------------------------------------------------
// The server

/// The running server: killed when dropped unless it has exited.
#[derive(Debug)]
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    /// Starts `edgecam serve` on a free loopback port, with its log going to `log`, and waits
    /// (bounded) until it answers `/metrics`.
    fn start(binary: &Path, camera: &str, log: &Path) -> Result<Server> {
        let log_file =
            File::create(log).with_context(|| format!("could not create {}", log.display()))?;
        let max_clients = MAX_CLIENTS.to_string();
        let args = [
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--camera",
            camera,
            "--max-clients",
            &max_clients,
        ];
        println!("==> {} {}", binary.display(), args.join(" "));
        let mut child = Command::new(binary)
            .args(args)
            // Warnings only: at info, two lines per connection would make a 30-minute log of
            // some 100 MB.
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("could not start {}", binary.display()))?;
        let stdout = child.stdout.take();
        // From here on, a failure kills it.
        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let first = stdout
            .map(lines_of)
            .ok_or_else(|| anyhow!("the server's stdout was not captured"))?
            .recv_timeout(START_LIMIT)
            .map_err(|err| match err {
                RecvTimeoutError::Timeout => {
                    anyhow!("the server printed nothing within {START_LIMIT:?}")
                }
                RecvTimeoutError::Disconnected => anyhow!(
                    "the server exited before it listened ({}); see {}{}",
                    server.exit_text(),
                    log.display(),
                    log_tail(log)
                ),
            })?;
        // `edgecam serving <camera> (WxH format) on <addr>`
        server.addr = first
            .rsplit_once(" on ")
            .and_then(|(_, addr)| addr.trim().parse().ok())
            .ok_or_else(|| anyhow!("no address in the server's first line: {first:?}"))?;
        let deadline = Instant::now() + START_LIMIT;
        while let Err(err) = server.metrics() {
            server.check_running()?;
            if Instant::now() >= deadline {
                bail!(
                    "the server at {} did not answer /metrics within {START_LIMIT:?}: {err:#}",
                    server.addr
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
        Ok(server)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error if the server has exited.
    fn check_running(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => bail!("the server exited during the soak ({status})"),
            Err(err) => bail!("could not check on the server (pid {}): {err}", self.pid()),
        }
    }

    fn exit_text(&mut self) -> String {
        match wait_bounded(&mut self.child, Duration::from_secs(5)) {
            Ok(Some(status)) => status.to_string(),
            Ok(None) => "still running".to_owned(),
            Err(err) => format!("exit status unknown: {err:#}"),
        }
    }

    /// The server's counters, asked for up to 5 times 200 ms apart: a server that is full for
    /// a moment refuses the soak's own request too.
    fn metrics_patiently(&self) -> Result<Metrics> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.metrics() {
                Ok(metrics) => return Ok(metrics),
                Err(err) if tries >= 5 => {
                    return Err(err.context(format!(
                        "{tries} tries in a row failed (is the server full? see `refusing` in its log)"
                    )));
                }
                Err(_) => thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// The server's counters.
    fn metrics(&self) -> Result<Metrics> {
        let body = http_get(self.addr, "/metrics")?;
        Metrics::parse(&body)
            .with_context(|| format!("could not read the counters in {}/metrics", self.addr))
    }

    /// Stops the server with SIGTERM (a graceful stop) and waits for it, bounded; kills it if
    /// it does not exit in time. What happened, for the report.
    fn stop(&mut self) -> Result<ExitStatus, String> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Err(format!("the server had already exited ({status})"));
        }
        let pid = self.pid().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .map_err(|err| err.to_string())
            .and_then(|status| {
                status
                    .success()
                    .then_some(())
                    .ok_or_else(|| format!("`kill -TERM {pid}` failed ({status})"))
            });
        if let Err(err) = sent {
            kill(&mut self.child);
            return Err(format!(
                "could not send SIGTERM ({err}); the server was killed"
            ));
        }
        match wait_bounded(&mut self.child, STOP_LIMIT) {
            Ok(Some(status)) => Ok(status),
            Ok(None) => {
                kill(&mut self.child);
                Err(format!(
                    "the server did not exit within {STOP_LIMIT:?} of SIGTERM; it was killed"
                ))
            }
            Err(err) => {
                kill(&mut self.child);
                Err(format!("{err:#}; the server was killed"))
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// Waits until `child` exits or `limit` passes (`None`).
fn wait_bounded(child: &mut Child, limit: Duration) -> Result<Option<ExitStatus>> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().context("could not wait for the server")? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Every line `reader` gives, sent as it comes; read to the end even when no one listens
/// any more, so that the writer never meets a closed pipe.
fn lines_of(reader: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// `GET path` over HTTP/1.0 from 127.0.0.1: the body of a `200` response.
fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    let mut conn = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
        .with_context(|| format!("could not connect to {addr} for {path}"))?;
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    conn.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .with_context(|| format!("could not send GET {path} to {addr}"))?;
    let mut response = Vec::new();
    conn.take(1 << 20)
        .read_to_end(&mut response)
        .with_context(|| format!("could not read the answer to GET {path} from {addr}"))?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("GET {path} from {addr}: no whole HTTP head in the answer"))?;
    let status = head.lines().next().unwrap_or_default();
    if !status.contains(" 200 ") {
        bail!("GET {path} from {addr} answered `{status}`, not 200");
    }
    Ok(body.to_owned())
}

/// The server's counters that the soak reads, from `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Metrics {
    /// The camera's frames encoded (or passed through) and published.
    encoded: u64,
    captured: u64,
    camera_errors: u64,
    outages: u64,
    no_signal: u64,
    refused: u64,
    dropped: u64,
    unknown_bytes: u64,
    /// Connected now, every protocol, the one asking included.
    clients: u64,
}

impl Metrics {
    /// Every frame a streaming client could have got: the camera's, and the NO SIGNAL
    /// pictures published while it was gone (which `encoded` does not count).
    fn published(&self) -> u64 {
        self.encoded + self.no_signal
    }

    fn parse(text: &str) -> Result<Metrics> {
        let value = |name: &str| -> Result<u64> {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
                .ok_or_else(|| anyhow!("no `{name}` counter"))
        };
        let clients = text
            .lines()
            .filter_map(|line| line.strip_prefix("edgecam_clients{"))
            .filter_map(|rest| rest.rsplit_once(' ')?.1.parse::<u64>().ok())
            .sum();
        Ok(Metrics {
            encoded: value("edgecam_frames_encoded_total")?,
            captured: value("edgecam_frames_captured_total")?,
            camera_errors: value("edgecam_camera_errors_total")?,
            outages: value("edgecam_camera_outages_total")?,
            no_signal: value("edgecam_no_signal_frames_total")?,
            refused: value("edgecam_clients_refused_total")?,
            dropped: value("edgecam_clients_dropped_total")?,
            unknown_bytes: value("edgecam_unknown_bytes_total")?,
            clients,
        })
    }
}

/// The server process's figures at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Sample {
    fds: u64,
    threads: u64,
    rss_kb: u64,
}

impl Sample {
    fn take(pid: u32) -> Result<Sample> {
        let fds = fs::read_dir(format!("/proc/{pid}/fd"))
            .with_context(|| format!("could not list /proc/{pid}/fd"))?
            .count() as u64;
        let status = fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("could not read /proc/{pid}/status"))?;
        Sample::parse(fds, &status)
            .with_context(|| format!("no Threads: or VmRSS: in /proc/{pid}/status"))
    }

    fn parse(fds: u64, status: &str) -> Option<Sample> {
        let field = |key: &str| {
            status.lines().find_map(|line| {
                let rest = line.strip_prefix(key)?.strip_prefix(':')?;
                rest.split_whitespace().next()?.parse().ok()
            })
        };
        Some(Sample {
            fds,
            threads: field("Threads")?,
            rss_kb: field("VmRSS")?,
        })
    }

    fn max(self, other: Sample) -> Sample {
        Sample {
            fds: self.fds.max(other.fds),
            threads: self.threads.max(other.threads),
            rss_kb: self.rss_kb.max(other.rss_kb),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The run

/// Warms the server up, runs the load for `duration`, and collects the figures; the server
/// serves `camera`.
fn drive(server: &mut Server, duration: Duration, camera: &str) -> Result<Report> {
    println!("==> warm-up: a legacy stream, an HTTP stream, single shots and snapshots");
    warm_up(server.addr).context("the warm-up failed")?;
    let (settled, _) = settle(server)?;
    if settled > 1 {
        bail!(
            "{} connections still open on the server {SETTLE_LIMIT:?} after the warm-up's clients closed",
            settled - 1
        );
    }
    let start = Sample::take(server.pid())?;
    let mut max = start;
    let mut last = start;

    let churn_required = (CHURN_PER_MINUTE * duration.as_secs_f64() / 60.0).ceil() as u64;
    let load = Arc::new(Load {
        server: server.addr,
        stop: AtomicBool::new(false),
        deadline: Instant::now() + duration,
        churn_pace: duration.mul_f64(f64::from(CHURN_THREADS) / (churn_required as f64 * 1.25)),
    });
    let rows = rows();
    println!(
        "==> load for {}: {} clients from 127.0.0.2-{}, churn {churn_required}+ cycles",
        clock(duration),
        rows.len(),
        rows.iter()
            .flat_map(|row| row.sources.iter())
            .map(|ip| ip.octets()[3])
            .max()
            .unwrap_or(2)
    );
    let began = Instant::now();
    let threads = spawn(&rows, &load)?;
    // Stops the load whatever happens below.
    let stopper = StopOnDrop(load.clone());

    let mut window_start = None;
    let mut window_end = None;
    let mut next_sample = began + SAMPLE_EVERY;
    let mut next_progress = began + PROGRESS_EVERY;
    let mut running = Ok(());
    while Instant::now() < load.deadline {
        let left = load.deadline.saturating_duration_since(Instant::now());
        thread::sleep(Duration::from_millis(200).min(left));
        if let Err(err) = server.check_running() {
            running = Err(err);
            break;
        }
        let now = Instant::now();
        if window_start.is_none() && now >= began + RAMP {
            window_start = Some(Window::start(server, &rows));
        }
        if now >= next_sample {
            last = Sample::take(server.pid())?;
            max = max.max(last);
            next_sample += SAMPLE_EVERY;
        }
        if now >= next_progress {
            let connections: u64 = rows
                .iter()
                .map(|r| r.counters.get(&r.counters.connections))
                .sum();
            let frames: u64 = rows
                .iter()
                .map(|r| r.counters.get(&r.counters.frames))
                .sum();
            let camera = server
                .metrics()
                .map(|m| m.published().to_string())
                .unwrap_or_else(|e| format!("? ({e:#})"));
            eprintln!(
                "soak {} / {}: {connections} connections, {frames} frames to clients, {camera} published; server {} fds, {} threads, {:.1} MiB",
                clock(now.saturating_duration_since(began)),
                clock(duration),
                last.fds,
                last.threads,
                last.rss_kb as f64 / 1024.0,
            );
            next_progress += PROGRESS_EVERY;
        }
    }
    if running.is_ok() {
        window_end = Some(Window::end(server, &rows));
    }
    drop(stopper);
    let unfinished = join_bounded(threads, JOIN_LIMIT);
    running?;
    let (window_start, window_end) = match (window_start, window_end) {
        (Some(start), Some(end)) => (start, end),
        _ => bail!("the load ran for less than {RAMP:?}: no rates measured"),
    };
    let (settled, metrics) = settle(server)?;
    let end = Sample::take(server.pid())?;
    max = max.max(end);
    Ok(Report {
        minutes: duration.as_secs_f64() / 60.0,
        camera: camera.to_owned(),
        addr: server.addr,
        start,
        max,
        end,
        metrics,
        window: (window_start, window_end),
        rows: rows
            .iter()
            .map(|row| RowFigures {
                class: row.class,
                label: row.label.clone(),
                source: row.source_text(),
                counters: row.counters.figures(),
            })
            .collect(),
        churn_required,
        unfinished,
        lingering: settled.saturating_sub(1),
        stopped: None,
    })
}

/// Waits (bounded) until the server has no client but the one asking; its counters then.
/// Returns the clients it last saw, the one asking included.
fn settle(server: &mut Server) -> Result<(u64, Metrics)> {
    let deadline = Instant::now() + SETTLE_LIMIT;
    loop {
        server.check_running()?;
        match server.metrics() {
            Ok(metrics) if metrics.clients <= 1 || Instant::now() >= deadline => {
                return Ok((metrics.clients, metrics));
            }
            Err(err) if Instant::now() >= deadline => {
                return Err(err.context(format!(
                    "the server did not answer /metrics {SETTLE_LIMIT:?} after every client closed"
                )));
            }
            Ok(_) | Err(_) => thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// A short use of each well-behaved kind of client, from 127.0.0.1, so that what the server
/// allocates for its first frames and clients is there before the first sample.
fn warm_up(server: SocketAddr) -> Result<()> {
    let load = Load {
        server,
        stop: AtomicBool::new(false),
        deadline: Instant::now() + START_LIMIT,
        churn_pace: Duration::ZERO,
    };
    let ip = Ipv4Addr::LOCALHOST;
    let counters = Counters::default();
    let mut conn = load.connect(ip).map_err(|e| anyhow!("{e}"))?;
    conn.write_all(b"3")?;
    let mut buf = Vec::new();
    for _ in 0..30 {
        read_legacy_frame(&mut conn, &mut buf).map_err(|e| anyhow!("legacy stream: {e}"))?;
    }
    drop(conn);
    let conn = load.connect(ip).map_err(|e| anyhow!("{e}"))?;
    let mut stream = HttpStream::open(conn).map_err(|e| anyhow!("HTTP stream: {e}"))?;
    for _ in 0..30 {
        stream
            .next_part()
            .map_err(|e| anyhow!("HTTP stream: {e}"))?;
    }
    drop(stream);
    for _ in 0..3 {
        if !snapshot(&load, ip, &counters) {
            bail!("snapshot: {}", counters.first_error().unwrap_or_default());
        }
    }
    let mut conn = load.connect(ip).map_err(|e| anyhow!("{e}"))?;
    for _ in 0..3 {
        single_shot(&mut conn, &mut buf).map_err(|e| anyhow!("single shot: {e}"))?;
    }
    Ok(())
}

/// One end of the window the rates are measured over: the frames the server had published,
/// and each row's frames. The clients' counts are read after the server's at the start and
/// before it at the end, so that the clients' window lies inside the server's: a client can
/// only look worse for the time `/metrics` takes, never better.
#[derive(Debug, Clone)]
struct Window {
    at: Instant,
    /// Why not, when the server did not answer `/metrics` (a full server refuses it too).
    published: Result<u64, String>,
    frames: Vec<u64>,
}

impl Window {
    fn start(server: &Server, rows: &[Row]) -> Window {
        let published = server.metrics_patiently().map(|m| m.published());
        Window {
            at: Instant::now(),
            published: published.map_err(|e| format!("at the start of the load: {e:#}")),
            frames: frames(rows),
        }
    }

    fn end(server: &Server, rows: &[Row]) -> Window {
        let frames = frames(rows);
        let at = Instant::now();
        let published = server.metrics_patiently().map(|m| m.published());
        Window {
            at,
            published: published.map_err(|e| format!("at the end of the load: {e:#}")),
            frames,
        }
    }
}

fn frames(rows: &[Row]) -> Vec<u64> {
    rows.iter()
        .map(|row| row.counters.get(&row.counters.frames))
        .collect()
}

/// Joins the threads that end within `limit`; the number that did not.
fn join_bounded(threads: Vec<JoinHandle<()>>, limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline && !threads.iter().all(JoinHandle::is_finished) {
        thread::sleep(Duration::from_millis(50));
    }
    let mut unfinished = 0;
    for handle in threads {
        if handle.is_finished() {
            let _ = handle.join();
        } else {
            unfinished += 1;
        }
    }
    unfinished
}

/// `m:ss`.
fn clock(d: Duration) -> String {
    let secs = d.as_secs();
    format!("{}:{:02}", secs / 60, secs % 60)
}

// ---------------------------------------------------------------------------------------
// The load

/// What every load thread shares.
#[derive(Debug)]
struct Load {
    server: SocketAddr,
    stop: AtomicBool,
    deadline: Instant,
    /// How long each churn thread's cycle takes at least.
    churn_pace: Duration,
}

impl Load {
    fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed) && Instant::now() < self.deadline
    }

    /// Sleeps for `d`, or less once the load ends; whether it still runs.
    fn sleep(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        while self.running() {
            let now = Instant::now();
            if now >= until {
                return true;
            }
            thread::sleep((until - now).min(Duration::from_millis(100)));
        }
        false
    }

    /// A connection to the server from `source`, with timeouts on every read and write.
    fn connect(&self, source: Ipv4Addr) -> Result<TcpStream, String> {
        let what = |e: io::Error| format!("connecting from {source} to {}: {e}", self.server);
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).map_err(what)?;
        socket
            .bind(&SocketAddr::from((source, 0)).into())
            .map_err(what)?;
        socket
            .connect_timeout(&self.server.into(), CONNECT_TIMEOUT)
            .map_err(what)?;
        let conn: TcpStream = socket.into();
        conn.set_read_timeout(Some(IO_TIMEOUT)).map_err(what)?;
        conn.set_write_timeout(Some(IO_TIMEOUT)).map_err(what)?;
        conn.set_nodelay(true).map_err(what)?;
        Ok(conn)
    }
}

/// Sets the load's stop flag when dropped, so that no path leaves the threads running.
struct StopOnDrop(Arc<Load>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::Relaxed);
    }
}

/// What kind of client a row is, which decides what it does and what is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    LegacyStream,
    HttpStream,
    SingleShot,
    Snapshot,
    SlowLegacy,
    SlowHttp,
    Garbage,
    NoOp,
    Silent,
    QHolder,
    Churn,
}

impl Class {
    /// Well-behaved streamers: held to [`MIN_STREAM_SHARE`].
    fn is_stream(self) -> bool {
        matches!(self, Class::LegacyStream | Class::HttpStream)
    }

    /// Well-behaved one-frame loops: held to [`MAX_FAILED_SHARE`].
    fn is_shot(self) -> bool {
        matches!(self, Class::SingleShot | Class::Snapshot)
    }

    /// Whether it asks for frames at all.
    fn gets_frames(self) -> bool {
        !matches!(
            self,
            Class::Garbage | Class::NoOp | Class::Silent | Class::QHolder
        )
    }

    /// Whether its frame rate means anything: the churn's frames come from cycles paced by
    /// the churn, not by the camera.
    fn has_rate(self) -> bool {
        self.gets_frames() && self != Class::Churn
    }
}

/// One line of the report: a client, or a group of them, and the addresses it uses.
#[derive(Debug)]
struct Row {
    class: Class,
    label: String,
    sources: Vec<Ipv4Addr>,
    counters: Arc<Counters>,
}

impl Row {
    fn new(class: Class, label: &str, sources: impl IntoIterator<Item = u8>) -> Row {
        Row {
            class,
            label: label.to_owned(),
            sources: sources
                .into_iter()
                .map(|last| Ipv4Addr::new(127, 0, 0, last))
                .collect(),
            counters: Arc::default(),
        }
    }

    fn source_text(&self) -> String {
        match self.sources.as_slice() {
            [] => String::new(),
            [one] => one.to_string(),
            [first, .., last] => format!("{first}-{}", last.octets()[3]),
        }
    }
}

/// Every client of the load. Each class has its own addresses, none more than 8 connections.
fn rows() -> Vec<Row> {
    let churn_first = 13;
    vec![
        Row::new(Class::LegacyStream, "legacy stream 1", [2]),
        Row::new(Class::LegacyStream, "legacy stream 2", [2]),
        Row::new(Class::HttpStream, "HTTP stream 1", [3]),
        Row::new(Class::HttpStream, "HTTP stream 2", [3]),
        Row::new(Class::SingleShot, "single shots 1", [4]),
        Row::new(Class::SingleShot, "single shots 2", [4]),
        Row::new(Class::Snapshot, "snapshots 1", [5]),
        Row::new(Class::Snapshot, "snapshots 2", [5]),
        Row::new(Class::SlowLegacy, "slow legacy", [6]),
        Row::new(Class::SlowHttp, "slow HTTP", [6]),
        Row::new(Class::Garbage, "garbage 1", [7]),
        Row::new(Class::Garbage, "garbage 2", [7]),
        Row::new(Class::NoOp, "no-op q 1", [8]),
        Row::new(Class::NoOp, "no-op q 2", [8]),
        Row::new(Class::Silent, "silent x8", [9]),
        Row::new(Class::Silent, "silent x8", [10]),
        Row::new(Class::QHolder, "q every 3 s x8", [11]),
        Row::new(Class::QHolder, "q every 3 s x8", [12]),
        Row::new(
            Class::Churn,
            "churn",
            churn_first..churn_first + CHURN_THREADS,
        ),
    ]
}

/// One thread per row and source address.
fn spawn(rows: &[Row], load: &Arc<Load>) -> Result<Vec<JoinHandle<()>>> {
    let mut threads = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        for (n, &source) in row.sources.iter().enumerate() {
            let (load, counters, class) = (load.clone(), row.counters.clone(), row.class);
            let seed = 0x5eed_0000 + (index as u64) * 64 + n as u64;
            let handle = thread::Builder::new()
                .name(format!("soak-{}", row.label))
                .spawn(move || client(class, &load, source, &counters, seed))
                .with_context(|| format!("could not start the thread of `{}`", row.label))?;
            threads.push(handle);
        }
    }
    Ok(threads)
}

/// What one client has done.
#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    /// Frames received whole (for an HTTP stream, distinct frames: a repeat is not counted).
    frames: AtomicU64,
    /// Single shots, snapshots or churn cycles tried.
    tries: AtomicU64,
    /// Tries that failed, or for a streamer connections lost.
    failed: AtomicU64,
    /// Times the server closed one of this client's connections.
    closed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Counters {
    fn add(&self, field: &AtomicU64) {
        field.fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self, field: &AtomicU64) -> u64 {
        field.load(Ordering::Relaxed)
    }

    /// Counts a failure, keeping the first one's text.
    fn fail(&self, error: String) {
        self.add(&self.failed);
        let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert(error);
    }

    fn first_error(&self) -> Option<String> {
        self.first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn figures(&self) -> Figures {
        Figures {
            connections: self.get(&self.connections),
            frames: self.get(&self.frames),
            tries: self.get(&self.tries),
            failed: self.get(&self.failed),
            closed: self.get(&self.closed),
            first_error: self.first_error(),
        }
    }
}

/// A [`Counters`]' values at the end.
#[derive(Debug, Clone, Default, PartialEq)]
struct Figures {
    connections: u64,
    frames: u64,
    tries: u64,
    failed: u64,
    closed: u64,
    first_error: Option<String>,
}

/// Runs one client of `class` from `source` until the load ends.
fn client(class: Class, load: &Load, source: Ipv4Addr, counters: &Counters, seed: u64) {
    let mut rng = Rng(seed | 1);
    match class {
        Class::LegacyStream => legacy_stream(load, source, counters, Duration::ZERO),
        Class::SlowLegacy => legacy_stream(load, source, counters, SLOW_SLEEP),
        Class::HttpStream => http_stream(load, source, counters, Duration::ZERO),
        Class::SlowHttp => http_stream(load, source, counters, SLOW_SLEEP),
        Class::SingleShot => single_shots(load, source, counters),
        Class::Snapshot => {
            while load.running() {
                if !snapshot(load, source, counters) {
                    load.sleep(RETRY_AFTER);
                }
            }
        }
        Class::Garbage => garbage(load, source, counters, &mut rng),
        Class::NoOp => no_op(load, source, counters),
        Class::Silent => hold_slots(load, source, counters, None),
        Class::QHolder => hold_slots(load, source, counters, Some(HOLDER_Q_EVERY)),
        Class::Churn => churn(load, source, counters, &mut rng),
    }
}

/// A connection, counted; on failure the error is counted and the caller waits a little.
fn connect_counted(load: &Load, source: Ipv4Addr, counters: &Counters) -> Option<TcpStream> {
    match load.connect(source) {
        Ok(conn) => {
            counters.add(&counters.connections);
            Some(conn)
        }
        Err(e) => {
            counters.fail(e);
            load.sleep(Duration::from_millis(200));
            None
        }
    }
}

/// Counts an error that ended a connection: the server closing it, or anything else.
fn lost(counters: &Counters, error: Lost) {
    if matches!(error, Lost::Closed | Lost::Refused) {
        counters.add(&counters.closed);
    }
    counters.fail(error.to_string());
}

/// Streams frames with `3`, sleeping `pause` after each; reconnects when the stream ends.
fn legacy_stream(load: &Load, source: Ipv4Addr, counters: &Counters, pause: Duration) {
    let mut buf = Vec::new();
    while load.running() {
        let Some(mut conn) = connect_counted(load, source, counters) else {
            continue;
        };
        if let Err(e) = conn.write_all(b"3") {
            lost(counters, Lost::from(e));
            load.sleep(RETRY_AFTER);
            continue;
        }
        let mut first = true;
        while load.running() {
            match read_legacy_frame(&mut conn, &mut buf) {
                Ok(()) => counters.add(&counters.frames),
                Err(e) => {
                    lost(counters, if first { e.at_first() } else { e });
                    load.sleep(RETRY_AFTER);
                    break;
                }
            }
            first = false;
            load.sleep(pause);
        }
    }
}

/// Reads `/stream`, counting distinct frames, sleeping `pause` after each part; reconnects
/// when the stream ends.
fn http_stream(load: &Load, source: Ipv4Addr, counters: &Counters, pause: Duration) {
    while load.running() {
        let Some(conn) = connect_counted(load, source, counters) else {
            continue;
        };
        let mut stream = match HttpStream::open(conn) {
            Ok(stream) => stream,
            Err(e) => {
                lost(counters, e);
                load.sleep(RETRY_AFTER);
                continue;
            }
        };
        let mut last = None;
        while load.running() {
            match stream.next_part() {
                Ok(timestamp) => {
                    if timestamp.is_none() || timestamp != last {
                        counters.add(&counters.frames);
                    }
                    last = timestamp;
                }
                Err(e) => {
                    lost(counters, e);
                    load.sleep(RETRY_AFTER);
                    break;
                }
            }
            load.sleep(pause);
        }
    }
}

/// `0`, the frame, `1`, [`SHOTS_PER_CONNECTION`] times a connection.
fn single_shots(load: &Load, source: Ipv4Addr, counters: &Counters) {
    let mut buf = Vec::new();
    while load.running() {
        let Some(mut conn) = connect_counted(load, source, counters) else {
            counters.add(&counters.tries);
            continue;
        };
        for shot in 0..SHOTS_PER_CONNECTION {
            if !load.running() {
                break;
            }
            counters.add(&counters.tries);
            match single_shot(&mut conn, &mut buf) {
                Ok(()) => counters.add(&counters.frames),
                Err(e) => {
                    lost(counters, if shot == 0 { e.at_first() } else { e });
                    load.sleep(RETRY_AFTER);
                    break;
                }
            }
        }
    }
}

fn single_shot(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), Lost> {
    conn.write_all(b"0")?;
    read_legacy_frame(conn, buf)?;
    conn.write_all(b"1")?;
    Ok(())
}

/// One `GET /snapshot` on a connection of its own; whether it brought a JPEG.
fn snapshot(load: &Load, source: Ipv4Addr, counters: &Counters) -> bool {
    counters.add(&counters.tries);
    let Some(conn) = connect_counted(load, source, counters) else {
        return false;
    };
    match read_snapshot(conn) {
        Ok(()) => {
            counters.add(&counters.frames);
            true
        }
        Err(e) => {
            lost(counters, e);
            false
        }
    }
}

fn read_snapshot(mut conn: TcpStream) -> Result<(), Lost> {
    conn.write_all(b"GET /snapshot HTTP/1.0\r\nUser-Agent: xtask-soak\r\n\r\n")?;
    let mut reader = BufReader::new(conn);
    let mut line = Vec::new();
    let status = read_line(&mut reader, &mut line).map_err(Lost::at_first)?;
    if !is_ok_status(&status) {
        return Err(Lost::Bad(format!("the snapshot's answer was `{status}`")));
    }
    let head = read_headers(&mut reader, &mut line)?;
    let len = head
        .content_length
        .ok_or_else(|| Lost::Bad("the snapshot had no Content-Length".to_owned()))?;
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    check_jpeg(&body)
}

/// Bytes that are no command, no white space and start no HTTP request, 128 a connection
/// (the server closes a connection after 64 in a row), then waits for the close.
fn garbage(load: &Load, source: Ipv4Addr, counters: &Counters, rng: &mut Rng) {
    let allowed: Vec<u8> = (0..=u8::MAX)
        .filter(|b| !(b"0123q".contains(b) || b.is_ascii_whitespace() || b.is_ascii_uppercase()))
        .collect();
    let mut bytes = vec![0u8; 128];
    while load.running() {
        let Some(mut conn) = connect_counted(load, source, counters) else {
            continue;
        };
        for b in &mut bytes {
            *b = allowed[(rng.next() % allowed.len() as u64) as usize];
        }
        if conn.write_all(&bytes).is_ok() {
            // Read until the server closes it (or the read times out: it kept it open).
            let mut sink = [0u8; 256];
            if let Ok(0) = conn.read(&mut sink) {
                counters.add(&counters.closed);
            }
        }
        load.sleep(Duration::from_millis(20));
    }
}

/// `q` 1024 at a time every 20 ms, never streaming; reconnects when the server closes it.
fn no_op(load: &Load, source: Ipv4Addr, counters: &Counters) {
    let qs = [b'q'; 1024];
    while load.running() {
        let Some(mut conn) = connect_counted(load, source, counters) else {
            continue;
        };
        while load.running() {
            if conn.write_all(&qs).is_err() || is_closed(&conn) {
                counters.add(&counters.closed);
                load.sleep(RETRY_AFTER);
                break;
            }
            load.sleep(Duration::from_millis(20));
        }
    }
}

/// Keeps [`HOLDER_SLOTS`] connections open, sending nothing or one `q` every `q_every`,
/// and opens a slot again whenever the server closed it.
fn hold_slots(load: &Load, source: Ipv4Addr, counters: &Counters, q_every: Option<Duration>) {
    let mut slots: Vec<Option<TcpStream>> = (0..HOLDER_SLOTS).map(|_| None).collect();
    let mut next_q = Instant::now();
    while load.running() {
        let send_q = q_every.is_some_and(|_| Instant::now() >= next_q);
        if let (true, Some(every)) = (send_q, q_every) {
            next_q = Instant::now() + every;
        }
        for slot in &mut slots {
            if !load.running() {
                break;
            }
            if let Some(conn) = slot {
                let alive = !is_closed(conn) && (!send_q || conn.write_all(b"q").is_ok());
                if !alive {
                    counters.add(&counters.closed);
                    *slot = None;
                }
            }
            if slot.is_none() {
                *slot = connect_counted(load, source, counters);
            }
        }
        load.sleep(HOLDER_CHECK_EVERY);
    }
}

/// Connect/disconnect cycles, paced to [`Load::churn_pace`], in eight ways by turn.
fn churn(load: &Load, source: Ipv4Addr, counters: &Counters, rng: &mut Rng) {
    let mut buf = Vec::new();
    let mut next = Instant::now();
    let mut turn = rng.next() % 8;
    while load.running() {
        let Some(mut conn) = connect_counted(load, source, counters) else {
            continue;
        };
        counters.add(&counters.tries);
        turn = (turn + 1) % 8;
        if let Err(e) = churn_cycle(turn, &mut conn, &mut buf, counters) {
            lost(counters, e);
        }
        drop(conn);
        next += load.churn_pace;
        let now = Instant::now();
        if next > now {
            load.sleep(next - now);
        } else if now.saturating_duration_since(next) > Duration::from_secs(1) {
            // Far behind (a busy machine): no burst to catch up.
            next = now;
        }
    }
}

/// One churn cycle on `conn`, the `turn`th of eight ways; the caller closes it.
fn churn_cycle(
    turn: u64,
    conn: &mut TcpStream,
    buf: &mut Vec<u8>,
    counters: &Counters,
) -> Result<(), Lost> {
    match turn {
        // Closed at once.
        0 => {}
        // Reset at once: no FIN, no TIME_WAIT.
        1 => reset_on_close(conn),
        // `0`, then gone before the frame.
        2 => conn.write_all(b"0")?,
        // A whole single shot.
        3 => {
            single_shot(conn, buf)?;
            counters.add(&counters.frames);
        }
        // A snapshot asked for and never read.
        4 => conn.write_all(b"GET /snapshot HTTP/1.0\r\n\r\n")?,
        // One streamed frame, then reset mid-stream.
        5 => {
            conn.write_all(b"3")?;
            read_legacy_frame(conn, buf)?;
            counters.add(&counters.frames);
            reset_on_close(conn);
        }
        // Half an HTTP request.
        6 => conn.write_all(b"GET /str")?,
        // `2`: the end of this session.
        _ => conn.write_all(b"2")?,
    }
    Ok(())
}

/// Linger 0: closing then resets the connection.
fn reset_on_close(conn: &TcpStream) {
    let _ = socket2::SockRef::from(conn).set_linger(Some(Duration::ZERO));
}

/// Whether the server has closed `conn` (or reset it), without waiting.
fn is_closed(conn: &TcpStream) -> bool {
    if conn.set_nonblocking(true).is_err() {
        return true;
    }
    let mut sink = [0u8; 256];
    // Nothing is ever sent to these clients, but what is is read away (up to 16 KiB a check).
    let mut closed = false;
    for _ in 0..64 {
        match (&*conn).read(&mut sink) {
            Ok(0) => closed = true,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => closed = true,
        }
        break;
    }
    closed || conn.set_nonblocking(false).is_err()
}

// ---------------------------------------------------------------------------------------
// Reading what the server sends

/// Why a client's connection or try ended.
#[derive(Debug)]
enum Lost {
    /// The server closed or reset the connection.
    Closed,
    /// The server closed or reset a new connection before it sent anything: what a full
    /// server does.
    Refused,
    /// A read or write timed out.
    TimedOut,
    Io(io::Error),
    /// What came was not what the protocol says.
    Bad(String),
}

impl Lost {
    /// `self` for the first answer on a new connection: closed there means refused.
    fn at_first(self) -> Lost {
        match self {
            Lost::Closed => Lost::Refused,
            other => other,
        }
    }
}

impl From<io::Error> for Lost {
    fn from(e: io::Error) -> Lost {
        match e.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted => Lost::Closed,
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Lost::TimedOut,
            _ => Lost::Io(e),
        }
    }
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lost::Closed => f.write_str("the server closed the connection"),
            Lost::Refused => f.write_str(
                "the server closed a new connection before sending anything (full? see \
                 `refusing` in its log)",
            ),
            Lost::TimedOut => write!(f, "nothing came within {IO_TIMEOUT:?}"),
            Lost::Io(e) => write!(f, "{e}"),
            Lost::Bad(what) => f.write_str(what),
        }
    }
}

/// One legacy frame: a 4-byte big-endian length and a JPEG, into `buf`.
fn read_legacy_frame(conn: &mut impl Read, buf: &mut Vec<u8>) -> Result<(), Lost> {
    let mut len = [0u8; 4];
    conn.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(Lost::Bad(format!(
            "a frame length of {len} bytes, over {MAX_FRAME}: not a frame"
        )));
    }
    buf.resize(len, 0);
    conn.read_exact(buf)?;
    check_jpeg(buf)
}

fn check_jpeg(jpeg: &[u8]) -> Result<(), Lost> {
    if jpeg.starts_with(&[0xFF, 0xD8]) && jpeg.ends_with(&[0xFF, 0xD9]) {
        Ok(())
    } else {
        Err(Lost::Bad(format!(
            "a frame of {} bytes that is no JPEG (no FF D8 ... FF D9)",
            jpeg.len()
        )))
    }
}

/// A line without its `\r\n`, at most [`MAX_LINE`] bytes.
fn read_line(reader: &mut impl BufRead, line: &mut Vec<u8>) -> Result<String, Lost> {
    line.clear();
    let n = reader.take(MAX_LINE as u64).read_until(b'\n', line)?;
    if n == 0 {
        return Err(Lost::Closed);
    }
    if line.last() != Some(&b'\n') {
        return Err(Lost::Bad(format!("an HTTP line over {MAX_LINE} bytes")));
    }
    let text = String::from_utf8_lossy(line);
    Ok(text.trim_end_matches(['\r', '\n']).to_owned())
}

fn is_ok_status(line: &str) -> bool {
    line.starts_with("HTTP/1.") && line.split_whitespace().nth(1) == Some("200")
}

/// The headers the soak reads.
#[derive(Debug, Default, PartialEq)]
struct Headers {
    content_length: Option<usize>,
    timestamp: Option<String>,
}

/// Header lines up to the blank line.
fn read_headers(reader: &mut impl BufRead, line: &mut Vec<u8>) -> Result<Headers, Lost> {
    let mut headers = Headers::default();
    for _ in 0..MAX_HEADERS {
        let text = read_line(reader, line)?;
        if text.is_empty() {
            return Ok(headers);
        }
        let Some((name, value)) = text.split_once(':') else {
            return Err(Lost::Bad(format!("`{text}` is no header line")));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let len = value
                .parse()
                .ok()
                .filter(|&len| len <= MAX_FRAME)
                .ok_or_else(|| Lost::Bad(format!("a Content-Length of `{value}`")))?;
            headers.content_length = Some(len);
        } else if name.eq_ignore_ascii_case("x-timestamp") {
            headers.timestamp = Some(value.to_owned());
        }
    }
    Err(Lost::Bad(format!("more than {MAX_HEADERS} header lines")))
}

/// An MJPEG stream from `/stream`, read part by part.
struct HttpStream<R> {
    reader: BufReader<R>,
    line: Vec<u8>,
    body: Vec<u8>,
}

impl HttpStream<TcpStream> {
    /// Asks for `/stream` and reads the response head up to the first part.
    fn open(mut conn: TcpStream) -> Result<HttpStream<TcpStream>, Lost> {
        conn.write_all(b"GET /stream HTTP/1.0\r\nUser-Agent: xtask-soak\r\n\r\n")?;
        HttpStream::start(conn)
    }
}

impl<R: Read> HttpStream<R> {
    /// Reads the response head up to the first part.
    fn start(conn: R) -> Result<HttpStream<R>, Lost> {
        let mut stream = HttpStream {
            reader: BufReader::new(conn),
            line: Vec::new(),
            body: Vec::new(),
        };
        let status = read_line(&mut stream.reader, &mut stream.line).map_err(Lost::at_first)?;
        if !is_ok_status(&status) {
            return Err(Lost::Bad(format!("/stream answered `{status}`")));
        }
        read_headers(&mut stream.reader, &mut stream.line)?;
        stream.boundary()?;
        Ok(stream)
    }

    fn boundary(&mut self) -> Result<(), Lost> {
        let line = read_line(&mut self.reader, &mut self.line)?;
        if line == BOUNDARY {
            Ok(())
        } else {
            Err(Lost::Bad(format!(
                "`{line}` where the boundary line belongs"
            )))
        }
    }

    /// The next part's JPEG; its `X-Timestamp`, which a repeated frame shares.
    fn next_part(&mut self) -> Result<Option<String>, Lost> {
        let headers = read_headers(&mut self.reader, &mut self.line)?;
        let len = headers
            .content_length
            .ok_or_else(|| Lost::Bad("a part without Content-Length".to_owned()))?;
        self.body.resize(len, 0);
        self.reader.read_exact(&mut self.body)?;
        check_jpeg(&self.body)?;
        // The JPEG's line end, then the next boundary.
        let end = read_line(&mut self.reader, &mut self.line)?;
        if !end.is_empty() {
            return Err(Lost::Bad(format!(
                "`{end}` after a part's JPEG, not its line end"
            )));
        }
        self.boundary()?;
        Ok(headers.timestamp)
    }
}

/// xorshift64: seeded, so that every run sends the same bytes.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

// ---------------------------------------------------------------------------------------
// The report

/// One row's figures at the end.
#[derive(Debug, Clone)]
struct RowFigures {
    class: Class,
    label: String,
    source: String,
    counters: Figures,
}

/// Everything the soak measured.
#[derive(Debug)]
struct Report {
    minutes: f64,
    camera: String,
    addr: SocketAddr,
    start: Sample,
    max: Sample,
    end: Sample,
    /// The server's counters at the end.
    metrics: Metrics,
    /// The rates are measured between these two.
    window: (Window, Window),
    rows: Vec<RowFigures>,
    churn_required: u64,
    /// Load threads that had not ended [`JOIN_LIMIT`] after the deadline.
    unfinished: usize,
    /// Connections the server still had [`SETTLE_LIMIT`] after every client closed.
    lingering: u64,
    /// How the server stopped.
    stopped: Option<Result<ExitStatus, String>>,
}

impl Report {
    fn window_secs(&self) -> f64 {
        (self.window.1.at - self.window.0.at)
            .as_secs_f64()
            .max(1e-3)
    }

    /// The frames the server published in the window, or why that is not known.
    fn published(&self) -> Result<u64, String> {
        let (start, end) = (&self.window.0.published, &self.window.1.published);
        let start = start.as_ref().map_err(|e| format!("no counters {e}"))?;
        let end = end.as_ref().map_err(|e| format!("no counters {e}"))?;
        Ok(end.saturating_sub(*start))
    }

    /// Frames row `i` got in the window.
    fn frames(&self, i: usize) -> u64 {
        let (start, end) = (&self.window.0.frames, &self.window.1.frames);
        match (start.get(i), end.get(i)) {
            (Some(start), Some(end)) => end.saturating_sub(*start),
            _ => 0,
        }
    }

    /// Each bound that did not hold, saying which and with what figures.
    fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        let (start, end) = (self.start, self.end);
        if end.fds > start.fds + FD_GROWTH {
            out.push(format!(
                "open fds grew from {} to {} (by {}, bound {FD_GROWTH}) with no client connected: \
                 the server leaks file descriptors",
                start.fds,
                end.fds,
                end.fds - start.fds
            ));
        }
        if end.threads > start.threads + THREAD_GROWTH {
            out.push(format!(
                "threads grew from {} to {} (by {}, bound {THREAD_GROWTH}) with no client connected",
                start.threads,
                end.threads,
                end.threads - start.threads
            ));
        }
        if end.rss_kb > start.rss_kb + RSS_GROWTH_KB {
            out.push(format!(
                "RSS grew from {} to {} (by {}, bound {}) with no client connected",
                mib(start.rss_kb),
                mib(end.rss_kb),
                mib(end.rss_kb - start.rss_kb),
                mib(RSS_GROWTH_KB)
            ));
        }
        let published = match self.published() {
            Ok(0) => {
                out.push(
                    "the server published no frame while the load ran: no rate can be compared"
                        .to_owned(),
                );
                0
            }
            Ok(published) => published,
            Err(why) => {
                out.push(format!(
                    "the streamers' rates could not be compared with the camera's: {why}"
                ));
                0
            }
        };
        for (i, row) in self.rows.iter().enumerate() {
            let c = &row.counters;
            let why = c
                .first_error
                .as_deref()
                .map(|e| format!("; first error: {e}"))
                .unwrap_or_default();
            if row.class.is_stream() && published > 0 {
                let share = self.frames(i) as f64 / published as f64;
                if share < MIN_STREAM_SHARE {
                    out.push(format!(
                        "{} ({}) got {} of the {published} frames the server published ({:.1}%, \
                         bound {:.0}%), {} connections lost{why}",
                        row.label,
                        row.source,
                        self.frames(i),
                        share * 100.0,
                        MIN_STREAM_SHARE * 100.0,
                        c.failed
                    ));
                }
            }
            if row.class.is_shot() && c.tries == 0 {
                out.push(format!(
                    "{} ({}) made no tries at all{why}",
                    row.label, row.source
                ));
            } else if row.class.is_shot() {
                let failed_share = c.failed as f64 / c.tries as f64;
                if failed_share > MAX_FAILED_SHARE {
                    out.push(format!(
                        "{} ({}) failed {} of {} tries ({:.1}%, bound {:.0}%){why}",
                        row.label,
                        row.source,
                        c.failed,
                        c.tries,
                        failed_share * 100.0,
                        MAX_FAILED_SHARE * 100.0
                    ));
                }
            }
            if row.class == Class::Churn && c.tries < self.churn_required {
                out.push(format!(
                    "the churn made {} connect/disconnect cycles, fewer than the {} required \
                     ({CHURN_PER_MINUTE} a minute): the machine is too busy for this soak{why}",
                    c.tries, self.churn_required
                ));
            }
        }
        if self.unfinished > 0 {
            out.push(format!(
                "{} load threads had not ended {JOIN_LIMIT:?} after the deadline",
                self.unfinished
            ));
        }
        if self.lingering > 0 {
            out.push(format!(
                "the server still had {} connections {SETTLE_LIMIT:?} after every client closed",
                self.lingering
            ));
        }
        match &self.stopped {
            Some(Ok(status)) if status.success() => {}
            Some(Ok(status)) => {
                out.push(format!("the server exited with {status} on SIGTERM, not 0"));
            }
            Some(Err(why)) => out.push(why.clone()),
            None => out.push("the server was not stopped".to_owned()),
        }
        out
    }
}

fn mib(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.window_secs();
        let known = self.published();
        let published = known.as_ref().copied().unwrap_or(0);
        let m = &self.metrics;
        writeln!(
            f,
            "\nsoak: {} min on {}, --max-clients {MAX_CLIENTS}, camera {}",
            self.minutes, self.addr, self.camera
        )?;
        writeln!(
            f,
            "\nserver, no client connected   start      max      end   bound"
        )?;
        let (s, x, e) = (self.start, self.max, self.end);
        writeln!(
            f,
            "  open fds                   {:>8} {:>8} {:>8}   end <= start + {FD_GROWTH}",
            s.fds, x.fds, e.fds
        )?;
        writeln!(
            f,
            "  threads                    {:>8} {:>8} {:>8}   end <= start + {THREAD_GROWTH}",
            s.threads, x.threads, e.threads
        )?;
        let m1 = |kb: u64| format!("{:.1}", kb as f64 / 1024.0);
        writeln!(
            f,
            "  RSS (MiB)                  {:>8} {:>8} {:>8}   end <= start + {}",
            m1(s.rss_kb),
            m1(x.rss_kb),
            m1(e.rss_kb),
            m1(RSS_GROWTH_KB)
        )?;
        writeln!(
            f,
            "  (max: sampled every {}s during the load)",
            SAMPLE_EVERY.as_secs()
        )?;
        let rate = match &known {
            Ok(published) => format!(
                "{published} frames published in {secs:.1} s = {:.1} fps",
                *published as f64 / secs
            ),
            Err(why) => format!("frames published unknown ({why})"),
        };
        writeln!(
            f,
            "\ncamera: {rate} (configured {CAMERA_FPS}); \
             over the whole run {} captured, {} lost, {} outages, {} NO SIGNAL pictures",
            m.captured, m.camera_errors, m.outages, m.no_signal
        )?;
        writeln!(
            f,
            "server: {} connections refused (full), {} clients dropped, {} unknown bytes",
            m.refused, m.dropped, m.unknown_bytes
        )?;
        writeln!(
            f,
            "\n{:<17} {:<15} {:>6} {:>7} {:>6} {:>7} {:>6} {:>6} {:>6}  first error",
            "client", "from", "conns", "frames", "fps", "of cam", "tries", "failed", "closed"
        )?;
        let dash = || "-".to_owned();
        for (i, row) in self.rows.iter().enumerate() {
            let c = &row.counters;
            let frames = self.frames(i);
            let (frames, fps, share) = if row.class.has_rate() {
                let share = if published > 0 {
                    format!("{:.1}%", frames as f64 * 100.0 / published as f64)
                } else {
                    dash()
                };
                (
                    frames.to_string(),
                    format!("{:.1}", frames as f64 / secs),
                    share,
                )
            } else if row.class.gets_frames() {
                (frames.to_string(), dash(), dash())
            } else {
                (dash(), dash(), dash())
            };
            let tries = if row.class.is_shot() || row.class == Class::Churn {
                c.tries.to_string()
            } else {
                dash()
            };
            let mut line = String::new();
            let _ = write!(
                line,
                "{:<17} {:<15} {:>6} {:>7} {:>6} {:>7} {:>6} {:>6} {:>6}",
                row.label, row.source, c.connections, frames, fps, share, tries, c.failed, c.closed
            );
            if let Some(e) = &c.first_error {
                let _ = write!(line, "  {e}");
            }
            writeln!(f, "{line}")?;
        }
        writeln!(
            f,
            "(frames, fps and share of the camera's frames: over the {secs:.0} s after the first {} s; \
             the rest over the whole run)",
            RAMP.as_secs()
        )?;
        let churn = self.rows.iter().find(|row| row.class == Class::Churn);
        writeln!(
            f,
            "churn: {} connect/disconnect cycles (at least {} required: {CHURN_PER_MINUTE} a minute)",
            churn.map_or(0, |row| row.counters.tries),
            self.churn_required
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn minutes_are_parsed_and_checked() {
        assert_eq!(
            parse_args(&os(&[])).ok().flatten(),
            Some(Args { minutes: 2.0 })
        );
        assert_eq!(
            parse_args(&os(&["--minutes", "30"])).ok().flatten(),
            Some(Args { minutes: 30.0 })
        );
        assert_eq!(
            parse_args(&os(&["--minutes=0.5"])).ok().flatten(),
            Some(Args { minutes: 0.5 })
        );
        assert!(matches!(parse_args(&os(&["--help"])), Ok(None)));
        for bad in [
            &["--minutes", "0"][..],
            &["--minutes", "x"],
            &["--minutes"],
            &["--hours", "1"],
        ] {
            let err = parse_args(&os(bad))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                err.contains("--minutes") || err.contains("not an option"),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn the_camera_fails_a_third_and_stalls_two_thirds_of_the_way_in() {
        assert_eq!(
            camera_spec(120.0),
            "sim:640x480@30#scene=natural&fail_after=1300&down_ms=3000&error_every=50&stall_after=2500&stall_ms=2000"
        );
    }

    #[test]
    fn the_counters_are_read_from_metrics() {
        let text = "\
# HELP edgecam_frames_captured_total Frames the camera delivered.
# TYPE edgecam_frames_captured_total counter
edgecam_frames_captured_total 120
edgecam_frames_encoded_total 118
edgecam_frames_encoded_totalx 5
edgecam_clients_refused_total 3
edgecam_clients_dropped_total 2
edgecam_unknown_bytes_total 640
edgecam_camera_errors_total 2
edgecam_camera_outages_total 1
edgecam_no_signal_frames_total 4
edgecam_clients{protocol=\"http\"} 1
edgecam_clients{protocol=\"legacy\"} 7
edgecam_clients{protocol=\"pending\"} 0
";
        let metrics = Metrics::parse(text).ok();
        assert_eq!(
            metrics,
            Some(Metrics {
                encoded: 118,
                captured: 120,
                camera_errors: 2,
                outages: 1,
                no_signal: 4,
                refused: 3,
                dropped: 2,
                unknown_bytes: 640,
                clients: 8,
            })
        );
        let missing = Metrics::parse("edgecam_frames_encoded_total 1\n");
        assert!(missing.is_err());
    }

    #[test]
    fn the_process_figures_are_read_from_proc_status() {
        let status = "Name:\tedgecam\nVmRSS:\t   12345 kB\nThreads:\t6\n";
        assert_eq!(
            Sample::parse(17, status),
            Some(Sample {
                fds: 17,
                threads: 6,
                rss_kb: 12345
            })
        );
        assert_eq!(Sample::parse(1, "Name:\tx\n"), None);
    }

    #[test]
    fn a_stream_of_parts_is_read_and_repeats_share_a_timestamp() {
        let part = |ts: &str| {
            let mut p = format!(
                "Content-Type: image/jpeg\r\nContent-Length: 6\r\nX-Timestamp: {ts}\r\n\r\n"
            )
            .into_bytes();
            p.extend_from_slice(&[0xFF, 0xD8, 1, 2, 0xFF, 0xD9]);
            p.extend_from_slice(b"\r\n--edgecam-boundary\r\n");
            p
        };
        let mut wire = b"HTTP/1.0 200 OK\r\nServer: edgecam\r\nContent-Type: \
            multipart/x-mixed-replace;boundary=edgecam-boundary\r\n\r\n--edgecam-boundary\r\n"
            .to_vec();
        wire.extend(part("1.000001"));
        wire.extend(part("1.000001"));
        wire.extend(part("1.033334"));
        let mut stream = HttpStream::start(io::Cursor::new(wire)).ok();
        let mut next = || stream.as_mut().map(HttpStream::next_part);
        let stamps: Vec<String> = (0..3).filter_map(|_| next()?.ok().flatten()).collect();
        assert_eq!(stamps, ["1.000001", "1.000001", "1.033334"]);
        assert!(matches!(next(), Some(Err(Lost::Closed))));

        let closed = HttpStream::start(io::Cursor::new(Vec::new()));
        assert!(matches!(closed, Err(Lost::Refused)));
        let refused = HttpStream::start(io::Cursor::new(
            b"HTTP/1.0 503 Service Unavailable\r\n\r\n".to_vec(),
        ));
        assert_eq!(
            refused.err().map(|e| e.to_string()).as_deref(),
            Some("/stream answered `HTTP/1.0 503 Service Unavailable`")
        );
    }

    #[test]
    fn a_legacy_frame_is_checked() {
        let mut buf = Vec::new();
        let mut ok = io::Cursor::new(vec![0, 0, 0, 4, 0xFF, 0xD8, 0xFF, 0xD9]);
        assert!(read_legacy_frame(&mut ok, &mut buf).is_ok());
        let mut text = io::Cursor::new(b"Unknown command".to_vec());
        let err = read_legacy_frame(&mut text, &mut buf)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("a frame length of 1433299822 bytes, over 16777216: not a frame")
        );
        let mut short = io::Cursor::new(vec![0, 0, 0, 9, 0xFF, 0xD8]);
        assert!(matches!(
            read_legacy_frame(&mut short, &mut buf),
            Err(Lost::Closed)
        ));
    }

    fn report(rows: Vec<RowFigures>, frames: (Vec<u64>, Vec<u64>)) -> Report {
        let at = Instant::now();
        let sample = Sample {
            fds: 10,
            threads: 5,
            rss_kb: 10_000,
        };
        Report {
            minutes: 2.0,
            camera: CAMERA.to_owned(),
            addr: SocketAddr::from(([127, 0, 0, 1], 1)),
            start: sample,
            max: sample,
            end: sample,
            metrics: Metrics::default(),
            window: (
                Window {
                    at,
                    published: Ok(100),
                    frames: frames.0,
                },
                Window {
                    at: at + Duration::from_secs(100),
                    published: Ok(3100),
                    frames: frames.1,
                },
            ),
            rows,
            churn_required: 10_000,
            unfinished: 0,
            lingering: 0,
            stopped: None,
        }
    }

    fn row(class: Class, tries: u64, failed: u64) -> RowFigures {
        RowFigures {
            class,
            label: format!("{class:?}"),
            source: "127.0.0.2".to_owned(),
            counters: Figures {
                tries,
                failed,
                ..Figures::default()
            },
        }
    }

    #[cfg(unix)]
    fn exited(code: i32) -> ExitStatus {
        use std::os::unix::process::ExitStatusExt;
        ExitStatus::from_raw(code << 8)
    }

    #[cfg(unix)]
    #[test]
    fn every_bound_is_checked_with_its_figures() {
        let rows = vec![
            row(Class::LegacyStream, 0, 0),
            row(Class::HttpStream, 0, 0),
            row(Class::SingleShot, 1000, 10),
            row(Class::Snapshot, 1000, 11),
            row(Class::Churn, 10_000, 0),
        ];
        let mut good = report(rows.clone(), (vec![0; 5], vec![3000, 2850, 0, 0, 0]));
        good.stopped = Some(Ok(exited(0)));
        assert_eq!(
            good.failures(),
            vec!["Snapshot (127.0.0.2) failed 11 of 1000 tries (1.1%, bound 1%)".to_owned(),]
        );

        let mut bad = report(rows, (vec![0; 5], vec![3000, 2800, 0, 0, 0]));
        bad.end = Sample {
            fds: 27,
            threads: 10,
            rss_kb: 10_000 + RSS_GROWTH_KB + 1,
        };
        bad.rows[4].counters.tries = 9_999;
        bad.unfinished = 2;
        bad.lingering = 1;
        bad.stopped = Some(Ok(exited(1)));
        let failures = bad.failures().join("\n");
        for expected in [
            "open fds grew from 10 to 27 (by 17, bound 16)",
            "threads grew from 5 to 10 (by 5, bound 4)",
            "RSS grew from 9.8 MiB to 17.8 MiB (by 8.0 MiB, bound 8.0 MiB)",
            "HttpStream (127.0.0.2) got 2800 of the 3000 frames the server published (93.3%, bound 95%)",
            "Snapshot (127.0.0.2) failed 11 of 1000 tries",
            "the churn made 9999 connect/disconnect cycles, fewer than the 10000 required",
            "2 load threads had not ended",
            "the server still had 1 connections",
            "exited with exit status: 1 on SIGTERM, not 0",
        ] {
            assert!(
                failures.contains(expected),
                "{expected:?} not in:\n{failures}"
            );
        }
        assert!(!failures.contains("LegacyStream"), "{failures}");

        let mut blind = report(vec![row(Class::LegacyStream, 0, 0)], (vec![0], vec![3000]));
        blind.window.1.published = Err("at the end of the load: refused".to_owned());
        blind.stopped = Some(Ok(exited(0)));
        assert_eq!(
            blind.failures(),
            vec![
                "the streamers' rates could not be compared with the camera's: no counters at \
                 the end of the load: refused"
                    .to_owned()
            ]
        );
    }
}
