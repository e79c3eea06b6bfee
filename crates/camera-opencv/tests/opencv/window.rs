//! `HighGuiWindow`. Qt reads its platform from the environment when HighGUI first starts it,
//! so each case runs this test binary again as a child process with the environment it needs
//! (setting variables in a running multi-threaded test process is not sound).

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use edgecam_camera_opencv::{HighGuiWindow, OpenCvError};
use edgecam_core::camera::{Image, PixelFormat};
use opencv::core::{CV_8UC3, Mat, Scalar, Vector};
use opencv::imgcodecs::imencode;
use opencv::prelude::*;

/// Set in the children; without it (say, `--run-ignored all`) the child tests do nothing, since
/// their environment is not the one they need.
const CHILD: &str = "EDGECAM_OPENCV_TEST_CHILD";

fn in_child() -> bool {
    std::env::var_os(CHILD).is_some()
}

/// Runs the ignored test `name` of this binary in a child with `env` set and `unset` removed,
/// and checks that it passed, within 60 s.
fn run_child(name: &str, env: &[(&str, &str)], unset: &[&str]) {
    let exe = std::env::current_exe().unwrap();
    let mut command = Command::new(exe);
    command
        .args([
            name,
            "--exact",
            "--ignored",
            "--test-threads=1",
            "--nocapture",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env(CHILD, "1");
    for (key, value) in env {
        command.env(key, value);
    }
    for key in unset {
        command.env_remove(key);
    }
    let mut child = command.spawn().unwrap();
    // Read the child's output as it comes, so that a full pipe never blocks it.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    assert!(
        status.success() && stdout.contains("1 passed"),
        "{name} failed ({status}):\n{stdout}\n{stderr}"
    );
}

#[test]
fn a_window_works_on_qt_offscreen_platform() {
    run_child(
        "window::child_offscreen_window",
        &[("QT_QPA_PLATFORM", "offscreen")],
        &[],
    );
}

#[test]
fn no_display_is_an_error_not_an_abort() {
    run_child(
        "window::child_no_display",
        &[],
        &["DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"],
    );
}

fn red_jpeg(width: i32, height: i32) -> Vec<u8> {
    let image =
        Mat::new_rows_cols_with_default(height, width, CV_8UC3, Scalar::new(0.0, 0.0, 255.0, 0.0))
            .unwrap();
    let mut jpeg = Vector::<u8>::new();
    assert!(imencode(".jpg", &image, &mut jpeg, &Vector::new()).unwrap());
    jpeg.to_vec()
}

#[test]
#[ignore = "run by a_window_works_on_qt_offscreen_platform with QT_QPA_PLATFORM=offscreen"]
fn child_offscreen_window() {
    if !in_child() {
        return;
    }
    let mut window = HighGuiWindow::open("edgecam test").unwrap();
    assert_eq!(window.title(), "edgecam test");
    assert!(!window.is_closed());
    window.show_jpeg(&red_jpeg(64, 48)).unwrap();
    assert_eq!(window.poll_key(Duration::from_millis(10)).unwrap(), None);
    window.show_rgb(4, 2, &[0, 255, 0].repeat(8)).unwrap();
    for format in [PixelFormat::Rgb24, PixelFormat::Bgr24, PixelFormat::Nv12] {
        let image = Image::packed(format, 2, 2, vec![9; 12]).unwrap();
        window.show(&image).unwrap();
    }
    let strided = Image::with_strides(PixelFormat::Bgr24, 2, 2, [8, 0, 0], vec![9; 16]).unwrap();
    window.show(&strided).unwrap();
    window
        .show(&Image::jpeg(64, 48, red_jpeg(64, 48)).unwrap())
        .unwrap();
    assert_eq!(window.poll_key(Duration::ZERO).unwrap(), None);
    assert!(matches!(
        window.show_jpeg(b"not a jpeg"),
        Err(OpenCvError::NotJpeg { .. })
    ));
    assert!(matches!(
        window.show_rgb(4, 2, &[0; 5]),
        Err(OpenCvError::BadFrame(_))
    ));
    assert!(!window.is_closed(), "bad frames leave the window open");
    window.close();

    // A window closed behind its back (as by its close button) is seen as closed.
    let mut other = HighGuiWindow::open("edgecam test 2").unwrap();
    other.show_jpeg(&red_jpeg(32, 32)).unwrap();
    opencv::highgui::destroy_window("edgecam test 2").unwrap();
    let _ = opencv::highgui::wait_key(1);
    assert!(other.is_closed());
    assert!(matches!(
        other.show_jpeg(&red_jpeg(32, 32)),
        Err(OpenCvError::WindowClosed(title)) if title == "edgecam test 2"
    ));
    assert!(matches!(
        other.poll_key(Duration::from_millis(1)),
        Err(OpenCvError::WindowClosed(_))
    ));
}

#[test]
#[ignore = "run by no_display_is_an_error_not_an_abort without DISPLAY"]
fn child_no_display() {
    if !in_child() {
        return;
    }
    let err = HighGuiWindow::open("edgecam test").unwrap_err();
    assert!(matches!(err, OpenCvError::NoDisplay(_)), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("no display to open a window on: neither DISPLAY nor WAYLAND_DISPLAY"),
        "{err}"
    );
}
