//! The client end of an HTTP connection to an MJPEG server: [`HttpUrl`] (what `http://`
//! sources say), and [`HttpStream`], one `GET` on a fresh connection whose response is read
//! by core's sans-IO [`MjpegReader`]. No TLS, no redirects, no credentials: each is an error
//! that says so.

use std::fmt;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use edgecam_core::http::reader::{
    BodyKind, Event, MjpegReader, ReadError, ReaderConfig, ResponseHead,
};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// An `http://HOST[:PORT]/PATH[?QUERY]` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// Without the brackets of an IPv6 address.
    pub host: String,
    pub port: u16,
    /// The path and query, as sent in the request line; `/` at least.
    pub target: String,
}

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("{url}: https:// is not supported yet; use the server's http:// URL")]
    Https { url: String },
    #[error("{url}: only http:// URLs are understood (or HOST[:PORT] for edgecam's own protocol)")]
    Scheme { url: String },
    #[error("{url} names no host (try http://192.168.1.20:8080/stream)")]
    NoHost { url: String },
    #[error("{url}: the port {port:?} is not a number from 1 to 65535")]
    BadPort { url: String, port: String },
    #[error("{url}: a user name or password in the URL is not supported yet")]
    Credentials { url: String },
    #[error("{url}: the path holds spaces or control characters; percent-encode them (%20)")]
    BadPath { url: String },
}

impl HttpUrl {
    /// `Ok(None)` when `source` is no URL at all (a legacy `HOST[:PORT]`), the URL when it is
    /// an `http://` one, and an error for any other URL or a malformed one.
    pub fn parse_source(source: &str) -> Result<Option<HttpUrl>, UrlError> {
        let Some((scheme, _)) = source.split_once("://") else {
            return Ok(None);
        };
        let url = source.to_owned();
        if scheme.eq_ignore_ascii_case("https") {
            return Err(UrlError::Https { url });
        }
        if !scheme.eq_ignore_ascii_case("http") {
            return Err(UrlError::Scheme { url });
        }
        HttpUrl::parse(source).map(Some)
    }

