//! The buffer ring: MMAP buffers cycling between the driver and us, and the newest frame
//! lent out without a copy.
//!
//! Each buffer is in one place: queued (with the driver, to be filled or filled and not yet
//! dequeued), ours (dequeued, or come back, and to be queued again at the next frame), or
//! lent (its bytes are out as a [`Bytes`]; dropping the last clone sends its index back).
//!
//! The rules:
//! - **Newest frame**: [`Ring::next`] dequeues every filled buffer and keeps only the newest;
//!   the older ones are queued again (ustreamer's way). Frames flagged as errors, empty
//!   frames and the first `skip` frames after stream-on are queued again unseen.
//! - **A stale newest frame is not served**: if the newest frame is older than
//!   `stale_after` (the driver filled every buffer while nobody asked, and then dropped
//!   frames), it is queued again and the next frame is waited for, once per call.
//! - **Buffers come back only when nothing reads them**: a lent buffer is queued again at the
//!   first `next` after its last `Bytes` is dropped, never before.
//! - **The driver never runs dry**: at most `max_lent` buffers (all but two, at least one)
//!   are lent at once; when that many are out (bytes shared downstream, as `--passthrough
//!   untouched` does), the newest frame is copied instead and its buffer queued again at
//!   once. Should none be queued all the same, `next` waits for one to come back, at most
//!   until its timeout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::device::{BufType, Dequeued, Device, DeviceError, Mapped, Ready, Returned};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Queued,
    Ours,
    Lent,
}

#[derive(Debug)]
struct Slot {
    mapped: Box<dyn Mapped>,
    state: State,
}

/// What [`Ring::next`] hands out.
#[derive(Debug)]
pub struct RingFrame {
    /// The picture: the buffer's own memory (lent), or a copy of it.
    pub bytes: Bytes,
    /// The driver's frame counter.
    pub sequence: u32,
    /// Whether `bytes` is the mapped buffer itself (not a copy).
    pub lent: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RingError {
    /// The device is gone (`ENODEV`, `EIO`, or `POLLERR` with nothing to dequeue).
    #[error("the device is gone")]
    Gone(#[source] DeviceError),
    /// No frame within the timeout.
    #[error("no frame came within {0:.1?}")]
    Stalled(Duration),
    /// The camera is closing: the wait was given up.
    #[error("the camera is closing")]
    Cancelled,
    /// An ioctl failed otherwise; no buffer is lost (it is retried at the next frame).
    #[error(transparent)]
    Device(DeviceError),
}

impl From<DeviceError> for RingError {
    fn from(e: DeviceError) -> RingError {
        if e.is_gone() {
            RingError::Gone(e)
        } else {
            RingError::Device(e)
        }
    }
}

/// What the ring did, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RingStats {
    /// Frames handed out as the buffer itself.
    pub lent: u64,
    /// Frames copied because `max_lent` buffers were out.
    pub copied: u64,
    /// Frames queued again unseen because a newer one was ready.
    pub replaced: u64,
    /// Frames flagged as errors, or empty.
    pub bad: u64,
    /// Frames dropped after stream-on (`skip`).
    pub skipped: u64,
    /// Newest frames too old to serve.
    pub stale: u64,
}

/// The longest a single wait lasts, so that a closing camera is noticed soon even while the
/// device delivers nothing.
const WAIT_SLICE: Duration = Duration::from_millis(100);

/// Where the buffers are: (queued, ours, lent).
#[cfg(test)]
pub type Accounting = (usize, usize, usize);

#[derive(Debug)]
pub struct Ring {
    ty: BufType,
    slots: Vec<Slot>,
    returned_tx: mpsc::Sender<u32>,
    returned: mpsc::Receiver<u32>,
    skip: u32,
    max_lent: usize,
    stale_after: Duration,
    stats: RingStats,
}

impl Ring {
    /// Requests `count` MMAP buffers, maps and queues them all, and starts streaming. The
    /// first `skip` frames will be dropped.
    pub fn start(
        device: &mut dyn Device,
        ty: BufType,
        count: u32,
        skip: u32,
        stale_after: Duration,
    ) -> Result<Ring, DeviceError> {
        let granted = device.reqbufs(ty, count)?;
        if granted < 2 {
            let _ = device.reqbufs(ty, 0);
            return Err(DeviceError::new(
                "VIDIOC_REQBUFS (the driver granted fewer than 2 buffers)",
                libc::ENOMEM,
            ));
        }
        let (returned_tx, returned) = mpsc::channel();
        let mut ring = Ring {
            ty,
            slots: Vec::with_capacity(granted as usize),
            returned_tx,
            returned,
            skip,
            max_lent: (granted as usize).saturating_sub(2).max(1),
            stale_after,
            stats: RingStats::default(),
        };
        for index in 0..granted {
            let mapped = device.map(ty, index)?;
            ring.slots.push(Slot {
                mapped,
                state: State::Ours,
            });
        }
        ring.queue_ours(device)?;
        device.streamon(ty)?;
        Ok(ring)
    }

