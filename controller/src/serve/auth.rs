//! The bearer token that mutating API calls need.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The token, kept as its sha256 so that comparing takes the same time whatever the length
/// or content of what a client sends.
#[derive(Clone)]
pub struct Token([u8; 32]);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// A token from a file or environment variable; surrounding whitespace (a trailing newline)
    /// is not part of it. None if it is empty.
    pub fn new(secret: &str) -> Option<Token> {
        let secret = secret.trim();
        (!secret.is_empty()).then(|| Token(Sha256::digest(secret.as_bytes()).into()))
    }

    /// Whether an `Authorization` header value is `Bearer <this token>`.
    pub fn admits(&self, authorization: Option<&[u8]>) -> bool {
        let Some(value) = authorization else {
            return false;
        };
        let Some(presented) = strip_bearer(value) else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(presented).into();
        bool::from(digest.ct_eq(&self.0))
    }
}

fn strip_bearer(value: &[u8]) -> Option<&[u8]> {
    let scheme = value.get(..7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| value.get(7..))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_only_the_bearer_token() {
        let token = Token::new("s3cret\n").unwrap();
        assert!(token.admits(Some(b"Bearer s3cret")));
        assert!(token.admits(Some(b"bearer s3cret")));
        for (label, header) in [
            ("none", None),
            ("wrong", Some(&b"Bearer s3cret2"[..])),
            ("prefix", Some(&b"Bearer s3cre"[..])),
            ("no scheme", Some(&b"s3cret"[..])),
            ("basic", Some(&b"Basic s3cret"[..])),
            ("empty", Some(&b"Bearer "[..])),
        ] {
            assert!(!token.admits(header), "{label}");
        }
        assert!(Token::new(" \n").is_none());
    }
}
