//! `OpenCvCamera` over video files written for the test: sizes, pace, looping, newest-frame
//! delivery, MJPEG pass-through, and what happens when the file goes away.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgecam_camera_opencv::{OpenCvCamera, OpenCvEncoder};
use edgecam_core::camera::{
    Camera, CameraContext, CameraError, CameraRegistry, Captured, Image, PixelFormat,
};
use edgecam_core::jpeg::{self, Stamp};
use edgecam_core::time::Clock;
use edgecam_encode::{Encoder, Passthrough};
use opencv::core::{Mat, Vec3b};
use opencv::imgcodecs::{IMREAD_COLOR, imdecode};
use opencv::prelude::*;

use crate::support::{
    FPS, FRAMES, HEIGHT, WIDTH, WallClock, index_of_rgb, middle_pixel, within, write_video,
};

/// A temporary folder holding `clip.avi`, an MJPEG video of the test frames.
fn mjpeg_clip() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.avi");
    write_video(&path, *b"MJPG").unwrap();
    (dir, path)
}

fn camera(spec: &str) -> (OpenCvCamera, Arc<WallClock>) {
    let clock = WallClock::new();
    let config = spec
        .parse()
        .unwrap_or_else(|e| panic!("{spec:?} should parse: {e}"));
    (OpenCvCamera::new(config, clock.clone()), clock)
}

fn spec(path: &Path, options: &str) -> String {
    format!("opencv:{}{options}", path.display())
}

async fn frame(camera: &mut OpenCvCamera) -> Captured {
    within(10, "next_frame", camera.next_frame())
        .await
        .unwrap_or_else(|e| panic!("next_frame failed: {e:?}"))
}

/// The middle pixel of a JPEG, as RGB.
fn middle_of_jpeg(data: &[u8]) -> [u8; 3] {
    let decoded = imdecode(&Mat::from_slice(data).unwrap(), IMREAD_COLOR).unwrap();
    let [b, g, r] = decoded.at_2d::<Vec3b>(HEIGHT / 2, WIDTH / 2).unwrap().0;
    [r, g, b]
}

/// Which test frame an image shows, from its middle pixel.
fn index_of_image(image: &Image) -> usize {
    let rgb = match image.format() {
        PixelFormat::Bgr24 => {
            let [b, g, r] = middle_pixel(image.data());
            [r, g, b]
        }
        PixelFormat::Jpeg => middle_of_jpeg(image.data()),
        other => panic!("an OpenCV camera delivers BGR24 or JPEG, not {other}"),
    };
    index_of_rgb(rgb, 3).unwrap_or_else(|| panic!("{rgb:?} is not a test frame"))
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text = format!("{text}: {e}");
        source = e.source();
    }
    text
}

#[tokio::test]
async fn a_file_plays_in_a_loop_at_its_own_pace_in_bgr() {
    let (_dir, path) = mjpeg_clip();
    let (mut camera, _) = camera(&spec(&path, "#mjpeg=off"));
    assert_eq!(camera.capabilities(), None);
    let caps = within(10, "open", camera.open()).await.unwrap();
    assert_eq!((caps.width, caps.height), (320, 240));
    assert_eq!(caps.fps, Some(FPS));
    assert_eq!(caps.format, PixelFormat::Bgr24);
    assert_eq!(camera.capabilities(), Some(caps));

    let mut frames = Vec::new();
    while frames
        .last()
        .is_none_or(|f: &Captured| f.seq <= 2 * FRAMES as u64 + 5)
    {
        frames.push(frame(&mut camera).await);
    }
    for pair in frames.windows(2) {
        assert!(pair[0].seq < pair[1].seq, "never the same frame twice");
        assert!(pair[0].captured_at < pair[1].captured_at);
    }
    for captured in &frames {
        let image = &captured.image;
        assert_eq!(image.format(), PixelFormat::Bgr24, "decoded frames are BGR");
        assert_eq!(image.size(), (320, 240));
        assert!(image.is_packed());
        assert_eq!(image.data().len(), 320 * 240 * 3);
        // Red is 128 in every frame and blue counts the frame, in OpenCV's BGR order, and
        // frame seq is the file's frame (seq - 1) mod 30, also after the loop went round.
        assert_eq!(
            index_of_image(&captured.image),
            (captured.seq as usize - 1) % FRAMES,
            "seq {}",
            captured.seq
        );
    }
    let (first, last) = (&frames[0], &frames[frames.len() - 1]);
    let per_frame = last.captured_at.since(first.captured_at) / (last.seq - first.seq) as u32;
    assert!(
        per_frame >= Duration::from_millis(14) && per_frame <= Duration::from_millis(60),
        "paced at the file's 60 fps, got one frame per {per_frame:?}"
    );
    within(5, "close", camera.close()).await.unwrap();
    assert_eq!(camera.capabilities(), None);
}

