//! The client's reader of an HTTP/1.x response from any MJPEG server (edgecam, mjpg-streamer,
//! ustreamer, ffmpeg, IP cameras), sans-IO: bytes go in with [`MjpegReader::push`] (and
//! [`MjpegReader::finish`] when the peer closed), [`Event`]s come out of
//! [`MjpegReader::poll`]: the response head, then each JPEG as [`Bytes`], then the end.
//!
//! Bodies it reads:
//! * `multipart/x-mixed-replace` (or `multipart/mixed`), parts with `Content-Length` (read
//!   exactly that, then expect a boundary line; if something else comes, it scans on to the
//!   next boundary and counts a resync) or without it (the part ends at the next boundary
//!   line, `\r\n--BOUNDARY` or `--BOUNDARY` right after a JPEG's EOI). The boundary comes from
//!   the Content-Type, quoted or not; servers differ about its dashes (mjpg-streamer declares
//!   `boundarydonotcross` and writes `--boundarydonotcross`, some cameras declare
//!   `--myboundary` and write `--myboundary`), so a boundary line is two or more dashes and
//!   the declared boundary without its leading dashes. Parts whose Content-Type is not a JPEG
//!   are skipped and counted.
//! * `image/jpeg`: one image, by Content-Length or until the connection closes.
//! * `application/octet-stream` or no Content-Type (ffmpeg's HTTP server says that of its
//!   `mpjpeg` stream): the first body bytes decide, `--` a multipart stream whose first
//!   boundary line names the boundary, `FF D8` a single image.
//!
//! Any of these may be sent chunked. Anything else (another status, another Content-Type,
//! bytes that are not HTTP at all) is an error that names what came back and the first bytes
//! of its body. Nothing a peer sends is trusted further than the caps in [`ReaderConfig`]:
//! the head, each part's head, each part, and the bytes skipped looking for a boundary.

use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;

use crate::codec::DEFAULT_MAX_FRAME_LEN;

/// Default cap on the response head and on each part's head: 16 KiB.
pub const DEFAULT_MAX_HEAD_LEN: usize = 16 * 1024;

/// How much of an unexpected body an error shows, in characters.
const SHOWN_BODY_CHARS: usize = 80;
/// How many body bytes an unexpected response is given before its error is made.
const SHOWN_BODY_BYTES: usize = 4 * SHOWN_BODY_CHARS;
/// Cap on one line of chunked framing (a chunk size with extensions, a trailer line).
const MAX_CHUNK_LINE: usize = 1024;
/// Room past a part's cap for the boundary line that ends it.
const BOUNDARY_SLACK: usize = 64;

/// The caps the reader holds a server to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaderConfig {
    /// The largest response head, and the largest head of one part.
    pub max_head_len: usize,
    /// The largest JPEG (one part, or a single image).
    pub max_part_len: usize,
}

impl Default for ReaderConfig {
    fn default() -> Self {
        ReaderConfig {
            max_head_len: DEFAULT_MAX_HEAD_LEN,
            max_part_len: DEFAULT_MAX_FRAME_LEN as usize,
        }
    }
}

/// The status line and headers of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// `1` for HTTP/1.1, `0` for HTTP/1.0.
    pub minor_version: u8,
    pub status: u16,
    pub reason: String,
    /// Names and values as sent, in order (values trimmed).
    pub headers: Vec<(String, String)>,
}

impl ResponseHead {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        super::find_header(&self.headers, name)
    }

    pub fn content_type(&self) -> Option<&str> {
        self.header("content-type")
    }
}

/// What the body of an accepted response holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyKind {
    /// A stream of parts; the boundary as declared, `None` when it is taken from the body.
    Multipart { boundary: Option<String> },
    /// One JPEG.
    Single,
}

