//! [`repair`]: makes a recording that was cut off (killed, full disk, power loss) a valid AVI
//! file again, in place.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, SeekFrom};
use std::path::{Path, PathBuf};

use edgecam_core::jpeg::{Stamp, dimensions};

use crate::parse::{self, Chunk, Layout, ReadError};
use crate::riff::{
    self, FrameRate, HDRL_LEN, HeaderFields, IndexEntry, JUNK, MAX_FRAME_BYTES,
    SUPER_INDEX_ENTRIES, SuperIndexEntry,
};
use crate::salvage::{self, Kept};
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
    /// Bytes cut off the end: an incomplete frame, index or segment, or what followed the
    /// last whole frame.
    pub bytes_dropped: u64,
    /// Frame chunks that were whole but held no whole JPEG (zeros left by a power cut, say):
    /// turned into `JUNK` chunks, which players skip.
    pub damaged_frames: u64,
    /// Frames whose chunk header was damaged in one field (the id, or the size) and was
    /// written again: their JPEG was whole.
    pub recovered_frames: u64,
    /// Every range of the file that held no whole frame and is no longer part of the
    /// recording (covered by `JUNK`, by the rebuilt indexes, or cut off the end), in file
    /// order, with why. Old indexes that were rebuilt in place are not listed.
    pub dropped: Vec<DroppedRange>,
    /// What was wrong before; empty when the file was valid.
    pub problems: Vec<String>,
}

/// A range of a repaired file that held no whole frame: `start..end`, and what was there.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DroppedRange {
    pub start: u64,
    pub end: u64,
    pub what: String,
}

impl fmt::Display for DroppedRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bytes {}..{} ({} bytes: {})",
            self.start,
            self.end,
            self.end - self.start,
            self.what
        )
    }
}

/// Damaged ranges the summary line names one by one; past that it counts them.
const RANGES_SHOWN: usize = 8;

fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
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
        if self.recovered_frames > 0 {
            write!(
                f,
                ", wrote the damaged chunk headers of {} again",
                plural(self.recovered_frames, "frame", "frames")
            )?;
        }
        if self.damaged_frames > 0 {
            write!(
                f,
                ", blanked {}",
                plural(self.damaged_frames, "damaged frame", "damaged frames")
            )?;
        }
        // Where the file was cut: what follows went.
        let cut = self.bytes_before.saturating_sub(self.bytes_dropped);
        let inside: Vec<&DroppedRange> = self.dropped.iter().filter(|d| d.end <= cut).collect();
        if !inside.is_empty() {
            write!(
                f,
                ", dropped {} holding no whole frame:",
                plural(inside.len() as u64, "damaged range", "damaged ranges")
            )?;
            for (i, d) in inside.iter().take(RANGES_SHOWN).enumerate() {
                write!(f, "{} {d}", if i == 0 { "" } else { ";" })?;
            }
            if inside.len() > RANGES_SHOWN {
                write!(f, "; and {} more", inside.len() - RANGES_SHOWN)?;
            }
        }
        let mut at_end = self.dropped.iter().filter(|d| d.end > cut).peekable();
        if at_end.peek().is_some() {
            let what: Vec<&str> = at_end.map(|d| d.what.as_str()).collect();
            write!(
                f,
                ", cut off bytes {cut}..{} at the end ({} bytes: {})",
                self.bytes_before,
                self.bytes_dropped,
                what.join("; ")
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
/// Damage inside the file (a changed byte, a zeroed range) costs only the frames it touched:
/// after a chunk header that makes no sense, repair looks for the next chunk that holds a whole
/// JPEG (or the next RIFF or index) and goes on from there; the range between becomes `JUNK`.
/// A frame whose header is damaged in one field (its id, or a size that cannot be or is one
/// byte off) is kept with the header written again; a lost `RIFF 'AVIX'` header is written
/// again where the RIFF before it says it ended. The report lists every range dropped and why
/// ([`RepairReport::dropped`]). When repair cannot tell what the file is (the header, `LIST
/// 'hdrl'`, is damaged) or where to put an index, it refuses with an error and changes nothing.
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
}

/// A `JUNK` chunk header covering the `len` bytes from its start on (header included).
fn junk_header(len: u64) -> Option<[u8; 8]> {
    let size = u32::try_from(len.checked_sub(8)?).ok()?;
    let mut b = [0; 8];
    b[0..4].copy_from_slice(&JUNK);
    b[4..8].copy_from_slice(&size.to_le_bytes());
    Some(b)
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
    // What follows the header up to the first frame (LIST 'INFO', the LIST 'movi' header)
    // is fixed and written again with it, so damage there does not matter.
    Ok(())
}

/// What the report says about `layout`, the file as it is now.
struct Outcome {
    already_valid: bool,
    bytes_before: u64,
    bytes_dropped: u64,
    damaged_frames: u64,
    recovered_frames: u64,
    dropped: Vec<DroppedRange>,
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
        recovered_frames: outcome.recovered_frames,
        dropped: outcome.dropped,
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
                recovered_frames: 0,
                dropped: Vec::new(),
                problems: Vec::new(),
            },
        )
    })
}

