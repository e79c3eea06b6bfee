//! Pixel conversions, for backends that do not take a camera's format as it is. YUV samples are
//! JPEG's own (JFIF, full range), so converting to RGB here and back in the encoder loses only
//! rounding.

use edgecam_core::camera::{Image, PixelFormat};

use crate::RawImage;

/// Writes `image` as packed RGB24 into `out` (resized to fit). JPEG input leaves `out` empty.
pub fn to_rgb24(image: &RawImage<'_>, out: &mut Vec<u8>) {
    let (w, h) = (image.width as usize, image.height as usize);
    out.clear();
    if image.format.is_jpeg() {
        return;
    }
    out.resize(w * h * 3, 0);
    let [p0, p1, p2] = image.planes;
    let [s0, s1, s2] = image.strides;
    for (y, row) in out.chunks_exact_mut(w * 3).enumerate() {
        let src = &p0[y * s0..];
        match image.format {
            PixelFormat::Rgb24 => row.copy_from_slice(&src[..w * 3]),
            PixelFormat::Bgr24 => {
                for (dst, bgr) in row.chunks_exact_mut(3).zip(src.chunks_exact(3)) {
                    dst.copy_from_slice(&[bgr[2], bgr[1], bgr[0]]);
                }
            }
            PixelFormat::Yuyv => {
                for (x, dst) in row.chunks_exact_mut(3).enumerate() {
                    let pair = &src[(x / 2) * 4..];
                    ycbcr_to_rgb(pair[(x % 2) * 2], pair[1], pair[3], dst);
                }
            }
            PixelFormat::Nv12 | PixelFormat::Nv21 => {
                let uv = &p1[(y / 2) * s1..];
                let (u_at, v_at) = if image.format == PixelFormat::Nv12 {
                    (0, 1)
                } else {
                    (1, 0)
                };
                for (x, dst) in row.chunks_exact_mut(3).enumerate() {
                    let c = (x / 2) * 2;
                    ycbcr_to_rgb(src[x], uv[c + u_at], uv[c + v_at], dst);
                }
            }
            PixelFormat::I420 => {
                let (u, v) = (&p1[(y / 2) * s1..], &p2[(y / 2) * s2..]);
                for (x, dst) in row.chunks_exact_mut(3).enumerate() {
                    ycbcr_to_rgb(src[x], u[x / 2], v[x / 2], dst);
                }
            }
            // `PixelFormat` is non-exhaustive; JPEG returned above.
            _ => row.fill(0),
        }
    }
}

/// JFIF's YCbCr to RGB, in 16-bit fixed point.
#[inline]
fn ycbcr_to_rgb(y: u8, cb: u8, cr: u8, rgb: &mut [u8]) {
    let y = i32::from(y) << 16;
    let cb = i32::from(cb) - 128;
    let cr = i32::from(cr) - 128;
    let half = 1 << 15;
    let r = (y + 91_881 * cr + half) >> 16;
    let g = (y - 22_554 * cb - 46_802 * cr + half) >> 16;
    let b = (y + 116_130 * cb + half) >> 16;
    rgb[0] = r.clamp(0, 255) as u8;
    rgb[1] = g.clamp(0, 255) as u8;
    rgb[2] = b.clamp(0, 255) as u8;
}

/// The chroma plane of NV12/NV21 split into separate U and V planes (`cw x ch` each), as
/// libjpeg-turbo's planar API takes them.
#[cfg_attr(not(feature = "turbojpeg"), allow(dead_code))]
pub(crate) fn split_chroma(image: &RawImage<'_>, u: &mut Vec<u8>, v: &mut Vec<u8>) {
    let cw = (image.width as usize).div_ceil(2);
    let ch = (image.height as usize).div_ceil(2);
    u.resize(cw * ch, 0);
    v.resize(cw * ch, 0);
    let (first, second) = if image.format == PixelFormat::Nv21 {
        (v, u)
    } else {
        (u, v)
    };
    let uv = image.planes[1];
    for row in 0..ch {
        let src = &uv[row * image.strides[1]..][..cw * 2];
        let a = &mut first[row * cw..][..cw];
        let b = &mut second[row * cw..][..cw];
        deinterleave(src, a, b);
    }
}

