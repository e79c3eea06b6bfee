//! Command-line flags and what each subcommand does.

use std::io::{IsTerminal, Write};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use edgecam::client::{Client, ClientConfig, StreamStats, StreamSummary};
use edgecam::clock::SystemClock;
use edgecam::server::access::Networks;
use edgecam::server::auth::Users;
use edgecam::server::{Server, ServerConfig};
use edgecam_core::camera::Camera;
use edgecam_core::camera::CameraContext;
use edgecam_core::jpeg::PictureLimit;
use edgecam_core::limit::{RateLimit, Verdict};
use edgecam_core::recorder::{Recorder, RecordingSummary};
use edgecam_core::session::SessionConfig;
use edgecam_core::time::Clock;
use edgecam_encode::{Encoder, Passthrough};
use edgecam_recorder::{AviConfig, AviRecorder, JpegDirRecorder, SegmentLimits, Segmented};
use edgecam_transport_tcp::TcpTransport;
use edgecam_transport_tcp::http::{HttpUrl, Password};
use edgecam_transport_tcp::tls::{Fingerprint, ServerIdentity, Trust};
use tokio_util::sync::CancellationToken;

/// Stream a camera from an edge board over TCP, wire-compatible with the legacy Python scripts.
#[derive(Debug, Parser)]
#[command(name = "edgecam", version, propagate_version = true)]
pub struct Cli {
    /// More log output (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, display_order = 1000)]
    pub verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve a camera to any number of clients.
    Serve(ServeArgs),
    /// Fetch one frame (single shot and confirm) and write it to a file.
    Snap(SnapArgs),
    /// Stream frames and print frame rate, latency and skipped frames.
    Stream(StreamArgs),
    /// Record the stream to an AVI file (MJPEG, the JPEGs as received) or a folder of JPEGs.
    Record(RecordArgs),
    /// Make a cut-off AVI recording (killed recorder, power loss, full disk) playable again.
    Repair(RepairArgs),
    /// Show the stream in a window: q stops/resumes, s saves a snapshot, r records, Esc quits.
    View(ViewArgs),
    /// Measure encode cost, server CPU per frame, latency, memory and idle CPU.
    Bench(crate::bench::BenchArgs),
    /// List the V4L2 cameras (Linux): each device's name, formats and sizes, and its --camera spec.
    Cameras,
    /// Add a user to an auth file (`serve --auth-file`), or change their password.
    ///
    /// On a terminal the password is asked for twice, without echo; otherwise it is the first
    /// line of standard input (`printf '%s\n' "$PASSWORD" | edgecam passwd FILE USER`). FILE
    /// holds one USER:HASH line per user, the password hashed with argon2id; its other lines
    /// and comments are kept.
    Passwd(PasswdArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, default_value = "0.0.0.0:6810")]
    bind: String,
    /// Camera to serve, KIND[:SOURCE][#OPTIONS]: sim[:WxH[@FPS]] (synthetic), v4l2:/dev/videoN|NAME
    /// (Linux), exec:COMMAND, pipe:-|PATH, opencv:... in OpenCV builds. `--camera help` lists
    /// every kind with examples; `edgecam cameras` lists the V4L2 devices.
    #[arg(long, default_value = "sim:640x480@30")]
    camera: String,
    #[command(flatten)]
    encode: EncodeArgs,
    /// Connections beyond this many, of every protocol, are refused: an HTTP client gets 503
    /// with Retry-After, a legacy connection is closed.
    #[arg(long, default_value_t = 32)]
    max_clients: usize,
    /// Connections from one address beyond this many are refused likewise, so that one host
    /// cannot take every slot (0: no limit).
    #[arg(long, default_value_t = 8, value_name = "N")]
    max_clients_per_ip: usize,
    /// Only these peers may connect, over every protocol: CIDR networks or addresses separated
    /// by commas (e.g. 192.168.1.0/24,fd00::/8). Others are closed at once. Default: everyone.
    #[arg(long, value_name = "CIDR,...")]
    allow: Option<Networks>,
    /// Passwords: every HTTP route needs a user from FILE (HTTP Basic; add one with `edgecam
    /// passwd FILE USER`). The legacy protocol cannot carry a password, so legacy connections
    /// are then refused unless from --legacy-allow.
    #[arg(long, value_name = "FILE")]
    auth_file: Option<PathBuf>,
    /// With --auth-file: the networks whose legacy clients (the old scripts) are let in
    /// without a password, e.g. 192.168.1.50/32.
    #[arg(long, value_name = "CIDR,...", requires = "auth_file")]
    legacy_allow: Option<Networks>,
    /// TLS on the same port (HTTPS beside HTTP and the legacy protocol): the certificate
    /// chain, PEM; with --tls-key.
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_key",
        conflicts_with = "tls"
    )]
    tls_cert: Option<PathBuf>,
    /// The --tls-cert certificate's private key, PEM.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// TLS with a certificate of the server's own: `self-signed` makes a key and a
    /// certificate for this machine's names and addresses on first start, in --state-dir, and
    /// reuses them. Its SHA-256 fingerprint is printed at startup: give it to clients' --pin.
    #[arg(long, value_enum)]
    tls: Option<TlsMode>,
    /// Where the server keeps what it makes (the self-signed certificate and key). Default:
    /// $STATE_DIRECTORY (a systemd service's StateDirectory), else $XDG_STATE_HOME/edgecam,
    /// else ~/.local/state/edgecam.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Seconds a client may take to read a frame before it is dropped.
    #[arg(long, default_value = "5", value_parser = parse_seconds)]
    send_timeout: Duration,
    /// Seconds a new connection may take to send its first command (0: no limit).
    #[arg(long, default_value = "30", value_parser = parse_seconds)]
    handshake_timeout: Duration,
    /// Seconds a client may stay idle, not streaming, before it is closed (0: no limit).
    #[arg(long, default_value = "300", value_parser = parse_seconds)]
    idle_timeout: Duration,
    /// Let a client's `2` stop the whole server (gracefully); by default it ends that client's session only.
    #[arg(long)]
    allow_remote_shutdown: bool,
    /// Seconds between stats lines in the log (0: none).
    #[arg(long, default_value = "5", value_parser = parse_seconds)]
    stats_interval: Duration,
    /// HTTP on the same port (MJPEG /stream, /snapshot, the page at /, /state, /metrics):
    /// connections that start with an HTTP request get HTTP, all others the legacy protocol.
    #[arg(long, value_enum, default_value_t = Toggle::On)]
    http: Toggle,
    /// Also listen on this address, for tools that want a port of their own (e.g. 0.0.0.0:8080);
    /// it serves both protocols, like --bind.
    #[arg(long, value_name = "ADDR")]
    http_bind: Option<String>,
    /// Threads that serve the clients. One writes every client's frames at the least CPU per
    /// frame (a second one costs a wake-up per frame); raw frames are encoded on each camera's
    /// own thread either way.
    #[arg(long, default_value_t = NonZeroUsize::MIN)]
    threads: NonZeroUsize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum TlsMode {
    SelfSigned,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Toggle {
    On,
    Off,
}

/// How frames become JPEGs; shared by `serve` and `bench`.
#[derive(Debug, Args)]
pub struct EncodeArgs {
    /// JPEG quality, 1 to 100.
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub quality: u8,
    /// JPEG encoder: auto (the fastest this build has), turbo (libjpeg-turbo, in builds with
    /// --features turbojpeg), opencv (in OpenCV builds) or rust.
    #[arg(long, default_value = "auto")]
    pub encoder: String,
    /// JPEGs from the camera: `stamped` adds edgecam's seq/time comment (and the standard
    /// Huffman tables where the camera left them out), `untouched` passes the bytes on as they are.
    #[arg(long, value_enum, default_value_t = PassthroughArg::Stamped)]
    pub passthrough: PassthroughArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PassthroughArg {
    Stamped,
    Untouched,
}

impl EncodeArgs {
    /// The encoder these flags ask for; an encoder this build lacks is an error listing those it has.
    pub fn encoder(&self) -> Result<Encoder> {
        let backend = edgecam::backends::encoders().start(&self.encoder)?;
        let passthrough = match self.passthrough {
            PassthroughArg::Stamped => Passthrough::Stamped,
            PassthroughArg::Untouched => Passthrough::Untouched,
        };
        Ok(Encoder::new(backend, self.quality, passthrough))
    }
}

#[derive(Debug, Args)]
struct ClientArgs {
    /// The server: HOST[:PORT] for edgecam's own and the legacy protocol (the port is 6810 when
    /// omitted), or http[s]://[USER@]HOST[:PORT]/PATH for any MJPEG stream or JPEG URL (edgecam,
    /// mjpg-streamer's /?action=stream, ustreamer's /stream, IP cameras). With USER@, the
    /// password comes from EDGECAM_PASSWORD, or is asked for on the terminal.
    #[arg(value_parser = parse_addr)]
    addr: String,
    /// Talk to a legacy Python server: one command per TCP segment, never `2`.
    #[arg(long)]
    legacy: bool,
    /// Seconds to wait for the connection and for each frame.
    #[arg(long, default_value = "5", value_parser = parse_seconds)]
    timeout: Duration,
    /// Largest frame accepted from the server, in bytes (suffixes K, M, G).
    #[arg(long, default_value = "32M", value_parser = parse_size)]
    max_frame_size: u32,
    /// For https://: trust the CA certificates in this PEM file (or the server's own
    /// self-signed certificate) instead of the system's.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["pin", "insecure"])]
    ca: Option<PathBuf>,
    /// For https://: accept exactly the certificate with this SHA-256 fingerprint (the one
    /// `edgecam serve` prints at startup), whatever its names and dates.
    #[arg(long, value_name = "SHA256", conflicts_with = "insecure")]
    pin: Option<Fingerprint>,
    /// For https://: accept any certificate; still encrypted, but anyone on the way can pose as
    /// the server.
    #[arg(long)]
    insecure: bool,
}

#[derive(Debug, Args)]
struct SnapArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// File to write the JPEG to.
    #[arg(short, long, default_value = "frame.jpg")]
    output: PathBuf,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("length").required(true))]
