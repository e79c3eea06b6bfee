//! [`SimCamera`]: the [`Camera`] that renders the test pattern at a [`SimConfig`]'s pace, with
//! its faults.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use edgecam_core::camera::{
    Camera, CameraError, Capabilities, Captured, FramePool, Image, PixelFormat,
};
use edgecam_core::time::{Clock, Timestamp};

use crate::config::{Scene, SimConfig};
use crate::natural::{NaturalScene, Rect};
use crate::pattern::{Pattern, draw_seq};

/// A synthetic camera: a deterministic moving picture as packed RGB24 [`Image`]s, paced by
/// the [`Clock`] it is given, with the faults its [`SimConfig`] asks for.
///
/// Pace: with `fps > 0`, frame `k` after `open` is due at `open time + k / fps` (computed from
/// `k`, so it never drifts; rounded to the microsecond) and `next_frame` sleeps until then. A
/// reader that comes back more than one interval late gets a frame at once and the schedule
/// restarts from that moment: there is no burst of stale frames. With `fps = 0` frames come as
/// fast as they are asked for. `captured_at` is the clock's time when the frame is handed out.
///
/// `seq` starts at 1 and goes up by one for every frame delivered or lost to `error_every`, across
/// re-opens. `next_frame` is cancel-safe: dropping it while it waits changes nothing.
#[derive(Debug)]
pub struct SimCamera {
    config: SimConfig,
    name: String,
    clock: Arc<dyn Clock>,
    full: Picture,
    /// The `W/2 x H/2` frames of `vary`.
    half: Option<Picture>,
    /// Frame buffers, drawn into again once the frames drawn in them are dropped, each with
    /// where the natural scene's ball is in it.
    pool: FramePool<Option<Rect>>,
    /// The last seq produced (delivered or lost); 0 before the first frame.
    seq: u64,
    /// `Some` while open.
    schedule: Option<Schedule>,
    /// `fail_after` has fired; it fires once per camera.
    disconnected_once: bool,
    /// Until when `open` fails after the disconnect (`down_ms`).
    down_until: Option<Timestamp>,
    /// `stall_after` has fired; it fires once per camera.
    stalled_once: bool,
}

/// When the next frame is due: `anchor + index / fps`.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    anchor: Timestamp,
    index: u64,
}

impl SimCamera {
    /// A closed camera; the test pattern is precomputed here so that frames are cheap.
    pub fn new(config: SimConfig, clock: Arc<dyn Clock>) -> SimCamera {
        let full = Picture::new(config.scene(), config.width(), config.height());
        let half = config
            .faults()
            .vary
            .then(|| Picture::new(config.scene(), config.width() / 2, config.height() / 2));
        SimCamera {
            name: config.to_string(),
            config,
            clock,
            full,
            half,
            pool: FramePool::new(),
            seq: 0,
            schedule: None,
            disconnected_once: false,
            down_until: None,
            stalled_once: false,
        }
    }

    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    fn fps(&self) -> Option<f64> {
        let fps = self.config.fps();
        (fps > 0.0).then_some(fps)
    }

    fn capabilities_when_open(&self) -> Capabilities {
        let mut capabilities = Capabilities::new(
            self.config.width(),
            self.config.height(),
            PixelFormat::Rgb24,
        );
        capabilities.fps = self.fps();
        capabilities
    }
}

/// The frames of one size and scene, ready to render.
#[derive(Debug)]
enum Picture {
    Pattern(Pattern),
    Natural(NaturalScene),
}

impl Picture {
    fn new(scene: Scene, width: u32, height: u32) -> Picture {
        match scene {
            Scene::Pattern => Picture::Pattern(Pattern::new(width, height)),
            Scene::Natural => Picture::Natural(NaturalScene::new(width, height)),
        }
    }

    fn size(&self) -> (u32, u32) {
        match self {
            Picture::Pattern(p) => (p.width(), p.height()),
            Picture::Natural(n) => (n.width(), n.height()),
        }
    }

