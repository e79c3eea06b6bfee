//! The `http://` client against MJPEG servers that are not edgecam: ffmpeg's own HTTP server
//! (`-f mpjpeg -listen 1`: chunked, `application/octet-stream`, parts with Content-length),
//! and a loopback server in the test that writes what other servers write (no Content-Length,
//! a boundary declared with its dashes, single images) and what broken or wrong ones do (a 404
//! page, headers without end, a part over the cap). Also the edgecam server itself, asked over
//! HTTP by mistake. And https://: a loopback TLS server in the test with a self-signed
//! certificate, checked by pin, as its own CA, or not at all, with HTTP Basic credentials.

use std::path::Path;
use std::time::Duration;

use edgecam::client::{Client, ClientConfig};
use edgecam_transport_tcp::http::Password;
use edgecam_transport_tcp::tls::{CERT_FILE, Fingerprint, ServerIdentity, Trust};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::support::{
    Finished, TOOL_WAIT, TestServer, WAIT, assert_jpeg, edgecam, have_tool, stamped_jpeg,
};

/// What the test server writes to one connection.
#[derive(Debug, Clone)]
enum Reply {
    /// These bytes, then it closes.
    Bytes(Vec<u8>),
    /// These bytes, then the connection is dropped: over TLS without a close_notify.
    Cut(Vec<u8>),
    /// A status line, then header lines for as long as the client reads (at most 1 MiB).
    HeadersForever,
}

/// A loopback server answering its first connections with `replies`, one each, in order.
/// Each request head it read comes out of `requests`.
struct Canned {
    url: String,
    requests: mpsc::UnboundedReceiver<String>,
}

async fn canned(path: &str, replies: Vec<Reply>) -> Canned {
    serve_canned("http", path, None, replies).await
}

/// [`canned`] over TLS with `identity`: an `https://` URL.
async fn canned_tls(path: &str, identity: &ServerIdentity, replies: Vec<Reply>) -> Canned {
    serve_canned("https", path, Some(identity), replies).await
}

async fn serve_canned(
    scheme: &str,
    path: &str,
    identity: Option<&ServerIdentity>,
    replies: Vec<Reply>,
) -> Canned {
    let tls = identity.map(ServerIdentity::acceptor);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("{scheme}://{}{path}", listener.local_addr().unwrap());
    let (tx, requests) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        for reply in replies {
            let Ok(Ok((stream, _))) = tokio::time::timeout(WAIT, listener.accept()).await else {
                return;
            };
            match &tls {
                None => answer(stream, reply, &tx).await,
                Some(acceptor) => {
                    // A client that refuses the certificate ends the handshake: next one.
                    if let Ok(Ok(stream)) =
                        tokio::time::timeout(WAIT, acceptor.accept(stream)).await
                    {
                        answer(stream, reply, &tx).await;
                    }
                }
            }
        }
    });
    Canned { url, requests }
}

/// Reads one request head from `stream`, sends it to `requests`, and writes `reply`.
async fn answer<S>(mut stream: S, reply: Reply, requests: &mpsc::UnboundedSender<String>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
        match tokio::time::timeout(WAIT, stream.read(&mut byte)).await {
            Ok(Ok(1)) => head.push(byte[0]),
            _ => break,
        }
    }
    let _ = requests.send(String::from_utf8_lossy(&head).into_owned());
    match reply {
        Reply::Bytes(bytes) => {
            let _ = stream.write_all(&bytes).await;
        }
        Reply::Cut(bytes) => {
            let _ = stream.write_all(&bytes).await;
            let _ = stream.flush().await;
            return;
        }
        Reply::HeadersForever => {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\n").await;
            for _ in 0..(1 << 20) / 32 {
                let line = b"X-Padding: aaaaaaaaaaaaaaaaaaa\r\n";
                if stream.write_all(line).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = stream.shutdown().await;
}

fn response(content_type: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    [
        format!("HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n{extra}\r\n").as_bytes(),
        body,
    ]
    .concat()
}

/// Runs `edgecam ARGS` to the end (bounded) off the test's runtime, which serves meanwhile.
async fn edgecam_off_runtime(args: Vec<String>) -> Finished {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        edgecam(&args)
    })
    .await
    .unwrap()
}

fn config(max_frame_len: u32) -> ClientConfig {
    ClientConfig {
        max_frame_len,
        ..ClientConfig::default()
    }
}