/// What [`MjpegReader::poll`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An accepted response's head (first, once).
    Head { head: ResponseHead, kind: BodyKind },
    /// One JPEG part, or the single image.
    Jpeg(Bytes),
    /// The body ended cleanly (a closing boundary, the end of a single image, or the peer
    /// closing between parts). Every later poll says this again.
    End,
}

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ReadError {
    #[error("closed the connection without answering")]
    NoAnswer,
    #[error("did not answer with HTTP: its first bytes {start}")]
    NotHttp { start: String },
    #[error("sent a response head of more than {max} bytes without its end")]
    HeadTooLarge { max: usize },
    #[error("answered with a status line that is not HTTP/1.x: {line:?}")]
    BadStatusLine { line: String },
    #[error("answered with a Content-Length that is not a number: {value:?}")]
    BadContentLength { value: String },
    #[error("sent chunked framing that is not HTTP: {what}")]
    BadChunk { what: String },
    #[error(
        "answered {status} {reason} ({}){}, {body}",
        content_type.as_deref().unwrap_or("no Content-Type"),
        location.as_ref().map(|l| format!(", redirecting to {l}")).unwrap_or_default()
    )]
    Unexpected {
        status: u16,
        reason: String,
        content_type: Option<String>,
        /// Where a redirect points.
        location: Option<String>,
        /// The start of the body as text or in hex: `its body beginning "<html>..."`.
        body: String,
    },
    #[error("declared a multipart boundary that is only dashes: {declared:?}")]
    BadBoundary { declared: String },
    #[error("sent {skipped} bytes without a multipart boundary line where one was due")]
    NoBoundary { skipped: usize },
    #[error("sent a part head of more than {max} bytes without its end")]
    PartHeadTooLarge { max: usize },
    #[error(
        "announced a part of {len} bytes, over the {max}-byte limit (raise --max-frame-size if the frames really are this large)"
    )]
    PartTooLarge { len: u64, max: usize },
    #[error(
        "sent more than {max} bytes of one part without a boundary (raise --max-frame-size if the frames really are this large)"
    )]
    PartWithoutEnd { max: usize },
    #[error("closed the connection in the middle of {what}")]
    Truncated { what: &'static str },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Reading the response head.
    Head,
    /// An unexpected response: gathering the first body bytes for its error.
    Reject(Box<ResponseHead>),
    /// No telling Content-Type: the first body bytes decide.
    Sniff(Box<ResponseHead>),
    /// Multipart: before the first boundary line, or after a part with Content-Length.
    Boundary {
        after_part: bool,
    },
    PartHead,
    /// A part with Content-Length: `left` bytes to go; kept when `jpeg`, else thrown away.
    Counted {
        left: usize,
        jpeg: bool,
    },
    /// A part without Content-Length, up to the next boundary line.
    Scanned {
        jpeg: bool,
    },
    /// The body is one image.
    Single,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// Until the connection closes.
    Close,
    /// Content-Length: this many body bytes still to come.
    Length(u64),
    Chunked(Chunk),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailer,
    Done,
}

/// A sans-IO reader of one MJPEG (or JPEG) response. See the module docs.
#[derive(Debug)]
pub struct MjpegReader {
    config: ReaderConfig,
    state: State,
    framing: Framing,
    /// Bytes as received, not yet through the framing.
    raw: BytesMut,
    /// Body bytes (de-chunked), not yet parsed.
    body: BytesMut,
    /// The boundary without its leading dashes, once known.
    boundary: Option<Vec<u8>>,
    /// Where in `raw` (head) or `body` (part head, scanned part) the search goes on.
    scanned: usize,
    /// Bytes thrown away while looking for a boundary line.
    skipped_bytes: usize,
    eof: bool,
    failed: Option<ReadError>,
    skipped_parts: u64,
    resyncs: u64,
}

impl MjpegReader {
    pub fn new(config: ReaderConfig) -> MjpegReader {
        MjpegReader {
            config,
            state: State::Head,
            framing: Framing::Close,
            raw: BytesMut::new(),
            body: BytesMut::new(),
            boundary: None,
            scanned: 0,
            skipped_bytes: 0,
            eof: false,
            failed: None,
            skipped_parts: 0,
            resyncs: 0,
        }
    }

    /// Bytes from the server, in order.
    pub fn push(&mut self, bytes: &[u8]) {
        if !self.eof && self.failed.is_none() && self.state != State::Done {
            self.raw.extend_from_slice(bytes);
        }
    }

    /// The server closed the connection (or the caller gives up waiting): after this, `poll`
    /// never asks for more; it returns what the bytes hold, then `End` or an error.
    pub fn finish(&mut self) {
        self.eof = true;
    }

    /// Parts skipped because their Content-Type was not a JPEG.
    pub fn skipped_parts(&self) -> u64 {
        self.skipped_parts
    }

