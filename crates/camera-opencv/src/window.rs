//! [`HighGuiWindow`]: an OpenCV HighGUI window for the viewer, with a check for a display first
//! so that a headless machine gets an error instead of an abort inside Qt or GTK.

use std::marker::PhantomData;
use std::time::Duration;

use edgecam_core::camera::{Image, PixelFormat};
use edgecam_encode::RawImage;
use opencv::core::ToInputArray;
use opencv::highgui;

use crate::error::OpenCvError;
use crate::image::{ToBgr, decode_jpeg};

/// One HighGUI window showing frames.
///
/// HighGUI runs its event loop on the thread that uses it: keep a window on the thread that
/// opened it (it is neither `Send` nor `Sync`), and call [`poll_key`](Self::poll_key) regularly,
/// since that is when the window is drawn and events are handled.
///
/// Opening checks for a display first (see [`open`](Self::open)); the window is destroyed on
/// [`close`](Self::close) or drop.
#[derive(Debug)]
pub struct HighGuiWindow {
    title: String,
    closed: bool,
    /// Raw frames turned into BGR for `imshow`, buffers reused.
    to_bgr: ToBgr,
    /// HighGUI's state belongs to one thread.
    _one_thread: PhantomData<*const ()>,
}

impl HighGuiWindow {
    /// Opens a resizable window called `title` (the title is also OpenCV's name for it: two
    /// windows with the same title are one window).
    ///
    /// Fails with [`OpenCvError::NoDisplay`] when there is nothing to show it on, rather than
    /// letting Qt or GTK abort the process. With Qt (Debian's OpenCV), `DISPLAY` must name an
    /// X server that accepts connections, unless `QT_QPA_PLATFORM` names another platform
    /// (`offscreen`, `wayland`, `vnc`, `eglfs`), which is trusted as it is. With GTK, a
    /// reachable `DISPLAY` or any `WAYLAND_DISPLAY` will do. An OpenCV built without a GUI is
    /// refused too.
    pub fn open(title: &str) -> Result<HighGuiWindow, OpenCvError> {
        let build = opencv::core::get_build_information()
            .map_err(OpenCvError::opencv("read OpenCV's build information"))?;
        check_display(&gui_framework(&build), |name| std::env::var(name).ok())
            .map_err(OpenCvError::NoDisplay)?;
        highgui::named_window(
            title,
            highgui::WINDOW_NORMAL | highgui::WINDOW_KEEPRATIO | highgui::WINDOW_GUI_NORMAL,
        )
        .map_err(OpenCvError::opencv(format!("open the window {title:?}")))?;
        Ok(HighGuiWindow {
            title: title.to_owned(),
            closed: false,
            to_bgr: ToBgr::default(),
            _one_thread: PhantomData,
        })
    }

    pub fn title(&self) -> &str {
        &self.title
    }

    /// Shows a JPEG image (decoded with OpenCV's `imdecode`). Like every method below, fails
    /// with [`OpenCvError::WindowClosed`] once the window is closed.
    pub fn show_jpeg(&mut self, jpeg: &[u8]) -> Result<(), OpenCvError> {
        self.check_open()?;
        let bgr = decode_jpeg(jpeg)?;
        imshow(&self.title, &bgr)
    }

    /// Shows packed RGB pixels, `width * height * 3` bytes.
    pub fn show_rgb(&mut self, width: u32, height: u32, pixels: &[u8]) -> Result<(), OpenCvError> {
        self.check_open()?;
        let expected = (width as usize)
            .checked_mul(height as usize)
            .and_then(|n| n.checked_mul(3));
        if expected != Some(pixels.len()) {
            return Err(OpenCvError::BadFrame(format!(
                "{} bytes are not a {width}x{height} RGB image",
                pixels.len()
            )));
        }
        self.show_raw(&RawImage {
            format: PixelFormat::Rgb24,
            width,
            height,
            planes: [pixels, &[], &[]],
            strides: [width as usize * 3, 0, 0],
        })
    }

