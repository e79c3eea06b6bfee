//! The one path every captured frame takes to become a [`Frame`]: raw pixels are JPEG-encoded
//! once by a [`JpegBackend`], camera JPEGs are passed through, and both are stamped with
//! `edgecam seq=N t=MICROS` so that clients can tell latency and skipped frames.
//!
//! Backends: [`RustBackend`] (pure Rust, the fresh-machine default), libjpeg-turbo (feature
//! `turbojpeg`, the only one with SIMD on ARMv7, and the only one fed YUV without an RGB step),
//! and OpenCV's `imencode` (in `edgecam-camera-opencv`, which implements [`JpegBackend`]).
//! [`Backends`] lists what a build has; `auto` picks the fastest.

mod convert;
mod rust;
#[cfg(feature = "turbojpeg")]
mod turbo;

use std::fmt;

use bytes::Bytes;
use edgecam_core::BoxError;
use edgecam_core::camera::{Captured, Image, PixelFormat};
use edgecam_core::frame::Frame;
use edgecam_core::jpeg::{self, Stamp};
use thiserror::Error;

pub use convert::{from_rgb24, to_rgb24};
pub use rust::RustBackend;
#[cfg(feature = "turbojpeg")]
pub use turbo::TurboBackend;

/// A JPEG encoder. The [`Encoder`] calls it from one thread at a time, once per frame.
pub trait JpegBackend: Send + fmt::Debug {
    /// The name `--encoder` uses (`rust`, `turbo`, `opencv`).
    fn name(&self) -> &'static str;

    /// Whether `image` can be encoded as it is; anything else is converted to packed RGB24
    /// first, once.
    fn takes(&self, image: &RawImage<'_>) -> bool;

    /// Encodes `image` at `quality` (1 to 100), 4:2:0, into one whole JPEG in the backend's own
    /// buffer, lent until the next call: the [`Encoder`] copies it once, into the frame. Called
    /// only with images `takes` accepted, or packed RGB24.
    fn encode(&mut self, image: &RawImage<'_>, quality: u8) -> Result<&[u8], BoxError>;
}

/// Raw pixels borrowed for one encode: an [`Image`]'s planes, or the encoder's own RGB buffer.
#[derive(Debug, Clone, Copy)]
pub struct RawImage<'a> {
    pub format: PixelFormat,
    pub width: u32,
    pub height: u32,
    /// Rows of plane `i` are `strides[i]` bytes apart; planes the format lacks are empty.
    pub planes: [&'a [u8]; 3],
    pub strides: [usize; 3],
}

impl<'a> RawImage<'a> {
    pub fn of(image: &'a Image) -> RawImage<'a> {
        RawImage {
            format: image.format(),
            width: image.width(),
            height: image.height(),
            planes: [image.plane(0), image.plane(1), image.plane(2)],
            strides: image.strides(),
        }
    }

    /// Whether every plane's rows follow each other without padding.
    pub fn is_packed(&self) -> bool {
        self.strides == self.format.packed_strides(self.width, self.height)
    }
}

#[derive(Debug, Error)]
pub enum EncodeError {
    #[error("unknown encoder {name:?}; this build has {available}")]
    Unknown { name: String, available: String },
    #[error("the {backend} encoder could not start")]
    Start {
        backend: &'static str,
        #[source]
        source: BoxError,
    },
    #[error("JPEG encoding of a {width}x{height} {format} frame failed ({backend})")]
    Backend {
        backend: &'static str,
        format: PixelFormat,
        width: u32,
        height: u32,
        #[source]
        source: BoxError,
    },
}

/// What becomes of JPEGs a camera delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Passthrough {
    /// Stamped (one copy), with the standard Huffman tables added when the camera left them
    /// out, so every decoder takes them.
    #[default]
    Stamped,
    /// The camera's bytes exactly, shared without a copy: no stamp, no tables added.
    Untouched,
}

/// Turns what a camera captured into a [`Frame`]. Owns its backend and scratch buffer, so
/// frames after the first allocate only the JPEG they produce.
#[derive(Debug)]
pub struct Encoder {
    backend: Box<dyn JpegBackend>,
    quality: u8,
    passthrough: Passthrough,
    /// RGB24 for backends that do not take a format, reused.
    rgb: Vec<u8>,
}

impl Encoder {
    /// `quality`: 1 to 100.
    pub fn new(backend: Box<dyn JpegBackend>, quality: u8, passthrough: Passthrough) -> Encoder {
        Encoder {
            backend,
            quality: quality.clamp(1, 100),
            passthrough,
            rgb: Vec::new(),
        }
    }

    /// The backend's name.
    pub fn backend(&self) -> &'static str {
        self.backend.name()
    }

    /// Whether the backend takes raw `image` as it is, without the conversion to RGB.
    pub fn takes(&self, image: &Image) -> bool {
        self.backend.takes(&RawImage::of(image))
    }

    pub fn encode(&mut self, captured: Captured) -> Result<Frame, EncodeError> {
        let Captured {
            seq,
            captured_at,
            image,
        } = captured;
        let (width, height) = image.size();
        let stamp = Stamp { seq, captured_at };
        let jpeg = if image.format().is_jpeg() {
            match self.passthrough {
                Passthrough::Untouched => image.data().clone(),
                // A JPEG whose markers we cannot read goes on as it came.
                Passthrough::Stamped => jpeg::prepare_passthrough(image.data(), Some(stamp))
                    .map_or_else(|| image.data().clone(), Bytes::from),
            }
        } else {
            let encoded = self.encode_raw(&image)?;
            // One copy: into an exact-size buffer, with the stamp after SOI.
            jpeg::prepare_passthrough(encoded, Some(stamp))
                .map_or_else(|| Bytes::copy_from_slice(encoded), Bytes::from)
        };
        Ok(Frame {
            jpeg,
            width,
            height,
            seq,
            captured_at,
        })
    }

    fn encode_raw(&mut self, image: &Image) -> Result<&[u8], EncodeError> {
        let error = |backend: &'static str, source: BoxError| EncodeError::Backend {
            backend,
            format: image.format(),
            width: image.width(),
            height: image.height(),
            source,
        };
        let name = self.backend.name();
        let raw = RawImage::of(image);
        if self.backend.takes(&raw) {
            return self
                .backend
                .encode(&raw, self.quality)
                .map_err(|e| error(name, e));
        }
        convert::to_rgb24(&raw, &mut self.rgb);
        let rgb = RawImage {
            format: PixelFormat::Rgb24,
            planes: [&self.rgb, &[], &[]],
            strides: [raw.width as usize * 3, 0, 0],
            ..raw
        };
        self.backend
            .encode(&rgb, self.quality)
            .map_err(|e| error(name, e))
    }
}

