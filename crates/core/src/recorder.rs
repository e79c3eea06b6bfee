//! The [`Recorder`] trait: where received frames are kept.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

use crate::BoxError;
use crate::frame::Frame;

#[derive(Debug, Error)]
pub enum RecorderError {
    #[error(
        "cannot write {path}; check that the folder exists, is writable and the disk is not full"
    )]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("frame {seq} is not a JPEG image; it was not recorded")]
    NotJpeg { seq: u64 },
    /// Skippable, as `NotJpeg` is: recording can go on with the next frame.
    #[error("frame {seq} was not recorded")]
    Picture {
        seq: u64,
        #[source]
        source: crate::jpeg::PictureError,
    },
    #[error("the recorder was used before `start` or after `finish`")]
    NotStarted,
    #[error("the recording backend failed")]
    Backend(#[source] BoxError),
}

impl RecorderError {
    /// Whether the recorder refused this one frame for what it holds (not a JPEG, no or too
    /// large a picture size) and recording can go on with the next.
    pub fn is_refused_frame(&self) -> bool {
        matches!(
            self,
            RecorderError::NotJpeg { .. } | RecorderError::Picture { .. }
        )
    }
}

/// What a finished recording holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingSummary {
    /// The file or folder written.
    pub path: PathBuf,
    pub frames: u64,
    pub bytes: u64,
}

/// Keeps frames somewhere. Calls come in this order: `start`, any number of `write_frame`,
/// `finish`. After an error from `write_frame`, `finish` still leaves whatever was written in
/// a usable state.
#[async_trait::async_trait]
pub trait Recorder: Send {
    /// Creates the file or folder.
    async fn start(&mut self) -> Result<(), RecorderError>;

    /// Appends one frame, as received (no re-encoding).
    async fn write_frame(&mut self, frame: &Frame) -> Result<(), RecorderError>;

    /// Completes the recording and says what it holds.
    async fn finish(&mut self) -> Result<RecordingSummary, RecorderError>;
}
