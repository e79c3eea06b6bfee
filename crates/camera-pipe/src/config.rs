//! [`PipeConfig`]: what an `exec:` or `pipe:` spec asks for, checked once when the camera is
//! built so that `open` only fails on what the world does.

use std::path::PathBuf;
use std::time::Duration;

use edgecam_core::camera::{CameraError, PixelFormat};
use edgecam_core::spec::{self, Spec};

/// The stall timeout when `#timeout=` is not given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest MJPEG frame accepted when `#max_frame=` is not given: 16 MiB.
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;
/// The pace a regular file is read at when `#fps=` is not given.
pub const DEFAULT_FILE_FPS: f64 = 30.0;
/// The longest stall timeout a spec may ask for: an hour.
pub const MAX_TIMEOUT_SECS: f64 = 3600.0;

const OPTIONS: &[&str] = &["format", "size", "fps", "timeout", "max_frame"];
const ALLOWED: &str = "allowed: format=mjpeg|yuyv|nv12|nv21|i420|rgb24|bgr24, size=WxH (raw formats), \
     fps=N, timeout=SECONDS, max_frame=BYTES (mjpeg)";

/// Where the bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// `exec:COMMAND`: a child process's standard output; `program` is looked up on `PATH`.
    Exec { program: String, args: Vec<String> },
    /// `pipe:-`: our own standard input, read once.
    Stdin,
    /// `pipe:PATH`: a FIFO (each writer in turn) or a regular file (read at `fps`).
    Path(PathBuf),
}

/// A parsed `exec:` / `pipe:` spec.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PipeConfig {
    pub source: Source,
    /// [`PixelFormat::Jpeg`] for a stream of JPEGs (`format=mjpeg`, the default).
    pub format: PixelFormat,
    /// The frame size of a raw format; `None` for MJPEG, whose frames say their own size.
    pub size: Option<(u32, u32)>,
    /// The declared frame rate (reported in the capabilities); `None` when not given.
    pub fps: Option<f64>,
    /// A source that delivers no frame for this long is disconnected.
    pub timeout: Duration,
    /// The largest JPEG accepted; larger ones are counted and skipped.
    pub max_frame: usize,
}

impl PipeConfig {
    /// The config `spec` (of kind `exec` or `pipe`) describes; a [`CameraError::Spec`] saying
    /// what is allowed when it is not one.
    pub fn from_spec(spec: &Spec<'_>) -> Result<PipeConfig, CameraError> {
        PipeConfig::parse(spec).map_err(|reason| CameraError::Spec {
            spec: spec.text().to_owned(),
            reason,
        })
    }

