//! `cargo xtask run-board --emulate`: the armv7 board binary, run here under qemu-user,
//! smoke-tested end to end by the native client.
//!
//! It builds what a board would run (`armv7-unknown-linux-gnueabihf`, the `board` profile:
//! release, stripped, with libjpeg-turbo built for it with NEON), and runs it as `edgecam
//! serve` under `qemu-arm` three times, checked each time with the native `edgecam` client
//! and stopped with a remote shutdown (the byte `2`), which must end it with exit status 0:
//!
//! - the synthetic camera: a single shot must be a 640x480 JPEG, and a stream of a few
//!   seconds must deliver frames (the emulated server's memory is sampled meanwhile);
//! - an `exec:` camera running the host's ffmpeg, writing MJPEG: two single shots must be
//!   different 640x480 JPEGs, each byte for byte one of ffmpeg's frames apart from the stamp
//!   (the reference is the same ffmpeg command run here without `-re`);
//! - an `exec:` camera writing raw NV12, encoded on the "board" by libjpeg-turbo: two
//!   single shots must be different 1280x720 JPEGs.
//!
//! Then the board binary's own `bench --encode-only` prints encode CPU per frame under
//! emulation for NV12 and RGB into libjpeg-turbo and RGB into the pure-Rust encoder, as ratios
//! (qemu's absolute times mean little). Along the way it prints the figures the README
//! quotes: the binary's size and the emulated server's memory.
//!
//! Every wait has a deadline, and every process it starts is killed if it fails.

use crate::kill;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use super::Ctx;
use crate::board::{Cmd, Layout, build_cmd, target_dir};
use crate::toolchain::{self, ARMHF_SYSROOT, ARMV7_GCC, ARMV7_GNU, QEMU_ARM, Std};

/// The camera the emulated server serves, and the size every frame must have.
const CAMERA: &str = "sim:640x480@30";
const WIDTH: u16 = 640;
const HEIGHT: u16 = 480;
/// ffmpeg's MJPEG, passed through; `-re` paces it like a camera.
const MJPEG_ARGS: &str = "-loglevel error -f lavfi -i testsrc2=size=640x480:rate=30 -f mjpeg -";
/// Frames of the reference MJPEG (a minute at 30 fps): the single shots come well within it.
const MJPEG_REFERENCE_FRAMES: &str = "1800";
/// Raw NV12 for the board's libjpeg-turbo.
const NV12_CAMERA: &str = "exec:ffmpeg -loglevel error -re -f lavfi -i testsrc2=size=1280x720:rate=30 -pix_fmt nv12 -f rawvideo -#format=nv12&size=1280x720";
const NV12_SIZE: (u16, u16) = (1280, 720);
/// How long the emulated server may take to start listening.
const START_LIMIT: Duration = Duration::from_secs(60);
/// The clients' own `--timeout` (connect, and each frame), in seconds: generous, since
/// the server runs emulated.
const CLIENT_TIMEOUT: &str = "30";
/// How long the stream runs.
const STREAM_SECONDS: &str = "5";
/// How long a client process may run in all before it is killed.
const CLIENT_LIMIT: Duration = Duration::from_secs(90);
/// How long the server may take to exit after the remote shutdown.
const STOP_LIMIT: Duration = Duration::from_secs(30);
/// How long the emulated encode benchmark may run.
const BENCH_LIMIT: Duration = Duration::from_secs(300);
/// How often the server's memory is sampled while the client streams.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

const MIB: f64 = 1024.0 * 1024.0;