/// Where one RIFF's frames, index and size fields go.
struct PlannedRiff {
    start: u64,
    movi: u64,
    /// Where its `ix00` goes, and the index chunks' bytes.
    index_at: u64,
    ix: Vec<u8>,
    idx1: Option<Vec<u8>>,
    /// Where the RIFF ends (the next one starts).
    end: u64,
    frames: u64,
    restore_header: bool,
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
    let mut found = {
        let mut src = parse::Src::new(f, path)?;
        salvage::salvage(&mut src, layout.riffs[0].size)?
    };
    let len = found.len;

    // RIFFs after the first that keep no frame go; the last one left gets a new index at its
    // end, the ones before it get theirs where their old one was (after their last frame).
    while found.segments.len() > 1 && found.segments.last().is_some_and(|g| g.frames.is_empty()) {
        found.segments.pop();
    }
    let segments = &found.segments;
    if segments.len() > SUPER_INDEX_ENTRIES {
        return Err(unrepairable(format!(
            "it has {} RIFFs, more than its header can index ({SUPER_INDEX_ENTRIES})",
            segments.len()
        )));
    }
    let Some(last) = segments.last() else {
        return Err(unrepairable("it has no RIFF".into()));
    };
    // Where the kept part ends: after the last whole frame (its pad byte included, which
    // `set_len` adds back when the cut took it), or where the first frame would go.
    let end = last.frames.last().map_or(last.movi + 12, |k| k.chunk.end());
    let dropped_at_end = len.saturating_sub(end);