struct StreamArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Stop after this many frames.
    #[arg(long, group = "length")]
    frames: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, group = "length", value_parser = parse_seconds)]
    seconds: Option<Duration>,
}

#[derive(Debug, Args)]
struct RecordArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// AVI file to write [default: video_stream_<unix-ms>.avi in the current folder].
    #[arg(short, long, conflicts_with = "dir")]
    output: Option<PathBuf>,
    /// Write numbered JPEG files to this folder instead (created if missing; must hold no frames yet).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Stop after this many frames [default: until Ctrl-C].
    #[arg(long, conflicts_with = "seconds")]
    frames: Option<u64>,
    /// Stop after this many seconds [default: until Ctrl-C].
    #[arg(long, value_parser = parse_seconds)]
    seconds: Option<Duration>,
    /// Start a new file (name-001.avi, name-002.avi, ...) every N minutes.
    #[arg(long, value_parser = parse_minutes, conflicts_with = "dir")]
    segment_minutes: Option<Duration>,
    /// Start a new file once one reaches this size (suffixes K, M, G).
    #[arg(long, value_parser = parse_segment_size, conflicts_with = "dir")]
    segment_size: Option<u64>,
    /// Decode and re-encode to XVID at 20 fps with OpenCV, as the legacy client did (costs far
    /// more CPU; for players without MJPEG).
    #[cfg(feature = "opencv")]
    #[arg(long, conflicts_with_all = ["dir", "segment_minutes", "segment_size"])]
    xvid: bool,
    /// Frames whose JPEG claims a larger picture (WIDTHxHEIGHT) are skipped and counted.
    #[arg(long, default_value = "8192x8192", value_name = "WxH")]
    max_picture: PictureLimit,
}

