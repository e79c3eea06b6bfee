//! [`Segmented`]: a recording split over numbered files (or folders) by duration or size, and
//! [`parse_size`] for the command line's `--segment-size`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use edgecam_core::frame::Frame;
use edgecam_core::recorder::{Recorder, RecorderError, RecordingSummary};
use edgecam_core::time::Timestamp;
use thiserror::Error;

use crate::recorder::AviRecordError;
use crate::writer::AviError;

/// When [`Segmented`] starts the next segment. With neither limit set, everything goes into
/// the first segment (still numbered).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SegmentLimits {
    /// A frame captured this long or longer after the segment's first frame starts a new
    /// segment (`--segment-minutes`).
    pub max_duration: Option<Duration>,
    /// A frame that would take the segment's JPEG bytes past this starts a new segment
    /// (`--segment-size`). The container adds a little: for AVI 16 to 33 bytes per frame and a
    /// 17 KB header. A single frame larger than the limit gets a segment of its own.
    pub max_bytes: Option<u64>,
}

/// The path of segment `number` (from 1) of a recording named `base`: `rec.avi` gives
/// `rec-001.avi`, `rec-002.avi`, ...; `frames` gives `frames-001`, .... Numbers past 999 take
/// more digits.
pub fn segment_path(base: &Path, number: u32) -> PathBuf {
    let stem = base.file_stem().unwrap_or_default().to_string_lossy();
    let name = match base.extension() {
        Some(ext) => format!("{stem}-{number:03}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{number:03}"),
    };
    base.with_file_name(name)
}

/// A recording split over several recorders, one per segment, each made by a factory
/// closure from the segment's path ([`segment_path`]). Works with any backend:
///
/// ```no_run
/// # use edgecam_recorder::*;
/// # use std::time::Duration;
/// let limits = SegmentLimits { max_duration: Some(Duration::from_secs(600)), max_bytes: None };
/// let avi = Segmented::new("rec.avi", limits, |path| AviRecorder::new(path, AviConfig::default()));
/// let jpegs = Segmented::new("frames", limits, JpegDirRecorder::new);
/// ```
///
/// - `start` makes and starts the first segment's recorder, so that a path that cannot be
///   written is reported at once.
/// - `write_frame` first finishes the current segment and starts the next when the frame is
///   past a [`SegmentLimits`] limit, then writes the frame there: no frame is dropped at a
///   segment boundary. A frame whose picture size differs from the segment's (an AVI
///   recorder refuses it with [`AviError::SizeChanged`]) also starts a new segment. When
///   finishing or starting a segment fails, the error is returned and the next frame tries a
///   new segment again.
/// - `finish` finishes the last segment. Its summary covers the whole recording: `path` is
///   the first segment's, `frames` and `bytes` are totals over all segments.
///   [`segments`](Self::segments) has each segment's own summary.
pub struct Segmented<R, F> {
    base: PathBuf,
    limits: SegmentLimits,
    make: F,
    started: bool,
    current: Option<Current<R>>,
    /// The number of the last segment made.
    number: u32,
    finished: Vec<RecordingSummary>,
}

#[derive(Debug)]
struct Current<R> {
    recorder: R,
    frames: u64,
    bytes: u64,
    first_at: Option<Timestamp>,
}

impl<R: fmt::Debug, F> fmt::Debug for Segmented<R, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segmented")
            .field("base", &self.base)
            .field("limits", &self.limits)
            .field("started", &self.started)
            .field("current", &self.current)
            .field("number", &self.number)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl<R, F> Segmented<R, F>
where
    R: Recorder,
    F: FnMut(PathBuf) -> R + Send,
{
    /// A segmented recording named `base` (see [`segment_path`]). Nothing is touched until
    /// `start`.
    pub fn new(base: impl Into<PathBuf>, limits: SegmentLimits, make: F) -> Self {
        Segmented {
            base: base.into(),
            limits,
            make,
            started: false,
            current: None,
            number: 0,
            finished: Vec::new(),
        }
    }

    /// The summaries of the segments finished so far, in order.
    pub fn segments(&self) -> &[RecordingSummary] {
        &self.finished
    }

    fn past_limits(&self, cur: &Current<R>, frame: &Frame) -> bool {
        if cur.frames == 0 {
            return false;
        }
        let too_long = match (self.limits.max_duration, cur.first_at) {
            (Some(max), Some(first)) => frame.captured_at.since(first) >= max,
            _ => false,
        };
        let too_big = self
            .limits
            .max_bytes
            .is_some_and(|max| cur.bytes + frame.jpeg.len() as u64 > max);
        too_long || too_big
    }

    async fn open_next(&mut self) -> Result<(), RecorderError> {
        let path = segment_path(&self.base, self.number + 1);
        let mut recorder = (self.make)(path);
        recorder.start().await?;
        self.number += 1;
        self.current = Some(Current {
            recorder,
            frames: 0,
            bytes: 0,
            first_at: None,
        });
        Ok(())
    }

    async fn finish_current(&mut self) -> Result<(), RecorderError> {
        if let Some(mut cur) = self.current.take() {
            let summary = cur.recorder.finish().await?;
            tracing::debug!(path = %summary.path.display(), frames = summary.frames, "segment finished");
            self.finished.push(summary);
        }
        Ok(())
    }

    async fn roll(&mut self) -> Result<(), RecorderError> {
        self.finish_current().await?;
        self.open_next().await
    }
}

