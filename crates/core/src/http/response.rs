//! Response heads, and frames framed as HTTP: parts of a `multipart/x-mixed-replace` stream,
//! or a snapshot's whole response.
//!
//! Every response is HTTP/1.0 style: `Connection: close`, the end of the body is the end of
//! the connection (no chunking), so every MJPEG client (browsers, ffmpeg, GStreamer, go2rtc,
//! VLC) reads it the same way.

use crate::frame::Frame;

use super::Status;

/// The multipart boundary, declared without the leading dashes it carries on the wire.
pub const BOUNDARY: &str = "edgecam-boundary";

/// What ends every part: the JPEG's line end and the next part's boundary line, so a reader
/// knows a part is over as soon as it is.
pub const PART_TAIL: &[u8] = b"\r\n--edgecam-boundary\r\n";

/// With advance headers: the next part's boundary *and its headers*, right after the frame.
/// Chromium shows a part only once the next part's header block is in (crbug 527446), so
/// this shows each frame as soon as it has arrived instead of one frame later; the price is
/// that parts carry no `Content-Length` and `X-Timestamp` (they are not known yet), which
/// some tools need, so it is asked for (`advance_headers=1`, as with ustreamer) by the page.
pub const ADVANCE_PART_TAIL: &[u8] = b"\r\n--edgecam-boundary\r\nContent-Type: image/jpeg\r\n\r\n";

/// The header lines every response carries.
const COMMON: &str = "Server: edgecam\r\n\
    Connection: close\r\n\
    Cache-Control: no-store, no-cache, must-revalidate, max-age=0\r\n\
    Pragma: no-cache\r\n\
    Expires: 0\r\n\
    Access-Control-Allow-Origin: *\r\n";

