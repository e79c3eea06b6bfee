//! Between OpenCV's `Mat`s and the core's images: BGR frames to RGB pixels or stamped JPEGs,
//! undecoded camera buffers to JPEGs, and JPEG bytes or RGB pixels to BGR `Mat`s.

use bytes::Bytes;
use edgecam_core::camera::Image;
use edgecam_core::jpeg::{self, Stamp};
use opencv::core::{CV_8U, Mat, Vec3b, Vector};
use opencv::imgcodecs::{IMREAD_COLOR, IMWRITE_JPEG_QUALITY, imdecode, imencode};
use opencv::imgproc::{
    COLOR_BGR2RGB, COLOR_BGRA2BGR, COLOR_BGRA2RGB, COLOR_GRAY2RGB, COLOR_RGB2BGR, cvt_color_def,
};
use opencv::prelude::*;

use crate::error::OpenCvError;

const SOI: [u8; 2] = [0xFF, 0xD8];
const EOI: [u8; 2] = [0xFF, 0xD9];

/// What decoded frames become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PixelOutput {
    /// [`Image::Rgb8`], for the server's encoder.
    Rgb,
    /// [`Image::Jpeg`] from `imencode` at this quality, stamped like the server's frames.
    Jpeg { quality: u8 },
}

/// Turns decoded frames into images, reusing its buffers from frame to frame.
#[derive(Debug)]
pub(crate) struct Converter {
    output: PixelOutput,
    scratch: Mat,
    params: Vector<i32>,
}

impl Converter {
    pub(crate) fn new(output: PixelOutput) -> Converter {
        let quality = match output {
            PixelOutput::Jpeg { quality } => i32::from(quality),
            PixelOutput::Rgb => 0,
        };
        Converter {
            output,
            scratch: Mat::default(),
            params: Vector::from_slice(&[IMWRITE_JPEG_QUALITY, quality]),
        }
    }

    /// A decoded frame (8-bit BGR, BGRA or grey, as `VideoCapture` retrieves them) as an image.
    pub(crate) fn convert(&mut self, frame: &Mat, stamp: Stamp) -> Result<Image, OpenCvError> {
        let (width, height) = frame_size(frame)?;
        let channels = frame.channels();
        match self.output {
            PixelOutput::Rgb => {
                let code = match channels {
                    3 => COLOR_BGR2RGB,
                    1 => COLOR_GRAY2RGB,
                    _ => COLOR_BGRA2RGB,
                };
                cvt_color_def(frame, &mut self.scratch, code)
                    .map_err(OpenCvError::opencv("convert a frame from BGR to RGB"))?;
                let pixels = self
                    .scratch
                    .data_bytes()
                    .map_err(OpenCvError::opencv("read the RGB pixels"))?
                    .to_vec();
                Ok(Image::Rgb8 {
                    width,
                    height,
                    pixels,
                })
            }
            PixelOutput::Jpeg { .. } => {
                let source = if channels == 4 {
                    cvt_color_def(frame, &mut self.scratch, COLOR_BGRA2BGR)
                        .map_err(OpenCvError::opencv("convert a frame from BGRA to BGR"))?;
                    &self.scratch
                } else {
                    frame
                };
                let mut encoded = Vector::<u8>::new();
                let done = imencode(".jpg", source, &mut encoded, &self.params)
                    .map_err(OpenCvError::opencv("JPEG-encode a frame (imencode)"))?;
                if !done {
                    return Err(OpenCvError::BadFrame(format!(
                        "OpenCV's imencode refused a {width}x{height} frame with {channels} \
                         channel(s)"
                    )));
                }
                let mut data = encoded.to_vec();
                stamp.insert_into(&mut data);
                Ok(Image::Jpeg {
                    width,
                    height,
                    data: Bytes::from(data),
                })
            }
        }
    }
}

