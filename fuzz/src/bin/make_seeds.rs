//! Writes the seed corpora, `fuzz/corpus/<target>/<name>`, from real data: JPEGs made by
//! jpeg-encoder (with and without Huffman tables, stamped, restart markers, progressive),
//! concatenated JPEG streams, legacy frame streams, client command strings, small AVI
//! recordings written by `AviWriter` (one RIFF, several RIFFs, cut off, damaged), and HTTP
//! responses of MJPEG servers (ffmpeg's as captured, mjpg-streamer's, a camera's, an image's).
//!
//! Run from `fuzz/`: `cargo run --bin make_seeds` (any toolchain; `cargo xtask fuzz --seeds`
//! does it). The output is deterministic, so running it again changes no file. Each input
//! starts with the bytes its target reads its parameters from (see each target's docs).

use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use edgecam_core::jpeg::Stamp;
use edgecam_core::time::Timestamp;
use edgecam_recorder::{AviConfig, AviWriter};

const T0: u64 = 1_700_000_000_000_000;

/// A small real JPEG: noise over a gradient (so the scan has stuffed `FF 00` bytes).
fn jpeg(width: u16, height: u16, seed: u64, style: Style) -> Vec<u8> {
    let channels = if style.gray { 1 } else { 3 };
    let mut state = seed | 1;
    let (w, h) = (usize::from(width), usize::from(height));
    let pixels: Vec<u8> = (0..w * h * channels)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let gradient = (i % (w * channels) + i / (w * channels)) as u64;
            (gradient.wrapping_mul(5) ^ (state & 0x3F)) as u8
        })
        .collect();
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, 50);
    encoder.set_restart_interval(style.restart);
    encoder.set_progressive(style.progressive);
    let color = if style.gray {
        jpeg_encoder::ColorType::Luma
    } else {
        jpeg_encoder::ColorType::Rgb
    };
    encoder
        .encode(&pixels, width, height, color)
        .expect("jpeg-encoder encodes a small picture");
    out
}

#[derive(Debug, Clone, Copy, Default)]
struct Style {
    gray: bool,
    restart: u16,
    progressive: bool,
}

/// `jpeg` without its DHT segments before the first SOS, as an MJPEG camera sends it.
fn strip_tables(jpeg: &[u8]) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    let mut pos = 2;
    while pos + 4 <= jpeg.len() && jpeg[pos] == 0xFF {
        let marker = jpeg[pos + 1];
        let len = usize::from(u16::from_be_bytes([jpeg[pos + 2], jpeg[pos + 3]]));
        if marker == 0xDA {
            break;
        }
        if marker != 0xC4 {
            out.extend_from_slice(&jpeg[pos..pos + 2 + len]);
        }
        pos += 2 + len;
    }
    out.extend_from_slice(&jpeg[pos..]);
    out
}

fn stamped(jpeg: &[u8], seq: u64, t: u64) -> Vec<u8> {
    let mut out = jpeg.to_vec();
    Stamp {
        seq,
        captured_at: Timestamp(t),
    }
    .insert_into(&mut out);
    out
}

/// An AVI recording of `frames`, 40 ms apart, each RIFF closed before `riff_limit` bytes.
fn avi(frames: &[Vec<u8>], riff_limit: Option<u64>) -> Vec<u8> {
    let mut config = AviConfig::default();
    if let Some(limit) = riff_limit {
        config = config.with_riff_limit_for_tests(limit);
    }
    let mut writer = AviWriter::new(Cursor::new(Vec::new()), config).expect("an AVI in memory");
    for (i, frame) in frames.iter().enumerate() {
        let t = T0 + 40_000 * i as u64;
        writer
            .write_frame(&stamped(frame, i as u64, t), Timestamp(t))
            .expect("a frame written in memory");
    }
    writer.finish().expect("an AVI finished in memory");
    writer.into_file().into_inner()
}

struct Seeds {
    root: PathBuf,
    total: usize,
}

impl Seeds {
    fn put(&mut self, target: &str, name: &str, bytes: &[u8]) {
        let dir = self.root.join(target);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let path = dir.join(name);
        fs::write(&path, bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        self.total += bytes.len();
    }
}

fn main() {
    let root = std::env::args_os().nth(1).map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"),
        PathBuf::from,
    );
    let mut seeds = Seeds { root, total: 0 };

