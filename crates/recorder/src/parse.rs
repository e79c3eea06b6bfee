//! Reading an AVI file's structure without trusting it: one pass over the chunks, in file
//! order, that stops at the first thing it cannot make sense of (a cut, zeros, noise), then
//! checks of the sizes, the indexes and the header counts against what the pass found.
//!
//! The reader, the chunk listing and repair all start here. Nothing here panics on any input,
//! every loop moves forward through the file or through a bounded buffer, and no allocation
//! is larger than the file (nor than a fixed cap).

use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use edgecam_core::jpeg::dimensions;
use thiserror::Error;

use crate::riff::{
    self, AVI, AVIX, FourCc, FrameRate, HDRL, IDX1, INDX, LIST, MAX_FRAME_BYTES, MOVI,
    NOT_KEYFRAME, REC, RIFF, SuperIndexEntry, show,
};

/// Headers and index chunks larger than this are not read into memory.
const MAX_META_BYTES: u64 = 256 << 20;

/// Why a file could not be read, listed or repaired.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ReadError {
    #[error("cannot read {path}; check that it exists and is readable")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "cannot write {path} while repairing it; check that it is writable and the disk is not full"
    )]
    WriteIo {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not an AVI file: {reason}")]
    NotAvi { path: PathBuf, reason: String },
    #[error("{path} has no video stream")]
    NoVideo { path: PathBuf },
    #[error(
        "{path} is damaged: {}; repair it first (edgecam_recorder::repair)",
        problems.join("; ")
    )]
    Damaged {
        path: PathBuf,
        problems: Vec<String>,
    },
    #[error(
        "frame {index} of {path} is {len} bytes, more than the {MAX_FRAME_BYTES} bytes the reader accepts"
    )]
    FrameTooLarge {
        path: PathBuf,
        index: usize,
        len: u64,
    },
    #[error("{path} has no frame {index}; it holds {frames}")]
    NoSuchFrame {
        path: PathBuf,
        index: usize,
        frames: usize,
    },
    #[error(
        "{path} was not written by edgecam ({reason}), so repair leaves it alone; it is damaged: {}",
        problems.join("; ")
    )]
    NotOurs {
        path: PathBuf,
        reason: String,
        problems: Vec<String>,
    },
    #[error("{path} cannot be repaired in place: {reason}")]
    Unrepairable { path: PathBuf, reason: String },
}

/// What the main header (`avih`) says.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Avih {
    pub micros_per_frame: u32,
    pub total_frames: u32,
    pub width: u32,
    pub height: u32,
}

/// The first video stream's headers.
#[derive(Debug, Clone)]
pub(crate) struct Video {
    /// Its number among the streams: chunks of stream 0 are `00dc`.
    pub number: u32,
    pub handler: FourCc,
    pub frame_rate: FrameRate,
    pub length: u32,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub compression: Option<FourCc>,
    pub super_index: Option<SuperIndex>,
}

impl Video {
    /// The chunk ids of its frames: `NNdc` and `NNdb`.
    pub fn ids(&self) -> [FourCc; 2] {
        let n = format!("{:02}", self.number % 100);
        let n = n.as_bytes();
        [[n[0], n[1], b'd', b'c'], [n[0], n[1], b'd', b'b']]
    }
}

#[derive(Debug, Clone)]
pub(crate) struct SuperIndex {
    /// Entries the chunk has room for.
    pub reserved: u64,
    pub entries: Vec<SuperIndexEntry>,
}

/// What `LIST 'hdrl'` says.
#[derive(Debug, Clone, Default)]
pub(crate) struct Header {
    pub avih: Option<Avih>,
    pub video: Option<Video>,
    pub streams: u32,
    pub dmlh_frames: Option<u32>,
}

/// A chunk found in the pass: where its 8-byte header is and how many bytes follow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Chunk {
    pub offset: u64,
    pub size: u32,
}

impl Chunk {
    pub fn data(&self) -> u64 {
        self.offset + 8
    }
    /// Where the chunk ends, its pad byte included.
    pub fn end(&self) -> u64 {
        self.offset + riff::chunk_len(u64::from(self.size))
    }
}

