//! `edgecam bench`: the figures behind the README's performance table. It runs real `edgecam
//! serve` child processes on the synthetic camera over loopback and measures them from outside
//! (CPU time and peak memory from /proc), with clients in this process.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use edgecam::client::{Client, ClientConfig, StreamStats, StreamSummary, percentile};
use edgecam::clock::SystemClock;
use edgecam_core::frame::Frame;
use edgecam_core::time::Clock;
use edgecam_recorder::{AviConfig, AviWriter};
use tokio::io::AsyncWriteExt;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Frame sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "640x480,1280x720")]
    sizes: Vec<String>,
    /// Seconds each streaming measurement runs.
    #[arg(long, default_value_t = 4.0)]
    seconds: f64,
    /// Single shots for the round-trip latency figure.
    #[arg(long, default_value_t = 100)]
    shots: usize,
    #[command(flatten)]
    encode: crate::cli::EncodeArgs,
}

/// Linux's USER_HZ, the unit of utime/stime in /proc/PID/stat.
const TICKS_PER_SECOND: f64 = 100.0;
const CAMERA_FPS: f64 = 30.0;

pub async fn run(args: BenchArgs) -> Result<()> {
    if !cfg!(target_os = "linux") {
        bail!("the benchmark reads /proc and runs on Linux only");
    }
    println!(
        "edgecam bench: encoder {:?}, quality {}, {} s per streaming figure, {} cores",
        args.encode.encoder,
        args.encode.quality,
        args.seconds,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    for size in &args.sizes {
        bench_size(&args, size).await?;
    }
    Ok(())
}

async fn bench_size(args: &BenchArgs, size: &str) -> Result<()> {
    println!("\n== {size}");
    let window = Duration::from_secs_f64(args.seconds);
    let (generate_ms, encode_ms, frames) = encode_cost(args, size).await?;
    println!(
        "JPEG encode alone                      {encode_ms:8.3} ms/frame (test pattern generation {generate_ms:.3} ms/frame)"
    );
    recording_cost(args, &frames)?;
    #[cfg(feature = "opencv")]
    println!(
        "re-encoding like the legacy client:     {:8.3} ms CPU/frame (decode + XVID with OpenCV)",
        xvid_ms(&frames).await?
    );

    // Throughput: a camera that delivers as fast as it is asked.
    let server = ServerProcess::start(args, &format!("sim:{size}@0"))?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = server.cpu_seconds()?;
    tokio::time::sleep(window).await;
    let idle_pct = (server.cpu_seconds()? - idle) / window.as_secs_f64() * 100.0;
    let one = stream_clients(&server, 1, window).await?;
    let sixteen = stream_clients(&server, 16, window).await?;
    let rss_fast = server.peak_rss_kib()?;
    drop(server);

    // Latency: a camera paced at 30 fps.
    let server = ServerProcess::start(args, &format!("sim:{size}@{CAMERA_FPS}"))?;
    let shots = single_shots(&server, args.shots).await?;
    let reader = latency_with_stalled_client(&server, window).await?;
    let (latency_p50, latency_p99) = reader
        .latency_ms
        .context("the streaming client got no stamped frames")?;
    let rss = server.peak_rss_kib()?.max(rss_fast);
    drop(server);

    let ms = |us: u64| us as f64 / 1000.0;
    println!(
        "server CPU per delivered frame, 1 client   {:8.3} ms  ({:.2}x encode; target <= 1.15x)",
        one.cpu_per_delivered_ms,
        one.cpu_per_delivered_ms / encode_ms
    );
    println!(
        "server CPU per captured frame, 16 clients  {:8.3} ms  ({:.2}x the 1-client figure; target <= 1.5x); {:.3} ms per delivered frame, {:.0} frames/s delivered",
        sixteen.cpu_per_captured_ms,
        sixteen.cpu_per_captured_ms / one.cpu_per_captured_ms,
        sixteen.cpu_per_delivered_ms,
        sixteen.delivered as f64 / window.as_secs_f64()
    );
    let target = 1000.0 / CAMERA_FPS + encode_ms + 1.0;
    println!(
        "single-shot round trip                 p50 {:6.2} ms  p99 {:6.2} ms  (target p50 <= {target:.1} ms)",
        ms(shots.0),
        ms(shots.1)
    );
    println!(
        "capture-to-receive, 1 stalled client   p50 {latency_p50:6.2} ms  p99 {latency_p99:6.2} ms  ({} frames in {:.0} s at {CAMERA_FPS} fps)",
        reader.frames, args.seconds
    );
    println!(
        "server peak RSS                        {:8.1} MiB",
        rss as f64 / 1024.0
    );
    println!("idle CPU, no clients                   {idle_pct:8.2} % of a core (target < 1 %)");
    Ok(())
}

/// Milliseconds of this thread's CPU time spent generating and encoding test frames, and the
/// frames.
async fn encode_cost(args: &BenchArgs, size: &str) -> Result<(f64, f64, Vec<Frame>)> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::default());
    let mut camera = crate::cli::camera(&format!("sim:{size}@0"), clock)?;
    camera.open().await?;
    let mut encoder = args.encode.encoder()?;
    let count = 100;
    let (mut generate, mut encode) = (0.0, 0.0);
    let mut frames = Vec::with_capacity(count);
    for _ in 0..count {
        let t0 = thread_cpu_seconds()?;
        let captured = camera.next_frame().await?;
        let t1 = thread_cpu_seconds()?;
        frames.push(std::hint::black_box(encoder.encode(captured)?));
        let t2 = thread_cpu_seconds()?;
        generate += t1 - t0;
        encode += t2 - t1;
    }
    camera.close().await?;
    Ok((
        generate * 1000.0 / count as f64,
        encode * 1000.0 / count as f64,
        frames,
    ))
}