    fn parse(spec: &Spec<'_>) -> Result<PipeConfig, String> {
        let source = match spec.kind() {
            "exec" => {
                let text = spec.source().unwrap_or("").trim();
                let words = shell_words::split(text).map_err(|e| {
                    format!("cannot split the command {text:?} into words ({e}); check its quotes")
                })?;
                let mut words = words.into_iter();
                match words.next() {
                    Some(program) if !program.is_empty() => Source::Exec {
                        program,
                        args: words.collect(),
                    },
                    _ => {
                        return Err(
                            "the command is empty; write exec:COMMAND ARGS..., e.g. exec:ffmpeg -f lavfi -i testsrc2 -f mjpeg -"
                                .to_owned(),
                        );
                    }
                }
            }
            "pipe" => match spec.source() {
                Some("-") => Source::Stdin,
                Some(path) if !path.is_empty() => Source::Path(PathBuf::from(path)),
                _ => {
                    return Err(
                        "pipe needs a source: pipe:- for standard input, or pipe:PATH for a FIFO or a file"
                            .to_owned(),
                    );
                }
            },
            other => return Err(format!("{other:?} is not a pipe camera (exec or pipe)")),
        };
        spec.reject_unknown(OPTIONS, ALLOWED)?;
        let format = match spec.value("format")? {
            Some(name) => name.parse::<PixelFormat>()?,
            None => PixelFormat::Jpeg,
        };
        let size = spec.value("size")?.map(spec::parse_size).transpose()?;
        let size = match (format.is_jpeg(), size) {
            (true, Some(_)) => {
                return Err(
                    "size= is for raw formats: MJPEG frames carry their own size".to_owned(),
                );
            }
            (true, None) => None,
            (false, Some(size)) => {
                if format.frame_len(size.0, size.1).is_none() {
                    return Err(format!(
                        "a {}x{} {format} frame does not fit in memory",
                        size.0, size.1
                    ));
                }
                Some(size)
            }
            (false, None) => {
                return Err(format!(
                    "format={format} needs the frame size: add &size=WxH, e.g. #format={format}&size=1280x720"
                ));
            }
        };
        let fps = spec.value("fps")?.map(spec::parse_fps).transpose()?;
        let timeout = match spec.value("timeout")? {
            Some(text) => parse_seconds(text)?,
            None => DEFAULT_TIMEOUT,
        };
        let max_frame = match spec.value("max_frame")? {
            Some(_) if !format.is_jpeg() => {
                return Err(
                    "max_frame= is for MJPEG: a raw frame's length follows from its size"
                        .to_owned(),
                );
            }
            Some(text) => {
                let n = spec::parse_count("max_frame", text)?;
                match usize::try_from(n) {
                    Ok(n) if n >= 64 => n,
                    _ => {
                        return Err(format!(
                            "max_frame={text} must be from 64 bytes to what memory holds"
                        ));
                    }
                }
            }
            None => DEFAULT_MAX_FRAME,
        };
        Ok(PipeConfig {
            source,
            format,
            size,
            fps,
            timeout,
            max_frame,
        })
    }

    /// The bytes of one raw frame; `None` for MJPEG.
    pub fn frame_len(&self) -> Option<usize> {
        let (width, height) = self.size?;
        self.format.frame_len(width, height)
    }
}

