//! [`V4l2Config`]: what a `v4l2:` spec asks for, checked when the camera is built so that
//! `open` fails only on what the device does.

use std::path::{Path, PathBuf};
use std::time::Duration;

use edgecam_core::camera::{CameraError, PixelFormat};
use edgecam_core::spec::{self, Spec};

/// No frame for this long is a disconnection, when `#timeout=` is not given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The most frames `#skip=` may drop.
pub const MAX_SKIP: u64 = 1000;

const OPTIONS: &[&str] = &["format", "size", "fps", "skip", "timeout"];
const ALLOWED: &str = "allowed: format=mjpeg|yuyv|nv12|nv21|i420|rgb24|bgr24, size=WxH, fps=N, \
     skip=FRAMES, timeout=SECONDS";

/// Which device node.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// `v4l2:/dev/videoN` (or `v4l2:N`).
    Path(PathBuf),
    /// `v4l2:NAME`: the node whose `/sys/class/video4linux/video*/name` is NAME, looked up at
    /// every open (node numbers change across boots and replugs; names do not).
    Name(String),
}

/// A parsed `v4l2:` spec.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct V4l2Config {
    pub source: Source,
    /// `None`: the preferred one the device offers (MJPEG, then NV12, NV21, YUYV, ...).
    pub format: Option<PixelFormat>,
    /// `None`: the largest the format offers up to 1920x1080.
    pub size: Option<(u32, u32)>,
    /// Asked of the driver (`VIDIOC_S_PARM`); `None` leaves its rate.
    pub fps: Option<f64>,
    /// Frames dropped after each stream-on (ISP sensors deliver green frames until their
    /// auto exposure settles).
    pub skip: u32,
    /// No frame for this long is a disconnection: the device is reopened.
    pub timeout: Duration,
}

impl V4l2Config {
    /// A config for `source` with every option at its default.
    pub fn new(source: Source) -> V4l2Config {
        V4l2Config {
            source,
            format: None,
            size: None,
            fps: None,
            skip: 0,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The config `spec` (of kind `v4l2`) describes; a [`CameraError::Spec`] saying what is
    /// allowed when it is not one.
    pub fn from_spec(spec: &Spec<'_>) -> Result<V4l2Config, CameraError> {
        V4l2Config::parse(spec).map_err(|reason| CameraError::Spec {
            spec: spec.text().to_owned(),
            reason,
        })
    }

    fn parse(spec: &Spec<'_>) -> Result<V4l2Config, String> {
        let source = match spec.source().map(str::trim) {
            Some(path) if path.starts_with('/') => Source::Path(PathBuf::from(path)),
            Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                Source::Path(Path::new("/dev").join(format!("video{n}")))
            }
            Some(name) if !name.is_empty() => Source::Name(name.to_owned()),
            _ => {
                return Err(
                    "v4l2 needs a device: v4l2:/dev/video0, v4l2:0 or v4l2:NAME \
                     (`edgecam cameras` lists them)"
                        .to_owned(),
                );
            }
        };
        spec.reject_unknown(OPTIONS, ALLOWED)?;
        let format = spec
            .value("format")?
            .map(str::parse::<PixelFormat>)
            .transpose()?;
        let size = spec.value("size")?.map(spec::parse_size).transpose()?;
        let fps = match spec.value("fps")? {
            // fps=0: the driver's own rate.
            Some(text) => Some(spec::parse_fps(text)?).filter(|fps| *fps > 0.0),
            None => None,
        };
        let skip = match spec.value("skip")? {
            Some(text) => {
                let n = spec::parse_count("skip", text)?;
                if n > MAX_SKIP {
                    return Err(format!("skip={text} is more than {MAX_SKIP} frames"));
                }
                n as u32
            }
            None => 0,
        };
        let timeout = match spec.value("timeout")? {
            Some(text) => {
                let seconds = spec::parse_decimal(text).unwrap_or(f64::NAN);
                if seconds > 0.0 && seconds <= 3600.0 {
                    Duration::from_secs_f64(seconds)
                } else {
                    return Err(format!(
                        "timeout={text} must be seconds like 5 or 0.5, more than 0 and at most 3600"
                    ));
                }
            }
            None => DEFAULT_TIMEOUT,
        };
        Ok(V4l2Config {
            source,
            format,
            size,
            fps,
            skip,
            timeout,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<V4l2Config, String> {
        V4l2Config::parse(&Spec::parse(text)?)
    }

    #[test]
    fn sources_and_options() {
        let config = parse("v4l2:/dev/video11#format=nv12&size=1280x720&fps=30&skip=10").unwrap();
        assert_eq!(config.source, Source::Path(PathBuf::from("/dev/video11")));
        assert_eq!(config.format, Some(PixelFormat::Nv12));
        assert_eq!(config.size, Some((1280, 720)));
        assert_eq!(config.fps, Some(30.0));
        assert_eq!(config.skip, 10);
        assert_eq!(config.timeout, DEFAULT_TIMEOUT);
        assert_eq!(
            parse("v4l2:rkisp_mainpath").unwrap().source,
            Source::Name("rkisp_mainpath".to_owned())
        );
        assert_eq!(
            parse("v4l2:2").unwrap().source,
            Source::Path(PathBuf::from("/dev/video2"))
        );
        let defaults = parse("v4l2:USB Camera#timeout=0.5&fps=0").unwrap();
        assert_eq!(defaults.source, Source::Name("USB Camera".to_owned()));
        assert_eq!(
            (defaults.format, defaults.size, defaults.fps),
            (None, None, None)
        );
        assert_eq!(defaults.timeout, Duration::from_millis(500));
    }

    #[test]
    fn errors_say_what_is_allowed() {
        for (text, says) in [
            ("v4l2", "v4l2 needs a device"),
            ("v4l2:", "v4l2 needs a device"),
            (
                "v4l2:0#bogus=1",
                "unknown option \"bogus\"; allowed: format=",
            ),
            ("v4l2:0#format=h264", "use one of mjpeg"),
            ("v4l2:0#size=big", "is not WIDTHxHEIGHT"),
            ("v4l2:0#skip=-1", "whole number"),
            ("v4l2:0#skip=5000", "more than 1000"),
            ("v4l2:0#timeout=0", "more than 0"),
            ("v4l2:0#fps=fast", "fps \"fast\""),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(says), "{text:?}: {err}");
        }
    }
}
