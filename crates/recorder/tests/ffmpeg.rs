//! Outside checks: ffprobe and ffmpeg read what the AVI recorder writes (small files, OpenDML
//! files of several RIFFs, repaired files, and one past 1 GiB), and our reader reads what
//! ffmpeg writes. Where ffprobe is not installed, each test prints "skipped: ..." and passes,
//! except under CI, which installs it: there it fails.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Cursor;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edgecam_core::frame::Frame;
use edgecam_core::jpeg::{dimensions, is_jpeg};
use edgecam_core::recorder::Recorder;
use edgecam_core::time::Timestamp;
use edgecam_recorder::{
    AviConfig, AviReader, AviRecorder, AviWriter, FrameRate, ReadError, read_frames, repair,
};

const T0: Timestamp = Timestamp(1_700_000_000_000_000);

/// Whether ffprobe and ffmpeg can be run; says why not when they cannot. Under CI (`CI` set),
/// whose `.ci/run` installs them, a missing one fails the test instead.
fn tools() -> bool {
    let runs = |tool: &str| {
        Command::new(tool)
            .arg("-version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    for tool in ["ffprobe", "ffmpeg"] {
        if !runs(tool) {
            assert!(
                std::env::var_os("CI").is_none(),
                "{tool} is not installed, and CI must have it (.ci/run installs ffmpeg)"
            );
            println!("skipped: {tool} not installed (apt-get install ffmpeg)");
            return false;
        }
    }
    true
}

/// A real JPEG of `width`x`height` random pixels.
fn noise_jpeg(width: u16, height: u16, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let pixels: Vec<u8> = (0..usize::from(width) * usize::from(height) * 3)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 90)
        .encode(&pixels, width, height, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    out
}

/// `jpeg` grown to about `size` bytes with comment (COM) segments of noise, which decoders
/// skip: large frames that decode quickly.
fn padded(mut jpeg: Vec<u8>, size: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut com = Vec::new();
    while jpeg.len() + com.len() + 4 < size {
        let len = (size - jpeg.len() - com.len() - 4).min(65_533);
        com.extend_from_slice(&[0xFF, 0xFE]);
        com.extend_from_slice(&u16::try_from(len + 2).unwrap().to_be_bytes());
        com.extend((0..len).map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        }));
    }
    jpeg.splice(2..2, com);
    jpeg
}

