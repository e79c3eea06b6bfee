//! Choosing a format and size from what a device offers (`ENUM_FMT`, `ENUM_FRAMESIZES`):
//! plain functions over plain data, so that every rule is tested without a device.

use std::fmt::Write as _;

use edgecam_core::camera::PixelFormat;

use crate::abi;
use crate::device::{BufType, Device, DeviceError, FmtDesc, FrameSizes};

/// Formats we take, in the order we prefer them when the spec names none: camera JPEGs are
/// passed through (no encoding at all), then the YUV layouts the encoders take as they are.
const PREFERENCE: [PixelFormat; 7] = [
    PixelFormat::Jpeg,
    PixelFormat::Nv12,
    PixelFormat::Nv21,
    PixelFormat::Yuyv,
    PixelFormat::I420,
    PixelFormat::Rgb24,
    PixelFormat::Bgr24,
];

/// Without `size=`, the largest size offered up to this many pixels (1080p)...
const DEFAULT_MAX_PIXELS: u64 = 1920 * 1080;
/// ... and this size where the driver does not enumerate sizes.
const FALLBACK_SIZE: (u32, u32) = (640, 480);

/// At most this many formats and sizes are read from a driver: a broken one that never says
/// "no more" cannot hold us in a loop.
const ENUM_LIMIT: u32 = 256;

/// What format a V4L2 fourcc is to us; `None` for those we do not take (H.264, Bayer...).
pub fn pixel_format_of(fourcc: u32) -> Option<PixelFormat> {
    Some(match fourcc {
        abi::V4L2_PIX_FMT_MJPEG | abi::V4L2_PIX_FMT_JPEG => PixelFormat::Jpeg,
        abi::V4L2_PIX_FMT_YUYV => PixelFormat::Yuyv,
        abi::V4L2_PIX_FMT_NV12 => PixelFormat::Nv12,
        abi::V4L2_PIX_FMT_NV21 => PixelFormat::Nv21,
        abi::V4L2_PIX_FMT_YUV420 => PixelFormat::I420,
        abi::V4L2_PIX_FMT_RGB24 => PixelFormat::Rgb24,
        abi::V4L2_PIX_FMT_BGR24 => PixelFormat::Bgr24,
        _ => return None,
    })
}

/// The V4L2 fourcc for `format` (MJPG for JPEG).
pub fn fourcc_of(format: PixelFormat) -> u32 {
    match format {
        PixelFormat::Jpeg => abi::V4L2_PIX_FMT_MJPEG,
        PixelFormat::Yuyv => abi::V4L2_PIX_FMT_YUYV,
        PixelFormat::Nv12 => abi::V4L2_PIX_FMT_NV12,
        PixelFormat::Nv21 => abi::V4L2_PIX_FMT_NV21,
        PixelFormat::I420 => abi::V4L2_PIX_FMT_YUV420,
        PixelFormat::Rgb24 => abi::V4L2_PIX_FMT_RGB24,
        PixelFormat::Bgr24 => abi::V4L2_PIX_FMT_BGR24,
        _ => 0,
    }
}

/// A fourcc as its four letters (`NV12`), trailing spaces trimmed; non-printable bytes as
/// `.`.
pub fn fourcc_name(fourcc: u32) -> String {
    fourcc
        .to_le_bytes()
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                char::from(b)
            } else {
                '.'
            }
        })
        .collect::<String>()
        .trim_end()
        .to_owned()
}

/// One format a device offers, with its sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub desc: FmtDesc,
    /// Empty where the driver does not enumerate sizes.
    pub sizes: Vec<FrameSizes>,
}

impl Offer {
    pub fn format(&self) -> Option<PixelFormat> {
        pixel_format_of(self.desc.fourcc)
    }

    /// Whether it offers `size` (any size, where the driver does not say).
    pub fn offers(&self, size: (u32, u32)) -> bool {
        self.sizes.is_empty() || self.sizes.iter().any(|s| s.contains(size))
    }

    /// The size to use when the spec names none: the largest offered up to 1080p, else the
    /// smallest offered.
    pub fn default_size(&self) -> (u32, u32) {
        let pixels = |(w, h): (u32, u32)| u64::from(w) * u64::from(h);
        let mut candidates: Vec<(u32, u32)> = Vec::new();
        for sizes in &self.sizes {
            match *sizes {
                FrameSizes::Discrete { width, height } => candidates.push((width, height)),
                FrameSizes::Stepwise { min, max, step } => {
                    // The nearest size on the steps at or below (w, h).
                    let fit = |(w, h): (u32, u32)| {
                        let on_step = |v: u32, lo: u32, hi: u32, step: u32| {
                            let v = v.clamp(lo, hi);
                            lo + (v - lo) / step.max(1) * step.max(1)
                        };
                        (
                            on_step(w, min.0, max.0, step.0),
                            on_step(h, min.1, max.1, step.1),
                        )
                    };
                    candidates.extend([min, fit(max), fit((1920, 1080))]);
                }
            }
        }
        let within = candidates
            .iter()
            .copied()
            .filter(|s| pixels(*s) <= DEFAULT_MAX_PIXELS)
            .max_by_key(|s| (pixels(*s), s.0));
        within
            .or_else(|| candidates.iter().copied().min_by_key(|s| (pixels(*s), s.0)))
            .unwrap_or(FALLBACK_SIZE)
    }
}

