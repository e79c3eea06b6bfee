//! `--auth-file`: who may watch. The file holds one `USER:HASH` line per user (`#` comments
//! and blank lines allowed), the hash an argon2id PHC string, as `edgecam passwd FILE USER`
//! writes it ([`set_password`]). [`Users::check`] takes a request's `Authorization` header and
//! says whether it names a user with the right password.
//!
//! Checking is built for a hostile LAN on a one-core board:
//! - argon2 runs on tokio's blocking threads, never on the runtime's;
//! - at most one verification runs at a time (a semaphore; its permit goes with the work, so a
//!   check that is given up on still holds it until its argon2 has finished), so a flood of
//!   guesses costs one core at most, and queues;
//! - credentials that passed are remembered for the life of the process as a keyed BLAKE2b
//!   MAC (a random key per process), compared in constant time, so a viewer's every snapshot
//!   and reconnect does not run argon2 again; only credentials that passed are kept, at most
//!   one per user;
//! - an unknown user's password is verified against a real user's hash, and the answer
//!   thrown away, so that unknown and known names cost the same and names do not leak by
//!   timing (as long as every hash in the file has the same cost, as `edgecam passwd` makes
//!   them);
//! - argon2's own comparison of its output is constant-time.
//!
//! The cost of a hash: argon2id with 7 MiB of memory, 5 passes and 1 lane (`m=7168,t=5,p=1`),
//! the one of OWASP's equivalent choices that takes the least memory, since a small board may
//! have little to spare (one verification at a time: 7 MiB at most). Measured with the
//! `argon2_cost` test below on the project's x86-64 machine (AMD EPYC, argon2's AVX2 code):
//! 15 ms a verification at best, 25 to 40 ms while other builds shared its two cores. Not
//! measured on a board yet: a Cortex-A7 has no 64-bit arithmetic and argon2 has no NEON code
//! for it, so expect some 30 to 80 times that, about half a second to a second and a half for
//! a client's first login; every request after that with the same credentials is a cache
//! hit (microseconds).
//!
//! The file's mode: another local user who can read it may attack the hashes offline, so
//! reading it warns when others (not the owner, not the group) may read it; a file that
//! others may write is refused, since anyone could add themselves. The group is trusted, so a
//! service can read the file through its group. The file is read once: changing it takes a
//! restart (and a reload would have to forget the remembered credentials).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use argon2::password_hash::{self, phc};
use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use blake2::digest::{KeyInit, Mac};
use edgecam_core::http::auth::{BasicError, MAX_CREDENTIALS_LEN, parse_basic};
use subtle::{Choice, ConstantTimeEq};
use thiserror::Error;
use tokio::sync::Semaphore;

/// The argon2id cost of the hashes [`set_password`] writes (see the module's docs).
const PARAMS: Params = match Params::new(7 * 1024, 5, 1, None) {
    Ok(params) => params,
    Err(_) => panic!("the argon2 parameters are out of range"),
};

/// The users of an auth file and what checking their passwords needs.
pub struct Users {
    path: PathBuf,
    hashes: HashMap<String, PasswordHash>,
    /// What an unknown user's password is verified against: the first user's hash, so that
    /// it costs what a known user's does.
    decoy: PasswordHash,
    /// One permit: one verification at a time.
    verifier: Arc<Semaphore>,
    /// The MACs of credentials that passed (see [`Users::tag`]).
    passed: Arc<Mutex<Vec<Tag>>>,
    /// The MAC's key, random for each process.
    key: [u8; 64],
    probe: Arc<Probe>,
}

/// A keyed BLAKE2b-512 MAC of a user name and password.
type Tag = [u8; 64];

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users")
            .field("path", &self.path)
            .field("users", &self.hashes.len())
            .finish_non_exhaustive()
    }
}

/// How many argon2 verifications ran, and how many at once at most: what the tests check the
/// semaphore and the cache by, without timing.
#[derive(Debug, Default)]
struct Probe {
    verifications: AtomicU64,
    running: AtomicUsize,
    most_running: AtomicUsize,
}

impl Probe {
    fn run<T>(&self, work: impl FnOnce() -> T) -> T {
        self.verifications.fetch_add(1, Ordering::SeqCst);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_running.fetch_max(now, Ordering::SeqCst);
        let out = work();
        self.running.fetch_sub(1, Ordering::SeqCst);
        out
    }
}

/// What [`Users::check`] decided.
#[derive(Debug)]
pub enum Verdict {
    /// The credentials are `user`'s.
    Allowed { user: String },
    /// Why, for the log only: the client is answered the same `401` whatever the reason.
    Denied(DenyReason),
}

