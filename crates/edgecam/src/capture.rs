//! The capture loop: one per camera, on its own thread (or, for a camera that delivers
//! JPEGs, a task beside the sessions: see [`CaptureLoop::spawn`]). It reads the camera only
//! while some session wants a frame, encodes each frame once, and publishes the newest one;
//! sessions that are behind simply see the newest frame next. While the camera is gone it publishes a
//! "NO SIGNAL" picture once a second and reopens the camera with backoff.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use edgecam_core::camera::{Camera, CameraError, Captured, Image, PixelFormat};
use edgecam_core::frame::Frame;
use edgecam_core::time::Clock;
use edgecam_encode::{EncodeError, Encoder};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Counters the stats line, `/state` and `/metrics` read.
#[derive(Debug, Default)]
pub struct CaptureCounters {
    pub captured: AtomicU64,
    pub encoded: AtomicU64,
    pub errors: AtomicU64,
    /// "NO SIGNAL" pictures published while the camera was gone.
    pub no_signal: AtomicU64,
    /// Times the loop stopped reading the camera because no session wanted a frame.
    pub idle: AtomicU64,
    /// Times the camera went away (each followed by NO SIGNAL and reopening).
    pub outages: AtomicU64,
    /// Set while the camera is gone.
    pub offline: AtomicBool,
    /// How long each frame took to encode (or stamp, for passthrough).
    pub encode_time: crate::metrics::Histogram,
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

