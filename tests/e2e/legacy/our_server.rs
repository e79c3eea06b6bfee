//! The old Python client against our server. Its single shot and its stream work; the frames
//! still in flight after its `q` are read later, but they are whole frames (our server sends
//! nothing else), so the stream never goes out of step; and its exit ends only its session.

use edgecam::clock::wall_now;
use edgecam_core::time::Timestamp;

use super::old_client::{Failure, OldClient};
use crate::support::{Raw, TestServer, WAIT, assert_increasing, assert_jpeg, stamp};

const CAMERA: &str = "sim:160x120@30";

/// Asserts that `frame` is one of our server's frames; returns its sequence number.
fn checked(frame: &[u8]) -> u64 {
    assert_jpeg(frame, 160, 120);
    stamp(frame).seq
}

/// Runs the old client's script on a blocking thread, bounded.
async fn run_old_client<T: Send + 'static>(
    server: &TestServer,
    script: impl FnOnce(OldClient) -> T + Send + 'static,
) -> T {
    let addr = server.addr.clone();
    let old = tokio::task::spawn_blocking(move || script(OldClient::connect(&addr)));
    tokio::time::timeout(WAIT, old)
        .await
        .expect("the old client's script took too long")
        .unwrap()
}

/// The next frame on `raw` captured after `t` (bounded: frames come at 30 fps).
async fn frame_captured_after(raw: &mut Raw, t: Timestamp) -> bytes::Bytes {
    tokio::time::timeout(WAIT, async {
        loop {
            let frame = raw.frame().await;
            if stamp(&frame).captured_at > t {
                return frame;
            }
        }
    })
    .await
    .expect("no fresh frame in time")
}

#[tokio::test]
async fn old_single_shot_gets_a_jpeg() {
    let server = TestServer::start(CAMERA).await;
    run_old_client(&server, |mut old| {
        checked(&old.single_shot().expect("single shot"));
        old.send_exit();
    })
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn old_stream_starts_although_3_and_0_arrive_together() {
    let server = TestServer::start(CAMERA).await;
    let seqs = run_old_client(&server, |mut old| {
        let mut seqs = vec![checked(&old.start_stream().expect("first frame"))];
        for _ in 0..10 {
            seqs.push(checked(&old.streamed_frame().expect("streamed frame")));
        }
        old.stop_stream();
        old.send_exit();
        seqs
    })
    .await;
    assert_increasing(&seqs);
    server.shutdown().await;
}

#[tokio::test]
async fn old_single_shot_after_q_reads_a_stale_frame_but_stays_in_step() {
    let server = TestServer::start(CAMERA).await;
    let (answer, rest) = run_old_client(&server, |mut old| {
        let mut streamed = vec![checked(&old.start_stream().expect("first frame"))];
        for _ in 0..3 {
            streamed.push(checked(&old.streamed_frame().expect("streamed frame")));
        }
        // The user presses `q` while a frame is on its way.
        assert!(old.bytes_waiting(WAIT), "the stream stopped by itself");
        old.stop_stream();
        let answer = checked(&old.single_shot().expect("single shot after q"));
        assert!(answer > *streamed.last().unwrap());
        // What is left: more frames in flight at `q`, then the real answer to `0`. Whole
        // frames only: a timeout, not a failed read, ends this.
        let mut rest = Vec::new();
        loop {
            match old.streamed_frame() {
                Ok(frame) => rest.push(checked(&frame)),
                Err(Failure::Timeout) => break,
                Err(e) => panic!("the stream went out of step: {e}"),
            }
            assert!(rest.len() < 100, "frames keep coming after q");
        }
        old.send_exit();
        (answer, rest)
    })
    .await;
    // The single shot was answered by a frame streamed before `q`: the real answer came after.
    assert!(!rest.is_empty(), "the single shot got the real answer");
    assert_increasing(&[&[answer][..], &rest].concat());
    server.shutdown().await;
}

#[tokio::test]
async fn old_exit_ends_only_its_own_session() {
    let server = TestServer::start(CAMERA).await;
    let mut watcher = server.connect().await;
    watcher.send(b"3").await;
    checked(&watcher.frame().await);
    let closed = run_old_client(&server, |mut old| {
        checked(&old.start_stream().expect("first frame"));
        old.stop_stream();
        old.send_exit();
        old.closed_by_server(WAIT)
    })
    .await;
    assert!(
        closed,
        "our server kept the old client's session open after `2`"
    );
    let exited = wall_now();
    checked(&frame_captured_after(&mut watcher, exited).await);
    let mut late = server.connect().await;
    late.send(b"0").await;
    checked(&late.frame().await);
    assert!(!server.stop.is_cancelled());
    server.shutdown().await;
}

/// The old client and an HTTP viewer on the one port at once: each gets its own framing of the
/// same frames, and the old client's exit ends only its own session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_client_and_an_http_viewer_share_the_port() {
    use edgecam::client::{Client, ClientConfig};
    let server = TestServer::start(CAMERA).await;
    let url = format!("http://{}/stream", server.addr);
    let mut http = Client::connect(&url, ClientConfig::default())
        .await
        .unwrap();
    http.start_stream().await.unwrap();
    let viewer = tokio::spawn(async move {
        let mut seqs = Vec::new();
        for _ in 0..30 {
            let frame = http.next_frame().await.unwrap();
            seqs.push(checked(&frame.jpeg));
        }
        seqs
    });
    let old = run_old_client(&server, |mut old| {
        let single = checked(&old.single_shot().expect("single shot"));
        let mut seqs = vec![checked(&old.start_stream().expect("stream"))];
        for _ in 0..10 {
            seqs.push(checked(&old.streamed_frame().expect("streamed frame")));
        }
        old.stop_stream();
        old.send_exit();
        (single, seqs)
    })
    .await;
    assert_increasing(&old.1);
    let http = tokio::time::timeout(WAIT, viewer).await.unwrap().unwrap();
    assert_increasing(&http);
    // The old client's exit did not end the viewer's stream.
    assert_eq!(http.len(), 30);
    server.shutdown().await;
}