impl Verdict {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Verdict::Allowed { .. })
    }
}

/// Why a request was not let in.
#[derive(Debug, Error)]
pub enum DenyReason {
    #[error("no Authorization header")]
    NoCredentials,
    #[error(transparent)]
    Malformed(#[from] BasicError),
    #[error("unknown user {0:?}")]
    UnknownUser(String),
    #[error("wrong password for user {0:?}")]
    WrongPassword(String),
    #[error("the password of user {user:?} could not be checked")]
    Unverified {
        user: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Why an auth file could not be read or written.
#[derive(Debug, Error)]
pub enum AuthFileError {
    #[error(
        "there is no auth file {}: make it with `edgecam passwd {} USER`",
        path.display(), path.display()
    )]
    Missing { path: PathBuf },
    #[error("cannot read the auth file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}, line {line}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        #[source]
        problem: LineError,
    },
    #[error(
        "the auth file {} has no users, so nobody could log in: add one with `edgecam passwd {} USER`",
        path.display(), path.display()
    )]
    NoUsers { path: PathBuf },
    #[error(
        "anyone on this machine may change the auth file {} (mode {mode:04o}), and so add \
         themselves: `chmod 600 {}`",
        path.display(), path.display()
    )]
    WritableByOthers { path: PathBuf, mode: u32 },
    #[error("{user:?} cannot be a user name")]
    BadUser {
        user: String,
        #[source]
        problem: UserNameError,
    },
    #[error("the password is empty")]
    EmptyPassword,
    #[error(
        "the user name and password are {len} bytes together, and HTTP Basic credentials over \
         {max} bytes are refused: choose a shorter password",
        max = MAX_CREDENTIALS_LEN
    )]
    PasswordTooLong { len: usize },
    #[error("cannot hash the password")]
    Hash(#[source] password_hash::Error),
    #[error("cannot get random bytes from the system")]
    Random(#[source] getrandom::Error),
    #[error(
        "cannot make a new file in the folder {} (it must exist, and you must be allowed to \
         write there)",
        dir.display()
    )]
    Folder {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the auth file {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What is wrong with one line of an auth file.
#[derive(Debug, Error)]
pub enum LineError {
    #[error("not UTF-8 text")]
    NotUtf8,
    #[error("no `:` between the user name and the hash (each line is USER:HASH)")]
    NoColon,
    #[error("bad user name {user:?}")]
    BadUser {
        user: String,
        #[source]
        problem: UserNameError,
    },
    #[error("user {user:?} is on line {first} already")]
    Duplicate { user: String, first: usize },
    #[error(
        "the hash of user {user:?} is not an argon2id PHC string one can verify against \
         ($argon2id$v=19$m=..,t=..,p=..$SALT$HASH; set the password again with `edgecam passwd`)"
    )]
    BadHash {
        user: String,
        #[source]
        source: password_hash::Error,
    },
    #[error(
        "the hash of user {user:?} is {algorithm}, and only argon2id is taken: set the \
         password again with `edgecam passwd`"
    )]
    NotArgon2id { user: String, algorithm: String },
}

/// Why a name cannot be a user's.
#[derive(Debug, Clone, Copy, Error, PartialEq, Eq)]
pub enum UserNameError {
    #[error("it is empty")]
    Empty,
    #[error("it holds a `:`, which ends the user name in HTTP Basic and in the auth file")]
    Colon,
    #[error("it holds a space or a control character")]
    Space,
    #[error("it is over {} bytes", MAX_CREDENTIALS_LEN - 2)]
    TooLong,
}

/// Whether `user` can be a user's name: not empty, no `:`, no whitespace or control
/// characters, and short enough to leave room for a password in Basic credentials.
pub fn check_user_name(user: &str) -> Result<(), UserNameError> {
    if user.is_empty() {
        Err(UserNameError::Empty)
    } else if user.contains(':') {
        Err(UserNameError::Colon)
    } else if user.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Err(UserNameError::Space)
    } else if user.len() > MAX_CREDENTIALS_LEN - 2 {
        Err(UserNameError::TooLong)
    } else {
        Ok(())
    }
}

