//! `OpenCvRecorder`: JPEG frames in, an XVID AVI out, read back with OpenCV.

use std::path::Path;

use bytes::Bytes;
use edgecam_camera_opencv::{LEGACY_FPS, OpenCvRecorder};
use edgecam_core::frame::Frame;
use edgecam_core::recorder::{Recorder, RecorderError};
use edgecam_core::time::Timestamp;
use opencv::core::{CV_8UC3, Mat, Scalar, Vec3b, Vector};
use opencv::imgcodecs::imencode;
use opencv::prelude::*;
use opencv::videoio::{CAP_PROP_FOURCC, CAP_PROP_FPS, CAP_PROP_FRAME_COUNT, VideoCapture};

use crate::support::{FRAMES, HEIGHT, WIDTH, colour, index_of_rgb, within};

/// Test frame `i` as a JPEG of `width x height`, as a server would send it.
fn jpeg_frame(i: usize, width: i32, height: i32) -> Frame {
    let [b, g, r] = colour(i).map(f64::from);
    let image =
        Mat::new_rows_cols_with_default(height, width, CV_8UC3, Scalar::new(b, g, r, 0.0)).unwrap();
    let mut jpeg = Vector::<u8>::new();
    assert!(imencode(".jpg", &image, &mut jpeg, &Vector::new()).unwrap());
    Frame {
        jpeg: Bytes::from(jpeg.to_vec()),
        width: u32::try_from(width).unwrap(),
        height: u32::try_from(height).unwrap(),
        seq: i as u64 + 1,
        captured_at: Timestamp(1_700_000_000_000_000 + i as u64),
    }
}

/// Every frame of the video at `path`, as OpenCV reads it back, with its FOURCC and rate.
fn read_back(path: &Path) -> (Vec<Mat>, String, f64, f64) {
    let mut capture = VideoCapture::from_file(path, opencv::videoio::CAP_ANY).unwrap();
    assert!(
        capture.is_opened().unwrap(),
        "{} does not open",
        path.display()
    );
    let code = capture.get(CAP_PROP_FOURCC).unwrap() as u32;
    let fourcc = String::from_utf8_lossy(&code.to_le_bytes()).into_owned();
    let fps = capture.get(CAP_PROP_FPS).unwrap();
    let count = capture.get(CAP_PROP_FRAME_COUNT).unwrap();
    let mut frames = Vec::new();
    let mut frame = Mat::default();
    while capture.read(&mut frame).unwrap() && !frame.empty() {
        frames.push(frame.clone());
        assert!(frames.len() < 1000, "runaway read");
    }
    (frames, fourcc, fps, count)
}

fn middle_index(frame: &Mat) -> Option<usize> {
    let [b, g, r] = frame
        .at_2d::<Vec3b>(frame.rows() / 2, frame.cols() / 2)
        .unwrap()
        .0;
    // XVID at its default bit rate is off by up to 4 levels here.
    index_of_rgb([r, g, b], 6)
}

#[tokio::test]
async fn frames_are_recorded_as_xvid_avi_and_read_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("video_stream.avi");
    let mut recorder = OpenCvRecorder::new(&path, LEGACY_FPS);
    // If this OpenCV had no XVID encoder, `start` would fail here, loudly.
    within(20, "start", recorder.start())
        .await
        .unwrap_or_else(|e| panic!("XVID recording must work with Debian's OpenCV: {e:?}"));
    let count = 12;
    for i in 0..count {
        // Frame 5 arrives at half size: it is scaled to the recording's size.
        let (width, height) = if i == 5 {
            (WIDTH / 2, HEIGHT / 2)
        } else {
            (WIDTH, HEIGHT)
        };
        within(
            20,
            "write_frame",
            recorder.write_frame(&jpeg_frame(i, width, height)),
        )
        .await
        .unwrap();
    }
    let summary = within(20, "finish", recorder.finish()).await.unwrap();
    assert_eq!(summary.path, path);
    assert_eq!(summary.frames, count as u64);
    assert_eq!(summary.bytes, std::fs::metadata(&path).unwrap().len());
    assert!(summary.bytes > 0);

    let (frames, fourcc, fps, frame_count) = read_back(&path);
    assert_eq!(fourcc, "XVID");
    assert_eq!(fps, LEGACY_FPS);
    assert_eq!(frame_count, count as f64);
    assert_eq!(frames.len(), count);
    for (i, frame) in frames.iter().enumerate() {
        assert_eq!((frame.cols(), frame.rows()), (WIDTH, HEIGHT), "frame {i}");
        assert_eq!(middle_index(frame), Some(i % FRAMES), "frame {i} in order");
    }
    assert!(matches!(
        recorder.write_frame(&jpeg_frame(0, WIDTH, HEIGHT)).await,
        Err(RecorderError::NotStarted)
    ));
}

