//! A second picture for the sim camera, with about the entropy of a real camera scene, so that
//! encoder benchmarks are not flattered by the flat test pattern (which JPEG-compresses to
//! about 16 KB at 640 x 480; this scene is about 55 KB there at quality 80).
//!
//! The scene is a landscape: a sky with a sun glow and soft clouds, a tree line on the horizon,
//! a brick wall, and grass and gravel in perspective, under a vignette, all with sensor noise. A
//! textured, shaded ball bounces across it, so consecutive frames differ around the ball.
//!
//! A frame costs the camera almost nothing, as a real camera's costs the CPU nothing (the
//! hardware writes it): everything that does not move, noise included, is computed once per size
//! in [`NaturalScene::new`], and so is the ball's sprite. A frame is the still picture with the
//! sprite blended in at a position that depends on `seq`. Drawn into a buffer that holds an
//! earlier frame, only the rectangle the old ball covered is put back and the new ball drawn.
//! The noise is fixed, as a sensor's fixed-pattern noise is: JPEG codes every frame on its own,
//! so noise new in each frame would cost an encoder nothing more, and it would cost the camera a
//! pass over every pixel of every frame.
//!
//! Everything is a function of `(width, height, seq)` alone: no clock, no global state, no
//! `rand`, and no floating-point functions that differ between platforms (only `+ - * /`,
//! `sqrt` and `floor`).

use std::fmt;

/// The picture's scale: features are sized for a frame this many pixels high and scale with the
/// frame's height.
const REFERENCE_HEIGHT: f32 = 480.0;

/// Frames for the ball to cross the frame from left to right.
const CROSSING_FRAMES: u64 = 150;
/// Frames between two bounces.
const BOUNCE_FRAMES: u64 = 30;

/// The noise added to a channel of a pixel is at most this much either way: a luma part of up
/// to `LUMA_NOISE` and a chroma part of up to `CHROMA_NOISE`.
const LUMA_NOISE: i32 = 6;
const CHROMA_NOISE: i32 = 3;
#[cfg(test)]
const NOISE_MAX: i32 = LUMA_NOISE + CHROMA_NOISE;
/// How many pixels longer than a row the noise strip is: the number of different offsets a
/// row's noise can start at. Prime, so that it has nothing in common with frame sizes.
const NOISE_OFFSETS: u32 = 4093;

/// The natural scene at one size, ready to render frames.
pub(crate) struct NaturalScene {
    width: u32,
    height: u32,
    /// The still part of the picture, noise included: packed RGB, `width * height * 3` bytes.
    still: Vec<u8>,
    ball: Sprite,
}

/// A rectangle of a frame in pixels, `x0..x1` by `y0..y1`; empty when either range is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Rect {
    pub x0: usize,
    pub x1: usize,
    pub y0: usize,
    pub y1: usize,
}

impl fmt::Debug for NaturalScene {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NaturalScene")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("ball_radius", &self.ball.radius)
            .finish_non_exhaustive()
    }
}

/// A square picture with coverage, blended over the frame.
struct Sprite {
    /// Pixels from the centre to the edge; the sprite is `2 * radius + 1` on a side.
    radius: u32,
    /// `r, g, b` per pixel, rows top to bottom.
    rgb: Vec<u8>,
    /// Each pixel's coverage, repeated for its three channels so that blending is one pass over
    /// bytes: 0 is transparent, 255 opaque.
    alpha: Vec<u8>,
}

impl NaturalScene {
    /// Computes the still picture for `width x height`. Any size is accepted; a zero side gives
    /// empty frames.
    pub(crate) fn new(width: u32, height: u32) -> NaturalScene {
        let scale = height.max(1) as f32 / REFERENCE_HEIGHT;
        let geometry = Geometry::new(width, height, scale);
        // A strip of noise a little longer than a row; each row adds a window of it, at an
        // offset hashed from the row, so that the noise does not repeat down the frame.
        let noise: Vec<i8> = (0..(width as usize).saturating_add(NOISE_OFFSETS as usize))
            .flat_map(|i| noise_pixel(hash32(i as u32, 0x5eed_0001)))
            .collect();
        let mut still = Vec::with_capacity(frame_len(width, height));
        for y in 0..height {
            let offset = (hash32(y, 0x5eed_0002) % NOISE_OFFSETS) as usize * 3;
            let mut noise = noise.get(offset..).unwrap_or_default().iter();
            for x in 0..width {
                let rgb = geometry.pixel(x as f32 + 0.5, y as f32 + 0.5);
                still.extend(rgb.map(|c| {
                    let n = noise.next().copied().unwrap_or(0);
                    (i16::from(to_u8(c)) + i16::from(n)).clamp(0, 255) as u8
                }));
            }
        }
        NaturalScene {
            width,
            height,
            still,
            ball: Sprite::ball((height.min(width) / 9).max(1), scale),
        }
    }

