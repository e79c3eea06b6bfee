//! [`OpenCvError`]: what went wrong on the OpenCV side. Camera and recorder failures reach their
//! callers as the core's `CameraError` and `RecorderError`, with one of these as the source.

use std::path::PathBuf;

use edgecam_core::camera::ImageError;
use thiserror::Error;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum OpenCvError {
    /// An OpenCV call failed (OpenCV raised an exception).
    #[error("OpenCV failed to {what}")]
    OpenCv {
        what: String,
        #[source]
        source: opencv::Error,
    },
    /// `VideoCapture::open` returned false.
    #[error("OpenCV could not open {source_name}: {hint}")]
    NotOpened { source_name: String, hint: String },
    /// The source could not be set up the way the spec asks.
    #[error("{0}")]
    Unsupported(String),
    /// A frame that cannot be turned into an image.
    #[error("{0}")]
    BadFrame(String),
    /// A frame whose size or bytes do not make an image (a camera reaches its caller as
    /// `CameraError::Image`).
    #[error(transparent)]
    Image(#[from] ImageError),
    /// Bytes that should be one JPEG image are not.
    #[error("{what} is not a JPEG image ({len} bytes, starting {head:02x?})")]
    NotJpeg {
        what: &'static str,
        len: usize,
        head: Vec<u8>,
    },
    /// `VideoWriter` did not open.
    #[error(
        "OpenCV could not open a {fourcc} video writer for {path} ({width}x{height} at {fps} fps): \
         the {fourcc} encoder may be missing from this OpenCV build (Debian's comes with FFmpeg's; \
         check `ffmpeg -encoders`), or the folder is not writable"
    )]
    WriterNotOpened {
        path: PathBuf,
        fourcc: String,
        width: i32,
        height: i32,
        fps: f64,
    },
    /// There is no display for a HighGUI window (the `window` feature).
    #[error("no display to open a window on: {0}")]
    NoDisplay(String),
    /// A HighGUI window was used after it was closed.
    #[error("the window {0:?} is closed")]
    WindowClosed(String),
    /// The worker thread of a camera or recorder could not be started or went away.
    #[error("the {0} thread is gone")]
    ThreadGone(&'static str),
}

impl OpenCvError {
    /// Wraps an OpenCV error with what was being done.
    pub(crate) fn opencv(what: impl Into<String>) -> impl FnOnce(opencv::Error) -> OpenCvError {
        let what = what.into();
        move |source| OpenCvError::OpenCv { what, source }
    }

    pub(crate) fn not_jpeg(what: &'static str, data: &[u8]) -> OpenCvError {
        OpenCvError::NotJpeg {
            what,
            len: data.len(),
            head: data.iter().take(4).copied().collect(),
        }
    }
}
