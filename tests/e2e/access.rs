//! Who may watch: connection limits that hold against a hostile LAN (slot holders, no-op
//! floods, one host taking every slot), and `--allow`. Other hosts are played by other
//! loopback addresses (127.0.0.2, ...): Linux routes all of 127/8 to the loopback device.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

const CAMERA: &str = "sim:64x48@30";

/// Retries (bounded by [`WAIT`]) until a newcomer from `source` is sent a single frame.
async fn served_within(addr: &str, source: &str) -> Duration {
    let start = Instant::now();
    loop {
        let mut client = Raw::connect_from(addr, source).await;
        client.send(b"0").await;
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_secs(1), client.next_frame()).await
        {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < WAIT,
            "a real client from {source} was never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The attack from the issue: every slot held by connections that send a no-op `q` now and
/// then. It held them for ever, since any command restarted the idle timer; now only
/// commands that change what a session is owed do, so the handshake timeout frees them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slot_holders_sending_no_op_commands_do_not_lock_real_clients_out() {
    let server = TestServer::with_config(
        CAMERA,
        config_with(|c| {
            c.max_clients = 4;
            c.session.handshake_timeout = Some(Duration::from_secs(1));
            c.session.idle_timeout = Some(Duration::from_secs(1));
        }),
    )
    .await;
    let mut holders = Vec::new();
    for _ in 0..4 {
        holders.push(Raw::connect_from(&server.addr, "127.0.0.2").await);
    }
    let holding = tokio::spawn(async move {
        // Each holder says `q` every 300 ms, well inside every timeout, for up to WAIT.
        let until = Instant::now() + WAIT;
        while Instant::now() < until {
            for holder in &mut holders {
                let _ = holder.stream.write_all(b"q").await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let took = served_within(&server.addr, "127.0.0.3").await;
    holding.abort();
    // Freed by the 1 s handshake timeout, give or take the retries.
    assert!(took < Duration::from_secs(5), "served only after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_no_op_commands_is_closed_without_being_read_to_the_end() {
    let server = TestServer::start(CAMERA).await;
    let mut flooder = server.connect().await;
    let flood = vec![b'q'; 1 << 20];
    // The server closes long before a megabyte is read; the write then fails, which is fine.
    let _ = tokio::time::timeout(WAIT, flooder.stream.write_all(&flood)).await;
    assert_eq!(flooder.closed().await, b"");
    let stats = server.stats();
    assert!(
        stats.commands < 1000,
        "{} commands read from a flood of no-ops",
        stats.commands
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_slot() {
    let server = TestServer::with_config(CAMERA, config_with(|c| c.max_clients_per_ip = 2)).await;
    let mut first = Raw::connect_from(&server.addr, "127.0.0.2").await;
    let mut second = Raw::connect_from(&server.addr, "127.0.0.2").await;
    first.snap().await;
    second.snap().await;
    // A third legacy client from the same host is closed at its first command.
    let mut third = Raw::connect_from(&server.addr, "127.0.0.2").await;
    third.send(b"0").await;
    assert_eq!(third.closed().await, b"");
    // An HTTP one is told why, and when to try again.
    let mut http = Raw::connect_from(&server.addr, "127.0.0.2").await;
    http.send(b"GET /snapshot HTTP/1.1\r\nHost: board\r\n\r\n")
        .await;
    let answer = String::from_utf8_lossy(&http.closed().await).into_owned();
    assert!(answer.starts_with("HTTP/1.0 503 "), "{answer}");
    assert!(answer.contains("\r\nRetry-After: "), "{answer}");
    assert!(answer.contains("too many clients from it"), "{answer}");
    // Another host is served.
    served_within(&server.addr, "127.0.0.3").await;
    // And so is the first host again once one of its clients has left.
    drop(first);
    served_within(&server.addr, "127.0.0.2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_outside_allow_is_closed_at_once() {
    let allow = "127.0.0.3/32,10.0.0.0/8".parse().unwrap();
    let server = TestServer::with_config(CAMERA, config_with(|c| c.allow = Some(allow))).await;
    let mut outsider = Raw::connect_from(&server.addr, "127.0.0.2").await;
    let start = Instant::now();
    // Closed before it says anything.
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(WAIT, outsider.stream.read(&mut byte)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    assert!(start.elapsed() < Duration::from_secs(2));
    served_within(&server.addr, "127.0.0.3").await;
}

/// The head of the server's answer to `request` (read up to its blank line, so that a stream
/// need not end).
async fn answer_head(addr: &str, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let read = tokio::time::timeout(WAIT, stream.read(&mut byte)).await;
        match read.expect("no answer in time") {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A server whose users are `viewer` (password `secret word`), with `change` applied.
async fn with_users(
    change: impl FnOnce(&mut edgecam::server::ServerConfig),
) -> (TestServer, tempfile::TempDir) {
    use edgecam::server::auth::{Users, set_password};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users");
    set_password(&file, "viewer", "secret word").unwrap();
    let users = std::sync::Arc::new(Users::load(&file).unwrap());
    let config = config_with(|c| {
        c.users = Some(users);
        change(c);
    });
    (TestServer::with_config(CAMERA, config).await, dir)
}

/// The `Authorization` header line for `user:password`.
fn basic(user: &str, password: &str) -> String {
    let value = edgecam_core::http::auth::encode_basic(user, password);
    format!("Authorization: {value}\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_passwords_every_route_needs_the_right_one() {
    let (server, _dir) = with_users(|_| {}).await;
    let routes = [
        "/",
        "/stream",
        "/?action=stream",
        "/snapshot",
        "/?action=snapshot",
        "/state",
        "/metrics",
    ];
    for route in routes {
        for (credentials, expected) in [
            (String::new(), "401"),
            (basic("viewer", "wrong"), "401"),
            (basic("nobody", "secret word"), "401"),
            ("Authorization: Basic !!!\r\n".to_owned(), "401"),
            (basic("viewer", "secret word"), "200"),
        ] {
            let request = format!("GET {route} HTTP/1.1\r\nHost: board\r\n{credentials}\r\n");
            let head = answer_head(&server.addr, &request).await;
            let status = head.lines().next().unwrap_or_default().to_owned();
            assert!(
                status.starts_with(&format!("HTTP/1.0 {expected} ")),
                "{route} with {credentials:?}: {head}"
            );
            if expected == "401" {
                assert!(
                    head.contains("\r\nWWW-Authenticate: Basic realm=\"edgecam\""),
                    "{route}: {head}"
                );
            }
        }
    }
    // A browser's preflight carries no credentials.
    let head = answer_head(&server.addr, "OPTIONS /stream HTTP/1.1\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.0 204 "), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_passwords_legacy_clients_come_in_only_from_legacy_allow() {
    let legacy_allow = "127.0.0.3/32".parse().unwrap();
    let (server, _dir) = with_users(|c| c.legacy_allow = Some(legacy_allow)).await;
    let mut outsider = Raw::connect_from(&server.addr, "127.0.0.2").await;
    outsider.send(b"0").await;
    assert_eq!(
        outsider.closed().await,
        b"",
        "a legacy client with passwords on"
    );
    let mut old_script = Raw::connect_from(&server.addr, "127.0.0.3").await;
    assert_jpeg(&old_script.snap().await, 64, 48);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_says_a_server_that_closed_at_once_may_be_full() {
    let server = TestServer::with_config(CAMERA, config_with(|c| c.max_clients = 1)).await;
    let mut holder = server.connect().await;
    holder.snap().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("frame.jpg");
    let out = edgecam(&["snap", &server.addr, "-o", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        out.stderr
            .contains("closed the connection before sending anything: the server may be full"),
        "{}",
        out.stderr
    );
}
