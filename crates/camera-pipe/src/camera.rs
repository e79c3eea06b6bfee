//! [`PipeCamera`]: the [`Camera`] over a [`Reader`] task.

use std::os::fd::AsFd;
use std::os::unix::fs::FileTypeExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use edgecam_core::camera::{Camera, CameraError, Capabilities, Captured};
use edgecam_core::time::Clock;
use tokio::io::AsyncRead;
use tokio::net::unix::pipe;
use tokio::runtime::Handle;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::PipeError;
use crate::child::{ChildProc, GRACE};
use crate::config::{DEFAULT_FILE_FPS, PipeConfig, Source};
use crate::reader::{EndReason, Ended, Framer, Reader, Slot, Stats};

/// How long `open` waits for a raw format's first frame before returning anyway.
const RAW_FIRST_FRAME_WAIT: Duration = Duration::from_secs(1);

/// What a pipe camera's readers have seen since it was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PipeStats {
    /// Whole frames completed (delivered or replaced by a newer one).
    pub frames: u64,
    /// Bytes between JPEGs that were not part of one.
    pub skipped_bytes: u64,
    /// JPEGs over `max_frame`, skipped.
    pub oversized: u64,
    /// Frames that could not be used (a JPEG without a frame header, a bad size).
    pub malformed: u64,
    /// Sources that ended in the middle of a frame.
    pub partial: u64,
}

/// A camera reading an `exec:` command's output, our standard input, a FIFO or a file. See the
/// crate documentation for how it behaves.
#[derive(Debug)]
pub struct PipeCamera {
    name: String,
    config: PipeConfig,
    clock: Arc<dyn Clock>,
    seq: Arc<AtomicU64>,
    stats: Arc<Stats>,
    open: Option<Running>,
    /// `pipe:-` reached its end: standard input cannot be read again.
    stdin_ended: bool,
    last_returned: Option<u64>,
    /// The runtime the source is opened and read on: the one current when the camera was made
    /// (the server's), whichever thread opens it later. The capture loop reopens a camera on
    /// its own thread, which blocks while it encodes; a reader there would leave the pipe
    /// undrained meanwhile.
    runtime: Option<Handle>,
}

/// The reader of an open camera.
#[derive(Debug)]
struct Running {
    slot: watch::Receiver<Slot>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    capabilities: Capabilities,
    /// The child's pid (`exec:`), for tests and logs.
    pid: Option<u32>,
}

impl PipeCamera {
    /// A camera for `config`, called `name` in logs and errors (the spec as written), stamping
    /// frames with `clock`. Nothing runs until `open`; then it runs on the runtime current now,
    /// if any (else on the one `open` is called on).
    pub fn new(name: String, config: PipeConfig, clock: Arc<dyn Clock>) -> PipeCamera {
        PipeCamera {
            name,
            config,
            clock,
            seq: Arc::new(AtomicU64::new(0)),
            stats: Arc::new(Stats::default()),
            open: None,
            stdin_ended: false,
            last_returned: None,
            runtime: Handle::try_current().ok(),
        }
    }

    pub fn config(&self) -> &PipeConfig {
        &self.config
    }

    /// Counters of what has been read so far.
    pub fn stats(&self) -> PipeStats {
        let get = |n: &AtomicU64| n.load(Ordering::Relaxed);
        PipeStats {
            frames: get(&self.stats.frames),
            skipped_bytes: get(&self.stats.skipped_bytes),
            oversized: get(&self.stats.oversized),
            malformed: get(&self.stats.malformed),
            partial: get(&self.stats.partial),
        }
    }

    /// The pid of the running `exec:` child (which is also its process group's id); `None`
    /// when not open or not `exec:`.
    pub fn child_pid(&self) -> Option<u32> {
        self.open.as_ref().and_then(|running| running.pid)
    }

    fn open_error(&self, source: PipeError) -> CameraError {
        CameraError::Open {
            device: self.name.clone(),
            source: Box::new(source),
        }
    }

    /// Opens the source on `runtime`: the input to read, the child if any, and whether to pace
    /// reading. A pipe is registered with the runtime it is opened on, whose I/O driver wakes
    /// its reader; opened on the capture thread's, it would be read only between encodes.
    async fn open_input(&self, runtime: &Handle) -> Result<Input, CameraError> {
        if self.config.source == Source::Stdin && self.stdin_ended {
            return Err(self.open_error(PipeError::StdinEnded));
        }
        let (name, source, frame_len) = (
            self.name.clone(),
            self.config.source.clone(),
            self.config.frame_len(),
        );
        let opened = runtime
            .spawn(async move { open_source(&name, &source, frame_len).await })
            .await;
        match opened {
            Ok(opened) => opened.map_err(|e| self.open_error(e)),
            Err(_) => Err(self.open_error(PipeError::RuntimeGone)),
        }
    }