impl Users {
    /// Reads the auth file at `path` (see the module's docs for its format and the modes it
    /// takes). Every user in it is checked to have an argon2id hash one can verify against.
    pub fn load(path: &Path) -> Result<Users, AuthFileError> {
        let read = |source: std::io::Error| match source.kind() {
            std::io::ErrorKind::NotFound => AuthFileError::Missing {
                path: path.to_owned(),
            },
            _ => AuthFileError::Read {
                path: path.to_owned(),
                source,
            },
        };
        let bytes = std::fs::read(path).map_err(read)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).map_err(read)?.permissions().mode() & 0o7777;
            match others_may(mode) {
                OthersMay::Write => {
                    return Err(AuthFileError::WritableByOthers {
                        path: path.to_owned(),
                        mode,
                    });
                }
                OthersMay::Read => tracing::warn!(
                    "every user of this machine may read the auth file {} (mode {mode:04o}) and \
                     attack its hashes offline: `chmod o-r {}`",
                    path.display(),
                    path.display()
                ),
                OthersMay::Nothing => {}
            }
        }
        let hashes = parse_file(&bytes).map_err(|(line, problem)| AuthFileError::Line {
            path: path.to_owned(),
            line,
            problem,
        })?;
        let Some((_, decoy)) = hashes.first() else {
            return Err(AuthFileError::NoUsers {
                path: path.to_owned(),
            });
        };
        let decoy = decoy.clone();
        let mut key = [0u8; 64];
        getrandom::fill(&mut key).map_err(AuthFileError::Random)?;
        Ok(Users {
            path: path.to_owned(),
            hashes: hashes.into_iter().collect(),
            decoy,
            verifier: Arc::new(Semaphore::new(1)),
            passed: Arc::default(),
            key,
            probe: Arc::default(),
        })
    }

    /// The file the users came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many users there are.
    pub fn user_count(&self) -> usize {
        self.hashes.len()
    }

    /// Whether a request's `Authorization` header value (`None`: it sent none) names a user
    /// with the right password. Credentials that passed before are let in at once; others
    /// wait for their turn at argon2 (one verification at a time), so a caller that must
    /// answer within a time puts its own timeout around this.
    pub async fn check(&self, authorization: Option<&str>) -> Verdict {
        let Some(value) = authorization else {
            return Verdict::Denied(DenyReason::NoCredentials);
        };
        let credentials = match parse_basic(value) {
            Ok(credentials) => credentials,
            Err(e) => return Verdict::Denied(e.into()),
        };
        let user = credentials.user;
        let tag = self.tag(&user, &credentials.password);
        if self.passed_before(&tag) {
            return Verdict::Allowed { user };
        }
        let Ok(permit) = self.verifier.clone().acquire_owned().await else {
            // Never closed; were it, nobody would be let in.
            return Verdict::Denied(DenyReason::Unverified {
                user,
                source: "the verifier is closed".into(),
            });
        };
        // The same credentials may have passed while this check waited its turn.
        if self.passed_before(&tag) {
            return Verdict::Allowed { user };
        }
        let known = self.hashes.get(&user);
        let hash = known.unwrap_or(&self.decoy).clone();
        let is_known = known.is_some();
        let password = credentials.password;
        let probe = self.probe.clone();
        let passed = self.passed.clone();
        let verified = tokio::task::spawn_blocking(move || {
            // Held until argon2 is done and its success remembered, even if this check is
            // given up on meanwhile: the next in line then finds it.
            let _permit = permit;
            let verified =
                probe.run(|| Argon2::default().verify_password(password.as_bytes(), &hash));
            if is_known && verified.is_ok() {
                let mut passed = passed.lock().unwrap_or_else(|e| e.into_inner());
                if !passed.contains(&tag) {
                    passed.push(tag);
                }
            }
            verified
        })
        .await;
        match (known, verified) {
            (_, Err(e)) => Verdict::Denied(DenyReason::Unverified {
                user,
                source: Box::new(e),
            }),
            (None, Ok(_)) => Verdict::Denied(DenyReason::UnknownUser(user)),
            (Some(_), Ok(Ok(()))) => Verdict::Allowed { user },
            (Some(_), Ok(Err(password_hash::Error::PasswordInvalid))) => {
                Verdict::Denied(DenyReason::WrongPassword(user))
            }
            (Some(_), Ok(Err(e))) => Verdict::Denied(DenyReason::Unverified {
                user,
                source: Box::new(e),
            }),
        }
    }

    /// The keyed MAC of `user` and `password`: the user name's length first, so that no two
    /// pairs are hashed alike.
    fn tag(&self, user: &str, password: &str) -> Tag {
        let mut mac = blake2::Blake2bMac512::new(&self.key.into());
        mac.update(&(user.len() as u64).to_le_bytes());
        mac.update(user.as_bytes());
        mac.update(password.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Whether `tag` is among those that passed, compared with every one of them in constant
    /// time.
    fn passed_before(&self, tag: &Tag) -> bool {
        let passed = self.passed.lock().unwrap_or_else(|e| e.into_inner());
        let found = passed
            .iter()
            .fold(Choice::from(0), |found, known| found | known.ct_eq(tag));
        found.into()
    }
}

/// What a file's mode lets users other than its owner and group do.
#[derive(Debug, PartialEq, Eq)]
enum OthersMay {
    Nothing,
    Read,
    Write,
}

fn others_may(mode: u32) -> OthersMay {
    if mode & 0o002 != 0 {
        OthersMay::Write
    } else if mode & 0o004 != 0 {
        OthersMay::Read
    } else {
        OthersMay::Nothing
    }
}

/// The users of an auth file in the order of their lines, or the first bad line (counted
/// from 1) and what is wrong with it.
fn parse_file(bytes: &[u8]) -> Result<Vec<(String, PasswordHash)>, (usize, LineError)> {
    let mut users: Vec<(String, PasswordHash)> = Vec::new();
    let mut lines_of: HashMap<String, usize> = HashMap::new();
    for (index, line) in bytes.split(|b| *b == b'\n').enumerate() {
        let number = index + 1;
        let line = std::str::from_utf8(line).map_err(|_| (number, LineError::NotUtf8))?;
        let Some((user, hash)) = parse_line(line).map_err(|e| (number, e))? else {
            continue;
        };
        if let Some(first) = lines_of.get(&user) {
            return Err((
                number,
                LineError::Duplicate {
                    user,
                    first: *first,
                },
            ));
        }
        lines_of.insert(user.clone(), number);
        users.push((user, hash));
    }
    Ok(users)
}

/// One line: `None` for a blank line or a comment.
fn parse_line(line: &str) -> Result<Option<(String, PasswordHash)>, LineError> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (user, hash) = line.split_once(':').ok_or(LineError::NoColon)?;
    let user = user.trim_end();
    check_user_name(user).map_err(|problem| LineError::BadUser {
        user: user.to_owned(),
        problem,
    })?;
    let bad_hash = |source| LineError::BadHash {
        user: user.to_owned(),
        source,
    };
    let hash = PasswordHash::new(hash.trim_start()).map_err(|e: phc::Error| bad_hash(e.into()))?;
    if hash.algorithm != argon2::ARGON2ID_IDENT {
        return Err(LineError::NotArgon2id {
            user: user.to_owned(),
            algorithm: hash.algorithm.to_string(),
        });
    }
    Params::try_from(&hash).map_err(bad_hash)?;
    if hash.salt.is_none() || hash.hash.is_none() {
        return Err(bad_hash(password_hash::Error::EncodingInvalid));
    }
    Ok(Some((user.to_owned(), hash)))
}