#[derive(Debug, Args)]
struct PasswdArgs {
    /// The auth file; made with mode 0600 if it does not exist.
    file: PathBuf,
    /// The user name: no spaces and no `:`.
    user: String,
}

#[derive(Debug, Args)]
struct RepairArgs {
    /// The AVI file to repair, in place.
    file: PathBuf,
}

#[derive(Debug, Args)]
struct ViewArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Record to this AVI file from the start (r stops and starts recording).
    #[arg(long)]
    record: Option<PathBuf>,
    /// Frames whose JPEG claims a larger picture (WIDTHxHEIGHT) are not decoded, only counted
    /// (and not recorded).
    #[arg(long, default_value = "8192x8192", value_name = "WxH")]
    max_picture: PictureLimit,
    /// The window: minifb (light, X11 or Wayland) or OpenCV's highgui.
    #[cfg(feature = "opencv")]
    #[arg(long, value_enum, default_value_t = WindowKind::Minifb)]
    window: WindowKind,
}

#[cfg(feature = "opencv")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum WindowKind {
    Minifb,
    Opencv,
}

pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

impl Cli {
    /// The async runtime's worker threads this command asks for; `None`: one per core.
    pub fn worker_threads(&self) -> Option<usize> {
        match &self.command {
            Command::Serve(args) => Some(args.threads.get()),
            _ => None,
        }
    }
}

pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Snap(args) => snap(args).await,
        Command::Stream(args) => stream(args).await,
        Command::Record(args) => record(args).await,
        Command::Repair(args) => repair(&args.file),
        Command::View(args) => view(args).await,
        Command::Bench(args) => crate::bench::run(args).await,
        Command::Cameras => {
            cameras();
            Ok(())
        }
        Command::Passwd(args) => {
            say(crate::passwd::run(&args.file, &args.user)?);
            Ok(())
        }
    }
}

/// `edgecam cameras`: every V4L2 device node with what it offers, or a line saying there
/// is none.
fn cameras() {
    say(edgecam_camera_v4l2::list_cameras().trim_end());
}

/// Seconds as a decimal number; `0` means "off" where a flag says so.
fn parse_seconds(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|v| Duration::try_from_secs_f64(v).ok())
        .ok_or_else(|| format!("{s:?} is not a number of seconds (try 5 or 0.5)"))
}

fn parse_addr(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err(
            "the server address is empty (try 192.168.1.20 or board.local:6810)".to_owned(),
        );
    }
    match edgecam_transport_tcp::http::HttpUrl::parse_source(s.trim()) {
        Ok(Some(url)) => Ok(url.to_string()),
        Ok(None) => Ok(edgecam_transport_tcp::with_default_port(s.trim())),
        // Refused when connecting, where the error shows the password as ***: clap's own
        // error would repeat the value as given.
        Err(edgecam_transport_tcp::http::UrlError::Password { .. }) => Ok(s.trim().to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

/// Minutes as a decimal number, more than zero.
fn parse_minutes(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .filter(|m| *m > 0.0)
        .and_then(|m| Duration::try_from_secs_f64(m * 60.0).ok())
        .ok_or_else(|| format!("{s:?} is not a number of minutes above 0 (try 10 or 0.5)"))
}

fn parse_segment_size(s: &str) -> Result<u64, String> {
    edgecam_recorder::parse_size(s).map_err(|e| e.to_string())
}

/// A frame size limit: what `--segment-size` takes (`32M`, `1.5G`, `4096`), from 1 byte to
/// 4 GiB - 1 (the legacy length prefix is 32 bits).
fn parse_size(s: &str) -> Result<u32, String> {
    let bytes = edgecam_recorder::parse_size(s).map_err(|e| e.to_string())?;
    u32::try_from(bytes)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{s:?} is not a size between 1 byte and 4095M (try 32M)"))
}

/// Writes `text` and a newline to standard output in one write. A closed stdout
/// (`edgecam stream ... | head -1`) is not an error: what was asked for is done, and there is
/// no one left to tell. Any other write error is logged.
fn say(text: impl std::fmt::Display) {
    let written = writeln!(std::io::stdout().lock(), "{text}");
    if let Err(e) = written
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        tracing::warn!(error = %e, "cannot write to standard output");
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn nonzero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

/// The camera named by `spec`, not yet opened.
pub fn camera(spec: &str, clock: Arc<dyn Clock>) -> Result<Box<dyn Camera>> {
    Ok(edgecam::backends::cameras().create(spec, &CameraContext { clock })?)
}

/// Ctrl-C and SIGTERM cancel `token`.
fn cancel_on_signals(token: CancellationToken) {
    // The handlers are installed here, before the banner tells anyone the server is up: a
    // SIGTERM that came before a spawned task got round to installing them killed the process
    // without a graceful stop.
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        )
    };
    tokio::spawn(async move {
        #[cfg(unix)]
        match signals {
            (Ok(mut int), Ok(mut term)) => tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            },
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("signal received, stopping");
        token.cancel();
    });
}

async fn serve(args: ServeArgs) -> Result<()> {
    if args.camera == "help" {
        print!("{}", edgecam::backends::cameras().help());
        return Ok(());
    }
    let encoder = args.encode.encoder()?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::default());
    let camera = camera(&args.camera, clock.clone())?;
    let tls = tls_identity(&args)?;
    let bind = |addr: String| {
        let acceptor = tls.as_ref().map(ServerIdentity::acceptor);
        async move {
            let transport = TcpTransport::bind(&addr).await?;
            anyhow::Ok(match acceptor {
                Some(acceptor) => transport.with_tls(acceptor),
                None => transport,
            })
        }
    };
    let transport = bind(args.bind.clone()).await?;
    let config = ServerConfig {
        session: SessionConfig {
            handshake_timeout: nonzero(args.handshake_timeout),
            idle_timeout: nonzero(args.idle_timeout),
            remote_shutdown: args.allow_remote_shutdown,
            ..SessionConfig::default()
        },
        max_clients: args.max_clients,
        max_clients_per_ip: args.max_clients_per_ip,
        allow: args.allow.clone(),
        users: match &args.auth_file {
            Some(path) => {
                let users = Users::load(path)?;
                tracing::info!(file = %path.display(), users = users.user_count(), "passwords required (--auth-file)");
                Some(Arc::new(users))
            }
            None => None,
        },
        legacy_allow: args.legacy_allow.clone(),
        send_timeout: args.send_timeout,
        stats_interval: nonzero(args.stats_interval),
        http: args.http == Toggle::On,
    };
    let stop = CancellationToken::new();
    cancel_on_signals(stop.clone());
    tracing::info!(encoder = encoder.backend(), "JPEG encoder");
    let http = config.http;
    let mut server = Server::start(transport, camera, encoder, clock, config, stop).await?;
    if let Some(addr) = &args.http_bind {
        server.listen(bind(addr.clone()).await?);
    }
    let addr = server.local_addr();
    let caps = server.capabilities();
    let host = local_client_addr(&addr).unwrap_or(addr.clone());
    let mut banner = format!(
        "edgecam serving {} ({}x{} {}) on {}\n  one frame:  edgecam snap {host} -o frame.jpg\n  \
         stream:     edgecam stream {host} --seconds 10\n",
        server.camera_name(),
        caps.width,
        caps.height,
        caps.format,
        server.local_addrs().join(" and "),
    );
    if http {
        banner.push_str(&format!(
            "  browser:    http://{host}/\n  MJPEG:      http://{host}/stream   snapshot: http://{host}/snapshot\n"
        ));
    }
    if let Some(identity) = &tls {
        let fingerprint = identity.fingerprint();
        tracing::info!(%fingerprint, "TLS on the same port");
        banner.push_str(&format!(
            "  HTTPS:      https://{host}/   certificate SHA-256 {fingerprint}\n  \
             securely:   edgecam snap https://{host}/snapshot --pin {fingerprint}\n"
        ));
    }
    banner.push_str("  stop:       Ctrl-C\n");
    // Printed in one write, and a closed stdout (`edgecam serve | head -1`) is not an error.
    let _ = write!(std::io::stdout().lock(), "{banner}");
    server.run().await;
    Ok(())
}

