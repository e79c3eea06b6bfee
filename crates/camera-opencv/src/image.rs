//! Between OpenCV's `Mat`s and the core's images: decoded frames to BGR24 images, undecoded
//! camera buffers to JPEG images, JPEG bytes to BGR `Mat`s, and raw pixels of any format to a
//! BGR `Mat` ([`ToBgr`], for `imencode` and `imshow`).

use bytes::Bytes;
use edgecam_core::camera::{Image, PixelFormat};
use edgecam_core::jpeg;
use edgecam_encode::{RawImage, to_rgb24};
use opencv::boxed_ref::BoxedRef;
use opencv::core::{_InputArray, CV_8U, Mat, ToInputArray, Vec3b};
use opencv::imgcodecs::{IMREAD_COLOR, imdecode};
use opencv::imgproc::{COLOR_BGRA2BGR, COLOR_GRAY2BGR, COLOR_RGB2BGR, cvt_color_def};
use opencv::prelude::*;

use crate::error::OpenCvError;

const SOI: [u8; 2] = [0xFF, 0xD8];
const EOI: [u8; 2] = [0xFF, 0xD9];

/// Turns decoded frames into BGR24 images, reusing its buffer from frame to frame.
#[derive(Debug, Default)]
pub(crate) struct Converter {
    /// Grey and BGRA frames converted to BGR.
    scratch: Mat,
}

impl Converter {
    /// A decoded frame (8-bit BGR, BGRA or grey, as `VideoCapture` retrieves them) as a BGR24
    /// image, OpenCV's own order: one copy out of the `Mat` for BGR, a `cvtColor` before it for
    /// grey and BGRA.
    pub(crate) fn convert(
        &mut self,
        frame: &(impl MatTraitConst + ToInputArray),
    ) -> Result<Image, OpenCvError> {
        let (width, height) = frame_size(frame)?;
        let pixels = match frame.channels() {
            3 => packed_bytes(frame)?,
            channels => {
                let code = if channels == 1 {
                    COLOR_GRAY2BGR
                } else {
                    COLOR_BGRA2BGR
                };
                cvt_color_def(frame, &mut self.scratch, code)
                    .map_err(OpenCvError::opencv("convert a frame to BGR"))?;
                packed_bytes(&self.scratch)?
            }
        };
        Ok(Image::packed(PixelFormat::Bgr24, width, height, pixels)?)
    }
}

/// The pixels of an 8-bit 3-channel `Mat`, copied out once, rows one after the other.
fn packed_bytes(bgr: &impl MatTraitConst) -> Result<Vec<u8>, OpenCvError> {
    if bgr.is_continuous() {
        return Ok(bgr
            .data_bytes()
            .map_err(OpenCvError::opencv("read the BGR pixels"))?
            .to_vec());
    }
    // A region of a larger picture: its rows, one after the other.
    let mut pixels = Vec::new();
    for y in 0..bgr.rows() {
        let row = bgr
            .at_row::<Vec3b>(y)
            .map_err(OpenCvError::opencv("read a row of BGR pixels"))?;
        pixels.extend(row.iter().flat_map(|pixel| pixel.0));
    }
    Ok(pixels)
}

/// Width and height of a decoded 8-bit frame with 1, 3 or 4 channels; anything else is an error.
fn frame_size(frame: &impl MatTraitConst) -> Result<(u32, u32), OpenCvError> {
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

/// An undecoded buffer from a camera that delivers MJPEG, as a JPEG image (one copy out of the
/// `Mat`; not re-encoded, not stamped: the server's encoder stamps it). Padding some cameras
/// leave after the end-of-image marker is cut off.
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
    Ok(Image::jpeg(width, height, Bytes::copy_from_slice(data))?)
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

/// Buffers to see raw pixels of any format as an 8-bit BGR `Mat`, reused from frame to frame.
#[derive(Debug, Default)]
pub(crate) struct ToBgr {
    /// Strided rows packed together (OpenCV cannot be handed a stride without unsafe code).
    rows: Vec<u8>,
    /// YUV formats as RGB24, by `edgecam_encode::to_rgb24`.
    rgb: Vec<u8>,
    /// RGB turned into BGR by `cvtColor`.
    bgr: Mat,
}

/// Raw pixels as BGR: a `Mat` over the caller's (or the packed) bytes, or one converted.
#[derive(Debug)]
pub(crate) enum Bgr<'a> {
    Wrapped(BoxedRef<'a, Mat>),
    Converted(&'a Mat),
}

impl ToInputArray for Bgr<'_> {
    fn input_array(&self) -> opencv::Result<BoxedRef<'_, _InputArray>> {
        match self {
            Bgr::Wrapped(mat) => mat.input_array(),
            Bgr::Converted(mat) => mat.input_array(),
        }
    }
}

