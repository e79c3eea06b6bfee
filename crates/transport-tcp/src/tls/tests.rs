#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

/// Bounds every wait in the handshake tests.
const WAIT: Duration = Duration::from_secs(10);

fn names() -> Vec<String> {
    ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec()
}

/// A fresh self-signed identity in its own folder (kept alive by the returned guard).
fn identity() -> (ServerIdentity, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (identity, created) = ServerIdentity::self_signed(dir.path(), &names()).unwrap();
    assert!(created);
    (identity, dir)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_fingerprint_prints_like_openssl() {
    // SHA-256 of nothing.
    assert_eq!(
        Fingerprint::of(b"").to_string(),
        "E3:B0:C4:42:98:FC:1C:14:9A:FB:F4:C8:99:6F:B9:24:27:AE:41:E4:64:9B:93:4C:A4:95:99:1B:78:52:B8:55"
    );
}

#[test]
fn fingerprints_parse_in_the_documented_spellings() {
    let want = Fingerprint::of(b"");
    for given in [
        "E3:B0:C4:42:98:FC:1C:14:9A:FB:F4:C8:99:6F:B9:24:27:AE:41:E4:64:9B:93:4C:A4:95:99:1B:78:52:B8:55",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "SHA256:E3:B0:C4:42:98:FC:1C:14:9A:FB:F4:C8:99:6F:B9:24:27:AE:41:E4:64:9B:93:4C:A4:95:99:1B:78:52:B8:55",
        " e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n",
    ] {
        assert_eq!(given.parse::<Fingerprint>(), Ok(want), "{given:?}");
    }
}

#[test]
fn what_is_not_a_fingerprint_is_said() {
    let errors: Vec<String> = [
        "",
        "e3b0c442",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8555",
        "g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "E3:B0:C4:42:98:FC:1C:14:9A:FB:F4:C8:99:6F:B9:24:27:AE:41:E4:64:9B:93:4C:A4:95:99:1B:78:52:B8:5",
        "E3B0:C4",
        "md5:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "ÄÖ",
    ]
    .iter()
    .map(|s| s.parse::<Fingerprint>().unwrap_err().to_string())
    .collect();
    insta::assert_snapshot!(errors.join("\n"));
}

proptest! {
    #[test]
    fn fingerprints_round_trip(bytes in any::<[u8; 32]>(), lower in any::<bool>(), bare in any::<bool>()) {
        let fingerprint = Fingerprint(bytes);
        let mut shown = fingerprint.to_string();
        if bare {
            shown = shown.replace(':', "");
        }
        if lower {
            shown = shown.to_lowercase();
        }
        prop_assert_eq!(shown.parse::<Fingerprint>(), Ok(fingerprint));
    }

    #[test]
    fn parsing_any_text_never_panics(s in "\\PC{0,100}") {
        let _ = s.parse::<Fingerprint>();
    }
}

#[test]
fn a_self_signed_identity_is_made_once_then_reused() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("state").join("edgecam");
    let (first, created) = ServerIdentity::self_signed(&dir, &names()).unwrap();
    assert!(created);
    assert_eq!(mode(&dir), 0o700, "a new state folder is private");
    assert_eq!(mode(&dir.join(KEY_FILE)), 0o600);
    assert_eq!(mode(&dir.join(CERT_FILE)), 0o644);
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left.len(), 2, "no temporary file left: {left:?}");
    for _ in 0..2 {
        let (again, created) = ServerIdentity::self_signed(&dir, &names()).unwrap();
        assert!(!created);
        assert_eq!(again.fingerprint(), first.fingerprint());
    }
    // The fingerprint is that of the file's certificate, as openssl would print it.
    let pem = std::fs::read(dir.join(CERT_FILE)).unwrap();
    let der = CertificateDer::from_pem_slice(&pem).unwrap();
    assert_eq!(Fingerprint::of(&der), first.fingerprint());
}

#[test]
fn a_key_without_its_certificate_is_made_anew() {
    let dir = tempfile::tempdir().unwrap();
    let (first, _) = ServerIdentity::self_signed(dir.path(), &names()).unwrap();
    std::fs::remove_file(dir.path().join(CERT_FILE)).unwrap();
    let (second, created) = ServerIdentity::self_signed(dir.path(), &names()).unwrap();
    assert!(created);
    assert_ne!(second.fingerprint(), first.fingerprint());
    assert_eq!(mode(&dir.path().join(KEY_FILE)), 0o600);
}