/// Every format the device offers for `ty`, with its sizes.
pub fn read_offers(device: &mut dyn Device, ty: BufType) -> Result<Vec<Offer>, DeviceError> {
    let mut offers = Vec::new();
    for index in 0..ENUM_LIMIT {
        let Some(desc) = device.enum_fmt(ty, index)? else {
            break;
        };
        let mut sizes = Vec::new();
        for index in 0..ENUM_LIMIT {
            match device.enum_framesizes(desc.fourcc, index)? {
                Some(size) => sizes.push(size),
                None => break,
            }
        }
        offers.push(Offer { desc, sizes });
    }
    Ok(offers)
}

/// What the spec asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Request {
    pub format: Option<PixelFormat>,
    pub size: Option<(u32, u32)>,
}

/// What to ask the driver for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    pub fourcc: u32,
    pub format: PixelFormat,
    pub size: (u32, u32),
}

/// The format and size to use: what `request` names, if offered; else the preferred format
/// offered (at the requested size, if any offers it) at its default size. An error says what
/// the device offers.
pub fn choose(offers: &[Offer], request: Request) -> Result<Choice, String> {
    let usable: Vec<&Offer> = offers.iter().filter(|o| o.format().is_some()).collect();
    if usable.is_empty() {
        return Err(format!(
            "it offers no format edgecam takes (mjpeg, yuyv, nv12, nv21, i420, rgb24, bgr24); it offers: {}",
            describe_offers(offers)
        ));
    }
    let rank = |o: &&Offer| {
        PREFERENCE
            .iter()
            .position(|f| Some(*f) == o.format())
            .unwrap_or(PREFERENCE.len())
    };
    let mut candidates: Vec<&Offer> = match request.format {
        Some(format) => usable
            .iter()
            .copied()
            .filter(|o| o.format() == Some(format))
            .collect(),
        None => usable.clone(),
    };
    if candidates.is_empty() {
        let format = request.format.map_or("?", PixelFormat::name);
        return Err(format!(
            "it does not offer format={format}; it offers: {}",
            describe_offers(offers)
        ));
    }
    candidates.sort_by_key(rank);
    let chosen = match request.size {
        Some(size) => match candidates.iter().find(|o| o.offers(size)) {
            Some(offer) => (*offer, size),
            None => {
                let what = match request.format {
                    Some(format) => format!("{format} at {}x{}", size.0, size.1),
                    None => format!("{}x{} in any format edgecam takes", size.0, size.1),
                };
                return Err(format!(
                    "it does not offer {what}; it offers: {}",
                    describe_offers(offers)
                ));
            }
        },
        None => (candidates[0], candidates[0].default_size()),
    };
    let (offer, size) = chosen;
    Ok(Choice {
        fourcc: offer.desc.fourcc,
        format: offer.format().unwrap_or(PixelFormat::Jpeg),
        size,
    })
}

