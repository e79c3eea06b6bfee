//! The client end of an HTTP connection to an MJPEG server: [`HttpUrl`] (what `http://` and
//! `https://` sources say), and [`HttpStream`], one `GET` on a fresh connection (over TLS for
//! `https://`, checked as the [`crate::tls`] connector says, with HTTP Basic credentials
//! when the URL names a user) whose response is read by core's sans-IO [`MjpegReader`]. No
//! redirects, and no password in a URL: each is an error that says so.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use bytes::{Bytes, BytesMut};
use edgecam_core::http::reader::{
    BodyKind, Event, MjpegReader, ReadError, ReaderConfig, ResponseHead,
};
use rustls_pki_types::ServerName;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use crate::tls::{self, HandshakeError, TlsError, Trust};

/// An `http[s]://[USER@]HOST[:PORT]/PATH[?QUERY]` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// `https://`: the connection is TLS.
    pub https: bool,
    /// Who to say we are with HTTP Basic authentication, percent-decoded. The password is
    /// never in the URL.
    pub user: Option<String>,
    /// Without the brackets of an IPv6 address.
    pub host: String,
    pub port: u16,
    /// The path and query, as sent in the request line; `/` at least.
    pub target: String,
}

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum UrlError {
    #[error(
        "{url}: only http:// and https:// URLs are understood (or HOST[:PORT] for edgecam's own protocol)"
    )]
    Scheme { url: String },
    #[error("{url} names no host (try http://192.168.1.20:8080/stream)")]
    NoHost { url: String },
    #[error("{url}: the port {port:?} is not a number from 1 to 65535")]
    BadPort { url: String, port: String },
    /// `url` shows the password as `***`.
    #[error(
        "{url}: a password in the URL is refused, since others may read it in the process list \
         and the shell's history; give only the user (USER@HOST) and set the password in \
         EDGECAM_PASSWORD, or type it when asked"
    )]
    Password { url: String },
    #[error("{url}: the user name {problem}")]
    BadUser { url: String, problem: &'static str },
    #[error("{url}: the path holds spaces or control characters; percent-encode them (%20)")]
    BadPath { url: String },
}

/// A password for HTTP Basic authentication. Its `Debug` shows none of it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(password: impl Into<String>) -> Password {
        Password(password.into())
    }

    /// The password itself.
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

/// The characters a user name keeps as they are in a URL (RFC 3986's unreserved and
/// sub-delims); every other byte is percent-encoded.
fn plain_in_userinfo(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&byte)
}

