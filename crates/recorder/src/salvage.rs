//! The pass over a damaged edgecam recording that [`repair`](crate::repair) plans from: every
//! whole frame in the file, in order, and what lies between them.
//!
//! Unlike [`parse::scan`](crate::parse), which stops at the first thing it cannot read, this
//! pass resynchronises after a damaged chunk header: it looks, two bytes at a time, for the
//! next chunk header that holds a whole JPEG (`00dc`, a size that fits, the payload starting
//! FF D8 and ending FF D9), for
//! the next `RIFF 'AVIX'` segment header, or for the next whole index chunk, and goes on from
//! there. A frame whose header is
//! damaged in one field only is kept with its header rewritten: an id that is wrong where the
//! size leads to exactly one whole JPEG and another chunk header, or a size that cannot be (or
//! is one byte off) where the id is right and the bytes up to the next chunk are one whole JPEG.
//!
//! A frame found by the search need not be followed by another chunk header: that header may be
//! damaged too, and the frame between two damaged headers is as whole as any. `00dc`, a size
//! that fits, and FF D8 and FF D9 exactly where the size puts them are 64 bits of evidence;
//! random bytes or JPEG data do not show them by chance.
//!
//! It only reads, from [`HEADER_LEN`] on: the header before it is rebuilt from scratch. The
//! memory it takes is a few words per frame and per damaged range; the search reads a block
//! at a time.

use std::io::{Read, Seek};

use crate::parse::{Chunk, ReadError, Src};
use crate::riff::{
    self, AVIX, FRAME, FourCc, HEADER_LEN, IDX1, JUNK, LIST, MAX_FRAME_BYTES, MOVI, RIFF, show,
};

/// Stream 0's frame ids: compressed and uncompressed video.
const FRAME_IDS: [FourCc; 2] = [FRAME, *b"00db"];

/// The search for the next chunk reads this many bytes at a time.
const SEARCH_BLOCK: usize = 64 << 10;

/// A whole frame, and whether its chunk header must be rewritten (it was damaged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Kept {
    pub chunk: Chunk,
    pub fix_header: bool,
}

/// A RIFF of the file as found: where it starts, and its frames.
#[derive(Debug, Clone)]
pub(crate) struct Segment {
    pub start: u64,
    /// Where its `LIST 'movi'` is.
    pub movi: u64,
    pub frames: Vec<Kept>,
    /// Where its size field says it ends, when it is whole in the file.
    pub declared_end: Option<u64>,
    /// Its 24-byte `RIFF 'AVIX' LIST 'movi'` header was lost and must be written again.
    pub restore_header: bool,
}

/// A range of the file that holds no whole frame, to be covered by a `JUNK` chunk or cut off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Damage {
    pub start: u64,
    pub end: u64,
    pub what: String,
    /// A frame chunk whose header is whole but whose payload is not a whole JPEG.
    pub blank_frame: bool,
}

/// What the pass found.
#[derive(Debug, Clone)]
pub(crate) struct Salvage {
    pub len: u64,
    pub segments: Vec<Segment>,
    /// Damaged ranges before the last frame, in file order.
    pub damage: Vec<Damage>,
    /// Old index chunks (`ix##`, `idx1`) among the frames: where their ids are.
    pub old_indexes: Vec<u64>,
    /// Why the pass stopped before the end of the file, and where: what follows the last
    /// whole frame there is cut off.
    pub stop: Option<(u64, String)>,
}

/// What the bytes at a chunk position are.
enum Found {
    /// A whole frame chunk.
    Frame(Kept),
    /// A chunk edgecam writes besides frames: `JUNK`, an index.
    Other {
        index: bool,
        end: u64,
    },
    /// A `RIFF 'AVIX'` and its `LIST 'movi'` header.
    Segment {
        size: u32,
    },
    /// A frame chunk whose header and size are right (another chunk follows it) but which
    /// holds no whole JPEG.
    Blank {
        end: u64,
    },
    Damaged(Why),
}

/// What is wrong with a chunk header.
enum Why {
    /// A chunk edgecam writes, longer than what is left of the file.
    PastTheEnd {
        id: FourCc,
        size: u32,
    },
    Other(String),
}

impl Why {
    /// Said of a damaged chunk that a whole frame follows.
    fn damaged(self) -> String {
        match self {
            Why::PastTheEnd { id, size } => {
                format!(
                    "a {} chunk of {size} bytes, more than the file holds",
                    show(id)
                )
            }
            Why::Other(what) => what,
        }
    }
    /// Said of the chunk where the recording ends: no whole frame follows it.
    fn cut(self) -> String {
        match self {
            Why::PastTheEnd { id, size } => {
                format!("the file ends inside a {} chunk of {size} bytes", show(id))
            }
            Why::Other(what) => format!("{what}, and no whole frame follows"),
        }
    }
}

