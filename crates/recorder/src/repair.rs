//! [`repair`]: makes a recording that was cut off (killed, full disk, power loss) a valid AVI
//! file again, in place.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, SeekFrom};
use std::path::{Path, PathBuf};

use edgecam_core::jpeg::{Stamp, dimensions};

use crate::parse::{self, Chunk, Layout, ReadError, Riff};
use crate::riff::{
    self, FIRST_MOVI, FrameRate, HDRL_LEN, HEADER_LEN, HeaderFields, IndexEntry, JUNK,
    MAX_FRAME_BYTES, SUPER_INDEX_ENTRIES, SuperIndexEntry,
};
use crate::writer::{AviConfig, AviFile};

/// What [`repair`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RepairReport {
    pub path: PathBuf,
    /// The file was valid already and was not touched.
    pub already_valid: bool,
    /// Frames in the file now.
    pub frames: u64,
    /// The picture size and frame rate the header now states.
    pub width: u32,
    pub height: u32,
    pub frame_rate: FrameRate,
    pub riff_segments: u32,
    /// The file's size before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Bytes cut off the end: an incomplete frame, index or segment, or what followed an
    /// unreadable spot.
    pub bytes_dropped: u64,
    /// Frame chunks that were whole but held no whole JPEG (zeros left by a power cut, say):
    /// turned into `JUNK` chunks, which players skip.
    pub damaged_frames: u64,
    /// What was wrong before; empty when the file was valid.
    pub problems: Vec<String>,
}

impl fmt::Display for RepairReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = format!(
            "{} frames, {}x{}, {}, {} RIFF segment{}",
            self.frames,
            self.width,
            self.height,
            self.frame_rate,
            self.riff_segments,
            if self.riff_segments == 1 { "" } else { "s" }
        );
        if self.already_valid {
            return write!(
                f,
                "{} is a valid AVI file ({what}); left unchanged",
                self.path.display()
            );
        }
        write!(
            f,
            "repaired {} ({what}): rebuilt the header and indexes",
            self.path.display()
        )?;
        if self.bytes_dropped > 0 {
            write!(
                f,
                ", dropped {} bytes at the end (an incomplete frame or index)",
                self.bytes_dropped
            )?;
        }
        if self.damaged_frames > 0 {
            write!(
                f,
                ", blanked {} damaged frame{}",
                self.damaged_frames,
                if self.damaged_frames == 1 { "" } else { "s" }
            )?;
        }
        write!(
            f,
            "; {} bytes before, {} now",
            self.bytes_before, self.bytes_after
        )
    }
}

/// Repairs the edgecam AVI recording at `path` in place, and says what it did.
///
/// A recording cut off at any byte (the recorder killed, the disk full, the power lost) keeps
/// every frame that reached the disk whole: a frame chunk entirely in the file holding a whole
/// JPEG. What follows the last such frame (a partial frame or index) is cut off, the indexes
/// (`ix00` for each RIFF, `idx1` for the first) and the header (frame counts, picture size
/// from the first JPEG, frame rate) are rebuilt, and the file is synced. Frames are never
/// moved or copied, so repairing a large file costs about one read of its chunk headers.
/// Whole chunks that do not hold a JPEG are turned into `JUNK` chunks.
///
/// The frame rate comes from the capture times edgecam stamps into its frames when the first
/// and last kept frames have them, else from the old header (brought up to date about once
/// a second while recording), else it is 25 fps.
///
/// Repairing is idempotent: a valid file (a repaired one, or any AVI that passes
/// [`AviReader`](crate::AviReader)'s checks) is left untouched, and the report says so. A repair
/// that is itself interrupted can be run again. Files that edgecam did not write are only
/// checked, never changed.
pub fn repair(path: impl AsRef<Path>) -> Result<RepairReport, ReadError> {
    let path = path.as_ref();
    let fallback = AviConfig::default().fallback_frame_rate;
    let io_error = |source| ReadError::Io {
        path: path.to_owned(),
        source,
    };
    // A valid file is only read, so that checking one needs no write permission.
    let mut file = BufReader::new(File::open(path).map_err(io_error)?);
    if let Some(report) = valid(&parse::scan(&mut file, path)?, path, fallback) {
        return Ok(report);
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_error)?;
    repair_file(&mut file, path, fallback)
}