#[test]
fn a_kept_key_others_may_read_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    ServerIdentity::self_signed(dir.path(), &names()).unwrap();
    let key = dir.path().join(KEY_FILE);
    for loose in [0o640, 0o604, 0o644] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(loose)).unwrap();
        let err = ServerIdentity::self_signed(dir.path(), &names()).unwrap_err();
        assert!(
            matches!(err, TlsError::KeyReadableByOthers { mode, .. } if mode == loose),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains(&format!("chmod 600 {}", key.display())),
            "{text}"
        );
    }
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).unwrap();
    ServerIdentity::self_signed(dir.path(), &names()).unwrap();
}

#[test]
fn bad_names_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    for names in [
        vec![],
        vec!["cam era".to_owned()],
        vec!["kamera-ä".to_owned()],
    ] {
        let err = ServerIdentity::self_signed(&state, &names).unwrap_err();
        assert!(
            matches!(err, TlsError::NoNames | TlsError::BadName { .. }),
            "{err:?}"
        );
        assert!(!state.exists());
    }
}

#[test]
fn the_certificate_holds_the_names_as_dns_and_ip_names() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = ["board", "board.local", "192.168.7.2", "fe80::1"]
        .map(String::from)
        .to_vec();
    let (identity, _) = ServerIdentity::self_signed(dir.path(), &names).unwrap();
    let der = identity.chain[0].clone();
    let mut roots = RootCertStore::empty();
    roots.add(der.clone()).unwrap();
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .unwrap();
    let check = |name: &str| {
        let server_name = ServerName::try_from(name.to_owned()).unwrap();
        verifier.verify_server_cert(&der, &[], &server_name, &[], UnixTime::now())
    };
    for name in &names {
        assert!(check(name).is_ok(), "{name} is not in the certificate");
    }
    assert!(check("192.168.7.3").is_err());
    assert!(check("other").is_err());
}

/// Whether `tool` runs here. Where it does not, the test says "skipped" and passes, except
/// under CI (`CI` set), whose `.ci/run` installs it.
fn have_tool(tool: &str) -> bool {
    let found = std::process::Command::new(tool)
        .arg("version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} not installed, and CI must have it (.ci/run installs it)"
        );
        println!("skipped: {tool} not installed");
    }
    found
}

#[test]
fn openssl_takes_the_self_signed_certificate_as_its_own_ca() {
    if !have_tool("openssl") {
        return;
    }
    let (identity, dir) = identity();
    let cert = dir.path().join(CERT_FILE);
    let out = std::process::Command::new("openssl")
        .args(["verify", "-purpose", "sslserver", "-CAfile"])
        .arg(&cert)
        .arg(&cert)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&cert)
        .output()
        .unwrap();
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(
        printed.contains(&identity.fingerprint().to_string()),
        "{printed}"
    );
}

#[test]
fn pem_file_errors_name_the_file_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _) = ServerIdentity::self_signed(dir.path(), &names()).unwrap();
    let other = dir.path().join("other");
    ServerIdentity::self_signed(&other, &names()).unwrap();
    let cert = dir.path().join(CERT_FILE);
    let key = dir.path().join(KEY_FILE);
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let missing = dir.path().join("missing.pem");
    let garbage = write("garbage.pem", b"\x00\x01 not a pem file at all");
    let der = write(
        "cert.der",
        CertificateDer::from_pem_slice(&std::fs::read(&cert).unwrap())
            .unwrap()
            .as_ref(),
    );
    let broken = write(
        "broken.pem",
        b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    );
    let unended = write("unended.pem", b"-----BEGIN CERTIFICATE-----\nMIIB\n");
    let encrypted = write(
        "encrypted.pem",
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n",
    );
    let big = write("big.pem", &vec![b'A'; (MAX_PEM_FILE + 1) as usize]);
    let other_key = other.join(KEY_FILE);
    let cases: [(&Path, &Path); 10] = [
        (&missing, &key),
        (&cert, &missing),
        (&garbage, &key),
        (&der, &key),
        (&key, &cert),
        (&cert, &cert),
        (&broken, &key),
        (&unended, &key),
        (&cert, &encrypted),
        (&big, &key),
    ];
    let mut errors: Vec<String> = cases
        .iter()
        .map(|(c, k)| edgecam_core::error_chain(&ServerIdentity::from_pem_files(c, k).unwrap_err()))
        .collect();
    let mismatch = ServerIdentity::from_pem_files(&cert, &other_key).unwrap_err();
    assert!(
        matches!(mismatch, TlsError::KeyMismatch { .. }),
        "{mismatch:?}"
    );
    errors.push(mismatch.to_string());
    let text = errors
        .join("\n")
        .replace(&dir.path().display().to_string(), "DIR");
    insta::assert_snapshot!(text);
}

