//! [`OpenCvCamera`]: the [`Camera`] over the capture thread's single-slot mailbox.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use edgecam_core::camera::{Camera, CameraError, Capabilities, Captured};
use edgecam_core::time::Clock;

use crate::capture::{CaptureThread, Shared};
use crate::config::OpenCvConfig;
use crate::error::OpenCvError;

/// How long `close` (and drop) wait for the capture thread to release the device. It notices a
/// stop between two frames, so this is only reached when OpenCV itself hangs.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);
/// `next_frame` gives up on a source that delivers nothing for this long (or for four frame
/// intervals, if longer) and reports it `Disconnected`.
const STALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A camera, video file or stream read through OpenCV's `VideoCapture`, as described by an
/// [`OpenCvConfig`] (an `opencv:...` spec).
///
/// - `open` starts a capture thread (`edgecam-opencv`) that opens the source, sets the size and
///   frame rate asked for, reads one frame, and reports what the source actually delivers. A
///   source that does not open is [`CameraError::Open`], naming it and what to check.
/// - The thread then grabs frames as fast as the source delivers them (a file: at its frame
///   rate, in a loop) and keeps only the newest in a single slot. `next_frame` takes that frame,
///   or waits for the next one: it never returns a frame twice, and never a backlog. `seq` counts
///   every frame grabbed since the camera was created, across re-opens, so a gap is frames that
///   were skipped. `captured_at` is the clock's time just after the frame was grabbed.
/// - Frames are the source's own JPEGs when it delivers MJPEG and they can be passed through
///   ([`PixelFormat::Jpeg`](edgecam_core::camera::PixelFormat::Jpeg)), decoded BGR24 pixels
///   otherwise, as [`Capabilities::format`] says. The camera neither encodes nor stamps: the
///   server's encoder does both.
/// - While nobody calls `next_frame` (for over a second), grabbed frames are dropped without
///   being decoded.
/// - A frame that cannot be retrieved or converted is [`CameraError::Read`]; a source that stops
///   delivering (unplugged, stream ended, file removed, nothing for 10 s) is
///   [`CameraError::Disconnected`], logged with the reason, and the camera is closed.
/// - `close` or dropping the camera stops the thread and releases the device, waiting at most
///   3 s (an OpenCV call that hangs longer is left to finish on its own, with a warning).
///
/// `next_frame` is cancel-safe. The clock must be a real one: stall and close timeouts sleep on
/// it.
#[derive(Debug)]
pub struct OpenCvCamera {
    config: OpenCvConfig,
    name: String,
    clock: Arc<dyn Clock>,
    /// The last seq handed to a frame, shared with every capture thread.
    seq: Arc<AtomicU64>,
    /// `Some` from `open` until `close` or a disconnect.
    running: Option<Running>,
}

#[derive(Debug)]
struct Running {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// `None` until the thread has opened the source.
    capabilities: Option<Capabilities>,
}

impl OpenCvCamera {
    /// A closed camera; nothing is opened until [`Camera::open`].
    pub fn new(config: OpenCvConfig, clock: Arc<dyn Clock>) -> OpenCvCamera {
        OpenCvCamera {
            name: config.to_string(),
            config,
            clock,
            seq: Arc::new(AtomicU64::new(0)),
            running: None,
        }
    }

    pub fn config(&self) -> &OpenCvConfig {
        &self.config
    }

    /// Stops the capture thread, if any, and waits (at most [`CLOSE_TIMEOUT`]) for it to
    /// release the device.
    async fn stop(&mut self) {
        let Some(mut running) = self.running.take() else {
            return;
        };
        running.shared.request_stop();
        let deadline = self.clock.now() + CLOSE_TIMEOUT;
        loop {
            if running.shared.lock().exited {
                running.join();
                return;
            }
            tokio::select! {
                biased;
                () = running.shared.ready.notified() => {}
                () = self.clock.sleep_until(deadline) => {
                    tracing::warn!(camera = %self.name, "the capture thread is still inside OpenCV after {CLOSE_TIMEOUT:?}; it will release the device when OpenCV returns");
                    return;
                }
            }
        }
    }
}

impl Running {
    fn join(&mut self) {
        if let Some(thread) = self.thread.take() {
            // It has marked itself as ended: this returns at once. A panic there was logged.
            let _ = thread.join();
        }
    }
}

