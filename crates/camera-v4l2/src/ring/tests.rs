//! The ring against the simulated device: a model of which frame `next` must hand out, and
//! buffer accounting after every step (each buffer in exactly one place, none lost, none
//! queued twice, none filled while its bytes are held), across faults and unplugging.

use std::time::Duration;

use edgecam_core::camera::PixelFormat;
use proptest::prelude::*;

use super::*;
use crate::negotiate::fourcc_of;
use crate::sim::{Fault, SimConfig, SimDevice, SimFormat, SimHandle, sequence_of};

const STALE: Duration = Duration::from_millis(500);
const TIMEOUT: Duration = Duration::from_secs(2);
const BUFFERS: u32 = 4;
static NOT_CANCELLED: AtomicBool = AtomicBool::new(false);

fn sim() -> SimHandle {
    SimHandle::new(SimConfig::new(vec![SimFormat::raw(
        PixelFormat::Nv12,
        &[(64, 48)],
    )]))
}

fn start(sim: &SimHandle, skip: u32) -> (SimDevice, Ring) {
    let mut device = sim.open().unwrap();
    device
        .s_fmt(BufType::Capture, fourcc_of(PixelFormat::Nv12), (64, 48))
        .unwrap();
    let ring = Ring::start(&mut device, BufType::Capture, BUFFERS, skip, STALE).unwrap();
    (device, ring)
}

#[test]
fn the_newest_ready_frame_is_handed_out_and_the_older_ones_requeued() {
    let sim = sim();
    let (mut device, mut ring) = start(&sim, 0);
    sim.deliver(3);
    assert_eq!(
        sim.ready_frames()
            .iter()
            .map(|f| f.sequence)
            .collect::<Vec<_>>(),
        [0, 1, 2]
    );
    let frame = ring.next(&mut device, TIMEOUT, &NOT_CANCELLED).unwrap();
    assert_eq!(frame.sequence, 2);
    assert!(frame.lent);
    assert_eq!(sequence_of(&frame.bytes), Some(2));
    let stats = sim.stats();
    assert_eq!((stats.queued, stats.done, stats.with_user), (3, 0, 1));
    assert_eq!(ring.accounting(), (3, 0, 1));
    // Dropping the bytes sends the buffer back; the next frame queues it again.
    drop(frame);
    assert_eq!(ring.accounting(), (3, 1, 0));
    let next = ring.next(&mut device, TIMEOUT, &NOT_CANCELLED).unwrap();
    assert_eq!(next.sequence, 3, "a fresh frame, filled on demand");
    assert_eq!(ring.stats().replaced, 2);
    assert!(sim.stats().violations.is_empty(), "{:?}", sim.stats());
}

#[test]
fn a_stale_newest_frame_is_replaced_by_a_fresh_one() {
    let sim = sim();
    let (mut device, mut ring) = start(&sim, 0);
    sim.deliver(4);
    sim.advance(Duration::from_secs(3));
    let frame = ring.next(&mut device, TIMEOUT, &NOT_CANCELLED).unwrap();
    assert_eq!(frame.sequence, 4);
    assert_eq!(ring.stats().stale, 1);
}

#[test]
fn skipped_frames_error_frames_and_empty_frames_are_not_handed_out() {
    let sim = sim();
    let (mut device, mut ring) = start(&sim, 2);
    sim.inject(Fault::ErrorFrame);
    sim.inject(Fault::EmptyFrame);
    sim.deliver(3);
    // 0 (error) and 1 (empty) are bad, 2 and 3 are skipped, 4 is served.
    let frame = ring.next(&mut device, TIMEOUT, &NOT_CANCELLED).unwrap();
    assert_eq!(frame.sequence, 4);
    let stats = ring.stats();
    assert_eq!((stats.bad, stats.skipped), (2, 2));
}

#[test]
fn frames_are_copied_rather_than_lending_the_last_buffers() {
    let sim = sim();
    let (mut device, mut ring) = start(&sim, 0);
    let held: Vec<RingFrame> = (0..4)
        .map(|_| ring.next(&mut device, TIMEOUT, &NOT_CANCELLED).unwrap())
        .collect();
    let lent: Vec<bool> = held.iter().map(|f| f.lent).collect();
    assert_eq!(lent, [true, true, false, false]);
    assert_eq!(ring.accounting(), (2, 0, 2));
    for frame in &held {
        assert_eq!(sequence_of(&frame.bytes), Some(u64::from(frame.sequence)));
    }
    assert!(sim.stats().violations.is_empty(), "{:?}", sim.stats());
}