    /// An `http://` URL.
    pub fn parse(url: &str) -> Result<HttpUrl, UrlError> {
        let owned = || url.to_owned();
        let rest = url
            .get(..7)
            .filter(|s| s.eq_ignore_ascii_case("http://"))
            .map(|_| &url[7..])
            .ok_or_else(|| UrlError::Scheme { url: owned() })?;
        // The fragment is the client's own; it is never sent.
        let rest = rest.split('#').next().unwrap_or("");
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(split);
        let target = match target.chars().next() {
            None => "/".to_owned(),
            Some('?') => format!("/{target}"),
            Some(_) => target.to_owned(),
        };
        if target.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(UrlError::BadPath { url: owned() });
        }
        if authority.contains('@') {
            return Err(UrlError::Credentials { url: owned() });
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| UrlError::NoHost { url: owned() })?;
            match after {
                "" => (host, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => return Err(UrlError::NoHost { url: owned() }),
                },
            }
        } else {
            match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(UrlError::NoHost { url: owned() });
        }
        let port = match port {
            None | Some("") => 80,
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| UrlError::BadPort {
                    url: owned(),
                    port: port.to_owned(),
                })?,
        };
        Ok(HttpUrl {
            host: host.to_owned(),
            port,
            target,
        })
    }

    /// The Host header: `host`, `host:port` when not 80, brackets around IPv6.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 80 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// The request that asks for this URL on a fresh connection, closed after the answer.
    pub fn request(&self, user_agent: &str) -> String {
        format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {user_agent}\r\n\
             Accept: multipart/x-mixed-replace, image/jpeg;q=0.9, */*;q=0.1\r\n\
             Connection: close\r\n\r\n",
            self.target,
            self.authority()
        )
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.authority(), self.target)
    }
}

#[derive(Debug, Error)]
pub enum HttpError {
    #[error("cannot connect to {url}; check that the server runs there and the port is open")]
    Connect {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{url} did not answer within {seconds:.1} s")]
    Timeout { url: String, seconds: f64 },
    #[error("reading from {url} failed")]
    Read {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("sending the request to {url} failed")]
    Write {
        url: String,
        #[source]
        source: std::io::Error,
    },
    /// What came back is not what a client of an MJPEG server can use.
    #[error("{url} {error}{}", advice(error))]
    Response { url: String, error: Box<ReadError> },
}

/// What to do about a response the reader refused.
fn advice(error: &ReadError) -> &'static str {
    match error {
        ReadError::Unexpected { status: 200, .. } => {
            "; that is not an MJPEG stream or a JPEG: check the path \
             (mjpg-streamer: /?action=stream, ustreamer: /stream)"
        }
        ReadError::Unexpected { status: 404, .. } => {
            "; check the path (mjpg-streamer: /?action=stream, ustreamer: /stream)"
        }
        ReadError::Unexpected {
            status: 401 | 403, ..
        } => "; this client sends no credentials yet",
        ReadError::Unexpected {
            status: 300..=399,
            location: Some(_),
            ..
        } => "; give that URL instead",
        ReadError::NotHttp { .. } | ReadError::NoAnswer => {
            "; if this is an edgecam or legacy server's port, give HOST:PORT without http://"
        }
        _ => "",
    }
}

/// One `GET` on its own connection, and its response read as MJPEG parts or one JPEG.
#[derive(Debug)]
pub struct HttpStream {
    stream: TcpStream,
    url: String,
    reader: MjpegReader,
    head: Option<(ResponseHead, BodyKind)>,
    buf: BytesMut,
}

impl HttpStream {
    /// Connects to `url`'s host and sends the request, each within `timeout`.
    pub async fn get(
        url: &HttpUrl,
        timeout: Duration,
        config: ReaderConfig,
        user_agent: &str,
    ) -> Result<HttpStream, HttpError> {
        let shown = url.to_string();
        let timed_out = || HttpError::Timeout {
            url: shown.clone(),
            seconds: timeout.as_secs_f64(),
        };
        let connect = TcpStream::connect((url.host.as_str(), url.port));
        let mut stream = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| timed_out())?
            .map_err(|source| HttpError::Connect {
                url: shown.clone(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let request = url.request(user_agent);
        tokio::time::timeout(timeout, stream.write_all(request.as_bytes()))
            .await
            .map_err(|_| timed_out())?
            .map_err(|source| HttpError::Write {
                url: shown.clone(),
                source,
            })?;
        Ok(HttpStream {
            stream,
            url: shown,
            reader: MjpegReader::new(config),
            head: None,
            buf: BytesMut::with_capacity(64 * 1024),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The response head and what its body holds, once read.
    pub fn head(&self) -> Option<&(ResponseHead, BodyKind)> {
        self.head.as_ref()
    }

    /// Parts skipped because they were not JPEGs.
    pub fn skipped_parts(&self) -> u64 {
        self.reader.skipped_parts()
    }

    /// The next JPEG; `None` once the response has ended cleanly; `Timeout` at `deadline`
    /// (unless what came so far already tells what is wrong: then that). Cancel-safe: bytes
    /// read before the future is dropped stay with the reader.
    pub async fn next_jpeg(&mut self, deadline: Instant) -> Result<Option<Bytes>, HttpError> {
        let waited = deadline.saturating_duration_since(Instant::now());
        loop {
            match self.poll()? {
                Some(Event::Jpeg(jpeg)) => return Ok(Some(jpeg)),
                Some(Event::End) => return Ok(None),
                Some(Event::Head { head, kind }) => {
                    tracing::debug!(
                        url = %self.url,
                        status = head.status,
                        server = head.header("server").unwrap_or("-"),
                        content_type = head.content_type().unwrap_or("-"),
                        ?kind,
                        "response"
                    );
                    self.head = Some((head, kind));
                    continue;
                }
                None => {}
            }
            self.buf.clear();
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) => self.reader.finish(),
                Ok(Ok(_)) => self.reader.push(&self.buf),
                Ok(Err(source)) => {
                    return Err(HttpError::Read {
                        url: self.url.clone(),
                        source,
                    });
                }
                Err(_) => return self.timed_out(waited),
            }
        }
    }

    fn poll(&mut self) -> Result<Option<Event>, HttpError> {
        self.reader.poll().map_err(|error| HttpError::Response {
            url: self.url.clone(),
            error: Box::new(error),
        })
    }

    /// At the deadline: before an accepted head, whatever came is judged as it stands (a
    /// 404 whose body is slow, a head that never ends); otherwise it is a timeout.
    fn timed_out(&mut self, waited: Duration) -> Result<Option<Bytes>, HttpError> {
        let timeout = HttpError::Timeout {
            url: self.url.clone(),
            seconds: waited.as_secs_f64(),
        };
        if self.head.is_some() || self.reader.buffered() == 0 {
            return Err(timeout);
        }
        self.reader.finish();
        match self.poll()? {
            Some(Event::Jpeg(jpeg)) => Ok(Some(jpeg)),
            _ => Err(timeout),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn url(s: &str) -> HttpUrl {
        HttpUrl::parse(s).unwrap()
    }

    #[test]
    fn urls_are_split_into_host_port_and_target() {
        let u = url("http://cam.local:8080/?action=stream");
        assert_eq!((u.host.as_str(), u.port), ("cam.local", 8080));
        assert_eq!(u.target, "/?action=stream");
        assert_eq!(u.to_string(), "http://cam.local:8080/?action=stream");
        let u = url("HTTP://10.0.0.2");
        assert_eq!(
            (u.host.as_str(), u.port, u.target.as_str()),
            ("10.0.0.2", 80, "/")
        );
        assert_eq!(u.to_string(), "http://10.0.0.2/");
        let u = url("http://[::1]:81/stream#frag");
        assert_eq!(
            (u.host.as_str(), u.port, u.target.as_str()),
            ("::1", 81, "/stream")
        );
        assert_eq!(u.authority(), "[::1]:81");
        let u = url("http://[fe80::2]?a=b");
        assert_eq!(
            (u.host.as_str(), u.port, u.target.as_str()),
            ("fe80::2", 80, "/?a=b")
        );
    }

    #[test]
    fn sources_that_are_not_http_urls() {
        assert_eq!(HttpUrl::parse_source("board:6810"), Ok(None));
        assert_eq!(HttpUrl::parse_source("[::1]:6810"), Ok(None));
        let errors: Vec<String> = [
            "https://cam/stream",
            "rtsp://cam/stream",
            "http://",
            "http://:80/x",
            "http://cam:0/x",
            "http://cam:http/x",
            "http://user:pw@cam/x",
            "http://cam/a b",
            "http://[::1/x",
        ]
        .iter()
        .map(|s| HttpUrl::parse_source(s).unwrap_err().to_string())
        .collect();
        insta::assert_snapshot!(errors.join("\n"));
    }

    #[test]
    fn the_request_names_host_agent_and_close() {
        assert_eq!(
            url("http://[::1]:8080/stream?x=1").request("edgecam/0.1.0"),
            "GET /stream?x=1 HTTP/1.1\r\nHost: [::1]:8080\r\nUser-Agent: edgecam/0.1.0\r\n\
             Accept: multipart/x-mixed-replace, image/jpeg;q=0.9, */*;q=0.1\r\n\
             Connection: close\r\n\r\n"
        );
    }
}