    // Plan every write first, so that a file that cannot be repaired is left unchanged.
    let mut plans = Vec::with_capacity(segments.len());
    for (i, g) in segments.iter().enumerate() {
        let n = i + 1;
        let index_at = g.frames.last().map_or(g.movi + 12, |k| k.chunk.end());
        let movi_code = g.movi + 8;
        let entries = g
            .frames
            .iter()
            .map(|k| {
                // ix00 stores offset + 8: keep room for it.
                u32::try_from(k.chunk.offset - movi_code)
                    .ok()
                    .filter(|&o| o <= u32::MAX - 8)
                    .map(|offset| IndexEntry {
                        offset,
                        len: k.chunk.size,
                    })
            })
            .collect::<Option<Vec<IndexEntry>>>()
            .ok_or_else(|| {
                unrepairable(format!(
                    "RIFF {n} (at byte {}) would hold more than 4 GiB of frames",
                    g.start
                ))
            })?;
        let ix = riff::ix00(movi_code, &entries);
        let idx1 = (i == 0).then(|| riff::idx1(&entries));
        let needed = ix.len() as u64 + idx1.as_ref().map_or(0, |b| b.len() as u64);
        let riff_end = match segments.get(i + 1) {
            Some(next) => {
                let room = next.start.saturating_sub(index_at);
                if room != needed && room < needed + 8 {
                    return Err(unrepairable(format!(
                        "the index of RIFF {n} ({needed} bytes) does not fit between its last frame \
                         (byte {index_at}) and the next RIFF (byte {}): the damage took away where \
                         one RIFF ended and the next began; nothing was changed",
                        next.start
                    )));
                }
                next.start
            }
            None => index_at + needed,
        };
        plans.push(PlannedRiff {
            start: g.start,
            movi: g.movi,
            index_at,
            ix,
            idx1,
            end: riff_end,
            frames: g.frames.len() as u64,
            restore_header: g.restore_header,
        });
    }
    // The sizes in RIFF and LIST headers are 32 bits.
    let size32 = |v: u64, what: &str| {
        u32::try_from(v).map_err(|_| unrepairable(format!("{what} would be more than 4 GiB")))
    };
    let mut sizes = Vec::with_capacity(plans.len());
    for (i, p) in plans.iter().enumerate() {
        let movi_end = match &p.idx1 {
            Some(idx1) => p.end - idx1.len() as u64,
            None => p.end,
        };
        let riff_size = size32(p.end - p.start - 8, &format!("RIFF {}", i + 1))?;
        let movi_size = size32(
            movi_end - p.movi - 8,
            &format!("the frames of RIFF {}", i + 1),
        )?;
        sizes.push((riff_size, movi_size, movi_end));
    }

    // The ranges that held no whole frame: covered by JUNK where they stay in the file.
    // Those after a RIFF's last frame are overwritten by its index (and the header of the
    // RIFF that follows, when that is written again).
    let reserved_end = |at: u64| -> Option<u64> {
        let k = plans.partition_point(|p| p.start <= at).checked_sub(1)?;
        let p = &plans[k];
        if p.restore_header && at < p.start + 24 {
            return Some(p.start + 24);
        }
        if at < p.index_at {
            return None;
        }
        let next = plans.get(k + 1)?;
        Some(next.start + if next.restore_header { 24 } else { 0 })
    };
    let mut junk = Vec::new();
    let mut blanked = 0;
    let mut dropped = Vec::new();
    for d in &found.damage {
        if d.start >= end {
            // Cut off with the rest.
            dropped.push(DroppedRange {
                start: d.start,
                end: d.end,
                what: d.what.clone(),
            });
            continue;
        }
        let from = reserved_end(d.start).map_or(d.start, |r| r.max(d.start));
        if from < d.end {
            let header = junk_header(d.end - from).ok_or_else(|| {
                unrepairable(format!(
                    "the damaged range at bytes {}..{} is too large for a JUNK chunk",
                    d.start, d.end
                ))
            })?;
            // A blanked frame keeps its size (and pad byte): only its id changes.
            let header = if d.blank_frame && from == d.start {
                JUNK.to_vec()
            } else {
                header.to_vec()
            };
            junk.push((from, header));
            blanked += u64::from(d.blank_frame);
        }
        dropped.push(DroppedRange {
            start: d.start,
            end: d.end,
            what: d.what.clone(),
        });
    }
    // Where the pass stopped: what is left from there holds no whole frame. (What it passed
    // after the last frame, whole chunks such as the old indexes, is cut off too but not
    // listed: it is rebuilt.)
    if let Some((at, why)) = &found.stop {
        dropped.push(DroppedRange {
            start: (*at).max(end),
            end: len,
            what: why.clone(),
        });
    }
    // Old index chunks left among the frames (a RIFF start was lost) become JUNK.
    let stale: Vec<u64> = found
        .old_indexes
        .iter()
        .copied()
        .filter(|&at| at < end && reserved_end(at).is_none())
        .collect();

    let kept: Vec<Kept> = segments
        .iter()
        .flat_map(|g| g.frames.iter().copied())
        .collect();
    let total = kept.len() as u64;
    let recovered = kept.iter().filter(|k| k.fix_header).count() as u64;
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
    let max_frame = kept.iter().map(|k| k.chunk.size).max().unwrap_or(0);