/// Seconds as digits with an optional fraction, more than 0 and at most an hour.
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds = spec::parse_decimal(text).unwrap_or(f64::NAN);
    if seconds > 0.0 && seconds <= MAX_TIMEOUT_SECS {
        Ok(Duration::from_secs_f64(seconds))
    } else {
        Err(format!(
            "timeout={text} must be seconds like 5 or 0.5, more than 0 and at most {MAX_TIMEOUT_SECS}"
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PipeConfig, String> {
        PipeConfig::parse(&Spec::parse(text)?)
    }

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_ffmpeg_examples() {
        let mjpeg = parse(
            "exec:ffmpeg -loglevel error -re -f lavfi -i testsrc2=size=640x480:rate=30 -f mjpeg -",
        )
        .unwrap();
        assert_eq!(
            mjpeg.source,
            Source::Exec {
                program: "ffmpeg".to_owned(),
                args: words(&[
                    "-loglevel",
                    "error",
                    "-re",
                    "-f",
                    "lavfi",
                    "-i",
                    "testsrc2=size=640x480:rate=30",
                    "-f",
                    "mjpeg",
                    "-"
                ]),
            }
        );
        assert_eq!(mjpeg.format, PixelFormat::Jpeg);
        assert_eq!(mjpeg.size, None);
        assert_eq!(mjpeg.fps, None);
        assert_eq!(mjpeg.timeout, DEFAULT_TIMEOUT);
        assert_eq!(mjpeg.max_frame, DEFAULT_MAX_FRAME);

        let nv12 = parse(
            "exec:ffmpeg -loglevel error -re -f lavfi -i testsrc2=size=1280x720:rate=30 -pix_fmt nv12 -f rawvideo -#format=nv12&size=1280x720",
        )
        .unwrap();
        assert_eq!(nv12.format, PixelFormat::Nv12);
        assert_eq!(nv12.size, Some((1280, 720)));
        assert_eq!(nv12.frame_len(), Some(1280 * 720 * 3 / 2));
        let Source::Exec { args, .. } = &nv12.source else {
            panic!("{nv12:?}")
        };
        assert_eq!(args.last().map(String::as_str), Some("-"));
    }

    #[test]
    fn the_board_examples() {
        let pi = parse("exec:rpicam-vid -t 0 --codec mjpeg --flush -o -").unwrap();
        assert!(matches!(pi.source, Source::Exec { ref program, .. } if program == "rpicam-vid"));
        let rv = parse(
            "exec:v4l2-ctl -d /dev/video11 --set-fmt-video=width=1280,height=720,pixelformat=NV12 --stream-mmap --stream-to=-#format=nv12&size=1280x720",
        )
        .unwrap();
        assert_eq!(rv.format, PixelFormat::Nv12);
        assert_eq!(rv.size, Some((1280, 720)));
    }

    #[test]
    fn quotes_are_split_as_a_shell_would_without_a_shell() {
        let config = parse("exec:sh -c 'printf \"a b\"; exit 3' x#timeout=0.5&fps=7.5").unwrap();
        assert_eq!(
            config.source,
            Source::Exec {
                program: "sh".to_owned(),
                args: words(&["-c", "printf \"a b\"; exit 3", "x"]),
            }
        );
        assert_eq!(config.timeout, Duration::from_millis(500));
        assert_eq!(config.fps, Some(7.5));
    }

    #[test]
    fn pipe_sources() {
        assert_eq!(parse("pipe:-").unwrap().source, Source::Stdin);
        let fifo = parse("pipe:/tmp/cam.fifo#format=yuyv&size=640x480&fps=15").unwrap();
        assert_eq!(fifo.source, Source::Path(PathBuf::from("/tmp/cam.fifo")));
        assert_eq!(fifo.format, PixelFormat::Yuyv);
        assert_eq!(fifo.fps, Some(15.0));
        assert_eq!(
            parse("pipe:x.mjpeg#max_frame=1000").unwrap().max_frame,
            1000
        );
    }

    #[test]
    fn errors_say_what_is_allowed() {
        for (text, says) in [
            ("exec:", "the command is empty"),
            ("exec", "the command is empty"),
            ("exec:   ", "the command is empty"),
            ("exec:''", "the command is empty"),
            ("exec:sh -c 'unclosed", "check its quotes"),
            ("pipe", "pipe:- for standard input"),
            ("pipe:", "pipe:- for standard input"),
            (
                "exec:x#bogus=1",
                "unknown option \"bogus\"; allowed: format=mjpeg|yuyv",
            ),
            ("exec:x#format=nv12", "needs the frame size: add &size=WxH"),
            ("exec:x#format=rgb565&size=2x2", "use one of mjpeg, yuyv"),
            ("exec:x#size=640x480", "size= is for raw formats"),
            ("exec:x#format=nv12&size=640", "is not WIDTHxHEIGHT"),
            ("exec:x#fps=fast", "fps \"fast\""),
            ("exec:x#timeout=0", "more than 0"),
            ("exec:x#timeout=-1", "more than 0"),
            ("exec:x#timeout", "needs a value"),
            ("exec:x#max_frame=10", "from 64 bytes"),
            ("exec:x#max_frame=big", "whole number"),
            (
                "exec:x#format=i420&size=4x4&max_frame=100",
                "max_frame= is for MJPEG",
            ),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(says), "{text:?}: {err}");
        }
    }

    #[test]
    fn spec_errors_name_the_spec() {
        let spec = Spec::parse("exec:x#format=nv12").unwrap();
        match PipeConfig::from_spec(&spec) {
            Err(CameraError::Spec { spec, reason }) => {
                assert_eq!(spec, "exec:x#format=nv12");
                assert!(reason.contains("size"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }
}