/// `frames` as multipart parts with boundary `frame` and no `Content-Length`.
fn multipart_body(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut body = Vec::new();
    for frame in frames {
        body.extend_from_slice(b"--frame\r\nContent-Type: image/jpeg\r\n\r\n");
        body.extend_from_slice(frame);
        body.extend_from_slice(b"\r\n");
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multipart_stream_without_content_length() {
    let frames: Vec<Vec<u8>> = (1..=3).map(|seq| stamped_jpeg(32, 24, seq)).collect();
    let body = multipart_body(&frames);
    let reply = response("multipart/x-mixed-replace; boundary=frame", "", &body);
    let mut server = canned("/stream?cam=1", vec![Reply::Bytes(reply)]).await;
    let mut client = Client::connect(&server.url, ClientConfig::default())
        .await
        .unwrap();
    client.start_stream().await.unwrap();
    for (i, frame) in frames.iter().enumerate() {
        let got = client.next_frame().await.unwrap();
        assert_eq!(&got.jpeg[..], &frame[..], "frame {i}");
        assert_eq!(got.stamp.map(|s| s.seq), Some(i as u64 + 1));
    }
    assert_eq!(client.stop_stream().await.unwrap(), 0);
    let request = server.requests.recv().await.unwrap();
    let port = server
        .url
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    assert_eq!(
        request,
        format!(
            "GET /stream?cam=1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: edgecam/{}\r\n\
             Accept: multipart/x-mixed-replace, image/jpeg;q=0.9, */*;q=0.1\r\n\
             Connection: close\r\n\r\n",
            env!("CARGO_PKG_VERSION")
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_boundary_declared_with_its_dashes_and_a_part_that_is_not_a_jpeg() {
    let frames: Vec<Vec<u8>> = (1..=2).map(|seq| stamped_jpeg(16, 16, seq)).collect();
    let mut body =
        b"--myboundary\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi\r\n".to_vec();
    for frame in &frames {
        body.extend_from_slice(
            format!(
                "--myboundary\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                frame.len()
            )
            .as_bytes(),
        );
        body.extend_from_slice(frame);
        body.extend_from_slice(b"\r\n");
    }
    let reply = response("multipart/x-mixed-replace;boundary=--myboundary", "", &body);
    let server = canned("/video.cgi", vec![Reply::Bytes(reply)]).await;
    let mut client = Client::connect(&server.url, ClientConfig::default())
        .await
        .unwrap();
    client.start_stream().await.unwrap();
    for frame in &frames {
        assert_eq!(&client.next_frame().await.unwrap().jpeg[..], &frame[..]);
    }
    assert_eq!(client.invalid_frames(), 1, "the text part is counted");
    let end = client.next_frame().await.unwrap_err().to_string();
    assert!(end.contains("closed the connection"), "{end}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_image_url_is_a_snap_and_asked_again_for_a_stream() {
    let replies = (1..=3)
        .map(|seq| {
            let image = stamped_jpeg(24, 16, seq);
            Reply::Bytes(response(
                "image/jpeg",
                &format!("Content-Length: {}\r\n", image.len()),
                &image,
            ))
        })
        .collect();
    let mut server = canned("/snapshot.jpg", replies).await;
    let mut client = Client::connect(&server.url, ClientConfig::default())
        .await
        .unwrap();
    let snap = client.snap().await.unwrap();
    assert_jpeg(&snap.jpeg, 24, 16);
    assert_eq!(snap.stamp.map(|s| s.seq), Some(1));
    client.start_stream().await.unwrap();
    let seqs = [
        client.next_frame().await.unwrap().stamp.map(|s| s.seq),
        client.next_frame().await.unwrap().stamp.map(|s| s.seq),
    ];
    assert_eq!(seqs, [Some(2), Some(3)]);
    for _ in 0..3 {
        let request = server.requests.recv().await.unwrap();
        assert!(
            request.starts_with("GET /snapshot.jpg HTTP/1.1\r\n"),
            "{request}"
        );
    }
}

/// What a user sees of a failed command, with the test server's port taken out.
fn failure(out: &Finished, url: &str) -> String {
    assert!(!out.status.success(), "the command succeeded: {out:?}");
    let port = url.split(':').nth(2).unwrap().split('/').next().unwrap();
    out.stderr.replace(port, "PORT")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_404_page_is_named_by_status_type_and_text() {
    let page = b"<html><head><title>404 Not Found</title></head><body><h1>Not Found</h1>\
                 <p>The requested URL was not found on this server.</p></body></html>";
    let reply = [
        format!(
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n",
            page.len()
        )
        .as_bytes(),
        page,
    ]
    .concat();
    let server = canned("/nope", vec![Reply::Bytes(reply)]).await;
    let out = edgecam_off_runtime(vec!["snap".into(), server.url.clone()]).await;
    insta::assert_snapshot!(failure(&out, &server.url));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_without_end_are_capped() {
    let server = canned("/", vec![Reply::HeadersForever]).await;
    let mut client = Client::connect(&server.url, ClientConfig::default())
        .await
        .unwrap();
    let err = client.snap().await.unwrap_err().to_string();
    assert!(
        err.ends_with("sent a response head of more than 16384 bytes without its end"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_over_the_cap_is_refused_with_or_without_length() {
    let big = vec![0x55u8; 200 * 1024];
    let counted = response(
        "multipart/x-mixed-replace;boundary=b",
        "",
        &[&b"--b\r\nContent-Length: 204800\r\n\r\n"[..], &big].concat(),
    );
    let scanned = response(
        "multipart/x-mixed-replace;boundary=b",
        "",
        &[&b"--b\r\n\r\n"[..], &big].concat(),
    );
    let server = canned(
        "/stream",
        vec![Reply::Bytes(counted), Reply::Bytes(scanned)],
    )
    .await;
    for want in [
        "announced a part of 204800 bytes, over the 65536-byte limit",
        "sent more than 65536 bytes of one part without a boundary",
    ] {
        let mut client = Client::connect(&server.url, config(64 * 1024))
            .await
            .unwrap();
        let err = client.snap().await.unwrap_err().to_string();
        assert!(err.contains(want), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_streams_and_snaps_our_own_http_port_with_stamps() {
    let server = TestServer::start("sim:64x48@30").await;
    let url = format!("http://{}/stream", server.addr);
    let mut client = Client::connect(&url, ClientConfig::default())
        .await
        .unwrap();
    client.start_stream().await.unwrap();
    let mut seqs = Vec::new();
    for _ in 0..5 {
        let frame = client.next_frame().await.unwrap();
        assert_jpeg(&frame.jpeg, 64, 48);
        seqs.push(frame.stamp.expect("our own frames carry the stamp").seq);
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let snap = format!("http://{}/snapshot", server.addr);
    let mut client = Client::connect(&snap, ClientConfig::default())
        .await
        .unwrap();
    assert_jpeg(&client.snap().await.unwrap().jpeg, 64, 48);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edgecam_port_without_http_asked_over_http_says_to_drop_the_scheme() {
    let config = crate::support::config_with(|c| c.http = false);
    let server = TestServer::with_config("sim:64x48@30", config).await;
    let url = format!("http://{}/", server.addr);
    let err = match Client::connect(&url, ClientConfig::default()).await {
        Ok(mut client) => client.snap().await.unwrap_err().to_string(),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("give HOST:PORT without http://"), "{err}");
    server.shutdown().await;
}

/// A free loopback port for ffmpeg to listen on.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether something listens on 127.0.0.1:`port`, from the kernel's socket table (a probing
/// connection would be the one client ffmpeg's `-listen 1` serves).
fn listening(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let local = format!("0100007F:{port:04X}");
    table.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A")
    })
}

/// ffmpeg serving its test picture as MJPEG over HTTP, 320x240 at 10 fps, to one client.
struct Ffmpeg {
    child: std::process::Child,
    url: String,
}

impl Ffmpeg {
    fn serve() -> Ffmpeg {
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}/stream");
        let mut child = std::process::Command::new("ffmpeg")
            .args(["-loglevel", "error", "-re", "-f", "lavfi"])
            .args(["-i", "testsrc2=size=320x240:rate=10", "-f", "mpjpeg"])
            .args(["-listen", "1", &url])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("cannot start ffmpeg");
        // ffmpeg starts slowly on a loaded machine.
        let deadline = std::time::Instant::now() + TOOL_WAIT;
        while !listening(port) {
            if std::time::Instant::now() >= deadline {
                // Not left running: it would hold the test's output open after the run.
                let _ = child.kill();
                let _ = child.wait();
                panic!("ffmpeg did not listen on {port} within {TOOL_WAIT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ffmpeg { child, url }
    }
}

impl Drop for Ffmpeg {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn snap_and_record_from_ffmpeg() {
    if !have_tool("ffmpeg") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let jpeg_path = dir.path().join("one.jpg");
    let ffmpeg = Ffmpeg::serve();
    // Its first frame may take a while on a loaded machine.
    let out = edgecam(&[
        "snap",
        &ffmpeg.url,
        "--timeout",
        "30",
        "-o",
        jpeg_path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("(320x240, "), "{}", out.stdout);
    assert_jpeg(&std::fs::read(&jpeg_path).unwrap(), 320, 240);
    drop(ffmpeg);

    let avi = dir.path().join("ffmpeg.avi");
    let ffmpeg = Ffmpeg::serve();
    let out = edgecam(&[
        "record",
        &ffmpeg.url,
        "--frames",
        "5",
        "--timeout",
        "30",
        "-o",
        avi.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.starts_with("5 frames in "), "{}", out.stdout);
    assert!(out.stdout.contains("latency n/a"), "{}", out.stdout);
    assert!(out.stdout.contains("saved 5 frames"), "{}", out.stdout);
    let mut reader = edgecam_recorder::AviReader::open(&avi).unwrap();
    let frames: Vec<_> = reader.frames().map(Result::unwrap).collect();
    assert_eq!(frames.len(), 5);
    for frame in &frames {
        assert_jpeg(frame, 320, 240);
    }
    if have_tool("ffprobe") {
        assert_eq!(
            ffprobe(&avi),
            "codec_name=mjpeg|width=320|height=240|nb_frames=5"
        );
    }
}

fn ffprobe(path: &Path) -> String {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .args([
            "stream=codec_name,width,height,nb_frames",
            "-of",
            "compact=p=0",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn error_messages_about_urls() {
    let cases: [(&str, &[&str]); 4] = [
        (
            "legacy_with_url",
            &["snap", "http://127.0.0.1:1/stream", "--legacy"],
        ),
        ("other_scheme", &["record", "rtsp://127.0.0.1/stream"]),
        ("bad_port", &["snap", "http://127.0.0.1:99999/stream"]),
        ("connection_refused", &["snap", "http://127.0.0.1:1/stream"]),
    ];
    for (name, args) in cases {
        let out = edgecam(args);
        assert!(!out.status.success(), "{out:?}");
        assert_eq!(out.stdout, "", "a failed command printed to stdout");
        insta::assert_snapshot!(
            format!("error_{name}"),
            out.stderr,
            &format!("edgecam {}", args.join(" "))
        );
    }
}

/// A self-signed identity for 127.0.0.1 and localhost, in a folder of its own.
fn tls_identity() -> (ServerIdentity, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let names = ["127.0.0.1", "localhost"].map(String::from);
    let (identity, created) = ServerIdentity::self_signed(dir.path(), &names).unwrap();
    assert!(created);
    (identity, dir)
}

fn trusting(trust: Trust) -> ClientConfig {
    ClientConfig {
        trust,
        ..ClientConfig::default()
    }
}

fn jpeg_reply(seq: u64) -> Reply {
    let image = stamped_jpeg(24, 16, seq);
    Reply::Bytes(response(
        "image/jpeg",
        &format!("Content-Length: {}\r\n", image.len()),
        &image,
    ))
}

fn unauthorized() -> Reply {
    Reply::Bytes(
        b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"edgecam\"\r\n\
          Content-Type: text/plain\r\nContent-Length: 13\r\n\r\nUnauthorized\n"
            .to_vec(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_the_right_pin_streams_and_snaps() {
    let (identity, _dir) = tls_identity();
    let frames: Vec<Vec<u8>> = (1..=3).map(|seq| stamped_jpeg(32, 24, seq)).collect();
    let body = multipart_body(&frames);
    let stream = response("multipart/x-mixed-replace; boundary=frame", "", &body);
    let mut server = canned_tls(
        "/stream",
        &identity,
        vec![Reply::Bytes(stream), jpeg_reply(7)],
    )
    .await;
    let pin = trusting(Trust::Pin(identity.fingerprint()));
    let mut client = Client::connect(&server.url, pin.clone()).await.unwrap();
    client.start_stream().await.unwrap();
    for (i, frame) in frames.iter().enumerate() {
        assert_eq!(
            &client.next_frame().await.unwrap().jpeg[..],
            &frame[..],
            "frame {i}"
        );
    }
    client.stop_stream().await.unwrap();
    let request = server.requests.recv().await.unwrap();
    assert!(
        request.starts_with("GET /stream HTTP/1.1\r\nHost: 127.0.0.1:"),
        "{request}"
    );
    assert!(!request.contains("Authorization"), "{request}");
    let mut client = Client::connect(&server.url, pin).await.unwrap();
    assert_eq!(client.snap().await.unwrap().stamp.map(|s| s.seq), Some(7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_wrong_pin_says_both_fingerprints() {
    let (identity, _dir) = tls_identity();
    let (other, _other_dir) = tls_identity();
    let server = canned_tls("/snapshot", &identity, vec![jpeg_reply(1)]).await;
    let err = Client::connect(&server.url, trusting(Trust::Pin(other.fingerprint())))
        .await
        .unwrap_err();
    let text = edgecam::error_chain(&err);
    assert!(
        text.starts_with(&format!("TLS with {} failed: ", server.url)),
        "{text}"
    );
    assert!(
        text.contains(&format!("not the pinned {}", other.fingerprint())),
        "{text}"
    );
    assert!(
        text.contains(&format!("fingerprint {}", identity.fingerprint())),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_trusts_the_self_signed_certificate_as_ca_or_with_insecure() {
    let (identity, dir) = tls_identity();
    let mut server = canned_tls(
        "/snapshot",
        &identity,
        vec![jpeg_reply(1), jpeg_reply(2), jpeg_reply(3)],
    )
    .await;
    let ca = trusting(Trust::Ca(dir.path().join(CERT_FILE)));
    let mut client = Client::connect(&server.url, ca.clone()).await.unwrap();
    assert_eq!(client.snap().await.unwrap().stamp.map(|s| s.seq), Some(1));
    // By name too: the certificate names localhost.
    let by_name = server.url.replace("127.0.0.1", "localhost");
    let mut client = Client::connect(&by_name, ca).await.unwrap();
    assert_eq!(client.snap().await.unwrap().stamp.map(|s| s.seq), Some(2));
    let request = server.requests.recv().await.unwrap();
    assert!(request.contains("Host: 127.0.0.1:"), "{request}");
    let mut client = Client::connect(&server.url, trusting(Trust::Insecure))
        .await
        .unwrap();
    assert_eq!(client.snap().await.unwrap().stamp.map(|s| s.seq), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_without_trust_suggests_the_pin_the_server_printed() {
    let (identity, _dir) = tls_identity();
    let server = canned_tls("/snapshot", &identity, vec![jpeg_reply(1)]).await;
    match Client::connect(&server.url, ClientConfig::default()).await {
        Err(err) => {
            let text = edgecam::error_chain(&err);
            // Without CA certificates on this machine there is nothing to be signed by.
            if !text.contains("has no CA certificates") {
                assert!(
                    text.contains(&format!("give --pin {}", identity.fingerprint())),
                    "{text}"
                );
            }
        }
        Ok(_) => panic!("a self-signed certificate was trusted by the system's CAs"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_cut_off_without_close_notify_still_counts_when_whole() {
    let (identity, _dir) = tls_identity();
    let image = stamped_jpeg(24, 16, 5);
    // No Content-Length: the body ends where the connection does.
    let reply = Reply::Cut(response("image/jpeg", "", &image));
    let server = canned_tls("/snapshot", &identity, vec![reply]).await;
    let mut client = Client::connect(&server.url, trusting(Trust::Pin(identity.fingerprint())))
        .await
        .unwrap();
    let snap = client.snap().await.unwrap();
    assert_eq!(&snap.jpeg[..], &image[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_credentials_are_sent_and_a_401_says_what_to_do() {
    let (identity, _dir) = tls_identity();
    let mut server = canned_tls(
        "/snapshot",
        &identity,
        vec![unauthorized(), unauthorized(), jpeg_reply(9)],
    )
    .await;
    let pin = trusting(Trust::Pin(identity.fingerprint()));
    let mut client = Client::connect(&server.url, pin.clone()).await.unwrap();
    let err = client.snap().await.unwrap_err();
    let with_user = server.url.replace("https://", "https://USER@");
    assert_eq!(
        err.to_string(),
        format!(
            "{} asks for a user name and password (401); give the user in the URL, as \
             {with_user}, and set the password in EDGECAM_PASSWORD, or type it when asked",
            server.url
        )
    );
    assert!(
        !server
            .requests
            .recv()
            .await
            .unwrap()
            .contains("Authorization")
    );

    let url = server.url.replace("https://", "https://viewer@");
    let wrong = ClientConfig {
        password: Some(Password::new("wrong")),
        ..pin.clone()
    };
    let mut client = Client::connect(&url, wrong).await.unwrap();
    let err = client.snap().await.unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{url} refused the user name or password (401)")),
        "{err}"
    );
    let request = server.requests.recv().await.unwrap();
    // base64("viewer:wrong")
    assert!(
        request.contains("\r\nAuthorization: Basic dmlld2VyOndyb25n\r\n"),
        "{request}"
    );

    let right = ClientConfig {
        password: Some(Password::new("s3cret:with colon")),
        ..pin
    };
    let mut client = Client::connect(&url, right).await.unwrap();
    assert_eq!(client.snap().await.unwrap().stamp.map(|s| s.seq), Some(9));
    let request = server.requests.recv().await.unwrap();
    // base64("viewer:s3cret:with colon")
    assert!(
        request.contains("\r\nAuthorization: Basic dmlld2VyOnMzY3JldDp3aXRoIGNvbG9u\r\n"),
        "{request}"
    );
}

/// Runs `edgecam ARGS` to the end off the test's runtime, with `password` as
/// EDGECAM_PASSWORD (or without it).
async fn edgecam_with_password(args: Vec<String>, password: Option<&'static str>) -> Finished {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::support::Edgecam::spawn_with(&args, |command| {
            command.env_remove("EDGECAM_PASSWORD");
            if let Some(password) = password {
                command.env("EDGECAM_PASSWORD", password);
            }
        })
        .finish()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edgecam_snap_over_https_with_pin_user_and_password() {
    let (identity, _dir) = tls_identity();
    let out_dir = tempfile::tempdir().unwrap();
    let jpeg = out_dir.path().join("tls.jpg");
    let mut server = canned_tls("/snapshot", &identity, vec![jpeg_reply(4)]).await;
    let url = server.url.replace("https://", "https://viewer@");
    let args = vec![
        "snap".to_owned(),
        url.clone(),
        "--pin".to_owned(),
        identity
            .fingerprint()
            .to_string()
            .to_lowercase()
            .replace(':', ""),
        "-o".to_owned(),
        jpeg.to_str().unwrap().to_owned(),
    ];
    let out = edgecam_with_password(args.clone(), Some("pass")).await;
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("(24x16, "), "{}", out.stdout);
    assert_jpeg(&std::fs::read(&jpeg).unwrap(), 24, 16);
    let request = server.requests.recv().await.unwrap();
    // base64("viewer:pass")
    assert!(
        request.contains("\r\nAuthorization: Basic dmlld2VyOnBhc3M=\r\n"),
        "{request}"
    );

    // Without EDGECAM_PASSWORD and without a terminal there is no one to ask.
    let out = edgecam_with_password(args, None).await;
    insta::assert_snapshot!("error_user_without_password", failure(&out, &url));
}

#[test]
fn error_messages_about_https_flags() {
    let pin = Fingerprint([0xAB; 32]).to_string();
    let cases: [(&str, Vec<&str>); 5] = [
        (
            "password_in_url",
            vec!["snap", "https://viewer:hunter2@127.0.0.1:1/stream"],
        ),
        (
            "pin_without_https",
            vec!["snap", "http://127.0.0.1:1/stream", "--pin", &pin],
        ),
        (
            "insecure_with_legacy",
            vec!["stream", "127.0.0.1:1", "--insecure", "--frames", "1"],
        ),
        (
            "bad_pin",
            vec!["snap", "https://127.0.0.1:1/", "--pin", "12:34"],
        ),
        (
            "pin_and_insecure",
            vec!["snap", "https://127.0.0.1:1/", "--pin", &pin, "--insecure"],
        ),
    ];
    for (name, args) in cases {
        let out = edgecam(&args);
        assert!(!out.status.success(), "{out:?}");
        assert_eq!(out.stdout, "", "a failed command printed to stdout");
        insta::assert_snapshot!(
            format!("error_{name}"),
            out.stderr,
            &format!("edgecam {}", args.join(" "))
        );
    }
}