    // Now write: frames' headers, JUNK, each closed RIFF's index and sizes, the last RIFF's
    // index at the new end, and the header.
    let mut out = Out { f, path };
    for k in kept.iter().filter(|k| k.fix_header) {
        out.write_at(k.chunk.offset, &riff::frame_header(k.chunk.size))?;
    }
    for (at, header) in &junk {
        out.write_at(*at, header)?;
    }
    for &at in &stale {
        out.write_at(at, &JUNK)?;
    }
    let (last_plan, closed) = plans
        .split_last()
        .ok_or_else(|| unrepairable("it has no RIFF".into()))?;
    let mut super_index = Vec::with_capacity(plans.len());
    for (i, p) in closed.iter().enumerate() {
        let (riff_size, movi_size, movi_end) = sizes[i];
        out.write_at(p.index_at, &p.ix)?;
        let filler_at = p.index_at + p.ix.len() as u64;
        if filler_at < movi_end {
            let header = junk_header(movi_end - filler_at)
                .ok_or_else(|| unrepairable(format!("no room for the index of RIFF {}", i + 1)))?;
            out.write_at(filler_at, &header)?;
        }
        if let Some(idx1) = &p.idx1 {
            out.write_at(movi_end, idx1)?;
        }
        write_riff_sizes(&mut out, p, riff_size, movi_size)?;
        super_index.push(SuperIndexEntry {
            offset: p.index_at,
            size: sat(p.ix.len() as u64),
            duration: sat(p.frames),
        });
    }
    let mut tail = last_plan.ix.clone();
    if let Some(idx1) = &last_plan.idx1 {
        tail.extend_from_slice(idx1);
    }
    out.set_len(end)?;
    out.write_at(end, &tail)?;
    let (riff_size, movi_size, _) = sizes[plans.len() - 1];
    write_riff_sizes(&mut out, last_plan, riff_size, movi_size)?;
    super_index.push(SuperIndexEntry {
        offset: end,
        size: sat(last_plan.ix.len() as u64),
        duration: sat(last_plan.frames),
    });

    let (first_riff_frames, riff_size, movi_size) = (plans[0].frames, sizes[0].0, sizes[0].1);
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
        bytes_dropped = dropped_at_end,
        damaged_ranges = dropped.len(),
        "repaired AVI file"
    );
    Ok(report(
        &after,
        path,
        fallback,
        Outcome {
            already_valid: false,
            bytes_before: len,
            bytes_dropped: dropped_at_end,
            damaged_frames: blanked,
            recovered_frames: recovered,
            dropped,
            problems: layout.problems,
        },
    ))
}

