//! The capture thread: the only code that touches a `VideoCapture`. It opens the source, sets
//! it up, then grabs frames in a loop and leaves the newest one in a single-slot [`Mailbox`]
//! for [`OpenCvCamera`](crate::OpenCvCamera) to take.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use edgecam_core::BoxError;
use edgecam_core::camera::{CameraError, Capabilities, Captured, Image, PixelFormat};
use edgecam_core::time::Clock;
use opencv::core::Mat;
use opencv::prelude::*;
use opencv::videoio::{
    CAP_ANY, CAP_FFMPEG, CAP_GSTREAMER, CAP_PROP_CONVERT_RGB, CAP_PROP_FORMAT, CAP_PROP_FOURCC,
    CAP_PROP_FPS, CAP_PROP_FRAME_HEIGHT, CAP_PROP_FRAME_WIDTH, CAP_V4L2, VideoCapture,
};

use crate::config::{Backend, Mjpeg, OpenCvConfig, Source};
use crate::error::OpenCvError;
use crate::image::{Converter, raw_jpeg};

/// Frames are converted only while someone takes them: while `next_frame` waits, or for this
/// long after it last returned. An idle camera only grabs (which keeps the device's queue
/// drained and notices an unplugged camera) and drops the frames undecoded.
const IDLE_AFTER: Duration = Duration::from_secs(1);
/// The pace of a file that does not say its frame rate.
const FALLBACK_FILE_FPS: f64 = 30.0;

/// What the capture thread and the camera share. The thread writes frames, its opening result
/// and its end; the camera writes `stop` and whether it wants frames.
pub(crate) struct Shared {
    mailbox: Mutex<Mailbox>,
    /// For the thread's paced waits (woken by `stop`) and for a blocking wait on its end.
    changed: Condvar,
    /// For the camera's async waits.
    pub(crate) ready: tokio::sync::Notify,
}

#[derive(Default)]
pub(crate) struct Mailbox {
    /// How opening went; taken by `open`.
    pub(crate) opened: Option<Result<Capabilities, CameraError>>,
    /// The newest frame (or the error that lost it); a newer one replaces it.
    pub(crate) newest: Option<Result<Captured, CameraError>>,
    /// Why the thread stopped capturing on its own (the device went away).
    pub(crate) gone: Option<String>,
    /// Set by the camera: the thread is to release the device and end.
    stop: bool,
    /// Set by the thread once the device is released, just before it ends.
    pub(crate) exited: bool,
    /// `next_frame` is waiting for a frame.
    waiting: bool,
    /// When `next_frame` last took a frame (or `open` started).
    last_taken: Option<Instant>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mailbox = self.lock();
        f.debug_struct("Shared")
            .field("has_frame", &mailbox.newest.is_some())
            .field("gone", &mailbox.gone)
            .field("stop", &mailbox.stop)
            .field("exited", &mailbox.exited)
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn new() -> Shared {
        Shared {
            mailbox: Mutex::new(Mailbox {
                last_taken: Some(Instant::now()),
                ..Mailbox::default()
            }),
            changed: Condvar::new(),
            ready: tokio::sync::Notify::new(),
        }
    }

    /// The mailbox; a panic elsewhere while it was held leaves it usable.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Mailbox> {
        self.mailbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the mailbox and wakes whoever waits on it.
    pub(crate) fn update(&self, change: impl FnOnce(&mut Mailbox)) {
        change(&mut self.lock());
        self.changed.notify_all();
        self.ready.notify_one();
    }

    pub(crate) fn request_stop(&self) {
        self.update(|mailbox| mailbox.stop = true);
    }

    fn stopped(&self) -> bool {
        self.lock().stop
    }

    /// Sleeps until `deadline` or until stopped; `true` when stopped.
    fn sleep_until(&self, deadline: Instant) -> bool {
        self.wait_until(deadline, |mailbox| mailbox.stop)
    }

    /// Blocks until the thread has ended or `timeout` passed; `true` when it has ended.
    pub(crate) fn wait_exited(&self, timeout: Duration) -> bool {
        self.wait_until(Instant::now() + timeout, |mailbox| mailbox.exited)
    }