/// What ffprobe says about the video stream, as `key=value` pairs.
fn probe(path: &Path, count: &str) -> BTreeMap<String, String> {
    let out = Command::new("ffprobe")
        .args(["-v", "warning", "-select_streams", "v:0", count, "-show_entries"])
        .arg("stream=codec_name,width,height,nb_frames,nb_read_packets,nb_read_frames,r_frame_rate,avg_frame_rate")
        .args(["-of", "default=noprint_wrappers=1"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Decodes every frame with ffmpeg; panics with its messages (warnings included) if there
/// are any.
fn decode_all(path: &Path) {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "warning", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && errors.is_empty(),
        "ffmpeg: {errors}"
    );
}

fn expect(probe: &BTreeMap<String, String>, expected: &[(&str, &str)]) {
    for (key, value) in expected {
        assert_eq!(
            probe.get(*key).map(String::as_str),
            Some(*value),
            "{key} in {probe:?}"
        );
    }
}

fn write_file(path: &Path, frames: &[Vec<u8>], step: Duration, config: AviConfig) -> u64 {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .unwrap();
    let mut w = AviWriter::new(file, config).unwrap();
    let mut t = T0;
    for f in frames {
        w.write_frame(f, t).unwrap();
        t = t + step;
    }
    w.finish().unwrap().frames
}

#[tokio::test]
async fn a_small_recording_plays_with_its_size_count_and_rate() {
    if !tools() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("small.avi");
    let images: Vec<Vec<u8>> = (0..10).map(|i| noise_jpeg(64, 48, i)).collect();
    let mut recorder = AviRecorder::new(&path, AviConfig::default());
    recorder.start().await.unwrap();
    for (seq, jpeg) in images.iter().enumerate() {
        let frame = Frame {
            jpeg: Bytes::from(jpeg.clone()),
            width: 64,
            height: 48,
            seq: seq as u64,
            captured_at: T0 + Duration::from_millis(40 * seq as u64),
        };
        recorder.write_frame(&frame).await.unwrap();
    }
    recorder.finish().await.unwrap();

    let found = probe(&path, "-count_frames");
    expect(
        &found,
        &[
            ("codec_name", "mjpeg"),
            ("width", "64"),
            ("height", "48"),
            ("nb_frames", "10"),
            ("nb_read_frames", "10"),
            ("r_frame_rate", "25/1"),
            ("avg_frame_rate", "25/1"),
        ],
    );
    decode_all(&path);
    assert_eq!(read_frames(&path).unwrap().1, images);
}

#[test]
fn an_opendml_file_of_many_riffs_plays_every_frame() {
    if !tools() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("riffs.avi");
    let images: Vec<Vec<u8>> = (0..60).map(|i| noise_jpeg(96, 80, i)).collect();
    let config = AviConfig::default().with_riff_limit_for_tests(100 << 10);
    write_file(&path, &images, Duration::from_millis(100), config);

    let (info, frames) = read_frames(&path).unwrap();
    assert!(info.riff_segments >= 4, "{info:?}");
    assert_eq!(frames, images);
    let found = probe(&path, "-count_frames");
    expect(
        &found,
        &[
            ("codec_name", "mjpeg"),
            ("width", "96"),
            ("height", "80"),
            ("nb_frames", "60"),
            ("nb_read_frames", "60"),
            ("r_frame_rate", "10/1"),
        ],
    );
    decode_all(&path);
}

#[test]
fn a_recording_cut_off_plays_once_repaired() {
    if !tools() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("cut.avi");
    let images: Vec<Vec<u8>> = (0..40).map(|i| noise_jpeg(96, 80, i)).collect();
    // Recorded without finish (as if killed), the header updated after 25 frames.
    let config = AviConfig::default().with_riff_limit_for_tests(100 << 10);
    let mut w = AviWriter::new(File::create(&path).unwrap(), config).unwrap();
    for (i, image) in images.iter().enumerate() {
        w.write_frame(image, T0 + Duration::from_millis(50 * i as u64))
            .unwrap();
        if i == 24 {
            w.flush_header().unwrap();
        }
    }
    let len = w.file_bytes();
    drop(w);
    let unfinished = AviReader::new(Cursor::new(std::fs::read(&path).unwrap()), "cut.avi");
    assert!(
        matches!(unfinished, Err(ReadError::Damaged { .. })),
        "{unfinished:?}"
    );
    // Cut 3000 bytes short, inside the last frame.
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len - 3000).unwrap();

    let report = repair(&path).unwrap();
    assert!(!report.already_valid);
    assert!((30..40).contains(&report.frames), "{report}");
    assert_eq!(report.frame_rate, FrameRate::per_second(20));
    let (_, frames) = read_frames(&path).unwrap();
    assert_eq!(frames, images[..report.frames as usize]);
    let found = probe(&path, "-count_frames");
    let n = report.frames.to_string();
    expect(
        &found,
        &[
            ("codec_name", "mjpeg"),
            ("nb_frames", &n),
            ("nb_read_frames", &n),
            ("r_frame_rate", "20/1"),
        ],
    );
    decode_all(&path);
    assert!(repair(&path).unwrap().already_valid);
}

#[test]
fn an_avi_file_written_by_ffmpeg_reads_back() {
    if !tools() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("ffmpeg.avi");
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-f", "lavfi", "-i"])
        .arg("testsrc=size=64x48:rate=10")
        .args(["-frames:v", "5", "-c:v", "mjpeg"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (info, frames) = read_frames(&path).unwrap();
    assert_eq!((info.width, info.height, info.frames), (64, 48, 5));
    assert_eq!(info.frame_rate.fps(), 10.0);
    assert_eq!(info.codec, "MJPG");
    for f in &frames {
        assert!(is_jpeg(f) && dimensions(f) == Some((64, 48)));
    }
    let before = std::fs::read(&path).unwrap();
    assert!(repair(&path).unwrap().already_valid);
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

/// Free bytes on the file system holding `dir`, from `df` (no unsafe statvfs here).
fn free_bytes(dir: &Path) -> Option<u64> {
    let out = Command::new("df").arg("-Pk").arg(dir).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let kib: u64 = text
        .lines()
        .nth(1)?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[test]
fn a_recording_past_1_gib_plays_every_frame() {
    if !tools() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let free = free_bytes(tmp.path());
    if free.is_none_or(|free| free < 3 << 30) {
        println!(
            "skipped: less than 3 GiB free in {} ({free:?} bytes)",
            tmp.path().display()
        );
        return;
    }
    let path = tmp.path().join("big.avi");
    // Four distinct real frames of about 1 MiB each (a 512x384 noise image and comment
    // segments), 1100 of them: 1.1 GiB, two RIFFs.
    let images: Vec<Vec<u8>> = (0..4)
        .map(|i| padded(noise_jpeg(512, 384, i), 1 << 20, i + 100))
        .collect();
    let n = 1100;
    let frames: Vec<Vec<u8>> = (0..n).map(|i| images[i % 4].clone()).collect();

    let started = Instant::now();
    assert_eq!(
        write_file(
            &path,
            &frames,
            Duration::from_millis(40),
            AviConfig::default()
        ),
        n as u64
    );
    let written = started.elapsed();
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size > 1 << 30, "{size}");

    let started = Instant::now();
    let found = probe(&path, "-count_packets");
    expect(
        &found,
        &[
            ("codec_name", "mjpeg"),
            ("width", "512"),
            ("height", "384"),
            ("nb_frames", "1100"),
            ("nb_read_packets", "1100"),
            ("r_frame_rate", "25/1"),
            ("avg_frame_rate", "25/1"),
        ],
    );
    let probed = started.elapsed();
    let started = Instant::now();
    decode_all(&path);
    let decoded = started.elapsed();

    let started = Instant::now();
    let mut reader = AviReader::open(&path).unwrap();
    assert_eq!(reader.info().riff_segments, 2);
    assert_eq!(reader.info().frames, n as u64);
    for (i, frame) in reader.frames().enumerate() {
        assert!(frame.unwrap() == images[i % 4], "frame {i}");
    }
    let read = started.elapsed();
    println!(
        "{size} bytes: written in {written:.1?}, probed in {probed:.1?}, decoded by ffmpeg in \
         {decoded:.1?}, read back in {read:.1?}"
    );
}
