//! [`V4l2Camera`]: the [`Camera`] over a [`Device`] and its buffer [`Ring`].
//!
//! The ioctls block (at most until the frame timeout), so every call on the device runs on
//! tokio's blocking pool with the stream moved there and back; a `next_frame` cancelled
//! meanwhile leaves the call running, and the next `next_frame`, `open` or `close` waits for
//! it first, so the stream is never lost or used twice. `close` (and dropping the camera)
//! first sets a flag the wait looks at every 100 ms, so a silent device does not hold up a
//! stop for the whole frame timeout.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use edgecam_core::camera::{
    Camera, CameraError, Capabilities, Captured, Image, ImageError, PixelFormat,
};
use edgecam_core::time::{Clock, Timestamp};
use tokio::task::JoinHandle;

use crate::V4l2Error;
use crate::config::V4l2Config;
use crate::device::{BufType, Device, DeviceError, PixFormat};
use crate::negotiate::{self, Request, fourcc_name, read_offers};
use crate::ring::{Ring, RingError, RingFrame};

/// Buffers asked of the driver: one being filled, one lent to the encoder, one or two ready.
const BUFFERS: u32 = 4;
/// A newest frame older than this was filled while nobody asked: it is not served.
const STALE_AFTER: Duration = Duration::from_millis(500);

/// Opens the device afresh: at every `open`, so that a replugged camera (a new node number,
/// for `v4l2:NAME`) is found again.
pub type Opener = Arc<dyn Fn() -> Result<Box<dyn Device>, V4l2Error> + Send + Sync>;

/// What a V4L2 camera has handed out since it was created; shared, so a test or a stats
/// line can read it while the camera is the server's.
#[derive(Debug, Default)]
pub struct V4l2Counters {
    /// Frames handed on as the driver's own buffer (no copy).
    pub lent: AtomicU64,
    /// Frames copied because all buffers but two were still held downstream.
    pub copied: AtomicU64,
}

/// An open device, streaming.
struct Stream {
    device: Box<dyn Device>,
    ring: Option<Ring>,
    format: PixelFormat,
    pix: PixFormat,
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream")
            .field("format", &self.format)
            .field("pix", &self.pix)
            .finish_non_exhaustive()
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if let Some(ring) = self.ring.take() {
            tracing::debug!(stats = ?ring.stats(), "V4L2 stream stopped");
            ring.stop(self.device.as_mut());
        }
    }
}

type Pending = JoinHandle<(Stream, Result<(RingFrame, Timestamp), RingError>)>;

/// A V4L2 camera: `v4l2:/dev/videoN`, `v4l2:NAME`, or any [`Device`] (the simulated one).
/// See the crate documentation for how it behaves.
pub struct V4l2Camera {
    name: String,
    config: V4l2Config,
    clock: Arc<dyn Clock>,
    opener: Opener,
    /// One more for every frame handed out since the camera was created.
    seq: u64,
    stream: Option<Stream>,
    /// A `next_frame` still running on the blocking pool.
    pending: Option<Pending>,
    /// Set by `close` (and drop) so that a pending wait gives up within a slice.
    closing: Arc<AtomicBool>,
    counters: Arc<V4l2Counters>,
    capabilities: Option<Capabilities>,
}

impl fmt::Debug for V4l2Camera {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("V4l2Camera")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("stream", &self.stream)
            .field("capabilities", &self.capabilities)
            .finish_non_exhaustive()
    }
}

impl V4l2Camera {
    /// The camera `config` names (a real device node), called `name` in logs and errors.
    pub fn new(name: String, config: V4l2Config, clock: Arc<dyn Clock>) -> V4l2Camera {
        let opener = crate::real_opener(config.source.clone());
        V4l2Camera::with_opener(name, config, clock, opener)
    }

    /// A camera over the devices `open` opens (one per `open` of the camera), e.g. a
    /// [`SimHandle`](crate::SimHandle)'s: `config.source` is then only a name.
    pub fn with_device(
        name: String,
        config: V4l2Config,
        clock: Arc<dyn Clock>,
        open: impl Fn() -> Result<Box<dyn Device>, DeviceError> + Send + Sync + 'static,
    ) -> V4l2Camera {
        let opener: Opener = Arc::new(move || open().map_err(V4l2Error::Device));
        V4l2Camera::with_opener(name, config, clock, opener)
    }

    fn with_opener(
        name: String,
        config: V4l2Config,
        clock: Arc<dyn Clock>,
        opener: Opener,
    ) -> V4l2Camera {
        V4l2Camera {
            name,
            config,
            clock,
            opener,
            seq: 0,
            stream: None,
            pending: None,
            closing: Arc::new(AtomicBool::new(false)),
            counters: Arc::default(),
            capabilities: None,
        }
    }

