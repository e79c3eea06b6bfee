//! A server's HTTP request head: arbitrary bytes, in arbitrary pieces, through `HeadReader`,
//! then `route`, then the protocol choice a connection's first byte makes.
//!
//! Input: a cut length byte, then the bytes, fed in pieces of that length (1 to 64). Asserts:
//! no panic; the reader never holds more than the cap plus the blank line; it decides (a head
//! or an error) at the latest once the cap is passed, and a head comes out only when the
//! bytes so far hold a blank line; the same bytes fed whole decide the same way; every error
//! maps to 400 or 431.

#![no_main]

use edgecam_core::http::Status;
use edgecam_core::http::request::{HeadReader, MAX_HEAD_LEN, route};
use edgecam_core::protocol::Protocol;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, bytes)) = data.split_first() else {
        return;
    };
    if let Some(&first) = bytes.first() {
        let _ = Protocol::detect(first, true);
    }
    let cut = usize::from(cut % 64) + 1;
    let mut reader = HeadReader::new();
    let mut fed = 0;
    let mut decided = None;
    for piece in bytes.chunks(cut) {
        fed += piece.len();
        match reader.push(piece) {
            Ok(None) => assert!(fed <= MAX_HEAD_LEN, "undecided past the cap"),
            Ok(Some(head)) => {
                let so_far = &bytes[..fed];
                assert!(
                    so_far.windows(2).any(|w| w == b"\n\n")
                        || so_far.windows(3).any(|w| w == b"\n\r\n"),
                    "a head without a blank line"
                );
                let _ = route(&head);
                decided = Some(Ok(head));
                break;
            }
            Err(e) => {
                assert!(matches!(
                    e.status(),
                    Status::BadRequest | Status::HeaderFieldsTooLarge
                ));
                decided = Some(Err(e));
                break;
            }
        }
    }
    // Whole, the bytes read so far decide alike.
    if let Some(decided) = decided {
        let whole = HeadReader::new().push(&bytes[..fed]);
        match (decided, whole) {
            (Ok(a), Ok(Some(b))) => assert_eq!(a, b),
            (Err(a), Err(b)) => assert_eq!(a, b),
            (a, b) => panic!("pieces gave {a:?}, whole gave {b:?}"),
        }
    }
});
