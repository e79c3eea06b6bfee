//! `JpegSplitter` over an arbitrary byte stream, cut into arbitrary chunks, with an arbitrary
//! frame limit.
//!
//! Input: bytes 0..2 are the limit (little endian, so 0..=65535 bytes), bytes 2..10 the chunk
//! sizes (cycled), the rest the stream. Asserts: no panic; every frame is at most the limit,
//! starts FF D8 and ends FF D9; `buffered()` stays within the limit plus the push plus 3
//! bytes after a push, and within the limit plus 3 once drained; the bytes that came out as
//! frames or were skipped are never more than the bytes pushed.

#![no_main]

use edgecam_core::jpeg::{JpegSplitter, SplitError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (max, rest) = data.split_at(data.len().min(2));
    let max = usize::from(max.iter().rev().fold(0u16, |m, &b| m << 8 | u16::from(b)));
    let (sizes, stream) = rest.split_at(rest.len().min(8));
    let mut splitter = JpegSplitter::new(max);
    let mut sizes = sizes.iter().map(|&s| usize::from(s).max(1)).cycle();
    let mut rest = stream;
    let (mut pushed, mut out) = (0u64, 0u64);
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(rest.len()).min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        splitter.push(chunk);
        pushed += n as u64;
        assert!(
            splitter.buffered() <= max + n + 3,
            "{} bytes buffered after a push of {n}, limit {max}",
            splitter.buffered()
        );
        while let Some(frame) = splitter.next_frame() {
            match frame {
                Ok(frame) => {
                    assert!(
                        frame.len() <= max,
                        "a frame of {} bytes, limit {max}",
                        frame.len()
                    );
                    assert!(frame.starts_with(&[0xFF, 0xD8]));
                    assert!(frame.ends_with(&[0xFF, 0xD9]));
                    assert!(frame.len() >= 4);
                    out += frame.len() as u64;
                }
                Err(SplitError::TooLarge { max: m }) => assert_eq!(m, max),
                Err(e) => panic!("unexpected error {e}"),
            }
        }
        assert!(
            splitter.buffered() <= max + 3,
            "{} bytes buffered once drained, limit {max}",
            splitter.buffered()
        );
        assert!(out + splitter.skipped_bytes() + splitter.buffered() as u64 <= pushed);
    }
});
