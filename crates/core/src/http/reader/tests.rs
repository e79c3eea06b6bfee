use super::*;
use proptest::prelude::*;

/// What ffmpeg's HTTP server (`-f mpjpeg -listen 1`, ffmpeg 5.1) sent for three 64x48 frames:
/// `application/octet-stream`, chunked, parts with Content-length.
const FFMPEG_OCTET_STREAM: &[u8] = include_bytes!("../testdata/ffmpeg-mpjpeg-octet-stream.http");
/// The same with `-content_type 'multipart/x-mixed-replace;boundary=ffmpeg'`.
const FFMPEG_MULTIPART: &[u8] = include_bytes!("../testdata/ffmpeg-mpjpeg-multipart.http");

fn config(max_part_len: usize) -> ReaderConfig {
    ReaderConfig {
        max_head_len: 1024,
        max_part_len,
    }
}

/// What a reader makes of `wire` pushed in pieces of the sizes in `cuts` (cycled), polled
/// after each push, then finished.
struct Read {
    events: Vec<Event>,
    error: Option<ReadError>,
    reader: MjpegReader,
}

impl Read {
    fn jpegs(&self) -> Vec<Vec<u8>> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Jpeg(j) => Some(j.to_vec()),
                _ => None,
            })
            .collect()
    }

    fn kind(&self) -> Option<&BodyKind> {
        self.events.iter().find_map(|e| match e {
            Event::Head { kind, .. } => Some(kind),
            _ => None,
        })
    }

    fn ended(&self) -> bool {
        self.events.last() == Some(&Event::End)
    }

    fn error(&self) -> String {
        self.error.as_ref().expect("no error").to_string()
    }
}

fn read(wire: &[u8], cuts: &[usize], config: ReaderConfig) -> Read {
    let mut reader = MjpegReader::new(config);
    let mut events = Vec::new();
    let mut rest = wire;
    let mut cuts = cuts.iter().map(|&c| c.max(1)).cycle();
    let drain = |reader: &mut MjpegReader, events: &mut Vec<Event>| loop {
        match reader.poll() {
            Ok(Some(Event::End)) => {
                events.push(Event::End);
                return Some(None);
            }
            Ok(Some(e)) => events.push(e),
            Ok(None) => return None,
            Err(e) => return Some(Some(e)),
        }
    };
    while !rest.is_empty() {
        let n = cuts.next().unwrap_or(rest.len()).min(rest.len());
        reader.push(&rest[..n]);
        rest = &rest[n..];
        if let Some(error) = drain(&mut reader, &mut events) {
            return Read {
                events,
                error,
                reader,
            };
        }
    }
    reader.finish();
    let error = drain(&mut reader, &mut events).expect("poll asked for more after finish");
    Read {
        events,
        error,
        reader,
    }
}

fn read_whole(wire: &[u8]) -> Read {
    read(wire, &[usize::MAX], ReaderConfig::default())
}

/// A JPEG-shaped payload: SOI, `len` bytes from `seed`, EOI.
fn fake_jpeg(seed: u8, len: usize) -> Vec<u8> {
    let mut out = vec![0xFF, 0xD8];
    out.extend((0..len).map(|i| seed.wrapping_add(i as u8) | 0x80));
    out.extend_from_slice(&[0xFF, 0xD9]);
    out
}

fn head(content_type: &str, extra: &str) -> Vec<u8> {
    format!("HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n{extra}\r\n").into_bytes()
}

#[test]
fn ffmpeg_octet_stream_takes_the_boundary_from_the_body() {
    let r = read_whole(FFMPEG_OCTET_STREAM);
    assert_eq!(r.error, None);
    assert_eq!(r.kind(), Some(&BodyKind::Multipart { boundary: None }));
    let jpegs = r.jpegs();
    assert_eq!(jpegs.len(), 3);
    for j in &jpegs {
        assert!(crate::jpeg::is_jpeg(j));
        assert_eq!(crate::jpeg::dimensions(j), Some((64, 48)));
    }
    assert!(r.ended());
}

#[test]
fn ffmpeg_multipart_in_any_split() {
    let whole = read_whole(FFMPEG_MULTIPART);
    assert_eq!(
        whole.kind(),
        Some(&BodyKind::Multipart {
            boundary: Some("ffmpeg".to_owned())
        })
    );
    assert_eq!(whole.jpegs().len(), 3);
    assert!(whole.ended());
    for cuts in [&[1usize][..], &[7, 1, 300], &[4096]] {
        let r = read(FFMPEG_MULTIPART, cuts, ReaderConfig::default());
        assert_eq!(r.events, whole.events, "cuts {cuts:?}");
    }
}

