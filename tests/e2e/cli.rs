//! The `edgecam` binary as a user meets it: help texts, error messages, and serve / snap /
//! stream / SIGTERM end to end.

use crate::support::{Edgecam, Finished, assert_jpeg, edgecam};

const CAMERA: &str = "sim:160x120@30";

/// What a user sees of a failed command: the exit code and stderr.
fn failure(out: &Finished) -> String {
    assert!(!out.status.success(), "the command succeeded: {out:?}");
    assert_eq!(out.stdout, "", "a failed command printed to stdout");
    let code = out
        .status
        .code()
        .map_or("none (killed)".to_owned(), |c| c.to_string());
    format!("exit code: {code}\n{}", out.stderr)
}

#[test]
fn help_texts() {
    for command in [
        "", "serve", "snap", "stream", "record", "repair", "view", "bench", "cameras",
    ] {
        let args: Vec<&str> = [command, "--help"]
            .into_iter()
            .filter(|a| !a.is_empty())
            .collect();
        let out = edgecam(&args);
        assert!(out.status.success(), "{out:?}");
        let name = format!(
            "help_{}",
            if command.is_empty() {
                "edgecam"
            } else {
                command
            }
        );
        insta::assert_snapshot!(name, out.stdout, &format!("edgecam {}", args.join(" ")));
    }
}

#[test]
fn error_messages() {
    // Run in a folder of their own, which holds a file that is not an AVI, without a display.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("not.avi"), b"RIFF\x04\x00\x00\x00WAVE").unwrap();
    let cases: [(&str, &[&str]); 13] = [
        ("unknown_camera", &["serve", "--camera", "foo"]),
        ("bad_sim_spec", &["serve", "--camera", "sim:0x480"]),
        ("opencv_without_opencv", &["serve", "--camera", "opencv:0"]),
        ("connection_refused", &["snap", "127.0.0.1:1"]),
        ("stream_without_length", &["stream", "127.0.0.1:1"]),
        ("quality_zero", &["serve", "--quality", "0"]),
        (
            "max_frame_size_zero",
            &["snap", "127.0.0.1:1", "--max-frame-size", "0"],
        ),
        (
            "max_frame_size_junk",
            &["snap", "127.0.0.1:1", "--max-frame-size", "12Q"],
        ),
        (
            "record_output_and_dir",
            &["record", "127.0.0.1:1", "-o", "a.avi", "--dir", "frames"],
        ),
        (
            "record_segment_size_junk",
            &["record", "127.0.0.1:1", "--segment-size", "lots"],
        ),
        (
            "repair_missing_file",
            &["repair", "/nonexistent/edgecam.avi"],
        ),
        ("repair_not_avi", &["repair", "not.avi"]),
        ("view_without_display", &["view", "127.0.0.1:1"]),
    ];
    for (name, args) in cases {
        let out = Edgecam::spawn_with(args, |cmd| {
            cmd.current_dir(dir.path())
                .env_remove("DISPLAY")
                .env_remove("WAYLAND_DISPLAY");
        })
        .finish();
        insta::assert_snapshot!(
            format!("error_{name}"),
            failure(&out),
            &format!("edgecam {}", args.join(" "))
        );
    }
}

#[test]
fn serve_snap_stream_then_sigterm() {
    let (serve, first) = serve(CAMERA);
    let (banner, addr) = first.rsplit_once(" on ").unwrap();
    assert_eq!(banner, "edgecam serving sim:160x120@30 (160x120 rgb24)");
    let port = addr
        .strip_prefix("127.0.0.1:")
        .expect("not a loopback address");
    assert!(port.parse::<u16>().is_ok_and(|p| p != 0), "{first}");
    let banner: Vec<String> = std::iter::once(first.clone())
        .chain((0..3).map(|_| serve.stdout_line()))
        .map(|line| line.replace(addr, "127.0.0.1:PORT"))
        .collect();
    insta::assert_snapshot!("serve_banner", banner.join("\n"));

    let dir = tempfile::tempdir().unwrap();
    let jpeg = dir.path().join("one.jpg");
    let out = edgecam(&["snap", addr, "-o", jpeg.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("(160x120, "), "{}", out.stdout);
    assert_jpeg(&std::fs::read(&jpeg).unwrap(), 160, 120);

    let out = edgecam(&["stream", addr, "--frames", "10"]);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.starts_with("10 frames in "), "{}", out.stdout);

    serve.signal("TERM");
    let out = serve.finish();
    assert!(
        out.status.success(),
        "serve did not exit cleanly on SIGTERM: {out:?}"
    );
    assert!(out.stderr.contains("stopped"), "{}", out.stderr);
}

