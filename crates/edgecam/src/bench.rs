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
use edgecam_core::camera::{Captured, Image, PixelFormat};
use edgecam_core::frame::Frame;
use edgecam_core::time::Clock;
use edgecam_encode::{BackendKind, Encoder, Passthrough, from_rgb24};
use edgecam_recorder::{AviConfig, AviWriter};
use tokio::io::AsyncWriteExt;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Frame sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "640x480,1280x720")]
    sizes: Vec<String>,
    /// The synthetic camera's picture: natural (the entropy of a real scene, what the
    /// README's figures use) or pattern (flat colour bars, which flatter every encoder).
    #[arg(long, value_enum, default_value_t = BenchScene::Natural)]
    scene: BenchScene,
    /// Seconds each streaming measurement runs (the one-client figures interleave 8 one-second
    /// slices of streaming with 8 of the encode alone instead; the passthrough fan-out figures
    /// alternate 4 rounds of ours and GStreamer's, a quarter of it each).
    #[arg(long, default_value_t = 4.0)]
    seconds: f64,
    /// Single shots for the round-trip latency figure.
    #[arg(long, default_value_t = 100)]
    shots: usize,
    /// Frames each encode-alone figure averages over (in each of 3 rounds; the best counts).
    #[arg(long, default_value_t = 100)]
    frames: usize,
    /// Only the encode-alone figures (every backend, RGB and NV12 input), e.g. under emulation.
    #[arg(long)]
    encode_only: bool,
    #[command(flatten)]
    encode: crate::cli::EncodeArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BenchScene {
    Natural,
    Pattern,
}

impl BenchArgs {
    /// The sim camera spec for `size` at `fps` (0: as fast as asked).
    fn sim(&self, size: &str, fps: f64) -> String {
        match self.scene {
            BenchScene::Natural => format!("sim:{size}@{fps}#scene=natural"),
            BenchScene::Pattern => format!("sim:{size}@{fps}"),
        }
    }
}

/// Linux's USER_HZ, the unit of utime/stime in /proc/PID/stat.
#[cfg(feature = "opencv")]
const TICKS_PER_SECOND: f64 = 100.0;
const CAMERA_FPS: f64 = 30.0;
/// The input formats the encode-alone figures are given for.
const INPUTS: [PixelFormat; 2] = [PixelFormat::Rgb24, PixelFormat::Nv12];
/// Clients of the passthrough fan-out figures, over both protocols.
const FANOUT_CLIENTS: [usize; 3] = [1, 8, 16];

