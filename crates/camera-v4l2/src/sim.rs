//! [`SimDevice`]: a simulated V4L2 capture device that follows the kernel's streaming rules
//! (videobuf2's), for tests and for trying the camera on a machine without V4L2.
//!
//! It offers the formats and sizes it is configured with, adjusts `S_FMT` requests as
//! drivers do, allocates MMAP buffers on `REQBUFS`, fills queued buffers in queue order,
//! answers `DQBUF` with `EAGAIN` when none is filled, and after [`SimHandle::unplug`]
//! answers every call on an open descriptor with `ENODEV` (and `open` with `ENOENT`, until
//! [`SimHandle::replug`]).
//!
//! A call that breaks the rules gets the kernel's errno *and* is recorded as a violation
//! ([`SimStats::violations`]): queueing a buffer twice, `DQBUF` while not streaming,
//! `S_FMT` or `REQBUFS` while busy, and filling a buffer whose bytes someone still holds
//! (which on a real device would change a picture under the encoder). Tests assert there
//! are none.
//!
//! Frames come either on demand ([`Pace::OnDemand`]: waiting with nothing filled fills one
//! buffer at once, and [`SimHandle::deliver`] fills more, on a virtual clock moved by
//! [`SimHandle::advance`]) or at a frame rate in real time ([`Pace::Fps`]). A raw frame's
//! first 8 bytes hold its sequence number ([`sequence_of`]); MJPEG frames are the JPEG given.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use edgecam_core::camera::PixelFormat;

use crate::abi;
use crate::device::{
    BufType, Dequeued, Device, DeviceCaps, DeviceError, FmtDesc, FrameSizes, Mapped, PixFormat,
    Ready, Returned,
};
use crate::negotiate::fourcc_of;

/// How frames arrive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Waiting with no filled buffer fills one at once; [`SimHandle::deliver`] fills more.
    OnDemand,
    /// At this rate, in real time, from `STREAMON`; frames with no queued buffer are dropped.
    Fps(f64),
}

/// One format the simulated device offers.
#[derive(Debug, Clone)]
pub struct SimFormat {
    pub fourcc: u32,
    pub description: String,
    pub sizes: Vec<FrameSizes>,
    /// For MJPEG: the frame every buffer is filled with.
    pub jpeg: Option<Bytes>,
}

impl SimFormat {
    /// A raw format (`PixelFormat` other than JPEG) at discrete `sizes`.
    pub fn raw(format: PixelFormat, sizes: &[(u32, u32)]) -> SimFormat {
        SimFormat {
            fourcc: fourcc_of(format),
            description: format!("{format} (simulated)"),
            sizes: sizes
                .iter()
                .map(|&(width, height)| FrameSizes::Discrete { width, height })
                .collect(),
            jpeg: None,
        }
    }

    /// MJPEG frames, each `jpeg` (whose own size should be `size`).
    pub fn mjpeg(size: (u32, u32), jpeg: impl Into<Bytes>) -> SimFormat {
        SimFormat {
            fourcc: abi::V4L2_PIX_FMT_MJPEG,
            description: "Motion-JPEG (simulated)".to_owned(),
            sizes: vec![FrameSizes::Discrete {
                width: size.0,
                height: size.1,
            }],
            jpeg: Some(jpeg.into()),
        }
    }

    /// A fourcc edgecam does not take (H.264, say), to see it listed and refused.
    pub fn other(fourcc: u32, description: &str, sizes: &[(u32, u32)]) -> SimFormat {
        SimFormat {
            fourcc,
            description: description.to_owned(),
            sizes: sizes
                .iter()
                .map(|&(width, height)| FrameSizes::Discrete { width, height })
                .collect(),
            jpeg: None,
        }
    }
}

/// What the simulated device is.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub driver: String,
    pub card: String,
    /// Multi-planar (`VIDEO_CAPTURE_MPLANE`, one plane), as ISPs are.
    pub mplane: bool,
    pub formats: Vec<SimFormat>,
    pub pace: Pace,
    /// Rows are padded to a multiple of this many bytes (`bytesperline`).
    pub stride_align: u32,
    /// `REQBUFS` grants at least and at most this many buffers.
    pub buffers: (u32, u32),
}

