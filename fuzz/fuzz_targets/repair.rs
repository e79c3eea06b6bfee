//! `edgecam_recorder::repair` on a copy of arbitrary bytes in a temporary file.
//!
//! What `repair` promises (repair.rs, salvage.rs, ARCHITECTURE.md "Recording") and this checks:
//! - no panic, no hang;
//! - a file `AviReader` accepts is left untouched (the report says `already_valid`), so every
//!   frame it could read is still there, byte for byte, in order; unless it holds frame
//!   chunks that are no whole JPEG, which in one of edgecam's own recordings are damage that
//!   repair takes out (`repair::valid`): then every whole-JPEG frame the reader could read
//!   is kept;
//! - a refusal (an error) changes nothing: every write is planned before the first;
//! - after a repair the file is one `AviReader` accepts, and repairing it again changes
//!   nothing (idempotence, compared byte for byte);
//! - frames are never moved or copied: every frame of the repaired file is the bytes that
//!   stood at the same offset before, and each is a whole JPEG (FF D8 .. FF D9);
//! - repair never removes a whole JPEG chunk it can tell: the run of `00dc` chunks that each
//!   hold a whole JPEG, from where the first frame goes (right after edgecam's fixed-size
//!   header) up to the first chunk that is anything else, is kept, in order, at the start of
//!   the repaired file's frames.

#![no_main]

use std::io::Write;

use edgecam_recorder::{AviReader, repair};
use libfuzzer_sys::fuzz_target;

/// Where an edgecam recording's first frame chunk starts: its fixed-size header (16,936
/// bytes, ARCHITECTURE.md) ends with the `LIST 'movi'` header.
const FIRST_FRAME: usize = 16_936;

/// The largest frame the crate reads (`MAX_FRAME_BYTES`).
const MAX_FRAME: usize = edgecam_recorder::MAX_FRAME_BYTES;

/// The offsets and lengths of the leading run of whole-JPEG `00dc` chunks.
fn leading_frames(data: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = FIRST_FRAME;
    while let Some(hdr) = data.get(pos..pos + 8) {
        let size = u32::from_le_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]) as usize;
        let Some(payload) = data.get(pos + 8..(pos + 8).saturating_add(size)) else {
            break;
        };
        let whole =
            size >= 4 && payload.starts_with(&[0xFF, 0xD8]) && payload.ends_with(&[0xFF, 0xD9]);
        if &hdr[..4] != b"00dc" || size > MAX_FRAME || !whole {
            break;
        }
        out.push((pos + 8, size));
        pos += 8 + size + size % 2;
    }
    out
}

fn read(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

fuzz_target!(|data: &[u8]| {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(data).unwrap();
    file.flush().unwrap();
    let path = file.path();
    // What the reader makes of the file before: the frames, and whether each is a whole JPEG.
    let before: Option<Vec<((usize, usize), bool)>> = AviReader::open(path).ok().map(|mut r| {
        let positions = r.info().frame_positions.clone();
        positions
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let whole = r.read_frame(i).is_ok_and(|f| {
                    f.len() >= 4 && f.starts_with(&[0xFF, 0xD8]) && f.ends_with(&[0xFF, 0xD9])
                });
                ((p.offset as usize, p.len as usize), whole)
            })
            .collect()
    });
    let readable = before.is_some();

    let report = match repair(path) {
        Ok(report) => report,
        Err(_) => {
            assert_eq!(read(path), data, "a refused repair changed the file");
            assert!(!readable, "refused to repair a file the reader accepts");
            return;
        }
    };
    let after = read(path);
    if report.already_valid {
        assert_eq!(after, data, "a valid file was changed");
    }
    let whole_before: Vec<(usize, usize)> = before
        .iter()
        .flatten()
        .filter(|(_, whole)| *whole)
        .map(|(at, _)| *at)
        .collect();
    if let Some(before) = &before {
        assert!(
            report.already_valid || before.iter().any(|(_, whole)| !whole),
            "a file the reader accepts, every frame of it a whole JPEG, was repaired"
        );
    }

    let mut reader = AviReader::open(path).expect("the reader refuses a repaired file");
    let positions = reader.info().frame_positions.clone();
    for (i, pos) in positions.iter().enumerate() {
        let frame = reader
            .read_frame(i)
            .expect("a frame of a repaired file does not read");
        let (start, len) = (pos.offset as usize, pos.len as usize);
        if !report.already_valid {
            assert_eq!(
                data.get(start..start + len),
                Some(frame.as_slice()),
                "frame {i} moved or changed"
            );
            assert!(
                frame.starts_with(&[0xFF, 0xD8]) && frame.ends_with(&[0xFF, 0xD9]),
                "frame {i} is no whole JPEG"
            );
        }
    }
    if !report.already_valid {
        let kept: Vec<(usize, usize)> = positions
            .iter()
            .map(|p| (p.offset as usize, p.len as usize))
            .collect();
        let leading = leading_frames(data);
        assert!(
            kept.starts_with(&leading),
            "repair dropped whole frames: kept {kept:?}, the file starts with {leading:?}"
        );
        for frame in &whole_before {
            assert!(
                kept.contains(frame),
                "repair dropped {frame:?}, a whole frame the reader could read"
            );
        }
    }

    let again = repair(path).expect("a repaired file does not repair again");
    assert!(again.already_valid, "a repaired file was repaired again");
    assert_eq!(read(path), after, "repairing twice changed the file");
});
