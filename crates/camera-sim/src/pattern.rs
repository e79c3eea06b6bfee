//! The picture: horizontally scrolling colour bands with the frame's seq drawn as a block of
//! binary cells in the top-left corner, and [`read_seq`] to get the seq back.
//!
//! Rendering is cheap by construction: each band's pixels are computed once, as one row wide
//! enough to hold every scroll offset, so a frame is one `memcpy` per row plus the small seq
//! block.

use std::fmt;

/// The seq block is `GRID x GRID` cells: a one-cell grey border around 8 x 8 data cells that
/// hold the seq's 64 bits, most significant first, row by row (white = 1, black = 0).
const GRID: usize = 10;
const BORDER: u8 = 128;

/// The frames of one size, ready to render.
pub(crate) struct Pattern {
    width: usize,
    height: usize,
    bands: Vec<Band>,
}

/// Rows that are all the same, scrolling together.
struct Band {
    rows: usize,
    /// Pixels per frame; negative scrolls the other way.
    speed: i64,
    /// `2 * width` pixels of a pattern that repeats every `width` pixels, so that any window
    /// `[offset, offset + width)` with `offset < width` is a whole row.
    row: Vec<u8>,
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pattern")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("bands", &self.bands.len())
            .finish_non_exhaustive()
    }
}

/// Full-intensity colour bars, in the usual order.
const BARS: [[u8; 3]; 8] = [
    [255, 255, 255],
    [255, 255, 0],
    [0, 255, 255],
    [0, 255, 0],
    [255, 0, 255],
    [255, 0, 0],
    [0, 0, 255],
    [0, 0, 0],
];

impl Pattern {
    /// `width` and `height` are at least 1.
    pub(crate) fn new(width: u32, height: u32) -> Pattern {
        let (width, height) = (width as usize, height as usize);
        // A full cycle takes 160 frames whatever the size: about 5 s at 30 fps.
        let speed = i64::try_from(width / 160).unwrap_or(1).max(1);
        let bars_end = height * 2 / 3;
        let reverse_end = height * 3 / 4;
        let band = |rows: usize, speed: i64, colour: &dyn Fn(usize) -> [u8; 3]| Band {
            rows,
            speed,
            row: (0..2 * width).flat_map(|x| colour(x % width)).collect(),
        };
        let bands = vec![
            band(bars_end, speed, &|x| BARS[x * BARS.len() / width]),
            band(reverse_end - bars_end, -speed, &|x| {
                BARS[BARS.len() - 1 - x * BARS.len() / width]
            }),
            band(height - reverse_end, (speed / 2).max(1), &|x| hue(x, width)),
        ];
        Pattern {
            width,
            height,
            bands,
        }
    }

    pub(crate) fn width(&self) -> u32 {
        // At most 7680: a `SimConfig` size.
        u32::try_from(self.width).unwrap_or(u32::MAX)
    }

    pub(crate) fn height(&self) -> u32 {
        u32::try_from(self.height).unwrap_or(u32::MAX)
    }

    /// Renders frame `seq` into `pixels`: packed RGB, `width * height * 3` bytes, rows top to
    /// bottom; the same seq gives the same pixels. Every byte is written.
    ///
    /// `pixels` must be exactly that long (checked in debug builds); otherwise only the rows it
    /// holds are written.
    pub(crate) fn render(&self, seq: u64, pixels: &mut [u8]) {
        let row_bytes = self.width * 3;
        debug_assert_eq!(
            pixels.len(),
            row_bytes * self.height,
            "frame buffer of the wrong size"
        );
        if row_bytes == 0 {
            return;
        }
        let mut rows = pixels.chunks_exact_mut(row_bytes);
        for band in &self.bands {
            let start = band.offset(seq, self.width) * 3;
            let row = &band.row[start..start + row_bytes];
            for out in rows.by_ref().take(band.rows) {
                out.copy_from_slice(row);
            }
        }
        draw_seq(pixels, self.width, self.height, seq);
    }
}

impl Band {
    fn offset(&self, seq: u64, period: usize) -> usize {
        let period = period as u64;
        let steps = (seq % period) * (self.speed.unsigned_abs() % period) % period;
        let offset = if self.speed < 0 {
            (period - steps) % period
        } else {
            steps
        };
        // Less than `period`, which came from a usize.
        usize::try_from(offset).unwrap_or(0)
    }
}

