//! [`AviRecorder`]: the [`Recorder`] that writes one MJPEG AVI file, on top of [`AviWriter`].

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use edgecam_core::frame::Frame;
use edgecam_core::jpeg::is_jpeg;
use edgecam_core::recorder::{Recorder, RecorderError, RecordingSummary};
use thiserror::Error;
use tokio::task::{JoinHandle, spawn_blocking};
use tokio::time::Instant;

use crate::writer::{AviConfig, AviError, AviSummary, AviWriter};

/// An [`AviError`] with the file it happened to; the source of
/// [`RecorderError::Backend`] for the errors that are not plain I/O or a refused frame.
#[derive(Debug, Error)]
#[error("cannot record into {path}")]
pub struct AviRecordError {
    pub path: PathBuf,
    #[source]
    pub source: AviError,
}

/// Records frames into one MJPEG AVI file (see [`AviWriter`] for the format).
///
/// - `start` creates the file (and its folder), refusing one that already exists so that no
///   earlier recording is overwritten, and writes the header.
/// - `write_frame` rejects a payload that is not a whole JPEG with [`RecorderError::NotJpeg`]
///   before touching the file. Each frame is written straight to the file (it reaches the OS
///   before the call returns) on tokio's blocking pool, so the runtime never waits for the
///   disk. About once a second ([`AviConfig::sync_interval`]) the header is brought up to
///   date and an fdatasync is started in the background (unless the last one is still
///   running); the next frames do not wait for it. A failed sync is reported by the next
///   `write_frame`, which then writes nothing.
///   A frame with another picture size than the first is refused with a
///   [`RecorderError::Backend`] holding [`AviError::SizeChanged`]: an AVI file has one picture
///   size ([`Segmented`](crate::Segmented) starts a new file instead). A write error (full
///   disk, ...) is [`RecorderError::Io`] with the path; the file still ends with the last
///   whole frame, and recording may go on or be finished.
/// - `finish` writes the index and the final header (with the measured frame rate) and
///   syncs. On a full disk it drops the last frames if the index would not fit otherwise, and
///   logs how many ([`last_summary`](Self::last_summary) has the figures). The summary's
///   `bytes` are the frames' JPEG bytes, as for the other recorders; the file is slightly
///   larger.
///
/// A recording that never reaches `finish` (the process killed, the power cut) is made whole
/// by [`repair`](crate::repair).
///
/// Dropping a `write_frame` future halfway is safe: the write completes on the blocking pool
/// and the next call waits for it.
#[derive(Debug)]
pub struct AviRecorder {
    path: PathBuf,
    config: AviConfig,
    active: Option<Active>,
    last_summary: Option<AviSummary>,
}

#[derive(Debug)]
struct Active {
    writer: Arc<Mutex<AviWriter<File>>>,
    /// The same file, for syncing in the background while frames are being written.
    sync_file: Arc<File>,
    syncing: Option<JoinHandle<io::Result<()>>>,
    last_sync: Instant,
}

fn lock(writer: &Mutex<AviWriter<File>>) -> MutexGuard<'_, AviWriter<File>> {
    writer.lock().unwrap_or_else(|e| e.into_inner())
}

