//! edgecam's native V4L2 camera: webcams (uvcvideo) and MIPI cameras behind an ISP (Rockchip
//! `rkisp_mainpath`) read with plain ioctls, without OpenCV, ffmpeg or a helper program, and
//! without bindgen (the ABI is written out in `abi.rs` and checked against the kernel's
//! header for x86_64 and armv7).
//!
//! # Spec grammar
//!
//! ```text
//! v4l2:/dev/videoN[#OPTION&...]   a device node (v4l2:N is /dev/videoN)
//! v4l2:NAME[#OPTION&...]          the node whose /sys/class/video4linux/video*/name is NAME,
//!                                 looked up at every open (v4l2:rkisp_mainpath)
//!
//! format=mjpeg|yuyv|nv12|nv21|i420|rgb24|bgr24   default: the first the device offers of
//!                   mjpeg, nv12, nv21, yuyv, i420, rgb24, bgr24
//! size=WxH          default: the largest the format offers up to 1920x1080
//! fps=N             asked of the driver (VIDIOC_S_PARM); default: the driver's rate
//! skip=FRAMES       frames dropped after each stream-on (ISP sensors deliver green frames
//!                   until auto exposure settles; 10 to 30 is typical); default 0
//! timeout=SECONDS   no frame for this long is a disconnection (default 5)
//! ```
//!
//! A format or size the device does not offer (`ENUM_FMT`, `ENUM_FRAMESIZES`) is an error at
//! `open` that lists what it offers; `edgecam cameras` lists it beforehand.
//!
//! # Behaviour
//!
//! - Single-planar (`V4L2_BUF_TYPE_VIDEO_CAPTURE`) and multi-planar
//!   (`..._VIDEO_CAPTURE_MPLANE`, one plane: NV12 on RV1106 ISPs) capture, MMAP streaming
//!   with 4 buffers.
//! - **The newest frame, without a copy**: each `next_frame` dequeues every filled buffer,
//!   queues all but the newest again at once, and hands the newest on as the buffer's own
//!   mapped memory ([`Bytes`](bytes::Bytes) over the mapping). The buffer goes back to the
//!   driver at the first `next_frame` after the last reference to those bytes is dropped: for
//!   a raw frame, once the encoder has encoded it; for MJPEG (passed through: the encoder adds
//!   the stamp, and the Huffman tables many UVC cameras leave out, in its one copy), once the
//!   encoder has copied it. At most all buffers but two are lent at once: beyond that (bytes
//!   shared downstream, as `--passthrough untouched` does) the newest frame is copied and its
//!   buffer queued again at once, so the driver never runs dry and the capture loop never
//!   waits for a client.
//! - A newest frame older than half a second (filled while nobody asked) is dropped and the
//!   next one waited for, so a snapshot after a long idle is not an old picture.
//! - Unplugged (`ENODEV`, `EIO`, `ENXIO`, or `POLLERR` with nothing to dequeue) or silent
//!   for `timeout`: [`CameraError::Disconnected`]; the capture loop shows NO SIGNAL and
//!   reopens with backoff (looking `v4l2:NAME` up again).
//! - Bytes lent out stay valid after the camera closes: a mapping is unmapped when its last
//!   reference goes.
//!
//! # Where the unsafe code is
//!
//! Only in `sys.rs` (the ioctls, `mmap`, `poll`), behind the [`Device`] trait; everything
//! else (format choice, the buffer ring, the camera, the [`SimDevice`] the tests use) is safe
//! code over that trait.
//!
//! [`CameraError::Disconnected`]: edgecam_core::camera::CameraError::Disconnected

mod abi;
mod camera;
mod config;
mod device;
mod list;
mod negotiate;
mod ring;
mod sim;
#[cfg(target_os = "linux")]
mod sys;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod layout_check;

use std::path::Path;
use std::sync::Arc;

use edgecam_core::camera::{Camera, CameraContext, CameraError, CameraKind};
use edgecam_core::spec::Spec;

