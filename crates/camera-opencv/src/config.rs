//! [`OpenCvConfig`]: what an [`OpenCvCamera`](crate::OpenCvCamera) opens and how, parsed from an
//! `opencv[:SOURCE][#OPTIONS]` spec through the shared [`Spec`] grammar (the grammar is in the
//! crate docs).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use edgecam_core::camera::CameraError;
use edgecam_core::spec::{MAX_FPS, Spec, parse_fps, parse_size};

const MAX_INDEX: u32 = 1023;

const GRAMMAR: &str = "expected opencv[:SOURCE][#OPTION[&OPTION...]], where SOURCE is a camera \
     index (opencv:0), a device (opencv:/dev/video2), a video file (opencv:clip.mp4) or a URL \
     (opencv:rtsp://host/stream)";
const KNOWN: [&str; 4] = ["size", "fps", "mjpeg", "backend"];
const OPTIONS: &str = "allowed options are size=WIDTHxHEIGHT, fps=N, mjpeg=auto|on|off and \
     backend=any|v4l2|ffmpeg|gstreamer";

/// What an [`OpenCvCamera`](crate::OpenCvCamera) opens, and how.
///
/// Always valid: [`FromStr`] and [`from_spec`](OpenCvConfig::from_spec) check every field.
/// [`Display`](fmt::Display) gives the canonical spec (options in a fixed order, defaults left
/// out), which parses back to an equal config, except that a password in a URL is shown as
/// `***`.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenCvConfig {
    source: Source,
    size: Option<(u32, u32)>,
    fps: Option<f64>,
    mjpeg: Mjpeg,
    backend: Backend,
}

/// Where the frames come from. A source never holds a `#`: the options start there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `opencv:0`: a camera by number (on Linux, V4L2's `/dev/video0`).
    Index(u32),
    /// `opencv:/dev/video2`: a device node, any path under `/dev/`.
    Device(PathBuf),
    /// `opencv:clip.mp4`: a video file, played in a loop at its own frame rate (or `fps`).
    File(PathBuf),
    /// `opencv:rtsp://host/stream?channel=1`: anything with `://`, query and all, opened by
    /// OpenCV's FFmpeg or GStreamer backend.
    Url(String),
}

/// `mjpeg=`: whether frames the source already delivers as JPEG are passed through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mjpeg {
    /// Ask a camera for MJPEG and pass its JPEGs through when it delivers them (a file or
    /// stream: when it is MJPEG); decode and hand on BGR pixels otherwise.
    #[default]
    Auto,
    /// Pass JPEGs through or fail to open.
    On,
    /// Never: always decode and hand on BGR pixels.
    Off,
}

/// `backend=`: which OpenCV video I/O backend opens the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// V4L2 for indexes and devices on Linux (the backend that can pass MJPEG through),
    /// OpenCV's own choice for anything else.
    #[default]
    Auto,
    Any,
    V4l2,
    Ffmpeg,
    Gstreamer,
}

impl OpenCvConfig {
    /// `opencv:SOURCE` with every option at its default.
    pub fn new(source: Source) -> OpenCvConfig {
        OpenCvConfig {
            source,
            size: None,
            fps: None,
            mjpeg: Mjpeg::default(),
            backend: Backend::default(),
        }
    }

