//! The bytes of the AVI files edgecam writes: four-character codes, the fixed-size header, the
//! index chunks, and the frame rate as an AVI header states it.
//!
//! The layout (sizes in bytes; `N` = [`SUPER_INDEX_ENTRIES`]):
//!
//! ```text
//! RIFF 'AVI '
//!   LIST 'hdrl'
//!     avih (56)                main header: frames in the first RIFF, picture size
//!     LIST 'strl'
//!       strh (56)              the one video stream: 'vids' 'MJPG', rate/scale, frame count
//!       strf (40)              BITMAPINFOHEADER, compression 'MJPG'
//!       indx (24 + 16 N)       OpenDML super index: one entry per RIFF (its ix00 chunk)
//!     LIST 'odml'
//!       dmlh (248)             total frame count
//!   LIST 'INFO'
//!     ISFT (8)                 "edgecam"
//!   LIST 'movi'                <- HEADER_LEN ends after this list's 12-byte header
//!     00dc ...                 one chunk per frame: the JPEG bytes as received
//!     ix00                     OpenDML standard index of this RIFF's frames
//!   idx1                       classic index of the first RIFF's frames
//! RIFF 'AVIX'                  further RIFFs, each under 1 GiB
//!   LIST 'movi'
//!     00dc ...
//!     ix00
//! ```
//!
//! The header has the same size whatever it says, so it can be rewritten in place at any time.

use std::fmt;
use std::time::Duration;

/// A four-character code.
pub(crate) type FourCc = [u8; 4];

pub(crate) const RIFF: FourCc = *b"RIFF";
pub(crate) const LIST: FourCc = *b"LIST";
pub(crate) const AVI: FourCc = *b"AVI ";
pub(crate) const AVIX: FourCc = *b"AVIX";
pub(crate) const HDRL: FourCc = *b"hdrl";
pub(crate) const STRL: FourCc = *b"strl";
pub(crate) const ODML: FourCc = *b"odml";
pub(crate) const INFO: FourCc = *b"INFO";
pub(crate) const MOVI: FourCc = *b"movi";
pub(crate) const REC: FourCc = *b"rec ";
pub(crate) const AVIH: FourCc = *b"avih";
pub(crate) const STRH: FourCc = *b"strh";
pub(crate) const STRF: FourCc = *b"strf";
pub(crate) const INDX: FourCc = *b"indx";
pub(crate) const DMLH: FourCc = *b"dmlh";
pub(crate) const ISFT: FourCc = *b"ISFT";
pub(crate) const IDX1: FourCc = *b"idx1";
pub(crate) const IX00: FourCc = *b"ix00";
pub(crate) const JUNK: FourCc = *b"JUNK";
pub(crate) const VIDS: FourCc = *b"vids";
pub(crate) const MJPG: FourCc = *b"MJPG";
/// The chunk id of a frame of stream 0 ("compressed video").
pub(crate) const FRAME: FourCc = *b"00dc";

/// Entries reserved in the OpenDML super index, one per RIFF. With RIFFs of up to 1 GiB, a
/// file can grow to about 1 TiB; the reservation costs 16 KiB of header.
pub(crate) const SUPER_INDEX_ENTRIES: usize = 1024;

/// Each RIFF is closed once it holds this many frames, whatever their size: the writer keeps
/// the index entries of the RIFF it is writing in memory (16 bytes a frame, so at most 1 MiB),
/// and a recording of tiny frames must not grow without bound. With [`SUPER_INDEX_ENTRIES`]
/// RIFFs, a file holds up to 64 Mi frames: 25 days at 30 fps.
pub(crate) const MAX_RIFF_FRAMES: usize = 1 << 16;

/// Each RIFF is closed before it would reach this size, as ffmpeg does: some players cannot
/// handle larger ones, and every offset inside a RIFF then fits 32 bits.
pub(crate) const RIFF_LIMIT: u64 = 1 << 30;

/// The largest frame the writer records and the reader reads (256 MiB). edgecam's client
/// refuses frames over 32 MiB by default, so this only guards against absurd input.
pub const MAX_FRAME_BYTES: usize = 256 << 20;