/// The server's TLS identity, if it serves TLS: the given files, or its own self-signed
/// certificate from the state folder (made there on first start).
fn tls_identity(args: &ServeArgs) -> Result<Option<ServerIdentity>> {
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        return Ok(Some(ServerIdentity::from_pem_files(cert, key)?));
    }
    if args.tls != Some(TlsMode::SelfSigned) {
        return Ok(None);
    }
    let dir = state_dir(args.state_dir.as_deref())?;
    // The names clients may use: the machine's, and the address bound to if it is one.
    let bound: Vec<String> = [args.bind.as_str()]
        .into_iter()
        .chain(args.http_bind.as_deref())
        .filter_map(|addr| addr.parse::<std::net::SocketAddr>().ok())
        .map(|addr| addr.ip())
        .filter(|ip| !ip.is_unspecified())
        .map(|ip| ip.to_string())
        .collect();
    let names = edgecam_transport_tcp::tls::default_names(&bound);
    let (identity, created) = ServerIdentity::self_signed(&dir, &names)?;
    if created {
        tracing::info!(dir = %dir.display(), names = %names.join(","), "made a self-signed TLS certificate");
    } else {
        tracing::info!(dir = %dir.display(), "reusing the self-signed TLS certificate");
    }
    Ok(Some(identity))
}