/// A video chunk, and whether it holds a whole JPEG (starts FF D8, ends FF D9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameChunk {
    pub chunk: Chunk,
    pub jpeg: bool,
}

/// One RIFF of the file: the first (`AVI `) or a further one (`AVIX`).
#[derive(Debug, Clone)]
pub(crate) struct Riff {
    pub start: u64,
    /// Its size field.
    pub size: u32,
    /// Its `LIST 'movi'`: position and size field.
    pub movi: Option<(u64, u32)>,
    pub frames: Vec<FrameChunk>,
    /// Its `ix##` chunks.
    pub ix: Vec<Chunk>,
    pub idx1: Option<Chunk>,
}

impl Riff {
    fn new(start: u64, size: u32) -> Riff {
        Riff {
            start,
            size,
            movi: None,
            frames: Vec::new(),
            ix: Vec::new(),
            idx1: None,
        }
    }
}

/// Where and why the pass over the chunks stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stop {
    /// At the end of the file, after a whole chunk.
    End,
    /// The file ends inside `what`, which starts at `at`.
    Cut { at: u64, what: String },
    /// The bytes at `at` are not a chunk header.
    Garbage { at: u64, what: String },
}

/// A line of the chunk listing (frames are listed from [`Riff::frames`]).
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub offset: u64,
    pub depth: usize,
    pub text: String,
}

/// Everything the pass found.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub len: u64,
    /// `LIST 'hdrl'`'s position and size field, when its 12-byte header is in the file.
    pub hdrl_at: Option<(u64, u32)>,
    /// `None` when the file ends inside `LIST 'hdrl'`.
    pub header: Option<Header>,
    pub riffs: Vec<Riff>,
    pub items: Vec<Item>,
    pub stop: Stop,
    /// Everything that is not as a valid file has it; empty for a valid file.
    pub problems: Vec<String>,
    /// The picture size in the first frame's JPEG.
    pub first_frame_size: Option<(u32, u32)>,
}

impl Layout {
    pub fn frames(&self) -> impl Iterator<Item = &FrameChunk> {
        self.riffs.iter().flat_map(|r| r.frames.iter())
    }
    pub fn frame_count(&self) -> u64 {
        self.riffs.iter().map(|r| r.frames.len() as u64).sum()
    }
    /// Where the last whole item the pass found ends.
    pub fn end(&self) -> u64 {
        match &self.stop {
            Stop::End => self.len,
            Stop::Cut { at, .. } | Stop::Garbage { at, .. } => *at,
        }
    }
}

/// Positioned reads from a file of known length, errors naming the path.
pub(crate) struct Src<'a, R> {
    r: &'a mut R,
    pub len: u64,
    pub path: &'a Path,
}

impl<'a, R: Read + Seek> Src<'a, R> {
    pub fn new(r: &'a mut R, path: &'a Path) -> Result<Self, ReadError> {
        let len = r.seek(SeekFrom::End(0)).map_err(|source| ReadError::Io {
            path: path.to_owned(),
            source,
        })?;
        Ok(Src { r, len, path })
    }

    pub fn read_at(&mut self, pos: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        let result = (|| {
            self.r.seek(SeekFrom::Start(pos))?;
            self.r.read_exact(buf)
        })();
        result.map_err(|source| ReadError::Io {
            path: self.path.to_owned(),
            source,
        })
    }

    /// `len` bytes at `pos`; the caller has checked that they are in the file and bounded.
    pub fn read_vec(&mut self, pos: u64, len: u64) -> Result<Vec<u8>, ReadError> {
        let len = usize::try_from(len).map_err(|_| ReadError::Io {
            path: self.path.to_owned(),
            source: io::Error::other("chunk too large for this platform"),
        })?;
        let mut buf = vec![0; len];
        self.read_at(pos, &mut buf)?;
        Ok(buf)
    }
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}
fn cc(b: &[u8], at: usize) -> Option<FourCc> {
    b.get(at..at + 4)?.try_into().ok()
}

