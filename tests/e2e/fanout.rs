//! One camera, many clients: each session has its own state, frames are captured and encoded
//! once for everyone, slow or broken clients skip frames or are dropped without holding up
//! anyone else, and camera faults do not end the stream.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edgecam::clock::wall_now;
use edgecam_core::jpeg::{Stamp, dimensions};
use tokio::io::AsyncReadExt;

use crate::support::{
    Raw, TINY_RECV_BUFFER, TestServer, WAIT, assert_increasing, assert_jpeg, config_with, seq,
    stamp,
};

const CAMERA: &str = "sim:320x240@30";
/// The camera the rate tests use, and its nominal rate.
const RATE_CAMERA: &str = "sim:640x480@30";
const FPS: f64 = 30.0;
const QUIET: Duration = Duration::from_millis(300);

/// Streams `client` for `span` in a task of its own; yields the stamps it received.
fn watch(mut client: Raw, span: Duration) -> tokio::task::JoinHandle<Vec<Stamp>> {
    tokio::spawn(async move { client.stamps_for(span).await })
}

/// The seqs of `stamps`, asserting they increase.
fn seqs(stamps: &[Stamp]) -> Vec<u64> {
    let seqs: Vec<u64> = stamps.iter().map(|s| s.seq).collect();
    assert_increasing(&seqs);
    seqs
}

/// Asserts that `stamps`, received over `span`, come at least at 60% of [`FPS`].
fn assert_rate(stamps: &[Stamp], span: Duration) {
    let expected = FPS * span.as_secs_f64() * 0.6;
    assert!(
        stamps.len() as f64 >= expected,
        "{} frames in {span:?}, expected at least {expected:.0}",
        stamps.len()
    );
}

