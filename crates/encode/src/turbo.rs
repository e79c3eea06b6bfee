//! libjpeg-turbo (3.x, the tj3 API): SIMD on x86 and NEON on ARM, and the only backend that
//! takes YUV as it is: I420 planes directly, NV12/NV21 with the chroma plane split, YUYV as
//! 4:2:2 planes. RGB and BGR are read with their strides.

use edgecam_core::BoxError;
use edgecam_core::camera::PixelFormat;
use turbojpeg::{Compressor, Subsamp, YuvPlanesImage};

use crate::convert::{split_chroma, yuyv_planes};
use crate::{BackendKind, JpegBackend, RawImage};

pub struct TurboBackend {
    compressor: Compressor,
    quality: Option<u8>,
    /// libjpeg-turbo's output, as large as the largest JPEG it may write; reused.
    buf: Vec<u8>,
    /// Planes of odd-sized pictures, padded (see `pad_planes`), reused.
    pad: [Vec<u8>; 3],
    /// Planes made from NV12/NV21/YUYV, reused.
    y: Vec<u8>,
    u: Vec<u8>,
    v: Vec<u8>,
    /// A YUYV row's interleaved chroma, reused.
    chroma: Vec<u8>,
}

impl std::fmt::Debug for TurboBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurboBackend")
            .field("quality", &self.quality)
            .finish_non_exhaustive()
    }
}

impl TurboBackend {
    pub fn new() -> Result<TurboBackend, BoxError> {
        Ok(TurboBackend {
            compressor: Compressor::new()?,
            quality: None,
            buf: Vec::new(),
            pad: Default::default(),
            y: Vec::new(),
            u: Vec::new(),
            v: Vec::new(),
            chroma: Vec::new(),
        })
    }

    pub fn kind() -> BackendKind {
        BackendKind {
            name: "turbo",
            summary: "libjpeg-turbo: SIMD (NEON on ARM), and YUV encoded without an RGB step",
            start: || Ok(Box::new(TurboBackend::new()?)),
        }
    }
}

impl JpegBackend for TurboBackend {
    fn name(&self) -> &'static str {
        "turbo"
    }

    fn takes(&self, image: &RawImage<'_>) -> bool {
        matches!(
            image.format,
            PixelFormat::Rgb24
                | PixelFormat::Bgr24
                | PixelFormat::I420
                | PixelFormat::Nv12
                | PixelFormat::Nv21
                | PixelFormat::Yuyv
        )
    }

    fn encode(&mut self, image: &RawImage<'_>, quality: u8) -> Result<&[u8], BoxError> {
        if self.quality != Some(quality) {
            self.compressor.set_quality(i32::from(quality))?;
            self.quality = Some(quality);
        }
        let (width, height) = (image.width as usize, image.height as usize);
        let cw = width.div_ceil(2);
        let planes = match image.format {
            PixelFormat::Rgb24 | PixelFormat::Bgr24 => {
                self.compressor.set_subsamp(Subsamp::Sub2x2)?;
                let rgb = turbojpeg::Image {
                    pixels: image.planes[0],
                    width,
                    pitch: image.strides[0],
                    height,
                    format: if image.format == PixelFormat::Bgr24 {
                        turbojpeg::PixelFormat::BGR
                    } else {
                        turbojpeg::PixelFormat::RGB
                    },
                };
                let max = self.compressor.buf_len(width, height)?;
                return compress_into(&mut self.buf, max, |buf| {
                    self.compressor.compress_to_slice(rgb, buf)
                });
            }
            PixelFormat::I420 => YuvPlanesImage {
                y_plane: image.planes[0],
                u_plane: image.planes[1],
                v_plane: image.planes[2],
                width,
                height,
                y_stride: image.strides[0],
                u_stride: image.strides[1],
                v_stride: image.strides[2],
                subsamp: Subsamp::Sub2x2,
            },
            PixelFormat::Nv12 | PixelFormat::Nv21 => {
                split_chroma(image, &mut self.u, &mut self.v);
                YuvPlanesImage {
                    y_plane: image.planes[0],
                    u_plane: &self.u[..],
                    v_plane: &self.v[..],
                    width,
                    height,
                    y_stride: image.strides[0],
                    u_stride: cw,
                    v_stride: cw,
                    subsamp: Subsamp::Sub2x2,
                }
            }
            PixelFormat::Yuyv => {
                yuyv_planes(
                    image,
                    &mut self.y,
                    &mut self.u,
                    &mut self.v,
                    &mut self.chroma,
                );
                YuvPlanesImage {
                    y_plane: &self.y[..],
                    u_plane: &self.u[..],
                    v_plane: &self.v[..],
                    width,
                    height,
                    y_stride: 2 * cw,
                    u_stride: cw,
                    v_stride: cw,
                    subsamp: Subsamp::Sub2x1,
                }
            }
            other => return Err(format!("libjpeg-turbo is not given {other} frames").into()),
        };
        let planes = pad_planes(planes, &mut self.pad)?;
        self.compressor.set_subsamp(planes.subsamp)?;
        let max = self.compressor.buf_len(width, height)?;
        compress_into(&mut self.buf, max, |buf| {
            self.compressor.compress_yuv_planes_to_slice(&planes, buf)
        })
    }
}