/// `src`'s even bytes into `a` and odd ones into `b` (`src` is twice as long as each): the
/// chroma of every NV12/NV21 frame. Blocks of little-endian `u16`s split into low and high bytes
/// are what x86's SSE2 vectoriser takes (20x the byte loop); the byte loop does the rest.
fn deinterleave(src: &[u8], a: &mut [u8], b: &mut [u8]) {
    const BLOCK: usize = 16;
    let blocks = src
        .chunks_exact(BLOCK * 2)
        .zip(a.chunks_exact_mut(BLOCK).zip(b.chunks_exact_mut(BLOCK)));
    for (src, (a, b)) in blocks {
        let mut pairs = [0u16; BLOCK];
        for (pair, s) in pairs.iter_mut().zip(src.chunks_exact(2)) {
            *pair = u16::from_le_bytes([s[0], s[1]]);
        }
        for ((pair, a), b) in pairs.iter().zip(a).zip(b) {
            *a = *pair as u8;
            *b = (*pair >> 8) as u8;
        }
    }
    let done = a.len() / BLOCK * BLOCK;
    let rest = src[done * 2..]
        .chunks_exact(2)
        .zip(&mut a[done..])
        .zip(&mut b[done..]);
    for ((pair, a), b) in rest {
        *a = pair[0];
        *b = pair[1];
    }
}

/// YUYV as three 4:2:2 planes: Y `2cw x h` (rows `2cw` apart: one sample past an odd width),
/// U and V `cw x h`; `chroma` holds a row's interleaved U and V on the way.
#[cfg_attr(not(feature = "turbojpeg"), allow(dead_code))]
pub(crate) fn yuyv_planes(
    image: &RawImage<'_>,
    y: &mut Vec<u8>,
    u: &mut Vec<u8>,
    v: &mut Vec<u8>,
    chroma: &mut Vec<u8>,
) {
    let (w, h) = (image.width as usize, image.height as usize);
    let cw = w.div_ceil(2);
    y.resize(2 * cw * h, 0);
    u.resize(cw * h, 0);
    v.resize(cw * h, 0);
    chroma.resize(2 * cw, 0);
    for row in 0..h {
        let src = &image.planes[0][row * image.strides[0]..][..cw * 4];
        deinterleave(src, &mut y[row * 2 * cw..][..2 * cw], chroma);
        deinterleave(chroma, &mut u[row * cw..][..cw], &mut v[row * cw..][..cw]);
    }
}

/// JFIF's RGB to YCbCr (the inverse of `ycbcr_to_rgb`), in 16-bit fixed point.
#[inline]
fn rgb_to_ycbcr(rgb: &[u8]) -> (u8, u8, u8) {
    let [r, g, b] = [rgb[0], rgb[1], rgb[2]].map(i32::from);
    let half = 1 << 15;
    let y = (19_595 * r + 38_470 * g + 7_471 * b + half) >> 16;
    let cb = ((-11_059 * r - 21_709 * g + 32_768 * b + half) >> 16) + 128;
    let cr = ((32_768 * r - 27_439 * g - 5_329 * b + half) >> 16) + 128;
    let byte = |v: i32| v.clamp(0, 255) as u8;
    (byte(y), byte(cb), byte(cr))
}

