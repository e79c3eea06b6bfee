//! The seam between the camera and the kernel: [`Device`], one method per ioctl we use, in
//! safe types. The real device (`sys.rs`, the only unsafe code) and the simulated one
//! ([`SimDevice`](crate::SimDevice)) implement it; everything above it is safe code.

use std::fmt;
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;

use crate::abi;

/// Which V4L2 capture API a device speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufType {
    /// `V4L2_BUF_TYPE_VIDEO_CAPTURE`: webcams (uvcvideo) and most drivers.
    Capture,
    /// `V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE`: ISPs such as Rockchip's `rkisp_mainpath`.
    CaptureMplane,
}

impl BufType {
    pub fn raw(self) -> u32 {
        match self {
            BufType::Capture => abi::V4L2_BUF_TYPE_VIDEO_CAPTURE,
            BufType::CaptureMplane => abi::V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE,
        }
    }
}

/// What `VIDIOC_QUERYCAP` says.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeviceCaps {
    pub driver: String,
    pub card: String,
    pub bus_info: String,
    /// The node's own capabilities (`device_caps`, or `capabilities` from old drivers).
    pub caps: u32,
}

impl DeviceCaps {
    pub fn new(driver: &str, card: &str, bus_info: &str, caps: u32) -> DeviceCaps {
        DeviceCaps {
            driver: driver.to_owned(),
            card: card.to_owned(),
            bus_info: bus_info.to_owned(),
            caps,
        }
    }

    /// The capture API to use: single-planar where the node has it, else multi-planar;
    /// `None` for a node that captures no video (metadata, output, ISP parameters).
    pub fn capture_type(&self) -> Option<BufType> {
        if self.caps & abi::V4L2_CAP_VIDEO_CAPTURE != 0 {
            Some(BufType::Capture)
        } else if self.caps & abi::V4L2_CAP_VIDEO_CAPTURE_MPLANE != 0 {
            Some(BufType::CaptureMplane)
        } else {
            None
        }
    }

    /// Whether it streams with `mmap` buffers (`V4L2_CAP_STREAMING`).
    pub fn streaming(&self) -> bool {
        self.caps & abi::V4L2_CAP_STREAMING != 0
    }
}

/// One `VIDIOC_ENUM_FMT` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FmtDesc {
    pub fourcc: u32,
    pub description: String,
    /// `V4L2_FMT_FLAG_*`.
    pub flags: u32,
}

impl FmtDesc {
    pub fn new(fourcc: u32, description: &str) -> FmtDesc {
        FmtDesc {
            fourcc,
            description: description.to_owned(),
            flags: 0,
        }
    }
}

/// One `VIDIOC_ENUM_FRAMESIZES` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameSizes {
    Discrete {
        width: u32,
        height: u32,
    },
    /// Any size from min to max in steps (`CONTINUOUS` is steps of 1).
    Stepwise {
        min: (u32, u32),
        max: (u32, u32),
        step: (u32, u32),
    },
}

impl FrameSizes {
    /// Whether `size` is one of these.
    pub fn contains(&self, (w, h): (u32, u32)) -> bool {
        match *self {
            FrameSizes::Discrete { width, height } => (w, h) == (width, height),
            FrameSizes::Stepwise { min, max, step } => {
                let fits = |v: u32, lo: u32, hi: u32, step: u32| {
                    (lo..=hi).contains(&v) && (v - lo) % step.max(1) == 0
                };
                fits(w, min.0, max.0, step.0) && fits(h, min.1, max.1, step.1)
            }
        }
    }
}

impl fmt::Display for FrameSizes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FrameSizes::Discrete { width, height } => write!(f, "{width}x{height}"),
            FrameSizes::Stepwise { min, max, step } => write!(
                f,
                "{}x{} to {}x{} in steps of {}x{}",
                min.0, min.1, max.0, max.1, step.0, step.1
            ),
        }
    }
}

/// The format a driver settled on after `VIDIOC_S_FMT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PixFormat {
    pub fourcc: u32,
    pub width: u32,
    pub height: u32,
    /// Bytes from one row to the next (of the first plane; 0 for compressed formats).
    pub bytesperline: u32,
    /// The largest a frame can be.
    pub sizeimage: u32,
    /// Memory planes (always 1 for single-planar; multi-planar NV12 has one, NV12M two).
    pub planes: u8,
}

impl PixFormat {
    pub fn new(
        fourcc: u32,
        (width, height): (u32, u32),
        bytesperline: u32,
        sizeimage: u32,
    ) -> PixFormat {
        PixFormat {
            fourcc,
            width,
            height,
            bytesperline,
            sizeimage,
            planes: 1,
        }
    }
}

/// A buffer `VIDIOC_DQBUF` handed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Dequeued {
    pub index: u32,
    /// Bytes of picture in it (of its one plane).
    pub bytesused: u32,
    /// The driver's frame counter.
    pub sequence: u32,
    /// `V4L2_BUF_FLAG_ERROR`: the data may be corrupt.
    pub error: bool,
    /// How long ago the driver filled it, where its timestamps are monotonic.
    pub age: Option<Duration>,
}