/// Starts `edgecam serve` on a free loopback port; returns it and the first line it printed.
fn serve(camera: &str) -> (Edgecam, String) {
    let serve = Edgecam::spawn(&["serve", "--bind", "127.0.0.1:0", "--camera", camera]);
    let first = serve.stdout_line();
    (serve, first)
}

/// `serve` writes to every client from one worker thread unless `--threads` asks for more
/// (Linux: the threads are counted in /proc by the name tokio gives them).
#[test]
#[cfg(target_os = "linux")]
fn serve_runs_as_many_workers_as_threads_asks_for() {
    let workers = |serve: &Edgecam| {
        std::fs::read_dir(format!("/proc/{}/task", serve.pid()))
            .unwrap()
            .filter(|task| {
                let comm = task.as_ref().unwrap().path().join("comm");
                std::fs::read_to_string(comm).is_ok_and(|name| name.trim() == "tokio-rt-worker")
            })
            .count()
    };
    for (extra, expected) in [(&[][..], 1), (&["--threads", "3"][..], 3)] {
        let args = [
            &["serve", "--bind", "127.0.0.1:0", "--camera", CAMERA][..],
            extra,
        ]
        .concat();
        let serve = Edgecam::spawn(&args);
        serve.stdout_line();
        assert_eq!(workers(&serve), expected, "serve {extra:?}");
        serve.signal("TERM");
        assert!(serve.finish().status.success());
    }
    let stderr = failure(&edgecam(&["serve", "--threads", "0"]));
    assert!(stderr.contains("--threads"), "{stderr}");
}

#[test]
fn an_address_without_port_is_named_as_such() {
    let stderr = failure(&edgecam(&["snap", "127.0.0.1"]));
    assert!(
        stderr.contains("no port") || stderr.contains(":6810"),
        "{stderr}"
    );
}

#[test]
fn logs_into_a_pipe_carry_no_colour_codes() {
    let (serve, _) = serve(CAMERA);
    serve.signal("TERM");
    let out = serve.finish();
    assert!(out.stderr.contains("stopped"), "{}", out.stderr);
    assert!(!out.stderr.contains('\x1b'), "{:?}", out.stderr);
}

/// `--allow-remote-shutdown`: a client's `2` stops the process gracefully, exit status 0,
/// after the stats line reported the streaming client with its sent and skipped frames.
#[test]
fn remote_shutdown_exits_zero_after_stats_lines() {
    let serve = Edgecam::spawn(&[
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--camera",
        CAMERA,
        "--allow-remote-shutdown",
        "--stats-interval",
        "0.2",
    ]);
    let first = serve.stdout_line();
    let (_, addr) = first.rsplit_once(" on ").unwrap();
    let out = edgecam(&["stream", addr, "--seconds", "1"]);
    assert!(out.status.success(), "{out:?}");
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    std::io::Write::write_all(&mut client, b"2").unwrap();
    let out = serve.finish();
    assert!(out.status.success(), "{out:?}");
    let stats = out
        .stderr
        .lines()
        .find(|l| l.contains("stats clients=1"))
        .unwrap_or_else(|| panic!("no stats line with the client: {}", out.stderr));
    for field in [
        "fps_captured=",
        "fps_encoded=",
        "fps_sent=",
        ":sent=",
        ",skipped=",
    ] {
        assert!(stats.contains(field), "{field} missing from {stats}");
    }
    assert!(
        out.stderr.contains("client asked the server to stop"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("stopped"), "{}", out.stderr);
}

/// `--seconds` is a deadline even while no frame comes (a stalled camera): the stream ends
/// on time and successfully, instead of failing on the frame timeout.
#[test]
fn stream_seconds_ends_on_time_while_the_camera_stalls() {
    let serve = Edgecam::spawn(&[
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--camera",
        "sim:160x120@30#stall_after=3&stall_ms=20000",
    ]);
    let first = serve.stdout_line();
    let (_, addr) = first.rsplit_once(" on ").unwrap();
    let started = std::time::Instant::now();
    let out = edgecam(&["stream", addr, "--seconds", "1", "--timeout", "8"]);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.starts_with("3 frames"), "{}", out.stdout);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}
