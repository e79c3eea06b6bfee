//! HTTP on the legacy port, checked with the clients people use: curl for every route and
//! error, ffmpeg/ffprobe and GStreamer for the MJPEG stream and the snapshot, Prometheus's own
//! text parser for `/metrics`; and legacy and HTTP clients on one port at once.

use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{
    Raw, TINY_RECV_BUFFER, TestServer, WAIT, assert_increasing, assert_jpeg, config_with,
    have_tool, run, seq, solid_jpeg,
};

const CAMERA: &str = "sim:320x240@30";

/// An HTTP request's raw answer: head (as text) and whatever body came before the close.
async fn raw_request(addr: &str, request: &[u8]) -> (String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut all))
        .await
        .expect("the server did not close after answering")
        .unwrap();
    let end = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(&all)));
    let body = all.split_off(end);
    (String::from_utf8(all).unwrap(), body)
}

/// A minimal reader of our own multipart stream (whose parts all carry `Content-Length`).
struct Parts {
    stream: TcpStream,
    buf: BytesMut,
}

impl Parts {
    async fn open(addr: &str, path: &str) -> (Parts, String) {
        let stream = TcpStream::connect(addr).await.unwrap();
        Parts::request(stream, path).await
    }

    async fn request(mut stream: TcpStream, path: &str) -> (Parts, String) {
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut parts = Parts {
            stream,
            buf: BytesMut::new(),
        };
        let head = parts.until(b"\r\n\r\n").await;
        (parts, String::from_utf8(head.to_vec()).unwrap())
    }

