//! The client: single shots and streams from an edgecam server or a legacy Python server
//! (`HOST[:PORT]`, the legacy protocol), or from any MJPEG server (`http://HOST[:PORT]/PATH`,
//! or `https://[USER@]HOST[:PORT]/PATH` with its certificate checked as [`Trust`] says).
//!
//! Against a legacy server (`legacy: true`) the client never lets two commands share a TCP
//! segment (the old server compares whole `recv` chunks with one command), and never sends `2`
//! (which stops the old server for everyone). In both modes, frames still in flight after `q`
//! are drained, so the next single shot is not answered by a stale streamed frame.
//!
//! Over HTTP there are no commands: a single shot is the first JPEG of a fresh `GET` (a
//! single image, or the first part of a stream), a stream is one `GET` read part by part,
//! and stopping closes the connection, so nothing is ever left to drain. A URL that serves
//! one image per request is fetched again for each frame of a stream.

use std::time::Duration;

use bytes::Bytes;
use edgecam_core::codec::{Command, FrameDecoder};
use edgecam_core::frame::Frame;
use edgecam_core::http::reader::{BodyKind, ReaderConfig};
use edgecam_core::jpeg::{self, Stamp};
use edgecam_core::time::Timestamp;
use edgecam_core::transport::TransportError;
use edgecam_transport_tcp::FrameStream;
use edgecam_transport_tcp::http::{GetConfig, HttpError, HttpStream, HttpUrl, Password, UrlError};
use edgecam_transport_tcp::tls::{self, TlsError, Trust};
use thiserror::Error;
use tokio::time::Instant;

use crate::clock::wall_now;
use edgecam_core::limit::{RateLimit, Verdict};

#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    /// Talk to a legacy Python server: one command per TCP segment.
    pub legacy: bool,
    pub connect_timeout: Duration,
    /// How long to wait for a frame before giving up.
    pub frame_timeout: Duration,
    /// The largest frame length accepted from the server.
    pub max_frame_len: u32,
    /// How an `https://` server's certificate is checked; anything but `System` is for
    /// `https://` sources only.
    pub trust: Trust,
    /// The password of the user an `http[s]://USER@...` source names.
    pub password: Option<Password>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            legacy: false,
            connect_timeout: Duration::from_secs(5),
            frame_timeout: Duration::from_secs(5),
            max_frame_len: edgecam_core::codec::DEFAULT_MAX_FRAME_LEN,
            trust: Trust::System,
            password: None,
        }
    }
}

/// Pause between commands in legacy mode, so the old server reads each in its own `recv`.
const LEGACY_COMMAND_GAP: Duration = Duration::from_millis(50);
/// Bounds on how long the stream must stay quiet after `q` before it counts as drained.
const DRAIN_QUIET_MIN: Duration = Duration::from_millis(250);
const DRAIN_QUIET_MAX: Duration = Duration::from_secs(2);
/// A server that keeps sending after `q` for this long is not going to stop.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum ClientError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(
        "{flag} says how to check an https:// server's certificate, but {addr} is not an \
         https:// URL; drop {flag}, or give the server's https:// URL"
    )]
    TrustWithoutHttps { flag: &'static str, addr: String },
    #[error(
        "--legacy speaks the legacy server's TCP protocol, but {url} is an HTTP URL; \
         drop --legacy, or give the legacy server's HOST:PORT"
    )]
    LegacyOverHttp { url: String },
    #[error("{peer} closed the connection")]
    Closed { peer: String },
    #[error(
        "{peer} closed the connection before sending anything: the server may be full (too \
         many clients, or too many from this address), refuse this address (--allow), or want \
         a password the legacy protocol cannot send (--auth-file); its log says which"
    )]
    ClosedBeforeAnything { peer: String },
    #[error("{peer} kept sending frames for {seconds} s after being told to stop")]
    DoesNotStop { peer: String, seconds: u64 },
    #[error(
        "no valid JPEG from {peer} within {seconds} s: {invalid} payloads were not JPEGs \
         (the first {first}); is this an edgecam or legacy camera server?"
    )]
    NoValidFrame {
        peer: String,
        seconds: f64,
        invalid: u64,
        /// What the first invalid payload looked like: "was empty" or "began 55 6E 6B 6E".
        first: String,
    },
}