    let plain = jpeg(16, 16, 1, Style::default());
    let gray = jpeg(
        24,
        8,
        2,
        Style {
            gray: true,
            ..Style::default()
        },
    );
    let restart = jpeg(
        32,
        16,
        3,
        Style {
            restart: 1,
            ..Style::default()
        },
    );
    let progressive = jpeg(
        16,
        16,
        4,
        Style {
            progressive: true,
            ..Style::default()
        },
    );
    let no_tables = strip_tables(&plain);
    let stamp_prefix: Vec<u8> = [7u64.to_le_bytes(), T0.to_le_bytes()].concat();

    // jpeg_markers: 16 bytes of stamp, then a JPEG.
    for (name, j) in [
        ("plain.jpg", plain.clone()),
        ("gray.jpg", gray.clone()),
        ("restart.jpg", restart.clone()),
        ("progressive.jpg", progressive.clone()),
        ("no-dht.jpg", no_tables.clone()),
        ("stamped.jpg", stamped(&plain, 41, T0)),
        ("stamped-no-dht.jpg", stamped(&no_tables, 42, T0)),
        ("header-only.jpg", plain[..plain.len() / 3].to_vec()),
    ] {
        seeds.put("jpeg_markers", name, &[&stamp_prefix[..], &j].concat());
    }

    // jpeg_splitter: the limit (2 bytes, little endian), 8 chunk sizes, then the stream.
    let stream = [
        &plain[..],
        &gray,
        b"garbage\xFF",
        &no_tables,
        &restart[..100],
        &progressive,
    ]
    .concat();
    let limit = |max: u16, sizes: [u8; 8]| [&max.to_le_bytes()[..], &sizes].concat();
    seeds.put(
        "jpeg_splitter",
        "stream",
        &[limit(4096, [1, 7, 64, 200, 3, 255, 9, 13]), stream.clone()].concat(),
    );
    seeds.put(
        "jpeg_splitter",
        "stream-small-limit",
        &[limit(700, [255; 8]), stream.clone()].concat(),
    );
    seeds.put(
        "jpeg_splitter",
        "one",
        &[limit(u16::MAX, [255; 8]), plain.clone()].concat(),
    );

    // frame_decoder: the cap choice, 8 chunk sizes, then frames with 4-byte big-endian lengths.
    let mut frames = Vec::new();
    for j in [&plain, &gray, &no_tables] {
        frames.extend_from_slice(&(j.len() as u32).to_be_bytes());
        frames.extend_from_slice(j);
    }
    seeds.put(
        "frame_decoder",
        "frames",
        &[&[4u8, 1, 3, 4, 200, 255, 17, 2, 9][..], &frames].concat(),
    );
    seeds.put(
        "frame_decoder",
        "frames-default-cap",
        &[&[6u8, 255, 255, 255, 255, 255, 255, 255, 255][..], &frames].concat(),
    );
    seeds.put(
        "frame_decoder",
        "text-reply",
        &[
            &[6u8, 255, 255, 255, 255, 255, 255, 255, 255][..],
            b"Unknown command",
        ]
        .concat(),
    );

    // http_request: a cut length, then request heads as browsers, players and tools send them.
    for (name, head) in [
        ("browser", &b"GET /stream HTTP/1.1\r\nHost: board:6810\r\nUser-Agent: Mozilla/5.0\r\nAccept: image/webp,*/*\r\n\r\n"[..]),
        ("mjpg_streamer", b"GET /?action=snapshot&n=1 HTTP/1.0\r\n\r\n"),
        ("head_bare_lf", b"HEAD /snapshot HTTP/1.1\nHost: x\n\n"),
        ("options", b"OPTIONS * HTTP/1.1\r\n\r\n"),
        ("absolute", b"GET http://board/metrics HTTP/1.1\r\n\r\n"),
        ("post", b"POST /stream HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"),
    ] {
        seeds.put("http_request", name, &[&[7u8][..], head].concat());
    }

    // session_input: command strings as clients send them (the target also reads them as
    // operations), and driven sessions: config bytes, then operations (see the target).
    for (name, cmd) in [
        ("single", &b"0"[..]),
        ("confirm", b"1"),
        ("stream", b"3"),
        ("stop", b"q"),
        ("shutdown", b"2"),
        ("coalesced", b"30\r\n1q2x"),
    ] {
        seeds.put("session_input", name, cmd);
    }
    // handshake 1000 us, idle 2000 us, 8 unknown bytes, remote shutdown, t = T0.
    let config = [2u8, 0xE8, 0x03, 2, 0xD0, 0x07, 8, 1, 1];
    let single = [0u8, 1, b'0', 3, 1, 0, 0, 0, 1, b'1', 4, 0x10, 0x27, 0, 6];
    let streaming = [
        0u8, 2, b'3', b' ', 3, 1, 0, 0, 3, 3, 0, 0, 0, 3, b'q', b'x', b'2',
    ];
    seeds.put(
        "session_input",
        "single-confirm",
        &[&config[..], &single].concat(),
    );
    seeds.put(
        "session_input",
        "streaming",
        &[&config[..], &streaming].concat(),
    );