impl SimConfig {
    /// A single-planar webcam offering `formats`, frames on demand, no row padding.
    pub fn new(formats: Vec<SimFormat>) -> SimConfig {
        SimConfig {
            driver: "edgecam-sim".to_owned(),
            card: "Simulated camera".to_owned(),
            mplane: false,
            formats,
            pace: Pace::OnDemand,
            stride_align: 1,
            buffers: (2, 8),
        }
    }

    /// An RV1106-like ISP node: multi-planar NV12 at any size from 32x16 to 2304x1296 in
    /// steps of 8x2, rows padded to 64 bytes.
    pub fn rkisp_mainpath() -> SimConfig {
        SimConfig {
            driver: "rkisp_v7".to_owned(),
            card: "rkisp_mainpath".to_owned(),
            mplane: true,
            formats: vec![SimFormat {
                fourcc: abi::V4L2_PIX_FMT_NV12,
                description: "Y/UV 4:2:0".to_owned(),
                sizes: vec![FrameSizes::Stepwise {
                    min: (32, 16),
                    max: (2304, 1296),
                    step: (8, 2),
                }],
                jpeg: None,
            }],
            pace: Pace::OnDemand,
            stride_align: 64,
            buffers: (2, 8),
        }
    }
}

/// The sequence number a simulated raw frame carries in its first 8 bytes.
pub fn sequence_of(frame: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(frame.get(..8)?.try_into().ok()?))
}

/// What the device has seen, for tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SimStats {
    pub opens: u64,
    pub qbufs: u64,
    pub dqbufs: u64,
    pub streamons: u64,
    /// Frames written into buffers.
    pub filled: u64,
    /// Frames that found no queued buffer.
    pub dropped: u64,
    /// Allocated buffers, and where they are now.
    pub buffers: usize,
    pub queued: usize,
    pub done: usize,
    /// Allocated buffers the application holds (dequeued, or never queued).
    pub with_user: usize,
    pub streaming: bool,
    /// Rules broken by the application (see the module documentation).
    pub violations: Vec<String>,
}

/// A filled buffer waiting to be dequeued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadyFrame {
    pub sequence: u32,
    /// Neither flagged as an error nor empty.
    pub good: bool,
    pub age: Duration,
}