    /// Shows a camera image of any format: JPEG through `imdecode`, BGR24 as it is, the others
    /// converted to BGR.
    pub fn show(&mut self, image: &Image) -> Result<(), OpenCvError> {
        if image.format().is_jpeg() {
            return self.show_jpeg(image.data());
        }
        self.check_open()?;
        self.show_raw(&RawImage::of(image))
    }

    fn show_raw(&mut self, image: &RawImage<'_>) -> Result<(), OpenCvError> {
        let bgr = self.to_bgr.convert(image)?;
        imshow(&self.title, &bgr)
    }

    /// Handles window events for up to `timeout` (at least 1 ms) and returns the key pressed
    /// meanwhile, if any: printable characters as themselves, Esc as `'\u{1b}'`, Enter as
    /// `'\r'`, Tab as `'\t'`, Backspace as `'\u{8}'`. Other keys (arrows, function keys) are
    /// `None`.
    pub fn poll_key(&mut self, timeout: Duration) -> Result<Option<char>, OpenCvError> {
        self.check_open()?;
        let ms = i32::try_from(timeout.as_millis())
            .unwrap_or(i32::MAX)
            .max(1);
        let code = highgui::wait_key_ex(ms).map_err(OpenCvError::opencv("wait for a key"))?;
        Ok(key_from_code(code))
    }

    /// Whether the window is gone: closed here, or by the user (its close button).
    pub fn is_closed(&self) -> bool {
        self.closed
            || highgui::get_window_property(&self.title, highgui::WND_PROP_VISIBLE)
                .map_or(true, |visible| visible < 1.0)
    }

    /// Destroys the window (also done on drop).
    pub fn close(mut self) {
        self.destroy();
    }

    fn check_open(&self) -> Result<(), OpenCvError> {
        if self.is_closed() {
            Err(OpenCvError::WindowClosed(self.title.clone()))
        } else {
            Ok(())
        }
    }

    fn destroy(&mut self) {
        if std::mem::replace(&mut self.closed, true) {
            return;
        }
        if let Err(e) = highgui::destroy_window(&self.title) {
            tracing::debug!(window = %self.title, error = %e, "destroying the window failed");
        }
        // Let the UI process the destruction, so that the window actually disappears.
        let _ = highgui::wait_key_ex(1);
    }
}

impl Drop for HighGuiWindow {
    fn drop(&mut self) {
        self.destroy();
    }
}

fn imshow(title: &str, bgr: &impl ToInputArray) -> Result<(), OpenCvError> {
    highgui::imshow(title, bgr).map_err(OpenCvError::opencv(format!("show a frame in {title:?}")))
}

/// A key code from `waitKeyEx` as a character: Latin-1 codes as themselves, X keysyms of the
/// editing keys (GTK and Qt return them) as their control characters, anything else `None`.
fn key_from_code(code: i32) -> Option<char> {
    let code = u32::try_from(code).ok()?;
    let c = match code {
        0xff1b => '\u{1b}',
        0xff0d | 0xff8d => '\r',
        0xff09 => '\t',
        0xff08 => '\u{8}',
        0..=0xff => char::from_u32(code)?,
        _ => return None,
    };
    (!c.is_control() || ['\u{1b}', '\r', '\n', '\t', '\u{8}'].contains(&c)).then_some(c)
}

/// The `GUI:` line of OpenCV's build information: `QT5`, `GTK3`, `NONE`, ...
fn gui_framework(build_information: &str) -> String {
    build_information
        .lines()
        .find_map(|line| line.trim().strip_prefix("GUI:"))
        .map(|value| value.trim().to_owned())
        .unwrap_or_default()
}