    pub(crate) fn width(&self) -> u32 {
        self.width
    }

    pub(crate) fn height(&self) -> u32 {
        self.height
    }

    /// Renders frame `seq` into `rgb`: packed RGB, `width * height * 3` bytes, rows top to
    /// bottom. The same seq gives the same bytes.
    ///
    /// `drawn`: where `rgb` differs from the still picture, when it holds an earlier frame of
    /// this scene (what this returned when that frame was drawn in it); only that rectangle is
    /// put back before the ball is drawn. With `None` the whole still picture is copied first.
    /// Returns where this frame differs from the still picture: the ball's rectangle, clipped.
    ///
    /// `rgb` must be exactly that long (checked in debug builds); otherwise only the part it
    /// shares with the frame is written.
    pub(crate) fn render(&self, seq: u64, rgb: &mut [u8], drawn: Option<Rect>) -> Rect {
        debug_assert_eq!(
            rgb.len(),
            self.still.len(),
            "frame buffer of the wrong size"
        );
        match drawn {
            Some(rect) => self.put_back(rect, rgb),
            None => {
                let n = rgb.len().min(self.still.len());
                rgb[..n].copy_from_slice(&self.still[..n]);
            }
        }
        self.draw_ball(seq, rgb)
    }

    /// Copies the still picture's `rect` into `rgb`.
    fn put_back(&self, rect: Rect, rgb: &mut [u8]) {
        let row_bytes = self.width as usize * 3;
        let (from, to) = (rect.x0 * 3, rect.x1.min(self.width as usize) * 3);
        if from >= to {
            return;
        }
        for y in rect.y0..rect.y1.min(self.height as usize) {
            let span = y * row_bytes + from..y * row_bytes + to;
            if let (Some(out), Some(still)) = (rgb.get_mut(span.clone()), self.still.get(span)) {
                out.copy_from_slice(still);
            }
        }
    }

    /// Where the ball's centre is in frame `seq`, in pixels; it may be outside the frame.
    fn ball_centre(&self, seq: u64) -> (i64, i64) {
        let (w, h) = (i64::from(self.width), i64::from(self.height));
        let r = i64::from(self.ball.radius);
        // Both remainders are small, and w, h, r are below 2^32: no overflow.
        let t = (seq % CROSSING_FRAMES) as i64;
        let x = -r + t * (w + 2 * r) / CROSSING_FRAMES as i64;
        let b = (seq % BOUNCE_FRAMES) as i64;
        let half = BOUNCE_FRAMES as i64 / 2;
        // A parabola: 0 on the ground, `half * half` at the top of the bounce.
        let lift = b * (2 * half - b);
        let y = h * 4 / 5 - r - lift * (h / 5) / (half * half);
        (x, y)
    }

