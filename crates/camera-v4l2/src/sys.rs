//! The real [`Device`]: a `/dev/videoN` file descriptor, its ioctls and its `mmap`ed buffers.
//! The only unsafe code of the crate is here; every unsafe block says why it is sound.
//!
//! Soundness rests on two things: each ioctl is issued with the request number built from
//! the size of the very struct passed (`abi.rs`, checked against the kernel's header), and
//! a mapped buffer is read only while it is dequeued, i.e. while the kernel does not write
//! it. The ring guarantees the latter: it queues a buffer again only once every [`Bytes`]
//! lent from it is gone (see [`Returned`]). A mapping outlives the stream and the file
//! descriptor if bytes lent from it do (the kernel keeps such memory until `munmap`).

#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::abi::{self, v4l2_buffer, v4l2_plane};
use crate::device::{
    BufType, Dequeued, Device, DeviceCaps, DeviceError, FmtDesc, FrameSizes, Mapped, PixFormat,
    Ready, Returned,
};

/// An open V4L2 device node, non-blocking.
#[derive(Debug)]
pub struct FdDevice {
    file: File,
}

impl FdDevice {
    /// Opens `path` read-write and non-blocking (`VIDIOC_DQBUF` then says `EAGAIN` rather
    /// than waiting; [`Device::wait`] polls).
    pub fn open(path: &Path) -> Result<FdDevice, DeviceError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .map_err(|source| DeviceError { op: "open", source })?;
        Ok(FdDevice { file })
    }

    /// `ioctl(fd, request, arg)`, again after `EINTR`.
    ///
    /// # Safety
    ///
    /// `request` must be the request whose argument is a `T` (its number encodes
    /// `size_of::<T>()`), and any pointer inside `*arg` must point to memory valid for what
    /// that request reads and writes.
    unsafe fn ioctl<T>(
        &self,
        op: &'static str,
        request: u32,
        arg: &mut T,
    ) -> Result<(), DeviceError> {
        loop {
            // glibc and uclibc take the request as `unsigned long`, musl as `int`: `as`
            // keeps its 32 bits either way.
            #[allow(clippy::unnecessary_cast)]
            let request = request as libc::Ioctl;
            // SAFETY: the caller promises that `request` takes a `T`; `arg` is a valid,
            // exclusively borrowed `T` for the duration of the call.
            let result = unsafe { libc::ioctl(self.file.as_raw_fd(), request, arg as *mut T) };
            if result != -1 {
                return Ok(());
            }
            let source = io::Error::last_os_error();
            if source.kind() != io::ErrorKind::Interrupted {
                return Err(DeviceError { op, source });
            }
        }
    }
}

/// A struct of the V4L2 ABI with every byte zero.
fn zeroed<T: Zeroable>() -> T {
    // SAFETY: `Zeroable` is implemented only for the plain structs and unions of `abi.rs`,
    // made of integers, arrays of integers and (in `v4l2_buffer.m`) a raw pointer, for all
    // of which all-zero bytes are a valid value (0, or a null pointer).
    unsafe { std::mem::zeroed() }
}

/// The `abi.rs` types for which all-zero bytes are a valid value.
trait Zeroable {}
impl Zeroable for abi::v4l2_capability {}
impl Zeroable for abi::v4l2_fmtdesc {}
impl Zeroable for abi::v4l2_frmsizeenum {}
impl Zeroable for abi::v4l2_format {}
impl Zeroable for abi::v4l2_streamparm {}
impl Zeroable for abi::v4l2_requestbuffers {}
impl Zeroable for v4l2_buffer {}
impl Zeroable for [v4l2_plane; abi::VIDEO_MAX_PLANES] {}

/// A NUL-terminated string from a fixed-size field.
fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn is_errno(error: &DeviceError, errno: i32) -> bool {
    error.errno() == Some(errno)
}

/// A `v4l2_buffer` for `index`, with `planes` attached for the multi-planar API.
fn buffer(
    ty: BufType,
    index: u32,
    planes: &mut [v4l2_plane; abi::VIDEO_MAX_PLANES],
) -> v4l2_buffer {
    let mut buf: v4l2_buffer = zeroed();
    buf.index = index;
    buf.type_ = ty.raw();
    buf.memory = abi::V4L2_MEMORY_MMAP;
    if ty == BufType::CaptureMplane {
        buf.m.planes = planes.as_mut_ptr();
        buf.length = abi::VIDEO_MAX_PLANES as u32;
    }
    buf
}