    /// Blocks until `done` holds for the mailbox or `deadline` passed; whether `done` held.
    fn wait_until(&self, deadline: Instant, done: impl Fn(&Mailbox) -> bool) -> bool {
        let mut mailbox = self.lock();
        loop {
            if done(&mailbox) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            mailbox = match self.changed.wait_timeout(mailbox, deadline - now) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Whether a frame grabbed now would be taken.
    fn wanted(&self) -> bool {
        let mailbox = self.lock();
        mailbox.waiting || mailbox.last_taken.is_some_and(|t| t.elapsed() < IDLE_AFTER)
    }

    /// Marks `next_frame` as waiting until the guard is dropped (it is cancel-safe).
    pub(crate) fn start_waiting(&self) -> Waiting<'_> {
        self.lock().waiting = true;
        Waiting(self)
    }
}

/// While it lives, the thread converts every frame it grabs.
pub(crate) struct Waiting<'a>(&'a Shared);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut mailbox = self.0.lock();
        mailbox.waiting = false;
        mailbox.last_taken = Some(Instant::now());
    }
}

/// Marks the thread as ended when dropped, even by a panic, so that nobody waits for it forever.
struct ExitGuard(Arc<Shared>);

impl Drop for ExitGuard {
    fn drop(&mut self) {
        self.0.update(|mailbox| mailbox.exited = true);
    }
}

/// Everything the capture thread needs.
pub(crate) struct CaptureThread {
    pub(crate) config: OpenCvConfig,
    pub(crate) name: String,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) seq: Arc<AtomicU64>,
    pub(crate) shared: Arc<Shared>,
}

impl CaptureThread {
    pub(crate) fn spawn(self) -> io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("edgecam-opencv".to_owned())
            .spawn(move || self.run())
    }

    fn run(self) {
        let _exit = ExitGuard(self.shared.clone());
        let try_raw = self.config.mjpeg() != Mjpeg::Off;
        match Device::open(&self.config, &self.name, try_raw) {
            Ok(device) => {
                let capabilities = device.capabilities.clone();
                tracing::info!(
                    camera = %self.name,
                    backend = %device.backend,
                    fourcc = %device.fourcc,
                    width = capabilities.width,
                    height = capabilities.height,
                    fps = ?capabilities.fps,
                    frames = if device.raw { "passed through (MJPEG)" } else { "decoded" },
                    "camera opened"
                );
                self.shared
                    .update(|mailbox| mailbox.opened = Some(Ok(capabilities)));
                self.capture(device);
            }
            Err(e) => self.shared.update(|mailbox| mailbox.opened = Some(Err(e))),
        }
        tracing::debug!(camera = %self.name, "capture thread stopped");
    }

    /// Grabs frames until stopped or the device is gone. The device is released on return.
    fn capture(&self, mut device: Device) {
        let name = &self.name;
        // Files are paced here: each frame is due one interval after the one before.
        let mut due = Instant::now();
        loop {
            if let Some(interval) = device.interval {
                if self.shared.sleep_until(due) {
                    break;
                }
                let now = Instant::now();
                // A thread that fell more than an interval behind starts again from now:
                // no burst of frames to catch up.
                due = if now.duration_since(due) > interval {
                    now + interval
                } else {
                    due + interval
                };
            } else if self.shared.stopped() {
                break;
            }
            match device.grab() {
                Ok(true) => {}
                Ok(false) if self.config.is_file() => {
                    // The end of the file: play it again from the start. Opening it anew
                    // (rather than seeking) also notices a file that was removed or replaced.
                    let raw = device.raw;
                    drop(device);
                    match Device::open(&self.config, name, raw) {
                        Ok(again) => {
                            tracing::debug!(camera = %name, "end of the file; playing it again");
                            device = again;
                        }
                        Err(e) => {
                            let reason = format!(
                                "the file ended and could not be opened again: {}",
                                edgecam_core::error_chain(&e)
                            );
                            return self.gone(reason);
                        }
                    }
                }
                Ok(false) => {
                    return self.gone(
                        "it stopped delivering frames (unplugged, switched off, or the stream \
                         ended)"
                            .to_owned(),
                    );
                }
                Err(e) => return self.gone(format!("OpenCV failed to grab a frame: {e}")),
            }
            let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
            let captured_at = self.clock.now();
            if !self.shared.wanted() {
                device.skip();
                // Nobody takes frames: drop the one waiting, so that it is not handed out stale.
                self.shared.lock().newest = None;
                continue;
            }
            let frame = match device.image() {
                Ok(image) => Ok(Captured {
                    seq,
                    captured_at,
                    image,
                }),
                Err(e) => {
                    tracing::debug!(camera = %name, seq, error = %edgecam_core::error_chain(&e), "frame lost");
                    Err(match e {
                        OpenCvError::Image(source) => CameraError::Image {
                            device: name.clone(),
                            source,
                        },
                        e => CameraError::Read {
                            device: name.clone(),
                            source: Box::new(e),
                        },
                    })
                }
            };
            self.shared.update(|mailbox| mailbox.newest = Some(frame));
        }
    }

    fn gone(&self, reason: String) {
        tracing::warn!(camera = %self.name, %reason, "camera is gone");
        self.shared.update(|mailbox| mailbox.gone = Some(reason));
    }
}

