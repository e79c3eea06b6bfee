//! What the server answers on HTTP besides frames: the page, `/state` (JSON) and `/metrics`
//! (Prometheus text), read off the server's counters.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::Duration;

use edgecam_core::http::Status;
use edgecam_core::http::request::Route;
use edgecam_core::http::response;

use super::{Shared, lock};

/// The page at `/`: no external assets, so it works on a LAN without internet.
const PAGE: &str = include_str!("page.html");

/// The whole response to a request for `route` (the page, `/state` or `/metrics`) from client
/// `asking`.
pub(super) fn render(shared: &Shared, route: Route, head_only: bool, asking: u64) -> Vec<u8> {
    let (content_type, body) = match route {
        Route::Page => ("text/html; charset=utf-8", PAGE.to_owned()),
        Route::State => ("application/json", state(shared, asking)),
        Route::Metrics => ("text/plain; version=0.0.4; charset=utf-8", metrics(shared)),
        // Frames are the session's to send, not a rendered body.
        Route::Stream { .. } | Route::Snapshot => {
            return response::error(Status::NotFound, "frames are not rendered");
        }
    };
    response::whole(Status::Ok, content_type, body.as_bytes(), head_only)
}

/// Frames per second over the last second, server-wide and per client, sampled by
/// [`rates_loop`].
#[derive(Debug, Default)]
pub(super) struct Rates {
    captured: f64,
    encoded: f64,
    sent: f64,
    per_client: BTreeMap<u64, f64>,
    last: (u64, u64, u64),
    last_client: BTreeMap<u64, u64>,
}

/// Samples the counters once a second into `shared.rates`, until the server stops.
pub(super) async fn rates_loop(shared: std::sync::Arc<Shared>) {
    const EVERY: Duration = Duration::from_secs(1);
    let mut ticker = tokio::time::interval(EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut at = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = shared.stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let secs = at.elapsed().as_secs_f64().max(1e-3);
        at = tokio::time::Instant::now();
        let now = (
            shared.capture.captured.load(Ordering::Relaxed),
            shared.capture.encoded.load(Ordering::Relaxed),
            shared.frames_sent.load(Ordering::Relaxed),
        );
        let clients: BTreeMap<u64, u64> = lock(&shared.clients)
            .iter()
            .map(|(id, c)| (*id, c.sent.load(Ordering::Relaxed)))
            .collect();
        let mut rates = lock(&shared.rates);
        let rate = |now: u64, before: u64| now.saturating_sub(before) as f64 / secs;
        rates.captured = rate(now.0, rates.last.0);
        rates.encoded = rate(now.1, rates.last.1);
        rates.sent = rate(now.2, rates.last.2);
        rates.per_client = clients
            .iter()
            .map(|(id, sent)| {
                let before = rates.last_client.get(id).copied().unwrap_or(0);
                (*id, rate(*sent, before))
            })
            .collect();
        rates.last = now;
        rates.last_client = clients;
    }
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// `/state`: the camera, rates, every client but the one `asking`, uptime and version.
fn state(shared: &Shared, asking: u64) -> String {
    let caps = &shared.camera.capabilities;
    let online = !shared.capture.offline.load(Ordering::Relaxed);
    let latest = shared.frames.borrow().as_ref().map(|f| {
        serde_json::json!({
            "seq": f.seq,
            "captured_at_us": f.captured_at.0,
            "bytes": f.jpeg.len(),
            "width": f.width,
            "height": f.height,
        })
    });
    let rates = lock(&shared.rates);
    let clients: Vec<serde_json::Value> = lock(&shared.clients)
        .iter()
        .filter(|(id, _)| **id != asking)
        .map(|(id, c)| {
            serde_json::json!({
                "peer": c.peer,
                "protocol": c.protocol.get().map_or("pending", |p| p.name()),
                "tls": c.tls.load(Ordering::Relaxed),
                "fps": round(rates.per_client.get(id).copied().unwrap_or(0.0)),
                "sent": c.sent.load(Ordering::Relaxed),
                "skipped": c.skipped.load(Ordering::Relaxed),
                "connected_seconds": round(c.connected.elapsed().as_secs_f64()),
            })
        })
        .collect();
    let state = serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": round(shared.started.elapsed().as_secs_f64()),
        "now_us": shared.clock.now().0,
        "camera": {
            "name": shared.camera.name,
            "width": caps.width,
            "height": caps.height,
            "format": caps.format.to_string(),
            "fps": caps.fps,
            "online": online,
            "status": if online { "online" } else { "NO SIGNAL" },
        },
        "fps": {
            "captured": round(rates.captured),
            "encoded": round(rates.encoded),
            "sent": round(rates.sent),
        },
        "frames": {
            "captured": shared.capture.captured.load(Ordering::Relaxed),
            "encoded": shared.capture.encoded.load(Ordering::Relaxed),
            "sent": shared.frames_sent.load(Ordering::Relaxed),
            "skipped": shared.skipped.load(Ordering::Relaxed),
        },
        "latest": latest,
        "clients": clients,
    });
    let mut text = state.to_string();
    text.push('\n');
    text
}

