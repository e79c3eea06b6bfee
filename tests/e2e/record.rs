//! `edgecam record` and `edgecam repair` through the real binary, against an in-process
//! server on the synthetic camera: every frame kept in order, Ctrl-C finishes the file, a
//! killed recorder's file is repaired with every frame that reached the disk.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::{Edgecam, TestServer, assert_increasing, assert_jpeg, edgecam, seq};

const CAMERA: &str = "sim:320x240@30";

/// The stamped numbers of a recording's frames, which must all be whole 320x240 JPEGs.
pub fn recorded_seqs(path: &Path) -> Vec<u64> {
    let mut avi = edgecam_recorder::AviReader::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    avi.frames()
        .map(|frame| {
            let frame = frame.unwrap();
            assert_jpeg(&frame, 320, 240);
            seq(&frame)
        })
        .collect()
}

/// Asserts `seqs` are consecutive: the recorder kept every frame the server sent.
fn assert_consecutive(seqs: &[u64]) {
    assert!(!seqs.is_empty());
    assert_increasing(seqs);
    assert_eq!(
        seqs[seqs.len() - 1] - seqs[0] + 1,
        seqs.len() as u64,
        "frames are missing: {seqs:?}"
    );
}

/// Waits (bounded by WAIT) until `path` holds at least `n` whole frames.
pub async fn wait_for_frames(path: &Path, n: usize) {
    let deadline = std::time::Instant::now() + crate::support::WAIT;
    loop {
        let bytes = std::fs::read(path).unwrap_or_default();
        if whole_frame_chunks(&bytes) >= n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} did not reach {n} frames in time",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// N from the `saved N frames (...) in PATH` line `record` prints.
fn saved_frames(stdout: &str) -> u64 {
    stdout
        .split("saved ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `saved N frames` line in {stdout:?}"))
}

