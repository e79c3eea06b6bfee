//! The capture loop: one per camera, on its own thread. It reads the camera only while some
//! session wants a frame, encodes each frame once, and publishes the newest one; sessions that
//! are behind simply see the newest frame next.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use edgecam_core::camera::{Camera, CameraError};
use edgecam_core::frame::Frame;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::encode::Encoder;

/// Counters the stats line reads.
#[derive(Debug, Default)]
pub struct CaptureCounters {
    pub captured: AtomicU64,
    pub encoded: AtomicU64,
    pub errors: AtomicU64,
}

/// How many sessions want the next frame. Sessions add themselves while they want one; the
/// capture loop sleeps while the count is zero.
#[derive(Debug, Clone)]
pub struct Demand(Arc<watch::Sender<usize>>);

impl Default for Demand {
    fn default() -> Self {
        Demand(Arc::new(watch::Sender::new(0)))
    }
}

impl Demand {
    pub fn want(&self) {
        self.0.send_modify(|n| *n += 1);
    }

    pub fn release(&self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }

    async fn wanted(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives in `self`, so this cannot fail.
        let _ = rx.wait_for(|n| *n > 0).await;
    }
}

pub(crate) struct CaptureLoop {
    pub camera: Box<dyn Camera>,
    pub encoder: Encoder,
    pub demand: Demand,
    pub frames: watch::Sender<Option<Frame>>,
    pub counters: Arc<CaptureCounters>,
    pub stop: CancellationToken,
}

const REOPEN_BACKOFF_START: Duration = Duration::from_millis(100);
const REOPEN_BACKOFF_MAX: Duration = Duration::from_secs(5);

impl CaptureLoop {
    /// Starts the loop on a thread of its own, with its own single-threaded runtime: encoding
    /// blocks for milliseconds, and a dedicated thread does it without a hand-off per frame and
    /// without holding up the sessions' runtime. The receiver completes when the loop is done.
    pub fn spawn(self) -> std::io::Result<oneshot::Receiver<()>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        let (done, finished) = oneshot::channel();
        std::thread::Builder::new()
            .name("edgecam-capture".to_owned())
            .spawn(move || {
                runtime.block_on(self.run());
                let _ = done.send(());
            })?;
        Ok(finished)
    }

    /// Runs until `stop`, then closes the camera. The camera must already be open.
    async fn run(mut self) {
        let name = self.camera.name();
        loop {
            let captured = tokio::select! {
                biased;
                () = self.stop.cancelled() => break,
                captured = async {
                    self.demand.wanted().await;
                    self.camera.next_frame().await
                } => captured,
            };
            match captured {
                Ok(captured) => {
                    self.counters.captured.fetch_add(1, Ordering::Relaxed);
                    match self.encoder.encode(captured) {
                        Ok(frame) => {
                            self.counters.encoded.fetch_add(1, Ordering::Relaxed);
                            self.frames.send_replace(Some(frame));
                        }
                        Err(e) => self.count_error(&name, &e),
                    }
                }
                Err(CameraError::Disconnected { .. }) => {
                    tracing::warn!(camera = %name, "camera is gone; reopening");
                    if !self.reopen(&name).await {
                        break;
                    }
                }
                Err(e) => self.count_error(&name, &e),
            }
        }
        if let Err(e) = self.camera.close().await {
            tracing::warn!(camera = %name, error = %e, "closing the camera failed");
        }
        tracing::debug!(camera = %name, "capture loop stopped");
    }

    fn count_error(&self, name: &str, error: &dyn std::error::Error) {
        let n = self.counters.errors.fetch_add(1, Ordering::Relaxed) + 1;
        // Every error is counted; the log shows the first ten, then every hundredth.
        if n <= 10 || n % 100 == 0 {
            tracing::warn!(camera = %name, errors = n, error = %crate::error_chain(error), "frame lost");
        }
    }

    /// Reopens with exponential backoff; `false` when stopped meanwhile.
    async fn reopen(&mut self, name: &str) -> bool {
        let mut backoff = REOPEN_BACKOFF_START;
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return false,
                () = tokio::time::sleep(backoff) => {}
            }
            match self.camera.open().await {
                Ok(caps) => {
                    tracing::info!(camera = %name, width = caps.width, height = caps.height, "camera reopened");
                    return true;
                }
                Err(e) => {
                    tracing::warn!(camera = %name, error = %crate::error_chain(&e), retry_in = ?backoff, "reopening the camera failed");
                    backoff = (backoff * 2).min(REOPEN_BACKOFF_MAX);
                }
            }
        }
    }
}