/// An open source, set up as the config asks.
struct Device {
    capture: VideoCapture,
    /// Frames are the camera's own JPEGs, passed through.
    raw: bool,
    /// OpenCV's backend and the source's FOURCC, for the logs.
    backend: String,
    fourcc: String,
    converter: Converter,
    /// The last frame retrieved.
    frame: Mat,
    /// The first frame, read while opening, is in `frame` and not yet handed out.
    first_pending: bool,
    capabilities: Capabilities,
    /// The pace of a file; `None` for cameras and streams, which pace themselves.
    interval: Option<Duration>,
}

/// Why a source could not be opened (as asked).
enum OpenFailure {
    Fatal(CameraError),
    /// MJPEG cannot be passed through, and this was found out only after asking OpenCV for
    /// undecoded frames, which it cannot be asked to undo.
    NoPassthrough(String),
}

impl Device {
    /// Opens the source, trying MJPEG pass-through when `try_raw`. With `mjpeg=auto` it falls
    /// back to decoded frames, opening the source again if the first undecoded frame was
    /// unusable.
    fn open(config: &OpenCvConfig, name: &str, try_raw: bool) -> Result<Device, CameraError> {
        match Device::open_with(config, name, try_raw) {
            Ok(device) => Ok(device),
            Err(OpenFailure::Fatal(e)) => Err(e),
            Err(OpenFailure::NoPassthrough(reason)) if config.mjpeg() == Mjpeg::Auto => {
                tracing::debug!(camera = %name, %reason, "no MJPEG pass-through; decoding frames");
                match Device::open_with(config, name, false) {
                    Ok(device) => Ok(device),
                    Err(OpenFailure::Fatal(e)) => Err(e),
                    Err(OpenFailure::NoPassthrough(reason)) => {
                        Err(open_error(name, OpenCvError::Unsupported(reason)))
                    }
                }
            }
            Err(OpenFailure::NoPassthrough(reason)) => Err(open_error(
                name,
                OpenCvError::Unsupported(format!(
                    "{reason}; mjpeg=on needs a source that delivers MJPEG (use mjpeg=auto to \
                     decode otherwise)"
                )),
            )),
        }
    }