/// Where the index chunks of a closed RIFF go: back into the chunks they were in.
struct Slot {
    offset: u64,
    len: u64,
}

impl Slot {
    fn of(c: Chunk) -> Slot {
        Slot {
            offset: c.offset,
            len: c.end() - c.offset,
        }
    }
}

struct Out<'a, F> {
    f: &'a mut F,
    path: &'a Path,
}

fn write_error(path: &Path) -> impl FnOnce(std::io::Error) -> ReadError + '_ {
    move |source| ReadError::WriteIo {
        path: path.to_owned(),
        source,
    }
}

impl<F: AviFile> Out<'_, F> {
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> Result<(), ReadError> {
        let result = (|| {
            self.f.seek(SeekFrom::Start(offset))?;
            self.f.write_all(bytes)
        })();
        result.map_err(write_error(self.path))
    }
    fn set_len(&mut self, len: u64) -> Result<(), ReadError> {
        self.f.set_len(len).map_err(write_error(self.path))
    }
    /// Writes `bytes` into `slot`, and a `JUNK` chunk over what they leave of it.
    fn fill(&mut self, slot: &Slot, bytes: &[u8], what: &str) -> Result<(), ReadError> {
        let n = bytes.len() as u64;
        let rest = slot.len.checked_sub(n);
        match rest {
            Some(0) => self.write_at(slot.offset, bytes),
            Some(rest) if rest >= 8 => {
                self.write_at(slot.offset, bytes)?;
                let size = u32::try_from(rest - 8).unwrap_or(u32::MAX);
                let mut junk = JUNK.to_vec();
                junk.extend_from_slice(&size.to_le_bytes());
                self.write_at(slot.offset + n, &junk)
            }
            _ => Err(ReadError::Unrepairable {
                path: self.path.to_owned(),
                reason: format!(
                    "the rebuilt {what} ({n} bytes) does not fit where the old one was (byte {}, {} bytes)",
                    slot.offset, slot.len
                ),
            }),
        }
    }
}

fn entries(riff: &Riff) -> Vec<IndexEntry> {
    let movi_code = riff.movi.map_or(FIRST_MOVI + 8, |(m, _)| m + 8);
    riff.frames
        .iter()
        .filter(|f| f.jpeg)
        .map(|f| IndexEntry {
            offset: u32::try_from(f.chunk.offset - movi_code).unwrap_or(u32::MAX),
            len: f.chunk.size,
        })
        .collect()
}

