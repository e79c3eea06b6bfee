//! edgecam's OpenCV backend, the only crate that links OpenCV: [`OpenCvCamera`] reads a camera,
//! video file or network stream through `VideoCapture`; [`HighGuiWindow`] shows frames in a
//! HighGUI window for the viewer; [`OpenCvRecorder`] re-encodes received frames into a video
//! file with `VideoWriter`, as the legacy Python client did.
//!
//! It needs the system OpenCV (Debian: `libopencv-dev`, and `clang` + `libclang-dev` to build
//! the bindings) and uses its `videoio`, `imgcodecs` and `imgproc` modules, and `highgui` for
//! [`HighGuiWindow`] with the `window` feature (on by default; off for an OpenCV built without
//! highgui, as on a headless board). It stays outside the workspace's `default-members`, so
//! that a bare `cargo build` never needs OpenCV.
//!
//! It hands frames on as the source delivers them and encodes nothing itself: an MJPEG
//! source's JPEGs pass through ([`PixelFormat::Jpeg`](edgecam_core::camera::PixelFormat::Jpeg)),
//! anything else is decoded to BGR24 pixels, OpenCV's own order; the server's one
//! `edgecam_encode::Encoder` stamps the first and encodes the second. OpenCV's `imencode` is
//! one of that encoder's backends, [`OpenCvEncoder`] (`--encoder opencv`). The binary
//! registers both through [`kind`] and [`encoder_kind`].
//!
//! # Spec grammar
//!
//! An [`OpenCvConfig`] is parsed from (and printed back as) a spec in the grammar every camera
//! shares (`edgecam_core::spec`):
//!
//! ```text
//! spec    = "opencv" [ ":" SOURCE ] [ "#" option *( "&" option ) ]
//! SOURCE  = INDEX | PATH | URL
//! option  = "size=" WIDTH "x" HEIGHT | "fps=" FPS | "mjpeg=" ( "auto" | "on" | "off" )
//!         | "backend=" ( "any" | "v4l2" | "ffmpeg" | "gstreamer" )
//! ```
//!
//! - `opencv` is `opencv:0`. A `SOURCE` of digits is a camera index (`opencv:0`, V4L2's
//!   `/dev/video0` on Linux); one with `://` is a URL (`opencv:rtsp://host:554/stream`); a path
//!   under `/dev/` is a device (`opencv:/dev/video2`); any other path is a video file
//!   (`opencv:clip.mp4`, `opencv:./0` for a file named `0`), played in a loop at its own frame
//!   rate.
//! - Options start at the first `#`, so the source is taken as written up to there: a URL keeps
//!   its own `?query` and `&`s (`opencv:rtsp://cam/live?channel=1&subtype=0#fps=15`), colons
//!   (ports, passwords) need nothing, and a source cannot hold a `#`. `opencv:0?fps=15`, the
//!   old way, is refused with a pointer to `#`.
//! - `size=WxH` (1 to 7680 x 4320): the frame size to ask a camera for. `fps=N` (above 0, at
//!   most 1000, fractions allowed): the rate to ask a camera for, or the pace to play a file at
//!   instead of its own. The camera's [`Capabilities`](edgecam_core::camera::Capabilities)
//!   report what the source really delivers, read back from OpenCV and the first frame.
//! - `mjpeg=auto` (default): ask a camera for MJPEG and pass its JPEGs through when OpenCV can
//!   hand them out (V4L2 with `CAP_PROP_CONVERT_RGB` off; FFmpeg with `CAP_PROP_FORMAT = -1`
//!   for an MJPEG file or stream) and the first one is a whole JPEG; otherwise decode.
//!   `mjpeg=on`: pass through or fail to open. `mjpeg=off`: always decode.
//! - `backend=`: OpenCV's video I/O backend; by default V4L2 for indexes and devices on Linux,
//!   OpenCV's own choice for files and URLs.
//! - Options may come in any order, each at most once. The JPEG quality is not the camera's:
//!   it is the server's `--quality`, whichever `--encoder` encodes. A bad spec is a
//!   [`CameraError::Spec`] whose reason says what is allowed; a URL's password never appears
//!   in the camera's name or its errors.

mod camera;
mod capture;
mod config;
mod encoder;
mod error;
mod image;
mod recorder;
#[cfg(feature = "window")]
mod window;

pub use camera::OpenCvCamera;
pub use config::{Backend, Mjpeg, OpenCvConfig, Source};
pub use encoder::OpenCvEncoder;
pub use error::OpenCvError;
pub use recorder::{LEGACY_FPS, OpenCvRecorder};
#[cfg(feature = "window")]
pub use window::HighGuiWindow;

use edgecam_core::camera::{Camera, CameraContext, CameraError, CameraKind};
use edgecam_core::spec::Spec;

/// `opencv:` for the [`CameraRegistry`](edgecam_core::camera::CameraRegistry).
pub fn kind() -> CameraKind {
    CameraKind {
        name: "opencv",
        summary: "opencv[:INDEX|DEVICE|FILE|URL][#size=WxH&fps=N&mjpeg=auto|on|off&backend=any|v4l2|ffmpeg|gstreamer]: \
                  cameras, video files (looped) and streams through OpenCV; a URL keeps its ?query",
        example: "opencv:0",
        build: Ok(open),
    }
}

/// OpenCV's `imencode` for the server's JPEG backends (`--encoder opencv`).
pub fn encoder_kind() -> edgecam_encode::BackendKind {
    OpenCvEncoder::kind()
}

fn open(spec: &Spec<'_>, context: &CameraContext) -> Result<Box<dyn Camera>, CameraError> {
    let config = OpenCvConfig::from_spec(spec)?;
    Ok(Box::new(OpenCvCamera::new(config, context.clock.clone())))
}