    fn open_with(config: &OpenCvConfig, name: &str, try_raw: bool) -> Result<Device, OpenFailure> {
        let fatal = |e: OpenCvError| OpenFailure::Fatal(open_error(name, e));
        let api = api_preference(config);
        let mut capture = VideoCapture::default()
            .map_err(|e| fatal(OpenCvError::opencv("create a VideoCapture")(e)))?;
        let opened = match config.source() {
            Source::Index(index) => capture.open(i32::try_from(*index).unwrap_or(i32::MAX), api),
            Source::Device(path) | Source::File(path) => capture.open_file(path, api),
            Source::Url(url) => capture.open_file(url, api),
        };
        let what = format!("open {}", source_name(config.source()));
        match opened {
            Ok(true) => {}
            Ok(false) => {
                return Err(fatal(OpenCvError::NotOpened {
                    source_name: source_name(config.source()),
                    hint: diagnose(config.source()),
                }));
            }
            Err(e) => return Err(fatal(OpenCvError::opencv(what)(e))),
        }
        let backend = capture
            .get_backend_name()
            .unwrap_or_else(|_| "unknown".to_owned());
        let is_camera = matches!(config.source(), Source::Index(_) | Source::Device(_));

        if try_raw && is_camera {
            // Best effort: the camera may not offer MJPEG; what it gives is read back below.
            let _ = capture.set(CAP_PROP_FOURCC, f64::from(fourcc(*b"MJPG")));
        }
        if let Some((width, height)) = config.size() {
            let _ = capture.set(CAP_PROP_FRAME_WIDTH, f64::from(width));
            let _ = capture.set(CAP_PROP_FRAME_HEIGHT, f64::from(height));
        }
        if let (Some(fps), false) = (config.fps(), config.is_file()) {
            let _ = capture.set(CAP_PROP_FPS, fps);
        }
        let reported_fourcc = capture
            .get(CAP_PROP_FOURCC)
            .map(fourcc_text)
            .unwrap_or_default();
        let reported_fps = capture.get(CAP_PROP_FPS).unwrap_or(0.0);

        let raw = if try_raw {
            // V4L2 hands out the undecoded buffer when asked not to convert to BGR; FFmpeg
            // hands out undecoded packets with CAP_PROP_FORMAT = -1.
            let refusal = if !reported_fourcc.eq_ignore_ascii_case("MJPG") {
                Some(format!("{name} delivers {reported_fourcc:?}, not MJPEG"))
            } else if backend == "V4L2" {
                (!capture.set(CAP_PROP_CONVERT_RGB, 0.0).unwrap_or(false)).then(|| {
                    "OpenCV's V4L2 backend refused to hand out undecoded frames".to_owned()
                })
            } else {
                (!capture.set(CAP_PROP_FORMAT, -1.0).unwrap_or(false))
                    .then(|| format!("OpenCV's {backend} backend cannot hand out undecoded frames"))
            };
            match refusal {
                None => true,
                Some(reason) if config.mjpeg() == Mjpeg::On => {
                    return Err(OpenFailure::NoPassthrough(reason));
                }
                Some(reason) => {
                    tracing::debug!(camera = %name, %reason, "no MJPEG pass-through; decoding frames");
                    false
                }
            }
        } else {
            false
        };

        let mut frame = Mat::default();
        match capture.read(&mut frame) {
            Ok(true) if !frame.empty() => {}
            Ok(_) => {
                return Err(fatal(OpenCvError::Unsupported(format!(
                    "{} opened but delivered no frame ({backend} backend); check that it is a \
                     video source and that its format is supported",
                    source_name(config.source())
                ))));
            }
            Err(e) => return Err(fatal(OpenCvError::opencv("read the first frame")(e))),
        }
        let (width, height) = if raw {
            match raw_jpeg(&frame) {
                Ok(image) => image.size(),
                Err(e) => {
                    return Err(OpenFailure::NoPassthrough(format!(
                        "its first undecoded frame is not usable: {e}"
                    )));
                }
            }
        } else {
            (
                u32::try_from(frame.cols()).unwrap_or(0),
                u32::try_from(frame.rows()).unwrap_or(0),
            )
        };

        let file_fps = if config.is_file() {
            Some(config.fps().unwrap_or_else(|| {
                if reported_fps.is_finite() && reported_fps > 0.0 {
                    reported_fps
                } else {
                    tracing::warn!(camera = %name, "the file does not say its frame rate; playing it at {FALLBACK_FILE_FPS} fps");
                    FALLBACK_FILE_FPS
                }
            }))
        } else {
            None
        };
        let interval = file_fps.map(|fps| Duration::from_secs_f64(1.0 / fps));
        // Camera JPEGs are handed on as they are, decoded frames in OpenCV's own BGR order:
        // the server's encoder stamps the one and encodes the other.
        let format = if raw {
            PixelFormat::Jpeg
        } else {
            PixelFormat::Bgr24
        };
        let mut capabilities = Capabilities::new(width, height, format);
        capabilities.fps =
            file_fps.or((reported_fps.is_finite() && reported_fps > 0.0).then_some(reported_fps));
        if let Some((asked_width, asked_height)) = config.size() {
            if (asked_width, asked_height) != (width, height) {
                tracing::info!(camera = %name, "asked for {asked_width}x{asked_height}; the source delivers {width}x{height}");
            }
        }
        Ok(Device {
            capture,
            raw,
            backend,
            fourcc: reported_fourcc,
            converter: Converter::default(),
            frame,
            first_pending: true,
            capabilities,
            interval,
        })
    }