/// `--state-dir`, or where a service or a user keeps state.
fn state_dir(given: Option<&std::path::Path>) -> Result<PathBuf> {
    if let Some(dir) = given {
        return Ok(dir.to_owned());
    }
    let env = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    // systemd gives every StateDirectory= there, separated by colons: the first is ours.
    if let Some(dirs) = env("STATE_DIRECTORY") {
        if let Some(first) = std::env::split_paths(&dirs).next() {
            return Ok(first);
        }
    }
    if let Some(state) = env("XDG_STATE_HOME") {
        return Ok(PathBuf::from(state).join("edgecam"));
    }
    if let Some(home) = env("HOME") {
        return Ok(PathBuf::from(home).join(".local/state/edgecam"));
    }
    anyhow::bail!(
        "no folder to keep the self-signed certificate in: give --state-dir DIR (neither \
         STATE_DIRECTORY, XDG_STATE_HOME nor HOME is set)"
    )
}

/// The address a client on this machine would use: 0.0.0.0 and [::] become loopback.
fn local_client_addr(addr: &str) -> Option<String> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    let addr: SocketAddr = addr.parse().ok()?;
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Some(SocketAddr::new(ip, addr.port()).to_string())
}

/// The client's configuration from its flags: `--ca`, `--pin` and `--insecure` only with an
/// https:// address, and the password of a URL's user from EDGECAM_PASSWORD or the terminal.
fn client_config(args: &ClientArgs) -> Result<ClientConfig> {
    let trust = match (&args.ca, args.pin, args.insecure) {
        (Some(ca), _, _) => Trust::Ca(ca.clone()),
        (_, Some(pin), _) => Trust::Pin(pin),
        (_, _, true) => Trust::Insecure,
        _ => Trust::System,
    };
    edgecam::client::check_trust(&args.addr, &trust)?;
    Ok(ClientConfig {
        legacy: args.legacy,
        connect_timeout: args.timeout,
        frame_timeout: args.timeout,
        max_frame_len: args.max_frame_size,
        trust,
        password: password_for(&args.addr)?,
    })
}

/// The environment variable that holds the password of a URL's user.
const PASSWORD_VAR: &str = "EDGECAM_PASSWORD";

/// The password for the user `addr` names: EDGECAM_PASSWORD, else asked for on the terminal
/// (without echo) when standard input is one; `None` when `addr` names no user.
fn password_for(addr: &str) -> Result<Option<Password>> {
    let Ok(Some(url)) = HttpUrl::parse_source(addr) else {
        return Ok(None);
    };
    let Some(user) = &url.user else {
        return Ok(None);
    };
    if let Some(value) = std::env::var_os(PASSWORD_VAR) {
        let password = value.into_string().map_err(|_| {
            anyhow::anyhow!("{PASSWORD_VAR} is not valid UTF-8; set it to the password as text")
        })?;
        return Ok(Some(Password::new(password)));
    }
    if !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "{url} names the user {user:?}, but {PASSWORD_VAR} is not set and there is no \
             terminal to ask on; set {PASSWORD_VAR} to the password"
        );
    }
    let prompt = format!("password for {user} at {}: ", url.authority());
    let password = rpassword::prompt_password(prompt).with_context(|| {
        format!("cannot read the password from the terminal; set {PASSWORD_VAR} instead")
    })?;
    Ok(Some(Password::new(password)))
}

async fn snap(args: SnapArgs) -> Result<()> {
    let mut client = Client::connect(&args.client.addr, client_config(&args.client)?).await?;
    let frame = client.snap().await?;
    tokio::fs::write(&args.output, &frame.jpeg)
        .await
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    let size = edgecam_core::jpeg::dimensions(&frame.jpeg)
        .map_or_else(|| "unknown size".to_owned(), |(w, h)| format!("{w}x{h}"));
    say(format_args!(
        "wrote {} ({size}, {} bytes)",
        args.output.display(),
        frame.jpeg.len()
    ));
    Ok(())
}

async fn stream(args: StreamArgs) -> Result<()> {
    let mut client = Client::connect(&args.client.addr, client_config(&args.client)?).await?;
    let streamed = receive(&mut client, args.frames, args.seconds, None).await?;
    say(summary_line(
        &streamed.stats.summary(),
        client.invalid_frames(),
        streamed.drained,
    ));
    Ok(())
}