    pub fn config(&self) -> &V4l2Config {
        &self.config
    }

    /// Its counters, which stay readable after the camera moved into a server.
    pub fn counters(&self) -> Arc<V4l2Counters> {
        self.counters.clone()
    }

    /// Waits for a `next_frame` that was cancelled while on the blocking pool, and takes its
    /// stream back (its frame is dropped, which returns the buffer).
    async fn settle(&mut self) {
        if let Some(pending) = self.pending.take()
            && let Ok((stream, _)) = pending.await
        {
            self.stream = Some(stream);
        }
    }

    fn error(&self, source: V4l2Error) -> CameraError {
        CameraError::Open {
            device: self.name.clone(),
            source: Box::new(source),
        }
    }
}

impl Drop for V4l2Camera {
    fn drop(&mut self) {
        // A pending wait ends within a slice and drops the stream on the blocking pool.
        self.closing.store(true, Ordering::Relaxed);
    }
}

/// Opens the device, chooses the format and starts streaming.
fn start(opener: &Opener, config: &V4l2Config) -> Result<(Stream, Capabilities), V4l2Error> {
    let mut device = opener()?;
    let caps = device.query_cap().map_err(|e| match e.errno() {
        Some(libc::ENOTTY) => V4l2Error::NotV4l2,
        _ => V4l2Error::Device(e),
    })?;
    let Some(ty) = caps.capture_type() else {
        return Err(V4l2Error::NotCapture {
            card: caps.card,
            driver: caps.driver,
        });
    };
    if !caps.streaming() {
        return Err(V4l2Error::NoStreaming { card: caps.card });
    }
    let offers = read_offers(device.as_mut(), ty)?;
    let request = Request {
        format: config.format,
        size: config.size,
    };
    let choice = negotiate::choose(&offers, request).map_err(V4l2Error::Format)?;
    let pix = device.s_fmt(ty, choice.fourcc, choice.size)?;
    if pix.fourcc != choice.fourcc {
        return Err(V4l2Error::Format(format!(
            "asked for {} at {}x{}, the driver chose {} instead",
            fourcc_name(choice.fourcc),
            choice.size.0,
            choice.size.1,
            fourcc_name(pix.fourcc)
        )));
    }
    if ty == BufType::CaptureMplane && pix.planes != 1 {
        return Err(V4l2Error::Planes(pix.planes));
    }
    if (pix.width, pix.height) != choice.size {
        tracing::warn!(
            asked = %format!("{}x{}", choice.size.0, choice.size.1),
            got = %format!("{}x{}", pix.width, pix.height),
            "the driver adjusted the frame size"
        );
    }
    let fps = match device.parm(ty, config.fps) {
        Ok(fps) => fps,
        Err(e) => {
            tracing::warn!(error = %e, "cannot set or read the frame rate; using the driver's");
            None
        }
    };
    let ring = Ring::start(device.as_mut(), ty, BUFFERS, config.skip, STALE_AFTER)?;
    tracing::info!(
        driver = %caps.driver, card = %caps.card, format = %choice.format,
        fourcc = %fourcc_name(pix.fourcc), width = pix.width, height = pix.height,
        bytesperline = pix.bytesperline, buffers = ring.len(), ?fps, api = ?ty,
        "V4L2 camera streaming"
    );
    let mut capabilities = Capabilities::new(pix.width, pix.height, choice.format);
    capabilities.fps = fps;
    Ok((
        Stream {
            device,
            ring: Some(ring),
            format: choice.format,
            pix,
        },
        capabilities,
    ))
}

/// The [`Image`] a frame's bytes are, without a copy.
fn image(format: PixelFormat, pix: &PixFormat, bytes: Bytes) -> Result<Image, ImageError> {
    if format.is_jpeg() {
        let (width, height) =
            edgecam_core::jpeg::dimensions(&bytes).unwrap_or((pix.width, pix.height));
        return Image::jpeg(width, height, bytes);
    }
    let packed = format.packed_strides(pix.width, pix.height);
    let row = if pix.bytesperline == 0 {
        packed[0]
    } else {
        pix.bytesperline as usize
    };
    let strides = match format {
        PixelFormat::Nv12 | PixelFormat::Nv21 => [row, row, 0],
        PixelFormat::I420 => [row, row / 2, row / 2],
        _ => [row, 0, 0],
    };
    Image::with_strides(format, pix.width, pix.height, strides, bytes)
}