/// Width and height of a decoded 8-bit frame with 1, 3 or 4 channels; anything else is an error.
fn frame_size(frame: &Mat) -> Result<(u32, u32), OpenCvError> {
    if frame.empty() {
        return Err(OpenCvError::BadFrame(
            "OpenCV returned an empty frame".to_owned(),
        ));
    }
    let channels = frame.channels();
    if frame.depth() != CV_8U || ![1, 3, 4].contains(&channels) || frame.dims() != 2 {
        return Err(OpenCvError::BadFrame(format!(
            "OpenCV returned a frame of type {} ({} dimensions); only 8-bit grey, BGR and BGRA \
             frames are handled",
            frame.typ(),
            frame.dims()
        )));
    }
    match (u32::try_from(frame.cols()), u32::try_from(frame.rows())) {
        (Ok(width), Ok(height)) => Ok((width, height)),
        _ => Err(OpenCvError::BadFrame(format!(
            "OpenCV returned a frame of {}x{} pixels",
            frame.cols(),
            frame.rows()
        ))),
    }
}

/// An undecoded buffer from a camera that delivers MJPEG, as a JPEG image (not re-encoded,
/// not stamped). Padding some cameras leave after the end-of-image marker is cut off.
pub(crate) fn raw_jpeg(buffer: &impl MatTraitConst) -> Result<Image, OpenCvError> {
    if buffer.empty() {
        return Err(OpenCvError::BadFrame(
            "the camera delivered an empty buffer".to_owned(),
        ));
    }
    if buffer.depth() != CV_8U || buffer.channels() != 1 {
        return Err(OpenCvError::BadFrame(format!(
            "expected the camera's undecoded bytes, got a decoded frame of {}x{} (type {})",
            buffer.cols(),
            buffer.rows(),
            buffer.typ()
        )));
    }
    let bytes = buffer
        .data_bytes()
        .map_err(OpenCvError::opencv("read the camera's buffer"))?;
    let data = trim_after_eoi(bytes);
    if !jpeg::is_jpeg(data) {
        return Err(OpenCvError::not_jpeg("the camera's buffer", bytes));
    }
    let Some((width, height)) = jpeg::dimensions(data) else {
        return Err(OpenCvError::BadFrame(format!(
            "the camera's JPEG ({} bytes) has no readable frame header (SOF)",
            data.len()
        )));
    };
    Ok(Image::Jpeg {
        width,
        height,
        data: Bytes::copy_from_slice(data),
    })
}

/// `data` up to and including its last end-of-image marker, when it starts like a JPEG and
/// has one; `data` itself otherwise.
pub(crate) fn trim_after_eoi(data: &[u8]) -> &[u8] {
    if !data.starts_with(&SOI) || data.ends_with(&EOI) {
        return data;
    }
    match data.windows(2).rposition(|pair| pair == EOI) {
        Some(at) if at >= 2 => &data[..at + 2],
        _ => data,
    }
}

/// Decodes JPEG bytes into an 8-bit BGR `Mat`.
pub(crate) fn decode_jpeg(data: &[u8]) -> Result<Mat, OpenCvError> {
    if !jpeg::is_jpeg(data) {
        return Err(OpenCvError::not_jpeg("the frame", data));
    }
    let buffer = Mat::from_slice(data).map_err(OpenCvError::opencv("wrap JPEG bytes"))?;
    let decoded =
        imdecode(&buffer, IMREAD_COLOR).map_err(OpenCvError::opencv("decode a JPEG (imdecode)"))?;
    if decoded.empty() {
        return Err(OpenCvError::BadFrame(format!(
            "OpenCV could not decode a JPEG of {} bytes",
            data.len()
        )));
    }
    Ok(decoded)
}