    /// Stops the reader and waits for it to end the child.
    async fn stop_reader(&mut self) {
        if let Some(running) = &mut self.open {
            running.stop.take();
            // The reader ends the child within the grace period; a little more for the reap.
            let wait = GRACE + Duration::from_secs(2);
            if tokio::time::timeout(wait, &mut running.task).await.is_err() {
                tracing::warn!(camera = %self.name, "the reader did not stop in time; abandoning it");
                running.task.abort();
            }
        }
        self.open = None;
    }

    /// Called when a reader ended: remembers what cannot be read again.
    fn note_end(&mut self, ended: &Ended) {
        if self.config.source == Source::Stdin && matches!(ended.why, EndReason::Eof { .. }) {
            self.stdin_ended = true;
        }
    }
}

/// Opens `source` for the camera called `name`: the input to read, the child if any, and
/// whether to pace reading.
async fn open_source(
    name: &str,
    source: &Source,
    frame_len: Option<usize>,
) -> Result<Input, PipeError> {
    match source {
        Source::Exec { program, args } => {
            let (child, stdout) = ChildProc::spawn(name, program, args, frame_len)?;
            Ok(Input {
                read: Box::new(stdout),
                child: Some(child),
                regular_file: false,
                fifo: false,
            })
        }
        Source::Stdin => {
            let stdin_error = |source| PipeError::Path {
                path: "standard input".to_owned(),
                source,
            };
            let file = std::io::stdin()
                .as_fd()
                .try_clone_to_owned()
                .map(std::fs::File::from)
                .map_err(stdin_error)?;
            let kind = file.metadata().map_err(stdin_error)?.file_type();
            if kind.is_fifo() {
                let receiver = pipe::Receiver::from_file(file).map_err(stdin_error)?;
                Ok(Input::stream(Box::new(receiver), false))
            } else if kind.is_file() {
                Ok(Input {
                    read: Box::new(tokio::fs::File::from_std(file)),
                    child: None,
                    regular_file: true,
                    fifo: false,
                })
            } else if kind.is_char_device() {
                Err(PipeError::StdinUnusable("a terminal or a device"))
            } else {
                Err(PipeError::StdinUnusable("not a pipe or a file"))
            }
        }
        Source::Path(path) => {
            let shown = path.display().to_string();
            let path_error = |source| PipeError::Path {
                path: shown.clone(),
                source,
            };
            let meta = tokio::fs::metadata(path).await.map_err(path_error)?;
            if meta.file_type().is_fifo() {
                // Non-blocking: no writer is needed to open it, and none is waited for here.
                let receiver = pipe::OpenOptions::new()
                    .open_receiver(path)
                    .map_err(path_error)?;
                Ok(Input::stream(Box::new(receiver), true))
            } else if meta.is_file() {
                let file = tokio::fs::File::open(path).await.map_err(path_error)?;
                Ok(Input {
                    read: Box::new(file),
                    child: None,
                    regular_file: true,
                    fifo: false,
                })
            } else {
                Err(PipeError::NotAFile { path: shown })
            }
        }
    }
}

/// An opened source.
struct Input {
    read: Box<dyn AsyncRead + Send + Unpin>,
    child: Option<ChildProc>,
    regular_file: bool,
    fifo: bool,
}

impl Input {
    fn stream(read: Box<dyn AsyncRead + Send + Unpin>, fifo: bool) -> Input {
        Input {
            read,
            child: None,
            regular_file: false,
            fifo,
        }
    }
}

#[async_trait::async_trait]
impl Camera for PipeCamera {
    fn name(&self) -> String {
        self.name.clone()
    }