#[async_trait::async_trait]
impl Camera for V4l2Camera {
    fn name(&self) -> String {
        self.name.clone()
    }

    async fn open(&mut self) -> Result<Capabilities, CameraError> {
        self.settle().await;
        self.closing.store(false, Ordering::Relaxed);
        self.stream = None;
        self.capabilities = None;
        let opener = self.opener.clone();
        let config = self.config.clone();
        let started = tokio::task::spawn_blocking(move || start(&opener, &config))
            .await
            .map_err(|e| self.error(V4l2Error::Thread(e.to_string())))?;
        let (stream, capabilities) = started.map_err(|e| self.error(e))?;
        self.stream = Some(stream);
        self.capabilities = Some(capabilities.clone());
        Ok(capabilities)
    }

    async fn next_frame(&mut self) -> Result<Captured, CameraError> {
        if self.pending.is_none() {
            let Some(mut stream) = self.stream.take() else {
                return Err(CameraError::NotOpen {
                    device: self.name.clone(),
                });
            };
            let timeout = self.config.timeout;
            let clock = self.clock.clone();
            let closing = self.closing.clone();
            self.pending = Some(tokio::task::spawn_blocking(move || {
                let Stream { device, ring, .. } = &mut stream;
                let result = match ring {
                    Some(ring) => ring
                        .next(device.as_mut(), timeout, &closing)
                        .map(|frame| (frame, clock.now())),
                    None => Err(RingError::Gone(DeviceError::new("stream", libc::ENODEV))),
                };
                (stream, result)
            }));
        }
        let Some(pending) = self.pending.as_mut() else {
            unreachable!("set just above");
        };
        // Cancel-safe: the handle stays in `self.pending` until it has finished.
        let joined = pending.await;
        self.pending = None;
        let (stream, result) = joined.map_err(|e| CameraError::Read {
            device: self.name.clone(),
            source: Box::new(V4l2Error::Thread(e.to_string())),
        })?;
        match result {
            Ok((frame, captured_at)) => {
                tracing::trace!(sequence = frame.sequence, lent = frame.lent, "V4L2 frame");
                let counter = if frame.lent {
                    &self.counters.lent
                } else {
                    &self.counters.copied
                };
                counter.fetch_add(1, Ordering::Relaxed);
                let image = image(stream.format, &stream.pix, frame.bytes);
                self.stream = Some(stream);
                let image = image.map_err(|source| CameraError::Image {
                    device: self.name.clone(),
                    source,
                })?;
                self.seq += 1;
                Ok(Captured {
                    seq: self.seq,
                    captured_at,
                    image,
                })
            }
            Err(RingError::Device(e)) => {
                self.stream = Some(stream);
                Err(CameraError::Read {
                    device: self.name.clone(),
                    source: Box::new(e),
                })
            }
            Err(gone) => {
                tracing::warn!(camera = %self.name, error = %crate::error_chain(&gone), "V4L2 device lost");
                drop(stream);
                self.capabilities = None;
                Err(CameraError::Disconnected {
                    device: self.name.clone(),
                })
            }
        }
    }

    fn capabilities(&self) -> Option<Capabilities> {
        self.capabilities.clone()
    }

