//! The `http://` client's response reader, `MjpegReader`, over a server's bytes cut into
//! arbitrary chunks.
//!
//! Input: byte 0 picks the caps (head and part), bytes 1..=8 the chunk sizes (cycled), the rest
//! is the response. Asserts: no panic, no hang; no JPEG over the part cap; the bytes held stay
//! within the caps (the part cap, twice the head cap, a boundary line's slack and the chunked
//! framing's line cap, plus the last push); after `finish` a poll never asks for more; an error
//! is returned again by every later poll, and so is the end.

#![no_main]

use edgecam_core::codec::DEFAULT_MAX_FRAME_LEN;
use edgecam_core::http::reader::{Event, MjpegReader, ReadError, ReaderConfig};
use libfuzzer_sys::fuzz_target;

/// The caps tried: small ones that the fuzzer's parts and heads reach, and the defaults.
fn config(pick: u8) -> ReaderConfig {
    let (max_head_len, max_part_len) = match pick % 6 {
        0 => (64, 0),
        1 => (256, 64),
        2 => (1024, 1024),
        3 => (16 * 1024, 4096),
        4 => (16 * 1024, DEFAULT_MAX_FRAME_LEN as usize),
        _ => (usize::from(pick), usize::from(pick) * 4),
    };
    ReaderConfig {
        max_head_len,
        max_part_len,
    }
}

/// What a poll ended in, for checking that later polls say it again.
#[derive(Debug, PartialEq)]
enum Last {
    End,
    Error(ReadError),
}

/// Polls until more bytes are needed, the end or an error; checks every JPEG against the cap.
fn drain(reader: &mut MjpegReader, config: &ReaderConfig) -> Option<Last> {
    loop {
        match reader.poll() {
            Ok(Some(Event::Jpeg(jpeg))) => assert!(
                jpeg.len() <= config.max_part_len,
                "a JPEG of {} bytes, cap {}",
                jpeg.len(),
                config.max_part_len
            ),
            Ok(Some(Event::Head { .. })) => {}
            Ok(Some(Event::End)) => return Some(Last::End),
            Ok(None) => return None,
            Err(e) => return Some(Last::Error(e)),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let (sizes, stream) = rest.split_at(rest.len().min(8));
    let config = config(pick);
    let bound = config.max_part_len + 2 * config.max_head_len + 64 + 1024;
    let mut reader = MjpegReader::new(config);
    let mut sizes = sizes.iter().map(|&s| usize::from(s).max(1)).cycle();
    let mut rest = stream;
    let mut last = None;
    while !rest.is_empty() && last.is_none() {
        let n = sizes.next().unwrap_or(rest.len()).min(rest.len());
        reader.push(&rest[..n]);
        rest = &rest[n..];
        last = drain(&mut reader, &config);
        assert!(
            reader.buffered() <= bound + n,
            "{} bytes held, bound {bound} + {n}",
            reader.buffered()
        );
    }
    reader.finish();
    let last = match last {
        Some(last) => last,
        None => drain(&mut reader, &config).expect("poll asked for more after finish"),
    };
    let again = match reader.poll() {
        Ok(Some(Event::End)) => Last::End,
        Err(e) => Last::Error(e),
        other => panic!("after {last:?}, a poll gave {other:?}"),
    };
    assert_eq!(again, last);
});