pub use camera::{Opener, V4l2Camera, V4l2Counters};
pub use config::{DEFAULT_TIMEOUT, MAX_SKIP, Source, V4l2Config};
pub use device::{
    BufType, Dequeued, Device, DeviceCaps, DeviceError, FmtDesc, FrameSizes, Mapped, PixFormat,
    Ready, Returned,
};
pub use list::{Node, SYSFS, describe, find_by_name, listing, nodes};
pub use negotiate::{Offer, fourcc_name};
pub use sim::{
    Fault, Pace, ReadyFrame, SimConfig, SimDevice, SimFormat, SimHandle, SimStats, sequence_of,
};

/// What can go wrong opening a V4L2 camera; the `source` of a [`CameraError`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum V4l2Error {
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error("{0}")]
    NotFound(String),
    #[error("it is not a V4L2 device (VIDIOC_QUERYCAP: ENOTTY); `edgecam cameras` lists them")]
    NotV4l2,
    #[error(
        "it is not a video capture node ({driver} {card:?}); `edgecam cameras` lists the nodes and what each captures"
    )]
    NotCapture { driver: String, card: String },
    #[error("{card:?} cannot stream with mmap buffers (no V4L2_CAP_STREAMING)")]
    NoStreaming { card: String },
    #[error("{0}")]
    Format(String),
    #[error("its format has {0} memory planes; edgecam takes one-plane formats (NV12, not NV12M)")]
    Planes(u8),
    #[error("V4L2 is Linux-only")]
    NotLinux,
    #[error("the capture thread failed: {0}")]
    Thread(String),
}

/// `v4l2:/dev/videoN` and `v4l2:NAME`.
pub fn kind() -> CameraKind {
    CameraKind {
        name: "v4l2",
        summary: "v4l2:/dev/videoN|N|NAME[#format=mjpeg|yuyv|nv12|nv21|...&size=WxH&fps=N&skip=FRAMES&timeout=SECONDS], \
                  a V4L2 webcam or ISP node (Linux), MJPEG passed through; `edgecam cameras` lists them",
        example: "v4l2:/dev/video0",
        build: if cfg!(target_os = "linux") {
            Ok(build)
        } else {
            Err("V4L2 cameras are Linux-only; use an opencv: or exec: camera")
        },
    }
}

#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn build(spec: &Spec<'_>, context: &CameraContext) -> Result<Box<dyn Camera>, CameraError> {
    let config = V4l2Config::from_spec(spec)?;
    Ok(Box::new(V4l2Camera::new(
        spec.text().to_owned(),
        config,
        context.clock.clone(),
    )))
}

/// Opens real device nodes: `source` resolved afresh each time.
fn real_opener(source: Source) -> Opener {
    Arc::new(move || {
        let path = match &source {
            Source::Path(path) => path.clone(),
            Source::Name(name) => find_by_name(Path::new(SYSFS), Path::new("/dev"), name)
                .map_err(V4l2Error::NotFound)?,
        };
        open_node(&path)
    })
}

#[cfg(target_os = "linux")]
fn open_node(path: &Path) -> Result<Box<dyn Device>, V4l2Error> {
    Ok(Box::new(sys::FdDevice::open(path)?))
}

#[cfg(not(target_os = "linux"))]
fn open_node(_: &Path) -> Result<Box<dyn Device>, V4l2Error> {
    Err(V4l2Error::NotLinux)
}

/// What `edgecam cameras` prints: every V4L2 node of this machine and what it offers.
pub fn list_cameras() -> String {
    let mut open = |path: &Path| -> Result<Box<dyn Device>, DeviceError> {
        open_node(path).map_err(|e| match e {
            V4l2Error::Device(e) => e,
            _ => DeviceError::new("open", libc::ENOSYS),
        })
    };
    listing(Path::new(SYSFS), Path::new("/dev"), &mut open)
}

pub(crate) use edgecam_core::error_chain;