    /// Frame `seq` into `buf` (resized to the frame): packed RGB24, with the seq block drawn in.
    /// Every byte is written. `ball`: where the natural scene's ball was in the frame `buf` holds,
    /// as this returned when it drew that frame, so that only what changed is drawn; it is not
    /// used when `buf` is not of this picture's size (a new buffer, or one of the other size of
    /// `vary`). Returns where the ball is in this frame.
    fn render(&self, seq: u64, buf: &mut BytesMut, ball: Option<Rect>) -> Option<Rect> {
        let (w, h) = self.size();
        let (w, h) = (w as usize, h as usize);
        let len = w * h * 3;
        let ball = ball.filter(|_| buf.len() == len);
        buf.resize(len, 0);
        match self {
            Picture::Pattern(pattern) => {
                pattern.render(seq, buf);
                None
            }
            Picture::Natural(scene) => {
                let ball = scene.render(seq, buf, ball);
                draw_seq(buf, w, h, seq);
                Some(ball)
            }
        }
    }
}

/// How long after frame 0 frame `index` is due, computed from the index so that rounding never
/// accumulates.
fn frame_offset(index: u64, fps: f64) -> Duration {
    // `as` saturates: absurdly distant frames are due at the end of time.
    Duration::from_micros((index as f64 * 1_000_000.0 / fps).round() as u64)
}

#[async_trait]
impl Camera for SimCamera {
    /// The canonical spec, e.g. `sim:640x480@30#vary`.
    fn name(&self) -> String {
        self.name.clone()
    }

    /// Starts (or, when already open, restarts) the schedule: frame 0 is due now. Fails while
    /// the camera is "unplugged" (`down_ms` after `fail_after`).
    async fn open(&mut self) -> Result<Capabilities, CameraError> {
        let now = self.clock.now();
        if self.down_until.is_some_and(|until| now < until) {
            return Err(CameraError::Open {
                device: self.name.clone(),
                source: "unplugged (down_ms)".into(),
            });
        }
        self.schedule = Some(Schedule {
            anchor: now,
            index: 0,
        });
        Ok(self.capabilities_when_open())
    }

    async fn next_frame(&mut self) -> Result<Captured, CameraError> {
        let Some(mut schedule) = self.schedule else {
            return Err(CameraError::NotOpen {
                device: self.name.clone(),
            });
        };
        let faults = self.config.faults().clone();
        if let Some(fail_after) = faults.fail_after {
            if !self.disconnected_once && self.seq >= fail_after {
                self.disconnected_once = true;
                self.schedule = None;
                self.down_until = faults.down.map(|down| self.clock.now() + down);
                return Err(CameraError::Disconnected {
                    device: self.name.clone(),
                });
            }
        }

        let seq = self.seq + 1;
        let stall = faults
            .stall
            .filter(|stall| !self.stalled_once && stall.after == seq - 1)
            .map(|stall| stall.duration);
        let now = self.clock.now();
        let mut due = match self.fps() {
            Some(fps) => {
                let due = schedule.anchor + frame_offset(schedule.index, fps);
                if now.since(due) > frame_offset(1, fps) {
                    // The reader was away: a camera keeps no backlog, so start again from now.
                    schedule = Schedule {
                        anchor: now,
                        index: 0,
                    };
                    now
                } else {
                    due
                }
            }
            None => now,
        };
        if let Some(stall) = stall {
            due = due + stall;
        }

        if due > now {
            self.clock.sleep_until(due).await;
        }
        // Nothing changes before this point, so dropping the future while it sleeps is harmless.
        let captured_at = self.clock.now();
        self.seq = seq;
        self.schedule = Some(if stall.is_some() {
            self.stalled_once = true;
            Schedule {
                anchor: captured_at,
                index: 1,
            }
        } else {
            Schedule {
                index: schedule.index + 1,
                ..schedule
            }
        });

        if let Some(every) = faults.error_every {
            if seq % every == 0 {
                return Err(CameraError::Read {
                    device: self.name.clone(),
                    source: format!(
                        "frame {seq} lost on purpose (error_every={every} fails every frame \
                         whose seq is a multiple of {every})"
                    )
                    .into(),
                });
            }
        }
        let picture = match &self.half {
            Some(half) if seq % 2 == 0 => half,
            _ => &self.full,
        };
        let (width, height) = picture.size();
        let (mut buf, ball) = self.pool.buffer(width as usize * height as usize * 3);
        let ball = picture.render(seq, &mut buf, ball.flatten());
        let image = Image::packed(
            PixelFormat::Rgb24,
            width,
            height,
            self.pool.hand_out(buf, ball),
        )
        .map_err(|source| CameraError::Image {
            device: self.name.clone(),
            source,
        })?;
        Ok(Captured {
            seq,
            captured_at,
            image,
        })
    }

