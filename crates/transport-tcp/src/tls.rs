//! TLS material and checks. The server side: a [`ServerIdentity`] (a certificate chain and
//! its key, from PEM files or made once and kept in a state folder), with its SHA-256
//! [`Fingerprint`], which users pin. The client side: how a server's certificate is checked
//! ([`Trust`]), and what a failed handshake means ([`HandshakeError`]).
//!
//! rustls with the ring provider only: ring cross-compiles to armv7 with nothing but the C
//! compiler, where aws-lc-rs has a history of failing.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{
    AlertDescription, CertificateError, DigitallySignedStruct, InconsistentKeys, OtherError,
    RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use thiserror::Error;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The self-signed certificate's file in the state folder.
pub const CERT_FILE: &str = "tls-cert.pem";
/// The self-signed certificate's key in the state folder, mode 0600.
pub const KEY_FILE: &str = "tls-key.pem";

/// PEM files larger than this are refused unread: no certificate chain or key is near it, and
/// a wrong path (a device, a video) must not be read for ever.
const MAX_PEM_FILE: u64 = 1 << 20;

/// What TLS speaks inside: HTTP/1.1, whether the peer asks for it by ALPN or not.
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// The SHA-256 digest of a certificate's DER bytes: what `openssl x509 -fingerprint -sha256`
/// prints, and what a client pins with `--pin`.
///
/// Displayed as upper-case hex pairs joined by `:`. Parsed from that, or from 64 hex digits
/// without separators, in any case, with an optional `sha256:` (or `SHA256:`) in front.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a certificate given as DER.
    pub fn of(der: &[u8]) -> Fingerprint {
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(digest.as_ref());
        Fingerprint(bytes)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{byte:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// A string that is not a SHA-256 fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "{given:?} is not a SHA-256 fingerprint: {problem}; give the one the server prints at \
     startup, 32 hex pairs such as AB:CD:...:EF (or 64 hex digits)"
)]
pub struct FingerprintError {
    given: String,
    problem: String,
}

impl FromStr for Fingerprint {
    type Err = FingerprintError;

    fn from_str(s: &str) -> Result<Fingerprint, FingerprintError> {
        let error = |problem: String| FingerprintError {
            given: s.to_owned(),
            problem,
        };
        let trimmed = s.trim();
        let hex = match trimmed.get(..7) {
            Some(prefix) if prefix.eq_ignore_ascii_case("sha256:") => &trimmed[7..],
            _ => trimmed,
        };
        if hex.is_empty() {
            return Err(error("it is empty".to_owned()));
        }
        let digits: String = if hex.contains(':') {
            let pairs: Vec<&str> = hex.split(':').collect();
            if pairs[0].len() != 2 && pairs[0].chars().any(|c| !c.is_ascii_hexdigit()) {
                return Err(error(format!(
                    "only SHA-256 fingerprints are taken, and {:?} is not sha256",
                    pairs[0]
                )));
            }
            if let Some(bad) = pairs.iter().find(|p| p.len() != 2) {
                return Err(error(format!(
                    "with colons, each part is 2 hex digits, not {bad:?}"
                )));
            }
            pairs.concat()
        } else {
            hex.to_owned()
        };
        if let Some(bad) = digits.chars().find(|c| !c.is_ascii_hexdigit()) {
            return Err(error(format!("{bad:?} is not a hex digit")));
        }
        if digits.len() != 64 {
            return Err(error(format!("it has {} hex digits, not 64", digits.len())));
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(digits.as_bytes().chunks(2)) {
            let pair = std::str::from_utf8(pair).map_err(|e| error(e.to_string()))?;
            *byte = u8::from_str_radix(pair, 16).map_err(|e| error(e.to_string()))?;
        }
        Ok(Fingerprint(bytes))
    }
}

/// Which kind of PEM file an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PemKind {
    Certificate,
    Key,
    Ca,
}

