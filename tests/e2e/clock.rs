//! The server on a clock the test sets (`ManualClock`) for camera, capture loop and sessions
//! alike: what a wall clock that is set back does to requests.

use std::sync::Arc;
use std::time::Duration;

use edgecam_core::time::{Clock, ManualClock, Timestamp};

use crate::support::{TestServer, config_with, seq, stamp};

const T0: Timestamp = Timestamp(1_700_000_000_000_000);

/// Whether `frame` is a "NO SIGNAL" picture: no sequence number drawn in by the sim camera.
fn is_no_signal(frame: &[u8]) -> bool {
    let pixels = jpeg_decoder::Decoder::new(frame).decode().unwrap();
    edgecam_camera_sim::read_seq(&pixels, 320, 240).is_none()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_shot_during_an_outage_is_answered_after_the_clock_is_set_back() {
    let clock = Arc::new(ManualClock::new(T0));
    // No session timeouts: a session waiting on a ManualClock for its deadline moves it there.
    let config = config_with(|c| {
        c.session.handshake_timeout = None;
        c.session.idle_timeout = None;
    });
    // Gone at the first read, for ten minutes of a clock that only this test moves.
    let camera = "sim:320x240@30#fail_after=0&down_ms=600000";
    let server = TestServer::with_clock(camera, config, clock.clone()).await;
    let mut client = server.connect().await;
    client.send(b"0").await;
    let first = client.frame().await;
    assert!(is_no_signal(&first), "the camera was not gone");
    assert_eq!(stamp(&first).captured_at, T0);

    // A request ten seconds later, while the first waits for its confirm: pending.
    clock.advance(Duration::from_secs(10));
    let requested_at = clock.now();
    client.send(b"0").await;
    server
        .wait_for_stats("the second `0` was handled", |s| s.commands >= 2)
        .await;
    // The wall clock is set back a minute, past the request; then the confirm serves it.
    clock.set(Timestamp(requested_at.0 - 60_000_000));
    client.send(b"1").await;
    let answer = client.frame().await;
    assert!(is_no_signal(&answer));
    assert!(seq(&answer) > seq(&first));
    assert!(
        stamp(&answer).captured_at < requested_at,
        "the answer was stamped {}, not before the request at {requested_at}: the clock \
         was not set back under it",
        stamp(&answer).captured_at
    );
}
