//! [`AviWriter`]: the synchronous core of the AVI recorder. It writes JPEG frames, unchanged,
//! into an MJPEG AVI file with OpenDML indexes, over any [`AviFile`] (a real file, memory, or a
//! test double that fails on cue).

use std::fs::File;
use std::io::{self, Cursor, Seek, SeekFrom, Write};
use std::time::Duration;

use edgecam_core::jpeg::{PictureError, PictureLimit, is_jpeg};
use edgecam_core::time::Timestamp;
use thiserror::Error;

use crate::riff::{
    self, FIRST_MOVI, FrameRate, HEADER_LEN, HeaderFields, IndexEntry, MAX_FRAME_BYTES,
    MAX_RIFF_FRAMES, RIFF_LIMIT, SUPER_INDEX_ENTRIES, SuperIndexEntry,
};

/// What [`AviWriter`] needs of a file: writing, seeking back to patch the header, truncating
/// (to cut off a frame whose write failed) and syncing.
///
/// Implemented for [`std::fs::File`] and for `Cursor<Vec<u8>>` (a file in memory, for tests
/// and benchmarks).
pub trait AviFile: Write + Seek {
    /// Makes the file exactly `len` bytes long (like [`File::set_len`]).
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// Makes the data written so far durable (like [`File::sync_data`]).
    fn sync_data(&mut self) -> io::Result<()>;
}

impl AviFile for File {
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        File::sync_data(self)
    }
}

impl AviFile for Cursor<Vec<u8>> {
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(io::Error::other)?;
        self.get_mut().resize(len, 0);
        Ok(())
    }
    fn sync_data(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How an AVI recording is written.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AviConfig {
    /// The frame rate put in the header when it cannot be measured: fewer than two frames,
    /// or all captured at the same instant. Default 25 fps.
    pub fallback_frame_rate: FrameRate,
    /// How often [`AviRecorder`](crate::AviRecorder) brings the header up to date and asks
    /// the OS to put the data on disk (fdatasync). Default one second.
    pub sync_interval: Duration,
    /// Frames claiming a larger picture are refused ([`AviError::PictureTooLarge`]), so that
    /// no such size reaches the header. Default 8192x8192.
    pub max_picture: PictureLimit,
    /// RIFFs are closed before they reach this size. Only tests change it.
    pub(crate) riff_limit: u64,
}

impl Default for AviConfig {
    fn default() -> Self {
        AviConfig {
            fallback_frame_rate: FrameRate::per_second(25),
            sync_interval: Duration::from_secs(1),
            max_picture: PictureLimit::default(),
            riff_limit: RIFF_LIMIT,
        }
    }
}

impl AviConfig {
    /// Refuses frames that claim a picture larger than `limit`.
    pub fn with_max_picture(mut self, limit: PictureLimit) -> Self {
        self.max_picture = limit;
        self
    }

    /// Closes each RIFF before it reaches `bytes` instead of 1 GiB, so that tests exercise
    /// the OpenDML (multi-RIFF) layout with small files. Not for recordings: each RIFF holds
    /// at least one frame, and a file holds at most 1024 RIFFs.
    #[doc(hidden)]
    pub fn with_riff_limit_for_tests(mut self, bytes: u64) -> Self {
        self.riff_limit = bytes.clamp(1, RIFF_LIMIT);
        self
    }
}

/// Why [`AviWriter`] did not do what it was asked. After a frame is refused or fails, the file
/// still ends with the last frame that was written whole, and recording can go on.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AviError {
    #[error(
        "the frame is not a whole JPEG (it must start with FF D8 and end with FF D9); it was not recorded"
    )]
    NotJpeg,
    #[error(
        "the JPEG has no start-of-frame marker, so its picture size is unknown; it was not recorded"
    )]
    NoPictureSize,
    /// The SOF claims more than [`AviConfig::max_picture`]: a hostile or broken JPEG, whose
    /// size must not become the file's.
    #[error("{0}; it was not recorded")]
    PictureTooLarge(PictureError),
    #[error(
        "the frame is {}x{} but this file's frames are {}x{}; an AVI file holds one picture size, \
         so record into a new file (recording in segments does so by itself); the frame was not recorded",
        found.0, found.1, expected.0, expected.1
    )]
    SizeChanged {
        expected: (u32, u32),
        found: (u32, u32),
    },
    #[error(
        "the frame is {len} bytes, more than the {MAX_FRAME_BYTES} bytes an AVI recording accepts; it was not recorded"
    )]
    FrameTooLarge { len: usize },
    #[error(
        "the file holds as much as one AVI file can index ({SUPER_INDEX_ENTRIES} RIFF segments of up to 1 GiB \
         or {MAX_RIFF_FRAMES} frames each); \
         record into a new file, for example in segments (--segment-size)"
    )]
    Full,
    #[error("the recording was already finished")]
    Finished,
    #[error(
        "an earlier write error left the end of the file in an unknown state, so no more frames are \
         written; finish the recording, then repair the file"
    )]
    Broken,
    #[error("{action} failed")]
    Io {
        action: &'static str,
        #[source]
        source: io::Error,
    },
    #[error(
        "{action} failed; the frames written so far are on disk: free some space or fix the disk, \
         then repair the file"
    )]
    Unfinished {
        action: &'static str,
        #[source]
        source: io::Error,
    },
}

