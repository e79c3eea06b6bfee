//! Our client against the old Python server: with `legacy` it sends one command per `recv`
//! and drains the stream after `q`; without it, two commands in one segment make the old
//! server answer with text, which our client names as such instead of hanging.

use edgecam::client::{Client, ClientConfig};
use edgecam_core::codec::Command;

use super::old_server::{Event, HEIGHT, OldServer, WIDTH, frame_number};
use crate::support::{WAIT, assert_jpeg, edgecam};

async fn connect(server: &OldServer, legacy: bool) -> Client {
    let config = ClientConfig {
        legacy,
        ..ClientConfig::default()
    };
    Client::connect(&server.addr, config).await.unwrap()
}

/// Asserts that `jpeg` is a whole frame of the old server; returns its number.
fn checked(jpeg: &[u8]) -> u64 {
    assert_jpeg(jpeg, WIDTH, HEIGHT);
    frame_number(jpeg)
}

/// Waits until the client's connection has ended, then returns every `recv` the server made.
fn received_once_closed(server: &OldServer) -> Vec<String> {
    server.wait_closed(1);
    server.received()
}

#[tokio::test]
async fn legacy_snaps_in_a_row_each_get_their_frame() {
    let server = OldServer::start();
    let mut client = connect(&server, true).await;
    let mut numbers = Vec::new();
    for _ in 0..3 {
        let frame = tokio::time::timeout(WAIT, client.snap()).await.unwrap();
        numbers.push(checked(&frame.unwrap().jpeg));
    }
    drop(client);
    // Every confirm reached the server in a `recv` of its own, apart from the next `0`.
    assert_eq!(
        received_once_closed(&server),
        ["0", "1", "0", "1", "0", "1"]
    );
    assert_eq!(numbers, server.singles());
    assert!(!server.shut_down_by_client());
}

#[tokio::test]
async fn legacy_snap_after_a_stream_is_fresh() {
    let server = OldServer::start();
    let mut client = connect(&server, true).await;
    client.start_stream().await.unwrap();
    // Frames pile up unread, so they are in flight when `q` goes out.
    server.wait_streamed(3);
    let drained = tokio::time::timeout(WAIT, client.stop_stream())
        .await
        .unwrap()
        .unwrap();
    let frame = tokio::time::timeout(WAIT, client.snap()).await.unwrap();
    let number = checked(&frame.unwrap().jpeg);
    drop(client);
    assert_eq!(received_once_closed(&server), ["3", "q", "0", "1"]);
    let streamed = server
        .events()
        .iter()
        .filter(|e| matches!(e, Event::Streamed(_)))
        .count();
    assert!(drained >= 3, "drained {drained} frames");
    assert_eq!(
        drained as usize, streamed,
        "every streamed frame was drained"
    );
    assert_eq!(server.singles(), [number], "the snap got a streamed frame");
}

#[tokio::test]
async fn without_legacy_the_old_servers_text_reply_is_a_clear_error() {
    let server = OldServer::start();
    // `3` and `0` arrive in one `recv`, as on a busy board.
    let paused = server.pause_reading();
    let mut client = connect(&server, false).await;
    client.send(Command::Stream).await.unwrap();
    client.send(Command::Single).await.unwrap();
    drop(paused);
    let error = tokio::time::timeout(WAIT, client.next_frame())
        .await
        .expect("the client hung on the text reply")
        .expect_err("text was taken for a frame");
    assert_eq!(server.received(), ["30"]);
    let text = edgecam::error_chain(&error).replace(&server.addr, "OLD-SERVER");
    insta::with_settings!({ snapshot_path => "../snapshots" }, {
        insta::assert_snapshot!(text);
    });
    assert!(
        text.contains(r#"the text "Unkn": the server wrote text, not a frame"#),
        "{text}"
    );
}

#[test]
fn snap_binary_in_legacy_mode_writes_the_frame() {
    let server = OldServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.jpg");
    let out = edgecam(&[
        "snap",
        "--legacy",
        &server.addr,
        "-o",
        path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let number = checked(&std::fs::read(&path).unwrap());
    assert_eq!(received_once_closed(&server), ["0", "1"]);
    assert_eq!(server.singles(), [number]);
}

#[test]
fn stream_binary_in_legacy_mode_counts_its_frames() {
    let server = OldServer::start();
    let out = edgecam(&["stream", "--legacy", &server.addr, "--frames", "5"]);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.starts_with("5 frames in "), "{}", out.stdout);
    assert!(out.stdout.contains("latency n/a"), "{}", out.stdout);
    assert_eq!(received_once_closed(&server), ["3", "q"]);
    assert!(!server.shut_down_by_client());
}
