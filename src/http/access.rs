//! Who may use the write endpoints: the HTTP door's half of access control
//! (the console's is [`crate::console::gate`]). The token is the admin
//! token of `admin_token_file`, the same the console's `auth` takes, held
//! in a `watch` channel by the supervisor so that a reload that changes it
//! reaches this door at once.
//!
//! - No token configured: every write answers `403`, saying how to enable
//!   writes.
//! - A token configured: a write needs `Authorization: Bearer <token>`; a
//!   missing or malformed header answers `401` at once, a wrong token
//!   `401` after [`WRONG_TOKEN_DELAY`] (as the console's `auth`), so that
//!   guessing costs a second per guess and connection. Tokens are compared
//!   in constant time ([`AdminToken::matches`]).
//!
//! The routes audit every refusal with the request it refused, as the
//! console's gate does.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tokio::sync::watch;

use crate::access::AdminToken;
pub use crate::console::gate::WRONG_TOKEN_DELAY;

/// How to turn the write endpoints on, for the `403` answer.
pub const HOW_TO_ENABLE: &str = "write endpoints are disabled: set admin_token_file \
    (flag --admin-token-file) in the driver's config, then send Authorization: Bearer <token>";

/// Who may change state over HTTP.
#[derive(Debug, Clone)]
pub struct WriteAccess {
    token: watch::Receiver<Option<AdminToken>>,
}

/// What a request's `Authorization` header amounts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// No token is configured: writes are off.
    Disabled,
    Missing,
    /// Not `Bearer <token>`.
    Malformed,
    WrongToken,
}

/// A write request turned away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub verdict: Verdict,
}

impl WriteAccess {
    pub fn new(token: watch::Receiver<Option<AdminToken>>) -> WriteAccess {
        WriteAccess { token }
    }

    /// Ok when the request may change state; else the refusal, after the
    /// delay a wrong token waits for.
    pub async fn check(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let verdict = {
            let token = self.token.borrow();
            judge(token.as_ref(), headers.get(header::AUTHORIZATION))
        };
        match verdict {
            Verdict::Allowed => Ok(()),
            Verdict::WrongToken => {
                tokio::time::sleep(WRONG_TOKEN_DELAY).await;
                Err(Refusal { verdict })
            }
            _ => Err(Refusal { verdict }),
        }
    }
}

/// Judges an `Authorization` header against the token in force (`None`:
/// none configured). The scheme is case-insensitive, as HTTP's are.
pub fn judge(token: Option<&AdminToken>, authorization: Option<&HeaderValue>) -> Verdict {
    let Some(token) = token else {
        return Verdict::Disabled;
    };
    let Some(value) = authorization else {
        return Verdict::Missing;
    };
    let value = value.as_bytes().trim_ascii();
    let Some((scheme, candidate)) = value.split_at_checked(6) else {
        return Verdict::Malformed;
    };
    let candidate = candidate.trim_ascii_start();
    if !scheme.eq_ignore_ascii_case(b"bearer")
        || candidate.len() == value.len() - 6
        || candidate.is_empty()
    {
        return Verdict::Malformed;
    }
    if token.matches(candidate) {
        Verdict::Allowed
    } else {
        Verdict::WrongToken
    }
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self.verdict {
            Verdict::Disabled => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The `error` of the JSON answer.
    pub fn message(&self) -> &'static str {
        match self.verdict {
            Verdict::Disabled => HOW_TO_ENABLE,
            Verdict::Missing => "unauthorized: send Authorization: Bearer <token>",
            Verdict::Malformed => "unauthorized: the Authorization header must be Bearer <token>",
            Verdict::WrongToken => "unauthorized: wrong token",
            Verdict::Allowed => "",
        }
    }

    /// What the audit line says the request got.
    pub fn audit_detail(&self) -> &'static str {
        match self.verdict {
            Verdict::Disabled => "unauthorized: writes are disabled (no admin_token_file)",
            _ => "unauthorized",
        }
    }

    /// `disabled` (no token configured) or `locked` (a token is needed).
    pub fn writes(&self) -> &'static str {
        match self.verdict {
            Verdict::Disabled => "disabled",
            _ => "locked",
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = Json(json!({ "error": self.message(), "writes": self.writes() }));
        let mut response = (self.status(), body).into_response();
        if self.status() == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"gearman-driver\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> AdminToken {
        AdminToken::new(b"s3cret").unwrap()
    }

    fn judged(header: Option<&str>) -> Verdict {
        let value = header.map(|h| HeaderValue::from_str(h).unwrap());
        judge(Some(&token()), value.as_ref())
    }

    #[test]
    fn bearer_with_the_token_is_allowed() {
        assert_eq!(judged(Some("Bearer s3cret")), Verdict::Allowed);
        assert_eq!(judged(Some("bearer   s3cret ")), Verdict::Allowed);
        assert_eq!(judged(Some("BEARER s3cret")), Verdict::Allowed);
    }

    #[test]
    fn everything_else_is_refused() {
        assert_eq!(judged(None), Verdict::Missing);
        for malformed in [
            "s3cret",
            "Bearer",
            "Bearer ",
            "Basic s3cret",
            "Bearers3cret",
            "",
        ] {
            assert_eq!(judged(Some(malformed)), Verdict::Malformed, "{malformed:?}");
        }
        for wrong in [
            "Bearer s3cre",
            "Bearer s3crett",
            "Bearer S3CRET",
            "Bearer s3cret x",
        ] {
            assert_eq!(judged(Some(wrong)), Verdict::WrongToken, "{wrong:?}");
        }
        let value = HeaderValue::from_static("Bearer s3cret");
        assert_eq!(judge(None, Some(&value)), Verdict::Disabled);
        assert_eq!(judge(None, None), Verdict::Disabled);
    }

    #[test]
    fn refusals_answer_403_or_401() {
        let r = |verdict| Refusal { verdict };
        assert_eq!(r(Verdict::Disabled).status(), StatusCode::FORBIDDEN);
        assert!(r(Verdict::Disabled).message().contains("admin_token_file"));
        for v in [Verdict::Missing, Verdict::Malformed, Verdict::WrongToken] {
            assert_eq!(r(v).status(), StatusCode::UNAUTHORIZED);
            let response = r(v).into_response();
            assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
        }
    }
}
