//! Clients against a hostile server: a tokio listener in the test that speaks the wire format
//! (4-byte big-endian length + payload) but sends what it likes: payloads that are not JPEGs,
//! empty ones, JPEGs whose SOF claims 65535x65535. `snap`, `stream`, `record` and `view`
//! must keep to their timeouts, skip and count what they cannot use, and stay quiet in the log.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use edgecam::view::Key;
use edgecam_core::jpeg::PictureLimit;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::record::recorded_seqs;
use crate::support::{Edgecam, Finished, TestServer, WAIT, edgecam, stamped_jpeg};
use crate::view::{When, view_scripted_at};

/// A real 16x8 JPEG of about 16 KB whose SOF claims `width` x `height`: what drove the viewer
/// to 24 GB.
fn claiming(width: u16, height: u16) -> Vec<u8> {
    let mut jpeg = stamped_jpeg(16, 8, 0);
    let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    jpeg[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    jpeg[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    // Padding in a COM segment after SOI, to make it the reported 16 KB.
    let mut padded = jpeg[..2].to_vec();
    padded.extend_from_slice(&[0xFF, 0xFE, 0x3F, 0xFF]);
    padded.extend_from_slice(&[b'x'; 0x3FFF - 2]);
    padded.extend_from_slice(&jpeg[2..]);
    padded
}

/// What the hostile server sends while a client streams (or for each single shot).
#[derive(Clone)]
enum Script {
    /// These payloads in turn, forever, one every `gap` (zero: as fast as the socket takes).
    Cycle(Vec<Vec<u8>>, Duration),
}

/// A hostile server on 127.0.0.1: for every connection, sends its script while the client
/// wants frames (after `0` or `3`, until `q`). Counts the payloads it sent.
struct Hostile {
    addr: String,
    sent: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Hostile {
    async fn start(script: Script) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let sent = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, script.clone(), counter.clone()));
            }
        });
        Hostile { addr, sent, task }
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

async fn serve(socket: tokio::net::TcpStream, script: Script, sent: Arc<AtomicU64>) {
    let (mut read, mut write) = socket.into_split();
    let wanted = Arc::new(AtomicBool::new(false));
    let wants = wanted.clone();
    let reader = tokio::spawn(async move {
        let mut buf = [0u8; 64];
        while let Ok(n @ 1..) = read.read(&mut buf).await {
            for byte in &buf[..n] {
                match byte {
                    b'0' | b'3' => wants.store(true, Ordering::Relaxed),
                    b'q' | b'2' => wants.store(false, Ordering::Relaxed),
                    _ => {}
                }
            }
        }
    });
    let Script::Cycle(payloads, gap) = script;
    for payload in payloads.iter().cycle() {
        while !wanted.load(Ordering::Relaxed) {
            if reader.is_finished() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
        if write.write_all(&len).await.is_err() || write.write_all(payload).await.is_err() {
            break;
        }
        sent.fetch_add(1, Ordering::Relaxed);
        if gap.is_zero() {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(gap).await;
        }
    }
    reader.abort();
}

/// Payloads that are not JPEG images: text, an empty payload, a JPEG cut short.
fn garbage() -> Vec<Vec<u8>> {
    let cut = stamped_jpeg(16, 8, 1);
    vec![
        b"Unknown command".to_vec(),
        Vec::new(),
        cut[..cut.len() / 2].to_vec(),
    ]
}

/// Lines of `stderr` that are warnings.
/// Runs `edgecam ARGS` to the end (bounded) without blocking the test's runtime, which serves
/// the hostile peer meanwhile.
async fn edgecam_off_runtime(args: &[&str]) -> Finished {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        edgecam(&args)
    })
    .await
    .unwrap()
}