impl AviError {
    /// The I/O error behind this one, if any.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            AviError::Io { source, .. } | AviError::Unfinished { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// What a finished AVI file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AviSummary {
    /// Frames in the file.
    pub frames: u64,
    /// Their JPEG bytes, without the container's.
    pub frame_bytes: u64,
    /// The file's size.
    pub file_bytes: u64,
    /// The picture size, from the first frame's JPEG (0x0 when there is no frame).
    pub width: u32,
    pub height: u32,
    /// The rate in the header: measured from the first and last frames' capture times, or
    /// [`AviConfig::fallback_frame_rate`].
    pub frame_rate: FrameRate,
    /// RIFF segments (1 up to 1 GiB, one more for each further GiB or so, or for each further
    /// 65536 frames when frames are tiny).
    pub riff_segments: u32,
    /// Frames that were written but had to be cut off again at the end, because the disk
    /// was full and the index did not fit otherwise. Not counted in `frames`.
    pub dropped_frames: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// A write failed and the end of the file could not be cut back to the last whole frame.
    Broken,
    Finished,
}

/// The RIFF that frames are going into.
#[derive(Debug)]
struct OpenRiff {
    /// Where its `RIFF` header is.
    start: u64,
    /// Where its `LIST 'movi'` is.
    movi: u64,
    entries: Vec<IndexEntry>,
    /// The capture time of each frame in `entries`, for the rate if trailing ones are dropped.
    times: Vec<Timestamp>,
}

impl OpenRiff {
    fn is_first(&self) -> bool {
        self.start == 0
    }
    /// The position of the `movi` code that index offsets count from.
    fn movi_code(&self) -> u64 {
        self.movi + 8
    }
    /// The bytes its index chunks take with `frames` frames.
    fn index_len(&self, frames: usize) -> u64 {
        riff::ix_len(frames)
            + if self.is_first() {
                riff::idx1_len(frames)
            } else {
                0
            }
    }
    /// Where frame `i`'s chunk ends, pad byte included.
    fn frame_end(&self, i: usize) -> u64 {
        let e = self.entries[i];
        self.movi_code() + u64::from(e.offset) + riff::chunk_len(u64::from(e.len))
    }
    /// Where the frames end (right after the `movi` code when there is none).
    fn frames_end(&self) -> u64 {
        match self.entries.len() {
            0 => self.movi_code() + 4,
            n => self.frame_end(n - 1),
        }
    }
}

/// Writes an MJPEG AVI file: each frame's JPEG bytes go, unchanged, into a `00dc` chunk.
///
/// - [`new`](Self::new) writes the whole header at once, so that even a file cut off right
///   away is recognisable. The header has a fixed size and is rewritten in place when the
///   first frame gives the picture size, by [`flush_header`](Self::flush_header), and at
///   [`finish`](Self::finish).
/// - [`write_frame`](Self::write_frame) writes one chunk straight to the file (no buffering
///   here: each frame reaches the OS before the call returns). A frame that is refused
///   (not a JPEG, another picture size, ...) writes nothing; a frame whose write fails is cut
///   off again, so the file always ends with a whole frame.
/// - Past about 1 GiB (or 65536 frames) the writer closes the RIFF (writing its `ix00` index, and `idx1` for the
///   first) and opens a `RIFF 'AVIX'`: the OpenDML layout that ffmpeg also writes, readable
///   well past 4 GiB.
/// - [`finish`](Self::finish) writes the last index, the final header, and syncs. On a full
///   disk it drops as few trailing frames as needed for the index to fit and reports how
///   many in [`AviSummary::dropped_frames`].
///
/// Nothing is synced before `finish` unless [`sync`](Self::sync) is called: the caller
/// decides how often (the async [`AviRecorder`](crate::AviRecorder) does about once a second).
/// A file cut off at any point is put right by [`repair`](crate::repair).
#[derive(Debug)]
pub struct AviWriter<F: AviFile> {
    file: F,
    config: AviConfig,
    state: State,
    /// The end of the file, where the next byte goes. The file's cursor stays here.
    pos: u64,
    size: Option<(u32, u32)>,
    first_at: Option<Timestamp>,
    last_at: Option<Timestamp>,
    frames: u64,
    frame_bytes: u64,
    max_frame: u32,
    /// The index entries of the RIFFs already closed.
    closed: Vec<SuperIndexEntry>,
    /// The first RIFF's frame count and its RIFF and `movi` sizes, once it is closed.
    first_riff: Option<(u64, u32, u32)>,
    /// `None` after a RIFF was closed, until the next frame opens one.
    open: Option<OpenRiff>,
    /// The capture time of the last frame in a closed RIFF.
    last_closed_at: Option<Timestamp>,
    dropped_frames: u64,
}

fn io_err(action: &'static str) -> impl FnOnce(io::Error) -> AviError {
    move |source| AviError::Io { action, source }
}

fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded | io::ErrorKind::FileTooLarge
    )
}

impl<F: AviFile> AviWriter<F> {
    /// Starts a recording in `file`, which is emptied first, and writes the header.
    pub fn new(mut file: F, config: AviConfig) -> Result<Self, AviError> {
        let prepare = |file: &mut F| -> io::Result<()> {
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            Ok(())
        };
        prepare(&mut file).map_err(io_err("emptying the file"))?;
        let mut writer = AviWriter {
            file,
            config,
            state: State::Open,
            pos: 0,
            size: None,
            first_at: None,
            last_at: None,
            frames: 0,
            frame_bytes: 0,
            max_frame: 0,
            closed: Vec::new(),
            first_riff: None,
            open: Some(OpenRiff {
                start: 0,
                movi: FIRST_MOVI,
                entries: Vec::new(),
                times: Vec::new(),
            }),
            last_closed_at: None,
            dropped_frames: 0,
        };
        let header = writer.header_bytes();
        if let Err((source, _)) = writer.append(&header) {
            return Err(AviError::Io {
                action: "writing the AVI header",
                source,
            });
        }
        Ok(writer)
    }

