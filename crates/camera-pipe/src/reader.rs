//! The reader task: drains the source continuously, cuts it into frames and keeps only the
//! newest whole one in a [`watch`] slot, so that the writer never waits for us and no backlog
//! forms. It ends on end of file, a read error, a stall or a stop, ending the child first.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use edgecam_core::camera::{Captured, FramePool, Image, PixelFormat};
use edgecam_core::jpeg::{self, JpegSplitter};
use edgecam_core::time::Clock;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::child::ChildProc;
use edgecam_core::limit::{RateLimit, Verdict};

/// What the reader shares with the camera: the newest frame, and why it ended.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    pub(crate) frame: Option<Captured>,
    pub(crate) ended: Option<Ended>,
}

/// Why a reader stopped delivering frames.
#[derive(Debug, Clone)]
pub(crate) struct Ended {
    pub(crate) why: EndReason,
    /// The child's last line of standard error, if it had any.
    pub(crate) stderr: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EndReason {
    /// The source ended (the child exited or closed its output; the writer went away).
    Eof {
        status: Option<String>,
    },
    /// No frame for the stall timeout.
    Stalled(Duration),
    Read(String),
    /// `close` or drop.
    Stopped,
}

impl fmt::Display for Ended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.why {
            EndReason::Eof {
                status: Some(status),
            } => write!(f, "its output ended and it exited ({status})")?,
            EndReason::Eof { status: None } => f.write_str("its output ended")?,
            EndReason::Stalled(timeout) => write!(
                f,
                "it delivered no frame for {:.1} s (the stall timeout, #timeout=SECONDS)",
                timeout.as_secs_f64()
            )?,
            EndReason::Read(error) => write!(f, "reading it failed: {error}")?,
            EndReason::Stopped => f.write_str("it was closed")?,
        }
        if let Some(line) = &self.stderr {
            write!(f, "; its last words: {line:?}")?;
        }
        Ok(())
    }
}

/// Counters of what the reader saw; shared by every reader a camera starts.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) frames: AtomicU64,
    pub(crate) skipped_bytes: AtomicU64,
    pub(crate) oversized: AtomicU64,
    pub(crate) malformed: AtomicU64,
    pub(crate) partial: AtomicU64,
}

/// Cuts bytes into frames: fixed-length raw frames, or JPEGs found by their markers.
#[derive(Debug)]
pub(crate) enum Framer {
    Raw {
        format: PixelFormat,
        width: u32,
        height: u32,
        len: usize,
        buf: BytesMut,
        /// Buffers of frames handed out, read into again once nothing else holds them.
        pool: FramePool,
    },
    Jpeg {
        splitter: Box<JpegSplitter>,
        skipped: u64,
    },
}

/// Bytes read at once from an MJPEG stream.
const CHUNK: usize = 64 * 1024;

impl Framer {
    pub(crate) fn raw(format: PixelFormat, width: u32, height: u32, len: usize) -> Framer {
        Framer::Raw {
            format,
            width,
            height,
            len,
            buf: BytesMut::with_capacity(len),
            pool: FramePool::new(),
        }
    }

    pub(crate) fn jpeg(max_frame: usize) -> Framer {
        Framer::Jpeg {
            splitter: Box::new(JpegSplitter::new(max_frame)),
            skipped: 0,
        }
    }

    /// Reads more bytes; `Ok(0)` at end of file. Cancel-safe: what was read is kept.
    async fn fill(&mut self, input: &mut (dyn AsyncRead + Send + Unpin)) -> std::io::Result<usize> {
        match self {
            Framer::Raw { len, buf, .. } => {
                let mut limited = buf.limit(*len - buf.len());
                input.read_buf(&mut limited).await
            }
            // Straight into the splitter's buffer: the frames cut from it are slices of what
            // was read, with no copy out of a read buffer first.
            Framer::Jpeg { splitter, .. } => input.read_buf(&mut splitter.spare(CHUNK)).await,
        }
    }

