//! The pure-Rust backend (`jpeg-encoder`, AVX2 where the CPU has it): needs nothing but the
//! Rust toolchain, so it is what a fresh machine has.

use edgecam_core::BoxError;
use edgecam_core::camera::PixelFormat;

use crate::{BackendKind, JpegBackend, RawImage};

#[derive(Debug, Default)]
pub struct RustBackend {
    /// The JPEG, reused.
    out: Vec<u8>,
}

impl RustBackend {
    pub fn kind() -> BackendKind {
        BackendKind {
            name: "rust",
            summary: "pure Rust (jpeg-encoder): needs nothing installed; no SIMD on ARMv7",
            start: || Ok(Box::new(RustBackend::default())),
        }
    }
}

impl JpegBackend for RustBackend {
    fn name(&self) -> &'static str {
        "rust"
    }

    fn takes(&self, image: &RawImage<'_>) -> bool {
        matches!(image.format, PixelFormat::Rgb24 | PixelFormat::Bgr24) && image.is_packed()
    }

    fn encode(&mut self, image: &RawImage<'_>, quality: u8) -> Result<&[u8], BoxError> {
        let (Ok(w), Ok(h)) = (u16::try_from(image.width), u16::try_from(image.height)) else {
            return Err("JPEG allows at most 65535x65535".into());
        };
        let color = match image.format {
            PixelFormat::Bgr24 => jpeg_encoder::ColorType::Bgr,
            _ => jpeg_encoder::ColorType::Rgb,
        };
        self.out.clear();
        let mut encoder = jpeg_encoder::Encoder::new(&mut self.out, quality);
        // 4:2:0 at every quality, as the other backends and cameras do.
        encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
        encoder.encode(image.planes[0], w, h, color)?;
        Ok(&self.out)
    }
}