    /// Blends the ball over the still picture; returns the rectangle it covers, clipped to the
    /// frame.
    fn draw_ball(&self, seq: u64, rgb: &mut [u8]) -> Rect {
        let (cx, cy) = self.ball_centre(seq);
        let r = i64::from(self.ball.radius);
        let side = 2 * r + 1;
        let (w, h) = (i64::from(self.width), i64::from(self.height));
        let (left, top) = (cx - r, cy - r);
        let (x0, x1) = (left.max(0), (left + side).min(w));
        let (y0, y1) = (top.max(0), (top + side).min(h));
        if x0 >= x1 || y0 >= y1 {
            return Rect::default();
        }
        // Byte ranges of the visible part: of a frame row and of a sprite row.
        let (from, to) = (x0 as usize * 3, x1 as usize * 3);
        let sprite_from = (x0 - left) as usize * 3;
        let (row_bytes, sprite_row_bytes) = (w as usize * 3, side as usize * 3);
        for y in y0..y1 {
            // Inside the frame and the sprite by the clipping above; checked all the same.
            let frame_row = y as usize * row_bytes;
            let sprite_row = (y - top) as usize * sprite_row_bytes + sprite_from;
            let sprite_span = sprite_row..sprite_row + (to - from);
            let (Some(out), Some(still), Some(src), Some(alpha)) = (
                rgb.get_mut(frame_row + from..frame_row + to),
                self.still.get(frame_row + from..frame_row + to),
                self.ball.rgb.get(sprite_span.clone()),
                self.ball.alpha.get(sprite_span),
            ) else {
                break;
            };
            // One pass over bytes, which the compiler turns into SIMD (SSE2, NEON).
            for (((dst, b), src), a) in out.iter_mut().zip(still).zip(src).zip(alpha) {
                let a = u16::from(*a);
                // At most 255 * 255 + 127 before the division: a u16 holds it. Alpha 0 gives
                // back the still picture's byte exactly.
                let mixed = (u16::from(*src) * a + u16::from(*b) * (255 - a) + 127) / 255;
                *dst = u8::try_from(mixed).unwrap_or(u8::MAX);
            }
        }
        // Non-negative and within the frame by the clipping above.
        Rect {
            x0: x0 as usize,
            x1: x1 as usize,
            y0: y0 as usize,
            y1: y1 as usize,
        }
    }
}

fn frame_len(width: u32, height: u32) -> usize {
    // Only a size far beyond 7680 x 4320 could overflow; saturate rather than wrap.
    (width as usize)
        .saturating_mul(height as usize)
        .saturating_mul(3)
}

/// One pixel's sensor noise from 32 random bits: a luma part shared by the three channels and
/// a smaller chroma part.
fn noise_pixel(bits: u32) -> [i8; 3] {
    let byte = |k: u32| ((bits >> (8 * k)) & 0xff) as i32;
    // Triangular, in -LUMA_NOISE..=LUMA_NOISE, like the sum of small independent errors.
    let luma = (byte(0) + byte(1) - 255) * LUMA_NOISE / 255;
    let red = (byte(2) - 128) * CHROMA_NOISE / 128;
    let blue = (byte(3) - 128) * CHROMA_NOISE / 128;
    let green = -(red + blue) / 2;
    // Each at most LUMA_NOISE + CHROMA_NOISE either way: well inside an i8.
    [red, green, blue].map(|chroma| (luma + chroma) as i8)
}

/// A 32-bit integer hash (lowbias32 with a seed).
fn hash32(x: u32, seed: u32) -> u32 {
    let mut h = x ^ seed;
    h ^= h >> 16;
    h = h.wrapping_mul(0x7feb_352d);
    h ^= h >> 15;
    h = h.wrapping_mul(0x846c_a68b);
    h ^= h >> 16;
    h
}

/// A value in `[0, 1)` for a lattice point.
fn lattice(x: i32, y: i32, seed: u32) -> f32 {
    let h = hash32((x as u32) ^ hash32(y as u32, seed), seed.rotate_left(16));
    (h >> 8) as f32 / (1 << 24) as f32
}

/// Value noise in `[0, 1)`, smooth between lattice points one unit apart.
fn value_noise(x: f32, y: f32, seed: u32) -> f32 {
    let (fx, fy) = (x.floor(), y.floor());
    // `as` saturates on huge or NaN values, which is fine for a texture.
    let (ix, iy) = (fx as i32, fy as i32);
    let (tx, ty) = (smooth(x - fx), smooth(y - fy));
    let a = lattice(ix, iy, seed);
    let b = lattice(ix.wrapping_add(1), iy, seed);
    let c = lattice(ix, iy.wrapping_add(1), seed);
    let d = lattice(ix.wrapping_add(1), iy.wrapping_add(1), seed);
    lerp(lerp(a, b, tx), lerp(c, d, tx), ty)
}

/// `octaves` of value noise, each twice the frequency and half the amplitude of the last; the
/// last may be a fraction, faded in, so that detail can be limited smoothly by distance.
/// Roughly in `[0, 1)`.
fn fbm(x: f32, y: f32, octaves: f32, seed: u32) -> f32 {
    let (mut sum, mut norm, mut amp, mut freq) = (0.0, 0.0, 1.0, 1.0);
    let mut octave = 0;
    while (octave as f32) < octaves {
        let weight = amp * (octaves - octave as f32).min(1.0);
        sum += weight * value_noise(x * freq, y * freq, seed.wrapping_add(octave));
        norm += weight;
        amp *= 0.5;
        freq *= 2.0;
        octave += 1;
    }
    if norm > 0.0 { sum / norm } else { 0.5 }
}

