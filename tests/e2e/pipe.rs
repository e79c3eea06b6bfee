//! `exec:` and `pipe:` cameras through the whole server: JPEGs passed through stamped (and
//! given Huffman tables where the camera left them out), YUV encoded at its size, a child that
//! exits answered with NO SIGNAL and a restart, and no child left after the server stops.

use std::time::{Duration, Instant};

use edgecam_core::jpeg;

use crate::support::*;

/// ffmpeg's test picture as MJPEG, 320x240, paced like a camera.
const FFMPEG_MJPEG: &str = "-loglevel error -f lavfi -i testsrc2=size=320x240:rate=30 -f mjpeg -";

fn decode(frame: &[u8]) -> Vec<u8> {
    jpeg_decoder::Decoder::new(frame).decode().unwrap()
}

/// `frame` without the stamp the server puts right after SOI.
fn unstamped(frame: &[u8]) -> Vec<u8> {
    assert_eq!(
        &frame[..4],
        [0xFF, 0xD8, 0xFF, 0xFE],
        "no COM segment after SOI"
    );
    let len = usize::from(u16::from_be_bytes([frame[4], frame[5]]));
    assert!(frame[6..].starts_with(b"edgecam seq="));
    [&frame[..2], &frame[4 + len..]].concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mjpeg_from_ffmpeg_is_passed_through_with_only_the_stamp_added() {
    if !have_tool("ffmpeg") {
        return;
    }
    // The same frames, written at once: what the camera's frames must be, byte for byte.
    let args: Vec<&str> = FFMPEG_MJPEG.split(' ').collect();
    let reference = std::process::Command::new("ffmpeg")
        .args(&args[..args.len() - 1])
        .args(["-frames:v", "600", "-"])
        .output()
        .unwrap();
    assert!(reference.status.success(), "{reference:?}");

    let server = TestServer::start(&format!("exec:ffmpeg -re {FFMPEG_MJPEG}")).await;
    let mut client = server.streamer().await;
    let mut seqs = Vec::new();
    for _ in 0..5 {
        let frame = client.frame().await;
        assert_jpeg(&frame, 320, 240);
        let bytes = unstamped(&frame);
        assert!(
            reference.stdout.windows(bytes.len()).any(|f| f == bytes),
            "a frame is not one of ffmpeg's"
        );
        seqs.push(seq(&frame));
    }
    assert_increasing(&seqs);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yuv_from_ffmpeg_is_encoded_once_at_its_size() {
    if !have_tool("ffmpeg") {
        return;
    }
    for (pix_fmt, format) in [("nv12", "nv12"), ("yuyv422", "yuyv"), ("yuv420p", "i420")] {
        let camera = format!(
            "exec:ffmpeg -loglevel error -re -f lavfi -i testsrc2=size=320x240:rate=30 \
             -pix_fmt {pix_fmt} -f rawvideo -#format={format}&size=320x240"
        );
        let server = TestServer::start(&camera).await;
        let mut client = server.streamer().await;
        let first = client.frame().await;
        let mut later = client.frame().await;
        for _ in 0..5 {
            later = client.frame().await;
        }
        for frame in [&first, &later] {
            assert_jpeg(frame, 320, 240);
        }
        assert!(seq(&later) > seq(&first), "{format}");
        assert_ne!(
            decode(&first),
            decode(&later),
            "{format}: the picture moves"
        );
        server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_that_leaves_out_huffman_tables_gets_them_back() {
    let (w, h) = (64u16, 48u16);
    let original = textured_jpeg(w, h, 0);
    let bare = without_huffman_tables(&original);
    assert!(!jpeg::has_huffman_tables(&bare));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("camera.mjpeg");
    std::fs::write(&path, bare.repeat(3)).unwrap();

    let server = TestServer::start(&format!("pipe:{}#fps=30", path.display())).await;
    let frame = server.connect().await.snap().await;
    assert!(jpeg::has_huffman_tables(&frame));
    assert_eq!(jpeg::Stamp::find(&frame).map(|s| s.seq > 0), Some(true));
    assert_eq!(decode(&frame), decode(&original), "the same picture");
    server.shutdown().await;
}

/// A child that writes three flat grey 160x120 RGB frames and exits.
const SHORT_LIVED: &str = "exec:sh -c 'for i in 1 2 3; do head -c 57600 /dev/zero | tr \"\\000\" \"\\310\"; done'#format=rgb24&size=160x120";

/// Whether a decoded 160x120 picture is the child's flat grey (200), not NO SIGNAL.
fn is_flat_grey(pixels: &[u8]) -> bool {
    pixels.iter().all(|p| p.abs_diff(200) <= 12)
}

/// A raw camera's capture loop has a thread of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_exits_gives_no_signal_then_is_started_again() {
    no_signal_then_started_again(SHORT_LIVED).await;
}

/// A JPEG camera's capture loop is a task beside the sessions; it encodes the NO SIGNAL
/// picture there too (in `block_in_place`, on this multi-threaded runtime).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jpeg_child_that_exits_gives_no_signal_then_is_started_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grey.jpg");
    std::fs::write(&path, encode_jpeg(&[200; 160 * 120 * 3], 160, 120)).unwrap();
    let camera = format!(
        "exec:sh -c 'for i in 1 2 3; do cat {}; done'",
        path.display()
    );
    no_signal_then_started_again(&camera).await;
}

/// `camera` is a child that writes three flat grey 160x120 frames and exits: its clients see
/// NO SIGNAL, then a new child's frames, numbered on.
async fn no_signal_then_started_again(camera: &str) {
    let server = TestServer::start(camera).await;
    let mut client = server.streamer().await;
    let deadline = Instant::now() + WAIT;
    // (seq, the child's picture?) until the child's picture came back after a NO SIGNAL: the
    // child writes three frames and exits, so a picture after NO SIGNAL is a new child's.
    // (Whether the first frame after connecting is the child's or NO SIGNAL is a race.)
    let mut received: Vec<(u64, bool)> = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "{received:?}");
        let frame = client.frame().await;
        assert_jpeg(&frame, 160, 120);
        received.push((seq(&frame), is_flat_grey(&decode(&frame))));
        let gone = received.iter().position(|(_, grey)| !grey);
        if gone.is_some_and(|at| received[at..].iter().any(|(_, grey)| *grey)) {
            break;
        }
    }
    let seqs: Vec<u64> = received.iter().map(|(seq, _)| *seq).collect();
    assert_increasing(&seqs);
    server.shutdown().await;
}