    /// The next whole frame among the bytes read, if any; what is unusable is counted.
    fn take(&mut self, stats: &Stats, problems: &mut Problems) -> Option<Image> {
        match self {
            Framer::Raw {
                format,
                width,
                height,
                len,
                buf,
                pool,
            } => {
                if buf.len() < *len {
                    return None;
                }
                let (mut next, _) = pool.buffer(*len);
                next.clear();
                let data = pool.hand_out(std::mem::replace(buf, next), ());
                match Image::packed(*format, *width, *height, data) {
                    Ok(image) => Some(image),
                    Err(e) => {
                        stats.malformed.fetch_add(1, Ordering::Relaxed);
                        problems.report(format_args!("unusable frame: {e}"));
                        None
                    }
                }
            }
            Framer::Jpeg {
                splitter, skipped, ..
            } => loop {
                let next = splitter.next_frame();
                let now_skipped = splitter.skipped_bytes();
                if now_skipped > *skipped {
                    stats
                        .skipped_bytes
                        .fetch_add(now_skipped - *skipped, Ordering::Relaxed);
                    problems.report(format_args!(
                        "skipped {} bytes that were not part of a JPEG",
                        now_skipped - *skipped
                    ));
                    *skipped = now_skipped;
                }
                match next? {
                    Ok(data) => match jpeg::dimensions(&data).map(|(w, h)| Image::jpeg(w, h, data))
                    {
                        Some(Ok(image)) => return Some(image),
                        Some(Err(e)) => {
                            stats.malformed.fetch_add(1, Ordering::Relaxed);
                            problems.report(format_args!("unusable JPEG: {e}"));
                        }
                        None => {
                            stats.malformed.fetch_add(1, Ordering::Relaxed);
                            problems.report(format_args!(
                                "a JPEG without a frame header (SOF) was skipped"
                            ));
                        }
                    },
                    Err(e) => {
                        stats.oversized.fetch_add(1, Ordering::Relaxed);
                        problems.report(format_args!("a JPEG was skipped: {e}"));
                    }
                }
            },
        }
    }

    /// Bytes of a frame begun but not finished.
    fn pending(&self) -> usize {
        match self {
            Framer::Raw { buf, .. } => buf.len(),
            Framer::Jpeg { splitter, .. } => splitter.buffered(),
        }
    }
}

/// Rate-limited warnings about malformed input.
#[derive(Debug)]
pub(crate) struct Problems {
    name: String,
    limit: RateLimit,
}

impl Problems {
    fn report(&mut self, what: fmt::Arguments<'_>) {
        match self.limit.check(std::time::Instant::now()) {
            Verdict::Log { suppressed: 0 } => tracing::warn!(camera = %self.name, "{what}"),
            Verdict::Log { suppressed } => {
                tracing::warn!(camera = %self.name, suppressed, "{what} (and {suppressed} more problems not shown)")
            }
            Verdict::Drop => {}
        }
    }
}

/// One source opened, ready to be read by [`Reader::run`].
pub(crate) struct Reader {
    pub(crate) name: String,
    pub(crate) input: Box<dyn AsyncRead + Send + Unpin>,
    pub(crate) child: Option<ChildProc>,
    pub(crate) framer: Framer,
    pub(crate) clock: Arc<dyn Clock>,
    /// Frames completed by every reader of this camera: the next frame's seq.
    pub(crate) seq: Arc<AtomicU64>,
    pub(crate) stats: Arc<Stats>,
    /// A regular file's pace: at most one frame per period.
    pub(crate) pace: Option<Duration>,
    pub(crate) timeout: Duration,
    /// A FIFO: the stall timeout starts at a writer's first byte, not at once.
    pub(crate) wait_for_writer: bool,
    pub(crate) slot: watch::Sender<Slot>,
    pub(crate) stop: oneshot::Receiver<()>,
}

impl fmt::Debug for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("name", &self.name)
            .field("framer", &self.framer)
            .finish_non_exhaustive()
    }
}