/// Reads the next `n` frames, each as `(seq, frame)`.
async fn numbered(client: &mut Raw, n: usize) -> Vec<(u64, Bytes)> {
    let mut frames = Vec::with_capacity(n);
    for _ in 0..n {
        let frame = client.frame().await;
        frames.push((seq(&frame), frame));
    }
    frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamer_and_single_shooter_each_get_what_they_asked_for() {
    let server = TestServer::start(CAMERA).await;
    let streamer = watch(server.streamer().await, Duration::from_millis(1500));
    let mut shooter = server.connect().await;
    let mut shots = Vec::new();
    for _ in 0..3 {
        let frame = shooter.snap().await;
        assert!(shooter.silent_for(QUIET).await, "an unrequested frame");
        shots.push(seq(&frame));
    }
    assert_increasing(&shots);
    let streamed = seqs(&streamer.await.unwrap());
    assert!(streamed.len() >= 10, "the streamer got {streamed:?}");
}

/// A server with a 1 s send timeout, a streaming client that never reads (with a tiny receive
/// buffer), and a streaming client that reads.
async fn stalled_and_reader() -> (TestServer, Raw, Raw) {
    let config = config_with(|c| c.send_timeout = Duration::from_secs(1));
    let server = TestServer::with_config(RATE_CAMERA, config).await;
    let mut stalled = Raw::connect_with_recv_buffer(&server.addr, TINY_RECV_BUFFER).await;
    stalled.send(b"3").await;
    let reader = server.streamer().await;
    (server, stalled, reader)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_does_not_slow_the_others() {
    let (_server, _stalled, mut reader) = stalled_and_reader().await;
    let span = Duration::from_secs(2);
    let stamps = reader.stamps_for(span).await;
    seqs(&stamps);
    assert_rate(&stamps, span);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_dropped_after_the_send_timeout() {
    let (server, mut stalled, mut reader) = stalled_and_reader().await;
    // Until the server has let go of one client (the send timeout, once the socket buffers
    // are full), the reader reads on; were it the one dropped, `frame` would fail.
    let deadline = Instant::now() + WAIT;
    while server.stats().clients > 1 {
        assert!(
            Instant::now() < deadline,
            "no client dropped within {WAIT:?}: {:?}",
            server.stats()
        );
        reader.frame().await;
    }
    // Only a connection the server has given up on comes to an end when read now: reading
    // would let a session that is still there go on for ever.
    stalled.closed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_skips_frames_instead_of_lagging_behind() {
    let server = TestServer::start(CAMERA).await;
    // A tiny receive buffer keeps the client's own kernel from holding frames for it: what is
    // left to see is what the server queues.
    let mut slow = Raw::connect_with_recv_buffer(&server.addr, TINY_RECV_BUFFER).await;
    slow.send(b"3").await;
    let reads = 15;
    // Slow: it reads again only once the server has made this many frames more (200 ms at
    // 30 fps), however fast the machine.
    let between = 6;
    let mut received = Vec::new();
    for _ in 0..reads {
        received.push((stamp(&slow.frame().await), wall_now()));
        let encoded = server.stats().encoded;
        server
            .wait_for_stats("more frames encoded", |s| s.encoded >= encoded + between)
            .await;
    }
    let (first, last) = (received[0].0.seq, received[reads - 1].0.seq);
    assert!(
        last - first >= 2 * reads as u64,
        "seqs {first}..={last} over {reads} reads {between} frames apart: hardly a frame was skipped"
    );
    // Catching up: a frame captured just now comes after at most a few that were in flight.
    let fresh = Duration::from_secs_f64(2.0 / FPS) + Duration::from_millis(200);
    for _ in 0..8 {
        let frame = stamp(&slow.frame().await);
        received.push((frame, wall_now()));
        if wall_now().since(frame.captured_at) <= fresh {
            break;
        }
    }
    let ages: Vec<Duration> = received
        .iter()
        .map(|(stamp, at)| at.since(stamp.captured_at))
        .collect();
    assert!(
        ages.iter().all(|age| *age < Duration::from_millis(1500)),
        "a backlog of old frames: ages {ages:?}"
    );
    assert!(
        *ages.last().unwrap() <= fresh,
        "no fresh frame after catching up: ages {ages:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_frame_disturbs_no_one() {
    // Large frames, made as fast as they are wanted.
    let server = TestServer::start("sim:1280x720@0").await;
    let mut watcher = server.streamer().await;
    let mut quitter = server.connect().await;
    quitter.send(b"3").await;
    let mut part = [0u8; 1000];
    tokio::time::timeout(WAIT, quitter.stream.read_exact(&mut part))
        .await
        .unwrap()
        .unwrap();
    drop(quitter);
    let seen = numbered(&mut watcher, 3).await;
    let seqs: Vec<u64> = seen.iter().map(|(seq, _)| *seq).collect();
    assert_increasing(&seqs);
    let mut newcomer = server.connect().await;
    assert_jpeg(&newcomer.snap().await, 1280, 720);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_camera_is_not_read_while_nobody_wants_a_frame() {
    let server = TestServer::start(RATE_CAMERA).await;
    let mut client = server.connect().await;
    // Idle from the start, and idle again once the shot is answered: the loop got past the
    // point where it would read on for nobody, and decided not to.
    server
        .wait_for_stats("the capture loop idle at the start", |s| {
            s.capture_idle >= 1
        })
        .await;
    let before = seq(&client.snap().await);
    let idle = server
        .wait_for_stats("the capture loop idle after the shot", |s| {
            s.capture_idle >= 2
        })
        .await;
    let still = server.stats();
    assert_eq!(
        (still.captured, still.capture_idle),
        (idle.captured, 2),
        "the camera was read with nobody wanting a frame"
    );
    let after = seq(&client.snap().await);
    assert!(
        after - before <= 3,
        "seq went from {before} to {after}: the camera was read meanwhile"
    );
}

/// Counted by the capture loop, not told from the bytes: a deterministic camera and encoder
/// would give every client the same bytes even if each session encoded its own copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_share_one_capture_and_one_encoding() {
    const CLIENTS: usize = 4;
    const FRAMES: usize = 12;
    let server = TestServer::start(CAMERA).await;
    let mut readers = Vec::new();
    for _ in 0..CLIENTS {
        let mut client = server.streamer().await;
        readers.push(tokio::spawn(async move { client.seqs(FRAMES).await }));
    }
    let mut received = 0;
    for reader in readers {
        let seqs = reader.await.unwrap();
        assert_increasing(&seqs);
        // And the one `streamer` read first.
        received += seqs.len() + 1;
    }
    // Stopped, the capture loop has finished: no frame is between captured and encoded.
    let stats = server.stats.clone();
    server.shutdown().await;
    let counted = stats.snapshot();
    assert_eq!(counted.capture_errors, 0, "{counted:?}");
    assert_eq!(counted.no_signal, 0, "{counted:?}");
    assert_eq!(
        counted.encoded, counted.captured,
        "{CLIENTS} streaming clients: {counted:?}"
    );
    assert!(
        received as u64 > counted.encoded,
        "{CLIENTS} clients received {received} frames in all, no more than the {} encoded",
        counted.encoded
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_errors_lose_frames_but_not_the_stream() {
    let server = TestServer::start("sim:320x240@30#error_every=3").await;
    let mut client = server.streamer().await;
    let seqs = client.seqs(12).await;
    assert_increasing(&seqs);
    assert!(seqs.iter().all(|seq| seq % 3 != 0), "{seqs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnected_camera_is_reopened() {
    let server = TestServer::start("sim:320x240@30#fail_after=5").await;
    let mut client = server.connect().await;
    client.send(b"3").await;
    let deadline = Instant::now() + WAIT;
    let mut seqs = Vec::new();
    // Frame 6 and later exist only if the camera was opened again.
    while seqs.last().is_none_or(|&seq| seq <= 7) {
        assert!(Instant::now() < deadline, "the stream stopped at {seqs:?}");
        seqs.push(seq(&client.frame().await));
    }
    assert_increasing(&seqs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unplugged_camera_sends_no_signal_until_it_is_back() {
    // Unplugged after frame 5 for 2.5 s: "NO SIGNAL" right away, then once a second.
    let server = TestServer::start("sim:320x240@30#fail_after=5&down_ms=2500").await;
    let mut client = server.streamer().await;
    let deadline = Instant::now() + WAIT;
    // (stamped seq, seq the sim drew in the picture, when received)
    let mut received: Vec<(u64, Option<u64>, Instant)> = Vec::new();
    while received
        .iter()
        .filter(|(_, drawn, _)| *drawn > Some(5))
        .count()
        < 3
    {
        assert!(
            Instant::now() < deadline,
            "the stream stopped: {received:?}"
        );
        let frame = client.frame().await;
        let pixels = jpeg_decoder::Decoder::new(&frame[..]).decode().unwrap();
        assert_jpeg(&frame, 320, 240);
        received.push((
            seq(&frame),
            edgecam_camera_sim::read_seq(&pixels, 320, 240),
            Instant::now(),
        ));
    }
    let stamped: Vec<u64> = received.iter().map(|(seq, _, _)| *seq).collect();
    assert_increasing(&stamped);
    let no_signal: Vec<Instant> = received
        .iter()
        .filter(|(_, drawn, _)| drawn.is_none())
        .map(|(_, _, at)| *at)
        .collect();
    assert!((2..=4).contains(&no_signal.len()), "{received:?}");
    for pair in no_signal.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap > Duration::from_millis(700), "NO SIGNAL every {gap:?}");
    }
    // The picture comes back on the same connection, after the NO SIGNAL ones only.
    let first_back = received.iter().position(|(_, drawn, _)| *drawn > Some(5));
    let last_gone = received.iter().rposition(|(_, drawn, _)| drawn.is_none());
    assert!(last_gone < first_back, "{received:?}");
}

/// The picture size of `sim:320x240@30#vary`'s frame `seq`.
fn vary_size(seq: u64) -> (u16, u16) {
    if seq % 2 == 0 { (160, 120) } else { (320, 240) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_may_change_size() {
    let server = TestServer::start("sim:320x240@30#vary").await;
    let mut client = server.streamer().await;
    let mut sizes = BTreeSet::new();
    for (seq, frame) in numbered(&mut client, 6).await {
        let (width, height) = vary_size(seq);
        assert_jpeg(&frame, width, height);
        sizes.insert(dimensions(&frame));
    }
    assert_eq!(sizes.len(), 2, "{sizes:?}");
}