    /// The config a parsed spec of kind `opencv` names; a bad one is [`CameraError::Spec`].
    pub fn from_spec(spec: &Spec<'_>) -> Result<OpenCvConfig, CameraError> {
        parse(spec).map_err(|reason| CameraError::Spec {
            spec: spec.text().to_owned(),
            reason,
        })
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The frame size to ask the camera for; `None` keeps the camera's own.
    pub fn size(&self) -> Option<(u32, u32)> {
        self.size
    }

    /// For a camera or stream, the frame rate to ask for; for a file, the pace to play it at
    /// instead of its own. `None`: the source's own.
    pub fn fps(&self) -> Option<f64> {
        self.fps
    }

    pub fn mjpeg(&self) -> Mjpeg {
        self.mjpeg
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether the source is played in a loop and paced by the camera itself.
    pub(crate) fn is_file(&self) -> bool {
        matches!(self.source, Source::File(_))
    }
}

impl Source {
    /// The source as written in a spec, with a URL's password hidden.
    fn display(&self) -> String {
        match self {
            Source::Index(index) => index.to_string(),
            Source::Device(path) | Source::File(path) => path.display().to_string(),
            Source::Url(url) => redact_password(url),
        }
    }
}

/// `rtsp://user:secret@host/...` as `rtsp://user:***@host/...`, so that logs never show it.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

impl Mjpeg {
    fn as_str(self) -> &'static str {
        match self {
            Mjpeg::Auto => "auto",
            Mjpeg::On => "on",
            Mjpeg::Off => "off",
        }
    }
}

impl Backend {
    fn as_str(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Any => "any",
            Backend::V4l2 => "v4l2",
            Backend::Ffmpeg => "ffmpeg",
            Backend::Gstreamer => "gstreamer",
        }
    }
}

impl fmt::Display for OpenCvConfig {
    /// `opencv:SOURCE`, then `#` and the options that differ from their defaults in the order
    /// size, fps, mjpeg, backend.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "opencv:{}", self.source.display())?;
        let mut options = Vec::new();
        if let Some((width, height)) = self.size {
            options.push(format!("size={width}x{height}"));
        }
        if let Some(fps) = self.fps {
            // f64's Display is the shortest text that parses back to the same value.
            options.push(format!("fps={fps}"));
        }
        if self.mjpeg != Mjpeg::default() {
            options.push(format!("mjpeg={}", self.mjpeg.as_str()));
        }
        if self.backend != Backend::default() {
            options.push(format!("backend={}", self.backend.as_str()));
        }
        if !options.is_empty() {
            write!(f, "#{}", options.join("&"))?;
        }
        Ok(())
    }
}

impl FromStr for OpenCvConfig {
    type Err = CameraError;

    /// Parses `opencv` or `opencv:SOURCE`, each optionally followed by `#OPTION&OPTION...`.
    fn from_str(spec: &str) -> Result<OpenCvConfig, CameraError> {
        Spec::parse(spec)
            .and_then(|parsed| parse(&parsed))
            .map_err(|reason| CameraError::Spec {
                spec: spec.to_owned(),
                reason,
            })
    }
}

fn parse(spec: &Spec<'_>) -> Result<OpenCvConfig, String> {
    if spec.kind() != "opencv" {
        return Err(format!("not an OpenCV camera spec; {GRAMMAR}"));
    }
    let source = match spec.source() {
        None => Source::Index(0),
        Some("") => return Err(format!("no source after \"opencv:\"; {GRAMMAR}")),
        Some(text) => parse_source(text)?,
    };
    spec.reject_unknown(&KNOWN, OPTIONS)?;
    let mut config = OpenCvConfig::new(source);
    config.size = spec.value("size")?.map(parse_size).transpose()?;
    if let Some(text) = spec.value("fps")? {
        let fps = parse_fps(text)?;
        if fps <= 0.0 {
            return Err(format!(
                "fps=0: use a rate above 0 and at most {MAX_FPS}, or leave fps out for the \
                 source's own"
            ));
        }
        config.fps = Some(fps);
    }
    if let Some(value) = spec.value("mjpeg")? {
        config.mjpeg = match value {
            "auto" => Mjpeg::Auto,
            "on" => Mjpeg::On,
            "off" => Mjpeg::Off,
            _ => return Err(format!("mjpeg={value}: use mjpeg=auto, on or off")),
        };
    }
    if let Some(value) = spec.value("backend")? {
        config.backend = match value {
            "any" => Backend::Any,
            "v4l2" => Backend::V4l2,
            "ffmpeg" => Backend::Ffmpeg,
            "gstreamer" => Backend::Gstreamer,
            _ => {
                return Err(format!(
                    "backend={value}: use backend=any, v4l2, ffmpeg or gstreamer"
                ));
            }
        };
    }
    if config.mjpeg == Mjpeg::On && config.backend == Backend::Gstreamer {
        return Err(
            "mjpeg=on needs the v4l2 or ffmpeg backend: OpenCV's GStreamer backend \
                    cannot hand out undecoded frames"
                .to_owned(),
        );
    }
    Ok(config)
}