/// The chunks in `data`: (offset in `data`, id, body). Stops at the first one that does not
/// fit.
fn chunks(data: &[u8]) -> impl Iterator<Item = (usize, FourCc, &[u8])> {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let id = cc(data, pos)?;
        let size = usize::try_from(le32(data, pos + 4)?).ok()?;
        let body = data.get(pos + 8..(pos + 8).checked_add(size)?)?;
        let at = pos;
        pos = pos + 8 + size + (size & 1);
        Some((at, id, body))
    })
}

/// Reads `LIST 'hdrl'`'s contents (`data`, which starts at file offset `base`).
fn parse_hdrl(data: &[u8], base: u64, items: &mut Vec<Item>) -> Header {
    let mut h = Header::default();
    for (at, id, body) in chunks(data) {
        let offset = base + at as u64;
        let size = body.len();
        match id {
            riff::AVIH => {
                let avih = Avih {
                    micros_per_frame: le32(body, 0).unwrap_or(0),
                    total_frames: le32(body, 16).unwrap_or(0),
                    width: le32(body, 32).unwrap_or(0),
                    height: le32(body, 36).unwrap_or(0),
                };
                let streams = le32(body, 24).unwrap_or(0);
                items.push(Item {
                    offset,
                    depth: 2,
                    text: format!(
                        "avih {size} bytes: {} us per frame, {} in the first RIFF, {}, {}x{}",
                        avih.micros_per_frame,
                        count(avih.total_frames, "frame", "frames"),
                        count(streams, "stream", "streams"),
                        avih.width,
                        avih.height
                    ),
                });
                h.avih = Some(avih);
            }
            LIST if cc(body, 0) == Some(riff::STRL) => {
                items.push(Item {
                    offset,
                    depth: 2,
                    text: format!("LIST 'strl' {size} bytes"),
                });
                let number = h.streams;
                h.streams += 1;
                let stream = parse_strl(&body[4..], offset + 12, number, items);
                if h.video.is_none() {
                    h.video = stream;
                }
            }
            LIST if cc(body, 0) == Some(riff::ODML) => {
                items.push(Item {
                    offset,
                    depth: 2,
                    text: format!("LIST 'odml' {size} bytes"),
                });
                for (at2, id2, body2) in chunks(&body[4..]) {
                    let offset2 = offset + 12 + at2 as u64;
                    if id2 == riff::DMLH {
                        h.dmlh_frames = le32(body2, 0);
                        items.push(Item {
                            offset: offset2,
                            depth: 3,
                            text: format!(
                                "dmlh {} bytes: {} in all",
                                body2.len(),
                                count(h.dmlh_frames.unwrap_or(0), "frame", "frames")
                            ),
                        });
                    } else {
                        items.push(other_item(offset2, 3, id2, body2));
                    }
                }
            }
            _ => items.push(other_item(offset, 2, id, body)),
        }
    }
    h
}

/// "1 frame", "2 frames".
fn count(n: impl Into<u64>, one: &str, many: &str) -> String {
    match n.into() {
        1 => format!("1 {one}"),
        n => format!("{n} {many}"),
    }
}

fn other_item(offset: u64, depth: usize, id: FourCc, body: &[u8]) -> Item {
    let text = match (id, cc(body, 0)) {
        (LIST, Some(kind)) => format!("LIST '{}' {} bytes", show(kind), body.len()),
        _ => format!("{} {} bytes", show(id), body.len()),
    };
    Item {
        offset,
        depth,
        text,
    }
}

