//! [`OpenCvEncoder`]: OpenCV's `imencode` as one of the server's JPEG backends (`--encoder
//! opencv`). It takes BGR24, OpenCV's own order, without a conversion.

use edgecam_core::BoxError;
use edgecam_core::camera::PixelFormat;
use edgecam_encode::{BackendKind, JpegBackend, RawImage};
use opencv::core::Vector;
use opencv::imgcodecs::{IMWRITE_JPEG_QUALITY, imencode};

use crate::error::OpenCvError;
use crate::image::ToBgr;

/// JPEG encoding with OpenCV's `imencode` (libjpeg-turbo inside Debian's OpenCV, with its SIMD),
/// 4:2:0 as libjpeg does by default.
///
/// Takes BGR24 (packed: encoded straight from the frame's bytes; strided: its rows packed
/// first) and RGB24 (through `cvtColor`); the server's encoder turns anything else into packed
/// RGB24 before calling it. Buffers are kept from frame to frame.
#[derive(Debug, Default)]
pub struct OpenCvEncoder {
    to_bgr: ToBgr,
    /// `imencode`'s output, reused.
    encoded: Vector<u8>,
}

impl OpenCvEncoder {
    pub fn new() -> OpenCvEncoder {
        OpenCvEncoder::default()
    }

    /// `--encoder opencv` for the server's list of backends.
    pub fn kind() -> BackendKind {
        BackendKind {
            name: "opencv",
            summary: "OpenCV's imencode (libjpeg-turbo inside Debian's OpenCV): BGR frames \
                      without a conversion",
            start: || Ok(Box::new(OpenCvEncoder::new())),
        }
    }
}