const AVIF_HASINDEX: u32 = 0x10;
const AVIF_ISINTERLEAVED: u32 = 0x100;
const AVIF_TRUSTCKTYPE: u32 = 0x800;
/// idx1 flag: the frame is a key frame (every JPEG is).
pub(crate) const AVIIF_KEYFRAME: u32 = 0x10;
/// In an ix00 entry's size, the bit that marks a frame that is *not* a key frame.
pub(crate) const NOT_KEYFRAME: u32 = 0x8000_0000;

const ISFT_TEXT: &[u8; 8] = b"edgecam\0";

const INDX_LEN: u64 = 8 + 24 + 16 * SUPER_INDEX_ENTRIES as u64;
const STRL_LEN: u64 = 12 + (8 + 56) + (8 + 40) + INDX_LEN;
const ODML_LEN: u64 = 12 + 8 + 248;
/// The size of `LIST 'hdrl'`, its 8-byte chunk header included.
pub(crate) const HDRL_LEN: u64 = 12 + (8 + 56) + STRL_LEN + ODML_LEN;
const INFO_LEN: u64 = 12 + 8 + ISFT_TEXT.len() as u64;
/// The header, up to and including the 12 bytes that open the first `LIST 'movi'`: the first
/// frame chunk starts here.
pub(crate) const HEADER_LEN: u64 = 12 + HDRL_LEN + INFO_LEN + 12;
/// Where the first RIFF's `LIST 'movi'` starts.
pub(crate) const FIRST_MOVI: u64 = HEADER_LEN - 12;

/// The size of an ix00 chunk (header included) listing `frames` frames.
pub(crate) fn ix_len(frames: usize) -> u64 {
    32 + 8 * frames as u64
}

/// The size of an idx1 chunk (header included) listing `frames` frames.
pub(crate) fn idx1_len(frames: usize) -> u64 {
    8 + 16 * frames as u64
}

/// The size of a frame chunk holding `len` bytes: header, data, and the pad byte that keeps
/// chunks at even offsets.
pub(crate) fn chunk_len(len: u64) -> u64 {
    8 + len + (len & 1)
}

/// Whether `cc` is a plausible four-character code: letters, digits, spaces and `_`. Used to
/// tell a chunk header from the zeros or noise that follow a cut.
pub(crate) fn is_fourcc(cc: FourCc) -> bool {
    cc.iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b' ' || *b == b'_')
        && cc[0] != b' '
}

/// `cc` as text for messages: `00dc`, or escaped bytes when it is not printable.
pub(crate) fn show(cc: FourCc) -> String {
    cc.iter()
        .flat_map(|b| std::ascii::escape_default(*b))
        .map(char::from)
        .collect()
}

/// A frame rate as AVI headers state it: `rate / scale` frames per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameRate {
    pub rate: u32,
    pub scale: u32,
}

impl FrameRate {
    /// `fps` frames per second, exactly.
    pub const fn per_second(fps: u32) -> FrameRate {
        FrameRate {
            rate: fps,
            scale: 1,
        }
    }

    /// The average rate of `frames` frames whose first and last were captured `span` apart:
    /// `(frames - 1) / span`, as an exact fraction when it fits 32 bits (25 fps measured over
    /// 40 ms steps is `25/1`). `None` when it cannot be measured: fewer than two frames, or
    /// no time between the first and the last.
    pub fn measured(frames: u64, span: Duration) -> Option<FrameRate> {
        let micros = span.as_micros();
        if frames < 2 || micros == 0 {
            return None;
        }
        let mut num = u128::from(frames - 1) * 1_000_000;
        let mut den = micros;
        let g = gcd(num, den);
        num /= g;
        den /= g;
        // Too precise for 32 bits: halve both until they fit (bounded: at most 128 times).
        while num > u128::from(u32::MAX) || den > u128::from(u32::MAX) {
            num = num.div_ceil(2);
            den = den.div_ceil(2);
        }
        Some(FrameRate {
            rate: u32::try_from(num).ok()?,
            scale: u32::try_from(den).ok()?,
        })
    }