pub async fn run(args: BenchArgs) -> Result<()> {
    if !cfg!(target_os = "linux") {
        bail!("the benchmark reads /proc and runs on Linux only");
    }
    let backends = edgecam::backends::encoders();
    let names: Vec<_> = backends.kinds().iter().map(|k| k.name).collect();
    println!(
        "edgecam bench: {:?} scene, encoders in this build {names:?} (the server uses --encoder {}), quality {}, {} s per streaming figure, {} cores",
        args.scene,
        args.encode.encoder,
        args.encode.quality,
        args.seconds,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    for size in &args.sizes {
        println!("\n== {size}");
        let costs = encode_costs(&args, size).await?;
        if !args.encode_only {
            bench_serving(&args, size, &costs).await?;
        }
    }
    Ok(())
}

async fn bench_serving(args: &BenchArgs, size: &str, costs: &EncodeCosts) -> Result<()> {
    let (generate_ms, encode_ms, frames) = (costs.generate_ms, costs.best_rgb.1, &costs.frames);
    let window = Duration::from_secs_f64(args.seconds);
    recording_cost(args, frames)?;
    #[cfg(feature = "opencv")]
    println!(
        "re-encoding like the legacy client:     {:8.3} ms CPU/frame (decode + XVID with OpenCV)",
        xvid_ms(frames).await?
    );

    // Throughput: a camera that delivers as fast as it is asked.
    let server = ServerProcess::start(args, &args.sim(size, 0.0)).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = server.cpu()?;
    tokio::time::sleep(window).await;
    let idle_pct = server.cpu()?.seconds_since(&idle) / window.as_secs_f64() * 100.0;
    let one = one_client(&server, costs, PixelFormat::Rgb24).await?;
    let sixteen = stream_clients(&server.addr, server.child.id(), 16, window).await?;
    let rss_fast = server.peak_rss_kib()?;
    drop(server);

    // Latency: a camera paced at 30 fps.
    let server = ServerProcess::start(args, &args.sim(size, CAMERA_FPS)).await?;
    let shots = single_shots(&server, args.shots).await?;
    let reader = latency_with_stalled_client(&server, window).await?;
    let (latency_p50, latency_p99) = reader
        .latency_ms
        .context("the streaming client got no stamped frames")?;
    let rss = server.peak_rss_kib()?.max(rss_fast);
    drop(server);

    let ms = |us: u64| us as f64 / 1000.0;
    let net = one.server.cpu_per_delivered_ms() - generate_ms;
    println!(
        "server CPU per delivered frame, 1 client   {:8.3} ms  ({:.2}x the best encode alone, {:.3} ms in the slices beside it; {}; {:.2}x net of the synthetic camera's own {generate_ms:.3} ms of drawing; target <= 1.10x)",
        one.server.cpu_per_delivered_ms(),
        one.ratio(),
        one.encode_ms,
        one.pairs(),
        net / one.encode_ms,
    );
    println!(
        "server CPU per captured frame, 16 clients  {:8.3} ms  ({:.2}x the 1-client figure; target <= 1.5x); {:.3} ms per delivered frame, {:.0} frames/s delivered",
        sixteen.cpu_per_captured_ms(),
        sixteen.cpu_per_captured_ms() / one.server.cpu_per_captured_ms(),
        sixteen.cpu_per_delivered_ms(),
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

    exec_cameras(args, size, costs, window).await
}

/// What the encode-alone figures found.
struct EncodeCosts {
    /// The synthetic camera's own cost of drawing a frame.
    generate_ms: f64,
    /// The best backend for RGB and NV12 input, with its cost.
    best_rgb: (BackendKind, f64),
    best_nv12: (BackendKind, f64),
    quality: u8,
    /// The scene encoded by the first (fastest) backend.
    frames: Vec<Frame>,
    /// The scene as the camera drew it.
    captured: Vec<Captured>,
}

/// Encode-alone cost of every backend this build has, for RGB and NV12 input of the scene.
async fn encode_costs(args: &BenchArgs, size: &str) -> Result<EncodeCosts> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::default());
    let mut camera = crate::cli::camera(&args.sim(size, 0.0), clock)?;
    camera.open().await?;
    let count = args.frames.max(1);
    // Drawing as in the server, where each frame is encoded and dropped before the next is
    // drawn: the camera draws into buffers it takes back.
    let mut generate = 0.0;
    for _ in 0..count {
        let t = thread_cpu_seconds();
        drop(camera.next_frame().await?);
        generate += thread_cpu_seconds() - t;
    }
    // The frames the encoders take, kept (and so drawn into new buffers): not timed.
    let mut captured = Vec::with_capacity(count);
    for _ in 0..count {
        captured.push(camera.next_frame().await?);
    }
    camera.close().await?;
    let generate_ms = generate * 1000.0 / count as f64;
    println!("synthetic camera, drawing a frame      {generate_ms:8.3} ms/frame");

    let backends = edgecam::backends::encoders();
    let (mut best_rgb, mut best_nv12) = (None, None);
    let mut frames = Vec::new();
    for kind in backends.kinds() {
        for format in INPUTS {
            let mut encoder = start_encoder(kind, args.encode.quality)?;
            let mut best = None;
            for _ in 0..ROUNDS {
                let round = encode_round(&mut encoder, &captured, format, None)?;
                if best.as_ref().is_none_or(|b: &EncodeRound| round.ms < b.ms) {
                    best = Some(round);
                }
            }
            let EncodeRound {
                ms,
                frames: encoded,
                converted,
                ..
            } = best.context("no encode round was run")?;
            let kb = encoded.iter().map(|f| f.jpeg.len()).sum::<usize>() as f64
                / encoded.len().max(1) as f64
                / 1000.0;
            let how = if converted {
                "converted to RGB first"
            } else {
                "as it is"
            };
            println!(
                "JPEG encode alone, {:<7} {format:<6} {ms:8.3} ms/frame  {kb:6.1} KB  ({how})",
                kind.name
            );
            let best = if format == PixelFormat::Rgb24 {
                if frames.is_empty() {
                    frames = encoded;
                }
                &mut best_rgb
            } else {
                &mut best_nv12
            };
            if best.as_ref().is_none_or(|(_, best_ms)| ms < *best_ms) {
                *best = Some((kind.clone(), ms));
            }
        }
    }
    // What passing a camera's JPEG on costs: the stamp, inserted with one copy.
    let t = thread_cpu_seconds();
    for frame in &frames {
        let stamp = edgecam_core::jpeg::Stamp {
            seq: frame.seq,
            captured_at: frame.captured_at,
        };
        std::hint::black_box(edgecam_core::jpeg::prepare_passthrough(
            &frame.jpeg,
            Some(stamp),
        ));
    }
    let stamp_ms = (thread_cpu_seconds() - t) * 1000.0 / frames.len().max(1) as f64;
    println!("passthrough, stamping a camera JPEG    {stamp_ms:8.4} ms/frame (one copy)");
    let best = |best: Option<(BackendKind, f64)>| best.context("this build has no encoder");
    Ok(EncodeCosts {
        generate_ms,
        best_rgb: best(best_rgb)?,
        best_nv12: best(best_nv12)?,
        quality: args.encode.quality,
        frames,
        captured,
    })
}

/// An encoder on backend `kind` at `quality`, as the server makes one.
fn start_encoder(kind: &BackendKind, quality: u8) -> Result<Encoder> {
    let backend = (kind.start)().map_err(|e| anyhow::anyhow!("starting {}: {e}", kind.name))?;
    Ok(Encoder::new(backend, quality, Passthrough::Stamped))
}

