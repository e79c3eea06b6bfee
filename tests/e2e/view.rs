//! `edgecam view`'s loop with a scripted window in place of a real one: frames are shown,
//! and the keys stop and resume the stream, save snapshots and record.

use std::path::Path;
use std::sync::{Arc, Mutex};

use edgecam::client::{Client, ClientConfig};
use edgecam::view::{Key, Picture, ViewError, ViewOptions, ViewSummary, Window, view};

use crate::record::recorded_seqs;
use crate::support::{TestServer, WAIT, assert_increasing, assert_jpeg};

const CAMERA: &str = "sim:320x240@30";

/// When a scripted key is pressed.
#[derive(Debug, Clone, Copy)]
pub enum When {
    /// Once this many pictures have been shown in all.
    Shown(u64),
    /// This many window polls after the previous key.
    Polls(u64),
    /// This many more pictures shown since the previous key.
    ShownSinceKey(u64),
}

/// What the scripted window saw.
#[derive(Debug, Default)]
pub struct Seen {
    pub opened: Vec<(u32, u32)>,
    pub shown: u64,
    /// Pictures shown by the time each key was pressed.
    pub shown_at_key: Vec<u64>,
    pub titles: Vec<String>,
    /// The stamped sequence number of each picture shown, in order.
    pub seqs: Vec<u64>,
}

struct Scripted {
    script: Vec<(When, Key)>,
    polls_since_key: u64,
    seen: Arc<Mutex<Seen>>,
    open: bool,
}

impl Window for Scripted {
    fn show(&mut self, picture: &Picture) -> Result<(), ViewError> {
        assert_eq!(
            Some(picture.rgb.len()),
            edgecam_core::jpeg::rgb_len(picture.width, picture.height)
        );
        let mut seen = self.seen.lock().unwrap();
        seen.shown += 1;
        seen.seqs.extend(picture.seq);
        Ok(())
    }

    fn keys(&mut self) -> Vec<Key> {
        self.polls_since_key += 1;
        let mut seen = self.seen.lock().unwrap();
        let due = match self.script.first() {
            Some((When::Shown(n), _)) => seen.shown >= *n,
            Some((When::Polls(n), _)) => self.polls_since_key >= *n,
            Some((When::ShownSinceKey(n), _)) => {
                seen.shown >= seen.shown_at_key.last().copied().unwrap_or(0) + n
            }
            None => false,
        };
        if !due {
            return Vec::new();
        }
        let (_, key) = self.script.remove(0);
        self.polls_since_key = 0;
        let shown = seen.shown;
        seen.shown_at_key.push(shown);
        vec![key]
    }

    fn is_open(&self) -> bool {
        self.open
    }

    fn set_title(&mut self, title: &str) {
        self.seen.lock().unwrap().titles.push(title.to_owned());
    }
}

/// Views `server`'s stream in a scripted window; fails the test if it takes longer than WAIT.
async fn view_scripted(
    server: &TestServer,
    script: Vec<(When, Key)>,
    dir: &Path,
    record: Option<&str>,
) -> (Result<ViewSummary, ViewError>, Seen) {
    let limit = edgecam_core::jpeg::PictureLimit::default();
    view_scripted_at(&server.addr, script, dir, record, limit).await
}