/// One backend a build has: its name, a line for `--help`, and how to start it.
#[derive(Clone)]
pub struct BackendKind {
    pub name: &'static str,
    pub summary: &'static str,
    pub start: fn() -> Result<Box<dyn JpegBackend>, BoxError>,
}

impl fmt::Debug for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// The encoders a build has, fastest first: `auto` takes the first.
#[derive(Debug, Clone)]
pub struct Backends {
    kinds: Vec<BackendKind>,
}

impl Backends {
    /// What this crate has: libjpeg-turbo (with the `turbojpeg` feature), then pure Rust.
    pub fn builtin() -> Backends {
        let kinds = vec![
            #[cfg(feature = "turbojpeg")]
            TurboBackend::kind(),
            RustBackend::kind(),
        ];
        Backends { kinds }
    }

    /// Adds `kind` at its place by speed: before every backend named in `faster_than`.
    pub fn add(&mut self, kind: BackendKind, faster_than: &[&str]) {
        let at = self
            .kinds
            .iter()
            .position(|k| faster_than.contains(&k.name))
            .unwrap_or(self.kinds.len());
        self.kinds.insert(at, kind);
    }

    pub fn kinds(&self) -> &[BackendKind] {
        &self.kinds
    }

    /// Starts the backend `name` (`auto`: the fastest this build has).
    pub fn start(&self, name: &str) -> Result<Box<dyn JpegBackend>, EncodeError> {
        let kind = if name == "auto" {
            self.kinds.first()
        } else {
            self.kinds.iter().find(|k| k.name == name)
        };
        let Some(kind) = kind else {
            return Err(EncodeError::Unknown {
                name: name.to_owned(),
                available: self.names(),
            });
        };
        (kind.start)().map_err(|source| EncodeError::Start {
            backend: kind.name,
            source,
        })
    }

    /// `auto (fastest), turbo, rust`.
    pub fn names(&self) -> String {
        let mut names = vec!["auto (the first of these)".to_owned()];
        names.extend(self.kinds.iter().map(|k| k.name.to_owned()));
        names.join(", ")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
