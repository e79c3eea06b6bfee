//! The legacy protocol as one client sees it over a real socket: the session table of
//! LEGACY-PROTOCOL.md, command parsing, garbage, timeouts, connection limits and stopping.

use std::time::{Duration, Instant};

use edgecam::clock::wall_now;
use tokio::net::TcpStream;

use crate::support::{
    Raw, TINY_RECV_BUFFER, TestServer, WAIT, assert_increasing, assert_jpeg, config_with, seq,
    stamp, whole_frames,
};

/// Small frames: cheap to encode even in a debug build, 30 of them a second.
const CAMERA: &str = "sim:320x240@30";
/// Several frame intervals: a frame that is going to come comes well within this.
const QUIET: Duration = Duration::from_millis(300);
/// A short session timeout for the timeout tests.
const SHORT: Duration = Duration::from_millis(300);

/// Starts a server on [`CAMERA`] and connects one client.
async fn connected() -> (TestServer, Raw) {
    let server = TestServer::start(CAMERA).await;
    let client = server.connect().await;
    (server, client)
}

/// Starts a server on [`CAMERA`] and one client that is streaming and has had its first frame.
async fn streaming() -> (TestServer, Raw) {
    let server = TestServer::start(CAMERA).await;
    let client = server.streamer().await;
    (server, client)
}

/// Asserts that `client` gets frames with increasing seqs after `after`; returns the last seq.
async fn assert_streams_past(client: &mut Raw, after: u64) -> u64 {
    let seqs = client.seqs(5).await;
    assert_increasing(&seqs);
    assert!(seqs[0] > after, "seq {} is not after {after}", seqs[0]);
    seqs[4]
}

/// Asserts that nothing comes for [`QUIET`]; `what` says what it would have been.
async fn assert_silent(client: &mut Raw, what: &str) {
    assert!(client.silent_for(QUIET).await, "{what}");
}