/// What `next_frame` finds in the mailbox.
enum Found {
    Frame(Result<Captured, CameraError>),
    Gone(String),
    Nothing,
}

#[async_trait]
impl Camera for OpenCvCamera {
    /// The canonical spec, e.g. `opencv:/dev/video0#size=1280x720`, without URL passwords.
    fn name(&self) -> String {
        self.name.clone()
    }

    /// Opens the source on a new capture thread (stopping the old one when already open).
    async fn open(&mut self) -> Result<Capabilities, CameraError> {
        self.stop().await;
        let shared = Arc::new(Shared::new());
        let thread = CaptureThread {
            config: self.config.clone(),
            name: self.name.clone(),
            clock: self.clock.clone(),
            seq: self.seq.clone(),
            shared: shared.clone(),
        }
        .spawn()
        .map_err(|e| CameraError::Open {
            device: self.name.clone(),
            source: Box::new(e),
        })?;
        // Kept before waiting, so that a cancelled `open` still stops the thread.
        self.running = Some(Running {
            shared: shared.clone(),
            thread: Some(thread),
            capabilities: None,
        });
        let opened = loop {
            let (opened, exited) = {
                let mut mailbox = shared.lock();
                (mailbox.opened.take(), mailbox.exited)
            };
            match opened {
                Some(opened) => break opened,
                None if exited => {
                    break Err(CameraError::Open {
                        device: self.name.clone(),
                        source: Box::new(OpenCvError::ThreadGone("capture")),
                    });
                }
                None => shared.ready.notified().await,
            }
        };
        match opened {
            Ok(capabilities) => {
                if let Some(running) = &mut self.running {
                    running.capabilities = Some(capabilities.clone());
                }
                Ok(capabilities)
            }
            Err(e) => {
                self.stop().await;
                Err(e)
            }
        }
    }

    async fn next_frame(&mut self) -> Result<Captured, CameraError> {
        let Some((shared, fps)) = self.running.as_ref().and_then(|running| {
            let capabilities = running.capabilities.as_ref()?;
            Some((running.shared.clone(), capabilities.fps))
        }) else {
            return Err(CameraError::NotOpen {
                device: self.name.clone(),
            });
        };
        let stall = fps.filter(|fps| *fps > 0.0).map_or(STALL_TIMEOUT, |fps| {
            STALL_TIMEOUT.max(Duration::from_secs_f64(4.0 / fps))
        });
        let deadline = self.clock.now() + stall;
        let waiting = shared.start_waiting();
        loop {
            let found = {
                let mut mailbox = shared.lock();
                if let Some(frame) = mailbox.newest.take() {
                    Found::Frame(frame)
                } else if let Some(reason) = mailbox.gone.take() {
                    Found::Gone(reason)
                } else if mailbox.exited {
                    Found::Gone("the capture thread ended".to_owned())
                } else {
                    Found::Nothing
                }
            };
            match found {
                Found::Frame(frame) => return frame,
                Found::Gone(reason) => {
                    drop(waiting);
                    tracing::debug!(camera = %self.name, %reason, "disconnected");
                    self.stop().await;
                    return Err(CameraError::Disconnected {
                        device: self.name.clone(),
                    });
                }
                Found::Nothing => {}
            }
            tokio::select! {
                biased;
                () = shared.ready.notified() => {}
                () = self.clock.sleep_until(deadline) => {
                    drop(waiting);
                    tracing::warn!(camera = %self.name, "no frame for {stall:?}; treating the camera as gone");
                    self.stop().await;
                    return Err(CameraError::Disconnected { device: self.name.clone() });
                }
            }
        }
    }

    fn capabilities(&self) -> Option<Capabilities> {
        self.running.as_ref()?.capabilities.clone()
    }

    async fn close(&mut self) -> Result<(), CameraError> {
        self.stop().await;
        Ok(())
    }
}

impl Drop for OpenCvCamera {
    /// Stops the capture thread and waits, at most 3 s, for it to release the
    /// device (usually no longer than one frame).
    fn drop(&mut self) {
        if let Some(mut running) = self.running.take() {
            running.shared.request_stop();
            if running.shared.wait_exited(CLOSE_TIMEOUT) {
                running.join();
            } else {
                tracing::warn!(camera = %self.name, "the capture thread is still inside OpenCV after {CLOSE_TIMEOUT:?}; it will release the device when OpenCV returns");
            }
        }
    }
}