fn warnings(stderr: &str) -> usize {
    stderr.lines().filter(|l| l.contains("WARN")).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snap_against_nothing_but_garbage_gives_up_at_its_timeout_and_says_why() {
    let server = Hostile::start(Script::Cycle(garbage(), Duration::ZERO)).await;
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("frame.jpg");
    let started = Instant::now();
    let out = edgecam_off_runtime(&[
        "snap",
        &server.addr,
        "--timeout",
        "2",
        "-o",
        out_file.to_str().unwrap(),
    ])
    .await;
    let took = started.elapsed();
    assert!(!out.status.success(), "{out:?}");
    assert!(took < Duration::from_secs(6), "took {took:?}");
    assert!(
        out.stderr.contains("no valid JPEG from 127.0.0.1:"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("within 2 s: "), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("payloads were not JPEGs (the first began 55 6E 6B 6E"),
        "{}",
        out.stderr
    );
    // Thousands of payloads, a handful of warnings: three, then about one a second.
    assert!(server.sent() > 100, "only {} payloads sent", server.sent());
    assert!(warnings(&out.stderr) <= 8, "{}", out.stderr);
    assert!(
        out.stderr.len() < 10_000,
        "{} bytes of log",
        out.stderr.len()
    );
    assert!(!out_file.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_against_empty_payloads_gives_up_at_its_timeout() {
    let server = Hostile::start(Script::Cycle(vec![Vec::new()], Duration::ZERO)).await;
    let out =
        edgecam_off_runtime(&["stream", &server.addr, "--frames", "5", "--timeout", "1"]).await;
    assert!(!out.status.success(), "{out:?}");
    assert!(
        out.stderr.contains("within 1 s: ") && out.stderr.contains("(the first was empty)"),
        "{}",
        out.stderr
    );
    assert!(warnings(&out.stderr) <= 8, "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_skips_garbage_and_huge_claims_and_keeps_the_real_picture_size() {
    // The huge claim first: unchecked, it would become the file's picture size.
    let mut payloads = vec![claiming(65535, 65535)];
    for seq in 1..=40 {
        payloads.push(stamped_jpeg(320, 240, seq));
        match seq % 4 {
            0 => payloads.push(claiming(16384, 16384)),
            2 => payloads.extend(garbage()),
            _ => {}
        }
    }
    let server = Hostile::start(Script::Cycle(payloads, Duration::from_millis(2))).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hostile.avi");
    let out = edgecam_off_runtime(&[
        "record",
        &server.addr,
        "--frames",
        "30",
        "-o",
        file.to_str().unwrap(),
    ])
    .await;
    assert!(out.status.success(), "{out:?}");
    let avi = edgecam_recorder::AviReader::open(&file).unwrap();
    assert_eq!((avi.info().width, avi.info().height), (320, 240));
    // Every recorded frame is a whole 320x240 JPEG, in order.
    let seqs = recorded_seqs(&file);
    assert_eq!(seqs, (1..=30).collect::<Vec<u64>>());
    assert!(out.stdout.contains("saved 30 frames"), "{}", out.stdout);
    // 65535x65535 and seven 16384x16384 claims skipped; the garbage counted as invalid.
    assert!(
        out.stdout
            .contains("; 8 frames not recorded (no picture size, or a picture over 8192x8192)"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains(", 21 invalid, "), "{}", out.stdout);
    assert!(warnings(&out.stderr) <= 8, "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_against_nothing_but_garbage_ends_at_the_timeout_with_a_playable_file() {
    let server = Hostile::start(Script::Cycle(garbage(), Duration::ZERO)).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nothing.avi");
    let started = Instant::now();
    let out = edgecam_off_runtime(&[
        "record",
        &server.addr,
        "--seconds",
        "60",
        "--timeout",
        "1",
        "-o",
        file.to_str().unwrap(),
    ])
    .await;
    assert!(!out.status.success(), "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(6));
    assert!(out.stderr.contains("no valid JPEG"), "{}", out.stderr);
    assert!(out.stdout.contains("saved 0 frames"), "{}", out.stdout);
    let avi = edgecam_recorder::AviReader::open(&file).unwrap();
    assert_eq!(avi.info().frames, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_seconds_stays_a_deadline_while_garbage_keeps_coming() {
    let mut payloads = garbage();
    payloads.push(stamped_jpeg(320, 240, 1));
    let server = Hostile::start(Script::Cycle(payloads, Duration::from_millis(1))).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("deadline.avi");
    let started = Instant::now();
    let out = edgecam_off_runtime(&[
        "record",
        &server.addr,
        "--seconds",
        "1.5",
        "-o",
        file.to_str().unwrap(),
    ])
    .await;
    assert!(out.status.success(), "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(6));
    assert!(warnings(&out.stderr) <= 8, "{}", out.stderr);
    assert!(!recorded_seqs(&file).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn view_counts_huge_claims_as_undecodable_and_neither_decodes_nor_records_them() {
    let mut payloads = vec![claiming(65535, 65535)];
    for seq in 1..=30 {
        payloads.push(stamped_jpeg(320, 240, seq));
        if seq % 5 == 0 {
            // Over this test's limit: a real picture, but refused as 16384x16384 is.
            payloads.push(stamped_jpeg(640, 480, 1000 + seq));
        }
    }
    // Slower than the window's tick, so that every frame reaches the decoder.
    let server = Hostile::start(Script::Cycle(payloads, Duration::from_millis(40))).await;
    let dir = tempfile::tempdir().unwrap();
    let limit: PictureLimit = "320x240".parse().unwrap();
    let script = vec![(When::Shown(12), Key::Quit)];
    let (result, seen) =
        view_scripted_at(&server.addr, script, dir.path(), Some("hostile.avi"), limit).await;
    let summary = result.unwrap();
    assert_eq!(seen.opened, [(320, 240)], "{seen:?}");
    // The huge claim and at least the 640x480 after frame 5.
    assert!(summary.undecodable >= 2, "{summary:?}");
    assert!(summary.not_recorded >= 2, "{summary:?}");
    assert!(
        seen.titles.iter().any(|t| t.contains(" undecodable - ")),
        "{:?}",
        seen.titles
    );
    assert!(seen.seqs.iter().all(|&s| s <= 30), "{seen:?}");
    let seqs = recorded_seqs(&summary.recordings[0].path);
    assert!(
        seqs.len() >= 12 && seqs.iter().all(|&s| s <= 30),
        "{seqs:?}"
    );
}

/// `edgecam view` under Xvfb, flooded with JPEGs claiming 8192x8192 (within the limit, so
/// they are decoded, which takes the decoder over a second each): SIGTERM still ends it at
/// once, because decoding never runs on the async runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn view_stops_on_sigterm_while_big_claims_are_being_decoded() {
    let Some(xvfb) = crate::view::Xvfb::start() else {
        return;
    };
    let mut payloads = vec![stamped_jpeg(320, 240, 1)];
    payloads.extend((0..20).map(|_| claiming(8192, 8192)));
    payloads.push(claiming(65535, 65535));
    let server = Hostile::start(Script::Cycle(payloads, Duration::from_millis(5))).await;
    let dir = tempfile::tempdir().unwrap();
    let viewer = Edgecam::spawn_with(&["view", &server.addr], |cmd| {
        cmd.current_dir(dir.path())
            .env("DISPLAY", xvfb.display())
            .env_remove("WAYLAND_DISPLAY");
    });
    let deadline = Instant::now() + WAIT;
    while server.sent() < 100 {
        assert!(Instant::now() < deadline, "the viewer took too few frames");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let signalled = Instant::now();
    viewer.signal("TERM");
    let out = tokio::task::spawn_blocking(move || viewer.finish())
        .await
        .unwrap();
    assert!(
        signalled.elapsed() < Duration::from_secs(4),
        "{:?}",
        signalled.elapsed()
    );
    assert!(out.status.success(), "{out:?}");
    // "N frames received, M shown, K undecodable, 0 snapshots"
    let received: u64 = out
        .stdout
        .split(" frames received")
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out:?}"));
    assert!(received >= 100, "{out:?}");
    assert!(out.stdout.contains(" undecodable, "), "{out:?}");
    assert!(warnings(&out.stderr) <= 12, "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_does_not_make_snap_stream_or_record_panic() {
    let server = TestServer::start("sim:160x120@30").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.jpg");
    let avi = dir.path().join("r.avi");
    let runs: [Vec<&str>; 3] = [
        vec!["snap", &server.addr, "-o", file.to_str().unwrap()],
        vec!["stream", &server.addr, "--frames", "3"],
        vec![
            "record",
            &server.addr,
            "--frames",
            "3",
            "-o",
            avi.to_str().unwrap(),
        ],
    ];
    for args in runs {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let (status, stderr) = tokio::task::spawn_blocking(move || run_with_closed_stdout(&args))
            .await
            .unwrap();
        assert!(status.success(), "{status:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    assert!(Path::new(&file).exists());
}

/// Runs `edgecam ARGS` with its stdout a pipe whose reading end is closed before it writes;
/// bounded by [`WAIT`].
fn run_with_closed_stdout(args: &[String]) -> (std::process::ExitStatus, String) {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgecam"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut stderr = child.stderr.take().unwrap();
    let reading = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("edgecam {args:?} did not exit in time");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, reading.join().unwrap())
}
