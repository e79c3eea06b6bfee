//! edgecam's recorders: implementations of [`edgecam_core::recorder::Recorder`] that keep
//! received frames exactly as they arrived, without decoding or re-encoding them.
//!
//! [`JpegDirRecorder`] writes each frame's JPEG bytes to its own numbered file in a folder.
//! An AVI (MJPEG) writer that stores the same bytes in one playable file comes later.

mod jpeg_dir;

pub use jpeg_dir::JpegDirRecorder;
