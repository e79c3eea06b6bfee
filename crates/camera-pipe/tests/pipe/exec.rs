//! `exec:` with small shell children whose output we know.

use std::sync::Arc;
use std::time::Duration;

use edgecam_camera_pipe::{exec_kind, pipe_kind};
use edgecam_core::camera::{Camera, CameraContext, CameraRegistry, PixelFormat};
use edgecam_core::jpeg;
use edgecam_core::time::{ManualClock, Timestamp};

use crate::support::{camera, eventually, jpeg, next, number, until_disconnected};

#[tokio::test]
async fn raw_nv12_and_yuyv_frames_have_their_size_and_format() {
    // NV12 8x4 is 32 + 16 = 48 bytes; YUYV 4x2 is 16: each frame is its number in digits.
    for (format, size, len) in [
        (PixelFormat::Nv12, "8x4", 48),
        (PixelFormat::Yuyv, "4x2", 16),
    ] {
        let spec = format!(
            "exec:sh -c 'i=0; while [ $i -lt 1000000 ]; do printf %0{len}d $i; i=$((i+1)); done'#format={format}&size={size}"
        );
        let mut camera = camera(&spec);
        let caps = camera.open().await.unwrap();
        assert_eq!(
            (caps.format, caps.width, caps.height),
            (format, size_of(size).0, size_of(size).1)
        );
        let mut last = None;
        for _ in 0..5 {
            let frame = next(&mut camera).await;
            assert_eq!(frame.image.format(), format);
            assert_eq!(frame.image.size(), size_of(size));
            assert_eq!(frame.image.data().len(), len);
            // Whole frames, in order: the digits are never cut across frames.
            let n = number(&frame);
            assert_eq!(n, frame.seq, "{spec}");
            assert!(last.is_none_or(|l| n > l));
            last = Some(n);
        }
        camera.close().await.unwrap();
    }
}

fn size_of(text: &str) -> (u32, u32) {
    edgecam_core::spec::parse_size(text).unwrap()
}

#[tokio::test]
async fn a_fast_writer_gives_the_newest_frame_without_a_backlog() {
    let mut camera = camera(
        "exec:sh -c 'i=0; while :; do printf %016d $i; i=$((i+1)); done'#format=yuyv&size=4x2",
    );
    camera.open().await.unwrap();
    let first = next(&mut camera).await;
    // The reader keeps draining while nobody asks for frames...
    let seen = first.seq;
    eventually("the reader to complete 50 more frames", || {
        camera.stats().frames > seen + 50
    })
    .await;
    // ...and the next frame is the newest, not the one after `first`: a gap in seq.
    let later = next(&mut camera).await;
    assert!(
        later.seq > first.seq + 50,
        "{} then {}",
        first.seq,
        later.seq
    );
    assert_eq!(number(&later), later.seq);
    let after = next(&mut camera).await;
    assert!(after.seq > later.seq);
    camera.close().await.unwrap();
}

/// The capture loop reopens a lost camera on its own thread, which then blocks for every encode.
/// The source is read on the runtime the camera was made on, so the pipe is drained meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_camera_opened_on_a_busy_thread_is_read_on_the_runtime_it_was_made_on() {
    let mut camera = camera(
        "exec:sh -c 'i=0; while :; do printf %016d $i; i=$((i+1)); done'#format=yuyv&size=4x2",
    );
    let (before, during) = tokio::task::spawn_blocking(move || {
        let capture = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        capture.block_on(async {
            camera.open().await.unwrap();
            let before = camera.stats().frames;
            // An encode: this thread's runtime polls nothing for half a second.
            std::thread::sleep(Duration::from_millis(500));
            let during = camera.stats().frames;
            camera.close().await.unwrap();
            (before, during)
        })
    })
    .await
    .unwrap();
    assert!(
        during > before + 50,
        "the reader completed {} frames while the opening thread was busy",
        during - before
    );
}

#[tokio::test]
async fn next_frame_is_cancel_safe() {
    let mut camera = camera(
        "exec:sh -c 'i=0; while :; do printf %016d $i; i=$((i+1)); sleep 0.05; done'#format=yuyv&size=4x2",
    );
    camera.open().await.unwrap();
    let first = next(&mut camera).await;
    // Cancel many waits part way; no frame is lost to them and nothing breaks.
    for _ in 0..20 {
        let _ =
            tokio::time::timeout(std::time::Duration::from_millis(3), camera.next_frame()).await;
    }
    let frame = next(&mut camera).await;
    assert!(frame.seq > first.seq);
    camera.close().await.unwrap();
}

#[tokio::test]
async fn garbage_between_jpegs_is_counted_and_frames_still_come() {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small.jpg");
    let big = dir.path().join("big.jpg");
    std::fs::write(&small, jpeg(32, 16, 1)).unwrap();
    let big_jpeg = jpeg(64, 64, 2);
    std::fs::write(&big, &big_jpeg).unwrap();
    let max = big_jpeg.len() - 1;
    // Each round: garbage, a good JPEG, a JPEG over the limit, then a good one cut short.
    let script = format!(
        "for i in 1 2 3 4 5; do printf 'garbage!'; cat {small}; cat {big}; done; head -c 100 {small}",
        small = small.display(),
        big = big.display()
    );
    let mut camera = camera(&format!("exec:sh -c \"{script}\"#max_frame={max}"));
    let caps = camera.open().await.unwrap();
    assert_eq!(
        (caps.width, caps.height, caps.format),
        (32, 16, PixelFormat::Jpeg)
    );
    let frames = until_disconnected(&mut camera).await;
    assert!(!frames.is_empty());
    for frame in &frames {
        assert_eq!(jpeg::dimensions(frame.image.data()), Some((32, 16)));
        assert_eq!(frame.image.size(), (32, 16));
    }
    let stats = camera.stats();
    assert_eq!(stats.frames, 5, "{stats:?}");
    assert!(stats.skipped_bytes >= 5 * 8, "{stats:?}");
    assert_eq!(stats.oversized, 5, "{stats:?}");
    assert_eq!(stats.partial, 1, "{stats:?}");
}

#[tokio::test]
async fn the_kinds_build_cameras_from_specs() {
    let mut registry = CameraRegistry::new();
    registry.register(exec_kind()).register(pipe_kind());
    let context = CameraContext {
        clock: Arc::new(ManualClock::new(Timestamp(0))),
    };
    let mut camera = registry
        .create(
            "exec:sh -c 'while :; do printf 0123456789abcdef; done'#format=yuyv&size=4x2&fps=25",
            &context,
        )
        .unwrap();
    let caps = camera.open().await.unwrap();
    assert_eq!(caps.fps, Some(25.0));
    let frame = crate::support::within(10, "a frame", camera.next_frame())
        .await
        .unwrap();
    assert_eq!(&frame.image.data()[..], b"0123456789abcdef");
    camera.close().await.unwrap();
    assert!(camera.capabilities().is_none());
    let help = registry.help();
    assert!(help.contains("exec:ffmpeg -loglevel error"), "{help}");
    let err = registry.create("pipe:x#format=nv12", &context).unwrap_err();
    assert!(err.to_string().contains("needs the frame size"), "{err}");
}