    fn is_wanted(&self) -> bool {
        *self.0.borrow() > 0
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
    /// Stamps the "NO SIGNAL" pictures, on the same clock as the camera and the sessions: a
    /// picture's time is compared with request times, so it must come from the clock they
    /// are read from. How long the loop waits (reopen backoff, the NO SIGNAL interval) is
    /// measured on the runtime's monotonic timer instead: those are durations, and a wall
    /// clock set back must not stretch an outage's backoff or stop the NO SIGNAL pictures.
    pub clock: Arc<dyn Clock>,
    pub demand: Demand,
    pub frames: watch::Sender<Option<Frame>>,
    pub counters: Arc<CaptureCounters>,
    pub stop: CancellationToken,
}

const REOPEN_BACKOFF_START: Duration = Duration::from_millis(100);
const REOPEN_BACKOFF_MAX: Duration = Duration::from_secs(5);
const NO_SIGNAL_INTERVAL: Duration = Duration::from_secs(1);

/// What the loop keeps between frames.
#[derive(Debug, Default)]
struct Published {
    /// The sequence number of the last frame published. Published numbers only grow, across
    /// "NO SIGNAL" pictures and reopened cameras alike.
    last_seq: Option<u64>,
    /// Added to the camera's numbers, so that they stay above the "NO SIGNAL" pictures'.
    seq_offset: u64,
    /// The size of the last picture, for the "NO SIGNAL" one.
    size: Option<(u32, u32)>,
}

impl CaptureLoop {
    /// Starts the loop. A camera that delivers JPEGs gets a task on the runtime it is started
    /// on (the server's): its frames are only stamped, microseconds each, and its reader (the
    /// pipe camera's) and the sessions run there too, so each frame goes from the reader to
    /// the sessions without waking another thread. Any other camera gets a thread of its own,
    /// with its own single-threaded runtime: encoding blocks for milliseconds, and a dedicated
    /// thread does it without a hand-off per frame and without holding up the sessions'
    /// runtime. The receiver completes when the loop is done.
    pub fn spawn(self) -> std::io::Result<oneshot::Receiver<()>> {
        let (done, finished) = oneshot::channel();
        let jpeg = self
            .camera
            .capabilities()
            .is_some_and(|c| c.format.is_jpeg());
        if jpeg && let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                self.run().await;
                let _ = done.send(());
            });
            return Ok(finished);
        }
        // I/O too, for a camera that does its own on the thread that opens it (the pipe
        // camera does not: it reads on the runtime it was made on).
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
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
        let mut published = Published {
            size: self.camera.capabilities().map(|c| (c.width, c.height)),
            ..Published::default()
        };
        loop {
            let captured = tokio::select! {
                biased;
                () = self.stop.cancelled() => break,
                captured = async {
                    if !self.demand.is_wanted() {
                        self.counters.idle.fetch_add(1, Ordering::Relaxed);
                    }
                    self.demand.wanted().await;
                    self.camera.next_frame().await
                } => captured,
            };
            match captured {
                Ok(captured) => {
                    self.counters.captured.fetch_add(1, Ordering::Relaxed);
                    match self.publish(&mut published, captured) {
                        Ok(()) => {
                            self.counters.encoded.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => self.count_error(&name, &e),
                    }
                }
                Err(CameraError::Disconnected { .. }) => {
                    tracing::warn!(camera = %name, "camera is gone; sending NO SIGNAL pictures while reopening it");
                    self.counters.outages.fetch_add(1, Ordering::Relaxed);
                    self.counters.offline.store(true, Ordering::Relaxed);
                    if !self.reopen(&name, &mut published).await {
                        break;
                    }
                    self.counters.offline.store(false, Ordering::Relaxed);
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

    /// Encodes (or passes through) `captured` under the next sequence number and publishes it.
    fn publish(
        &mut self,
        published: &mut Published,
        mut captured: Captured,
    ) -> Result<(), EncodeError> {
        let mut seq = captured.seq.saturating_add(published.seq_offset);
        if let Some(last) = published.last_seq
            && seq <= last
        {
            published.seq_offset += last + 1 - seq;
            seq = last + 1;
        }
        captured.seq = seq;
        let size = captured.image.size();
        let started = std::time::Instant::now();
        let frame = self.encode(captured)?;
        self.counters.encode_time.observe(started.elapsed());
        published.last_seq = Some(seq);
        published.size = Some(size);
        self.frames.send_replace(Some(frame));
        Ok(())
    }

    /// Encodes `captured`, or stamps it if it is a camera JPEG. An encode takes milliseconds:
    /// where the loop shares a multi-threaded runtime with the sessions (a JPEG camera's loop,
    /// encoding a NO SIGNAL picture or the frames of a camera that came back with another
    /// format), it runs in `block_in_place`, which hands the worker's other tasks to another
    /// worker meanwhile; on the loop's own thread it simply runs.
    fn encode(&mut self, captured: Captured) -> Result<Frame, EncodeError> {
        let shared_workers = || {
            tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
        };
        if !captured.image.format().is_jpeg() && shared_workers() {
            tokio::task::block_in_place(|| self.encoder.encode(captured))
        } else {
            self.encoder.encode(captured)
        }
    }

    /// Publishes a "NO SIGNAL" picture of the last picture's size, when a session wants one.
    fn publish_no_signal(&mut self, name: &str, published: &mut Published) {
        if !self.demand.is_wanted() {
            return;
        }
        let (width, height) = published.size.unwrap_or((640, 480));
        let pixels = crate::no_signal::render(width, height);
        let image = match Image::packed(PixelFormat::Rgb24, width, height, pixels) {
            Ok(image) => image,
            Err(e) => return self.count_error(name, &e),
        };
        let captured = Captured {
            seq: published.last_seq.map_or(0, |seq| seq + 1),
            captured_at: self.clock.now(),
            image,
        };
        match self.publish(published, captured) {
            Ok(()) => {
                self.counters.no_signal.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => self.count_error(name, &e),
        }
    }

    /// Reopens with exponential backoff, publishing "NO SIGNAL" pictures meanwhile; `false`
    /// when stopped meanwhile.
    async fn reopen(&mut self, name: &str, published: &mut Published) -> bool {
        let mut backoff = REOPEN_BACKOFF_START;
        let mut attempt_at = Instant::now() + backoff;
        let mut no_signal_at = Instant::now();
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return false,
                () = tokio::time::sleep_until(attempt_at.min(no_signal_at)) => {}
            }
            let now = Instant::now();
            if now >= no_signal_at {
                self.publish_no_signal(name, published);
                no_signal_at = now + NO_SIGNAL_INTERVAL;
            }
            if now < attempt_at {
                continue;
            }
            // Opening may block for long (an unreachable RTSP URL): a stop does not wait for it.
            let opened = tokio::select! {
                () = self.stop.cancelled() => return false,
                opened = self.camera.open() => opened,
            };
            match opened {
                Ok(caps) => {
                    tracing::info!(camera = %name, width = caps.width, height = caps.height, "camera reopened");
                    return true;
                }
                Err(e) => {
                    backoff = (backoff * 2).min(REOPEN_BACKOFF_MAX);
                    tracing::warn!(camera = %name, error = %crate::error_chain(&e), retry_in = ?backoff, "reopening the camera failed");
                    attempt_at = Instant::now() + backoff;
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use edgecam_core::camera::Capabilities;
    use edgecam_core::time::Timestamp;
    use mockall::Sequence;

    use edgecam_core::time::ManualClock;
    use edgecam_encode::{Passthrough, RustBackend};

    mockall::mock! {
        #[derive(Debug)]
        Cam {}
        #[async_trait::async_trait]
        impl Camera for Cam {
            fn name(&self) -> String;
            async fn open(&mut self) -> Result<Capabilities, CameraError>;
            async fn next_frame(&mut self) -> Result<Captured, CameraError>;
            fn capabilities(&self) -> Option<Capabilities>;
            async fn close(&mut self) -> Result<(), CameraError>;
        }
    }

    fn frame(seq: u64) -> Result<Captured, CameraError> {
        Ok(Captured {
            seq,
            captured_at: Timestamp(seq),
            image: Image::packed(PixelFormat::Rgb24, 8, 8, vec![128; 8 * 8 * 3]).unwrap(),
        })
    }

    fn gone() -> CameraError {
        CameraError::Disconnected {
            device: "mock".to_owned(),
        }
    }

    /// A capture loop over `camera`, running as a task on the test's runtime: with paused
    /// time (`start_paused`), its timers are virtual, and the runtime moves time on only when
    /// every task (the loop's too) waits, so the loop has always done all it could first.
    struct Running {
        stop: CancellationToken,
        done: tokio::task::JoinHandle<()>,
        published: watch::Receiver<Option<Frame>>,
        counters: Arc<CaptureCounters>,
    }

    /// Starts the loop over `camera`, which is open and reports 8x8 frames.
    fn start(mut camera: MockCam, demand: Demand) -> Running {
        camera
            .expect_capabilities()
            .return_const(Some(Capabilities::new(8, 8, PixelFormat::Rgb24)));
        let (frames, published) = watch::channel(None);
        let counters = Arc::new(CaptureCounters::default());
        let stop = CancellationToken::new();
        let done = CaptureLoop {
            camera: Box::new(camera),
            encoder: Encoder::new(Box::<RustBackend>::default(), 80, Passthrough::Stamped),
            clock: Arc::new(ManualClock::new(Timestamp(1))),
            demand,
            frames,
            counters: counters.clone(),
            stop: stop.clone(),
        };
        let done = tokio::spawn(done.run());
        Running {
            stop,
            done,
            published,
            counters,
        }
    }

    impl Running {
        /// Stops the loop and waits for it; a mock expectation it broke fails here, since the
        /// loop's task panicked instead of finishing.
        async fn stop(self) -> Arc<CaptureCounters> {
            self.stop.cancel();
            tokio::time::timeout(Duration::from_secs(10), self.done)
                .await
                .expect("capture loop did not stop in time")
                .expect("capture loop panicked");
            self.counters
        }
    }

    /// The thread `spawn` runs the loop on for a camera of `format`, as the camera's
    /// `next_frame` sees it.
    async fn loop_thread(format: PixelFormat) -> std::thread::ThreadId {
        let mut camera = MockCam::new();
        camera.expect_name().return_const("mock".to_owned());
        camera
            .expect_capabilities()
            .return_const(Some(Capabilities::new(8, 8, format)));
        let (seen, on) = oneshot::channel();
        let seen = std::sync::Mutex::new(Some(seen));
        camera.expect_next_frame().returning(move || {
            if let Some(seen) = seen.lock().unwrap().take() {
                let _ = seen.send(std::thread::current().id());
            }
            // Gone: the loop then waits out its reopening backoff, giving the test its turn.
            Err(gone())
        });
        camera.expect_open().returning(|| {
            Err(CameraError::Open {
                device: "mock".to_owned(),
                source: "unplugged".into(),
            })
        });
        camera.expect_close().returning(|| Ok(()));
        let (frames, _published) = watch::channel(None);
        let stop = CancellationToken::new();
        let demand = Demand::default();
        demand.want();
        let finished = CaptureLoop {
            camera: Box::new(camera),
            encoder: Encoder::new(Box::<RustBackend>::default(), 80, Passthrough::Stamped),
            clock: Arc::new(ManualClock::new(Timestamp(1))),
            demand,
            frames,
            counters: Arc::new(CaptureCounters::default()),
            stop: stop.clone(),
        }
        .spawn()
        .unwrap();
        let thread = tokio::time::timeout(Duration::from_secs(10), on)
            .await
            .expect("the loop did not read the camera in time")
            .unwrap();
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), finished)
            .await
            .expect("capture loop did not stop in time")
            .expect("capture loop ended without saying so");
        thread
    }

    #[tokio::test]
    async fn a_jpeg_cameras_loop_runs_on_the_runtime_it_was_started_on_and_a_raw_ones_on_its_own_thread()
     {
        let here = std::thread::current().id();
        assert_eq!(loop_thread(PixelFormat::Jpeg).await, here);
        assert_ne!(loop_thread(PixelFormat::Rgb24).await, here);
    }

    /// Waits until `done` holds (polling, in virtual time), at most 10 s.
    async fn until(what: &str, done: impl Fn() -> bool) {
        let poll = async {
            while !done() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), poll)
            .await
            .unwrap_or_else(|_| panic!("not within 10 s: {what}"));
    }

    /// Runs the loop over `camera` with one session wanting frames, until it published `seq` or
    /// later (a camera repeating a number has it published as the next one).
    async fn run_until_published(camera: MockCam, seq: u64) -> Arc<CaptureCounters> {
        let demand = Demand::default();
        demand.want();
        let mut running = start(camera, demand);
        let wait = running
            .published
            .wait_for(|f: &Option<Frame>| f.as_ref().is_some_and(|f| f.seq >= seq));
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .expect("frame not published in time")
            .unwrap();
        running.stop().await
    }

    #[tokio::test(start_paused = true)]
    async fn a_camera_that_disappears_is_reopened_until_it_comes_back() {
        let mut camera = MockCam::new();
        let mut order = Sequence::new();
        camera.expect_name().return_const("mock".to_owned());
        camera
            .expect_next_frame()
            .times(1)
            .in_sequence(&mut order)
            .returning(|| frame(1));
        camera
            .expect_next_frame()
            .times(1)
            .in_sequence(&mut order)
            .returning(|| Err(gone()));
        camera
            .expect_open()
            .times(2)
            .in_sequence(&mut order)
            .returning(|| {
                Err(CameraError::Open {
                    device: "mock".to_owned(),
                    source: "unplugged".into(),
                })
            });
        camera
            .expect_open()
            .times(1)
            .in_sequence(&mut order)
            .returning(|| Ok(Capabilities::new(8, 8, PixelFormat::Rgb24)));
        camera
            .expect_next_frame()
            .in_sequence(&mut order)
            .returning(|| frame(2));
        camera.expect_close().times(1).returning(|| Ok(()));

        let demand = Demand::default();
        demand.want();
        let mut running = start(camera, demand);
        // Frame 1, then "NO SIGNAL" as number 2 (right away, then once a second), then the
        // reopened camera's frames, numbered on from there although the camera says 2. A
        // watch shows the newest value only, so frame 1 may go unseen; "NO SIGNAL" stays up
        // for the 300 ms of failed reopening.
        let (mut seen, mut no_signal_seen) = (Vec::new(), Vec::new());
        let wait = running.published.wait_for(|f: &Option<Frame>| {
            let Some(f) = f else { return false };
            if seen.last() != Some(&f.seq) {
                seen.push(f.seq);
                if is_no_signal(f) {
                    no_signal_seen.push(f.seq);
                }
            }
            !no_signal_seen.is_empty() && !is_no_signal(f)
        });
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .expect("reopened camera's frame not published in time")
            .unwrap();
        drop(running.published.borrow_and_update());
        let counters = running.stop().await;
        let no_signal = counters.no_signal.load(Ordering::Relaxed);
        assert!(no_signal >= 1);
        // Numbers only grow: the camera's own 2, 2, ... come out as 3, 4, ...
        assert!(seen.is_sorted(), "{seen:?}");
        assert_eq!(no_signal_seen.first(), Some(&2), "{seen:?}");
        assert!(*seen.last().unwrap() >= 2 + no_signal, "{seen:?}");
        assert_eq!(counters.errors.load(Ordering::Relaxed), 0);
    }

    /// Whether `frame` is the "NO SIGNAL" picture: the test camera's frames are flat grey.
    fn is_no_signal(frame: &Frame) -> bool {
        let pixels = jpeg_decoder::Decoder::new(&frame.jpeg[..])
            .decode()
            .unwrap();
        assert_eq!((frame.width, frame.height), (8, 8));
        pixels.iter().any(|p| p.abs_diff(128) > 40)
    }

    #[tokio::test(start_paused = true)]
    async fn no_signal_pictures_go_out_only_while_a_session_wants_one() {
        let mut camera = MockCam::new();
        camera.expect_name().return_const("mock".to_owned());
        camera
            .expect_next_frame()
            .times(1)
            .returning(|| Err(gone()));
        // When the loop tried to reopen the camera.
        let (opened, mut reopen_attempts) = watch::channel(Vec::new());
        camera.expect_open().returning(move || {
            opened.send_modify(|at| at.push(Instant::now()));
            Err(CameraError::Open {
                device: "mock".to_owned(),
                source: "unplugged".into(),
            })
        });
        camera.expect_close().times(1).returning(|| Ok(()));
        let demand = Demand::default();
        demand.want();
        let mut running = start(camera, demand.clone());
        let wait = running.published.wait_for(Option::is_some);
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .expect("NO SIGNAL not published in time")
            .unwrap();
        let first = running.published.borrow_and_update().clone().unwrap();
        assert!(is_no_signal(&first));
        assert_eq!(first.seq, 0);
        let next_due = Instant::now() + NO_SIGNAL_INTERVAL;
        demand.release();
        // The loop sees to a due picture before a due reopening: once it has tried to reopen
        // at or after the next picture's time, it is past it, and none went out with nobody
        // wanting it.
        let past_due = reopen_attempts.wait_for(|at| at.last().is_some_and(|t| *t >= next_due));
        tokio::time::timeout(Duration::from_secs(10), past_due)
            .await
            .expect("no reopening after the next NO SIGNAL picture was due")
            .unwrap();
        assert!(!running.published.has_changed().unwrap());
        let counters = running.stop().await;
        assert_eq!(counters.no_signal.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn read_errors_lose_one_frame_each_and_are_counted() {
        let mut camera = MockCam::new();
        let mut order = Sequence::new();
        camera.expect_name().return_const("mock".to_owned());
        camera
            .expect_next_frame()
            .times(3)
            .in_sequence(&mut order)
            .returning(|| {
                Err(CameraError::Read {
                    device: "mock".to_owned(),
                    source: "glitch".into(),
                })
            });
        camera
            .expect_next_frame()
            .in_sequence(&mut order)
            .returning(|| frame(4));
        camera.expect_open().never();
        camera.expect_close().times(1).returning(|| Ok(()));
        let counters = run_until_published(camera, 4).await;
        assert_eq!(counters.errors.load(Ordering::Relaxed), 3);
        assert!(counters.encoded.load(Ordering::Relaxed) >= 1);
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_is_read_while_no_session_wants_a_frame() {
        let mut camera = MockCam::new();
        camera.expect_name().return_const("mock".to_owned());
        camera.expect_next_frame().never();
        camera.expect_close().times(1).returning(|| Ok(()));
        let running = start(camera, Demand::default());
        // The loop got as far as deciding not to read; a read would break the mock.
        let counters = running.counters.clone();
        until("the loop went idle", || {
            counters.idle.load(Ordering::Relaxed) == 1
        })
        .await;
        let counters = running.stop().await;
        assert_eq!(counters.captured.load(Ordering::Relaxed), 0);
    }
}