    // avi_reader and repair: recordings by AviWriter. Each is at least the 16,936-byte header.
    // One picture size: a recording's header holds one.
    let gray16 = jpeg(
        16,
        16,
        5,
        Style {
            gray: true,
            ..Style::default()
        },
    );
    let restart16 = jpeg(
        16,
        16,
        6,
        Style {
            restart: 1,
            ..Style::default()
        },
    );
    let clip = [plain.clone(), gray16.clone(), no_tables.clone()];
    let one_riff = avi(&clip, None);
    // Small RIFFs: about one frame each, so the file has several (OpenDML `AVIX`, `ix00`).
    let multi = avi(
        &[plain.clone(), gray16, restart16, no_tables.clone()],
        Some(17_800),
    );
    let cut = one_riff[..one_riff.len() - 500].to_vec();
    let mut damaged = one_riff.clone();
    let second_frame = 16_936 + 8 + stamped(&plain, 0, T0).len().next_multiple_of(2);
    damaged[second_frame..second_frame + 8].fill(0);
    for (name, bytes) in [
        ("one-riff.avi", &one_riff),
        ("multi-riff.avi", &multi),
        ("cut-off.avi", &cut),
        ("damaged-header.avi", &damaged),
    ] {
        seeds.put("avi_reader", name, bytes);
        seeds.put("repair", name, bytes);
    }

    // mjpeg_reader: the caps choice, 8 chunk sizes, then a server's response: what ffmpeg's
    // HTTP server really sent (core's test fixtures), and responses as mjpg-streamer, IP
    // cameras and snapshot URLs write them.
    let caps = |pick: u8| [&[pick][..], &[1, 7, 64, 200, 3, 255, 9, 13]].concat();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/core/src/http/testdata");
    for (name, fixture) in [
        ("ffmpeg-octet-stream", "ffmpeg-mpjpeg-octet-stream.http"),
        ("ffmpeg-multipart", "ffmpeg-mpjpeg-multipart.http"),
    ] {
        let path = fixtures.join(fixture);
        let bytes =
            fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        seeds.put("mjpeg_reader", name, &[caps(4), bytes].concat());
    }
    let mut streamer = b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=boundarydonotcross\r\n\r\n--boundarydonotcross\r\n".to_vec();
    for j in [&plain, &gray, &no_tables] {
        streamer.extend_from_slice(
            format!(
                "Content-Type: image/jpeg\r\nContent-Length: {}\r\nX-Timestamp: 1.5\r\n\r\n",
                j.len()
            )
            .as_bytes(),
        );
        streamer.extend_from_slice(j);
        streamer.extend_from_slice(b"\r\n--boundarydonotcross\r\n");
    }
    seeds.put(
        "mjpeg_reader",
        "mjpg-streamer",
        &[caps(3), streamer].concat(),
    );
    let mut camera = b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=\"--myboundary\"\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let mut body = Vec::new();
    for j in [&plain, &restart] {
        body.extend_from_slice(b"--myboundary\r\nContent-Type: image/jpeg\r\n\r\n");
        body.extend_from_slice(j);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(
        b"--myboundary\r\nContent-Type: text/plain\r\n\r\nhello\r\n--myboundary--\r\n",
    );
    for chunk in body.chunks(500) {
        camera.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        camera.extend_from_slice(chunk);
        camera.extend_from_slice(b"\r\n");
    }
    camera.extend_from_slice(b"0\r\n\r\n");
    seeds.put(
        "mjpeg_reader",
        "camera-chunked-no-length",
        &[caps(3), camera].concat(),
    );
    let single = [
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
            plain.len()
        )
        .as_bytes(),
        &plain,
    ]
    .concat();
    seeds.put("mjpeg_reader", "single-image", &[caps(3), single].concat());
    seeds.put(
        "mjpeg_reader",
        "not-found",
        &[
            caps(2),
            b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: 48\r\n\r\n<html><body><h1>404 Not Found</h1></body></html>".to_vec(),
        ]
        .concat(),
    );

    println!(
        "wrote {} bytes of seeds under {}",
        seeds.total,
        seeds.root.display()
    );
}
