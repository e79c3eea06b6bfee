//! Cutting a stream of concatenated JPEGs (what `ffmpeg -f mjpeg -` or
//! `rpicam-vid --codec mjpeg -o -` write to a pipe) into whole images, without I/O.
//!
//! The splitter walks the markers rather than searching for `FF D9`: marker segments are
//! skipped whole by their length, so an `FF D8 … FF D9` inside an EXIF thumbnail neither starts
//! nor ends a frame; after SOS the entropy-coded data runs to the first marker that is not
//! stuffing (`FF 00`), a restart marker (`FF D0`..`FF D7`) or fill (`FF FF`); EOI ends the
//! frame and any other marker (DHT, the next SOS of a progressive JPEG, DRI, ...) continues it.
//!
//! Each byte is looked at about once: the parse position is kept between calls, garbage is
//! dropped as it is skipped and a frame over the limit is dropped as it streams in, so the
//! buffer holds at most one frame in progress (no more than the limit) plus one push.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{EOI, SOI, SOS, TEM};

/// What stops a frame from coming out of a [`JpegSplitter`]. The stream goes on after it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SplitError {
    #[error(
        "a JPEG in the stream is larger than the {max} bytes allowed; skipped it (raise the limit if the camera really sends frames this large)"
    )]
    TooLarge { max: usize },
}

/// Where the parser stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between frames, looking for SOI at the start of the buffer. `counted`: the bytes skipped
    /// in this run are already counted as one resync.
    Hunting { counted: bool },
    /// In a frame; a marker, maybe after fill bytes, must stand at `pos`.
    Marker,
    /// In a frame; `remaining` bytes of a marker segment's payload are still to come after
    /// `pos`. `scan`: it is an SOS header, so entropy-coded data follows.
    Segment { remaining: usize, scan: bool },
    /// In a frame's entropy-coded data, at `pos`.
    Entropy,
}

/// What one parsing step found.
enum Step {
    Continue,
    /// The buffer ends before the next decision can be made.
    NeedMore,
    /// The frame starting at the buffer's start ends before this offset (EOI included).
    Frame(usize),
}

/// Splits a byte stream of concatenated JPEGs into whole JPEGs (SOI through EOI).
///
/// Push bytes as they are read, in any chunks, then call [`next_frame`](Self::next_frame)
/// until it returns `None`. Garbage between frames and broken frames are skipped and counted
/// ([`skipped_bytes`](Self::skipped_bytes), [`resyncs`](Self::resyncs)), never fatal; a frame
/// over the limit is reported once as [`SplitError::TooLarge`] and dropped.
///
/// Work is linear in the bytes pushed, and as long as `next_frame` is drained after each
/// push, [`buffered`](Self::buffered) never exceeds `max_frame` plus that push.
#[derive(Debug)]
pub struct JpegSplitter {
    max_frame: usize,
    /// While in a frame, starts at its SOI (unless `discarding`); while hunting, holds at most
    /// the bytes of the last push not yet looked at.
    buf: BytesMut,
    /// How far `buf` has been parsed.
    pos: usize,
    state: State,
    /// The frame in progress is over `max_frame` and was reported: its bytes are walked (to find
    /// where it ends) and dropped.
    discarding: bool,
    skipped: u64,
    resyncs: u64,
}

impl JpegSplitter {
    /// `max_frame`: the largest JPEG accepted, in bytes.
    pub fn new(max_frame: usize) -> JpegSplitter {
        JpegSplitter {
            max_frame,
            buf: BytesMut::new(),
            pos: 0,
            state: State::Hunting { counted: false },
            discarding: false,
            skipped: 0,
            resyncs: 0,
        }
    }

    /// Appends bytes read from the stream (any chunking).
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Room for up to `len` bytes to be read into straight from the stream (e.g. by tokio's
    /// `read_buf`): what is written there counts as pushed, without the copy
    /// [`push`](Self::push) makes of bytes read elsewhere first.
    pub fn spare(&mut self, len: usize) -> impl BufMut + '_ {
        self.buf.reserve(len);
        (&mut self.buf).limit(len)
    }