    async fn open(&mut self) -> Result<Capabilities, CameraError> {
        self.stop_reader().await;
        let runtime = self.runtime.clone().unwrap_or_else(Handle::current);
        let input = self.open_input(&runtime).await?;
        let config = &self.config;
        let framer = match (config.size, config.frame_len()) {
            (Some((width, height)), Some(len)) => Framer::raw(config.format, width, height, len),
            _ => Framer::jpeg(config.max_frame),
        };
        let pace_fps = if input.regular_file {
            Some(config.fps.unwrap_or(DEFAULT_FILE_FPS))
        } else {
            None
        };
        let pace = pace_fps
            .filter(|fps| *fps > 0.0)
            .map(|fps| Duration::from_secs_f64(1.0 / fps));
        let pid = input.child.as_ref().and_then(ChildProc::pid);
        let (slot_tx, mut slot) = watch::channel(Slot::default());
        let (stop, stop_rx) = oneshot::channel();
        let reader = Reader {
            name: self.name.clone(),
            input: input.read,
            child: input.child,
            framer,
            clock: self.clock.clone(),
            seq: self.seq.clone(),
            stats: self.stats.clone(),
            pace,
            timeout: config.timeout,
            wait_for_writer: input.fifo,
            slot: slot_tx,
            stop: stop_rx,
        };
        let task = runtime.spawn(reader.run());
        let mut running = Running {
            slot: slot.clone(),
            stop: Some(stop),
            task,
            capabilities: Capabilities::new(1, 1, config.format),
            pid,
        };

        // Wait for the first frame, or the source's end: a command that fails at once fails
        // `open`. Raw formats know their size and need not wait long; MJPEG needs a frame.
        let wait = if config.format.is_jpeg() {
            (!input.fifo).then_some(config.timeout)
        } else {
            Some(if input.fifo {
                Duration::ZERO
            } else {
                RAW_FIRST_FRAME_WAIT.min(config.timeout)
            })
        };
        let (size, ended) = {
            let first = slot.wait_for(|s| s.frame.is_some() || s.ended.is_some());
            let first = match wait {
                Some(wait) => tokio::time::timeout(wait, first).await.ok(),
                None => Some(first.await),
            };
            match first {
                Some(Ok(slot)) => match &slot.frame {
                    Some(frame) => (Some(frame.image.size()), None),
                    None => (None, slot.ended.clone()),
                },
                Some(Err(_)) => (
                    None,
                    Some(Ended {
                        why: EndReason::Read("the reader stopped".to_owned()),
                        stderr: None,
                    }),
                ),
                None => (None, None),
            }
        };
        if let Some(ended) = ended {
            self.open = Some(running);
            self.stop_reader().await;
            self.note_end(&ended);
            return Err(self.open_error(PipeError::EndedEarly(ended.to_string())));
        }
        let (width, height) = match (config.size, size) {
            (Some(size), _) | (None, Some(size)) => size,
            (None, None) => {
                let timeout = config.timeout.as_secs_f64();
                self.open = Some(running);
                self.stop_reader().await;
                return Err(self.open_error(PipeError::NoFirstFrame(timeout)));
            }
        };
        let mut capabilities = Capabilities::new(width, height, config.format);
        capabilities.fps = config.fps.filter(|fps| *fps > 0.0).or(pace_fps);
        running.capabilities = capabilities.clone();
        tracing::info!(camera = %self.name, width, height, format = %config.format, "pipe camera open");
        self.open = Some(running);
        Ok(capabilities)
    }

    async fn next_frame(&mut self) -> Result<Captured, CameraError> {
        let Some(running) = &mut self.open else {
            return Err(CameraError::NotOpen {
                device: self.name.clone(),
            });
        };
        let last = self.last_returned;
        let newer = |slot: &Slot| {
            slot.frame
                .as_ref()
                .is_some_and(|f| last.is_none_or(|last| f.seq > last))
        };
        // Cancel-safe: nothing is taken out of the slot until the wait has finished.
        let outcome = {
            let slot = running
                .slot
                .wait_for(|slot| newer(slot) || slot.ended.is_some())
                .await;
            match slot {
                Ok(slot) if newer(&slot) => Ok(slot.frame.clone()),
                Ok(slot) => Err(slot.ended.clone()),
                Err(_) => Err(None),
            }
        };
        match outcome {
            Ok(Some(frame)) => {
                self.last_returned = Some(frame.seq);
                Ok(frame)
            }
            Ok(None) | Err(_) => {
                if let Err(Some(ended)) = &outcome {
                    self.note_end(ended);
                }
                self.stop_reader().await;
                Err(CameraError::Disconnected {
                    device: self.name.clone(),
                })
            }
        }
    }

    fn capabilities(&self) -> Option<Capabilities> {
        self.open.as_ref().map(|r| r.capabilities.clone())
    }

    async fn close(&mut self) -> Result<(), CameraError> {
        self.stop_reader().await;
        Ok(())
    }
}

impl Drop for PipeCamera {
    fn drop(&mut self) {
        // Dropping the stop sender tells the reader to end the child; it does so on the
        // runtime, without us waiting. If the runtime is gone too, `kill_on_drop` and the
        // child's own Drop (SIGKILL to the group) remain.
        if let Some(running) = &mut self.open {
            running.stop.take();
        }
    }
}