impl fmt::Display for PemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PemKind::Certificate => "certificate",
            PemKind::Key => "private key",
            PemKind::Ca => "CA certificate",
        })
    }
}

#[derive(Debug, Error)]
pub enum TlsError {
    #[error(
        "cannot read the {kind} file {path}; check the path, and that edgecam's user may read it"
    )]
    Read {
        kind: PemKind,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is larger than 1 MiB, which no {kind} file is; check the path")]
    TooLarge { kind: PemKind, path: PathBuf },
    // The PEM parser's own error is described in `problem`: its Display shows bytes as numbers.
    #[error(
        "{path} is not a PEM {kind} file ({problem}); give a PEM file (its text starts with \
         -----BEGIN), or convert a DER file with `openssl x509 -inform der` (certificates) or \
         `openssl pkey -inform der` (keys)"
    )]
    NotPem {
        kind: PemKind,
        path: PathBuf,
        problem: String,
    },
    #[error("{path} holds no certificate (no -----BEGIN CERTIFICATE----- block){hint}")]
    NoCertificate {
        path: PathBuf,
        /// What the file does hold, when that explains the mistake.
        hint: &'static str,
    },
    #[error(
        "{path} holds no private key (no -----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC \
         PRIVATE KEY block){hint}"
    )]
    NoKey { path: PathBuf, hint: &'static str },
    #[error(
        "{path} holds an encrypted private key, which edgecam cannot unlock; decrypt it once \
         with `openssl pkey -in {path} -out PLAIN.pem` and give that file, mode 600"
    )]
    EncryptedKey { path: PathBuf },
    #[error(
        "the private key in {path} is of a kind this TLS cannot use; ECDSA (P-256, P-384), \
         Ed25519 and RSA keys work"
    )]
    UnsupportedKey {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    // rustls' own words would call it the "peer certificate".
    #[error(
        "the certificate in {path} is not a well-formed X.509 certificate (a damaged or cut-off \
         file?)"
    )]
    BadCertificate { path: PathBuf },
    #[error(
        "the private key in {key} does not belong to the certificate in {cert}; give the key \
         that was made with this certificate"
    )]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error(
        "{path} may be read by other users (mode {mode:03o}); run `chmod 600 {path}`, or delete \
         it and {CERT_FILE} beside it to have new ones made (the fingerprint changes)"
    )]
    KeyReadableByOthers { path: PathBuf, mode: u32 },
    #[error(
        "cannot create the state folder {path}; give a folder edgecam's user may write \
         (--state-dir)"
    )]
    StateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {path}; check that edgecam's user may write its folder")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{name:?} is neither an IP address nor a DNS name a certificate can hold (ASCII \
         letters, digits, '-' and '.')"
    )]
    BadName { name: String },
    #[error("a certificate needs at least one name or address, and none was given")]
    NoNames,
    #[error("cannot make a self-signed certificate")]
    Generate {
        #[source]
        source: rcgen::Error,
    },
    #[error("cannot set up TLS")]
    Config {
        #[source]
        source: rustls::Error,
    },
    #[error(
        "this machine has no CA certificates to check servers with ({problems}); install \
         the CA certificates (Debian: ca-certificates) or set SSL_CERT_FILE, or give --ca FILE \
         or --pin FINGERPRINT"
    )]
    NoSystemRoots { problems: String },
    #[error("the certificate in {path} cannot be a CA to trust")]
    BadCa {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("cannot check servers against {what}")]
    Verifier {
        what: String,
        #[source]
        source: rustls::client::VerifierBuilderError,
    },
}

/// A server's certificate chain and key, ready to accept TLS connections.
pub struct ServerIdentity {
    chain: Vec<CertificateDer<'static>>,
    config: Arc<rustls::ServerConfig>,
}

