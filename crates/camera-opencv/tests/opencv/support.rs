//! Fixtures: a real clock, short test videos written with OpenCV, and a bound on every wait.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, ensure};
use async_trait::async_trait;
use edgecam_core::time::{Clock, Timestamp};
use opencv::core::{CV_8UC3, Mat, Scalar, Size};
use opencv::prelude::*;
use opencv::videoio::VideoWriter;

pub const WIDTH: i32 = 320;
pub const HEIGHT: i32 = 240;
/// Frames in a test video; frame `i` is one colour that says `i` (see [`colour`]).
pub const FRAMES: usize = 30;
/// Test videos play fast, so that they loop within half a second.
pub const FPS: f64 = 60.0;

/// Wall-clock time, sleeping on tokio's timer.
#[derive(Debug)]
pub struct WallClock {
    base: Instant,
    base_wall: Timestamp,
}

impl WallClock {
    pub fn new() -> Arc<WallClock> {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Arc::new(WallClock {
            base: Instant::now(),
            base_wall: Timestamp(u64::try_from(wall.as_micros()).unwrap_or(u64::MAX)),
        })
    }
}

#[async_trait]
impl Clock for WallClock {
    fn now(&self) -> Timestamp {
        self.base_wall + self.base.elapsed()
    }

    async fn sleep_until(&self, deadline: Timestamp) {
        tokio::time::sleep(deadline.since(self.now())).await;
    }
}

/// Awaits `future`, failing the test if it takes longer than `seconds`.
pub async fn within<T>(seconds: u64, what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(seconds), future).await {
        Ok(value) => value,
        Err(_) => panic!("{what} did not finish within {seconds} s"),
    }
}

/// The BGR colour of frame `i`: blue counts up, green counts down, red stays at 128.
pub fn colour(i: usize) -> [u8; 3] {
    let i = u8::try_from(i % FRAMES).unwrap_or(0);
    [4 + 8 * i, 250 - 8 * i, 128]
}

/// Which frame an RGB pixel comes from, if it is one of ours: every channel within `tolerance`
/// of that frame's colour (JPEG and MPEG-4 are lossy). Blue minus green is 16 i - 246, which
/// tells `i` even when each channel is off by a few levels.
pub fn index_of_rgb([r, g, b]: [u8; 3], tolerance: u8) -> Option<usize> {
    let twice = i32::from(b) - i32::from(g) + 246;
    let i = usize::try_from((twice + 8).div_euclid(16)).ok()?;
    let [eb, eg, er] = colour(i);
    let close =
        b.abs_diff(eb) <= tolerance && g.abs_diff(eg) <= tolerance && r.abs_diff(er) <= tolerance;
    (i < FRAMES && close).then_some(i)
}

/// The pixel in the middle of packed 3-byte `pixels` of the test size, in their order.
pub fn middle_pixel(pixels: &[u8]) -> [u8; 3] {
    let at = ((HEIGHT as usize / 2) * WIDTH as usize + WIDTH as usize / 2) * 3;
    [pixels[at], pixels[at + 1], pixels[at + 2]]
}

/// Writes a `FRAMES`-frame `WIDTH x HEIGHT` video at `FPS` with OpenCV's `VideoWriter`.
pub fn write_video(path: &Path, fourcc: [u8; 4]) -> Result<()> {
    let [a, b, c, d] = fourcc.map(char::from);
    let mut writer = VideoWriter::new(
        path,
        VideoWriter::fourcc(a, b, c, d)?,
        FPS,
        Size::new(WIDTH, HEIGHT),
        true,
    )?;
    ensure!(
        writer.is_opened()?,
        "OpenCV cannot write {} video to {}",
        String::from_utf8_lossy(&fourcc),
        path.display()
    );
    for i in 0..FRAMES {
        let [b, g, r] = colour(i).map(f64::from);
        let frame =
            Mat::new_rows_cols_with_default(HEIGHT, WIDTH, CV_8UC3, Scalar::new(b, g, r, 0.0))?;
        writer.write(&frame)?;
    }
    writer.release()?;
    let len = std::fs::metadata(path)
        .context("the video was not written")?
        .len();
    ensure!(len > 0, "{} is empty", path.display());
    Ok(())
}
