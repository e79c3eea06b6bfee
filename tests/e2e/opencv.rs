//! The OpenCV camera and recorder through the real binary (built with `--features opencv`;
//! `cargo xtask ci`'s `opencv` leg runs these): a video file served as a camera (its JPEGs
//! passed through, or decoded and encoded by the server with `--encoder opencv`), a file that
//! disappears and comes back, and the legacy client's XVID output.

use std::path::Path;
use std::time::{Duration, Instant};

use edgecam_camera_opencv::OpenCvRecorder;
use edgecam_core::frame::Frame;
use edgecam_core::jpeg::Stamp;
use edgecam_core::recorder::Recorder;
use edgecam_core::time::Timestamp;

use crate::support::{Edgecam, Raw, WAIT, assert_jpeg, edgecam};

/// A `frames`-frame 320x240 video at 30 fps, written with OpenCV (MJPG in AVI): frame `n` is
/// a flat picture whose brightness is `40 + 6 n`.
async fn video(path: &Path, frames: u32) {
    let mut writer = OpenCvRecorder::new(path, 30.0).with_fourcc(*b"MJPG");
    writer.start().await.unwrap();
    for n in 0..frames {
        let level = u8::try_from(40 + 6 * n).unwrap();
        let mut jpeg = Vec::new();
        jpeg_encoder::Encoder::new(&mut jpeg, 90)
            .encode(
                &[level; 320 * 240 * 3],
                320,
                240,
                jpeg_encoder::ColorType::Rgb,
            )
            .unwrap();
        let frame = Frame {
            jpeg: jpeg.into(),
            width: 320,
            height: 240,
            seq: u64::from(n),
            captured_at: Timestamp(u64::from(n) * 33_333),
        };
        writer.write_frame(&frame).await.unwrap();
    }
    writer.finish().await.unwrap();
}

/// `edgecam serve --camera SPEC [ARGS...]` on a free loopback port; its address.
fn serve(camera: &str, args: &[&str]) -> (Edgecam, String) {
    let mut all = vec!["serve", "--bind", "127.0.0.1:0", "--camera", camera];
    all.extend_from_slice(args);
    let serve = Edgecam::spawn(&all);
    let first = serve.stdout_line();
    let addr = first.rsplit_once(" on ").unwrap().1.to_owned();
    (serve, addr)
}