    /// Times the bytes after a part with Content-Length were not a boundary line and the
    /// reader scanned on to the next one.
    pub fn resyncs(&self) -> u64 {
        self.resyncs
    }

    /// Bytes held, not yet given out.
    pub fn buffered(&self) -> usize {
        self.raw.len() + self.body.len()
    }

    /// Whether the response head is still being read (nothing accepted or rejected yet).
    pub fn in_head(&self) -> bool {
        self.state == State::Head
    }

    /// The next event; `Ok(None)` when more bytes are needed (never after [`finish`]). An
    /// error ends the response: every later poll returns it again.
    ///
    /// [`finish`]: MjpegReader::finish
    pub fn poll(&mut self) -> Result<Option<Event>, ReadError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let polled = self.run();
        if let Err(e) = &polled {
            self.failed = Some(e.clone());
            self.raw = BytesMut::new();
            self.body = BytesMut::new();
        }
        polled
    }

    fn run(&mut self) -> Result<Option<Event>, ReadError> {
        loop {
            if self.state != State::Head {
                self.pump()?;
            }
            match self.step()? {
                Step::Event(event) => return Ok(Some(event)),
                Step::Again => {}
                Step::More if self.eof => {
                    return Err(ReadError::Truncated {
                        what: self.state_name(),
                    });
                }
                Step::More => return Ok(None),
            }
        }
    }

    fn state_name(&self) -> &'static str {
        match self.state {
            State::Head => "the response head",
            State::Reject(_) | State::Sniff(_) => "the response body",
            State::Boundary { .. } => "the multipart stream",
            State::PartHead => "a part's head",
            State::Counted { .. } | State::Scanned { .. } => "a part",
            State::Single => "the image",
            State::Done => "nothing",
        }
    }

    /// Whether every body byte the framing allows is in `body`.
    fn body_complete(&self) -> bool {
        match self.framing {
            Framing::Close => self.eof,
            Framing::Length(left) => left == 0,
            Framing::Chunked(chunk) => chunk == Chunk::Done,
        }
    }

    /// Whether no more body bytes will come, complete or not.
    fn body_closed(&self) -> bool {
        self.eof || self.body_complete()
    }

    /// Moves received bytes through the framing into `body`.
    fn pump(&mut self) -> Result<(), ReadError> {
        match &mut self.framing {
            Framing::Close => {
                move_bytes(&mut self.raw, &mut self.body, usize::MAX);
            }
            Framing::Length(left) => {
                let n = usize::try_from(*left).unwrap_or(usize::MAX);
                let moved = move_bytes(&mut self.raw, &mut self.body, n);
                *left -= moved as u64;
                if *left == 0 {
                    // Whatever comes after the body is not ours to read.
                    self.raw.clear();
                }
            }
            Framing::Chunked(chunk) => dechunk(chunk, &mut self.raw, &mut self.body)?,
        }
        Ok(())
    }

    fn step(&mut self) -> Result<Step, ReadError> {
        match self.state.clone() {
            State::Head => self.read_head(),
            State::Reject(head) => self.reject(*head),
            State::Sniff(head) => self.sniff(*head),
            State::Boundary { after_part } => self.find_boundary(after_part),
            State::PartHead => self.read_part_head(),
            State::Counted { left, jpeg } => self.read_counted(left, jpeg),
            State::Scanned { jpeg } => self.read_scanned(jpeg),
            State::Single => self.read_single(),
            State::Done => Ok(Step::Event(Event::End)),
        }
    }

    fn set_state(&mut self, state: State) {
        self.scanned = 0;
        self.state = state;
    }

    fn read_head(&mut self) -> Result<Step, ReadError> {
        const PREFIX: &[u8] = b"HTTP/";
        let start = &self.raw[..self.raw.len().min(PREFIX.len())];
        if !PREFIX.starts_with(start) {
            return Err(ReadError::NotHttp {
                start: describe_start(&self.raw),
            });
        }
        if self.raw.is_empty() && self.eof {
            return Err(ReadError::NoAnswer);
        }
        let max = self.config.max_head_len;
        let Some((end, next)) = blank_line(&self.raw, &mut self.scanned, max) else {
            if self.raw.len() > max {
                return Err(ReadError::HeadTooLarge { max });
            }
            return Ok(Step::More);
        };
        if next > max {
            return Err(ReadError::HeadTooLarge { max });
        }
        let head = parse_head(&self.raw[..end])?;
        self.raw.advance(next);
        self.scanned = 0;
        if (100..200).contains(&head.status) {
            // 100 Continue and friends: the real answer follows.
            return Ok(Step::Again);
        }
        self.framing = framing(&head)?;
        let content_type = head.content_type().map(str::to_ascii_lowercase);
        let essence = content_type
            .as_deref()
            .map(|ct| ct.split(';').next().unwrap_or("").trim().to_owned());
        if head.status != 200 {
            self.set_state(State::Reject(Box::new(head)));
            return Ok(Step::Again);
        }
        match essence.as_deref() {
            Some("multipart/x-mixed-replace" | "multipart/mixed") => {
                let declared = head.content_type().and_then(boundary_param);
                if let Some(declared) = &declared {
                    let core = declared.trim_start_matches('-');
                    if core.is_empty() {
                        return Err(ReadError::BadBoundary {
                            declared: declared.clone(),
                        });
                    }
                    self.boundary = Some(core.as_bytes().to_vec());
                }
                self.set_state(State::Boundary { after_part: false });
                let kind = BodyKind::Multipart { boundary: declared };
                Ok(Step::Event(Event::Head { head, kind }))
            }
            Some(ct) if is_jpeg_type(ct) => {
                if let Framing::Length(len) = self.framing {
                    self.check_part_len(len)?;
                }
                self.set_state(State::Single);
                let kind = BodyKind::Single;
                Ok(Step::Event(Event::Head { head, kind }))
            }
            None | Some("application/octet-stream" | "") => {
                self.set_state(State::Sniff(Box::new(head)));
                Ok(Step::Again)
            }
            Some(_) => {
                self.set_state(State::Reject(Box::new(head)));
                Ok(Step::Again)
            }
        }
    }

    fn reject(&mut self, head: ResponseHead) -> Result<Step, ReadError> {
        if self.body.len() < SHOWN_BODY_BYTES && !self.body_closed() {
            return Ok(Step::More);
        }
        Err(ReadError::Unexpected {
            status: head.status,
            reason: head.reason.clone(),
            content_type: head.content_type().map(str::to_owned),
            location: head.header("location").map(str::to_owned),
            body: describe_body(&self.body),
        })
    }

    fn sniff(&mut self, head: ResponseHead) -> Result<Step, ReadError> {
        let start = self
            .body
            .iter()
            .position(|b| !matches!(b, b'\r' | b'\n'))
            .map_or(&[][..], |i| &self.body[i..]);
        let kind = if start.starts_with(b"--") {
            self.set_state(State::Boundary { after_part: false });
            BodyKind::Multipart { boundary: None }
        } else if start.starts_with(&[0xFF, 0xD8]) {
            if let Framing::Length(len) = self.framing {
                self.check_part_len(len + self.body.len() as u64)?;
            }
            self.set_state(State::Single);
            BodyKind::Single
        } else if start.len() < 2 && !self.body_closed() {
            return Ok(Step::More);
        } else {
            self.set_state(State::Reject(Box::new(head)));
            return Ok(Step::Again);
        };
        Ok(Step::Event(Event::Head { head, kind }))
    }

    fn check_part_len(&self, len: u64) -> Result<(), ReadError> {
        let max = self.config.max_part_len;
        if len > max as u64 {
            return Err(ReadError::PartTooLarge { len, max });
        }
        Ok(())
    }

    /// Looks for the next boundary line, skipping blank lines; anything else is skipped too
    /// (a preamble, or the rest of a part whose Content-Length was short), within a cap.
    fn find_boundary(&mut self, after_part: bool) -> Result<Step, ReadError> {
        loop {
            let Some(nl) = memchr::memchr(b'\n', &self.body) else {
                if self.body.is_empty() && self.body_closed() {
                    self.set_state(State::Done);
                    return Ok(Step::Event(Event::End));
                }
                if self.body_closed() {
                    return Err(ReadError::Truncated {
                        what: "the multipart stream",
                    });
                }
                self.check_skipped(self.body.len(), after_part)?;
                return Ok(Step::More);
            };
            let line = trim_line(&self.body[..nl]);
            let boundary = match &self.boundary {
                Some(core) => boundary_line(line, core),
                None => {
                    // No declared boundary: the first line of two dashes and more names it.
                    let core = trim_dashes(line);
                    if line.starts_with(b"--") && !core.is_empty() {
                        self.boundary = Some(core.to_vec());
                        Some(false)
                    } else {
                        None
                    }
                }
            };
            match boundary {
                Some(closing) => {
                    self.body.advance(nl + 1);
                    self.skipped_bytes = 0;
                    if closing {
                        self.set_state(State::Done);
                        return Ok(Step::Event(Event::End));
                    }
                    self.set_state(State::PartHead);
                    return Ok(Step::Again);
                }
                None if line.is_empty() => self.body.advance(nl + 1),
                None => {
                    if after_part && self.skipped_bytes == 0 {
                        self.resyncs += 1;
                    }
                    self.skipped_bytes += nl + 1;
                    self.body.advance(nl + 1);
                    self.check_skipped(0, after_part)?;
                }
            }
        }
    }

    fn check_skipped(&self, pending: usize, after_part: bool) -> Result<(), ReadError> {
        let limit = if after_part {
            self.config.max_part_len
        } else {
            self.config.max_head_len
        };
        let skipped = self.skipped_bytes + pending;
        if skipped > limit {
            return Err(ReadError::NoBoundary { skipped });
        }
        Ok(())
    }

    fn read_part_head(&mut self) -> Result<Step, ReadError> {
        if self.body.is_empty() && self.body_closed() {
            // A boundary line and then the end, as ffmpeg ends its stream.
            self.set_state(State::Done);
            return Ok(Step::Event(Event::End));
        }
        let max = self.config.max_head_len;
        let Some((end, next)) = blank_line(&self.body, &mut self.scanned, max) else {
            if self.body.len() > max {
                return Err(ReadError::PartHeadTooLarge { max });
            }
            return Ok(Step::More);
        };
        if next > max {
            return Err(ReadError::PartHeadTooLarge { max });
        }
        let mut len = None;
        let mut jpeg = true;
        for line in self.body[..end].split(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(trim_line(line));
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let (name, value) = (name.trim(), value.trim());
            if name.eq_ignore_ascii_case("content-length") {
                len = Some(parse_length(value)?);
            } else if name.eq_ignore_ascii_case("content-type") {
                let essence = value.split(';').next().unwrap_or("").trim();
                jpeg = is_jpeg_type(&essence.to_ascii_lowercase());
            }
        }
        self.body.advance(next);
        if !jpeg {
            self.skipped_parts += 1;
        }
        match len {
            Some(len) => {
                if jpeg {
                    self.check_part_len(len)?;
                }
                let left = usize::try_from(len).unwrap_or(usize::MAX);
                self.set_state(State::Counted { left, jpeg });
            }
            None => {
                if self.boundary.is_none() {
                    // Unreachable: a part head comes only after a boundary line named it.
                    return Err(ReadError::NoBoundary { skipped: 0 });
                }
                self.set_state(State::Scanned { jpeg });
            }
        }
        Ok(Step::Again)
    }

    fn read_counted(&mut self, left: usize, jpeg: bool) -> Result<Step, ReadError> {
        if jpeg {
            if self.body.len() >= left {
                let part = self.body.split_to(left).freeze();
                self.set_state(State::Boundary { after_part: true });
                return Ok(Step::Event(Event::Jpeg(part)));
            }
            if self.body_closed() {
                return Err(ReadError::Truncated { what: "a part" });
            }
            return Ok(Step::More);
        }
        let n = left.min(self.body.len());
        self.body.advance(n);
        if n == left {
            self.set_state(State::Boundary { after_part: true });
            return Ok(Step::Again);
        }
        self.state = State::Counted {
            left: left - n,
            jpeg,
        };
        if self.body_closed() {
            return Err(ReadError::Truncated { what: "a part" });
        }
        Ok(Step::More)
    }

    fn read_scanned(&mut self, jpeg: bool) -> Result<Step, ReadError> {
        let Some(core) = self.boundary.clone() else {
            return Err(ReadError::NoBoundary { skipped: 0 });
        };
        let max = self.config.max_part_len;
        match find_boundary_line(&self.body, &core, self.scanned, self.body_closed()) {
            Found::Line {
                part_end,
                next,
                closing,
            } => {
                if part_end > max {
                    return Err(ReadError::PartWithoutEnd { max });
                }
                let part = self.body.split_to(part_end).freeze();
                self.body.advance(next - part_end);
                self.set_state(if closing {
                    State::Done
                } else {
                    State::PartHead
                });
                if jpeg {
                    return Ok(Step::Event(Event::Jpeg(part)));
                }
                Ok(Step::Again)
            }
            Found::NotYet { resume } => {
                self.scanned = resume;
                if self.body.len() > max + core.len() + BOUNDARY_SLACK {
                    return Err(ReadError::PartWithoutEnd { max });
                }
                if self.body_closed() {
                    // The last part, cut off by the close: whole if it ends a JPEG.
                    let part = trim_crlf(&self.body);
                    let (len, whole) = (part.len(), part.ends_with(&[0xFF, 0xD9]));
                    if jpeg && whole && len <= max {
                        let part = self.body.split_to(len).freeze();
                        self.body.clear();
                        self.set_state(State::Done);
                        return Ok(Step::Event(Event::Jpeg(part)));
                    }
                    if !jpeg {
                        self.body.clear();
                        self.set_state(State::Done);
                        return Ok(Step::Again);
                    }
                    return Err(ReadError::Truncated { what: "a part" });
                }
                Ok(Step::More)
            }
        }
    }

    fn read_single(&mut self) -> Result<Step, ReadError> {
        let max = self.config.max_part_len;
        if self.body.len() > max {
            return Err(ReadError::PartTooLarge {
                len: self.body.len() as u64,
                max,
            });
        }
        if self.body_complete() {
            let image = self.body.split().freeze();
            self.set_state(State::Done);
            return Ok(Step::Event(Event::Jpeg(image)));
        }
        if self.eof {
            return Err(ReadError::Truncated { what: "the image" });
        }
        Ok(Step::More)
    }
}

