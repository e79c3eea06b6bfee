//! `pipe:-`: the test binary runs itself as the helper, with frames piped into its standard
//! input.

use std::io::{BufRead, Write};
use std::process::{Command, Stdio};

use edgecam_core::camera::{Camera, CameraError};

use crate::support::{camera, number, within};

const HELPER: &str = "EDGECAM_PIPE_STDIN_HELPER";

/// Not a test of its own: does its work only when run as the helper (see below).
#[tokio::test]
async fn stdin_helper() {
    if std::env::var_os(HELPER).is_none() {
        return;
    }
    let mut camera = camera("pipe:-#format=yuyv&size=4x2&timeout=30");
    camera.open().await.unwrap();
    loop {
        match within(30, "stdin frames", camera.next_frame()).await {
            Ok(frame) => println!("HELPER frame {} seq {}", number(&frame), frame.seq),
            Err(CameraError::Disconnected { .. }) => break,
            Err(e) => panic!("{e}"),
        }
    }
    println!("HELPER disconnected");
    let err = camera.open().await.unwrap_err();
    println!("HELPER reopen {}", edgecam_core::error_chain(&err));
}

#[test]
fn stdin_is_read_once() {
    let mut helper = Command::new(std::env::current_exe().unwrap())
        .args([
            "stdin::stdin_helper",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = helper.stdin.take().unwrap();
    for i in 1..=3 {
        write!(input, "{i:016}").unwrap();
    }
    drop(input);
    let stdout = std::io::BufReader::new(helper.stdout.take().unwrap());
    let lines: Vec<String> = stdout
        .lines()
        .map_while(Result::ok)
        // libtest's "test ... " may stand before a line on the same row.
        .filter_map(|l| l.split_once("HELPER ").map(|(_, rest)| rest.to_owned()))
        .collect();
    assert!(helper.wait().unwrap().success(), "{lines:?}");
    assert!(lines.iter().any(|l| l.starts_with("frame 3 ")), "{lines:?}");
    assert!(lines.iter().any(|l| l == "disconnected"), "{lines:?}");
    let reopen = lines.iter().find(|l| l.starts_with("reopen ")).unwrap();
    assert!(reopen.contains("standard input has ended"), "{reopen}");
}
