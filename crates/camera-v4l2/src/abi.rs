//! The part of the kernel's V4L2 ABI (`linux/videodev2.h`) this crate uses, written by hand:
//! `#[repr(C)]` structs, the ioctl request numbers computed from their sizes, and constants.
//! No bindgen, so nothing but rustc is needed to cross-compile.
//!
//! Every size, alignment, field offset, request number and constant here is checked against
//! the kernel's own header, compiled by gcc for x86_64 and by `arm-linux-gnueabihf-gcc` for
//! armv7 (`layout_check.rs`); [`layout`] lists what is checked. This file must compile on
//! its own (the armv7 check builds it with a bare `rustc`), so it uses only `core`.
//!
//! Pointer-sized members (`unsigned long`, pointers, `long` in `struct timeval`) are
//! `c_ulong` / `c_long`: 8 bytes on 64-bit Linux, 4 on 32-bit, as the kernel's native ABI
//! has them. On 32-bit glibc built with 64-bit `time_t` (`_TIME_BITS=64`) C programs use a
//! larger `struct timeval` and the `_TIME32`-less request numbers the kernel translates; we
//! use the native 32-bit layout, which every 32-bit kernel takes.

#![allow(non_camel_case_types, dead_code)]

use core::ffi::{c_long, c_ulong};
use core::mem::{align_of, offset_of, size_of};