enum Step {
    Event(Event),
    /// The state changed: go on.
    Again,
    /// More bytes are needed.
    More,
}

/// Moves up to `max` bytes from the front of `from` to the end of `to`; how many.
fn move_bytes(from: &mut BytesMut, to: &mut BytesMut, max: usize) -> usize {
    let n = from.len().min(max);
    if n == 0 {
        return 0;
    }
    if to.is_empty() && n == from.len() {
        std::mem::swap(from, to);
    } else {
        to.extend_from_slice(&from[..n]);
        from.advance(n);
    }
    n
}

/// Decodes chunked framing from `raw` into `body`, as far as the bytes go.
fn dechunk(chunk: &mut Chunk, raw: &mut BytesMut, body: &mut BytesMut) -> Result<(), ReadError> {
    let bad = |what: String| ReadError::BadChunk { what };
    loop {
        match *chunk {
            Chunk::Size | Chunk::Trailer => {
                let Some(nl) = memchr::memchr(b'\n', raw) else {
                    if raw.len() > MAX_CHUNK_LINE {
                        return Err(bad(format!("a line of over {MAX_CHUNK_LINE} bytes")));
                    }
                    return Ok(());
                };
                if nl > MAX_CHUNK_LINE {
                    return Err(bad(format!("a line of over {MAX_CHUNK_LINE} bytes")));
                }
                let line = trim_line(&raw[..nl]);
                if *chunk == Chunk::Trailer {
                    if line.is_empty() {
                        *chunk = Chunk::Done;
                    }
                } else {
                    let size = line.split(|&b| b == b';').next().unwrap_or(b"");
                    let size = trim_spaces(size);
                    let parsed = std::str::from_utf8(size)
                        .ok()
                        .filter(|s| !s.is_empty() && s.len() <= 15)
                        .and_then(|s| u64::from_str_radix(s, 16).ok());
                    let Some(size) = parsed else {
                        let line = String::from_utf8_lossy(line).into_owned();
                        return Err(bad(format!("the chunk size {line:?} is not a hex number")));
                    };
                    *chunk = if size == 0 {
                        Chunk::Trailer
                    } else {
                        Chunk::Data(size)
                    };
                }
                raw.advance(nl + 1);
            }
            Chunk::Data(left) => {
                let moved = move_bytes(raw, body, usize::try_from(left).unwrap_or(usize::MAX));
                if moved == 0 {
                    return Ok(());
                }
                let left = left - moved as u64;
                *chunk = if left == 0 {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(left)
                };
            }
            Chunk::DataEnd => {
                if raw.starts_with(b"\r\n") {
                    raw.advance(2);
                } else if raw.starts_with(b"\n") {
                    raw.advance(1);
                } else if raw.is_empty() || &raw[..] == b"\r" {
                    return Ok(());
                } else {
                    return Err(bad("a chunk longer than its size".to_owned()));
                }
                *chunk = Chunk::Size;
            }
            Chunk::Done => {
                raw.clear();
                return Ok(());
            }
        }
    }
}