    /// Frames per second (0 for a degenerate rate with a zero scale).
    pub fn fps(self) -> f64 {
        if self.scale == 0 {
            0.0
        } else {
            f64::from(self.rate) / f64::from(self.scale)
        }
    }

    /// Whether both numbers are non-zero.
    pub(crate) fn is_valid(self) -> bool {
        self.rate > 0 && self.scale > 0
    }

    /// `avih`'s dwMicroSecPerFrame, rounded.
    pub(crate) fn micros_per_frame(self) -> u32 {
        if self.rate == 0 {
            return 0;
        }
        let micros =
            (u64::from(self.scale) * 1_000_000 + u64::from(self.rate) / 2) / u64::from(self.rate);
        u32::try_from(micros).unwrap_or(u32::MAX)
    }
}

impl fmt::Display for FrameRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.scale != 0 && self.rate % self.scale == 0 {
            write!(f, "{} fps", self.rate / self.scale)
        } else {
            write!(f, "{:.3} fps ({}/{})", self.fps(), self.rate, self.scale)
        }
    }
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.max(1)
}

/// One entry of the super index: where a RIFF's ix00 chunk is and how many frames it lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SuperIndexEntry {
    /// The position of the `ix00` chunk header.
    pub offset: u64,
    /// The chunk's size, its 8-byte header included (as ffmpeg writes it).
    pub size: u32,
    /// Frames listed.
    pub duration: u32,
}

/// A frame in the index of its RIFF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    /// The frame chunk's header, counted from the `movi` code of its RIFF's `LIST 'movi'`
    /// (what idx1 stores).
    pub offset: u32,
    /// The JPEG's length.
    pub len: u32,
}

/// What the header says; everything else about it is fixed.
#[derive(Debug, Clone)]
pub(crate) struct HeaderFields<'a> {
    pub width: u32,
    pub height: u32,
    pub frame_rate: FrameRate,
    /// Frames in the first RIFF (`avih`, as ffmpeg writes it).
    pub first_riff_frames: u64,
    /// Frames in the whole file (`strh` and `dmlh`).
    pub total_frames: u64,
    /// The largest frame, for the suggested buffer sizes.
    pub max_frame: u32,
    /// The first RIFF's size field, and that of its `LIST 'movi'`.
    pub riff_size: u32,
    pub movi_size: u32,
    pub super_index: &'a [SuperIndexEntry],
}

/// A little-endian byte writer with nested chunks.
#[derive(Default)]
struct Out(Vec<u8>);

impl Out {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn cc(&mut self, cc: FourCc) {
        self.0.extend_from_slice(&cc);
    }
    fn zeros(&mut self, n: usize) {
        self.0.resize(self.0.len() + n, 0);
    }
    /// A chunk whose size is what `body` writes.
    fn chunk(&mut self, id: FourCc, body: impl FnOnce(&mut Out)) {
        let start = self.0.len();
        self.cc(id);
        self.u32(0);
        body(self);
        let size = u32::try_from(self.0.len() - start - 8).unwrap_or(u32::MAX);
        self.0[start + 4..start + 8].copy_from_slice(&size.to_le_bytes());
        if size % 2 == 1 {
            self.u8(0);
        }
    }
    fn list(&mut self, kind: FourCc, body: impl FnOnce(&mut Out)) {
        self.chunk(LIST, |o| {
            o.cc(kind);
            body(o);
        });
    }
}

