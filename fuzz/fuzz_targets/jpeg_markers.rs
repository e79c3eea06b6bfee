//! JPEG marker reading on arbitrary bytes: `dimensions`, `is_jpeg`, `has_huffman_tables`,
//! `prepare_passthrough`, `Stamp::find` and `Stamp::insert_into`.
//!
//! Input: bytes 0..16 are the stamp (sequence number, capture time), the rest the JPEG.
//! Asserts: no panic; `prepare_passthrough`'s output, when there is one, starts with SOI,
//! carries the stamp it was given (`Stamp::find` finds it) and has Huffman tables (there is
//! output only when the input had an SOS), and without a stamp, of an input with tables, is
//! the input unchanged; after `insert_into`, `Stamp::find` finds the stamp, and the picture
//! size and the tables read as before (an input without SOI is left alone).

#![no_main]

use edgecam_core::jpeg::{Stamp, dimensions, has_huffman_tables, is_jpeg, prepare_passthrough};
use edgecam_core::time::Timestamp;
use libfuzzer_sys::fuzz_target;

const SOI: [u8; 2] = [0xFF, 0xD8];

fuzz_target!(|data: &[u8]| {
    let (stamp, jpeg) = data.split_at(data.len().min(16));
    let mut words = [0u8; 16];
    words[..stamp.len()].copy_from_slice(stamp);
    let stamp = Stamp {
        seq: u64::from_le_bytes(words[..8].try_into().unwrap()),
        captured_at: Timestamp(u64::from_le_bytes(words[8..].try_into().unwrap())),
    };

    let size = dimensions(jpeg);
    let whole = is_jpeg(jpeg);
    assert_eq!(
        whole,
        jpeg.len() >= 4 && jpeg.starts_with(&SOI) && jpeg.ends_with(&[0xFF, 0xD9])
    );
    let tables = has_huffman_tables(jpeg);
    let found = Stamp::find(jpeg);

    let stamped = prepare_passthrough(jpeg, Some(stamp));
    let plain = prepare_passthrough(jpeg, None);
    assert_eq!(stamped.is_some(), plain.is_some());
    if let Some(out) = &stamped {
        assert!(out.starts_with(&SOI));
        assert_eq!(Stamp::find(out), Some(stamp));
        assert!(has_huffman_tables(out));
        assert_eq!(dimensions(out), size);
    }
    if let Some(out) = &plain {
        assert!(out.starts_with(&SOI));
        assert!(has_huffman_tables(out));
        assert_eq!(Stamp::find(out), found);
        if tables {
            assert_eq!(
                out.as_slice(),
                jpeg,
                "a JPEG with tables and no stamp changed"
            );
        }
    }

    let mut inserted = jpeg.to_vec();
    stamp.insert_into(&mut inserted);
    if jpeg.starts_with(&SOI) {
        assert_eq!(Stamp::find(&inserted), Some(stamp));
        assert_eq!(dimensions(&inserted), size);
        assert_eq!(has_huffman_tables(&inserted), tables);
        assert_eq!(is_jpeg(&inserted), whole);
    } else {
        assert_eq!(inserted.as_slice(), jpeg);
    }
});
