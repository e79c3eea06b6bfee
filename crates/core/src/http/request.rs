//! The server side's request head: read incrementally under a size cap, then routed.
//!
//! Only what an MJPEG server needs: the request line and the headers as bytes up to the
//! blank line. Bodies are never read (no route takes one), so a connection carries one
//! request; responses are close-delimited.

use thiserror::Error;

use super::Status;

/// The largest request head taken, request line and headers together; a longer one is
/// answered `431`.
pub const MAX_HEAD_LEN: usize = 8 * 1024;

/// The methods a route can be asked with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    /// `GET` without the body: snapshot and page heads say how long the body would be.
    Head,
    Options,
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// `None` for a method no route takes (answered `405`).
    pub method: Option<Method>,
    /// The path, without the query: `/`, `/stream`.
    pub path: String,
    /// The query after `?`, without it (empty when there is none).
    pub query: String,
    pub headers: Vec<(String, String)>,
}

impl RequestHead {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        super::find_header(&self.headers, name)
    }

    /// The value of query parameter `name`, when present (`action=stream` in `/?action=stream`).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then_some(value)
        })
    }
}

/// Why a request head was refused: each maps to the status that answers it.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum HeadError {
    #[error("the request head is over {MAX_HEAD_LEN} bytes")]
    TooLarge,
    #[error("malformed request: {0}")]
    Malformed(&'static str),
}

impl HeadError {
    pub fn status(&self) -> Status {
        match self {
            HeadError::TooLarge => Status::HeaderFieldsTooLarge,
            HeadError::Malformed(_) => Status::BadRequest,
        }
    }
}

/// Collects a request head from the bytes as they arrive, however they are split.
#[derive(Debug, Default)]
pub struct HeadReader {
    buf: Vec<u8>,
    /// How far `buf` has been searched for the blank line, so a head sent byte by byte is
    /// not searched again from the start for every byte.
    searched: usize,
}

impl HeadReader {
    pub fn new() -> Self {
        HeadReader::default()
    }

    /// Takes `bytes`; the head once it is complete. Bytes after the head are not looked at (no
    /// route has a body). After `Ok(Some(_))` or an error the reader is done.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Option<RequestHead>, HeadError> {
        let room = (MAX_HEAD_LEN + 4).saturating_sub(self.buf.len());
        self.buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
        // Back up three bytes: a `\r\n\r\n` may straddle two pushes.
        let from = self.searched.saturating_sub(3);
        let end = find_blank_line(&self.buf[from..]).map(|(at, len)| from + at + len);
        self.searched = self.buf.len();
        match end {
            Some(end) if end > MAX_HEAD_LEN => Err(HeadError::TooLarge),
            Some(end) => parse_head(&self.buf[..end]).map(Some),
            None if self.buf.len() > MAX_HEAD_LEN => Err(HeadError::TooLarge),
            None => Ok(None),
        }
    }
}

/// Where the first blank line (`\r\n\r\n`, or a bare `\n\n`) starts, and its length.
fn find_blank_line(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut at = 0;
    while let Some(lf) = memchr::memchr(b'\n', &bytes[at..]) {
        let lf = at + lf;
        match bytes.get(lf + 1..) {
            Some([b'\n', ..]) => return Some((lf, 2)),
            Some([b'\r', b'\n', ..]) => return Some((lf, 3)),
            _ => at = lf + 1,
        }
    }
    None
}

