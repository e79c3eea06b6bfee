//! Reading AVI files back: [`AviReader`] (frame by frame), [`read_frames`] (all at once) and
//! [`chunk_listing`] (the structure, for people).

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::{Path, PathBuf};

use crate::parse::{self, Layout, ReadError, Stop};
use crate::riff::{FrameRate, MAX_FRAME_BYTES, show};

/// What an AVI file holds, as [`AviReader`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AviInfo {
    /// The picture size in the header.
    pub width: u32,
    pub height: u32,
    /// The frame rate in the header.
    pub frame_rate: FrameRate,
    /// Frames of the (first) video stream in the file.
    pub frames: u64,
    /// The video codec in the header, such as `MJPG`.
    pub codec: String,
    /// RIFFs: 1 for a classic AVI, more for an OpenDML one (past 1 GiB).
    pub riff_segments: u32,
    /// Whether the file has an OpenDML index (`indx` and `ix##` chunks).
    pub opendml_index: bool,
    /// Whether the file has a classic `idx1` index.
    pub idx1_index: bool,
    /// Where each frame's bytes are, in order.
    pub frame_positions: Vec<FramePosition>,
}

/// Where a frame's bytes are in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramePosition {
    /// The first byte of the frame (just past its chunk header).
    pub offset: u64,
    pub len: u32,
}

/// Reads the frames of an AVI file, exactly as they are stored.
///
/// Opening checks the whole structure first: RIFF and list sizes, every index (`idx1`, and the
/// OpenDML `indx` and `ix##` chunks) against the frame chunks actually in the file, the frame
/// counts in the header and the picture size against the first JPEG. A file that fails any
/// check (a recording cut off, say) is refused with [`ReadError::Damaged`], which lists what
/// is wrong; [`repair`](crate::repair) fixes edgecam's recordings. Garbage and truncated files
/// give an error, never a panic or a hang.
///
/// Frames are the chunks of the first video stream (`00dc`, `00db`, ...) in file order; other
/// streams (audio) are skipped.
#[derive(Debug)]
pub struct AviReader<R> {
    reader: R,
    path: PathBuf,
    info: AviInfo,
}

impl AviReader<BufReader<File>> {
    /// Opens and checks the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ReadError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|source| ReadError::Io {
            path: path.to_owned(),
            source,
        })?;
        AviReader::new(BufReader::new(file), path)
    }
}

impl<R: Read + Seek> AviReader<R> {
    /// Checks the AVI file in `reader`; `path` names it in errors.
    pub fn new(mut reader: R, path: impl Into<PathBuf>) -> Result<Self, ReadError> {
        let path = path.into();
        let layout = parse::scan(&mut reader, &path)?;
        let info = info(&layout, &path)?;
        if !layout.problems.is_empty() {
            return Err(ReadError::Damaged {
                path,
                problems: layout.problems,
            });
        }
        Ok(AviReader { reader, path, info })
    }

    pub fn info(&self) -> &AviInfo {
        &self.info
    }

    /// The bytes of frame `index` (counting from 0).
    pub fn read_frame(&mut self, index: usize) -> Result<Vec<u8>, ReadError> {
        let Some(&FramePosition { offset, len }) = self.info.frame_positions.get(index) else {
            return Err(ReadError::NoSuchFrame {
                path: self.path.clone(),
                index,
                frames: self.info.frame_positions.len(),
            });
        };
        if u64::from(len) > MAX_FRAME_BYTES as u64 {
            return Err(ReadError::FrameTooLarge {
                path: self.path.clone(),
                index,
                len: u64::from(len),
            });
        }
        let mut src = parse::Src::new(&mut self.reader, &self.path)?;
        src.read_vec(offset, u64::from(len))
    }

    /// Every frame's bytes, in order.
    pub fn frames(&mut self) -> impl Iterator<Item = Result<Vec<u8>, ReadError>> + '_ {
        (0..self.info.frame_positions.len()).map(|i| self.read_frame(i))
    }
}

fn info(layout: &Layout, path: &Path) -> Result<AviInfo, ReadError> {
    let Some(header) = &layout.header else {
        return Err(ReadError::Damaged {
            path: path.to_owned(),
            problems: layout.problems.clone(),
        });
    };
    let Some(video) = &header.video else {
        return Err(ReadError::NoVideo {
            path: path.to_owned(),
        });
    };
    let avih = header.avih.unwrap_or_default();
    let frame_rate = if video.frame_rate.is_valid() || avih.micros_per_frame == 0 {
        video.frame_rate
    } else {
        FrameRate {
            rate: 1_000_000,
            scale: avih.micros_per_frame,
        }
    };
    Ok(AviInfo {
        width: video.width.unwrap_or(avih.width),
        height: video.height.unwrap_or(avih.height),
        frame_rate,
        frames: layout.frame_count(),
        codec: show(video.compression.unwrap_or(video.handler)),
        riff_segments: u32::try_from(layout.riffs.len()).unwrap_or(u32::MAX),
        opendml_index: video
            .super_index
            .as_ref()
            .is_some_and(|s| !s.entries.is_empty()),
        idx1_index: layout.riffs[0].idx1.is_some(),
        frame_positions: layout
            .frames()
            .map(|f| FramePosition {
                offset: f.chunk.data(),
                len: f.chunk.size,
            })
            .collect(),
    })
}