/// What [`set_password`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordChange {
    /// The user was not in the file (or there was no file): a line was added.
    Added,
    /// The user's line now has the new password's hash.
    Changed,
}

/// Gives `user` the password `password` in the auth file at `path`: their line is replaced
/// (or added at the end), every other line is kept as it was, comments and lines this
/// version would refuse included. A second line of the same user is dropped. The file is
/// written whole to a temporary file beside it and renamed over it, so a reader sees the old
/// file or the new one. A new file gets mode 0600; an existing one keeps its owner, its group
/// and its mode without the bits for others.
pub fn set_password(
    path: &Path,
    user: &str,
    password: &str,
) -> Result<PasswordChange, AuthFileError> {
    check_user_name(user).map_err(|problem| AuthFileError::BadUser {
        user: user.to_owned(),
        problem,
    })?;
    if password.is_empty() {
        return Err(AuthFileError::EmptyPassword);
    }
    let len = user.len() + 1 + password.len();
    if len > MAX_CREDENTIALS_LEN {
        return Err(AuthFileError::PasswordTooLong { len });
    }
    // Write where the file really is, not over a symbolic link to it.
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let old = match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => return Err(AuthFileError::Read { path, source }),
    };
    let hash = Argon2::new(Algorithm::Argon2id, Version::V0x13, PARAMS)
        .hash_password(password.as_bytes())
        .map_err(AuthFileError::Hash)?;
    let line = format!("{user}:{hash}\n");
    let (text, change) = with_line(old.as_deref().unwrap_or_default(), user, &line);
    write_replacing(&path, &text, old.is_some())?;
    Ok(change)
}