/// `user` percent-encoded for the userinfo of a URL.
fn encode_user(user: &str) -> String {
    let mut out = String::with_capacity(user.len());
    for &byte in user.as_bytes() {
        if plain_in_userinfo(byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A URL's user name, percent-decoded; what is wrong with it otherwise.
fn decode_user(raw: &str) -> Result<String, &'static str> {
    if raw.is_empty() {
        return Err("before @ is empty");
    }
    let mut bytes = Vec::with_capacity(raw.len());
    let mut rest = raw.as_bytes();
    while let Some((&byte, after)) = rest.split_first() {
        if byte == b'%' {
            let hex = after
                .get(..2)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("has a % that is not followed by two hex digits")?;
            bytes.push(hex);
            rest = &after[2..];
        } else {
            bytes.push(byte);
            rest = after;
        }
    }
    let user = String::from_utf8(bytes).map_err(|_| "is not UTF-8 once percent-decoded")?;
    if user.contains(':') {
        return Err("holds a colon, which HTTP Basic authentication cannot carry");
    }
    if user.chars().any(char::is_control) {
        return Err("holds control characters");
    }
    Ok(user)
}

impl HttpUrl {
    /// `Ok(None)` when `source` is no URL at all (a legacy `HOST[:PORT]`), the URL when it is
    /// an `http://` or `https://` one, and an error for any other URL or a malformed one.
    pub fn parse_source(source: &str) -> Result<Option<HttpUrl>, UrlError> {
        if !source.contains("://") {
            return Ok(None);
        }
        HttpUrl::parse(source).map(Some)
    }

    /// An `http://` or `https://` URL.
    pub fn parse(url: &str) -> Result<HttpUrl, UrlError> {
        let owned = || url.to_owned();
        let scheme = |prefix: &str| {
            url.get(..prefix.len())
                .filter(|s| s.eq_ignore_ascii_case(prefix))
                .map(|_| &url[prefix.len()..])
        };
        let (https, rest) = match (scheme("http://"), scheme("https://")) {
            (Some(rest), _) => (false, rest),
            (_, Some(rest)) => (true, rest),
            _ => return Err(UrlError::Scheme { url: owned() }),
        };
        // The fragment is the client's own; it is never sent.
        let rest = rest.split('#').next().unwrap_or("");
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(split);
        let (userinfo, authority) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, authority),
        };
        if let Some((name, _)) = userinfo.and_then(|u| u.split_once(':')) {
            let scheme = if https { "https" } else { "http" };
            return Err(UrlError::Password {
                url: format!("{scheme}://{name}:***@{authority}{target}"),
            });
        }
        let target = match target.chars().next() {
            None => "/".to_owned(),
            Some('?') => format!("/{target}"),
            Some(_) => target.to_owned(),
        };
        if target.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(UrlError::BadPath { url: owned() });
        }
        let user = userinfo
            .map(decode_user)
            .transpose()
            .map_err(|problem| UrlError::BadUser {
                url: owned(),
                problem,
            })?;
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
            None | Some("") => default_port(https),
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
            https,
            user,
            host: host.to_owned(),
            port,
            target,
        })
    }

    /// The Host header: `host`, `host:port` when not the scheme's default (80, or 443 for
    /// https), brackets around IPv6. Never the user.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default_port(self.https) {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// The request that asks for this URL on a fresh connection, closed after the answer;
    /// with HTTP Basic credentials when the URL names a user (and an empty password when
    /// none is given).
    pub fn request(&self, user_agent: &str, password: Option<&Password>) -> String {
        let authorization = match &self.user {
            Some(user) => {
                let password = password.map_or("", Password::reveal);
                let credentials =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                format!("Authorization: Basic {credentials}\r\n")
            }
            None => String::new(),
        };
        format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {user_agent}\r\n{authorization}\
             Accept: multipart/x-mixed-replace, image/jpeg;q=0.9, */*;q=0.1\r\n\
             Connection: close\r\n\r\n",
            self.target,
            self.authority()
        )
    }

    /// This URL with `user` in it: what to give instead when the server asks for a user.
    fn with_user(&self, user: &str) -> String {
        HttpUrl {
            user: Some(user.to_owned()),
            ..self.clone()
        }
        .to_string()
    }
}

fn default_port(https: bool) -> u16 {
    if https { 443 } else { 80 }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        let user = match &self.user {
            Some(user) => format!("{}@", encode_user(user)),
            None => String::new(),
        };
        write!(f, "{scheme}://{user}{}{}", self.authority(), self.target)
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
    #[error("TLS with {url} failed")]
    Tls {
        url: String,
        #[source]
        source: Box<HandshakeError>,
    },
    #[error(
        "the TLS handshake with {url} did not finish within {seconds:.1} s; if that port \
         serves plain HTTP or the legacy protocol, use http:// or HOST:PORT"
    )]
    TlsTimeout { url: String, seconds: f64 },
    #[error("cannot check the certificate of {url}")]
    TlsSetup {
        url: String,
        #[source]
        source: Box<TlsError>,
    },
    #[error("{url}: {host:?} is not a host name TLS can check; use a DNS name or an IP address")]
    ServerName { url: String, host: String },
    #[error(
        "{url} asks for a user name and password (401); give the user in the URL, as \
         {with_user}, and set the password in EDGECAM_PASSWORD, or type it when asked"
    )]
    NeedsCredentials { url: String, with_user: String },
    #[error(
        "{url} refused the user name or password (401); check both (the password comes from \
         EDGECAM_PASSWORD, or is asked for)"
    )]
    CredentialsRefused { url: String },
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
        ReadError::Unexpected { status: 403, .. } => {
            "; the server does not let this user (or this address) see it"
        }
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

/// How [`HttpStream::get`] connects and what it sends.
#[derive(Clone)]
pub struct GetConfig {
    /// For each of: the TCP connection, the TLS handshake, sending the request.
    pub timeout: Duration,
    pub reader: ReaderConfig,
    pub user_agent: String,
    /// Checks `https://` servers. `None`: a connector with the system's CAs is made for each
    /// request (it reads the CA certificates each time: give one to repeated requests).
    pub tls: Option<TlsConnector>,
    /// The password of the URL's user; unused when the URL names none.
    pub password: Option<Password>,
}

impl fmt::Debug for GetConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetConfig")
            .field("timeout", &self.timeout)
            .field("reader", &self.reader)
            .field("user_agent", &self.user_agent)
            .field("tls", &self.tls.as_ref().map(|_| "TlsConnector"))
            .field("password", &self.password)
            .finish()
    }
}

/// The connection under an [`HttpStream`]: plain TCP, or TLS over it.
#[derive(Debug)]
enum Wire {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Wire {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Wire::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Wire::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Wire {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Wire::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Wire::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Wire::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Wire::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Wire::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Wire::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

/// One `GET` on its own connection, and its response read as MJPEG parts or one JPEG.
#[derive(Debug)]
pub struct HttpStream {
    stream: Wire,
    url: String,
    /// What asking again with a user would look like, for a 401 without one.
    with_user: String,
    /// Whether the request carried credentials.
    authorized: bool,
    reader: MjpegReader,
    head: Option<(ResponseHead, BodyKind)>,
    buf: BytesMut,
}

impl HttpStream {
    /// Connects to `url`'s host (over TLS for https://) and sends the request, each within
    /// `config.timeout`.
    pub async fn get(url: &HttpUrl, config: &GetConfig) -> Result<HttpStream, HttpError> {
        let shown = url.to_string();
        let timeout = config.timeout;
        let timed_out = || HttpError::Timeout {
            url: shown.clone(),
            seconds: timeout.as_secs_f64(),
        };
        // Checked before connecting: a name TLS cannot check fails the same everywhere.
        let tls = if url.https {
            let name =
                ServerName::try_from(url.host.clone()).map_err(|_| HttpError::ServerName {
                    url: shown.clone(),
                    host: url.host.clone(),
                })?;
            let connector = match &config.tls {
                Some(connector) => connector.clone(),
                None => tls::connector(&Trust::System).map_err(|source| HttpError::TlsSetup {
                    url: shown.clone(),
                    source: Box::new(source),
                })?,
            };
            Some((connector, name))
        } else {
            None
        };
        let connect = TcpStream::connect((url.host.as_str(), url.port));
        let tcp = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| timed_out())?
            .map_err(|source| HttpError::Connect {
                url: shown.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let mut stream = match tls {
            None => Wire::Plain(tcp),
            Some((connector, name)) => {
                let tls = tokio::time::timeout(timeout, connector.connect(name, tcp))
                    .await
                    .map_err(|_| HttpError::TlsTimeout {
                        url: shown.clone(),
                        seconds: timeout.as_secs_f64(),
                    })?
                    .map_err(|e| HttpError::Tls {
                        url: shown.clone(),
                        source: Box::new(HandshakeError::from(e)),
                    })?;
                Wire::Tls(Box::new(tls))
            }
        };
        let request = url.request(&config.user_agent, config.password.as_ref());
        let send = async {
            stream.write_all(request.as_bytes()).await?;
            // TLS holds written bytes until flushed.
            stream.flush().await
        };
        tokio::time::timeout(timeout, send)
            .await
            .map_err(|_| timed_out())?
            .map_err(|source| HttpError::Write {
                url: shown.clone(),
                source,
            })?;
        Ok(HttpStream {
            stream,
            url: shown,
            with_user: url.with_user("USER"),
            authorized: url.user.is_some(),
            reader: MjpegReader::new(config.reader),
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
                // Many servers close TLS without its close_notify. The reader knows where the
                // body ends, and says when it was cut short.
                Ok(Err(e))
                    if e.kind() == io::ErrorKind::UnexpectedEof
                        && matches!(self.stream, Wire::Tls(_)) =>
                {
                    self.reader.finish();
                }
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
        self.reader.poll().map_err(|error| match error {
            ReadError::Unexpected { status: 401, .. } if self.authorized => {
                HttpError::CredentialsRefused {
                    url: self.url.clone(),
                }
            }
            ReadError::Unexpected { status: 401, .. } => HttpError::NeedsCredentials {
                url: self.url.clone(),
                with_user: self.with_user.clone(),
            },
            error => HttpError::Response {
                url: self.url.clone(),
                error: Box::new(error),
            },
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
    use proptest::prelude::*;

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
            "rtsp://cam/stream",
            "http://",
            "http://:80/x",
            "http://cam:0/x",
            "http://cam:http/x",
            "http://user:pw@cam/x",
            "https://user:secret@cam:8443/stream?x=1",
            "https://:secret@cam/",
            "https://@cam/",
            "https://us%2er%zz@cam/",
            "https://us%3Aer@cam/",
            "https://%FF@cam/",
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
            url("http://[::1]:8080/stream?x=1").request("edgecam/0.1.0", None),
            "GET /stream?x=1 HTTP/1.1\r\nHost: [::1]:8080\r\nUser-Agent: edgecam/0.1.0\r\n\
             Accept: multipart/x-mixed-replace, image/jpeg;q=0.9, */*;q=0.1\r\n\
             Connection: close\r\n\r\n"
        );
    }

    #[test]
    fn https_urls_default_to_443_and_keep_the_user() {
        let u = url("HTTPS://cam.local/stream");
        assert!(u.https);
        assert_eq!(
            (u.host.as_str(), u.port, u.user.as_deref()),
            ("cam.local", 443, None)
        );
        assert_eq!(u.authority(), "cam.local");
        assert_eq!(u.to_string(), "https://cam.local/stream");
        let u = url("https://cam.local:443/");
        assert_eq!(u.to_string(), "https://cam.local/");
        let u = url("https://admin@[::1]:8443/stream");
        assert_eq!(
            (u.host.as_str(), u.port, u.user.as_deref()),
            ("::1", 8443, Some("admin"))
        );
        assert_eq!(
            u.authority(),
            "[::1]:8443",
            "the Host header never holds the user"
        );
        assert_eq!(u.to_string(), "https://admin@[::1]:8443/stream");
        let u = url("http://cam:80/");
        assert_eq!(
            (u.https, u.port, u.to_string().as_str()),
            (false, 80, "http://cam/")
        );
        assert_eq!(url("http://cam:443/").to_string(), "http://cam:443/");
    }

    #[test]
    fn user_names_are_percent_decoded_and_encoded_back() {
        let u = url("https://me%40home@cam/");
        assert_eq!(u.user.as_deref(), Some("me@home"));
        assert_eq!(u.to_string(), "https://me%40home@cam/");
        // An @ in the user as typed: the last one ends the user, as in browsers.
        let u = url("http://me@home@cam:81/x");
        assert_eq!(
            (u.user.as_deref(), u.host.as_str()),
            (Some("me@home"), "cam")
        );
        let u = url("https://J%C3%BCrgen@cam/");
        assert_eq!(u.user.as_deref(), Some("Jürgen"));
        assert_eq!(u.to_string(), "https://J%C3%BCrgen@cam/");
        // An @ after the path's slash is the path's.
        let u = url("http://cam/a@b");
        assert_eq!((u.user, u.target.as_str()), (None, "/a@b"));
    }

    #[test]
    fn a_password_in_the_url_is_refused_and_not_repeated() {
        let err = HttpUrl::parse_source("https://admin:hunter2@cam/stream")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.starts_with("https://admin:***@cam/stream: "), "{err}");
        assert!(err.contains("EDGECAM_PASSWORD"), "{err}");
    }

    #[test]
    fn a_user_sends_basic_credentials() {
        let u = url("https://user@cam:8443/stream");
        let request = u.request("edgecam/0.1.0", Some(&Password::new("pass")));
        assert_eq!(
            request,
            "GET /stream HTTP/1.1\r\nHost: cam:8443\r\nUser-Agent: edgecam/0.1.0\r\n\
             Authorization: Basic dXNlcjpwYXNz\r\n\
             Accept: multipart/x-mixed-replace, image/jpeg;q=0.9, */*;q=0.1\r\n\
             Connection: close\r\n\r\n"
        );
        // A user without a password sends an empty one; a password without a user, nothing.
        assert!(
            u.request("a", None)
                .contains("Authorization: Basic dXNlcjo=\r\n")
        );
        let anonymous = url("https://cam/").request("a", Some(&Password::new("pass")));
        assert!(!anonymous.contains("Authorization"), "{anonymous}");
        assert_eq!(format!("{:?}", Password::new("pass")), "Password(..)");
    }

    fn any_url() -> impl Strategy<Value = HttpUrl> {
        let host = prop_oneof![
            "[a-z0-9][a-z0-9.-]{0,20}",
            any::<std::net::Ipv4Addr>().prop_map(|ip| ip.to_string()),
            any::<std::net::Ipv6Addr>().prop_map(|ip| ip.to_string()),
        ];
        let user = proptest::option::of("[^:\\p{Cc}]{1,12}");
        (
            any::<bool>(),
            user,
            host,
            1u16..,
            "(/[a-zA-Z0-9._~%=&?@-]{0,12}){1,3}",
        )
            .prop_map(|(https, user, host, port, target)| HttpUrl {
                https,
                user,
                host,
                port,
                target,
            })
    }

    proptest! {
        #[test]
        fn urls_round_trip_through_their_display(u in any_url()) {
            prop_assert_eq!(HttpUrl::parse(&u.to_string()), Ok(u));
        }

        #[test]
        fn parsing_any_source_never_panics(s in "\\PC{0,60}") {
            let _ = HttpUrl::parse_source(&s);
            let _ = HttpUrl::parse_source(&format!("https://{s}"));
        }
    }
}
