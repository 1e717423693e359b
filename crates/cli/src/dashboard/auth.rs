//! The admin token that unlocks the dashboard's control actions: read once at start
//! from `--admin-token-file` or `SHARDMESH_DASHBOARD_TOKEN`, compared in constant time,
//! and never printed (its `Debug` hides it, so neither a log line nor a panic message
//! can carry it).

use std::fmt;
use std::path::Path;

use anyhow::Context as _;
use axum::http::{HeaderMap, StatusCode, header};

/// The variable that gives the token when no file does.
pub const TOKEN_ENV: &str = "SHARDMESH_DASHBOARD_TOKEN";

/// What a request without a configured token is told.
pub const DISABLED: &str =
    "control actions are disabled: start the dashboard with --admin-token-file";

/// The configured admin token.
pub struct AdminToken(String);

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(hidden)")
    }
}

impl AdminToken {
    /// The token from `file` (its content, surrounding whitespace removed), else from
    /// [`TOKEN_ENV`]; none when neither is given, which leaves the dashboard read-only.
    ///
    /// # Errors
    ///
    /// An unreadable file, or an empty token: an empty one would unlock the actions for
    /// anyone, so it is refused rather than taken as "no token".
    pub fn load(file: Option<&Path>) -> anyhow::Result<Option<Self>> {
        if let Some(file) = file {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("--admin-token-file {}", file.display()))?;
            return Self::new(&text)
                .with_context(|| format!("--admin-token-file {} holds no token", file.display()))
                .map(Some);
        }
        match std::env::var(TOKEN_ENV) {
            Ok(text) => Self::new(&text)
                .with_context(|| format!("{TOKEN_ENV} is set but holds no token"))
                .map(Some),
            Err(_) => Ok(None),
        }
    }

    fn new(text: &str) -> Option<Self> {
        let token = text.trim();
        (!token.is_empty()).then(|| Self(token.to_owned()))
    }

    /// Whether `presented` is the token. Every byte is compared whatever the first
    /// difference, so the time taken tells nothing about how much of a guess was right.
    fn matches(&self, presented: &str) -> bool {
        let (expected, presented) = (self.0.as_bytes(), presented.as_bytes());
        let differing = expected
            .iter()
            .zip(presented)
            .fold(0_u8, |acc, (a, b)| acc | (a ^ b));
        differing == 0 && expected.len() == presented.len()
    }
}

/// Why a control request is turned away: the status and the message for its JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// 403 without a configured token, 401 without the right bearer.
    pub status: StatusCode,
    /// What to do about it.
    pub message: &'static str,
}

/// Checks a control request's `Authorization: Bearer <token>` against `token`.
///
/// # Errors
///
/// The [`Refusal`] to answer with.
pub fn authorize(token: Option<&AdminToken>, headers: &HeaderMap) -> Result<(), Refusal> {
    let Some(token) = token else {
        return Err(Refusal {
            status: StatusCode::FORBIDDEN,
            message: DISABLED,
        });
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        None => Err(Refusal {
            status: StatusCode::UNAUTHORIZED,
            message: "this action needs the admin token: send `Authorization: Bearer <token>`",
        }),
        Some(presented) if token.matches(presented) => Ok(()),
        Some(_) => Err(Refusal {
            status: StatusCode::UNAUTHORIZED,
            message: "wrong admin token: use the one in the dashboard's --admin-token-file",
        }),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn bearer(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(value).expect("a header value"),
        );
        headers
    }

    #[test]
    fn only_the_configured_token_passes() {
        let token = AdminToken::new(" s3cret\n").expect("a token");
        assert_eq!(authorize(Some(&token), &bearer("Bearer s3cret")), Ok(()));
        for wrong in ["Bearer s3cre", "Bearer s3cret2", "Bearer ", "Basic s3cret"] {
            let refusal = authorize(Some(&token), &bearer(wrong)).expect_err(wrong);
            assert_eq!(refusal.status, StatusCode::UNAUTHORIZED, "{wrong}");
        }
        let missing = authorize(Some(&token), &HeaderMap::new()).expect_err("no header");
        assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
        assert!(missing.message.contains("Authorization: Bearer"));
    }

    #[test]
    fn without_a_token_actions_are_forbidden_and_an_empty_one_is_refused() {
        let refusal = authorize(None, &bearer("Bearer anything")).expect_err("disabled");
        assert_eq!(refusal.status, StatusCode::FORBIDDEN);
        assert_eq!(refusal.message, DISABLED);
        assert!(AdminToken::new(" \n").is_none());
        let file = tempfile::NamedTempFile::new().expect("a temp file");
        let error = AdminToken::load(Some(file.path())).expect_err("empty file");
        assert!(format!("{error:#}").contains("holds no token"), "{error:#}");
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let token = AdminToken::new("s3cret").expect("a token");
        assert!(!format!("{token:?}").contains("s3cret"));
    }
}
