//! Camera specs, the one grammar every backend shares: `KIND[:SOURCE][#OPTION[&OPTION...]]`.
//!
//! `KIND` picks the backend (`sim`, `exec`, `pipe`, `opencv`, ...); `SOURCE` is the backend's
//! own (a size for `sim`, a command line for `exec`, a device, file or URL for `opencv`), and
//! is taken as written; the options start at the first `#` (go2rtc's habit: commands and URLs
//! carry `?` and `&`, but hardly ever `#`). An option is `key=value`, or a bare `key` for a
//! switch. The value parsers below are shared, so that `size=`, `fps=` and counts mean the same
//! for every backend.

use std::fmt;

/// The largest picture any camera may deliver (8K UHD); JPEG itself stops at 65535x65535.
pub const MAX_WIDTH: u32 = 7680;
pub const MAX_HEIGHT: u32 = 4320;
/// The highest frame rate a spec may ask for or declare.
pub const MAX_FPS: f64 = 1000.0;

/// A camera spec split into its parts. Borrowed from the text it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec<'a> {
    text: &'a str,
    kind: &'a str,
    source: Option<&'a str>,
    options: Vec<(&'a str, Option<&'a str>)>,
}

impl<'a> Spec<'a> {
    /// Splits `text`. Fails only on what no backend could accept: an empty kind, an empty
    /// option (a stray `&` or `#`), an option given twice.
    pub fn parse(text: &'a str) -> Result<Spec<'a>, String> {
        let (head, options) = match text.split_once('#') {
            Some((head, options)) => (head, Some(options)),
            None => (text, None),
        };
        let (kind, source) = match head.split_once(':') {
            Some((kind, source)) => (kind, Some(source)),
            None => (head, None),
        };
        if kind.is_empty()
            || !kind
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return Err(format!(
                "{kind:?} is not a camera kind: a spec is KIND[:SOURCE][#OPTION&...], e.g. sim:640x480@30"
            ));
        }
        let mut parsed = Vec::new();
        for option in options.into_iter().flat_map(|o| o.split('&')) {
            let (key, value) = match option.split_once('=') {
                Some((key, value)) => (key, Some(value)),
                None => (option, None),
            };
            if key.is_empty() {
                return Err(format!(
                    "empty option {option:?} (a stray '#' or '&'); options are #key=value&key=value"
                ));
            }
            if parsed.iter().any(|(k, _)| *k == key) {
                return Err(format!("option {key} is given twice"));
            }
            parsed.push((key, value));
        }
        Ok(Spec {
            text,
            kind,
            source,
            options: parsed,
        })
    }

    /// The whole spec as written.
    pub fn text(&self) -> &'a str {
        self.text
    }

    /// What comes before the first `:` (or the first `#`).
    pub fn kind(&self) -> &'a str {
        self.kind
    }

    /// What follows `KIND:`, up to the options; `None` without a `:`.
    pub fn source(&self) -> Option<&'a str> {
        self.source
    }

    /// The options in the order written.
    pub fn options(&self) -> &[(&'a str, Option<&'a str>)] {
        &self.options
    }

    /// The value of option `key`: `None` when absent; an error when present without a value.
    pub fn value(&self, key: &str) -> Result<Option<&'a str>, String> {
        match self.options.iter().find(|(k, _)| *k == key) {
            None => Ok(None),
            Some((_, Some(value))) => Ok(Some(value)),
            Some((_, None)) => Err(format!("option {key} needs a value: {key}=...")),
        }
    }

    /// Whether switch `key` is present; an error when it was given a value.
    pub fn flag(&self, key: &str) -> Result<bool, String> {
        match self.options.iter().find(|(k, _)| *k == key) {
            None => Ok(false),
            Some((_, None)) => Ok(true),
            Some((_, Some(value))) => Err(format!(
                "option {key} is a switch and takes no value (got {key}={value})"
            )),
        }
    }

    /// An error naming the first option not in `known`, and listing `allowed` (a sentence).
    pub fn reject_unknown(&self, known: &[&str], allowed: &str) -> Result<(), String> {
        match self.options.iter().find(|(k, _)| !known.contains(k)) {
            Some((key, _)) => Err(format!("unknown option {key:?}; {allowed}")),
            None => Ok(()),
        }
    }
}

impl fmt::Display for Spec<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text)
    }
}

/// `WIDTHxHEIGHT`, each from 1 to [`MAX_WIDTH`] / [`MAX_HEIGHT`].
pub fn parse_size(text: &str) -> Result<(u32, u32), String> {
    let Some((width, height)) = text.split_once('x') else {
        return Err(format!("size {text:?} is not WIDTHxHEIGHT, like 1280x720"));
    };
    let dimension = |what: &str, value: &str, max: u32| -> Result<u32, String> {
        match value.parse::<u32>() {
            Ok(n) if is_digits(value) && (1..=max).contains(&n) => Ok(n),
            _ => Err(format!(
                "size {text:?}: {what} must be a whole number from 1 to {max}"
            )),
        }
    };
    Ok((
        dimension("width", width, MAX_WIDTH)?,
        dimension("height", height, MAX_HEIGHT)?,
    ))
}