#[tokio::test]
async fn next_frame_returns_the_newest_frame_not_a_backlog() {
    let (_dir, path) = mjpeg_clip();
    let (mut camera, clock) = camera(&spec(&path, "#mjpeg=off"));
    within(10, "open", camera.open()).await.unwrap();
    let before = frame(&mut camera).await;
    // A slow reader: about 18 frames go by meanwhile.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked_at = clock.now();
    let after = frame(&mut camera).await;
    assert!(
        after.seq >= before.seq + 10,
        "frames {} then {}: the frames in between were skipped",
        before.seq,
        after.seq
    );
    assert!(
        asked_at.since(after.captured_at) < Duration::from_millis(150),
        "the frame handed out was captured {:?} before it was asked for",
        asked_at.since(after.captured_at)
    );
    assert_eq!(
        index_of_image(&after.image),
        (after.seq as usize - 1) % FRAMES
    );
    // And straight after, the next frame is a new one, not the one just returned.
    let next = frame(&mut camera).await;
    assert!(next.seq > after.seq);
}

#[tokio::test]
async fn after_a_long_idle_spell_the_next_frame_is_a_fresh_one() {
    let (_dir, path) = mjpeg_clip();
    let (mut camera, clock) = camera(&spec(&path, "#mjpeg=off"));
    within(10, "open", camera.open()).await.unwrap();
    let before = frame(&mut camera).await;
    // Longer than the camera's idle threshold (1 s): it stops converting frames and drops
    // the one it had, so the next frame is grabbed after the reader came back.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let asked_at = clock.now();
    let after = frame(&mut camera).await;
    assert!(
        after.captured_at >= asked_at,
        "captured {:?} before it was asked for",
        asked_at.since(after.captured_at)
    );
    assert!(
        after.seq >= before.seq + 60,
        "{} then {}",
        before.seq,
        after.seq
    );
    assert_eq!(
        index_of_image(&after.image),
        (after.seq as usize - 1) % FRAMES
    );
}

#[tokio::test]
async fn decoded_frames_are_encoded_and_stamped_by_the_servers_encoder_with_imencode() {
    let (_dir, path) = mjpeg_clip();
    let (mut camera, _) = camera(&spec(&path, "#mjpeg=off"));
    let caps = within(10, "open", camera.open()).await.unwrap();
    assert_eq!(caps.format, PixelFormat::Bgr24);
    let mut encoder = Encoder::new(Box::new(OpenCvEncoder::new()), 90, Passthrough::Stamped);
    for _ in 0..5 {
        let captured = frame(&mut camera).await;
        let (seq, captured_at) = (captured.seq, captured.captured_at);
        assert_eq!(
            Stamp::find(captured.image.data()),
            None,
            "the camera does not stamp"
        );
        let frame = encoder.encode(captured).unwrap();
        assert_eq!((frame.width, frame.height), (320, 240));
        assert!(jpeg::is_jpeg(&frame.jpeg));
        assert_eq!(jpeg::dimensions(&frame.jpeg), Some((320, 240)));
        assert_eq!(Stamp::find(&frame.jpeg), Some(Stamp { seq, captured_at }));
        let rgb = middle_of_jpeg(&frame.jpeg);
        assert_eq!(index_of_rgb(rgb, 3), Some((seq as usize - 1) % FRAMES));
    }
}

