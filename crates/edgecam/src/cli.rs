//! Command-line flags and what each subcommand does.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use edgecam::client::{Client, ClientConfig, StreamStats, StreamSummary};
use edgecam::clock::SystemClock;
use edgecam::encode::{Encoder, EncoderKind};
use edgecam::server::{Server, ServerConfig};
use edgecam_core::camera::Camera;
use edgecam_core::recorder::Recorder;
use edgecam_core::session::SessionConfig;
use edgecam_core::time::Clock;
use edgecam_recorder::JpegDirRecorder;
use edgecam_transport_tcp::TcpTransport;
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
    /// Measure encode cost, server CPU per frame, latency, memory and idle CPU.
    Bench(crate::bench::BenchArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, default_value = "0.0.0.0:6810")]
    bind: String,
    /// Camera to serve: sim[:WxH[@FPS]] (synthetic test pattern), e.g. sim:1280x720@30.
    #[arg(long, default_value = "sim:640x480@30")]
    camera: String,
    /// JPEG quality, 1 to 100.
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u8).range(1..=100))]
    quality: u8,
    /// JPEG encoder.
    #[arg(long, value_enum, default_value_t = EncoderKind::default())]
    encoder: EncoderKind,
    /// Connections beyond this many are refused.
    #[arg(long, default_value_t = 32)]
    max_clients: usize,
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
}

#[derive(Debug, Args)]
struct ClientArgs {
    /// Server address, HOST[:PORT]; the port is 6810 (the legacy default) when omitted.
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
    /// Save every frame as a numbered JPEG in this folder (created if missing; must hold no frames yet).
    #[arg(long)]
    out: Option<PathBuf>,
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

pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Snap(args) => snap(args).await,
        Command::Stream(args) => stream(args).await,
        Command::Bench(args) => crate::bench::run(args).await,
    }
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
    Ok(edgecam_transport_tcp::with_default_port(s.trim()))
}

/// Bytes, with an optional K, M or G suffix (powers of 1024).
fn parse_size(s: &str) -> Result<u32, String> {
    let (digits, unit) = match s.trim().to_ascii_uppercase() {
        t if t.ends_with('K') => (t[..t.len() - 1].to_owned(), 1u64 << 10),
        t if t.ends_with('M') => (t[..t.len() - 1].to_owned(), 1 << 20),
        t if t.ends_with('G') => (t[..t.len() - 1].to_owned(), 1 << 30),
        t => (t, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{s:?} is not a size between 1 byte and 4095M (try 32M)"))
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

/// The camera named by `spec`.
pub fn camera(spec: &str, clock: Arc<dyn Clock>) -> Result<Box<dyn Camera>> {
    match spec.split_once(':').map_or(spec, |(kind, _)| kind) {
        "sim" => {
            let config: edgecam_camera_sim::SimConfig = spec.parse()?;
            Ok(Box::new(edgecam_camera_sim::SimCamera::new(config, clock)))
        }
        "opencv" => bail!(
            "camera {spec:?} needs OpenCV, which this edgecam was built without; \
             use a sim: camera, or rebuild with OpenCV (see the README)"
        ),
        _ => bail!("unknown camera {spec:?}: use sim[:WxH[@FPS]], e.g. sim:640x480@30"),
    }
}

/// Ctrl-C and SIGTERM cancel `token`.
fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                },
                Err(_) => {
                    let _ = ctrl_c.await;
                }
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("signal received, stopping");
        token.cancel();
    });
}

async fn serve(args: ServeArgs) -> Result<()> {
    let encoder = Encoder {
        kind: args.encoder,
        quality: args.quality,
    };
    encoder.check()?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::default());
    let camera = camera(&args.camera, clock.clone())?;
    let transport = TcpTransport::bind(&args.bind).await?;
    let config = ServerConfig {
        session: SessionConfig {
            handshake_timeout: nonzero(args.handshake_timeout),
            idle_timeout: nonzero(args.idle_timeout),
            remote_shutdown: args.allow_remote_shutdown,
            ..SessionConfig::default()
        },
        max_clients: args.max_clients,
        send_timeout: args.send_timeout,
        stats_interval: nonzero(args.stats_interval),
        encoder,
    };
    let stop = CancellationToken::new();
    cancel_on_signals(stop.clone());
    let server = Server::start(transport, camera, clock, config, stop).await?;
    let addr = server.local_addr();
    let caps = server.capabilities();
    let host = local_client_addr(&addr).unwrap_or(addr.clone());
    // Printed in one write, and a closed stdout (`edgecam serve | head -1`) is not an error.
    let _ = write!(
        std::io::stdout().lock(),
        "edgecam serving {} ({}x{}) on {addr}\n  one frame:  edgecam snap {host} -o frame.jpg\n  \
         stream:     edgecam stream {host} --seconds 10\n  stop:       Ctrl-C\n",
        server.camera_name(),
        caps.width,
        caps.height
    );
    server.run().await;
    Ok(())
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

fn client_config(args: &ClientArgs) -> ClientConfig {
    ClientConfig {
        legacy: args.legacy,
        connect_timeout: args.timeout,
        frame_timeout: args.timeout,
        max_frame_len: args.max_frame_size,
    }
}

async fn snap(args: SnapArgs) -> Result<()> {
    let mut client = Client::connect(&args.client.addr, client_config(&args.client)).await?;
    let frame = client.snap().await?;
    tokio::fs::write(&args.output, &frame.jpeg)
        .await
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    let size = edgecam_core::jpeg::dimensions(&frame.jpeg)
        .map_or_else(|| "unknown size".to_owned(), |(w, h)| format!("{w}x{h}"));
    println!(
        "wrote {} ({size}, {} bytes)",
        args.output.display(),
        frame.jpeg.len()
    );
    Ok(())
}

async fn stream(args: StreamArgs) -> Result<()> {
    let mut recorder = match &args.out {
        Some(dir) => {
            let mut r = JpegDirRecorder::new(dir);
            r.start().await?;
            Some(r)
        }
        None => None,
    };
    let mut client = Client::connect(&args.client.addr, client_config(&args.client)).await?;
    let stop = CancellationToken::new();
    cancel_on_signals(stop.clone());
    client.start_stream().await?;
    let started = Instant::now();
    let mut stats = StreamStats::default();
    let mut progress = Progress::default();
    let deadline = args
        .seconds
        .map(|s| tokio::time::Instant::from_std(started + s));
    let result: Result<()> = async {
        while args.frames.is_none_or(|n| stats.frames < n) {
            let frame = tokio::select! {
                () = stop.cancelled() => break,
                () = sleep_until(deadline) => break,
                frame = client.next_frame() => frame?,
            };
            stats.record(&frame);
            if let Some(r) = recorder.as_mut() {
                r.write_frame(&frame.into_frame(stats.frames)).await?;
            }
            progress.show(&stats);
        }
        Ok(())
    }
    .await;
    progress.finish();
    // Stop the stream even after an error, so a legacy server is left idle.
    let drained = client.stop_stream().await;
    if let Some(mut r) = recorder {
        let summary = r.finish().await?;
        println!(
            "saved {} frames ({:.1} MB) in {}",
            summary.frames,
            summary.bytes as f64 / 1e6,
            summary.path.display()
        );
    }
    result?;
    let drained = drained?;
    println!(
        "{}",
        summary_line(&stats.summary(), client.invalid_frames(), drained)
    );
    Ok(())
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