impl AviRecorder {
    /// A recorder for the file `path`. Nothing is touched until `start`.
    pub fn new(path: impl Into<PathBuf>, config: AviConfig) -> Self {
        AviRecorder {
            path: path.into(),
            config,
            active: None,
            last_summary: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the last `finish` wrote: picture size, frame rate, RIFF segments, frames dropped
    /// for a full disk.
    pub fn last_summary(&self) -> Option<&AviSummary> {
        self.last_summary.as_ref()
    }

    fn error(&self, e: AviError, seq: u64) -> RecorderError {
        match e {
            AviError::NotJpeg | AviError::NoPictureSize => RecorderError::NotJpeg { seq },
            AviError::PictureTooLarge(source) => RecorderError::Picture { seq, source },
            AviError::Finished => RecorderError::NotStarted,
            AviError::Io { source, .. } => RecorderError::Io {
                path: self.path.clone(),
                source,
            },
            source => RecorderError::Backend(Box::new(AviRecordError {
                path: self.path.clone(),
                source,
            })),
        }
    }

    fn io_error(&self, source: io::Error) -> RecorderError {
        RecorderError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

fn panicked(e: tokio::task::JoinError) -> RecorderError {
    RecorderError::Backend(Box::new(e))
}

#[async_trait::async_trait]
impl Recorder for AviRecorder {
    async fn start(&mut self) -> Result<(), RecorderError> {
        if self.active.is_some() {
            return Err(self.io_error(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "this recorder is already recording into the file; finish it first",
            )));
        }
        let path = self.path.clone();
        let config = self.config.clone();
        let opened = spawn_blocking(move || {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(Err)?;
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| {
                    if e.kind() == io::ErrorKind::AlreadyExists {
                        Err(io::Error::new(
                            io::ErrorKind::AlreadyExists,
                            format!(
                                "{} already exists; choose another name or move it away, so that \
                                 no earlier recording is overwritten",
                                path.display()
                            ),
                        ))
                    } else {
                        Err(e)
                    }
                })?;
            let sync_file = file.try_clone().map_err(Err)?;
            let writer = AviWriter::new(file, config).map_err(Ok)?;
            Ok((writer, sync_file))
        })
        .await
        .map_err(panicked)?;
        let (writer, sync_file) = match opened {
            Ok(opened) => opened,
            Err(Ok(avi)) => return Err(self.error(avi, 0)),
            Err(Err(io)) => return Err(self.io_error(io)),
        };
        tracing::debug!(path = %self.path.display(), "recording into an AVI file");
        self.active = Some(Active {
            writer: Arc::new(Mutex::new(writer)),
            sync_file: Arc::new(sync_file),
            syncing: None,
            last_sync: Instant::now(),
        });
        Ok(())
    }

    async fn write_frame(&mut self, frame: &Frame) -> Result<(), RecorderError> {
        let Some(active) = &mut self.active else {
            return Err(RecorderError::NotStarted);
        };
        if !is_jpeg(&frame.jpeg) {
            return Err(RecorderError::NotJpeg { seq: frame.seq });
        }
        // The background sync's outcome, once it is known.
        if active.syncing.as_ref().is_some_and(JoinHandle::is_finished)
            && let Some(handle) = active.syncing.take()
        {
            let synced = handle.await.map_err(panicked)?;
            if let Err(source) = synced {
                return Err(RecorderError::Io {
                    path: self.path.clone(),
                    source,
                });
            }
        }
        let due = active.last_sync.elapsed() >= self.config.sync_interval;
        let writer = Arc::clone(&active.writer);
        let jpeg = frame.jpeg.clone();
        let at = frame.captured_at;
        let written = spawn_blocking(move || {
            let mut writer = lock(&writer);
            writer.write_frame(&jpeg, at)?;
            if due && let Err(e) = writer.flush_header() {
                tracing::warn!("cannot bring the AVI header up to date: {e}");
            }
            Ok(())
        })
        .await
        .map_err(panicked)?;
        // One sync at a time: with a slow disk, the header is still updated on time.
        if due && written.is_ok() {
            active.last_sync = Instant::now();
            if active.syncing.is_none() {
                let file = Arc::clone(&active.sync_file);
                active.syncing = Some(spawn_blocking(move || file.sync_data()));
            }
        }
        written.map_err(|e| self.error(e, frame.seq))
    }

    async fn finish(&mut self) -> Result<RecordingSummary, RecorderError> {
        let Some(active) = self.active.take() else {
            return Err(RecorderError::NotStarted);
        };
        if let Some(handle) = active.syncing {
            // finish syncs again; an error there is the one to report.
            let _ = handle.await;
        }
        let writer = active.writer;
        let summary = spawn_blocking(move || lock(&writer).finish())
            .await
            .map_err(panicked)?
            .map_err(|e| self.error(e, 0))?;
        if summary.dropped_frames > 0 {
            tracing::warn!(
                path = %self.path.display(),
                dropped = summary.dropped_frames,
                kept = summary.frames,
                "the disk was full: dropped the last frames so that the index fits"
            );
        }
        self.last_summary = Some(summary.clone());
        Ok(RecordingSummary {
            path: self.path.clone(),
            frames: summary.frames,
            bytes: summary.frame_bytes,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::parse;
    use crate::reader::read_frames;
    use crate::riff::FrameRate;
    use crate::test_support::{T0, jpeg};

    fn frame(seq: u64, jpeg: Vec<u8>) -> Frame {
        Frame {
            jpeg: Bytes::from(jpeg),
            width: 1,
            height: 1,
            seq,
            captured_at: T0 + Duration::from_millis(50 * seq),
        }
    }

    #[tokio::test]
    async fn frames_come_back_byte_identical_with_the_size_from_the_jpeg_and_the_measured_rate() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("new").join("rec.avi");
        let mut recorder = AviRecorder::new(&path, AviConfig::default());
        recorder.start().await.unwrap();
        let images: Vec<Vec<u8>> = (0..4).map(|i| jpeg(320, 240, 100 + i, i as u64)).collect();
        for (seq, image) in images.iter().enumerate() {
            recorder
                .write_frame(&frame(seq as u64, image.clone()))
                .await
                .unwrap();
        }
        let summary = recorder.finish().await.unwrap();
        assert_eq!(
            summary,
            RecordingSummary {
                path: path.clone(),
                frames: 4,
                bytes: images.iter().map(|j| j.len() as u64).sum(),
            }
        );
        let (info, frames) = read_frames(&path).unwrap();
        assert_eq!(frames, images);
        // Frame::width/height say 1x1: the header's size comes from the JPEG.
        assert_eq!((info.width, info.height), (320, 240));
        assert_eq!(info.frame_rate, FrameRate::per_second(20));
        let details = recorder.last_summary().unwrap();
        assert_eq!((details.riff_segments, details.dropped_frames), (1, 0));
        assert_eq!(details.file_bytes, std::fs::metadata(&path).unwrap().len());
    }

    #[tokio::test]
    async fn not_started_before_start_and_after_finish() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("rec.avi");
        let mut recorder = AviRecorder::new(&path, AviConfig::default());
        let err = recorder
            .write_frame(&frame(1, jpeg(8, 8, 1, 1)))
            .await
            .unwrap_err();
        assert!(matches!(err, RecorderError::NotStarted), "{err:?}");
        let err = recorder.finish().await.unwrap_err();
        assert!(matches!(err, RecorderError::NotStarted), "{err:?}");
        assert!(!path.exists(), "new() must not touch the disk");

        recorder.start().await.unwrap();
        recorder.finish().await.unwrap();
        let err = recorder
            .write_frame(&frame(1, jpeg(8, 8, 1, 1)))
            .await
            .unwrap_err();
        assert!(matches!(err, RecorderError::NotStarted), "{err:?}");
        let (info, frames) = read_frames(&path).unwrap();
        assert_eq!((info.frames, frames.len()), (0, 0));
    }

    #[tokio::test]
    async fn a_non_jpeg_is_rejected_without_writing_anything() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("rec.avi");
        let mut recorder = AviRecorder::new(&path, AviConfig::default());
        recorder.start().await.unwrap();
        recorder
            .write_frame(&frame(1, jpeg(8, 8, 5, 1)))
            .await
            .unwrap();
        let len = std::fs::metadata(&path).unwrap().len();

        let err = recorder
            .write_frame(&frame(2, b"Unknown command".to_vec()))
            .await
            .unwrap_err();
        assert!(matches!(err, RecorderError::NotJpeg { seq: 2 }), "{err:?}");
        // A JPEG without a start-of-frame marker cannot be played either.
        let err = recorder
            .write_frame(&frame(3, vec![0xFF, 0xD8, 0, 0xFF, 0xD9]))
            .await
            .unwrap_err();
        assert!(matches!(err, RecorderError::NotJpeg { seq: 3 }), "{err:?}");
        // A JPEG claiming a 65535x65535 picture: skipped, as one refused frame.
        let err = recorder
            .write_frame(&frame(5, jpeg(65535, 65535, 5, 5)))
            .await
            .unwrap_err();
        assert!(
            matches!(err, RecorderError::Picture { seq: 5, .. }) && err.is_refused_frame(),
            "{err:?}"
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), len);

        recorder
            .write_frame(&frame(4, jpeg(8, 8, 6, 4)))
            .await
            .unwrap();
        let summary = recorder.finish().await.unwrap();
        assert_eq!(summary.frames, 2);
        assert_eq!(
            read_frames(&path).unwrap().1,
            [jpeg(8, 8, 5, 1), jpeg(8, 8, 6, 4)]
        );
    }

    #[tokio::test]
    async fn another_picture_size_is_refused_with_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("rec.avi");
        let mut recorder = AviRecorder::new(&path, AviConfig::default());
        recorder.start().await.unwrap();
        recorder
            .write_frame(&frame(1, jpeg(64, 48, 5, 1)))
            .await
            .unwrap();
        let err = recorder
            .write_frame(&frame(2, jpeg(32, 24, 5, 2)))
            .await
            .unwrap_err();
        let RecorderError::Backend(source) = &err else {
            panic!("{err:?}");
        };
        let avi = source.downcast_ref::<AviRecordError>().unwrap();
        assert_eq!(avi.path, path);
        assert!(matches!(avi.source, AviError::SizeChanged { .. }));
        assert_eq!(recorder.finish().await.unwrap().frames, 1);
    }