/// Whether `e` is a recorder refusing a frame because its picture size changed.
fn is_size_change(e: &RecorderError) -> bool {
    let RecorderError::Backend(source) = e else {
        return false;
    };
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
    // Error chains are short; the bound keeps a cyclic one from looping.
    for _ in 0..8 {
        let Some(c) = cause else {
            return false;
        };
        let avi = c
            .downcast_ref::<AviRecordError>()
            .map(|e| &e.source)
            .or_else(|| c.downcast_ref::<AviError>());
        if matches!(avi, Some(AviError::SizeChanged { .. })) {
            return true;
        }
        cause = c.source();
    }
    false
}

#[async_trait::async_trait]
impl<R, F> Recorder for Segmented<R, F>
where
    R: Recorder,
    F: FnMut(PathBuf) -> R + Send,
{
    async fn start(&mut self) -> Result<(), RecorderError> {
        if self.started {
            return Err(RecorderError::Io {
                path: self.base.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "this recorder is already recording; finish it first",
                ),
            });
        }
        self.finished.clear();
        self.number = 0;
        self.open_next().await?;
        self.started = true;
        Ok(())
    }

    async fn write_frame(&mut self, frame: &Frame) -> Result<(), RecorderError> {
        if !self.started {
            return Err(RecorderError::NotStarted);
        }
        let roll = self
            .current
            .as_ref()
            .map(|cur| self.past_limits(cur, frame));
        match roll {
            None => self.open_next().await?,
            Some(true) => self.roll().await?,
            Some(false) => {}
        }
        let Some(cur) = self.current.as_mut() else {
            return Err(RecorderError::NotStarted);
        };
        match cur.recorder.write_frame(frame).await {
            Ok(()) => {}
            Err(e) if is_size_change(&e) && cur.frames > 0 => {
                tracing::info!("the picture size changed: starting a new segment");
                self.roll().await?;
                let Some(cur) = self.current.as_mut() else {
                    return Err(RecorderError::NotStarted);
                };
                cur.recorder.write_frame(frame).await?;
            }
            Err(e) => return Err(e),
        }
        if let Some(cur) = self.current.as_mut() {
            cur.frames += 1;
            cur.bytes += frame.jpeg.len() as u64;
            cur.first_at.get_or_insert(frame.captured_at);
        }
        Ok(())
    }

    async fn finish(&mut self) -> Result<RecordingSummary, RecorderError> {
        if !self.started {
            return Err(RecorderError::NotStarted);
        }
        self.started = false;
        self.finish_current().await?;
        Ok(RecordingSummary {
            path: self
                .finished
                .first()
                .map_or_else(|| segment_path(&self.base, 1), |s| s.path.clone()),
            frames: self.finished.iter().map(|s| s.frames).sum(),
            bytes: self.finished.iter().map(|s| s.bytes).sum(),
        })
    }
}

/// Why [`parse_size`] refused its input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ParseSizeError {
    #[error("no size given; {HOW}")]
    Empty,
    #[error("{input:?} is not a size; {HOW}")]
    NotANumber { input: String },
    #[error("{input:?} has an unknown unit {unit:?}; {HOW}")]
    UnknownUnit { input: String, unit: String },
    #[error("{input:?} is zero bytes; give a size of at least 1 byte")]
    Zero { input: String },
    #[error("{input:?} is more bytes than can be counted (the most is 16 EiB)")]
    TooLarge { input: String },
}

const HOW: &str = "write a number of bytes, optionally with a unit: K, M, G, T (powers of 1024, \
                   also KiB, MiB, ...) or KB, MB, GB, TB (powers of 1000), such as 500M, 1.5G or 1048576";

