//! A folder of numbered JPEG files, one per frame.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};

use edgecam_core::frame::Frame;
use edgecam_core::jpeg::is_jpeg;
use edgecam_core::recorder::{Recorder, RecorderError, RecordingSummary};
use tokio::fs;

/// Writes each frame's JPEG bytes, unchanged, to `frame_000001.jpg`, `frame_000002.jpg`, ...
/// in one folder, numbered in the order the frames arrive (six digits at least, more past
/// 999999).
///
/// - `start` creates the folder and its parents when missing, and refuses a folder that already
///   holds `frame_*.jpg` files, so an earlier recording is never overwritten.
/// - `write_frame` rejects a payload that is not a whole JPEG with [`RecorderError::NotJpeg`];
///   nothing is written and the number is not used up. Each file is written under a hidden
///   temporary name (`.frame_000001.jpg.part`) and renamed once complete, so a recorder that
///   stops halfway (crash, kill, full disk) never leaves a truncated `frame_*.jpg`. Files are
///   not fsynced: after a power cut the last frames may be missing.
/// - `finish` says how many frames and bytes the folder holds; after it, `write_frame` returns
///   [`RecorderError::NotStarted`] until `start` is called again.
#[derive(Debug)]
pub struct JpegDirRecorder {
    dir: PathBuf,
    state: State,
}

#[derive(Debug)]
enum State {
    /// Before `start`, or after `finish`.
    Idle,
    /// `frames` files written so far (the next one gets number `frames + 1`), `bytes` in all.
    Recording { frames: u64, bytes: u64 },
}

impl JpegDirRecorder {
    /// A recorder for the folder `dir`. Nothing is touched until `start`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        JpegDirRecorder {
            dir: dir.into(),
            state: State::Idle,
        }
    }
}

/// The file name of frame number `number` (counting from 1).
fn frame_name(number: u64) -> String {
    format!("frame_{number:06}.jpg")
}

/// Whether `name` matches `frame_*.jpg`.
fn is_frame_name(name: &OsStr) -> bool {
    let name = name.as_encoded_bytes();
    name.starts_with(b"frame_") && name.ends_with(b".jpg")
}

/// The name of some `frame_*.jpg` entry in `dir`, if there is one.
async fn existing_frame(dir: &Path) -> io::Result<Option<String>> {
    let mut entries = fs::read_dir(dir).await?;
    while let Some(entry) = entries.next_entry().await? {
        let name = entry.file_name();
        if is_frame_name(&name) {
            return Ok(Some(name.to_string_lossy().into_owned()));
        }
    }
    Ok(None)
}