    /// Bytes up to and including `end`, bounded by [`WAIT`].
    async fn until(&mut self, end: &[u8]) -> Bytes {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(at) = self.buf.windows(end.len()).position(|w| w == end) {
                    return self.buf.split_to(at + end.len()).freeze();
                }
                let n = self.stream.read_buf(&mut self.buf).await.unwrap();
                assert!(n > 0, "the stream ended");
            }
        })
        .await
        .expect("nothing in time")
    }

    /// The next part's JPEG.
    async fn next(&mut self) -> Bytes {
        let boundary = self.until(b"\r\n").await;
        assert_eq!(&boundary[..], b"--edgecam-boundary\r\n");
        let head = String::from_utf8(self.until(b"\r\n\r\n").await.to_vec()).unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .expect("a part without Content-Length")
            .parse()
            .unwrap();
        assert!(head.contains("Content-Type: image/jpeg\r\n"), "{head}");
        assert!(head.contains("X-Timestamp: "), "{head}");
        while self.buf.len() < len + 2 {
            let n = tokio::time::timeout(WAIT, self.stream.read_buf(&mut self.buf))
                .await
                .expect("no part in time")
                .unwrap();
            assert!(n > 0, "the stream ended inside a part");
        }
        let jpeg = self.buf.split_to(len).freeze();
        assert_eq!(
            &self.buf[..2],
            b"\r\n",
            "the part does not end where it said"
        );
        self.buf.advance(2);
        jpeg
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_gets_every_route_and_every_error() {
    if !have_tool("curl") {
        return;
    }
    let server = TestServer::start(CAMERA).await;
    let base = format!("http://{}", server.addr);
    let mut table = String::new();
    for (what, args) in [
        ("page", vec!["/"]),
        ("stream", vec!["/stream", "--max-time", "1"]),
        (
            "mjpg-streamer stream",
            vec!["/?action=stream&nonce=1", "--max-time", "1"],
        ),
        ("snapshot", vec!["/snapshot"]),
        ("mjpg-streamer snapshot", vec!["/?action=snapshot"]),
        ("snapshot HEAD", vec!["/snapshot", "--head"]),
        ("stream HEAD", vec!["/stream", "--head"]),
        ("state", vec!["/state"]),
        ("metrics", vec!["/metrics"]),
        ("options", vec!["/", "-X", "OPTIONS"]),
        ("unknown path", vec!["/nope"]),
        ("POST", vec!["/stream", "-X", "POST"]),
    ] {
        let url = format!("{base}{}", args[0]);
        let mut curl = vec![
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{content_type}",
            &url,
        ];
        curl.extend(&args[1..]);
        let out = run("curl", &curl).await;
        // curl's --max-time ends a stream with status 28, after the head arrived.
        let code = out.status.code();
        assert!(matches!(code, Some(0 | 28)), "{what}: {out:?}");
        table.push_str(&format!("{what:<24} {}\n", out.stdout));
    }
    insta::assert_snapshot!(table);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snapshot.jpg");
    let url = format!("{base}/snapshot");
    let snapshot = run("curl", &["-s", "-o", file.to_str().unwrap(), &url]).await;
    assert!(snapshot.status.success(), "{snapshot:?}");
    assert_jpeg(&std::fs::read(&file).unwrap(), 320, 240);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_status_and_a_one_line_reason() {
    let server = TestServer::start(CAMERA).await;
    let long = format!("GET / HTTP/1.1\r\nX-Long: {}\r\n\r\n", "a".repeat(9000));
    for (request, status) in [
        (&b"GET /\r\n\r\n"[..], "400 Bad Request"),
        (b"GET / HTTP/9\r\n\r\n", "400 Bad Request"),
        (long.as_bytes(), "431 Request Header Fields Too Large"),
        (b"HEAD /nope HTTP/1.0\r\n\r\n", "404 Not Found"),
        (b"GET /stream HTTP/1.0\r\n\r\nDELETE", "200 OK"),
    ] {
        let (head, body) = if status == "200 OK" {
            let stream = TcpStream::connect(&server.addr).await.unwrap();
            let (mut parts, head) = Parts::request(stream, "/stream").await;
            assert_jpeg(&parts.next().await, 320, 240);
            (head, Vec::new())
        } else {
            raw_request(&server.addr, request).await
        };
        assert!(
            head.starts_with(&format!("HTTP/1.0 {status}\r\n")),
            "{:?} got {head}",
            String::from_utf8_lossy(&request[..request.len().min(30)])
        );
        if status != "200 OK" {
            let text = String::from_utf8(body).unwrap();
            assert_eq!(text.lines().count(), 1, "{text:?}");
            assert!(text.starts_with(&status[..3]), "{text:?}");
        }
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_sent_byte_by_byte_forever_is_dropped() {
    let config = config_with(|c| c.session.handshake_timeout = Some(Duration::from_millis(500)));
    let server = TestServer::with_config(CAMERA, config).await;
    let mut stream = TcpStream::connect(&server.addr).await.unwrap();
    let started = Instant::now();
    let dropped = tokio::time::timeout(WAIT, async {
        for byte in b"GET / HTTP/1.1\r\nX-Slow: "
            .iter()
            .chain(std::iter::repeat(&b'a'))
        {
            if stream.write_all(&[*byte]).await.is_err() {
                return;
            }
            let mut peek = [0u8; 1];
            match tokio::time::timeout(Duration::from_millis(20), stream.read(&mut peek)).await {
                Ok(Ok(0) | Err(_)) => return,
                Ok(Ok(_)) => panic!("the server answered a head that never ended"),
                Err(_) => {}
            }
        }
    })
    .await;
    assert!(dropped.is_ok(), "still connected after {WAIT:?}");
    assert!(started.elapsed() >= Duration::from_millis(500));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_and_http_clients_share_the_port_and_the_frames() {
    let server = TestServer::start(CAMERA).await;
    let mut legacy = server.streamer().await;
    let (mut http, head) = Parts::open(&server.addr, "/stream").await;
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    assert!(
        head.contains("Content-Type: multipart/x-mixed-replace;boundary=edgecam-boundary\r\n"),
        "{head}"
    );
    assert!(head.contains("Cache-Control: no-store"), "{head}");
    let (mut legacy_seqs, mut http_seqs) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        let (a, b) = tokio::join!(legacy.frame(), http.next());
        assert_jpeg(&b, 320, 240);
        legacy_seqs.push(seq(&a));
        http_seqs.push(seq(&b));
    }
    assert_increasing(&legacy_seqs);
    assert_increasing(&http_seqs);
    // The same frames: one encoding, two framings.
    let common = http_seqs.iter().filter(|s| legacy_seqs.contains(s)).count();
    assert!(common >= 5, "legacy {legacy_seqs:?} http {http_seqs:?}");
    let encoded = server.stats().encoded;
    assert!(
        encoded <= *legacy_seqs.iter().chain(&http_seqs).max().unwrap() + 2,
        "frames encoded per client? {:?}",
        server.stats()
    );

    let (head, body) = raw_request(&server.addr, b"GET /state HTTP/1.1\r\n\r\n").await;
    assert!(head.contains("Content-Type: application/json"), "{head}");
    let state: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let protocols: Vec<&str> = state["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["protocol"].as_str().unwrap())
        .collect();
    assert!(protocols.contains(&"legacy"), "{state}");
    assert!(protocols.contains(&"http"), "{state}");
    assert_eq!(state["camera"]["width"], 320);
    assert_eq!(state["camera"]["online"], true);
    assert!(state["frames"]["sent"].as_u64().unwrap() >= 20, "{state}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_http_client_slows_no_one_and_is_dropped() {
    let config = config_with(|c| c.send_timeout = Duration::from_secs(1));
    let server = TestServer::with_config("sim:640x480@30", config).await;
    let stalled = Raw::connect_with_recv_buffer(&server.addr, TINY_RECV_BUFFER).await;
    let (_stalled, _) = Parts::request(stalled.stream, "/stream").await;
    let (mut reader, _) = Parts::open(&server.addr, "/stream").await;
    let mut legacy = server.streamer().await;
    let span = Duration::from_secs(2);
    let started = Instant::now();
    let (mut http_frames, mut legacy_frames) = (0, 0);
    while started.elapsed() < span {
        let (a, b) = tokio::join!(reader.next(), legacy.frame());
        assert!(!a.is_empty() && !b.is_empty());
        http_frames += 1;
        legacy_frames += 1;
    }
    // 30 fps for 2 s; well under it only if the stalled client held the others up.
    assert!(
        http_frames >= 36 && legacy_frames >= 36,
        "{http_frames} {legacy_frames}"
    );
    let deadline = Instant::now() + WAIT;
    while server.stats().dropped == 0 {
        assert!(
            Instant::now() < deadline,
            "the stalled client was not dropped"
        );
        reader.next().await;
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffprobe_and_ffmpeg_read_the_stream_and_the_snapshot() {
    if !have_tool("ffprobe") || !have_tool("ffmpeg") {
        return;
    }
    let server = TestServer::start(CAMERA).await;
    let url = format!("http://{}/stream", server.addr);
    let probe = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-read_intervals",
            "%+#20",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames",
            "-of",
            "csv=p=0",
            &url,
        ],
    )
    .await;
    assert!(probe.status.success(), "{probe:?}");
    let fields: Vec<String> = probe.stdout.trim().split(',').map(str::to_owned).collect();
    assert_eq!(&fields[..3], ["mjpeg", "320", "240"], "{fields:?}");
    let frames: u32 = fields[3].parse().unwrap();
    assert!(frames >= 20, "ffprobe read {frames} frames");

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("snap.png");
    let snap = format!("http://{}/snapshot", server.addr);
    let ffmpeg = run(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-i",
            &snap,
            "-frames:v",
            "1",
            out.to_str().unwrap(),
        ],
    )
    .await;
    assert!(ffmpeg.status.success(), "{ffmpeg:?}");
    let probe = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-show_entries",
            "stream=width,height",
            "-of",
            "csv=p=0",
            out.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(probe.stdout.trim(), "320,240");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gstreamer_decodes_thirty_frames_of_the_stream() {
    if !have_tool("gst-launch-1.0") {
        return;
    }
    let server = TestServer::start(CAMERA).await;
    let location = format!("location=http://{}/stream", server.addr);
    let gst = run(
        "gst-launch-1.0",
        &[
            "-q",
            "souphttpsrc",
            &location,
            "!",
            "multipartdemux",
            "!",
            "jpegdec",
            "!",
            "fakesink",
            "num-buffers=30",
        ],
    )
    .await;
    assert!(gst.status.success(), "{gst:?}");
    assert!(server.stats().frames_sent >= 30, "{:?}", server.stats());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_parses_the_metrics() {
    if !have_tool("python3") {
        return;
    }
    let has_parser = run("python3", &["-c", "import prometheus_client.parser"]).await;
    if !has_parser.status.success() {
        assert!(
            std::env::var_os("CI").is_none(),
            "python3's prometheus_client is not installed, and CI must have it (.ci/run installs it)"
        );
        println!("skipped: python3 -m pip install prometheus-client to run this test");
        return;
    }
    let server = TestServer::start(CAMERA).await;
    let mut client = server.streamer().await;
    for _ in 0..5 {
        client.frame().await;
    }
    let (head, body) = raw_request(&server.addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("metrics.txt");
    std::fs::write(&file, &body).unwrap();
    // Each family with its type and samples, as Prometheus's own parser reads them.
    let script = "import sys\n\
        from prometheus_client.parser import text_string_to_metric_families as parse\n\
        for f in parse(open(sys.argv[1]).read()):\n\
        \x20   print(f.name, f.type, ' '.join(sorted(set(s.name for s in f.samples))))\n";
    let parsed = run("python3", &["-c", script, file.to_str().unwrap()]).await;
    assert!(parsed.status.success(), "{parsed:?}");
    let families = parsed.stdout;
    insta::assert_snapshot!(families);
    let sent: f64 = String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix("edgecam_frames_sent_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(sent >= 5.0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_camera_stopped_gets_the_newest_frame_again_after_a_second() {
    // The camera stalls for 3 s after its 10th frame.
    let server = TestServer::start("sim:320x240@30#stall_after=10&stall_ms=3000").await;
    let (mut stream, _) = Parts::open(&server.addr, "/stream").await;
    let mut last = (seq(&stream.next().await), Instant::now());
    let repeated = tokio::time::timeout(WAIT, async {
        loop {
            let frame = stream.next().await;
            let now = Instant::now();
            if seq(&frame) == last.0 {
                return now - last.1;
            }
            last = (seq(&frame), now);
        }
    })
    .await
    .expect("the newest frame was never sent again");
    assert!(
        repeated >= Duration::from_millis(900) && repeated <= Duration::from_millis(1600),
        "sent again after {repeated:?}, expected about a second"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_viewer_that_goes_away_is_noticed_without_a_frame_to_write() {
    if !have_tool("sh") {
        return;
    }
    // A camera that delivers one frame (opening waits for it) and then nothing: a snapshot
    // asked for afterwards waits, with nothing to write.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("one.jpg"), solid_jpeg([9, 9, 9], 64, 48)).unwrap();
    let camera = format!(
        "exec:sh -c \"cat '{}/one.jpg'; exec sleep 60\"#timeout=90",
        dir.path().display()
    );
    let server = TestServer::start(&camera).await;
    let mut waiting = TcpStream::connect(&server.addr).await.unwrap();
    waiting
        .write_all(b"GET /snapshot HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    // Until /state lists it as HTTP, its request has not been read.
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, body) = raw_request(&server.addr, b"GET /state HTTP/1.1\r\n\r\n").await;
        let state: serde_json::Value = serde_json::from_slice(&body).unwrap();
        if state["clients"][0]["protocol"] == "http" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the snapshot request was not read: {state}"
        );
    }
    drop(waiting);
    server
        .wait_for_stats("the viewer that went away to be let go", |s| s.clients == 0)
        .await;
    server.shutdown().await;
}
