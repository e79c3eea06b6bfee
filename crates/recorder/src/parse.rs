//! Reading an AVI file's structure without trusting it: one pass over the chunks, in file
//! order, that stops at the first thing it cannot make sense of (a cut, zeros, noise), then
//! checks of the sizes, the indexes and the header counts against what the pass found.
//!
//! The reader, the chunk listing and repair all start here. Nothing here panics on any input,
//! every loop moves forward through the file or through a bounded buffer, and no allocation
//! is larger than the file (nor than a fixed cap). What is kept is a few words per frame chunk
//! and per RIFF; indexes are checked a block at a time, each index chunk read once; the lines
//! of a listing are only kept when one is asked for ([`scan_listing`]).
//!
//! Arithmetic on what the file says: positions are below the file's length and chunk sizes
//! are 32-bit, so `position + size` fits 64 bits; 64-bit values read from the file (index base
//! offsets, super index positions) are added with `checked_add`. Nothing read from the file is
//! converted to `usize` unchecked (the board is 32-bit).

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

/// More RIFFs than this are not kept track of: the pass stops there. (edgecam writes at most
/// 1024, one per GiB; this only bounds the memory a file of tiny `RIFF` headers costs.)
const MAX_RIFFS: usize = 1 << 16;

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
    pub idx1: Option<Chunk>,
}