impl ToBgr {
    /// `image` as BGR: BGR24 as it is (packed: no copy; strided: its rows copied once), RGB24
    /// through `cvtColor`, YUV through [`to_rgb24`] and then `cvtColor`. JPEG is refused.
    pub(crate) fn convert<'a>(&'a mut self, image: &RawImage<'a>) -> Result<Bgr<'a>, OpenCvError> {
        match image.format {
            PixelFormat::Bgr24 => Ok(Bgr::Wrapped(wrap_3ch(image, &mut self.rows)?)),
            PixelFormat::Rgb24 => {
                let rgb = wrap_3ch(image, &mut self.rows)?;
                cvt_color_def(&rgb, &mut self.bgr, COLOR_RGB2BGR)
                    .map_err(OpenCvError::opencv("convert RGB pixels to BGR"))?;
                Ok(Bgr::Converted(&self.bgr))
            }
            PixelFormat::Jpeg => Err(OpenCvError::BadFrame(
                "a JPEG is not raw pixels; decode it first".to_owned(),
            )),
            _ => {
                to_rgb24(image, &mut self.rgb);
                let packed = RawImage {
                    format: PixelFormat::Rgb24,
                    planes: [&self.rgb, &[], &[]],
                    strides: [(image.width as usize).saturating_mul(3), 0, 0],
                    ..*image
                };
                let rgb = wrap_3ch(&packed, &mut self.rows)?;
                cvt_color_def(&rgb, &mut self.bgr, COLOR_RGB2BGR)
                    .map_err(OpenCvError::opencv("convert RGB pixels to BGR"))?;
                Ok(Bgr::Converted(&self.bgr))
            }
        }
    }
}

