//! The `exec:` child: started in its own process group without a shell, its standard error
//! logged (rate-limited), and ended as a group: SIGTERM, then SIGKILL after a grace period,
//! then reaped.

use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process_group};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, ChildStderr, ChildStdout, Command};
use tokio::task::JoinHandle;

use crate::PipeError;
use edgecam_core::limit::{RateLimit, Verdict};

/// How long the child's group has between SIGTERM and SIGKILL.
pub(crate) const GRACE: Duration = Duration::from_secs(1);
/// The longest stderr line kept or logged; the rest of a longer one is cut.
const MAX_LINE: usize = 512;

/// A running child and what reads its standard error.
#[derive(Debug)]
pub(crate) struct ChildProc {
    child: Child,
    /// The child's pid, which is also its process group's id (`process_group(0)`).
    group: Option<Pid>,
    stderr: Option<JoinHandle<()>>,
    last_line: Arc<Mutex<Option<String>>>,
}

/// Linux's pipe size unless asked otherwise.
const DEFAULT_PIPE_LEN: usize = 64 * 1024;

/// The most a pipe is grown to: Linux's default `/proc/sys/fs/pipe-max-size`, which an
/// unprivileged process may ask for.
const MAX_PIPE_LEN: usize = 1024 * 1024;

/// Grows the pipe from the child to hold `want` bytes (a raw frame), as far as Linux lets us
/// (it never shrinks below the default).
/// With the default 64 KiB, a 640x480 NV12 frame crosses it in eight pieces, each a wakeup
/// of the reader and of the child; one frame's worth lets both move a frame at a time.
fn grow_pipe(name: &str, pipe: &impl std::os::fd::AsFd, want: usize) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    match rustix::pipe::fcntl_setpipe_size(pipe, want.clamp(DEFAULT_PIPE_LEN, MAX_PIPE_LEN)) {
        Ok(len) => tracing::debug!(camera = %name, len, "pipe size"),
        Err(e) => tracing::debug!(camera = %name, error = %e, "the pipe keeps its size"),
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = (name, pipe, want);
}

impl ChildProc {
    /// Starts `program` with `args`, its standard output piped to us, and returns it with that
    /// output.
    pub(crate) fn spawn(
        name: &str,
        program: &str,
        args: &[String],
        frame_len: Option<usize>,
    ) -> Result<(ChildProc, ChildStdout), PipeError> {
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            // The last resort: `close` and the reader's ending terminate the group properly.
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|source| PipeError::Spawn {
            program: program.to_owned(),
            source,
        })?;
        let group = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(Pid::from_raw);
        let Some(stdout) = child.stdout.take() else {
            return Err(PipeError::NoStdout);
        };
        if let Some(len) = frame_len {
            grow_pipe(name, &stdout, len);
        }
        let last_line = Arc::new(Mutex::new(None));
        let stderr = child
            .stderr
            .take()
            .map(|stderr| tokio::spawn(log_stderr(name.to_owned(), stderr, last_line.clone())));
        tracing::debug!(camera = %name, pid = ?group, "child started");
        Ok((
            ChildProc {
                child,
                group,
                stderr,
                last_line,
            },
            stdout,
        ))
    }

    /// Ends the child's whole group and reaps the child: SIGTERM, then SIGKILL after
    /// [`GRACE`]. Then waits (briefly) for its standard error to be read to the end, so that
    /// [`ChildProc::last_line`] has the child's last word. Returns the child's exit status.
    pub(crate) async fn terminate(&mut self) -> Option<ExitStatus> {
        if self.child.id().is_none() {
            // Already reaped: its group id may belong to someone else by now.
            self.group = None;
        }
        self.signal(Signal::TERM);
        let status = match tokio::time::timeout(GRACE, self.child.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                tracing::debug!(pid = ?self.group, "child ignored SIGTERM; killing it");
                self.signal(Signal::KILL);
                self.child.wait().await.ok()
            }
        };
        // Whatever of the group outlived its leader goes too.
        self.signal(Signal::KILL);
        self.group = None;
        self.finish_stderr().await;
        status
    }

    fn signal(&self, signal: Signal) {
        if let Some(group) = self.group {
            // ESRCH: the group is gone already, which is what we want.
            let _ = kill_process_group(group, signal);
        }
    }

    async fn finish_stderr(&mut self) {
        if let Some(task) = self.stderr.take() {
            let _ = tokio::time::timeout(Duration::from_millis(500), task).await;
        }
    }

    /// The child's pid (and its group's id) while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The last line the child wrote to its standard error.
    pub(crate) fn last_line(&self) -> Option<String> {
        self.last_line
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        // Dropped without `terminate` (the runtime is shutting down): no grace period left.
        // `kill_on_drop` kills the leader, and tokio reaps it.
        self.signal(Signal::KILL);
    }
}

/// Logs each line of `stderr` as a warning tagged with the camera, at most ten per ten
/// seconds, and keeps the last one.
async fn log_stderr(name: String, mut stderr: ChildStderr, last: Arc<Mutex<Option<String>>>) {
    let mut limit = RateLimit::lines();
    let mut line: Vec<u8> = Vec::with_capacity(MAX_LINE);
    let mut chunk = [0u8; 4096];
    let mut emit = |line: &mut Vec<u8>| {
        let text = String::from_utf8_lossy(line).trim_end().to_owned();
        line.clear();
        if text.is_empty() {
            return;
        }
        match limit.check(std::time::Instant::now()) {
            Verdict::Log { suppressed: 0 } => {
                tracing::warn!(camera = %name, "{text}");
            }
            Verdict::Log { suppressed } => {
                tracing::warn!(camera = %name, suppressed, "{text} (after {suppressed} more lines not shown)");
            }
            Verdict::Drop => {}
        }
        *last.lock().unwrap_or_else(|e| e.into_inner()) = Some(text);
    };
    loop {
        let n = match stderr.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &byte in &chunk[..n] {
            if byte == b'\n' || byte == b'\r' {
                emit(&mut line);
            } else if line.len() < MAX_LINE {
                line.push(byte);
            }
        }
    }
    emit(&mut line);
    let suppressed = limit.suppressed();
    if suppressed > 0 {
        tracing::warn!(camera = %name, suppressed, "the child's last {suppressed} lines of standard error were not shown");
    }
}