/// Parses a size such as `500M`, `2G`, `1.5G`, `700MB` or `1048576` into bytes.
///
/// Units are case-insensitive: `K`/`KiB` = 1024, `M`/`MiB` = 1024², `G`/`GiB`, `T`/`TiB`;
/// `KB` = 1000, `MB` = 1000², `GB`, `TB`; `B` or none = bytes. A fraction is allowed
/// (rounded down to a whole byte). Zero is refused: a size limit of nothing makes no sense.
pub fn parse_size(text: &str) -> Result<u64, ParseSizeError> {
    let input = text.trim();
    if input.is_empty() {
        return Err(ParseSizeError::Empty);
    }
    let not_a_number = || ParseSizeError::NotANumber {
        input: input.to_owned(),
    };
    let number_len = input
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(input.len());
    let (number, unit) = input.split_at(number_len);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return Err(not_a_number());
    }
    let unit = unit.trim();
    let multiplier: u128 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(ParseSizeError::UnknownUnit {
                input: input.to_owned(),
                unit: unit.to_owned(),
            });
        }
    };
    let too_large = || ParseSizeError::TooLarge {
        input: input.to_owned(),
    };
    // Digits past the 20th of a fraction cannot change a whole number of bytes below 2^64
    // times 2^40; ignoring them keeps the arithmetic in range.
    let fraction = &fraction[..fraction.len().min(20)];
    let digits = format!("{whole}{fraction}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > 38 {
        return Err(too_large());
    }
    let mantissa: u128 = if digits.is_empty() {
        0
    } else {
        digits.parse().map_err(|_| not_a_number())?
    };
    let scale = 10u128.pow(u32::try_from(fraction.len()).unwrap_or(20));
    let bytes = mantissa.checked_mul(multiplier).ok_or_else(too_large)? / scale;
    let bytes = u64::try_from(bytes).map_err(|_| too_large())?;
    if bytes == 0 {
        return Err(ParseSizeError::Zero {
            input: input.to_owned(),
        });
    }
    Ok(bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::jpeg_dir::JpegDirRecorder;
    use crate::reader::read_frames;
    use crate::recorder::AviRecorder;
    use crate::test_support::{T0, jpeg};
    use crate::writer::AviConfig;

    fn frame(seq: u64, millis: u64, jpeg: Vec<u8>) -> Frame {
        Frame {
            jpeg: Bytes::from(jpeg),
            width: 0,
            height: 0,
            seq,
            captured_at: T0 + Duration::from_millis(millis),
        }
    }

    fn avi(
        base: &Path,
        limits: SegmentLimits,
    ) -> Segmented<AviRecorder, impl FnMut(PathBuf) -> AviRecorder + Send + use<>> {
        Segmented::new(base, limits, |path| {
            AviRecorder::new(path, AviConfig::default())
        })
    }

    fn summary(path: PathBuf, frames: &[&Vec<u8>]) -> RecordingSummary {
        RecordingSummary {
            path,
            frames: frames.len() as u64,
            bytes: frames.iter().map(|f| f.len() as u64).sum(),
        }
    }

    #[test]
    fn segment_names_count_from_one_before_the_extension() {
        let name = |base: &str, n| segment_path(Path::new(base), n);
        assert_eq!(name("rec.avi", 1), Path::new("rec-001.avi"));
        assert_eq!(name("out/rec.avi", 2), Path::new("out/rec-002.avi"));
        assert_eq!(name("frames", 12), Path::new("frames-012"));
        assert_eq!(name("/x/a.b.avi", 1000), Path::new("/x/a.b-1000.avi"));
    }

    #[tokio::test]
    async fn rolls_on_size_without_losing_a_frame() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("rec.avi");
        // 100-byte-ish frames, at most 250 bytes of them per segment: two per segment.
        let images: Vec<Vec<u8>> = (0..5).map(|i| jpeg(64, 48, 90, i)).collect();
        let limits = SegmentLimits {
            max_duration: None,
            max_bytes: Some(250),
        };
        let mut rec = avi(&base, limits);
        rec.start().await.unwrap();
        for (i, image) in images.iter().enumerate() {
            rec.write_frame(&frame(i as u64, 40 * i as u64, image.clone()))
                .await
                .unwrap();
        }
        let total = rec.finish().await.unwrap();

        let names: Vec<PathBuf> = (1..=3)
            .map(|n| tmp.path().join(format!("rec-00{n}.avi")))
            .collect();
        assert_eq!(
            rec.segments(),
            [
                summary(names[0].clone(), &[&images[0], &images[1]]),
                summary(names[1].clone(), &[&images[2], &images[3]]),
                summary(names[2].clone(), &[&images[4]]),
            ]
        );
        assert_eq!(
            total,
            summary(names[0].clone(), &images.iter().collect::<Vec<_>>())
        );
        let read: Vec<Vec<u8>> = names
            .iter()
            .flat_map(|p| read_frames(p).unwrap().1)
            .collect();
        assert_eq!(read, images);
        assert!(!base.exists());
    }

    #[tokio::test]
    async fn rolls_on_duration_by_capture_time() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("rec.avi");
        let limits = SegmentLimits {
            max_duration: Some(Duration::from_secs(1)),
            max_bytes: None,
        };
        let mut rec = avi(&base, limits);
        rec.start().await.unwrap();
        // Every 400 ms: 0, 0.4, 0.8 | 1.2, 1.6, 2.0 | 2.4
        for i in 0..7 {
            rec.write_frame(&frame(i, 400 * i, jpeg(64, 48, 10, i)))
                .await
                .unwrap();
        }
        let total = rec.finish().await.unwrap();
        let counts: Vec<u64> = rec.segments().iter().map(|s| s.frames).collect();
        assert_eq!(counts, [3, 3, 1]);
        assert_eq!(total.frames, 7);
        let (info, _) = read_frames(tmp.path().join("rec-002.avi")).unwrap();
        assert_eq!(info.frame_rate.fps(), 2.5);
    }

    #[tokio::test]
    async fn a_new_picture_size_starts_a_new_avi_segment() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("cam.avi");
        let mut rec = avi(&base, SegmentLimits::default());
        rec.start().await.unwrap();
        let sizes = [(64, 48), (64, 48), (32, 24), (32, 24), (64, 48)];
        for (i, (w, h)) in sizes.into_iter().enumerate() {
            rec.write_frame(&frame(i as u64, 40 * i as u64, jpeg(w, h, 10, i as u64)))
                .await
                .unwrap();
        }
        rec.finish().await.unwrap();
        let found: Vec<(u32, u32, u64)> = (1..=3)
            .map(|n| {
                let (info, _) = read_frames(tmp.path().join(format!("cam-00{n}.avi"))).unwrap();
                (info.width, info.height, info.frames)
            })
            .collect();
        assert_eq!(found, [(64, 48, 2), (32, 24, 2), (64, 48, 1)]);
    }

    #[tokio::test]
    async fn works_with_jpeg_folders_too() {
        let tmp = tempfile::tempdir().unwrap();
        let limits = SegmentLimits {
            max_duration: None,
            max_bytes: Some(1),
        };
        let mut rec = Segmented::new(tmp.path().join("frames"), limits, JpegDirRecorder::new);
        rec.start().await.unwrap();
        for i in 0..2 {
            rec.write_frame(&frame(i, 0, jpeg(8, 8, 3, i)))
                .await
                .unwrap();
        }
        let total = rec.finish().await.unwrap();
        assert_eq!(total.path, tmp.path().join("frames-001"));
        assert_eq!(total.frames, 2);
        for n in 1..=2 {
            let file = tmp
                .path()
                .join(format!("frames-00{n}"))
                .join("frame_000001.jpg");
            assert_eq!(std::fs::read(file).unwrap(), jpeg(8, 8, 3, n - 1));
        }
    }

    #[tokio::test]
    async fn not_started_before_start_and_after_finish() {
        let tmp = tempfile::tempdir().unwrap();
        let mut rec = avi(&tmp.path().join("rec.avi"), SegmentLimits::default());
        let err = rec
            .write_frame(&frame(0, 0, jpeg(8, 8, 1, 0)))
            .await
            .unwrap_err();
        assert!(matches!(err, RecorderError::NotStarted), "{err:?}");
        assert!(matches!(rec.finish().await, Err(RecorderError::NotStarted)));
        rec.start().await.unwrap();
        let empty = rec.finish().await.unwrap();
        assert_eq!((empty.frames, empty.bytes), (0, 0));
        assert_eq!(empty.path, tmp.path().join("rec-001.avi"));
        let err = rec
            .write_frame(&frame(0, 0, jpeg(8, 8, 1, 0)))
            .await
            .unwrap_err();
        assert!(matches!(err, RecorderError::NotStarted), "{err:?}");
    }

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        let cases = [
            ("1048576", 1 << 20),
            ("500M", 500 << 20),
            ("2G", 2 << 30),
            ("2g", 2 << 30),
            ("1.5G", 3 << 29),
            (" 700 MB ", 700_000_000),
            ("4GiB", 4 << 30),
            ("1T", 1 << 40),
            ("10k", 10_240),
            ("0.5K", 512),
            ("12B", 12),
        ];
        for (text, bytes) in cases {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        assert!(matches!(
            parse_size("16777216T"),
            Err(ParseSizeError::TooLarge { .. })
        ));
        assert_eq!(parse_size("16777215T"), Ok(16_777_215 << 40));
    }

    #[test]
    fn size_errors_say_how_to_write_a_size() {
        let text = [
            "",
            "M",
            "12X",
            "1.2.3G",
            "0",
            "0.0001K",
            "99999999999T",
            "-5M",
        ]
        .iter()
        .map(|input| format!("{input:?}: {}", parse_size(input).unwrap_err()))
        .collect::<Vec<_>>()
        .join("\n");
        insta::assert_snapshot!(text);
    }
}