/// One round of encode-alone figures.
struct EncodeRound {
    /// CPU per frame, in milliseconds.
    ms: f64,
    /// Frames timed (all but the first).
    timed: usize,
    frames: Vec<Frame>,
    /// Whether the backend took the input converted to RGB first.
    converted: bool,
}

/// `encoder` encodes each of `captured` converted to `format`, back to back or one every `pace`.
/// The first frame warms the encoder up (its buffers, tables and code) and is not timed, as a
/// server's encoder is warm.
fn encode_round(
    encoder: &mut Encoder,
    captured: &[Captured],
    format: PixelFormat,
    pace: Option<Duration>,
) -> Result<EncodeRound> {
    let mut frames = Vec::with_capacity(captured.len());
    let (mut cpu, mut timed, mut converted) = (0.0, 0, true);
    for (i, c) in captured.iter().enumerate() {
        if let Some(pace) = pace {
            // The bench's own runtime has nothing else to run meanwhile.
            std::thread::sleep(pace);
        }
        // Converted (untimed) just before it is encoded, so the frame is in the cache as a
        // frame the camera just delivered is.
        let image = &c.image;
        let input = Captured {
            image: from_rgb24(format, image.width(), image.height(), image.data())
                .context("converting the scene")?,
            ..c.clone()
        };
        converted = !encoder.takes(&input.image);
        let t = thread_cpu_seconds();
        frames.push(std::hint::black_box(encoder.encode(input)?));
        if i > 0 {
            cpu += thread_cpu_seconds() - t;
            timed += 1;
        }
    }
    Ok(EncodeRound {
        ms: cpu * 1000.0 / timed.max(1) as f64,
        timed,
        frames,
        converted,
    })
}

impl EncodeCosts {
    /// The best backend for `format` encoding the scene again, now, for at least
    /// `SLICE` of CPU (the machine's speed drifts within seconds: a hundred frames are
    /// too short a sample to set beside a streaming window): its CPU per frame.
    fn encode_now(&self, format: PixelFormat) -> Result<(f64, usize)> {
        let mut encoder = self.best_encoder(format)?;
        let (mut total_ms, mut timed, mut rounds) = (0.0, 0, 0);
        // Bounded however fast the encoder is.
        while (total_ms < SLICE.as_secs_f64() * 1000.0 && rounds < 1000) || rounds == 0 {
            let round = encode_round(&mut encoder, &self.captured, format, None)?;
            total_ms += round.ms * round.timed as f64;
            timed += round.timed;
            rounds += 1;
        }
        Ok((total_ms / timed.max(1) as f64, timed))
    }

    /// The best backend for `format` encoding the scene at a camera's pace, one frame every
    /// 1/`CAMERA_FPS` s, each converted right before it is encoded as a frame from a pipe is
    /// written right before: its CPU per frame. Between frames the machine runs other things,
    /// and the encoder's code and tables leave the caches as they do in a server at that pace.
    fn encode_paced(&self, format: PixelFormat) -> Result<f64> {
        let mut encoder = self.best_encoder(format)?;
        let pace = Duration::from_secs_f64(1.0 / CAMERA_FPS);
        Ok(encode_round(&mut encoder, &self.captured, format, Some(pace))?.ms)
    }

    fn best_encoder(&self, format: PixelFormat) -> Result<Encoder> {
        let (kind, _) = if format == PixelFormat::Rgb24 {
            &self.best_rgb
        } else {
            &self.best_nv12
        };
        start_encoder(kind, self.quality)
    }

    /// One frame of the scene as the camera drew it (RGB).
    fn picture(&self) -> Result<&Image> {
        Ok(&self
            .captured
            .first()
            .context("the camera gave no frame")?
            .image)
    }
}