#[async_trait::async_trait]
impl Recorder for JpegDirRecorder {
    async fn start(&mut self) -> Result<(), RecorderError> {
        let io_error = |source| RecorderError::Io {
            path: self.dir.clone(),
            source,
        };
        fs::create_dir_all(&self.dir).await.map_err(io_error)?;
        if let Some(name) = existing_frame(&self.dir).await.map_err(io_error)? {
            return Err(io_error(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} already holds frame_*.jpg files (such as {name}); choose an empty \
                     folder, so that no earlier recording is overwritten",
                    self.dir.display()
                ),
            )));
        }
        self.state = State::Recording {
            frames: 0,
            bytes: 0,
        };
        Ok(())
    }

    async fn write_frame(&mut self, frame: &Frame) -> Result<(), RecorderError> {
        let State::Recording { frames, bytes } = &mut self.state else {
            return Err(RecorderError::NotStarted);
        };
        if !is_jpeg(&frame.jpeg) {
            return Err(RecorderError::NotJpeg { seq: frame.seq });
        }
        let number = *frames + 1;
        let name = frame_name(number);
        let part = self.dir.join(format!(".{name}.part"));
        let path = self.dir.join(name);
        // On failure the number is not used up: the next frame tries it again, and the
        // half-written `.part` is removed (best effort: the write error is the one to report).
        if let Err(source) = fs::write(&part, &frame.jpeg).await {
            let _ = fs::remove_file(&part).await;
            return Err(RecorderError::Io { path: part, source });
        }
        if let Err(source) = fs::rename(&part, &path).await {
            let _ = fs::remove_file(&part).await;
            return Err(RecorderError::Io { path, source });
        }
        *frames = number;
        *bytes += frame.jpeg.len() as u64;
        Ok(())
    }

    async fn finish(&mut self) -> Result<RecordingSummary, RecorderError> {
        let State::Recording { frames, bytes } = self.state else {
            return Err(RecorderError::NotStarted);
        };
        self.state = State::Idle;
        Ok(RecordingSummary {
            path: self.dir.clone(),
            frames,
            bytes,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use edgecam_core::time::Timestamp;

    /// The smallest byte string `is_jpeg` accepts around `body`: SOI, `body`, EOI.
    fn jpeg(body: &[u8]) -> Vec<u8> {
        let mut j = vec![0xFF, 0xD8];
        j.extend_from_slice(body);
        j.extend_from_slice(&[0xFF, 0xD9]);
        j
    }

    fn frame(seq: u64, jpeg: Vec<u8>) -> Frame {
        Frame {
            jpeg: Bytes::from(jpeg),
            width: 640,
            height: 480,
            seq,
            captured_at: Timestamp(1_700_000_000_000_000 + seq),
        }
    }

    /// Every name in `dir`, sorted.
    async fn listing(dir: &Path) -> Vec<String> {
        let mut names = Vec::new();
        let mut entries = fs::read_dir(dir).await.unwrap();
        while let Some(entry) = entries.next_entry().await.unwrap() {
            names.push(entry.file_name().into_string().unwrap());
        }
        names.sort();
        names
    }

    #[tokio::test]
    async fn frames_come_back_byte_identical_in_order_with_no_part_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a").join("b");
        let mut recorder = JpegDirRecorder::new(&dir);
        recorder.start().await.unwrap();
        let images = [jpeg(b"first"), jpeg(b"second frame"), jpeg(&[0xFF; 300])];
        // Sequence numbers with a gap: files are numbered by arrival, not by `seq`.
        for (seq, image) in [10, 11, 15].into_iter().zip(&images) {
            recorder
                .write_frame(&frame(seq, image.clone()))
                .await
                .unwrap();
        }
        let summary = recorder.finish().await.unwrap();

        assert_eq!(
            listing(&dir).await,
            ["frame_000001.jpg", "frame_000002.jpg", "frame_000003.jpg"]
        );
        for (number, image) in (1..).zip(&images) {
            let written = fs::read(dir.join(frame_name(number))).await.unwrap();
            assert_eq!(&written, image, "frame {number}");
        }
        let total: usize = images.iter().map(Vec::len).sum();
        assert_eq!(
            summary,
            RecordingSummary {
                path: dir,
                frames: 3,
                bytes: total as u64,
            }
        );
    }

    #[test]
    fn names_have_six_digits_at_least_and_grow_past_them() {
        assert_eq!(frame_name(1), "frame_000001.jpg");
        assert_eq!(frame_name(999_999), "frame_999999.jpg");
        assert_eq!(frame_name(1_000_000), "frame_1000000.jpg");
        assert!(is_frame_name(OsStr::new("frame_1000000.jpg")));
        assert!(!is_frame_name(OsStr::new(".frame_000001.jpg.part")));
        assert!(!is_frame_name(OsStr::new("notes.jpg")));
    }

    #[tokio::test]
    async fn a_non_jpeg_is_rejected_not_written_and_uses_no_number() {
        let tmp = tempfile::tempdir().unwrap();
        let mut recorder = JpegDirRecorder::new(tmp.path());
        recorder.start().await.unwrap();
        recorder.write_frame(&frame(1, jpeg(b"one"))).await.unwrap();

        let err = recorder
            .write_frame(&frame(2, b"Unknown command".to_vec()))
            .await
            .unwrap_err();
        assert!(matches!(err, RecorderError::NotJpeg { seq: 2 }), "{err:?}");

        recorder
            .write_frame(&frame(3, jpeg(b"three")))
            .await
            .unwrap();
        let summary = recorder.finish().await.unwrap();
        assert_eq!(
            listing(tmp.path()).await,
            ["frame_000001.jpg", "frame_000002.jpg"]
        );
        assert_eq!(
            fs::read(tmp.path().join("frame_000002.jpg")).await.unwrap(),
            jpeg(b"three")
        );
        assert_eq!((summary.frames, summary.bytes), (2, 7 + 9));
    }

    #[tokio::test]
    async fn refuses_a_folder_that_already_holds_frames_and_leaves_them_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let old = tmp.path().join("frame_000001.jpg");
        fs::write(&old, b"earlier recording").await.unwrap();

        let mut recorder = JpegDirRecorder::new(tmp.path());
        let err = recorder.start().await.unwrap_err();
        let RecorderError::Io { path, source } = &err else {
            panic!("expected an I/O error, got {err:?}");
        };
        assert_eq!(path, tmp.path());
        assert_eq!(source.kind(), io::ErrorKind::AlreadyExists);
        assert!(
            source.to_string().contains("choose an empty folder"),
            "{source}"
        );

        // Still not started: nothing can be written over the old recording.
        let err = recorder
            .write_frame(&frame(1, jpeg(b"new")))
            .await
            .unwrap_err();
        assert!(matches!(err, RecorderError::NotStarted), "{err:?}");
        assert_eq!(fs::read(&old).await.unwrap(), b"earlier recording");
    }

    #[tokio::test]
    async fn a_second_recording_into_the_same_folder_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let mut first = JpegDirRecorder::new(tmp.path());
        first.start().await.unwrap();
        first.write_frame(&frame(1, jpeg(b"kept"))).await.unwrap();
        first.finish().await.unwrap();

        let err = JpegDirRecorder::new(tmp.path()).start().await.unwrap_err();
        assert!(
            matches!(&err, RecorderError::Io { source, .. } if source.kind() == io::ErrorKind::AlreadyExists),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_folder_with_other_files_is_accepted() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("notes.txt"), b"hi")
            .await
            .unwrap();
        let mut recorder = JpegDirRecorder::new(tmp.path());
        recorder.start().await.unwrap();
        recorder.write_frame(&frame(1, jpeg(b"x"))).await.unwrap();
        recorder.finish().await.unwrap();
        assert_eq!(listing(tmp.path()).await, ["frame_000001.jpg", "notes.txt"]);
    }

    #[tokio::test]
    async fn not_started_before_start_and_after_finish() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("rec");
        let mut recorder = JpegDirRecorder::new(&dir);

        let err = recorder
            .write_frame(&frame(1, jpeg(b"a")))
            .await
            .unwrap_err();
        assert!(matches!(err, RecorderError::NotStarted), "{err:?}");
        let err = recorder.finish().await.unwrap_err();
        assert!(matches!(err, RecorderError::NotStarted), "{err:?}");
        assert!(
            !fs::try_exists(&dir).await.unwrap(),
            "new() must not touch the disk"
        );

        recorder.start().await.unwrap();
        recorder.write_frame(&frame(1, jpeg(b"a"))).await.unwrap();
        recorder.finish().await.unwrap();

        let err = recorder
            .write_frame(&frame(2, jpeg(b"b")))
            .await
            .unwrap_err();
        assert!(matches!(err, RecorderError::NotStarted), "{err:?}");
        let err = recorder.finish().await.unwrap_err();
        assert!(matches!(err, RecorderError::NotStarted), "{err:?}");
        assert_eq!(listing(&dir).await, ["frame_000001.jpg"]);
    }
}
