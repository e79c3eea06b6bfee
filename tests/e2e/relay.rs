//! The README's "many viewers" recipe, run for real: ffmpeg reads `/stream`, encodes H.264 and
//! publishes it to nginx's RTMP module, and a viewer (ffprobe) reads it back from nginx. Needs
//! nginx with `libnginx-mod-rtmp`, ffmpeg (with libx264) and ffprobe; `.ci/run` installs them.

use std::path::Path;
use std::time::Duration;

use crate::support::*;

/// Where Debian's `libnginx-mod-rtmp` puts the module.
const RTMP_MODULE: &str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";

/// The longest a viewer may take to read the relayed stream back (nginx waits for the
/// publisher, and ffprobe probes before it counts).
const VIEWER_WAIT: Duration = Duration::from_secs(30);

/// The nginx configuration the README gives, listening on `port` (and keeping its pid file in
/// `dir`, so that no system path is written).
fn nginx_conf(dir: &Path, port: u16) -> String {
    format!(
        "daemon off;\n\
         master_process off;\n\
         error_log stderr info;\n\
         pid {}/nginx.pid;\n\
         load_module {RTMP_MODULE};\n\
         events {{}}\n\
         rtmp {{ server {{ listen 127.0.0.1:{port}; application live {{ live on; }} }} }}\n",
        dir.display()
    )
}

/// A loopback port nothing listens on now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Waits (bounded by [`WAIT`]) until something accepts connections on `port`; panics with
/// `nginx`'s output if it exits first.
async fn wait_for_listener(nginx: &mut Process, port: u16) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(nginx.running(), "nginx exited before it listened");
        assert!(
            tokio::time::Instant::now() < deadline,
            "nginx did not listen on 127.0.0.1:{port} within {WAIT:?}"
        );
        // Polling: nothing tells us when nginx has bound its port.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_relayed_through_nginx_rtmp_reaches_a_viewer_as_h264_of_the_right_size() {
    if !have_tool("ffmpeg") || !have_tool("ffprobe") {
        return;
    }
    // Debian's nginx is in /usr/sbin, which a user's PATH often lacks.
    let Some(nginx) = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .map(Path::new)
        .find(|path| path.is_file())
    else {
        have(false, "nginx not installed (/usr/sbin/nginx)");
        return;
    };
    if !have(
        Path::new(RTMP_MODULE).is_file(),
        &format!("nginx's RTMP module not installed ({RTMP_MODULE}; libnginx-mod-rtmp)"),
    ) {
        return;
    }
    let server = TestServer::start("sim:320x240@15").await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = dir.path().join("nginx.conf");
    std::fs::write(&conf, nginx_conf(dir.path(), port)).unwrap();
    let mut command = std::process::Command::new(nginx);
    command
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf)
        .args(["-e", "stderr"]);
    let mut nginx = Process::spawn("nginx", command);
    wait_for_listener(&mut nginx, port).await;

    let rtmp = format!("rtmp://127.0.0.1:{port}/live/edgecam");
    let stream = format!("http://{}/stream", server.addr);
    let mut command = std::process::Command::new("ffmpeg");
    command
        .args(["-loglevel", "error", "-f", "mjpeg", "-i", &stream])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
        ])
        .args(["-pix_fmt", "yuv420p", "-g", "30", "-f", "flv", &rtmp]);
    let mut publisher = Process::spawn("ffmpeg (the publisher)", command);

    let mut command = std::process::Command::new("ffprobe");
    command
        .args(["-v", "error", "-rw_timeout", "10000000", "-count_frames"])
        .args(["-read_intervals", "%+3", "-of", "json"])
        .args([
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames",
        ])
        .arg(&rtmp);
    let viewer = Process::spawn("ffprobe (the viewer)", command)
        .finish(VIEWER_WAIT)
        .await;
    let publishing = publisher.running();
    let (publisher, nginx) = (publisher.stop(), nginx.stop());
    let logs = format!(
        "ffprobe: {}\nffmpeg: {}\nnginx: {}",
        viewer.stderr, publisher.stderr, nginx.stderr
    );
    assert!(publishing, "the publisher stopped early:\n{logs}");
    assert!(viewer.status.success(), "ffprobe failed:\n{logs}");
    let seen: serde_json::Value = serde_json::from_str(&viewer.stdout)
        .unwrap_or_else(|e| panic!("ffprobe printed no JSON ({e}): {}\n{logs}", viewer.stdout));
    let video = &seen["streams"][0];
    assert_eq!(video["codec_name"], "h264", "{seen}\n{logs}");
    assert_eq!(
        (&video["width"], &video["height"]),
        (&320.into(), &240.into())
    );
    let frames: u64 = video["nb_read_frames"].as_str().unwrap().parse().unwrap();
    assert!(
        frames >= 10,
        "the viewer read {frames} frames: {seen}\n{logs}"
    );
    println!("relayed through nginx-rtmp: {frames} frames of h264 320x240 read back");
    server.shutdown().await;
}
