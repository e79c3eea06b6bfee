//! The V4L2 camera through the whole server, over the simulated device (the test machines'
//! kernels have no V4L2): NV12 from an RV1106-like multi-planar ISP node encoded at its size,
//! camera MJPEG passed through with the Huffman tables put back, an unplug answered with NO
//! SIGNAL and a reopen once the device is back; and `edgecam cameras` on this machine.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use edgecam::clock::SystemClock;
use edgecam_camera_v4l2::{
    Pace, SimConfig, SimFormat, SimHandle, V4l2Camera, V4l2Config, V4l2Counters,
};
use edgecam_core::camera::PixelFormat;
use edgecam_core::jpeg;
use edgecam_core::spec::Spec;

use crate::support::*;

/// A server whose camera is `spec` over the simulated device `sim`, and the camera's
/// counters.
async fn serve(sim: &SimHandle, spec: &str) -> (TestServer, Arc<V4l2Counters>) {
    let v4l2 = V4l2Config::from_spec(&Spec::parse(spec).unwrap()).unwrap();
    let sim = sim.clone();
    let camera = V4l2Camera::with_device(
        spec.to_owned(),
        v4l2,
        Arc::new(SystemClock::default()),
        move || Ok(Box::new(sim.open()?)),
    );
    let counters = camera.counters();
    let server =
        TestServer::with_camera(Box::new(camera), config(), Arc::new(SystemClock::default())).await;
    (server, counters)
}

/// Every frame went to the encoder in the driver's own buffer, and each buffer came back in
/// time for the ring never to copy.
fn assert_no_copy(counters: &V4l2Counters, at_least: u64) {
    let lent = counters.lent.load(Ordering::Relaxed);
    let copied = counters.copied.load(Ordering::Relaxed);
    assert!(
        lent >= at_least && copied == 0,
        "{lent} lent, {copied} copied"
    );
}

fn paced(mut config: SimConfig) -> SimConfig {
    config.pace = Pace::Fps(30.0);
    config
}