/// Packed RGB24 `rgb` (`width x height`) as a frame of `format`, as a camera would deliver it:
/// chroma averaged over each 2x2 (4:2:0) or 2x1 (YUYV) block. For benchmarks and tests of the
/// YUV paths; `None` for JPEG or a buffer of the wrong length.
pub fn from_rgb24(format: PixelFormat, width: u32, height: u32, rgb: &[u8]) -> Option<Image> {
    let (w, h) = (width as usize, height as usize);
    if rgb.len() != w.checked_mul(h)?.checked_mul(3)? || format.is_jpeg() {
        return None;
    }
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let ycc = |x: usize, y: usize| rgb_to_ycbcr(&rgb[(y * w + x) * 3..]);
    // The mean chroma of the pixels in columns 2cx, 2cx+1 and `rows` (clipped to the picture).
    let chroma = |cx: usize, rows: &[usize]| -> (u8, u8) {
        let (mut cb, mut cr, mut n) = (0u32, 0u32, 0u32);
        for &y in rows.iter().filter(|y| **y < h) {
            for x in [cx * 2, cx * 2 + 1].into_iter().filter(|x| *x < w) {
                let (_, b, r) = ycc(x, y);
                cb += u32::from(b);
                cr += u32::from(r);
                n += 1;
            }
        }
        (((cb + n / 2) / n) as u8, ((cr + n / 2) / n) as u8)
    };
    let luma = || (0..h).flat_map(move |y| (0..w).map(move |x| ycc(x, y).0));
    let chroma420 =
        || (0..ch).flat_map(move |cy| (0..cw).map(move |cx| chroma(cx, &[cy * 2, cy * 2 + 1])));
    let data: Vec<u8> = match format {
        PixelFormat::Rgb24 => rgb.to_vec(),
        PixelFormat::Bgr24 => rgb
            .chunks_exact(3)
            .flat_map(|p| [p[2], p[1], p[0]])
            .collect(),
        PixelFormat::Nv12 | PixelFormat::Nv21 => luma()
            .chain(chroma420().flat_map(|(cb, cr)| {
                if format == PixelFormat::Nv12 {
                    [cb, cr]
                } else {
                    [cr, cb]
                }
            }))
            .collect(),
        PixelFormat::I420 => luma()
            .chain(chroma420().map(|c| c.0))
            .chain(chroma420().map(|c| c.1))
            .collect(),
        PixelFormat::Yuyv => (0..h)
            .flat_map(|y| {
                (0..cw).flat_map(move |cx| {
                    let (cb, cr) = chroma(cx, &[y]);
                    let y0 = ycc(cx * 2, y).0;
                    let y1 = ycc((cx * 2 + 1).min(w - 1), y).0;
                    [y0, cb, y1, cr]
                })
            })
            .collect(),
        _ => return None,
    };
    Image::packed(format, width, height, data).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn from_rgb(format: PixelFormat, w: u32, h: u32, rgb: &[u8]) -> Image {
        from_rgb24(format, w, h, rgb).unwrap()
    }

    #[test]
    fn ycbcr_round_trips_within_rounding() {
        for rgb in [
            [0u8, 0, 0],
            [255, 255, 255],
            [255, 0, 0],
            [12, 200, 77],
            [90, 90, 250],
        ] {
            let (y, cb, cr) = rgb_to_ycbcr(&rgb);
            let mut back = [0u8; 3];
            ycbcr_to_rgb(y, cb, cr, &mut back);
            for (a, b) in rgb.iter().zip(back) {
                assert!(a.abs_diff(b) <= 2, "{rgb:?} -> {back:?}");
            }
        }
    }

    #[test]
    fn every_format_converts_back_to_the_same_flat_colour() {
        let w = 5;
        let h = 3;
        let rgb: Vec<u8> = [40u8, 160, 220].repeat(w * h);
        for format in PixelFormat::ALL.into_iter().filter(|f| !f.is_jpeg()) {
            let image = from_rgb(format, w as u32, h as u32, &rgb);
            let mut out = Vec::new();
            to_rgb24(&RawImage::of(&image), &mut out);
            assert_eq!(out.len(), rgb.len(), "{format}");
            for (a, b) in out.iter().zip(&rgb) {
                assert!(a.abs_diff(*b) <= 2, "{format}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn strided_rows_skip_their_padding() {
        // 2x2 RGB with 2 bytes of padding per row.
        let data = vec![1, 2, 3, 4, 5, 6, 99, 99, 7, 8, 9, 10, 11, 12, 99, 99];
        let image = Image::with_strides(PixelFormat::Rgb24, 2, 2, [8, 0, 0], data).unwrap();
        let mut out = Vec::new();
        to_rgb24(&RawImage::of(&image), &mut out);
        assert_eq!(out, (1..=12).collect::<Vec<u8>>());
    }

    #[test]
    fn chroma_is_split_into_planes() {
        // 4x2 NV21: V U order in the chroma plane.
        let image = Image::packed(
            PixelFormat::Nv21,
            4,
            2,
            vec![0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4],
        )
        .unwrap();
        let (mut u, mut v) = (Vec::new(), Vec::new());
        split_chroma(&RawImage::of(&image), &mut u, &mut v);
        assert_eq!((u, v), (vec![2, 4], vec![1, 3]));

        let yuyv = Image::packed(PixelFormat::Yuyv, 2, 1, vec![10, 20, 30, 40]).unwrap();
        let (mut y, mut u, mut v, mut chroma) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        yuyv_planes(&RawImage::of(&yuyv), &mut y, &mut u, &mut v, &mut chroma);
        assert_eq!((y, u, v), (vec![10, 30], vec![20], vec![40]));
    }

    proptest::proptest! {
        /// The block loops give what the plain definition gives, for any size, padding and bytes.
        #[test]
        fn planes_split_as_defined(
            w in 1usize..80,
            h in 1usize..5,
            pad in 0usize..7,
            seed in proptest::prelude::any::<u64>(),
            nv21 in proptest::prelude::any::<bool>(),
        ) {
            let cw = w.div_ceil(2);
            let bytes = |n: usize, salt: u64| -> Vec<u8> {
                (0..n as u64).map(|i| (seed.wrapping_add(i * 0x9E37 + salt) % 251) as u8).collect()
            };
            let chroma_stride = 2 * cw + pad;
            let (luma, chroma) = (bytes(w * h, 1), bytes(chroma_stride * h.div_ceil(2), 2));
            let nv = RawImage {
                format: if nv21 { PixelFormat::Nv21 } else { PixelFormat::Nv12 },
                width: w as u32,
                height: h as u32,
                planes: [&luma, &chroma, &[]],
                strides: [w, chroma_stride, 0],
            };
            let (mut u, mut v) = (Vec::new(), Vec::new());
            split_chroma(&nv, &mut u, &mut v);
            let (u_at, v_at) = if nv21 { (1, 0) } else { (0, 1) };
            for (c, r) in (0..h.div_ceil(2)).flat_map(|r| (0..cw).map(move |c| (c, r))) {
                proptest::prop_assert_eq!(u[r * cw + c], chroma[r * chroma_stride + 2 * c + u_at]);
                proptest::prop_assert_eq!(v[r * cw + c], chroma[r * chroma_stride + 2 * c + v_at]);
            }

            let yuyv_stride = 4 * cw + pad;
            let packed = bytes(yuyv_stride * h, 3);
            let yuyv = RawImage {
                format: PixelFormat::Yuyv,
                width: w as u32,
                height: h as u32,
                planes: [&packed, &[], &[]],
                strides: [yuyv_stride, 0, 0],
            };
            let (mut y, mut chroma_row) = (Vec::new(), Vec::new());
            yuyv_planes(&yuyv, &mut y, &mut u, &mut v, &mut chroma_row);
            for r in 0..h {
                let src = &packed[r * yuyv_stride..];
                for x in 0..w {
                    proptest::prop_assert_eq!(y[r * 2 * cw + x], src[x * 2]);
                }
                for c in 0..cw {
                    proptest::prop_assert_eq!(u[r * cw + c], src[4 * c + 1]);
                    proptest::prop_assert_eq!(v[r * cw + c], src[4 * c + 3]);
                }
            }
        }
    }
}