/// One `LIST 'strl'`'s contents; `Some` when it is a video stream.
fn parse_strl(data: &[u8], base: u64, number: u32, items: &mut Vec<Item>) -> Option<Video> {
    let mut video: Option<Video> = None;
    let mut is_video = false;
    for (at, id, body) in chunks(data) {
        let offset = base + at as u64;
        let size = body.len();
        match id {
            riff::STRH => {
                let kind = cc(body, 0).unwrap_or([0; 4]);
                let handler = cc(body, 4).unwrap_or([0; 4]);
                let frame_rate = FrameRate {
                    scale: le32(body, 20).unwrap_or(0),
                    rate: le32(body, 24).unwrap_or(0),
                };
                let length = le32(body, 32).unwrap_or(0);
                items.push(Item {
                    offset,
                    depth: 3,
                    text: format!(
                        "strh {size} bytes: {} {}, {frame_rate}, {}",
                        show(kind),
                        show(handler),
                        count(length, "frame", "frames")
                    ),
                });
                is_video = kind == riff::VIDS;
                if is_video {
                    video = Some(Video {
                        number,
                        handler,
                        frame_rate,
                        length,
                        width: None,
                        height: None,
                        compression: None,
                        super_index: None,
                    });
                }
            }
            riff::STRF => {
                let width = le32(body, 4);
                // A negative height means top-down rows; the size is the same.
                let height = le32(body, 8).map(|h| (h as i32).unsigned_abs());
                let compression = cc(body, 16);
                let text = match (&mut video, width, height, compression) {
                    (Some(v), Some(w), Some(ht), Some(c)) if is_video => {
                        v.width = Some(w);
                        v.height = Some(ht);
                        v.compression = Some(c);
                        format!("strf {size} bytes: {w}x{ht} {}", show(c))
                    }
                    _ => format!("strf {size} bytes"),
                };
                items.push(Item {
                    offset,
                    depth: 3,
                    text,
                });
            }
            INDX => {
                let in_use = u64::from(le32(body, 4).unwrap_or(0));
                let index_type = body.get(3).copied().unwrap_or(0xFF);
                let reserved = (body.len().saturating_sub(24) / 16) as u64;
                let id = cc(body, 8).unwrap_or([0; 4]);
                items.push(Item {
                    offset,
                    depth: 3,
                    text: format!(
                        "indx {size} bytes: super index of {}, {in_use} of {reserved} entries in use",
                        show(id)
                    ),
                });
                let mut entries = Vec::new();
                if index_type == 0 {
                    for i in 0..in_use.min(reserved) {
                        let at = 24 + 16 * i as usize;
                        let e = SuperIndexEntry {
                            offset: le64(body, at).unwrap_or(0),
                            size: le32(body, at + 8).unwrap_or(0),
                            duration: le32(body, at + 12).unwrap_or(0),
                        };
                        items.push(Item {
                            offset: offset + 8 + at as u64,
                            depth: 4,
                            text: format!(
                                "#{i}: index chunk at byte {}, {} bytes, {}",
                                e.offset,
                                e.size,
                                count(e.duration, "frame", "frames")
                            ),
                        });
                        entries.push(e);
                    }
                }
                if let Some(v) = &mut video
                    && is_video
                {
                    v.super_index = Some(SuperIndex { reserved, entries });
                }
            }
            _ => items.push(other_item(offset, 3, id, body)),
        }
    }
    video
}

/// Makes one pass over the file and checks what it found.
pub(crate) fn scan<R: Read + Seek>(r: &mut R, path: &Path) -> Result<Layout, ReadError> {
    let mut src = Src::new(r, path)?;
    let len = src.len;
    let not_avi = |reason: String| ReadError::NotAvi {
        path: path.to_owned(),
        reason,
    };
    if len < 12 {
        return Err(not_avi(format!(
            "it is {len} bytes long, too short for an AVI header"
        )));
    }
    let mut head = [0; 12];
    src.read_at(0, &mut head)?;
    if head[0..4] != RIFF || head[8..12] != AVI {
        return Err(not_avi(format!(
            "it starts with \"{}\", not \"RIFF....AVI \"",
            head.iter()
                .flat_map(|b| std::ascii::escape_default(*b))
                .map(char::from)
                .collect::<String>()
        )));
    }
    let mut layout = Layout {
        len,
        hdrl_at: None,
        header: None,
        riffs: vec![Riff::new(0, le32(&head, 4).unwrap_or(0))],
        items: vec![Item {
            offset: 0,
            depth: 0,
            text: format!("RIFF 'AVI ' {} bytes", le32(&head, 4).unwrap_or(0)),
        }],
        stop: Stop::End,
        problems: Vec::new(),
        first_frame_size: None,
    };
    walk(&mut src, &mut layout)?;
    check(&mut src, &mut layout)?;
    Ok(layout)
}

