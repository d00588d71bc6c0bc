//! The API's bearer token: read from a file at start (`--api-token-file`), asked of every request
//! but `GET /healthz` and the dashboard page, compared in constant time, and sent by this node
//! to its peers (forwarded jobs and their long polls), since every node of a cluster shares it.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use subtle::ConstantTimeEq;

/// The shortest token accepted: 16 characters (e.g. 8 random bytes in hex; 32 are better).
pub const MIN_TOKEN_LEN: usize = 16;
/// The longest token accepted.
pub const MAX_TOKEN_LEN: usize = 4096;

/// The shared secret of a cluster's API. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(Arc<str>);

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

impl ApiToken {
    /// A token from its text: [`MIN_TOKEN_LEN`] to [`MAX_TOKEN_LEN`] visible ASCII characters
    /// (it travels in an HTTP header).
    pub fn new(text: &str) -> Result<ApiToken, String> {
        if text.is_empty() {
            return Err("the token is empty".into());
        }
        if text.len() < MIN_TOKEN_LEN || text.len() > MAX_TOKEN_LEN {
            return Err(format!(
                "the token is {} characters; it must be {MIN_TOKEN_LEN} to {MAX_TOKEN_LEN} \
                 (e.g. `openssl rand -hex 32`)",
                text.len()
            ));
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(
                "the token must be visible ASCII characters only (no spaces or controls)".into(),
            );
        }
        Ok(ApiToken(text.into()))
    }

    /// The token in the file at `path`: its content with surrounding white space trimmed.
    pub fn from_file(path: &str) -> Result<ApiToken, String> {
        let text = std::fs::read_to_string(Path::new(path))
            .map_err(|e| format!("cannot read the token file {path}: {e}"))?;
        ApiToken::new(text.trim()).map_err(|e| format!("{path}: {e}"))
    }

    /// The `Authorization` header carrying this token.
    pub fn header_value(&self) -> HeaderValue {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", self.0))
            .expect("a checked token is a valid header value");
        value.set_sensitive(true);
        value
    }

    /// Whether `headers` carry this token: exactly one `Authorization: Bearer <token>`. The
    /// token is compared in constant time (its length is not secret; it leaks by timing only
    /// through the comparison of lengths).
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return false;
        };
        let value = value.as_bytes();
        // The scheme is case-insensitive (RFC 9110), followed by one space.
        let Some((scheme, given)) = value.split_first_chunk::<7>() else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case(b"Bearer ") {
            return false;
        }
        given.ct_eq(self.0.as_bytes()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef-token";

    fn with(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        headers
    }

    #[test]
    fn only_the_exact_bearer_token_is_admitted() {
        let token = ApiToken::new(TOKEN).unwrap();
        assert!(token.admits(&with(&[&format!("Bearer {TOKEN}")])));
        assert!(token.admits(&with(&[&format!("bearer {TOKEN}")])));
        assert!(token.admits(&token_headers(&token)));
        for bad in [
            vec![],
            vec!["Bearer"],
            vec!["Bearer "],
            vec!["Basic 0123456789abcdef-token"],
            vec!["Bearer 0123456789abcdef-toke"],
            vec!["Bearer 0123456789abcdef-tokenX"],
            vec!["Bearer  0123456789abcdef-token"],
            vec!["0123456789abcdef-token"],
        ] {
            assert!(!token.admits(&with(&bad)), "{bad:?}");
        }
        let twice = format!("Bearer {TOKEN}");
        assert!(!token.admits(&with(&[&twice, &twice])), "given twice");
    }

    fn token_headers(token: &ApiToken) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, token.header_value());
        headers
    }

    #[test]
    fn tokens_are_checked_and_never_shown() {
        assert!(ApiToken::new("").is_err());
        assert!(ApiToken::new("short").is_err());
        assert!(ApiToken::new("0123456789abcdef ghi").is_err());
        assert!(ApiToken::new(&"x".repeat(MAX_TOKEN_LEN + 1)).is_err());
        let token = ApiToken::new(TOKEN).unwrap();
        assert!(!format!("{token:?}").contains("abcdef"));
    }

    #[test]
    fn a_token_file_is_trimmed_and_must_hold_a_token() {
        let dir = std::env::temp_dir().join(format!("hearsay-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good");
        std::fs::write(&good, format!("  {TOKEN}\n")).unwrap();
        assert_eq!(
            ApiToken::from_file(good.to_str().unwrap()).unwrap(),
            ApiToken::new(TOKEN).unwrap()
        );
        let empty = dir.join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let e = ApiToken::from_file(empty.to_str().unwrap()).unwrap_err();
        assert!(e.contains("empty"), "{e}");
        let e = ApiToken::from_file(dir.join("missing").to_str().unwrap()).unwrap_err();
        assert!(e.contains("cannot read"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
