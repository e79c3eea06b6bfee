//! What this build has, registered in one place: the camera kinds a `--camera` spec may name
//! and the JPEG encoders `--encoder` may pick. A new backend is a crate plus one line here.

#[cfg(not(feature = "opencv"))]
use edgecam_core::camera::CameraKind;
use edgecam_core::camera::CameraRegistry;
use edgecam_encode::Backends;

/// Every camera kind, with those this build lacks saying how to get them.
pub fn cameras() -> CameraRegistry {
    let mut registry = CameraRegistry::new();
    registry.register(edgecam_camera_sim::kind());
    registry.register(edgecam_camera_pipe::exec_kind());
    registry.register(edgecam_camera_pipe::pipe_kind());
    registry.register(edgecam_camera_v4l2::kind());
    #[cfg(feature = "opencv")]
    registry.register(edgecam_camera_opencv::kind());
    #[cfg(not(feature = "opencv"))]
    registry.register(CameraKind {
        name: "opencv",
        summary: "opencv[:INDEX|DEVICE|FILE|URL][#size=WxH&fps=N&...]: cameras, files and streams through OpenCV",
        example: "opencv:0",
        build: Err("this edgecam was built without OpenCV; rebuild with `--features opencv` \
                    (needs libopencv-dev, clang, libclang-dev; see the README), or use an exec: camera"),
    });
    registry
}

/// Every JPEG encoder this build has, fastest first (`--encoder auto` takes the first).
pub fn encoders() -> Backends {
    #[allow(unused_mut)]
    let mut backends = Backends::builtin();
    #[cfg(feature = "opencv")]
    backends.add(edgecam_camera_opencv::encoder_kind(), &["rust"]);
    backends
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_default_camera_and_encoder_exist() {
        let registry = cameras();
        assert!(
            registry
                .kinds()
                .iter()
                .any(|k| k.name == "sim" && k.build.is_ok())
        );
        let auto = encoders().start("auto").unwrap();
        let fastest = if cfg!(feature = "turbojpeg") {
            "turbo"
        } else if cfg!(feature = "opencv") {
            "opencv"
        } else {
            "rust"
        };
        assert_eq!(auto.name(), fastest);
    }
}