impl fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerIdentity")
            .field("fingerprint", &self.fingerprint())
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// The only provider here: ring.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// `path`'s bytes, at most [`MAX_PEM_FILE`] of them.
fn read_pem(kind: PemKind, path: &Path) -> Result<Vec<u8>, TlsError> {
    let read_error = |source| TlsError::Read {
        kind,
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_PEM_FILE {
        return Err(TlsError::TooLarge {
            kind,
            path: path.to_owned(),
        });
    }
    Ok(bytes)
}

/// Whether `pem` holds a section that begins with `-----BEGIN {label}`.
fn has_section(pem: &[u8], label: &str) -> bool {
    let marker = format!("-----BEGIN {label}");
    pem.windows(marker.len()).any(|w| w == marker.as_bytes())
}

/// The PEM parser's error in words.
fn pem_problem(error: &rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error;
    match error {
        Error::MissingSectionEnd { end_marker } => format!(
            "a section has no -----END {}----- line",
            String::from_utf8_lossy(end_marker)
        ),
        Error::IllegalSectionStart { line } => {
            format!("a malformed BEGIN line {:?}", String::from_utf8_lossy(line))
        }
        Error::Base64Decode(e) => format!("a section's base64 is broken: {e}"),
        Error::NoItemsFound => "no PEM section".to_owned(),
        other => other.to_string(),
    }
}

/// The certificates in the PEM file at `path`, in order; at least one.
fn certificates(kind: PemKind, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_pem(kind, path)?;
    let not_pem = |problem| TlsError::NotPem {
        kind,
        path: path.to_owned(),
        problem,
    };
    if !has_section(&pem, "") {
        return Err(not_pem("no -----BEGIN line".to_owned()));
    }
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| not_pem(pem_problem(&e)))?;
    if certs.is_empty() {
        let hint = if has_section(&pem, "PRIVATE KEY")
            || has_section(&pem, "RSA PRIVATE KEY")
            || has_section(&pem, "EC PRIVATE KEY")
            || has_section(&pem, "ENCRYPTED PRIVATE KEY")
        {
            "; it holds a private key: were the certificate and the key swapped?"
        } else {
            ""
        };
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
            hint,
        });
    }
    Ok(certs)
}

/// The private key in the PEM file at `path`.
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_pem(PemKind::Key, path)?;
    if !has_section(&pem, "") {
        return Err(TlsError::NotPem {
            kind: PemKind::Key,
            path: path.to_owned(),
            problem: "no -----BEGIN line".to_owned(),
        });
    }
    if has_section(&pem, "ENCRYPTED PRIVATE KEY")
        || pem.windows(20).any(|w| w == b"Proc-Type: 4,ENCRYPT")
    {
        return Err(TlsError::EncryptedKey {
            path: path.to_owned(),
        });
    }
    match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(key) => Ok(key),
        Err(rustls_pki_types::pem::Error::NoItemsFound) => Err(TlsError::NoKey {
            path: path.to_owned(),
            hint: if has_section(&pem, "CERTIFICATE") {
                "; it holds a certificate: were the certificate and the key swapped?"
            } else {
                ""
            },
        }),
        Err(e) => Err(TlsError::NotPem {
            kind: PemKind::Key,
            path: path.to_owned(),
            problem: pem_problem(&e),
        }),
    }
}