/// The framing a response head announces.
fn framing(head: &ResponseHead) -> Result<Framing, ReadError> {
    if head.status == 204 || head.status == 304 {
        return Ok(Framing::Length(0));
    }
    let chunked = head
        .header("transfer-encoding")
        .and_then(|te| te.rsplit(',').next())
        .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
    if chunked {
        return Ok(Framing::Chunked(Chunk::Size));
    }
    match head.header("content-length") {
        Some(value) => Ok(Framing::Length(parse_length(value)?)),
        None => Ok(Framing::Close),
    }
}

fn parse_length(value: &str) -> Result<u64, ReadError> {
    let value = value.trim();
    value
        .parse::<u64>()
        .ok()
        .filter(|_| value.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| ReadError::BadContentLength {
            value: value.chars().take(40).collect(),
        })
}

fn is_jpeg_type(essence: &str) -> bool {
    matches!(essence, "image/jpeg" | "image/jpg" | "image/pjpeg")
}

/// The `boundary` parameter of a Content-Type, unquoted.
fn boundary_param(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        Some(value.to_owned())
    })
}

/// The status line and headers in `head` (without the blank line).
fn parse_head(head: &[u8]) -> Result<ResponseHead, ReadError> {
    let mut lines = head.split(|&b| b == b'\n').map(trim_line);
    let status_line = lines.next().unwrap_or(b"");
    let bad = || ReadError::BadStatusLine {
        line: String::from_utf8_lossy(status_line)
            .chars()
            .take(80)
            .collect(),
    };
    let text = std::str::from_utf8(status_line).map_err(|_| bad())?;
    let rest = text.strip_prefix("HTTP/1.").ok_or_else(bad)?;
    let (minor, rest) = rest.split_once(' ').ok_or_else(bad)?;
    let minor_version = match minor {
        "0" => 0,
        "1" => 1,
        _ => return Err(bad()),
    };
    let rest = rest.trim_start();
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let status = code.parse().map_err(|_| bad())?;
    let headers = lines
        .filter_map(|line| {
            let line = String::from_utf8_lossy(line);
            let (name, value) = line.split_once(':')?;
            Some((name.trim().to_owned(), value.trim().to_owned()))
        })
        .collect();
    Ok(ResponseHead {
        minor_version,
        status,
        reason: reason.trim().to_owned(),
        headers,
    })
}

