//! Camera JPEGs served as they come: the frame stamp added, and the Huffman tables that many
//! UVC/MJPEG cameras leave out put back in.
//!
//! Those cameras follow the "MJPEG convention" (the AVI1 / Motion-JPEG format): the image has
//! no DHT segment and the decoder is expected to use the typical tables of ITU T.81 Annex K.3.
//! Browsers and most players decode such images anyway, but not all decoders do, and a
//! recording of them is not a set of valid JPEG files. Like ustreamer, we insert the Annex K
//! tables, all four in one DHT segment, right before the first SOS.

use super::{DHT, SOI, SOS, Segment, Stamp, com_segment_len, header, push_com_segment};

/// Camera JPEGs made ready to serve: the stamp (a COM segment right after SOI, as
/// [`Stamp::insert_into`] does) and, when the JPEG has no DHT segment before its first SOS
/// (many UVC/MJPEG cameras omit them, relying on the "MJPEG convention"), the standard Huffman
/// tables of ITU T.81 Annex K.3 inserted in one DHT segment before the first SOS (as ustreamer
/// does), so every decoder and player can read it.
///
/// Copies `jpeg` once, into a buffer allocated at its final size. Returns `None` when `jpeg`
/// does not start with SOI, or its markers before SOS are malformed, or it has no SOS at all
/// (the caller then passes it on untouched). Bytes after the SOS marker are not looked at.
pub fn prepare_passthrough(jpeg: &[u8], stamp: Option<Stamp>) -> Option<Vec<u8>> {
    let mut has_dht = false;
    let mut sos_at = None;
    for segment in header(jpeg) {
        let Segment { marker, at, .. } = segment.ok()?;
        has_dht |= marker == DHT;
        if marker == SOS {
            sos_at = Some(at);
        }
    }
    let sos_at = sos_at?;
    let (before_sos, from_sos) = (jpeg.get(SOI.len()..sos_at)?, jpeg.get(sos_at..)?);

    let text = stamp.map(|stamp| stamp.text());
    let tables: &[u8] = if has_dht { &[] } else { &ANNEX_K_DHT };
    let len = jpeg.len() + text.as_deref().map_or(0, com_segment_len) + tables.len();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&SOI);
    if let Some(text) = &text {
        push_com_segment(&mut out, text);
    }
    out.extend_from_slice(before_sos);
    out.extend_from_slice(tables);
    out.extend_from_slice(from_sos);
    debug_assert_eq!(out.len(), len);
    Some(out)
}

/// Whether a DHT segment stands before the first SOS.
pub fn has_huffman_tables(jpeg: &[u8]) -> bool {
    header(jpeg)
        .map_while(Result::ok)
        .any(|segment| segment.marker == DHT)
}

