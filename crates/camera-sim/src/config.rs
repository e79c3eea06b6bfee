//! [`SimConfig`]: what the synthetic camera delivers, parsed from a `sim:WxH@FPS#options` spec.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use edgecam_core::camera::CameraError;
use edgecam_core::spec::{MAX_FPS, Spec, parse_count, parse_fps, parse_size};
#[cfg(test)]
use edgecam_core::spec::{MAX_HEIGHT, MAX_WIDTH};

const DEFAULT_WIDTH: u32 = 640;
const DEFAULT_HEIGHT: u32 = 480;
const DEFAULT_FPS: f64 = 30.0;
const MAX_STALL_MS: u64 = 600_000;

const GRAMMAR: &str = "expected sim[:WIDTHxHEIGHT[@FPS]][#OPTION[&OPTION...]], \
     e.g. sim:640x480@30#scene=natural";
const OPTIONS: &str = "allowed options are scene=pattern|natural, fail_after=N[&down_ms=M], \
     error_every=N, stall_after=N&stall_ms=M and vary";

/// What a [`SimCamera`](crate::SimCamera) delivers: frame size, pace, picture and injected
/// faults.
///
/// Always valid: the constructors and [`FromStr`] check every field, and [`Display`](fmt::Display)
/// gives back the canonical spec, which parses to an equal config.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    width: u32,
    height: u32,
    fps: f64,
    scene: Scene,
    faults: Faults,
}

/// `scene=`: what the picture shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scene {
    /// Scrolling colour bars: cheap to make, and flattering to every encoder (about 16 KB at
    /// 640x480).
    #[default]
    Pattern,
    /// Gradients, texture, sensor noise and a moving object: about as hard to encode as a real
    /// camera's picture, for benchmarks.
    Natural,
}

/// Faults a [`SimCamera`](crate::SimCamera) injects. Frames are counted by their `seq`, which
/// starts at 1 and also counts frames lost to `error_every`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    /// `fail_after=N`: once frame `N` has been produced, the next `next_frame` returns
    /// [`CameraError::Disconnected`] at once (no wait, no seq consumed) and the camera is closed.
    /// This happens once per camera: after `open` it keeps delivering from seq `N + 1` on.
    /// `N = 0` disconnects on the very first `next_frame`.
    pub fail_after: Option<u64>,
    /// `down_ms=M` (with `fail_after`): after the disconnect, `open` fails with
    /// [`CameraError::Open`] for `M` ms, as an unplugged device would until plugged back in.
    pub down: Option<Duration>,
    /// `error_every=N` (`N >= 1`): every frame whose seq is a multiple of `N` is waited for as
    /// usual and then returned as [`CameraError::Read`]; its seq is used up, so the next frame
    /// shows a gap. `N = 1` fails every frame.
    pub error_every: Option<u64>,
    /// `stall_after=N&stall_ms=M`: see [`Stall`].
    pub stall: Option<Stall>,
    /// `vary`: odd seqs are `WxH`, even seqs are `W/2 x H/2` (rounded down). The capabilities
    /// report the larger size.
    pub vary: bool,
}

/// `stall_after=N&stall_ms=M`: frame `N + 1` arrives `M` ms after it was due, once per camera
/// (`N = 0` delays the first frame). The pace then restarts from that late frame: the next frame
/// is due one interval after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stall {
    /// Frames delivered on time before the late one.
    pub after: u64,
    /// How late; whole milliseconds, from 1 ms to 600 s.
    pub duration: Duration,
}

impl SimConfig {
    /// A fault-free config of the pattern scene; `fps = 0.0` means no pacing (a frame as soon
    /// as one is asked for).
    pub fn new(width: u32, height: u32, fps: f64) -> Result<SimConfig, CameraError> {
        let error = |reason: String| CameraError::Spec {
            spec: format!("sim:{width}x{height}@{fps}"),
            reason,
        };
        // The spec's own parsers hold the limits every backend shares.
        parse_size(&format!("{width}x{height}")).map_err(error)?;
        if !(fps.is_finite() && (0.0..=MAX_FPS).contains(&fps)) {
            return Err(error(format!(
                "fps must be from 0 to {MAX_FPS} (got {fps}); 0 means as fast as frames are asked for"
            )));
        }
        Ok(SimConfig {
            width,
            height,
            fps: normalise_zero(fps),
            scene: Scene::default(),
            faults: Faults::default(),
        })
    }