/// A fully saturated hue, going once round the colour wheel over `width` pixels.
fn hue(x: usize, width: usize) -> [u8; 3] {
    let h = x * 6 * 256 / width;
    let f = u8::try_from(h % 256).unwrap_or(u8::MAX);
    match h / 256 {
        0 => [255, f, 0],
        1 => [255 - f, 255, 0],
        2 => [0, 255, f],
        3 => [0, 255 - f, 255],
        4 => [f, 0, 255],
        _ => [255, 0, 255 - f],
    }
}

/// The side of one seq cell in pixels, or `None` when the frame is too small for the block.
/// Cells are about a fortieth of the smaller side and, from 8 px up, a multiple of 8 so that
/// they line up with JPEG's 8 x 8 blocks and survive encoding.
fn cell_size(width: usize, height: usize) -> Option<usize> {
    let side = width.min(height);
    if side < GRID {
        return None;
    }
    let cell = (side / 40).max(1);
    Some(if cell >= 8 { cell / 8 * 8 } else { cell })
}

fn cell_value(gx: usize, gy: usize, seq: u64) -> u8 {
    if gx == 0 || gy == 0 || gx == GRID - 1 || gy == GRID - 1 {
        return BORDER;
    }
    let bit = (gy - 1) * 8 + (gx - 1);
    if (seq >> (63 - bit)) & 1 == 1 { 255 } else { 0 }
}

/// Draws the seq block into packed RGB24 `pixels` of `width x height`.
pub(crate) fn draw_seq(pixels: &mut [u8], width: usize, height: usize, seq: u64) {
    let Some(cell) = cell_size(width, height) else {
        return;
    };
    let cell_bytes = cell * 3;
    for gy in 0..GRID {
        for y in gy * cell..(gy + 1) * cell {
            let row = &mut pixels[y * width * 3..][..GRID * cell_bytes];
            for (gx, cell_pixels) in row.chunks_exact_mut(cell_bytes).enumerate() {
                cell_pixels.fill(cell_value(gx, gy, seq));
            }
        }
    }
}

/// Reads back the seq drawn into a frame by the sim camera, from packed RGB `pixels` of
/// `width x height` (packed RGB24, as the sim camera's frames are).
///
/// Returns `None` when the buffer is not `width * height * 3` bytes, the frame is too small to
/// carry the block (under 10 px on a side), or the corner does not hold a well-formed block.
/// Each cell is judged by its mean over its centre, so frames that went through a decent JPEG
/// encode and decode usually read back too.
pub fn read_seq(pixels: &[u8], width: u32, height: u32) -> Option<u64> {
    let (width, height) = (width as usize, height as usize);
    if pixels.len() != width.checked_mul(height)?.checked_mul(3)? {
        return None;
    }
    let cell = cell_size(width, height)?;
    let mut seq = 0;
    for gy in 0..GRID {
        for gx in 0..GRID {
            let [r, g, b] = cell_mean(pixels, width, cell, gx, gy);
            if r.max(g).max(b) - r.min(g).min(b) > 48 {
                return None; // coloured: not ours
            }
            let level = (r + g + b) / 3;
            if cell_value(gx, gy, 0) == BORDER {
                if !(64..192).contains(&level) {
                    return None;
                }
            } else if level < 64 {
                seq <<= 1;
            } else if level >= 192 {
                seq = seq << 1 | 1;
            } else {
                return None;
            }
        }
    }
    Some(seq)
}