    /// Grabs the next frame without decoding it (the first frame is already there).
    fn grab(&mut self) -> opencv::Result<bool> {
        if self.first_pending {
            return Ok(true);
        }
        self.capture.grab()
    }

    /// Forgets the frame just grabbed.
    fn skip(&mut self) {
        self.first_pending = false;
    }

    /// The frame just grabbed, as an image: the camera's JPEG, or decoded BGR24.
    fn image(&mut self) -> Result<Image, OpenCvError> {
        if !std::mem::take(&mut self.first_pending) {
            let retrieved = self
                .capture
                .retrieve(&mut self.frame, 0)
                .map_err(OpenCvError::opencv("retrieve the grabbed frame"))?;
            if !retrieved {
                return Err(OpenCvError::BadFrame(
                    "OpenCV could not retrieve the frame it grabbed".to_owned(),
                ));
            }
        }
        if self.raw {
            raw_jpeg(&self.frame)
        } else {
            self.converter.convert(&self.frame)
        }
    }
}

fn open_error(name: &str, source: OpenCvError) -> CameraError {
    CameraError::Open {
        device: name.to_owned(),
        source: Box::new(source) as BoxError,
    }
}

/// The `VideoCapture` API preference for the config.
fn api_preference(config: &OpenCvConfig) -> i32 {
    match config.backend() {
        Backend::Auto => match config.source() {
            Source::Index(_) | Source::Device(_) if cfg!(target_os = "linux") => CAP_V4L2,
            _ => CAP_ANY,
        },
        Backend::Any => CAP_ANY,
        Backend::V4l2 => CAP_V4L2,
        Backend::Ffmpeg => CAP_FFMPEG,
        Backend::Gstreamer => CAP_GSTREAMER,
    }
}

/// How the source is named in errors (a URL without its password).
fn source_name(source: &Source) -> String {
    match source {
        Source::Index(index) => format!("camera {index}"),
        Source::Device(path) => path.display().to_string(),
        Source::File(path) => format!("the file {}", path.display()),
        Source::Url(_) => {
            let config = OpenCvConfig::new(source.clone()).to_string();
            config.strip_prefix("opencv:").unwrap_or(&config).to_owned()
        }
    }
}

/// What to check when a source does not open, from what can be seen of it.
fn diagnose(source: &Source) -> String {
    match source {
        Source::Index(index) if cfg!(target_os = "linux") => {
            let path = format!("/dev/video{index}");
            format!(
                "camera {index} is {path}; {}",
                diagnose_device(Path::new(&path))
            )
        }
        Source::Index(_) => {
            "check that the camera is connected and not used by another program".to_owned()
        }
        Source::Device(path) => diagnose_device(path),
        Source::File(path) => diagnose_file(path),
        Source::Url(_) => "check that it is reachable from here, that the path and credentials \
             are right (try the same URL with ffprobe), and that no firewall blocks the stream"
            .to_owned(),
    }
}

fn diagnose_device(path: &Path) -> String {
    let shown = path.display();
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    {
        Err(e) if e.kind() == io::ErrorKind::NotFound => format!(
            "{shown} does not exist: is the camera plugged in? (ls /dev/video*; \
             v4l2-ctl --list-devices)"
        ),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => format!(
            "permission denied on {shown}: add the user to the video group \
             (sudo usermod -aG video $USER, then log in again)"
        ),
        Err(e) => format!("{shown} cannot be opened ({e})"),
        Ok(_) => format!(
            "{shown} exists and can be opened, so another program may be using it \
             (fuser {shown}), or it is not a capture device (v4l2-ctl --list-devices)"
        ),
    }
}