pub const VIDEO_MAX_PLANES: usize = 8;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct v4l2_capability {
    pub driver: [u8; 16],
    pub card: [u8; 32],
    pub bus_info: [u8; 32],
    pub version: u32,
    pub capabilities: u32,
    pub device_caps: u32,
    pub reserved: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct v4l2_fmtdesc {
    pub index: u32,
    pub type_: u32,
    pub flags: u32,
    pub description: [u8; 32],
    pub pixelformat: u32,
    pub mbus_code: u32,
    pub reserved: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct v4l2_frmsize_discrete {
    pub width: u32,
    pub height: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct v4l2_frmsize_stepwise {
    pub min_width: u32,
    pub max_width: u32,
    pub step_width: u32,
    pub min_height: u32,
    pub max_height: u32,
    pub step_height: u32,
}

/// The anonymous union of `struct v4l2_frmsizeenum`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union v4l2_frmsize_union {
    pub discrete: v4l2_frmsize_discrete,
    pub stepwise: v4l2_frmsize_stepwise,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct v4l2_frmsizeenum {
    pub index: u32,
    pub pixel_format: u32,
    pub type_: u32,
    pub size: v4l2_frmsize_union,
    pub reserved: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct v4l2_pix_format {
    pub width: u32,
    pub height: u32,
    pub pixelformat: u32,
    pub field: u32,
    pub bytesperline: u32,
    pub sizeimage: u32,
    pub colorspace: u32,
    pub priv_: u32,
    pub flags: u32,
    pub ycbcr_enc: u32,
    pub quantization: u32,
    pub xfer_func: u32,
}

/// Packed in the header (`__attribute__ ((packed))`).
#[repr(C, packed)]
#[derive(Clone, Copy)]
pub struct v4l2_plane_pix_format {
    pub sizeimage: u32,
    pub bytesperline: u32,
    pub reserved: [u16; 6],
}

/// Packed in the header (`__attribute__ ((packed))`).
#[repr(C, packed)]
#[derive(Clone, Copy)]
pub struct v4l2_pix_format_mplane {
    pub width: u32,
    pub height: u32,
    pub pixelformat: u32,
    pub field: u32,
    pub colorspace: u32,
    pub plane_fmt: [v4l2_plane_pix_format; VIDEO_MAX_PLANES],
    pub num_planes: u8,
    pub flags: u8,
    pub ycbcr_enc: u8,
    pub quantization: u8,
    pub xfer_func: u8,
    pub reserved: [u8; 7],
}

/// `v4l2_format.fmt`. The header's union also holds `struct v4l2_window`, which has
/// pointers: `_align` gives the union their alignment (so `fmt` is at 8 on 64-bit, 4 on
/// 32-bit).
#[repr(C)]
#[derive(Clone, Copy)]
pub union v4l2_format_union {
    pub pix: v4l2_pix_format,
    pub pix_mp: v4l2_pix_format_mplane,
    pub raw_data: [u8; 200],
    pub _align: [c_ulong; 0],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct v4l2_format {
    pub type_: u32,
    pub fmt: v4l2_format_union,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct v4l2_fract {
    pub numerator: u32,
    pub denominator: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct v4l2_captureparm {
    pub capability: u32,
    pub capturemode: u32,
    pub timeperframe: v4l2_fract,
    pub extendedmode: u32,
    pub readbuffers: u32,
    pub reserved: [u32; 4],
}

/// `v4l2_streamparm.parm` (we never use `output`, which is no larger).
#[repr(C)]
#[derive(Clone, Copy)]
pub union v4l2_streamparm_union {
    pub capture: v4l2_captureparm,
    pub raw_data: [u8; 200],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct v4l2_streamparm {
    pub type_: u32,
    pub parm: v4l2_streamparm_union,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct v4l2_requestbuffers {
    pub count: u32,
    pub type_: u32,
    pub memory: u32,
    pub capabilities: u32,
    pub flags: u8,
    pub reserved: [u8; 3],
}

/// The kernel's native `struct timeval`: two `long`s.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct timeval {
    pub tv_sec: c_long,
    pub tv_usec: c_long,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct v4l2_timecode {
    pub type_: u32,
    pub flags: u32,
    pub frames: u8,
    pub seconds: u8,
    pub minutes: u8,
    pub hours: u8,
    pub userbits: [u8; 4],
}

/// `v4l2_buffer.m`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union v4l2_buffer_m {
    pub offset: u32,
    pub userptr: c_ulong,
    pub planes: *mut v4l2_plane,
    pub fd: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct v4l2_buffer {
    pub index: u32,
    pub type_: u32,
    pub bytesused: u32,
    pub flags: u32,
    pub field: u32,
    pub timestamp: timeval,
    pub timecode: v4l2_timecode,
    pub sequence: u32,
    pub memory: u32,
    pub m: v4l2_buffer_m,
    pub length: u32,
    pub reserved2: u32,
    /// The anonymous union `{ __s32 request_fd; __u32 reserved; }`.
    pub request_fd: i32,
}

/// `v4l2_plane.m`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union v4l2_plane_m {
    pub mem_offset: u32,
    pub userptr: c_ulong,
    pub fd: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct v4l2_plane {
    pub bytesused: u32,
    pub length: u32,
    pub m: v4l2_plane_m,
    pub data_offset: u32,
    pub reserved: [u32; 11],
}

// Constants.

pub const V4L2_CAP_VIDEO_CAPTURE: u32 = 0x0000_0001;
pub const V4L2_CAP_VIDEO_CAPTURE_MPLANE: u32 = 0x0000_1000;
pub const V4L2_CAP_STREAMING: u32 = 0x0400_0000;
pub const V4L2_CAP_DEVICE_CAPS: u32 = 0x8000_0000;

pub const V4L2_BUF_TYPE_VIDEO_CAPTURE: u32 = 1;
pub const V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE: u32 = 9;
pub const V4L2_MEMORY_MMAP: u32 = 1;
pub const V4L2_FIELD_ANY: u32 = 0;

pub const V4L2_FMT_FLAG_COMPRESSED: u32 = 0x0001;
pub const V4L2_FMT_FLAG_EMULATED: u32 = 0x0002;

pub const V4L2_FRMSIZE_TYPE_DISCRETE: u32 = 1;
pub const V4L2_FRMSIZE_TYPE_CONTINUOUS: u32 = 2;
pub const V4L2_FRMSIZE_TYPE_STEPWISE: u32 = 3;

pub const V4L2_BUF_FLAG_ERROR: u32 = 0x0000_0040;
pub const V4L2_BUF_FLAG_TIMESTAMP_MASK: u32 = 0x0000_e000;
pub const V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC: u32 = 0x0000_2000;

pub const V4L2_CAP_TIMEPERFRAME: u32 = 0x1000;

/// A fourcc as the kernel's `v4l2_fourcc(a, b, c, d)`.
pub const fn fourcc(code: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*code)
}

pub const V4L2_PIX_FMT_MJPEG: u32 = fourcc(b"MJPG");
pub const V4L2_PIX_FMT_JPEG: u32 = fourcc(b"JPEG");
pub const V4L2_PIX_FMT_YUYV: u32 = fourcc(b"YUYV");
pub const V4L2_PIX_FMT_NV12: u32 = fourcc(b"NV12");
pub const V4L2_PIX_FMT_NV21: u32 = fourcc(b"NV21");
pub const V4L2_PIX_FMT_YUV420: u32 = fourcc(b"YU12");
pub const V4L2_PIX_FMT_RGB24: u32 = fourcc(b"RGB3");
pub const V4L2_PIX_FMT_BGR24: u32 = fourcc(b"BGR3");

// ioctl request numbers, as `asm-generic/ioctl.h` builds them (x86, ARM and most others;
// not alpha, mips, powerpc or sparc, which the kernel lays out differently).

const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;

/// `_IOC(dir, 'V', nr, size)`; a size that does not fit the 14 bits is a compile error.
const fn ioc(dir: u32, nr: u32, size: usize) -> u32 {
    assert!(size < (1 << 14), "an ioctl argument must be under 16 KiB");
    (dir << 30) | ((size as u32) << 16) | ((b'V' as u32) << 8) | nr
}

const fn ior<T>(nr: u32) -> u32 {
    ioc(IOC_READ, nr, size_of::<T>())
}

const fn iow<T>(nr: u32) -> u32 {
    ioc(IOC_WRITE, nr, size_of::<T>())
}

const fn iowr<T>(nr: u32) -> u32 {
    ioc(IOC_READ | IOC_WRITE, nr, size_of::<T>())
}

pub const VIDIOC_QUERYCAP: u32 = ior::<v4l2_capability>(0);
pub const VIDIOC_ENUM_FMT: u32 = iowr::<v4l2_fmtdesc>(2);
pub const VIDIOC_G_FMT: u32 = iowr::<v4l2_format>(4);
pub const VIDIOC_S_FMT: u32 = iowr::<v4l2_format>(5);
pub const VIDIOC_REQBUFS: u32 = iowr::<v4l2_requestbuffers>(8);
pub const VIDIOC_QUERYBUF: u32 = iowr::<v4l2_buffer>(9);
pub const VIDIOC_QBUF: u32 = iowr::<v4l2_buffer>(15);
pub const VIDIOC_DQBUF: u32 = iowr::<v4l2_buffer>(17);
pub const VIDIOC_STREAMON: u32 = iow::<i32>(18);
pub const VIDIOC_STREAMOFF: u32 = iow::<i32>(19);
pub const VIDIOC_G_PARM: u32 = iowr::<v4l2_streamparm>(21);
pub const VIDIOC_S_PARM: u32 = iowr::<v4l2_streamparm>(22);
pub const VIDIOC_ENUM_FRAMESIZES: u32 = iowr::<v4l2_frmsizeenum>(74);

// What the layout check compares: (a C expression, Rust's value of it).

macro_rules! size {
    ($t:ident) => {
        (
            concat!("sizeof(struct ", stringify!($t), ")"),
            size_of::<$t>() as u64,
        )
    };
}

macro_rules! align {
    ($t:ident) => {
        (
            concat!("_Alignof(struct ", stringify!($t), ")"),
            align_of::<$t>() as u64,
        )
    };
}

/// A field's offset; `$c` is the C member when its Rust name differs (`type_`, the anonymous
/// unions).
macro_rules! offset {
    ($t:ident, $f:ident) => {
        offset!($t, $f, stringify!($f))
    };
    ($t:ident, $f:ident, $c:expr) => {
        (
            concat!("offsetof(struct ", stringify!($t), ", ", $c, ")"),
            offset_of!($t, $f) as u64,
        )
    };
}

macro_rules! constant {
    ($($c:ident),* $(,)?) => {
        [$((stringify!($c), $c as u64)),*]
    };
}

/// Every layout fact and constant the layout check compares with the kernel's header.
pub fn layout() -> Vec<(&'static str, u64)> {
    let mut all = vec![
        size!(v4l2_capability),
        align!(v4l2_capability),
        offset!(v4l2_capability, driver),
        offset!(v4l2_capability, card),
        offset!(v4l2_capability, bus_info),
        offset!(v4l2_capability, version),
        offset!(v4l2_capability, capabilities),
        offset!(v4l2_capability, device_caps),
        offset!(v4l2_capability, reserved),
        size!(v4l2_fmtdesc),
        align!(v4l2_fmtdesc),
        offset!(v4l2_fmtdesc, index),
        offset!(v4l2_fmtdesc, type_, "type"),
        offset!(v4l2_fmtdesc, flags),
        offset!(v4l2_fmtdesc, description),
        offset!(v4l2_fmtdesc, pixelformat),
        offset!(v4l2_fmtdesc, mbus_code),
        offset!(v4l2_fmtdesc, reserved),
        size!(v4l2_frmsize_discrete),
        offset!(v4l2_frmsize_discrete, width),
        offset!(v4l2_frmsize_discrete, height),
        size!(v4l2_frmsize_stepwise),
        offset!(v4l2_frmsize_stepwise, min_width),
        offset!(v4l2_frmsize_stepwise, max_width),
        offset!(v4l2_frmsize_stepwise, step_width),
        offset!(v4l2_frmsize_stepwise, min_height),
        offset!(v4l2_frmsize_stepwise, max_height),
        offset!(v4l2_frmsize_stepwise, step_height),
        size!(v4l2_frmsizeenum),
        align!(v4l2_frmsizeenum),
        offset!(v4l2_frmsizeenum, index),
        offset!(v4l2_frmsizeenum, pixel_format),
        offset!(v4l2_frmsizeenum, type_, "type"),
        offset!(v4l2_frmsizeenum, size, "discrete"),
        offset!(v4l2_frmsizeenum, size, "stepwise"),
        offset!(v4l2_frmsizeenum, reserved),
        size!(v4l2_pix_format),
        align!(v4l2_pix_format),
        offset!(v4l2_pix_format, width),
        offset!(v4l2_pix_format, height),
        offset!(v4l2_pix_format, pixelformat),
        offset!(v4l2_pix_format, field),
        offset!(v4l2_pix_format, bytesperline),
        offset!(v4l2_pix_format, sizeimage),
        offset!(v4l2_pix_format, colorspace),
        offset!(v4l2_pix_format, priv_, "priv"),
        offset!(v4l2_pix_format, flags),
        offset!(v4l2_pix_format, ycbcr_enc),
        offset!(v4l2_pix_format, quantization),
        offset!(v4l2_pix_format, xfer_func),
        size!(v4l2_plane_pix_format),
        align!(v4l2_plane_pix_format),
        offset!(v4l2_plane_pix_format, sizeimage),
        offset!(v4l2_plane_pix_format, bytesperline),
        offset!(v4l2_plane_pix_format, reserved),
        size!(v4l2_pix_format_mplane),
        align!(v4l2_pix_format_mplane),
        offset!(v4l2_pix_format_mplane, width),
        offset!(v4l2_pix_format_mplane, height),
        offset!(v4l2_pix_format_mplane, pixelformat),
        offset!(v4l2_pix_format_mplane, field),
        offset!(v4l2_pix_format_mplane, colorspace),
        offset!(v4l2_pix_format_mplane, plane_fmt),
        offset!(v4l2_pix_format_mplane, num_planes),
        offset!(v4l2_pix_format_mplane, flags),
        offset!(v4l2_pix_format_mplane, ycbcr_enc),
        offset!(v4l2_pix_format_mplane, quantization),
        offset!(v4l2_pix_format_mplane, xfer_func),
        offset!(v4l2_pix_format_mplane, reserved),
        size!(v4l2_format),
        align!(v4l2_format),
        offset!(v4l2_format, type_, "type"),
        offset!(v4l2_format, fmt),
        (
            "sizeof(((struct v4l2_format *)0)->fmt)",
            size_of::<v4l2_format_union>() as u64,
        ),
        size!(v4l2_fract),
        offset!(v4l2_fract, numerator),
        offset!(v4l2_fract, denominator),
        size!(v4l2_captureparm),
        offset!(v4l2_captureparm, capability),
        offset!(v4l2_captureparm, capturemode),
        offset!(v4l2_captureparm, timeperframe),
        offset!(v4l2_captureparm, extendedmode),
        offset!(v4l2_captureparm, readbuffers),
        offset!(v4l2_captureparm, reserved),
        size!(v4l2_streamparm),
        align!(v4l2_streamparm),
        offset!(v4l2_streamparm, type_, "type"),
        offset!(v4l2_streamparm, parm),
        size!(v4l2_requestbuffers),
        align!(v4l2_requestbuffers),
        offset!(v4l2_requestbuffers, count),
        offset!(v4l2_requestbuffers, type_, "type"),
        offset!(v4l2_requestbuffers, memory),
        offset!(v4l2_requestbuffers, capabilities),
        offset!(v4l2_requestbuffers, flags),
        offset!(v4l2_requestbuffers, reserved),
        size!(timeval),
        align!(timeval),
        offset!(timeval, tv_sec),
        offset!(timeval, tv_usec),
        size!(v4l2_timecode),
        offset!(v4l2_timecode, type_, "type"),
        offset!(v4l2_timecode, flags),
        offset!(v4l2_timecode, frames),
        offset!(v4l2_timecode, seconds),
        offset!(v4l2_timecode, minutes),
        offset!(v4l2_timecode, hours),
        offset!(v4l2_timecode, userbits),
        size!(v4l2_buffer),
        align!(v4l2_buffer),
        offset!(v4l2_buffer, index),
        offset!(v4l2_buffer, type_, "type"),
        offset!(v4l2_buffer, bytesused),
        offset!(v4l2_buffer, flags),
        offset!(v4l2_buffer, field),
        offset!(v4l2_buffer, timestamp),
        offset!(v4l2_buffer, timecode),
        offset!(v4l2_buffer, sequence),
        offset!(v4l2_buffer, memory),
        offset!(v4l2_buffer, m),
        (
            "sizeof(((struct v4l2_buffer *)0)->m)",
            size_of::<v4l2_buffer_m>() as u64,
        ),
        offset!(v4l2_buffer, length),
        offset!(v4l2_buffer, reserved2),
        offset!(v4l2_buffer, request_fd),
        size!(v4l2_plane),
        align!(v4l2_plane),
        offset!(v4l2_plane, bytesused),
        offset!(v4l2_plane, length),
        offset!(v4l2_plane, m),
        (
            "sizeof(((struct v4l2_plane *)0)->m)",
            size_of::<v4l2_plane_m>() as u64,
        ),
        offset!(v4l2_plane, data_offset),
        offset!(v4l2_plane, reserved),
    ];
    all.extend(constant![
        VIDEO_MAX_PLANES,
        V4L2_CAP_VIDEO_CAPTURE,
        V4L2_CAP_VIDEO_CAPTURE_MPLANE,
        V4L2_CAP_STREAMING,
        V4L2_CAP_DEVICE_CAPS,
        V4L2_BUF_TYPE_VIDEO_CAPTURE,
        V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE,
        V4L2_MEMORY_MMAP,
        V4L2_FIELD_ANY,
        V4L2_FMT_FLAG_COMPRESSED,
        V4L2_FMT_FLAG_EMULATED,
        V4L2_FRMSIZE_TYPE_DISCRETE,
        V4L2_FRMSIZE_TYPE_CONTINUOUS,
        V4L2_FRMSIZE_TYPE_STEPWISE,
        V4L2_BUF_FLAG_ERROR,
        V4L2_BUF_FLAG_TIMESTAMP_MASK,
        V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC,
        V4L2_CAP_TIMEPERFRAME,
        V4L2_PIX_FMT_MJPEG,
        V4L2_PIX_FMT_JPEG,
        V4L2_PIX_FMT_YUYV,
        V4L2_PIX_FMT_NV12,
        V4L2_PIX_FMT_NV21,
        V4L2_PIX_FMT_YUV420,
        V4L2_PIX_FMT_RGB24,
        V4L2_PIX_FMT_BGR24,
        VIDIOC_QUERYCAP,
        VIDIOC_ENUM_FMT,
        VIDIOC_G_FMT,
        VIDIOC_S_FMT,
        VIDIOC_REQBUFS,
        VIDIOC_QUERYBUF,
        VIDIOC_QBUF,
        VIDIOC_DQBUF,
        VIDIOC_STREAMON,
        VIDIOC_STREAMOFF,
        VIDIOC_G_PARM,
        VIDIOC_S_PARM,
        VIDIOC_ENUM_FRAMESIZES,
    ]);
    all
}