/// Recording as received (the AVI writer) against what the legacy client does with each
/// frame (decode, then encode again), and the viewer's decoders.
fn recording_cost(args: &BenchArgs, frames: &[Frame]) -> Result<()> {
    const RECORDED: usize = 1000;
    let path = std::env::temp_dir().join(format!("edgecam-bench-{}.avi", std::process::id()));
    let file = std::fs::File::create(&path)
        .with_context(|| format!("creating {} for the recording figure", path.display()))?;
    let result = (|| -> Result<(f64, Duration, u64)> {
        let mut writer = AviWriter::new(file, AviConfig::default())?;
        let (cpu, wall) = (thread_cpu_seconds()?, Instant::now());
        for (i, frame) in frames.iter().cycle().take(RECORDED).enumerate() {
            let at = frame.captured_at + Duration::from_micros(33_333 * i as u64);
            writer.write_frame(&frame.jpeg, at)?;
        }
        let summary = writer.finish()?;
        Ok((
            thread_cpu_seconds()? - cpu,
            wall.elapsed(),
            summary.file_bytes,
        ))
    })();
    let _ = std::fs::remove_file(&path);
    let (avi_cpu, avi_wall, bytes) = result?;
    let avi_ms = avi_cpu * 1000.0 / RECORDED as f64;

    let quality = args.encode.quality;
    let (decode_ms, reencode_ms) = per_frame_ms(frames, |jpeg| {
        let t = thread_cpu_seconds()?;
        let picture = edgecam::view::decode(jpeg)?;
        let decoded = thread_cpu_seconds()? - t;
        let mut out = Vec::new();
        jpeg_encoder::Encoder::new(&mut out, quality).encode(
            &picture.rgb,
            u16::try_from(picture.width)?,
            u16::try_from(picture.height)?,
            jpeg_encoder::ColorType::Rgb,
        )?;
        Ok((decoded, thread_cpu_seconds()? - t - decoded))
    })?;
    println!(
        "recording to AVI, as received          {avi_ms:8.3} ms CPU/frame, {:.0} MB/s ({RECORDED} frames, {:.1} MB, fdatasync included)",
        bytes as f64 / 1e6 / avi_wall.as_secs_f64(),
        bytes as f64 / 1e6
    );
    println!(
        "re-encoding, pure Rust: decode + JPEG  {:8.3} ms CPU/frame ({:.0}x recording as received)",
        decode_ms + reencode_ms,
        (decode_ms + reencode_ms) / avi_ms
    );
    println!("view decode, jpeg-decoder (pure Rust)  {decode_ms:8.3} ms/frame (the default)");
    #[cfg(feature = "turbojpeg")]
    {
        let (turbo_ms, _) = per_frame_ms(frames, |jpeg| {
            let t = thread_cpu_seconds()?;
            std::hint::black_box(turbojpeg::decompress(jpeg, turbojpeg::PixelFormat::RGB)?);
            Ok((thread_cpu_seconds()? - t, 0.0))
        })?;
        println!("view decode, libjpeg-turbo             {turbo_ms:8.3} ms/frame");
    }
    Ok(())
}