#[test]
fn default_names_hold_the_host_loopback_and_extra_once() {
    let extra: Vec<String> = [
        "cam.example.org",
        "LOCALHOST",
        "127.0.0.1",
        "10.9.8.7",
        "[::1]",
    ]
    .map(String::from)
    .to_vec();
    let names = default_names(&extra);
    for want in [
        "localhost",
        "127.0.0.1",
        "::1",
        "cam.example.org",
        "10.9.8.7",
    ] {
        assert_eq!(
            names.iter().filter(|n| n.as_str() == want).count(),
            1,
            "{want} once in {names:?}"
        );
    }
    assert!(
        !names.iter().any(|n| n == "LOCALHOST" || n == "[::1]"),
        "{names:?}"
    );
    if let Some(host) = hostname() {
        assert_eq!(names[0], host, "{names:?}");
    }
    // Stable: the same call gives the same list.
    assert_eq!(default_names(&extra), names);
    // Every one of them can go into a certificate.
    let dir = tempfile::tempdir().unwrap();
    ServerIdentity::self_signed(dir.path(), &names).unwrap();
}

/// A TLS server on loopback for one connection: it sends `hello` (or, with `plain`, an
/// HTTP error without TLS) and closes. Its address and the handshake's outcome.
async fn serve_once(
    acceptor: Option<TlsAcceptor>,
) -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<Option<Vec<u8>>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut tcp, _) = tokio::time::timeout(WAIT, listener.accept())
            .await
            .ok()?
            .ok()?;
        let Some(acceptor) = acceptor else {
            // What an HTTP server says to a ClientHello; it reads what came first, so that
            // closing does not reset the connection before the client has read the answer.
            let mut buf = [0u8; 4096];
            let _ = tokio::time::timeout(WAIT, tcp.read(&mut buf)).await;
            let _ = tcp
                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                .await;
            let _ = tcp.shutdown().await;
            let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut Vec::new())).await;
            return None;
        };
        let mut tls = tokio::time::timeout(WAIT, acceptor.accept(tcp))
            .await
            .ok()?
            .ok()?;
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        tls.write_all(b"hello").await.ok()?;
        tls.shutdown().await.ok()?;
        alpn
    });
    (addr, task)
}

/// Connects to `addr` as `name` with `trust`: what the server sent, or the handshake error.
async fn handshake(
    addr: std::net::SocketAddr,
    name: &str,
    trust: &Trust,
) -> Result<Vec<u8>, HandshakeError> {
    let connector = connector(trust).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let mut tls = tokio::time::timeout(WAIT, connector.connect(name, tcp))
        .await
        .expect("the handshake did not end in time")?;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(ALPN_HTTP1));
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, tls.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    Ok(got)
}

#[tokio::test]
async fn the_right_pin_is_let_in_and_alpn_is_http1() {
    let (identity, _dir) = identity();
    let (addr, server) = serve_once(Some(identity.acceptor())).await;
    let got = handshake(addr, "127.0.0.1", &Trust::Pin(identity.fingerprint())).await;
    assert_eq!(got.unwrap(), b"hello");
    assert_eq!(server.await.unwrap(), Some(ALPN_HTTP1.to_vec()));
}

#[tokio::test]
async fn a_pin_ignores_names() {
    let (identity, _dir) = identity();
    let (addr, _server) = serve_once(Some(identity.acceptor())).await;
    let got = handshake(
        addr,
        "not-in-the-cert.example",
        &Trust::Pin(identity.fingerprint()),
    )
    .await;
    assert_eq!(got.unwrap(), b"hello");
}

#[tokio::test]
async fn a_wrong_pin_is_refused_with_both_fingerprints() {
    let (identity, _dir) = identity();
    let expected = Fingerprint([0xAB; 32]);
    let (addr, _server) = serve_once(Some(identity.acceptor())).await;
    let err = handshake(addr, "127.0.0.1", &Trust::Pin(expected))
        .await
        .unwrap_err();
    assert!(
        matches!(err, HandshakeError::PinMismatch { expected: e, presented: p }
            if e == expected && p == identity.fingerprint()),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains(&expected.to_string()), "{text}");
    assert!(text.contains(&identity.fingerprint().to_string()), "{text}");
}

#[tokio::test]
async fn the_self_signed_certificate_is_its_own_ca() {
    let (identity, dir) = identity();
    let ca = Trust::Ca(dir.path().join(CERT_FILE));
    for name in ["127.0.0.1", "localhost", "::1"] {
        let (addr, _server) = serve_once(Some(identity.acceptor())).await;
        assert_eq!(
            handshake(addr, name, &ca).await.unwrap(),
            b"hello",
            "{name}"
        );
    }
    let (addr, _server) = serve_once(Some(identity.acceptor())).await;
    let err = handshake(addr, "elsewhere.example", &ca).await.unwrap_err();
    assert!(matches!(err, HandshakeError::WrongName { .. }), "{err:?}");
}