/// The mean colour over the middle half of a cell.
fn cell_mean(pixels: &[u8], width: usize, cell: usize, gx: usize, gy: usize) -> [u32; 3] {
    let margin = cell / 4;
    let inner = cell - 2 * margin;
    let mut sum = [0u32; 3];
    for y in gy * cell + margin..gy * cell + margin + inner {
        let start = (y * width + gx * cell + margin) * 3;
        for pixel in pixels[start..start + inner * 3].chunks_exact(3) {
            for (s, &p) in sum.iter_mut().zip(pixel) {
                *s += u32::from(p);
            }
        }
    }
    let n = u32::try_from(inner * inner).unwrap_or(u32::MAX);
    sum.map(|s| s / n)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn render(pattern: &Pattern, seq: u64) -> Vec<u8> {
        let mut pixels = vec![0; pattern.width() as usize * pattern.height() as usize * 3];
        pattern.render(seq, &mut pixels);
        pixels
    }

    #[test]
    fn buffer_is_width_times_height_times_three() {
        for (w, h) in [
            (640, 480),
            (320, 240),
            (2, 2),
            (1, 1),
            (7680 / 4, 4320 / 4),
            (322, 6),
        ] {
            let pattern = Pattern::new(w, h);
            for seq in [0, 1, 2, 1000, u64::MAX] {
                let pixels = render(&pattern, seq);
                assert_eq!(
                    pixels.len(),
                    w as usize * h as usize * 3,
                    "{w}x{h} seq {seq}"
                );
            }
        }
    }

    #[test]
    fn same_seq_same_pixels() {
        let a = Pattern::new(640, 480);
        let b = Pattern::new(640, 480);
        for seq in [1, 2, 159, 160, 161, 12345] {
            assert!(render(&a, seq) == render(&b, seq), "seq {seq}");
        }
    }

    #[test]
    fn consecutive_frames_differ_outside_the_seq_block_too() {
        let pattern = Pattern::new(640, 480);
        let block_rows = 10 * cell_size(640, 480).unwrap();
        for seq in 1..200 {
            let (a, b) = (render(&pattern, seq), render(&pattern, seq + 1));
            let below = block_rows * 640 * 3;
            assert!(a[below..] != b[below..], "seq {seq} -> {}", seq + 1);
        }
    }

    #[test]
    fn the_pattern_repeats_after_scrolling_a_whole_width_apart_from_the_seq() {
        let pattern = Pattern::new(640, 480);
        let below = 80 * 640 * 3;
        let (first, again) = (render(&pattern, 1), render(&pattern, 641));
        assert!(first[below..] == again[below..]);
        assert!(first[..below] != again[..below], "the seq block differs");
    }

    #[test]
    fn cells_line_up_with_jpeg_blocks() {
        assert_eq!(cell_size(640, 480), Some(8));
        assert_eq!(cell_size(1280, 720), Some(16));
        assert_eq!(cell_size(1920, 1080), Some(24));
        assert_eq!(cell_size(320, 240), Some(6));
        assert_eq!(cell_size(10, 10), Some(1));
        assert_eq!(cell_size(8, 480), None);
    }

    #[test]
    fn read_seq_reads_what_render_drew() {
        let pattern = Pattern::new(640, 480);
        for seq in [0, 1, 2, 0xdead_beef, u64::MAX, 1 << 63] {
            assert_eq!(read_seq(&render(&pattern, seq), 640, 480), Some(seq));
        }
    }

    #[test]
    fn read_seq_rejects_what_is_not_a_seq_block() {
        let pattern = Pattern::new(640, 480);
        let pixels = render(&pattern, 7);
        assert_eq!(read_seq(&pixels[1..], 640, 480), None, "wrong length");
        assert_eq!(read_seq(&[0; 9 * 9 * 3], 9, 9), None, "too small");
        assert_eq!(read_seq(&vec![0; 640 * 480 * 3], 640, 480), None, "black");
        assert_eq!(read_seq(&vec![128; 640 * 480 * 3], 640, 480), None, "grey");
        let mut red_border = pixels.clone();
        for y in 0..8 {
            for x in 0..8 {
                red_border[(y * 640 + x) * 3..][..3].copy_from_slice(&[255, 0, 0]);
            }
        }
        assert_eq!(read_seq(&red_border, 640, 480), None, "coloured cell");
        assert_eq!(read_seq(&[], u32::MAX, u32::MAX), None, "no overflow");
    }

    proptest! {
        #[test]
        fn read_seq_round_trips(seq in any::<u64>(), w in 10u32..400, h in 10u32..300) {
            let pixels = render(&Pattern::new(w, h), seq);
            prop_assert_eq!(read_seq(&pixels, w, h), Some(seq));
        }
    }
}