#[tokio::test]
async fn an_mjpeg_source_is_passed_through_untouched() {
    let (_dir, path) = mjpeg_clip();
    for options in ["", "#mjpeg=on"] {
        let (mut camera, _) = camera(&spec(&path, options));
        let caps = within(10, "open", camera.open()).await.unwrap();
        assert_eq!(caps.format, PixelFormat::Jpeg, "{options}");
        assert_eq!((caps.width, caps.height), (320, 240));
        for _ in 0..FRAMES + 5 {
            let captured = frame(&mut camera).await;
            let image = &captured.image;
            assert_eq!(
                image.format(),
                PixelFormat::Jpeg,
                "MJPEG comes through as JPEG"
            );
            assert_eq!(image.size(), (320, 240));
            let data = image.data();
            assert!(jpeg::is_jpeg(data));
            assert_eq!(jpeg::dimensions(data), Some((320, 240)));
            assert_eq!(
                Stamp::find(data),
                None,
                "passed through as it came: the server stamps it"
            );
            assert_eq!(
                index_of_image(&captured.image),
                (captured.seq as usize - 1) % FRAMES
            );
        }
    }
}

#[tokio::test]
async fn mjpeg_on_refuses_a_source_that_is_not_mjpeg() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.avi");
    write_video(&path, *b"XVID").unwrap();
    let (mut strict, _) = camera(&spec(&path, "#mjpeg=on"));
    let err = within(10, "open", strict.open()).await.unwrap_err();
    assert!(matches!(err, CameraError::Open { .. }), "{err:?}");
    let text = error_chain(&err);
    assert!(text.contains("not MJPEG"), "{text}");
    assert!(text.contains("use mjpeg=auto"), "{text}");
    // mjpeg=auto falls back to decoding the same file.
    let (mut camera, _) = camera(&spec(&path, ""));
    let caps = within(10, "open", camera.open()).await.unwrap();
    assert_eq!((caps.width, caps.height), (320, 240));
    let captured = frame(&mut camera).await;
    assert_eq!(
        index_of_image(&captured.image),
        (captured.seq as usize - 1) % FRAMES
    );
}

#[tokio::test]
async fn a_file_that_goes_away_disconnects_and_opens_again_once_back() {
    let (dir, path) = mjpeg_clip();
    let away = dir.path().join("elsewhere.avi");
    let (mut camera, _) = camera(&spec(&path, "#mjpeg=off"));
    within(10, "open", camera.open()).await.unwrap();
    let before = frame(&mut camera).await;
    std::fs::rename(&path, &away).unwrap();

    // The file plays on until its end, then cannot be opened again: the camera is gone.
    let err = within(10, "the disconnect", async {
        loop {
            match camera.next_frame().await {
                Ok(_) => {}
                Err(e) => break e,
            }
        }
    })
    .await;
    assert!(
        matches!(&err, CameraError::Disconnected { device } if device == &camera.name()),
        "{err:?}"
    );
    assert_eq!(camera.capabilities(), None, "closed by the disconnect");
    assert!(matches!(
        camera.next_frame().await,
        Err(CameraError::NotOpen { .. })
    ));

    // Reopening fails while it is away, naming the file and what is wrong with it.
    let err = within(10, "open", camera.open()).await.unwrap_err();
    let text = error_chain(&err);
    assert!(matches!(err, CameraError::Open { .. }), "{err:?}");
    assert!(
        text.contains(&format!("{} does not exist", path.display())),
        "{text}"
    );

    std::fs::rename(&away, &path).unwrap();
    within(10, "open", camera.open()).await.unwrap();
    let again = frame(&mut camera).await;
    assert!(again.seq > before.seq, "seq goes on across re-opens");
}