    /// The per-frame state held in memory now: the index entries (and capture times) of the
    /// RIFF being written. Never more than [`MAX_RIFF_FRAMES`].
    #[cfg(test)]
    pub(crate) fn entries_held(&self) -> usize {
        self.open
            .as_ref()
            .map_or(0, |o| o.entries.capacity().max(o.times.capacity()))
    }

    /// Frames written so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The file's size so far.
    pub fn file_bytes(&self) -> u64 {
        self.pos
    }

    /// The file, for instance to read back a recording made in memory.
    pub fn file(&self) -> &F {
        &self.file
    }

    /// Gives the file back. Call [`finish`](Self::finish) first, or the file has no index.
    pub fn into_file(self) -> F {
        self.file
    }

    /// The frame rate the header states now: measured, or the fallback.
    pub fn frame_rate(&self) -> FrameRate {
        match (self.first_at, self.last_at) {
            (Some(first), Some(last)) => FrameRate::measured(self.frames, last.since(first)),
            _ => None,
        }
        .unwrap_or(self.config.fallback_frame_rate)
    }

    /// Appends one frame: `jpeg` exactly as received, captured at `captured_at` (which only
    /// serves to measure the frame rate).
    ///
    /// Refused, with nothing written: a payload that is not a whole JPEG, one without a
    /// start-of-frame marker (or with a side of 0), one claiming a picture larger than
    /// [`AviConfig::max_picture`], one with another picture size than the first frame's
    /// ([`AviError::SizeChanged`]: an AVI file has one picture size), one over
    /// [`MAX_FRAME_BYTES`], and any frame once the file reached the OpenDML limit. When the
    /// write itself fails (full disk, ...), the partial chunk is cut off again and the error
    /// is returned; recording may go on, or be finished.
    pub fn write_frame(&mut self, jpeg: &[u8], captured_at: Timestamp) -> Result<(), AviError> {
        match self.state {
            State::Open => {}
            State::Broken => return Err(AviError::Broken),
            State::Finished => return Err(AviError::Finished),
        }
        if !is_jpeg(jpeg) {
            return Err(AviError::NotJpeg);
        }
        let found = self.config.max_picture.check(jpeg).map_err(|e| match e {
            PictureError::NoSize => AviError::NoPictureSize,
            too_large @ PictureError::TooLarge { .. } => AviError::PictureTooLarge(too_large),
        })?;
        if let Some(expected) = self.size
            && expected != found
        {
            return Err(AviError::SizeChanged { expected, found });
        }
        if jpeg.len() > MAX_FRAME_BYTES {
            return Err(AviError::FrameTooLarge { len: jpeg.len() });
        }
        let len =
            u32::try_from(jpeg.len()).map_err(|_| AviError::FrameTooLarge { len: jpeg.len() })?;
        let chunk = riff::chunk_len(u64::from(len));

        // Close the RIFF first when this frame and the index would take it past the limit, or
        // when it holds as many frames as a RIFF may (which bounds the entries kept in memory).
        // Should the frame then fail, the RIFF is opened again: a failed frame leaves no trace.
        let mut closed = None;
        if let Some(open) = &self.open
            && !open.entries.is_empty()
            && (open.entries.len() >= MAX_RIFF_FRAMES
                || self.pos + chunk + open.index_len(open.entries.len() + 1) - open.start
                    > self.config.riff_limit)
        {
            if self.closed.len() + 2 > SUPER_INDEX_ENTRIES {
                return Err(AviError::Full);
            }
            let last_closed_at = self.last_closed_at;
            closed = self
                .close_riff()
                .map_err(|(source, _)| AviError::Io {
                    action: "writing the index at the end of a 1 GiB segment",
                    source,
                })?
                .map(|riff| (riff, last_closed_at));
        }
        let result = self.write_chunk(jpeg, len, found);
        if result.is_err()
            && let Some((riff, last_closed_at)) = closed
        {
            self.reopen(riff, last_closed_at);
        }
        let start = result?;
        let Some(open) = self.open.as_mut() else {
            // write_chunk opened one if needed.
            return Err(AviError::Broken);
        };
        let offset = u32::try_from(start - open.movi_code()).map_err(|_| AviError::Full)?;
        open.entries.push(IndexEntry { offset, len });
        open.times.push(captured_at);
        self.frames += 1;
        self.frame_bytes += u64::from(len);
        self.max_frame = self.max_frame.max(len);
        self.first_at.get_or_insert(captured_at);
        self.last_at = Some(captured_at);
        Ok(())
    }

    /// Writes a frame's chunk at the end, opening a RIFF first if none is open, and says where
    /// it starts. On failure the file is cut back to where it ended.
    fn write_chunk(&mut self, jpeg: &[u8], len: u32, size: (u32, u32)) -> Result<u64, AviError> {
        let start = self.pos;
        let opened = self.open.is_none();
        if opened {
            self.start_riff()?;
        }
        let undo = |w: &mut Self| {
            w.restore(start);
            if opened {
                w.open = None;
            }
        };
        if self.size.is_none() {
            self.size = Some(size);
            if let Err(e) = self.rewrite_header() {
                self.size = None;
                undo(self);
                return Err(e);
            }
        }
        let chunk_start = self.pos;
        let write = |w: &mut Self| -> Result<(), (io::Error, u64)> {
            w.append(&riff::frame_header(len))?;
            w.append(jpeg)?;
            if len % 2 == 1 {
                w.append(&[0])?;
            }
            Ok(())
        };
        if let Err((source, _)) = write(self) {
            if self.frames == 0 {
                self.size = None;
            }
            undo(self);
            return Err(AviError::Io {
                action: "writing a frame",
                source,
            });
        }
        Ok(chunk_start)
    }

