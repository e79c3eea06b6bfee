//! Reading and annotating JPEG bytes without decoding them: picture size from the SOF marker,
//! and the frame stamp (sequence number and capture time) carried in a COM segment that every
//! decoder ignores; splitting the concatenated JPEGs a camera pipe carries ([`JpegSplitter`]);
//! making camera JPEGs ready to serve as they are ([`prepare_passthrough`]).

use crate::time::Timestamp;

mod passthrough;
mod split;
#[cfg(test)]
mod testing;

pub use passthrough::{has_huffman_tables, prepare_passthrough};
pub use split::{JpegSplitter, SplitError};

const SOI: [u8; 2] = [0xFF, 0xD8];
const TEM: u8 = 0x01;
const DHT: u8 = 0xC4;
const EOI: u8 = 0xD9;
const SOS: u8 = 0xDA;
const COM: u8 = 0xFE;
const STAMP_PREFIX: &[u8] = b"edgecam seq=";

/// Whether `data` looks like one whole JPEG image (starts with SOI, ends with EOI).
pub fn is_jpeg(data: &[u8]) -> bool {
    data.len() >= 4 && data.starts_with(&SOI) && data.ends_with(&[0xFF, 0xD9])
}

/// One marker before the entropy-coded data: where its `FF` stands in the JPEG, and its payload
/// (empty for the standalone markers EOI, TEM and RSTn).
#[derive(Debug, Clone, Copy)]
struct Segment<'a> {
    marker: u8,
    at: usize,
    payload: &'a [u8],
}

/// A byte where a marker must be that is not one, a length below 2, or the data ending early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Malformed;

/// The markers after SOI up to and including the first SOS or EOI, ending after the first
/// `Err` (a malformed or truncated header). Nothing at all when `data` does not start with SOI.
/// Never reads past `data` and never trusts a length further than the bytes there are.
fn header(data: &[u8]) -> impl Iterator<Item = Result<Segment<'_>, Malformed>> + '_ {
    let mut pos = data.starts_with(&SOI).then_some(2);
    std::iter::from_fn(move || {
        let item = next_segment(data, pos?);
        pos = match item {
            Ok((segment, next)) if segment.marker != SOS && segment.marker != EOI => Some(next),
            _ => None,
        };
        Some(item.map(|(segment, _)| segment))
    })
}

/// The marker at `pos` (after any fill bytes) and where the one after it must start.
fn next_segment(data: &[u8], mut pos: usize) -> Result<(Segment<'_>, usize), Malformed> {
    while data.get(pos) == Some(&0xFF) && data.get(pos + 1) == Some(&0xFF) {
        pos += 1;
    }
    if data.get(pos) != Some(&0xFF) {
        return Err(Malformed);
    }
    let marker = *data.get(pos + 1).ok_or(Malformed)?;
    match marker {
        // Stuffing is no marker; a second SOI means the first image is broken.
        0x00 | 0xD8 => Err(Malformed),
        TEM | 0xD0..=0xD7 | EOI => Ok((
            Segment {
                marker,
                at: pos,
                payload: &[],
            },
            pos + 2,
        )),
        _ => {
            let len = usize::from(u16::from_be_bytes([
                *data.get(pos + 2).ok_or(Malformed)?,
                *data.get(pos + 3).ok_or(Malformed)?,
            ]));
            if len < 2 {
                return Err(Malformed);
            }
            let end = pos + 2 + len;
            let payload = data.get(pos + 4..end).ok_or(Malformed)?;
            Ok((
                Segment {
                    marker,
                    at: pos,
                    payload,
                },
                end,
            ))
        }
    }
}

/// The marker segments before the entropy-coded data: `(marker, payload)` pairs, stopping at
/// SOS or at the first malformed byte. Never reads past `data`.
fn segments(data: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    header(data)
        .map_while(Result::ok)
        .map(|segment| (segment.marker, segment.payload))
}

/// Width and height from the first start-of-frame marker (SOF0..SOF15 but DHT, JPG and DAC).
pub fn dimensions(data: &[u8]) -> Option<(u32, u32)> {
    segments(data).find_map(|(marker, payload)| {
        let is_sof = (0xC0..=0xCF).contains(&marker) && ![0xC4, 0xC8, 0xCC].contains(&marker);
        if !is_sof || payload.len() < 5 {
            return None;
        }
        let height = u16::from_be_bytes([payload[1], payload[2]]);
        let width = u16::from_be_bytes([payload[3], payload[4]]);
        Some((u32::from(width), u32::from(height)))
    })
}