impl Riff {
    fn new(start: u64, size: u32) -> Riff {
        Riff {
            start,
            size,
            movi: None,
            frames: Vec::new(),
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

/// The listing's lines. Kept only when a listing is asked for: a file of many small chunks
/// would otherwise cost several times its size in memory.
#[derive(Debug, Clone, Default)]
pub(crate) struct Items {
    on: bool,
    pub list: Vec<Item>,
}

impl Items {
    fn push(&mut self, item: Item) {
        if self.on {
            self.list.push(item);
        }
    }
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
    pub items: Items,
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
fn parse_hdrl(data: &[u8], base: u64, items: &mut Items) -> Header {
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
fn parse_strl(data: &[u8], base: u64, number: u32, items: &mut Items) -> Option<Video> {
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
    scan_with(r, path, false)
}

/// [`scan`], keeping the lines of a chunk listing in [`Layout::items`].
pub(crate) fn scan_listing<R: Read + Seek>(r: &mut R, path: &Path) -> Result<Layout, ReadError> {
    scan_with(r, path, true)
}

fn scan_with<R: Read + Seek>(r: &mut R, path: &Path, listing: bool) -> Result<Layout, ReadError> {
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
        items: Items {
            on: listing,
            list: Vec::new(),
        },
        stop: Stop::End,
        problems: Vec::new(),
        first_frame_size: None,
    };
    layout.items.push(Item {
        offset: 0,
        depth: 0,
        text: format!("RIFF 'AVI ' {} bytes", le32(&head, 4).unwrap_or(0)),
    });
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
                if l.riffs.len() >= MAX_RIFFS {
                    l.stop = Stop::Garbage {
                        at: pos,
                        what: format!("a RIFF beyond the {MAX_RIFFS}th"),
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

/// Index entries are read this many bytes at a time, so that checking an index costs a fixed
/// amount of memory whatever it claims.
const INDEX_BLOCK: usize = 64 << 10;

/// An index chunk at `offset`: its id, where its body starts and how long it is, when the
/// chunk is whole in the file.
fn index_chunk<R: Read + Seek>(
    src: &mut Src<'_, R>,
    offset: u64,
) -> Result<Result<(FourCc, u64, u64), String>, ReadError> {
    let Some(body) = offset.checked_add(8).filter(|&b| b <= src.len) else {
        return Ok(Err(format!(
            "points past the end of the file (byte {offset})"
        )));
    };
    let mut hdr = [0; 8];
    src.read_at(offset, &mut hdr)?;
    let id = cc(&hdr, 0).unwrap_or([0; 4]);
    let size = u64::from(le32(&hdr, 4).unwrap_or(0));
    if body + size > src.len {
        return Ok(Err(format!(
            "the index chunk at byte {offset} ({size} bytes) is not whole"
        )));
    }
    Ok(Ok((id, body, size)))
}

/// Calls `f` on each of the `count` entries of `entry_len` bytes at `pos` (which the caller
/// has checked are in the file), reading a block at a time; stops at `f`'s first error.
fn for_each_entry<R: Read + Seek>(
    src: &mut Src<'_, R>,
    pos: u64,
    count: u64,
    entry_len: usize,
    mut f: impl FnMut(&[u8]) -> Result<(), String>,
) -> Result<Result<(), String>, ReadError> {
    let per_block = (INDEX_BLOCK / entry_len) as u64;
    let mut buf = Vec::new();
    let mut done = 0u64;
    while done < count {
        let n = (count - done).min(per_block);
        // n * entry_len <= INDEX_BLOCK: fits usize on any platform.
        buf.resize(n as usize * entry_len, 0);
        src.read_at(pos + done * entry_len as u64, &mut buf)?;
        for entry in buf.chunks_exact(entry_len) {
            if let Err(why) = f(entry) {
                return Ok(Err(why));
            }
        }
        done += n;
    }
    Ok(Ok(()))
}

/// Compares what an index lists, entry by entry, with the frames found, keeping only the
/// first difference.
struct Compare<'a, I> {
    name: &'static str,
    found: I,
    listed: u64,
    first_difference: Option<String>,
    _frames: std::marker::PhantomData<&'a FrameChunk>,
}

impl<'a, I: Iterator<Item = &'a FrameChunk>> Compare<'a, I> {
    fn new(name: &'static str, found: I) -> Self {
        Compare {
            name,
            found,
            listed: 0,
            first_difference: None,
            _frames: std::marker::PhantomData,
        }
    }

    fn entry(&mut self, pos: u64, size: u32) {
        let i = self.listed;
        self.listed += 1;
        let Some(f) = self.found.next() else {
            return;
        };
        if self.first_difference.is_none() && (pos != f.chunk.offset || size != f.chunk.size) {
            self.first_difference = Some(format!(
                "{} entry {i} says byte {pos} ({size} bytes) where frame {i} is at byte {} ({} bytes)",
                self.name, f.chunk.offset, f.chunk.size
            ));
        }
    }

    /// The first difference: in the number of frames, else in an entry.
    fn finish(self, total: u64) -> Option<String> {
        if self.listed != total {
            return Some(format!(
                "{} lists {} frames where the file holds {total}",
                self.name, self.listed
            ));
        }
        self.first_difference
    }
}

/// Checks the OpenDML index: each super index entry's `ix##` chunk, in file order and each
/// read once, against the frames found.
fn check_opendml<R: Read + Seek>(
    src: &mut Src<'_, R>,
    l: &Layout,
    entries: &[SuperIndexEntry],
) -> Result<Option<String>, ReadError> {
    let mut compare = Compare::new("the OpenDML index", l.frames());
    let mut broken = None;
    // Where the previous entry's index chunk ends: each must start at or after it, so that a
    // super index of 1024 entries pointing at one large chunk costs one read, not 1024.
    let mut prev_end = 0u64;
    for (i, e) in entries.iter().enumerate() {
        if e.offset < prev_end {
            broken = Some(format!(
                "super index entry {i} points at byte {}, before the end of the index of entry {} (byte {prev_end})",
                e.offset,
                i - 1
            ));
            break;
        }
        let (id, body, size) = match index_chunk(src, e.offset)? {
            Ok(chunk) => chunk,
            Err(why) => {
                broken = Some(format!("super index entry {i}: {why}"));
                break;
            }
        };
        prev_end = body + size;
        let mut head = [0; 24];
        let head_ok = size >= 24 && {
            src.read_at(body, &mut head)?;
            true
        };
        let longs = le16(&head, 0).unwrap_or(0);
        let index_type = head[3];
        if !head_ok
            || !id.starts_with(b"ix") && !id.ends_with(b"ix")
            || longs != 2
            || index_type != 1
        {
            broken = Some(format!(
                "super index entry {i}: the chunk at byte {} is not a standard index ({})",
                e.offset,
                show(id)
            ));
            break;
        }
        let n = u64::from(le32(&head, 4).unwrap_or(0));
        let base = le64(&head, 12).unwrap_or(0);
        if n > (size - 24) / 8 {
            broken = Some(format!(
                "super index entry {i}: the index at byte {} claims {n} entries but has room for fewer",
                e.offset
            ));
            break;
        }
        if n != u64::from(e.duration) {
            broken = Some(format!(
                "super index entry {i} says {} frames, its index lists {n}",
                e.duration
            ));
        }
        let mut k = 0u64;
        let result = for_each_entry(src, body + 24, n, 8, |entry| {
            let rel = le32(entry, 0).unwrap_or(0);
            let len = le32(entry, 4).unwrap_or(0) & !NOT_KEYFRAME;
            // The base and the offset are both read from the file: add them with care.
            let pos = base
                .checked_add(u64::from(rel))
                .and_then(|p| p.checked_sub(8))
                .ok_or_else(|| {
                    format!(
                        "super index entry {i}: entry {k} of the index at byte {} is invalid",
                        e.offset
                    )
                })?;
            compare.entry(pos, len);
            k += 1;
            Ok(())
        })?;
        if let Err(why) = result {
            broken = Some(why);
            break;
        }
    }
    Ok(match broken {
        Some(why) => Some(format!("the OpenDML index is broken: {why}")),
        None => compare.finish(l.frame_count()),
    })
}

/// Checks the classic index against the first RIFF's frames.
fn check_idx1<R: Read + Seek>(
    src: &mut Src<'_, R>,
    l: &Layout,
    idx1: Chunk,
    ids: [FourCc; 2],
) -> Result<Option<String>, ReadError> {
    let (_, body, size) = match index_chunk(src, idx1.offset)? {
        Ok(chunk) => chunk,
        Err(why) => return Ok(Some(format!("idx1 is broken: {why}"))),
    };
    let first_riff = &l.riffs[0].frames;
    // Offsets count from the movi code; a few writers use file positions.
    let movi_code = l.riffs[0].movi.map_or(0, |(m, _)| m + 8);
    let first_frame = first_riff.first().map(|f| f.chunk.offset);
    let mut base = None;
    let mut compare = Compare::new("idx1", first_riff.iter());
    let mut invalid = None;
    for_each_entry(src, body, size / 16, 16, |e| {
        if !cc(e, 0).is_some_and(|id| ids.contains(&id)) {
            return Ok(());
        }
        let offset = u64::from(le32(e, 8).unwrap_or(0));
        let base = *base.get_or_insert(if Some(offset) == first_frame {
            0
        } else {
            movi_code
        });
        match base.checked_add(offset) {
            Some(pos) => compare.entry(pos, le32(e, 12).unwrap_or(0)),
            None => invalid = Some(format!("idx1 entry {} is invalid", compare.listed)),
        }
        Ok(())
    })?
    .ok();
    Ok(invalid.or_else(|| compare.finish(first_riff.len() as u64)))
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

    let total = l.frame_count();
    let first_riff_frames = l.riffs[0].frames.len() as u64;

    // The OpenDML index.
    let odml_entries = video.super_index.as_ref().map_or(0, |s| s.entries.len());
    if let Some(si) = &video.super_index
        && !si.entries.is_empty()
        && let Some(why) = check_opendml(src, l, &si.entries)?
    {
        problems.push(why);
    }

    // The classic index, of the first RIFF's frames.
    if let Some(idx1) = l.riffs[0].idx1 {
        if let Some(why) = check_idx1(src, l, idx1, video.ids())? {
            problems.push(why);
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
        if n != first_riff_frames && n != total {
            problems.push(format!(
                "the main header says {n} frames, the first RIFF holds {first_riff_frames}"
            ));
        }
    } else {
        problems.push("the header has no main header (avih)".into());
    }

    // The picture size, from the first frame's JPEG.
    let first = l.frames().next().copied();
    if let Some(first) = first.filter(|f| f.jpeg)
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use crate::test_support::frames;
    use crate::writer::{AviConfig, AviWriter};

    fn recording(n: usize) -> Vec<u8> {
        let mut w = AviWriter::new(Cursor::new(Vec::new()), AviConfig::default()).unwrap();
        for (j, t) in frames(&vec![(20, 40_000); n]) {
            w.write_frame(&j, t).unwrap();
        }
        w.finish().unwrap();
        w.into_file().into_inner()
    }

    /// Where the super index's body starts.
    fn indx_body(bytes: &[u8]) -> usize {
        bytes.windows(4).position(|w| w == INDX).unwrap() + 8
    }

    fn problems(bytes: Vec<u8>) -> Vec<String> {
        scan(&mut Cursor::new(bytes), Path::new("x.avi"))
            .unwrap()
            .problems
    }

    #[test]
    fn a_super_index_whose_entries_all_point_at_one_index_is_read_once() {
        let mut bytes = recording(50);
        let at = indx_body(&bytes);
        let first: [u8; 16] = bytes[at + 24..at + 40].try_into().unwrap();
        bytes[at + 4..at + 8].copy_from_slice(&1024u32.to_le_bytes());
        for i in 1..1024 {
            bytes[at + 24 + 16 * i..at + 40 + 16 * i].copy_from_slice(&first);
        }
        let problems = problems(bytes);
        assert!(
            problems.iter().any(|p| p
                .starts_with("the OpenDML index is broken: super index entry 1 points at byte")),
            "{problems:?}"
        );
    }

    #[test]
    fn an_index_base_near_the_end_of_u64_is_an_error_not_an_overflow() {
        let mut bytes = recording(3);
        let ix = bytes.windows(4).position(|w| w == riff::IX00).unwrap();
        // qwBaseOffset: 12 bytes into the body.
        bytes[ix + 8 + 12..ix + 8 + 20].copy_from_slice(&(u64::MAX - 2).to_le_bytes());
        let problems = problems(bytes);
        assert!(
            problems
                .iter()
                .any(|p| p.contains("entry 0 of the index at byte") && p.contains("is invalid")),
            "{problems:?}"
        );
    }

    #[test]
    fn the_listing_is_only_built_when_asked_for() {
        let bytes = recording(3);
        let plain = scan(&mut Cursor::new(&bytes), Path::new("x.avi")).unwrap();
        assert!(plain.items.list.is_empty());
        let listed = scan_listing(&mut Cursor::new(&bytes), Path::new("x.avi")).unwrap();
        assert!(listed.items.list.len() > 5, "{:?}", listed.items);
    }
}