#[test]
fn an_unplugged_device_is_gone_and_a_replugged_one_streams_again() {
    let sim = sim();
    let (mut device, mut ring) = start(&sim, 0);
    let held = ring.next(&mut device, TIMEOUT, &NOT_CANCELLED).unwrap();
    sim.unplug();
    assert!(matches!(
        ring.next(&mut device, TIMEOUT, &NOT_CANCELLED),
        Err(RingError::Gone(_))
    ));
    ring.stop(&mut device);
    drop(device);
    assert_eq!(sim.open().unwrap_err().errno(), Some(libc::ENOENT));
    sim.replug();
    let (mut device, mut ring) = start(&sim, 0);
    let frame = ring.next(&mut device, TIMEOUT, &NOT_CANCELLED).unwrap();
    assert!(frame.sequence > held.sequence);
    // The bytes held across the unplug are still the frame they were.
    assert_eq!(sequence_of(&held.bytes), Some(u64::from(held.sequence)));
    assert!(sim.stats().violations.is_empty(), "{:?}", sim.stats());
}

/// [`start`], again while an injected fault makes it fail (at most a few times).
fn restart(sim: &SimHandle, skip: u32) -> (SimDevice, Ring) {
    for _ in 0..8 {
        let mut device = sim.open().unwrap();
        device
            .s_fmt(BufType::Capture, fourcc_of(PixelFormat::Nv12), (64, 48))
            .unwrap();
        match Ring::start(&mut device, BufType::Capture, BUFFERS, skip, STALE) {
            Ok(ring) => return (device, ring),
            Err(e) => assert!(e.errno().is_some(), "{e}"),
        }
    }
    panic!("the ring did not start within 8 tries");
}

#[derive(Debug, Clone)]
enum Op {
    Deliver(usize),
    Advance(u64),
    Next { hold: bool },
    Release(usize),
    Fault(Fault),
    Unplug,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..6).prop_map(Op::Deliver),
        1 => prop::sample::select(vec![10u64, 300, 800]).prop_map(Op::Advance),
        6 => any::<bool>().prop_map(|hold| Op::Next { hold }),
        3 => (0usize..8).prop_map(Op::Release),
        2 => prop::sample::select(vec![
            Fault::ErrorFrame,
            Fault::EmptyFrame,
            Fault::Qbuf(libc::EINVAL),
            Fault::Dqbuf(libc::EINVAL),
            Fault::Dqbuf(libc::EIO),
            Fault::Qbuf(libc::ENODEV),
        ])
        .prop_map(Op::Fault),
        1 => Just(Op::Unplug),
    ]
}

/// Each buffer is in exactly one place, as the ring and the device both see it, and every
/// lent buffer is one the test holds.
fn check_accounting(
    sim: &SimHandle,
    ring: &mut Ring,
    held_lent: usize,
) -> Result<(), TestCaseError> {
    let (queued, ours, lent) = ring.accounting();
    let stats = sim.stats();
    prop_assert!(stats.violations.is_empty(), "{:?}", stats.violations);
    prop_assert_eq!(queued + ours + lent, stats.buffers, "{:?}", stats);
    prop_assert_eq!(queued, stats.queued + stats.done, "{:?}", stats);
    prop_assert_eq!(ours + lent, stats.with_user, "{:?}", stats);
    prop_assert_eq!(lent, held_lent);
    Ok(())
}

/// How many of `held` are lent buffers of ring `generation`.
fn lent(held: &[(RingFrame, u32)], generation: u32) -> usize {
    held.iter()
        .filter(|(frame, g)| frame.lent && *g == generation)
        .count()
}