fn parse_source(text: &str) -> Result<Source, String> {
    if let Some((scheme, _)) = text.split_once("://") {
        let valid_scheme = !scheme.is_empty()
            && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
        if !valid_scheme {
            return Err(format!(
                "{scheme:?} is not a URL scheme; a URL looks like rtsp://host:554/stream"
            ));
        }
        // A URL's own `?query` is part of it: the options start at '#'.
        return Ok(Source::Url(text.to_owned()));
    }
    if let Some((before, after)) = text.split_once('?') {
        // `opencv:0?fps=30`, the old grammar: options now follow '#'. A file whose name has
        // a '?' not followed by one of our options is still a file.
        let key = after.split(['=', '&']).next().unwrap_or_default();
        if KNOWN.contains(&key) {
            return Err(format!(
                "options follow '#', not '?': opencv:{before}#{after}"
            ));
        }
    }
    if is_digits(text) {
        return match text.parse::<u32>() {
            Ok(index) if index <= MAX_INDEX => Ok(Source::Index(index)),
            _ => Err(format!(
                "camera index {text} is too large (at most {MAX_INDEX}); for a file named \
                 {text}, write opencv:./{text}"
            )),
        };
    }
    if text.starts_with("/dev/") {
        Ok(Source::Device(PathBuf::from(text)))
    } else {
        Ok(Source::File(PathBuf::from(text)))
    }
}