/// `exec:` cameras fed by ffmpeg, which loops one frame of the scene: raw NV12 at 30 fps
/// encoded for one client; JPEGs passed through to 1, 8 and 16 clients over the legacy
/// protocol and over HTTP, against GStreamer's
/// fan-out of the same JPEG (when gst-launch-1.0 is installed); and the idle CPU of a server
/// with an `exec:` camera running and no client.
async fn exec_cameras(
    args: &BenchArgs,
    size: &str,
    costs: &EncodeCosts,
    window: Duration,
) -> Result<()> {
    let Some(frame) = costs.frames.first() else {
        return Ok(());
    };
    if !on_path("ffmpeg") {
        println!("exec: camera figures: skipped: ffmpeg is not installed (apt-get install ffmpeg)");
        return Ok(());
    }
    let scratch = std::env::temp_dir().join(format!("edgecam-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).with_context(|| {
        format!(
            "creating {} for the exec: cameras' frames",
            scratch.display()
        )
    })?;
    let result = exec_cameras_in(args, size, costs, frame, &scratch, window).await;
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

async fn exec_cameras_in(
    args: &BenchArgs,
    size: &str,
    costs: &EncodeCosts,
    frame: &Frame,
    scratch: &std::path::Path,
    window: Duration,
) -> Result<()> {
    let jpeg = scratch.join(format!("{size}.jpg"));
    std::fs::write(&jpeg, &frame.jpeg).with_context(|| format!("writing {}", jpeg.display()))?;
    let picture = costs.picture()?;
    let nv12 = from_rgb24(
        PixelFormat::Nv12,
        picture.width(),
        picture.height(),
        picture.data(),
    )
    .context("converting the scene to NV12")?;
    let raw = scratch.join(format!("{size}.nv12"));
    std::fs::write(&raw, nv12.data()).with_context(|| format!("writing {}", raw.display()))?;

    let ffmpeg = format!(
        "-loglevel error -re -stream_loop -1 -f rawvideo -pix_fmt nv12 -s {size} \
         -framerate {CAMERA_FPS} -i {} -f rawvideo -",
        raw.display()
    );
    let server = ServerProcess::start(
        args,
        &format!("exec:ffmpeg {ffmpeg}#format=nv12&size={size}"),
    )
    .await?;
    let one = one_client(&server, costs, PixelFormat::Nv12).await?;
    drop(server);
    let paced_ms = costs.encode_paced(PixelFormat::Nv12)?;
    let read_ms = pipe_read_ms(&ffmpeg, nv12.data().len(), window)?;
    println!(
        "exec: NV12 camera at {CAMERA_FPS} fps, 1 client: server CPU {:.3} ms per delivered frame ({:.2}x the best NV12 encode alone back to back, {:.3} ms in the slices beside it; {}; target <= 1.10x); {:.2}x the same encode paced at {CAMERA_FPS} fps ({paced_ms:.3} ms); reading a frame from the pipe alone costs {read_ms:.3} ms, the rest is {:.2}x the paced encode",
        one.server.cpu_per_delivered_ms(),
        one.ratio(),
        one.encode_ms,
        one.pairs(),
        one.server.cpu_per_delivered_ms() / paced_ms,
        (one.server.cpu_per_delivered_ms() - read_ms) / paced_ms
    );
    passthrough(args, &jpeg, window).await
}

async fn passthrough(args: &BenchArgs, jpeg: &std::path::Path, window: Duration) -> Result<()> {
    // One JPEG of the scene, looped by ffmpeg at 1000 fps without re-encoding: what
    // GStreamer's multifilesrc does below.
    let camera = format!(
        "exec:ffmpeg -loglevel error -re -f image2 -loop 1 -framerate 1000 -i {} -c copy -f mjpeg -",
        jpeg.display()
    );
    let server = ServerProcess::start(args, &camera).await?;
    let slice = window / FANOUT_ROUNDS as u32;
    let legacy_request = [edgecam_core::codec::Command::Stream.byte()];
    let http_request = b"GET /stream HTTP/1.1\r\nHost: bench\r\n\r\n";
    for n in FANOUT_CLIENTS {
        let (mut legacy, mut http, mut gst) =
            (Fanout::default(), Fanout::default(), Ok(Vec::new()));
        for _ in 0..FANOUT_ROUNDS {
            legacy += server.fanout(&legacy_request, n, slice).await?;
            let ours = server.fanout(http_request, n, slice).await?;
            http += ours;
            if n > 1
                && let Ok(rounds) = &mut gst
            {
                match gstreamer_fanout(jpeg, n, slice).await {
                    Ok(theirs) => rounds.push((ours, theirs)),
                    Err(why) => gst = Err(why),
                }
            }
        }
        let gst = match gst {
            Ok(rounds) if rounds.is_empty() => String::new(),
            Ok(rounds) => {
                let mut theirs = Fanout::default();
                for (_, round) in &rounds {
                    theirs += *round;
                }
                let (lo, hi) = spread(
                    rounds
                        .iter()
                        .map(|(o, g)| o.ms_per_frame() / g.ms_per_frame()),
                );
                format!(
                    "; GStreamer multipartmux ! tcpserversink: {:.3} ms ({:.0} frames/s; HTTP /stream {:.2}x it, rounds from {lo:.2}x to {hi:.2}x; target <= 1.00x)",
                    theirs.ms_per_frame(),
                    theirs.frames / window.as_secs_f64(),
                    http.ms_per_frame() / theirs.ms_per_frame(),
                )
            }
            Err(why) => format!("; GStreamer: skipped: {why}"),
        };
        println!(
            "passthrough from exec: MJPEG, {n:2} clients ({FANOUT_ROUNDS} rounds of {:.1} s): server CPU per delivered frame: legacy {:.3} ms ({:.0} frames/s), HTTP /stream {:.3} ms ({:.0} frames/s; {:.2}x legacy, target <= 1.10x){gst}",
            slice.as_secs_f64(),
            legacy.ms_per_frame(),
            legacy.frames / window.as_secs_f64(),
            http.ms_per_frame(),
            http.frames / window.as_secs_f64(),
            http.ms_per_frame() / legacy.ms_per_frame(),
        );
    }
    drop(server);

    let camera = format!(
        "exec:ffmpeg -loglevel error -re -f image2 -loop 1 -framerate {CAMERA_FPS} -i {} -c copy -f mjpeg -",
        jpeg.display()
    );
    let server = ServerProcess::start(args, &camera).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.cpu()?;
    tokio::time::sleep(window).await;
    let idle_pct = server.cpu()?.seconds_since(&before) / window.as_secs_f64() * 100.0;
    println!(
        "idle CPU, exec: camera at {CAMERA_FPS} fps, no client {idle_pct:6.2} % of a core beyond the child's own (target < 1 %)"
    );
    Ok(())
}

/// What an `exec:` camera's pipe costs on its own: ffmpeg run with `args` (raw frames of
/// `frame_len` bytes on its standard output), read by a thread of this process through a pipe
/// grown to a frame, as the pipe camera grows it, for `window`. CPU per frame, in milliseconds.
fn pipe_read_ms(args: &str, frame_len: usize, window: Duration) -> Result<f64> {
    use std::io::Read;
    let mut child = Command::new("ffmpeg")
        .args(args.split_whitespace())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting ffmpeg for the pipe-read figure")?;
    let mut out = child.stdout.take().context("no stdout from ffmpeg")?;
    // As far as Linux lets an unprivileged process (pipe-max-size, 1 MiB by default).
    let _ = rustix::pipe::fcntl_setpipe_size(&out, frame_len.min(1 << 20));
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let read = (|| -> Result<(f64, u64)> {
            let mut frame = vec![0u8; frame_len];
            // The first frame starts the clock: ffmpeg's own start is not the pipe's cost.
            out.read_exact(&mut frame)?;
            let (cpu, end) = (thread_cpu_seconds(), Instant::now() + window);
            let mut frames = 0;
            while Instant::now() < end {
                out.read_exact(&mut frame)?;
                frames += 1;
            }
            Ok((thread_cpu_seconds() - cpu, frames))
        })();
        let _ = done.send(read);
    });
    // A stuck ffmpeg must not hang the bench: killing it ends the reader's read.
    let result = result.recv_timeout(window + CAMERA_START_WAIT);
    let _ = child.kill();
    let _ = child.wait();
    let (cpu, frames) = match result {
        Ok(read) => read.context("reading ffmpeg's frames for the pipe-read figure")?,
        Err(_) => bail!(
            "ffmpeg gave no frames for the pipe-read figure within {} s",
            (window + CAMERA_START_WAIT).as_secs()
        ),
    };
    Ok(cpu * 1000.0 / frames.max(1) as f64)
}