/// "was empty", or the first bytes of `payload` in hex ("began FF D8 FF E0 ..., 1234 bytes").
fn describe_payload(payload: &[u8]) -> String {
    if payload.is_empty() {
        return "was empty".to_owned();
    }
    let head: Vec<String> = payload.iter().take(8).map(|b| format!("{b:02X}")).collect();
    let more = if payload.len() > 8 { " ..." } else { "" };
    format!("began {}{more}, {} bytes", head.join(" "), payload.len())
}

/// One frame as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub jpeg: Bytes,
    /// The sequence number and capture time edgecam stamps into its frames; `None` from a
    /// legacy server.
    pub stamp: Option<Stamp>,
    pub received_at: Timestamp,
}

impl Received {
    /// As a [`Frame`]: size from the JPEG's SOF marker, sequence number and capture time from
    /// the stamp, or `fallback_seq` and the receive time for unstamped (legacy) frames.
    pub fn into_frame(self, fallback_seq: u64) -> Frame {
        let (width, height) = jpeg::dimensions(&self.jpeg).unwrap_or((0, 0));
        Frame {
            width,
            height,
            seq: self.stamp.map_or(fallback_seq, |s| s.seq),
            captured_at: self.stamp.map_or(self.received_at, |s| s.captured_at),
            jpeg: self.jpeg,
        }
    }
}

/// The connection a [`Client`] talks over.
#[derive(Debug)]
enum Conn {
    Legacy(FrameStream),
    Http(Box<HttpConn>),
}

/// An `http[s]://` source: the URL, how to ask it, and the response being read, if any.
#[derive(Debug)]
struct HttpConn {
    url: HttpUrl,
    get: GetConfig,
    stream: Option<HttpStream>,
    /// Parts the current response's reader skipped, already counted as invalid.
    skipped_seen: u64,
    /// Whether the log said that this URL serves single images.
    said_single: bool,
}

/// What [`Client::next_payload`] got before the deadline.
enum Next {
    Payload(Bytes),
    TimedOut,
}

const USER_AGENT: &str = concat!("edgecam/", env!("CARGO_PKG_VERSION"));

#[derive(Debug)]
pub struct Client {
    conn: Conn,
    peer: String,
    config: ClientConfig,
    last_command: Option<Instant>,
    last_frame: Option<Instant>,
    /// Smoothed time between streamed frames, to size the drain after `q`.
    frame_interval: Option<Duration>,
    invalid_frames: u64,
    /// Warnings about invalid payloads: a few, then one line a second.
    invalid_warnings: RateLimit,
}

impl Client {
    /// Connects to `source`: `HOST:PORT` for the legacy protocol, or an `http[s]://` URL,
    /// which is asked for at once (so that a wrong URL fails here).
    pub async fn connect(source: &str, config: ClientConfig) -> Result<Self, ClientError> {
        check_trust(source, &config.trust)?;
        let (conn, peer) = match HttpUrl::parse_source(source)? {
            Some(url) => {
                if config.legacy {
                    return Err(ClientError::LegacyOverHttp {
                        url: url.to_string(),
                    });
                }
                let get = get_config(&url, &config)?;
                let mut http = Box::new(HttpConn {
                    url,
                    get,
                    stream: None,
                    skipped_seen: 0,
                    said_single: false,
                });
                http.open().await?;
                let peer = http.url.to_string();
                (Conn::Http(http), peer)
            }
            None => {
                let stream = FrameStream::connect(
                    source,
                    config.connect_timeout,
                    FrameDecoder::new(config.max_frame_len),
                )
                .await?;
                let peer = stream.peer().to_owned();
                (Conn::Legacy(stream), peer)
            }
        };
        Ok(Client {
            conn,
            peer,
            config,
            last_command: None,
            last_frame: None,
            frame_interval: None,
            invalid_frames: 0,
            invalid_warnings: RateLimit::repeats(),
        })
    }

    /// The server's address, or the URL.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Payloads that were not JPEG images and were skipped.
    pub fn invalid_frames(&self) -> u64 {
        self.invalid_frames
    }

