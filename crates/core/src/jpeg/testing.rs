//! Real JPEGs for the tests, made with jpeg-encoder: small, noisy (so the scans have stuffed
//! `FF 00` bytes), with and without restart intervals, progressive scans, optimized tables
//! and an EXIF thumbnail.

use super::{DHT, SOS, header};
use proptest::prelude::*;

#[derive(Debug, Clone)]
pub(super) struct Picture {
    pub width: u16,
    pub height: u16,
    pub quality: u8,
    pub gray: bool,
    /// MCUs between RSTn markers, 0 for none.
    pub restart: u16,
    pub progressive: bool,
    pub optimized: bool,
    /// An APP1 EXIF segment whose payload holds a whole JPEG, `FF D8` to `FF D9`.
    pub thumbnail: bool,
    pub seed: u64,
}

impl Picture {
    pub fn plain(width: u16, height: u16) -> Picture {
        Picture {
            width,
            height,
            quality: 80,
            gray: false,
            restart: 0,
            progressive: false,
            optimized: false,
            thumbnail: false,
            seed: 1,
        }
    }
}

pub(super) fn picture() -> impl Strategy<Value = Picture> + Clone {
    (
        (1u16..=40, 1u16..=40, 1u8..=100, any::<bool>()),
        (prop_oneof![Just(0u16), 1u16..4], prop::bool::weighted(0.2)),
        (
            prop::bool::weighted(0.2),
            prop::bool::weighted(0.3),
            any::<u64>(),
        ),
    )
        .prop_map(
            |(
                (width, height, quality, gray),
                (restart, progressive),
                (optimized, thumbnail, seed),
            )| Picture {
                width,
                height,
                quality,
                gray,
                restart,
                progressive,
                // jpeg-encoder's optimized tables miss the codes restart intervals need.
                optimized: optimized && restart == 0,
                thumbnail,
                seed,
            },
        )
}

/// Noise over a gradient: enough high-frequency content for `FF` bytes in the scan data.
fn pixels(picture: &Picture, channels: usize) -> Vec<u8> {
    let mut state = picture.seed | 1;
    let (width, height) = (usize::from(picture.width), usize::from(picture.height));
    (0..width * height * channels)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let gradient = (i % (width * channels) + i / (width * channels)) as u64;
            (gradient.wrapping_mul(5) ^ (state & 0x3F)) as u8
        })
        .collect()
}

pub(super) fn encode(picture: &Picture) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, picture.quality);
    encoder.set_restart_interval(picture.restart);
    encoder.set_progressive(picture.progressive);
    encoder.set_optimized_huffman_tables(picture.optimized);
    if picture.thumbnail {
        let mut exif = b"Exif\0\0".to_vec();
        exif.extend_from_slice(&encode(&Picture {
            thumbnail: false,
            ..Picture::plain(8, 8)
        }));
        encoder.add_app_segment(1, exif).expect("a small APP1");
    }
    let (color, channels) = if picture.gray {
        (jpeg_encoder::ColorType::Luma, 1)
    } else {
        (jpeg_encoder::ColorType::Rgb, 3)
    };
    encoder
        .encode(
            &pixels(picture, channels),
            picture.width,
            picture.height,
            color,
        )
        .expect("jpeg-encoder encodes");
    out
}

/// Where the first SOS marker stands, and where its scan data begins.
pub(super) fn first_scan(jpeg: &[u8]) -> (usize, usize) {
    header(jpeg)
        .map(|segment| segment.expect("a well-formed test JPEG"))
        .find(|segment| segment.marker == SOS)
        .map(|segment| (segment.at, segment.at + 4 + segment.payload.len()))
        .expect("an SOS")
}

/// `jpeg` without its DHT segments before the first SOS, as an MJPEG camera sends it.
pub(super) fn strip_huffman_tables(jpeg: &[u8]) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    let mut pos = 2;
    for segment in header(jpeg).map(|s| s.expect("a well-formed test JPEG")) {
        if segment.marker == DHT {
            out.extend_from_slice(&jpeg[pos..segment.at]);
            pos = segment.at + 4 + segment.payload.len();
        }
        if segment.marker == SOS {
            break;
        }
    }
    out.extend_from_slice(&jpeg[pos..]);
    out
}
