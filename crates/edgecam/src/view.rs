//! `edgecam view`: the stream in a window, with keys to stop and resume it (`q`), save a
//! snapshot (`s`), start and stop recording (`r`) and quit (Esc).
//!
//! Three parts: a receiving task owns the connection and the recorder, so a recording gets
//! every frame however slowly the window draws; a decoding thread decodes the newest frame
//! (never on the async runtime, so Ctrl-C and SIGTERM stay prompt whatever a frame costs); the
//! window loop shows the newest decoded picture and turns keys into [`Control`]s. A frame
//! whose JPEG claims a picture over [`ViewOptions::max_picture`] is never decoded, only
//! counted as undecodable. The window is behind the [`Window`] trait: minifb here
//! (feature `window`), OpenCV's highgui in builds with OpenCV, a scripted one in tests.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use edgecam_core::jpeg::{PictureError, PictureLimit};
use edgecam_core::recorder::{Recorder, RecorderError, RecordingSummary};
use thiserror::Error;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::client::{Client, ClientError, Received};
use edgecam_core::limit::{RateLimit, Verdict};

/// What a key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// `q`: stop the stream, or resume it.
    ToggleStream,
    /// `s`: save the frame on screen as a JPEG, exactly as received.
    Snapshot,
    /// `r`: start recording to a new AVI file, or finish the current one.
    ToggleRecording,
    /// Esc (or closing the window): quit.
    Quit,
}

impl Key {
    pub fn from_char(c: char) -> Option<Key> {
        match c.to_ascii_lowercase() {
            'q' => Some(Key::ToggleStream),
            's' => Some(Key::Snapshot),
            'r' => Some(Key::ToggleRecording),
            '\u{1b}' => Some(Key::Quit),
            _ => None,
        }
    }
}

/// A decoded picture: packed 8-bit RGB, rows top to bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picture {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
    /// The sequence number edgecam stamped into the frame; `None` from a legacy server.
    pub seq: Option<u64>,
}

/// Where pictures are shown.
pub trait Window {
    fn show(&mut self, picture: &Picture) -> Result<(), ViewError>;
    /// The keys pressed since the last call; also keeps the window responsive.
    fn keys(&mut self) -> Vec<Key>;
    /// `false` once the user closed the window.
    fn is_open(&self) -> bool;
    fn set_title(&mut self, title: &str);
}

/// Opens a window for pictures of the given size (the first frame's).
pub type OpenWindow<'a> = dyn FnMut(u32, u32) -> Result<Box<dyn Window>, ViewError> + 'a;