    /// This config with `faults` injected.
    pub fn with_faults(self, faults: Faults) -> Result<SimConfig, CameraError> {
        let config = SimConfig { faults, ..self };
        match check_faults(&config) {
            Ok(()) => Ok(config),
            Err(reason) => Err(CameraError::Spec {
                spec: config.to_string(),
                reason,
            }),
        }
    }

    /// This config showing `scene`.
    pub fn with_scene(self, scene: Scene) -> SimConfig {
        SimConfig { scene, ..self }
    }

    pub fn scene(&self) -> Scene {
        self.scene
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// Frames per second; `0.0` means no pacing.
    pub fn fps(&self) -> f64 {
        self.fps
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }
}

impl Default for SimConfig {
    /// `sim:640x480@30`, no faults.
    fn default() -> Self {
        SimConfig {
            width: DEFAULT_WIDTH,
            height: DEFAULT_HEIGHT,
            fps: DEFAULT_FPS,
            scene: Scene::default(),
            faults: Faults::default(),
        }
    }
}

impl fmt::Display for SimConfig {
    /// The canonical spec: `sim:WxH@FPS`, then the options present in the order `scene`,
    /// `fail_after`, `down_ms`, `error_every`, `stall_after`, `stall_ms`, `vary`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // f64's Display is the shortest text that parses back to the same value, with no
        // exponent, so it round-trips through `parse_fps`.
        write!(f, "sim:{}x{}@{}", self.width, self.height, self.fps)?;
        let Faults {
            fail_after,
            down,
            error_every,
            stall,
            vary,
        } = &self.faults;
        let mut options = Vec::new();
        if self.scene == Scene::Natural {
            options.push("scene=natural".to_owned());
        }
        if let Some(n) = fail_after {
            options.push(format!("fail_after={n}"));
        }
        if let Some(down) = down {
            options.push(format!("down_ms={}", down.as_millis()));
        }
        if let Some(n) = error_every {
            options.push(format!("error_every={n}"));
        }
        if let Some(stall) = stall {
            options.push(format!("stall_after={}", stall.after));
            options.push(format!("stall_ms={}", stall.duration.as_millis()));
        }
        if *vary {
            options.push("vary".to_owned());
        }
        if !options.is_empty() {
            write!(f, "#{}", options.join("&"))?;
        }
        Ok(())
    }
}

impl FromStr for SimConfig {
    type Err = CameraError;

    /// Parses `sim`, `sim:WxH`, `sim:WxH@FPS`, each optionally followed by `#OPTION&OPTION...`.
    fn from_str(spec: &str) -> Result<SimConfig, CameraError> {
        Spec::parse(spec)
            .and_then(|parsed| parse(&parsed))
            .map_err(|reason| CameraError::Spec {
                spec: spec.to_owned(),
                reason,
            })
    }
}

impl SimConfig {
    /// The config a parsed spec of kind `sim` names.
    pub fn from_spec(spec: &Spec<'_>) -> Result<SimConfig, CameraError> {
        parse(spec).map_err(|reason| CameraError::Spec {
            spec: spec.text().to_owned(),
            reason,
        })
    }
}