/// The first blank line in `buf` at or after the line starting at `*from`: where the lines
/// before it end, and where the bytes after it start. `*from` moves on to the last line
/// start seen, so that a search resumed with more bytes does not read the same bytes again.
/// Looks no further than `max` bytes.
fn blank_line(buf: &[u8], from: &mut usize, max: usize) -> Option<(usize, usize)> {
    let mut start = *from;
    while start < buf.len() && start <= max {
        let Some(nl) = memchr::memchr(b'\n', &buf[start..]) else {
            break;
        };
        if trim_line(&buf[start..start + nl]).is_empty() {
            return Some((start, start + nl + 1));
        }
        start += nl + 1;
        *from = start;
    }
    None
}

/// A line without its `\r` and trailing spaces and tabs.
fn trim_line(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\r' | b' ' | b'\t') {
        end -= 1;
    }
    &line[..end]
}

fn trim_spaces(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let s = &s[start..];
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    &s[..end]
}

fn trim_dashes(line: &[u8]) -> &[u8] {
    let start = line.iter().position(|&b| b != b'-').unwrap_or(line.len());
    &line[start..]
}

/// `part` without one trailing `\r\n` or `\n`.
fn trim_crlf(part: &[u8]) -> &[u8] {
    part.strip_suffix(b"\r\n")
        .or_else(|| part.strip_suffix(b"\n"))
        .unwrap_or(part)
}

