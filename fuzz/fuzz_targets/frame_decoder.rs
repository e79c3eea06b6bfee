//! The client's legacy frame reader, `FrameDecoder::decode`, over the server's byte stream cut
//! into arbitrary chunks.
//!
//! Input: byte 0 picks the cap (`max_len`), bytes 1..=8 the chunk sizes (cycled), the rest is
//! the stream. Asserts: no panic; every frame is at most `max_len` bytes; the frames and the
//! error are exactly what a plain reading of the whole stream at once gives (the chunking
//! changes nothing); after an error nothing more is read (the stream is closed).

#![no_main]

use bytes::BytesMut;
use edgecam_core::codec::{CodecError, DEFAULT_MAX_FRAME_LEN, FrameDecoder};
use libfuzzer_sys::fuzz_target;

/// The caps tried: small ones that the fuzzer's frames reach, and the default.
fn max_len(pick: u8) -> u32 {
    match pick % 8 {
        0 => 0,
        1 => 1,
        2 => 16,
        3 => 255,
        4 => 4096,
        5 => 65_535,
        6 => DEFAULT_MAX_FRAME_LEN,
        _ => u32::from(pick),
    }
}

/// The frames in `stream` read in one go, and the error that ends it, if any.
fn model(stream: &[u8], max_len: u32) -> (Vec<Vec<u8>>, Option<CodecError>) {
    let mut frames = Vec::new();
    let mut rest = stream;
    while let Some(header) = rest.get(..4) {
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        if len > max_len {
            return (
                frames,
                Some(CodecError::FrameTooLarge { len, max: max_len }),
            );
        }
        let Some(frame) = rest.get(4..4 + len as usize) else {
            break;
        };
        frames.push(frame.to_vec());
        rest = &rest[4 + len as usize..];
    }
    (frames, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let (sizes, stream) = rest.split_at(rest.len().min(8));
    let max_len = max_len(pick);
    let mut decoder = FrameDecoder::new(max_len);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut error = None;
    let mut rest = stream;
    let mut sizes = sizes.iter().map(|&s| usize::from(s).max(1)).cycle();
    'feed: while !rest.is_empty() {
        let n = sizes.next().unwrap_or(rest.len()).min(rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(frame.len() as u64 <= u64::from(max_len));
                    frames.push(frame.to_vec());
                }
                Ok(None) => break,
                Err(e) => {
                    error = Some(e);
                    break 'feed;
                }
            }
        }
    }
    let (want_frames, want_error) = model(stream, max_len);
    assert_eq!(frames, want_frames);
    assert_eq!(error, want_error);
});