/// The mean of the two figures `measure` gives for each frame, in milliseconds.
fn per_frame_ms(
    frames: &[Frame],
    mut measure: impl FnMut(&[u8]) -> Result<(f64, f64)>,
) -> Result<(f64, f64)> {
    let (mut a, mut b) = (0.0, 0.0);
    for frame in frames {
        let (x, y) = measure(&frame.jpeg)?;
        (a, b) = (a + x, b + y);
    }
    let n = frames.len().max(1) as f64;
    Ok((a * 1000.0 / n, b * 1000.0 / n))
}

/// This thread's CPU time so far. (The scheduler's counters in /proc only advance at
/// context switches and ticks, too coarsely for one frame.)
#[allow(unsafe_code)]
fn thread_cpu_seconds() -> Result<f64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        bail!(
            "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9)
}

/// User plus system CPU time of process `pid`, exited threads included.
fn process_cpu_seconds(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(u), Some(s)) => Ok((u + s) as f64 / TICKS_PER_SECOND),
        _ => bail!("unexpected {path}: {stat}"),
    }
}

/// What the legacy client really does with each frame, in builds with OpenCV: decode, then
/// re-encode to XVID with OpenCV's VideoWriter. CPU of the whole process (the encoder may
/// use threads of its own), per frame.
#[cfg(feature = "opencv")]
async fn xvid_ms(frames: &[Frame]) -> Result<f64> {
    use edgecam_core::recorder::Recorder;
    const RECORDED: usize = 300;
    let path = std::env::temp_dir().join(format!("edgecam-bench-{}-xvid.avi", std::process::id()));
    let mut recorder =
        edgecam_camera_opencv::OpenCvRecorder::new(&path, edgecam_camera_opencv::LEGACY_FPS);
    let result = async {
        recorder.start().await?;
        let cpu = process_cpu_seconds(std::process::id())?;
        for frame in frames.iter().cycle().take(RECORDED) {
            recorder.write_frame(frame).await?;
        }
        recorder.finish().await?;
        anyhow::Ok(process_cpu_seconds(std::process::id())? - cpu)
    }
    .await;
    let _ = std::fs::remove_file(&path);
    Ok(result? * 1000.0 / RECORDED as f64)
}

/// An `edgecam serve` child process on a free loopback port.
struct ServerProcess {
    child: Child,
    addr: String,
    /// Kept open: the server may still write to its stdout.
    _stdout: BufReader<ChildStdout>,
}

impl ServerProcess {
    fn start(args: &BenchArgs, camera: &str) -> Result<Self> {
        let exe = std::env::current_exe().context("finding the edgecam executable")?;
        let mut child = Command::new(exe)
            .args(["serve", "--bind", "127.0.0.1:0", "--stats-interval", "0"])
            .args([
                "--camera",
                camera,
                "--quality",
                &args.encode.quality.to_string(),
            ])
            .args(["--send-timeout", "2"])
            .arg("--encoder")
            .arg(&args.encode.encoder)
            .env(
                "RUST_LOG",
                std::env::var("EDGECAM_BENCH_SERVER_LOG").unwrap_or_else(|_| "error".to_owned()),
            )
            .stdout(Stdio::piped())
            .spawn()
            .context("starting edgecam serve")?;
        let stdout = child
            .stdout
            .take()
            .context("no stdout from edgecam serve")?;
        let mut stdout = BufReader::new(stdout);
        let mut first = String::new();
        stdout.read_line(&mut first)?;
        let addr = first
            .trim()
            .rsplit(" on ")
            .next()
            .filter(|a| a.contains(':'))
            .with_context(|| format!("edgecam serve printed {first:?}, not its address"))?
            .to_owned();
        Ok(ServerProcess {
            child,
            addr,
            _stdout: stdout,
        })
    }