/// [`view_scripted`] against any server, with a picture limit.
pub async fn view_scripted_at(
    addr: &str,
    script: Vec<(When, Key)>,
    dir: &Path,
    record: Option<&str>,
    max_picture: edgecam_core::jpeg::PictureLimit,
) -> (Result<ViewSummary, ViewError>, Seen) {
    let client = Client::connect(addr, ClientConfig::default())
        .await
        .unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut script = Some(script);
    let mut open = |width, height| -> Result<Box<dyn Window>, ViewError> {
        seen.lock().unwrap().opened.push((width, height));
        Ok(Box::new(Scripted {
            script: script.take().expect("the window is opened once"),
            polls_since_key: 0,
            seen: seen.clone(),
            open: true,
        }))
    };
    let options = ViewOptions {
        record: record.map(|name| dir.join(name)),
        dir: dir.to_owned(),
        peer: addr.to_owned(),
        stop: tokio_util::sync::CancellationToken::new(),
        max_picture,
    };
    let result = tokio::time::timeout(WAIT, view(client, &mut open, options))
        .await
        .expect("the view did not end in time");
    let seen = Arc::try_unwrap(seen).unwrap().into_inner().unwrap();
    (result, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shows_frames_saves_a_snapshot_and_records_between_two_r_presses() {
    let server = TestServer::start(CAMERA).await;
    let dir = tempfile::tempdir().unwrap();
    let script = vec![
        (When::Shown(3), Key::Snapshot),
        (When::Shown(5), Key::ToggleRecording),
        (When::Shown(20), Key::ToggleRecording),
        (When::Shown(22), Key::Quit),
    ];
    let (result, seen) = view_scripted(&server, script, dir.path(), None).await;
    let summary = result.unwrap();
    assert_eq!(seen.opened, [(320, 240)]);
    assert!(
        seen.shown >= 22 && summary.shown == seen.shown,
        "{summary:?}"
    );
    assert!(summary.received >= summary.shown);
    assert!(
        seen.titles
            .iter()
            .any(|t| t.contains(" - REC video_stream_")),
        "{:?}",
        seen.titles
    );

    assert_eq!(summary.snapshots.len(), 1);
    let snapshot = std::fs::read(&summary.snapshots[0]).unwrap();
    assert_jpeg(&snapshot, 320, 240);
    assert!(summary.snapshots[0].starts_with(dir.path()));

    // Every frame received while recording is in the file, in order, none skipped.
    assert_eq!(summary.recordings.len(), 1, "{summary:?}");
    let recording = &summary.recordings[0];
    let seqs = recorded_seqs(&recording.path);
    assert_eq!(seqs.len() as u64, recording.frames);
    assert!(seqs.len() >= 14, "{seqs:?}");
    assert_increasing(&seqs);
    assert_eq!(
        seqs.last().unwrap() - seqs[0] + 1,
        seqs.len() as u64,
        "{seqs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn q_stops_the_stream_and_q_again_resumes_it() {
    let server = TestServer::start(CAMERA).await;
    let dir = tempfile::tempdir().unwrap();
    let script = vec![
        (When::Shown(3), Key::ToggleStream),
        // About 600 ms stopped: 18 frames at 30 fps, were it still streaming.
        (When::Polls(40), Key::ToggleStream),
        // Quits only once the stream is back: a view that never resumes times out.
        (When::ShownSinceKey(5), Key::Quit),
    ];
    let (result, seen) = view_scripted(&server, script, dir.path(), None).await;
    result.unwrap();
    let [stopped, resumed, quit] = seen.shown_at_key[..] else {
        panic!("{seen:?}");
    };
    // One frame may have been on its way when `q` went out.
    assert!(resumed - stopped <= 1, "{seen:?}");
    assert!(quit - resumed >= 5, "{seen:?}");
    // New frames after the second `q`: numbered beyond every frame shown before it.
    assert_eq!(seen.seqs.len() as u64, seen.shown, "{seen:?}");
    let (before, after) = seen.seqs.split_at(resumed as usize);
    let last_before = before.iter().max().unwrap();
    assert!(after.len() >= 5, "{seen:?}");
    assert!(after.iter().all(|s| s > last_before), "{seen:?}");
    assert_increasing(after);
    assert!(
        seen.titles.iter().any(|t| t.contains(" - stopped - ")),
        "{:?}",
        seen.titles
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_from_the_start_is_finished_when_the_window_closes() {
    let server = TestServer::start(CAMERA).await;
    let dir = tempfile::tempdir().unwrap();
    let script = vec![(When::Shown(10), Key::Quit)];
    let (result, _) = view_scripted(&server, script, dir.path(), Some("from_start.avi")).await;
    let summary = result.unwrap();
    assert_eq!(summary.recordings.len(), 1);
    assert_eq!(
        summary.recordings[0].path,
        dir.path().join("from_start.avi")
    );
    let seqs = recorded_seqs(&summary.recordings[0].path);
    assert!(seqs.len() >= 10, "{seqs:?}");
    assert_increasing(&seqs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_goes_away_ends_the_view_with_its_error_and_keeps_the_recording() {
    let server = TestServer::start(CAMERA).await;
    let dir = tempfile::tempdir().unwrap();
    let stopper = server.stop.clone();
    let viewing = view_scripted(&server, Vec::new(), dir.path(), Some("cut.avi"));
    let cut = dir.path().join("cut.avi");
    let stopping = async {
        crate::record::wait_for_frames(&cut, 8).await;
        stopper.cancel();
    };
    let ((result, seen), ()) = tokio::join!(viewing, stopping);
    let err = result.unwrap_err();
    assert!(matches!(err, ViewError::Client(_)), "{err:?}");
    assert!(seen.shown >= 1);
    let seqs = recorded_seqs(&cut);
    assert!(seqs.len() >= 8, "{seqs:?}");
}

/// Xvfb on a display it picks itself; killed when dropped.
pub struct Xvfb(std::process::Child, String);

impl Xvfb {
    /// The display to set as `DISPLAY`.
    pub fn display(&self) -> &str {
        &self.1
    }

    /// `None` (and says so) where Xvfb is not installed; under CI a missing Xvfb fails.
    pub fn start() -> Option<Xvfb> {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        if !crate::support::have_tool("Xvfb") {
            return None;
        }
        let mut child = match Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "800x600x24",
                "-nolisten",
                "tcp",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => child,
            Err(e) => panic!("Xvfb is installed but does not start: {e}"),
        };
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let display = rx
            .recv_timeout(WAIT)
            .expect("Xvfb named no display in time");
        Some(Xvfb(child, format!(":{}", display.trim())))
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_window_shows_the_stream_under_xvfb_and_ctrl_c_finishes_the_recording() {
    let Some(xvfb) = Xvfb::start() else { return };
    let server = TestServer::start(CAMERA).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("window.avi");
    let args = ["view", &server.addr, "--record", file.to_str().unwrap()];
    let viewer = crate::support::Edgecam::spawn_with(&args, |cmd| {
        cmd.current_dir(dir.path())
            .env("DISPLAY", &xvfb.1)
            .env_remove("WAYLAND_DISPLAY");
    });
    // Two seconds of frames: on a loaded machine the window draws only now and then.
    crate::record::wait_for_frames(&file, 60).await;
    viewer.signal("INT");
    let out = viewer.finish();
    assert!(out.status.success(), "{out:?}");
    // "N frames received, M shown, 0 snapshots"
    let shown: u64 = out
        .stdout
        .split(" shown")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out:?}"));
    // The window shows the newest frame each time it draws; most of them here.
    assert!(shown >= 5, "{out:?}");
    let seqs = recorded_seqs(&file);
    assert!(seqs.len() >= 20, "{seqs:?}");
    assert_increasing(&seqs);
}