/// Whether a HighGUI window of `framework` can be shown, from the environment `var` gives; the
/// reason why not otherwise.
fn check_display(framework: &str, var: impl Fn(&str) -> Option<String>) -> Result<(), String> {
    let set = |name: &str| var(name).filter(|value| !value.is_empty());
    let qt = framework.starts_with("QT");
    let gtk = framework.starts_with("GTK");
    if framework.eq_ignore_ascii_case("NONE") {
        return Err("this OpenCV was built without a GUI (its build information says GUI: NONE);                     install one built with Qt or GTK"
            .to_owned());
    }
    if !qt && !gtk {
        // Windows, macOS, or unknown: their own business.
        return Ok(());
    }
    if let Some(platform) = set("QT_QPA_PLATFORM").filter(|_| qt) {
        if !platform.starts_with("xcb") {
            return Ok(());
        }
    }
    if gtk && set("WAYLAND_DISPLAY").is_some() {
        return Ok(());
    }
    let Some(display) = set("DISPLAY") else {
        return Err(if let Some(wayland) = set("WAYLAND_DISPLAY") {
            format!(
                "WAYLAND_DISPLAY={wayland} is set but DISPLAY is not, and OpenCV's window needs \
                 X11: enable XWayland (it sets DISPLAY), or set QT_QPA_PLATFORM=wayland if Qt's \
                 Wayland plugin is installed"
            )
        } else {
            "neither DISPLAY nor WAYLAND_DISPLAY is set (no graphical session, e.g. over ssh \
             without -X): run it on the desktop, use ssh -X, or set QT_QPA_PLATFORM=offscreen \
             to draw into nothing"
                .to_owned()
        });
    };
    x_server_answers(&display).map_err(|reason| {
        format!(
            "DISPLAY={display} but no X server answers there ({reason}); check that the desktop \
             session is running, or that ssh forwards X (ssh -X)"
        )
    })
}

