//! The "NO SIGNAL" picture sent while the camera is gone, so that clients keep their
//! connections and see why the picture stopped.

/// 5x7 glyphs, one byte a row, the low five bits left to right.
const GLYPHS: &[(char, [u8; 7])] = &[
    ('N', [0x11, 0x19, 0x15, 0x13, 0x11, 0x11, 0x11]),
    ('O', [0x0e, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e]),
    ('S', [0x0f, 0x10, 0x10, 0x0e, 0x01, 0x01, 0x1e]),
    ('I', [0x0e, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e]),
    ('G', [0x0e, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0f]),
    ('A', [0x0e, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11]),
    ('L', [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1f]),
];

const TEXT: &str = "NO SIGNAL";
const BACKGROUND: [u8; 3] = [24, 24, 32];
const INK: [u8; 3] = [235, 235, 235];

/// Whether the glyph of `c` has its pixel at column `x` (0..5), row `y` (0..7) set.
fn ink_at(c: char, x: usize, y: usize) -> bool {
    GLYPHS
        .iter()
        .find(|(g, _)| *g == c)
        .is_some_and(|(_, rows)| rows[y] & (0x10 >> x) != 0)
}

/// A `width` x `height` RGB picture with "NO SIGNAL" centred, as large as fits in 60% of
/// the width.
pub fn render(width: u32, height: u32) -> Vec<u8> {
    let (w, h) = (width as usize, height as usize);
    let mut pixels = BACKGROUND.repeat(w * h);
    // Each glyph is 5 columns plus 1 of spacing; the last spacing is not drawn.
    let columns = TEXT.chars().count() * 6 - 1;
    let scale = (w * 3 / 5 / columns).clamp(1, (h / 7).max(1));
    let (left, top) = (
        w.saturating_sub(columns * scale) / 2,
        h.saturating_sub(7 * scale) / 2,
    );
    for (i, c) in TEXT.chars().enumerate() {
        for y in 0..7 * scale {
            for x in 0..5 * scale {
                let (px, py) = (left + (i * 6) * scale + x, top + y);
                if px < w && py < h && ink_at(c, x / scale, y / scale) {
                    let at = (py * w + px) * 3;
                    pixels[at..at + 3].copy_from_slice(&INK);
                }
            }
        }
    }
    pixels
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inked(pixels: &[u8]) -> usize {
        pixels.chunks(3).filter(|p| *p == INK).count()
    }

    #[test]
    fn every_letter_of_the_text_has_a_glyph() {
        for c in TEXT.chars().filter(|c| *c != ' ') {
            assert!((0..5).any(|x| (0..7).any(|y| ink_at(c, x, y))), "{c}");
        }
    }

    #[test]
    fn the_text_is_drawn_centred_and_scaled_to_the_picture() {
        let (w, h) = (640usize, 480usize);
        let pixels = render(640, 480);
        assert_eq!(pixels.len(), w * h * 3);
        let small = inked(&render(160, 120));
        let large = inked(&pixels);
        assert!(small > 0 && large > small * 4, "{small} {large}");
        // Centred: the ink's bounding box has equal margins, within a pixel.
        let xs = pixels
            .chunks(3)
            .enumerate()
            .filter(|(_, p)| *p == INK)
            .map(|(i, _)| (i % w, i / w));
        let (mut x0, mut x1, mut y0, mut y1) = (w, 0, h, 0);
        for (x, y) in xs {
            (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
        }
        assert!(x0.abs_diff(w - 1 - x1) <= 1, "{x0}..{x1}");
        assert!(y0.abs_diff(h - 1 - y1) <= 1, "{y0}..{y1}");
    }

    #[test]
    fn tiny_and_empty_pictures_do_not_panic() {
        assert_eq!(render(8, 8).len(), 8 * 8 * 3);
        assert!(render(0, 0).is_empty());
        assert_eq!(render(1, 1000).len(), 3000);
    }
}