    fn capabilities(&self) -> Option<Capabilities> {
        self.schedule.map(|_| self.capabilities_when_open())
    }

    async fn close(&mut self) -> Result<(), CameraError> {
        self.schedule = None;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use edgecam_core::time::ManualClock;

    use super::*;
    use crate::read_seq;

    const T0: Timestamp = Timestamp(1_700_000_000_000_000);

    fn sim(spec: &str) -> (SimCamera, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(T0));
        (SimCamera::new(spec.parse().unwrap(), clock.clone()), clock)
    }

    fn at(micros: u64) -> Timestamp {
        Timestamp(T0.0 + micros)
    }

    async fn frame(camera: &mut SimCamera) -> Captured {
        camera.next_frame().await.unwrap()
    }

    fn pixels(captured: &Captured) -> (u32, u32, &[u8]) {
        let image = &captured.image;
        assert_eq!(image.format(), PixelFormat::Rgb24);
        assert!(image.is_packed());
        (image.width(), image.height(), image.data())
    }

    #[tokio::test]
    async fn unopened_or_closed_camera_is_not_open() {
        let (mut camera, _) = sim("sim");
        assert_eq!(camera.capabilities(), None);
        let err = camera.next_frame().await.unwrap_err();
        assert!(matches!(&err, CameraError::NotOpen { device } if device == "sim:640x480@30"));
        assert_eq!(
            err.to_string(),
            "camera sim:640x480@30 was used before `open`"
        );
        camera.open().await.unwrap();
        frame(&mut camera).await;
        camera.close().await.unwrap();
        assert_eq!(camera.capabilities(), None);
        assert!(matches!(
            camera.next_frame().await,
            Err(CameraError::NotOpen { .. })
        ));
    }

    #[tokio::test]
    async fn close_is_idempotent() {
        let (mut camera, _) = sim("sim");
        camera.close().await.unwrap();
        camera.open().await.unwrap();
        camera.close().await.unwrap();
        camera.close().await.unwrap();
        assert_eq!(camera.capabilities(), None);
    }

    #[tokio::test]
    async fn capabilities_and_name() {
        let (mut camera, _) = sim("sim:1280x720@7.5#vary");
        assert_eq!(camera.name(), "sim:1280x720@7.5#vary");
        let opened = camera.open().await.unwrap();
        let mut expected = Capabilities::new(1280, 720, PixelFormat::Rgb24);
        expected.fps = Some(7.5);
        assert_eq!(opened, expected);
        assert_eq!(opened.format, PixelFormat::Rgb24);
        assert_eq!(camera.capabilities(), Some(expected));

        let (mut unpaced, _) = sim("sim:640x480@0");
        assert_eq!(unpaced.open().await.unwrap().fps, None);
    }