fn path_arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_frames_keeps_every_frame_in_order() {
    let server = TestServer::start(CAMERA).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("thirty.avi");
    let out = edgecam(&[
        "record",
        &server.addr,
        "--frames",
        "30",
        "-o",
        path_arg(&file),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("saved 30 frames"), "{out:?}");
    let seqs = recorded_seqs(&file);
    assert_eq!(seqs.len(), 30);
    assert_consecutive(&seqs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_without_output_names_the_file_like_the_legacy_client() {
    let server = TestServer::start(CAMERA).await;
    let dir = tempfile::tempdir().unwrap();
    let out = Edgecam::spawn_with(&["record", &server.addr, "--frames", "5"], |cmd| {
        cmd.current_dir(dir.path());
    })
    .finish();
    assert!(out.status.success(), "{out:?}");
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let [name] = &names[..] else {
        panic!("{names:?}")
    };
    let millis = name
        .strip_prefix("video_stream_")
        .and_then(|rest| rest.strip_suffix(".avi"))
        .unwrap_or_else(|| panic!("{name}"));
    assert!(
        millis.len() >= 13 && millis.bytes().all(|b| b.is_ascii_digit()),
        "{name}"
    );
    assert_eq!(recorded_seqs(&dir.path().join(name)).len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_finishes_the_file_and_prints_its_summary() {
    let server = TestServer::start(CAMERA).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("interrupted.avi");
    let recorder = Edgecam::spawn(&["record", &server.addr, "-o", path_arg(&file)]);
    wait_for_frames(&file, 10).await;
    recorder.signal("INT");
    let out = recorder.finish();
    assert!(out.status.success(), "{out:?}");
    let saved = saved_frames(&out.stdout);
    assert!(out.stdout.contains(path_arg(&file)), "{out:?}");
    // Readable as it is: no repair needed.
    let seqs = recorded_seqs(&file);
    assert_eq!(seqs.len() as u64, saved);
    assert!(saved >= 10, "{saved}");
    assert_consecutive(&seqs);
}

/// The frames whose chunk (`00dc`, length, JPEG) lies wholly in `bytes`, found by looking for
/// chunk headers: independent of how the recorder or the repair walk the file.
fn whole_frame_chunks(bytes: &[u8]) -> usize {
    let mut count = 0;
    let mut at = 0;
    while let Some(found) = bytes[at..].windows(4).position(|w| w == b"00dc") {
        let start = at + found;
        at = start + 4;
        let Some(len) = bytes.get(start + 4..start + 8) else {
            break;
        };
        let len = u32::from_le_bytes(len.try_into().unwrap()) as usize;
        let data = start + 8;
        if bytes.get(data..data + 2) == Some(&[0xFF, 0xD8]) && data + len <= bytes.len() {
            count += 1;
            at = data + len;
        }
    }
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_recording_is_repaired_with_every_frame_that_reached_the_disk() {
    let server = TestServer::start(CAMERA).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("killed.avi");
    let recorder = Edgecam::spawn(&["record", &server.addr, "-o", path_arg(&file)]);
    wait_for_frames(&file, 10).await;
    recorder.signal("KILL");
    let out = recorder.finish();
    assert!(!out.status.success(), "{out:?}");

    let on_disk = whole_frame_chunks(&std::fs::read(&file).unwrap());
    assert!(on_disk >= 10, "{on_disk}");
    let out = edgecam(&["repair", path_arg(&file)]);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains(&on_disk.to_string()), "{out:?}");
    let seqs = recorded_seqs(&file);
    assert_eq!(seqs.len(), on_disk);
    assert_consecutive(&seqs);

    // Repairing again changes nothing.
    let before = std::fs::read(&file).unwrap();
    let out = edgecam(&["repair", path_arg(&file)]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read(&file).unwrap(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_to_a_folder_writes_numbered_jpegs() {
    let server = TestServer::start(CAMERA).await;
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("frames");
    let out = edgecam(&[
        "record",
        &server.addr,
        "--frames",
        "10",
        "--dir",
        path_arg(&frames),
    ]);
    assert!(out.status.success(), "{out:?}");
    let seqs: Vec<u64> = (1..=10)
        .map(|n| {
            let jpeg = std::fs::read(frames.join(format!("frame_{n:06}.jpg"))).unwrap();
            assert_jpeg(&jpeg, 320, 240);
            seq(&jpeg)
        })
        .collect();
    assert_consecutive(&seqs);
    assert!(!frames.join("frame_000011.jpg").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_roll_over_without_losing_a_frame() {
    let server = TestServer::start(CAMERA).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("seg.avi");
    let out = edgecam(&[
        "record",
        &server.addr,
        "--frames",
        "40",
        "--segment-size",
        "100K",
        "-o",
        path_arg(&file),
    ]);
    assert!(out.status.success(), "{out:?}");
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segments.sort();
    assert!(segments.len() >= 2, "{segments:?}");
    for (i, segment) in segments.iter().enumerate() {
        assert_eq!(
            segment.file_name().unwrap().to_str().unwrap(),
            format!("seg-{:03}.avi", i + 1)
        );
        assert!(std::fs::metadata(segment).unwrap().len() < 200 * 1024);
    }
    let seqs: Vec<u64> = segments.iter().flat_map(|s| recorded_seqs(s)).collect();
    assert_eq!(seqs.len(), 40);
    assert_consecutive(&seqs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_goes_away_fails_the_recording_but_keeps_and_names_the_file() {
    let server = TestServer::start(CAMERA).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cut.avi");
    let recorder = Edgecam::spawn(&["record", &server.addr, "-o", path_arg(&file)]);
    wait_for_frames(&file, 5).await;
    server.shutdown().await;
    let out = recorder.finish();
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("error: "), "{out:?}");
    // No stream summary: only where the kept frames are.
    assert!(out.stdout.starts_with("saved "), "{out:?}");
    let saved = saved_frames(&out.stdout);
    assert!(out.stdout.contains(path_arg(&file)), "{out:?}");
    // Playable as it is, with every frame it said it saved.
    let seqs = recorded_seqs(&file);
    assert_eq!(seqs.len() as u64, saved);
    assert!(saved >= 5, "{saved}");
    assert_consecutive(&seqs);
}