/// Packed RGB pixels (`width * height * 3` bytes) as an 8-bit BGR `Mat` (a copy).
#[cfg_attr(not(feature = "window"), allow(dead_code))]
pub(crate) fn bgr_from_rgb(width: u32, height: u32, pixels: &[u8]) -> Result<Mat, OpenCvError> {
    let expected = (width as usize)
        .checked_mul(height as usize)
        .and_then(|n| n.checked_mul(3));
    if expected != Some(pixels.len()) {
        return Err(OpenCvError::BadFrame(format!(
            "{} bytes are not a {width}x{height} RGB image",
            pixels.len()
        )));
    }
    let (Ok(rows), Ok(cols)) = (i32::try_from(height), i32::try_from(width)) else {
        return Err(OpenCvError::BadFrame(format!(
            "a {width}x{height} image is too large for OpenCV"
        )));
    };
    let rgb = Mat::new_rows_cols_with_bytes::<Vec3b>(rows, cols, pixels)
        .map_err(OpenCvError::opencv("wrap RGB pixels"))?;
    let mut bgr = Mat::default();
    cvt_color_def(&rgb, &mut bgr, COLOR_RGB2BGR)
        .map_err(OpenCvError::opencv("convert RGB pixels to BGR"))?;
    Ok(bgr)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use edgecam_core::time::Timestamp;
    use opencv::core::{CV_8UC3, Scalar};

    use super::*;

    /// A `width x height` BGR frame of one colour.
    fn solid(width: i32, height: i32, [b, g, r]: [f64; 3]) -> Mat {
        Mat::new_rows_cols_with_default(height, width, CV_8UC3, Scalar::new(b, g, r, 0.0)).unwrap()
    }

    fn stamp(seq: u64) -> Stamp {
        Stamp {
            seq,
            captured_at: Timestamp(1_700_000_000_000_000 + seq),
        }
    }

    #[test]
    fn rgb_output_swaps_blue_and_red() {
        let mut converter = Converter::new(PixelOutput::Rgb);
        let image = converter
            .convert(&solid(8, 4, [10.0, 20.0, 30.0]), stamp(1))
            .unwrap();
        let Image::Rgb8 {
            width,
            height,
            pixels,
        } = image
        else {
            panic!("expected RGB");
        };
        assert_eq!((width, height), (8, 4));
        assert_eq!(pixels.len(), 8 * 4 * 3);
        assert!(pixels.chunks(3).all(|p| p == [30, 20, 10]));
    }

    #[test]
    fn jpeg_output_is_a_stamped_jpeg_of_the_right_size_that_decodes_back() {
        let mut converter = Converter::new(PixelOutput::Jpeg { quality: 90 });
        let image = converter
            .convert(&solid(64, 48, [200.0, 100.0, 50.0]), stamp(7))
            .unwrap();
        let Image::Jpeg {
            width,
            height,
            data,
        } = image
        else {
            panic!("expected JPEG");
        };
        assert_eq!((width, height), (64, 48));
        assert!(jpeg::is_jpeg(&data));
        assert_eq!(jpeg::dimensions(&data), Some((64, 48)));
        assert_eq!(Stamp::find(&data), Some(stamp(7)));
        let decoded = decode_jpeg(&data).unwrap();
        let pixel = decoded.at_2d::<Vec3b>(24, 32).unwrap();
        for (got, want) in pixel.0.iter().zip([200u8, 100, 50]) {
            assert!(got.abs_diff(want) <= 3, "{:?}", pixel.0);
        }
    }

    #[test]
    fn grey_and_bgra_frames_are_handled_and_others_refused() {
        let grey = Mat::new_rows_cols_with_default(4, 4, opencv::core::CV_8UC1, Scalar::all(77.0))
            .unwrap();
        let mut rgb = Converter::new(PixelOutput::Rgb);
        let Image::Rgb8 { pixels, .. } = rgb.convert(&grey, stamp(1)).unwrap() else {
            panic!("expected RGB");
        };
        assert!(pixels.iter().all(|&p| p == 77));
        let bgra = Mat::new_rows_cols_with_default(
            4,
            4,
            opencv::core::CV_8UC4,
            Scalar::new(1.0, 2.0, 3.0, 255.0),
        )
        .unwrap();
        let Image::Rgb8 { pixels, .. } = rgb.convert(&bgra, stamp(2)).unwrap() else {
            panic!("expected RGB");
        };
        assert_eq!(&pixels[..3], &[3, 2, 1]);
        assert!(matches!(
            Converter::new(PixelOutput::Jpeg { quality: 80 }).convert(&bgra, stamp(3)),
            Ok(Image::Jpeg { .. })
        ));
        let float = Mat::new_rows_cols_with_default(4, 4, opencv::core::CV_32FC3, Scalar::all(0.5))
            .unwrap();
        let err = rgb.convert(&float, stamp(4)).unwrap_err();
        assert!(err.to_string().contains("only 8-bit"), "{err}");
        let err = rgb.convert(&Mat::default(), stamp(5)).unwrap_err();
        assert_eq!(err.to_string(), "OpenCV returned an empty frame");
    }

    fn encoded(width: i32, height: i32) -> Vec<u8> {
        let mut buf = Vector::<u8>::new();
        assert!(
            imencode(
                ".jpg",
                &solid(width, height, [0.0, 0.0, 255.0]),
                &mut buf,
                &Vector::new()
            )
            .unwrap()
        );
        buf.to_vec()
    }

    #[test]
    fn a_raw_buffer_passes_through_with_its_padding_cut() {
        let jpeg = encoded(32, 16);
        let mut padded = jpeg.clone();
        padded.extend_from_slice(&[0; 100]);
        let buffer = Mat::from_slice(&padded).unwrap();
        let Image::Jpeg {
            width,
            height,
            data,
        } = raw_jpeg(&buffer).unwrap()
        else {
            panic!("expected JPEG");
        };
        assert_eq!((width, height), (32, 16));
        assert_eq!(&data[..], &jpeg[..], "byte for byte, padding gone");
    }

    #[test]
    fn a_raw_buffer_that_is_not_a_jpeg_is_refused() {
        let yuyv = vec![0x80u8; 64];
        let err = raw_jpeg(&Mat::from_slice(&yuyv).unwrap()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the camera's buffer is not a JPEG image (64 bytes, starting [80, 80, 80, 80])"
        );
        let truncated = encoded(32, 16);
        let err = raw_jpeg(&Mat::from_slice(&truncated[..truncated.len() / 2]).unwrap());
        assert!(matches!(err, Err(OpenCvError::NotJpeg { .. })), "{err:?}");
        let decoded = solid(4, 4, [0.0; 3]);
        assert!(matches!(raw_jpeg(&decoded), Err(OpenCvError::BadFrame(_))));
        assert!(matches!(
            raw_jpeg(&Mat::default()),
            Err(OpenCvError::BadFrame(_))
        ));
    }

    #[test]
    fn trimming_only_cuts_after_the_last_end_of_image() {
        assert_eq!(trim_after_eoi(b"\xFF\xD8ab\xFF\xD9"), b"\xFF\xD8ab\xFF\xD9");
        assert_eq!(
            trim_after_eoi(b"\xFF\xD8ab\xFF\xD9\0\0"),
            b"\xFF\xD8ab\xFF\xD9"
        );
        assert_eq!(
            trim_after_eoi(b"\xFF\xD8\xFF\xD9x\xFF\xD9\0"),
            b"\xFF\xD8\xFF\xD9x\xFF\xD9",
            "an embedded thumbnail's EOI is not the end"
        );
        assert_eq!(trim_after_eoi(b"\xFF\xD8abc"), b"\xFF\xD8abc");
        assert_eq!(trim_after_eoi(b"\xFF\xD9"), b"\xFF\xD9");
        assert_eq!(trim_after_eoi(b"nope\xFF\xD9\0"), b"nope\xFF\xD9\0");
        assert_eq!(trim_after_eoi(b""), b"");
    }

    #[test]
    fn rgb_pixels_become_bgr_and_bad_buffers_are_errors() {
        let pixels: Vec<u8> = [1u8, 2, 3].repeat(6);
        let bgr = bgr_from_rgb(3, 2, &pixels).unwrap();
        assert_eq!((bgr.cols(), bgr.rows(), bgr.channels()), (3, 2, 3));
        assert_eq!(bgr.at_2d::<Vec3b>(1, 2).unwrap().0, [3, 2, 1]);
        let err = bgr_from_rgb(3, 2, &pixels[1..]).unwrap_err();
        assert_eq!(err.to_string(), "17 bytes are not a 3x2 RGB image");
        assert!(bgr_from_rgb(u32::MAX, u32::MAX, &[]).is_err());
        assert!(matches!(
            decode_jpeg(b"not a jpeg"),
            Err(OpenCvError::NotJpeg { .. })
        ));
        assert!(
            decode_jpeg(b"\xFF\xD8garbage\xFF\xD9").is_err(),
            "a JPEG-shaped lie fails to decode"
        );
    }
}
