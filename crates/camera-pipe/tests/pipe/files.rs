//! `pipe:PATH`: a FIFO, writer after writer, and a regular file read at its pace.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use edgecam_core::camera::Camera;

use crate::support::{camera, next, number, until_disconnected, within};

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success());
}

/// A writer process that opens `fifo` and writes frames `from..=to`, then exits.
fn writer(fifo: &Path, from: u32, to: u32) -> std::process::Child {
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "i={from}; while [ $i -le {to} ]; do printf %016d $i; i=$((i+1)); done > '{}'",
            fifo.display()
        ))
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn a_fifo_is_read_writer_after_writer() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("camera.fifo");
    mkfifo(&fifo);
    let mut camera = camera(&format!("pipe:{}#format=yuyv&size=4x2", fifo.display()));
    // Raw formats: open returns at once, with no writer yet.
    let caps = within(5, "open without a writer", camera.open())
        .await
        .unwrap();
    assert_eq!((caps.width, caps.height), (4, 2));
    let mut first = writer(&fifo, 1, 3);
    let frames = until_disconnected(&mut camera).await;
    assert_eq!(frames.last().map(number), Some(3));
    assert!(first.wait().unwrap().success());

    // Reopened, it waits for the next writer.
    within(5, "reopen", camera.open()).await.unwrap();
    let mut second = writer(&fifo, 10, 12);
    let more = until_disconnected(&mut camera).await;
    assert_eq!(more.last().map(number), Some(12));
    assert!(more[0].seq > frames.last().unwrap().seq);
    assert!(second.wait().unwrap().success());
    camera.close().await.unwrap();
}

#[tokio::test]
async fn close_does_not_wait_for_a_fifo_writer() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("camera.fifo");
    mkfifo(&fifo);
    // MJPEG: open waits for a writer's first frame; dropping that wait (the capture loop's
    // stop) and closing return at once.
    let mut camera = camera(&format!("pipe:{}", fifo.display()));
    let open = tokio::time::timeout(Duration::from_millis(200), camera.open()).await;
    assert!(open.is_err(), "open returned without a writer: {open:?}");
    within(2, "close", camera.close()).await.unwrap();
}

#[tokio::test]
async fn a_regular_file_is_read_at_its_pace_then_ends() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("frames.yuyv");
    let frames: String = (1..=5).map(|i| format!("{i:016}")).collect();
    std::fs::write(&file, frames).unwrap();
    let mut camera = camera(&format!(
        "pipe:{}#format=yuyv&size=4x2&fps=20",
        file.display()
    ));
    let started = Instant::now();
    let caps = camera.open().await.unwrap();
    assert_eq!(caps.fps, Some(20.0));
    let first = next(&mut camera).await;
    assert_eq!(number(&first), 1);
    let rest = until_disconnected(&mut camera).await;
    assert_eq!(rest.last().map(number), Some(5));
    // Five frames at 20 fps: four periods of 50 ms at the least, not a burst.
    assert!(
        started.elapsed() >= Duration::from_millis(190),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(camera.stats().frames, 5);
    // A file can be read again: reopening starts it over.
    camera.open().await.unwrap();
    assert_eq!(number(&next(&mut camera).await), 1);
    camera.close().await.unwrap();
}

#[tokio::test]
async fn a_missing_path_is_an_open_error_naming_it() {
    let mut camera = camera("pipe:/nonexistent/edgecam.fifo#format=yuyv&size=4x2");
    let err = camera.open().await.unwrap_err();
    let text = edgecam_core::error_chain(&err);
    assert!(text.contains("/nonexistent/edgecam.fifo"), "{text}");
}