/// GStreamer serving `jpeg` in a loop as multipart over TCP to `n` plain readers for `window`.
async fn gstreamer_fanout(jpeg: &std::path::Path, n: usize, window: Duration) -> Result<Fanout> {
    if !on_path("gst-launch-1.0") {
        bail!(
            "gst-launch-1.0 is not installed (apt-get install gstreamer1.0-tools gstreamer1.0-plugins-good)"
        );
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut child = Command::new("gst-launch-1.0")
        .args(["-q", "multifilesrc"])
        .arg(format!("location={}", jpeg.display()))
        .args([
            "loop=true",
            "!",
            "image/jpeg,framerate=1000/1",
            "!",
            "multipartmux",
            "!",
            "tcpserversink",
        ])
        .arg("host=127.0.0.1")
        .arg(format!("port={port}"))
        .stdout(Stdio::null())
        // Caps set straight on multifilesrc make GStreamer warn about the segment format on
        // every run; harmless for this measurement.
        .stderr(Stdio::null())
        .spawn()
        .context("starting gst-launch-1.0")?;
    let part = std::fs::metadata(jpeg)?.len() + MULTIPART_HEADER;
    let read = plain_readers(&format!("127.0.0.1:{port}"), b"", child.id(), n, window).await;
    let _ = child.kill();
    let _ = child.wait();
    let read = read.context("reading GStreamer's stream")?;
    Ok(Fanout {
        cpu_ms: read.cpu_ms,
        frames: read.bytes as f64 / part as f64,
    })
}

/// Rounds of each passthrough fan-out figure: our server's and GStreamer's measurements
/// alternate, so that this machine's drift touches both alike.
const FANOUT_ROUNDS: usize = 4;

/// Server CPU over a fan-out measurement and the frames its readers received.
#[derive(Debug, Default, Clone, Copy)]
struct Fanout {
    cpu_ms: f64,
    /// Bytes received over the bytes of one frame on the wire: a fraction at the window's ends.
    frames: f64,
}

impl Fanout {
    fn ms_per_frame(&self) -> f64 {
        self.cpu_ms / self.frames.max(1.0)
    }
}

impl std::ops::AddAssign for Fanout {
    fn add_assign(&mut self, other: Fanout) {
        self.cpu_ms += other.cpu_ms;
        self.frames += other.frames;
    }
}

/// The smallest and the largest of `values`.
fn spread(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)))
}

/// What plain readers received and what the server's process spent meanwhile.
struct PlainRead {
    cpu_ms: f64,
    bytes: u64,
}

/// Bytes each plain reader asks for at once.
const PLAIN_READ: usize = 256 * 1024;

