//! Open, disconnection, reopening and close with real children.

use std::time::{Duration, Instant};

use edgecam_core::camera::{Camera, CameraError};
use edgecam_core::error_chain;

use crate::support::{camera, group_gone, group_members, next, number, until_disconnected, within};

#[tokio::test]
async fn a_child_that_exits_is_disconnected_then_reopened_and_seq_keeps_growing() {
    let mut camera =
        camera("exec:sh -c 'for i in 1 2 3; do printf %016d $i; done'#format=yuyv&size=4x2");
    camera.open().await.unwrap();
    let first = until_disconnected(&mut camera).await;
    // The newest whole frame before the end is delivered before the disconnection.
    assert_eq!(first.last().map(number), Some(3));
    assert!(camera.capabilities().is_none());
    assert!(matches!(
        camera.next_frame().await,
        Err(CameraError::NotOpen { .. })
    ));
    camera.open().await.unwrap();
    let second = until_disconnected(&mut camera).await;
    assert_eq!(second.last().map(number), Some(3));
    let (a, b) = (first.last().unwrap().seq, second.first().unwrap().seq);
    assert!(b > a, "seq went from {a} to {b}");
    assert_eq!(camera.stats().frames, 6);
}

#[tokio::test]
async fn a_child_that_stalls_is_disconnected_after_the_timeout() {
    let mut camera =
        camera("exec:sh -c 'printf %016d 1; exec sleep 1000'#format=yuyv&size=4x2&timeout=0.5");
    camera.open().await.unwrap();
    let pid = camera.child_pid().unwrap();
    let started = Instant::now();
    let frame = next(&mut camera).await;
    assert_eq!(number(&frame), 1);
    let end = within(10, "stall", camera.next_frame()).await;
    assert!(
        matches!(end, Err(CameraError::Disconnected { .. })),
        "{end:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(450));
    // The stalled child was ended, not left behind.
    group_gone(pid).await;
}

#[tokio::test]
async fn a_command_that_does_not_exist_is_an_open_error_naming_it() {
    let mut camera = camera("exec:edgecam-no-such-command --flag#format=yuyv&size=4x2");
    let err = camera.open().await.unwrap_err();
    assert!(matches!(err, CameraError::Open { .. }), "{err:?}");
    let text = error_chain(&err);
    assert!(text.contains("\"edgecam-no-such-command\""), "{text}");
    assert!(text.contains("is it installed and on PATH?"), "{text}");
    assert!(text.contains("No such file"), "{text}");
}

#[tokio::test]
async fn a_command_that_fails_at_once_fails_open_with_its_last_words() {
    for format in ["#format=nv12&size=8x4", ""] {
        let mut camera = camera(&format!(
            "exec:sh -c 'echo starting >&2; echo \"no camera at /dev/video9\" >&2; exit 3'{format}"
        ));
        let started = Instant::now();
        let err = camera.open().await.unwrap_err();
        let text = error_chain(&err);
        assert!(matches!(err, CameraError::Open { .. }), "{text}");
        assert!(text.contains("ended before its first frame"), "{text}");
        assert!(text.contains("exit status: 3"), "{text}");
        assert!(text.contains("no camera at /dev/video9"), "{text}");
        assert!(started.elapsed() < Duration::from_secs(3), "{text}");
    }
}

#[tokio::test]
async fn close_ends_the_childs_whole_group() {
    let mut camera = camera(
        "exec:sh -c 'sleep 1000 & while :; do printf %016d 7; sleep 0.05; done'#format=yuyv&size=4x2",
    );
    camera.open().await.unwrap();
    next(&mut camera).await;
    let group = camera.child_pid().unwrap();
    let members = group_members(group);
    assert!(members.len() >= 2, "sh and sleep: {members:?}");
    within(5, "close", camera.close()).await.unwrap();
    assert_eq!(camera.child_pid(), None);
    group_gone(group).await;
    // Closing a closed camera is fine.
    camera.close().await.unwrap();
}

#[tokio::test]
async fn a_child_ignoring_sigterm_is_killed_after_the_grace_period() {
    let mut camera = camera(
        "exec:sh -c 'trap \"\" TERM; sleep 1000 & while :; do printf %016d 7; sleep 0.05; done'#format=yuyv&size=4x2",
    );
    camera.open().await.unwrap();
    next(&mut camera).await;
    let group = camera.child_pid().unwrap();
    let started = Instant::now();
    within(5, "close", camera.close()).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(900));
    group_gone(group).await;
}

#[tokio::test]
async fn dropping_an_open_camera_ends_its_child() {
    let mut camera = camera(
        "exec:sh -c 'sleep 1000 & while :; do printf %016d 7; sleep 0.05; done'#format=yuyv&size=4x2",
    );
    camera.open().await.unwrap();
    let group = camera.child_pid().unwrap();
    drop(camera);
    // The reader ends the group on this runtime, without the drop waiting for it.
    group_gone(group).await;
}
