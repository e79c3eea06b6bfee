//! HTTP Basic credentials (RFC 7617): the `Authorization` header's `Basic <base64>` value read
//! into a user name and a password, and written from them. Whether they are right is the
//! server's business (its users file); this only reads what a peer sent, and never panics on it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use thiserror::Error;

/// The longest credentials taken, `user:password` decoded, in bytes. Far more than any real
/// user name and password, and far less than the 8 KiB request head that carries them, so a
/// peer cannot make the server decode (or hash) much.
pub const MAX_CREDENTIALS_LEN: usize = 1024;

/// The longest base64 text that [`MAX_CREDENTIALS_LEN`] bytes encode to (with padding).
const MAX_ENCODED_LEN: usize = MAX_CREDENTIALS_LEN.div_ceil(3) * 4;

/// A user name and password as a client sent them. `Debug` leaves the password out, so a
/// logged value does not carry it.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// What came before the first `:`.
    pub user: String,
    /// Everything after it, colons included.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// Why an `Authorization` value is not Basic credentials one can check. For the server's log:
/// the client is answered the same `401` whatever the reason.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum BasicError {
    #[error("the Authorization header is not HTTP Basic (another scheme, or none)")]
    NotBasic,
    #[error("the Authorization header says Basic but carries no credentials")]
    Empty,
    #[error("the Basic credentials are over {MAX_CREDENTIALS_LEN} bytes")]
    TooLong,
    #[error("the Basic credentials are not base64 (standard alphabet, with padding)")]
    BadBase64(#[source] base64::DecodeError),
    #[error("the Basic credentials are not UTF-8 text")]
    NotUtf8,
    #[error("the Basic credentials have no `:` between the user name and the password")]
    NoColon,
}

/// Reads an `Authorization` header's value: `Basic` (any case), spaces, and the base64 of
/// `user:password` (standard alphabet, padded), as RFC 7617 has it, with UTF-8 text (the
/// `charset="UTF-8"` that [`super::response::unauthorized`] asks for). The user name is what
/// comes before the first `:`, so it holds none; it may be empty, and so may the password.
pub fn parse_basic(value: &str) -> Result<Credentials, BasicError> {
    const SPACE: [char; 2] = [' ', '\t'];
    let value = value.trim_matches(SPACE);
    let (scheme, token) = value.split_once(SPACE).unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(BasicError::NotBasic);
    }
    let token = token.trim_start_matches(SPACE);
    if token.is_empty() {
        return Err(BasicError::Empty);
    }
    // Checked before decoding: nothing larger than the cap is ever allocated.
    if token.len() > MAX_ENCODED_LEN {
        return Err(BasicError::TooLong);
    }
    let bytes = STANDARD.decode(token).map_err(BasicError::BadBase64)?;
    if bytes.len() > MAX_CREDENTIALS_LEN {
        return Err(BasicError::TooLong);
    }
    let text = String::from_utf8(bytes).map_err(|_| BasicError::NotUtf8)?;
    let (user, password) = text.split_once(':').ok_or(BasicError::NoColon)?;
    Ok(Credentials {
        user: user.to_owned(),
        password: password.to_owned(),
    })
}

