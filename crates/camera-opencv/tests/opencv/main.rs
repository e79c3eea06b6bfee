//! The OpenCV backend against real OpenCV: cameras over generated video files, the recorder
//! writing and reading back a video, and the HighGUI window in Qt's offscreen platform.

#![allow(clippy::unwrap_used)]

mod camera;
mod recorder;
mod support;
#[cfg(feature = "window")]
mod window;