fn is_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse_ok(spec: &str) -> OpenCvConfig {
        spec.parse()
            .unwrap_or_else(|e| panic!("{spec:?} should parse: {e}"))
    }

    fn reason(spec: &str) -> String {
        match spec.parse::<OpenCvConfig>() {
            Ok(config) => panic!("{spec:?} should not parse, got {config}"),
            Err(CameraError::Spec { spec: s, reason }) => {
                assert_eq!(s, spec, "the error names the spec as given");
                reason
            }
            Err(other) => panic!("{spec:?}: expected a Spec error, got {other:?}"),
        }
    }

    #[test]
    fn sources() {
        assert_eq!(parse_ok("opencv").source(), &Source::Index(0));
        assert_eq!(parse_ok("opencv:0").source(), &Source::Index(0));
        assert_eq!(parse_ok("opencv:12").source(), &Source::Index(12));
        assert_eq!(
            parse_ok("opencv:/dev/video2").source(),
            &Source::Device(PathBuf::from("/dev/video2"))
        );
        assert_eq!(
            parse_ok("opencv:/dev/v4l/by-id/usb-cam-video-index0").source(),
            &Source::Device(PathBuf::from("/dev/v4l/by-id/usb-cam-video-index0"))
        );
        assert_eq!(
            parse_ok("opencv:clip.mp4").source(),
            &Source::File(PathBuf::from("clip.mp4"))
        );
        assert_eq!(
            parse_ok("opencv:./0").source(),
            &Source::File(PathBuf::from("./0"))
        );
        assert_eq!(
            parse_ok("opencv:what?.mp4").source(),
            &Source::File(PathBuf::from("what?.mp4")),
            "a '?' not followed by an option is part of a file name"
        );
        assert_eq!(
            parse_ok("opencv:rtsp://admin:pw@10.0.0.5:554/h264").source(),
            &Source::Url("rtsp://admin:pw@10.0.0.5:554/h264".to_owned())
        );
        let config = parse_ok("opencv:clip.mp4");
        assert!(config.is_file());
        assert!(!parse_ok("opencv:/dev/video0").is_file());
    }

    #[test]
    fn defaults() {
        let config = parse_ok("opencv:0");
        assert_eq!(config.size(), None);
        assert_eq!(config.fps(), None);
        assert_eq!(config.mjpeg(), Mjpeg::Auto);
        assert_eq!(config.backend(), Backend::Auto);
        assert_eq!(config, OpenCvConfig::new(Source::Index(0)));
        assert_eq!(config.to_string(), "opencv:0");
        assert_eq!(parse_ok("opencv").to_string(), "opencv:0");
    }

    #[test]
    fn options() {
        let config = parse_ok("opencv:/dev/video0#fps=7.5&backend=v4l2&mjpeg=off&size=1280x720");
        assert_eq!(config.size(), Some((1280, 720)));
        assert_eq!(config.fps(), Some(7.5));
        assert_eq!(config.mjpeg(), Mjpeg::Off);
        assert_eq!(config.backend(), Backend::V4l2);
        assert_eq!(
            config.to_string(),
            "opencv:/dev/video0#size=1280x720&fps=7.5&mjpeg=off&backend=v4l2"
        );
        let bare = parse_ok("opencv#mjpeg=on");
        assert_eq!(bare.source(), &Source::Index(0));
        assert_eq!(bare.mjpeg(), Mjpeg::On);
        assert_eq!(bare.to_string(), "opencv:0#mjpeg=on");
    }

    #[test]
    fn from_spec_is_what_the_registry_calls() {
        let spec = Spec::parse("opencv:3#size=640x480").unwrap();
        let config = OpenCvConfig::from_spec(&spec).unwrap();
        assert_eq!(config, parse_ok("opencv:3#size=640x480"));
        let bad = Spec::parse("opencv:3#fps=0").unwrap();
        assert!(matches!(
            OpenCvConfig::from_spec(&bad),
            Err(CameraError::Spec { spec, .. }) if spec == "opencv:3#fps=0"
        ));
    }

    #[test]
    fn canonical_text_parses_back_to_the_same_config() {
        for spec in [
            "opencv:0",
            "opencv:3#size=640x480&fps=30",
            "opencv:/dev/video2#mjpeg=on&backend=ffmpeg",
            "opencv:clip.mp4#fps=12.5",
            "opencv:rtsp://cam.local/live?channel=1&sub=0#size=1920x1080",
            "opencv:http://cam.local/video.cgi?res=hd",
        ] {
            let config = parse_ok(spec);
            assert_eq!(config.to_string(), spec);
            assert_eq!(parse_ok(&config.to_string()), config);
        }
    }

    #[test]
    fn a_url_keeps_its_query_and_options_follow_the_first_hash() {
        let config = parse_ok("opencv:rtsp://cam/live?channel=1&subtype=0#fps=15");
        assert_eq!(
            config.source(),
            &Source::Url("rtsp://cam/live?channel=1&subtype=0".to_owned())
        );
        assert_eq!(config.fps(), Some(15.0));
        let query = parse_ok("opencv:http://cam/video.cgi?fps=30&size=hd");
        assert_eq!(
            query.source(),
            &Source::Url("http://cam/video.cgi?fps=30&size=hd".to_owned()),
            "a URL's own fps= is the camera's business"
        );
        assert_eq!(query.fps(), None);
        // Colons in the URL (port, credentials) are part of the source.
        let port = parse_ok("opencv:rtsp://user:pw@cam:8554/s#size=640x480");
        assert_eq!(
            port.source(),
            &Source::Url("rtsp://user:pw@cam:8554/s".to_owned())
        );
    }

    #[test]
    fn a_password_in_a_url_is_never_displayed() {
        let config = parse_ok("opencv:rtsp://admin:hunter2@cam:554/live#fps=10");
        assert_eq!(
            config.to_string(),
            "opencv:rtsp://admin:***@cam:554/live#fps=10"
        );
        assert_eq!(
            parse_ok("opencv:rtsp://admin@cam/live").to_string(),
            "opencv:rtsp://admin@cam/live",
            "a user name alone is kept"
        );
        assert_eq!(
            parse_ok("opencv:http://cam/a@b:c").to_string(),
            "opencv:http://cam/a@b:c",
            "an '@' in the path is not a password"
        );
    }

    #[test]
    fn error_texts() {
        assert_eq!(
            reason("sim:640x480"),
            format!("not an OpenCV camera spec; {GRAMMAR}")
        );
        assert!(
            reason("opencv?fps=30").ends_with(
                "is not a camera kind: a spec is KIND[:SOURCE][#OPTION&...], e.g. sim:640x480@30"
            ),
            "{}",
            reason("opencv?fps=30")
        );
        assert_eq!(
            reason("opencv:"),
            format!("no source after \"opencv:\"; {GRAMMAR}")
        );
        assert_eq!(
            reason("opencv:#fps=30"),
            format!("no source after \"opencv:\"; {GRAMMAR}")
        );
        assert_eq!(
            reason("opencv:0?fps=30"),
            "options follow '#', not '?': opencv:0#fps=30"
        );
        assert_eq!(
            reason("opencv:/dev/video0?size=640x480&mjpeg=off"),
            "options follow '#', not '?': opencv:/dev/video0#size=640x480&mjpeg=off"
        );
        assert_eq!(
            reason("opencv:99999"),
            "camera index 99999 is too large (at most 1023); for a file named 99999, write \
             opencv:./99999"
        );
        assert_eq!(
            reason("opencv:0#size=1280"),
            "size \"1280\" is not WIDTHxHEIGHT, like 1280x720"
        );
        assert_eq!(
            reason("opencv:0#size=0x720"),
            "size \"0x720\": width must be a whole number from 1 to 7680"
        );
        assert_eq!(
            reason("opencv:0#size=640x+480"),
            "size \"640x+480\": height must be a whole number from 1 to 4320"
        );
        assert_eq!(
            reason("opencv:0#fps=0"),
            "fps=0: use a rate above 0 and at most 1000, or leave fps out for the source's own"
        );
        assert_eq!(
            reason("opencv:0#fps=-5"),
            "fps \"-5\" is not a number like 30 or 7.5 from 0 to 1000"
        );
        assert_eq!(
            reason("opencv:0#fps=NaN"),
            "fps \"NaN\" is not a number like 30 or 7.5 from 0 to 1000"
        );
        assert_eq!(reason("opencv:0#fps"), "option fps needs a value: fps=...");
        assert_eq!(
            reason("opencv:0#mjpeg=yes"),
            "mjpeg=yes: use mjpeg=auto, on or off"
        );
        assert_eq!(
            reason("opencv:0#quality=90"),
            format!("unknown option \"quality\"; {OPTIONS}")
        );
        assert_eq!(
            reason("opencv:0#encode=server"),
            format!("unknown option \"encode\"; {OPTIONS}")
        );
        assert_eq!(
            reason("opencv:0#backend=dshow"),
            "backend=dshow: use backend=any, v4l2, ffmpeg or gstreamer"
        );
        assert_eq!(
            reason("opencv:0#fps=30&fps=25"),
            "option fps is given twice"
        );
        assert!(
            reason("opencv:0#fps=30&").starts_with("empty option"),
            "{}",
            reason("opencv:0#fps=30&")
        );
        assert_eq!(
            reason("opencv:0#vary"),
            format!("unknown option \"vary\"; {OPTIONS}")
        );
        assert_eq!(
            reason("opencv:1http://cam"),
            "\"1http\" is not a URL scheme; a URL looks like rtsp://host:554/stream"
        );
        assert_eq!(
            reason("opencv:0#mjpeg=on&backend=gstreamer"),
            "mjpeg=on needs the v4l2 or ffmpeg backend: OpenCV's GStreamer backend cannot hand \
             out undecoded frames"
        );
    }

    #[test]
    fn the_error_message_names_the_spec() {
        let err = "opencv:0#fps=0".parse::<OpenCvConfig>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid camera \"opencv:0#fps=0\": fps=0: use a rate above 0 and at most 1000, or \
             leave fps out for the source's own"
        );
    }

    #[test]
    fn parsing_arbitrary_text_never_panics() {
        // A cheap exhaustive-ish sweep: every spec built from a few awkward pieces.
        let pieces = [
            "",
            "opencv",
            ":",
            "?",
            "#",
            "&",
            "=",
            "0",
            "x",
            "size",
            "fps",
            "://",
            "/dev/",
            "@",
            ".",
            "é",
            "99999999999999999999",
        ];
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    for d in pieces {
                        let _ = format!("{a}{b}{c}{d}").parse::<OpenCvConfig>();
                        let _ = format!("opencv{a}{b}{c}{d}").parse::<OpenCvConfig>();
                    }
                }
            }
        }
    }
}
