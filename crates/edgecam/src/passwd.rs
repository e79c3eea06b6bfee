//! `edgecam passwd FILE USER`: adds a user to an auth file, or changes their password, which
//! comes from a prompt on a terminal and from standard input's first line otherwise.

use std::io::{BufRead, IsTerminal};
use std::path::Path;

use anyhow::{Context, Result, bail};
use edgecam::server::auth::{PasswordChange, check_user_name, set_password};
use edgecam_core::http::auth::MAX_CREDENTIALS_LEN;

/// Gives `user` a password in `file`; says what was done, for the user to read.
pub fn run(file: &Path, user: &str) -> Result<String> {
    // Before asking for a password that could not be used.
    check_user_name(user).with_context(|| format!("{user:?} cannot be a user name"))?;
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        prompt(user)?
    } else {
        first_line(stdin.lock())?
    };
    let change = set_password(file, user, &password)
        .with_context(|| format!("cannot set the password of {user}"))?;
    Ok(match change {
        PasswordChange::Added => format!("added user {user} to {}", file.display()),
        PasswordChange::Changed => {
            format!("changed the password of {user} in {}", file.display())
        }
    })
}

/// The password typed twice, without echo, at the terminal.
fn prompt(user: &str) -> Result<String> {
    let read = |prompt: &str| {
        rpassword::prompt_password(prompt).context("cannot read the password from the terminal")
    };
    let password = read(&format!("New password for {user}: "))?;
    if password.is_empty() {
        bail!("the password is empty; nothing was changed");
    }
    if read("The same again: ")? != password {
        bail!("the two passwords differ; nothing was changed");
    }
    Ok(password)
}

/// The first line of `input`, without its line end (`\n` or `\r\n`); the whole of it when it
/// has no line end. Reads no more than a password can be long, and a line end.
fn first_line(input: impl BufRead) -> Result<String> {
    let cap = MAX_CREDENTIALS_LEN + 2;
    let mut bytes = Vec::new();
    input
        .take(cap as u64)
        .read_until(b'\n', &mut bytes)
        .context("cannot read the password from standard input")?;
    let ended = bytes.ends_with(b"\n");
    if ended {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    } else if bytes.len() == cap {
        bail!(
            "the first line of standard input is over {MAX_CREDENTIALS_LEN} bytes, longer than \
             any password HTTP Basic can carry; nothing was changed"
        );
    }
    let password = String::from_utf8(bytes)
        .context("the password on standard input is not UTF-8 text; nothing was changed")?;
    if password.is_empty() {
        bail!(
            "standard input gave no password (its first line is empty); nothing was changed. \
             Pipe one in, as in `printf '%s\\n' \"$PASSWORD\" | edgecam passwd FILE USER`, or \
             run this on a terminal to be asked for it"
        );
    }
    Ok(password)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_first_line_is_the_password_without_its_line_end() {
        let cases: [(&[u8], &str); 5] = [
            (b"secret\n", "secret"),
            (b"secret\r\n", "secret"),
            (b"secret", "secret"),
            (
                b"with spaces and: colons \nsecond line\n",
                "with spaces and: colons ",
            ),
            (b"caf\xC3\xA9\n", "caf\u{e9}"),
        ];
        for (input, password) in cases {
            assert_eq!(first_line(input).unwrap(), password, "{input:?}");
        }
    }

    #[test]
    fn no_password_a_long_one_or_bytes_that_are_not_text_are_refused() {
        for input in [&b""[..], b"\n", b"\r\n", b"\xFF\xFE\n"] {
            let e = first_line(input).unwrap_err();
            assert!(format!("{e:#}").contains("nothing was changed"), "{e:#}");
        }
        let long = vec![b'p'; MAX_CREDENTIALS_LEN + 10];
        let e = first_line(&long[..]).unwrap_err();
        assert!(format!("{e:#}").contains("over 1024 bytes"), "{e:#}");
        // Exactly at the cap with a line end is read (and refused later only if the user
        // name makes it too long).
        let mut at_cap = vec![b'p'; MAX_CREDENTIALS_LEN];
        at_cap.extend_from_slice(b"\r\n");
        assert_eq!(first_line(&at_cap[..]).unwrap().len(), MAX_CREDENTIALS_LEN);
    }
}