pub(crate) fn run(ctx: &Ctx) -> Result<()> {
    let missing = toolchain::check_emulate_here();
    if !missing.is_empty() {
        bail!("{}", toolchain::missing_message(&missing));
    }
    let layout = Layout::new(&ctx.root, &target_dir(ctx)?);

    let started = Instant::now();
    build_cmd(ARMV7_GNU, ARMV7_GCC, Std::Prebuilt).run(ctx)?;
    let build_time = started.elapsed();
    // The client: a debug build, which CI's test leg has already built.
    Cmd::new("cargo")
        .args(["build", "--locked", "-p", "edgecam"])
        .run(ctx)?;

    let binary = layout.binary(ARMV7_GNU);
    let bytes = std::fs::read(ctx.root.join(&binary))
        .with_context(|| format!("could not read the armv7 binary {binary}"))?;
    if !is_elf_arm32(&bytes) {
        bail!("{binary} is not a 32-bit ARM ELF executable: was it built for {ARMV7_GNU}?");
    }
    let scratch = layout.scratch("emulate");
    std::fs::create_dir_all(ctx.root.join(&scratch))
        .with_context(|| format!("could not create {scratch}"))?;

    let mut server = Server::start(ctx, &binary, CAMERA)?;
    let addr = server.addr.to_string();
    let client = layout.native_binary();

    let snap_path = format!("{scratch}/snap.jpg");
    let snap = run_bounded(
        ctx,
        &Cmd::new(&client).args(["snap", &addr, "-o", &snap_path, "--timeout", CLIENT_TIMEOUT]),
        CLIENT_LIMIT,
        || server.check_running(),
    )?;
    snap.require_success("the single shot")?;
    let jpeg = std::fs::read(ctx.root.join(&snap_path))
        .with_context(|| format!("could not read the snap {snap_path}"))?;
    let size = jpeg_dimensions(&jpeg).map_err(|why| anyhow!("the snap {snap_path} {why}"))?;
    if size != (WIDTH, HEIGHT) {
        bail!(
            "the snap {snap_path} is {}x{}, not the camera's {WIDTH}x{HEIGHT}",
            size.0,
            size.1
        );
    }
    println!(
        "ok: the snap is a {WIDTH}x{HEIGHT} JPEG ({} bytes)",
        jpeg.len()
    );

    let mut memory = Memory::default();
    let stream = run_bounded(
        ctx,
        &Cmd::new(&client).args([
            "stream",
            &addr,
            "--seconds",
            STREAM_SECONDS,
            "--timeout",
            CLIENT_TIMEOUT,
        ]),
        CLIENT_LIMIT,
        || {
            memory.sample(server.pid());
            server.check_running()
        },
    )?;
    stream.require_success("the stream")?;
    let summary = stream
        .stdout
        .lines()
        .find(|line| line.contains(" frames in "))
        .ok_or_else(|| anyhow!("the stream printed no summary line: {:?}", stream.stdout))?;
    let frames = frames_streamed(summary)
        .ok_or_else(|| anyhow!("the stream's summary names no frame count: {summary}"))?;
    if frames == 0 {
        bail!("the stream received no frame: {summary}");
    }
    memory.sample(server.pid());
    println!("ok: streamed {frames} frames");

    server.shut_down()?;
    println!("ok: the server exited with status 0 after the remote shutdown");

    let reference = format!("{scratch}/reference.mjpeg");
    let mut ffmpeg = Cmd::new("ffmpeg").args(MJPEG_ARGS.split(' ').filter(|a| *a != "-"));
    ffmpeg = ffmpeg.args(["-frames:v", MJPEG_REFERENCE_FRAMES, "-y", &reference]);
    run_bounded(ctx, &ffmpeg, CLIENT_LIMIT, || Ok(()))?.require_success("the reference MJPEG")?;
    let reference = std::fs::read(ctx.root.join(&reference))
        .with_context(|| format!("could not read {reference}"))?;
    let mjpeg_camera = format!("exec:ffmpeg -re {MJPEG_ARGS}");
    let mut server = Server::start(ctx, &binary, &mjpeg_camera)?;
    let (a, b) = two_snaps(
        ctx,
        &mut server,
        &client,
        &scratch,
        "mjpeg",
        (WIDTH, HEIGHT),
    )?;
    for (name, jpeg) in [("first", &a), ("second", &b)] {
        let unstamped = without_stamp(jpeg)
            .ok_or_else(|| anyhow!("the {name} MJPEG snap carries no edgecam stamp"))?;
        if !reference
            .windows(unstamped.len())
            .any(|frame| frame == unstamped.as_slice())
        {
            bail!(
                "the {name} MJPEG snap, without its stamp, is none of the frames ffmpeg writes: \
                 passthrough changed the camera's bytes"
            );
        }
    }
    println!(
        "ok: MJPEG from ffmpeg passed through: both snaps are ffmpeg's frames byte for byte, plus the stamp"
    );
    server.shut_down()?;

    let mut server = Server::start(ctx, &binary, NV12_CAMERA)?;
    two_snaps(ctx, &mut server, &client, &scratch, "nv12", NV12_SIZE)?;
    println!("ok: NV12 from ffmpeg encoded on the board by libjpeg-turbo");
    server.shut_down()?;

    let bench = run_bounded(
        ctx,
        &Cmd::new(QEMU_ARM)
            .args(["-L", ARMHF_SYSROOT, &binary])
            .args([
                "bench",
                "--encode-only",
                "--sizes",
                "640x480",
                "--frames",
                "20",
            ]),
        BENCH_LIMIT,
        || Ok(()),
    )?;
    bench.require_success("the emulated encode benchmark")?;
    let encode = |backend: &str, format: &str| encode_ms(&bench.stdout, backend, format);
    let rust_rgb = encode("rust", "rgb24")
        .ok_or_else(|| anyhow!("the emulated bench printed no rust rgb24 figure"))?;
    let turbo_rgb = encode("turbo", "rgb24").ok_or_else(|| {
        anyhow!("the emulated bench printed no turbo figure: was libjpeg-turbo built in?")
    })?;
    let turbo_nv12 = encode("turbo", "nv12")
        .ok_or_else(|| anyhow!("the emulated bench printed no turbo nv12 figure"))?;

    println!("\nfigures for the README:");
    println!(
        "  encode CPU per 640x480 frame under qemu-arm, natural scene, relative to RGB into the \
         pure-Rust encoder ({rust_rgb:.2} ms here): RGB into libjpeg-turbo {:.2}x, NV12 into \
         libjpeg-turbo {:.2}x",
        turbo_rgb / rust_rgb,
        turbo_nv12 / rust_rgb
    );
    println!(
        "  armv7 board build:    {:.0} s (this run's; a build from scratch takes longer than \
         a rebuild)",
        build_time.as_secs_f64()
    );
    println!(
        "  armv7 binary size:    {:.2} MiB (stripped)",
        bytes.len() as f64 / MIB
    );
    println!(
        "  memory while streaming one {WIDTH}x{HEIGHT} client: {memory} \
         (under qemu-user: this includes the emulator's own memory)"
    );
    println!(
        "board-emulate: ok: the {ARMV7_GNU} build under {QEMU_ARM} served a {WIDTH}x{HEIGHT} \
         snap and {frames} streamed frames, then exited 0 on a remote shutdown"
    );
    Ok(())
}