// ITU T.81 Annex K.3, tables K.3 to K.6: the number of codes of each length 1..=16 (BITS),
// then the symbols in code order (HUFFVAL).
const LUMA_DC_BITS: [u8; 16] = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0];
const CHROMA_DC_BITS: [u8; 16] = [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0];
const DC_VALUES: [u8; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
const LUMA_AC_BITS: [u8; 16] = [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D];
#[rustfmt::skip]
const LUMA_AC_VALUES: [u8; 162] = [
    0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07,
    0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xA1, 0x08, 0x23, 0x42, 0xB1, 0xC1, 0x15, 0x52, 0xD1, 0xF0,
    0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0A, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x25, 0x26, 0x27, 0x28,
    0x29, 0x2A, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49,
    0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69,
    0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89,
    0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7,
    0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3, 0xC4, 0xC5,
    0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xE1, 0xE2,
    0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xEA, 0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8,
    0xF9, 0xFA,
];
const CHROMA_AC_BITS: [u8; 16] = [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77];
#[rustfmt::skip]
const CHROMA_AC_VALUES: [u8; 162] = [
    0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61, 0x71,
    0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xA1, 0xB1, 0xC1, 0x09, 0x23, 0x33, 0x52, 0xF0,
    0x15, 0x62, 0x72, 0xD1, 0x0A, 0x16, 0x24, 0x34, 0xE1, 0x25, 0xF1, 0x17, 0x18, 0x19, 0x1A, 0x26,
    0x27, 0x28, 0x29, 0x2A, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48,
    0x49, 0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68,
    0x69, 0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87,
    0x88, 0x89, 0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5,
    0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3,
    0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA,
    0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xEA, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8,
    0xF9, 0xFA,
];

/// `(table class << 4 | destination, BITS, HUFFVAL)` in the order ustreamer and jpeg-encoder
/// write them: luminance DC and AC into slot 0, chrominance DC and AC into slot 1.
const TABLES: [(u8, &[u8; 16], &[u8]); 4] = [
    (0x00, &LUMA_DC_BITS, &DC_VALUES),
    (0x10, &LUMA_AC_BITS, &LUMA_AC_VALUES),
    (0x01, &CHROMA_DC_BITS, &DC_VALUES),
    (0x11, &CHROMA_AC_BITS, &CHROMA_AC_VALUES),
];

const ANNEX_K_DHT_LEN: usize = 4 + 4 * (1 + 16) + 2 * DC_VALUES.len() + 2 * LUMA_AC_VALUES.len();

/// The whole DHT segment, marker and length included (420 bytes).
const ANNEX_K_DHT: [u8; ANNEX_K_DHT_LEN] = annex_k_dht();

const fn annex_k_dht() -> [u8; ANNEX_K_DHT_LEN] {
    let mut out = [0; ANNEX_K_DHT_LEN];
    let len = ((ANNEX_K_DHT_LEN - 2) as u16).to_be_bytes();
    out[0] = 0xFF;
    out[1] = DHT;
    out[2] = len[0];
    out[3] = len[1];
    let mut at = 4;
    let mut t = 0;
    while t < TABLES.len() {
        let (class_and_slot, bits, values) = TABLES[t];
        out[at] = class_and_slot;
        at += 1;
        let mut i = 0;
        while i < bits.len() {
            out[at] = bits[i];
            at += 1;
            i += 1;
        }
        let mut i = 0;
        while i < values.len() {
            out[at] = values[i];
            at += 1;
            i += 1;
        }
        t += 1;
    }
    assert!(at == ANNEX_K_DHT_LEN);
    out
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Picture, encode, picture, strip_huffman_tables};
    use super::*;
    use crate::time::Timestamp;
    use proptest::prelude::*;

    fn stamp(seq: u64) -> Stamp {
        Stamp {
            seq,
            captured_at: Timestamp(1_700_000_000_000_000u64.saturating_add(seq)),
        }
    }

    fn decode(jpeg: &[u8]) -> Vec<u8> {
        jpeg_decoder::Decoder::new(jpeg)
            .decode()
            .expect("test JPEG decodes")
    }

    #[test]
    fn every_table_has_as_many_symbols_as_its_bits_count() {
        for (_, bits, values) in TABLES {
            assert_eq!(
                bits.iter().map(|&n| usize::from(n)).sum::<usize>(),
                values.len()
            );
        }
        assert_eq!(ANNEX_K_DHT.len(), 420);
        assert_eq!(ANNEX_K_DHT[..4], [0xFF, 0xC4, 0x01, 0xA2]);
    }

    #[test]
    fn jpeg_encoder_writes_exactly_the_annex_k_tables() {
        let jpeg = encode(&Picture::plain(16, 16));
        let payloads: Vec<u8> = header(&jpeg)
            .map(|segment| segment.expect("encoder output is well formed"))
            .filter(|segment| segment.marker == DHT)
            .flat_map(|segment| segment.payload.iter().copied())
            .collect();
        assert_eq!(payloads, ANNEX_K_DHT[4..]);
    }

    #[test]
    fn a_jpeg_with_tables_gets_only_the_stamp() {
        let jpeg = encode(&Picture::plain(24, 8));
        assert!(has_huffman_tables(&jpeg));
        let prepared = prepare_passthrough(&jpeg, Some(stamp(7))).expect("a valid JPEG");
        let mut expected = jpeg.clone();
        stamp(7).insert_into(&mut expected);
        assert_eq!(prepared, expected);
        assert_eq!(prepared.capacity(), prepared.len());
        assert_eq!(prepare_passthrough(&jpeg, None), Some(jpeg));
    }

    #[test]
    fn not_a_jpeg_or_a_broken_header_gives_none() {
        let jpeg = encode(&Picture::plain(8, 8));
        let sos_at = header(&jpeg)
            .filter_map(Result::ok)
            .find(|segment| segment.marker == SOS)
            .map(|segment| segment.at)
            .expect("an SOS");
        assert_eq!(prepare_passthrough(b"", Some(stamp(1))), None);
        assert_eq!(prepare_passthrough(b"Unknown command", None), None);
        assert_eq!(prepare_passthrough(&jpeg[1..], None), None);
        // Cut before SOS, a length below 2, a non-marker byte where a marker must be.
        assert_eq!(prepare_passthrough(&jpeg[..sos_at], None), None);
        let mut short = jpeg.clone();
        short[4..6].copy_from_slice(&[0, 1]);
        assert_eq!(prepare_passthrough(&short, None), None);
        let mut no_marker = jpeg.clone();
        no_marker[sos_at] = 0x12;
        assert_eq!(prepare_passthrough(&no_marker, None), None);
        // No scan at all.
        assert_eq!(prepare_passthrough(&[0xFF, 0xD8, 0xFF, 0xD9], None), None);
        assert!(!has_huffman_tables(b"garbage"));
    }

    proptest! {
        #[test]
        fn stripped_tables_are_restored_and_decode_to_the_same_pixels(
            picture in picture().prop_filter("baseline", |p| !p.progressive && !p.optimized),
            seq in any::<u64>(),
        ) {
            let original = encode(&picture);
            let stripped = strip_huffman_tables(&original);
            prop_assert!(stripped.len() < original.len());
            prop_assert!(!has_huffman_tables(&stripped));

            let prepared = prepare_passthrough(&stripped, Some(stamp(seq))).expect("a valid JPEG");
            prop_assert_eq!(prepared.capacity(), prepared.len());
            prop_assert!(has_huffman_tables(&prepared));
            prop_assert_eq!(Stamp::find(&prepared), Some(stamp(seq)));
            prop_assert_eq!(super::super::dimensions(&prepared), super::super::dimensions(&original));
            prop_assert_eq!(decode(&prepared), decode(&original));

            let unstamped = prepare_passthrough(&stripped, None).expect("a valid JPEG");
            prop_assert_eq!(Stamp::find(&unstamped), None);
            prop_assert_eq!(decode(&unstamped), decode(&original));
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            data in proptest::collection::vec(
                prop_oneof![any::<u8>(), Just(0xFF), Just(0xD8), Just(0xDA), Just(0xC4)],
                0..300,
            ),
            with_soi in any::<bool>(),
        ) {
            let data = if with_soi { [&SOI[..], &data].concat() } else { data };
            let tables = has_huffman_tables(&data);
            if let Some(prepared) = prepare_passthrough(&data, Some(stamp(1))) {
                prop_assert_eq!(prepared.capacity(), prepared.len());
                prop_assert!(has_huffman_tables(&prepared));
                prop_assert_eq!(Stamp::find(&prepared), Some(stamp(1)));
                let added = if tables { 0 } else { ANNEX_K_DHT_LEN };
                prop_assert_eq!(prepared.len(), data.len() + added + com_segment_len(&stamp(1).text()));
            }
        }
    }
}