/// The mean brightness of a decoded frame.
fn brightness(jpeg: &[u8]) -> u8 {
    let pixels = jpeg_decoder::Decoder::new(jpeg).decode().unwrap();
    let sum: u64 = pixels.iter().map(|&p| u64::from(p)).sum();
    u8::try_from(sum / pixels.len() as u64).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opencv_a_video_file_is_served_as_a_camera_in_a_loop() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.avi");
    video(&clip, 15).await;
    let (server, addr) = serve(&format!("opencv:{}", clip.display()), &[]);

    let snap = dir.path().join("snap.jpg");
    let out = edgecam(&["snap", &addr, "-o", snap.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert_jpeg(&std::fs::read(&snap).unwrap(), 320, 240);

    // 45 frames of a 15-frame clip: it loops, at its own 30 fps. The clip is MJPEG, so its
    // JPEGs are passed through, only stamped by the server.
    let mut client = Raw::connect(&addr).await;
    client.send(b"3").await;
    let started = Instant::now();
    let mut levels = Vec::new();
    for _ in 0..45 {
        let frame = client.frame().await;
        assert_jpeg(&frame, 320, 240);
        assert!(
            Stamp::find(&frame).is_some(),
            "the server stamps every frame"
        );
        levels.push(brightness(&frame));
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed > Duration::from_millis(1000) && elapsed < WAIT,
        "45 frames at 30 fps took {elapsed:?}"
    );
    // The clip's darkest and brightest frames each came round more than once.
    let (darkest, brightest) = (levels.iter().min().unwrap(), levels.iter().max().unwrap());
    assert!(*darkest < 60 && *brightest > 110, "{levels:?}");
    let wraps = levels.windows(2).filter(|w| w[1] + 30 < w[0]).count();
    assert!(wraps >= 2, "the clip did not loop: {levels:?}");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opencv_a_file_that_disappears_gives_no_signal_then_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.avi");
    let away = dir.path().join("away.avi");
    video(&clip, 10).await;
    let (server, addr) = serve(&format!("opencv:{}", clip.display()), &[]);
    let mut client = Raw::connect(&addr).await;
    client.send(b"3").await;
    client.frame().await;
    std::fs::rename(&clip, &away).unwrap();
    let deadline = Instant::now() + WAIT;
    // NO SIGNAL pictures are dark blue-grey (24, 24, 32) around the text.
    let mut no_signal = 0;
    while no_signal < 2 {
        assert!(Instant::now() < deadline, "no NO SIGNAL pictures");
        let frame = client.frame().await;
        assert_jpeg(&frame, 320, 240);
        if brightness(&frame) < 40 {
            no_signal += 1;
        }
    }
    std::fs::rename(&away, &clip).unwrap();
    loop {
        assert!(
            Instant::now() < deadline,
            "the file's frames did not come back"
        );
        if brightness(&client.frame().await) >= 40 {
            break;
        }
    }
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opencv_decoded_frames_are_encoded_by_the_server_with_imencode() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.avi");
    video(&clip, 15).await;
    let spec = format!("opencv:{}#mjpeg=off&fps=60", clip.display());
    let (server, addr) = serve(&spec, &["--encoder", "opencv", "--quality", "90"]);
    let mut client = Raw::connect(&addr).await;
    client.send(b"3").await;
    let mut seqs = Vec::new();
    let mut levels = Vec::new();
    for _ in 0..20 {
        let frame = client.frame().await;
        assert_jpeg(&frame, 320, 240);
        seqs.push(Stamp::find(&frame).expect("stamped by the server").seq);
        levels.push(brightness(&frame));
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    // The clip's frames are 40 + 6 n bright, n from 0 to 14: decoded BGR, encoded again.
    assert!(
        levels.iter().all(|&l| (36..=130).contains(&l)),
        "{levels:?}"
    );
    assert!(levels.iter().max() > levels.iter().min(), "{levels:?}");
    drop(server);
}

#[test]
fn opencv_options_follow_a_hash() {
    let out = edgecam(&[
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--camera",
        "opencv:0?fps=15",
    ]);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        out.stderr
            .contains("options follow '#', not '?': opencv:0#fps=15"),
        "{}",
        out.stderr
    );
}

#[test]
fn opencv_a_camera_that_cannot_be_opened_is_a_clear_error() {
    let out = edgecam(&[
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--camera",
        "opencv:/dev/video99",
    ]);
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("/dev/video99"), "{}", out.stderr);
    assert!(out.stderr.contains("does not exist"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opencv_record_xvid_re_encodes_like_the_legacy_client() {
    let server = crate::support::TestServer::start("sim:320x240@30").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("legacy.avi");
    let out = edgecam(&[
        "record",
        &server.addr,
        "--frames",
        "12",
        "--xvid",
        "-o",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("saved 12 frames"), "{out:?}");
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(&bytes[..4], b"RIFF");
    assert!(
        bytes.windows(4).any(|w| w == b"XVID" || w == b"xvid"),
        "no XVID fourcc in the file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opencv_view_in_a_highgui_window_records_and_ctrl_c_finishes_the_file() {
    let server = crate::support::TestServer::start("sim:320x240@30").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("viewed.avi");
    let args = [
        "view",
        &server.addr,
        "--window",
        "opencv",
        "--record",
        file.to_str().unwrap(),
    ];
    let viewer = Edgecam::spawn_with(&args, |cmd| {
        cmd.current_dir(dir.path())
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .env("QT_QPA_PLATFORM", "offscreen");
    });
    crate::record::wait_for_frames(&file, 10).await;
    viewer.signal("INT");
    let out = viewer.finish();
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains(file.to_str().unwrap()), "{out:?}");
    let seqs = crate::record::recorded_seqs(&file);
    assert!(seqs.len() >= 10, "{seqs:?}");
}