/// Two single shots from `server`, a second apart: both `size`, and not the same picture.
fn two_snaps(
    ctx: &Ctx,
    server: &mut Server,
    client: &str,
    scratch: &str,
    name: &str,
    size: (u16, u16),
) -> Result<(Vec<u8>, Vec<u8>)> {
    let addr = server.addr.to_string();
    let mut snaps = Vec::new();
    for i in 1..=2 {
        if i == 2 {
            // The camera's next frames: at 30 fps, a second is 30 frames on.
            thread::sleep(Duration::from_secs(1));
        }
        let path = format!("{scratch}/{name}-{i}.jpg");
        let snap = run_bounded(
            ctx,
            &Cmd::new(client).args(["snap", &addr, "-o", &path, "--timeout", CLIENT_TIMEOUT]),
            CLIENT_LIMIT,
            || server.check_running(),
        )?;
        snap.require_success(&format!("the {name} single shot"))?;
        let jpeg = std::fs::read(ctx.root.join(&path))
            .with_context(|| format!("could not read the snap {path}"))?;
        let got = jpeg_dimensions(&jpeg).map_err(|why| anyhow!("the snap {path} {why}"))?;
        if got != size {
            bail!(
                "the snap {path} is {}x{}, not the camera's {}x{}",
                got.0,
                got.1,
                size.0,
                size.1
            );
        }
        snaps.push(jpeg);
    }
    let b = snaps.pop().unwrap_or_default();
    let a = snaps.pop().unwrap_or_default();
    if a == b {
        bail!("two {name} snaps a second apart are the same picture: the camera is not moving");
    }
    println!(
        "ok: two {name} snaps are different {}x{} JPEGs",
        size.0, size.1
    );
    Ok((a, b))
}