/// A frame rate: digits with an optional fraction (no sign, exponent, `inf` or `NaN`), from 0
/// to [`MAX_FPS`]. What 0 means is the backend's to say (no pacing, or the source's own).
pub fn parse_fps(text: &str) -> Result<f64, String> {
    let fps = parse_decimal(text).unwrap_or(f64::NAN);
    if (0.0..=MAX_FPS).contains(&fps) {
        // `-0.0` cannot come out of digits, so the value prints back as written.
        Ok(fps)
    } else {
        Err(format!(
            "fps {text:?} is not a number like 30 or 7.5 from 0 to {MAX_FPS}"
        ))
    }
}

/// Digits with an optional fraction (`30`, `7.5`): no sign, exponent, `inf` or `NaN`, so that
/// every value a spec holds reads as written.
pub fn parse_decimal(text: &str) -> Option<f64> {
    let well_formed = match text.split_once('.') {
        Some((whole, fraction)) => is_digits(whole) && is_digits(fraction),
        None => is_digits(text),
    };
    if well_formed { text.parse().ok() } else { None }
}

/// A whole number (digits only) for option `key`.
pub fn parse_count(key: &str, text: &str) -> Result<u64, String> {
    if !is_digits(text) {
        return Err(format!(
            "option {key}={text} needs a whole number, like {key}=10"
        ));
    }
    text.parse()
        .map_err(|_| format!("option {key}={text} is too large"))
}

fn is_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parts() {
        let spec = Spec::parse("sim:640x480@30#fail_after=3&vary").unwrap();
        assert_eq!(spec.kind(), "sim");
        assert_eq!(spec.source(), Some("640x480@30"));
        assert_eq!(spec.value("fail_after"), Ok(Some("3")));
        assert_eq!(spec.flag("vary"), Ok(true));
        assert_eq!(spec.flag("other"), Ok(false));
        assert!(spec.value("vary").is_err());
        assert!(spec.flag("fail_after").is_err());

        let bare = Spec::parse("sim").unwrap();
        assert_eq!((bare.kind(), bare.source()), ("sim", None));
        let options_only = Spec::parse("opencv#fps=5").unwrap();
        assert_eq!(options_only.source(), None);
        assert_eq!(options_only.value("fps"), Ok(Some("5")));
    }

    #[test]
    fn sources_keep_their_colons_queries_and_ampersands() {
        let spec = Spec::parse(
            "exec:ffmpeg -i rtsp://cam:554/live?ch=1&x=2 -f rawvideo -#format=nv12&size=1280x720",
        )
        .unwrap();
        assert_eq!(spec.kind(), "exec");
        assert_eq!(
            spec.source(),
            Some("ffmpeg -i rtsp://cam:554/live?ch=1&x=2 -f rawvideo -")
        );
        assert_eq!(spec.value("format"), Ok(Some("nv12")));
        assert_eq!(spec.value("size"), Ok(Some("1280x720")));
    }

    #[test]
    fn malformed_specs() {
        for (text, says) in [
            ("", "is not a camera kind"),
            (":0", "is not a camera kind"),
            ("Sim:1", "is not a camera kind"),
            ("sim#", "empty option"),
            ("sim#a=1&&b", "empty option"),
            ("sim#a=1&a=2", "given twice"),
        ] {
            let err = Spec::parse(text).unwrap_err();
            assert!(err.contains(says), "{text:?}: {err}");
        }
        let spec = Spec::parse("sim#size=1x1&bogus=2").unwrap();
        let err = spec.reject_unknown(&["size"], "allowed: size").unwrap_err();
        assert_eq!(err, "unknown option \"bogus\"; allowed: size");
    }

    #[test]
    fn value_parsers() {
        assert_eq!(parse_size("1280x720"), Ok((1280, 720)));
        assert_eq!(parse_size("1x1"), Ok((1, 1)));
        assert_eq!(parse_size("7680x4320"), Ok((7680, 4320)));
        for bad in [
            "", "640", "0x480", "640x0", "7681x1", "1x4321", "+6x4", "6x4x", "x",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_fps("30"), Ok(30.0));
        assert_eq!(parse_fps("7.5"), Ok(7.5));
        assert_eq!(parse_fps("0"), Ok(0.0));
        for bad in ["", "-1", "1e3", "inf", "NaN", "1000.5", ".5", "5."] {
            assert!(parse_fps(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_count("n", "12"), Ok(12));
        assert!(parse_count("n", "-1").is_err());
        assert!(parse_count("n", "99999999999999999999999").is_err());
    }

    proptest! {
        #[test]
        fn parsing_never_panics_and_keeps_the_text(text in "\\PC{0,40}") {
            if let Ok(spec) = Spec::parse(&text) {
                prop_assert_eq!(spec.text(), text.as_str());
                prop_assert!(text.starts_with(spec.kind()));
            }
            let _ = parse_size(&text);
            let _ = parse_fps(&text);
        }
    }
}
