//! With ffmpeg as the child: skipped (saying so) where ffmpeg is missing, unless `CI` is set,
//! where a missing ffmpeg fails.

use edgecam_core::camera::{Camera, PixelFormat};
use edgecam_core::jpeg;

use crate::support::{camera, next};

const FFMPEG: &str = "/usr/bin/ffmpeg";

/// Whether to run: ffmpeg is there; a panic in CI when it is not.
fn have_ffmpeg() -> bool {
    if std::path::Path::new(FFMPEG).exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{FFMPEG} is missing, and CI must run the ffmpeg tests: install ffmpeg"
    );
    println!("skipped: ffmpeg not installed");
    false
}

#[tokio::test]
async fn mjpeg_from_testsrc2() {
    if !have_ffmpeg() {
        return;
    }
    let mut camera = camera(
        "exec:ffmpeg -loglevel error -re -f lavfi -i testsrc2=size=640x480:rate=30 -f mjpeg -",
    );
    let caps = camera.open().await.unwrap();
    assert_eq!(
        (caps.width, caps.height, caps.format),
        (640, 480, PixelFormat::Jpeg)
    );
    let mut previous = next(&mut camera).await;
    for _ in 0..3 {
        let frame = next(&mut camera).await;
        assert!(frame.seq > previous.seq);
        assert!(jpeg::is_jpeg(frame.image.data()));
        assert_eq!(jpeg::dimensions(frame.image.data()), Some((640, 480)));
        assert_eq!(frame.image.size(), (640, 480));
        // testsrc2 moves: consecutive frames differ.
        assert_ne!(frame.image.data(), previous.image.data());
        previous = frame;
    }
    assert_eq!(camera.stats().skipped_bytes, 0);
    camera.close().await.unwrap();
}

#[tokio::test]
async fn nv12_1280x720_from_testsrc2() {
    if !have_ffmpeg() {
        return;
    }
    let mut camera = camera(
        "exec:ffmpeg -loglevel error -re -f lavfi -i testsrc2=size=1280x720:rate=30 -pix_fmt nv12 -f rawvideo -#format=nv12&size=1280x720",
    );
    let caps = camera.open().await.unwrap();
    assert_eq!(
        (caps.width, caps.height, caps.format),
        (1280, 720, PixelFormat::Nv12)
    );
    let a = next(&mut camera).await;
    let b = next(&mut camera).await;
    for frame in [&a, &b] {
        assert_eq!(frame.image.format(), PixelFormat::Nv12);
        assert_eq!(frame.image.size(), (1280, 720));
        assert_eq!(frame.image.data().len(), 1280 * 720 * 3 / 2);
    }
    assert!(b.seq > a.seq);
    assert_ne!(a.image.data(), b.image.data());
    camera.close().await.unwrap();
}

#[tokio::test]
async fn yuyv_from_testsrc2() {
    if !have_ffmpeg() {
        return;
    }
    let mut camera = camera(
        "exec:ffmpeg -loglevel error -re -f lavfi -i testsrc2=size=320x240:rate=30 -pix_fmt yuyv422 -f rawvideo -#format=yuyv&size=320x240&fps=30",
    );
    let caps = camera.open().await.unwrap();
    assert_eq!(caps.fps, Some(30.0));
    let frame = next(&mut camera).await;
    assert_eq!(frame.image.format(), PixelFormat::Yuyv);
    assert_eq!(frame.image.size(), (320, 240));
    assert_eq!(frame.image.data().len(), 320 * 240 * 2);
    camera.close().await.unwrap();
}