/// `n` connections to `addr`, each sent `request` and then read flat out for `window` by
/// readers that only count bytes, while the CPU of process `pid` is measured. Our server and
/// GStreamer are measured with the same readers, so that neither is read by clients slower than
/// the other's. Each reader's first bytes arrive before the measurement starts.
async fn plain_readers(
    addr: &str,
    request: &[u8],
    pid: u32,
    n: usize,
    window: Duration,
) -> Result<PlainRead> {
    use tokio::io::AsyncReadExt;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut streams = Vec::with_capacity(n);
    while streams.len() < n {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(mut stream) => {
                stream.write_all(request).await?;
                streams.push(stream);
            }
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => bail!("connecting to {addr}: {e}"),
        }
    }
    let mut buf = vec![0u8; PLAIN_READ];
    for stream in &mut streams {
        match tokio::time::timeout(CAMERA_START_WAIT, stream.read(&mut buf)).await {
            Ok(Ok(0)) => bail!("{addr} closed a connection before it sent anything"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => bail!("reading from {addr}: {e}"),
            Err(_) => bail!(
                "{addr} sent nothing within {} s",
                CAMERA_START_WAIT.as_secs()
            ),
        }
    }
    let before = CpuReading::of(pid)?;
    let end = tokio::time::Instant::now() + window;
    let readers: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            tokio::spawn(async move {
                let mut buf = vec![0u8; PLAIN_READ];
                let mut bytes = 0u64;
                loop {
                    match tokio::time::timeout_at(end, stream.read(&mut buf)).await {
                        Err(_) => return Ok(bytes),
                        Ok(Ok(0)) => bail!("the server closed a reader's connection mid-stream"),
                        Ok(Ok(k)) => bytes += k as u64,
                        Ok(Err(e)) => bail!("a reader's connection failed mid-stream: {e}"),
                    }
                }
            })
        })
        .collect();
    let mut bytes = 0;
    for reader in readers {
        bytes += reader.await??;
    }
    Ok(PlainRead {
        cpu_ms: CpuReading::of(pid)?.seconds_since(&before) * 1000.0,
        bytes,
    })
}

/// The bytes multipartmux adds to each part: `\r\n--ThisRandomString\r\nContent-Type:
/// image/jpeg\r\nContent-Length: NNNNN\r\n\r\n` (about; the count of delivered frames it
/// feeds is rounded down).
const MULTIPART_HEADER: u64 = 72;

