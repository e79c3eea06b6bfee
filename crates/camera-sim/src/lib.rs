//! edgecam's synthetic camera: a [`Camera`](edgecam_core::camera::Camera) that needs no
//! hardware, for demos, tests and benchmarks of everything downstream of the camera.
//!
//! [`SimCamera`] delivers packed RGB24 frames of a deterministic moving picture: by default
//! colour bars and a hue ramp scrolling sideways a few pixels per frame; with `scene=natural`
//! gradients, texture, sensor noise and a moving object, about as hard to encode as a real
//! camera's picture (for benchmarks). Either has the frame's `seq` drawn in the top-left corner as 8 x 8 black/white cells (64
//! bits, most significant first, inside a grey border) that a person can watch change and
//! [`read_seq`] can read back. Frames are cheap to make: the pattern is computed once, and a
//! frame is one `memcpy` per row plus the seq block. Time comes from the
//! [`Clock`](edgecam_core::time::Clock) passed in, so tests pace it with a `ManualClock`.
//!
//! # Spec grammar
//!
//! A [`SimConfig`] is parsed from (and printed back as) a spec:
//!
//! ```text
//! spec    = "sim" [ ":" WIDTH "x" HEIGHT [ "@" FPS ] ] [ "#" option *( "&" option ) ]
//! option  = "scene=" ("pattern" | "natural") | "fail_after=" N [ "&down_ms=" M ]
//!         | "error_every=" N | "stall_after=" N "&stall_ms=" M | "vary"
//! ```
//!
//! - `sim` is `sim:640x480@30`; `sim:WxH` is `sim:WxH@30`.
//! - `WIDTH` and `HEIGHT` are from 1 up to 7680 x 4320 (the limits every camera spec shares,
//!   `edgecam_core::spec`); `vary` needs at least 2 x 2.
//! - `FPS` is digits with an optional fraction (`30`, `7.5`), from 0 to 1000; `0` means no
//!   pacing: a frame as soon as one is asked for.
//! - Options may come in any order, each at most once; `stall_after` and `stall_ms` go
//!   together. Their exact meaning is on [`Faults`]:
//!   - `fail_after=N`: after frame N, one `Disconnected`; it works again after `open`.
//!   - `error_every=N` (N >= 1): frames whose seq is a multiple of N are `Read` errors, leaving a
//!     gap in the seqs delivered.
//!   - `stall_after=N&stall_ms=M` (1 <= M <= 600000): frame N + 1 comes M ms late, once.
//!   - `vary`: even seqs are W/2 x H/2, odd seqs W x H.
//!
//! A bad spec is a [`CameraError::Spec`](edgecam_core::camera::CameraError::Spec) whose reason
//! says what is allowed.

mod camera;
mod config;
mod natural;
mod pattern;

pub use camera::SimCamera;
pub use config::{Faults, Scene, SimConfig, Stall};
pub use pattern::read_seq;

use edgecam_core::camera::{Camera, CameraContext, CameraError, CameraKind};
use edgecam_core::spec::Spec;

/// `sim:` for the [`CameraRegistry`](edgecam_core::camera::CameraRegistry).
pub fn kind() -> CameraKind {
    CameraKind {
        name: "sim",
        summary: "sim[:WxH[@FPS]][#scene=natural&...]: a synthetic moving picture, no hardware \
                  (@0: as fast as asked; faults: fail_after=N, down_ms=M, error_every=N, \
                  stall_after=N&stall_ms=M, vary)",
        example: "sim:640x480@30#scene=natural",
        build: Ok(open),
    }
}

fn open(spec: &Spec<'_>, context: &CameraContext) -> Result<Box<dyn Camera>, CameraError> {
    let config = SimConfig::from_spec(spec)?;
    Ok(Box::new(SimCamera::new(config, context.clock.clone())))
}