/// The size fields of a RIFF after the first (the first's are in the header), or its whole
/// 24-byte header when it was lost.
fn write_riff_sizes<F: AviFile>(
    out: &mut Out<'_, F>,
    p: &PlannedRiff,
    riff_size: u32,
    movi_size: u32,
) -> Result<(), ReadError> {
    if p.start == 0 {
        return Ok(());
    }
    if p.restore_header {
        return out.write_at(p.start, &riff::avix_start(riff_size, movi_size));
    }
    out.write_at(p.start + 4, &riff_size.to_le_bytes())?;
    out.write_at(p.movi + 4, &movi_size.to_le_bytes())
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
    use crate::riff::{HDRL_LEN, HEADER_LEN, RIFF_LIMIT};
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

    /// One way of damaging a recording.
    #[derive(Debug, Clone)]
    enum Damage {
        /// Sets the byte at `at` to `value`.
        Set { at: Spot, value: u8 },
        /// Zeroes `len` bytes from `at` on.
        Zero { at: Spot, len: usize },
        /// Cuts the file at `at`.
        Cut { at: Spot },
    }

    /// Where damage goes: anywhere, or near the start of a chunk (where the headers are).
    #[derive(Debug, Clone)]
    enum Spot {
        Anywhere(prop::sample::Index),
        NearChunk(prop::sample::Index, u64),
    }

    impl Spot {
        fn resolve(&self, len: usize, chunks: &[u64]) -> usize {
            match self {
                Spot::Anywhere(i) => i.index(len),
                Spot::NearChunk(i, d) => {
                    ((chunks[i.index(chunks.len())] + d) as usize).min(len - 1)
                }
            }
        }
    }

    fn spot() -> impl Strategy<Value = Spot> {
        prop_oneof![
            any::<prop::sample::Index>().prop_map(Spot::Anywhere),
            (any::<prop::sample::Index>(), 0u64..28).prop_map(|(i, d)| Spot::NearChunk(i, d)),
        ]
    }

    fn damage() -> impl Strategy<Value = Damage> {
        prop_oneof![
            4 => (spot(), any::<u8>()).prop_map(|(at, value)| Damage::Set { at, value }),
            3 => (spot(), 1usize..80).prop_map(|(at, len)| Damage::Zero { at, len }),
            1 => spot().prop_map(|at| Damage::Cut { at }),
        ]
    }

    /// Every chunk start (frames, indexes, RIFF and list headers) of a valid recording.
    fn chunk_starts(bytes: &[u8]) -> Vec<u64> {
        let layout = parse::scan_listing(&mut Cursor::new(bytes), Path::new("x")).unwrap();
        let mut starts: Vec<u64> = layout.items.list.iter().map(|i| i.offset).collect();
        starts.extend(layout.frames().map(|f| f.chunk.offset));
        starts.sort_unstable();
        starts
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Cuts, changed bytes and zeroed ranges anywhere: every frame whose chunk header and
        /// JPEG lie outside the damaged bytes is still there after repair, in order and byte
        /// for byte; what repair reports dropped holds none of them; and a second repair
        /// changes nothing. Repair may refuse (changing nothing) only when the damage reaches
        /// the header (LIST 'hdrl'), which says what kind of file it is, the headers of two
        /// further RIFFs, or when a damaged size swallows whole frames (see below).
        #[test]
        fn damage_anywhere_keeps_every_frame_it_did_not_touch(
            spec in proptest::collection::vec((0usize..300, 0u64..80_000), 1..16),
            limit in prop_oneof![Just(RIFF_LIMIT), 1u64..1_000, HEADER_LEN..HEADER_LEN + 2_000],
            finished in any::<bool>(),
            damages in proptest::collection::vec(damage(), 1..4),
        ) {
            let frames = frames(&spec);
            let original = recording(&frames, limit, finished, 1);
            let starts = chunk_starts(&original);
            let layout = parse::scan(&mut Cursor::new(&original), Path::new("x")).unwrap();
            let chunks: Vec<Chunk> = layout.frames().map(|f| f.chunk).collect();

            let mut bytes = original.clone();
            let mut hit = vec![false; bytes.len()];
            for d in &damages {
                let len = bytes.len();
                if len == 0 {
                    break;
                }
                match d {
                    Damage::Set { at, value } => {
                        let at = at.resolve(len, &starts);
                        bytes[at] = *value;
                        hit[at] = true;
                    }
                    Damage::Zero { at, len: n } => {
                        let at = at.resolve(len, &starts);
                        let end = (at + n).min(len);
                        bytes[at..end].fill(0);
                        hit[at..end].fill(true);
                    }
                    Damage::Cut { at } => {
                        let at = at.resolve(len, &starts);
                        bytes.truncate(at);
                        hit[at..].fill(true);
                    }
                }
            }
            let header_hit = hit[..(12 + HDRL_LEN) as usize].iter().any(|&h| h);
            // The 24-byte headers of the RIFFs after the first that the damage reached: with
            // one, the RIFF is found again where the one before it says it ends; with two
            // next to each other (the second's position lost with the first), repair may not
            // find room for an index and refuse.
            let riff_headers_hit = layout.riffs[1..]
                .iter()
                .filter(|r| hit[r.start as usize..r.start as usize + 24].iter().any(|&h| h))
                .count();
            // A frame whose damaged size now ends exactly where a later frame's JPEG ends
            // swallows the frames between: one chunk holding JPEG data from start to end,
            // which repair cannot tell from a larger frame without reading every frame's
            // bytes. Those frames are not required to survive.
            let mut swallowed = vec![false; chunks.len()];
            for (i, c) in chunks.iter().enumerate() {
                let at = c.offset as usize;
                if at + 8 > bytes.len() || !hit[at + 4..at + 8].iter().any(|&h| h) {
                    continue;
                }
                let size = u64::from(u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()));
                let end = c.data() + size;
                for (k, later) in chunks.iter().enumerate().skip(i + 1) {
                    if later.data() + u64::from(later.size) == end {
                        swallowed[i + 1..=k].fill(true);
                    }
                }
            }
            let untouched: Vec<usize> = (0..chunks.len())
                .filter(|&i| {
                    let c = chunks[i];
                    !swallowed[i]
                        && !hit[c.offset as usize..(c.data() + u64::from(c.size)) as usize]
                            .iter()
                            .any(|&h| h)
                })
                .collect();

            let damaged = bytes.clone();
            let (report, repaired) = repair_bytes(bytes);
            let report = match report {
                Ok(report) => report,
                Err(e) => {
                    prop_assert!(
                        header_hit || riff_headers_hit >= 2 || swallowed.contains(&true),
                        "refused though the header is whole: {}", e
                    );
                    prop_assert_eq!(repaired, damaged, "a refusal changed the file");
                    return Ok(());
                }
            };
            let read = read_all(&repaired);
            prop_assert_eq!(read.len() as u64, report.frames);
            // The untouched frames, in order, among what was kept.
            let mut kept = read.iter();
            for &i in &untouched {
                prop_assert!(
                    kept.any(|j| *j == frames[i].0),
                    "frame {} (at byte {}) was lost: {}",
                    i,
                    chunks[i].offset,
                    report
                );
            }
            for d in &report.dropped {
                for &i in &untouched {
                    let c = chunks[i];
                    prop_assert!(
                        d.end <= c.offset || d.start >= c.data() + u64::from(c.size),
                        "{} covers frame {}", d, i
                    );
                }
            }

            let (again, unchanged) = repair_bytes(repaired.clone());
            let again = again.unwrap();
            prop_assert!(again.already_valid, "{}", again);
            prop_assert_eq!(unchanged, repaired);
        }
    }

    /// A recording of 60 frames, 40 ms apart, finished.
    fn sixty_frames() -> (Vec<Vec<u8>>, Vec<u8>, Vec<Chunk>) {
        let frames = frames(&[(200, 40_000); 60]);
        let bytes = recording(&frames, RIFF_LIMIT, true, 1);
        let layout = parse::scan(&mut Cursor::new(&bytes), Path::new("x")).unwrap();
        let chunks = layout.frames().map(|f| f.chunk).collect();
        (frames.into_iter().map(|(j, _)| j).collect(), bytes, chunks)
    }

    #[test]
    fn a_damaged_frame_size_loses_no_frame() {
        let (frames, bytes, chunks) = sixty_frames();
        for frame in [0, 1, 30, 59] {
            let size_at = chunks[frame].offset as usize + 4;
            for size in [
                [0xFF, 0, 0, 0],
                [0; 4],
                [0xFF; 4],
                [0xE3, 0x01, 0, 0],
                [0x10, 0, 0, 0],
            ] {
                let mut damaged = bytes.clone();
                damaged[size_at..size_at + 4].copy_from_slice(&size);
                let (report, repaired) = repair_bytes(damaged);
                let report = report.unwrap();
                let read = read_all(&repaired);
                let differ: Vec<usize> =
                    (0..read.len()).filter(|&i| read[i] != frames[i]).collect();
                assert!(
                    read == frames,
                    "frame {frame}, size {size:?}: {} frames, {differ:?} differ: {report}",
                    read.len()
                );
                assert_eq!(report.recovered_frames, 1, "{report}");
                assert!(report.dropped.is_empty(), "{report}");
            }
        }
    }

    #[test]
    fn a_damaged_frame_id_loses_no_frame() {
        let (frames, bytes, chunks) = sixty_frames();
        let mut damaged = bytes.clone();
        damaged[chunks[5].offset as usize] = 0x80;
        let (report, repaired) = repair_bytes(damaged);
        let report = report.unwrap();
        assert_eq!(read_all(&repaired), frames);
        assert_eq!(report.recovered_frames, 1);
        assert!(
            report
                .to_string()
                .contains("wrote the damaged chunk headers of 1 frame again")
        );
    }

    #[test]
    fn a_damaged_info_list_size_is_written_again_with_the_header() {
        let (frames, bytes, _) = sixty_frames();
        let info_size = (12 + HDRL_LEN + 4) as usize;
        for size in [[0xFF; 4], [0; 4], [0x10, 0, 0, 0]] {
            let mut damaged = bytes.clone();
            damaged[info_size..info_size + 4].copy_from_slice(&size);
            let (report, repaired) = repair_bytes(damaged);
            let report = report.unwrap();
            assert_eq!(read_all(&repaired), frames, "{report}");
            assert_eq!(repaired, bytes);
        }
    }

    #[test]
    fn a_damaged_range_costs_only_the_frames_in_it_and_the_report_says_which_bytes() {
        let (frames, bytes, chunks) = sixty_frames();
        let mut damaged = bytes.clone();
        // From inside frame 10's JPEG to inside frame 12's: 11 and 12's headers are gone.
        let from = chunks[10].data() + 100;
        let to = chunks[12].data() + 2;
        damaged[from as usize..to as usize].fill(0);
        let (report, repaired) = repair_bytes(damaged);
        let report = report.unwrap();
        let expected: Vec<Vec<u8>> = (0..60)
            .filter(|i| ![10, 11, 12].contains(i))
            .map(|i| frames[i].clone())
            .collect();
        let read = read_all(&repaired);
        assert!(read == expected, "{} frames: {report}", read.len());
        assert_eq!(report.damaged_frames, 0);
        assert_eq!(
            report.dropped,
            vec![DroppedRange {
                start: chunks[10].offset,
                end: chunks[13].offset,
                what: "a 00dc chunk of 227 bytes that holds no whole JPEG and is not followed by \
                       another chunk"
                    .into(),
            }]
        );
        let text = report.to_string();
        assert!(
            text.contains(&format!(
                "dropped 1 damaged range holding no whole frame: bytes {}..{} (708 bytes: a 00dc \
                 chunk of 227 bytes",
                chunks[10].offset, chunks[13].offset
            )),
            "{text}"
        );
    }

    #[test]
    fn an_unreadable_header_is_refused_and_the_file_left_unchanged() {
        let (_, bytes, _) = sixty_frames();
        // The stream header's handler: not MJPG any more.
        let strh = bytes.windows(4).position(|w| w == b"strh").unwrap();
        let mut damaged = bytes.clone();
        damaged[strh + 12] = b'X';
        // And a frame cut off at the end, so the file is not valid.
        damaged.truncate(damaged.len() - 100);
        let before = damaged.clone();
        let (report, after) = repair_bytes(damaged);
        assert!(
            matches!(report, Err(ReadError::NotOurs { .. })),
            "{report:?}"
        );
        assert_eq!(after, before);
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
             indexes, cut off bytes 17616..17722 at the end (106 bytes: the file ends inside a \
             00dc chunk of 127 bytes); 17722 bytes before, 17776 now"
        );
        let again = repair_file(&mut file, Path::new("rec.avi"), FALLBACK).unwrap();
        assert_eq!(
            again.to_string(),
            "rec.avi is a valid AVI file (5 frames, 64x48, 25 fps, 1 RIFF segment); left unchanged"
        );
    }
}
