//! Finding V4L2 devices in sysfs (`/sys/class/video4linux/video*/name`) and describing what
//! each offers, for `v4l2:NAME` and `edgecam cameras`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::device::{Device, DeviceError};
use crate::negotiate::{fourcc_name, read_offers};

/// Where the kernel lists video devices.
pub const SYSFS: &str = "/sys/class/video4linux";

/// A video4linux node: its device file and the name its driver gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// `/dev/videoN`.
    pub path: PathBuf,
    /// `/sys/class/video4linux/videoN/name` (`rkisp_mainpath`, `HD Pro Webcam C920`).
    pub name: String,
    /// N, for ordering.
    number: u32,
}

/// Every `videoN` node `sysfs` (normally [`SYSFS`]) lists, by number. Nodes under `/dev`
/// unless `dev` says otherwise (tests). An unreadable or missing folder is an empty list.
pub fn nodes(sysfs: &Path, dev: &Path) -> Vec<Node> {
    let Ok(entries) = std::fs::read_dir(sysfs) else {
        return Vec::new();
    };
    let mut nodes: Vec<Node> = entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let file_name = entry.file_name().into_string().ok()?;
            let number = file_name.strip_prefix("video")?.parse().ok()?;
            let name = std::fs::read_to_string(entry.path().join("name")).ok()?;
            Some(Node {
                path: dev.join(&file_name),
                name: name.trim_end_matches('\n').to_owned(),
                number,
            })
        })
        .collect();
    nodes.sort_by_key(|node| node.number);
    nodes
}

/// The device file of the node called `name` (the lowest numbered, if several are); an error
/// listing the names there are.
pub fn find_by_name(sysfs: &Path, dev: &Path, name: &str) -> Result<PathBuf, String> {
    let nodes = nodes(sysfs, dev);
    if let Some(node) = nodes.iter().find(|node| node.name == name) {
        return Ok(node.path.clone());
    }
    if nodes.is_empty() {
        return Err(format!(
            "no V4L2 device is called {name:?}; there are none ({} is missing or empty)",
            sysfs.display()
        ));
    }
    let names: Vec<String> = nodes
        .iter()
        .map(|node| format!("{} {:?}", node.path.display(), node.name))
        .collect();
    Err(format!(
        "no V4L2 device is called {name:?}; there are {} (`edgecam cameras` says what each offers)",
        names.join(", ")
    ))
}

/// What `edgecam cameras` prints for one node, from its open device: driver, card, capture
/// API, then each format with its sizes (like `v4l2-ctl --list-formats-ext`), and the specs
/// that name it.
pub fn describe(node: &Node, device: &mut dyn Device) -> String {
    let mut text = format!("{} {:?}", node.path.display(), node.name);
    let caps = match device.query_cap() {
        Ok(caps) => caps,
        Err(e) => {
            let _ = writeln!(text, ": cannot query it ({})", crate::error_chain(&e));
            return text;
        }
    };
    let _ = write!(text, ": {} {:?}", caps.driver, caps.card);
    if !caps.bus_info.is_empty() {
        let _ = write!(text, " at {}", caps.bus_info);
    }
    let Some(ty) = caps.capture_type() else {
        text.push_str(", not a video capture node\n");
        return text;
    };
    let api = match ty {
        crate::device::BufType::Capture => "single-planar",
        crate::device::BufType::CaptureMplane => "multi-planar",
    };
    let _ = writeln!(text, ", {api} capture");
    if !caps.streaming() {
        text.push_str("  cannot stream (no V4L2_CAP_STREAMING): edgecam cannot use it\n");
    }
    match read_offers(device, ty) {
        Ok(offers) if offers.is_empty() => text.push_str("  no formats\n"),
        Ok(offers) => {
            for offer in offers {
                let taken = match offer.format() {
                    Some(format) => format!("#format={format}"),
                    None => "not taken by edgecam".to_owned(),
                };
                let _ = writeln!(
                    text,
                    "  {} ({}): {taken}",
                    fourcc_name(offer.desc.fourcc),
                    offer.desc.description
                );
                if offer.sizes.is_empty() {
                    text.push_str("      sizes not listed by the driver\n");
                }
                for sizes in &offer.sizes {
                    let _ = writeln!(text, "      {sizes}");
                }
            }
        }
        Err(e) => {
            let _ = writeln!(
                text,
                "  cannot list its formats ({})",
                crate::error_chain(&e)
            );
        }
    }
    let _ = writeln!(
        text,
        "  --camera 'v4l2:{}'  or  --camera 'v4l2:{}'",
        node.path.display(),
        node.name
    );
    text
}

