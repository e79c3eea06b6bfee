//! [`Image`]: pixels as a camera delivers them, in one of several [`PixelFormat`]s, with row
//! strides, held as [`Bytes`] so that a reader's buffer is handed on without a copy.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use thiserror::Error;

/// How the bytes of an [`Image`] are laid out. YUV formats carry JPEG's (JFIF) YCbCr samples:
/// they are encoded as they are, without a colour conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PixelFormat {
    /// Packed 8-bit R, G, B.
    Rgb24,
    /// Packed 8-bit B, G, R (OpenCV's order).
    Bgr24,
    /// Packed 4:2:2, `Y0 U Y1 V` for each pair of pixels.
    Yuyv,
    /// 4:2:0: a Y plane, then one plane of interleaved `U V` at half width and height.
    Nv12,
    /// As [`Nv12`](PixelFormat::Nv12) with `V U` order.
    Nv21,
    /// 4:2:0: Y, U and V planes, chroma at half width and height.
    I420,
    /// An already encoded JPEG (MJPEG cameras): passed through, never re-encoded.
    Jpeg,
}

impl PixelFormat {
    /// Every format, in the order `--help` texts list them.
    pub const ALL: [PixelFormat; 7] = [
        PixelFormat::Jpeg,
        PixelFormat::Yuyv,
        PixelFormat::Nv12,
        PixelFormat::Nv21,
        PixelFormat::I420,
        PixelFormat::Rgb24,
        PixelFormat::Bgr24,
    ];

    /// The name specs and logs use (`mjpeg`, `nv12`, ...).
    pub fn name(self) -> &'static str {
        match self {
            PixelFormat::Rgb24 => "rgb24",
            PixelFormat::Bgr24 => "bgr24",
            PixelFormat::Yuyv => "yuyv",
            PixelFormat::Nv12 => "nv12",
            PixelFormat::Nv21 => "nv21",
            PixelFormat::I420 => "i420",
            PixelFormat::Jpeg => "mjpeg",
        }
    }

    /// Whether frames of this format are already JPEG.
    pub fn is_jpeg(self) -> bool {
        self == PixelFormat::Jpeg
    }

    /// For each plane: the bytes a row of a `width`-wide picture needs at the least, and how
    /// many rows a `height`-high picture has. Empty for JPEG.
    pub fn planes(self, width: u32, height: u32) -> Vec<(usize, usize)> {
        let (w, h) = (width as usize, height as usize);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        match self {
            PixelFormat::Rgb24 | PixelFormat::Bgr24 => vec![(w.saturating_mul(3), h)],
            PixelFormat::Yuyv => vec![(cw.saturating_mul(4), h)],
            PixelFormat::Nv12 | PixelFormat::Nv21 => vec![(w, h), (cw.saturating_mul(2), ch)],
            PixelFormat::I420 => vec![(w, h), (cw, ch), (cw, ch)],
            PixelFormat::Jpeg => Vec::new(),
        }
    }

    /// The row strides of a tightly packed `width x height` frame (0 for planes it lacks).
    pub fn packed_strides(self, width: u32, height: u32) -> [usize; 3] {
        let mut strides = [0; 3];
        for (stride, (row, _)) in strides.iter_mut().zip(self.planes(width, height)) {
            *stride = row;
        }
        strides
    }

    /// The bytes of one tightly packed `width x height` frame; `None` for JPEG (any length)
    /// or when it does not fit in `usize` (a 32-bit board).
    pub fn frame_len(self, width: u32, height: u32) -> Option<usize> {
        if self.is_jpeg() {
            return None;
        }
        self.planes(width, height)
            .into_iter()
            .try_fold(0usize, |sum, (row, rows)| {
                sum.checked_add(row.checked_mul(rows)?)
            })
    }
}