/// The pass over the chunks.
fn walk<R: Read + Seek>(src: &mut Src<'_, R>, l: &mut Layout) -> Result<(), ReadError> {
    let len = src.len;
    let mut pos = 12u64;
    let mut in_movi = false;
    let mut video_ids: Option<[FourCc; 2]> = None;
    // Each round moves `pos` forward by 8 bytes at least, so this ends.
    loop {
        if pos >= len {
            l.stop = Stop::End;
            return Ok(());
        }
        if len - pos < 8 {
            l.stop = Stop::Cut {
                at: pos,
                what: "a chunk header".into(),
            };
            return Ok(());
        }
        let mut hdr = [0; 8];
        src.read_at(pos, &mut hdr)?;
        let id = cc(&hdr, 0).unwrap_or([0; 4]);
        let size = le32(&hdr, 4).unwrap_or(0);
        if !riff::is_fourcc(id) {
            l.stop = Stop::Garbage {
                at: pos,
                what: format!("\"{}\" is not a chunk id", show(id)),
            };
            return Ok(());
        }
        let depth = if in_movi { 2 } else { 1 };
        let riff_no = l.riffs.len() - 1;
        if id == RIFF || id == LIST {
            if len - pos < 12 {
                l.stop = Stop::Cut {
                    at: pos,
                    what: format!("a {} header", show(id)),
                };
                return Ok(());
            }
            let mut kind = [0; 4];
            src.read_at(pos + 8, &mut kind)?;
            if id == RIFF {
                if kind != AVIX {
                    l.stop = Stop::Garbage {
                        at: pos,
                        what: format!("a RIFF '{}' where only 'AVIX' belongs", show(kind)),
                    };
                    return Ok(());
                }
                l.riffs.push(Riff::new(pos, size));
                l.items.push(Item {
                    offset: pos,
                    depth: 0,
                    text: format!("RIFF 'AVIX' {size} bytes"),
                });
                in_movi = false;
                pos += 12;
                continue;
            }
            if kind == MOVI && l.riffs[riff_no].movi.is_none() {
                l.riffs[riff_no].movi = Some((pos, size));
                l.items.push(Item {
                    offset: pos,
                    depth: 1,
                    text: format!("LIST 'movi' {size} bytes"),
                });
                in_movi = true;
                pos += 12;
                continue;
            }
            if kind == REC && in_movi {
                l.items.push(Item {
                    offset: pos,
                    depth: 2,
                    text: format!("LIST 'rec ' {size} bytes"),
                });
                pos += 12;
                continue;
            }
            let end = pos + 8 + u64::from(size);
            if kind == HDRL && l.hdrl_at.is_none() && riff_no == 0 && !in_movi {
                l.hdrl_at = Some((pos, size));
                if end > len {
                    l.stop = Stop::Cut {
                        at: pos,
                        what: "the header (LIST 'hdrl')".into(),
                    };
                    return Ok(());
                }
                if u64::from(size) > MAX_META_BYTES {
                    l.stop = Stop::Garbage {
                        at: pos,
                        what: format!("a header of {size} bytes"),
                    };
                    return Ok(());
                }
                l.items.push(Item {
                    offset: pos,
                    depth: 1,
                    text: format!("LIST 'hdrl' {size} bytes"),
                });
                let body = src.read_vec(pos + 12, u64::from(size).saturating_sub(4))?;
                let header = parse_hdrl(&body, pos + 12, &mut l.items);
                video_ids = header.video.as_ref().map(Video::ids);
                l.header = Some(header);
                pos = end + u64::from(size & 1);
                continue;
            }
            if end > len {
                l.stop = Stop::Cut {
                    at: pos,
                    what: format!("LIST '{}' of {size} bytes", show(kind)),
                };
                return Ok(());
            }
            let mut text = format!("LIST '{}' {size} bytes", show(kind));
            if kind == riff::INFO && size <= 4096 {
                let body = src.read_vec(pos + 12, u64::from(size).saturating_sub(4))?;
                for (_, id2, body2) in chunks(&body) {
                    let value = String::from_utf8_lossy(body2);
                    text.push_str(&format!(
                        ", {} \"{}\"",
                        show(id2),
                        value.trim_end_matches('\0')
                    ));
                }
            }
            l.items.push(Item {
                offset: pos,
                depth,
                text,
            });
            pos = end + u64::from(size & 1);
            continue;
        }

        let chunk = Chunk { offset: pos, size };
        let end = pos + 8 + u64::from(size);
        if end > len {
            l.stop = Stop::Cut {
                at: pos,
                what: format!("the {} chunk of {size} bytes", show(id)),
            };
            return Ok(());
        }
        let riff = &mut l.riffs[riff_no];
        let ids = video_ids.unwrap_or([riff::FRAME, *b"00db"]);
        if ids.contains(&id) && riff.movi.is_some() {
            let jpeg = size >= 4 && {
                let mut first = [0; 2];
                let mut last = [0; 2];
                src.read_at(pos + 8, &mut first)?;
                src.read_at(end - 2, &mut last)?;
                first == [0xFF, 0xD8] && last == [0xFF, 0xD9]
            };
            riff.frames.push(FrameChunk { chunk, jpeg });
        } else {
            let mut text = format!("{} {size} bytes", show(id));
            if id.starts_with(b"ix") {
                riff.ix.push(chunk);
                if size >= 8 {
                    let mut n = [0; 4];
                    src.read_at(pos + 12, &mut n)?;
                    text.push_str(&format!(
                        ": {}",
                        count(u32::from_le_bytes(n), "entry", "entries")
                    ));
                }
            } else if id == IDX1 {
                riff.idx1 = Some(chunk);
                in_movi = false;
                text.push_str(&format!(": {}", count(size / 16, "entry", "entries")));
            }
            l.items.push(Item {
                offset: pos,
                depth: if id == IDX1 { 1 } else { depth },
                text,
            });
        }
        // A last chunk with an odd size may lack its pad byte.
        pos = (end + u64::from(size & 1)).min(len);
    }
}