fn saturate(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// The whole header, exactly [`HEADER_LEN`] bytes.
pub(crate) fn header(h: &HeaderFields<'_>) -> Vec<u8> {
    let mut o = Out::default();
    let (w, ht) = (h.width, h.height);
    let max_bytes_per_sec = saturate(
        (u64::from(h.max_frame) * u64::from(h.frame_rate.rate))
            .div_ceil(u64::from(h.frame_rate.scale.max(1))),
    );
    o.cc(RIFF);
    o.u32(h.riff_size);
    o.cc(AVI);
    o.list(HDRL, |o| {
        o.chunk(AVIH, |o| {
            o.u32(h.frame_rate.micros_per_frame());
            o.u32(max_bytes_per_sec);
            o.u32(0); // padding granularity
            o.u32(AVIF_HASINDEX | AVIF_ISINTERLEAVED | AVIF_TRUSTCKTYPE);
            o.u32(saturate(h.first_riff_frames));
            o.u32(0); // initial frames
            o.u32(1); // streams
            o.u32(h.max_frame); // suggested buffer size
            o.u32(w);
            o.u32(ht);
            o.zeros(16); // reserved
        });
        o.list(STRL, |o| {
            o.chunk(STRH, |o| {
                o.cc(VIDS);
                o.cc(MJPG);
                o.u32(0); // flags
                o.u16(0); // priority
                o.u16(0); // language
                o.u32(0); // initial frames
                o.u32(h.frame_rate.scale);
                o.u32(h.frame_rate.rate);
                o.u32(0); // start
                o.u32(saturate(h.total_frames));
                o.u32(h.max_frame); // suggested buffer size
                o.u32(u32::MAX); // quality: default
                o.u32(0); // sample size: varies
                // rcFrame: left, top, right, bottom (16 bits each; JPEG sizes fit).
                o.u16(0);
                o.u16(0);
                o.u16(u16::try_from(w).unwrap_or(u16::MAX));
                o.u16(u16::try_from(ht).unwrap_or(u16::MAX));
            });
            o.chunk(STRF, |o| {
                o.u32(40); // biSize
                o.u32(w);
                o.u32(ht);
                o.u16(1); // planes
                o.u16(24); // bits per pixel once decoded
                o.cc(MJPG);
                o.u32(saturate(u64::from(w) * u64::from(ht) * 3));
                o.zeros(16); // pixels per metre, colours used and important
            });
            o.chunk(INDX, |o| {
                o.u16(4); // longs per entry
                o.u8(0); // sub-type
                o.u8(0); // AVI_INDEX_OF_INDEXES
                o.u32(saturate(h.super_index.len() as u64));
                o.cc(FRAME);
                o.zeros(12);
                for e in h.super_index.iter().take(SUPER_INDEX_ENTRIES) {
                    o.u64(e.offset);
                    o.u32(e.size);
                    o.u32(e.duration);
                }
                let unused = SUPER_INDEX_ENTRIES.saturating_sub(h.super_index.len());
                o.zeros(16 * unused);
            });
        });
        o.list(ODML, |o| {
            o.chunk(DMLH, |o| {
                o.u32(saturate(h.total_frames));
                o.zeros(244);
            });
        });
    });
    o.list(INFO, |o| {
        o.chunk(ISFT, |o| o.0.extend_from_slice(ISFT_TEXT))
    });
    o.cc(LIST);
    o.u32(h.movi_size);
    o.cc(MOVI);
    o.0
}

/// The first 24 bytes of a further RIFF: `RIFF <size> AVIX LIST <size> movi`.
pub(crate) fn avix_start(riff_size: u32, movi_size: u32) -> [u8; 24] {
    let mut b = [0; 24];
    b[0..4].copy_from_slice(&RIFF);
    b[4..8].copy_from_slice(&riff_size.to_le_bytes());
    b[8..12].copy_from_slice(&AVIX);
    b[12..16].copy_from_slice(&LIST);
    b[16..20].copy_from_slice(&movi_size.to_le_bytes());
    b[20..24].copy_from_slice(&MOVI);
    b
}

/// The header of a frame chunk holding `len` bytes.
pub(crate) fn frame_header(len: u32) -> [u8; 8] {
    let mut b = [0; 8];
    b[0..4].copy_from_slice(&FRAME);
    b[4..8].copy_from_slice(&len.to_le_bytes());
    b
}

/// An OpenDML standard index (`ix00`) of `entries`, whose offsets count from `movi_code`, the
/// position of the `movi` code of their RIFF's `LIST 'movi'`.
pub(crate) fn ix00(movi_code: u64, entries: &[IndexEntry]) -> Vec<u8> {
    let mut o = Out::default();
    o.chunk(IX00, |o| {
        o.u16(2); // longs per entry
        o.u8(0); // sub-type
        o.u8(1); // AVI_INDEX_OF_CHUNKS
        o.u32(saturate(entries.len() as u64));
        o.cc(FRAME);
        o.u64(movi_code); // base offset
        o.u32(0); // reserved
        for e in entries {
            // Offsets point at the data, just past the chunk header; all frames are key frames.
            o.u32(e.offset + 8);
            o.u32(e.len & !NOT_KEYFRAME);
        }
    });
    o.0
}

/// A classic `idx1` index of `entries`.
pub(crate) fn idx1(entries: &[IndexEntry]) -> Vec<u8> {
    let mut o = Out::default();
    o.chunk(IDX1, |o| {
        for e in entries {
            o.cc(FRAME);
            o.u32(AVIIF_KEYFRAME);
            o.u32(e.offset);
            o.u32(e.len);
        }
    });
    o.0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fields(super_index: &[SuperIndexEntry]) -> HeaderFields<'_> {
        HeaderFields {
            width: 640,
            height: 480,
            frame_rate: FrameRate::per_second(25),
            first_riff_frames: 3,
            total_frames: 7,
            max_frame: 1000,
            riff_size: 1,
            movi_size: 2,
            super_index,
        }
    }

    #[test]
    fn the_header_has_its_fixed_size_whatever_it_says() {
        let entry = SuperIndexEntry {
            offset: 1 << 33,
            size: 40,
            duration: 1,
        };
        assert_eq!(header(&fields(&[])).len() as u64, HEADER_LEN);
        assert_eq!(header(&fields(&[entry; 5])).len() as u64, HEADER_LEN);
        let h = header(&fields(&[]));
        assert_eq!(&h[12..16], b"LIST");
        assert_eq!(&h[20..24], b"hdrl");
        assert_eq!(
            u64::from(u32::from_le_bytes([h[16], h[17], h[18], h[19]])) + 8,
            HDRL_LEN
        );
        assert_eq!(&h[FIRST_MOVI as usize..][..4], b"LIST");
        assert_eq!(&h[h.len() - 4..], b"movi");
    }

    #[test]
    fn index_chunks_have_the_sizes_the_writer_plans_for() {
        let entries = [IndexEntry { offset: 4, len: 9 }; 3];
        assert_eq!(ix00(100, &entries).len() as u64, ix_len(3));
        assert_eq!(idx1(&entries).len() as u64, idx1_len(3));
        assert_eq!(ix00(100, &[]).len() as u64, ix_len(0));
        assert_eq!(chunk_len(9), 18);
        assert_eq!(chunk_len(10), 18);
    }

    #[test]
    fn measured_rates_are_exact_fractions_when_they_can_be() {
        let rate = |frames, micros| FrameRate::measured(frames, Duration::from_micros(micros));
        assert_eq!(rate(11, 400_000), Some(FrameRate::per_second(25)));
        assert_eq!(
            rate(3, 66_666),
            Some(FrameRate {
                rate: 1_000_000,
                scale: 33_333
            })
        );
        assert_eq!(rate(1, 1000), None);
        assert_eq!(rate(5, 0), None);
        // Absurd figures still give a rate that fits 32 bits, as close as 32 bits allow.
        let r = rate(u64::MAX, u64::MAX).unwrap();
        assert!(r.is_valid());
        assert!((r.fps() / 1e6 - 1.0).abs() < 1e-3, "{r:?}");
        let r = rate(30_000 * 3600 * 24 + 1, 1001 * 1_000_000 * 3600 * 24).unwrap();
        assert!((r.fps() - 30_000.0 / 1001.0).abs() < 1e-9, "{r:?}");
        assert_eq!(FrameRate::per_second(25).micros_per_frame(), 40_000);
        assert_eq!(FrameRate::per_second(25).to_string(), "25 fps");
        assert_eq!(
            FrameRate {
                rate: 30000,
                scale: 1001
            }
            .to_string(),
            "29.970 fps (30000/1001)"
        );
    }
}