/// `CLOCK_MONOTONIC` now, as V4L2 timestamps count it.
fn monotonic_now() -> Option<Duration> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid `timespec` for the call to fill.
    let result = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    if result != 0 {
        return None;
    }
    Some(Duration::new(
        u64::try_from(now.tv_sec).ok()?,
        u32::try_from(now.tv_nsec).ok()?,
    ))
}

impl Device for FdDevice {
    fn query_cap(&mut self) -> Result<DeviceCaps, DeviceError> {
        let mut cap: abi::v4l2_capability = zeroed();
        // SAFETY: VIDIOC_QUERYCAP takes a v4l2_capability.
        unsafe { self.ioctl("VIDIOC_QUERYCAP", abi::VIDIOC_QUERYCAP, &mut cap)? };
        let caps = if cap.capabilities & abi::V4L2_CAP_DEVICE_CAPS != 0 {
            cap.device_caps
        } else {
            cap.capabilities
        };
        Ok(DeviceCaps::new(
            &c_string(&cap.driver),
            &c_string(&cap.card),
            &c_string(&cap.bus_info),
            caps,
        ))
    }

    fn enum_fmt(&mut self, ty: BufType, index: u32) -> Result<Option<FmtDesc>, DeviceError> {
        let mut desc: abi::v4l2_fmtdesc = zeroed();
        desc.index = index;
        desc.type_ = ty.raw();
        // SAFETY: VIDIOC_ENUM_FMT takes a v4l2_fmtdesc.
        match unsafe { self.ioctl("VIDIOC_ENUM_FMT", abi::VIDIOC_ENUM_FMT, &mut desc) } {
            Ok(()) => Ok(Some(FmtDesc {
                fourcc: desc.pixelformat,
                description: c_string(&desc.description),
                flags: desc.flags,
            })),
            Err(e) if is_errno(&e, libc::EINVAL) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn enum_framesizes(
        &mut self,
        fourcc: u32,
        index: u32,
    ) -> Result<Option<FrameSizes>, DeviceError> {
        let mut sizes: abi::v4l2_frmsizeenum = zeroed();
        sizes.index = index;
        sizes.pixel_format = fourcc;
        // SAFETY: VIDIOC_ENUM_FRAMESIZES takes a v4l2_frmsizeenum.
        let result = unsafe {
            self.ioctl(
                "VIDIOC_ENUM_FRAMESIZES",
                abi::VIDIOC_ENUM_FRAMESIZES,
                &mut sizes,
            )
        };
        match result {
            Ok(()) => {}
            Err(e) if is_errno(&e, libc::EINVAL) || is_errno(&e, libc::ENOTTY) => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
        Ok(Some(match sizes.type_ {
            abi::V4L2_FRMSIZE_TYPE_DISCRETE => {
                // SAFETY: the driver filled `discrete`, as `type_` says.
                let d = unsafe { sizes.size.discrete };
                FrameSizes::Discrete {
                    width: d.width,
                    height: d.height,
                }
            }
            continuous_or_stepwise => {
                // SAFETY: the driver filled `stepwise`, as `type_` says (CONTINUOUS and
                // STEPWISE both use it).
                let s = unsafe { sizes.size.stepwise };
                let step = if continuous_or_stepwise == abi::V4L2_FRMSIZE_TYPE_CONTINUOUS {
                    (1, 1)
                } else {
                    (s.step_width.max(1), s.step_height.max(1))
                };
                FrameSizes::Stepwise {
                    min: (s.min_width, s.min_height),
                    max: (s.max_width, s.max_height),
                    step,
                }
            }
        }))
    }

    fn s_fmt(
        &mut self,
        ty: BufType,
        fourcc: u32,
        (width, height): (u32, u32),
    ) -> Result<PixFormat, DeviceError> {
        let mut format: abi::v4l2_format = zeroed();
        format.type_ = ty.raw();
        match ty {
            BufType::Capture => {
                // SAFETY: writing a union member is safe; reading `pix` back is plain data,
                // all zero or just written.
                let mut pix = unsafe { format.fmt.pix };
                pix.width = width;
                pix.height = height;
                pix.pixelformat = fourcc;
                pix.field = abi::V4L2_FIELD_ANY;
                format.fmt.pix = pix;
            }
            BufType::CaptureMplane => {
                // SAFETY: as above, for `pix_mp`.
                let mut pix = unsafe { format.fmt.pix_mp };
                pix.width = width;
                pix.height = height;
                pix.pixelformat = fourcc;
                pix.field = abi::V4L2_FIELD_ANY;
                pix.num_planes = 1;
                format.fmt.pix_mp = pix;
            }
        }
        // SAFETY: VIDIOC_S_FMT takes a v4l2_format.
        unsafe { self.ioctl("VIDIOC_S_FMT", abi::VIDIOC_S_FMT, &mut format)? };
        Ok(match ty {
            BufType::Capture => {
                // SAFETY: for a single-planar type the driver answers in `pix`.
                let pix = unsafe { format.fmt.pix };
                PixFormat::new(
                    pix.pixelformat,
                    (pix.width, pix.height),
                    pix.bytesperline,
                    pix.sizeimage,
                )
            }
            BufType::CaptureMplane => {
                // SAFETY: for a multi-planar type the driver answers in `pix_mp`.
                let pix = unsafe { format.fmt.pix_mp };
                let plane = pix.plane_fmt[0];
                let mut answer = PixFormat::new(
                    pix.pixelformat,
                    (pix.width, pix.height),
                    plane.bytesperline,
                    plane.sizeimage,
                );
                answer.planes = pix.num_planes;
                answer
            }
        })
    }

    fn parm(&mut self, ty: BufType, fps: Option<f64>) -> Result<Option<f64>, DeviceError> {
        let mut parm: abi::v4l2_streamparm = zeroed();
        parm.type_ = ty.raw();
        let result = match fps {
            Some(fps) => {
                // SAFETY: reading `capture` back is plain data, all zero.
                let mut capture = unsafe { parm.parm.capture };
                capture.timeperframe = abi::v4l2_fract {
                    numerator: 1000,
                    denominator: (fps * 1000.0).round() as u32,
                };
                parm.parm.capture = capture;
                // SAFETY: VIDIOC_S_PARM takes a v4l2_streamparm.
                unsafe { self.ioctl("VIDIOC_S_PARM", abi::VIDIOC_S_PARM, &mut parm) }
            }
            // SAFETY: VIDIOC_G_PARM takes a v4l2_streamparm.
            None => unsafe { self.ioctl("VIDIOC_G_PARM", abi::VIDIOC_G_PARM, &mut parm) },
        };
        match result {
            Ok(()) => {}
            // Drivers without frame intervals (many ISPs) do not have these ioctls.
            Err(e) if is_errno(&e, libc::ENOTTY) || is_errno(&e, libc::EINVAL) => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
        // SAFETY: for a capture type the driver answers in `capture`.
        let capture = unsafe { parm.parm.capture };
        let interval = capture.timeperframe;
        if capture.capability & abi::V4L2_CAP_TIMEPERFRAME == 0 || interval.numerator == 0 {
            return Ok(None);
        }
        Ok(Some(
            f64::from(interval.denominator) / f64::from(interval.numerator),
        ))
    }

    fn reqbufs(&mut self, ty: BufType, count: u32) -> Result<u32, DeviceError> {
        let mut request: abi::v4l2_requestbuffers = zeroed();
        request.count = count;
        request.type_ = ty.raw();
        request.memory = abi::V4L2_MEMORY_MMAP;
        // SAFETY: VIDIOC_REQBUFS takes a v4l2_requestbuffers.
        unsafe { self.ioctl("VIDIOC_REQBUFS", abi::VIDIOC_REQBUFS, &mut request)? };
        Ok(request.count)
    }

    fn map(&mut self, ty: BufType, index: u32) -> Result<Box<dyn Mapped>, DeviceError> {
        let mut planes = zeroed();
        let mut buf = buffer(ty, index, &mut planes);
        // SAFETY: VIDIOC_QUERYBUF takes a v4l2_buffer; for the multi-planar type its
        // `m.planes` points at `planes`, VIDEO_MAX_PLANES entries, as `length` says.
        unsafe { self.ioctl("VIDIOC_QUERYBUF", abi::VIDIOC_QUERYBUF, &mut buf)? };
        let (offset, length) = match ty {
            // SAFETY: for MMAP buffers the driver answers in `m.offset`.
            BufType::Capture => (unsafe { buf.m.offset }, buf.length),
            BufType::CaptureMplane => {
                if buf.length != 1 {
                    return Err(DeviceError::new(
                        "VIDIOC_QUERYBUF (one plane)",
                        libc::EINVAL,
                    ));
                }
                // SAFETY: for MMAP planes the driver answers in `m.mem_offset`.
                (unsafe { planes[0].m.mem_offset }, planes[0].length)
            }
        };
        let len = length as usize;
        if len == 0 {
            return Err(DeviceError::new("VIDIOC_QUERYBUF (length 0)", libc::EINVAL));
        }
        // `off_t` is 32 bits on armv7 glibc (without large-file support), 64 on x86_64.
        #[allow(clippy::unnecessary_fallible_conversions)]
        let offset =
            libc::off_t::try_from(offset).map_err(|_| DeviceError::new("mmap", libc::EINVAL))?;
        // SAFETY: a fresh read-only shared mapping of the buffer the driver just described;
        // the kernel checks offset and length. Nothing else in this process aliases it.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                self.file.as_raw_fd(),
                offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(DeviceError {
                op: "mmap",
                source: io::Error::last_os_error(),
            });
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or(DeviceError::new("mmap", libc::EINVAL))?;
        Ok(Box::new(MmapBuffer(Arc::new(Mmap { ptr, len }))))
    }

    fn qbuf(&mut self, ty: BufType, index: u32) -> Result<(), DeviceError> {
        let mut planes = zeroed();
        let mut buf = buffer(ty, index, &mut planes);
        // SAFETY: VIDIOC_QBUF takes a v4l2_buffer; `m.planes` as in `map`.
        unsafe { self.ioctl("VIDIOC_QBUF", abi::VIDIOC_QBUF, &mut buf) }
    }

    fn dqbuf(&mut self, ty: BufType) -> Result<Option<Dequeued>, DeviceError> {
        let mut planes = zeroed();
        let mut buf = buffer(ty, 0, &mut planes);
        // SAFETY: VIDIOC_DQBUF takes a v4l2_buffer; `m.planes` as in `map`.
        match unsafe { self.ioctl("VIDIOC_DQBUF", abi::VIDIOC_DQBUF, &mut buf) } {
            Ok(()) => {}
            Err(e) if is_errno(&e, libc::EAGAIN) => return Ok(None),
            Err(e) => return Err(e),
        }
        let bytesused = match ty {
            BufType::Capture => buf.bytesused,
            BufType::CaptureMplane => planes[0].bytesused,
        };
        let monotonic =
            buf.flags & abi::V4L2_BUF_FLAG_TIMESTAMP_MASK == abi::V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC;
        let age = monotonic
            .then(|| {
                let at = Duration::new(
                    u64::try_from(buf.timestamp.tv_sec).ok()?,
                    u32::try_from(buf.timestamp.tv_usec)
                        .ok()?
                        .saturating_mul(1000),
                );
                monotonic_now()?.checked_sub(at)
            })
            .flatten();
        Ok(Some(Dequeued {
            index: buf.index,
            bytesused,
            sequence: buf.sequence,
            error: buf.flags & abi::V4L2_BUF_FLAG_ERROR != 0,
            age,
        }))
    }

    fn streamon(&mut self, ty: BufType) -> Result<(), DeviceError> {
        let mut raw = ty.raw() as i32;
        // SAFETY: VIDIOC_STREAMON takes an int.
        unsafe { self.ioctl("VIDIOC_STREAMON", abi::VIDIOC_STREAMON, &mut raw) }
    }

    fn streamoff(&mut self, ty: BufType) -> Result<(), DeviceError> {
        let mut raw = ty.raw() as i32;
        // SAFETY: VIDIOC_STREAMOFF takes an int.
        unsafe { self.ioctl("VIDIOC_STREAMOFF", abi::VIDIOC_STREAMOFF, &mut raw) }
    }

    fn wait(&mut self, timeout: Duration) -> Result<Ready, DeviceError> {
        let mut fd = libc::pollfd {
            fd: self.file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd, as the count says.
        let result = unsafe { libc::poll(&mut fd, 1, millis) };
        if result < 0 {
            let source = io::Error::last_os_error();
            if source.kind() == io::ErrorKind::Interrupted {
                // The caller waits again until its own deadline.
                return Ok(Ready::Timeout);
            }
            return Err(DeviceError { op: "poll", source });
        }
        Ok(
            if fd.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
                Ready::Error
            } else if fd.revents & libc::POLLIN != 0 {
                Ready::Readable
            } else {
                Ready::Timeout
            },
        )
    }
}

/// One `mmap`ed buffer, unmapped when the last reference goes.
#[derive(Debug)]
struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value alone; it is only ever read, through
// shared slices, from any thread.
unsafe impl Send for Mmap {}
// SAFETY: as above: nothing writes through it.
unsafe impl Sync for Mmap {}

impl Mmap {
    fn bytes(&self, len: usize) -> &[u8] {
        // SAFETY: `ptr` is a live mapping of `self.len` readable bytes until `self` is
        // dropped; at most that many are covered. The kernel writes the buffer only while it
        // is queued, and it is queued again only once nothing borrows from it (sys.rs's
        // module comment).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), len.min(self.len)) }
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `len` are exactly what `mmap` returned and was given, and no
        // slice of it outlives `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

#[derive(Debug)]
struct MmapBuffer(Arc<Mmap>);

/// The owner of a lent buffer's [`Bytes`]: the mapping first, so that it is released before
/// `returned` sends the buffer back (fields drop in order).
#[derive(Debug)]
struct MmapLent {
    map: Arc<Mmap>,
    len: usize,
    _returned: Returned,
}

impl AsRef<[u8]> for MmapLent {
    fn as_ref(&self) -> &[u8] {
        self.map.bytes(self.len)
    }
}

impl Mapped for MmapBuffer {
    fn len(&self) -> usize {
        self.0.len
    }

    fn lend(&self, len: usize, returned: Returned) -> Bytes {
        Bytes::from_owner(MmapLent {
            map: self.0.clone(),
            len: len.min(self.0.len),
            _returned: returned,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// This machine has no V4L2, but the ioctl path itself runs against any file: one that
    /// is not a video device answers every request with ENOTTY, and nothing else happens.
    #[test]
    fn a_file_that_is_not_a_v4l2_device_answers_enotty() {
        let mut device = FdDevice::open(Path::new("/dev/null")).unwrap();
        let enotty = |e: DeviceError| {
            assert_eq!(e.errno(), Some(libc::ENOTTY), "{e:?}");
            e.op
        };
        assert_eq!(enotty(device.query_cap().unwrap_err()), "VIDIOC_QUERYCAP");
        assert_eq!(
            enotty(device.enum_fmt(BufType::Capture, 0).unwrap_err()),
            "VIDIOC_ENUM_FMT"
        );
        assert_eq!(
            enotty(
                device
                    .s_fmt(BufType::CaptureMplane, abi::V4L2_PIX_FMT_NV12, (64, 48))
                    .unwrap_err()
            ),
            "VIDIOC_S_FMT"
        );
        assert_eq!(
            enotty(device.reqbufs(BufType::Capture, 4).unwrap_err()),
            "VIDIOC_REQBUFS"
        );
        assert_eq!(
            enotty(device.map(BufType::CaptureMplane, 0).unwrap_err()),
            "VIDIOC_QUERYBUF"
        );
        assert_eq!(
            enotty(device.dqbuf(BufType::Capture).unwrap_err()),
            "VIDIOC_DQBUF"
        );
        assert_eq!(
            enotty(device.streamon(BufType::Capture).unwrap_err()),
            "VIDIOC_STREAMON"
        );
        // Frame sizes and frame rates are optional for drivers: ENOTTY means "not listed".
        assert_eq!(
            device.enum_framesizes(abi::V4L2_PIX_FMT_NV12, 0).unwrap(),
            None
        );
        assert_eq!(device.parm(BufType::Capture, Some(30.0)).unwrap(), None);
        // /dev/null is always readable.
        assert_eq!(
            device.wait(Duration::from_millis(10)).unwrap(),
            Ready::Readable
        );
        let missing = FdDevice::open(Path::new("/dev/video-edgecam-missing")).unwrap_err();
        assert_eq!((missing.op, missing.errno()), ("open", Some(libc::ENOENT)));
    }
}