/// Reads an index chunk's body, when it is whole and of a sane size.
fn read_index_chunk<R: Read + Seek>(
    src: &mut Src<'_, R>,
    offset: u64,
) -> Result<Result<(FourCc, Vec<u8>), String>, ReadError> {
    if offset.checked_add(8).is_none_or(|end| end > src.len) {
        return Ok(Err(format!(
            "points past the end of the file (byte {offset})"
        )));
    }
    let mut hdr = [0; 8];
    src.read_at(offset, &mut hdr)?;
    let id = cc(&hdr, 0).unwrap_or([0; 4]);
    let size = u64::from(le32(&hdr, 4).unwrap_or(0));
    if offset + 8 + size > src.len || size > MAX_META_BYTES {
        return Ok(Err(format!(
            "the index chunk at byte {offset} ({size} bytes) is not whole"
        )));
    }
    Ok(Ok((id, src.read_vec(offset + 8, size)?)))
}

/// The frames an OpenDML standard index lists: (chunk position, JPEG length).
fn parse_ix(id: FourCc, body: &[u8], offset: u64) -> Result<Vec<(u64, u32)>, String> {
    let longs = le16(body, 0).unwrap_or(0);
    let index_type = body.get(3).copied().unwrap_or(0xFF);
    if !id.starts_with(b"ix") && !id.ends_with(b"ix") || longs != 2 || index_type != 1 {
        return Err(format!(
            "the chunk at byte {offset} is not a standard index ({})",
            show(id)
        ));
    }
    let n = le32(body, 4).unwrap_or(0) as usize;
    let base = le64(body, 12).unwrap_or(0);
    if n > body.len().saturating_sub(24) / 8 {
        return Err(format!(
            "the index at byte {offset} claims {n} entries but has room for fewer"
        ));
    }
    (0..n)
        .map(|i| {
            let at = 24 + 8 * i;
            let rel = le32(body, at).unwrap_or(0);
            let size = le32(body, at + 4).unwrap_or(0) & !NOT_KEYFRAME;
            let pos = (base + u64::from(rel))
                .checked_sub(8)
                .ok_or_else(|| format!("entry {i} of the index at byte {offset} is invalid"))?;
            Ok((pos, size))
        })
        .collect()
}