/// `Some(closing)` when `line` (trimmed) is a boundary line for `core`: two or more dashes,
/// `core`, and `--` after it for the closing one.
fn boundary_line(line: &[u8], core: &[u8]) -> Option<bool> {
    if !line.starts_with(b"--") {
        return None;
    }
    let rest = trim_dashes(line);
    if rest == core {
        Some(false)
    } else if rest.strip_suffix(b"--") == Some(core) {
        Some(true)
    } else {
        None
    }
}

enum Found {
    /// The part is `..part_end`; the next part's head starts at `next`.
    Line {
        part_end: usize,
        next: usize,
        closing: bool,
    },
    /// No boundary line yet; search again from `resume`.
    NotYet { resume: usize },
}

/// The first boundary line for `core` in `body` whose `core` starts at or after `from`: two or
/// more dashes at the start of a line (after `\n`) or right after a JPEG's EOI (`FF D9`),
/// then `core`, then `--` or nothing, then the end of the line. `closed`: no more bytes come,
/// so the end of `body` ends the line.
fn find_boundary_line(body: &[u8], core: &[u8], from: usize, closed: bool) -> Found {
    let finder = memchr::memmem::Finder::new(core);
    let mut from = from;
    while let Some(i) = finder.find(&body[from.min(body.len())..]) {
        let at = from + i;
        from = at + 1;
        let dashes = body[..at].iter().rev().take_while(|&&b| b == b'-').count();
        if dashes < 2 {
            continue;
        }
        let line_start = at - dashes;
        let part_end = if line_start == 0 {
            0
        } else if body[line_start - 1] == b'\n' {
            let end = line_start - 1;
            if end > 0 && body[end - 1] == b'\r' {
                end - 1
            } else {
                end
            }
        } else if body[..line_start].ends_with(&[0xFF, 0xD9]) {
            line_start
        } else {
            continue;
        };
        let after = &body[at + core.len()..];
        let (closing, rest) = match after.strip_prefix(b"--") {
            Some(rest) => (true, rest),
            None if b"--".starts_with(after) && !closed => return Found::NotYet { resume: at },
            None => (false, after),
        };
        let spaces = rest
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        let rest = &rest[spaces..];
        let line_end = if rest.starts_with(b"\n") {
            1
        } else if rest.starts_with(b"\r\n") {
            2
        } else if (rest.is_empty() || rest == b"\r") && !closed {
            return Found::NotYet { resume: at };
        } else if rest.is_empty() || rest == b"\r" {
            rest.len()
        } else {
            continue;
        };
        let next = body.len() - rest.len() + line_end;
        return Found::Line {
            part_end,
            next,
            closing,
        };
    }
    Found::NotYet {
        resume: body.len().saturating_sub(core.len().saturating_sub(1)),
    }
}

