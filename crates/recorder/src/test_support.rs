//! What the unit tests share: small synthetic JPEGs, and in-memory files that run out of space,
//! fail on cue, or hold gigabytes of repeated frames in a few megabytes.

use std::collections::BTreeMap;
use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};
use std::sync::Arc;

use edgecam_core::time::Timestamp;

use crate::writer::AviFile;

/// When the synthetic recordings start.
pub const T0: Timestamp = Timestamp(1_700_000_000_000_000);

/// A byte string that passes for a baseline JPEG of `width`x`height`: SOI, SOF0, SOS,
/// `payload_len` bytes derived from `seed`, EOI. Not decodable, which the tests here do not
/// need (the ffmpeg tests use real ones).
pub fn jpeg(width: u16, height: u16, payload_len: usize, seed: u64) -> Vec<u8> {
    let mut j = vec![0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x0B, 0x08];
    j.extend_from_slice(&height.to_be_bytes());
    j.extend_from_slice(&width.to_be_bytes());
    j.extend_from_slice(&[0x01, 0x01, 0x11, 0x00]);
    j.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00]);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for _ in 0..payload_len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        j.push(x as u8);
    }
    j.extend_from_slice(&[0xFF, 0xD9]);
    j
}

/// Frames of 64x48 with the given payload sizes and gaps (in microseconds) between capture
/// times, the first at [`T0`].
pub fn frames(spec: &[(usize, u64)]) -> Vec<(Vec<u8>, Timestamp)> {
    let mut t = T0;
    spec.iter()
        .enumerate()
        .map(|(i, &(len, gap))| {
            if i > 0 {
                t = Timestamp(t.0 + gap);
            }
            (jpeg(64, 48, len, i as u64), t)
        })
        .collect()
}

/// A file in memory that holds at most `capacity` bytes (a write past that writes what fits,
/// then fails with `StorageFull`, as a full disk does) and, when `fail_after` is set, fails
/// every write with an I/O error once that many bytes were written in all.
#[derive(Debug)]
pub struct FaultyFile {
    data: Cursor<Vec<u8>>,
    capacity: u64,
    fail_after: Option<u64>,
    written: u64,
}

impl FaultyFile {
    pub fn with_capacity(capacity: u64) -> Self {
        FaultyFile {
            data: Cursor::new(Vec::new()),
            capacity,
            fail_after: None,
            written: 0,
        }
    }

    pub fn failing_after(bytes: u64) -> Self {
        FaultyFile {
            fail_after: Some(bytes),
            ..FaultyFile::with_capacity(u64::MAX)
        }
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.data.into_inner()
    }
}

impl Write for FaultyFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut n = buf.len() as u64;
        if let Some(budget) = self.fail_after {
            if self.written >= budget {
                return Err(io::Error::other("injected I/O error"));
            }
            n = n.min(budget - self.written);
        }
        let pos = self.data.position();
        let room = self.capacity.saturating_sub(pos);
        n = n.min(room);
        if n == 0 && !buf.is_empty() {
            return Err(io::Error::from(io::ErrorKind::StorageFull));
        }
        let n = self.data.write(&buf[..n as usize])?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for FaultyFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.data.seek(pos)
    }
}

impl Read for FaultyFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.data.read(buf)
    }
}

impl AviFile for FaultyFile {
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        if len > self.capacity {
            return Err(io::Error::from(io::ErrorKind::StorageFull));
        }
        AviFile::set_len(&mut self.data, len)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A file in memory where a large write of the same bytes as the previous large write is
/// stored once: a recording of many gigabytes of one repeated frame fits in memory, to test
/// offsets past 4 GiB without writing them to disk. Only the writes the AVI writer makes
/// are supported: large ones at the end, small ones anywhere inside a small earlier write
/// or at the end.
#[derive(Debug, Default)]
pub struct DedupFile {
    extents: BTreeMap<u64, Arc<Vec<u8>>>,
    len: u64,
    pos: u64,
    last_large: Option<Arc<Vec<u8>>>,
}

const LARGE: usize = 64 << 10;

impl Write for DedupFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (pos, n) = (self.pos, buf.len() as u64);
        if buf.is_empty() {
            return Ok(0);
        }
        // Inside an earlier small write: change it.
        if let Some((&start, extent)) = self.extents.range_mut(..=pos).next_back()
            && pos < start + extent.len() as u64
        {
            let at = (pos - start) as usize;
            if extent.len() >= LARGE || at + buf.len() > extent.len() {
                return Err(io::Error::other("DedupFile: unsupported overwrite"));
            }
            Arc::make_mut(extent)[at..at + buf.len()].copy_from_slice(buf);
        } else {
            if pos != self.len {
                return Err(io::Error::other("DedupFile: writes must append"));
            }
            let data = match &self.last_large {
                Some(last) if buf.len() >= LARGE && last.as_slice() == buf => Arc::clone(last),
                _ => Arc::new(buf.to_vec()),
            };
            if buf.len() >= LARGE {
                self.last_large = Some(Arc::clone(&data));
            }
            self.extents.insert(pos, data);
            self.len = pos + n;
        }
        self.pos += n;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for DedupFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.pos = sought(self.pos, self.len, pos);
        Ok(self.pos)
    }
}

impl Read for DedupFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some((&start, extent)) = self.extents.range(..=self.pos).next_back() else {
            return Ok(0);
        };
        let at = (self.pos - start) as usize;
        if at >= extent.len() {
            return Ok(0);
        }
        let n = buf.len().min(extent.len() - at);
        buf[..n].copy_from_slice(&extent[at..at + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl AviFile for DedupFile {
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        if len == self.len {
            Ok(())
        } else {
            Err(io::Error::other("DedupFile: set_len is not supported"))
        }
    }
    fn sync_data(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A file that keeps nothing: only its length and position, to write millions of frames
/// without holding them.
#[derive(Debug, Default)]
pub struct NullFile {
    len: u64,
    pos: u64,
}

impl Write for NullFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pos += buf.len() as u64;
        self.len = self.len.max(self.pos);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for NullFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.pos = sought(self.pos, self.len, pos);
        Ok(self.pos)
    }
}

impl AviFile for NullFile {
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.len = len;
        Ok(())
    }
    fn sync_data(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Where a seek from `pos` in a file of `len` bytes lands (saturating, as a test file may).
fn sought(pos: u64, len: u64, to: SeekFrom) -> u64 {
    match to {
        SeekFrom::Start(p) => p,
        SeekFrom::End(d) => len.saturating_add_signed(d),
        SeekFrom::Current(d) => pos.saturating_add_signed(d),
    }
}