/// A fault for the next matching call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The next frame is filled with `V4L2_BUF_FLAG_ERROR`.
    ErrorFrame,
    /// The next frame is filled with no bytes.
    EmptyFrame,
    /// The next `QBUF` fails with this errno (and queues nothing).
    Qbuf(i32),
    /// The next `DQBUF` fails with this errno (and dequeues nothing).
    Dqbuf(i32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BufState {
    /// With the application.
    User,
    Queued,
    Done {
        sequence: u32,
        bytesused: u32,
        error: bool,
        filled_at: Duration,
    },
}

#[derive(Debug)]
struct SimBuf {
    state: BufState,
    /// The buffer's memory. A lent frame holds a clone of the inner `Arc`, so filling it
    /// while lent is seen (`Arc::get_mut` fails).
    memory: Arc<Mutex<Arc<[u8]>>>,
}

#[derive(Debug)]
struct State {
    config: SimConfig,
    plugged: bool,
    /// Bumped by every unplug: descriptors opened before it answer `ENODEV`.
    generation: u64,
    next_fd: u64,
    /// The descriptor that allocated buffers.
    owner: Option<u64>,
    ty: BufType,
    format: Option<PixFormat>,
    fps: f64,
    buffers: Vec<SimBuf>,
    /// Queued buffers, in the order they were queued (filled in that order).
    queue: VecDeque<u32>,
    /// Filled buffers, in the order they were filled (dequeued in that order).
    done: VecDeque<u32>,
    streaming: bool,
    sequence: u32,
    /// The virtual clock ([`Pace::OnDemand`]).
    now: Duration,
    /// Where real time started ([`Pace::Fps`]), and the next frame's due time.
    epoch: Instant,
    next_due: Duration,
    faults: VecDeque<Fault>,
    stats: SimStats,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

/// Controls a simulated device: open descriptors on it, unplug and replug it, make frames
/// arrive, read what happened. Cheap to clone; all clones are the same device.
#[derive(Debug, Clone)]
pub struct SimHandle(Arc<Shared>);

impl SimHandle {
    pub fn new(config: SimConfig) -> SimHandle {
        let ty = if config.mplane {
            BufType::CaptureMplane
        } else {
            BufType::Capture
        };
        let fps = match config.pace {
            Pace::Fps(fps) => fps,
            Pace::OnDemand => 30.0,
        };
        SimHandle(Arc::new(Shared {
            state: Mutex::new(State {
                config,
                plugged: true,
                generation: 0,
                next_fd: 0,
                owner: None,
                ty,
                format: None,
                fps,
                buffers: Vec::new(),
                queue: VecDeque::new(),
                done: VecDeque::new(),
                streaming: false,
                sequence: 0,
                now: Duration::ZERO,
                epoch: Instant::now(),
                next_due: Duration::ZERO,
                faults: VecDeque::new(),
                stats: SimStats::default(),
            }),
            changed: Condvar::new(),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding it has failed already; its state is still the
        // best account of what happened.
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `open("/dev/videoN")`: `ENOENT` while unplugged.
    pub fn open(&self) -> Result<SimDevice, DeviceError> {
        let mut state = self.lock();
        if !state.plugged {
            return Err(DeviceError::new("open", libc::ENOENT));
        }
        state.next_fd += 1;
        state.stats.opens += 1;
        Ok(SimDevice {
            handle: self.clone(),
            fd: state.next_fd,
            generation: state.generation,
        })
    }

    /// Pulls the plug: every open descriptor answers `ENODEV` from now on, buffers are
    /// gone, `open` fails until [`replug`](SimHandle::replug).
    pub fn unplug(&self) {
        let mut state = self.lock();
        state.plugged = false;
        state.generation += 1;
        state.release();
        self.0.changed.notify_all();
    }

    pub fn replug(&self) {
        self.lock().plugged = true;
        self.0.changed.notify_all();
    }

    /// Fills up to `n` queued buffers now (on demand pace); frames beyond the queued
    /// buffers are dropped, as a driver drops them.
    pub fn deliver(&self, n: usize) {
        let mut state = self.lock();
        for _ in 0..n {
            state.fill_one();
        }
        self.0.changed.notify_all();
    }

    /// Moves the virtual clock on (on demand pace): filled frames get older.
    pub fn advance(&self, by: Duration) {
        self.lock().now += by;
    }

    /// Makes the next matching frame or call fail as `fault` says.
    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push_back(fault);
    }

    pub fn stats(&self) -> SimStats {
        let state = self.lock();
        let mut stats = state.stats.clone();
        stats.buffers = state.buffers.len();
        stats.queued = state.queue.len();
        stats.done = state.done.len();
        stats.with_user = state
            .buffers
            .iter()
            .filter(|b| b.state == BufState::User)
            .count();
        stats.streaming = state.streaming;
        stats
    }

    /// The filled buffers not yet dequeued, oldest first.
    pub fn ready_frames(&self) -> Vec<ReadyFrame> {
        let state = self.lock();
        let now = state.clock();
        state
            .done
            .iter()
            .filter_map(|&i| match state.buffers[i as usize].state {
                BufState::Done {
                    sequence,
                    bytesused,
                    error,
                    filled_at,
                } => Some(ReadyFrame {
                    sequence,
                    good: !error && bytesused > 0,
                    age: now.saturating_sub(filled_at),
                }),
                _ => None,
            })
            .collect()
    }

    /// The sequence number the next frame will get.
    pub fn next_sequence(&self) -> u32 {
        self.lock().sequence
    }
}

impl State {
    fn violation(&mut self, what: String) {
        tracing::warn!(violation = %what, "simulated V4L2 device: rule broken");
        self.stats.violations.push(what);
    }

    /// Frees everything, as closing the owning descriptor (or unplugging) does.
    fn release(&mut self) {
        self.streaming = false;
        self.buffers.clear();
        self.queue.clear();
        self.done.clear();
        self.owner = None;
        self.format = None;
    }

    fn fault(&mut self, matches: impl Fn(&Fault) -> bool) -> Option<Fault> {
        let at = self.faults.iter().position(matches)?;
        self.faults.remove(at)
    }

    fn clock(&self) -> Duration {
        match self.config.pace {
            Pace::OnDemand => self.now,
            Pace::Fps(_) => self.epoch.elapsed(),
        }
    }

    /// Fills the oldest queued buffer with the next frame; drops the frame if none is queued.
    fn fill_one(&mut self) {
        if !self.streaming {
            return;
        }
        let sequence = self.sequence;
        self.sequence = self.sequence.wrapping_add(1);
        let Some(index) = self.queue.pop_front() else {
            self.stats.dropped += 1;
            return;
        };
        let Some(format) = self.format else { return };
        let jpeg = self
            .config
            .formats
            .iter()
            .find(|f| f.fourcc == format.fourcc)
            .and_then(|f| f.jpeg.clone());
        let fault = self.fault(|f| matches!(f, Fault::ErrorFrame | Fault::EmptyFrame));
        let filled_at = self.clock();
        let memory = self.buffers[index as usize].memory.clone();
        let mut guard = memory.lock().unwrap_or_else(|e| e.into_inner());
        let still_held = Arc::get_mut(&mut guard).is_none();
        if still_held {
            // Someone still reads the old bytes: they keep them, the buffer gets new memory.
            let len = guard.len();
            *guard = Arc::from(vec![0; len]);
        }
        let Some(bytes) = Arc::get_mut(&mut guard) else {
            unreachable!("fresh memory has one owner");
        };
        let bytesused = match &jpeg {
            Some(jpeg) => {
                let n = jpeg.len().min(bytes.len());
                bytes[..n].copy_from_slice(&jpeg[..n]);
                n
            }
            None => {
                let used = (format.sizeimage as usize).min(bytes.len());
                let shade = (sequence as u8).wrapping_mul(7);
                bytes[..used].fill(shade);
                if used >= 8 {
                    bytes[..8].copy_from_slice(&u64::from(sequence).to_le_bytes());
                }
                used
            }
        };
        let (bytesused, error) = match fault {
            Some(Fault::EmptyFrame) => (0, false),
            Some(Fault::ErrorFrame) => (bytesused, true),
            _ => (bytesused, false),
        };
        drop(guard);
        if still_held {
            self.violation(format!(
                "buffer {index} was filled while its bytes were still held (queued again too early)"
            ));
        }
        self.buffers[index as usize].state = BufState::Done {
            sequence,
            bytesused: bytesused as u32,
            error,
            filled_at,
        };
        self.done.push_back(index);
        self.stats.filled += 1;
    }

    /// Fills the frames due by now ([`Pace::Fps`]).
    fn produce_due(&mut self) {
        let Pace::Fps(_) = self.config.pace else {
            return;
        };
        let interval = Duration::from_secs_f64(1.0 / self.fps.max(0.1));
        let now = self.epoch.elapsed();
        while self.streaming && self.next_due <= now {
            self.fill_one();
            self.next_due += interval;
        }
    }

    /// A size the device offers for `fourcc`, as near `want` as it has.
    fn adjust(&self, fourcc: u32, (w, h): (u32, u32)) -> (u32, u32) {
        let Some(format) = self.config.formats.iter().find(|f| f.fourcc == fourcc) else {
            return (w, h);
        };
        let distance = |(a, b): (u32, u32)| a.abs_diff(w) as u64 + b.abs_diff(h) as u64;
        format
            .sizes
            .iter()
            .map(|sizes| match *sizes {
                FrameSizes::Discrete { width, height } => (width, height),
                FrameSizes::Stepwise { min, max, step } => {
                    let fit = |v: u32, lo: u32, hi: u32, step: u32| {
                        let v = v.clamp(lo, hi);
                        lo + (v - lo) / step.max(1) * step.max(1)
                    };
                    (fit(w, min.0, max.0, step.0), fit(h, min.1, max.1, step.1))
                }
            })
            .min_by_key(|size| distance(*size))
            .unwrap_or((w, h))
    }
}

/// Bytes per row and per frame of a raw `format` at `size`, rows padded to `align`.
fn raw_layout(format: PixelFormat, (w, h): (u32, u32), align: u32) -> (u32, u32) {
    let align = align.max(1);
    let pad = |row: u32| row.div_ceil(align) * align;
    let planes = format.planes(w, h);
    let Some(&(row, _)) = planes.first() else {
        // JPEG: room for any reasonable frame.
        return (0, (w * h * 2).max(64 * 1024));
    };
    let bytesperline = pad(row as u32);
    let chroma_rows = h.div_ceil(2);
    let size = match format {
        PixelFormat::Nv12 | PixelFormat::Nv21 => bytesperline * h + bytesperline * chroma_rows,
        PixelFormat::I420 => bytesperline * h + 2 * (bytesperline / 2) * chroma_rows,
        _ => bytesperline * h,
    };
    (bytesperline, size)
}

/// A descriptor open on a simulated device. Dropping it is `close`: buffers it allocated
/// are freed.
#[derive(Debug)]
pub struct SimDevice {
    handle: SimHandle,
    fd: u64,
    generation: u64,
}

impl SimDevice {
    /// The device's state, or `ENODEV` for a descriptor from before an unplug.
    fn state(&self, op: &'static str) -> Result<MutexGuard<'_, State>, DeviceError> {
        let state = self.handle.lock();
        if state.generation != self.generation || !state.plugged {
            return Err(DeviceError::new(op, libc::ENODEV));
        }
        Ok(state)
    }

    fn check_type(state: &mut State, op: &'static str, ty: BufType) -> Result<(), DeviceError> {
        if ty != state.ty {
            state.violation(format!(
                "{op} with buffer type {ty:?} on a {:?} device",
                state.ty
            ));
            return Err(DeviceError::new(op, libc::EINVAL));
        }
        Ok(())
    }

    fn owns(&self, state: &State) -> bool {
        state.owner == Some(self.fd)
    }
}

impl Drop for SimDevice {
    fn drop(&mut self) {
        let mut state = self.handle.lock();
        if state.generation == self.generation && state.owner == Some(self.fd) {
            state.release();
        }
    }
}

impl Device for SimDevice {
    fn query_cap(&mut self) -> Result<DeviceCaps, DeviceError> {
        let state = self.state("VIDIOC_QUERYCAP")?;
        let capture = if state.config.mplane {
            abi::V4L2_CAP_VIDEO_CAPTURE_MPLANE
        } else {
            abi::V4L2_CAP_VIDEO_CAPTURE
        };
        Ok(DeviceCaps::new(
            &state.config.driver,
            &state.config.card,
            "platform:sim",
            capture | abi::V4L2_CAP_STREAMING,
        ))
    }

    fn enum_fmt(&mut self, ty: BufType, index: u32) -> Result<Option<FmtDesc>, DeviceError> {
        let state = self.state("VIDIOC_ENUM_FMT")?;
        if ty != state.ty {
            return Ok(None);
        }
        Ok(state.config.formats.get(index as usize).map(|f| {
            let mut desc = FmtDesc::new(f.fourcc, &f.description);
            if f.jpeg.is_some() {
                desc.flags = abi::V4L2_FMT_FLAG_COMPRESSED;
            }
            desc
        }))
    }

    fn enum_framesizes(
        &mut self,
        fourcc: u32,
        index: u32,
    ) -> Result<Option<FrameSizes>, DeviceError> {
        let state = self.state("VIDIOC_ENUM_FRAMESIZES")?;
        Ok(state
            .config
            .formats
            .iter()
            .find(|f| f.fourcc == fourcc)
            .and_then(|f| f.sizes.get(index as usize).copied()))
    }

    fn s_fmt(
        &mut self,
        ty: BufType,
        fourcc: u32,
        size: (u32, u32),
    ) -> Result<PixFormat, DeviceError> {
        let mut state = self.state("VIDIOC_S_FMT")?;
        Self::check_type(&mut state, "VIDIOC_S_FMT", ty)?;
        if !state.buffers.is_empty() {
            state.violation("VIDIOC_S_FMT while buffers are allocated".to_owned());
            return Err(DeviceError::new("VIDIOC_S_FMT", libc::EBUSY));
        }
        // Drivers take any request and answer with what they can do: an unknown format
        // becomes their first one.
        let fourcc = match state.config.formats.iter().find(|f| f.fourcc == fourcc) {
            Some(f) => f.fourcc,
            None => match state.config.formats.first() {
                Some(f) => f.fourcc,
                None => return Err(DeviceError::new("VIDIOC_S_FMT", libc::EINVAL)),
            },
        };
        let size = state.adjust(fourcc, size);
        let format = crate::negotiate::pixel_format_of(fourcc);
        let (bytesperline, sizeimage) = match format {
            Some(format) => raw_layout(format, size, state.config.stride_align),
            None => (size.0 * 2, size.0 * size.1 * 2),
        };
        let answer = PixFormat::new(fourcc, size, bytesperline, sizeimage);
        state.format = Some(answer);
        Ok(answer)
    }

    fn parm(&mut self, ty: BufType, fps: Option<f64>) -> Result<Option<f64>, DeviceError> {
        let mut state = self.state("VIDIOC_S_PARM")?;
        Self::check_type(&mut state, "VIDIOC_S_PARM", ty)?;
        if let Some(fps) = fps {
            if !matches!(state.config.pace, Pace::Fps(_)) || !state.streaming {
                state.fps = fps.clamp(1.0, 120.0);
            }
        }
        Ok(Some(state.fps))
    }

    fn reqbufs(&mut self, ty: BufType, count: u32) -> Result<u32, DeviceError> {
        let mut state = self.state("VIDIOC_REQBUFS")?;
        Self::check_type(&mut state, "VIDIOC_REQBUFS", ty)?;
        if state.owner.is_some_and(|owner| owner != self.fd) {
            return Err(DeviceError::new("VIDIOC_REQBUFS", libc::EBUSY));
        }
        if state.streaming {
            state.violation("VIDIOC_REQBUFS while streaming".to_owned());
            return Err(DeviceError::new("VIDIOC_REQBUFS", libc::EBUSY));
        }
        state.buffers.clear();
        state.queue.clear();
        state.done.clear();
        if count == 0 {
            state.owner = None;
            return Ok(0);
        }
        let Some(format) = state.format else {
            return Err(DeviceError::new("VIDIOC_REQBUFS", libc::EINVAL));
        };
        let (min, max) = state.config.buffers;
        let count = count.clamp(min, max);
        for _ in 0..count {
            state.buffers.push(SimBuf {
                state: BufState::User,
                memory: Arc::new(Mutex::new(vec![0; format.sizeimage as usize].into())),
            });
        }
        state.owner = Some(self.fd);
        Ok(count)
    }

    fn map(&mut self, ty: BufType, index: u32) -> Result<Box<dyn Mapped>, DeviceError> {
        let mut state = self.state("VIDIOC_QUERYBUF")?;
        Self::check_type(&mut state, "VIDIOC_QUERYBUF", ty)?;
        match state.buffers.get(index as usize) {
            Some(buffer) if self.owns(&state) => Ok(Box::new(SimMapped {
                memory: buffer.memory.clone(),
            })),
            _ => {
                state.violation(format!(
                    "VIDIOC_QUERYBUF of buffer {index}, which is not allocated"
                ));
                Err(DeviceError::new("VIDIOC_QUERYBUF", libc::EINVAL))
            }
        }
    }

    fn qbuf(&mut self, ty: BufType, index: u32) -> Result<(), DeviceError> {
        let mut state = self.state("VIDIOC_QBUF")?;
        Self::check_type(&mut state, "VIDIOC_QBUF", ty)?;
        if let Some(Fault::Qbuf(errno)) = state.fault(|f| matches!(f, Fault::Qbuf(_))) {
            return Err(DeviceError::new("VIDIOC_QBUF", errno));
        }
        let owns = self.owns(&state);
        match state.buffers.get_mut(index as usize) {
            Some(buffer) if owns && buffer.state == BufState::User => {
                buffer.state = BufState::Queued;
            }
            Some(buffer) if owns => {
                let was = buffer.state;
                state.violation(format!("VIDIOC_QBUF of buffer {index}, which is {was:?}"));
                return Err(DeviceError::new("VIDIOC_QBUF", libc::EINVAL));
            }
            _ => {
                state.violation(format!(
                    "VIDIOC_QBUF of buffer {index}, which is not allocated"
                ));
                return Err(DeviceError::new("VIDIOC_QBUF", libc::EINVAL));
            }
        }
        state.queue.push_back(index);
        state.stats.qbufs += 1;
        self.handle.0.changed.notify_all();
        Ok(())
    }

    fn dqbuf(&mut self, ty: BufType) -> Result<Option<Dequeued>, DeviceError> {
        let mut state = self.state("VIDIOC_DQBUF")?;
        Self::check_type(&mut state, "VIDIOC_DQBUF", ty)?;
        if let Some(Fault::Dqbuf(errno)) = state.fault(|f| matches!(f, Fault::Dqbuf(_))) {
            return Err(DeviceError::new("VIDIOC_DQBUF", errno));
        }
        if !state.streaming || !self.owns(&state) {
            state.violation("VIDIOC_DQBUF while not streaming".to_owned());
            return Err(DeviceError::new("VIDIOC_DQBUF", libc::EINVAL));
        }
        state.produce_due();
        let Some(index) = state.done.pop_front() else {
            return Ok(None);
        };
        let now = state.clock();
        let buffer = &mut state.buffers[index as usize];
        let BufState::Done {
            sequence,
            bytesused,
            error,
            filled_at,
        } = buffer.state
        else {
            unreachable!("only filled buffers are in `done`");
        };
        buffer.state = BufState::User;
        state.stats.dqbufs += 1;
        Ok(Some(Dequeued {
            index,
            bytesused,
            sequence,
            error,
            age: Some(now.saturating_sub(filled_at)),
        }))
    }

    fn streamon(&mut self, ty: BufType) -> Result<(), DeviceError> {
        let mut state = self.state("VIDIOC_STREAMON")?;
        Self::check_type(&mut state, "VIDIOC_STREAMON", ty)?;
        if state.buffers.is_empty() || !self.owns(&state) {
            state.violation("VIDIOC_STREAMON without buffers".to_owned());
            return Err(DeviceError::new("VIDIOC_STREAMON", libc::EINVAL));
        }
        if !state.streaming {
            state.streaming = true;
            state.stats.streamons += 1;
            state.next_due = state.clock() + Duration::from_secs_f64(1.0 / state.fps.max(0.1));
        }
        Ok(())
    }

    fn streamoff(&mut self, ty: BufType) -> Result<(), DeviceError> {
        let mut state = self.state("VIDIOC_STREAMOFF")?;
        Self::check_type(&mut state, "VIDIOC_STREAMOFF", ty)?;
        if !self.owns(&state) {
            return Ok(());
        }
        state.streaming = false;
        state.queue.clear();
        state.done.clear();
        for buffer in &mut state.buffers {
            buffer.state = BufState::User;
        }
        Ok(())
    }

    fn wait(&mut self, timeout: Duration) -> Result<Ready, DeviceError> {
        let deadline = Instant::now() + timeout;
        let mut state = self.state("poll")?;
        loop {
            if state.generation != self.generation || !state.plugged {
                return Ok(Ready::Error);
            }
            if !state.streaming || !self.owns(&state) {
                return Ok(Ready::Error);
            }
            state.produce_due();
            if !state.done.is_empty() {
                return Ok(Ready::Readable);
            }
            if state.queue.is_empty() {
                // videobuf2 answers POLLERR when nothing is queued.
                return Ok(Ready::Error);
            }
            let wait_until = match state.config.pace {
                Pace::OnDemand => {
                    state.fill_one();
                    continue;
                }
                Pace::Fps(_) => {
                    let due = state.epoch + state.next_due;
                    due.min(deadline)
                }
            };
            let now = Instant::now();
            if now >= deadline {
                return Ok(Ready::Timeout);
            }
            let (guard, _) = self
                .handle
                .0
                .changed
                .wait_timeout(state, wait_until.saturating_duration_since(now))
                .unwrap_or_else(|e| e.into_inner());
            state = guard;
        }
    }
}

/// A simulated buffer's memory, shared with the device.
#[derive(Debug)]
struct SimMapped {
    memory: Arc<Mutex<Arc<[u8]>>>,
}

/// The owner of a lent simulated buffer's [`Bytes`]: the memory first, then `returned`.
#[derive(Debug)]
struct SimLent {
    memory: Arc<[u8]>,
    len: usize,
    _returned: Returned,
}

impl AsRef<[u8]> for SimLent {
    fn as_ref(&self) -> &[u8] {
        &self.memory[..self.len]
    }
}

impl Mapped for SimMapped {
    fn len(&self) -> usize {
        self.memory.lock().map_or(0, |m| m.len())
    }

    fn lend(&self, len: usize, returned: Returned) -> Bytes {
        let memory = self
            .memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let len = len.min(memory.len());
        Bytes::from_owner(SimLent {
            memory,
            len,
            _returned: returned,
        })
    }
}