/// `MJPG (mjpeg) 1920x1080, 1280x720; H264 (not taken) 1920x1080`.
pub fn describe_offers(offers: &[Offer]) -> String {
    if offers.is_empty() {
        return "no formats at all".to_owned();
    }
    let mut text = String::new();
    for (i, offer) in offers.iter().enumerate() {
        if i > 0 {
            text.push_str("; ");
        }
        let name = fourcc_name(offer.desc.fourcc);
        match offer.format() {
            Some(format) => {
                let _ = write!(text, "{name} (format={format})");
            }
            None => {
                let _ = write!(text, "{name} (not taken)");
            }
        }
        if offer.sizes.is_empty() {
            text.push_str(" at sizes it does not list");
        } else {
            let sizes: Vec<String> = offer.sizes.iter().map(ToString::to_string).collect();
            let _ = write!(text, " {}", sizes.join(", "));
        }
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn offer(fourcc: u32, sizes: &[(u32, u32)]) -> Offer {
        Offer {
            desc: FmtDesc::new(fourcc, &fourcc_name(fourcc)),
            sizes: sizes
                .iter()
                .map(|&(width, height)| FrameSizes::Discrete { width, height })
                .collect(),
        }
    }

    fn webcam() -> Vec<Offer> {
        vec![
            offer(abi::V4L2_PIX_FMT_YUYV, &[(640, 480), (320, 240)]),
            offer(
                abi::V4L2_PIX_FMT_MJPEG,
                &[(1920, 1080), (1280, 720), (640, 480), (3840, 2160)],
            ),
            offer(abi::fourcc(b"H264"), &[(1920, 1080)]),
        ]
    }

    fn rkisp() -> Vec<Offer> {
        vec![Offer {
            desc: FmtDesc::new(abi::V4L2_PIX_FMT_NV12, "Y/UV 4:2:0"),
            sizes: vec![FrameSizes::Stepwise {
                min: (32, 16),
                max: (2304, 1296),
                step: (8, 2),
            }],
        }]
    }

    #[test]
    fn defaults_prefer_mjpeg_at_the_largest_size_up_to_1080p() {
        let choice = choose(&webcam(), Request::default()).unwrap();
        assert_eq!(choice.format, PixelFormat::Jpeg);
        assert_eq!(choice.size, (1920, 1080));
        let isp = choose(&rkisp(), Request::default()).unwrap();
        assert_eq!((isp.format, isp.size), (PixelFormat::Nv12, (1920, 1080)));
    }

    #[test]
    fn a_requested_size_picks_the_format_that_offers_it() {
        let request = Request {
            format: None,
            size: Some((320, 240)),
        };
        let choice = choose(&webcam(), request).unwrap();
        assert_eq!(
            (choice.format, choice.size),
            (PixelFormat::Yuyv, (320, 240))
        );
        let isp = Request {
            format: Some(PixelFormat::Nv12),
            size: Some((1280, 720)),
        };
        assert_eq!(choose(&rkisp(), isp).unwrap().size, (1280, 720));
    }

    #[test]
    fn requests_that_do_not_fit_say_what_there_is() {
        let errors: Vec<String> = [
            Request {
                format: Some(PixelFormat::Nv12),
                size: None,
            },
            Request {
                format: Some(PixelFormat::Yuyv),
                size: Some((1920, 1080)),
            },
            Request {
                format: None,
                size: Some((1000, 1000)),
            },
        ]
        .into_iter()
        .map(|r| choose(&webcam(), r).unwrap_err())
        .chain([
            choose(
                &rkisp(),
                Request {
                    format: None,
                    size: Some((1281, 720)),
                },
            )
            .unwrap_err(),
            choose(
                &[offer(abi::fourcc(b"H264"), &[(1920, 1080)])],
                Request::default(),
            )
            .unwrap_err(),
        ])
        .collect();
        insta::assert_snapshot!(errors.join("\n"));
    }

    fn arbitrary_offers() -> impl Strategy<Value = Vec<Offer>> {
        let fourccs = prop::sample::select(vec![
            abi::V4L2_PIX_FMT_MJPEG,
            abi::V4L2_PIX_FMT_YUYV,
            abi::V4L2_PIX_FMT_NV12,
            abi::V4L2_PIX_FMT_NV21,
            abi::fourcc(b"H264"),
            abi::fourcc(b"BA81"),
        ]);
        let size = (1u32..40, 1u32..40).prop_map(|(w, h)| (w * 16, h * 16));
        let sizes = prop_oneof![
            prop::collection::vec(size.clone(), 0..4).prop_map(|sizes| sizes
                .into_iter()
                .map(|(width, height)| FrameSizes::Discrete { width, height })
                .collect::<Vec<_>>()),
            (size.clone(), size, 1u32..9, 1u32..9).prop_map(|(a, b, sx, sy)| {
                let min = (a.0.min(b.0), a.1.min(b.1));
                let max = (a.0.max(b.0), a.1.max(b.1));
                vec![FrameSizes::Stepwise {
                    min,
                    max,
                    step: (sx, sy),
                }]
            }),
        ];
        prop::collection::vec(
            (fourccs, sizes).prop_map(|(fourcc, sizes)| Offer {
                desc: FmtDesc::new(fourcc, "x"),
                sizes,
            }),
            0..5,
        )
    }

    fn arbitrary_request() -> impl Strategy<Value = Request> {
        let format = prop::option::of(prop::sample::select(PREFERENCE.to_vec()));
        let size = prop::option::of((1u32..40, 1u32..40).prop_map(|(w, h)| (w * 16, h * 16)));
        (format, size).prop_map(|(format, size)| Request { format, size })
    }

    proptest! {
        /// A choice is always something the device offers and what the spec asked for; a
        /// refusal happens only when nothing offered fits.
        #[test]
        fn choices_are_offered_and_refusals_are_justified(
            offers in arbitrary_offers(),
            request in arbitrary_request(),
        ) {
            let fits = |o: &Offer| {
                o.format().is_some()
                    && request.format.is_none_or(|f| o.format() == Some(f))
                    && request.size.is_none_or(|s| o.offers(s))
            };
            match choose(&offers, request) {
                Ok(choice) => {
                    let offer = offers.iter().find(|o| o.desc.fourcc == choice.fourcc && fits(o));
                    prop_assert!(offer.is_some(), "{choice:?} is not offered");
                    prop_assert!(offer.unwrap().offers(choice.size), "{choice:?}");
                    if let Some(format) = request.format {
                        prop_assert_eq!(choice.format, format);
                    }
                    if let Some(size) = request.size {
                        prop_assert_eq!(choice.size, size);
                    }
                    // The preferred format among those that fit.
                    let best = offers.iter().filter(|o| fits(o)).filter_map(Offer::format)
                        .min_by_key(|f| PREFERENCE.iter().position(|p| p == f));
                    prop_assert_eq!(Some(choice.format), best);
                }
                Err(reason) => {
                    prop_assert!(!offers.iter().any(fits), "refused although offered: {reason}");
                    prop_assert!(reason.contains("it offers"), "{reason}");
                }
            }
        }
    }
}