fn decode(frame: &[u8]) -> Vec<u8> {
    jpeg_decoder::Decoder::new(frame).decode().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isp_nodes_nv12_is_served_as_jpeg_at_its_size() {
    let sim = SimHandle::new(paced(SimConfig::rkisp_mainpath()));
    let (server, counters) = serve(&sim, "v4l2:rkisp_mainpath#size=1000x600&skip=5").await;
    let mut client = server.streamer().await;
    let mut seqs = Vec::new();
    for _ in 0..5 {
        let frame = client.frame().await;
        assert_jpeg(&frame, 1000, 600);
        seqs.push(seq(&frame));
    }
    assert_increasing(&seqs);
    // The simulated frames' shade changes with each frame: the picture moves.
    let (a, b) = (client.frame().await, client.frame().await);
    assert_ne!(decode(&a), decode(&b));
    server.shutdown().await;
    assert_no_copy(&counters, 7);
    let stats = sim.stats();
    assert!(stats.violations.is_empty(), "{:?}", stats.violations);
    assert_eq!(stats.buffers, 0, "the server's stop freed the buffers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webcams_mjpeg_is_passed_through_with_its_huffman_tables_put_back() {
    let (w, h) = (64u16, 48u16);
    let original = textured_jpeg(w, h, 0);
    let bare = without_huffman_tables(&original);
    assert!(!jpeg::has_huffman_tables(&bare));
    // A webcam offering YUYV first and MJPEG second: MJPEG is preferred.
    let sim = SimHandle::new(paced(SimConfig::new(vec![
        SimFormat::raw(PixelFormat::Yuyv, &[(64, 48)]),
        SimFormat::mjpeg((64, 48), bare.clone()),
    ])));
    let (server, counters) = serve(&sim, "v4l2:/dev/video0").await;
    let mut client = server.streamer().await;
    for _ in 0..3 {
        let frame = client.frame().await;
        assert_jpeg(&frame, w, h);
        assert!(jpeg::has_huffman_tables(&frame));
        assert_eq!(decode(&frame), decode(&original), "the camera's picture");
        assert!(seq(&frame) > 0);
    }
    server.shutdown().await;
    assert_no_copy(&counters, 3);
    assert!(sim.stats().violations.is_empty());
}

/// Whether a decoded RGB picture is the simulated device's (one flat colour, but for a speck
/// where the frame number is) and not NO SIGNAL (text, some 4 % of a 320x240 picture, on a
/// dark background).
fn is_flat(pixels: &[u8]) -> bool {
    let reference = &pixels[pixels.len() - 3..];
    let off = pixels
        .chunks(3)
        .filter(|p| p.iter().zip(reference).any(|(a, b)| a.abs_diff(*b) > 24))
        .count();
    off < pixels.len() / 3 / 100
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unplugged_camera_gives_no_signal_then_streams_again_once_replugged() {
    let sim = SimHandle::new(paced(SimConfig::new(vec![SimFormat::raw(
        PixelFormat::Nv12,
        &[(320, 240)],
    )])));
    let (server, _) = serve(&sim, "v4l2:0").await;
    let mut client = server.streamer().await;
    assert!(is_flat(&decode(&client.frame().await)));
    sim.unplug();
    let deadline = Instant::now() + WAIT;
    // NO SIGNAL while it is gone...
    loop {
        assert!(Instant::now() < deadline, "no NO SIGNAL picture in time");
        let frame = client.frame().await;
        assert_jpeg(&frame, 320, 240);
        if !is_flat(&decode(&frame)) {
            break;
        }
    }
    let gone = server.stats();
    assert!(gone.no_signal >= 1, "{gone:?}");
    sim.replug();
    // ... and the camera's own pictures once it is back (reopened by the capture loop).
    let mut seqs = Vec::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "the camera did not come back in time"
        );
        let frame = client.frame().await;
        seqs.push(seq(&frame));
        if is_flat(&decode(&frame)) {
            break;
        }
    }
    assert_increasing(&seqs);
    assert!(sim.stats().opens >= 2, "{:?}", sim.stats());
    server.shutdown().await;
    assert!(
        sim.stats().violations.is_empty(),
        "{:?}",
        sim.stats().violations
    );
}

#[test]
fn cameras_lists_this_machines_v4l2_devices_or_says_there_are_none() {
    let out = edgecam(&["cameras"]);
    assert!(out.status.success(), "{out:?}");
    let has_nodes = std::fs::read_dir("/sys/class/video4linux").is_ok_and(|mut entries| {
        entries.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("video")))
    });
    if has_nodes {
        assert!(out.stdout.contains("/dev/video"), "{out:?}");
    } else {
        assert_eq!(
            out.stdout,
            "no V4L2 devices found (/sys/class/video4linux is missing or empty)\n"
        );
    }
}

#[test]
fn a_v4l2_camera_that_is_not_there_is_an_error_naming_it() {
    for (name, spec) in [
        ("v4l2_missing_node", "v4l2:/dev/video-edgecam-e2e-missing"),
        ("v4l2_unknown_name", "v4l2:edgecam-e2e-no-such-camera"),
        ("v4l2_bad_option", "v4l2:0#format=h264"),
        ("v4l2_not_a_video_device", "v4l2:/dev/null"),
    ] {
        let out = edgecam(&["serve", "--camera", spec]);
        assert!(!out.status.success(), "{out:?}");
        let error = out
            .stderr
            .lines()
            .filter(|line| line.starts_with("error:"))
            .collect::<Vec<_>>()
            .join("\n");
        // What follows "there are" depends on this machine's devices.
        let error = match error.split_once(" there are ") {
            Some((head, _)) => format!("{head} there are ..."),
            None => error,
        };
        insta::assert_snapshot!(name, error, &format!("edgecam serve --camera {spec}"));
    }
}