fn sat(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// Whether `layout` is laid out as [`AviWriter`](crate::AviWriter) lays files out, so that
/// its header can be rewritten from scratch without touching anything else.
fn check_ours(layout: &Layout, path: &Path) -> Result<(), ReadError> {
    let not_ours = |reason: &str| ReadError::NotOurs {
        path: path.to_owned(),
        reason: reason.to_owned(),
        problems: layout.problems.clone(),
    };
    match layout.hdrl_at {
        Some((12, size)) if u64::from(size) + 8 == HDRL_LEN => {}
        Some(_) => return Err(not_ours("its header has another size")),
        None if layout.len >= 24 => return Err(not_ours("it has no header where edgecam puts it")),
        None => {}
    }
    if let Some(header) = &layout.header {
        let video = header.video.as_ref();
        let ours = video.is_some_and(|v| {
            v.handler == riff::MJPG
                && v.number == 0
                && v.super_index
                    .as_ref()
                    .is_some_and(|s| s.reserved == SUPER_INDEX_ENTRIES as u64)
        });
        if !ours {
            return Err(not_ours("its header describes another kind of stream"));
        }
    }
    match layout.riffs[0].movi {
        Some((movi, _)) if movi == FIRST_MOVI => Ok(()),
        Some(_) => Err(not_ours("its frames start elsewhere")),
        None if layout.end() <= HEADER_LEN => Ok(()),
        None => Err(not_ours("it has no LIST 'movi' where edgecam puts it")),
    }
}

/// What the report says about `layout`, the file as it is now.
struct Outcome {
    already_valid: bool,
    bytes_before: u64,
    bytes_dropped: u64,
    damaged_frames: u64,
    problems: Vec<String>,
}

fn report(layout: &Layout, path: &Path, fallback: FrameRate, outcome: Outcome) -> RepairReport {
    let video = layout.header.as_ref().and_then(|h| h.video.as_ref());
    RepairReport {
        path: path.to_owned(),
        already_valid: outcome.already_valid,
        frames: layout.frame_count(),
        width: video.and_then(|v| v.width).unwrap_or(0),
        height: video.and_then(|v| v.height).unwrap_or(0),
        frame_rate: video.map_or(fallback, |v| v.frame_rate),
        riff_segments: sat(layout.riffs.len() as u64),
        bytes_before: outcome.bytes_before,
        bytes_after: layout.len,
        bytes_dropped: outcome.bytes_dropped,
        damaged_frames: outcome.damaged_frames,
        problems: outcome.problems,
    }
}

/// The report for a file that needs no repair: one the reader accepts (in ours, frame chunks
/// that hold no JPEG are damage too).
fn valid(layout: &Layout, path: &Path, fallback: FrameRate) -> Option<RepairReport> {
    let damaged = layout.frames().any(|fr| !fr.jpeg);
    let is_valid = layout.problems.is_empty()
        && layout.header.is_some()
        && (!damaged || check_ours(layout, path).is_err());
    is_valid.then(|| {
        report(
            layout,
            path,
            fallback,
            Outcome {
                already_valid: true,
                bytes_before: layout.len,
                bytes_dropped: 0,
                damaged_frames: 0,
                problems: Vec::new(),
            },
        )
    })
}

pub(crate) fn repair_file<F: Read + AviFile>(
    f: &mut F,
    path: &Path,
    fallback: FrameRate,
) -> Result<RepairReport, ReadError> {
    let layout = parse::scan(f, path)?;
    if let Some(report) = valid(&layout, path, fallback) {
        return Ok(report);
    }
    check_ours(&layout, path)?;
    let unrepairable = |reason: String| ReadError::Unrepairable {
        path: path.to_owned(),
        reason,
    };

    // RIFFs after the first that keep no frame go; the last one left gets a new index at its
    // end, the ones before it (closed by the writer) get theirs rewritten in place.
    let mut riffs = layout.riffs.clone();
    while riffs.len() > 1
        && riffs
            .last()
            .is_some_and(|r| r.frames.iter().all(|f| !f.jpeg))
    {
        riffs.pop();
    }
    let Some((last, closed)) = riffs.split_last() else {
        return Err(unrepairable("it has no RIFF".into()));
    };
    // Where the kept part ends: after the last whole frame (its pad byte included, which
    // `set_len` adds back when the cut took it), or where the first frame would go.
    let end = last
        .frames
        .iter()
        .rev()
        .find(|f| f.jpeg)
        .map_or(last.movi.map_or(HEADER_LEN, |(m, _)| m + 12), |f| {
            f.chunk.end()
        });
    let dropped = layout.len.saturating_sub(end);

    let kept: Vec<&parse::FrameChunk> = riffs
        .iter()
        .flat_map(|r| r.frames.iter())
        .filter(|fr| fr.jpeg)
        .collect();
    let total = kept.len() as u64;
    let read_frame = |f: &mut F, c: &Chunk| -> Result<Vec<u8>, ReadError> {
        let mut src = parse::Src::new(f, path)?;
        src.read_vec(c.data(), u64::from(c.size).min(MAX_FRAME_BYTES as u64))
    };
    let (first, last_frame) = match (kept.first(), kept.last()) {
        (Some(a), Some(b)) => (
            Some(read_frame(f, &a.chunk)?),
            Some(read_frame(f, &b.chunk)?),
        ),
        _ => (None, None),
    };
    let size = first.as_deref().and_then(dimensions).unwrap_or((0, 0));
    let stamps = first
        .as_deref()
        .and_then(Stamp::find)
        .zip(last_frame.as_deref().and_then(Stamp::find));
    let old_rate = layout
        .header
        .as_ref()
        .and_then(|h| h.video.as_ref())
        .map(|v| v.frame_rate)
        .filter(|r| r.is_valid());
    let frame_rate = stamps
        .and_then(|(a, b)| FrameRate::measured(total, b.captured_at.since(a.captured_at)))
        .or(old_rate)
        .unwrap_or(fallback);
    let max_frame = kept.iter().map(|fr| fr.chunk.size).max().unwrap_or(0);

    let mut out = Out { f, path };
    // Damaged frames that stay in the file become JUNK.
    let mut blanked = 0;
    for fr in riffs.iter().flat_map(|r| r.frames.iter()) {
        if !fr.jpeg && fr.chunk.offset < end {
            out.write_at(fr.chunk.offset, &JUNK)?;
            blanked += 1;
        }
    }

    let mut super_index = Vec::with_capacity(riffs.len());
    let mut first_riff = None;
    for (i, r) in closed.iter().enumerate() {
        let (Some((movi, _)), Some(ix)) = (r.movi, r.ix.last().copied()) else {
            return Err(unrepairable(format!(
                "RIFF {} has no index chunk to rewrite",
                i + 1
            )));
        };
        let e = entries(r);
        let bytes = riff::ix00(movi + 8, &e);
        out.fill(&Slot::of(ix), &bytes, "ix00 index")?;
        super_index.push(SuperIndexEntry {
            offset: ix.offset,
            size: sat(bytes.len() as u64),
            duration: sat(e.len() as u64),
        });
        let movi_size = sat(ix.end() - movi - 8);
        let riff_size = sat(riffs[i + 1].start - r.start - 8);
        if i == 0 {
            let Some(idx1) = r.idx1 else {
                return Err(unrepairable("the first RIFF has no idx1 to rewrite".into()));
            };
            out.fill(&Slot::of(idx1), &riff::idx1(&e), "idx1 index")?;
            first_riff = Some((e.len() as u64, riff_size, movi_size));
        } else {
            out.write_at(r.start + 4, &riff_size.to_le_bytes())?;
            out.write_at(movi + 4, &movi_size.to_le_bytes())?;
        }
    }

    // The last RIFF: cut after its last whole frame, then append its index.
    let movi = last.movi.map_or(FIRST_MOVI, |(m, _)| m);
    let e = entries(last);
    let ix = riff::ix00(movi + 8, &e);
    let is_first = closed.is_empty();
    let mut tail = ix.clone();
    if is_first {
        tail.extend_from_slice(&riff::idx1(&e));
    }
    out.set_len(end)?;
    out.write_at(end, &tail)?;
    super_index.push(SuperIndexEntry {
        offset: end,
        size: sat(ix.len() as u64),
        duration: sat(e.len() as u64),
    });
    let movi_size = sat(end + ix.len() as u64 - movi - 8);
    let riff_size = sat(end + tail.len() as u64 - last.start - 8);
    if is_first {
        first_riff = Some((e.len() as u64, riff_size, movi_size));
    } else {
        out.write_at(last.start + 4, &riff_size.to_le_bytes())?;
        out.write_at(movi + 4, &movi_size.to_le_bytes())?;
    }
    if super_index.len() > SUPER_INDEX_ENTRIES {
        return Err(unrepairable(format!(
            "it has {} RIFFs, more than its header can index ({SUPER_INDEX_ENTRIES})",
            super_index.len()
        )));
    }

    let (first_riff_frames, riff_size, movi_size) = first_riff.unwrap_or((0, 0, 0));
    let header = riff::header(&HeaderFields {
        width: size.0,
        height: size.1,
        frame_rate,
        first_riff_frames,
        total_frames: total,
        max_frame,
        riff_size,
        movi_size,
        super_index: &super_index,
    });
    out.write_at(0, &header)?;
    out.f.sync_data().map_err(write_error(path))?;

    // Check the result as a reader would, so that a repair never claims more than it did.
    let after = parse::scan(out.f, path)?;
    if !after.problems.is_empty() {
        return Err(unrepairable(format!(
            "the rebuilt file still has problems: {}",
            after.problems.join("; ")
        )));
    }
    tracing::info!(
        path = %path.display(),
        frames = total,
        bytes_dropped = dropped,
        "repaired AVI file"
    );
    Ok(report(
        &after,
        path,
        fallback,
        Outcome {
            already_valid: false,
            bytes_before: layout.len,
            bytes_dropped: dropped,
            damaged_frames: blanked,
            problems: layout.problems,
        },
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::Cursor;
    use std::time::Duration;

    use edgecam_core::time::Timestamp;
    use proptest::prelude::*;

    use super::*;
    use crate::reader::AviReader;
    use crate::riff::RIFF_LIMIT;
    use crate::test_support::{T0, frames, jpeg};
    use crate::writer::AviWriter;

    const FALLBACK: FrameRate = FrameRate::per_second(25);

    fn repair_bytes(bytes: Vec<u8>) -> (Result<RepairReport, ReadError>, Vec<u8>) {
        let mut file = Cursor::new(bytes);
        let report = repair_file(&mut file, Path::new("cut.avi"), FALLBACK);
        (report, file.into_inner())
    }

    fn read_all(bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut reader = AviReader::new(Cursor::new(bytes.to_vec()), "x.avi").unwrap();
        reader.frames().collect::<Result<_, _>>().unwrap()
    }

    /// A recording as it is on disk when the recorder stops: finished, or killed after the
    /// last frame (with the header brought up to date every `flush_every` frames).
    fn recording(
        frames: &[(Vec<u8>, Timestamp)],
        limit: u64,
        finished: bool,
        flush_every: usize,
    ) -> Vec<u8> {
        let config = AviConfig::default().with_riff_limit_for_tests(limit);
        let mut w = AviWriter::new(Cursor::new(Vec::new()), config).unwrap();
        for (i, (j, t)) in frames.iter().enumerate() {
            w.write_frame(j, *t).unwrap();
            if (i + 1) % flush_every == 0 {
                w.flush_header().unwrap();
            }
        }
        if finished {
            w.finish().unwrap();
        }
        w.into_file().into_inner()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Cut anywhere: repair keeps exactly the frames whose chunk is wholly before the
        /// cut, the result reads back, and a second repair changes nothing.
        #[test]
        fn a_recording_cut_anywhere_keeps_every_whole_frame(
            spec in proptest::collection::vec((0usize..600, 0u64..80_000), 0..30),
            limit in prop_oneof![Just(RIFF_LIMIT), 1u64..2_000, HEADER_LEN..HEADER_LEN + 3_000],
            finished in any::<bool>(),
            flush_every in 1usize..10,
            cut in 0.0f64..=1.0,
        ) {
            let frames = frames(&spec);
            let bytes = recording(&frames, limit, finished, flush_every);
            let layout = parse::scan(&mut Cursor::new(&bytes), Path::new("x")).unwrap();
            let chunks: Vec<Chunk> = layout.frames().map(|f| f.chunk).collect();
            prop_assert_eq!(chunks.len(), frames.len());

            let cut = ((bytes.len() as f64 * cut) as usize).min(bytes.len());
            let whole = chunks.iter().filter(|c| c.data() + u64::from(c.size) <= cut as u64).count();
            let (report, repaired) = repair_bytes(bytes[..cut].to_vec());
            if cut < 12 {
                prop_assert!(matches!(report, Err(ReadError::NotAvi { .. })), "{:?}", report);
                return Ok(());
            }
            let report = report.unwrap();
            prop_assert_eq!(report.frames, whole as u64);
            // A finished file is valid; so is one cut right after its first RIFF was closed.
            if finished && cut == bytes.len() {
                prop_assert!(report.already_valid);
            }
            prop_assert_eq!(report.bytes_before, cut as u64);
            prop_assert_eq!(report.bytes_after, repaired.len() as u64);
            let expected: Vec<Vec<u8>> = frames[..whole].iter().map(|(j, _)| j.clone()).collect();
            prop_assert_eq!(read_all(&repaired), expected);
            if report.already_valid {
                prop_assert_eq!(&repaired[..], &bytes[..cut]);
            }
            if whole > 0 {
                prop_assert_eq!((report.width, report.height), (64, 48));
            }

            let (again, unchanged) = repair_bytes(repaired.clone());
            let again = again.unwrap();
            prop_assert!(again.already_valid);
            prop_assert_eq!(again.frames, whole as u64);
            prop_assert_eq!(unchanged, repaired);
        }

        /// Whatever the bytes, repair returns (an error or a file that reads back) and never
        /// panics or hangs.
        #[test]
        fn repairing_a_mangled_recording_never_panics(
            spec in proptest::collection::vec((0usize..300, 0u64..80_000), 0..12),
            limit in prop_oneof![Just(RIFF_LIMIT), 1u64..1_000],
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let mut bytes = recording(&frames(&spec), limit, true, 1);
            let len = bytes.len();
            for (at, value) in flips {
                bytes[at.index(len)] = value;
            }
            let (report, repaired) = repair_bytes(bytes);
            if report.is_ok() {
                AviReader::new(Cursor::new(repaired), "x.avi").unwrap();
            }
        }
    }

    #[test]
    fn zeros_left_in_a_frame_by_a_power_cut_are_blanked_and_the_rest_kept() {
        let frames = frames(&[(50, 40_000); 5]);
        let mut bytes = recording(&frames, RIFF_LIMIT, false, 100);
        let layout = parse::scan(&mut Cursor::new(&bytes), Path::new("x")).unwrap();
        let third = layout.frames().nth(2).unwrap().chunk;
        let data = third.data() as usize;
        bytes[data..data + third.size as usize].fill(0);

        let (report, repaired) = repair_bytes(bytes);
        let report = report.unwrap();
        assert_eq!((report.frames, report.damaged_frames), (4, 1));
        let expected: Vec<Vec<u8>> = [0, 1, 3, 4].iter().map(|&i| frames[i].0.clone()).collect();
        assert_eq!(read_all(&repaired), expected);
        let listing = crate::reader::listing(
            &parse::scan_listing(&mut Cursor::new(&repaired), Path::new("x")).unwrap(),
        );
        assert!(listing.contains("JUNK 77 bytes"), "{listing}");
    }

    #[test]
    fn the_rate_comes_from_edgecam_stamps_else_from_the_old_header() {
        // 10 frames 100 ms apart, killed before the header was ever updated (it says 25 fps).
        let stamped: Vec<(Vec<u8>, Timestamp)> = (0..10)
            .map(|seq| {
                let captured_at = T0 + Duration::from_millis(100 * seq);
                let mut j = jpeg(64, 48, 30, seq);
                Stamp { seq, captured_at }.insert_into(&mut j);
                (j, captured_at)
            })
            .collect();
        let bytes = recording(&stamped, RIFF_LIMIT, false, 100);
        let report = repair_bytes(bytes).0.unwrap();
        assert_eq!(report.frame_rate, FrameRate::per_second(10));

        // Without stamps, the rate of the last header update (after 4 frames) stays.
        let plain: Vec<(Vec<u8>, Timestamp)> = stamped
            .iter()
            .enumerate()
            .map(|(i, (_, t))| (jpeg(64, 48, 30, i as u64), *t))
            .collect();
        let bytes = recording(&plain, RIFF_LIMIT, false, 4);
        let report = repair_bytes(bytes).0.unwrap();
        assert_eq!(report.frame_rate, FrameRate::per_second(10));
        let bytes = recording(&plain, RIFF_LIMIT, false, 100);
        let report = repair_bytes(bytes).0.unwrap();
        assert_eq!(report.frame_rate, FALLBACK);
    }

    #[test]
    fn files_edgecam_did_not_write_are_left_alone() {
        let mut bytes = recording(&frames(&[(10, 0); 3]), RIFF_LIMIT, true, 1);
        // Another header size: as if another program wrote it. Then cut it.
        bytes[16] = bytes[16].wrapping_add(2);
        bytes.truncate(bytes.len() - 5);
        let before = bytes.clone();
        let (report, after) = repair_bytes(bytes);
        let err = report.unwrap_err();
        assert!(matches!(err, ReadError::NotOurs { .. }), "{err:?}");
        assert!(err.to_string().contains("leaves it alone"), "{err}");
        assert_eq!(after, before);

        let (report, _) = repair_bytes(b"RIFF\0\0\0\0WAVEfmt ".to_vec());
        assert!(
            matches!(report, Err(ReadError::NotAvi { .. })),
            "{report:?}"
        );
    }

    #[test]
    fn the_report_says_what_happened() {
        let bytes = recording(&frames(&[(100, 40_000); 6]), RIFF_LIMIT, false, 100);
        let cut = bytes.len() - 30;
        let mut file = Cursor::new(bytes[..cut].to_vec());
        let report = repair_file(&mut file, Path::new("rec.avi"), FALLBACK).unwrap();
        assert_eq!(
            report.to_string(),
            "repaired rec.avi (5 frames, 64x48, 25 fps, 1 RIFF segment): rebuilt the header and \
             indexes, dropped 106 bytes at the end (an incomplete frame or index); 17722 bytes \
             before, 17776 now"
        );
        let again = repair_file(&mut file, Path::new("rec.avi"), FALLBACK).unwrap();
        assert_eq!(
            again.to_string(),
            "rec.avi is a valid AVI file (5 frames, 64x48, 25 fps, 1 RIFF segment); left unchanged"
        );
    }
}