    #[tokio::test]
    async fn frame_k_is_due_at_open_plus_k_over_fps_without_drift() {
        let (mut camera, clock) = sim("sim:640x480@30");
        camera.open().await.unwrap();
        for k in 0..=3000u64 {
            let captured = frame(&mut camera).await;
            assert_eq!(captured.seq, k + 1);
            // k / 30 s, rounded to the microsecond.
            assert_eq!(captured.captured_at, at((k * 100_000 + 1) / 3), "frame {k}");
        }
        assert_eq!(
            clock.now(),
            at(100_000_000),
            "frame 3000 is exactly 100 s in"
        );

        let (mut camera, _) = sim("sim:640x480@7.5");
        camera.open().await.unwrap();
        for k in 0..=75u64 {
            let expected = (k * 400_000 + 1) / 3; // k / 7.5 s, rounded to the microsecond
            assert_eq!(
                frame(&mut camera).await.captured_at,
                at(expected),
                "frame {k}"
            );
        }
    }

    #[tokio::test]
    async fn the_schedule_starts_at_open() {
        let (mut camera, clock) = sim("sim:640x480@10");
        clock.advance(Duration::from_secs(5));
        camera.open().await.unwrap();
        assert_eq!(frame(&mut camera).await.captured_at, at(5_000_000));
        assert_eq!(frame(&mut camera).await.captured_at, at(5_100_000));
    }

    #[tokio::test]
    async fn a_reader_that_was_away_gets_no_burst() {
        let (mut camera, clock) = sim("sim:640x480@10");
        camera.open().await.unwrap();
        assert_eq!(frame(&mut camera).await.captured_at, at(0));
        assert_eq!(frame(&mut camera).await.captured_at, at(100_000));
        clock.advance(Duration::from_secs(1));
        let captured: Vec<_> = [
            frame(&mut camera).await,
            frame(&mut camera).await,
            frame(&mut camera).await,
        ]
        .iter()
        .map(|c| (c.seq, c.captured_at))
        .collect();
        assert_eq!(
            captured,
            [(3, at(1_100_000)), (4, at(1_200_000)), (5, at(1_300_000))],
            "one frame now, then back to one per 100 ms from now"
        );
    }

    #[tokio::test]
    async fn a_reader_less_than_one_interval_late_stays_on_schedule() {
        let (mut camera, clock) = sim("sim:640x480@10");
        camera.open().await.unwrap();
        frame(&mut camera).await;
        clock.advance(Duration::from_millis(180)); // frame 1 was due at 100 ms
        assert_eq!(frame(&mut camera).await.captured_at, at(180_000));
        assert_eq!(frame(&mut camera).await.captured_at, at(200_000));
    }

    #[tokio::test]
    async fn fps_zero_does_not_pace() {
        let (mut camera, clock) = sim("sim:320x240@0");
        camera.open().await.unwrap();
        for seq in 1..=100 {
            let captured = frame(&mut camera).await;
            assert_eq!((captured.seq, captured.captured_at), (seq, T0));
        }
        clock.advance(Duration::from_millis(3));
        assert_eq!(frame(&mut camera).await.captured_at, at(3_000));
    }

    #[tokio::test]
    async fn frames_carry_their_seq_and_depend_only_on_it() {
        let (mut a, _) = sim("sim:640x480@30");
        let (mut b, _) = sim("sim:640x480@0");
        a.open().await.unwrap();
        b.open().await.unwrap();
        let mut previous: Option<Vec<u8>> = None;
        for seq in 1..=40 {
            let (fa, fb) = (frame(&mut a).await, frame(&mut b).await);
            let (w, h, pa) = pixels(&fa);
            assert_eq!((w, h), (640, 480));
            assert_eq!(pa.len(), 640 * 480 * 3);
            assert_eq!(read_seq(pa, w, h), Some(seq));
            assert!(fa.image == fb.image, "seq {seq}: same seq, same pixels");
            assert!(
                previous.as_deref() != Some(pa),
                "seq {seq} repeats seq {}",
                seq - 1
            );
            previous = Some(pa.to_vec());
        }
    }

    #[tokio::test]
    async fn seq_continues_across_reopen() {
        let (mut camera, _) = sim("sim:640x480@0");
        camera.open().await.unwrap();
        assert_eq!(frame(&mut camera).await.seq, 1);
        camera.close().await.unwrap();
        camera.open().await.unwrap();
        assert_eq!(frame(&mut camera).await.seq, 2);
    }