fn diagnose_file(path: &Path) -> String {
    let shown = path.display();
    match std::fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let relative = if path.is_relative() {
                std::env::current_dir()
                    .map(|dir| format!(" (relative to {})", dir.display()))
                    .unwrap_or_default()
            } else {
                String::new()
            };
            format!("{shown} does not exist{relative}; check the path")
        }
        Err(e) => format!("{shown} cannot be read ({e})"),
        Ok(meta) if meta.is_dir() => format!("{shown} is a folder, not a video file"),
        Ok(_) => match std::fs::File::open(path) {
            Err(e) => format!("{shown} cannot be read ({e})"),
            Ok(_) => format!(
                "{shown} exists but OpenCV cannot play it: check that its container and codec \
                 are supported (ffprobe {shown})"
            ),
        },
    }
}

/// A FOURCC code as OpenCV takes it.
pub(crate) fn fourcc(code: [u8; 4]) -> i32 {
    i32::from_le_bytes(code)
}

/// A FOURCC code as OpenCV reports it (a double), as text: `MJPG`, `YUYV`.
fn fourcc_text(value: f64) -> String {
    // OpenCV reports the 32-bit code as a double; `as` saturates anything odd.
    let code = (value as i64 as u32).to_le_bytes();
    code.iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                char::from(b)
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn fourcc_round_trips() {
        assert_eq!(fourcc_text(f64::from(fourcc(*b"MJPG"))), "MJPG");
        assert_eq!(fourcc_text(f64::from(fourcc(*b"YUYV"))), "YUYV");
        assert_eq!(fourcc_text(0.0), "????");
        assert_eq!(fourcc_text(f64::NAN), "????");
    }

    #[test]
    fn missing_devices_and_files_are_diagnosed() {
        let hint = diagnose(&Source::Device("/dev/video-edgecam-none".into()));
        assert!(
            hint.starts_with("/dev/video-edgecam-none does not exist: is the camera plugged in?"),
            "{hint}"
        );
        let hint = diagnose(&Source::File("/nonexistent/clip.mp4".into()));
        assert_eq!(hint, "/nonexistent/clip.mp4 does not exist; check the path");
        let hint = diagnose(&Source::File("/".into()));
        assert_eq!(hint, "/ is a folder, not a video file");
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.mp4");
        std::fs::write(&junk, b"not a video").unwrap();
        let hint = diagnose(&Source::File(junk.clone()));
        assert!(hint.contains("exists but OpenCV cannot play it"), "{hint}");
    }

    #[test]
    fn urls_are_named_without_their_password() {
        let name = source_name(&Source::Url("rtsp://u:secret@cam/live".to_owned()));
        assert_eq!(name, "rtsp://u:***@cam/live");
    }

    #[test]
    fn idle_cameras_do_not_convert_frames() {
        let shared = Shared::new();
        assert!(shared.wanted(), "right after opening");
        shared.lock().last_taken = Some(Instant::now() - IDLE_AFTER * 2);
        assert!(!shared.wanted(), "nobody took a frame for a while");
        {
            let _waiting = shared.start_waiting();
            assert!(shared.wanted(), "next_frame is waiting");
        }
        assert!(shared.wanted(), "next_frame just returned");
    }

    #[test]
    fn a_paced_wait_ends_at_once_when_stopped() {
        let shared = Arc::new(Shared::new());
        let stopper = {
            let shared = shared.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                shared.request_stop();
            })
        };
        let start = Instant::now();
        assert!(shared.sleep_until(Instant::now() + Duration::from_secs(30)));
        assert!(start.elapsed() < Duration::from_secs(5));
        stopper.join().unwrap();
        assert!(
            !Shared::new().sleep_until(Instant::now()),
            "a deadline passed"
        );
    }
}