/// The `Authorization` header value that sends `user` and `password` with Basic: what
/// [`parse_basic`] reads back, as long as `user` holds no `:` (RFC 7617 allows none there).
pub fn encode_basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn credentials(user: &str, password: &str) -> Credentials {
        Credentials {
            user: user.to_owned(),
            password: password.to_owned(),
        }
    }

    #[test]
    fn reads_the_rfc_example() {
        assert_eq!(
            parse_basic("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
            Ok(credentials("Aladdin", "open sesame"))
        );
    }

    #[test]
    fn the_scheme_is_any_case_and_spaces_around_do_not_matter() {
        for value in [
            "basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
            "BASIC QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
            "  bAsIc \t QWxhZGRpbjpvcGVuIHNlc2FtZQ==  ",
        ] {
            assert_eq!(
                parse_basic(value),
                Ok(credentials("Aladdin", "open sesame")),
                "{value:?}"
            );
        }
    }

    #[test]
    fn the_user_ends_at_the_first_colon() {
        // "user:pa:ss:"
        assert_eq!(
            parse_basic("Basic dXNlcjpwYTpzczo="),
            Ok(credentials("user", "pa:ss:"))
        );
        // ":" alone: both empty.
        assert_eq!(parse_basic("Basic Og=="), Ok(credentials("", "")));
    }

    #[test]
    fn what_is_not_basic_credentials_is_named() {
        let cases: [(&str, BasicError); 7] = [
            ("Bearer abc.def", BasicError::NotBasic),
            ("", BasicError::NotBasic),
            ("BasicQWxhZGRpbjpvcGVuIHNlc2FtZQ==", BasicError::NotBasic),
            ("Basic", BasicError::Empty),
            ("Basic    ", BasicError::Empty),
            // "nocolon"
            ("Basic bm9jb2xvbg==", BasicError::NoColon),
            // 0xFF 0x3A ("\xFF:")
            ("Basic /zo=", BasicError::NotUtf8),
        ];
        for (value, error) in cases {
            assert_eq!(parse_basic(value), Err(error), "{value:?}");
        }
        for value in [
            // No padding, a space inside, another alphabet, junk.
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ",
            "Basic QWxh ZGRpbjpvcGVuIHNlc2FtZQ==",
            "Basic -_-_",
            "Basic !!!!",
        ] {
            assert!(
                matches!(parse_basic(value), Err(BasicError::BadBase64(_))),
                "{value:?}: {:?}",
                parse_basic(value)
            );
        }
    }

    #[test]
    fn credentials_over_the_cap_are_refused_and_those_at_it_taken() {
        let at_cap = "p".repeat(MAX_CREDENTIALS_LEN - 2);
        assert_eq!(
            parse_basic(&encode_basic("u", &at_cap)),
            Ok(credentials("u", &at_cap))
        );
        let over = "p".repeat(MAX_CREDENTIALS_LEN - 1);
        assert_eq!(
            parse_basic(&encode_basic("u", &over)),
            Err(BasicError::TooLong)
        );
        // Far too long is refused before it is decoded, valid base64 or not.
        let huge = format!("Basic {}", "A".repeat(100_000));
        assert_eq!(parse_basic(&huge), Err(BasicError::TooLong));
    }

    #[test]
    fn debug_leaves_the_password_out() {
        let text = format!("{:?}", credentials("alice", "hunter2"));
        assert!(text.contains("alice"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    proptest! {
        #[test]
        fn encode_then_parse_gives_the_same_credentials(
            user in "[^:]{0,40}",
            password in ".{0,60}",
        ) {
            let value = encode_basic(&user, &password);
            prop_assert_eq!(parse_basic(&value), Ok(credentials(&user, &password)));
        }

        #[test]
        fn the_scheme_may_come_in_any_case(
            upper in proptest::collection::vec(any::<bool>(), 5),
            user in "[a-z]{1,8}",
            password in "[ -~]{0,16}",
        ) {
            let scheme: String = "basic"
                .chars()
                .zip(&upper)
                .map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c })
                .collect();
            let value = encode_basic(&user, &password).replacen("Basic", &scheme, 1);
            prop_assert_eq!(parse_basic(&value), Ok(credentials(&user, &password)));
        }

        #[test]
        fn any_text_is_read_or_refused_without_panicking(value in any::<String>()) {
            let _ = parse_basic(&value);
        }

        #[test]
        fn any_decoded_bytes_are_read_back_exactly_or_refused(
            bytes in proptest::collection::vec(any::<u8>(), 0..(MAX_CREDENTIALS_LEN + 64)),
        ) {
            let value = format!("Basic {}", STANDARD.encode(&bytes));
            match parse_basic(&value) {
                Ok(c) => {
                    prop_assert!(!c.user.contains(':'));
                    prop_assert_eq!(format!("{}:{}", c.user, c.password).into_bytes(), bytes);
                }
                Err(BasicError::TooLong) => prop_assert!(bytes.len() > MAX_CREDENTIALS_LEN),
                Err(BasicError::NotUtf8) => prop_assert!(std::str::from_utf8(&bytes).is_err()),
                Err(BasicError::NoColon) => prop_assert!(!bytes.contains(&b':')),
                Err(BasicError::Empty) => prop_assert!(bytes.is_empty()),
                Err(e) => prop_assert!(false, "unexpected {e:?}"),
            }
        }
    }
}