/// `jpeg` without the `edgecam seq=` COM segment the server puts right after SOI.
fn without_stamp(jpeg: &[u8]) -> Option<Vec<u8>> {
    if jpeg.get(..4)? != [0xFF, 0xD8, 0xFF, 0xFE] {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([*jpeg.get(4)?, *jpeg.get(5)?]));
    let end = 4 + len;
    if !jpeg.get(6..end)?.starts_with(b"edgecam seq=") {
        return None;
    }
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&jpeg[end..]);
    Some(out)
}

/// The ms/frame of `JPEG encode alone, BACKEND FORMAT X ms/frame` in the bench's output.
fn encode_ms(bench: &str, backend: &str, format: &str) -> Option<f64> {
    bench.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("JPEG encode alone,")?;
        let mut words = rest.split_whitespace();
        if words.next()? != backend || words.next()? != format {
            return None;
        }
        words.next()?.parse().ok()
    })
}

/// The emulated server: killed when dropped unless it has exited.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    /// Starts `edgecam serve` under qemu-arm on a free loopback port, and waits (bounded)
    /// until it accepts connections.
    fn start(ctx: &Ctx, binary: &str, camera: &str) -> Result<Server> {
        let cmd = Cmd::new(QEMU_ARM).args([
            "-L",
            ARMHF_SYSROOT,
            binary,
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--camera",
            camera,
            "--allow-remote-shutdown",
            "--stats-interval",
            "2",
        ]);
        println!("==> {cmd}");
        let mut child = cmd
            .command(ctx)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("could not start `{cmd}`"))?;
        let stdout = child.stdout.take().map(lines_of);
        if let Some(stderr) = child.stderr.take() {
            // The server's log, marked as the board's.
            thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    eprintln!("  [qemu] {line}");
                }
            });
        }
        // From here on, a failure kills it.
        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let first = stdout
            .ok_or_else(|| anyhow!("the server's stdout was not captured"))?
            .recv_timeout(START_LIMIT)
            .map_err(|err| match err {
                RecvTimeoutError::Timeout => {
                    anyhow!("the emulated server printed nothing within {START_LIMIT:?}")
                }
                RecvTimeoutError::Disconnected => anyhow!(
                    "the emulated server exited before it listened ({})",
                    server.exit_status_text()
                ),
            })?;
        println!("  [qemu] {first}");
        // `edgecam serving <camera> (WxH) on <addr>`
        server.addr = first
            .rsplit_once(" on ")
            .and_then(|(_, addr)| addr.trim().parse().ok())
            .ok_or_else(|| anyhow!("no address in the server's first line: {first:?}"))?;
        server.wait_accepting()?;
        Ok(server)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_accepting(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            match TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)) {
                Ok(_) => return Ok(()),
                Err(err) if Instant::now() >= deadline => bail!(
                    "the emulated server at {} accepted no connection within {START_LIMIT:?}: {err}",
                    self.addr
                ),
                Err(_) => {
                    self.check_running()?;
                    thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// An error if the server has exited.
    fn check_running(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => bail!("the emulated server exited unexpectedly ({status})"),
            Err(err) => bail!("could not check on the emulated server: {err}"),
        }
    }

    fn exit_status_text(&mut self) -> String {
        match wait_bounded(&mut self.child, Duration::from_secs(5), || Ok(())) {
            Ok(Some(status)) => status.to_string(),
            Ok(None) => "still running: killed".to_owned(),
            Err(err) => format!("exit status unknown: {err:#}"),
        }
    }

    /// Sends `2` and waits (bounded) for the server to exit with status 0.
    fn shut_down(&mut self) -> Result<()> {
        println!("==> send `2` to {} (remote shutdown)", self.addr);
        let mut conn = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))
            .with_context(|| format!("could not connect to {} to shut it down", self.addr))?;
        conn.write_all(b"2")
            .with_context(|| format!("could not send `2` to {}", self.addr))?;
        // The connection stays open until the server has gone.
        let status = wait_bounded(&mut self.child, STOP_LIMIT, || Ok(()))?.ok_or_else(|| {
            anyhow!("the emulated server did not exit within {STOP_LIMIT:?} of the remote shutdown")
        })?;
        drop(conn);
        if !status.success() {
            bail!("the emulated server exited with {status} after the remote shutdown, not 0");
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        kill(&mut self.child);
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

/// Waits until `child` exits or `limit` passes (`None`), calling `tick` as it waits; an
/// error from `tick` ends the wait.
fn wait_bounded(
    child: &mut Child,
    limit: Duration,
    mut tick: impl FnMut() -> Result<()>,
) -> Result<Option<ExitStatus>> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().context("could not wait for a process")? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        tick()?;
        thread::sleep(SAMPLE_EVERY);
    }
}

