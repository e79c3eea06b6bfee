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
//! # Spec grammar
//!
//! An [`OpenCvConfig`] is parsed from (and printed back as) a spec:
//!
//! ```text
//! spec    = "opencv" [ ":" SOURCE ] [ "?" [ option *( "&" option ) ] ]
//! SOURCE  = INDEX | PATH | URL
//! option  = "size=" WIDTH "x" HEIGHT | "fps=" FPS | "mjpeg=" ( "auto" | "on" | "off" )
//!         | "encode=" ( "opencv" | "server" )
//!         | "backend=" ( "any" | "v4l2" | "ffmpeg" | "gstreamer" )
//! ```
//!
//! - `opencv` is `opencv:0`. A `SOURCE` of digits is a camera index (`opencv:0`, V4L2's
//!   `/dev/video0` on Linux); one with `://` is a URL (`opencv:rtsp://host:554/stream`); a path
//!   under `/dev/` is a device (`opencv:/dev/video2`); any other path is a video file
//!   (`opencv:clip.mp4`, `opencv:./0` for a file named `0`), played in a loop at its own frame
//!   rate.
//! - Options start at the **last** `?`. A URL with a query of its own therefore ends with one
//!   more `?`, followed by options or by nothing: `opencv:rtsp://cam/live?channel=1?fps=15`,
//!   `opencv:http://cam/video.cgi?res=hd?`. Colons in the source (ports, passwords) need nothing.
//! - `size=WxH` (1 to 7680 x 4320): the frame size to ask a camera for. `fps=N` (above 0, at
//!   most 1000, fractions allowed): the rate to ask a camera for, or the pace to play a file at
//!   instead of its own. The camera's [`Capabilities`](edgecam_core::camera::Capabilities)
//!   report what the source really delivers, read back from OpenCV and the first frame.
//! - `mjpeg=auto` (default): ask a camera for MJPEG and pass its JPEGs through untouched when
//!   OpenCV can hand them out (V4L2 with `CAP_PROP_CONVERT_RGB` off; FFmpeg with
//!   `CAP_PROP_FORMAT = -1` for an MJPEG file or stream) and the first one is a whole JPEG;
//!   otherwise decode. `mjpeg=on`: pass through or fail to open. `mjpeg=off`: always decode.
//! - `encode=opencv` (default): decoded frames are JPEG-encoded on the capture thread with
//!   OpenCV's `imencode` at the server's `--quality` ([`OpenCvConfig::with_quality`]; 80 by
//!   default) and stamped like the server's own frames. `encode=server`: decoded frames are
//!   handed on as RGB pixels for the server's encoder (its `--encoder`). `imencode` is the default because it measured about twice as
//!   fast as converting to RGB and encoding with the pure-Rust encoder (see
//!   `examples/encode_compare.rs`).
//! - `backend=`: OpenCV's video I/O backend; by default V4L2 for indexes and devices on Linux,
//!   OpenCV's own choice for files and URLs.
//! - Options may come in any order, each at most once. A bad spec is a
//!   [`CameraError::Spec`](edgecam_core::camera::CameraError::Spec) whose reason says what is
//!   allowed; a URL's password never appears in the camera's name or its errors.

mod camera;
mod capture;
mod config;
mod error;
mod image;
mod recorder;
#[cfg(feature = "window")]
mod window;

pub use camera::OpenCvCamera;
pub use config::{Backend, DEFAULT_QUALITY, Encode, Mjpeg, OpenCvConfig, Source};
pub use error::OpenCvError;
pub use recorder::{LEGACY_FPS, OpenCvRecorder};
#[cfg(feature = "window")]
pub use window::HighGuiWindow;