impl ServerIdentity {
    /// The certificate chain in `cert` (the server's certificate first, then any
    /// intermediates) and its private key in `key`, both PEM: what `--tls-cert` and
    /// `--tls-key` name.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<ServerIdentity, TlsError> {
        let chain = certificates(PemKind::Certificate, cert)?;
        let der = private_key(key)?;
        let provider = provider();
        let signing = provider
            .key_provider
            .load_private_key(der)
            .map_err(|source| TlsError::UnsupportedKey {
                path: key.to_owned(),
                source,
            })?;
        let certified = CertifiedKey::new(chain.clone(), signing);
        match certified.keys_match() {
            // A key that cannot tell its public half is let through: the handshake tells.
            Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => {}
            Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
                return Err(TlsError::KeyMismatch {
                    cert: cert.to_owned(),
                    key: key.to_owned(),
                });
            }
            Err(_) => {
                return Err(TlsError::BadCertificate {
                    path: cert.to_owned(),
                });
            }
        }
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsError::Config { source })?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
        config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
        Ok(ServerIdentity {
            chain,
            config: Arc::new(config),
        })
    }

    /// The identity kept in `state_dir` ([`CERT_FILE`] and [`KEY_FILE`]), made on the first
    /// call: an ECDSA P-256 key and a self-signed certificate for `names` (IP addresses
    /// become IP address names, anything else DNS names). `true` with it when it was made now.
    ///
    /// The folder is made mode 0700 when missing; the key is written mode 0600 from its
    /// creation, each file to a temporary name first and then renamed, so a crash leaves no
    /// half file (a key without its certificate is made anew). A kept key that other users
    /// may read is refused. The names are those of the first call: to change them, delete
    /// both files (the fingerprint changes).
    ///
    /// The certificate is valid from 1970-01-01 to 9999-12-31 (RFC 5280's "no expiry"
    /// date): boards without a real-time clock boot in 1970 and may make it then, and a
    /// self-signed certificate is trusted by its pin or as its own CA, not by its dates.
    pub fn self_signed(
        state_dir: &Path,
        names: &[String],
    ) -> Result<(ServerIdentity, bool), TlsError> {
        let cert = state_dir.join(CERT_FILE);
        let key = state_dir.join(KEY_FILE);
        if cert.exists() && key.exists() {
            check_private(&key)?;
            return Ok((ServerIdentity::from_pem_files(&cert, &key)?, false));
        }
        let (cert_pem, key_pem) = generate(names)?;
        make_state_dir(state_dir)?;
        // The key first: a crash before the certificate is written leaves a key alone,
        // which the next start replaces with both.
        write_atomically(&key, key_pem.as_bytes(), 0o600)?;
        write_atomically(&cert, cert_pem.as_bytes(), 0o644)?;
        Ok((ServerIdentity::from_pem_files(&cert, &key)?, true))
    }

    /// Accepts TLS connections with this identity; ALPN offers HTTP/1.1 only.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.clone())
    }

    /// The SHA-256 fingerprint of the server's own certificate (the chain's first).
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(self.chain.first().map_or(&[][..], |c| c.as_ref()))
    }
}

/// A new key and a self-signed certificate for `names`, both PEM.
fn generate(names: &[String]) -> Result<(String, String), TlsError> {
    if names.is_empty() {
        return Err(TlsError::NoNames);
    }
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = names
        .iter()
        .map(|name| subject_alt_name(name))
        .collect::<Result<_, _>>()?;
    let generate_error = |source| TlsError::Generate { source };
    let key =
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(generate_error)?;
    // A name of its own for each certificate (from its key): clients that trust an older
    // certificate of the same board must not take it for this one's issuer.
    let key_id = Fingerprint::of(key.public_key_raw()).to_string();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(
        rcgen::DnType::CommonName,
        format!("edgecam {} {}", names[0], &key_id[..11]),
    );
    params.distinguished_name = dn;
    params.not_before = rcgen::date_time_ymd(1970, 1, 1);
    params.not_after = rcgen::date_time_ymd(9999, 12, 31);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    // No key usage extension: OpenSSL then takes the certificate for its own issuer, which
    // `curl --cacert` and `openssl verify -CAfile` need of a self-signed certificate.
    let cert = params.self_signed(&key).map_err(generate_error)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// `name` as a certificate's subject alternative name.
fn subject_alt_name(name: &str) -> Result<rcgen::SanType, TlsError> {
    let bad = || TlsError::BadName {
        name: name.to_owned(),
    };
    if let Ok(ip) = name.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok(rcgen::SanType::IpAddress(ip));
    }
    let valid = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '*'));
    if !valid {
        return Err(bad());
    }
    rcgen::string::Ia5String::try_from(name)
        .map(rcgen::SanType::DnsName)
        .map_err(|_| bad())
}

