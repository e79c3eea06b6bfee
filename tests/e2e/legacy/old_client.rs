//! The old Python client, emulated byte for byte and second for second (LEGACY-PROTOCOL.md,
//! "How the existing client behaves"). Blocking sockets with a timeout per `recv`, as in
//! Python; run it on a blocking thread. Nagle's algorithm stays on, as Python leaves it.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// How long it waits for the answer to `0`, and for the first streamed frame.
pub const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(5);
/// How long it waits for each further streamed frame.
pub const STREAM_FRAME_TIMEOUT: Duration = Duration::from_secs(1);
/// How long it shows a single frame before it confirms it with `1`.
pub const SHOW: Duration = Duration::from_secs(3);

/// How one read of a frame failed, as the Python client would have seen it.
#[derive(Debug)]
pub enum Failure {
    /// `socket.timeout`.
    Timeout,
    /// `recv` returned `b''`.
    Closed,
    /// `recv(4)` returned fewer than 4 bytes, and `struct.unpack('>I', ..)` raised
    /// `struct.error: unpack requires a buffer of 4 bytes`. The stream is out of step from here.
    ShortLength(Vec<u8>),
    Io(io::Error),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Timeout => write!(f, "socket.timeout"),
            Failure::Closed => write!(f, "the server closed the connection"),
            Failure::ShortLength(bytes) => write!(
                f,
                "recv(4) returned {bytes:02X?}: struct.error: unpack requires a buffer of 4 bytes"
            ),
            Failure::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Failure::Timeout,
            _ => Failure::Io(e),
        }
    }
}

#[derive(Debug)]
pub struct OldClient {
    sock: TcpStream,
}

impl OldClient {
    pub fn connect(addr: &str) -> OldClient {
        let sock = TcpStream::connect(addr).expect("the old client cannot connect");
        OldClient { sock }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.sock
            .write_all(bytes)
            .expect("the old client cannot send");
    }

    /// `recv(4)` once, then `recv` until the announced length is there, each `recv` with
    /// `timeout`.
    fn read_frame(&mut self, timeout: Duration) -> Result<Vec<u8>, Failure> {
        self.sock.set_read_timeout(Some(timeout))?;
        let mut header = [0u8; 4];
        match self.sock.read(&mut header)? {
            0 => return Err(Failure::Closed),
            4 => {}
            n => return Err(Failure::ShortLength(header[..n].to_vec())),
        }
        let mut frame = vec![0u8; u32::from_be_bytes(header) as usize];
        let mut got = 0;
        while got < frame.len() {
            match self.sock.read(&mut frame[got..])? {
                0 => return Err(Failure::Closed),
                n => got += n,
            }
        }
        Ok(frame)
    }

    /// Single shot: `0`, the frame within 5 s, 3 s of showing it, then `1`.
    pub fn single_shot(&mut self) -> Result<Vec<u8>, Failure> {
        self.send(b"0");
        let frame = self.read_frame(FIRST_FRAME_TIMEOUT)?;
        std::thread::sleep(SHOW);
        self.send(b"1");
        Ok(frame)
    }

    /// Stream: `3` and at once `0` (here in one write: the worst case, one TCP segment), then
    /// the first frame within 5 s.
    pub fn start_stream(&mut self) -> Result<Vec<u8>, Failure> {
        self.send(b"30");
        self.read_frame(FIRST_FRAME_TIMEOUT)
    }

    /// The next streamed frame within 1 s.
    pub fn streamed_frame(&mut self) -> Result<Vec<u8>, Failure> {
        self.read_frame(STREAM_FRAME_TIMEOUT)
    }

    /// The user's `q`: sends `q` and reads nothing more of the stream.
    pub fn stop_stream(&mut self) {
        self.send(b"q");
    }

    /// What exit puts on the wire: `2` twice. Dropping the client then closes the socket.
    pub fn send_exit(&mut self) {
        self.send(b"2");
        self.send(b"2");
    }

    // What a test observes beyond the old client's own behaviour.

    /// Whether bytes are waiting to be read, or arrive within `within` (nothing is consumed).
    pub fn bytes_waiting(&self, within: Duration) -> bool {
        self.sock.set_read_timeout(Some(within)).unwrap();
        matches!(self.sock.peek(&mut [0u8; 1]), Ok(n) if n > 0)
    }

    /// Reads away whatever comes until the server closes the connection (`true`), or until
    /// nothing has come for `quiet` (`false`).
    pub fn closed_by_server(&mut self, quiet: Duration) -> bool {
        self.sock.set_read_timeout(Some(quiet)).unwrap();
        let mut buf = [0u8; 64 * 1024];
        loop {
            match self.sock.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    }
}

#[test]
fn a_short_length_read_is_a_failure_of_that_read() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.write_all(&[0, 0]).unwrap();
        // Keep the connection open until the client has read and hung up.
        conn.set_read_timeout(Some(crate::support::WAIT)).unwrap();
        let _ = conn.read(&mut [0u8; 16]);
    });
    let mut old = OldClient::connect(&addr);
    match old.streamed_frame() {
        Err(Failure::ShortLength(bytes)) => assert_eq!(bytes, [0, 0]),
        other => panic!("expected a short length read, got {other:?}"),
    }
    drop(old);
    server.join().unwrap();
}