/// The first difference between what an index lists and the frames found.
fn compare(name: &str, listed: &[(u64, u32)], found: &[&FrameChunk]) -> Option<String> {
    if listed.len() != found.len() {
        return Some(format!(
            "{name} lists {} frames where the file holds {}",
            listed.len(),
            found.len()
        ));
    }
    listed
        .iter()
        .zip(found)
        .position(|(&(pos, size), f)| pos != f.chunk.offset || size != f.chunk.size)
        .map(|i| {
            format!(
                "{name} entry {i} says byte {} ({} bytes) where frame {i} is at byte {} ({} bytes)",
                listed[i].0, listed[i].1, found[i].chunk.offset, found[i].chunk.size
            )
        })
}

/// Compares the structure, the indexes and the header with what the pass found.
fn check<R: Read + Seek>(src: &mut Src<'_, R>, l: &mut Layout) -> Result<(), ReadError> {
    let mut problems = Vec::new();
    match &l.stop {
        Stop::End => {}
        Stop::Cut { at, what } => problems.push(format!(
            "the file ends inside {what}, which starts at byte {at} (only {} of its bytes are there)",
            l.len - at
        )),
        Stop::Garbage { at, what } => problems.push(format!(
            "the bytes at {at} are not a chunk ({what}); {} bytes from there on cannot be read",
            l.len - at
        )),
    }
    let Some(header) = l.header.clone() else {
        if l.stop == Stop::End {
            problems.push("the file has no header (LIST 'hdrl')".into());
        }
        l.problems = problems;
        return Ok(());
    };
    let Some(video) = &header.video else {
        problems.push("the header describes no video stream".into());
        l.problems = problems;
        return Ok(());
    };

    // Sizes of the RIFFs and their movi lists.
    for (i, r) in l.riffs.iter().enumerate() {
        let n = i + 1;
        let next = l.riffs.get(i + 1).map_or(l.len, |r| r.start);
        let declared = r.start + 8 + u64::from(r.size);
        if l.stop == Stop::End && declared != next && declared + 1 != next {
            problems.push(format!(
                "RIFF {n} (at byte {}) says it holds {} bytes, but {} follow",
                r.start,
                r.size,
                next - r.start - 8
            ));
        }
        match r.movi {
            None => problems.push(format!("RIFF {n} has no LIST 'movi'")),
            Some((movi, size)) => {
                let movi_end = movi + 8 + u64::from(size);
                if let Some(last) = r.frames.last()
                    && last.chunk.offset + 8 + u64::from(last.chunk.size) > movi_end
                {
                    problems.push(format!(
                        "the LIST 'movi' of RIFF {n} says it ends at byte {movi_end}, before its last frame (at byte {})",
                        last.chunk.offset
                    ));
                }
                if movi_end > declared.max(next) {
                    problems.push(format!(
                        "the LIST 'movi' of RIFF {n} says it ends at byte {movi_end}, past the end of its RIFF"
                    ));
                }
            }
        }
    }

    let all: Vec<&FrameChunk> = l.frames().collect();
    let total = all.len() as u64;
    let first_riff: Vec<&FrameChunk> = l.riffs[0].frames.iter().collect();

    // The OpenDML index.
    let odml_entries = video.super_index.as_ref().map_or(0, |s| s.entries.len());
    if let Some(si) = &video.super_index
        && !si.entries.is_empty()
    {
        let mut listed = Vec::new();
        let mut broken = None;
        for (i, e) in si.entries.iter().enumerate() {
            let chunk = match read_index_chunk(src, e.offset)? {
                Ok((id, body)) => parse_ix(id, &body, e.offset),
                Err(why) => Err(why),
            };
            match chunk {
                Ok(entries) => {
                    if entries.len() as u64 != u64::from(e.duration) {
                        broken = Some(format!(
                            "super index entry {i} says {} frames, its index lists {}",
                            e.duration,
                            entries.len()
                        ));
                    }
                    listed.extend(entries);
                }
                Err(why) => {
                    broken = Some(format!("super index entry {i}: {why}"));
                    break;
                }
            }
        }
        if let Some(why) = broken {
            problems.push(format!("the OpenDML index is broken: {why}"));
        } else if let Some(why) = compare("the OpenDML index", &listed, &all) {
            problems.push(why);
        }
    }

    // The classic index, of the first RIFF's frames.
    if let Some(idx1) = l.riffs[0].idx1 {
        let ids = video.ids();
        match read_index_chunk(src, idx1.offset)? {
            Ok((_, body)) => {
                let entries: Vec<(u64, u32)> = body
                    .chunks_exact(16)
                    .filter(|e| cc(e, 0).is_some_and(|id| ids.contains(&id)))
                    .map(|e| (u64::from(le32(e, 8).unwrap_or(0)), le32(e, 12).unwrap_or(0)))
                    .collect();
                // Offsets count from the movi code; a few writers use file positions.
                let movi_code = l.riffs[0].movi.map_or(0, |(m, _)| m + 8);
                let absolute = matches!(
                    (entries.first(), first_riff.first()),
                    (Some(e), Some(f)) if e.0 == f.chunk.offset
                );
                let base = if absolute { 0 } else { movi_code };
                let listed: Vec<(u64, u32)> = entries.iter().map(|&(o, s)| (base + o, s)).collect();
                if let Some(why) = compare("idx1", &listed, &first_riff) {
                    problems.push(why);
                }
            }
            Err(why) => problems.push(format!("idx1 is broken: {why}")),
        }
    } else if total > 0 && odml_entries == 0 {
        problems.push("the file has no index (neither idx1 nor an OpenDML index)".into());
    }
    if l.riffs.len() > 1 && odml_entries == 0 {
        problems.push(format!(
            "the file has {} RIFFs but no OpenDML index for the ones after the first",
            l.riffs.len()
        ));
    }

    // The counts in the header.
    if u64::from(video.length) != total {
        problems.push(format!(
            "the stream header says {} frames, the file holds {total}",
            video.length
        ));
    }
    if let Some(n) = header.dmlh_frames
        && u64::from(n) != total
        && (n != 0 || l.riffs.len() > 1)
    {
        problems.push(format!(
            "the OpenDML header says {n} frames, the file holds {total}"
        ));
    }
    if let Some(avih) = header.avih {
        let n = u64::from(avih.total_frames);
        if n != first_riff.len() as u64 && n != total {
            problems.push(format!(
                "the main header says {n} frames, the first RIFF holds {}",
                first_riff.len()
            ));
        }
    } else {
        problems.push("the header has no main header (avih)".into());
    }

    // The picture size, from the first frame's JPEG.
    if let Some(first) = all.first().filter(|f| f.jpeg)
        && u64::from(first.chunk.size) <= MAX_FRAME_BYTES as u64
    {
        let jpeg = src.read_vec(first.chunk.data(), u64::from(first.chunk.size))?;
        l.first_frame_size = dimensions(&jpeg);
        if let (Some((w, h)), Some(sw), Some(sh)) = (l.first_frame_size, video.width, video.height)
            && (w, h) != (sw, sh)
        {
            problems.push(format!(
                "the header says {sw}x{sh} but the first frame is {w}x{h}"
            ));
        }
    }
    l.problems = problems;
    Ok(())
}
