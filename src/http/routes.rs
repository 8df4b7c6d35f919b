//! What each path answers. Reads (`/metrics`, `/api/status`, `/healthz`,
//! the dashboard) are open; the write endpoints need the admin token (see
//! [`super::access`]), turn their path and body into a [`Request`] for the
//! command layer, which checks and executes it exactly as for the console,
//! and render its [`Answer`] as JSON: `200` with `{"ok": true}`, or `422`
//! with the console's `ERR` line. Every write is audited with the peer's
//! address: the supervisor logs those it answers, this door those it
//! refuses. `GET /api/access` tells a client (the dashboard) whether its
//! token would be let in, without changing anything.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::coalesce::{Coalesced, WINDOW};
use super::Context;
use crate::command::{self, Answer, Count, ErrorKind, Peer, Request};

/// The largest request body accepted (the write endpoints' JSON is tiny).
pub const MAX_BODY: usize = 16 * 1024;
/// Longest a request may take, body and answer included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Shared {
    pub(super) context: Context,
    status: Coalesced<(StatusCode, Bytes)>,
    metrics: Coalesced<Bytes>,
}

pub type AppState = Arc<Shared>;
pub type St = State<AppState>;

pub fn router(context: Context) -> Router {
    let shared = Arc::new(Shared {
        context,
        status: Coalesced::new(WINDOW),
        metrics: Coalesced::new(WINDOW),
    });
    Router::new()
        .route("/metrics", get(metrics))
        .route("/api/status", get(status))
        .route("/healthz", get(healthz))
        .route("/api/jobs/{job}/processes", post(set_processes))
        .route("/api/jobs/{job}/killall", post(killall))
        .route("/api/processes/{pid}/kill", post(kill))
        .route("/api/reload", post(reload))
        .route("/api/upgrade", post(upgrade))
        .route("/api/access", get(access))
        .merge(super::dashboard::routes())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(with_deadline))
        .with_state(shared)
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such path")
}

async fn with_deadline(request: axum::extract::Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "the request took too long"),
    }
}

async fn metrics(State(shared): St) -> Response {
    let exposition = &shared.context.metrics;
    let changes = shared.context.requests.changes();
    let text = shared
        .metrics
        .get(changes, || async { Bytes::from(exposition.encode()) })
        .await;
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response()
}

async fn status(State(shared): St) -> Response {
    let requests = &shared.context.requests;
    let (code, body) = shared
        .status
        .get(requests.changes(), || async {
            let answer = requests
                .ask(Request::Overview, Peer::Http("status".into()))
                .await;
            match answer {
                Some(Answer::Overview(view)) => (
                    StatusCode::OK,
                    Bytes::from(serde_json::to_vec(&view).unwrap_or_default()),
                ),
                _ => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Bytes::from_static(br#"{"error":"the supervisor is stopping"}"#),
                ),
            }
        })
        .await;
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn healthz(State(shared): St) -> Response {
    if shared.context.lifecycle.is_shutting_down() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else {
        (StatusCode::OK, "ok\n").into_response()
    }
}

/// What a write endpoint was asked: the request, or, for a body that does
/// not make one, the request as far as the path tells it and what is wrong.
type Attempt = Result<Request, (Request, String)>;

/// Checks access, asks the supervisor, renders the answer.
async fn write(
    shared: &Shared,
    headers: &HeaderMap,
    peer: SocketAddr,
    attempt: Attempt,
) -> Response {
    let peer = Peer::Http(peer.to_string());
    let attempted = match &attempt {
        Ok(request) | Err((request, _)) => request,
    };
    if let Err(refusal) = shared.context.access.check(headers).await {
        let answer = Answer::failed(ErrorKind::Unauthorized, refusal.audit_detail());
        command::audit(&peer, attempted, &answer);
        return refusal.into_response();
    }
    let request = match attempt {
        Ok(request) => request,
        Err((request, message)) => {
            command::audit(
                &peer,
                &request,
                &Answer::failed(ErrorKind::InvalidValue, &message),
            );
            return error(StatusCode::BAD_REQUEST, &message);
        }
    };
    let answer = shared.context.requests.ask(request, peer).await;
    match answer {
        Some(Answer::Ok) => Json(json!({ "ok": true })).into_response(),
        Some(Answer::OkWith(changes)) => {
            Json(json!({ "ok": true, "changes": changes })).into_response()
        }
        Some(Answer::Failed { error, details }) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "error": error.line(), "details": details })),
        )
            .into_response(),
        Some(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "unexpected answer"),
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the supervisor is stopping",
        ),
    }
}