    /// The next whole JPEG (SOI through EOI) in what was pushed; `None` when more bytes are
    /// needed. `Some(Err(SplitError::TooLarge { .. }))` once for a frame over `max_frame`; the
    /// splitter then drops it and resynchronises on the next SOI, so calling again continues
    /// the stream.
    pub fn next_frame(&mut self) -> Option<Result<Bytes, SplitError>> {
        loop {
            match self.step() {
                Step::Continue => {}
                Step::NeedMore => {
                    if self.discarding {
                        self.drop_parsed();
                    } else if self.frame_len_at_least() > self.max_frame {
                        self.discarding = true;
                        self.drop_parsed();
                        return Some(Err(self.too_large()));
                    }
                    return None;
                }
                Step::Frame(end) => {
                    self.state = State::Hunting { counted: false };
                    self.pos = 0;
                    if self.discarding {
                        self.discarding = false;
                        self.buf.advance(end);
                    } else if end > self.max_frame {
                        self.buf.advance(end);
                        return Some(Err(self.too_large()));
                    } else {
                        return Some(Ok(self.buf.split_to(end).freeze()));
                    }
                }
            }
        }
    }

    /// Bytes skipped outside frames so far (garbage between frames, the remains of a broken
    /// frame). The bytes of a frame reported as too large are not counted here.
    pub fn skipped_bytes(&self) -> u64 {
        self.skipped
    }

    /// How many times garbage or a broken frame was skipped (each run counted once: a broken
    /// frame and the garbage after it are one resync).
    pub fn resyncs(&self) -> u64 {
        self.resyncs
    }