    /// Undoes `close_riff` after the frame that caused it failed: `riff` is open again, the
    /// index written after it cut off.
    fn reopen(&mut self, riff: OpenRiff, last_closed_at: Option<Timestamp>) {
        let end = riff.frames_end();
        self.closed.pop();
        if riff.is_first() {
            self.first_riff = None;
        }
        self.last_closed_at = last_closed_at;
        self.open = Some(riff);
        self.restore(end);
    }

    /// Brings the header (frame counts, rate, RIFF sizes) up to date in place, so that a file
    /// cut off later plays up to here even before it is repaired. Does not sync.
    pub fn flush_header(&mut self) -> Result<(), AviError> {
        match self.state {
            State::Open => {}
            State::Broken => return Err(AviError::Broken),
            State::Finished => return Err(AviError::Finished),
        }
        self.rewrite_header()?;
        if let Some(open) = &self.open
            && !open.is_first()
        {
            let (start, movi) = (open.start, open.movi);
            let riff_size = saturate(self.pos - start - 8);
            let movi_size = saturate(self.pos - movi - 8);
            self.write_at(start + 4, &riff_size.to_le_bytes())
                .and_then(|()| self.write_at(movi + 4, &movi_size.to_le_bytes()))
                .map_err(io_err("updating the segment sizes"))?;
        }
        Ok(())
    }

    /// [`flush_header`](Self::flush_header), then puts the data on disk (fdatasync).
    pub fn sync(&mut self) -> Result<(), AviError> {
        self.flush_header()?;
        self.file
            .sync_data()
            .map_err(io_err("syncing the file to disk"))
    }

    /// Completes the file: the last RIFF's index, the final header (frame counts, the
    /// measured rate), and a sync. Afterwards every call returns [`AviError::Finished`].
    ///
    /// When the index does not fit on a full disk, trailing frames are cut off, as few as
    /// needed (reported in [`AviSummary::dropped_frames`]). When the file cannot be completed
    /// at all, the error says so; the frames are still on disk for
    /// [`repair`](crate::repair).
    pub fn finish(&mut self) -> Result<AviSummary, AviError> {
        match self.state {
            State::Open => {}
            State::Finished => return Err(AviError::Finished),
            State::Broken => {
                // One more try at cutting the file back to its last whole frame.
                let end = self.open.as_ref().map_or(self.pos, OpenRiff::frames_end);
                self.restore(end);
                if self.state == State::Broken {
                    return Err(AviError::Broken);
                }
            }
        }
        self.close_last_riff()?;
        self.rewrite_header().map_err(|e| match e {
            AviError::Io { source, .. } => AviError::Unfinished {
                action: "writing the final header",
                source,
            },
            other => other,
        })?;
        self.file
            .sync_data()
            .map_err(|source| AviError::Unfinished {
                action: "syncing the file to disk",
                source,
            })?;
        self.state = State::Finished;
        let (width, height) = self.size.unwrap_or((0, 0));
        Ok(AviSummary {
            frames: self.frames,
            frame_bytes: self.frame_bytes,
            file_bytes: self.pos,
            width,
            height,
            frame_rate: self.frame_rate(),
            riff_segments: saturate(self.closed.len() as u64),
            dropped_frames: self.dropped_frames,
        })
    }

    /// Closes the RIFF still open at `finish`; on a full disk, drops trailing frames until its
    /// index fits.
    fn close_last_riff(&mut self) -> Result<(), AviError> {
        // Each round drops at least one more frame, so this ends.
        loop {
            let Some(open) = &self.open else {
                return Ok(());
            };
            let frames_end = open.frames_end();
            let Err((source, written)) = self.close_riff() else {
                return Ok(());
            };
            if !is_disk_full(&source) {
                return Err(AviError::Unfinished {
                    action: "writing the index",
                    source,
                });
            }
            let Some(open) = &self.open else {
                return Err(AviError::Broken);
            };
            // `written` bytes did fit past the frames; find the fewest frames to drop so that
            // what they free, plus that, holds the smaller index.
            let n = open.entries.len();
            let mut drop = 1;
            while drop < n
                && open.index_len(n - drop) > written + (frames_end - open.frame_end(n - drop - 1))
            {
                drop += 1;
            }
            if drop >= n && !open.is_first() {
                // No frame of this RIFF can stay: remove the RIFF, the one before it is whole.
                let start = open.start;
                self.drop_trailing(n);
                self.restore(start);
                self.open = None;
                if self.state == State::Broken {
                    return Err(AviError::Unfinished {
                        action: "cutting off the last segment to make room for the index",
                        source,
                    });
                }
                return Ok(());
            }
            if n == 0 {
                return Err(AviError::Unfinished {
                    action: "writing the index (the disk is full even with no frame in the file)",
                    source,
                });
            }
            let drop = drop.min(n);
            self.drop_trailing(drop);
            let end = self.open.as_ref().map_or(self.pos, OpenRiff::frames_end);
            self.restore(end);
            if self.state == State::Broken {
                return Err(AviError::Unfinished {
                    action: "cutting off frames to make room for the index",
                    source,
                });
            }
            tracing::debug!(
                dropped = drop,
                "disk full: dropped the last frames so that the index fits"
            );
        }
    }