fn parse(spec: &Spec<'_>) -> Result<SimConfig, String> {
    if spec.kind() != "sim" {
        return Err(format!("not a sim camera spec; {GRAMMAR}"));
    }
    let ((width, height), fps) = match spec.source() {
        None => ((DEFAULT_WIDTH, DEFAULT_HEIGHT), DEFAULT_FPS),
        Some(mode) if mode.contains('?') => {
            let (mode, options) = mode.split_once('?').unwrap_or((mode, ""));
            return Err(format!("options follow '#', not '?': sim:{mode}#{options}"));
        }
        Some(mode) => match mode.split_once('@') {
            Some((size, fps)) => (parse_size(size)?, parse_fps(fps)?),
            None => (parse_size(mode)?, DEFAULT_FPS),
        },
    };
    spec.reject_unknown(
        &[
            "fail_after",
            "down_ms",
            "error_every",
            "stall_after",
            "stall_ms",
            "vary",
            "scene",
        ],
        OPTIONS,
    )?;
    let count = |key: &str| -> Result<Option<u64>, String> {
        spec.value(key)?.map(|v| parse_count(key, v)).transpose()
    };
    let stall = match (count("stall_after")?, count("stall_ms")?) {
        (Some(after), Some(ms)) => Some(Stall {
            after,
            duration: Duration::from_millis(ms),
        }),
        (None, None) => None,
        _ => {
            return Err(
                "stall_after and stall_ms go together: stall_after=N&stall_ms=M".to_owned(),
            );
        }
    };
    let faults = Faults {
        fail_after: count("fail_after")?,
        down: count("down_ms")?.map(Duration::from_millis),
        error_every: count("error_every")?,
        stall,
        vary: spec.flag("vary")?,
    };
    let scene = match spec.value("scene")? {
        None | Some("pattern") => Scene::Pattern,
        Some("natural") => Scene::Natural,
        Some(other) => {
            return Err(format!(
                "scene={other}: use scene=pattern (colour bars) or scene=natural \
                 (gradients, texture, noise and a moving object, like a real camera's picture)"
            ));
        }
    };
    let config = SimConfig {
        width,
        height,
        fps: normalise_zero(fps),
        scene,
        faults,
    };
    check_faults(&config)?;
    Ok(config)
}

fn check_faults(config: &SimConfig) -> Result<(), String> {
    let faults = &config.faults;
    if faults.vary && (config.width < 2 || config.height < 2) {
        return Err("vary halves the picture: it needs a size of at least 2x2".to_owned());
    }
    if let Some(down) = faults.down {
        if faults.fail_after.is_none() {
            return Err("down_ms needs fail_after: fail_after=N&down_ms=M".to_owned());
        }
        if down > Duration::from_millis(MAX_STALL_MS) || down.subsec_nanos() % 1_000_000 != 0 {
            return Err(format!(
                "down_ms must be a whole number of milliseconds up to {MAX_STALL_MS}"
            ));
        }
    }
    if faults.error_every == Some(0) {
        return Err("error_every must be at least 1 (1 fails every frame)".to_owned());
    }
    if let Some(stall) = faults.stall {
        let whole_ms = stall.duration.subsec_nanos() % 1_000_000 == 0;
        let ms = stall.duration.as_millis();
        if !whole_ms || ms == 0 || ms > u128::from(MAX_STALL_MS) {
            return Err(format!(
                "stall_ms must be a whole number of milliseconds from 1 to {MAX_STALL_MS} \
                 (got {:?})",
                stall.duration
            ));
        }
    }
    Ok(())
}