/// The whole listing: every node in `sysfs`, opened with `open` and described; a line saying
/// so when there is none.
pub fn listing<F>(sysfs: &Path, dev: &Path, mut open: F) -> String
where
    F: FnMut(&Path) -> Result<Box<dyn Device>, DeviceError>,
{
    let nodes = nodes(sysfs, dev);
    if nodes.is_empty() {
        return format!(
            "no V4L2 devices found ({} is missing or empty)\n",
            sysfs.display()
        );
    }
    let mut text = String::new();
    for (i, node) in nodes.iter().enumerate() {
        if i > 0 {
            text.push('\n');
        }
        match open(&node.path) {
            Ok(mut device) => text.push_str(&describe(node, device.as_mut())),
            Err(e) => {
                let _ = writeln!(
                    text,
                    "{} {:?}: cannot open it ({}); is it in use, or are you not in the video group?",
                    node.path.display(),
                    node.name,
                    crate::error_chain(&e)
                );
            }
        }
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use edgecam_core::camera::PixelFormat;

    use super::*;
    use crate::abi;
    use crate::sim::{SimConfig, SimFormat, SimHandle};

    /// A fake sysfs with the given (node number, name).
    fn sysfs(nodes: &[(u32, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (number, name) in nodes {
            let node = dir.path().join(format!("video{number}"));
            std::fs::create_dir(&node).unwrap();
            std::fs::write(node.join("name"), format!("{name}\n")).unwrap();
        }
        std::fs::create_dir(dir.path().join("v4l-subdev0")).unwrap();
        dir
    }

    #[test]
    fn names_find_their_node_whatever_its_number() {
        let dir = sysfs(&[
            (11, "rkisp_mainpath"),
            (2, "rkisp-statistics"),
            (12, "rkisp_selfpath"),
        ]);
        let dev = Path::new("/dev");
        assert_eq!(
            find_by_name(dir.path(), dev, "rkisp_mainpath").unwrap(),
            PathBuf::from("/dev/video11")
        );
        let err = find_by_name(dir.path(), dev, "rkisp_bypasspath").unwrap_err();
        assert_eq!(
            err,
            "no V4L2 device is called \"rkisp_bypasspath\"; there are /dev/video2 \"rkisp-statistics\", \
             /dev/video11 \"rkisp_mainpath\", /dev/video12 \"rkisp_selfpath\" (`edgecam cameras` says what each offers)"
        );
        let none = find_by_name(&dir.path().join("missing"), dev, "x").unwrap_err();
        assert!(none.contains("there are none"), "{none}");
    }

    #[test]
    fn the_listing_says_what_each_device_offers() {
        let dir = sysfs(&[(0, "USB Camera"), (11, "rkisp_mainpath"), (3, "broken")]);
        let webcam = SimHandle::new(SimConfig::new(vec![
            SimFormat::mjpeg((1280, 720), vec![0xFF, 0xD8, 0xFF, 0xD9]),
            SimFormat::raw(PixelFormat::Yuyv, &[(640, 480), (320, 240)]),
            SimFormat::other(abi::fourcc(b"H264"), "H.264", &[(1920, 1080)]),
        ]));
        let isp = SimHandle::new(SimConfig::rkisp_mainpath());
        let mut open = |path: &Path| -> Result<Box<dyn Device>, DeviceError> {
            match path.to_str() {
                Some("/dev/video0") => Ok(Box::new(webcam.open()?)),
                Some("/dev/video11") => Ok(Box::new(isp.open()?)),
                _ => Err(DeviceError::new("open", libc::EACCES)),
            }
        };
        let text = listing(dir.path(), Path::new("/dev"), &mut open);
        insta::assert_snapshot!(text);
        let empty = listing(
            Path::new("/nonexistent/video4linux"),
            Path::new("/dev"),
            &mut open,
        );
        assert_eq!(
            empty,
            "no V4L2 devices found (/nonexistent/video4linux is missing or empty)\n"
        );
    }
}