    pub fn stats(&self) -> RingStats {
        self.stats
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Where the buffers are, after taking in those that came back.
    #[cfg(test)]
    pub fn accounting(&mut self) -> Accounting {
        self.collect_returns();
        let count = |state| self.slots.iter().filter(|s| s.state == state).count();
        (count(State::Queued), count(State::Ours), count(State::Lent))
    }

    /// Stops streaming and frees the buffers (errors are of no use then: the device may be
    /// gone). Bytes still lent stay valid: their mappings live as long as they do.
    pub fn stop(self, device: &mut dyn Device) {
        let _ = device.streamoff(self.ty);
        let ty = self.ty;
        drop(self);
        let _ = device.reqbufs(ty, 0);
    }

    /// Takes back the buffers whose bytes were dropped.
    fn collect_returns(&mut self) {
        while let Ok(index) = self.returned.try_recv() {
            self.take_back(index);
        }
    }

    fn take_back(&mut self, index: u32) {
        match self.slots.get_mut(index as usize) {
            Some(slot) if slot.state == State::Lent => slot.state = State::Ours,
            other => {
                tracing::debug!(index, state = ?other.map(|s| s.state), "a buffer came back that was not lent")
            }
        }
    }

    /// Queues every buffer that is ours. A failure leaves the rest ours, for the next try.
    fn queue_ours(&mut self, device: &mut dyn Device) -> Result<(), DeviceError> {
        for (index, slot) in self.slots.iter_mut().enumerate() {
            if slot.state == State::Ours {
                device.qbuf(self.ty, index as u32)?;
                slot.state = State::Queued;
            }
        }
        Ok(())
    }

    fn count(&self, state: State) -> usize {
        self.slots.iter().filter(|s| s.state == state).count()
    }

    /// The newest frame, waiting at most `timeout` for one, or until `cancelled` is set
    /// (looked at every [`WAIT_SLICE`]).
    pub fn next(
        &mut self,
        device: &mut dyn Device,
        timeout: Duration,
        cancelled: &AtomicBool,
    ) -> Result<RingFrame, RingError> {
        let deadline = Instant::now() + timeout;
        let mut stale_checked = false;
        loop {
            if cancelled.load(Ordering::Relaxed) {
                return Err(RingError::Cancelled);
            }
            self.collect_returns();
            self.queue_ours(device)?;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RingError::Stalled(timeout));
            }
            if self.count(State::Queued) == 0 {
                // Everything is lent: wait for a buffer to come back.
                match self.returned.recv_timeout(left.min(WAIT_SLICE)) {
                    Ok(index) => self.take_back(index),
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    // The ring holds a sender itself, so this cannot happen.
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        return Err(RingError::Stalled(timeout));
                    }
                }
                continue;
            }
            let ready = device.wait(left.min(WAIT_SLICE))?;
            if ready == Ready::Timeout {
                continue;
            }
            let newest = self.drain(device)?;
            let Some(newest) = newest else {
                if ready == Ready::Error {
                    return Err(RingError::Gone(DeviceError::new(
                        "poll (POLLERR with no buffer to dequeue)",
                        libc::EIO,
                    )));
                }
                continue;
            };
            if !stale_checked && newest.age.is_some_and(|age| age > self.stale_after) {
                stale_checked = true;
                self.stats.stale += 1;
                continue;
            }
            // The older frames go back to the driver now, not at the next call: it keeps
            // every buffer it can fill. A failure here shows again at the next call.
            let lend = self.count(State::Lent) < self.max_lent;
            self.slots[newest.index as usize].state = State::Lent;
            let frame = self.hand_out(newest, lend);
            if !lend {
                // The copy's buffer came back already: it goes to the driver with the rest.
                self.collect_returns();
            }
            let _ = self.queue_ours(device);
            return Ok(frame);
        }
    }

    /// Dequeues every filled buffer; returns the newest good one, leaving the rest ours.
    fn drain(&mut self, device: &mut dyn Device) -> Result<Option<Dequeued>, RingError> {
        let mut newest: Option<Dequeued> = None;
        while let Some(buffer) = device.dqbuf(self.ty)? {
            let Some(slot) = self.slots.get_mut(buffer.index as usize) else {
                return Err(RingError::Device(DeviceError::new(
                    "VIDIOC_DQBUF (an index past the buffers)",
                    libc::EINVAL,
                )));
            };
            slot.state = State::Ours;
            if buffer.error || buffer.bytesused == 0 {
                self.stats.bad += 1;
                continue;
            }
            if self.skip > 0 {
                self.skip -= 1;
                self.stats.skipped += 1;
                continue;
            }
            if newest.replace(buffer).is_some() {
                self.stats.replaced += 1;
            }
        }
        Ok(newest)
    }

    /// Lends the buffer `frame` is in (marked lent already), or copies it and lets it come
    /// back at once.
    fn hand_out(&mut self, frame: Dequeued, lend: bool) -> RingFrame {
        let slot = &self.slots[frame.index as usize];
        let returned = Returned::new(frame.index, self.returned_tx.clone());
        let bytes = slot.mapped.lend(frame.bytesused as usize, returned);
        if lend {
            self.stats.lent += 1;
            RingFrame {
                bytes,
                sequence: frame.sequence,
                lent: true,
            }
        } else {
            // Dropping the lent bytes right after the copy sends the buffer back.
            let copy = Bytes::copy_from_slice(&bytes);
            drop(bytes);
            self.stats.copied += 1;
            RingFrame {
                bytes: copy,
                sequence: frame.sequence,
                lent: false,
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