#[test]
fn mjpg_streamer_parts_with_content_length() {
    let (a, b) = (fake_jpeg(1, 100), fake_jpeg(2, 50));
    let mut wire = b"HTTP/1.0 200 OK\r\nServer: MJPG-Streamer/0.2\r\nContent-Type: multipart/x-mixed-replace;boundary=boundarydonotcross\r\n\r\n--boundarydonotcross\r\n".to_vec();
    for j in [&a, &b] {
        wire.extend_from_slice(
            format!(
                "Content-Type: image/jpeg\r\nContent-Length: {}\r\nX-Timestamp: 1.5\r\n\r\n",
                j.len()
            )
            .as_bytes(),
        );
        wire.extend_from_slice(j);
        wire.extend_from_slice(b"\r\n--boundarydonotcross\r\n");
    }
    let r = read_whole(&wire);
    assert_eq!(r.jpegs(), vec![a, b]);
    assert!(r.ended(), "{:?}", r.error);
    assert_eq!(r.reader.resyncs(), 0);
}

#[test]
fn a_camera_that_declares_the_dashes_and_sends_no_length() {
    let (a, b) = (fake_jpeg(3, 80), fake_jpeg(4, 90));
    let mut wire = head("multipart/x-mixed-replace; boundary=\"--myboundary\"", "");
    for j in [&a, &b] {
        wire.extend_from_slice(b"--myboundary\r\nContent-Type: image/jpeg\r\n\r\n");
        wire.extend_from_slice(j);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"--myboundary--\r\n");
    let r = read(&wire, &[3], ReaderConfig::default());
    assert_eq!(r.jpegs(), vec![a, b]);
    assert!(r.ended(), "{:?}", r.error);
}

#[test]
fn a_boundary_right_after_the_eoi_ends_a_part() {
    let (a, b) = (fake_jpeg(5, 10), fake_jpeg(6, 10));
    let mut wire = head("multipart/x-mixed-replace;boundary=frame", "");
    for j in [&a, &b] {
        wire.extend_from_slice(b"--frame\r\n\r\n");
        wire.extend_from_slice(j);
    }
    wire.extend_from_slice(b"--frame\r\n");
    let r = read_whole(&wire);
    assert_eq!(r.jpegs(), vec![a, b]);
}

#[test]
fn with_content_length_the_boundary_text_inside_a_jpeg_is_data() {
    let mut j = fake_jpeg(7, 20);
    j.splice(10..10, b"\r\n--frame\r\n".iter().copied());
    let mut wire = head("multipart/x-mixed-replace;boundary=frame", "");
    wire.extend_from_slice(format!("--frame\r\nContent-Length: {}\r\n\r\n", j.len()).as_bytes());
    wire.extend_from_slice(&j);
    wire.extend_from_slice(b"\r\n--frame--\r\n");
    let r = read(&wire, &[5], ReaderConfig::default());
    assert_eq!(r.jpegs(), vec![j]);
    assert!(r.ended());
}

#[test]
fn a_wrong_content_length_is_resynced_at_the_next_boundary() {
    let (a, b) = (fake_jpeg(8, 40), fake_jpeg(9, 40));
    let mut wire = head("multipart/x-mixed-replace;boundary=frame", "");
    // Says 10 bytes short: the rest of `a` is skipped up to the next boundary line.
    wire.extend_from_slice(
        format!("--frame\r\nContent-Length: {}\r\n\r\n", a.len() - 10).as_bytes(),
    );
    wire.extend_from_slice(&a);
    wire.extend_from_slice(b"\r\n--frame\r\nContent-Type: image/jpeg\r\n\r\n");
    wire.extend_from_slice(&b);
    wire.extend_from_slice(b"\r\n--frame--\r\n");
    let r = read_whole(&wire);
    assert_eq!(r.jpegs(), vec![a[..a.len() - 10].to_vec(), b]);
    assert_eq!(r.reader.resyncs(), 1);
    assert!(r.ended());
}