struct Walk<'a, 'b, R> {
    src: &'b mut Src<'a, R>,
    len: u64,
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn cc(b: &[u8]) -> FourCc {
    [b[0], b[1], b[2], b[3]]
}

/// An id edgecam writes in a recording after its header.
fn is_known_id(id: FourCc) -> bool {
    FRAME_IDS.contains(&id)
        || id == JUNK
        || id == IDX1
        || id == RIFF
        || id == LIST
        || (id.starts_with(b"ix") && id[2].is_ascii_digit() && id[3].is_ascii_digit())
}

impl<R: Read + Seek> Walk<'_, '_, R> {
    fn read<const N: usize>(&mut self, pos: u64) -> Result<[u8; N], ReadError> {
        let mut b = [0; N];
        self.src.read_at(pos, &mut b)?;
        Ok(b)
    }

    /// Whether the `size` bytes at `data` are a whole JPEG (start FF D8, end FF D9).
    fn is_jpeg(&mut self, data: u64, size: u64) -> Result<bool, ReadError> {
        if size < 4 || data + size > self.len {
            return Ok(false);
        }
        let first: [u8; 2] = self.read(data)?;
        let last: [u8; 2] = self.read(data + size - 2)?;
        Ok(first == [0xFF, 0xD8] && last == [0xFF, 0xD9])
    }

    /// Whether what is at `pos` (where a chunk ends) is another chunk header edgecam writes,
    /// or the end of the file (a header cut off counts: the cut is what ends the file).
    fn followed_well(&mut self, pos: u64) -> Result<bool, ReadError> {
        if self.len.saturating_sub(pos) < 8 {
            return Ok(true);
        }
        let id: [u8; 4] = self.read(pos)?;
        Ok(is_known_id(id))
    }

    /// Whether a chunk of `size` bytes at `pos` is whole and holds a whole JPEG.
    fn frame_at(&mut self, pos: u64, size: u32) -> Result<bool, ReadError> {
        let size = u64::from(size);
        Ok(size <= MAX_FRAME_BYTES as u64
            && pos + 8 + size <= self.len
            && self.is_jpeg(pos + 8, size)?)
    }

    /// [`frame_at`](Self::frame_at), and followed by another chunk or the end of the file.
    fn whole_frame(&mut self, pos: u64, size: u32) -> Result<bool, ReadError> {
        Ok(self.frame_at(pos, size)?
            && self.followed_well(pos + riff::chunk_len(u64::from(size)))?)
    }

    /// Whether the size of the index chunk `id` at `pos` is what its entries take, as edgecam
    /// writes them: 16 bytes an entry in `idx1`, 24 + 8 an entry in `ix##`. (A damaged size
    /// that happens to end at a later chunk must not swallow the frames in between.)
    fn index_size_fits(&mut self, pos: u64, id: FourCc, size: u32) -> Result<bool, ReadError> {
        if id == IDX1 {
            return Ok(size % 16 == 0);
        }
        if size < 24 || pos + 16 > self.len {
            return Ok(false);
        }
        let n: [u8; 4] = self.read(pos + 12)?;
        Ok(u64::from(size) == 24 + 8 * u64::from(u32::from_le_bytes(n)))
    }

    /// Whether the index chunk at `pos` is whole, of the size its entries take, and followed
    /// by another chunk or the end.
    fn whole_index(&mut self, pos: u64) -> Result<bool, ReadError> {
        let hdr: [u8; 8] = self.read(pos)?;
        let (id, size) = (cc(&hdr), le32(&hdr[4..]));
        let size64 = u64::from(size);
        Ok(pos + 8 + size64 <= self.len
            && self.index_size_fits(pos, id, size)?
            && self.followed_well(pos + riff::chunk_len(size64))?)
    }

    /// Whether the 24 bytes at `pos` open a further RIFF: `RIFF .... AVIX LIST .... movi`.
    fn segment_header(&mut self, pos: u64) -> Result<Option<u32>, ReadError> {
        if self.len.saturating_sub(pos) < 24 {
            return Ok(None);
        }
        let b: [u8; 24] = self.read(pos)?;
        Ok((cc(&b[0..]) == RIFF
            && cc(&b[8..]) == AVIX
            && cc(&b[12..]) == LIST
            && cc(&b[20..]) == MOVI)
            .then(|| le32(&b[4..])))
    }

