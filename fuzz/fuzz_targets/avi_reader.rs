//! `edgecam_recorder`'s AVI reader on arbitrary bytes: `AviReader::new` over a `Cursor`, every
//! frame it lists read back, and `chunk_listing` (which takes a path: the bytes go to a
//! temporary file).
//!
//! Asserts: no panic, no hang; memory stays bounded (libFuzzer's `-malloc_limit_mb`, which
//! `cargo xtask fuzz` sets to the RSS limit, fails any single allocation above it, so a size
//! read from the input and trusted shows up as a crash); a file the reader accepts lists
//! frames that lie inside it, says how many there are, and every frame reads back with the
//! length its position says, identical to those bytes of the input.

#![no_main]

use std::io::{Cursor, Write};

use edgecam_recorder::{AviReader, chunk_listing};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut reader) = AviReader::new(Cursor::new(data), "fuzz.avi") {
        let info = reader.info().clone();
        assert_eq!(info.frames, info.frame_positions.len() as u64);
        assert!(info.riff_segments >= 1);
        let frames: Vec<_> = reader.frames().collect();
        assert_eq!(frames.len(), info.frame_positions.len());
        for (frame, pos) in frames.into_iter().zip(&info.frame_positions) {
            let frame = frame.expect("a frame of a file the reader accepted does not read");
            let start = usize::try_from(pos.offset).unwrap();
            let end = start + pos.len as usize;
            assert_eq!(frame.as_slice(), &data[start..end]);
        }
        assert!(reader.read_frame(info.frame_positions.len()).is_err());
    }

    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(data).unwrap();
    file.flush().unwrap();
    // Works on damaged files too: an error only for what it cannot read at all.
    let _ = chunk_listing(file.path());
});
