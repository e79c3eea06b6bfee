//! What the tests share: building cameras, bounded waits, process checks.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use edgecam_camera_pipe::{PipeCamera, PipeConfig};
use edgecam_core::camera::{Camera, CameraError, Captured};
use edgecam_core::spec::Spec;
use edgecam_core::time::{ManualClock, Timestamp};

/// A camera for `spec` (an `exec:` or `pipe:` spec), not yet open.
pub fn camera(spec: &str) -> PipeCamera {
    let parsed = Spec::parse(spec).unwrap();
    let config = PipeConfig::from_spec(&parsed).unwrap();
    PipeCamera::new(
        spec.to_owned(),
        config,
        Arc::new(ManualClock::new(Timestamp(1_000))),
    )
}

/// `future`, or a panic naming `what` after `secs` seconds.
pub async fn within<T>(secs: u64, what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), future).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: not done within {secs} s"),
    }
}

pub async fn next(camera: &mut PipeCamera) -> Captured {
    within(10, "next frame", camera.next_frame())
        .await
        .unwrap_or_else(|e| panic!("{}", edgecam_core::error_chain(&e)))
}

/// Reads frames until `Disconnected`, returning them; any other error fails.
pub async fn until_disconnected(camera: &mut PipeCamera) -> Vec<Captured> {
    let mut frames = Vec::new();
    loop {
        match within(10, "frames until disconnected", camera.next_frame()).await {
            Ok(frame) => frames.push(frame),
            Err(CameraError::Disconnected { .. }) => return frames,
            Err(e) => panic!("{}", edgecam_core::error_chain(&e)),
        }
    }
}

/// The number a test child printed as a whole frame (`printf %0Nd`).
pub fn number(frame: &Captured) -> u64 {
    std::str::from_utf8(frame.image.data())
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("frame {:?}: {e}", frame.image.data()))
}

/// The pids whose process group is `group`, with their state letter (`Z`: zombie).
pub fn group_members(group: u32) -> Vec<(u32, char)> {
    let mut members = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...: comm may hold spaces, so split after its ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(group) {
            let state = fields[0].chars().next().unwrap_or('?');
            members.push((pid, state));
        }
    }
    members
}

/// Waits (bounded) until no process is left in `group`, not even a zombie.
pub async fn group_gone(group: u32) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let members = group_members(group);
        if members.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "process group {group} still has {members:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (bounded) until `condition` holds, checking every few milliseconds.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A real JPEG of `width x height`, noisy from `seed`.
pub fn jpeg(width: u16, height: u16, seed: u8) -> Vec<u8> {
    let mut pixels = Vec::with_capacity(usize::from(width) * usize::from(height) * 3);
    let mut x = u32::from(seed) | 1;
    for _ in 0..usize::from(width) * usize::from(height) * 3 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        pixels.push((x >> 24) as u8);
    }
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 80)
        .encode(&pixels, width, height, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    out
}