    #[tokio::test]
    async fn an_existing_file_is_never_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("rec.avi");
        std::fs::write(&path, b"earlier recording").unwrap();
        let err = AviRecorder::new(&path, AviConfig::default())
            .start()
            .await
            .unwrap_err();
        let RecorderError::Io { path: p, source } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(p, &path);
        assert_eq!(source.kind(), io::ErrorKind::AlreadyExists);
        assert!(
            source.to_string().contains("choose another name"),
            "{source}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"earlier recording");
    }

    /// With a zero sync interval every frame brings the header up to date: a recording
    /// killed now has the right counts and rate in its header, though no index.
    #[tokio::test]
    async fn the_header_on_disk_follows_the_recording() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("rec.avi");
        let config = AviConfig {
            sync_interval: Duration::ZERO,
            ..AviConfig::default()
        };
        let mut recorder = AviRecorder::new(&path, config);
        recorder.start().await.unwrap();
        for seq in 0..3 {
            recorder
                .write_frame(&frame(seq, jpeg(16, 16, 9, seq)))
                .await
                .unwrap();
        }
        let mut file = std::fs::File::open(&path).unwrap();
        let layout = parse::scan(&mut file, &path).unwrap();
        let video = layout.header.unwrap().video.unwrap();
        assert_eq!(video.length, 3);
        assert_eq!(video.frame_rate, FrameRate::per_second(20));
        assert_eq!(layout.riffs[0].frames.len(), 3);
        drop(recorder);
        let report = crate::repair::repair(&path).unwrap();
        assert_eq!(report.frames, 3);
    }

    #[test]
    fn errors_say_what_failed_on_which_file_and_what_to_do() {
        let recorder = AviRecorder::new("/media/card/rec.avi", AviConfig::default());
        let full = AviError::Io {
            action: "writing a frame",
            source: io::Error::from(io::ErrorKind::StorageFull),
        };
        let unfinished = AviError::Unfinished {
            action: "writing the index",
            source: io::Error::from(io::ErrorKind::StorageFull),
        };
        let size = AviError::SizeChanged {
            expected: (640, 480),
            found: (1280, 720),
        };
        let chain = |e: RecorderError| {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            text
        };
        let text = [full, unfinished, size, AviError::Full, AviError::Broken]
            .into_iter()
            .map(|e| chain(recorder.error(e, 7)))
            .collect::<Vec<_>>()
            .join("\n");
        insta::assert_snapshot!(text);
    }
}