/// The start of a body for an error: `its body beginning "..."` (text, white space runs made
/// one space), in hex when it is not text, or `with an empty body`.
fn describe_body(body: &[u8]) -> String {
    if body.is_empty() {
        return "with an empty body".to_owned();
    }
    let head = &body[..body.len().min(SHOWN_BODY_BYTES)];
    let text = String::from_utf8_lossy(head);
    let printable = text
        .chars()
        .filter(|c| !c.is_control() || c.is_whitespace())
        .filter(|&c| c != char::REPLACEMENT_CHARACTER)
        .count();
    if printable * 10 < text.chars().count() * 9 {
        return format!("its body beginning {}", hex_and_text(body));
    }
    let mut shown = String::new();
    let mut chars = 0;
    let mut space = false;
    for c in text.chars() {
        if c.is_whitespace() || c.is_control() {
            space = !shown.is_empty();
            continue;
        }
        if chars == SHOWN_BODY_CHARS {
            return format!("its body beginning \"{shown}\"...");
        }
        if space {
            shown.push(' ');
            chars += 1;
            space = false;
        }
        shown.push(c);
        chars += 1;
    }
    format!("its body \"{shown}\"")
}

/// `were 00 00 1A 2B ... ("....")`, or `were none`.
fn describe_start(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "were none".to_owned();
    }
    format!("were {}", hex_and_text(bytes))
}

/// The first bytes in hex and as text: `00 00 1A 2B ... ("....")`.
fn hex_and_text(bytes: &[u8]) -> String {
    let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02X}")).collect();
    let more = if bytes.len() > 8 { " ..." } else { "" };
    let text: String = bytes
        .iter()
        .take(16)
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        })
        .collect();
    format!("{}{more} ({text:?})", head.join(" "))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