#[tokio::test]
async fn another_ca_or_the_systems_do_not_know_a_self_signed_certificate() {
    let (identity, _dir) = self::identity();
    let (_, other) = self::identity();
    let (addr, _server) = serve_once(Some(identity.acceptor())).await;
    let err = handshake(addr, "127.0.0.1", &Trust::Ca(other.path().join(CERT_FILE)))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, HandshakeError::UnknownIssuer { presented, trusted }
            if *presented == identity.fingerprint() && trusted.starts_with("the CA in ")),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains(&format!("--pin {}", identity.fingerprint())),
        "{err}"
    );
    match connector(&Trust::System) {
        // A machine without CA certificates cannot make this check.
        Err(TlsError::NoSystemRoots { .. }) => {}
        Err(e) => panic!("{e:?}"),
        Ok(_) => {
            let (addr, _server) = serve_once(Some(identity.acceptor())).await;
            let err = handshake(addr, "localhost", &Trust::System)
                .await
                .unwrap_err();
            assert!(
                matches!(err, HandshakeError::UnknownIssuer { .. }),
                "{err:?}"
            );
        }
    }
}

#[tokio::test]
async fn insecure_lets_any_certificate_in() {
    let (identity, _dir) = identity();
    let (addr, _server) = serve_once(Some(identity.acceptor())).await;
    let got = handshake(addr, "anything.example", &Trust::Insecure).await;
    assert_eq!(got.unwrap(), b"hello");
}

#[tokio::test]
async fn a_plain_http_port_or_one_that_closes_is_said_to_be_no_tls() {
    let (addr, _server) = serve_once(None).await;
    let err = handshake(addr, "127.0.0.1", &Trust::Insecure)
        .await
        .unwrap_err();
    assert!(matches!(err, HandshakeError::NotTls), "{err:?}");

    // Closed after reading the ClientHello (a FIN), or with it unread (a reset).
    for read_first in [true, false] {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let closer = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            if read_first {
                let mut buf = [0u8; 4096];
                let _ = tokio::time::timeout(WAIT, tcp.read(&mut buf)).await;
            }
            drop(tcp);
        });
        let err = handshake(addr, "127.0.0.1", &Trust::Insecure)
            .await
            .unwrap_err();
        assert!(
            matches!(err, HandshakeError::Closed),
            "{read_first}: {err:?}"
        );
        closer.await.unwrap();
    }
}

#[test]
fn handshake_errors_as_a_user_reads_them() {
    let presented = Fingerprint([0x11; 32]);
    let expected = Fingerprint([0x22; 32]);
    let errors = [
        HandshakeError::PinMismatch {
            expected,
            presented,
        },
        HandshakeError::UnknownIssuer {
            presented,
            trusted: "a CA this machine trusts".to_owned(),
        },
        HandshakeError::WrongName {
            presented,
            reason: CertificateError::NotValidForNameContext {
                expected: ServerName::try_from("cam.example").unwrap(),
                presented: vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
            },
        },
        HandshakeError::Dates {
            presented,
            reason: CertificateError::ExpiredContext {
                time: UnixTime::since_unix_epoch(Duration::from_secs(1_800_000_000)),
                not_after: UnixTime::since_unix_epoch(Duration::from_secs(1_700_000_000)),
            },
        },
        HandshakeError::CaAsServer { presented },
        HandshakeError::NotTls,
        HandshakeError::Closed,
    ];
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    insta::assert_snapshot!(text.join("\n"));
}

#[test]
fn a_ca_file_without_certificates_is_refused_by_name() {
    let (_, dir) = identity();
    let Err(err) = connector(&Trust::Ca(dir.path().join(KEY_FILE))) else {
        panic!("a key file was taken for a CA file");
    };
    assert!(matches!(err, TlsError::NoCertificate { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("were the certificate and the key swapped?"),
        "{err}"
    );
}

#[tokio::test]
async fn a_ca_certificate_as_the_servers_own_is_explained_and_can_be_pinned() {
    // What `openssl req -x509` makes: a self-signed certificate with CA:TRUE.
    let dir = tempfile::tempdir().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let identity = ServerIdentity::from_pem_files(&cert_path, &key_path).unwrap();
    let (addr, _server) = serve_once(Some(identity.acceptor())).await;
    let err = handshake(addr, "127.0.0.1", &Trust::Ca(cert_path))
        .await
        .unwrap_err();
    assert!(
        matches!(err, HandshakeError::CaAsServer { presented } if presented == identity.fingerprint()),
        "{err:?}"
    );
    assert!(err.to_string().contains("give --pin"), "{err}");
    let (addr, _server) = serve_once(Some(identity.acceptor())).await;
    let got = handshake(addr, "127.0.0.1", &Trust::Pin(identity.fingerprint())).await;
    assert_eq!(got.unwrap(), b"hello");
}