/// What a client process did.
#[derive(Debug)]
struct Finished {
    shown: String,
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Finished {
    fn require_success(&self, what: &str) -> Result<()> {
        if !self.status.success() {
            bail!(
                "{what} failed: `{}` exited with {}; it printed:\n{}{}",
                self.shown,
                self.status,
                self.stdout,
                self.stderr
            );
        }
        Ok(())
    }
}

/// Runs `cmd` to its end, within `limit` (killed after that), calling `tick` as it waits;
/// prints its output after its `==>` line.
fn run_bounded(
    ctx: &Ctx,
    cmd: &Cmd,
    limit: Duration,
    tick: impl FnMut() -> Result<()>,
) -> Result<Finished> {
    println!("==> {cmd}");
    let mut child = cmd
        .command(ctx)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start `{cmd}`"))?;
    let stdout = child.stdout.take().map(read_all);
    let stderr = child.stderr.take().map(read_all);
    let waited = wait_bounded(&mut child, limit, tick);
    let status = match waited {
        Ok(Some(status)) => status,
        Ok(None) => {
            kill(&mut child);
            bail!("`{cmd}` did not finish within {limit:?} (killed)");
        }
        Err(err) => {
            kill(&mut child);
            return Err(err.context(format!("while `{cmd}` ran (killed)")));
        }
    };
    let collect = |rx: Option<Receiver<String>>| {
        rx.and_then(|rx| rx.recv_timeout(Duration::from_secs(5)).ok())
            .unwrap_or_default()
    };
    let finished = Finished {
        shown: cmd.to_string(),
        status,
        stdout: collect(stdout),
        stderr: collect(stderr),
    };
    for line in finished.stdout.lines() {
        println!("  {line}");
    }
    Ok(finished)
}

/// All that `reader` gives, once it closes.
fn read_all(mut reader: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut text = String::new();
        let _ = reader.read_to_string(&mut text);
        let _ = tx.send(text);
    });
    rx
}

/// The emulated server's memory as sampled from `/proc/PID/status`, in kB.
#[derive(Debug, Default)]
struct Memory {
    /// The peak resident set the kernel recorded (VmHWM).
    hwm_kb: Option<u64>,
    /// The largest VmRSS sampled.
    rss_kb: Option<u64>,
}

impl Memory {
    fn sample(&mut self, pid: u32) {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            return;
        };
        let max = |old: Option<u64>, new: Option<u64>| old.max(new);
        self.hwm_kb = max(self.hwm_kb, status_kb(&status, "VmHWM"));
        self.rss_kb = max(self.rss_kb, status_kb(&status, "VmRSS"));
    }
}

impl std::fmt::Display for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |kb: Option<u64>| {
            kb.map_or_else(
                || "n/a".to_owned(),
                |kb| format!("{:.1} MiB", kb as f64 / 1024.0),
            )
        };
        write!(
            f,
            "VmHWM {}, largest VmRSS sampled {}",
            mib(self.hwm_kb),
            mib(self.rss_kb)
        )
    }
}

