//! [`OpenCvRecorder`]: received frames re-encoded into one video file with OpenCV's
//! `VideoWriter`, as the legacy Python client recorded them (XVID in AVI).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use edgecam_core::frame::Frame;
use edgecam_core::jpeg::is_jpeg;
use edgecam_core::recorder::{Recorder, RecorderError, RecordingSummary};
use opencv::core::{Mat, Size};
use opencv::imgproc::{INTER_AREA, resize};
use opencv::prelude::*;
use opencv::videoio::VideoWriter;
use tokio::sync::oneshot;

use crate::capture::fourcc;
use crate::error::OpenCvError;
use crate::image::decode_jpeg;

/// The frame rate the legacy Python client stamped on every recording, whatever the real rate.
pub const LEGACY_FPS: f64 = 20.0;

/// Decodes each received JPEG and re-encodes it into one video file with OpenCV's
/// `VideoWriter`: XVID (MPEG-4 Part 2) in AVI by default, like the legacy Python client.
///
/// - `fps` is the frame rate written into the file, i.e. how fast it plays back. Frames are
///   written one after another as they arrive, without retiming: a recording made of frames
///   that arrived at 10 fps and written with `fps = 20.0` plays twice as fast. The legacy client
///   always wrote [`LEGACY_FPS`]; pass the stream's real rate to keep time right.
/// - `start` refuses a file that already exists (an earlier recording is never overwritten) and
///   a folder that does not; it also opens a writer for a moment to check that this OpenCV can
///   encode the codec, so a missing encoder is an error before any frame is lost.
/// - The frame size is the first frame's. Later frames of another size are resized to it (the
///   stream changing size, e.g. after a camera re-open, does not end the recording), with a log
///   line for each new size.
/// - `write_frame` rejects a payload that is not a JPEG with [`RecorderError::NotJpeg`] and one
///   that does not decode with [`RecorderError::Backend`]; neither is written.
/// - `finish` closes the file (AVI index and all) and reports its size. Dropping the recorder
///   closes it too.
///
/// Decoding and encoding run on a thread of the recorder's own (`edgecam-record`), never on the
/// caller's.
#[derive(Debug)]
pub struct OpenCvRecorder {
    path: PathBuf,
    fps: f64,
    fourcc: [u8; 4],
    worker: Option<Worker>,
}

impl OpenCvRecorder {
    /// A recorder of XVID in AVI at `path`, stamped `fps` frames per second. Nothing is touched
    /// until `start`.
    pub fn new(path: impl Into<PathBuf>, fps: f64) -> OpenCvRecorder {
        OpenCvRecorder {
            path: path.into(),
            fps,
            fourcc: *b"XVID",
            worker: None,
        }
    }

    /// The same with another codec, by its FOURCC (`*b"MJPG"`, `*b"mp4v"`): the container
    /// follows the file name's extension.
    pub fn with_fourcc(self, fourcc: [u8; 4]) -> OpenCvRecorder {
        OpenCvRecorder { fourcc, ..self }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn fourcc_text(&self) -> String {
        String::from_utf8_lossy(&self.fourcc).into_owned()
    }

    fn check_target(&self) -> Result<(), RecorderError> {
        let io_error = |source| RecorderError::Io {
            path: self.path.clone(),
            source,
        };
        if !(self.fps.is_finite() && self.fps > 0.0) {
            return Err(RecorderError::Backend(Box::new(OpenCvError::Unsupported(
                format!(
                    "a recording needs a frame rate above 0 (got {}); the legacy client used {LEGACY_FPS}",
                    self.fps
                ),
            ))));
        }
        let parent = match self.path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        if !parent.is_dir() {
            return Err(io_error(io::Error::new(
                io::ErrorKind::NotFound,
                format!("the folder {} does not exist", parent.display()),
            )));
        }
        if self.path.exists() {
            return Err(io_error(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} already exists; choose another name, so that no earlier recording is \
                     overwritten",
                    self.path.display()
                ),
            )));
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Worker {
    jobs: mpsc::Sender<Job>,
    thread: Option<JoinHandle<()>>,
}

enum Job {
    Write(Frame, oneshot::Sender<Result<(), RecorderError>>),
    /// Closes the file and says how many frames it holds.
    Finish(oneshot::Sender<u64>),
}

impl Worker {
    /// Sends `job` and waits for its answer; a worker that is gone is a backend error.
    async fn ask<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<T>) -> Job,
    ) -> Result<T, RecorderError> {
        let (reply, answer) = oneshot::channel();
        let gone = || RecorderError::Backend(Box::new(OpenCvError::ThreadGone("recorder")));
        self.jobs.send(job(reply)).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())
    }

    fn join(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Worker {
    /// Closes the file: the worker ends once its queue is empty.
    fn drop(&mut self) {
        let (closed, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.jobs, closed));
        self.join();
    }
}

/// The worker thread's side: the writer, opened at the first frame.
struct Writing {
    path: PathBuf,
    fps: f64,
    fourcc: [u8; 4],
    writer: Option<(VideoWriter, Size)>,
    frames: u64,
    /// Sizes already reported as resized.
    resized: Vec<Size>,
}

