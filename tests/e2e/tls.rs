//! TLS on the same port: HTTPS beside plain HTTP and the legacy protocol, checked with curl,
//! ffmpeg and our own client; a wrong certificate refused; the self-signed certificate kept
//! across restarts; and a peer that stalls in its handshake holding up no one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgecam::clock::SystemClock;
use edgecam_transport_tcp::TcpTransport;
use edgecam_transport_tcp::tls::{ServerIdentity, default_names};
use tokio::io::AsyncWriteExt;

use crate::support::*;

const CAMERA: &str = "sim:64x48@30";

/// A server serving TLS with a self-signed certificate made in `dir`; the certificate's path.
async fn tls_server(
    dir: &Path,
    change: impl FnOnce(&mut edgecam::server::ServerConfig),
) -> (TestServer, PathBuf, String) {
    let (identity, _) = ServerIdentity::self_signed(dir, &default_names(&[])).unwrap();
    let fingerprint = identity.fingerprint().to_string();
    let transport = TcpTransport::bind("127.0.0.1:0")
        .await
        .unwrap()
        .with_tls(identity.acceptor());
    let clock = Arc::new(SystemClock::default());
    let camera = edgecam::backends::cameras()
        .create(
            CAMERA,
            &edgecam_core::camera::CameraContext {
                clock: clock.clone(),
            },
        )
        .unwrap();
    let server = TestServer::with_transport(camera, config_with(change), clock, transport).await;
    (server, dir.join("tls-cert.pem"), fingerprint)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_gets_a_snapshot_over_https_and_plain_clients_share_the_port() {
    if !have_tool("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, cert, _) = tls_server(dir.path(), |_| {}).await;
    let file = dir.path().join("snap.jpg");
    let url = format!("https://{}/snapshot", server.addr);
    let out = run(
        "curl",
        &[
            "-sS",
            "--fail",
            "--cacert",
            cert.to_str().unwrap(),
            "-o",
            file.to_str().unwrap(),
            &url,
        ],
    )
    .await;
    assert!(out.status.success(), "curl over https: {}", out.stderr);
    assert_jpeg(&std::fs::read(&file).unwrap(), 64, 48);
    // A certificate curl does not trust is refused by curl, not quietly taken.
    let out = run("curl", &["-sS", "-o", "/dev/null", &url]).await;
    assert!(
        !out.status.success(),
        "curl took a certificate it had no reason to trust"
    );
    // The legacy protocol and plain HTTP on the same port.
    let mut legacy = server.connect().await;
    assert_jpeg(&legacy.snap().await, 64, 48);
    let out = run(
        "curl",
        &[
            "-sS",
            "--fail",
            "-o",
            "/dev/null",
            &format!("http://{}/state", server.addr),
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "plain HTTP beside TLS: {}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_reads_the_stream_over_https() {
    if !have_tool("ffmpeg") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, cert, _) = tls_server(dir.path(), |_| {}).await;
    let url = format!("https://{}/stream", server.addr);
    let out = run(
        "ffmpeg",
        &[
            "-nostdin",
            "-loglevel",
            "error",
            "-tls_verify",
            "1",
            "-ca_file",
            cert.to_str().unwrap(),
            "-f",
            "mpjpeg",
            "-i",
            &url,
            "-frames:v",
            "5",
            "-f",
            "framemd5",
            "-",
        ],
    )
    .await;
    assert!(out.status.success(), "ffmpeg over https: {}", out.stderr);
    let frames = out.stdout.lines().filter(|l| !l.starts_with('#')).count();
    assert_eq!(frames, 5, "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_takes_the_pinned_certificate_and_refuses_another() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _, fingerprint) = tls_server(dir.path(), |_| {}).await;
    let file = dir.path().join("snap.jpg");
    let url = format!("https://{}/snapshot", server.addr);
    let out = edgecam(&[
        "snap",
        &url,
        "--pin",
        &fingerprint,
        "-o",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "snap --pin: {}", out.stderr);
    assert_jpeg(&std::fs::read(&file).unwrap(), 64, 48);

    // Another server's certificate: the pin says so, with both fingerprints.
    let other = tempfile::tempdir().unwrap();
    let (other_identity, _) =
        ServerIdentity::self_signed(other.path(), &default_names(&[])).unwrap();
    let other_fingerprint = other_identity.fingerprint().to_string();
    let out = edgecam(&[
        "snap",
        &url,
        "--pin",
        &other_fingerprint,
        "-o",
        file.to_str().unwrap(),
    ]);
    assert!(
        !out.status.success(),
        "a certificate that is not the pinned one was taken"
    );
    assert!(
        out.stderr.contains(&fingerprint) && out.stderr.contains(&other_fingerprint),
        "the error names neither fingerprint: {}",
        out.stderr
    );
}

/// The certificate `--tls self-signed` makes is kept: clients' pins hold across restarts.
#[test]
fn the_self_signed_certificate_survives_a_restart() {
    let state = tempfile::tempdir().unwrap();
    let fingerprint = || {
        let server = Edgecam::spawn(&[
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--tls",
            "self-signed",
            "--state-dir",
            state.path().to_str().unwrap(),
            "--stats-interval",
            "0",
        ]);
        let line = (0..12)
            .map(|_| server.stdout_line())
            .find(|line| line.contains("certificate SHA-256"))
            .expect("no certificate line in the banner");
        server.signal("TERM");
        let finished = server.finish();
        assert!(finished.status.success(), "{}", finished.stderr);
        line.rsplit(' ').next().unwrap().to_owned()
    };
    let first = fingerprint();
    assert_eq!(first.len(), 95, "not a SHA-256 fingerprint: {first}");
    assert_eq!(fingerprint(), first, "a restart made a new certificate");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(state.path().join("tls-key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "the key is readable by others: {mode:o}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_stalled_in_its_handshake_holds_up_no_one() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _, _) = tls_server(dir.path(), |c| {
        c.session.handshake_timeout = Some(Duration::from_secs(2));
    })
    .await;
    // A TLS record header that promises a ClientHello which never comes.
    let mut stalled = Vec::new();
    for _ in 0..4 {
        let mut peer = server.connect().await;
        peer.stream
            .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
            .await
            .unwrap();
        stalled.push(peer);
    }
    let start = Instant::now();
    let mut client = server.connect().await;
    assert_jpeg(&client.snap().await, 64, 48);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "served only after {:?}",
        start.elapsed()
    );
    // And the stalled ones are let go at the handshake timeout.
    for peer in &mut stalled {
        assert_eq!(peer.closed().await, b"");
    }
    assert!(start.elapsed() >= Duration::from_secs(1));
    // A stop does not wait for a handshake either.
    let mut late = server.connect().await;
    late.stream.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = Instant::now();
    server.shutdown().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(1),
        "the stop waited {:?} for a stalled handshake",
        stopping.elapsed()
    );
}