/// `file` with `user`'s first line replaced by `line` (which ends in a newline), and their
/// other lines dropped; or with `line` added at the end.
fn with_line(file: &[u8], user: &str, line: &str) -> (Vec<u8>, PasswordChange) {
    let mut out = Vec::with_capacity(file.len() + line.len() + 1);
    let mut change = PasswordChange::Added;
    let mut lines = file.split_inclusive(|b| *b == b'\n').peekable();
    while let Some(old) = lines.next() {
        if line_user(old) == Some(user.as_bytes()) {
            if change == PasswordChange::Added {
                out.extend_from_slice(line.as_bytes());
                change = PasswordChange::Changed;
            }
            continue;
        }
        out.extend_from_slice(old);
        if lines.peek().is_none() && !old.ends_with(b"\n") {
            out.push(b'\n');
        }
    }
    if change == PasswordChange::Added {
        out.extend_from_slice(line.as_bytes());
    }
    (out, change)
}

/// The user a line is for, as [`parse_line`] reads it; `None` for blank lines and comments.
fn line_user(line: &[u8]) -> Option<&[u8]> {
    let line = line.trim_ascii();
    if line.is_empty() || line.starts_with(b"#") {
        return None;
    }
    let user = line.split(|b| *b == b':').next().unwrap_or(line);
    Some(user.trim_ascii_end())
}