    #[tokio::test]
    async fn fail_after_disconnects_once_then_works_after_reopen() {
        let (mut camera, clock) = sim("sim:640x480@10#fail_after=3");
        camera.open().await.unwrap();
        for seq in 1..=3 {
            assert_eq!(frame(&mut camera).await.seq, seq);
        }
        let err = camera.next_frame().await.unwrap_err();
        assert!(
            matches!(&err, CameraError::Disconnected { device } if device == "sim:640x480@10#fail_after=3"),
            "{err:?}"
        );
        assert_eq!(
            clock.now(),
            at(200_000),
            "it fails at once, without waiting"
        );
        assert_eq!(camera.capabilities(), None, "closed by the disconnect");
        assert!(matches!(
            camera.next_frame().await,
            Err(CameraError::NotOpen { .. })
        ));

        clock.advance(Duration::from_secs(1));
        camera.open().await.unwrap();
        for (k, seq) in (4..=50).enumerate() {
            let captured = frame(&mut camera).await;
            assert_eq!(captured.seq, seq, "no seq used by the disconnect");
            assert_eq!(captured.captured_at, at(1_200_000 + k as u64 * 100_000));
        }
    }

    #[tokio::test]
    async fn down_ms_keeps_the_camera_unplugged_for_that_long() {
        let (mut camera, clock) = sim("sim:640x480@10#fail_after=1&down_ms=500");
        camera.open().await.unwrap();
        assert_eq!(frame(&mut camera).await.seq, 1);
        assert!(matches!(
            camera.next_frame().await,
            Err(CameraError::Disconnected { .. })
        ));
        clock.advance(Duration::from_millis(499));
        let err = camera.open().await.unwrap_err();
        assert!(
            matches!(&err, CameraError::Open { device, .. } if device == "sim:640x480@10#fail_after=1&down_ms=500"),
            "{err:?}"
        );
        clock.advance(Duration::from_millis(1));
        camera.open().await.unwrap();
        assert_eq!(frame(&mut camera).await.seq, 2);
    }

    #[tokio::test]
    async fn fail_after_zero_disconnects_before_the_first_frame() {
        let (mut camera, _) = sim("sim:640x480@30#fail_after=0");
        camera.open().await.unwrap();
        assert!(matches!(
            camera.next_frame().await,
            Err(CameraError::Disconnected { .. })
        ));
        camera.open().await.unwrap();
        assert_eq!(frame(&mut camera).await.seq, 1);
    }

    #[tokio::test]
    async fn error_every_loses_frames_and_leaves_a_gap() {
        let (mut camera, _) = sim("sim:640x480@10#error_every=3");
        camera.open().await.unwrap();
        let mut outcomes = Vec::new();
        for _ in 0..7 {
            outcomes.push(match camera.next_frame().await {
                Ok(captured) => Ok((captured.seq, captured.captured_at)),
                Err(CameraError::Read { device, source }) => {
                    assert_eq!(device, "sim:640x480@10#error_every=3");
                    Err(source.to_string())
                }
                Err(other) => panic!("unexpected {other:?}"),
            });
        }
        let lost = |seq: u64| {
            Err(format!(
                "frame {seq} lost on purpose (error_every=3 fails every frame whose seq is a \
                 multiple of 3)"
            ))
        };
        assert_eq!(
            outcomes,
            [
                Ok((1, at(0))),
                Ok((2, at(100_000))),
                lost(3),
                Ok((4, at(300_000))),
                Ok((5, at(400_000))),
                lost(6),
                Ok((7, at(600_000))),
            ],
            "a lost frame uses up its seq and its time slot"
        );
        assert!(
            camera.capabilities().is_some(),
            "a read error does not close"
        );
    }

