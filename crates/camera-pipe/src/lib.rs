//! edgecam's pipe cameras: frames read from a command's standard output (`exec:`), from our
//! own standard input or from a FIFO or file (`pipe:`), as a stream of JPEGs (MJPEG) or as raw
//! frames of a declared size. Any program that can write frames to a pipe becomes a camera,
//! without linking its libraries.
//!
//! # Spec grammar
//!
//! ```text
//! exec:COMMAND[#OPTION&...]   COMMAND is split into words as a shell would (quotes,
//!                             backslashes), but no shell runs it: no $VARS, globs or pipes
//! pipe:-[#OPTION&...]         our standard input, read once (a pipe or a redirected file)
//! pipe:PATH[#OPTION&...]      a FIFO (each writer in turn) or a regular file
//!
//! format=mjpeg|yuyv|nv12|nv21|i420|rgb24|bgr24   default mjpeg
//! size=WxH          required for the raw formats, refused for mjpeg (each JPEG says its size)
//! fps=N             the declared rate, reported in the capabilities; a regular file is read
//!                   at this pace (default 30; fps=0 reads it as fast as it goes)
//! timeout=SECONDS   no frame for this long is a disconnection (default 5, e.g. 0.5)
//! max_frame=BYTES   mjpeg only: larger JPEGs are skipped and counted (default 16 MiB)
//! ```
//!
//! Examples (the first two work wherever ffmpeg is installed):
//!
//! ```text
//! exec:ffmpeg -loglevel error -re -f lavfi -i testsrc2=size=640x480:rate=30 -f mjpeg -
//! exec:ffmpeg -loglevel error -re -f lavfi -i testsrc2=size=1280x720:rate=30 -pix_fmt nv12 -f rawvideo -#format=nv12&size=1280x720
//! # A Raspberry Pi camera, JPEGs from the ISP:
//! exec:rpicam-vid -t 0 --codec mjpeg --flush -o -
//! # An RV1106 board's ISP output through V4L2:
//! exec:v4l2-ctl -d /dev/video11 --set-fmt-video=width=1280,height=720,pixelformat=NV12 --stream-mmap --stream-to=-#format=nv12&size=1280x720
//! ```
//!
//! # Behaviour
//!
//! - A reader task (on the runtime current at [`open`](edgecam_core::camera::Camera::open))
//!   drains the source all the time and keeps only the newest whole frame, so the writer
//!   never blocks on us and no backlog forms: a slow consumer sees gaps in `seq`, which counts
//!   every frame the reader completed since the camera was created. Memory: one frame being
//!   assembled plus the newest whole one.
//! - `open` of `exec:` starts the command in its own process group, with standard input from
//!   `/dev/null` and standard error logged as warnings (at most 10 lines per 10 s). It fails
//!   with [`CameraError::Open`] when the command cannot be started, or when it ends before its
//!   first frame (quoting its last line of standard error). It waits for the first frame: up to
//!   a second for raw formats (then it returns and lets the stall timeout judge), up to the
//!   stall timeout for MJPEG, whose capabilities need a frame's size.
//! - `open` of a FIFO never blocks on the open itself (it is opened non-blocking). For raw
//!   formats it returns at once; for MJPEG it waits for a writer's first frame (however long:
//!   the capture loop can cancel it). The stall timeout starts at a writer's first byte; the
//!   writer going away is a disconnection, and `open` again waits for the next writer.
//! - End of file, a read error or a stall ends the reader; the child's group is then sent
//!   SIGTERM, SIGKILL a second later if it lingers, and reaped; then `next_frame` returns
//!   [`CameraError::Disconnected`] (after any frame not yet returned) and the capture loop
//!   reopens the camera with backoff.
//! - `pipe:-` reads standard input once: after its end, `open` fails saying so.
//! - `close` ends the child's group the same way and waits for it; dropping the camera asks the
//!   reader to do so and does not wait.
//! - Malformed input (garbage between JPEGs, a frame without a header, an oversized JPEG, a
//!   short last frame) is counted in [`PipeStats`] and logged, rate-limited.
//!
//! [`CameraError::Open`]: edgecam_core::camera::CameraError::Open
//! [`CameraError::Disconnected`]: edgecam_core::camera::CameraError::Disconnected

mod camera;
mod child;
mod config;
mod reader;

use edgecam_core::camera::{Camera, CameraContext, CameraError, CameraKind};
use edgecam_core::spec::Spec;

pub use camera::{PipeCamera, PipeStats};
pub use config::{
    DEFAULT_FILE_FPS, DEFAULT_MAX_FRAME, DEFAULT_TIMEOUT, MAX_TIMEOUT_SECS, PipeConfig, Source,
};

/// What can go wrong with a pipe camera's source; the `source` of a [`CameraError`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipeError {
    #[error("cannot start {program:?}: {source}; is it installed and on PATH?")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the child's standard output could not be read")]
    NoStdout,
    #[error("the command ended before its first frame: {0}")]
    EndedEarly(String),
    #[error(
        "no frame came within {0:.1} s of starting it (raise #timeout=SECONDS if it starts slowly)"
    )]
    NoFirstFrame(f64),
    #[error("cannot open {path}: {source}")]
    Path {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is neither a FIFO nor a regular file")]
    NotAFile { path: String },
    #[error(
        "standard input has ended; it can be read only once (restart edgecam to read it again)"
    )]
    StdinEnded,
    #[error(
        "standard input is {0}; pipe frames into it, e.g. `ffmpeg ... -f mjpeg - | edgecam ...`"
    )]
    StdinUnusable(&'static str),
    #[error("the runtime that reads it is shutting down")]
    RuntimeGone,
}

/// `exec:COMMAND`: frames from a command's standard output.
pub fn exec_kind() -> CameraKind {
    CameraKind {
        name: "exec",
        summary: "exec:COMMAND[#format=mjpeg|yuyv|nv12|nv21|i420|rgb24|bgr24&size=WxH&fps=N&timeout=SECONDS&max_frame=BYTES], frames from a command's standard output (no shell; raw formats need size)",
        example: "exec:ffmpeg -loglevel error -re -f lavfi -i testsrc2=size=640x480:rate=30 -f mjpeg -",
        build: Ok(build),
    }
}

/// `pipe:-` and `pipe:PATH`: frames from our standard input, a FIFO or a file.
pub fn pipe_kind() -> CameraKind {
    CameraKind {
        name: "pipe",
        summary: "pipe:-|PATH[#format=...&size=WxH&fps=N&timeout=SECONDS&max_frame=BYTES], frames from standard input, a FIFO or a file (read at fps, default 30)",
        example: "pipe:-",
        build: Ok(build),
    }
}

fn build(spec: &Spec<'_>, context: &CameraContext) -> Result<Box<dyn Camera>, CameraError> {
    let config = PipeConfig::from_spec(spec)?;
    Ok(Box::new(PipeCamera::new(
        spec.text().to_owned(),
        config,
        context.clock.clone(),
    )))
}