impl Writing {
    fn run(mut self, jobs: mpsc::Receiver<Job>) {
        for job in jobs {
            match job {
                Job::Write(frame, reply) => {
                    let _ = reply.send(self.write(&frame).map_err(|e| match e {
                        OpenCvError::NotJpeg { .. } => RecorderError::NotJpeg { seq: frame.seq },
                        e => RecorderError::Backend(Box::new(e)),
                    }));
                }
                Job::Finish(reply) => {
                    self.close();
                    let _ = reply.send(self.frames);
                    return;
                }
            }
        }
        self.close();
    }

    fn write(&mut self, frame: &Frame) -> Result<(), OpenCvError> {
        let decoded = decode_jpeg(&frame.jpeg)?;
        let size = Size::new(decoded.cols(), decoded.rows());
        let (writer, target) = match &mut self.writer {
            Some((writer, target)) => (writer, *target),
            None => {
                let writer = open_writer(&self.path, self.fourcc, self.fps, size)?;
                tracing::debug!(path = %self.path.display(), width = size.width, height = size.height, fps = self.fps, "recording");
                let (writer, target) = self.writer.insert((writer, size));
                (writer, *target)
            }
        };
        if size == target {
            writer
                .write(&decoded)
                .map_err(OpenCvError::opencv("write a frame"))?;
        } else {
            if !self.resized.contains(&size) {
                self.resized.push(size);
                tracing::warn!(
                    path = %self.path.display(),
                    "frame {} is {}x{}; resizing it to the recording's {}x{}",
                    frame.seq, size.width, size.height, target.width, target.height
                );
            }
            let mut scaled = Mat::default();
            resize(&decoded, &mut scaled, target, 0.0, 0.0, INTER_AREA)
                .map_err(OpenCvError::opencv("resize a frame"))?;
            writer
                .write(&scaled)
                .map_err(OpenCvError::opencv("write a frame"))?;
        }
        self.frames += 1;
        Ok(())
    }

    fn close(&mut self) {
        if let Some((mut writer, _)) = self.writer.take() {
            if let Err(e) = writer.release() {
                tracing::warn!(path = %self.path.display(), error = %e, "closing the recording failed");
            }
        }
    }
}

fn open_writer(
    path: &Path,
    code: [u8; 4],
    fps: f64,
    size: Size,
) -> Result<VideoWriter, OpenCvError> {
    let not_opened = || OpenCvError::WriterNotOpened {
        path: path.to_owned(),
        fourcc: String::from_utf8_lossy(&code).into_owned(),
        width: size.width,
        height: size.height,
        fps,
    };
    let writer = VideoWriter::new(path, fourcc(code), fps, size, true).map_err(|_| not_opened())?;
    if writer.is_opened().unwrap_or(false) {
        Ok(writer)
    } else {
        Err(not_opened())
    }
}

/// Opens and closes a writer of `code` at `path`, then removes the file: whether this OpenCV
/// can write that codec at all.
fn probe_codec(path: &Path, code: [u8; 4], fps: f64) -> Result<(), OpenCvError> {
    let result = open_writer(path, code, fps, Size::new(64, 48)).map(|mut writer| {
        let _ = writer.release();
    });
    let _ = std::fs::remove_file(path);
    result
}

#[async_trait::async_trait]
impl Recorder for OpenCvRecorder {
    async fn start(&mut self) -> Result<(), RecorderError> {
        // A recording in progress is closed first.
        self.worker = None;
        self.check_target()?;
        let (jobs, queue) = mpsc::channel();
        let (started, ready) = oneshot::channel();
        let writing = Writing {
            path: self.path.clone(),
            fps: self.fps,
            fourcc: self.fourcc,
            writer: None,
            frames: 0,
            resized: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name("edgecam-record".to_owned())
            .spawn(move || {
                let probe = probe_codec(&writing.path, writing.fourcc, writing.fps);
                let ok = probe.is_ok();
                let _ = started.send(probe);
                if ok {
                    writing.run(queue);
                }
            })
            .map_err(|e| RecorderError::Backend(Box::new(e)))?;
        let mut worker = Worker {
            jobs,
            thread: Some(thread),
        };
        match ready.await {
            Ok(Ok(())) => {
                self.worker = Some(worker);
                tracing::debug!(path = %self.path.display(), fourcc = %self.fourcc_text(), "recorder started");
                Ok(())
            }
            Ok(Err(e)) => {
                worker.join();
                Err(RecorderError::Backend(Box::new(e)))
            }
            Err(_) => {
                worker.join();
                Err(RecorderError::Backend(Box::new(OpenCvError::ThreadGone(
                    "recorder",
                ))))
            }
        }
    }

    async fn write_frame(&mut self, frame: &Frame) -> Result<(), RecorderError> {
        let Some(worker) = &self.worker else {
            return Err(RecorderError::NotStarted);
        };
        if !is_jpeg(&frame.jpeg) {
            return Err(RecorderError::NotJpeg { seq: frame.seq });
        }
        let frame = frame.clone();
        worker.ask(|reply| Job::Write(frame, reply)).await?
    }

    async fn finish(&mut self) -> Result<RecordingSummary, RecorderError> {
        let Some(mut worker) = self.worker.take() else {
            return Err(RecorderError::NotStarted);
        };
        let frames = worker.ask(Job::Finish).await?;
        worker.join();
        let bytes = match std::fs::metadata(&self.path) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound && frames == 0 => 0,
            Err(source) => {
                return Err(RecorderError::Io {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        Ok(RecordingSummary {
            path: self.path.clone(),
            frames,
            bytes,
        })
    }
}