/// Reads `client` to the end (bounded) and asserts it got whole frames only.
async fn assert_closed_after_whole_frames(client: &mut Raw) {
    whole_frames(&client.closed().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_shot_is_one_whole_frame_and_the_next_waits_for_the_confirm() {
    let (_server, mut client) = connected().await;
    client.send(b"0").await;
    let first = client.frame().await;
    assert_jpeg(&first, 320, 240);
    assert_silent(&mut client, "a second frame without a request").await;
    client.send(b"1").await;
    assert_silent(&mut client, "a frame for a bare confirm").await;
    client.send(b"0").await;
    let second = client.frame().await;
    assert_jpeg(&second, 320, 240);
    assert!(seq(&second) > seq(&first));
    assert_silent(&mut client, "a frame nobody asked for").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_shot_is_answered_by_a_frame_captured_after_the_request() {
    let (server, mut client) = connected().await;
    server
        .wait_for_stats("the capture loop idle at the start", |s| {
            s.capture_idle >= 1
        })
        .await;
    let earlier = client.snap().await;
    // Once the capture loop is idle again, the newest frame the server holds was captured
    // before anything that follows.
    server
        .wait_for_stats("the capture loop idle after the shot", |s| {
            s.capture_idle >= 2
        })
        .await;
    let requested_at = wall_now();
    client.send(b"0").await;
    let answer = stamp(&client.frame().await);
    assert!(answer.seq > seq(&earlier));
    assert!(
        answer.captured_at >= requested_at,
        "frame captured {:?} before the request",
        requested_at.since(answer.captured_at)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_shots_while_awaiting_confirm_make_one_pending_request() {
    let (_server, mut client) = connected().await;
    client.send(b"0").await;
    let first = client.frame().await;
    client.send(b"0").await;
    client.send(b"0").await;
    assert_silent(&mut client, "sent before the confirm").await;
    client.send(b"1").await;
    let pending = client.frame().await;
    assert!(seq(&pending) > seq(&first));
    assert_silent(&mut client, "the second `0` was remembered too").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_starts_while_awaiting_confirm() {
    let (_server, mut client) = connected().await;
    client.send(b"0").await;
    let single = seq(&client.frame().await);
    client.send(b"3").await;
    assert_streams_past(&mut client, single).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stray_confirm_and_stop_are_ignored() {
    let (_server, mut client) = connected().await;
    client.send(b"1").await;
    client.send(b"q").await;
    assert_silent(&mut client, "a frame nobody asked for").await;
    client.send(b"0").await;
    client.frame().await;
    // Had the stray `1` been remembered (as the legacy server does), this would be answered.
    client.send(b"0").await;
    assert_silent(&mut client, "the stray confirm was remembered").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesced_stream_and_single_start_a_stream() {
    let (_server, mut client) = connected().await;
    client.send(b"30").await;
    assert_streams_past(&mut client, 0).await;
    client.send(b"q").await;
    client.drain(QUIET).await;
    // The `0` was ignored while streaming, so nothing is owed after the stop.
    assert_silent(&mut client, "a frame nobody asked for").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_stops_and_restarts() {
    let (_server, mut client) = streaming().await;
    let last = assert_streams_past(&mut client, 0).await;
    client.send(b"q").await;
    let in_flight: Vec<u64> = client.drain(QUIET).await.iter().map(|f| seq(f)).collect();
    assert!(in_flight.iter().all(|&s| s > last), "{in_flight:?}");
    assert!(client.silent_for(Duration::from_millis(500)).await);
    let stopped = in_flight.last().copied().unwrap_or(last);
    client.send(b"3").await;
    assert_streams_past(&mut client, stopped).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn white_space_between_commands_is_skipped() {
    let (_server, mut client) = connected().await;
    client.send(b"0\r\n").await;
    client.frame().await;
    // More white space than the garbage limit: it is not garbage.
    client.send(&b" \t\r\n".repeat(40)).await;
    client.send(b" 1\t0\r\n").await;
    client.frame().await;
    assert_silent(&mut client, "a frame nobody asked for").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_of_garbage_closes_the_connection_without_a_reply() {
    let server = TestServer::start(CAMERA).await;
    // White space inside the run neither counts nor breaks it.
    for garbage in [vec![b'x'; 64], b"x ".repeat(64)] {
        let mut client = server.connect().await;
        client.send(&garbage).await;
        assert_eq!(client.closed().await, b"");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_among_commands_is_never_answered() {
    let (_server, mut client) = connected().await;
    // One short of the limit, then a command: the run starts again.
    client.send(&[b'?'; 63]).await;
    client.send(b"0").await;
    client.frame().await;
    client.send(b"Unknown command 1").await;
    client.send(&[0xFF; 63]).await;
    client.send(b"3y").await;
    assert_streams_past(&mut client, 0).await;
    client.send(b"hello q").await;
    // Every byte that came is a whole frame (`Raw` panics on anything else).
    client.drain(QUIET).await;
    assert_silent(&mut client, "a frame nobody asked for").await;
    client.send(b"\x00\x01 0").await;
    client.frame().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_command_ends_only_that_session() {
    let (server, mut streamer) = streaming().await;
    let mut leaver = server.streamer().await;
    leaver.send(b"2").await;
    assert_closed_after_whole_frames(&mut leaver).await;
    let last = assert_streams_past(&mut streamer, 0).await;
    assert_streams_past(&mut streamer, last).await;
    let mut newcomer = server.connect().await;
    newcomer.snap().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_shutdown_stops_the_server_gracefully() {
    let config = config_with(|c| c.session.remote_shutdown = true);
    let server = TestServer::with_config(CAMERA, config).await;
    let mut streamer = server.streamer().await;
    let mut stopper = server.connect().await;
    stopper.send(b"2").await;
    let addr = server.addr.clone();
    server.finished().await;
    assert_closed_after_whole_frames(&mut streamer).await;
    assert_eq!(stopper.closed().await, b"");
    assert!(
        TcpStream::connect(&addr).await.is_err(),
        "still accepting after the stop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_frames_in_flight() {
    // Large frames as fast as they can be made: a write is likely to be under way at the stop.
    let server = TestServer::start("sim:1280x720@0").await;
    let mut reader = server.streamer().await;
    // Reads one frame, then nothing until the stop, so its socket is full when the stop comes.
    let mut laggard = Raw::connect_with_recv_buffer(&server.addr, TINY_RECV_BUFFER).await;
    laggard.send(b"3").await;
    laggard.frame().await;
    reader.frame().await;
    let (_, reader_bytes, laggard_bytes) =
        tokio::join!(server.shutdown(), reader.closed(), laggard.closed());
    whole_frames(&reader_bytes);
    whole_frames(&laggard_bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connection_is_closed_after_the_handshake_timeout() {
    let config = config_with(|c| c.session.handshake_timeout = Some(SHORT));
    let server = TestServer::with_config(CAMERA, config).await;
    let since = Instant::now();
    let mut client = server.connect().await;
    assert_eq!(client.closed().await, b"");
    assert!(since.elapsed() >= SHORT, "closed before the timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_closes_idle_sessions_but_not_streams() {
    let config = config_with(|c| c.session.idle_timeout = Some(SHORT));
    let server = TestServer::with_config(CAMERA, config).await;
    let mut idle = server.connect().await;
    let mut streamer = server.streamer().await;
    idle.snap().await;
    let confirmed = Instant::now();
    assert_eq!(idle.closed().await, b"");
    assert!(confirmed.elapsed() >= SHORT, "closed before the timeout");
    // Streaming for several idle timeouts without a command.
    let stamps = streamer.stamps_for(SHORT * 4).await;
    assert!(stamps.len() >= 10, "only {} frames", stamps.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_max_clients_are_closed_at_their_first_command() {
    let server = TestServer::with_config(CAMERA, config_with(|c| c.max_clients = 2)).await;
    let mut first = server.connect().await;
    let mut second = server.connect().await;
    // Served, so both are counted.
    first.snap().await;
    second.snap().await;
    let refused_at = Instant::now();
    let mut third = server.connect().await;
    // Its first byte shows it is no HTTP client (which would get a 503): it gets nothing.
    third.send(b"0").await;
    assert_eq!(third.closed().await, b"");
    assert!(refused_at.elapsed() < Duration::from_secs(2));
    second.snap().await;
    drop(first);
    // The server notices the departure on its own time: retry until a newcomer is served.
    let deadline = Instant::now() + WAIT;
    loop {
        let mut newcomer = server.connect().await;
        newcomer.send(b"0").await;
        if newcomer.frame_within(WAIT).await.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "no room after a client left");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_connections_respects_max_clients() {
    let server = TestServer::with_config(CAMERA, config_with(|c| c.max_clients = 2)).await;
    // All of them waiting to be accepted at once.
    let connecting: Vec<_> = (0..16)
        .map(|_| tokio::spawn(Raw::connect_owned(server.addr.clone())))
        .collect();
    let mut clients = Vec::new();
    for connecting in connecting {
        clients.push(connecting.await.unwrap());
    }
    let mut served = 0;
    for client in &mut clients {
        client.send(b"0").await;
        if client.frame_within(WAIT).await.is_some() {
            served += 1;
        }
    }
    assert_eq!(served, 2, "clients served with max_clients = 2");
}

/// `printf 3 | nc board 6810`: a client that shuts down its sending side after its command
/// still gets its stream; one that has nothing coming is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_closed_client_keeps_its_stream_and_an_idle_one_is_closed() {
    use tokio::io::AsyncWriteExt;
    let (server, mut streamer) = streaming().await;
    streamer.stream.shutdown().await.unwrap();
    let last = assert_streams_past(&mut streamer, 0).await;
    assert_streams_past(&mut streamer, last).await;

    let mut idle = server.connect().await;
    idle.stream.shutdown().await.unwrap();
    assert!(idle.closed().await.is_empty());
}