/// `GET /api/access`: whether the request's token would be let in, as
/// `{"writes": "open" | "locked" | "disabled"}` (`locked`: a token is
/// needed; `disabled`: none is configured) with the refusal's `error`.
/// Always `200`, so that a page asking does not log a failed request; a
/// wrong token is answered after the same delay as for a write.
async fn access(State(shared): St, headers: HeaderMap) -> Response {
    match shared.context.access.check(&headers).await {
        Ok(()) => Json(json!({ "writes": "open" })).into_response(),
        Err(refusal) => {
            Json(json!({ "writes": refusal.writes(), "error": refusal.message() })).into_response()
        }
    }
}

/// `{"min": n, "max": n}`, either may be absent (or null); an empty body
/// is `{}`. Values are checked by the command layer, like console words.
fn limits(body: &[u8]) -> Result<(Option<Count>, Option<Count>), String> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?
    };
    let Value::Object(fields) = body else {
        return Err(r#"the body must be a JSON object like {"min": 1, "max": 5}"#.into());
    };
    if let Some(key) = fields.keys().find(|k| *k != "min" && *k != "max") {
        return Err(format!("unknown key `{key}`: give min, max or both"));
    }
    let count = |key: &str| {
        fields
            .get(key)
            .filter(|v| !v.is_null())
            .map(Count::from_json)
    };
    Ok((count("min"), count("max")))
}

async fn set_processes(
    State(shared): St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(job): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let attempt = match limits(&body) {
        Ok((min, max)) => Ok(Request::SetLimits { job, min, max }),
        Err(message) => Err((
            Request::SetLimits {
                job,
                min: None,
                max: None,
            },
            message,
        )),
    };
    write(&shared, &headers, peer, attempt).await
}

async fn killall(
    State(shared): St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(job): Path<String>,
    headers: HeaderMap,
) -> Response {
    let request = Request::KillAll { jobs: vec![job] };
    write(&shared, &headers, peer, Ok(request)).await
}

async fn kill(
    State(shared): St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(pid): Path<String>,
    headers: HeaderMap,
) -> Response {
    // A word that is not a PID cannot be ours: the command layer says so.
    let pids = pid.parse().map(|p| vec![p]).unwrap_or_default();
    write(&shared, &headers, peer, Ok(Request::Kill { pids })).await
}

async fn reload(
    State(shared): St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    write(&shared, &headers, peer, Ok(Request::Reload)).await
}

/// Answered once the new binary passed `check` (or was refused); the
/// hand-over itself follows.
async fn upgrade(
    State(shared): St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    write(&shared, &headers, peer, Ok(Request::Upgrade)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_bodies() {
        let v = |n| Some(Count::Valid(n));
        assert_eq!(limits(b"").unwrap(), (None, None));
        assert_eq!(limits(br#"{"min": 2}"#).unwrap(), (v(2), None));
        assert_eq!(limits(br#"{"max": 7, "min": null}"#).unwrap(), (None, v(7)));
        assert_eq!(
            limits(br#"{"min": -1, "max": "x"}"#).unwrap(),
            (Some(Count::Invalid), Some(Count::Invalid))
        );
        assert!(limits(b"[1]").unwrap_err().contains("JSON object"));
        assert!(limits(b"{").unwrap_err().contains("not JSON"));
        assert!(limits(br#"{"minimum": 1}"#)
            .unwrap_err()
            .contains("unknown key `minimum`"));
    }
}
