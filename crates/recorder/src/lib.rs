//! edgecam's recorders: implementations of [`edgecam_core::recorder::Recorder`] that keep
//! received frames exactly as they arrived, without decoding or re-encoding them, and the
//! tools to read, check and repair what they wrote.
//!
//! - [`AviRecorder`] writes one MJPEG AVI file that any player opens: each frame's JPEG bytes
//!   in a chunk of their own, the picture size taken from the first JPEG, the frame rate
//!   measured from the capture times. Files past 1 GiB and 4 GiB use the OpenDML layout
//!   (`RIFF 'AVIX'` segments under 1 GiB each, `indx`/`ix00` indexes) as ffmpeg does. Its
//!   synchronous core, [`AviWriter`], writes to any [`AviFile`] and is what tests and
//!   benchmarks drive.
//! - [`JpegDirRecorder`] writes each frame to its own numbered file in a folder.
//! - [`Segmented`] splits a recording over numbered files (or folders) by duration or size,
//!   with any of the two; [`parse_size`] reads `--segment-size` values.
//! - [`AviReader`] / [`read_frames`] read AVI files (ours and others') back frame by frame,
//!   after checking their structure and indexes; [`chunk_listing`] shows that structure.
//! - [`repair`] makes a recording that was cut off (killed, full disk, power loss) or damaged
//!   a valid file again, in place, keeping every frame that reached the disk whole and every
//!   frame the damage did not touch.
//!
//! Crash safety of the AVI recorder, in short: the header is written first, each frame goes to
//! the OS as it arrives, the data is synced about once a second, and whatever the file looks
//! like after a crash, [`repair`] finds every whole frame in it.

mod jpeg_dir;
mod parse;
mod reader;
mod recorder;
mod repair;
mod riff;
mod salvage;
mod segmented;
mod writer;

#[cfg(test)]
mod test_support;

pub use jpeg_dir::JpegDirRecorder;
pub use parse::ReadError;
pub use reader::{AviInfo, AviReader, FramePosition, chunk_listing, read_frames};
pub use recorder::{AviRecordError, AviRecorder};
pub use repair::{DroppedRange, RepairReport, repair};
pub use riff::{FrameRate, MAX_FRAME_BYTES};
pub use segmented::{ParseSizeError, SegmentLimits, Segmented, parse_size, segment_path};
pub use writer::{AviConfig, AviError, AviFile, AviSummary, AviWriter};