    /// What is at `pos`, a position a chunk header is expected at.
    fn classify(&mut self, pos: u64) -> Result<Found, ReadError> {
        let hdr: [u8; 8] = self.read(pos)?;
        let (id, size) = (cc(&hdr), le32(&hdr[4..]));
        let size64 = u64::from(size);
        let end = pos + riff::chunk_len(size64);
        if FRAME_IDS.contains(&id) {
            if size64 <= MAX_FRAME_BYTES as u64
                && pos + 8 + size64 <= self.len
                && self.is_jpeg(pos + 8, size64)?
            {
                return Ok(Found::Frame(Kept {
                    chunk: Chunk { offset: pos, size },
                    fix_header: false,
                }));
            }
            if pos + 8 + size64 <= self.len && self.followed_well(end)? {
                return Ok(Found::Blank { end });
            }
            return Ok(Found::Damaged(if pos + 8 + size64 > self.len {
                Why::PastTheEnd { id, size }
            } else {
                Why::Other(format!(
                    "a {} chunk of {size} bytes that holds no whole JPEG and is not followed by another chunk",
                    show(id)
                ))
            }));
        }
        if id == RIFF
            && let Some(size) = self.segment_header(pos)?
        {
            return Ok(Found::Segment { size });
        }
        let index = id == IDX1 || id.starts_with(b"ix");
        if (id == JUNK || index && is_known_id(id) && self.index_size_fits(pos, id, size)?)
            && pos + 8 + size64 <= self.len
            && self.followed_well(end)?
        {
            return Ok(Found::Other { index, end });
        }
        // A frame whose id alone is damaged: its size leads to a whole JPEG and a chunk.
        if self.whole_frame(pos, size)? {
            return Ok(Found::Frame(Kept {
                chunk: Chunk { offset: pos, size },
                fix_header: true,
            }));
        }
        if is_known_id(id) && pos + 8 + size64 > self.len {
            return Ok(Found::Damaged(Why::PastTheEnd { id, size }));
        }
        Ok(Found::Damaged(Why::Other(if riff::is_fourcc(id) {
            format!("an unexpected {} chunk of {size} bytes", show(id))
        } else {
            format!("\"{}\" is not a chunk id", show(id))
        })))
    }