    /// Forgets the last `n` frames of the open RIFF (the caller cuts the file).
    fn drop_trailing(&mut self, n: usize) {
        let Some(open) = self.open.as_mut() else {
            return;
        };
        for _ in 0..n {
            if let Some(e) = open.entries.pop() {
                open.times.pop();
                self.frames -= 1;
                self.frame_bytes -= u64::from(e.len);
                self.dropped_frames += 1;
            }
        }
        self.last_at = open.times.last().copied().or(self.last_closed_at);
        if self.frames == 0 {
            self.first_at = None;
            self.last_at = None;
        }
    }

    /// Writes the open RIFF's index (`ix00`, and `idx1` for the first RIFF) after its frames
    /// and sets its sizes. On failure the file is cut back to the end of the frames, and the
    /// error comes with how many bytes did get written past them.
    fn close_riff(&mut self) -> Result<Option<OpenRiff>, (io::Error, u64)> {
        let Some(open) = self.open.as_ref() else {
            return Ok(None);
        };
        let frames_end = open.frames_end();
        debug_assert_eq!(frames_end, self.pos);
        let ix = riff::ix00(open.movi_code(), &open.entries);
        let idx1 = open.is_first().then(|| riff::idx1(&open.entries));
        let entry = SuperIndexEntry {
            offset: frames_end,
            size: saturate(ix.len() as u64),
            duration: saturate(open.entries.len() as u64),
        };
        let (start, movi, first, frames) =
            (open.start, open.movi, open.is_first(), open.entries.len());

        let result = (|| -> Result<(), (io::Error, u64)> {
            self.append(&ix)?;
            let movi_size = saturate(self.pos - movi - 8);
            if let Some(idx1) = &idx1 {
                self.append(idx1)
                    .map_err(|(e, n)| (e, n + ix.len() as u64))?;
            }
            let riff_size = saturate(self.pos - start - 8);
            let written = self.pos - frames_end;
            self.closed.push(entry);
            if first {
                self.first_riff = Some((frames as u64, riff_size, movi_size));
                self.rewrite_header().map_err(|e| match e {
                    AviError::Io { source, .. } => (source, written),
                    other => (io::Error::other(other), written),
                })?;
            } else {
                self.write_at(start + 4, &riff_size.to_le_bytes())
                    .and_then(|()| self.write_at(movi + 4, &movi_size.to_le_bytes()))
                    .map_err(|e| (e, written))?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => {
                let closed = self.open.take();
                if let Some(&last) = closed.as_ref().and_then(|r| r.times.last()) {
                    self.last_closed_at = Some(last);
                }
                tracing::debug!(
                    frames,
                    end = self.pos,
                    "closed RIFF {} of the AVI file",
                    self.closed.len()
                );
                Ok(closed)
            }
            Err(e) => {
                if self.closed.last() == Some(&entry) {
                    self.closed.pop();
                }
                if first {
                    self.first_riff = None;
                }
                self.restore(frames_end);
                Err(e)
            }
        }
    }

    /// Opens a `RIFF 'AVIX'` at the end of the file.
    fn start_riff(&mut self) -> Result<(), AviError> {
        let start = self.pos;
        if let Err((source, _)) = self.append(&riff::avix_start(16, 4)) {
            self.restore(start);
            return Err(AviError::Io {
                action: "starting a new 1 GiB segment",
                source,
            });
        }
        self.open = Some(OpenRiff {
            start,
            movi: start + 12,
            entries: Vec::new(),
            times: Vec::new(),
        });
        Ok(())
    }

    fn header_bytes(&self) -> Vec<u8> {
        let (width, height) = self.size.unwrap_or((0, 0));
        let (first_riff_frames, riff_size, movi_size) = match (self.first_riff, &self.open) {
            (Some(closed), _) => closed,
            // The first RIFF is still open: sizes as of now.
            (None, Some(open)) => (
                open.entries.len() as u64,
                saturate(self.pos.max(HEADER_LEN) - 8),
                saturate(self.pos.max(HEADER_LEN) - FIRST_MOVI - 8),
            ),
            (None, None) => (0, saturate(HEADER_LEN - 8), 4),
        };
        riff::header(&HeaderFields {
            width,
            height,
            frame_rate: self.frame_rate(),
            first_riff_frames,
            total_frames: self.frames,
            max_frame: self.max_frame,
            riff_size,
            movi_size,
            super_index: &self.closed,
        })
    }

    fn rewrite_header(&mut self) -> Result<(), AviError> {
        let header = self.header_bytes();
        self.write_at(0, &header)
            .map_err(io_err("updating the AVI header"))
    }

    /// Overwrites bytes before the end, then returns the cursor to the end.
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let result = (|| {
            self.file.seek(SeekFrom::Start(offset))?;
            self.file.write_all(bytes)
        })();
        let back = self.file.seek(SeekFrom::Start(self.pos));
        result.and(back.map(drop))
    }

    /// Writes at the end, keeping `pos` right even when only part of `bytes` gets written.
    /// On failure returns the error and how many bytes did get written.
    fn append(&mut self, bytes: &[u8]) -> Result<(), (io::Error, u64)> {
        let mut done = 0;
        while done < bytes.len() {
            match self.file.write(&bytes[done..]) {
                Ok(0) => {
                    return Err((io::Error::from(io::ErrorKind::WriteZero), done as u64));
                }
                Ok(n) => {
                    done += n;
                    self.pos += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err((e, done as u64)),
            }
        }
        Ok(())
    }

    /// Cuts the file back to `len` after a failed write. When even that fails, the writer is
    /// broken: the file's end is unknown.
    fn restore(&mut self, len: u64) {
        let result = (|| {
            self.file.set_len(len)?;
            self.file.seek(SeekFrom::Start(len))
        })();
        match result {
            Ok(_) => {
                self.pos = len;
                if self.state == State::Broken {
                    self.state = State::Open;
                }
            }
            Err(e) => {
                tracing::error!(
                    "cannot cut the AVI file back to its last whole frame at byte {len}: {e}"
                );
                self.state = State::Broken;
            }
        }
    }
}

fn saturate(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::Cursor;
    use std::path::Path;

    use proptest::prelude::*;

    use super::*;
    use crate::parse;
    use crate::reader::AviReader;
    use crate::test_support::{DedupFile, FaultyFile, NullFile, T0, frames, jpeg};

    type Frames = Vec<(Vec<u8>, Timestamp)>;

    fn record(frames: &Frames, config: AviConfig) -> (AviSummary, Vec<u8>) {
        let mut w = AviWriter::new(Cursor::new(Vec::new()), config).unwrap();
        for (j, t) in frames {
            w.write_frame(j, *t).unwrap();
        }
        let summary = w.finish().unwrap();
        (summary, w.into_file().into_inner())
    }

    fn expected_rate(frames: &Frames) -> FrameRate {
        match (frames.first(), frames.last()) {
            (Some((_, a)), Some((_, b))) => FrameRate::measured(frames.len() as u64, b.since(*a)),
            _ => None,
        }
        .unwrap_or(FrameRate::per_second(25))
    }

    /// Frames (payload size, gap in µs) and a RIFF limit: tiny ones put one frame in each
    /// RIFF, middling ones a few, the real one everything in the first.
    fn recordings() -> impl Strategy<Value = (Vec<(usize, u64)>, u64)> {
        (
            proptest::collection::vec((0usize..700, 0u64..80_000), 0..40),
            prop_oneof![
                Just(RIFF_LIMIT),
                1u64..100,
                100u64..2_000,
                HEADER_LEN..HEADER_LEN + 4_000,
            ],
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn what_is_written_reads_back_frame_by_frame((spec, limit) in recordings()) {
            let frames = frames(&spec);
            let config = AviConfig::default().with_riff_limit_for_tests(limit);
            let (summary, bytes) = record(&frames, config);

            let mut reader = AviReader::new(Cursor::new(bytes.clone()), "test.avi").unwrap();
            let read: Vec<Vec<u8>> = reader.frames().collect::<Result<_, _>>().unwrap();
            let written: Vec<Vec<u8>> = frames.iter().map(|(j, _)| j.clone()).collect();
            prop_assert_eq!(&read, &written);

            let info = reader.info().clone();
            let n = frames.len() as u64;
            let size = if n > 0 { (64, 48) } else { (0, 0) };
            prop_assert_eq!((info.width, info.height), size);
            prop_assert_eq!(info.frames, n);
            prop_assert_eq!(info.codec.as_str(), "MJPG");
            prop_assert_eq!(info.frame_rate, expected_rate(&frames));
            prop_assert_eq!(info.riff_segments, summary.riff_segments);
            prop_assert!(info.opendml_index && info.idx1_index);
            prop_assert_eq!(
                summary,
                AviSummary {
                    frames: n,
                    frame_bytes: written.iter().map(|j| j.len() as u64).sum(),
                    file_bytes: bytes.len() as u64,
                    width: size.0,
                    height: size.1,
                    frame_rate: expected_rate(&frames),
                    riff_segments: info.riff_segments,
                    dropped_frames: 0,
                }
            );

            // Every RIFF stays within the limit, unless one frame alone is over it.
            let layout = parse::scan(&mut Cursor::new(&bytes), Path::new("test.avi")).unwrap();
            for (i, r) in layout.riffs.iter().enumerate() {
                let end = layout.riffs.get(i + 1).map_or(bytes.len() as u64, |r| r.start);
                prop_assert!(
                    end - r.start <= limit || r.frames.len() <= 1,
                    "RIFF {} is {} bytes with {} frames", i, end - r.start, r.frames.len()
                );
            }
            if limit < 100 && n > 0 {
                prop_assert_eq!(u64::from(info.riff_segments), n);
            }
        }

        /// A full disk at any point: recording goes on failing cleanly, and finish leaves a
        /// file that reads back, holding every accepted frame but the fewest it had to drop
        /// for the index to fit.
        #[test]
        fn a_full_disk_keeps_a_playable_file_and_drops_as_few_frames_as_needed(
            (spec, limit) in recordings(),
            room in 40u64..30_000,
        ) {
            let frames = frames(&spec);
            let capacity = HEADER_LEN + room;
            let config = AviConfig::default().with_riff_limit_for_tests(limit);
            let mut w = AviWriter::new(FaultyFile::with_capacity(capacity), config.clone()).unwrap();
            let mut accepted = Vec::new();
            for (j, t) in &frames {
                match w.write_frame(j, *t) {
                    Ok(()) => accepted.push((j.clone(), *t)),
                    Err(e) => {
                        let kind = e.io_error().map(io::Error::kind);
                        prop_assert_eq!(kind, Some(io::ErrorKind::StorageFull), "{}", e);
                    }
                }
                prop_assert!(w.file_bytes() <= capacity);
            }
            let summary = w.finish().unwrap();
            let bytes = w.into_file().into_bytes();
            prop_assert!(bytes.len() as u64 <= capacity);
            prop_assert_eq!(summary.file_bytes, bytes.len() as u64);

            let kept = summary.frames as usize;
            prop_assert_eq!(kept as u64 + summary.dropped_frames, accepted.len() as u64);
            let mut reader = AviReader::new(Cursor::new(bytes), "full.avi").unwrap();
            let read: Vec<Vec<u8>> = reader.frames().collect::<Result<_, _>>().unwrap();
            let expected: Vec<Vec<u8>> = accepted[..kept].iter().map(|(j, _)| j.clone()).collect();
            prop_assert_eq!(read, expected);
            prop_assert_eq!(reader.info().frame_rate, expected_rate(&accepted[..kept].to_vec()));
            if summary.dropped_frames > 0 {
                // Keeping one more frame would not have fitted.
                let (bigger, _) = record(&accepted[..=kept].to_vec(), config);
                prop_assert!(bigger.file_bytes > capacity);
            }
        }

        /// An I/O error that never goes away: finish fails with an error saying to repair,
        /// and repair then finds every frame that was accepted.
        #[test]
        fn after_a_lasting_write_error_repair_keeps_every_accepted_frame(
            (spec, limit) in recordings(),
            budget in 0u64..40_000,
        ) {
            let frames = frames(&spec);
            let config = AviConfig::default().with_riff_limit_for_tests(limit);
            let Ok(mut w) = AviWriter::new(FaultyFile::failing_after(HEADER_LEN + budget), config) else {
                return Ok(());
            };
            let mut accepted = Vec::new();
            let mut failed = false;
            for (j, t) in &frames {
                match w.write_frame(j, *t) {
                    Ok(()) => accepted.push(j.clone()),
                    Err(e) => {
                        failed = true;
                        prop_assert!(e.to_string().contains("failed"), "{}", e);
                    }
                }
            }
            match w.finish() {
                Ok(summary) => {
                    prop_assert!(!failed || accepted.is_empty() || summary.frames == accepted.len() as u64);
                }
                Err(e) => {
                    prop_assert!(e.to_string().contains("repair the file"), "{}", e);
                }
            }
            let mut file = Cursor::new(w.into_file().into_bytes());
            let report = crate::repair::repair_file(&mut file, Path::new("eio.avi"), FrameRate::per_second(25)).unwrap();
            prop_assert_eq!(report.frames, accepted.len() as u64);
            let mut reader = AviReader::new(Cursor::new(file.into_inner()), "eio.avi").unwrap();
            let read: Vec<Vec<u8>> = reader.frames().collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(read, accepted);
        }
    }

    #[test]
    fn refused_frames_write_nothing_and_recording_goes_on() {
        let mut w = AviWriter::new(Cursor::new(Vec::new()), AviConfig::default()).unwrap();
        w.write_frame(&jpeg(64, 48, 10, 1), T0).unwrap();
        let len = w.file_bytes();

        let err = w.write_frame(b"Unknown command", T0).unwrap_err();
        assert!(matches!(err, AviError::NotJpeg), "{err:?}");
        // SOI ... EOI but no SOF: the picture size is unknown.
        let err = w
            .write_frame(&[0xFF, 0xD8, 1, 2, 0xFF, 0xD9], T0)
            .unwrap_err();
        assert!(matches!(err, AviError::NoPictureSize), "{err:?}");
        let err = w.write_frame(&jpeg(32, 24, 10, 2), T0).unwrap_err();
        assert!(
            matches!(
                err,
                AviError::SizeChanged {
                    expected: (64, 48),
                    found: (32, 24)
                }
            ),
            "{err:?}"
        );
        assert_eq!(w.file_bytes(), len);
        assert_eq!(w.file().get_ref().len() as u64, len);

        w.write_frame(&jpeg(64, 48, 11, 3), T0 + Duration::from_millis(100))
            .unwrap();
        let summary = w.finish().unwrap();
        assert_eq!(summary.frames, 2);
        assert_eq!(summary.frame_rate, FrameRate::per_second(10));
        let err = w.write_frame(&jpeg(64, 48, 11, 3), T0).unwrap_err();
        assert!(matches!(err, AviError::Finished), "{err:?}");
        assert!(matches!(w.finish().unwrap_err(), AviError::Finished));
    }

    #[test]
    fn a_claimed_picture_over_the_limit_never_reaches_the_header() {
        let mut w = AviWriter::new(Cursor::new(Vec::new()), AviConfig::default()).unwrap();
        let len = w.file_bytes();
        // First, so that an unchecked size would become the file's.
        for (width, height) in [(65535, 65535), (16384, 16384), (8193, 48), (0, 48), (64, 0)] {
            let err = w.write_frame(&jpeg(width, height, 10, 1), T0).unwrap_err();
            if width == 0 || height == 0 {
                assert!(matches!(err, AviError::NoPictureSize), "{err:?}");
            } else {
                assert!(
                    matches!(
                        err,
                        AviError::PictureTooLarge(PictureError::TooLarge { width: w, height: h, .. })
                            if (w, h) == (u32::from(width), u32::from(height))
                    ),
                    "{err:?}"
                );
                assert!(
                    err.to_string().contains("more than the 8192x8192 allowed"),
                    "{err}"
                );
            }
            assert_eq!(w.file_bytes(), len);
        }
        w.write_frame(&jpeg(64, 48, 10, 2), T0).unwrap();
        w.write_frame(&jpeg(65535, 65535, 10, 3), T0).unwrap_err();
        let summary = w.finish().unwrap();
        assert_eq!((summary.width, summary.height, summary.frames), (64, 48, 1));
        let reader = AviReader::new(Cursor::new(w.into_file().into_inner()), "t.avi").unwrap();
        assert_eq!((reader.info().width, reader.info().height), (64, 48));

        // The limit is the config's.
        let config = AviConfig::default().with_max_picture("32x32".parse().unwrap());
        let mut w = AviWriter::new(Cursor::new(Vec::new()), config).unwrap();
        let err = w.write_frame(&jpeg(64, 48, 10, 1), T0).unwrap_err();
        assert!(matches!(err, AviError::PictureTooLarge(_)), "{err:?}");
        w.write_frame(&jpeg(32, 32, 10, 1), T0).unwrap();
    }

    #[test]
    fn zero_or_one_frame_or_no_time_between_frames_gets_the_fallback_rate() {
        let config = AviConfig {
            fallback_frame_rate: FrameRate::per_second(12),
            ..AviConfig::default()
        };
        let cases: [&[(usize, u64)]; 3] = [&[], &[(5, 0)], &[(5, 0), (5, 0), (5, 0)]];
        for spec in cases {
            let (summary, bytes) = record(&frames(spec), config.clone());
            assert_eq!(summary.frame_rate, FrameRate::per_second(12), "{spec:?}");
            let reader = AviReader::new(Cursor::new(bytes), "x.avi").unwrap();
            assert_eq!(reader.info().frame_rate, FrameRate::per_second(12));
            assert_eq!(reader.info().frames, spec.len() as u64);
        }
    }

    #[test]
    fn the_header_is_kept_current_while_recording() {
        let config = AviConfig::default().with_riff_limit_for_tests(HEADER_LEN + 300);
        let mut w = AviWriter::new(Cursor::new(Vec::new()), config).unwrap();
        // Right after new, the file is a valid empty AVI but for its missing index.
        let layout = parse::scan(&mut Cursor::new(w.file().get_ref()), Path::new("x")).unwrap();
        assert_eq!(layout.frame_count(), 0);
        assert_eq!(layout.stop, parse::Stop::End);
        for (j, t) in frames(&[(100, 0), (100, 40_000), (100, 40_000), (100, 40_000)]) {
            w.write_frame(&j, t).unwrap();
        }
        w.sync().unwrap();
        let layout = parse::scan(&mut Cursor::new(w.file().get_ref()), Path::new("x")).unwrap();
        let video = layout.header.as_ref().unwrap().video.as_ref().unwrap();
        assert_eq!(video.length, 4);
        assert_eq!(video.frame_rate, FrameRate::per_second(25));
        assert_eq!((video.width, video.height), (Some(64), Some(48)));
        assert!(layout.riffs.len() > 1);
        // What is wrong is only the index of the RIFF still open.
        assert!(
            layout.problems.iter().all(|p| p.contains("index")),
            "{:?}",
            layout.problems
        );
    }

    #[test]
    fn a_file_holds_at_most_as_many_riffs_as_its_super_index() {
        let config = AviConfig::default().with_riff_limit_for_tests(1);
        let mut w = AviWriter::new(Cursor::new(Vec::new()), config).unwrap();
        let j = jpeg(8, 8, 0, 0);
        for i in 0..SUPER_INDEX_ENTRIES {
            w.write_frame(&j, T0)
                .unwrap_or_else(|e| panic!("frame {i}: {e}"));
        }
        let err = w.write_frame(&j, T0).unwrap_err();
        assert!(matches!(err, AviError::Full), "{err:?}");
        let summary = w.finish().unwrap();
        assert_eq!(summary.riff_segments as usize, SUPER_INDEX_ENTRIES);
        let reader = AviReader::new(Cursor::new(w.into_file().into_inner()), "x").unwrap();
        assert_eq!(reader.info().frames, SUPER_INDEX_ENTRIES as u64);
    }

    /// A day of frames at 30 fps, or millions of tiny ones: what the writer keeps per frame
    /// stays bounded (it used to grow by about 36 bytes a frame until the RIFF reached 1 GiB).
    #[test]
    fn the_state_kept_per_frame_stays_bounded_over_millions_of_frames() {
        let n = 3_000_000u64;
        let j = jpeg(8, 8, 0, 0);
        let mut w = AviWriter::new(NullFile::default(), AviConfig::default()).unwrap();
        let mut most = 0;
        for i in 0..n {
            w.write_frame(&j, T0 + Duration::from_millis(33 * i))
                .unwrap();
            most = most.max(w.entries_held());
        }
        assert!(most <= MAX_RIFF_FRAMES, "{most} entries held");
        let summary = w.finish().unwrap();
        assert_eq!(summary.frames, n);
        assert_eq!(
            u64::from(summary.riff_segments),
            n.div_ceil(MAX_RIFF_FRAMES as u64)
        );
        assert_eq!(w.entries_held(), 0);
    }

    /// Offsets past 4 GiB: 4.4 GiB of one repeated 32 MiB frame, kept in memory once.
    #[test]
    fn files_past_4_gib_index_every_frame() {
        let frame = jpeg(1920, 1080, 32 << 20, 7);
        let n = 140u64;
        let mut w = AviWriter::new(DedupFile::default(), AviConfig::default()).unwrap();
        for i in 0..n {
            w.write_frame(&frame, T0 + Duration::from_millis(40 * i))
                .unwrap();
        }
        let summary = w.finish().unwrap();
        assert!(summary.file_bytes > 4 << 30, "{summary:?}");
        assert_eq!(summary.frames, n);
        assert_eq!(summary.riff_segments, 5);
        assert_eq!(summary.frame_rate, FrameRate::per_second(25));

        let mut reader = AviReader::new(w.into_file(), "big.avi").unwrap();
        let info = reader.info().clone();
        assert_eq!(info.frames, n);
        assert_eq!(info.riff_segments, 5);
        let last = *info.frame_positions.last().unwrap();
        assert!(last.offset > 4 << 30, "{last:?}");
        for i in [0, 31, 32, 100, n as usize - 1] {
            assert!(reader.read_frame(i).unwrap() == frame, "frame {i}");
        }
    }
}