/// Refuses a key file that users other than its owner may read.
fn check_private(key: &Path) -> Result<(), TlsError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(key).map_err(|source| TlsError::Read {
            kind: PemKind::Key,
            path: key.to_owned(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(TlsError::KeyReadableByOthers {
                path: key.to_owned(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = key;
    Ok(())
}

/// Creates `dir` (and its parents) mode 0700 when missing; an existing folder is left as it is.
fn make_state_dir(dir: &Path) -> Result<(), TlsError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|source| TlsError::StateDir {
        path: dir.to_owned(),
        source,
    })
}

/// Writes `bytes` to `path` through a temporary file in the same folder, created with `mode`
/// (so a key is never readable by others, not even briefly), synced, then renamed over `path`.
fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    let write_error = |source| TlsError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or_else(|| "tls".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(write_error(e)),
    }
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let written = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(write_error(e));
    }
    // The rename itself reaches the disk with the folder; a folder that cannot be synced
    // (some file systems) still has the file.
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// The names a board's self-signed certificate should hold: its host name, that name's
/// first label with `.local` (mDNS), `localhost`, `127.0.0.1`, `::1`, the addresses of its
/// network interfaces (IPv4 first, each family sorted), then `extra`. Without duplicates
/// (IP addresses compared as addresses, names without regard to case), first spelling kept;
/// names no certificate can hold are left out.
pub fn default_names(extra: &[String]) -> Vec<String> {
    let mut names = Vec::new();
    if let Some(host) = hostname() {
        let label = host.split('.').next().unwrap_or(&host).to_owned();
        names.push(host);
        if !label.is_empty() && label != "localhost" {
            names.push(format!("{label}.local"));
        }
    }
    names.extend(["localhost", "127.0.0.1", "::1"].map(String::from));
    match if_addrs::get_if_addrs() {
        Ok(interfaces) => {
            let mut ips: Vec<IpAddr> = interfaces.iter().map(|i| i.ip()).collect();
            ips.sort_by_key(|ip| (ip.is_ipv6(), *ip));
            names.extend(ips.iter().map(IpAddr::to_string));
        }
        Err(e) => tracing::warn!(
            error = %e,
            "cannot list the network interfaces; the certificate names only the host name and loopback"
        ),
    }
    names.extend(extra.iter().cloned());
    let mut seen = std::collections::HashSet::new();
    names
        .into_iter()
        .filter(|name| subject_alt_name(name).is_ok())
        .filter(|name| {
            let key = match name.trim_matches(['[', ']']).parse::<IpAddr>() {
                Ok(ip) => ip.to_string(),
                Err(_) => name.to_ascii_lowercase(),
            };
            seen.insert(key)
        })
        .collect()
}

/// This machine's host name, if it has one that is not empty.
fn hostname() -> Option<String> {
    #[cfg(unix)]
    let name = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    #[cfg(not(unix))]
    let name = std::env::var("COMPUTERNAME").unwrap_or_default();
    let name = name.trim().to_owned();
    (!name.is_empty() && name != "(none)").then_some(name)
}

/// How a client checks an https:// server's certificate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Trust {
    /// Signed by a CA this machine trusts (its CA certificates, as OpenSSL finds them), for
    /// the host name or address in the URL.
    #[default]
    System,
    /// Signed by one of the CA certificates in this PEM file (or being one of them: a
    /// server's self-signed certificate), for the host name or address in the URL.
    Ca(PathBuf),
    /// Exactly the certificate with this SHA-256 fingerprint, whatever its names and dates.
    Pin(Fingerprint),
    /// Any certificate. The connection is still encrypted and the server's handshake
    /// signature still checked, but anyone on the path can pose as the server.
    Insecure,
}

/// A TLS client that checks servers as `trust` says; ALPN asks for HTTP/1.1.
pub fn connector(trust: &Trust) -> Result<TlsConnector, TlsError> {
    let provider = provider();
    let chain = |roots: RootCertStore, trusted: String| {
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map(|verifier| Check::Chain { verifier, trusted })
            .map_err(|source| TlsError::Verifier {
                what: "these CA certificates".to_owned(),
                source,
            })
    };
    let check = match trust {
        Trust::System => chain(system_roots()?, "a CA this machine trusts".to_owned())?,
        Trust::Ca(path) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(PemKind::Ca, path)? {
                roots.add(cert).map_err(|source| TlsError::BadCa {
                    path: path.clone(),
                    source,
                })?;
            }
            chain(roots, format!("the CA in {}", path.display()))?
        }
        Trust::Pin(fingerprint) => Check::Pin(*fingerprint),
        Trust::Insecure => Check::Anything,
    };
    let verifier = Arc::new(Checker {
        check,
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Config { source })?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// The CA certificates of this machine, as OpenSSL would find them (`SSL_CERT_FILE`,
/// `SSL_CERT_DIR`, then the distribution's usual places).
fn system_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let problems = if found.errors.is_empty() {
            "none found".to_owned()
        } else {
            found
                .errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        };
        return Err(TlsError::NoSystemRoots { problems });
    }
    Ok(roots)
}