    /// Sends one command. Over HTTP there are none: nothing is sent.
    pub async fn send(&mut self, cmd: Command) -> Result<(), ClientError> {
        let Conn::Legacy(stream) = &mut self.conn else {
            return Ok(());
        };
        if self.config.legacy
            && let Some(last) = self.last_command
        {
            tokio::time::sleep_until(last + LEGACY_COMMAND_GAP).await;
        }
        stream.send(&[cmd.byte()]).await?;
        self.last_command = Some(Instant::now());
        Ok(())
    }

    /// One single shot: `0`, the frame, then `1`; over HTTP the first JPEG of a response,
    /// whose connection is closed then.
    pub async fn snap(&mut self) -> Result<Received, ClientError> {
        if let Conn::Http(http) = &mut self.conn {
            if http.stream.is_none() {
                http.open().await?;
            }
            let frame = self.next_frame().await;
            self.close_http();
            return frame;
        }
        self.send(Command::Single).await?;
        let frame = self.next_frame().await?;
        self.send(Command::Confirm).await?;
        Ok(frame)
    }

    pub async fn start_stream(&mut self) -> Result<(), ClientError> {
        self.frame_interval = None;
        self.last_frame = None;
        if let Conn::Http(http) = &mut self.conn {
            if http.stream.is_none() {
                http.open().await?;
            }
            return Ok(());
        }
        self.send(Command::Stream).await
    }

    /// Closes the HTTP response being read, counting what its reader skipped.
    fn close_http(&mut self) {
        if let Conn::Http(http) = &mut self.conn
            && let Some(stream) = http.stream.take()
        {
            self.invalid_frames += stream.skipped_parts() - http.skipped_seen;
            http.skipped_seen = 0;
        }
    }

    /// Sends `q` and reads away the frames still in flight; returns how many there were.
    /// Over HTTP it closes the connection: nothing is in flight after that.
    pub async fn stop_stream(&mut self) -> Result<u64, ClientError> {
        if matches!(self.conn, Conn::Http(_)) {
            self.close_http();
            return Ok(0);
        }
        self.send(Command::Stop).await?;
        let Conn::Legacy(stream) = &mut self.conn else {
            return Ok(0);
        };
        let quiet = self
            .frame_interval
            .map_or(DRAIN_QUIET_MIN, |i| i * 2)
            .clamp(DRAIN_QUIET_MIN, DRAIN_QUIET_MAX);
        let started = Instant::now();
        let mut drained = 0;
        loop {
            match stream.next_frame_within(quiet).await {
                Ok(Some(_)) => drained += 1,
                Ok(None) => {
                    return Err(ClientError::Closed {
                        peer: self.peer.clone(),
                    });
                }
                Err(TransportError::Timeout { .. }) => return Ok(drained),
                Err(e) => return Err(e.into()),
            }
            if started.elapsed() > DRAIN_LIMIT {
                return Err(ClientError::DoesNotStop {
                    peer: self.peer.clone(),
                    seconds: DRAIN_LIMIT.as_secs(),
                });
            }
        }
    }

    /// The next JPEG frame within the frame timeout, however many payloads that are not JPEG
    /// images come first (they are counted and skipped, and warned about a few times, then
    /// once a second). When only invalid payloads came in that time, the error says so.
    pub async fn next_frame(&mut self) -> Result<Received, ClientError> {
        let timeout = self.config.frame_timeout;
        let deadline = Instant::now() + timeout;
        let mut invalid = 0u64;
        let mut first_invalid = None;
        loop {
            let jpeg = match self.next_payload(deadline).await? {
                Next::Payload(jpeg) => jpeg,
                Next::TimedOut if invalid > 0 => {
                    return Err(ClientError::NoValidFrame {
                        peer: self.peer().to_owned(),
                        seconds: timeout.as_secs_f64(),
                        invalid,
                        first: first_invalid.unwrap_or_default(),
                    });
                }
                Next::TimedOut => {
                    return Err(TransportError::Timeout {
                        peer: self.peer().to_owned(),
                        seconds: timeout.as_secs_f64(),
                    }
                    .into());
                }
            };
            let received_at = wall_now();
            if !jpeg::is_jpeg(&jpeg) {
                self.invalid_frames += 1;
                invalid += 1;
                first_invalid.get_or_insert_with(|| describe_payload(&jpeg));
                if let Verdict::Log { suppressed } =
                    self.invalid_warnings.check(std::time::Instant::now())
                {
                    tracing::warn!(
                        peer = %self.peer(),
                        total = self.invalid_frames,
                        payload = %describe_payload(&jpeg),
                        "skipped a payload that is not a JPEG image ({suppressed} more since the last such line)"
                    );
                }
                continue;
            }
            let now = Instant::now();
            if let Some(last) = self.last_frame {
                let gap = now - last;
                self.frame_interval = Some(self.frame_interval.map_or(gap, |i| (i * 7 + gap) / 8));
            }
            self.last_frame = Some(now);
            return Ok(Received {
                stamp: Stamp::find(&jpeg),
                jpeg,
                received_at,
            });
        }
    }
}