/// The `key:  N kB` figure of a `/proc/PID/status` text.
fn status_kb(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The frame count at the start of `edgecam stream`'s summary: `N frames in S s, ...`.
fn frames_streamed(summary: &str) -> Option<u64> {
    let (count, _) = summary.trim().split_once(" frames in ")?;
    count.parse().ok()
}

/// Whether `bytes` start like a 32-bit little-endian ARM ELF file.
fn is_elf_arm32(bytes: &[u8]) -> bool {
    const EM_ARM: u16 = 40;
    bytes.len() > 20
        && bytes.starts_with(b"\x7fELF")
        && bytes[4] == 1 // 32-bit
        && bytes[5] == 1 // little-endian
        && u16::from_le_bytes([bytes[18], bytes[19]]) == EM_ARM
}

/// The width and height in a JPEG's start-of-frame segment (read here: xtask has no JPEG
/// crate). An error says what is wrong with the file.
fn jpeg_dimensions(jpeg: &[u8]) -> Result<(u16, u16), String> {
    let be16 = |at: usize| -> Result<u16, String> {
        match jpeg.get(at..at + 2) {
            Some(&[hi, lo]) => Ok(u16::from_be_bytes([hi, lo])),
            _ => Err(format!("is cut short at byte {at}")),
        }
    };
    if !jpeg.starts_with(&[0xFF, 0xD8]) {
        return Err(format!(
            "is not a JPEG: it starts {:02X?}, not FF D8",
            &jpeg[..jpeg.len().min(4)]
        ));
    }
    if !jpeg.ends_with(&[0xFF, 0xD9]) {
        return Err("does not end with the JPEG end-of-image marker FF D9".to_owned());
    }
    let mut at = 2;
    loop {
        if jpeg.get(at) != Some(&0xFF) {
            return Err(format!("has no JPEG marker at byte {at}"));
        }
        while jpeg.get(at) == Some(&0xFF) {
            at += 1; // fill bytes
        }
        let marker = *jpeg
            .get(at)
            .ok_or_else(|| format!("is cut short at byte {at}"))?;
        at += 1;
        match marker {
            // Markers without a segment.
            0x01 | 0xD0..=0xD7 => continue,
            0xD9 | 0xDA => return Err("has no start-of-frame segment before its scan".to_owned()),
            _ => {}
        }
        let len = usize::from(be16(at)?);
        // SOF0..SOF15, except DHT (C4), JPG (C8) and DAC (CC): length, precision, height,
        // width.
        if (0xC0..=0xCF).contains(&marker) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) {
            return Ok((be16(at + 5)?, be16(at + 3)?));
        }
        if len < 2 {
            return Err(format!("has a segment of length {len} at byte {at}"));
        }
        at += len;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A JPEG's markers around a start-of-frame of `width` x `height` (no real picture).
    fn jpeg_skeleton(sof: u8, width: u16, height: u16) -> Vec<u8> {
        let mut jpeg = vec![0xFF, 0xD8];
        // APP0 "JFIF" (16 bytes with its length), then a fill byte before the next marker.
        jpeg.extend([0xFF, 0xE0, 0x00, 0x10]);
        jpeg.extend(b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0");
        jpeg.extend([0xFF, 0xFF, 0xC4, 0x00, 0x03, 0x00]); // a (bogus) DHT
        let [wh, wl] = width.to_be_bytes();
        let [hh, hl] = height.to_be_bytes();
        jpeg.extend([
            0xFF, sof, 0x00, 0x0B, 0x08, hh, hl, wh, wl, 0x01, 0x01, 0x11, 0x00,
        ]);
        jpeg.extend([0xFF, 0xDA, 0x00, 0x02, 0x12, 0x34, 0xFF, 0xD9]);
        jpeg
    }

    #[test]
    fn the_size_is_read_from_a_baseline_or_progressive_start_of_frame() {
        assert_eq!(
            jpeg_dimensions(&jpeg_skeleton(0xC0, 640, 480)),
            Ok((640, 480))
        );
        assert_eq!(
            jpeg_dimensions(&jpeg_skeleton(0xC2, 1280, 720)),
            Ok((1280, 720))
        );
    }

    #[test]
    fn what_is_wrong_with_a_bad_jpeg_is_said() {
        assert_eq!(
            jpeg_dimensions(b"GIF89a...").unwrap_err(),
            "is not a JPEG: it starts [47, 49, 46, 38], not FF D8"
        );
        let mut cut = jpeg_skeleton(0xC0, 640, 480);
        cut.truncate(10);
        assert_eq!(
            jpeg_dimensions(&cut).unwrap_err(),
            "does not end with the JPEG end-of-image marker FF D9"
        );
        let no_sof = [0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02, 0xFF, 0xD9];
        assert_eq!(
            jpeg_dimensions(&no_sof).unwrap_err(),
            "has no start-of-frame segment before its scan"
        );
        let garbage = [0xFF, 0xD8, 0x00, 0xFF, 0xD9];
        assert_eq!(
            jpeg_dimensions(&garbage).unwrap_err(),
            "has no JPEG marker at byte 2"
        );
        let short_sof = [0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x0B, 0x08, 0xFF, 0xD9];
        assert!(jpeg_dimensions(&short_sof).is_err());
    }

    #[test]
    fn memory_figures_are_read_from_proc_status() {
        let status =
            "Name:\tqemu-arm\nVmPeak:\t  200000 kB\nVmHWM:\t   51234 kB\nVmRSS:\t   50000 kB\n";
        assert_eq!(status_kb(status, "VmHWM"), Some(51234));
        assert_eq!(status_kb(status, "VmRSS"), Some(50000));
        assert_eq!(status_kb(status, "VmSwap"), None);
        let memory = Memory {
            hwm_kb: Some(51234),
            rss_kb: None,
        };
        assert_eq!(
            memory.to_string(),
            "VmHWM 50.0 MiB, largest VmRSS sampled n/a"
        );
    }

    #[test]
    fn memory_of_this_process_can_be_sampled() {
        let mut memory = Memory::default();
        memory.sample(std::process::id());
        if cfg!(target_os = "linux") {
            assert!(memory.hwm_kb.is_some_and(|kb| kb > 0), "{memory:?}");
        }
    }

    #[test]
    fn the_frame_count_is_read_from_the_stream_summary() {
        let line = "142 frames in 5.0 s, 28.4 fps, 3.1 MB, 0 skipped by the server, \
                    latency p50 12.0 ms p99 30.1 ms, 0 invalid, 1 drained after stop";
        assert_eq!(frames_streamed(line), Some(142));
        assert_eq!(frames_streamed("no frames"), None);
    }

    #[test]
    fn the_stamp_is_taken_out_and_nothing_else() {
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xFE, 0x00, 0x0E];
        jpeg.extend_from_slice(b"edgecam seq=");
        jpeg.extend_from_slice(&[0xFF, 0xDB, 0xFF, 0xD9]);
        assert_eq!(
            without_stamp(&jpeg),
            Some(vec![0xFF, 0xD8, 0xFF, 0xDB, 0xFF, 0xD9])
        );
        // Another comment is not our stamp; a truncated one is no stamp at all.
        let mut other = jpeg.clone();
        other[6] = b'X';
        assert_eq!(without_stamp(&other), None);
        assert_eq!(without_stamp(&jpeg[..10]), None);
        assert_eq!(without_stamp(&[0xFF, 0xD8]), None);
    }

    #[test]
    fn encode_figures_are_read_from_the_bench_output() {
        let out = "synthetic camera, drawing a frame  1.2 ms/frame\n\
                   JPEG encode alone, turbo   rgb24     3.250 ms/frame   55.1 KB  (as it is)\n\
                   JPEG encode alone, turbo   nv12      2.125 ms/frame   54.0 KB  (as it is)\n\
                   JPEG encode alone, rust    rgb24    20.000 ms/frame   52.0 KB  (as it is)\n";
        assert_eq!(encode_ms(out, "turbo", "rgb24"), Some(3.25));
        assert_eq!(encode_ms(out, "turbo", "nv12"), Some(2.125));
        assert_eq!(encode_ms(out, "rust", "rgb24"), Some(20.0));
        assert_eq!(encode_ms(out, "rust", "nv12"), None);
    }

    #[test]
    fn an_arm_elf_header_is_recognised() {
        let mut header = vec![0u8; 52];
        header[..4].copy_from_slice(b"\x7fELF");
        header[4] = 1;
        header[5] = 1;
        header[18] = 40;
        assert!(is_elf_arm32(&header));
        header[18] = 62; // x86-64
        assert!(!is_elf_arm32(&header));
    }
}