impl fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PixelFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<PixelFormat, String> {
        let found = match s {
            "jpeg" => Some(PixelFormat::Jpeg),
            "yuy2" => Some(PixelFormat::Yuyv),
            "yu12" | "yuv420p" => Some(PixelFormat::I420),
            "rgb" => Some(PixelFormat::Rgb24),
            "bgr" => Some(PixelFormat::Bgr24),
            _ => PixelFormat::ALL.into_iter().find(|f| f.name() == s),
        };
        found.ok_or_else(|| {
            let names: Vec<_> = PixelFormat::ALL.iter().map(|f| f.name()).collect();
            format!(
                "unknown pixel format {s:?}; use one of {}",
                names.join(", ")
            )
        })
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ImageError {
    #[error(
        "a {width}x{height} picture is too large (at most 65535x65535, and it must fit in memory)"
    )]
    TooLarge { width: u32, height: u32 },
    #[error("a {width}x{height} picture has no pixels")]
    Empty { width: u32, height: u32 },
    #[error(
        "a {width}x{height} {format} frame needs rows of at least {min} bytes in plane {plane}, got a stride of {stride}"
    )]
    Stride {
        format: PixelFormat,
        width: u32,
        height: u32,
        plane: usize,
        min: usize,
        stride: usize,
    },
    #[error(
        "a {width}x{height} {format} frame needs {needed} bytes, the camera delivered {actual}"
    )]
    Length {
        format: PixelFormat,
        width: u32,
        height: u32,
        needed: usize,
        actual: usize,
    },
}

/// One picture: always consistent, since the constructors check that `data` holds every row of
/// every plane. Planes follow each other in `data`, each `stride * rows` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    format: PixelFormat,
    width: u32,
    height: u32,
    strides: [usize; 3],
    data: Bytes,
}

impl Image {
    /// A tightly packed raw frame (strides equal to the row size).
    pub fn packed(
        format: PixelFormat,
        width: u32,
        height: u32,
        data: impl Into<Bytes>,
    ) -> Result<Image, ImageError> {
        let strides = format.packed_strides(width, height);
        Image::with_strides(format, width, height, strides, data)
    }

    /// A raw frame whose rows are `strides[plane]` bytes apart (unused planes: 0). Extra bytes
    /// after the last plane are allowed (drivers pad buffers).
    pub fn with_strides(
        format: PixelFormat,
        width: u32,
        height: u32,
        strides: [usize; 3],
        data: impl Into<Bytes>,
    ) -> Result<Image, ImageError> {
        let data = data.into();
        check_size(width, height)?;
        let mut needed = 0usize;
        for (plane, (min, rows)) in format.planes(width, height).into_iter().enumerate() {
            let stride = strides[plane];
            if stride < min {
                return Err(ImageError::Stride {
                    format,
                    width,
                    height,
                    plane,
                    min,
                    stride,
                });
            }
            needed = stride
                .checked_mul(rows)
                .and_then(|n| n.checked_add(needed))
                .ok_or(ImageError::TooLarge { width, height })?;
        }
        if data.len() < needed {
            return Err(ImageError::Length {
                format,
                width,
                height,
                needed,
                actual: data.len(),
            });
        }
        Ok(Image {
            format,
            width,
            height,
            strides,
            data,
        })
    }

    /// An encoded JPEG of the given size (from its SOF marker or the camera's word).
    pub fn jpeg(width: u32, height: u32, data: impl Into<Bytes>) -> Result<Image, ImageError> {
        check_size(width, height)?;
        Ok(Image {
            format: PixelFormat::Jpeg,
            width,
            height,
            strides: [0; 3],
            data: data.into(),
        })
    }

    pub fn format(&self) -> PixelFormat {
        self.format
    }

    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// Bytes from one row to the next, per plane (0 for planes the format does not have).
    pub fn strides(&self) -> [usize; 3] {
        self.strides
    }

    /// All the bytes, planes one after the other (a JPEG's whole file).
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// The bytes of plane `index` (`stride * rows`); empty when the format has no such plane.
    pub fn plane(&self, index: usize) -> &[u8] {
        let planes = self.format.planes(self.width, self.height);
        let mut start = 0;
        for (i, (_, rows)) in planes.into_iter().enumerate() {
            // The constructors checked that every plane fits, so none of this overflows.
            let len = self.strides[i] * rows;
            if i == index {
                return &self.data[start..start + len];
            }
            start += len;
        }
        &[]
    }

    /// Whether the rows of every plane follow each other without padding.
    pub fn is_packed(&self) -> bool {
        self.strides == self.format.packed_strides(self.width, self.height)
    }
}