#[derive(Debug, Error)]
pub enum ViewError {
    #[error(
        "no display: neither DISPLAY nor WAYLAND_DISPLAY is set; to keep the stream without a \
         window, use `edgecam record HOST:PORT`"
    )]
    NoDisplay,
    #[error(
        "cannot open a window: {0}; to keep the stream without a window, use `edgecam record HOST:PORT`"
    )]
    Window(String),
    #[error("cannot decode a {len}-byte frame")]
    Decode {
        len: usize,
        #[source]
        source: jpeg_decoder::Error,
    },
    #[error("a frame decoded to {0:?} pixels, which the viewer cannot show")]
    PixelFormat(jpeg_decoder::PixelFormat),
    #[error("a frame was not decoded: {0}")]
    Picture(#[from] PictureError),
    #[error("a {width}x{height} picture does not fit in this machine's address space")]
    TooLargeForMemory { width: u32, height: u32 },
    #[error("cannot start the decoding thread")]
    DecodeThread(#[source] std::io::Error),
    #[error("the decoding thread stopped")]
    DecoderGone,
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Recorder(#[from] RecorderError),
    #[error("cannot write the snapshot {path}")]
    Snapshot {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The pure-Rust decoder. `cargo xtask bench` measures it against libjpeg-turbo: on x86 the
/// window's 60 Hz leaves time for either, and pure Rust needs nothing installed.
///
/// The picture size the JPEG claims is checked against `limit` before anything is decoded
/// or allocated (a 16 KB JPEG may claim 65535x65535), and the RGB size with checked
/// arithmetic (32-bit boards). Slow for big pictures: call it off the async runtime.
pub fn decode(jpeg: &[u8], limit: PictureLimit) -> Result<Picture, ViewError> {
    let (width, height) = limit.check(jpeg)?;
    let too_large = ViewError::TooLargeForMemory { width, height };
    let rgb_len = edgecam_core::jpeg::rgb_len(width, height).ok_or(too_large)?;
    let mut decoder = jpeg_decoder::Decoder::new(jpeg);
    // The decoder's own bound, in case it reads a size other than the one checked (CMYK
    // output takes 4 bytes a pixel).
    let most = limit
        .max_rgb_bytes()
        .and_then(|n| n.checked_div(3)?.checked_mul(4))
        .unwrap_or(usize::MAX);
    decoder.set_max_decoding_buffer_size(most);
    let pixels = decoder.decode().map_err(|source| ViewError::Decode {
        len: jpeg.len(),
        source,
    })?;
    let Some(info) = decoder.info() else {
        return Err(ViewError::Decode {
            len: jpeg.len(),
            source: jpeg_decoder::Error::Format("no frame header".to_owned()),
        });
    };
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    let rgb = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => pixels,
        jpeg_decoder::PixelFormat::L8 => pixels.iter().flat_map(|&l| [l, l, l]).collect(),
        other => return Err(ViewError::PixelFormat(other)),
    };
    if rgb.len() != rgb_len || rgb.len() != edgecam_core::jpeg::rgb_len(width, height).unwrap_or(0)
    {
        return Err(ViewError::Decode {
            len: jpeg.len(),
            source: jpeg_decoder::Error::Format(format!(
                "{width}x{height} decoded to {} bytes of RGB",
                rgb.len()
            )),
        });
    }
    Ok(Picture {
        width,
        height,
        rgb,
        seq: edgecam_core::jpeg::Stamp::find(jpeg).map(|s| s.seq),
    })
}

/// What the decoding thread hands back: a picture, or why a frame could not be one.
type Decoded = Result<(Picture, Bytes), ViewError>;

/// A thread that decodes one frame at a time. A frame is handed over only while the thread
/// waits for one, so it always decodes the newest frame there is, never a backlog; it ends
/// when this is dropped (after the frame it is decoding, if any, without anyone waiting).
struct DecodeThread {
    frames: std::sync::mpsc::SyncSender<Bytes>,
    decoded: std::sync::mpsc::Receiver<Decoded>,
}

impl DecodeThread {
    fn start(limit: PictureLimit) -> Result<Self, ViewError> {
        let (frames, frame_rx) = std::sync::mpsc::sync_channel::<Bytes>(0);
        let (decoded_tx, decoded) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("view-decode".to_owned())
            .spawn(move || {
                for jpeg in frame_rx {
                    let result = decode(&jpeg, limit).map(|picture| (picture, jpeg));
                    if decoded_tx.send(result).is_err() {
                        return;
                    }
                }
            })
            .map_err(ViewError::DecodeThread)?;
        Ok(DecodeThread { frames, decoded })
    }

    /// Hands `jpeg` over if the thread is waiting for a frame; gives it back if it is busy.
    fn offer(&self, jpeg: Bytes) -> Result<Option<Bytes>, ViewError> {
        match self.frames.try_send(jpeg) {
            Ok(()) => Ok(None),
            Err(std::sync::mpsc::TrySendError::Full(jpeg)) => Ok(Some(jpeg)),
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => Err(ViewError::DecoderGone),
        }
    }

    /// What was decoded since the last call, oldest first.
    fn results(&self) -> Vec<Decoded> {
        self.decoded.try_iter().collect()
    }
}

/// Whether an X11 or Wayland display is named in the environment.
pub fn has_display() -> bool {
    ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|var| std::env::var_os(var).is_some_and(|v| !v.is_empty()))
}

#[derive(Debug)]
pub struct ViewOptions {
    /// Record from the start to this file.
    pub record: Option<PathBuf>,
    /// Where snapshots and recordings started with `r` go.
    pub dir: PathBuf,
    /// The peer, for the window title.
    pub peer: String,
    /// Cancelled (Ctrl-C): quit as Esc does.
    pub stop: CancellationToken,
    /// Frames claiming a larger picture are not decoded (counted as undecodable) and not
    /// recorded.
    pub max_picture: PictureLimit,
}

/// What a viewing session did.
#[derive(Debug, Default)]
pub struct ViewSummary {
    pub received: u64,
    pub shown: u64,
    /// Frames that could not be decoded and were not shown (they are still recorded, unless
    /// they claim a picture over the limit).
    pub undecodable: u64,
    /// Frames not recorded: no picture size, or one over [`ViewOptions::max_picture`].
    pub not_recorded: u64,
    pub snapshots: Vec<PathBuf>,
    pub recordings: Vec<RecordingSummary>,
}

/// What the window loop asks of the receiving task.
enum Control {
    ToggleStream,
    ToggleRecording(PathBuf),
    Quit,
}

/// What the receiving task tells the window loop.
#[derive(Debug, Clone, Default, PartialEq)]
struct Status {
    streaming: bool,
    recording: Option<PathBuf>,
    received: u64,
    not_recorded: u64,
}

const TICK: Duration = Duration::from_millis(15);

/// Views the stream from `client` until Esc, a closed window or an error. Recordings are
/// finished (and so playable) however it ends.
pub async fn view(
    client: Client,
    open_window: &mut OpenWindow<'_>,
    options: ViewOptions,
) -> Result<ViewSummary, ViewError> {
    let (controls, control_rx) = mpsc::unbounded_channel();
    let (latest_tx, mut latest) = watch::channel(None);
    let (status_tx, mut status) = watch::channel(Status::default());
    let receiving = tokio::spawn(receive(
        client,
        control_rx,
        latest_tx,
        status_tx,
        options.record.clone(),
        options.max_picture,
    ));
    let mut summary = ViewSummary::default();
    let result = show(
        open_window,
        &options,
        &mut latest,
        &mut status,
        &controls,
        &mut summary,
    )
    .await;
    let _ = controls.send(Control::Quit);
    let received = match receiving.await {
        Ok(received) => received,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    let (recordings, received_result) = received;
    summary.recordings = recordings;
    summary.received = status.borrow().received;
    summary.not_recorded = status.borrow().not_recorded;
    // The window's error first: it is why the session ended, if it ended there.
    result.and(received_result).map(|()| summary)
}

/// The window loop; returns when the user quits or the receiving task has stopped.
async fn show(
    open_window: &mut OpenWindow<'_>,
    options: &ViewOptions,
    latest: &mut watch::Receiver<Option<Received>>,
    status: &mut watch::Receiver<Status>,
    controls: &mpsc::UnboundedSender<Control>,
    summary: &mut ViewSummary,
) -> Result<(), ViewError> {
    let mut window: Option<Box<dyn Window>> = None;
    let mut on_screen: Option<Bytes> = None;
    let mut rate = Rate::default();
    let mut title = String::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let decoder = DecodeThread::start(options.max_picture)?;
    // The newest frame not yet handed to the decoder.
    let mut waiting: Option<Bytes> = None;
    let mut warnings = RateLimit::repeats();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = options.stop.cancelled() => return Ok(()),
        }
        // Closed: the receiving task ended (the server went away, or an error).
        if status.has_changed().is_err() {
            return Ok(());
        }
        if latest.has_changed().unwrap_or(false)
            && let Some(frame) = latest.borrow_and_update().clone()
        {
            waiting = Some(frame.jpeg);
        }
        if let Some(jpeg) = waiting.take() {
            waiting = decoder.offer(jpeg)?;
        }
        // Only the newest picture is shown; every failure is counted.
        let mut newest = None;
        for result in decoder.results() {
            match result {
                Ok(decoded) => newest = Some(decoded),
                Err(e) => {
                    summary.undecodable += 1;
                    if let Verdict::Log { suppressed } = warnings.check(Instant::now()) {
                        tracing::warn!(
                            error = %crate::error_chain(&e),
                            undecodable = summary.undecodable,
                            "frame not shown ({suppressed} more since the last such line)"
                        );
                    }
                }
            }
        }
        if let Some((picture, jpeg)) = newest {
            let w = match window.as_mut() {
                Some(w) => w,
                None => window.insert(open_window(picture.width, picture.height)?),
            };
            w.show(&picture)?;
            summary.shown += 1;
            rate.tick();
            on_screen = Some(jpeg);
        }
        let Some(w) = window.as_mut() else { continue };
        if !w.is_open() {
            return Ok(());
        }
        for key in w.keys() {
            let control = match key {
                Key::Quit => return Ok(()),
                Key::ToggleStream => Control::ToggleStream,
                Key::ToggleRecording => Control::ToggleRecording(
                    options
                        .dir
                        .join(crate::stamped_file_name("video_stream", "avi")),
                ),
                Key::Snapshot => {
                    if let Some(jpeg) = &on_screen {
                        summary.snapshots.push(snapshot(&options.dir, jpeg)?);
                    }
                    continue;
                }
            };
            if controls.send(control).is_err() {
                return Ok(());
            }
        }
        let now = title_for(
            &options.peer,
            &status.borrow(),
            rate.fps(),
            summary.undecodable,
        );
        if now != title {
            w.set_title(&now);
            title = now;
        }
    }
}

fn title_for(peer: &str, status: &Status, fps: f64, undecodable: u64) -> String {
    let state = if status.streaming {
        format!("{fps:.1} fps")
    } else {
        "stopped".to_owned()
    };
    let recording = status.recording.as_ref().map_or(String::new(), |path| {
        format!(
            " - REC {}",
            path.file_name().unwrap_or_default().to_string_lossy()
        )
    });
    let undecodable = match undecodable {
        0 => String::new(),
        n => format!(" - {n} undecodable"),
    };
    format!(
        "edgecam {peer} - {state}{undecodable}{recording} - q stop/resume, s snapshot, r record, Esc quit"
    )
}

/// Writes `jpeg` as it was received to `snapshot_<unix-ms>.jpg` in `dir` (`-2`, `-3`, ...
/// added to the name rather than overwriting a file).
fn snapshot(dir: &Path, jpeg: &[u8]) -> Result<PathBuf, ViewError> {
    use std::io::Write;
    let name = crate::stamped_file_name("snapshot", "jpg");
    let mut n = 1;
    loop {
        let path = match n {
            1 => dir.join(&name),
            n => dir.join(name.replace(".jpg", &format!("-{n}.jpg"))),
        };
        let error = |source| ViewError::Snapshot {
            path: path.clone(),
            source,
        };
        match std::fs::File::create_new(&path) {
            Ok(mut file) => {
                file.write_all(jpeg).map_err(error)?;
                tracing::info!(path = %path.display(), "snapshot saved");
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 100 => n += 1,
            Err(e) => return Err(error(e)),
        }
    }
}

/// Frames shown per second, over the last second or so.
#[derive(Debug, Default)]
struct Rate {
    since: Option<Instant>,
    count: u32,
    fps: f64,
}

impl Rate {
    fn tick(&mut self) {
        let since = *self.since.get_or_insert_with(Instant::now);
        self.count += 1;
        let elapsed = since.elapsed();
        if elapsed >= Duration::from_secs(1) {
            self.fps = f64::from(self.count) / elapsed.as_secs_f64();
            (self.since, self.count) = (Some(Instant::now()), 0);
        }
    }

    fn fps(&self) -> f64 {
        self.fps
    }
}

/// The receiving task: streams, records and obeys controls until `Quit` or an error. Returns
/// the finished recordings (finished even after an error) and how it ended.
async fn receive(
    mut client: Client,
    mut controls: mpsc::UnboundedReceiver<Control>,
    latest: watch::Sender<Option<Received>>,
    status: watch::Sender<Status>,
    record: Option<PathBuf>,
    max_picture: PictureLimit,
) -> (Vec<RecordingSummary>, Result<(), ViewError>) {
    let mut recorder: Option<edgecam_recorder::AviRecorder> = None;
    let mut recordings = Vec::new();
    let result: Result<(), ViewError> = async {
        if let Some(path) = record {
            recorder = Some(start_recording(&status, path, max_picture).await?);
        }
        let mut refused = RateLimit::repeats();
        client.start_stream().await?;
        status.send_modify(|s| s.streaming = true);
        loop {
            let streaming = status.borrow().streaming;
            tokio::select! {
                control = controls.recv() => match control {
                    None | Some(Control::Quit) => return Ok(()),
                    Some(Control::ToggleStream) if streaming => {
                        client.stop_stream().await?;
                        status.send_modify(|s| s.streaming = false);
                    }
                    Some(Control::ToggleStream) => {
                        client.start_stream().await?;
                        status.send_modify(|s| s.streaming = true);
                    }
                    Some(Control::ToggleRecording(path)) => match recorder.take() {
                        Some(mut r) => {
                            status.send_modify(|s| s.recording = None);
                            recordings.push(finish_recording(&mut r).await?);
                        }
                        None => {
                            recorder = Some(start_recording(&status, path, max_picture).await?)
                        }
                    },
                },
                frame = client.next_frame(), if streaming => {
                    let frame = frame?;
                    let received = status.borrow().received + 1;
                    if let Some(r) = recorder.as_mut() {
                        // Refused frames (no picture size, or one over the limit) are skipped.
                        match r.write_frame(&frame.clone().into_frame(received)).await {
                            Ok(()) => {}
                            Err(e) if e.is_refused_frame() => {
                                status.send_modify(|s| s.not_recorded += 1);
                                if refused.check(Instant::now()) != Verdict::Drop {
                                    tracing::warn!(
                                        error = %crate::error_chain(&e),
                                        not_recorded = refused.total(),
                                        "frame not recorded"
                                    );
                                }
                            }
                            Err(e) => return Err(e.into()),
                        }
                    }
                    status.send_modify(|s| s.received = received);
                    latest.send_replace(Some(frame));
                }
            }
        }
    }
    .await;
    if status.borrow().streaming && result.is_ok() {
        // Leaves a legacy server idle; the connection closes right after anyway.
        if let Err(e) = client.stop_stream().await {
            tracing::debug!(error = %e, "stopping the stream on quit failed");
        }
    }
    if let Some(mut r) = recorder {
        match finish_recording(&mut r).await {
            Ok(summary) => recordings.push(summary),
            Err(e) => {
                tracing::error!(error = %crate::error_chain(&e), "finishing the recording failed")
            }
        }
    }
    (recordings, result)
}

async fn start_recording(
    status: &watch::Sender<Status>,
    path: PathBuf,
    max_picture: PictureLimit,
) -> Result<edgecam_recorder::AviRecorder, ViewError> {
    let config = edgecam_recorder::AviConfig::default().with_max_picture(max_picture);
    let mut recorder = edgecam_recorder::AviRecorder::new(&path, config);
    recorder.start().await?;
    tracing::info!(path = %path.display(), "recording");
    status.send_modify(|s| s.recording = Some(path));
    Ok(recorder)
}

async fn finish_recording(
    recorder: &mut edgecam_recorder::AviRecorder,
) -> Result<RecordingSummary, ViewError> {
    let summary = recorder.finish().await?;
    tracing::info!(path = %summary.path.display(), frames = summary.frames, bytes = summary.bytes, "recording finished");
    Ok(summary)
}

#[cfg(feature = "window")]
pub use minifb_window::MinifbWindow;

#[cfg(feature = "window")]
mod minifb_window {
    use super::{Key, Picture, ViewError, Window, has_display};

    /// A plain window (minifb): X11 or Wayland, loaded when the window opens.
    pub struct MinifbWindow {
        window: minifb::Window,
        buffer: Vec<u32>,
        /// Events were processed since the last `keys`, by showing a picture.
        pumped: bool,
    }

    impl std::fmt::Debug for MinifbWindow {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("MinifbWindow").finish_non_exhaustive()
        }
    }

    impl MinifbWindow {
        pub fn open(title: &str, width: u32, height: u32) -> Result<Self, ViewError> {
            if !has_display() {
                return Err(ViewError::NoDisplay);
            }
            let options = minifb::WindowOptions {
                resize: true,
                scale_mode: minifb::ScaleMode::AspectRatioStretch,
                ..minifb::WindowOptions::default()
            };
            let mut window = minifb::Window::new(title, width as usize, height as usize, options)
                .map_err(|e| ViewError::Window(e.to_string()))?;
            // The view loop paces itself.
            window.set_target_fps(0);
            Ok(MinifbWindow {
                window,
                buffer: Vec::new(),
                pumped: false,
            })
        }
    }

    impl Window for MinifbWindow {
        fn show(&mut self, picture: &Picture) -> Result<(), ViewError> {
            self.buffer.clear();
            self.buffer.extend(
                picture
                    .rgb
                    .chunks_exact(3)
                    .map(|p| u32::from_be_bytes([0, p[0], p[1], p[2]])),
            );
            self.window
                .update_with_buffer(
                    &self.buffer,
                    picture.width as usize,
                    picture.height as usize,
                )
                .map_err(|e| ViewError::Window(e.to_string()))?;
            self.pumped = true;
            Ok(())
        }

        fn keys(&mut self) -> Vec<Key> {
            if !std::mem::take(&mut self.pumped) {
                self.window.update();
            }
            self.window
                .get_keys_pressed(minifb::KeyRepeat::No)
                .into_iter()
                .filter_map(|key| match key {
                    minifb::Key::Q => Some(Key::ToggleStream),
                    minifb::Key::S => Some(Key::Snapshot),
                    minifb::Key::R => Some(Key::ToggleRecording),
                    minifb::Key::Escape => Some(Key::Quit),
                    _ => None,
                })
                .collect()
        }

        fn is_open(&self) -> bool {
            self.window.is_open()
        }

        fn set_title(&mut self, title: &str) {
            self.window.set_title(title);
        }
    }
}

#[cfg(all(feature = "window", feature = "opencv"))]
pub use highgui::HighGui;

#[cfg(all(feature = "window", feature = "opencv"))]
mod highgui {
    use std::time::Duration;

    use edgecam_camera_opencv::HighGuiWindow;

    use super::{Key, Picture, ViewError, Window};

    /// OpenCV's highgui window (Qt or GTK, as OpenCV was built).
    #[derive(Debug)]
    pub struct HighGui(HighGuiWindow);

    impl HighGui {
        pub fn open(title: &str) -> Result<Self, ViewError> {
            HighGuiWindow::open(title)
                .map(HighGui)
                .map_err(|e| ViewError::Window(crate::error_chain(&e)))
        }
    }

    impl Window for HighGui {
        fn show(&mut self, picture: &Picture) -> Result<(), ViewError> {
            self.0
                .show_rgb(picture.width, picture.height, &picture.rgb)
                .map_err(|e| ViewError::Window(crate::error_chain(&e)))
        }

        fn keys(&mut self) -> Vec<Key> {
            // Drawing and events happen while highgui waits for a key.
            match self.0.poll_key(Duration::from_millis(1)) {
                Ok(key) => key.and_then(Key::from_char).into_iter().collect(),
                Err(_) => vec![Key::Quit],
            }
        }

        fn is_open(&self) -> bool {
            !self.0.is_closed()
        }

        /// highgui names a window by its title: it stays as opened.
        fn set_title(&mut self, _title: &str) {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_as_documented() {
        assert_eq!(Key::from_char('q'), Some(Key::ToggleStream));
        assert_eq!(Key::from_char('S'), Some(Key::Snapshot));
        assert_eq!(Key::from_char('r'), Some(Key::ToggleRecording));
        assert_eq!(Key::from_char('\u{1b}'), Some(Key::Quit));
        assert_eq!(Key::from_char('x'), None);
    }

    #[test]
    fn decode_gives_rgb_of_the_frames_size_and_rejects_garbage() {
        let mut jpeg = Vec::new();
        jpeg_encoder::Encoder::new(&mut jpeg, 90)
            .encode(
                &[200u8, 10, 10].repeat(16 * 8),
                16,
                8,
                jpeg_encoder::ColorType::Rgb,
            )
            .unwrap();
        let limit = PictureLimit::default();
        let picture = decode(&jpeg, limit).unwrap();
        assert_eq!((picture.width, picture.height), (16, 8));
        assert_eq!(picture.rgb.len(), 16 * 8 * 3);
        assert!(
            picture.rgb[0] > 150 && picture.rgb[1] < 60,
            "{:?}",
            &picture.rgb[..3]
        );
        assert!(matches!(
            decode(&jpeg[..jpeg.len() / 3], limit),
            Err(ViewError::Decode { .. })
        ));
        assert!(matches!(
            decode(b"not a jpeg", limit),
            Err(ViewError::Picture(PictureError::NoSize))
        ));
    }

    /// A real 16x8 JPEG whose SOF claims `width` x `height` instead.
    fn claiming(width: u16, height: u16) -> Vec<u8> {
        let mut jpeg = Vec::new();
        jpeg_encoder::Encoder::new(&mut jpeg, 90)
            .encode(&[7u8; 16 * 8 * 3], 16, 8, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        jpeg[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
        jpeg[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
        jpeg
    }

    #[test]
    fn a_claimed_picture_over_the_limit_is_refused_before_decoding() {
        let limit = PictureLimit::default();
        let started = Instant::now();
        for (w, h) in [(65535, 65535), (16384, 16384), (8193, 8)] {
            let err = decode(&claiming(w, h), limit).unwrap_err();
            assert!(
                matches!(
                    err,
                    ViewError::Picture(PictureError::TooLarge { width, height, .. })
                        if (width, height) == (u32::from(w), u32::from(h))
                ),
                "{err:?}"
            );
            assert!(
                err.to_string().contains("more than the 8192x8192 allowed"),
                "{err}"
            );
        }
        // Refused from the SOF alone: nothing was allocated or decoded.
        assert!(started.elapsed() < Duration::from_millis(500));
        assert!(decode(&claiming(16, 8), limit).is_ok());
        let small: PictureLimit = "8x8".parse().unwrap();
        assert!(matches!(
            decode(&claiming(16, 8), small),
            Err(ViewError::Picture(PictureError::TooLarge { .. }))
        ));
        assert!(matches!(
            decode(&claiming(0, 8), limit),
            Err(ViewError::Picture(PictureError::NoSize))
        ));
    }

    #[test]
    fn the_title_says_rate_recording_and_keys() {
        let status = Status {
            streaming: true,
            recording: Some(PathBuf::from("/tmp/video_stream_1.avi")),
            received: 3,
            not_recorded: 0,
        };
        assert_eq!(
            title_for("board:6810", &status, 29.97, 0),
            "edgecam board:6810 - 30.0 fps - REC video_stream_1.avi - q stop/resume, s snapshot, r record, Esc quit"
        );
        let stopped = Status::default();
        assert!(title_for("b", &stopped, 0.0, 0).contains(" - stopped - "));
        assert!(title_for("b", &stopped, 0.0, 7).contains(" - stopped - 7 undecodable - "));
    }
}