impl JpegBackend for OpenCvEncoder {
    fn name(&self) -> &'static str {
        "opencv"
    }

    fn takes(&self, image: &RawImage<'_>) -> bool {
        matches!(image.format, PixelFormat::Bgr24 | PixelFormat::Rgb24)
    }

    fn encode(&mut self, image: &RawImage<'_>, quality: u8) -> Result<&[u8], BoxError> {
        let (width, height) = (image.width, image.height);
        let bgr = self.to_bgr.convert(image)?;
        let params = Vector::from_slice(&[IMWRITE_JPEG_QUALITY, i32::from(quality.clamp(1, 100))]);
        let done = imencode(".jpg", &bgr, &mut self.encoded, &params)
            .map_err(OpenCvError::opencv("JPEG-encode a frame (imencode)"))?;
        if !done {
            return Err(Box::new(OpenCvError::BadFrame(format!(
                "OpenCV's imencode refused a {width}x{height} {} frame",
                image.format
            ))));
        }
        Ok(self.encoded.as_slice())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use edgecam_core::camera::{Captured, Image};
    use edgecam_core::jpeg::{self, Stamp};
    use edgecam_core::time::Timestamp;
    use edgecam_encode::{Encoder, Passthrough};
    use opencv::core::{Mat, Vec3b};
    use opencv::prelude::*;

    use super::*;
    use crate::image::decode_jpeg;

    /// The BGR pixel at (`row`, `col`) of a JPEG, decoded by OpenCV.
    fn decoded_pixel(data: &[u8], row: i32, col: i32) -> [u8; 3] {
        let decoded: Mat = decode_jpeg(data).unwrap();
        decoded.at_2d::<Vec3b>(row, col).unwrap().0
    }

    fn close(got: [u8; 3], want: [u8; 3]) -> bool {
        got.iter().zip(want).all(|(g, w)| g.abs_diff(w) <= 4)
    }

    /// Luma sampling factors (horizontal, vertical) from the JPEG's SOF0 marker.
    fn luma_sampling(data: &[u8]) -> (u8, u8) {
        let at = data.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        // FF C0, length (2), precision, height (2), width (2), components, then id, HV, table.
        let hv = data[at + 11];
        (hv >> 4, hv & 0x0F)
    }

    #[test]
    fn bgr_packed_and_strided_and_rgb_encode_to_the_same_colours() {
        let mut encoder = OpenCvEncoder::new();
        let bgr =
            Image::packed(PixelFormat::Bgr24, 32, 16, [200u8, 100, 50].repeat(32 * 16)).unwrap();
        let raw = RawImage::of(&bgr);
        assert!(encoder.takes(&raw));
        let out = encoder.encode(&raw, 90).unwrap().to_vec();
        assert_eq!(jpeg::dimensions(&out), Some((32, 16)));
        assert_eq!(luma_sampling(&out), (2, 2), "4:2:0");
        let got = decoded_pixel(&out, 8, 16);
        assert!(close(got, [200, 100, 50]), "{got:?}");

        let mut padded = Vec::new();
        for _ in 0..16 {
            padded.extend_from_slice(&[200u8, 100, 50].repeat(32));
            padded.extend_from_slice(&[0; 8]);
        }
        let strided =
            Image::with_strides(PixelFormat::Bgr24, 32, 16, [32 * 3 + 8, 0, 0], padded).unwrap();
        let out = encoder
            .encode(&RawImage::of(&strided), 90)
            .unwrap()
            .to_vec();
        let got = decoded_pixel(&out, 15, 31);
        assert!(
            close(got, [200, 100, 50]),
            "the padding is not encoded: {got:?}"
        );

        let rgb =
            Image::packed(PixelFormat::Rgb24, 32, 16, [50u8, 100, 200].repeat(32 * 16)).unwrap();
        assert!(encoder.takes(&RawImage::of(&rgb)));
        let out = encoder.encode(&RawImage::of(&rgb), 90).unwrap().to_vec();
        let got = decoded_pixel(&out, 8, 16);
        assert!(close(got, [200, 100, 50]), "RGB swapped to BGR: {got:?}");

        let yuyv = Image::packed(PixelFormat::Yuyv, 32, 16, vec![128; 32 * 16 * 2]).unwrap();
        assert!(!encoder.takes(&RawImage::of(&yuyv)));
    }

    #[test]
    fn quality_changes_the_size() {
        // Noise, so that quality matters.
        let mut state = 0x2545_f491_u32;
        let pixels: Vec<u8> = (0..64 * 64 * 3)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state.to_le_bytes()[0]
            })
            .collect();
        let image = Image::packed(PixelFormat::Bgr24, 64, 64, pixels).unwrap();
        let mut encoder = OpenCvEncoder::new();
        let low = encoder.encode(&RawImage::of(&image), 20).unwrap().len();
        let high = encoder.encode(&RawImage::of(&image), 95).unwrap().len();
        assert!(low * 2 < high, "{low} vs {high}");
    }

    #[test]
    fn the_servers_encoder_stamps_what_it_encodes() {
        let backend = (OpenCvEncoder::kind().start)().unwrap();
        assert_eq!(backend.name(), "opencv");
        let mut encoder = Encoder::new(backend, 80, Passthrough::Stamped);
        let image =
            Image::packed(PixelFormat::Bgr24, 16, 8, [10u8, 20, 30].repeat(16 * 8)).unwrap();
        let captured_at = Timestamp(1_700_000_000_000_000);
        let frame = encoder
            .encode(Captured {
                seq: 7,
                captured_at,
                image,
            })
            .unwrap();
        assert_eq!((frame.width, frame.height), (16, 8));
        assert_eq!(
            Stamp::find(&frame.jpeg),
            Some(Stamp {
                seq: 7,
                captured_at
            })
        );
        // NV12 is turned into RGB24 by the encoder first, then into BGR here.
        let nv12 = Image::packed(PixelFormat::Nv12, 16, 8, vec![128; 16 * 8 * 3 / 2]).unwrap();
        let frame = encoder
            .encode(Captured {
                seq: 8,
                captured_at,
                image: nv12,
            })
            .unwrap();
        assert!(close(decoded_pixel(&frame.jpeg, 4, 8), [128, 128, 128]));
    }
}