async fn record(args: RecordArgs) -> Result<()> {
    let segmented = args.segment_minutes.is_some() || args.segment_size.is_some();
    let mut recorder: Box<dyn Recorder> = match (&args.dir, &args.output) {
        (Some(dir), _) => Box::new(JpegDirRecorder::new(dir)),
        (None, output) => {
            let path = output.clone().unwrap_or_else(|| {
                PathBuf::from(edgecam::stamped_file_name("video_stream", "avi"))
            });
            #[cfg(feature = "opencv")]
            if args.xvid {
                let fps = edgecam_camera_opencv::LEGACY_FPS;
                Box::new(edgecam_camera_opencv::OpenCvRecorder::new(path, fps))
            } else {
                avi_recorder(path, &args)
            }
            #[cfg(not(feature = "opencv"))]
            avi_recorder(path, &args)
        }
    };
    let mut client = Client::connect(&args.client.addr, client_config(&args.client)?).await?;
    recorder.start().await?;
    let received = receive(
        &mut client,
        args.frames,
        args.seconds,
        Some((recorder.as_mut(), args.max_picture)),
    )
    .await;
    // Finished whatever happened, so that what is on disk is playable, and said where it is.
    let finished = recorder.finish().await;
    if let Ok(streamed) = &received {
        let summary = summary_line(
            &streamed.stats.summary(),
            client.invalid_frames(),
            streamed.drained,
        );
        say(summary);
    }
    if let Ok(summary) = &finished {
        let more = if segmented {
            " and the segments after it"
        } else {
            ""
        };
        let refused = match &received {
            Ok(streamed) if streamed.not_recorded > 0 => format!(
                "; {} frames not recorded (no picture size, or a picture over {})",
                streamed.not_recorded, args.max_picture
            ),
            _ => String::new(),
        };
        say(format_args!("{}{more}{refused}", saved_line(summary)));
    }
    received?;
    finished?;
    Ok(())
}

fn saved_line(summary: &RecordingSummary) -> String {
    format!(
        "saved {} frames ({:.1} MB) in {}",
        summary.frames,
        summary.bytes as f64 / 1e6,
        summary.path.display()
    )
}

/// An AVI recorder for `path`, split into `path-001.avi`, `path-002.avi`, ... when a segment
/// limit is given.
fn avi_recorder(path: PathBuf, args: &RecordArgs) -> Box<dyn Recorder> {
    let (minutes, bytes) = (args.segment_minutes, args.segment_size);
    let config = AviConfig::default().with_max_picture(args.max_picture);
    let avi = move |path| AviRecorder::new(path, config.clone());
    if minutes.is_none() && bytes.is_none() {
        return Box::new(avi(path));
    }
    let limits = SegmentLimits {
        max_duration: minutes,
        max_bytes: bytes,
    };
    Box::new(Segmented::new(path, limits, avi))
}

/// What [`receive`] got.
struct Streamed {
    stats: StreamStats,
    /// Frames read away after the stop.
    drained: u64,
    /// Frames the recorder did not take: no picture size, or one over the limit.
    not_recorded: u64,
}