    async fn close(&mut self) -> Result<(), CameraError> {
        self.closing.store(true, Ordering::Relaxed);
        self.settle().await;
        self.stream = None;
        self.capabilities = None;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use edgecam_core::spec::Spec;
    use edgecam_core::time::ManualClock;

    use super::*;
    use crate::sim::{SimConfig, SimFormat, SimHandle, sequence_of};

    fn camera(sim: &SimHandle, spec: &str) -> V4l2Camera {
        let config = V4l2Config::from_spec(&Spec::parse(spec).unwrap()).unwrap();
        let sim = sim.clone();
        V4l2Camera::with_device(
            spec.to_owned(),
            config,
            Arc::new(ManualClock::new(Timestamp(7))),
            move || Ok(Box::new(sim.open()?)),
        )
    }

    #[tokio::test]
    async fn an_isp_node_delivers_padded_nv12_without_a_copy() {
        let sim = SimHandle::new(SimConfig::rkisp_mainpath());
        let mut camera = camera(&sim, "v4l2:rkisp_mainpath#size=1000x600&skip=3");
        let caps = camera.open().await.unwrap();
        assert_eq!(
            (caps.width, caps.height, caps.format),
            (1000, 600, PixelFormat::Nv12)
        );
        let first = camera.next_frame().await.unwrap();
        assert_eq!(first.seq, 1);
        assert_eq!(first.captured_at, Timestamp(7));
        let image = &first.image;
        assert_eq!(image.size(), (1000, 600));
        assert_eq!(image.strides(), [1024, 1024, 0], "rows padded to 64 bytes");
        assert_eq!(sequence_of(image.data()), Some(3), "frames 0 to 2 skipped");
        // Held while the next frame comes: its buffer stays lent, and its bytes stay its own.
        let second = camera.next_frame().await.unwrap();
        assert_eq!(sequence_of(second.image.data()), Some(4));
        assert_eq!(sequence_of(first.image.data()), Some(3));
        assert_eq!(sim.stats().with_user, 2);
        drop((first, second));
        camera.next_frame().await.unwrap();
        assert_eq!(
            sim.stats().with_user,
            1,
            "the dropped frames' buffers went back"
        );
        camera.close().await.unwrap();
        let stats = sim.stats();
        assert!(stats.violations.is_empty(), "{stats:?}");
        assert_eq!(stats.buffers, 0, "closing frees the buffers");
    }

    #[tokio::test]
    async fn unplugging_is_a_disconnection_and_replugging_streams_again() {
        let sim = SimHandle::new(SimConfig::new(vec![SimFormat::raw(
            PixelFormat::Yuyv,
            &[(320, 240)],
        )]));
        let mut camera = camera(&sim, "v4l2:0");
        camera.open().await.unwrap();
        camera.next_frame().await.unwrap();
        sim.unplug();
        assert!(matches!(
            camera.next_frame().await,
            Err(CameraError::Disconnected { .. })
        ));
        assert_eq!(camera.capabilities(), None);
        match camera.open().await {
            Err(CameraError::Open { source, .. }) => {
                let chain = crate::error_chain(source.as_ref());
                assert!(chain.starts_with("open failed: No such file"), "{chain}")
            }
            other => panic!("{other:?}"),
        }
        sim.replug();
        camera.open().await.unwrap();
        let frame = camera.next_frame().await.unwrap();
        assert_eq!(frame.seq, 2, "numbers go on across the outage");
        assert_eq!(frame.image.format(), PixelFormat::Yuyv);
        assert!(sim.stats().violations.is_empty());
    }

    #[tokio::test]
    async fn a_request_the_device_cannot_meet_says_what_it_offers() {
        let sim = SimHandle::new(SimConfig::new(vec![SimFormat::raw(
            PixelFormat::Yuyv,
            &[(320, 240)],
        )]));
        let mut camera = camera(&sim, "v4l2:0#format=nv12");
        let Err(CameraError::Open { source, .. }) = camera.open().await else {
            panic!("opened");
        };
        assert_eq!(
            source.to_string(),
            "it does not offer format=nv12; it offers: YUYV (format=yuyv) 320x240"
        );
        assert!(matches!(
            camera.next_frame().await,
            Err(CameraError::NotOpen { .. })
        ));
    }

    #[tokio::test]
    async fn closing_while_a_silent_device_is_waited_for_does_not_wait_for_the_timeout() {
        let mut config = SimConfig::new(vec![SimFormat::raw(PixelFormat::Yuyv, &[(32, 16)])]);
        // The first frame is 10 s away, the timeout longer still.
        config.pace = crate::sim::Pace::Fps(0.1);
        let sim = SimHandle::new(config);
        let mut camera = camera(&sim, "v4l2:0#timeout=60");
        camera.open().await.unwrap();
        // Give up waiting for it, as the capture loop does on a stop, then close.
        let cancelled = tokio::time::timeout(Duration::from_millis(50), camera.next_frame()).await;
        assert!(cancelled.is_err(), "a frame came at once: {cancelled:?}");
        let started = std::time::Instant::now();
        camera.close().await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "close took {:?}",
            started.elapsed()
        );
        assert_eq!(sim.stats().buffers, 0);
    }

    #[tokio::test]
    async fn mjpeg_is_handed_on_as_jpeg_at_its_own_size() {
        let mut jpeg = Vec::new();
        jpeg_encoder::Encoder::new(&mut jpeg, 80)
            .encode(&[90u8; 16 * 8 * 3], 16, 8, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        let sim = SimHandle::new(SimConfig::new(vec![SimFormat::mjpeg(
            (16, 8),
            jpeg.clone(),
        )]));
        let mut camera = camera(&sim, "v4l2:0");
        let caps = camera.open().await.unwrap();
        assert_eq!(caps.format, PixelFormat::Jpeg);
        let frame = camera.next_frame().await.unwrap();
        assert_eq!(frame.image.format(), PixelFormat::Jpeg);
        assert_eq!(frame.image.size(), (16, 8));
        assert_eq!(&frame.image.data()[..], &jpeg[..]);
    }
}