/// The largest picture a client decodes or records, checked on the SOF marker before anything
/// is allocated for the picture: a 16 KB JPEG may claim 65535x65535, which decodes to 12 GiB
/// of RGB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PictureLimit {
    pub max_width: u32,
    pub max_height: u32,
}

impl Default for PictureLimit {
    /// 8192x8192: well above 8K video (7680x4320); 192 MiB of RGB at most.
    fn default() -> Self {
        PictureLimit {
            max_width: 8192,
            max_height: 8192,
        }
    }
}

impl std::fmt::Display for PictureLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.max_width, self.max_height)
    }
}

/// Why [`PictureLimit::check`] refused a JPEG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PictureError {
    #[error("the JPEG states no picture size (no start-of-frame marker, or a side of 0)")]
    NoSize,
    #[error("the JPEG claims a {width}x{height} picture, more than the {limit} allowed")]
    TooLarge {
        width: u32,
        height: u32,
        limit: PictureLimit,
    },
}

impl PictureLimit {
    /// The picture size `jpeg`'s SOF marker states, if it is within the limit.
    pub fn check(&self, jpeg: &[u8]) -> Result<(u32, u32), PictureError> {
        let (width, height) = dimensions(jpeg).ok_or(PictureError::NoSize)?;
        if width == 0 || height == 0 {
            return Err(PictureError::NoSize);
        }
        if width > self.max_width || height > self.max_height {
            return Err(PictureError::TooLarge {
                width,
                height,
                limit: *self,
            });
        }
        Ok((width, height))
    }

    /// The bytes of packed 8-bit RGB for a picture at the limit, `None` if that does not fit
    /// in `usize` (a 32-bit board with a large limit).
    pub fn max_rgb_bytes(&self) -> Option<usize> {
        rgb_len(self.max_width, self.max_height)
    }
}

/// The bytes of a `width` x `height` picture of packed 8-bit RGB, `None` if that does not fit
/// in `usize` (on 32-bit boards `usize` is 32 bits).
pub fn rgb_len(width: u32, height: u32) -> Option<usize> {
    let len = u64::from(width)
        .checked_mul(u64::from(height))?
        .checked_mul(3)?;
    usize::try_from(len).ok()
}

/// Parses `WxH` (as `--max-picture 8192x8192` takes it).
impl std::str::FromStr for PictureLimit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let parsed = s.split_once(['x', 'X']).and_then(|(w, h)| {
            let w: u32 = w.trim().parse().ok()?;
            let h: u32 = h.trim().parse().ok()?;
            (w > 0 && h > 0 && w <= 65535 && h <= 65535).then_some((w, h))
        });
        parsed
            .map(|(max_width, max_height)| PictureLimit {
                max_width,
                max_height,
            })
            .ok_or_else(|| {
                format!("{s:?} is not a picture size WIDTHxHEIGHT from 1x1 to 65535x65535 (try 8192x8192)")
            })
    }
}

/// What edgecam writes into every frame it encodes, so that a client can tell latency and
/// skipped frames. Frames from other servers simply have none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub seq: u64,
    pub captured_at: Timestamp,
}

impl Stamp {
    /// The COM segment text: `edgecam seq=<seq> t=<unix micros>`.
    fn text(&self) -> String {
        format!(
            "edgecam seq={} t={}",
            self.seq,
            self.captured_at.as_micros()
        )
    }

    /// Inserts this stamp as a COM segment right after SOI. Leaves `jpeg` alone if it does not
    /// start with SOI.
    pub fn insert_into(&self, jpeg: &mut Vec<u8>) {
        if !jpeg.starts_with(&SOI) {
            return;
        }
        let text = self.text();
        let mut segment = Vec::with_capacity(com_segment_len(&text));
        push_com_segment(&mut segment, &text);
        jpeg.splice(2..2, segment);
    }

    /// The stamp in `jpeg`'s COM segments, if edgecam put one there.
    pub fn find(jpeg: &[u8]) -> Option<Stamp> {
        segments(jpeg)
            .filter(|(marker, _)| *marker == COM)
            .find_map(|(_, payload)| Stamp::parse(payload))
    }

    fn parse(comment: &[u8]) -> Option<Stamp> {
        let rest = std::str::from_utf8(comment.strip_prefix(STAMP_PREFIX)?).ok()?;
        let (seq, t) = rest.split_once(" t=")?;
        Some(Stamp {
            seq: seq.parse().ok()?,
            captured_at: Timestamp(t.parse().ok()?),
        })
    }
}

