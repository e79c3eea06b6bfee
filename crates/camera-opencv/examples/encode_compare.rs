//! Which way of turning a captured BGR frame into a JPEG is faster: OpenCV's `imencode`
//! (libjpeg-turbo inside Debian's OpenCV), or `cvtColor` to RGB and the server's pure-Rust
//! `jpeg-encoder`? Both at quality 80, at 640x480 and 1280x720.
//!
//! ```text
//! cargo run --release -p edgecam-camera-opencv --example encode_compare
//! ```
//!
//! The frames are a gradient with sensor-like noise, so that neither encoder gets an
//! unrealistically easy picture. Each figure is the median of many runs, after a warm-up.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use opencv::core::{Mat, Vec3b, Vector};
use opencv::imgcodecs::{IMWRITE_JPEG_QUALITY, imencode};
use opencv::imgproc::{COLOR_BGR2RGB, cvt_color_def};
use opencv::prelude::*;

const QUALITY: u8 = 80;
const RUNS: usize = 60;

/// A BGR frame: smooth gradients plus a few levels of noise (xorshift, fixed seed).
fn noisy_bgr(width: usize, height: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut pixels = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        for x in 0..width {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let noise = (state % 16) as usize;
            pixels.push(((x * 255 / width + noise) % 256) as u8);
            pixels.push(((y * 255 / height + noise) % 256) as u8);
            pixels.push((((x + y) * 255 / (width + height) + noise) % 256) as u8);
        }
    }
    pixels
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn time(mut run: impl FnMut() -> Result<usize>) -> Result<(Duration, usize)> {
    let mut size = 0;
    for _ in 0..5 {
        size = run()?;
    }
    let mut samples = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let start = Instant::now();
        size = run()?;
        samples.push(start.elapsed());
    }
    Ok((median(samples), size))
}

fn main() -> Result<()> {
    println!(
        "OpenCV {} with {} thread(s); quality {QUALITY}; median of {RUNS} runs",
        opencv::core::get_version_string()?,
        opencv::core::get_num_threads()?
    );
    for (width, height) in [(640usize, 480usize), (1280, 720)] {
        let bgr_pixels = noisy_bgr(width, height);
        let bgr = Mat::new_rows_cols_with_bytes::<Vec3b>(
            i32::try_from(height)?,
            i32::try_from(width)?,
            &bgr_pixels,
        )?;
        let params = Vector::<i32>::from_slice(&[IMWRITE_JPEG_QUALITY, i32::from(QUALITY)]);

        // What the camera does with encode=opencv: imencode, then the bytes out of OpenCV.
        let (opencv, opencv_size) = time(|| {
            let mut buf = Vector::<u8>::new();
            ensure!(
                imencode(".jpg", &bgr, &mut buf, &params)?,
                "imencode refused"
            );
            Ok(buf.to_vec().len())
        })?;

        // What the camera does with encode=server: BGR -> RGB, the pixels out of OpenCV,
        // then the server's encoder (jpeg-encoder, as `Encoder { kind: Rust }` does).
        let mut rgb = Mat::default();
        let (convert, _) = time(|| {
            cvt_color_def(&bgr, &mut rgb, COLOR_BGR2RGB)?;
            Ok(rgb.data_bytes()?.to_vec().len())
        })?;
        let rgb_pixels = rgb.data_bytes()?.to_vec();
        let (w, h) = (u16::try_from(width)?, u16::try_from(height)?);
        let (rust, rust_size) = time(|| {
            let mut out = Vec::with_capacity(width * height * 3 / 8);
            jpeg_encoder::Encoder::new(&mut out, QUALITY)
                .encode(&rgb_pixels, w, h, jpeg_encoder::ColorType::Rgb)
                .context("jpeg-encoder")?;
            Ok(out.len())
        })?;

        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!("{width}x{height}:");
        println!(
            "  imencode (OpenCV, libjpeg)            {:6.2} ms  ({} bytes)",
            ms(opencv),
            opencv_size
        );
        println!(
            "  cvtColor + jpeg-encoder (server)      {:6.2} ms  ({:.2} + {:.2}; {} bytes)",
            ms(convert + rust),
            ms(convert),
            ms(rust),
            rust_size
        );
    }
    Ok(())
}