/// Writes `bytes` to a new file beside `path` (`.NAME.PID.tmp`, mode 0600, never an
/// existing file or link) and renames it over `path`; the new file is removed if that fails.
fn write_replacing(path: &Path, bytes: &[u8], existed: bool) -> Result<(), AuthFileError> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&temporary)
        .map_err(|source| AuthFileError::Folder {
            dir: dir.to_owned(),
            source,
        })?;
    let written = (|| {
        #[cfg(unix)]
        if existed {
            keep_owner_and_mode(path, &file);
        }
        #[cfg(not(unix))]
        let _ = existed;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if let Err(source) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(AuthFileError::Write {
            path: path.to_owned(),
            source,
        });
    }
    // The rename is on disk once the folder is; a folder that cannot be opened or synced
    // (some file systems) only loses that guarantee.
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Gives `new` the owner and group of the file at `path`, and its mode without the bits for
/// others. Only what can be done is done: a user who is not root cannot give a file away,
/// and is told so.
#[cfg(unix)]
fn keep_owner_and_mode(path: &Path, new: &std::fs::File) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Ok(old) = std::fs::metadata(path) else {
        return;
    };
    let mine = new.metadata().ok();
    if mine.is_some_and(|m| (m.uid(), m.gid()) != (old.uid(), old.gid()))
        && let Err(e) = std::os::unix::fs::fchown(new, Some(old.uid()), Some(old.gid()))
    {
        tracing::warn!(
            error = %e,
            "{} now belongs to you, not to user {} and group {} as before: `chown {}:{} {}` \
             if the server runs as them",
            path.display(),
            old.uid(),
            old.gid(),
            old.uid(),
            old.gid(),
            path.display()
        );
    }
    let mode = old.permissions().mode() & 0o770;
    if let Err(e) = new.set_permissions(std::fs::Permissions::from_mode(mode)) {
        tracing::warn!(error = %e, "cannot give {} its mode {mode:04o} back", path.display());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use edgecam_core::http::auth::encode_basic;

    /// A hash as cheap as argon2 allows, so the tests run fast; [`PARAMS`] is what files get.
    fn cheap_hash(password: &str) -> String {
        hash_with(
            password,
            Params::new(Params::MIN_M_COST, 1, 1, None).unwrap(),
        )
    }

    fn hash_with(password: &str, params: Params) -> String {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(password.as_bytes())
            .unwrap()
            .to_string()
    }

    /// An auth file with `text` in a folder of its own (kept while the folder lives).
    fn file_with(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        std::fs::write(&path, text).unwrap();
        set_mode(&path, 0o600);
        (dir, path)
    }

    fn set_mode(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn users(text: &str) -> Users {
        let (_dir, path) = file_with(text);
        Users::load(&path).unwrap()
    }

    /// The error an auth file with `text` is refused with, as a user reads it.
    fn load_error(text: &str) -> String {
        let (_dir, path) = file_with(text);
        let e = Users::load(&path).unwrap_err();
        edgecam_core::error_chain(&e).replace(&path.display().to_string(), "FILE")
    }

    fn basic(user: &str, password: &str) -> Option<String> {
        Some(encode_basic(user, password))
    }

    #[test]
    fn loads_users_between_comments_and_blank_lines() {
        let text = format!(
            "# who may watch\n\nalice:{}\r\n   # an indented comment\n  bob : {}  \n\n",
            cheap_hash("a"),
            cheap_hash("b")
        );
        let users = users(&text);
        assert_eq!(users.user_count(), 2);
        let mut names: Vec<&str> = users.hashes.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["alice", "bob"]);
    }

    #[test]
    fn bad_lines_are_named_by_number_and_say_what_is_wrong() {
        let good = cheap_hash("a");
        let argon2i = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x13,
            Params::new(Params::MIN_M_COST, 1, 1, None).unwrap(),
        )
        .hash_password(b"a")
        .unwrap()
        .to_string();
        let cases = [
            format!("# ok\nalice:{good}\nbob\n"),
            format!("alice:{good}\n:{good}\n"),
            format!("alice:{good}\nal ice:{good}\n"),
            format!("alice:{good}\n\nalice:{good}\n"),
            "alice:$2y$10$abcdefghijklmnopqrstuu5Yw3l2d6e8b0.n1f6bD0Xr1r1r1r1r1\n".to_owned(),
            format!("alice:{argon2i}\n"),
            "alice:$argon2id$v=19$m=8,t=1,p=1\n".to_owned(),
            "alice:$argon2id$v=19$m=1,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA\n".to_owned(),
            "alice:plaintext\n".to_owned(),
        ];
        let mut report = String::new();
        for text in &cases {
            report.push_str(&load_error(text));
            report.push('\n');
        }
        let mut not_utf8 = b"# ok\n".to_vec();
        not_utf8.extend_from_slice(b"\xFFlice:x\n");
        let (_dir, path) = file_with("");
        std::fs::write(&path, not_utf8).unwrap();
        let e = Users::load(&path).unwrap_err();
        report
            .push_str(&edgecam_core::error_chain(&e).replace(&path.display().to_string(), "FILE"));
        insta::assert_snapshot!(report);
    }

    #[test]
    fn a_file_without_users_or_without_a_file_is_an_error_that_says_what_to_do() {
        insta::assert_snapshot!("no_users", load_error("# nobody yet\n\n"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing");
        let e = Users::load(&path).unwrap_err();
        insta::assert_snapshot!(
            "missing_file",
            edgecam_core::error_chain(&e).replace(&path.display().to_string(), "FILE")
        );
    }

    #[test]
    fn others_may_read_with_a_warning_but_not_write() {
        assert_eq!(others_may(0o600), OthersMay::Nothing);
        assert_eq!(others_may(0o640), OthersMay::Nothing);
        assert_eq!(others_may(0o660), OthersMay::Nothing);
        assert_eq!(others_may(0o644), OthersMay::Read);
        assert_eq!(others_may(0o646), OthersMay::Write);
        assert_eq!(others_may(0o602), OthersMay::Write);
        let (_dir, path) = file_with(&format!("alice:{}\n", cheap_hash("a")));
        set_mode(&path, 0o644);
        assert!(Users::load(&path).is_ok());
        set_mode(&path, 0o666);
        let e = Users::load(&path).unwrap_err();
        insta::assert_snapshot!(
            "writable_by_others",
            edgecam_core::error_chain(&e).replace(&path.display().to_string(), "FILE")
        );
    }

    #[test]
    fn set_password_adds_and_replaces_and_keeps_every_other_line() {
        let bob = cheap_hash("b");
        let text = format!(
            "# who may watch\nalice:{}\n\n# the kitchen\nbob:{bob}\nnot a user line",
            cheap_hash("old")
        );
        let (_dir, path) = file_with(&text);

        assert_eq!(
            set_password(&path, "alice", "new").unwrap(),
            PasswordChange::Changed
        );
        assert_eq!(
            set_password(&path, "carol", "c").unwrap(),
            PasswordChange::Added
        );
        let after = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = after.lines().collect();
        assert_eq!(lines.len(), 7, "{after}");
        assert_eq!(lines[0], "# who may watch");
        assert!(
            lines[1].starts_with("alice:$argon2id$v=19$m=7168,t=5,p=1$"),
            "{after}"
        );
        assert_eq!(
            &lines[2..6],
            [
                "",
                "# the kitchen",
                &format!("bob:{bob}"),
                "not a user line"
            ]
        );
        assert!(lines[6].starts_with("carol:$argon2id$"), "{after}");
        assert!(after.ends_with('\n'));

        let alice = PasswordHash::new(lines[1].split_once(':').unwrap().1).unwrap();
        assert!(Argon2::default().verify_password(b"new", &alice).is_ok());
        assert!(Argon2::default().verify_password(b"old", &alice).is_err());
    }

    #[test]
    fn with_line_replaces_the_first_and_drops_the_rest() {
        let file = b"a:1\nb:2\n a : 3\n#a:4\nb:5";
        let (out, change) = with_line(file, "a", "a:new\n");
        assert_eq!(change, PasswordChange::Changed);
        assert_eq!(String::from_utf8(out).unwrap(), "a:new\nb:2\n#a:4\nb:5\n");
        let (out, change) = with_line(b"", "a", "a:new\n");
        assert_eq!(change, PasswordChange::Added);
        assert_eq!(out, b"a:new\n");
        let (out, _) = with_line(b"# no newline at the end", "ab", "ab:new\n");
        assert_eq!(out, b"# no newline at the end\nab:new\n");
    }

    #[test]
    fn set_password_makes_a_new_file_0600_and_keeps_an_old_ones_mode_without_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        assert_eq!(
            set_password(&path, "alice", "a").unwrap(),
            PasswordChange::Added
        );
        assert_eq!(mode(&path), 0o600);
        assert_eq!(Users::load(&path).unwrap().user_count(), 1);

        set_mode(&path, 0o644);
        set_password(&path, "alice", "b").unwrap();
        assert_eq!(mode(&path), 0o640);
        set_mode(&path, 0o660);
        set_password(&path, "bob", "b").unwrap();
        assert_eq!(mode(&path), 0o660);
        // Nothing but the file is left in the folder.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["users"]);
    }

    #[test]
    fn set_password_writes_through_a_symbolic_link() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("users");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        set_password(&real, "alice", "a").unwrap();
        set_password(&link, "bob", "b").unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(Users::load(&real).unwrap().user_count(), 2);
    }

    #[test]
    fn set_password_refuses_what_could_never_log_in() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        let long = "p".repeat(MAX_CREDENTIALS_LEN);
        let cases: [(&str, &str); 6] = [
            ("", "pw"),
            ("al:ice", "pw"),
            ("al ice", "pw"),
            ("al\tice", "pw"),
            ("alice", ""),
            ("alice", &long),
        ];
        let mut report = String::new();
        for (user, password) in cases {
            let e = set_password(&path, user, password).unwrap_err();
            report.push_str(&edgecam_core::error_chain(&e));
            report.push('\n');
        }
        insta::assert_snapshot!(report);
        assert!(!path.exists(), "a refused password wrote the file");
    }

    #[tokio::test]
    async fn the_right_password_is_let_in_and_everything_else_is_not() {
        let users = users(&format!(
            "alice:{}\nbob:{}\n",
            cheap_hash("open sesame"),
            cheap_hash("b")
        ));
        let check = async |value: Option<String>| users.check(value.as_deref()).await;
        match check(basic("alice", "open sesame")).await {
            Verdict::Allowed { user } => assert_eq!(user, "alice"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            check(basic("alice", "open sesame!")).await,
            Verdict::Denied(DenyReason::WrongPassword(u)) if u == "alice"
        ));
        // Bob's password is no good for Alice, nor for someone unknown.
        assert!(matches!(
            check(basic("alice", "b")).await,
            Verdict::Denied(DenyReason::WrongPassword(_))
        ));
        assert!(matches!(
            check(basic("mallory", "b")).await,
            Verdict::Denied(DenyReason::UnknownUser(u)) if u == "mallory"
        ));
        // Not even the first user's password, whose hash unknown users are checked against.
        assert!(matches!(
            check(basic("mallory", "open sesame")).await,
            Verdict::Denied(DenyReason::UnknownUser(_))
        ));
        assert!(matches!(
            check(None).await,
            Verdict::Denied(DenyReason::NoCredentials)
        ));
        assert!(matches!(
            check(Some("Bearer x".to_owned())).await,
            Verdict::Denied(DenyReason::Malformed(BasicError::NotBasic))
        ));
        assert!(matches!(
            check(Some("Basic !!".to_owned())).await,
            Verdict::Denied(DenyReason::Malformed(BasicError::BadBase64(_)))
        ));
        // The user name is case-sensitive.
        assert!(matches!(
            check(basic("Alice", "open sesame")).await,
            Verdict::Denied(DenyReason::UnknownUser(_))
        ));
    }

    #[test]
    fn a_check_can_run_in_a_spawned_task() {
        fn send<T: Send>(_: &T) {}
        let users = users(&format!("alice:{}\n", cheap_hash("a")));
        send(&users.check(None));
        send(&Arc::new(users));
    }

    #[tokio::test]
    async fn unknown_users_cost_an_argon2_verification_like_known_ones() {
        let users = users(&format!("alice:{}\n", cheap_hash("a")));
        assert!(
            !users
                .check(basic("mallory", "x").as_deref())
                .await
                .is_allowed()
        );
        assert_eq!(users.probe.verifications.load(Ordering::SeqCst), 1);
        assert!(
            !users
                .check(basic("alice", "x").as_deref())
                .await
                .is_allowed()
        );
        assert_eq!(users.probe.verifications.load(Ordering::SeqCst), 2);
        // What is refused before argon2 costs none.
        assert!(!users.check(None).await.is_allowed());
        assert!(!users.check(Some("Basic")).await.is_allowed());
        assert_eq!(users.probe.verifications.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn credentials_that_passed_are_not_verified_again_and_wrong_ones_always_are() {
        let users = users(&format!(
            "alice:{}\nbob:{}\n",
            cheap_hash("a"),
            cheap_hash("b")
        ));
        let right = basic("alice", "a");
        for _ in 0..5 {
            assert!(users.check(right.as_deref()).await.is_allowed());
        }
        assert_eq!(users.probe.verifications.load(Ordering::SeqCst), 1);
        for _ in 0..3 {
            assert!(
                !users
                    .check(basic("alice", "wrong").as_deref())
                    .await
                    .is_allowed()
            );
        }
        assert_eq!(users.probe.verifications.load(Ordering::SeqCst), 4);
        // Another user's right password is not Alice's, cached or not.
        assert!(users.check(basic("bob", "b").as_deref()).await.is_allowed());
        assert!(
            !users
                .check(basic("alice", "b").as_deref())
                .await
                .is_allowed()
        );
        assert!(!users.check(basic("bob", "a").as_deref()).await.is_allowed());
        assert_eq!(users.passed.lock().unwrap().len(), 2);
    }

    /// Hashes that take a few milliseconds each, so that verifications left free to run
    /// together would overlap.
    fn slow_hash(password: &str) -> String {
        hash_with(password, Params::new(4 * 1024, 3, 1, None).unwrap())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn verifications_run_one_at_a_time() {
        let users = Arc::new(users(&format!("alice:{}\n", slow_hash("a"))));
        let checks: Vec<_> = (0..6)
            .map(|i| {
                let users = users.clone();
                tokio::spawn(async move {
                    let value = basic(if i % 2 == 0 { "alice" } else { "mallory" }, "wrong");
                    users.check(value.as_deref()).await.is_allowed()
                })
            })
            .collect();
        for check in checks {
            assert!(!check.await.unwrap());
        }
        assert_eq!(users.probe.verifications.load(Ordering::SeqCst), 6);
        assert_eq!(users.probe.most_running.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_first_logins_verify_once() {
        let users = Arc::new(users(&format!("alice:{}\n", slow_hash("a"))));
        let checks: Vec<_> = (0..4)
            .map(|_| {
                let users = users.clone();
                tokio::spawn(async move { users.check(basic("alice", "a").as_deref()).await })
            })
            .collect();
        for check in checks {
            assert!(check.await.unwrap().is_allowed());
        }
        assert_eq!(users.probe.verifications.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_check_given_up_on_keeps_its_turn_until_its_argon2_is_done() {
        let users = Arc::new(users(&format!(
            "alice:{}\n",
            hash_with("a", Params::new(16 * 1024, 8, 1, None).unwrap())
        )));
        let first = {
            let users = users.clone();
            tokio::spawn(async move { users.check(basic("alice", "wrong").as_deref()).await })
        };
        // Bounded: until the first verification has started.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while users.probe.running.load(Ordering::SeqCst) == 0 {
            assert!(std::time::Instant::now() < deadline, "argon2 never started");
            tokio::task::yield_now().await;
        }
        first.abort();
        assert!(
            !users
                .check(basic("alice", "wrong").as_deref())
                .await
                .is_allowed()
        );
        assert_eq!(users.probe.verifications.load(Ordering::SeqCst), 2);
        assert_eq!(users.probe.most_running.load(Ordering::SeqCst), 1);
    }

    #[test]
    #[ignore = "prints what one verification costs here: cargo test --release -p edgecam argon2_cost -- --ignored --nocapture"]
    fn argon2_cost() {
        let hash = PasswordHash::new(&hash_with("password", PARAMS)).unwrap();
        let mut times: Vec<std::time::Duration> = (0..9)
            .map(|_| {
                let started = std::time::Instant::now();
                assert!(
                    Argon2::default()
                        .verify_password(b"password", &hash)
                        .is_ok()
                );
                started.elapsed()
            })
            .collect();
        times.sort_unstable();
        println!(
            "argon2id m={} KiB t={} p={}: one verification takes {:?} (median of 9; fastest {:?})",
            PARAMS.m_cost(),
            PARAMS.t_cost(),
            PARAMS.p_cost(),
            times[4],
            times[0]
        );
    }
}