/// libjpeg-turbo reads planes padded to whole chroma blocks: with an odd width or height it reads
/// one pixel or row past the picture. A plane too short for that is copied into `pad`, with the
/// padding taken from its last bytes (outside the picture, so the decoder crops it away).
/// Cameras deliver even sizes, so this copy is for odd sizes only.
fn pad_planes<'a>(
    image: YuvPlanesImage<&'a [u8]>,
    pad: &'a mut [Vec<u8>; 3],
) -> Result<YuvPlanesImage<&'a [u8]>, BoxError> {
    let [py, pu, pv] = pad;
    // tj3YUVPlaneSize: rows of `stride`, the last one `plane width` long, with width and (for
    // 4:2:0) height padded to even.
    let padded_w = image.width.div_ceil(2) * 2;
    let vertical = matches!(image.subsamp, Subsamp::Sub2x2);
    let padded_h = if vertical {
        image.height.div_ceil(2) * 2
    } else {
        image.height
    };
    let fit = |luma: bool, plane: &'a [u8], stride: usize, scratch: &'a mut Vec<u8>| {
        let (width, rows) = match (luma, vertical) {
            (true, _) => (padded_w, padded_h),
            (false, true) => (padded_w / 2, padded_h / 2),
            (false, false) => (padded_w / 2, padded_h),
        };
        let need = stride
            .checked_mul(rows.saturating_sub(1))
            .and_then(|n| n.checked_add(width))
            .ok_or("the picture is too large")?;
        if plane.len() >= need {
            return Ok::<&'a [u8], BoxError>(plane);
        }
        scratch.clear();
        scratch.extend_from_slice(plane);
        scratch.resize(need, plane.last().copied().unwrap_or(0));
        Ok(&scratch[..])
    };
    Ok(YuvPlanesImage {
        y_plane: fit(true, image.y_plane, image.y_stride, py)?,
        u_plane: fit(false, image.u_plane, image.u_stride, pu)?,
        v_plane: fit(false, image.v_plane, image.v_stride, pv)?,
        ..image
    })
}

/// Runs `compress` on `buf` (grown to `max` bytes once, never shrunk: no clearing per frame) and
/// lends what it wrote.
fn compress_into(
    buf: &mut Vec<u8>,
    max: usize,
    compress: impl FnOnce(&mut [u8]) -> turbojpeg::Result<usize>,
) -> Result<&[u8], BoxError> {
    if buf.len() < max {
        buf.resize(max, 0);
    }
    let len = compress(buf)?;
    Ok(&buf[..len])
}
