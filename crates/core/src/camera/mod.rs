//! The [`Camera`] trait: where frames come from; what they are ([`Image`]); and the
//! [`CameraRegistry`] that turns a spec (`sim:640x480@30`, `exec:...`) into a camera.

use thiserror::Error;

use crate::BoxError;
use crate::time::Timestamp;

mod image;
mod pool;
mod registry;

pub use image::{Image, ImageError, PixelFormat};
pub use pool::FramePool;
pub use registry::{CameraContext, CameraKind, CameraRegistry};

/// What a camera can do, as far as the server needs to know. Read it after [`Camera::open`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Capabilities {
    /// The size the camera actually delivers (which may differ from what was asked for).
    pub width: u32,
    pub height: u32,
    /// The frame rate the camera paces itself to; `None` when it delivers as fast as asked.
    pub fps: Option<f64>,
    /// What its frames are: JPEG is passed through, raw formats are encoded once.
    pub format: PixelFormat,
}

impl Capabilities {
    pub fn new(width: u32, height: u32, format: PixelFormat) -> Self {
        Capabilities {
            width,
            height,
            fps: None,
            format,
        }
    }
}

/// One frame as captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// One more for every frame this camera delivered since it was created.
    pub seq: u64,
    pub captured_at: Timestamp,
    pub image: Image,
}

#[derive(Debug, Error)]
pub enum CameraError {
    #[error("invalid camera {spec:?}: {reason}")]
    Spec { spec: String, reason: String },
    #[error(
        "cannot open camera {device}; check that it is connected and not used by another program"
    )]
    Open {
        device: String,
        #[source]
        source: BoxError,
    },
    #[error("camera {device} failed to deliver a frame")]
    Read {
        device: String,
        #[source]
        source: BoxError,
    },
    /// The device went away (unplugged, file ended); it may come back after `open`.
    #[error("camera {device} is gone; it will be reopened")]
    Disconnected { device: String },
    #[error("camera {device} delivered an unusable frame")]
    Image {
        device: String,
        #[source]
        source: ImageError,
    },
    #[error("camera {device} was used before `open`")]
    NotOpen { device: String },
}

/// A source of frames. Calls come in this order: `open`, then any number of `next_frame`,
/// then `close`; after `close` or a [`CameraError::Disconnected`], `open` may be called again.
///
/// The capture loop is the only caller, so methods take `&mut self`; implementations that
/// block (OpenCV) do so on their own thread, never on the caller's.
#[async_trait::async_trait]
pub trait Camera: Send + std::fmt::Debug {
    /// What this camera is called in logs and errors (`sim:640x480@30`, `opencv:/dev/video0`).
    fn name(&self) -> String;

    /// Opens the device and reports what it actually delivers.
    async fn open(&mut self) -> Result<Capabilities, CameraError>;

    /// The newest frame, waiting for the camera's pace when it has none yet. A `Read` error
    /// loses that frame only; `Disconnected` means `open` is needed before the next frame.
    async fn next_frame(&mut self) -> Result<Captured, CameraError>;

    /// What `open` reported, or `None` when not open.
    fn capabilities(&self) -> Option<Capabilities>;

    /// Releases the device. Closing a closed camera is not an error.
    async fn close(&mut self) -> Result<(), CameraError>;
}