/// One metric family in the Prometheus text format.
struct Metrics(String);

impl Metrics {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(
            self.0,
            "# HELP edgecam_{name} {help}\n# TYPE edgecam_{name} {kind}"
        );
    }

    fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        let _ = writeln!(self.0, "edgecam_{name}{labels} {value}");
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "counter", help);
        self.sample(name, "", value);
    }
}

/// `/metrics`: counters, clients by protocol, and the encode-time histogram.
fn metrics(shared: &Shared) -> String {
    let capture = &shared.capture;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let mut m = Metrics(String::new());
    m.counter(
        "frames_captured_total",
        "Frames the camera delivered.",
        load(&capture.captured),
    );
    m.counter(
        "frames_encoded_total",
        "Frames encoded or passed through, once each however many clients get them.",
        load(&capture.encoded),
    );
    m.counter(
        "frames_sent_total",
        "Frames written to clients, all clients together.",
        load(&shared.frames_sent),
    );
    m.counter(
        "bytes_sent_total",
        "Bytes written to clients, framing included.",
        load(&shared.bytes_sent),
    );
    m.counter(
        "frames_skipped_total",
        "Frames streaming clients did not get because they were behind.",
        load(&shared.skipped),
    );
    m.counter(
        "clients_dropped_total",
        "Clients dropped for not taking a frame in time or a failed connection.",
        load(&shared.dropped),
    );
    m.counter(
        "clients_refused_total",
        "Connections closed at once because the server was full.",
        load(&shared.refused),
    );
    m.counter(
        "unknown_bytes_total",
        "Legacy command bytes that were not commands.",
        load(&shared.unknown_bytes),
    );
    m.counter(
        "camera_errors_total",
        "Frames lost to camera or encoding errors.",
        load(&capture.errors),
    );
    m.counter(
        "camera_outages_total",
        "Times the camera went away.",
        load(&capture.outages),
    );
    m.counter(
        "no_signal_frames_total",
        "NO SIGNAL pictures sent while the camera was gone.",
        load(&capture.no_signal),
    );
    m.family(
        "camera_online",
        "gauge",
        "1 while the camera delivers, 0 while it is gone.",
    );
    m.sample(
        "camera_online",
        "",
        u8::from(!capture.offline.load(Ordering::Relaxed)),
    );
    let mut by_protocol = BTreeMap::from([("http", 0u64), ("legacy", 0), ("pending", 0)]);
    for c in lock(&shared.clients).values() {
        *by_protocol
            .entry(c.protocol.get().map_or("pending", |p| p.name()))
            .or_default() += 1;
    }
    m.family(
        "clients",
        "gauge",
        "Clients connected now, by protocol (pending: nothing sent yet).",
    );
    for (protocol, n) in by_protocol {
        m.sample("clients", &format!("{{protocol=\"{protocol}\"}}"), n);
    }
    let encode = capture.encode_time.snapshot();
    m.family(
        "encode_seconds",
        "histogram",
        "Time to encode (or stamp) one frame.",
    );
    for (le, n) in &encode.buckets {
        let le = if le.is_infinite() {
            "+Inf".to_owned()
        } else {
            le.to_string()
        };
        m.sample("encode_seconds_bucket", &format!("{{le=\"{le}\"}}"), n);
    }
    m.sample("encode_seconds_sum", "", encode.sum_seconds);
    m.sample("encode_seconds_count", "", encode.count);
    m.family(
        "uptime_seconds",
        "gauge",
        "Seconds since the server started.",
    );
    m.sample("uptime_seconds", "", shared.started.elapsed().as_secs_f64());
    m.family("build_info", "gauge", "The running version.");
    m.sample(
        "build_info",
        &format!("{{version=\"{}\"}}", env!("CARGO_PKG_VERSION")),
        1,
    );
    m.0
}