/// `-0.0` would print as `-0`, which does not parse back.
fn normalise_zero(fps: f64) -> f64 {
    if fps == 0.0 { 0.0 } else { fps }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn parse_ok(spec: &str) -> SimConfig {
        spec.parse()
            .unwrap_or_else(|e| panic!("{spec:?} should parse: {e}"))
    }

    fn reason(spec: &str) -> String {
        match spec.parse::<SimConfig>() {
            Ok(config) => panic!("{spec:?} should not parse, got {config}"),
            Err(CameraError::Spec { spec: s, reason }) => {
                assert_eq!(s, spec, "the error names the spec as given");
                reason
            }
            Err(other) => panic!("{spec:?}: expected a Spec error, got {other:?}"),
        }
    }

    #[test]
    fn full_spec() {
        let config = parse_ok("sim:1280x720@25");
        assert_eq!((config.width(), config.height()), (1280, 720));
        assert_eq!(config.fps(), 25.0);
        assert_eq!(config.faults(), &Faults::default());
        assert_eq!(config.to_string(), "sim:1280x720@25");
    }

    #[test]
    fn shorthands() {
        assert_eq!(parse_ok("sim"), SimConfig::default());
        assert_eq!(parse_ok("sim").to_string(), "sim:640x480@30");
        assert_eq!(parse_ok("sim:320x240").to_string(), "sim:320x240@30");
        assert_eq!(parse_ok("sim#vary").to_string(), "sim:640x480@30#vary");
        assert_eq!(
            parse_ok("sim:320x240#vary").to_string(),
            "sim:320x240@30#vary"
        );
    }

    #[test]
    fn fractional_and_zero_fps() {
        assert_eq!(parse_ok("sim:640x480@7.5").fps(), 7.5);
        assert_eq!(parse_ok("sim:640x480@0").fps(), 0.0);
        assert_eq!(parse_ok("sim:640x480@0.0").to_string(), "sim:640x480@0");
        assert_eq!(parse_ok("sim:640x480@30.000").to_string(), "sim:640x480@30");
        assert_eq!(parse_ok("sim:640x480@1000").fps(), 1000.0);
    }

    #[test]
    fn options_are_parsed_and_printed_in_canonical_order() {
        let config =
            parse_ok("sim:640x480@30#vary&stall_ms=250&error_every=7&stall_after=3&fail_after=100");
        assert_eq!(
            config.faults(),
            &Faults {
                fail_after: Some(100),
                down: None,
                error_every: Some(7),
                stall: Some(Stall {
                    after: 3,
                    duration: Duration::from_millis(250),
                }),
                vary: true,
            }
        );
        assert_eq!(
            config.to_string(),
            "sim:640x480@30#fail_after=100&error_every=7&stall_after=3&stall_ms=250&vary"
        );
        assert_eq!(
            parse_ok("sim:2x2@30#fail_after=0").faults().fail_after,
            Some(0)
        );
    }

    #[test]
    fn sizes_at_the_limits() {
        assert_eq!(parse_ok("sim:7680x4320").width(), 7680);
        assert_eq!(parse_ok("sim:2x2").height(), 2);
    }

    #[test]
    fn invalid_specs_say_what_is_allowed() {
        let cases = [
            ("", "is not a camera kind"),
            (
                "opencv:0",
                "not a sim camera spec; expected sim[:WIDTHxHEIGHT[@FPS]]",
            ),
            ("SIM", "is not a camera kind"),
            (
                "sim:640x480?vary",
                "options follow '#', not '?': sim:640x480#vary",
            ),
            ("sim:", "size \"\" is not WIDTHxHEIGHT"),
            ("sim:640", "size \"640\" is not WIDTHxHEIGHT"),
            ("sim:640*480", "is not WIDTHxHEIGHT"),
            ("sim:x480", "width must be a whole number from 1 to 7680"),
            ("sim:640x", "height must be a whole number from 1 to 4320"),
            ("sim:-640x480", "width must be a whole number"),
            ("sim: 640x480", "width must be a whole number"),
            ("sim:0x480", "width must be a whole number from 1 to 7680"),
            (
                "sim:7681x480",
                "width must be a whole number from 1 to 7680",
            ),
            (
                "sim:640x4321",
                "height must be a whole number from 1 to 4320",
            ),
            ("sim:99999999999x480", "width must be a whole number"),
            ("sim:1x1#vary", "vary halves the picture"),
            ("sim#scene=cartoon", "scene=cartoon: use scene=pattern"),
            ("sim:640x480@", "fps \"\" is not a number like 30 or 7.5"),
            ("sim:640x480@-1", "fps \"-1\" is not a number"),
            ("sim:640x480@inf", "fps \"inf\" is not a number"),
            ("sim:640x480@NaN", "fps \"NaN\" is not a number"),
            ("sim:640x480@1e3", "fps \"1e3\" is not a number"),
            ("sim:640x480@.5", "fps \".5\" is not a number"),
            (
                "sim:640x480@1001",
                "fps \"1001\" is not a number like 30 or 7.5 from 0 to 1000",
            ),
            ("sim:640x480@30#", "empty option"),
            ("sim:640x480@30#vary&", "empty option"),
            (
                "sim:640x480@30#bogus=1",
                "unknown option \"bogus\"; allowed options are scene=pattern|natural",
            ),
            ("sim:640x480@30#Vary", "unknown option \"Vary\""),
            (
                "sim:640x480@30#vary=1",
                "option vary is a switch and takes no value",
            ),
            ("sim:640x480@30#vary&vary", "option vary is given twice"),
            (
                "sim:640x480@30#fail_after",
                "option fail_after needs a value: fail_after=...",
            ),
            (
                "sim:640x480@30#fail_after=",
                "option fail_after= needs a whole number",
            ),
            (
                "sim:640x480@30#fail_after=-1",
                "needs a whole number, like fail_after=10",
            ),
            (
                "sim:640x480@30#fail_after=1&fail_after=2",
                "option fail_after is given twice",
            ),
            (
                "sim:640x480@30#error_every=0",
                "error_every must be at least 1",
            ),
            (
                "sim:640x480@30#error_every=99999999999999999999",
                "is too large",
            ),
            (
                "sim:640x480@30#stall_after=5",
                "stall_after and stall_ms go together",
            ),
            (
                "sim:640x480@30#down_ms=5",
                "down_ms needs fail_after: fail_after=N&down_ms=M",
            ),
            (
                "sim:640x480@30#fail_after=1&down_ms=600001",
                "down_ms must be a whole number of milliseconds up to 600000",
            ),
            (
                "sim:640x480@30#stall_ms=5",
                "stall_after and stall_ms go together",
            ),
            (
                "sim:640x480@30#stall_after=5&stall_ms=0",
                "stall_ms must be a whole number of milliseconds from 1 to 600000",
            ),
            (
                "sim:640x480@30#stall_after=5&stall_ms=600001",
                "from 1 to 600000",
            ),
        ];
        for (spec, expected) in cases {
            let reason = reason(spec);
            assert!(
                reason.contains(expected),
                "{spec:?}: reason {reason:?} should contain {expected:?}"
            );
        }
    }

    #[test]
    fn error_display_names_the_spec() {
        let err = "sim:0x480".parse::<SimConfig>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid camera \"sim:0x480\": size \"0x480\": width must be a whole number from 1 to 7680"
        );
    }

    #[test]
    fn constructors_validate() {
        assert_eq!(
            SimConfig::new(640, 480, 30.0).unwrap(),
            SimConfig::default()
        );
        assert_eq!(
            SimConfig::new(640, 480, -0.0).unwrap().to_string(),
            "sim:640x480@0"
        );
        for (w, h, fps) in [
            (0, 480, 30.0),
            (7681, 480, 30.0),
            (640, 480, f64::NAN),
            (640, 480, -1.0),
        ] {
            assert!(
                matches!(SimConfig::new(w, h, fps), Err(CameraError::Spec { .. })),
                "{w}x{h}@{fps} should be rejected"
            );
        }
        let bad_stall = Faults {
            stall: Some(Stall {
                after: 1,
                duration: Duration::from_micros(1500),
            }),
            ..Faults::default()
        };
        let err = SimConfig::default().with_faults(bad_stall).unwrap_err();
        assert!(
            err.to_string().contains("whole number of milliseconds"),
            "{err}"
        );
        let bad_every = Faults {
            error_every: Some(0),
            ..Faults::default()
        };
        assert!(SimConfig::default().with_faults(bad_every).is_err());
    }

    fn any_config() -> impl Strategy<Value = SimConfig> {
        (
            1..=MAX_WIDTH / 2,
            1..=MAX_HEIGHT / 2,
            prop_oneof![Just(0.0), 0.0..=MAX_FPS, (0u32..=1000).prop_map(f64::from)],
            proptest::option::of((any::<u64>(), proptest::option::of(0..=MAX_STALL_MS))),
            proptest::option::of(1..=u64::MAX),
            proptest::option::of((any::<u64>(), 1..=MAX_STALL_MS)),
            any::<bool>(),
        )
            .prop_map(|(w, h, fps, fail_after, error_every, stall, vary)| {
                let faults = Faults {
                    fail_after: fail_after.map(|(n, _)| n),
                    down: fail_after.and_then(|(_, ms)| ms).map(Duration::from_millis),
                    error_every,
                    stall: stall.map(|(after, ms)| Stall {
                        after,
                        duration: Duration::from_millis(ms),
                    }),
                    vary,
                };
                SimConfig::new(w * 2, h * 2, fps)
                    .unwrap()
                    .with_faults(faults)
                    .unwrap()
            })
    }

    proptest! {
        #[test]
        fn display_round_trips(config in any_config()) {
            let text = config.to_string();
            let parsed: SimConfig = text.parse().unwrap();
            prop_assert_eq!(parsed, config);
        }

        #[test]
        fn parsing_never_panics(spec in "sim(:[0-9x@.]{0,12})?(\\?[a-z_=0-9&]{0,30})?") {
            let _ = spec.parse::<SimConfig>();
        }
    }
}