/// The server certificate check behind every [`Trust`]. It always checks the handshake's
/// signatures with the ring provider's algorithms; what it thinks of the certificate
/// itself depends on `check`. A refusal carries the presented fingerprint to the user.
#[derive(Debug)]
struct Checker {
    check: Check,
    algorithms: WebPkiSupportedAlgorithms,
}

#[derive(Debug)]
enum Check {
    /// A chain to these roots, for the server's name (webpki's checks).
    Chain {
        verifier: Arc<WebPkiServerVerifier>,
        /// Who must have signed, for the error: "a CA this machine trusts".
        trusted: String,
    },
    Pin(Fingerprint),
    Anything,
}

/// Why [`Checker`] refused a certificate; rides inside rustls' error to [`HandshakeError`].
#[derive(Debug, Clone, Error)]
#[error("certificate {presented} refused")]
struct Refusal {
    presented: Fingerprint,
    why: Why,
}

#[derive(Debug, Clone)]
enum Why {
    Pin(Fingerprint),
    Chain {
        trusted: String,
        reason: CertificateError,
    },
}

impl ServerCertVerifier for Checker {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = Fingerprint::of(end_entity);
        let refused = |why| {
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
                Refusal { presented, why },
            ))))
        };
        match &self.check {
            Check::Chain { verifier, trusted } => verifier
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                .map_err(|e| match e {
                    rustls::Error::InvalidCertificate(reason) => refused(Why::Chain {
                        trusted: trusted.clone(),
                        reason,
                    }),
                    other => other,
                }),
            Check::Pin(expected) if *expected == presented => Ok(ServerCertVerified::assertion()),
            Check::Pin(expected) => Err(refused(Why::Pin(*expected))),
            Check::Anything => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Why a TLS handshake with a server failed, said so that the user knows what to do.
#[derive(Debug, Error)]
pub enum HandshakeError {
    #[error(
        "the server's certificate has the SHA-256 fingerprint {presented}, not the pinned \
         {expected}: this is another server, or its certificate was changed; if the server \
         now prints {presented} at startup, pin that"
    )]
    PinMismatch {
        expected: Fingerprint,
        presented: Fingerprint,
    },
    #[error(
        "the server's certificate (SHA-256 {presented}) is not signed by {trusted}; if the \
         server printed that fingerprint at startup, give --pin {presented}; or give its \
         certificate or CA with --ca FILE, or --insecure to check nothing"
    )]
    UnknownIssuer {
        presented: Fingerprint,
        trusted: String,
    },
    #[error(
        "the server's certificate (SHA-256 {presented}) is not for the name in the URL \
         ({reason}); use a name or address the certificate holds, or give --pin {presented}"
    )]
    WrongName {
        presented: Fingerprint,
        reason: CertificateError,
    },
    #[error(
        "the server's certificate (SHA-256 {presented}) is out of its dates ({reason}); check \
         the clocks of this machine and the server, or give --pin {presented}"
    )]
    Dates {
        presented: Fingerprint,
        reason: CertificateError,
    },
    #[error(
        "the server's certificate (SHA-256 {presented}) is marked as a CA's (CA:TRUE, as \
         `openssl req -x509` makes them), and TLS takes no CA certificate for a server's own; \
         give --pin {presented}, or make the certificate without CA:TRUE"
    )]
    CaAsServer { presented: Fingerprint },
    #[error(
        "the server's certificate (SHA-256 {presented}) was refused: {}",
        describe(reason)
    )]
    Refused {
        presented: Fingerprint,
        reason: CertificateError,
    },
    #[error("the server does not answer in TLS on this port; if it serves plain HTTP, use http://")]
    NotTls,
    #[error(
        "the server closed the connection during the TLS handshake; if the port serves plain \
         HTTP or the legacy protocol, use http:// or HOST:PORT"
    )]
    Closed,
    #[error("the server ended the TLS handshake with the alert {alert:?}")]
    Alert { alert: AlertDescription },
    #[error("the TLS handshake failed")]
    Tls(#[source] rustls::Error),
    #[error(transparent)]
    Io(io::Error),
}