/// The size of the COM segment carrying `text`.
fn com_segment_len(text: &str) -> usize {
    4 + text.len().min(usize::from(u16::MAX) - 2)
}

/// Appends a COM segment carrying `text` (cut to the 65533 bytes a segment can hold).
fn push_com_segment(out: &mut Vec<u8>, text: &str) {
    let text = text.as_bytes();
    let text = text.get(..usize::from(u16::MAX) - 2).unwrap_or(text);
    let len = u16::try_from(text.len() + 2).unwrap_or(u16::MAX);
    out.extend_from_slice(&[0xFF, COM]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(text);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// SOI, a JFIF APP0, SOF0 for 640x480, SOS and EOI: the marker layout of a real baseline JPEG.
    fn tiny_jpeg() -> Vec<u8> {
        let mut j = vec![0xFF, 0xD8];
        j.extend_from_slice(&[0xFF, 0xE0, 0x00, 0x10]);
        j.extend_from_slice(b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0");
        j.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x0B, 0x08, 0x01, 0xE0, 0x02, 0x80, 0x01]);
        j.extend_from_slice(&[0x01, 0x11, 0x00]);
        j.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00]);
        j.extend_from_slice(&[0x12, 0x34, 0xFF, 0xD9]);
        j
    }

    #[test]
    fn reads_dimensions_from_sof() {
        assert_eq!(dimensions(&tiny_jpeg()), Some((640, 480)));
        assert!(is_jpeg(&tiny_jpeg()));
    }

    #[test]
    fn stamp_round_trips_and_keeps_the_image_valid() {
        let mut j = tiny_jpeg();
        assert_eq!(Stamp::find(&j), None);
        let stamp = Stamp {
            seq: 42,
            captured_at: Timestamp(1_700_000_000_123_456),
        };
        stamp.insert_into(&mut j);
        assert_eq!(Stamp::find(&j), Some(stamp));
        assert_eq!(dimensions(&j), Some((640, 480)));
        assert!(is_jpeg(&j));
    }

    #[test]
    fn the_picture_limit_refuses_huge_zero_and_missing_sizes() {
        let limit = PictureLimit::default();
        assert_eq!(limit.check(&tiny_jpeg()), Ok((640, 480)));
        // SOF0 claiming 65535x65535 (height bytes, then width bytes).
        let mut huge = tiny_jpeg();
        huge[25..29].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
        assert_eq!(
            limit.check(&huge),
            Err(PictureError::TooLarge {
                width: 65535,
                height: 65535,
                limit
            })
        );
        let mut zero = tiny_jpeg();
        zero[25..27].copy_from_slice(&[0, 0]);
        assert_eq!(limit.check(&zero), Err(PictureError::NoSize));
        assert_eq!(limit.check(b"Unknown command"), Err(PictureError::NoSize));
        assert_eq!(
            "640x480"
                .parse::<PictureLimit>()
                .unwrap()
                .check(&tiny_jpeg()),
            Ok((640, 480))
        );
        assert!(
            "639x480"
                .parse::<PictureLimit>()
                .unwrap()
                .check(&tiny_jpeg())
                .is_err()
        );
        assert!("0x5".parse::<PictureLimit>().is_err());
        assert!("big".parse::<PictureLimit>().is_err());
        assert_eq!(limit.to_string(), "8192x8192");
    }

    #[test]
    fn rgb_lengths_are_checked() {
        assert_eq!(rgb_len(640, 480), Some(640 * 480 * 3));
        // 65535 * 65535 * 3 is about 12.9e9: more than a 32-bit usize holds.
        let huge = rgb_len(65535, 65535);
        if usize::BITS == 32 {
            assert_eq!(huge, None);
        } else {
            assert_eq!(huge, Some(65535 * 65535 * 3));
        }
        assert_eq!(rgb_len(u32::MAX, u32::MAX), None);
    }

    #[test]
    fn not_a_jpeg_has_no_stamp_and_is_left_alone() {
        let mut text = b"Unknown command".to_vec();
        Stamp {
            seq: 1,
            captured_at: Timestamp(1),
        }
        .insert_into(&mut text);
        assert_eq!(text, b"Unknown command");
        assert_eq!(dimensions(&text), None);
    }

    proptest! {
        #[test]
        fn inspecting_arbitrary_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = dimensions(&data);
            let _ = Stamp::find(&data);
            let mut with_soi = SOI.to_vec();
            with_soi.extend_from_slice(&data);
            let _ = dimensions(&with_soi);
            let _ = Stamp::find(&with_soi);
        }
    }
}