    /// The first position from `from` on, in steps of two, where a whole frame chunk or a
    /// further RIFF starts.
    fn resync(&mut self, from: u64) -> Result<Option<u64>, ReadError> {
        let mut block = Vec::new();
        let mut at = from;
        while at + 8 <= self.len {
            // Blocks overlap by 4 bytes so that an id across a boundary is seen.
            let n = (self.len - at).min(SEARCH_BLOCK as u64);
            // n <= SEARCH_BLOCK: fits usize.
            block.resize(n as usize, 0);
            self.src.read_at(at, &mut block)?;
            let mut i = 0;
            while i + 4 <= block.len() {
                let id = cc(&block[i..]);
                let q = at + i as u64;
                if q + 8 > self.len {
                    return Ok(None);
                }
                if FRAME_IDS.contains(&id) {
                    let size: [u8; 4] = self.read(q + 4)?;
                    if self.frame_at(q, u32::from_le_bytes(size))? {
                        return Ok(Some(q));
                    }
                } else if id == RIFF && self.segment_header(q)?.is_some()
                    || (id == IDX1 || is_known_id(id) && id.starts_with(b"ix"))
                        && self.whole_index(q)?
                {
                    return Ok(Some(q));
                }
                i += 2;
            }
            if n < SEARCH_BLOCK as u64 {
                return Ok(None);
            }
            at += n - 4;
        }
        Ok(None)
    }
}

/// Walks the recording in `src` from its first frame on. `first_riff_size` is the first
/// RIFF's size field.
pub(crate) fn salvage<R: Read + Seek>(
    src: &mut Src<'_, R>,
    first_riff_size: u32,
) -> Result<Salvage, ReadError> {
    let len = src.len;
    let declared = |start: u64, size: u32| Some(start + 8 + u64::from(size)).filter(|&e| e <= len);
    let mut s = Salvage {
        len,
        segments: vec![Segment {
            start: 0,
            movi: riff::FIRST_MOVI,
            frames: Vec::new(),
            declared_end: declared(0, first_riff_size),
            restore_header: false,
        }],
        damage: Vec::new(),
        old_indexes: Vec::new(),
        stop: None,
    };
    let mut w = Walk { src, len };
    let mut pos = HEADER_LEN;
    // Each round moves `pos` forward by 8 bytes at least, so this ends.
    while pos < len {
        if len - pos < 8 {
            s.stop = Some((pos, "a chunk header cut off by the end of the file".into()));
            break;
        }
        let seg = s.segments.len() - 1;
        match w.classify(pos)? {
            Found::Frame(kept) => {
                s.segments[seg].frames.push(kept);
                pos = kept.chunk.end().min(len);
            }
            Found::Other { index, end } => {
                if index {
                    s.old_indexes.push(pos);
                }
                pos = end.min(len);
            }
            Found::Segment { size } => {
                s.segments.push(Segment {
                    start: pos,
                    movi: pos + 12,
                    frames: Vec::new(),
                    declared_end: declared(pos, size),
                    restore_header: false,
                });
                pos += 24;
            }
            Found::Blank { end } => {
                s.damage.push(Damage {
                    start: pos,
                    end,
                    what: "a frame chunk that holds no whole JPEG (zeros left by a power cut, say)"
                        .into(),
                    blank_frame: true,
                });
                pos = end;
            }
            Found::Damaged(what) => {
                let Some(q) = w.resync(pos + 8)? else {
                    s.stop = Some((pos, what.cut()));
                    break;
                };
                damaged(&mut w, &mut s, pos, q, what.damaged())?;
                pos = q;
            }
        }
    }
    Ok(s)
}

/// Deals with the damaged chunk header at `p`, the next good chunk being at `q`: keeps the
/// frame it was when only its size is wrong, restores the RIFF that started inside, and notes
/// the rest as damage.
fn damaged<R: Read + Seek>(
    w: &mut Walk<'_, '_, R>,
    s: &mut Salvage,
    p: u64,
    q: u64,
    what: String,
) -> Result<(), ReadError> {
    // The id is right and the bytes up to `q` are one whole JPEG (and its pad byte): only
    // the size was damaged. `q - p` is even, so the JPEG ends at `q` or, when its length is
    // odd, at `q - 1` with a zero pad byte.
    //
    // Damage over several frames can look the same (the first's start, the last's end), so
    // the old size must show that it was damaged on its own: one that cannot be (under 4
    // bytes, past the end of the file), or one that differs from the size found in one byte.
    let hdr: [u8; 8] = w.read(p)?;
    let (id, old) = (cc(&hdr), le32(&hdr[4..]));
    let body = q - p - 8;
    if FRAME_IDS.contains(&id) && body >= 4 {
        let pad: [u8; 1] = w.read(q - 1)?;
        let size = if pad == [0] { body - 1 } else { body };
        let impossible = old < 4 || p + 8 + u64::from(old) > w.len;
        let one_byte_off = u32::try_from(size).is_ok_and(|size| {
            let differ = size
                .to_le_bytes()
                .iter()
                .zip(old.to_le_bytes())
                .filter(|(a, b)| **a != *b)
                .count();
            differ == 1
        });
        if (impossible || one_byte_off)
            && size <= MAX_FRAME_BYTES as u64
            && w.is_jpeg(p + 8, size)?
            && let Ok(size) = u32::try_from(size)
        {
            let seg = s.segments.len() - 1;
            s.segments[seg].frames.push(Kept {
                chunk: Chunk { offset: p, size },
                fix_header: true,
            });
            return Ok(());
        }
    }
    // The RIFF being walked says it ends inside the damage, where a frame follows: that is
    // where the next RIFF's header was. It is written again if the RIFF's index fits before it.
    let seg = s.segments.last().map(|g| {
        let last = g.frames.last().copied();
        (g.start, g.movi, g.declared_end, last, g.frames.len())
    });
    if let Some((start, movi, Some(e), last, frames)) = seg
        && e >= p
        && e % 2 == 0
        && (q == e + 24 || q >= e + 32)
    {
        let index_at = last.map_or(movi + 12, |k| k.chunk.end());
        let needed = riff::ix_len(frames)
            + if start == 0 {
                riff::idx1_len(frames)
            } else {
                0
            };
        let room = e.saturating_sub(index_at);
        let next: [u8; 4] = w.read(q)?;
        if FRAME_IDS.contains(&next) && (room == needed || room >= needed + 8) {
            s.damage.push(Damage {
                start: p,
                end: q,
                what: format!("{what}, and the header of the RIFF at byte {e} (written again)"),
                blank_frame: false,
            });
            s.segments.push(Segment {
                start: e,
                movi: e + 12,
                frames: Vec::new(),
                declared_end: None,
                restore_header: true,
            });
            return Ok(());
        }
    }
    s.damage.push(Damage {
        start: p,
        end: q,
        what,
        blank_frame: false,
    });
    Ok(())
}
