//! `edgecam passwd`, the built binary: the password piped in or typed at a terminal (a pty
//! from `script`), and the file it writes read back by the server's `Users`.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use edgecam::server::auth::{DenyReason, Users, Verdict};
use edgecam_core::http::auth::encode_basic;

use crate::support::{Finished, WAIT, edgecam, have_tool};

/// Runs `program ARGS` with `input` on its standard input, to its end (bounded by [`WAIT`]:
/// killed and failed after that).
fn run_with_input(program: &str, args: &[&str], input: &[u8]) -> Finished {
    let mut child = Command::new(program)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    // A child that does not read its input must not block the test: written from a thread,
    // and closed once written.
    std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let collect = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = collect(Box::new(child.stdout.take().unwrap()));
    let stderr = collect(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{program} {args:?} did not finish within {WAIT:?} (killed)");
        }
        // Polling: std has no wait with a timeout.
        std::thread::sleep(Duration::from_millis(10));
    };
    Finished {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// `edgecam passwd FILE USER` with `input` piped in.
fn passwd(file: &Path, user: &str, input: &[u8]) -> Finished {
    run_with_input(
        env!("CARGO_BIN_EXE_edgecam"),
        &["passwd", file.to_str().unwrap(), user],
        input,
    )
}

/// What `users` decides for `user` and `password`.
async fn check(users: &Users, user: &str, password: &str) -> Verdict {
    users.check(Some(&encode_basic(user, password))).await
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[tokio::test]
async fn a_piped_password_adds_then_changes_a_user_the_server_lets_in() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users");
    let shown = file.display();

    let out = passwd(&file, "alice", b"open sesame\n");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, format!("added user alice to {shown}\n"));
    assert_eq!(mode(&file), 0o600);
    let users = Users::load(&file).unwrap();
    assert!(check(&users, "alice", "open sesame").await.is_allowed());
    assert!(matches!(
        check(&users, "alice", "open sesame\n").await,
        Verdict::Denied(DenyReason::WrongPassword(_))
    ));

    // A CRLF line end is not part of the password either; a second user is added beside.
    let out = passwd(&file, "bob", b"b0b\r\nsecond line\n");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, format!("added user bob to {shown}\n"));

    let out = passwd(&file, "alice", b"new one");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        out.stdout,
        format!("changed the password of alice in {shown}\n")
    );

    let users = Users::load(&file).unwrap();
    assert_eq!(users.user_count(), 2);
    assert!(check(&users, "alice", "new one").await.is_allowed());
    assert!(!check(&users, "alice", "open sesame").await.is_allowed());
    assert!(check(&users, "bob", "b0b").await.is_allowed());
    assert!(!check(&users, "bob", "second line").await.is_allowed());
}

#[tokio::test]
async fn a_password_typed_twice_at_a_terminal_is_taken_and_two_that_differ_are_not() {
    if !have_tool("script") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users");
    // `script` runs the command on a pseudo-terminal and types what it reads.
    let typed = |input: &[u8]| {
        let command = format!(
            "{} passwd {} alice",
            env!("CARGO_BIN_EXE_edgecam"),
            file.display()
        );
        run_with_input("script", &["-qec", &command, "/dev/null"], input)
    };

    let out = typed(b"typed secret\ntyped secret\n");
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("New password for alice: "), "{out:?}");
    assert!(out.stdout.contains("The same again: "), "{out:?}");
    assert!(out.stdout.contains("added user alice to"), "{out:?}");
    let users = Users::load(&file).unwrap();
    assert!(check(&users, "alice", "typed secret").await.is_allowed());

    let before = std::fs::read(&file).unwrap();
    let out = typed(b"one thing\nanother\n");
    assert!(!out.status.success(), "{out:?}");
    assert!(
        out.stdout
            .contains("the two passwords differ; nothing was changed"),
        "{out:?}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), before, "the file changed");
}

#[test]
fn help_and_errors() {
    let out = edgecam(&["passwd", "--help"]);
    assert!(out.status.success(), "{out:?}");
    insta::assert_snapshot!("help_passwd", out.stdout, "edgecam passwd --help");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users");
    let missing = dir.path().join("no-such-folder").join("users");
    let cases: [(&str, &Path, &str, &[u8]); 4] = [
        ("no_password", &file, "alice", b""),
        ("empty_line", &file, "alice", b"\nsecond\n"),
        ("bad_user", &file, "al:ice", b"pw\n"),
        ("missing_folder", &missing, "alice", b"pw\n"),
    ];
    let mut report = String::new();
    for (name, path, user, input) in cases {
        let out = passwd(path, user, input);
        assert!(!out.status.success(), "{name}: {out:?}");
        assert_eq!(out.stdout, "", "{name}");
        let stderr = out.stderr.replace(&dir.path().display().to_string(), "DIR");
        report.push_str(&format!("{name}:\n{stderr}\n"));
    }
    assert!(!file.exists(), "a refused password wrote the file");
    insta::assert_snapshot!("passwd_errors", report);
}
