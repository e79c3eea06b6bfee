//! [`FramePool`]: frame buffers that cameras hand out as [`Bytes`] and write into again once
//! nothing holds them any more.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

/// How many handed-out frames a pool keeps to take back. Downstream, the newest frame may still
/// be waiting to be encoded or being encoded; the one before it is free by the time the camera
/// makes a frame more. A frame held longer (a bench keeping every frame) is simply not reused.
const KEEP: usize = 2;

/// Buffers for a camera that makes frames of (mostly) one size: a raw pipe, the synthetic
/// camera. A fresh frame-sized allocation for every frame costs page faults (the allocator maps
/// and unmaps buffers this large), more than reading or drawing the frame; with a pool, a camera
/// allocates a few buffers and then none. Sans-IO: the camera asks for a buffer, fills it and
/// hands it out.
///
/// Each frame handed out carries a note of the camera's (`T`), given back with its buffer: what
/// the buffer holds, so that a camera can redraw only what changed since.
#[derive(Debug)]
pub struct FramePool<T = ()> {
    /// The last frames handed out, oldest first, with their notes.
    handed: VecDeque<(Bytes, T)>,
}

impl<T> Default for FramePool<T> {
    fn default() -> Self {
        FramePool {
            handed: VecDeque::new(),
        }
    }
}

impl<T> FramePool<T> {
    pub fn new() -> FramePool<T> {
        FramePool::default()
    }

    /// A buffer with room for `len` bytes for the next frame: the oldest handed-out frame's, with
    /// its note, when nothing else holds it any more; else a new, empty one and `None`. A reused
    /// buffer still holds that frame's bytes, so that a camera that writes every byte need not
    /// clear it first; `clear` it to append.
    pub fn buffer(&mut self, len: usize) -> (BytesMut, Option<T>) {
        if self.handed.len() >= KEEP
            && let Some((oldest, note)) = self.handed.pop_front()
            && let Ok(buf) = oldest.try_into_mut()
            && buf.capacity() >= len
        {
            return (buf, Some(note));
        }
        (BytesMut::with_capacity(len), None)
    }

    /// `buf` as a frame, remembered with `note` so that its buffer can be taken back by
    /// [`Self::buffer`].
    pub fn hand_out(&mut self, buf: BytesMut, note: T) -> Bytes {
        let frame = buf.freeze();
        self.handed.push_back((frame.clone(), note));
        frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(pool: &mut FramePool<u8>, byte: u8) -> Bytes {
        let (mut buf, _) = pool.buffer(8);
        buf.clear();
        buf.resize(8, byte);
        pool.hand_out(buf, byte)
    }

    #[test]
    fn buffers_nobody_holds_take_turns() {
        let mut pool = FramePool::new();
        let seen: Vec<usize> = (0..6)
            .map(|i| frame(&mut pool, i).as_ptr() as usize)
            .collect();
        // Each frame is dropped at once; the newest is not taken back (downstream may still be
        // encoding it), the one before is: two buffers take turns.
        for (i, ptr) in seen.iter().enumerate().skip(2) {
            assert_eq!(*ptr, seen[i - 2], "{seen:?}");
        }
        assert_ne!(seen[1], seen[0], "{seen:?}");
    }

    #[test]
    fn a_held_frame_is_never_written_into() {
        let mut pool = FramePool::new();
        let held: Vec<Bytes> = (0..6).map(|i| frame(&mut pool, i)).collect();
        let mut ptrs: Vec<usize> = held.iter().map(|f| f.as_ptr() as usize).collect();
        ptrs.sort_unstable();
        ptrs.dedup();
        assert_eq!(ptrs.len(), 6, "a held frame's buffer was reused");
        for (i, f) in held.iter().enumerate() {
            assert!(f.iter().all(|&b| usize::from(b) == i), "frame {i}: {f:?}");
        }
    }

    #[test]
    fn a_reused_buffer_keeps_its_bytes_and_note_and_a_small_one_is_not_reused() {
        let mut pool = FramePool::new();
        for i in 0..3 {
            frame(&mut pool, i);
        }
        // Frames 1 and 2 are kept; frame 1's buffer is taken back, as it was, with its note.
        let (reused, note) = pool.buffer(8);
        assert_eq!((&reused[..], note), (&[1; 8][..], Some(1)), "frame 1");
        pool.hand_out(reused, 3);
        // Frame 2's buffer has 8 bytes of room: too small for 64.
        let (bigger, note) = pool.buffer(64);
        assert!(bigger.is_empty() && bigger.capacity() >= 64 && note.is_none());
    }
}