/// The first plane of a 3-byte-per-pixel `image` as an 8-bit 3-channel `Mat`: over its bytes
/// when packed, over its rows copied into `rows` when strided. Too few bytes is an error.
fn wrap_3ch<'a>(
    image: &RawImage<'a>,
    rows: &'a mut Vec<u8>,
) -> Result<BoxedRef<'a, Mat>, OpenCvError> {
    let (width, height) = (image.width, image.height);
    let (Ok(cols), Ok(row_count)) = (i32::try_from(width), i32::try_from(height)) else {
        return Err(OpenCvError::BadFrame(format!(
            "a {width}x{height} image is too large for OpenCV"
        )));
    };
    let row = (width as usize).saturating_mul(3);
    let len = row.saturating_mul(height as usize);
    let short = || {
        OpenCvError::BadFrame(format!(
            "{} bytes with rows {} bytes apart are not a {width}x{height} {} image",
            image.planes[0].len(),
            image.strides[0],
            image.format
        ))
    };
    let plane = image.planes[0];
    let stride = image.strides[0];
    let bytes: &'a [u8] = if stride == row {
        plane.get(..len).ok_or_else(short)?
    } else {
        rows.clear();
        for y in 0..height as usize {
            let start = y.saturating_mul(stride);
            let src = plane
                .get(start..start.saturating_add(row))
                .ok_or_else(short)?;
            rows.extend_from_slice(src);
        }
        let rows: &'a Vec<u8> = rows;
        rows
    };
    Mat::new_rows_cols_with_bytes::<Vec3b>(row_count, cols, bytes)
        .map_err(OpenCvError::opencv("wrap the pixels in a Mat"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use opencv::core::{CV_8UC3, Scalar, Vector};
    use opencv::imgcodecs::imencode;

    use super::*;

    /// A `width x height` BGR frame of one colour.
    fn solid(width: i32, height: i32, [b, g, r]: [f64; 3]) -> Mat {
        Mat::new_rows_cols_with_default(height, width, CV_8UC3, Scalar::new(b, g, r, 0.0)).unwrap()
    }

    #[test]
    fn decoded_frames_become_packed_bgr24_in_opencvs_order() {
        let image = Converter::default()
            .convert(&solid(8, 4, [10.0, 20.0, 30.0]))
            .unwrap();
        assert_eq!(image.format(), PixelFormat::Bgr24);
        assert_eq!(image.size(), (8, 4));
        assert!(image.is_packed());
        assert_eq!(image.data().len(), 8 * 4 * 3);
        assert!(image.data().chunks(3).all(|p| p == [10, 20, 30]));
    }

    #[test]
    fn a_region_of_a_larger_frame_is_packed_row_by_row() {
        let mut big = solid(8, 4, [1.0, 2.0, 3.0]);
        *big.at_2d_mut::<Vec3b>(1, 2).unwrap() = Vec3b::from([9, 8, 7]);
        let view = Mat::roi(&big, opencv::core::Rect::new(2, 1, 3, 2)).unwrap();
        assert!(!view.is_continuous());
        let image = Converter::default().convert(&view).unwrap();
        assert_eq!(image.size(), (3, 2));
        assert_eq!(image.data().len(), 3 * 2 * 3);
        assert_eq!(&image.data()[..6], &[9, 8, 7, 1, 2, 3]);
    }

    #[test]
    fn grey_and_bgra_frames_are_converted_to_bgr_and_others_refused() {
        let mut converter = Converter::default();
        let grey = Mat::new_rows_cols_with_default(4, 4, opencv::core::CV_8UC1, Scalar::all(77.0))
            .unwrap();
        let image = converter.convert(&grey).unwrap();
        assert_eq!(image.format(), PixelFormat::Bgr24);
        assert!(image.data().iter().all(|&p| p == 77));
        let bgra = Mat::new_rows_cols_with_default(
            4,
            4,
            opencv::core::CV_8UC4,
            Scalar::new(1.0, 2.0, 3.0, 255.0),
        )
        .unwrap();
        let image = converter.convert(&bgra).unwrap();
        assert_eq!(&image.data()[..3], &[1, 2, 3]);
        assert_eq!(image.data().len(), 4 * 4 * 3);
        let float = Mat::new_rows_cols_with_default(4, 4, opencv::core::CV_32FC3, Scalar::all(0.5))
            .unwrap();
        let err = converter.convert(&float).unwrap_err();
        assert!(err.to_string().contains("only 8-bit"), "{err}");
        let err = converter.convert(&Mat::default()).unwrap_err();
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
        let image = raw_jpeg(&buffer).unwrap();
        assert_eq!(image.format(), PixelFormat::Jpeg);
        assert_eq!(image.size(), (32, 16));
        assert_eq!(&image.data()[..], &jpeg[..], "byte for byte, padding gone");
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

    fn raw(image: &Image) -> RawImage<'_> {
        RawImage::of(image)
    }

    fn pixel(bgr: &Bgr<'_>, row: i32, col: i32) -> [u8; 3] {
        match bgr {
            Bgr::Wrapped(mat) => mat.at_2d::<Vec3b>(row, col).unwrap().0,
            Bgr::Converted(mat) => mat.at_2d::<Vec3b>(row, col).unwrap().0,
        }
    }

    #[test]
    fn raw_pixels_of_every_format_become_bgr() {
        let mut to_bgr = ToBgr::default();
        // 3x2 BGR with rows padded to 12 bytes: the padding is skipped.
        let mut padded = Vec::new();
        for _ in 0..2 {
            padded.extend_from_slice(&[1, 2, 3].repeat(3));
            padded.extend_from_slice(&[99; 3]);
        }
        let bgr = Image::with_strides(PixelFormat::Bgr24, 3, 2, [12, 0, 0], padded).unwrap();
        let mat = to_bgr.convert(&raw(&bgr)).unwrap();
        assert!(matches!(mat, Bgr::Wrapped(_)));
        assert_eq!(pixel(&mat, 1, 2), [1, 2, 3]);
        let packed = Image::packed(PixelFormat::Bgr24, 3, 2, [4u8, 5, 6].repeat(6)).unwrap();
        assert_eq!(
            pixel(&to_bgr.convert(&raw(&packed)).unwrap(), 0, 0),
            [4, 5, 6]
        );
        let rgb = Image::packed(PixelFormat::Rgb24, 3, 2, [1u8, 2, 3].repeat(6)).unwrap();
        assert_eq!(pixel(&to_bgr.convert(&raw(&rgb)).unwrap(), 1, 2), [3, 2, 1]);
        // Mid grey in YUYV: Y = 128, U = V = 128.
        let yuyv = Image::packed(PixelFormat::Yuyv, 4, 2, vec![128u8; 16]).unwrap();
        let grey = pixel(&to_bgr.convert(&raw(&yuyv)).unwrap(), 1, 3);
        assert!(grey.iter().all(|c| c.abs_diff(128) <= 1), "{grey:?}");
        let jpeg = Image::jpeg(3, 2, encoded(3, 2)).unwrap();
        assert!(matches!(
            to_bgr.convert(&raw(&jpeg)),
            Err(OpenCvError::BadFrame(_))
        ));
    }

    #[test]
    fn raw_images_that_lie_about_their_bytes_are_errors() {
        let mut to_bgr = ToBgr::default();
        let short = [0u8; 17];
        let lying = RawImage {
            format: PixelFormat::Bgr24,
            width: 3,
            height: 2,
            planes: [&short, &[], &[]],
            strides: [9, 0, 0],
        };
        let err = to_bgr.convert(&lying).unwrap_err();
        assert_eq!(
            err.to_string(),
            "17 bytes with rows 9 bytes apart are not a 3x2 bgr24 image"
        );
        let strided = RawImage {
            strides: [12, 0, 0],
            ..lying
        };
        assert!(to_bgr.convert(&strided).is_err());
        let huge = RawImage {
            width: u32::MAX,
            ..lying
        };
        assert!(to_bgr.convert(&huge).is_err());
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