/// What waiting for a filled buffer (`poll`) found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// A buffer can be dequeued.
    Readable,
    /// Nothing within the timeout.
    Timeout,
    /// `POLLERR`: streaming stopped, nothing queued, or the device is gone; `VIDIOC_DQBUF`
    /// says which.
    Error,
}

/// An ioctl (or `open`, `mmap`, `poll`) that failed, with the kernel's errno as its source.
#[derive(Debug, thiserror::Error)]
#[error("{op} failed")]
pub struct DeviceError {
    pub op: &'static str,
    #[source]
    pub source: std::io::Error,
}

impl DeviceError {
    pub fn new(op: &'static str, errno: i32) -> DeviceError {
        DeviceError {
            op,
            source: std::io::Error::from_raw_os_error(errno),
        }
    }

    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }

    /// Whether the device is gone (unplugged, or its driver failed): `ENODEV`, `EIO`,
    /// `ENXIO`. Only reopening helps.
    pub fn is_gone(&self) -> bool {
        matches!(self.errno(), Some(libc::ENODEV | libc::EIO | libc::ENXIO))
    }
}

/// Sends a buffer's index back to its ring when dropped: the ring queues it again at the
/// next frame. Part of the [`Bytes`] owner a [`Mapped::lend`] makes, dropped after the
/// memory it guards, so a buffer goes back only once nothing reads it any more.
#[derive(Debug)]
pub struct Returned {
    index: u32,
    ring: mpsc::Sender<u32>,
}

impl Returned {
    pub(crate) fn new(index: u32, ring: mpsc::Sender<u32>) -> Returned {
        Returned { index, ring }
    }
}

impl Drop for Returned {
    fn drop(&mut self) {
        // A ring that is gone (the camera closed or reopened) no longer wants it.
        let _ = self.ring.send(self.index);
    }
}

/// One mapped buffer.
pub trait Mapped: Send + Sync + fmt::Debug {
    /// Its length in bytes.
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Its first `len` bytes as [`Bytes`], without a copy. `returned` must be dropped once
    /// the last clone of those bytes is, after the reference to the memory: that is what
    /// sends the buffer back to be queued again. Called only while the buffer is dequeued.
    fn lend(&self, len: usize, returned: Returned) -> Bytes;
}

/// A V4L2 capture device, one method per ioctl. Calls follow the kernel's rules (the
/// simulated device enforces them): formats are set before buffers are requested,
/// buffers are mapped and queued before `streamon`, `dqbuf` only while streaming.
///
/// Every error carries the errno; [`DeviceError::is_gone`] ones mean the device must be
/// reopened. `dqbuf` never blocks (the device is non-blocking): `wait` does the waiting.
pub trait Device: Send + fmt::Debug {
    /// `VIDIOC_QUERYCAP`.
    fn query_cap(&mut self) -> Result<DeviceCaps, DeviceError>;

    /// `VIDIOC_ENUM_FMT`; `None` past the last format (`EINVAL`).
    fn enum_fmt(&mut self, ty: BufType, index: u32) -> Result<Option<FmtDesc>, DeviceError>;

    /// `VIDIOC_ENUM_FRAMESIZES`; `None` past the last size (`EINVAL`), and at index 0 for a
    /// driver that does not enumerate sizes.
    fn enum_framesizes(
        &mut self,
        fourcc: u32,
        index: u32,
    ) -> Result<Option<FrameSizes>, DeviceError>;

    /// `VIDIOC_S_FMT`: asks for `fourcc` at `size`; returns what the driver chose (drivers
    /// adjust rather than refuse).
    fn s_fmt(
        &mut self,
        ty: BufType,
        fourcc: u32,
        size: (u32, u32),
    ) -> Result<PixFormat, DeviceError>;

    /// `VIDIOC_S_PARM` with 1/`fps` as the frame interval, or `VIDIOC_G_PARM` without one;
    /// the rate the driver runs at, `None` where it does not say.
    fn parm(&mut self, ty: BufType, fps: Option<f64>) -> Result<Option<f64>, DeviceError>;

    /// `VIDIOC_REQBUFS` of `count` MMAP buffers (0 frees them); how many it allocated.
    fn reqbufs(&mut self, ty: BufType, count: u32) -> Result<u32, DeviceError>;

    /// `VIDIOC_QUERYBUF` and `mmap` of buffer `index` (its one plane).
    fn map(&mut self, ty: BufType, index: u32) -> Result<Box<dyn Mapped>, DeviceError>;

    /// `VIDIOC_QBUF`.
    fn qbuf(&mut self, ty: BufType, index: u32) -> Result<(), DeviceError>;

    /// `VIDIOC_DQBUF`; `None` when no buffer is filled yet (`EAGAIN`).
    fn dqbuf(&mut self, ty: BufType) -> Result<Option<Dequeued>, DeviceError>;

    /// `VIDIOC_STREAMON`.
    fn streamon(&mut self, ty: BufType) -> Result<(), DeviceError>;

    /// `VIDIOC_STREAMOFF`: every queued buffer comes back to us, unfilled.
    fn streamoff(&mut self, ty: BufType) -> Result<(), DeviceError>;

    /// `poll` for a filled buffer, at most `timeout`.
    fn wait(&mut self, timeout: Duration) -> Result<Ready, DeviceError>;
}