/// Parses a whole head (request line, headers, blank line).
fn parse_head(head: &[u8]) -> Result<RequestHead, HeadError> {
    let text = std::str::from_utf8(head).map_err(|_| HeadError::Malformed("not UTF-8 text"))?;
    let mut lines = text.lines();
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed(
            "the request line is not `METHOD TARGET HTTP/1.x`",
        ));
    };
    if !matches!(version, "HTTP/1.0" | "HTTP/1.1") {
        return Err(HeadError::Malformed("not HTTP/1.0 or HTTP/1.1"));
    }
    let method = match method {
        "GET" => Some(Method::Get),
        "HEAD" => Some(Method::Head),
        "OPTIONS" => Some(Method::Options),
        m if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) => None,
        _ => return Err(HeadError::Malformed("the method is not a token")),
    };
    // Absolute-form targets (`GET http://board/stream`, from proxies) are routed by path.
    let target = match target.strip_prefix("http://") {
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    if !target.starts_with('/') && target != "*" {
        return Err(HeadError::Malformed("the request target is not a path"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = Vec::new();
    for line in lines.take_while(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or(HeadError::Malformed("a header line has no `:`"))?;
        if name.is_empty() || name.bytes().any(|b| b.is_ascii_whitespace()) {
            return Err(HeadError::Malformed(
                "a header name is empty or has white space",
            ));
        }
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    Ok(RequestHead {
        method,
        path: path.to_owned(),
        query: query.to_owned(),
        headers,
    })
}

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/stream`, `/?action=stream`: frames as `multipart/x-mixed-replace`.
    /// `advance_headers=1` (ustreamer's parameter) asks for each part's headers right after
    /// the previous frame, which browsers need to show a frame as soon as it is in.
    Stream { advance_headers: bool },
    /// `/snapshot`, `/?action=snapshot`: one frame captured after the request.
    Snapshot,
    /// `/`: the page.
    Page,
    /// `/state`: JSON.
    State,
    /// `/metrics`: Prometheus text.
    Metrics,
}

/// How a request is to be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Serve `route`; `head_only` for `HEAD`.
    Serve { route: Route, head_only: bool },
    /// `OPTIONS`: `204` with `Allow`.
    Options,
    /// An error status, with a one-line body.
    Error(Status, &'static str),
}

/// Routes a request. Unknown query parameters are ignored (OctoPrint appends nonces).
pub fn route(head: &RequestHead) -> Answer {
    let route = match (head.path.as_str(), head.query_param("action")) {
        ("/", Some("stream")) | ("/stream" | "/stream.mjpg", _) => Route::Stream {
            advance_headers: head.query_param("advance_headers") == Some("1"),
        },
        ("/", Some("snapshot")) | ("/snapshot" | "/snapshot.jpg", _) => Route::Snapshot,
        ("/" | "/index.html", _) => Route::Page,
        ("/state", _) => Route::State,
        ("/metrics", _) => Route::Metrics,
        ("*", _) if head.method == Some(Method::Options) => return Answer::Options,
        _ => {
            return Answer::Error(
                Status::NotFound,
                "no such page; try /, /stream, /snapshot, /state or /metrics",
            );
        }
    };
    match head.method {
        Some(Method::Get) => Answer::Serve {
            route,
            head_only: false,
        },
        Some(Method::Head) => Answer::Serve {
            route,
            head_only: true,
        },
        Some(Method::Options) => Answer::Options,
        None => Answer::Error(
            Status::MethodNotAllowed,
            "only GET, HEAD and OPTIONS are served",
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn head(text: &str) -> RequestHead {
        HeadReader::new().push(text.as_bytes()).unwrap().unwrap()
    }

    fn answer(text: &str) -> Answer {
        route(&head(text))
    }

    #[test]
    fn a_browser_request_is_parsed() {
        let h = head(
            "GET /stream?nonce=12&x HTTP/1.1\r\nHost: board:6810\r\nUser-Agent: curl/8\r\n\r\n",
        );
        assert_eq!(h.method, Some(Method::Get));
        assert_eq!(h.path, "/stream");
        assert_eq!(h.query, "nonce=12&x");
        assert_eq!(h.header("host"), Some("board:6810"));
        assert_eq!(h.query_param("x"), Some(""));
        assert_eq!(h.query_param("y"), None);
    }

    #[test]
    fn the_peers_urls_route_alike() {
        let stream = Answer::Serve {
            route: Route::Stream {
                advance_headers: false,
            },
            head_only: false,
        };
        assert_eq!(answer("GET /stream HTTP/1.1\r\n\r\n"), stream);
        assert_eq!(answer("GET /?action=stream HTTP/1.0\r\n\r\n"), stream);
        assert_eq!(answer("GET /?_=1699&action=stream HTTP/1.1\n\n"), stream);
        assert_eq!(
            answer("GET /stream?advance_headers=1 HTTP/1.1\r\n\r\n"),
            Answer::Serve {
                route: Route::Stream {
                    advance_headers: true
                },
                head_only: false
            }
        );
        assert_eq!(
            answer("HEAD /?action=snapshot HTTP/1.1\r\n\r\n"),
            Answer::Serve {
                route: Route::Snapshot,
                head_only: true
            }
        );
        assert_eq!(
            answer("GET http://board:6810/metrics HTTP/1.1\r\n\r\n"),
            Answer::Serve {
                route: Route::Metrics,
                head_only: false
            }
        );
        assert_eq!(answer("OPTIONS * HTTP/1.1\r\n\r\n"), Answer::Options);
        assert!(matches!(
            answer("GET /nope HTTP/1.1\r\n\r\n"),
            Answer::Error(Status::NotFound, _)
        ));
        assert!(matches!(
            answer("POST /stream HTTP/1.1\r\n\r\n"),
            Answer::Error(Status::MethodNotAllowed, _)
        ));
    }

    #[test]
    fn malformed_and_oversized_heads_are_refused() {
        for bad in [
            "GET /\r\n\r\n",
            "GET / HTTP/2\r\n\r\n",
            "get / HTTP/1.1\r\n\r\n",
            "GET stream HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nno colon\r\n\r\n",
        ] {
            let err = HeadReader::new().push(bad.as_bytes()).unwrap_err();
            assert_eq!(err.status(), Status::BadRequest, "{bad:?}");
        }
        let mut reader = HeadReader::new();
        let long = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(MAX_HEAD_LEN));
        assert_eq!(reader.push(long.as_bytes()), Err(HeadError::TooLarge));
        // Sent forever without a blank line, a head is refused once it passes the cap.
        let mut reader = HeadReader::new();
        let mut refused = None;
        for i in 0..MAX_HEAD_LEN * 2 {
            if let Err(e) = reader.push(b"a") {
                refused = Some((i, e));
                break;
            }
        }
        assert_eq!(refused, Some((MAX_HEAD_LEN, HeadError::TooLarge)));
    }

    proptest! {
        /// However the head is split, the same head comes out, and only once it is whole.
        #[test]
        fn any_split_gives_the_same_head(
            path in "/[a-z]{0,12}",
            query in "[a-z=&]{0,12}",
            headers in proptest::collection::vec(("[A-Za-z-]{1,10}", "[ -~]{0,20}"), 0..6),
            bare_lf in any::<bool>(),
            cuts in proptest::collection::vec(1usize..16, 1..40),
        ) {
            let eol = if bare_lf { "\n" } else { "\r\n" };
            let mut text = format!("GET {path}?{query} HTTP/1.1{eol}");
            for (name, value) in &headers {
                text.push_str(&format!("{name}: {value}{eol}"));
            }
            text.push_str(eol);
            let whole = head(&text);
            let mut reader = HeadReader::new();
            let mut rest = text.as_bytes();
            let mut cuts = cuts.iter().cycle();
            let mut got = None;
            while !rest.is_empty() {
                let n = (*cuts.next().unwrap()).min(rest.len());
                let out = reader.push(&rest[..n]).unwrap();
                rest = &rest[n..];
                if out.is_some() {
                    prop_assert!(rest.is_empty(), "a head came out before it was whole");
                    got = out;
                }
            }
            prop_assert_eq!(got, Some(whole.clone()));
            prop_assert_eq!(whole.headers.len(), headers.len());
        }

        /// Arbitrary bytes never panic the reader, and it decides before holding more than the cap.
        #[test]
        fn arbitrary_bytes_are_decided_within_the_cap(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 0..40),
        ) {
            let mut reader = HeadReader::new();
            for chunk in &chunks {
                match reader.push(chunk) {
                    Ok(None) => prop_assert!(reader.buf.len() <= MAX_HEAD_LEN),
                    Ok(Some(head)) => { let _ = route(&head); break; }
                    Err(_) => break,
                }
            }
        }
    }
}