/// `1 + log2(ratio)`, clamped to `1..=max`, with a linear fraction between powers of two: how
/// many octaves fit before one gets finer than the limit. Plain arithmetic rather than `log2`, so
/// that the picture is the same on every platform.
fn octaves_for(mut ratio: f32, max: f32) -> f32 {
    let mut octaves = 1.0;
    while ratio >= 2.0 && octaves < max {
        ratio *= 0.5;
        octaves += 1.0;
    }
    (octaves + (ratio - 1.0).clamp(0.0, 1.0)).min(max)
}

fn smooth(t: f32) -> f32 {
    t * t * (3.0 - 2.0 * t)
}

fn smoothstep(lo: f32, hi: f32, x: f32) -> f32 {
    smooth(((x - lo) / (hi - lo)).clamp(0.0, 1.0))
}

fn lerp(a: f32, b: f32, t: f32) -> f32 {
    a + (b - a) * t
}

fn mix(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [
        lerp(a[0], b[0], t),
        lerp(a[1], b[1], t),
        lerp(a[2], b[2], t),
    ]
}

fn scaled(c: [f32; 3], k: f32) -> [f32; 3] {
    [c[0] * k, c[1] * k, c[2] * k]
}

fn to_u8(v: f32) -> u8 {
    // `as` saturates: NaN becomes 0, anything out of range the nearest end.
    (v + 0.5) as u8
}

/// Where things are in the still picture, for one frame size.
struct Geometry {
    width: f32,
    height: f32,
    /// Pixels per unit of the reference picture (480 px high).
    scale: f32,
    /// The ground's horizon, in pixels from the top.
    horizon: f32,
    /// The brick wall: left, right, top, bottom in pixels.
    wall: [f32; 4],
}

impl Geometry {
    fn new(width: u32, height: u32, scale: f32) -> Geometry {
        let (w, h) = (width.max(1) as f32, height.max(1) as f32);
        Geometry {
            width: w,
            height: h,
            scale,
            horizon: h * 0.42,
            wall: [w * 0.62, w * 0.86, h * 0.2, h * 0.64],
        }
    }

    /// The still picture's colour at pixel centre `(x, y)`, before the vignette; channels about
    /// 0..=255.
    fn pixel(&self, x: f32, y: f32) -> [f32; 3] {
        let [left, right, top, bottom] = self.wall;
        let colour = if (left..right).contains(&x) && (top..bottom).contains(&y) {
            self.wall(x - left, y - top, right - left)
        } else if y >= self.horizon {
            self.ground(x, y)
        } else if y >= self.horizon - self.tree_line(x) {
            self.trees(x, y)
        } else {
            self.sky(x, y)
        };
        // A vignette: lenses are darker towards the corners.
        let dx = (x - self.width * 0.5) / self.width;
        let dy = (y - self.height * 0.5) / self.height;
        scaled(colour, 1.0 - 0.9 * (dx * dx + dy * dy))
    }

    fn sky(&self, x: f32, y: f32) -> [f32; 3] {
        let s = self.scale;
        let t = (y / self.horizon).clamp(0.0, 1.0);
        let mut c = mix([62.0, 108.0, 186.0], [182.0, 204.0, 226.0], t * t);
        // A glow round a sun off the top-left.
        let (sx, sy) = (x - self.width * 0.2, y - self.height * 0.1);
        let d2 = (sx * sx + sy * sy) / (self.height * self.height * 0.02);
        let glow = 1.0 / (1.0 + d2);
        c = [c[0] + 70.0 * glow, c[1] + 60.0 * glow, c[2] + 35.0 * glow];
        // Clouds: soft blobs, lit from above, greyer underneath.
        let n = fbm(x / (110.0 * s), y / (40.0 * s), 5.0, 11);
        let cover = smoothstep(0.48, 0.72, n);
        let shade = 0.78 + 0.22 * fbm(x / (18.0 * s), y / (12.0 * s), 3.0, 12);
        mix(c, scaled([240.0, 238.0, 236.0], shade), cover * 0.9)
    }