/// Connects to the X server `display` names (`:0`, `unix:0`, `localhost:10.0`); an error says
/// why it cannot be reached. Displays in other forms are not checked.
fn x_server_answers(display: &str) -> Result<(), String> {
    let Some((host, rest)) = display.rsplit_once(':') else {
        return Err("it is not HOST:NUMBER".to_owned());
    };
    if host.starts_with('/') {
        // A socket path (XQuartz): left to the X library.
        return Ok(());
    }
    let number = rest.split('.').next().unwrap_or_default();
    let Ok(number) = number.parse::<u16>() else {
        return Err("it is not HOST:NUMBER".to_owned());
    };
    if host.is_empty() || host == "unix" {
        let path = format!("/tmp/.X11-unix/X{number}");
        let file = std::os::unix::net::UnixStream::connect(&path);
        if file.is_ok() {
            return Ok(());
        }
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let abstract_name = std::os::unix::net::SocketAddr::from_abstract_name(&path)
                .and_then(|addr| std::os::unix::net::UnixStream::connect_addr(&addr));
            if abstract_name.is_ok() {
                return Ok(());
            }
        }
        return Err(match file {
            Err(e) => format!("{path}: {e}"),
            Ok(_) => path,
        });
    }
    let port = 6000u32 + u32::from(number);
    let address = format!("{host}:{port}");
    let addrs = std::net::ToSocketAddrs::to_socket_addrs(&address)
        .map_err(|e| format!("{address}: {e}"))?;
    let mut last = format!("{address}: no address");
    for addr in addrs {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(last)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn keys() {
        assert_eq!(key_from_code(-1), None);
        assert_eq!(key_from_code(27), Some('\u{1b}'));
        assert_eq!(key_from_code(0xff1b), Some('\u{1b}'));
        assert_eq!(key_from_code(i32::from(b'q')), Some('q'));
        assert_eq!(key_from_code(i32::from(b' ')), Some(' '));
        assert_eq!(key_from_code(13), Some('\r'));
        assert_eq!(key_from_code(0xff0d), Some('\r'));
        assert_eq!(key_from_code(0xe9), Some('é'));
        assert_eq!(key_from_code(0xff51), None, "Left arrow");
        assert_eq!(key_from_code(0xffbe), None, "F1");
        assert_eq!(key_from_code(3), None, "a control character");
        assert_eq!(key_from_code(0x1_0000), None);
    }

    #[test]
    fn no_display_is_a_clear_error() {
        let err = check_display("QT5", env(&[])).unwrap_err();
        assert!(
            err.starts_with("neither DISPLAY nor WAYLAND_DISPLAY is set"),
            "{err}"
        );
        assert!(err.contains("QT_QPA_PLATFORM=offscreen"), "{err}");
        let err =
            check_display("QT5", env(&[("DISPLAY", ""), ("QT_QPA_PLATFORM", "")])).unwrap_err();
        assert!(err.starts_with("neither"), "empty counts as unset: {err}");
        let err = check_display("QT5", env(&[("WAYLAND_DISPLAY", "wayland-0")])).unwrap_err();
        assert!(
            err.starts_with("WAYLAND_DISPLAY=wayland-0 is set but DISPLAY is not"),
            "{err}"
        );
        let err = check_display("QT5", env(&[("QT_QPA_PLATFORM", "xcb")])).unwrap_err();
        assert!(err.starts_with("neither"), "xcb needs X: {err}");
    }

    #[test]
    fn a_display_nobody_answers_on_is_a_clear_error() {
        // No X server listens on display 97 here (nor does anything on TCP port 6097).
        let err = check_display("QT5", env(&[("DISPLAY", ":97")])).unwrap_err();
        assert!(
            err.starts_with("DISPLAY=:97 but no X server answers there (/tmp/.X11-unix/X97"),
            "{err}"
        );
        let err = check_display("QT5", env(&[("DISPLAY", "127.0.0.1:97.0")])).unwrap_err();
        assert!(
            err.starts_with("DISPLAY=127.0.0.1:97.0 but no X server answers there (127.0.0.1:6097"),
            "{err}"
        );
        let err = check_display("QT5", env(&[("DISPLAY", "nonsense")])).unwrap_err();
        assert!(err.contains("it is not HOST:NUMBER"), "{err}");
    }

    #[test]
    fn the_gui_framework_decides_what_counts_as_a_display() {
        let build = "General configuration\n  GUI:                           QT5\n    QT: YES\n";
        assert_eq!(gui_framework(build), "QT5");
        assert_eq!(gui_framework("nothing here"), "");
        let gtk_on_wayland = check_display("GTK3", env(&[("WAYLAND_DISPLAY", "wayland-0")]));
        assert_eq!(gtk_on_wayland, Ok(()), "GTK speaks Wayland itself");
        let err = check_display("GTK3", env(&[("QT_QPA_PLATFORM", "offscreen")])).unwrap_err();
        assert!(
            err.starts_with("neither"),
            "QT_QPA_PLATFORM means nothing to GTK: {err}"
        );
        let err = check_display("NONE", env(&[("DISPLAY", ":0")])).unwrap_err();
        assert!(
            err.starts_with("this OpenCV was built without a GUI"),
            "{err}"
        );
        assert_eq!(check_display("WIN32UI", env(&[])), Ok(()));
    }

    #[test]
    fn another_qt_platform_is_trusted() {
        assert_eq!(
            check_display("QT5", env(&[("QT_QPA_PLATFORM", "offscreen")])),
            Ok(())
        );
        assert_eq!(
            check_display(
                "QT5",
                env(&[("QT_QPA_PLATFORM", "wayland"), ("WAYLAND_DISPLAY", "w")])
            ),
            Ok(())
        );
    }

    #[test]
    fn a_listening_x_socket_counts_as_a_display() {
        // A stand-in X server: anything that accepts connections on the display's TCP port.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        if let Some(number) = port.checked_sub(6000) {
            let display = format!("127.0.0.1:{number}");
            assert_eq!(check_display("QT5", env(&[("DISPLAY", &display)])), Ok(()));
        }
    }
}