fn check_size(width: u32, height: u32) -> Result<(), ImageError> {
    if width == 0 || height == 0 {
        return Err(ImageError::Empty { width, height });
    }
    if width > 65535 || height > 65535 {
        return Err(ImageError::TooLarge { width, height });
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frame_lengths() {
        assert_eq!(PixelFormat::Rgb24.frame_len(640, 480), Some(640 * 480 * 3));
        assert_eq!(PixelFormat::Yuyv.frame_len(640, 480), Some(640 * 480 * 2));
        assert_eq!(
            PixelFormat::Nv12.frame_len(640, 480),
            Some(640 * 480 * 3 / 2)
        );
        assert_eq!(PixelFormat::I420.frame_len(3, 3), Some(9 + 4 + 4));
        assert_eq!(PixelFormat::Nv21.frame_len(3, 3), Some(9 + 8));
        assert_eq!(PixelFormat::Yuyv.frame_len(3, 1), Some(8));
        assert_eq!(PixelFormat::Jpeg.frame_len(640, 480), None);
    }

    #[test]
    fn planes_are_sliced_by_stride() {
        // 4x2 NV12 with rows padded to 8 bytes: Y is 2 rows, UV 1 row.
        let data: Vec<u8> = (0..24).collect();
        let image = Image::with_strides(PixelFormat::Nv12, 4, 2, [8, 8, 0], data).unwrap();
        assert_eq!(image.plane(0), &(0..16).collect::<Vec<u8>>()[..]);
        assert_eq!(image.plane(1), &(16..24).collect::<Vec<u8>>()[..]);
        assert!(image.plane(2).is_empty());
        assert!(!image.is_packed());
        assert!(
            Image::packed(PixelFormat::Nv12, 4, 2, vec![0; 12])
                .unwrap()
                .is_packed()
        );
    }

    #[test]
    fn inconsistent_frames_are_errors() {
        assert_eq!(
            Image::packed(PixelFormat::Rgb24, 2, 2, vec![0; 11]),
            Err(ImageError::Length {
                format: PixelFormat::Rgb24,
                width: 2,
                height: 2,
                needed: 12,
                actual: 11
            })
        );
        assert!(matches!(
            Image::with_strides(PixelFormat::Rgb24, 4, 1, [11, 0, 0], vec![0; 12]),
            Err(ImageError::Stride {
                min: 12,
                stride: 11,
                ..
            })
        ));
        assert!(matches!(
            Image::packed(PixelFormat::Rgb24, 0, 2, vec![]),
            Err(ImageError::Empty { .. })
        ));
        assert!(matches!(
            Image::jpeg(70000, 2, vec![]),
            Err(ImageError::TooLarge { .. })
        ));
        let huge = Image::with_strides(
            PixelFormat::I420,
            65535,
            65535,
            [usize::MAX / 2, 1, 1],
            vec![],
        );
        assert!(matches!(huge, Err(ImageError::TooLarge { .. })));
    }

    #[test]
    fn format_names_round_trip() {
        for format in PixelFormat::ALL {
            assert_eq!(format.name().parse::<PixelFormat>(), Ok(format));
        }
        let err = "rgb565".parse::<PixelFormat>().unwrap_err();
        assert!(err.contains("mjpeg, yuyv, nv12"), "{err}");
    }

    proptest! {
        #[test]
        fn constructors_never_panic_and_planes_fit(
            w in 0u32..70, h in 0u32..70, pad in 0usize..9, len in 0usize..20000, f in 0usize..6,
        ) {
            let format = PixelFormat::ALL[f + 1];
            let strides = format.packed_strides(w, h).map(|row| if row > 0 { row + pad } else { 0 });
            if let Ok(image) = Image::with_strides(format, w, h, strides, vec![7u8; len]) {
                let total: usize = (0..3).map(|i| image.plane(i).len()).sum();
                prop_assert!(total <= len);
                for (i, (_, rows)) in format.planes(w, h).into_iter().enumerate() {
                    prop_assert_eq!(image.plane(i).len(), strides[i] * rows);
                }
            }
        }
    }
}