    /// How far the trees reach above the horizon at column `x`, in pixels.
    fn tree_line(&self, x: f32) -> f32 {
        let s = self.scale;
        let hills = fbm(x / (160.0 * s), 0.5, 2.0, 21);
        let crowns = value_noise(x / (9.0 * s), 3.5, 22);
        s * (12.0 + 34.0 * hills + 7.0 * crowns)
    }

    fn trees(&self, x: f32, y: f32) -> [f32; 3] {
        let s = self.scale;
        let leaves = fbm(x / (5.0 * s), y / (4.0 * s), 3.0, 31);
        let clumps = fbm(x / (30.0 * s), y / (20.0 * s), 2.0, 32);
        let dark = [28.0, 52.0, 30.0];
        let lit = [86.0, 118.0, 62.0];
        // Hazier towards the horizon.
        let haze = ((y - self.horizon) / (60.0 * s) + 1.0).clamp(0.0, 1.0) * 0.25;
        mix(
            mix(dark, lit, leaves * 0.7 + clumps * 0.5 - 0.1),
            [150.0, 170.0, 190.0],
            haze,
        )
    }

    /// Grass and gravel, in perspective: fine near the horizon, coarse at the bottom.
    fn ground(&self, x: f32, y: f32) -> [f32; 3] {
        let s = self.scale;
        let depth = ((y - self.horizon) / (self.height - self.horizon).max(1.0)).clamp(0.0, 1.0);
        // Distance from the camera, 1 at the bottom of the frame and 12.5 at the horizon.
        let z = 1.08 / (depth + 0.08);
        // Ground coordinates, in units of a 480 px frame's bottom row.
        let gx = (x - self.width * 0.5) / s * z / 480.0;
        let gz = z;
        // Texture cells are 1/40 of a unit: 12 px across at the bottom of a 480 px frame.
        // Fewer octaves further away, so detail never gets much finer than 2 px.
        let cell_px = 12.0 * s / z;
        let octaves = octaves_for(cell_px / 2.0, 4.0);
        let (u, v) = (gx * 40.0, gz * 40.0 * 2.5);
        let path = fbm(gx * 1.5, gz * 0.6, 3.0, 41);
        let gravel_amount = smoothstep(0.52, 0.6, path);
        let grass = {
            let blades = fbm(u * 1.2, v * 0.4, octaves, 42);
            let patches = fbm(gx * 3.0, gz * 2.0, 2.0, 43);
            let base = mix([42.0, 82.0, 28.0], [132.0, 156.0, 66.0], patches);
            scaled(base, 0.62 + 0.65 * blades)
        };
        let gravel = {
            let stones = fbm(u * 1.5, v * 1.5, octaves, 44);
            let tint = value_noise(u * 0.5, v * 0.5, 45);
            let base = mix([120.0, 108.0, 92.0], [168.0, 160.0, 148.0], tint);
            scaled(base, 0.65 + 0.6 * stones)
        };
        // Further away is hazier and a little bluer.
        let far = (1.0 - depth) * (1.0 - depth) * (1.0 - depth);
        let haze = far * far * 0.45;
        mix(
            mix(grass, gravel, gravel_amount),
            [160.0, 176.0, 196.0],
            haze,
        )
    }

    /// The brick wall at `(x, y)` from its top-left corner, `width` pixels wide.
    fn wall(&self, x: f32, y: f32, width: f32) -> [f32; 3] {
        let s = self.scale;
        let (brick_w, brick_h, mortar) = (28.0 * s, 11.0 * s, 1.6 * s);
        let row = (y / brick_h).floor();
        let shift = if row.rem_euclid(2.0) < 1.0 {
            0.0
        } else {
            0.5 * brick_w
        };
        let col = ((x + shift) / brick_w).floor();
        let (bx, by) = (x + shift - col * brick_w, y - row * brick_h);
        let grain = fbm(x / (2.5 * s), y / (2.5 * s), 2.0, 51);
        let c = if bx < mortar || by < mortar {
            scaled([178.0, 170.0, 158.0], 0.8 + 0.3 * grain)
        } else {
            let tone = lattice(col as i32, row as i32, 52);
            let base = mix([128.0, 58.0, 40.0], [176.0, 96.0, 66.0], tone);
            let wear = fbm(x / (7.0 * s), y / (5.0 * s), 2.0, 53);
            scaled(base, 0.65 + 0.35 * grain + 0.3 * wear)
        };
        // Lit from the left.
        let light = 1.1 - 0.35 * (x / width.max(1.0));
        scaled(c, light)
    }
}