impl Client {
    /// The next payload before `deadline`, JPEG or not. Over HTTP a response that ended after
    /// its single image is asked for again; a stream that ended is `Closed`.
    async fn next_payload(&mut self, deadline: Instant) -> Result<Next, ClientError> {
        let http = match &mut self.conn {
            Conn::Legacy(stream) => {
                return match tokio::time::timeout_at(deadline, stream.next_frame()).await {
                    Ok(Ok(Some(jpeg))) => Ok(Next::Payload(jpeg)),
                    Ok(Ok(None)) if self.last_frame.is_none() && self.invalid_frames == 0 => {
                        Err(ClientError::ClosedBeforeAnything {
                            peer: self.peer.clone(),
                        })
                    }
                    Ok(Ok(None)) => Err(ClientError::Closed {
                        peer: self.peer.clone(),
                    }),
                    Ok(Err(e)) => Err(e.into()),
                    Err(_) => Ok(Next::TimedOut),
                };
            }
            Conn::Http(http) => http,
        };
        loop {
            if http.stream.is_none() {
                http.open().await?;
            }
            let Some(stream) = http.stream.as_mut() else {
                continue;
            };
            let next = stream.next_jpeg(deadline).await;
            let skipped = stream.skipped_parts();
            let single = matches!(stream.head(), Some((_, BodyKind::Single)));
            self.invalid_frames += skipped - http.skipped_seen;
            http.skipped_seen = skipped;
            match next {
                Ok(Some(jpeg)) => return Ok(Next::Payload(jpeg)),
                Ok(None) => {
                    http.stream = None;
                    http.skipped_seen = 0;
                    if !single {
                        return Err(ClientError::Closed {
                            peer: self.peer.clone(),
                        });
                    }
                    if !http.said_single {
                        http.said_single = true;
                        tracing::info!(url = %http.url, "the URL serves one image per request: asking again for each frame");
                    }
                }
                Err(HttpError::Timeout { .. }) => return Ok(Next::TimedOut),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl HttpConn {
    /// Sends the request on a fresh connection.
    async fn open(&mut self) -> Result<(), HttpError> {
        let stream = HttpStream::get(&self.url, &self.get).await?;
        self.skipped_seen = 0;
        self.stream = Some(stream);
        Ok(())
    }
}

/// The flag that asks for `trust`, for errors; `None` for the default.
fn trust_flag(trust: &Trust) -> Option<&'static str> {
    match trust {
        Trust::System => None,
        Trust::Ca(_) => Some("--ca"),
        Trust::Pin(_) => Some("--pin"),
        Trust::Insecure => Some("--insecure"),
    }
}

/// Refuses a `trust` other than the default for a source that is not an `https://` URL
/// (a malformed source is left for [`Client::connect`] to report).
pub fn check_trust(source: &str, trust: &Trust) -> Result<(), ClientError> {
    let Some(flag) = trust_flag(trust) else {
        return Ok(());
    };
    match HttpUrl::parse_source(source) {
        Ok(Some(url)) if url.https => Ok(()),
        Err(_) => Ok(()),
        _ => Err(ClientError::TrustWithoutHttps {
            flag,
            addr: source.to_owned(),
        }),
    }
}

/// How every request to `url` is made: the TLS connector is made once, here, so that a
/// bad CA file fails before connecting and the system's CAs are read once.
fn get_config(url: &HttpUrl, config: &ClientConfig) -> Result<GetConfig, ClientError> {
    let tls = if url.https {
        if config.trust == Trust::Insecure {
            tracing::warn!(
                url = %url,
                "--insecure: the server's certificate is not checked, so anyone on the way can \
                 pose as the server, see the stream and the password"
            );
        }
        Some(tls::connector(&config.trust)?)
    } else {
        None
    };
    if url.user.is_some() && !url.https {
        tracing::warn!(
            url = %url,
            "the password goes over plain http://, readable by anyone on the way; use https:// where the server has it"
        );
    }
    Ok(GetConfig {
        timeout: config.connect_timeout,
        reader: ReaderConfig {
            max_part_len: config.max_frame_len as usize,
            ..ReaderConfig::default()
        },
        user_agent: USER_AGENT.to_owned(),
        tls,
        password: config.password.clone(),
    })
}

/// Running figures over a stream of received frames.
#[derive(Debug, Clone, Default)]
pub struct StreamStats {
    pub frames: u64,
    pub bytes: u64,
    /// Frames the server skipped for this client, from gaps in the stamped sequence numbers.
    pub skipped: u64,
    first_at: Option<Timestamp>,
    last_at: Option<Timestamp>,
    last_seq: Option<u64>,
    /// Capture-to-receive latencies in microseconds, from stamped frames.
    latencies: Vec<u64>,
}

/// What [`StreamStats`] says at the end.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSummary {
    pub frames: u64,
    pub seconds: f64,
    pub fps: f64,
    pub megabytes: f64,
    pub skipped: u64,
    /// p50 and p99 capture-to-receive latency in milliseconds, when frames carry stamps.
    pub latency_ms: Option<(f64, f64)>,
}

impl StreamStats {
    pub fn record(&mut self, frame: &Received) {
        self.frames += 1;
        self.bytes += frame.jpeg.len() as u64;
        self.first_at.get_or_insert(frame.received_at);
        self.last_at = Some(frame.received_at);
        if let Some(stamp) = frame.stamp {
            if let Some(last) = self.last_seq
                && stamp.seq > last
            {
                self.skipped += stamp.seq - last - 1;
            }
            self.last_seq = Some(stamp.seq);
            self.latencies
                .push(frame.received_at.0.saturating_sub(stamp.captured_at.0));
        }
    }

    pub fn summary(&self) -> StreamSummary {
        let seconds = match (self.first_at, self.last_at) {
            (Some(first), Some(last)) => last.since(first).as_secs_f64(),
            _ => 0.0,
        };
        let fps = if seconds > 0.0 {
            (self.frames - 1) as f64 / seconds
        } else {
            0.0
        };
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let ms = |p| percentile(&sorted, p).map(|us| us as f64 / 1000.0);
        StreamSummary {
            frames: self.frames,
            seconds,
            fps,
            megabytes: self.bytes as f64 / 1e6,
            skipped: self.skipped,
            latency_ms: ms(50.0).zip(ms(99.0)),
        }
    }
}

/// The `p`th percentile (nearest rank) of sorted values.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn received(seq: Option<u64>, captured: u64, at: u64) -> Received {
        Received {
            jpeg: Bytes::from_static(b"\xFF\xD8..\xFF\xD9"),
            stamp: seq.map(|seq| Stamp {
                seq,
                captured_at: Timestamp(captured),
            }),
            received_at: Timestamp(at),
        }
    }

    #[test]
    fn stream_stats_count_skips_rate_and_latency() {
        let mut stats = StreamStats::default();
        stats.record(&received(Some(1), 0, 1_000));
        stats.record(&received(Some(2), 100_000, 102_000));
        stats.record(&received(Some(5), 200_000, 201_000));
        let s = stats.summary();
        assert_eq!(s.frames, 3);
        assert_eq!(s.skipped, 2);
        assert!((s.seconds - 0.2).abs() < 1e-9);
        assert!((s.fps - 10.0).abs() < 1e-9);
        assert_eq!(s.latency_ms, Some((1.0, 2.0)));
    }

    #[test]
    fn legacy_frames_have_no_latency() {
        let mut stats = StreamStats::default();
        stats.record(&received(None, 0, 1_000));
        assert_eq!(stats.summary().latency_ms, None);
        assert_eq!(stats.summary().fps, 0.0);
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
