use super::*;
use edgecam_core::jpeg;
use edgecam_core::time::Timestamp;

use crate::convert::tests::from_rgb;

/// A picture with colour gradients, sharp-edged rings and sensor-like (luma) noise: something
/// like a camera's, small.
fn scene(w: u32, h: u32) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 9) as i32 - 4
    };
    let mut rgb = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h as i32 {
        for x in 0..w as i32 {
            let distance = f64::from((x - 40) * (x - 40) + (y - 30) * (y - 30)).sqrt();
            let ring = distance as i32 / 12 % 2 * 60;
            let base = [x * 255 / w as i32, y * 255 / h as i32, 128 + ring];
            let n = noise();
            for c in base {
                rgb.push((c + n).clamp(0, 255) as u8);
            }
        }
    }
    rgb
}

fn captured(image: Image) -> Captured {
    Captured {
        seq: 7,
        captured_at: Timestamp(123),
        image,
    }
}

fn decode(jpeg: &[u8]) -> Vec<u8> {
    let mut decoder = jpeg_decoder::Decoder::new(jpeg);
    let pixels = decoder.decode().unwrap();
    assert_eq!(
        decoder.info().unwrap().pixel_format,
        jpeg_decoder::PixelFormat::RGB24
    );
    pixels
}

fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mse = a
        .iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    10.0 * (255.0f64 * 255.0 / mse.max(1e-9)).log10()
}

fn backends() -> Vec<&'static str> {
    Backends::builtin().kinds().iter().map(|k| k.name).collect()
}

fn encoder(name: &str) -> Encoder {
    Encoder::new(
        Backends::builtin().start(name).unwrap(),
        90,
        Passthrough::Stamped,
    )
}

/// Every raw format.
fn raw_formats() -> impl Iterator<Item = PixelFormat> {
    PixelFormat::ALL.into_iter().filter(|f| !f.is_jpeg())
}

#[test]
fn every_backend_encodes_a_stamped_decodable_jpeg() {
    for name in backends() {
        let image = Image::packed(PixelFormat::Rgb24, 64, 48, scene(64, 48)).unwrap();
        let frame = encoder(name).encode(captured(image)).unwrap();
        assert!(jpeg::is_jpeg(&frame.jpeg), "{name}");
        assert_eq!(jpeg::dimensions(&frame.jpeg), Some((64, 48)), "{name}");
        assert_eq!(
            jpeg::Stamp::find(&frame.jpeg),
            Some(jpeg::Stamp {
                seq: 7,
                captured_at: Timestamp(123)
            }),
            "{name}"
        );
        assert_eq!((frame.width, frame.height, frame.seq), (64, 48, 7));
        assert_eq!(decode(&frame.jpeg).len(), 64 * 48 * 3);
    }
}

/// Every raw format, on every backend, encodes the same picture as the RGB path: both
/// decoded, at least 35 dB apart (odd sizes included, for the half-size chroma planes).
#[test]
fn yuv_and_rgb_paths_encode_the_same_picture() {
    for (w, h) in [(96, 64), (97, 63)] {
        let rgb = scene(w, h);
        for name in backends() {
            let mut encoder = encoder(name);
            let reference = Image::packed(PixelFormat::Rgb24, w, h, rgb.clone()).unwrap();
            let reference = decode(&encoder.encode(captured(reference)).unwrap().jpeg);
            for format in raw_formats() {
                let frame = encoder
                    .encode(captured(from_rgb(format, w, h, &rgb)))
                    .unwrap();
                let db = psnr(&decode(&frame.jpeg), &reference);
                assert!(db >= 35.0, "{name} {format} {w}x{h}: {db:.1} dB");
            }
        }
    }
}

#[test]
fn strided_frames_encode_like_packed_ones() {
    let (w, h) = (40u32, 30u32);
    let rgb = scene(w, h);
    let packed = from_rgb(PixelFormat::Nv12, w, h, &rgb);
    // The same NV12 with 24 bytes of padding after every row of both planes.
    let mut padded = Vec::new();
    for row in packed.plane(0).chunks(w as usize) {
        padded.extend_from_slice(row);
        padded.extend_from_slice(&[0xAB; 24]);
    }
    for row in packed.plane(1).chunks(w as usize) {
        padded.extend_from_slice(row);
        padded.extend_from_slice(&[0xCD; 24]);
    }
    let strided =
        Image::with_strides(PixelFormat::Nv12, w, h, [w as usize + 24; 3], padded).unwrap();
    for name in backends() {
        let mut encoder = encoder(name);
        let a = encoder.encode(captured(packed.clone())).unwrap();
        let b = encoder.encode(captured(strided.clone())).unwrap();
        assert_eq!(a.jpeg, b.jpeg, "{name}");
    }
}

#[test]
fn passthrough_is_stamped_or_untouched() {
    let rgb = Image::packed(PixelFormat::Rgb24, 16, 16, scene(16, 16)).unwrap();
    let camera_jpeg = RustBackend::default()
        .encode(&RawImage::of(&rgb), 80)
        .unwrap()
        .to_vec();
    assert_eq!(jpeg::Stamp::find(&camera_jpeg), None);
    let camera_jpeg = Bytes::from(camera_jpeg);
    let image = || Image::jpeg(16, 16, camera_jpeg.clone()).unwrap();

    let untouched = Encoder::new(Box::<RustBackend>::default(), 80, Passthrough::Untouched)
        .encode(captured(image()))
        .unwrap();
    assert_eq!(untouched.jpeg.as_ptr(), camera_jpeg.as_ptr(), "no copy");

    let stamped = encoder("rust").encode(captured(image())).unwrap();
    assert_eq!(
        jpeg::Stamp::find(&stamped.jpeg).map(|s| s.seq),
        Some(7),
        "passthrough frames are stamped too"
    );
    assert_eq!(decode(&stamped.jpeg), decode(&camera_jpeg));
}

#[test]
fn backends_by_name() {
    let backends = Backends::builtin();
    let auto = backends.start("auto").unwrap();
    let fastest = if cfg!(feature = "turbojpeg") {
        "turbo"
    } else {
        "rust"
    };
    assert_eq!(auto.name(), fastest);
    assert_eq!(backends.start("rust").unwrap().name(), "rust");
    let rust = encoder("rust");
    let rgb = scene(8, 8);
    assert!(rust.takes(&from_rgb(PixelFormat::Rgb24, 8, 8, &rgb)));
    assert!(!rust.takes(&from_rgb(PixelFormat::Nv12, 8, 8, &rgb)));
    let err = backends.start("gpu").unwrap_err().to_string();
    assert!(
        err.starts_with("unknown encoder \"gpu\"; this build has auto"),
        "{err}"
    );

    let mut more = Backends::builtin();
    more.add(
        BackendKind {
            name: "middle",
            summary: "",
            start: || Ok(Box::<RustBackend>::default()),
        },
        &["rust"],
    );
    let names: Vec<_> = more.kinds().iter().map(|k| k.name).collect();
    assert_eq!(names.last(), Some(&"rust"));
    assert_eq!(names[names.len() - 2], "middle");
}