#[test]
fn parts_that_are_not_jpegs_are_skipped_and_counted() {
    let a = fake_jpeg(10, 30);
    let mut wire = head("multipart/mixed; boundary=x", "");
    wire.extend_from_slice(
        b"--x\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello\r\n",
    );
    wire.extend_from_slice(b"--x\r\nContent-Type: application/json\r\n\r\n{\"a\":1}\r\n");
    wire.extend_from_slice(b"--x\r\nContent-Type: image/jpeg\r\n\r\n");
    wire.extend_from_slice(&a);
    wire.extend_from_slice(b"\r\n--x--\r\n");
    let r = read_whole(&wire);
    assert_eq!(r.jpegs(), vec![a]);
    assert_eq!(r.reader.skipped_parts(), 2);
}

#[test]
fn single_images_by_length_until_close_and_chunked() {
    let j = fake_jpeg(11, 200);
    let by_length = [
        head("image/jpeg", &format!("Content-Length: {}\r\n", j.len())),
        j.clone(),
    ]
    .concat();
    let until_close = [head("image/jpeg", "Connection: close\r\n"), j.clone()].concat();
    let mut chunked = head("image/jpeg", "Transfer-Encoding: chunked\r\n");
    for piece in j.chunks(64) {
        chunked.extend_from_slice(format!("{:x};ext=1\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\nX-Trailer: yes\r\n\r\n");
    for wire in [by_length, until_close, chunked] {
        for cuts in [&[1usize][..], &[usize::MAX]] {
            let r = read(&wire, cuts, ReaderConfig::default());
            assert_eq!(r.kind(), Some(&BodyKind::Single));
            assert_eq!(r.jpegs(), vec![j.clone()]);
            assert!(r.ended(), "{:?}", r.error);
        }
    }
}

#[test]
fn a_404_with_html_names_the_status_the_type_and_the_body() {
    let wire = b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 120\r\n\r\n<!DOCTYPE html>\n<html>\n  <head><title>404 Not Found</title></head>\n  <body><h1>Not Found</h1> nothing here</body></html>\n";
    let r = read(wire, &[9], ReaderConfig::default());
    assert!(r.jpegs().is_empty());
    insta::assert_snapshot!(r.error());
}

#[test]
fn a_200_with_html_is_not_a_stream() {
    let wire = [
        head("text/html", ""),
        b"<html><body>mjpg-streamer: <a href=\"/?action=stream\">stream</a></body></html>".to_vec(),
    ]
    .concat();
    insta::assert_snapshot!(read_whole(&wire).error());
}

#[test]
fn a_redirect_says_where_to() {
    let wire = b"HTTP/1.1 302 Found\r\nLocation: /stream.mjpg\r\nContent-Length: 0\r\n\r\n";
    insta::assert_snapshot!(read_whole(wire).error());
}

#[test]
fn a_legacy_edgecam_port_is_not_http() {
    let mut wire = vec![0, 0, 0x12, 0x34];
    wire.extend_from_slice(&fake_jpeg(12, 20));
    insta::assert_snapshot!(read_whole(&wire).error());
    assert_eq!(read_whole(b"").error, Some(ReadError::NoAnswer));
}

#[test]
fn headers_forever_are_capped() {
    let mut wire = b"HTTP/1.1 200 OK\r\n".to_vec();
    for _ in 0..200 {
        wire.extend_from_slice(b"X-Junk: aaaaaaaaaaaaaaaaaaaa\r\n");
    }
    let r = read(&wire, &[13], config(1000));
    assert_eq!(r.error, Some(ReadError::HeadTooLarge { max: 1024 }));
    insta::assert_snapshot!(r.error());
}

#[test]
fn a_part_over_the_cap_is_an_error_with_or_without_length() {
    let big = fake_jpeg(13, 2000);
    let mut with_length = head("multipart/x-mixed-replace;boundary=b", "");
    with_length.extend_from_slice(b"--b\r\nContent-Length: 2004\r\n\r\n");
    with_length.extend_from_slice(&big);
    let r = read(&with_length, &[100], config(1000));
    assert_eq!(
        r.error,
        Some(ReadError::PartTooLarge {
            len: 2004,
            max: 1000
        })
    );
    insta::assert_snapshot!("part_too_large", r.error());

    let mut without = head("multipart/x-mixed-replace;boundary=b", "");
    without.extend_from_slice(b"--b\r\n\r\n");
    without.extend_from_slice(&big);
    without.extend_from_slice(b"\r\n--b\r\n");
    let r = read(&without, &[100], config(1000));
    assert_eq!(r.error, Some(ReadError::PartWithoutEnd { max: 1000 }));
    insta::assert_snapshot!("part_without_end", r.error());

    let single = [head("image/jpeg", "Content-Length: 99999999999\r\n"), big].concat();
    let r = read(&single, &[100], config(1000));
    assert!(
        matches!(r.error, Some(ReadError::PartTooLarge { .. })),
        "{:?}",
        r.error
    );
}

#[test]
fn closing_mid_part_is_truncated_and_between_parts_is_the_end() {
    let j = fake_jpeg(14, 30);
    let mut wire = head("multipart/x-mixed-replace;boundary=b", "");
    wire.extend_from_slice(format!("--b\r\nContent-Length: {}\r\n\r\n", j.len()).as_bytes());
    wire.extend_from_slice(&j);
    let r = read_whole(&wire);
    assert_eq!(r.jpegs(), vec![j.clone()]);
    assert!(r.ended());
    let r = read_whole(&wire[..wire.len() - 5]);
    assert_eq!(r.error, Some(ReadError::Truncated { what: "a part" }));
    let r = read_whole(&wire[..20]);
    assert_eq!(
        r.error,
        Some(ReadError::Truncated {
            what: "the response head"
        })
    );
}

#[test]
fn continue_comes_before_the_answer() {
    let j = fake_jpeg(15, 10);
    let wire = [
        b"HTTP/1.1 100 Continue\r\n\r\n".to_vec(),
        head("image/jpeg", &format!("Content-Length: {}\r\n", j.len())),
        j.clone(),
    ]
    .concat();
    assert_eq!(read_whole(&wire).jpegs(), vec![j]);
}

#[test]
fn bad_framing_is_named() {
    let bad_chunk = [
        head("image/jpeg", "Transfer-Encoding: chunked\r\n"),
        b"zz\r\n".to_vec(),
    ]
    .concat();
    assert!(matches!(
        read_whole(&bad_chunk).error,
        Some(ReadError::BadChunk { .. })
    ));
    let bad_length = head("image/jpeg", "Content-Length: 12abc\r\n");
    assert!(matches!(
        read_whole(&bad_length).error,
        Some(ReadError::BadContentLength { .. })
    ));
    let bad_status = b"HTTP/1.1 OK\r\n\r\n";
    assert!(matches!(
        read_whole(bad_status).error,
        Some(ReadError::BadStatusLine { .. })
    ));
}

/// How a generated stream writes its boundary.
#[derive(Debug, Clone)]
struct Style {
    /// The Content-Type declares `--frame` rather than `frame`.
    declared_dashes: bool,
    quoted: bool,
    /// Boundary lines are `--` and the declared text (RFC 2046), or `--frame` whatever
    /// was declared.
    rfc: bool,
    chunked: bool,
    /// A blank line before the first boundary (mjpg-streamer).
    preamble: bool,
    closing: bool,
}

#[derive(Debug, Clone)]
struct Part {
    content: Vec<u8>,
    jpeg: bool,
    with_length: bool,
}

fn style() -> impl Strategy<Value = Style> {
    (any::<[bool; 6]>()).prop_map(
        |[declared_dashes, quoted, rfc, chunked, preamble, closing]| Style {
            declared_dashes,
            quoted,
            rfc,
            chunked,
            preamble,
            closing,
        },
    )
}

fn part() -> impl Strategy<Value = Part> {
    (
        proptest::collection::vec(any::<u8>(), 0..200),
        prop::bool::weighted(0.8),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(mut bytes, jpeg, with_length, boundary_inside)| {
            if with_length {
                if boundary_inside {
                    // Data that reads as a boundary line: the length must win.
                    let at = bytes.len() / 2;
                    bytes.splice(at..at, b"\r\n--frame\r\n".iter().copied());
                }
            } else {
                // Without a length the data must not hold a boundary line.
                for b in &mut bytes {
                    if *b == b'-' {
                        *b = b'_';
                    }
                }
            }
            let content = if jpeg {
                [&[0xFF, 0xD8][..], &bytes, &[0xFF, 0xD9]].concat()
            } else {
                bytes
            };
            Part {
                content,
                jpeg,
                with_length,
            }
        })
}

fn stream_wire(style: &Style, parts: &[Part], chunk_sizes: &[usize]) -> Vec<u8> {
    let declared = if style.declared_dashes {
        "--frame"
    } else {
        "frame"
    };
    let written = if style.rfc {
        format!("--{declared}")
    } else {
        "--frame".to_owned()
    };
    let param = if style.quoted {
        format!("\"{declared}\"")
    } else {
        declared.to_owned()
    };
    let mut body = Vec::new();
    if style.preamble {
        body.extend_from_slice(b"\r\n");
    }
    for p in parts {
        body.extend_from_slice(format!("{written}\r\n").as_bytes());
        let ct = if p.jpeg { "image/jpeg" } else { "text/plain" };
        body.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
        if p.with_length {
            body.extend_from_slice(format!("Content-Length: {}\r\n", p.content.len()).as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(&p.content);
        body.extend_from_slice(b"\r\n");
    }
    if style.closing {
        body.extend_from_slice(format!("{written}--\r\n").as_bytes());
    }
    let extra = if style.chunked {
        "Transfer-Encoding: chunked\r\n"
    } else {
        ""
    };
    let mut wire = head(
        &format!("multipart/x-mixed-replace;boundary={param}"),
        extra,
    );
    if style.chunked {
        let mut rest = &body[..];
        let mut sizes = chunk_sizes.iter().cycle();
        while !rest.is_empty() {
            let n = (*sizes.next().unwrap_or(&64)).clamp(1, rest.len());
            wire.extend_from_slice(format!("{n:X}\r\n").as_bytes());
            wire.extend_from_slice(&rest[..n]);
            wire.extend_from_slice(b"\r\n");
            rest = &rest[n..];
        }
        wire.extend_from_slice(b"0\r\n\r\n");
    } else {
        wire.extend_from_slice(&body);
    }
    wire
}

proptest! {
    /// Whatever the boundary style, framing and lengths, any split of the stream gives the
    /// JPEG parts in order, skips the others, and ends cleanly.
    #[test]
    fn any_split_gives_the_same_frames(
        style in style(),
        parts in proptest::collection::vec(part(), 0..6),
        chunk_sizes in proptest::collection::vec(1usize..100, 1..5),
        cuts in proptest::collection::vec(1usize..64, 1..20),
    ) {
        let wire = stream_wire(&style, &parts, &chunk_sizes);
        let want: Vec<Vec<u8>> = parts.iter().filter(|p| p.jpeg).map(|p| p.content.clone()).collect();
        let whole = read(&wire, &[usize::MAX], config(1000));
        prop_assert_eq!(&whole.error, &None);
        prop_assert_eq!(whole.jpegs(), want.clone());
        prop_assert!(whole.ended());
        prop_assert_eq!(whole.reader.skipped_parts(), parts.iter().filter(|p| !p.jpeg).count() as u64);
        let split = read(&wire, &cuts, config(1000));
        prop_assert_eq!(&split.events, &whole.events);
        prop_assert_eq!(split.error, None);
    }

    /// Arbitrary bytes after any head never panic the reader, never give a part over the cap,
    /// and never make it hold much more than the caps.
    #[test]
    fn arbitrary_bytes_never_exceed_the_cap(
        pick in 0usize..5,
        pieces in proptest::collection::vec(
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..40),
                Just(b"\r\n--b\r\n".to_vec()),
                Just(b"Content-Length: 30\r\n\r\n".to_vec()),
                Just(b"\r\n".to_vec()),
                Just(vec![0xFF, 0xD9]),
                Just(b"a\r\n".to_vec()),
            ],
            0..40,
        ),
        cuts in proptest::collection::vec(1usize..64, 1..20),
    ) {
        let heads = [
            head("multipart/x-mixed-replace;boundary=b", ""),
            head("multipart/x-mixed-replace;boundary=b", "Transfer-Encoding: chunked\r\n"),
            head("application/octet-stream", ""),
            head("image/jpeg", ""),
            Vec::new(),
        ];
        let wire = [heads[pick].clone(), pieces.concat()].concat();
        let max = 50;
        let mut reader = MjpegReader::new(config(max));
        let mut rest = &wire[..];
        let mut cuts = cuts.iter().cycle();
        'feed: while !rest.is_empty() {
            let n = (*cuts.next().unwrap()).min(rest.len());
            reader.push(&rest[..n]);
            rest = &rest[n..];
            loop {
                match reader.poll() {
                    Ok(Some(Event::Jpeg(j))) => prop_assert!(j.len() <= max),
                    Ok(Some(Event::End)) | Err(_) => break 'feed,
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                }
            }
            prop_assert!(reader.buffered() <= 2 * 1024 + max + 64 + 64, "{} bytes held", reader.buffered());
        }
        reader.finish();
        loop {
            match reader.poll() {
                Ok(Some(Event::Jpeg(j))) => prop_assert!(j.len() <= max),
                Ok(Some(Event::End)) | Err(_) => break,
                Ok(Some(_)) => {}
                Ok(None) => prop_assert!(false, "poll asked for more after finish"),
            }
        }
    }
}
