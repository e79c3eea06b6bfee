//! An encoded frame, as it is fanned out to every client.

use bytes::Bytes;

use crate::time::Timestamp;

/// One JPEG-encoded camera frame. The bytes are shared (`Bytes` is reference counted): every
/// client that is sent this frame gets the same allocation, never a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// A whole baseline JPEG image, `FF D8` to `FF D9`.
    pub jpeg: Bytes,
    pub width: u32,
    pub height: u32,
    /// Capture sequence number: one more for each frame the camera delivered, so a gap
    /// is a frame that was skipped.
    pub seq: u64,
    /// When the camera delivered the frame.
    pub captured_at: Timestamp,
}