impl Reader {
    /// Reads until the source ends, stalls or is stopped; then ends the child and says why in
    /// the slot.
    pub(crate) async fn run(mut self) {
        let mut problems = Problems {
            name: self.name.clone(),
            limit: RateLimit::lines(),
        };
        let mut deadline = (!self.wait_for_writer).then(|| Instant::now() + self.timeout);
        let mut next_frame_at: Option<Instant> = None;
        let why = loop {
            let paced = next_frame_at.is_some_and(|at| Instant::now() < at);
            if !paced && let Some(image) = self.framer.take(&self.stats, &mut problems) {
                self.publish(image);
                let now = Instant::now();
                next_frame_at = self.pace.map(|pace| now + pace);
                deadline = Some(next_frame_at.unwrap_or(now) + self.timeout);
                continue;
            }
            let read = tokio::select! {
                biased;
                _ = &mut self.stop => break EndReason::Stopped,
                () = sleep_until(deadline) => break EndReason::Stalled(self.timeout),
                () = sleep_until(next_frame_at), if paced => continue,
                read = self.framer.fill(&mut self.input), if !paced => read,
            };
            match read {
                Ok(0) => {
                    let pending = self.framer.pending();
                    if pending > 0 {
                        self.stats.partial.fetch_add(1, Ordering::Relaxed);
                        problems.report(format_args!(
                            "the source ended in the middle of a frame ({pending} bytes of it were dropped)"
                        ));
                    }
                    break EndReason::Eof { status: None };
                }
                Ok(_) => {
                    if deadline.is_none() {
                        deadline = Some(Instant::now() + self.timeout);
                    }
                }
                Err(e) => break EndReason::Read(e.to_string()),
            }
        };
        let mut ended = Ended { why, stderr: None };
        if let Some(child) = &mut self.child {
            let status = child.terminate().await;
            if let EndReason::Eof { status: slot } = &mut ended.why {
                *slot = status.map(|s| s.to_string());
            }
            ended.stderr = child.last_line();
        }
        if ended.why != EndReason::Stopped {
            tracing::info!(camera = %self.name, "the source is gone: {ended}");
        }
        self.slot.send_modify(|slot| slot.ended = Some(ended));
    }

    fn publish(&self, image: Image) {
        let captured = Captured {
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            captured_at: self.clock.now(),
            image,
        };
        self.stats.frames.fetch_add(1, Ordering::Relaxed);
        self.slot.send_modify(|slot| slot.frame = Some(captured));
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn problems() -> Problems {
        Problems {
            name: "test".to_owned(),
            limit: RateLimit::lines(),
        }
    }

    /// Reads `frames` whole 4x2 NV12 frames, handing each to `hold` before the next.
    async fn frames(framer: &mut Framer, n: usize, mut hold: impl FnMut(Image)) {
        let stats = Stats::default();
        let bytes = vec![7u8; 12 * n];
        let mut input: &[u8] = &bytes;
        for _ in 0..n {
            while framer.pending() < 12 {
                assert!(framer.fill(&mut input).await.unwrap() > 0);
            }
            hold(framer.take(&stats, &mut problems()).unwrap());
        }
    }

    #[tokio::test]
    async fn raw_frames_are_read_into_the_buffers_of_frames_nobody_holds() {
        let mut framer = Framer::raw(PixelFormat::Nv12, 4, 2, 12);
        let mut seen = Vec::new();
        frames(&mut framer, 6, |image| {
            seen.push(image.data().as_ptr() as usize)
        })
        .await;
        // Three buffers take turns: one being read into, two handed out.
        assert_eq!(seen[3], seen[0], "{seen:?}");
        assert_eq!(seen[4], seen[1], "{seen:?}");
        assert_eq!(seen[5], seen[2], "{seen:?}");
        assert_ne!(seen[1], seen[0], "{seen:?}");
    }

    #[tokio::test]
    async fn a_frame_still_held_is_never_read_into() {
        let mut framer = Framer::raw(PixelFormat::Nv12, 4, 2, 12);
        let mut held = Vec::new();
        frames(&mut framer, 5, |image| held.push(image)).await;
        let mut ptrs: Vec<usize> = held.iter().map(|i| i.data().as_ptr() as usize).collect();
        ptrs.sort_unstable();
        ptrs.dedup();
        assert_eq!(ptrs.len(), 5, "a held frame's buffer was reused");
        assert!(held.iter().all(|i| i.data().iter().all(|&b| b == 7)));
    }
}