fn processes() -> Vec<(u32, u32, String)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // After the parenthesised name: state, ppid, pgrp.
            let pgrp = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(2)?
                .parse()
                .ok()?;
            Some((pid, pgrp, String::from_utf8_lossy(&cmdline).into_owned()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_child_is_left_once_the_server_stops() {
    let marker = format!("edgecam-e2e-{}", std::process::id());
    // A frame every 0.1 s from a background loop, while the shell itself waits far longer
    // than the test.
    let camera = format!(
        "exec:sh -c 'while :; do head -c 57600 /dev/zero; sleep 0.1; done & sleep 300; : {marker}'#format=rgb24&size=160x120"
    );
    let server = TestServer::start(&camera).await;
    server.connect().await.snap().await;
    let child = processes()
        .into_iter()
        .find(|(_, _, cmdline)| cmdline.contains(&marker))
        .expect("the child runs");
    let group = child.1;
    let in_group = || -> Vec<(u32, u32, String)> {
        processes()
            .into_iter()
            .filter(|(_, g, _)| *g == group)
            .collect()
    };
    // Its group: the shell, its sleep and the background loop's shell.
    let deadline = Instant::now() + WAIT;
    while in_group().len() < 3 {
        assert!(Instant::now() < deadline, "{:?}", in_group());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.shutdown().await;
    // The process group got SIGTERM and was reaped; wait (bounded) for the kernel to agree.
    let deadline = Instant::now() + WAIT;
    while !in_group().is_empty() {
        assert!(
            Instant::now() < deadline,
            "left running or unreaped: {:?}",
            in_group()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