/// Reads every frame of the AVI file at `path` (see [`AviReader`]), with what the header says.
/// Holds all the frames in memory: for large files use [`AviReader::frames`].
pub fn read_frames(path: impl AsRef<Path>) -> Result<(AviInfo, Vec<Vec<u8>>), ReadError> {
    let mut reader = AviReader::open(path)?;
    let frames = reader.frames().collect::<Result<Vec<_>, _>>()?;
    Ok((reader.info, frames))
}

/// A listing of the chunks in the AVI file at `path`, one per line with its offset, nested
/// lists indented, what the headers and indexes say, and at the end how the file ends and
/// what is wrong with it. Works on damaged files too (that is what it is for). Long runs of
/// frame chunks are shortened.
pub fn chunk_listing(path: impl AsRef<Path>) -> Result<String, ReadError> {
    let path = path.as_ref();
    let mut file = File::open(path).map_err(|source| ReadError::Io {
        path: path.to_owned(),
        source,
    })?;
    let layout = parse::scan_listing(&mut BufReader::new(&mut file), path)?;
    Ok(listing(&layout))
}

/// A run of frames longer than this is shortened to its first and last few.
const FRAME_RUN_SHOWN: usize = 6;

pub(crate) fn listing(layout: &Layout) -> String {
    let ids = layout
        .header
        .as_ref()
        .and_then(|h| h.video.as_ref())
        .map(|v| show(v.ids()[0]))
        .unwrap_or_else(|| "00dc".into());
    let mut lines: Vec<(u64, usize, String)> = layout
        .items
        .list
        .iter()
        .map(|i| (i.offset, i.depth, i.text.clone()))
        .collect();
    for riff in &layout.riffs {
        // Frames come in runs between other chunks; shorten the long ones.
        let frames = &riff.frames;
        let mut i = 0;
        while i < frames.len() {
            let mut j = i + 1;
            // Items are in file order: is there one between two frames?
            let between = |a: u64, b: u64| {
                let k = layout.items.list.partition_point(|it| it.offset <= a);
                layout.items.list.get(k).is_some_and(|it| it.offset < b)
            };
            while j < frames.len() && !between(frames[j - 1].chunk.offset, frames[j].chunk.offset) {
                j += 1;
            }
            let run = &frames[i..j];
            let line = |f: &parse::FrameChunk| {
                let note = if f.jpeg { "" } else { " (not a whole JPEG)" };
                (
                    f.chunk.offset,
                    2,
                    format!("{ids} {} bytes{note}", f.chunk.size),
                )
            };
            if run.len() <= FRAME_RUN_SHOWN {
                lines.extend(run.iter().map(line));
            } else {
                lines.extend(run[..2].iter().map(line));
                let hidden = &run[2..run.len() - 1];
                let min = hidden.iter().map(|f| f.chunk.size).min().unwrap_or(0);
                let max = hidden.iter().map(|f| f.chunk.size).max().unwrap_or(0);
                lines.push((
                    hidden[0].chunk.offset,
                    2,
                    format!(
                        "... {} more {ids} chunks of {min} to {max} bytes",
                        hidden.len()
                    ),
                ));
                lines.extend(run[run.len() - 1..].iter().map(line));
            }
            i = j;
        }
    }
    lines.sort_by_key(|(offset, depth, _)| (*offset, *depth));
    let mut out = String::new();
    for (offset, depth, text) in lines {
        let _ = writeln!(out, "{offset:>10}  {}{text}", "  ".repeat(depth));
    }
    let _ = match &layout.stop {
        Stop::End => writeln!(out, "{:>10}  end of file", layout.len),
        Stop::Cut { at, what } => writeln!(
            out,
            "{at:>10}  the file ends inside {what}, at byte {}",
            layout.len
        ),
        Stop::Garbage { at, what } => {
            writeln!(
                out,
                "{at:>10}  unreadable: {what}; the file is {} bytes",
                layout.len
            )
        }
    };
    if layout.problems.is_empty() {
        out.push_str("no problems found\n");
    } else {
        out.push_str("problems:\n");
        for p in &layout.problems {
            let _ = writeln!(out, "  - {p}");
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::Cursor;

    use proptest::prelude::*;

    use super::*;
    use crate::test_support::{frames, jpeg};
    use crate::writer::{AviConfig, AviWriter};

    fn recording(spec: &[(usize, u64)], config: AviConfig) -> Vec<u8> {
        let mut w = AviWriter::new(Cursor::new(Vec::new()), config).unwrap();
        for (j, t) in frames(spec) {
            w.write_frame(&j, t).unwrap();
        }
        w.finish().unwrap();
        w.into_file().into_inner()
    }

    fn listing_of(bytes: &[u8]) -> String {
        listing(&parse::scan_listing(&mut Cursor::new(bytes), Path::new("x.avi")).unwrap())
    }

    #[test]
    fn listing_of_a_small_recording() {
        // Three frames 40 ms apart: 25 fps.
        let bytes = recording(&[(20, 0), (21, 40_000), (22, 40_000)], AviConfig::default());
        insta::assert_snapshot!(listing_of(&bytes));
    }

    #[test]
    fn listing_of_an_opendml_recording_in_three_riffs() {
        let config = AviConfig::default().with_riff_limit_for_tests(200);
        let spec = [
            (20, 0),
            (21, 100_000),
            (22, 100_000),
            (23, 100_000),
            (24, 100_000),
        ];
        let bytes = recording(&spec, config);
        insta::assert_snapshot!(listing_of(&bytes));
    }

    #[test]
    fn listing_of_a_cut_recording_says_what_is_wrong() {
        let config = AviConfig::default().with_riff_limit_for_tests(200);
        let mut bytes = recording(
            &[(20, 0), (21, 100_000), (22, 100_000), (23, 100_000)],
            config,
        );
        bytes.truncate(bytes.len() - 60);
        insta::assert_snapshot!(listing_of(&bytes));
    }

    #[test]
    fn long_runs_of_frames_are_shortened_in_the_listing() {
        let bytes = recording(&[(10, 40_000); 20], AviConfig::default());
        let listing = listing_of(&bytes);
        assert!(
            listing.contains("... 17 more 00dc chunks of 37 to 37 bytes"),
            "{listing}"
        );
        assert_eq!(listing.matches(" 00dc 37 bytes").count(), 3, "{listing}");
    }

    #[test]
    fn a_damaged_file_is_refused_with_what_is_wrong() {
        let mut bytes = recording(&[(20, 0), (21, 40_000)], AviConfig::default());
        bytes.truncate(bytes.len() - 3);
        let err = AviReader::new(Cursor::new(bytes), "cut.avi").unwrap_err();
        let ReadError::Damaged { problems, .. } = &err else {
            panic!("{err:?}");
        };
        assert!(
            problems[0].starts_with(
                "the file ends inside the idx1 chunk of 32 bytes, which starts at byte"
            ),
            "{problems:?}"
        );
        assert!(err.to_string().contains("repair it first"), "{err}");
    }

    #[test]
    fn frames_out_of_range_are_an_error() {
        let bytes = recording(&[(20, 0)], AviConfig::default());
        let mut reader = AviReader::new(Cursor::new(bytes), "x.avi").unwrap();
        assert_eq!(reader.read_frame(0).unwrap(), jpeg(64, 48, 20, 0));
        let err = reader.read_frame(1).unwrap_err();
        assert!(
            matches!(
                err,
                ReadError::NoSuchFrame {
                    index: 1,
                    frames: 1,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn not_an_avi_file_says_so() {
        for bytes in [
            &b""[..],
            b"RIFF",
            b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR",
            b"RIFF\x04\0\0\0WAVE",
        ] {
            let err = AviReader::new(Cursor::new(bytes.to_vec()), "x.avi").unwrap_err();
            assert!(matches!(err, ReadError::NotAvi { .. }), "{err:?}");
        }
        let err = AviReader::new(Cursor::new(b"RIFF\x04\0\0\0AVI ".to_vec()), "x.avi").unwrap_err();
        assert!(matches!(err, ReadError::Damaged { .. }), "{err:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn garbage_is_an_error_or_a_file_never_a_panic(
            riff_avi in any::<bool>(),
            body in proptest::collection::vec(
                prop_oneof![any::<u8>(), Just(b'L'), Just(b'I'), Just(b'S'), Just(b'T'), Just(0)],
                0..600,
            ),
        ) {
            let mut bytes = if riff_avi { b"RIFF\0\0\0\0AVI ".to_vec() } else { Vec::new() };
            bytes.extend_from_slice(&body);
            let _ = AviReader::new(Cursor::new(bytes.clone()), "x.avi");
            if let Ok(layout) = parse::scan_listing(&mut Cursor::new(&bytes), Path::new("x.avi")) {
                let _ = listing(&layout);
            }
            let mut file = Cursor::new(bytes);
            let _ = crate::repair::repair_file(&mut file, Path::new("x.avi"), crate::riff::FrameRate::per_second(25));
        }
    }
}