    fn proc_file(&self, name: &str) -> Result<String> {
        let path = format!("/proc/{}/{name}", self.child.id());
        std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))
    }

    fn cpu_seconds(&self) -> Result<f64> {
        process_cpu_seconds(self.child.id())
    }

    fn peak_rss_kib(&self) -> Result<u64> {
        let status = self.proc_file("status")?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .context("no VmHWM in /proc/PID/status")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Throughput {
    delivered: u64,
    cpu_per_delivered_ms: f64,
    cpu_per_captured_ms: f64,
}

/// `n` clients stream for `window`; server CPU per delivered and per captured frame.
async fn stream_clients(server: &ServerProcess, n: usize, window: Duration) -> Result<Throughput> {
    let mut clients = Vec::new();
    for _ in 0..n {
        let mut c = Client::connect(&server.addr, ClientConfig::default()).await?;
        c.start_stream().await?;
        // Warm up: the stream is flowing before the measurement starts.
        c.next_frame().await?;
        clients.push(c);
    }
    let cpu_before = server.cpu_seconds()?;
    let deadline = Instant::now() + window;
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let (mut count, mut seqs) = (0u64, (u64::MAX, 0u64));
                while Instant::now() < deadline {
                    let frame = c.next_frame().await?;
                    count += 1;
                    if let Some(s) = frame.stamp {
                        seqs = (seqs.0.min(s.seq), seqs.1.max(s.seq));
                    }
                }
                // Dropping the connection ends the session; no need to stop politely.
                drop(c);
                anyhow::Ok((count, seqs))
            })
        })
        .collect();
    let mut delivered = 0;
    let mut seqs = (u64::MAX, 0);
    for t in tasks {
        let (count, (lo, hi)) = t.await??;
        delivered += count;
        seqs = (seqs.0.min(lo), seqs.1.max(hi));
    }
    let cpu = server.cpu_seconds()? - cpu_before;
    let captured = (seqs.1 + 1).saturating_sub(seqs.0).max(1);
    Ok(Throughput {
        delivered,
        cpu_per_delivered_ms: cpu * 1000.0 / delivered.max(1) as f64,
        cpu_per_captured_ms: cpu * 1000.0 / captured as f64,
    })
}

/// p50 and p99 of single-shot round trips (`0` sent to frame received), in microseconds.
async fn single_shots(server: &ServerProcess, shots: usize) -> Result<(u64, u64)> {
    let mut client = Client::connect(&server.addr, ClientConfig::default()).await?;
    let mut times = Vec::with_capacity(shots);
    for _ in 0..shots {
        let t = Instant::now();
        client.snap().await?;
        times.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
    }
    times.sort_unstable();
    Ok((
        percentile(&times, 50.0).unwrap_or(0),
        percentile(&times, 99.0).unwrap_or(0),
    ))
}

/// Capture-to-receive latency of a streaming client while another client asked for a stream
/// and never reads it: the client's own stream figures.
async fn latency_with_stalled_client(
    server: &ServerProcess,
    window: Duration,
) -> Result<StreamSummary> {
    let mut stalled = tokio::net::TcpStream::connect(&server.addr).await?;
    stalled.write_all(b"3").await?;
    let mut client = Client::connect(&server.addr, ClientConfig::default()).await?;
    client.start_stream().await?;
    let deadline = Instant::now() + window;
    let mut stats = StreamStats::default();
    while Instant::now() < deadline {
        stats.record(&client.next_frame().await?);
    }
    client.stop_stream().await?;
    drop(stalled);
    Ok(stats.summary())
}