/// Streams from `client` until `frames` frames, `seconds` seconds or Ctrl-C, handing each
/// frame to `recorder` (frames it cannot take are skipped and counted, the recording goes
/// on); then stops the stream. Says what was received and how many frames were read away
/// after the stop.
async fn receive(
    client: &mut Client,
    frames: Option<u64>,
    seconds: Option<Duration>,
    mut recorder: Option<(&mut dyn Recorder, PictureLimit)>,
) -> Result<Streamed> {
    let stop = CancellationToken::new();
    cancel_on_signals(stop.clone());
    client.start_stream().await?;
    let started = Instant::now();
    let mut stats = StreamStats::default();
    let mut progress = Progress::default();
    let mut refused = RateLimit::repeats();
    let deadline = seconds.map(|s| tokio::time::Instant::from_std(started + s));
    let result: Result<()> = async {
        while frames.is_none_or(|n| stats.frames < n) {
            let frame = tokio::select! {
                () = stop.cancelled() => break,
                () = sleep_until(deadline) => break,
                frame = client.next_frame() => frame?,
            };
            if let Some((r, limit)) = recorder.as_mut() {
                let written = match limit.check(&frame.jpeg) {
                    Ok(_) => {
                        let seq = stats.frames + 1;
                        r.write_frame(&frame.clone().into_frame(seq)).await
                    }
                    Err(source) => Err(edgecam_core::recorder::RecorderError::Picture {
                        seq: frame.stamp.map_or(stats.frames + 1, |s| s.seq),
                        source,
                    }),
                };
                match written {
                    Ok(()) => {}
                    Err(e) if e.is_refused_frame() => {
                        if let Verdict::Log { suppressed } = refused.check(Instant::now()) {
                            tracing::warn!(
                                error = %edgecam::error_chain(&e),
                                "frame skipped ({suppressed} more since the last such line)"
                            );
                        }
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            stats.record(&frame);
            progress.show(&stats);
        }
        Ok(())
    }
    .await;
    progress.finish();
    // Stop the stream even after an error, so a legacy server is left idle.
    let drained = client.stop_stream().await;
    result?;
    Ok(Streamed {
        stats,
        drained: drained?,
        not_recorded: refused.total(),
    })
}

fn repair(file: &Path) -> Result<()> {
    let report = edgecam_recorder::repair(file)?;
    say(report);
    Ok(())
}

async fn view(args: ViewArgs) -> Result<()> {
    #[cfg(feature = "window")]
    {
        // Checked before connecting. OpenCV's window checks for itself (it knows Qt's
        // platforms, such as `QT_QPA_PLATFORM=offscreen`).
        #[cfg(feature = "opencv")]
        let check = args.window == WindowKind::Minifb;
        #[cfg(not(feature = "opencv"))]
        let check = true;
        if check && !edgecam::view::has_display() {
            return Err(edgecam::view::ViewError::NoDisplay.into());
        }
        let client = Client::connect(&args.client.addr, client_config(&args.client)?).await?;
        let stop = CancellationToken::new();
        cancel_on_signals(stop.clone());
        let options = edgecam::view::ViewOptions {
            record: args.record,
            dir: PathBuf::from("."),
            peer: client.peer().to_owned(),
            stop,
            max_picture: args.max_picture,
        };
        let title = format!("edgecam {}", options.peer);
        let mut open = |width, height| -> Result<Box<dyn edgecam::view::Window>, _> {
            #[cfg(feature = "opencv")]
            if args.window == WindowKind::Opencv {
                return Ok(Box::new(edgecam::view::HighGui::open(&title)?));
            }
            Ok(Box::new(edgecam::view::MinifbWindow::open(
                &title, width, height,
            )?))
        };
        let summary = edgecam::view::view(client, &mut open, options).await?;
        say(format_args!(
            "{} frames received, {} shown, {} undecodable, {} snapshots",
            summary.received,
            summary.shown,
            summary.undecodable,
            summary.snapshots.len()
        ));
        for recording in &summary.recordings {
            let refused = match summary.not_recorded {
                0 => String::new(),
                n => format!(
                    "; {n} frames not recorded (no picture size, or a picture over {})",
                    args.max_picture
                ),
            };
            say(format_args!("{}{refused}", saved_line(recording)));
        }
        Ok(())
    }
    #[cfg(not(feature = "window"))]
    {
        let _ = args;
        anyhow::bail!(
            "this edgecam was built without a window (feature `window`); \
             use `edgecam record HOST:PORT`, or rebuild with default features"
        )
    }
}

fn summary_line(s: &StreamSummary, invalid: u64, drained: u64) -> String {
    let latency = s.latency_ms.map_or_else(
        || "latency n/a (frames carry no capture time)".to_owned(),
        |(p50, p99)| format!("latency p50 {p50:.1} ms p99 {p99:.1} ms"),
    );
    format!(
        "{} frames in {:.1} s, {:.1} fps, {:.1} MB, {} skipped by the server, {latency}, {invalid} invalid, {drained} drained after stop",
        s.frames, s.seconds, s.fps, s.megabytes, s.skipped
    )
}

/// A once-a-second progress line on a terminal: elapsed, frames, rate, megabytes, skipped.
#[derive(Debug, Default)]
struct Progress {
    last: Option<Instant>,
    shown: bool,
}

impl Progress {
    fn show(&mut self, stats: &StreamStats) {
        if !std::io::stderr().is_terminal() || self.last.is_some_and(|t| t.elapsed().as_secs() < 1)
        {
            return;
        }
        self.last = Some(Instant::now());
        self.shown = true;
        let s = stats.summary();
        eprint!(
            "\r{:6.1} s  {} frames  {:.1} fps  {:.1} MB  {} skipped ",
            s.seconds, s.frames, s.fps, s.megabytes, s.skipped
        );
    }

    fn finish(&self) {
        if self.shown {
            eprintln!();
        }
    }
}