/// A response head: status line, the common headers, `Content-Type` and `Content-Length` when
/// given, `extra` header lines (each ending in `\r\n`), and the blank line.
pub fn head(
    status: Status,
    content_type: Option<&str>,
    content_length: Option<usize>,
    extra: &str,
) -> Vec<u8> {
    let mut text = format!("HTTP/1.0 {} {}\r\n{COMMON}", status.code(), status.reason());
    if let Some(content_type) = content_type {
        text.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    if let Some(len) = content_length {
        text.push_str(&format!("Content-Length: {len}\r\n"));
    }
    text.push_str(extra);
    text.push_str("\r\n");
    text.into_bytes()
}

/// A whole response with a body (`head_only`: the head alone, as `HEAD` is answered).
pub fn whole(status: Status, content_type: &str, body: &[u8], head_only: bool) -> Vec<u8> {
    let mut out = head(status, Some(content_type), Some(body.len()), "");
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

/// An error response: a one-line text body.
pub fn error(status: Status, message: &str) -> Vec<u8> {
    error_with(status, message, "")
}

/// [`error`] with `extra` header lines (each ending in `\r\n`).
fn error_with(status: Status, message: &str, extra: &str) -> Vec<u8> {
    let body = format!("{} {}: {message}\n", status.code(), status.reason());
    let mut out = head(
        status,
        Some("text/plain; charset=utf-8"),
        Some(body.len()),
        extra,
    );
    out.extend_from_slice(body.as_bytes());
    out
}

/// The answer to a request without the right credentials: `401` asking for HTTP Basic in
/// `realm` (what a browser shows in its login box), with UTF-8 user names and passwords.
/// The realm is sent as a quoted string: `"` and `\` are escaped, and anything but printable
/// ASCII becomes `_`, so no realm can break the header.
pub fn unauthorized(realm: &str) -> Vec<u8> {
    let mut quoted = String::with_capacity(realm.len() + 2);
    for c in realm.chars() {
        match c {
            '"' | '\\' => {
                quoted.push('\\');
                quoted.push(c);
            }
            ' '..='~' => quoted.push(c),
            _ => quoted.push('_'),
        }
    }
    error_with(
        Status::Unauthorized,
        "this camera needs a user name and password",
        &format!("WWW-Authenticate: Basic realm=\"{quoted}\", charset=\"UTF-8\"\r\n"),
    )
}

/// The answer when the server cannot take a request now (it is full, say): `503` with
/// `Retry-After` in seconds, and `message` as the one-line body.
pub fn unavailable(retry_after_secs: u32, message: &str) -> Vec<u8> {
    error_with(
        Status::ServiceUnavailable,
        message,
        &format!("Retry-After: {retry_after_secs}\r\n"),
    )
}

/// The answer to `OPTIONS`.
pub fn options() -> Vec<u8> {
    head(
        Status::NoContent,
        None,
        None,
        "Allow: GET, HEAD, OPTIONS\r\n",
    )
}

/// The head of an MJPEG stream, up to and including the first part's boundary line, and with
/// `advance_headers` its headers too (which are body, so `head_only`, as `HEAD` is answered,
/// leaves them out).
pub fn stream_head(head_only: bool, advance_headers: bool) -> Vec<u8> {
    let mut out = head(
        Status::Ok,
        Some(&format!("multipart/x-mixed-replace;boundary={BOUNDARY}")),
        None,
        "",
    );
    if head_only {
        return out;
    }
    let tail = if advance_headers {
        ADVANCE_PART_TAIL
    } else {
        PART_TAIL
    };
    // The tail without the previous part's line end.
    out.extend_from_slice(&tail[2..]);
    out
}

/// `X-Timestamp`: the capture time as seconds since the Unix epoch with microseconds
/// (ustreamer's header, which players and our client read).
fn timestamp(frame: &Frame) -> String {
    let us = frame.captured_at.0;
    format!("{}.{:06}", us / 1_000_000, us % 1_000_000)
}

/// One part's headers (its boundary line went out before it, see [`PART_TAIL`]).
pub fn part_head(frame: &Frame) -> Vec<u8> {
    format!(
        "Content-Type: image/jpeg\r\nContent-Length: {}\r\nX-Timestamp: {}\r\n\r\n",
        frame.jpeg.len(),
        timestamp(frame)
    )
    .into_bytes()
}

/// A snapshot's response head: the frame is its body.
pub fn snapshot_head(frame: &Frame) -> Vec<u8> {
    head(
        Status::Ok,
        Some("image/jpeg"),
        Some(frame.jpeg.len()),
        &format!("X-Timestamp: {}\r\n", timestamp(frame)),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::time::Timestamp;
    use bytes::Bytes;

    fn frame() -> Frame {
        Frame {
            jpeg: Bytes::from_static(b"\xFF\xD8 jpeg \xFF\xD9"),
            width: 2,
            height: 2,
            seq: 7,
            captured_at: Timestamp(1_700_000_000_000_042),
        }
    }

    #[test]
    fn what_a_stream_looks_like_on_the_wire() {
        let f = frame();
        let mut wire = stream_head(false, false);
        for _ in 0..2 {
            wire.extend_from_slice(&part_head(&f));
            wire.extend_from_slice(&f.jpeg);
            wire.extend_from_slice(PART_TAIL);
        }
        insta::assert_snapshot!(String::from_utf8_lossy(&wire));
    }

    #[test]
    fn what_a_snapshot_and_an_error_look_like() {
        let f = frame();
        let mut wire = snapshot_head(&f);
        wire.extend_from_slice(&f.jpeg);
        insta::assert_snapshot!(String::from_utf8_lossy(&wire));
        insta::assert_snapshot!(String::from_utf8_lossy(&error(
            Status::NotFound,
            "no such page"
        )));
    }

    #[test]
    fn what_the_refusals_look_like() {
        insta::assert_snapshot!(
            "unauthorized",
            String::from_utf8_lossy(&unauthorized("edgecam"))
        );
        insta::assert_snapshot!(
            "unavailable",
            String::from_utf8_lossy(&unavailable(5, "the server is full, try again later"))
        );
    }

    #[test]
    fn error_bodies_are_as_long_as_they_say() {
        for wire in [
            error(Status::NotFound, "no such page"),
            unauthorized("edgecam"),
            unavailable(1, "full"),
        ] {
            let text = String::from_utf8(wire).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(
                format!("{head}\r\n").contains(&format!("\r\nContent-Length: {}\r\n", body.len())),
                "{text}"
            );
            assert!(body.ends_with('\n') && body.lines().count() == 1, "{text}");
        }
    }

    #[test]
    fn a_realm_cannot_break_the_header() {
        let text = String::from_utf8(unauthorized("a \"cam\" \\ on\r\nX-Evil: 1\u{e9}")).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("WWW-Authenticate:"))
            .unwrap();
        assert_eq!(
            line,
            r#"WWW-Authenticate: Basic realm="a \"cam\" \\ on__X-Evil: 1_", charset="UTF-8""#
        );
        assert!(!text.contains("\r\nX-Evil"), "{text}");
    }

    #[test]
    fn head_only_keeps_the_length_and_drops_the_body() {
        let get = whole(Status::Ok, "text/plain", b"hello", false);
        let head = whole(Status::Ok, "text/plain", b"hello", true);
        assert!(get.ends_with(b"\r\n\r\nhello"));
        assert_eq!(&get[..get.len() - 5], &head[..]);
        assert!(
            String::from_utf8(head)
                .unwrap()
                .contains("Content-Length: 5\r\n")
        );
    }

    #[test]
    fn the_tails_carry_the_declared_boundary() {
        assert_eq!(PART_TAIL, format!("\r\n--{BOUNDARY}\r\n").as_bytes());
        assert!(ADVANCE_PART_TAIL.starts_with(PART_TAIL));
        assert!(ADVANCE_PART_TAIL.ends_with(b"\r\n\r\n"));
    }

    #[test]
    fn with_advance_headers_each_part_is_announced_before_its_frame() {
        let f = frame();
        let mut wire = stream_head(false, true);
        for _ in 0..2 {
            wire.extend_from_slice(&f.jpeg);
            wire.extend_from_slice(ADVANCE_PART_TAIL);
        }
        insta::assert_snapshot!(String::from_utf8_lossy(&wire));
    }
}