fn check_held(held: &[(RingFrame, u32)]) -> Result<(), TestCaseError> {
    for (frame, _) in held {
        prop_assert_eq!(
            sequence_of(&frame.bytes),
            Some(u64::from(frame.sequence)),
            "a held frame's bytes changed"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn the_ring_hands_out_the_newest_frame_and_loses_no_buffer(
        skip in 0u32..3,
        ops in prop::collection::vec(op(), 1..50),
    ) {
        let sim = sim();
        let (mut device, mut ring) = start(&sim, skip);
        let mut skip_left = skip;
        // Frames held by the test, with the ring (generation) they came from.
        let mut held: Vec<(RingFrame, u32)> = Vec::new();
        let mut generation = 0u32;
        let mut errno_faults = 0usize;
        let mut plugged = true;
        for op in ops {
            match op {
                Op::Deliver(n) => sim.deliver(n),
                Op::Advance(ms) => sim.advance(Duration::from_millis(ms)),
                Op::Release(i) => {
                    if !held.is_empty() {
                        check_held(&held)?;
                        held.remove(i % held.len());
                    }
                }
                Op::Fault(fault) => {
                    if matches!(fault, Fault::Qbuf(_) | Fault::Dqbuf(_)) {
                        errno_faults += 1;
                    }
                    sim.inject(fault);
                }
                Op::Unplug => {
                    sim.unplug();
                    plugged = false;
                }
                Op::Next { hold } => {
                    let ready = sim.ready_frames();
                    let next_sequence = sim.next_sequence();
                    let lent_before = lent(&held, generation);
                    // What the model expects: the newest good frame after the skipped ones,
                    // unless that is stale or there is none, then a fresh one.
                    let good: Vec<_> = ready.iter().filter(|f| f.good).collect();
                    let skipped = (skip_left as usize).min(good.len());
                    let expected = good[skipped..].last().filter(|f| f.age <= STALE).map(|f| f.sequence);
                    match ring.next(&mut device, TIMEOUT, &NOT_CANCELLED) {
                        Ok(frame) => {
                            prop_assert!(plugged, "a frame from an unplugged device");
                            match expected {
                                Some(sequence) => {
                                    prop_assert_eq!(frame.sequence, sequence, "ready: {:?}", ready);
                                    skip_left -= skipped as u32;
                                }
                                None => {
                                    prop_assert!(
                                        frame.sequence >= next_sequence,
                                        "{} is not fresh (next was {}); ready: {:?}",
                                        frame.sequence, next_sequence, ready
                                    );
                                    skip_left = 0;
                                }
                            }
                            prop_assert_eq!(sim.stats().done, 0, "not everything ready was dequeued");
                            prop_assert_eq!(sequence_of(&frame.bytes), Some(u64::from(frame.sequence)));
                            prop_assert_eq!(frame.lent, lent_before < ring.max_lent, "lent or copied");
                            if hold {
                                held.push((frame, generation));
                            }
                        }
                        Err(RingError::Gone(_)) => {
                            prop_assert!(!plugged || errno_faults > 0, "gone without a cause");
                            if plugged {
                                errno_faults -= 1;
                            }
                            // What the camera does: stop, close, reopen.
                            ring.stop(&mut device);
                            drop(device);
                            sim.replug();
                            plugged = true;
                            (device, ring) = restart(&sim, skip);
                            generation += 1;
                            skip_left = skip;
                        }
                        Err(RingError::Device(e)) => {
                            prop_assert!(errno_faults > 0, "an error without a fault: {}", e);
                            errno_faults -= 1;
                            // Frames dequeued before the error may have used up skips.
                            skip_left = ring.skip;
                        }
                        Err(RingError::Stalled(_) | RingError::Cancelled) => {
                            prop_assert!(false, "stalled on demand")
                        }
                    }
                }
            }
            if plugged {
                check_accounting(&sim, &mut ring, lent(&held, generation))?;
            }
            check_held(&held)?;
        }
        drop(held);
        if plugged {
            check_accounting(&sim, &mut ring, 0)?;
        }
        ring.stop(&mut device);
        prop_assert!(sim.stats().violations.is_empty(), "{:?}", sim.stats().violations);
    }
}

#[test]
fn a_cancelled_wait_ends_within_a_slice_while_nothing_comes() {
    let mut config = SimConfig::new(vec![SimFormat::raw(PixelFormat::Nv12, &[(64, 48)])]);
    config.pace = crate::sim::Pace::Fps(1.0);
    let sim = SimHandle::new(config);
    let (mut device, mut ring) = start(&sim, 0);
    let cancelled = AtomicBool::new(true);
    let started = std::time::Instant::now();
    assert!(matches!(
        ring.next(&mut device, Duration::from_secs(30), &cancelled),
        Err(RingError::Cancelled)
    ));
    assert!(started.elapsed() < Duration::from_secs(5));
    // Nothing comes within a short timeout at 1 fps: a stall.
    assert!(matches!(
        ring.next(&mut device, Duration::from_millis(300), &NOT_CANCELLED),
        Err(RingError::Stalled(_))
    ));
}