#[tokio::test]
async fn another_codec_can_be_chosen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mjpeg.avi");
    let mut recorder = OpenCvRecorder::new(&path, 10.0).with_fourcc(*b"MJPG");
    within(20, "start", recorder.start()).await.unwrap();
    for i in 0..3 {
        within(
            20,
            "write_frame",
            recorder.write_frame(&jpeg_frame(i, WIDTH, HEIGHT)),
        )
        .await
        .unwrap();
    }
    assert_eq!(
        within(20, "finish", recorder.finish())
            .await
            .unwrap()
            .frames,
        3
    );
    let (frames, fourcc, fps, _) = read_back(&path);
    assert_eq!((frames.len(), fourcc.as_str(), fps), (3, "MJPG", 10.0));
}

#[tokio::test]
async fn bad_frames_are_refused_and_the_recording_stays_usable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec.avi");
    let mut recorder = OpenCvRecorder::new(&path, LEGACY_FPS);
    assert!(matches!(
        recorder.write_frame(&jpeg_frame(0, WIDTH, HEIGHT)).await,
        Err(RecorderError::NotStarted)
    ));
    assert!(matches!(
        recorder.finish().await,
        Err(RecorderError::NotStarted)
    ));
    within(20, "start", recorder.start()).await.unwrap();
    within(
        20,
        "write_frame",
        recorder.write_frame(&jpeg_frame(0, WIDTH, HEIGHT)),
    )
    .await
    .unwrap();
    let mut text = jpeg_frame(1, WIDTH, HEIGHT);
    text.jpeg = Bytes::from_static(b"Unknown command");
    assert!(matches!(
        recorder.write_frame(&text).await,
        Err(RecorderError::NotJpeg { seq: 2 })
    ));
    let mut broken = jpeg_frame(2, WIDTH, HEIGHT);
    broken.jpeg = Bytes::from_static(b"\xFF\xD8 not really a JPEG \xFF\xD9");
    let err = within(20, "write_frame", recorder.write_frame(&broken))
        .await
        .unwrap_err();
    assert!(matches!(err, RecorderError::Backend(_)), "{err:?}");
    within(
        20,
        "write_frame",
        recorder.write_frame(&jpeg_frame(3, WIDTH, HEIGHT)),
    )
    .await
    .unwrap();
    let summary = within(20, "finish", recorder.finish()).await.unwrap();
    assert_eq!(summary.frames, 2);
    let (frames, _, _, _) = read_back(&path);
    assert_eq!(frames.len(), 2);
    assert_eq!(middle_index(&frames[1]), Some(3));
}

#[tokio::test]
async fn an_existing_file_or_a_missing_folder_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let existing = dir.path().join("old.avi");
    std::fs::write(&existing, b"an earlier recording").unwrap();
    let err = OpenCvRecorder::new(&existing, LEGACY_FPS)
        .start()
        .await
        .unwrap_err();
    let RecorderError::Io { path, source } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(path, &existing);
    assert_eq!(source.kind(), std::io::ErrorKind::AlreadyExists);
    assert_eq!(
        std::fs::read(&existing).unwrap(),
        b"an earlier recording",
        "untouched"
    );

    let nowhere = dir.path().join("no").join("such").join("rec.avi");
    let err = OpenCvRecorder::new(&nowhere, LEGACY_FPS)
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RecorderError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
        "{err:?}"
    );

    let err = OpenCvRecorder::new(dir.path().join("zero.avi"), 0.0)
        .start()
        .await
        .unwrap_err();
    let RecorderError::Backend(source) = &err else {
        panic!("{err:?}");
    };
    assert!(
        source.to_string().contains("frame rate above 0"),
        "{source}"
    );
}

#[tokio::test]
async fn a_codec_opencv_cannot_write_is_a_clear_error_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec.avi");
    let mut recorder = OpenCvRecorder::new(&path, LEGACY_FPS).with_fourcc(*b"ZZZZ");
    let err = within(20, "start", recorder.start()).await.unwrap_err();
    let RecorderError::Backend(source) = &err else {
        panic!("{err:?}");
    };
    let text = source.to_string();
    assert!(
        text.starts_with(&format!(
            "OpenCV could not open a ZZZZ video writer for {}",
            path.display()
        )),
        "{text}"
    );
    assert!(text.contains("encoder may be missing"), "{text}");
    assert!(!path.exists(), "the probe leaves no file behind");
}