impl Sprite {
    /// A ball of `radius` pixels: stripes and speckle, shaded as a sphere lit from the top
    /// left, with an anti-aliased edge.
    fn ball(radius: u32, scale: f32) -> Sprite {
        let side = 2 * radius as usize + 1;
        let r = radius as f32;
        let mut rgba: Vec<[u8; 4]> = Vec::with_capacity(side * side);
        const STRIPES: [[f32; 3]; 4] = [
            [214.0, 40.0, 36.0],
            [240.0, 200.0, 40.0],
            [40.0, 86.0, 200.0],
            [236.0, 236.0, 230.0],
        ];
        let light = [-0.45_f32, -0.55, 0.70];
        for sy in 0..side {
            for sx in 0..side {
                let dx = sx as f32 - r;
                let dy = sy as f32 - r;
                let dist = (dx * dx + dy * dy).sqrt();
                let alpha = (r + 0.5 - dist).clamp(0.0, 1.0);
                if alpha <= 0.0 {
                    rgba.push([0; 4]);
                    continue;
                }
                let (nx, ny) = (dx / r.max(1.0), dy / r.max(1.0));
                let nz = (1.0 - nx * nx - ny * ny).max(0.0).sqrt();
                let lambert = (nx * light[0] + ny * light[1] + nz * light[2]).max(0.0);
                let shade = 0.3 + 0.85 * lambert;
                // Diagonal stripes, bent by the sphere's curvature.
                let band = ((nx + ny * 0.6) / (0.35 + 0.65 * nz) * 2.2).floor();
                let base = STRIPES[band.rem_euclid(4.0) as usize % 4];
                let speckle = fbm(dx / (3.0 * scale), dy / (3.0 * scale), 2.0, 61);
                let c = scaled(base, shade * (0.8 + 0.35 * speckle));
                rgba.push([to_u8(c[0]), to_u8(c[1]), to_u8(c[2]), to_u8(alpha * 255.0)]);
            }
        }
        Sprite {
            radius,
            rgb: rgba.iter().flat_map(|&[r, g, b, _]| [r, g, b]).collect(),
            alpha: rgba.iter().flat_map(|&[.., a]| [a; 3]).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(scene: &NaturalScene, seq: u64) -> Vec<u8> {
        let mut rgb = vec![0; frame_len(scene.width(), scene.height())];
        scene.render(seq, &mut rgb, None);
        rgb
    }

    fn jpeg_size(rgb: &[u8], width: u32, height: u32, quality: u8) -> usize {
        let mut out = Vec::new();
        let encoder = jpeg_encoder::Encoder::new(&mut out, quality);
        let (w, h) = (
            u16::try_from(width).expect("width fits JPEG"),
            u16::try_from(height).expect("height fits JPEG"),
        );
        encoder
            .encode(rgb, w, h, jpeg_encoder::ColorType::Rgb)
            .expect("encodes");
        out.len()
    }

    #[test]
    fn same_seq_gives_same_bytes() {
        let a = NaturalScene::new(160, 120);
        let b = NaturalScene::new(160, 120);
        for seq in [0, 1, 77, u64::MAX] {
            assert_eq!(frame(&a, seq), frame(&b, seq), "seq {seq}");
        }
    }

    #[test]
    fn consecutive_frames_differ_where_the_ball_moved_and_only_there() {
        let scene = NaturalScene::new(160, 120);
        let (mut a, mut b) = (frame(&scene, 41), frame(&scene, 42));
        let (ra, rb) = (scene.draw_ball(41, &mut a), scene.draw_ball(42, &mut b));
        let width = 160;
        let inside = |r: Rect, i: usize| {
            (r.x0..r.x1).contains(&(i % width)) && (r.y0..r.y1).contains(&(i / width))
        };
        let mut changed = 0;
        for (i, (p, q)) in a.chunks_exact(3).zip(b.chunks_exact(3)).enumerate() {
            if p != q {
                changed += 1;
                assert!(
                    inside(ra, i) || inside(rb, i),
                    "pixel {i} changed outside both balls"
                );
            }
        }
        assert!(changed > 200, "only {changed} pixels changed");
    }

    proptest::proptest! {
        /// Drawing into a buffer that holds an earlier frame, putting back only what that frame's
        /// ball covered, gives exactly the frame drawn from scratch.
        #[test]
        fn drawing_over_an_earlier_frame_gives_the_frame_drawn_afresh(
            w in 0u32..90,
            h in 0u32..70,
            earlier in 0u64..400,
            seq in 0u64..400,
        ) {
            let scene = NaturalScene::new(w, h);
            let mut reused = vec![0; frame_len(w, h)];
            let drawn = scene.render(earlier, &mut reused, None);
            scene.render(seq, &mut reused, Some(drawn));
            proptest::prop_assert!(reused == frame(&scene, seq));
        }
    }

    /// The centroid of the pixels that differ from the still picture by more than noise can.
    fn object_centroid(scene: &NaturalScene, seq: u64) -> Option<(f64, f64)> {
        let rgb = frame(scene, seq);
        let width = scene.width() as usize;
        let (mut n, mut sx, mut sy) = (0_usize, 0_usize, 0_usize);
        for (i, (p, q)) in rgb
            .chunks_exact(3)
            .zip(scene.still.chunks_exact(3))
            .enumerate()
        {
            let moved = p
                .iter()
                .zip(q)
                .any(|(a, b)| (i32::from(*a) - i32::from(*b)).abs() > NOISE_MAX);
            if moved {
                n += 1;
                sx += i % width;
                sy += i / width;
            }
        }
        (n > 20).then(|| (sx as f64 / n as f64, sy as f64 / n as f64))
    }

    #[test]
    fn the_ball_moves_left_to_right() {
        let scene = NaturalScene::new(320, 240);
        let (x0, _) = object_centroid(&scene, 30).expect("ball visible at seq 30");
        let (x1, _) = object_centroid(&scene, 60).expect("ball visible at seq 60");
        let (x2, _) = object_centroid(&scene, 90).expect("ball visible at seq 90");
        // 30 frames move it a fifth of (320 + 2 * radius) px: about 72 px.
        assert!(x1 - x0 > 40.0 && x2 - x1 > 40.0, "{x0} {x1} {x2}");
        let (_, y_ground) = object_centroid(&scene, 60).expect("visible");
        let (_, y_air) = object_centroid(&scene, 75).expect("visible");
        assert!(y_ground - y_air > 20.0, "bounces: {y_ground} {y_air}");
    }

    #[test]
    fn jpeg_size_at_640x480_q80_is_like_a_camera_scene() {
        let scene = NaturalScene::new(640, 480);
        let size = jpeg_size(&frame(&scene, 45), 640, 480, 80);
        assert!(
            (45_000..=70_000).contains(&size),
            "{size} bytes, want 45-70 KB"
        );
    }

    #[test]
    fn the_picture_is_not_flat() {
        let scene = NaturalScene::new(320, 240);
        let rgb = frame(&scene, 3);
        let luma: Vec<f64> = rgb
            .chunks_exact(3)
            .map(|p| 0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2]))
            .collect();
        let mean = luma.iter().sum::<f64>() / luma.len() as f64;
        let var = luma.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / luma.len() as f64;
        assert!(var.sqrt() > 25.0, "luma stddev {}", var.sqrt());
        // Neither crushed nor blown out.
        assert!((60.0..200.0).contains(&mean), "mean luma {mean}");
    }

    #[test]
    fn odd_and_tiny_sizes_do_not_panic() {
        for (w, h) in [
            (0, 0),
            (0, 5),
            (5, 0),
            (1, 1),
            (2, 1),
            (16, 16),
            (17, 9),
            (641, 479),
        ] {
            let scene = NaturalScene::new(w, h);
            for seq in [0, 1, 29, 75, 149, u64::MAX] {
                let rgb = frame(&scene, seq);
                assert_eq!(rgb.len(), w as usize * h as usize * 3, "{w}x{h}");
            }
        }
    }

    #[test]
    fn very_wide_and_very_tall_frames_do_not_panic() {
        for (w, h) in [(7680, 2), (2, 4320), (7680, 16)] {
            let scene = NaturalScene::new(w, h);
            for seq in [0, 75, u64::MAX] {
                frame(&scene, seq);
            }
        }
    }
}