/// Whether `program` is found in a PATH folder.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
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
        let (cpu, wall) = (thread_cpu_seconds(), Instant::now());
        for (i, frame) in frames.iter().cycle().take(RECORDED).enumerate() {
            let at = frame.captured_at + Duration::from_micros(33_333 * i as u64);
            writer.write_frame(&frame.jpeg, at)?;
        }
        let summary = writer.finish()?;
        Ok((
            thread_cpu_seconds() - cpu,
            wall.elapsed(),
            summary.file_bytes,
        ))
    })();
    let _ = std::fs::remove_file(&path);
    let (avi_cpu, avi_wall, bytes) = result?;
    let avi_ms = avi_cpu * 1000.0 / RECORDED as f64;

    let quality = args.encode.quality;
    let (decode_ms, reencode_ms) = per_frame_ms(frames, |jpeg| {
        let t = thread_cpu_seconds();
        let picture = edgecam::view::decode(jpeg, edgecam_core::jpeg::PictureLimit::default())?;
        let decoded = thread_cpu_seconds() - t;
        let mut out = Vec::new();
        jpeg_encoder::Encoder::new(&mut out, quality).encode(
            &picture.rgb,
            u16::try_from(picture.width)?,
            u16::try_from(picture.height)?,
            jpeg_encoder::ColorType::Rgb,
        )?;
        Ok((decoded, thread_cpu_seconds() - t - decoded))
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
            let t = thread_cpu_seconds();
            std::hint::black_box(turbojpeg::decompress(jpeg, turbojpeg::PixelFormat::RGB)?);
            Ok((thread_cpu_seconds() - t, 0.0))
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
fn thread_cpu_seconds() -> f64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// User plus system CPU time of process `pid`, exited threads included, in clock ticks (10 ms).
#[cfg(feature = "opencv")]
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

/// The CPU time of each thread of a process, to take differences of: nanoseconds from
/// /proc/PID/task/TID/schedstat, where /proc/PID/stat counts clock ticks (10 ms, a fifth of an
/// `exec:` NV12 server's CPU over a one-second slice). A thread that exits between two readings
/// loses what it ran since the first; the servers measured here keep their threads.
struct CpuReading(std::collections::HashMap<u32, u64>);

impl CpuReading {
    fn of(pid: u32) -> Result<CpuReading> {
        let dir = format!("/proc/{pid}/task");
        let mut threads = std::collections::HashMap::new();
        for task in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
            let task = task?;
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            let path = task.path().join("schedstat");
            // A thread that ended since the listing has nothing more to count.
            let Ok(stat) = std::fs::read_to_string(&path) else {
                continue;
            };
            let ns = stat
                .split_whitespace()
                .next()
                .and_then(|ns| ns.parse().ok())
                .with_context(|| format!("unexpected {}: {stat:?}", path.display()))?;
            threads.insert(tid, ns);
        }
        if threads.is_empty() {
            bail!(
                "{dir} lists no thread whose schedstat could be read (a kernel without CONFIG_SCHED_INFO?)"
            );
        }
        Ok(CpuReading(threads))
    }

    /// CPU seconds the process's threads ran since `earlier`.
    fn seconds_since(&self, earlier: &CpuReading) -> f64 {
        let ns: u64 = self
            .0
            .iter()
            .map(|(tid, ns)| ns.saturating_sub(earlier.0.get(tid).copied().unwrap_or(0)))
            .sum();
        ns as f64 / 1e9
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

/// How long a bench server's camera may take to give its first frame.
const CAMERA_START_WAIT: Duration = Duration::from_secs(30);

/// An `edgecam serve` child process on a free loopback port.
struct ServerProcess {
    child: Child,
    addr: String,
    /// Kept open: the server may still write to its stdout.
    _stdout: BufReader<ChildStdout>,
}

impl ServerProcess {
    async fn start(args: &BenchArgs, camera: &str) -> Result<Self> {
        let exe = std::env::current_exe().context("finding the edgecam executable")?;
        let mut child = Command::new(exe)
            // Every bench client comes from 127.0.0.1: no per-address limit.
            .args(["serve", "--bind", "127.0.0.1:0", "--stats-interval", "0"])
            .args(["--max-clients-per-ip", "0"])
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
        let server = ServerProcess {
            child,
            addr,
            _stdout: stdout,
        };
        server.wait_for_a_frame().await?;
        Ok(server)
    }

    /// Waits until the server hands out a frame, so that no figure counts a camera's start:
    /// ffmpeg as an `exec:` camera took seconds to start here, once 5 s, while the bench
    /// encoded beside it.
    async fn wait_for_a_frame(&self) -> Result<()> {
        let deadline = Instant::now() + CAMERA_START_WAIT;
        loop {
            let snap = async {
                let mut client = Client::connect(&self.addr, ClientConfig::default()).await?;
                client.snap().await
            };
            match snap.await {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(error = %e, "the bench's server has no frame yet");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(format!(
                        "edgecam serve on {} gave no frame within {} s",
                        self.addr,
                        CAMERA_START_WAIT.as_secs()
                    )));
                }
            }
        }
    }

    /// `n` plain readers (see [`plain_readers`]) sent `request` take this server's stream for
    /// `window`. Frames delivered are their bytes over the bytes the server sent per frame
    /// meanwhile, from its `/metrics`.
    async fn fanout(&self, request: &[u8], n: usize, window: Duration) -> Result<Fanout> {
        let before = self.sent().await?;
        let read = plain_readers(&self.addr, request, self.child.id(), n, window).await?;
        let after = self.sent().await?;
        let (frames, bytes) = (after.0 - before.0, after.1 - before.1);
        if frames == 0 {
            bail!(
                "edgecam serve on {} sent no frame to {n} readers",
                self.addr
            );
        }
        Ok(Fanout {
            cpu_ms: read.cpu_ms,
            frames: read.bytes as f64 * frames as f64 / bytes as f64,
        })
    }

    /// The frames and bytes this server has sent so far, from its `/metrics`.
    async fn sent(&self) -> Result<(u64, u64)> {
        use tokio::io::AsyncReadExt;
        let text = tokio::time::timeout(Duration::from_secs(10), async {
            let mut stream = tokio::net::TcpStream::connect(&self.addr).await?;
            stream.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await?;
            let mut text = String::new();
            stream.read_to_string(&mut text).await?;
            anyhow::Ok(text)
        })
        .await
        .context("edgecam serve's /metrics did not answer within 10 s")?
        .context("reading edgecam serve's /metrics")?;
        let metric = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
                .with_context(|| format!("no {name} in edgecam serve's /metrics"))
        };
        Ok((
            metric("edgecam_frames_sent_total")?,
            metric("edgecam_bytes_sent_total")?,
        ))
    }

    fn proc_file(&self, name: &str) -> Result<String> {
        let path = format!("/proc/{}/{name}", self.child.id());
        std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))
    }

    fn cpu(&self) -> Result<CpuReading> {
        CpuReading::of(self.child.id())
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

/// What a streaming window cost the server.
struct Throughput {
    /// Server CPU over the window, in milliseconds.
    cpu_ms: f64,
    /// Frames the clients received, all together.
    delivered: u64,
    /// Frames the server published in the window (the span of the sequence numbers received).
    captured: u64,
}

impl Throughput {
    fn cpu_per_delivered_ms(&self) -> f64 {
        self.cpu_ms / self.delivered.max(1) as f64
    }

    fn cpu_per_captured_ms(&self) -> f64 {
        self.cpu_ms / self.captured.max(1) as f64
    }
}

/// Rounds of each encode-alone figure; the best counts, the cost with the least interference.
const ROUNDS: usize = 3;

/// Pairs of slices the one-client figures interleave. This machine's speed drifts from second
/// to second (a shared VM: the same encode measured 1.57 ms and 1.03 ms within ten minutes), so
/// a figure compared with a target ratio alternates short slices of the best encoder alone (in
/// this process, the server idle) with short slices of one client streaming from the server,
/// and sets the sums side by side: drift slower than a pair touches both sides alike.
const PAIRS: usize = 8;

/// How much encoding each slice of the encode alone measures, and how long each streaming
/// slice runs.
const SLICE: Duration = Duration::from_secs(1);

/// The one-client figure: the sums over the pairs of slices.
struct OneClient {
    server: Throughput,
    /// The encode alone's CPU per frame over all its slices.
    encode_ms: f64,
    /// Each pair's ratio of server CPU per delivered frame to the encode alone, in order.
    ratios: Vec<f64>,
}

impl OneClient {
    fn ratio(&self) -> f64 {
        self.server.cpu_per_delivered_ms() / self.encode_ms
    }

    /// The spread of the pairs' ratios.
    fn pairs(&self) -> String {
        let (lo, hi) = spread(self.ratios.iter().copied());
        format!(
            "{} pairs of {} s from {lo:.2}x to {hi:.2}x",
            self.ratios.len(),
            SLICE.as_secs_f64()
        )
    }
}

async fn one_client(
    server: &ServerProcess,
    costs: &EncodeCosts,
    format: PixelFormat,
) -> Result<OneClient> {
    let (mut encode_cpu, mut encoded) = (0.0, 0);
    let (mut server_cpu, mut delivered, mut captured) = (0.0, 0, 0);
    let mut ratios = Vec::with_capacity(PAIRS);
    for _ in 0..PAIRS {
        let (ms, frames) = costs.encode_now(format)?;
        let slice = stream_clients(&server.addr, server.child.id(), 1, SLICE).await?;
        ratios.push(slice.cpu_per_delivered_ms() / ms);
        encode_cpu += ms * frames as f64;
        encoded += frames;
        server_cpu += slice.cpu_ms;
        delivered += slice.delivered;
        captured += slice.captured;
    }
    Ok(OneClient {
        server: Throughput {
            cpu_ms: server_cpu,
            delivered,
            captured,
        },
        encode_ms: encode_cpu / encoded.max(1) as f64,
        ratios,
    })
}

/// `n` clients stream from `addr` (a legacy `HOST:PORT` or an `http://` stream URL) for
/// `window`; server CPU per delivered and per captured frame.
async fn stream_clients(addr: &str, pid: u32, n: usize, window: Duration) -> Result<Throughput> {
    let mut clients = Vec::new();
    for _ in 0..n {
        let mut c = Client::connect(addr, ClientConfig::default()).await?;
        c.start_stream().await?;
        // Warm up: the stream is flowing before the measurement starts.
        c.next_frame().await?;
        clients.push(c);
    }
    let cpu_before = CpuReading::of(pid)?;
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
    Ok(Throughput {
        cpu_ms: CpuReading::of(pid)?.seconds_since(&cpu_before) * 1000.0,
        delivered,
        captured: (seqs.1 + 1).saturating_sub(seqs.0),
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn burn(cpu: Duration) {
        let start = thread_cpu_seconds();
        while thread_cpu_seconds() - start < cpu.as_secs_f64() {
            std::hint::black_box(0u64.wrapping_add(1));
        }
    }

    #[test]
    fn a_cpu_reading_counts_each_living_thread_and_loses_one_that_ended() {
        let pid = std::process::id();
        let before = CpuReading::of(pid).unwrap();
        burn(Duration::from_millis(50));
        let ran = CpuReading::of(pid).unwrap().seconds_since(&before);
        assert!(
            (0.045..5.0).contains(&ran),
            "this thread ran 50 ms of CPU since the first reading, the reading says {ran} s"
        );

        // Another thread, read while it lives.
        let before = CpuReading::of(pid).unwrap();
        let (burnt, end) = (std::sync::mpsc::channel(), std::sync::mpsc::channel::<()>());
        let worker = std::thread::spawn(move || {
            burn(Duration::from_millis(50));
            burnt.0.send(()).unwrap();
            let _ = end.1.recv();
        });
        burnt.1.recv().unwrap();
        let ran = CpuReading::of(pid).unwrap().seconds_since(&before);
        drop(end.0);
        worker.join().unwrap();
        assert!(
            (0.045..5.0).contains(&ran),
            "another thread ran 50 ms of CPU since the first reading, the reading says {ran} s"
        );

        // One that ends between the readings takes its time with it, as the doc says.
        let before = CpuReading::of(pid).unwrap();
        std::thread::spawn(|| burn(Duration::from_millis(50)))
            .join()
            .unwrap();
        let ran = CpuReading::of(pid).unwrap().seconds_since(&before);
        assert!(
            ran < 0.045,
            "a thread that ended was still counted: {ran} s"
        );

        assert!(
            CpuReading::of(u32::MAX).is_err(),
            "no such process, yet a reading"
        );
    }
}
