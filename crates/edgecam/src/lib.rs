//! The edgecam server and client, generic over the core traits: the capture loop that encodes
//! each frame once, the server that fans frames out to sessions, the client that fetches and
//! streams them, and the clock they use (encoding is `edgecam-encode`'s). The `edgecam` binary is a thin
//! command-line front end to this library.

pub mod backends;
pub mod capture;
pub mod client;
pub mod clock;
pub mod metrics;
pub mod no_signal;
pub mod server;
pub mod view;

pub use edgecam_core::error_chain;

/// `<prefix>_<unix-ms>.<ext>`, the legacy client's naming (`video_stream_1732670000000.avi`).
pub fn stamped_file_name(prefix: &str, ext: &str) -> String {
    format!("{prefix}_{}.{ext}", clock::wall_now().0 / 1000)
}