impl From<io::Error> for HandshakeError {
    /// What the I/O error of a client handshake (tokio-rustls wraps rustls' errors in them)
    /// means.
    fn from(error: io::Error) -> HandshakeError {
        if matches!(
            error.kind(),
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
        ) {
            return HandshakeError::Closed;
        }
        let Some(tls) = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        else {
            return HandshakeError::Io(error);
        };
        match tls {
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(other))) => {
                match other.downcast_ref::<Refusal>() {
                    Some(refusal) => HandshakeError::from(refusal.clone()),
                    None => HandshakeError::Tls(tls.clone()),
                }
            }
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)
            | rustls::Error::InvalidMessage(rustls::InvalidMessage::UnknownProtocolVersion) => {
                HandshakeError::NotTls
            }
            rustls::Error::AlertReceived(alert) => HandshakeError::Alert { alert: *alert },
            other => HandshakeError::Tls(other.clone()),
        }
    }
}

impl From<Refusal> for HandshakeError {
    fn from(refusal: Refusal) -> HandshakeError {
        let presented = refusal.presented;
        match refusal.why {
            Why::Pin(expected) => HandshakeError::PinMismatch {
                expected,
                presented,
            },
            // A bad signature on a chain means that a trusted CA's name is on the certificate
            // but not its key: a certificate made anew under the same name, most often.
            Why::Chain {
                trusted,
                reason: CertificateError::UnknownIssuer | CertificateError::BadSignature,
            } => HandshakeError::UnknownIssuer { presented, trusted },
            Why::Chain { reason, .. } => match reason {
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => {
                    HandshakeError::WrongName { presented, reason }
                }
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. } => {
                    HandshakeError::Dates { presented, reason }
                }
                CertificateError::Other(OtherError(other))
                    if other.downcast_ref::<webpki::Error>()
                        == Some(&webpki::Error::CaUsedAsEndEntity) =>
                {
                    HandshakeError::CaAsServer { presented }
                }
                reason => HandshakeError::Refused { presented, reason },
            },
        }
    }
}

/// A certificate error in words: rustls shows the errors it passes on from webpki as
/// `Other(OtherError(..))`.
fn describe(reason: &CertificateError) -> String {
    match reason {
        CertificateError::Other(OtherError(other)) => other.to_string(),
        reason => reason.to_string(),
    }
}

#[cfg(test)]
mod tests;
