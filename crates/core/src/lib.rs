//! The sans-IO core of edgecam: what a frame is, the legacy wire codec, the per-connection
//! session state machine, and the traits the other crates implement (`Camera`, `Transport`,
//! `Recorder`, `Clock`).
//!
//! This crate never does I/O, never reads a clock, never spawns a task and depends on no async
//! runtime, socket or OpenCV crate: time comes in as a [`time::Timestamp`] parameter, bytes come
//! in as slices, and decisions come out as return values and events. `cargo xtask ci` checks
//! that its dependency tree stays free of runtime and I/O crates.

pub mod camera;
pub mod codec;
pub mod frame;
pub mod http;
pub mod jpeg;
pub mod limit;
pub mod protocol;
pub mod recorder;
pub mod session;
pub mod spec;
pub mod time;
pub mod transport;

/// A backend's own error, kept whole as the `source` of ours.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error and all its sources on one line: `what failed: why: root cause`.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