    #[tokio::test]
    async fn stall_delays_one_frame_once() {
        let (mut camera, _) = sim("sim:640x480@10#stall_after=2&stall_ms=250");
        camera.open().await.unwrap();
        let mut times = Vec::new();
        for _ in 0..5 {
            times.push(frame(&mut camera).await.captured_at);
        }
        assert_eq!(
            times,
            [at(0), at(100_000), at(450_000), at(550_000), at(650_000)],
            "frame 3 is 250 ms late and the pace restarts from it"
        );
        camera.close().await.unwrap();
        camera.open().await.unwrap();
        let t = frame(&mut camera).await.captured_at;
        assert_eq!(
            frame(&mut camera).await.captured_at,
            t + Duration::from_millis(100)
        );
    }

    #[tokio::test]
    async fn stall_without_pacing() {
        let (mut camera, _) = sim("sim:640x480@0#stall_after=0&stall_ms=40");
        camera.open().await.unwrap();
        assert_eq!(frame(&mut camera).await.captured_at, at(40_000));
        assert_eq!(frame(&mut camera).await.captured_at, at(40_000));
    }

    #[tokio::test]
    async fn vary_alternates_full_and_half_size() {
        let (mut camera, _) = sim("sim:640x480@0#vary");
        assert_eq!(
            camera.open().await.unwrap(),
            Capabilities::new(640, 480, PixelFormat::Rgb24)
        );
        for seq in 1..=6u64 {
            let captured = frame(&mut camera).await;
            let (w, h, p) = pixels(&captured);
            let expected = if seq % 2 == 1 { (640, 480) } else { (320, 240) };
            assert_eq!((w, h), expected, "seq {seq}");
            assert_eq!(p.len(), w as usize * h as usize * 3);
            assert_eq!(read_seq(p, w, h), Some(seq));
        }
    }

    #[tokio::test]
    async fn the_natural_scene_carries_the_seq_and_is_not_the_pattern() {
        let (mut natural, _) = sim("sim:160x120@0#scene=natural");
        let (mut pattern, _) = sim("sim:160x120@0");
        assert_eq!(natural.name(), "sim:160x120@0#scene=natural");
        natural.open().await.unwrap();
        pattern.open().await.unwrap();
        for seq in 1..=3 {
            let n = frame(&mut natural).await;
            let p = frame(&mut pattern).await;
            let (w, h, natural_pixels) = pixels(&n);
            assert_eq!((w, h), (160, 120));
            assert_eq!(read_seq(natural_pixels, w, h), Some(seq));
            assert_ne!(natural_pixels, pixels(&p).2, "seq {seq}");
        }
    }

    #[tokio::test]
    async fn frames_drawn_into_reused_buffers_are_the_frames_drawn_afresh() {
        for spec in [
            "sim:160x120@0#scene=natural",
            "sim:160x120@0#scene=natural&vary",
            "sim:160x120@0#vary",
        ] {
            let (mut camera, _) = sim(spec);
            camera.open().await.unwrap();
            let mut buffers = std::collections::HashSet::new();
            let mut pictures = std::collections::HashMap::new();
            for seq in 1..=200u64 {
                // Each frame is dropped before the next, as the server does once it is encoded.
                let captured = frame(&mut camera).await;
                let (w, h, got) = pixels(&captured);
                buffers.insert(got.as_ptr() as usize);
                let picture = pictures
                    .entry((w, h))
                    .or_insert_with(|| Picture::new(camera.config.scene(), w, h));
                let mut afresh = BytesMut::new();
                picture.render(seq, &mut afresh, None);
                assert!(got == &afresh[..], "{spec}: seq {seq}");
            }
            assert!(
                buffers.len() <= 4,
                "{spec}: {} buffers for 200 frames",
                buffers.len()
            );
        }
    }

    #[tokio::test]
    async fn usable_as_a_boxed_camera() {
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(T0));
        let mut camera: Box<dyn Camera> = Box::new(SimCamera::new(SimConfig::default(), clock));
        camera.open().await.unwrap();
        assert_eq!(camera.next_frame().await.unwrap().image.size(), (640, 480));
    }
}