#[tokio::test]
async fn sources_that_do_not_open_say_what_to_check() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.mp4");
    std::fs::write(&junk, b"this is not a video").unwrap();
    let missing = dir.path().join("missing.mp4");
    let cases = [
        (
            "opencv:/dev/video-edgecam-test".to_owned(),
            "/dev/video-edgecam-test does not exist: is the camera plugged in?".to_owned(),
        ),
        (
            "opencv:63".to_owned(),
            "camera 63 is /dev/video63; /dev/video63 does not exist".to_owned(),
        ),
        (
            spec(&missing, ""),
            format!("{} does not exist", missing.display()),
        ),
        (
            spec(&junk, ""),
            format!("{} exists but OpenCV cannot play it", junk.display()),
        ),
    ];
    for (spec, expected) in cases {
        let (mut camera, _) = camera(&spec);
        let err = within(20, "open", camera.open()).await.unwrap_err();
        let CameraError::Open { device, .. } = &err else {
            panic!("{spec}: expected an Open error, got {err:?}");
        };
        assert_eq!(device, &spec);
        let text = error_chain(&err);
        assert!(text.contains(&expected), "{spec}: {text}");
        assert_eq!(camera.capabilities(), None);
        assert!(matches!(
            camera.next_frame().await,
            Err(CameraError::NotOpen { .. })
        ));
    }
}

#[tokio::test]
async fn close_and_drop_release_the_source_promptly() {
    let (_dir, path) = mjpeg_clip();
    let (mut camera, _) = camera(&spec(&path, ""));
    within(10, "open", camera.open()).await.unwrap();
    frame(&mut camera).await;
    // close waits for the capture thread to end, giving up after 3 s: finishing well before
    // means the thread really ended.
    let started = Instant::now();
    within(10, "close", camera.close()).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    within(5, "close", camera.close()).await.unwrap();
    assert!(matches!(
        camera.next_frame().await,
        Err(CameraError::NotOpen { .. })
    ));

    // Open twice in a row: the second open replaces the first capture thread.
    within(10, "open", camera.open()).await.unwrap();
    within(10, "open", camera.open()).await.unwrap();
    frame(&mut camera).await;
    let started = Instant::now();
    drop(camera);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_cancelled_next_frame_loses_nothing() {
    let (_dir, path) = mjpeg_clip();
    let (mut camera, _) = camera(&spec(&path, "#fps=5"));
    let caps = within(10, "open", camera.open()).await.unwrap();
    assert_eq!(caps.fps, Some(5.0), "fps= sets a file's pace");
    let first = frame(&mut camera).await;
    // Frames come every 200 ms: a 20 ms wait gives up before the next one.
    let cancelled = tokio::time::timeout(Duration::from_millis(20), camera.next_frame()).await;
    assert!(cancelled.is_err(), "no frame within 20 ms at 5 fps");
    let next = frame(&mut camera).await;
    assert_eq!(next.seq, first.seq + 1);
}

#[test]
fn the_registry_builds_cameras_named_by_their_canonical_spec() {
    let mut registry = CameraRegistry::new();
    registry.register(edgecam_camera_opencv::kind());
    let context = CameraContext {
        clock: WallClock::new(),
    };
    let camera = registry
        .create(
            "opencv:rtsp://u:pw@cam/live?channel=1&sub=0#mjpeg=off&size=640x480",
            &context,
        )
        .unwrap();
    assert_eq!(
        camera.name(),
        "opencv:rtsp://u:***@cam/live?channel=1&sub=0#size=640x480&mjpeg=off"
    );
    for (spec, says) in [
        ("opencv:0#fps=fast", "fps \"fast\" is not a number"),
        (
            "opencv:0?fps=15",
            "options follow '#', not '?': opencv:0#fps=15",
        ),
        ("opencv:0#encode=server", "unknown option \"encode\""),
    ] {
        match registry.create(spec, &context) {
            Err(CameraError::Spec { reason, .. }) => {
                assert!(reason.contains(says), "{spec}: {reason}");
            }
            other => panic!("{spec}: expected a Spec error, got {other:?}"),
        }
    }
    let help = registry.help();
    assert!(
        help.contains("opencv[:INDEX|DEVICE|FILE|URL][#size=WxH"),
        "{help}"
    );
    assert!(help.contains("--camera 'opencv:0'"), "{help}");
}
