//! JPEG encoding, once per captured frame. The pure-Rust `jpeg-encoder` is the default, so a
//! fresh machine needs nothing but the Rust toolchain; with the `turbojpeg` feature the system
//! libjpeg-turbo is available too (the only choice with SIMD on ARMv7).

use bytes::Bytes;
use edgecam_core::BoxError;
use edgecam_core::camera::{Captured, Image};
use edgecam_core::frame::Frame;
use edgecam_core::jpeg::Stamp;
use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum EncoderKind {
    /// Pure Rust (`jpeg-encoder`, AVX2 where the CPU has it).
    #[default]
    Rust,
    /// libjpeg-turbo (in builds with `--features turbojpeg`; faster, and SIMD on ARMv7).
    Turbo,
}

#[derive(Debug, Error)]
pub enum EncodeError {
    #[error(
        "this edgecam was built without libjpeg-turbo; use --encoder rust, or rebuild with --features turbojpeg (needs libturbojpeg0-dev)"
    )]
    Unavailable,
    #[error("a {width}x{height} frame cannot be JPEG-encoded: JPEG allows at most 65535x65535")]
    TooLarge { width: u32, height: u32 },
    #[error(
        "the camera delivered {actual} bytes for a {width}x{height} RGB frame, expected {expected}"
    )]
    BadBuffer {
        width: u32,
        height: u32,
        expected: usize,
        actual: usize,
    },
    #[error("JPEG encoding of a {width}x{height} frame failed")]
    Backend {
        width: u32,
        height: u32,
        #[source]
        source: BoxError,
    },
}

/// Turns what a camera captured into a [`Frame`]: RGB is encoded (and stamped with its sequence
/// number and capture time), JPEG passes through untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoder {
    pub kind: EncoderKind,
    /// 1 to 100.
    pub quality: u8,
}

impl Encoder {
    /// Whether this build can use the chosen encoder.
    pub fn check(&self) -> Result<(), EncodeError> {
        match self.kind {
            EncoderKind::Turbo if !cfg!(feature = "turbojpeg") => Err(EncodeError::Unavailable),
            _ => Ok(()),
        }
    }

    pub fn encode(&self, captured: Captured) -> Result<Frame, EncodeError> {
        let Captured {
            seq,
            captured_at,
            image,
        } = captured;
        let (width, height, jpeg) = match image {
            Image::Jpeg {
                width,
                height,
                data,
            } => (width, height, data),
            Image::Rgb8 {
                width,
                height,
                pixels,
            } => {
                let mut jpeg = self.encode_rgb(width, height, &pixels)?;
                Stamp { seq, captured_at }.insert_into(&mut jpeg);
                (width, height, Bytes::from(jpeg))
            }
        };
        Ok(Frame {
            jpeg,
            width,
            height,
            seq,
            captured_at,
        })
    }

    fn encode_rgb(&self, width: u32, height: u32, pixels: &[u8]) -> Result<Vec<u8>, EncodeError> {
        let (Ok(w), Ok(h)) = (u16::try_from(width), u16::try_from(height)) else {
            return Err(EncodeError::TooLarge { width, height });
        };
        let expected = usize::from(w) * usize::from(h) * 3;
        if pixels.len() != expected {
            return Err(EncodeError::BadBuffer {
                width,
                height,
                expected,
                actual: pixels.len(),
            });
        }
        let backend = |source: BoxError| EncodeError::Backend {
            width,
            height,
            source,
        };
        match self.kind {
            EncoderKind::Rust => {
                let mut out = Vec::with_capacity(expected / 8);
                jpeg_encoder::Encoder::new(&mut out, self.quality)
                    .encode(pixels, w, h, jpeg_encoder::ColorType::Rgb)
                    .map_err(|e| backend(e.into()))?;
                Ok(out)
            }
            #[cfg(feature = "turbojpeg")]
            EncoderKind::Turbo => {
                let image = turbojpeg::Image {
                    pixels,
                    width: usize::from(w),
                    pitch: usize::from(w) * 3,
                    height: usize::from(h),
                    format: turbojpeg::PixelFormat::RGB,
                };
                let out =
                    turbojpeg::compress(image, i32::from(self.quality), turbojpeg::Subsamp::Sub2x2)
                        .map_err(|e| backend(e.into()))?;
                Ok(out.to_vec())
            }
            #[cfg(not(feature = "turbojpeg"))]
            EncoderKind::Turbo => Err(EncodeError::Unavailable),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use edgecam_core::jpeg;
    use edgecam_core::time::Timestamp;

    fn gradient(width: u32, height: u32) -> Captured {
        let pixels = (0..width * height * 3).map(|i| (i % 251) as u8).collect();
        Captured {
            seq: 7,
            captured_at: Timestamp(123),
            image: Image::Rgb8 {
                width,
                height,
                pixels,
            },
        }
    }

    fn kinds() -> Vec<EncoderKind> {
        vec![
            EncoderKind::Rust,
            #[cfg(feature = "turbojpeg")]
            EncoderKind::Turbo,
        ]
    }

    #[test]
    fn encodes_a_stamped_decodable_jpeg() {
        for kind in kinds() {
            let frame = Encoder { kind, quality: 80 }
                .encode(gradient(64, 48))
                .unwrap();
            assert!(jpeg::is_jpeg(&frame.jpeg), "{kind:?}");
            assert_eq!(jpeg::dimensions(&frame.jpeg), Some((64, 48)));
            assert_eq!(
                jpeg::Stamp::find(&frame.jpeg),
                Some(jpeg::Stamp {
                    seq: 7,
                    captured_at: Timestamp(123)
                })
            );
            let mut decoder = jpeg_decoder::Decoder::new(&frame.jpeg[..]);
            let pixels = decoder.decode().unwrap();
            assert_eq!(pixels.len(), 64 * 48 * 3);
        }
    }

    #[test]
    fn jpeg_passes_through_untouched() {
        let data = Bytes::from_static(b"\xFF\xD8not really\xFF\xD9");
        let captured = Captured {
            seq: 1,
            captured_at: Timestamp(5),
            image: Image::Jpeg {
                width: 2,
                height: 2,
                data: data.clone(),
            },
        };
        let frame = Encoder {
            kind: EncoderKind::Rust,
            quality: 80,
        }
        .encode(captured)
        .unwrap();
        assert_eq!(frame.jpeg.as_ptr(), data.as_ptr(), "no copy");
    }

    #[cfg(not(feature = "turbojpeg"))]
    #[test]
    fn turbo_in_a_build_without_it_is_a_clear_error() {
        let encoder = Encoder {
            kind: EncoderKind::Turbo,
            quality: 80,
        };
        assert!(matches!(encoder.check(), Err(EncodeError::Unavailable)));
        assert!(matches!(
            encoder.encode(gradient(8, 8)),
            Err(EncodeError::Unavailable)
        ));
    }

    #[test]
    fn a_short_buffer_is_an_error_not_a_panic() {
        let mut captured = gradient(16, 16);
        if let Image::Rgb8 { pixels, .. } = &mut captured.image {
            pixels.truncate(10);
        }
        let err = Encoder {
            kind: EncoderKind::Rust,
            quality: 80,
        }
        .encode(captured)
        .unwrap_err();
        assert!(matches!(
            err,
            EncodeError::BadBuffer {
                expected: 768,
                actual: 10,
                ..
            }
        ));
    }
}