    /// Bytes held, waiting for the rest of a frame (never more than about `max_frame` plus one
    /// push).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    fn too_large(&self) -> SplitError {
        SplitError::TooLarge {
            max: self.max_frame,
        }
    }

    /// A lower bound on the length of the frame in progress.
    fn frame_len_at_least(&self) -> usize {
        match self.state {
            State::Hunting { .. } => 0,
            State::Marker | State::Entropy => self.pos,
            State::Segment { remaining, .. } => self.pos.saturating_add(remaining),
        }
    }

    /// Drops what was parsed of a frame being discarded.
    fn drop_parsed(&mut self) {
        self.buf.advance(self.pos);
        self.pos = 0;
    }

    fn skip(&mut self, bytes: usize) {
        self.skipped += bytes as u64;
    }

    fn step(&mut self) -> Step {
        match self.state {
            State::Hunting { counted } => self.hunt(counted),
            State::Marker => self.marker(),
            State::Segment { remaining, scan } => {
                let available = self.buf.len() - self.pos;
                if available >= remaining {
                    self.pos += remaining;
                    self.state = if scan { State::Entropy } else { State::Marker };
                    Step::Continue
                } else {
                    self.pos = self.buf.len();
                    self.state = State::Segment {
                        remaining: remaining - available,
                        scan,
                    };
                    Step::NeedMore
                }
            }
            State::Entropy => self.entropy(),
        }
    }

    /// Skips to the next SOI, keeping none of the garbage but a last `FF` that may start one.
    fn hunt(&mut self, counted: bool) -> Step {
        let found = self.buf.windows(2).position(|pair| pair == SOI);
        let garbage = found.unwrap_or_else(|| match self.buf.last() {
            Some(0xFF) => self.buf.len() - 1,
            _ => self.buf.len(),
        });
        if garbage > 0 {
            self.skip(garbage);
            if !counted {
                self.resyncs += 1;
            }
            self.buf.advance(garbage);
        }
        if found.is_some() {
            self.pos = SOI.len();
            self.state = State::Marker;
            Step::Continue
        } else {
            self.state = State::Hunting {
                counted: counted || garbage > 0,
            };
            Step::NeedMore
        }
    }

    fn marker(&mut self) -> Step {
        let Some(&first) = self.buf.get(self.pos) else {
            return Step::NeedMore;
        };
        if first != 0xFF {
            return self.abandon();
        }
        let Some(&marker) = self.buf.get(self.pos + 1) else {
            return Step::NeedMore;
        };
        match marker {
            0xFF => self.pos += 1,
            0xD8 => return self.restart_at_soi(),
            EOI => return Step::Frame(self.pos + 2),
            TEM | 0xD0..=0xD7 => self.pos += 2,
            0x00 => return self.abandon(),
            _ => {
                let (Some(&high), Some(&low)) =
                    (self.buf.get(self.pos + 2), self.buf.get(self.pos + 3))
                else {
                    return Step::NeedMore;
                };
                let len = usize::from(u16::from_be_bytes([high, low]));
                if len < 2 {
                    return self.abandon();
                }
                self.pos += 4;
                self.state = State::Segment {
                    remaining: len - 2,
                    scan: marker == SOS,
                };
            }
        }
        Step::Continue
    }

    /// Walks the entropy-coded data to the marker that ends it. Stuffing comes about every
    /// 256 bytes of a real picture's scan, so it is stepped over here, not one step each.
    fn entropy(&mut self) -> Step {
        loop {
            let Some(offset) = memchr::memchr(0xFF, &self.buf[self.pos..]) else {
                self.pos = self.buf.len();
                return Step::NeedMore;
            };
            self.pos += offset;
            match self.buf.get(self.pos + 1) {
                None => return Step::NeedMore,
                // Stuffing and restart markers are part of the scan.
                Some(0x00 | 0xD0..=0xD7) => self.pos += 2,
                // Fill: the marker follows.
                Some(0xFF) => self.pos += 1,
                Some(_) => {
                    self.state = State::Marker;
                    return Step::Continue;
                }
            }
        }
    }

    /// The frame in progress is malformed at `pos`: skip what came before and look for the
    /// next SOI from there.
    fn abandon(&mut self) -> Step {
        let counted = !self.discarding;
        if counted {
            self.skip(self.pos);
            self.resyncs += 1;
        }
        self.discarding = false;
        self.drop_parsed();
        self.state = State::Hunting { counted };
        Step::Continue
    }

    /// An SOI at `pos` inside a frame: the frame was cut short (bytes lost in the pipe) and a
    /// new one starts here.
    fn restart_at_soi(&mut self) -> Step {
        if !self.discarding {
            self.skip(self.pos);
            self.resyncs += 1;
        }
        self.discarding = false;
        self.drop_parsed();
        self.pos = SOI.len();
        self.state = State::Marker;
        Step::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::super::is_jpeg;
    use super::super::testing::{Picture, encode, first_scan, picture};
    use super::*;
    use proptest::prelude::*;

    /// Pushes `stream` cut into chunks of the sizes in `chunks` (cycled), every other chunk
    /// written into [`JpegSplitter::spare`] as a read would, draining the splitter after each
    /// push; checks the bound on `buffered()` on the way.
    fn split(
        splitter: &mut JpegSplitter,
        stream: &[u8],
        chunks: &[usize],
    ) -> Vec<Result<Bytes, SplitError>> {
        let mut out = Vec::new();
        let mut rest = stream;
        for (i, &size) in chunks.iter().cycle().enumerate() {
            if rest.is_empty() {
                break;
            }
            let (chunk, tail) = rest.split_at(size.clamp(1, rest.len()));
            rest = tail;
            if i % 2 == 0 {
                splitter.push(chunk);
            } else {
                let mut spare = splitter.spare(chunk.len());
                assert!(
                    spare.chunk_mut().len() >= chunk.len(),
                    "spare() made too little room"
                );
                spare.put_slice(chunk);
            }
            assert!(
                splitter.buffered() <= splitter.max_frame.saturating_add(chunk.len() + 3),
                "{} bytes buffered after a push of {}",
                splitter.buffered(),
                chunk.len()
            );
            out.extend(std::iter::from_fn(|| splitter.next_frame()));
            assert!(splitter.buffered() <= splitter.max_frame.saturating_add(3));
        }
        out
    }

    /// A hand-made frame with what jpeg-encoder never writes: fill bytes before markers, TEM,
    /// an APP segment and a DHT between two scans, a DNL-like marker after scan data, restart
    /// markers, stuffing and fill inside the scans.
    fn synthetic() -> Vec<u8> {
        let mut j = vec![0xFF, 0xD8, 0xFF, 0xFF, 0xFF, 0x01];
        j.extend_from_slice(&[0xFF, 0xE1, 0x00, 0x0C, b'E', b'x', b'i', b'f', 0, 0]);
        j.extend_from_slice(&[0xFF, 0xD8, 0xFF, 0xD9]); // a "thumbnail"
        j.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x0B, 0x08, 0x00, 0x08, 0x00, 0x08, 0x01]);
        j.extend_from_slice(&[0x01, 0x11, 0x00]);
        j.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00]);
        j.extend_from_slice(&[
            0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56, 0xFF, 0xFF, 0xD1, 0x78,
        ]);
        j.extend_from_slice(&[0xFF, 0xC4, 0x00, 0x04, 0xD8, 0xD9]);
        j.extend_from_slice(&[
            0xFF, 0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x01, 0x3F, 0x00,
        ]);
        j.extend_from_slice(&[0x9A, 0xFF, 0x00, 0xFF, 0xD7, 0xBC]);
        j.extend_from_slice(&[0xFF, 0xDC, 0x00, 0x04, 0x00, 0x08]);
        j.extend_from_slice(&[0xFF, 0xFF, 0xD9]);
        j
    }

    fn frame() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![9 => picture().prop_map(|p| encode(&p)), 1 => Just(synthetic())]
    }

    fn chunks() -> impl Strategy<Value = Vec<usize>> {
        prop_oneof![
            proptest::collection::vec(1usize..8, 1..16),
            proptest::collection::vec(1usize..3000, 1..16),
            Just(vec![usize::MAX]),
        ]
    }

    /// Random bytes with no `FF D8` in them.
    fn garbage() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            prop_oneof![any::<u8>(), Just(0xFF), Just(0xD9), Just(0x00)],
            1..80,
        )
        .prop_map(|mut bytes| {
            for i in 1..bytes.len() {
                if bytes[i - 1] == 0xFF && bytes[i] == 0xD8 {
                    bytes[i] = 0xD7;
                }
            }
            bytes
        })
    }

    fn frames_only(results: Vec<Result<Bytes, SplitError>>) -> Vec<Vec<u8>> {
        results
            .into_iter()
            .map(|r| r.expect("no frame too large").to_vec())
            .collect()
    }

    #[test]
    fn the_test_pictures_have_restart_markers_stuffing_and_thumbnails() {
        let jpeg = encode(&Picture {
            restart: 1,
            ..Picture::plain(40, 40)
        });
        let scan = &jpeg[first_scan(&jpeg).1..];
        assert!(
            scan.windows(2)
                .any(|w| w[0] == 0xFF && (0xD0..=0xD7).contains(&w[1]))
        );
        assert!(scan.windows(2).any(|w| w == [0xFF, 0x00]));

        let with_thumbnail = encode(&Picture {
            thumbnail: true,
            ..Picture::plain(8, 8)
        });
        let soi_count = with_thumbnail.windows(2).filter(|w| *w == SOI).count();
        assert_eq!(soi_count, 2);
    }

    #[test]
    fn a_thumbnail_in_app1_neither_starts_nor_ends_a_frame() {
        for jpeg in [
            encode(&Picture {
                thumbnail: true,
                ..Picture::plain(16, 16)
            }),
            synthetic(),
        ] {
            let mut splitter = JpegSplitter::new(1 << 20);
            let stream = [&jpeg[..], &jpeg[..]].concat();
            assert_eq!(
                frames_only(split(&mut splitter, &stream, &[1])),
                [jpeg.clone(), jpeg.clone()]
            );
            assert_eq!((splitter.skipped_bytes(), splitter.resyncs()), (0, 0));
            assert_eq!(splitter.buffered(), 0);
        }
    }

    #[test]
    fn spare_never_offers_more_than_asked_for() {
        let mut splitter = JpegSplitter::new(1 << 20);
        splitter.push(&[0xAB; 100]);
        let mut spare = splitter.spare(64);
        assert_eq!(
            spare.remaining_mut(),
            64,
            "a read into it could overrun the bound"
        );
        assert!(spare.chunk_mut().len() <= 64);
    }

    #[test]
    fn buffered_stays_bounded_while_a_huge_frame_streams_in() {
        // 40 APP2 segments of 64 KiB, then a 1 MiB scan: about 3.6 MB.
        let mut huge = SOI.to_vec();
        for _ in 0..40 {
            huge.extend_from_slice(&[0xFF, 0xE2, 0xFF, 0xFF]);
            huge.extend((0..0xFFFD).map(|i| (i % 251) as u8));
        }
        huge.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00]);
        for i in 0..1 << 19 {
            huge.extend_from_slice(&[0x7F, (i % 200) as u8]);
            if i % 97 == 0 {
                huge.extend_from_slice(&[0xFF, 0x00, 0xFF, 0xD0 + (i % 8) as u8]);
            }
        }
        huge.extend_from_slice(&[0xFF, 0xD9]);
        let small = encode(&Picture::plain(16, 16));
        let stream = [&small[..], &huge, &small, &huge, &small].concat();

        for max in [1_000, 100_000] {
            let mut splitter = JpegSplitter::new(max);
            let results = split(&mut splitter, &stream, &[4096]);
            let small = || Ok(Bytes::from(small.clone()));
            let too_large = || Err(SplitError::TooLarge { max });
            let expected = [small(), too_large(), small(), too_large(), small()];
            assert_eq!(results, expected, "max {max}");
            assert_eq!((splitter.skipped_bytes(), splitter.resyncs()), (0, 0));
        }
    }

    #[test]
    fn the_error_says_what_to_do() {
        assert_eq!(
            SplitError::TooLarge { max: 4_000_000 }.to_string(),
            "a JPEG in the stream is larger than the 4000000 bytes allowed; skipped it (raise the limit if the camera really sends frames this large)"
        );
    }

    /// How a frame goes wrong between good ones.
    #[derive(Debug, Clone)]
    enum Gap {
        None,
        Garbage(Vec<u8>),
        /// The frame cut short inside its scan data (bytes lost), the next frame right after.
        Truncated {
            picture: Picture,
            cut: f64,
        },
        /// SOS with a length below 2, then garbage.
        ShortLength {
            picture: Picture,
            garbage: Vec<u8>,
        },
        /// A non-marker byte where SOS must be, then garbage.
        NotAMarker {
            picture: Picture,
            garbage: Vec<u8>,
        },
    }

    fn gap() -> impl Strategy<Value = Gap> {
        // Broken frames have one scan (so the cut lands in scan data) and no thumbnail (a
        // resync finds the next SOI wherever it is, and a thumbnail's SOI would be one).
        let victim = picture().prop_map(|p| Picture {
            progressive: false,
            optimized: false,
            thumbnail: false,
            ..p
        });
        let garbage_after = prop_oneof![Just(Vec::new()), garbage()];
        prop_oneof![
            2 => Just(Gap::None),
            2 => garbage().prop_map(Gap::Garbage),
            1 => (victim.clone(), 0.0..1.0).prop_map(|(picture, cut)| Gap::Truncated { picture, cut }),
            1 => (victim.clone(), garbage_after.clone())
                .prop_map(|(picture, garbage)| Gap::ShortLength { picture, garbage }),
            1 => (victim, garbage_after)
                .prop_map(|(picture, garbage)| Gap::NotAMarker { picture, garbage }),
        ]
    }

    impl Gap {
        fn bytes(&self) -> Vec<u8> {
            match self {
                Gap::None => Vec::new(),
                Gap::Garbage(garbage) => garbage.clone(),
                Gap::Truncated { picture, cut } => {
                    let jpeg = encode(picture);
                    let data = first_scan(&jpeg).1;
                    let end = data + ((jpeg.len() - 2 - data) as f64 * cut) as usize;
                    jpeg[..end].to_vec()
                }
                Gap::ShortLength { picture, garbage } => {
                    let mut jpeg = encode(picture);
                    let sos = first_scan(&jpeg).0;
                    jpeg[sos + 2..sos + 4].copy_from_slice(&[0x00, 0x01]);
                    [jpeg, garbage.clone()].concat()
                }
                Gap::NotAMarker { picture, garbage } => {
                    let mut jpeg = encode(picture);
                    let sos = first_scan(&jpeg).0;
                    jpeg[sos] = 0x00;
                    [jpeg, garbage.clone()].concat()
                }
            }
        }
    }

    proptest! {
        #[test]
        fn any_chunking_of_concatenated_jpegs_gives_them_back(
            frames in proptest::collection::vec(frame(), 1..6),
            chunks in chunks(),
        ) {
            let stream = frames.concat();
            let mut splitter = JpegSplitter::new(1 << 20);
            let out = frames_only(split(&mut splitter, &stream, &chunks));
            prop_assert_eq!(out, frames);
            prop_assert_eq!((splitter.skipped_bytes(), splitter.resyncs()), (0, 0));
            prop_assert_eq!(splitter.buffered(), 0);
        }

        #[test]
        fn frames_over_the_limit_are_reported_once_and_the_rest_come_out(
            frames in proptest::collection::vec(frame(), 1..6),
            chunks in chunks(),
            limit in 0.0..1.0,
        ) {
            let shortest = frames.iter().map(Vec::len).min().unwrap_or(0);
            let longest = frames.iter().map(Vec::len).max().unwrap_or(0);
            let max = shortest + ((longest - shortest) as f64 * limit) as usize;
            let expected: Vec<_> = frames
                .iter()
                .map(|f| if f.len() > max { Err(SplitError::TooLarge { max }) } else { Ok(Bytes::from(f.clone())) })
                .collect();
            let mut splitter = JpegSplitter::new(max);
            prop_assert_eq!(split(&mut splitter, &frames.concat(), &chunks), expected);
            prop_assert_eq!((splitter.skipped_bytes(), splitter.resyncs()), (0, 0));
            prop_assert_eq!(splitter.buffered(), 0);
        }

        #[test]
        fn garbage_and_broken_frames_are_skipped_counted_and_the_good_frames_still_come_out(
            parts in proptest::collection::vec((gap(), frame()), 1..6),
            chunks in chunks(),
        ) {
            let mut stream = Vec::new();
            let mut skipped = 0;
            let mut runs = 0;
            for (gap, frame) in &parts {
                let bytes = gap.bytes();
                skipped += bytes.len() as u64;
                runs += u64::from(!bytes.is_empty());
                stream.extend_from_slice(&bytes);
                stream.extend_from_slice(frame);
            }
            let mut splitter = JpegSplitter::new(1 << 20);
            let out = frames_only(split(&mut splitter, &stream, &chunks));
            let frames: Vec<_> = parts.iter().map(|(_, frame)| frame.clone()).collect();
            prop_assert_eq!(out, frames);
            prop_assert_eq!(splitter.skipped_bytes(), skipped);
            prop_assert_eq!(splitter.resyncs(), runs);
            prop_assert_eq!(splitter.buffered(), 0);
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_every_byte_is_accounted_for(
            stream in proptest::collection::vec(
                prop_oneof![
                    4 => any::<u8>(),
                    2 => Just(0xFF),
                    1 => Just(0xD8),
                    1 => Just(0xD9),
                    1 => Just(0xDA),
                    1 => Just(0x00),
                    1 => Just(0xD0),
                ],
                0..2000,
            ),
            chunks in chunks(),
            max in 0usize..300,
        ) {
            let mut limited = JpegSplitter::new(max);
            for result in split(&mut limited, &stream, &chunks) {
                match result {
                    Ok(frame) => prop_assert!(is_jpeg(&frame) && frame.len() <= max),
                    Err(e) => prop_assert_eq!(e, SplitError::TooLarge { max }),
                }
            }

            let mut unlimited = JpegSplitter::new(usize::MAX);
            let frames = split(&mut unlimited, &stream, &chunks);
            let mut emitted = 0;
            for frame in frames {
                let frame = frame.expect("no limit");
                prop_assert!(is_jpeg(&frame));
                emitted += frame.len() as u64;
            }
            prop_assert_eq!(
                emitted + unlimited.skipped_bytes() + unlimited.buffered() as u64,
                stream.len() as u64
            );
            prop_assert!(unlimited.resyncs() <= unlimited.skipped_bytes());
        }
    }
}
