//! The dashboard: the page at `/`, its assets, and the two read endpoints
//! it needs beyond `/api/status`: `/api/history` (the charts' samples) and
//! `/api/events` (the latest process events).
//!
//! Everything the page needs is compiled into the binary: `index.html`,
//! one script, one stylesheet, an icon, and the vendored uPlot chart
//! library (`vendor/`, MIT, version in `vendor/VERSION`). Fonts are the
//! system's. Every answer carries a `Content-Security-Policy` that allows
//! only this origin, so the page cannot load or send anything elsewhere,
//! even if a job name or an error message carried markup.
//!
//! The page polls rather than listening to Server-Sent Events: it reads
//! `/api/status` once a second like any other client, so it shows exactly
//! what the API says; a poll holds no connection open between updates (the
//! listener's connection cap and stall timeout keep their meaning), picks
//! up a restarted driver by itself, and costs the supervisor at most one
//! status view per coalescing window however many pages are open. The
//! history is fetched once for the jobs charted, then only the samples
//! after the last one the page has.

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::routes::{AppState, St};

/// Only this origin, for everything; no inline script or style.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; font-src 'self'; connect-src 'self'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Jobs one `/api/history` request may ask for.
pub const MAX_JOBS_PER_REQUEST: usize = 64;

const INDEX: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("dashboard.js");
const STYLE: &str = include_str!("dashboard.css");
const ICON: &str = include_str!("icon.svg");
const UPLOT_SCRIPT: &str = include_str!("vendor/uPlot.iife.min.js");
const UPLOT_STYLE: &str = include_str!("vendor/uPlot.min.css");

/// The page, its assets and its endpoints.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| asset("text/html; charset=utf-8", INDEX)))
        .route(
            "/assets/dashboard.js",
            get(|| asset("text/javascript; charset=utf-8", SCRIPT)),
        )
        .route(
            "/assets/dashboard.css",
            get(|| asset("text/css; charset=utf-8", STYLE)),
        )
        .route("/assets/icon.svg", get(|| asset("image/svg+xml", ICON)))
        .route(
            "/assets/uPlot.iife.min.js",
            get(|| asset("text/javascript; charset=utf-8", UPLOT_SCRIPT)),
        )
        .route(
            "/assets/uPlot.min.css",
            get(|| asset("text/css; charset=utf-8", UPLOT_STYLE)),
        )
        .route("/api/history", get(history))
        .route("/api/events", get(events))
}

/// The headers every answer of the page's gets.
pub fn page_headers() -> [(HeaderName, HeaderValue); 4] {
    [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        // A new binary (reload, upgrade) brings a new page.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ]
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (page_headers(), [(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// `?job=A&job=B&after=<epoch seconds>`.
#[derive(Debug, Default, PartialEq)]
struct HistoryQuery {
    jobs: Vec<String>,
    after: Option<f64>,
}

fn parse_history_query(query: &str) -> Result<HistoryQuery, String> {
    let mut parsed = HistoryQuery::default();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "job" => parsed.jobs.push(value.into_owned()),
            "after" => {
                let after = value
                    .parse::<f64>()
                    .ok()
                    .filter(|a| a.is_finite())
                    .ok_or_else(|| format!("after={value} is not a time in epoch seconds"))?;
                parsed.after = Some(after);
            }
            other => return Err(format!("unknown parameter `{other}` (use job and after)")),
        }
    }
    if parsed.jobs.len() > MAX_JOBS_PER_REQUEST {
        return Err(format!("at most {MAX_JOBS_PER_REQUEST} jobs per request"));
    }
    Ok(parsed)
}

/// `GET /api/history?job=A&job=B&after=T`: the samples after `T` (all
/// kept when absent), with the series of the jobs named, and every job's
/// latest rates and percentiles.
async fn history(State(shared): St, RawQuery(query): RawQuery) -> Response {
    let query = match parse_history_query(query.as_deref().unwrap_or("")) {
        Ok(q) => q,
        Err(message) => {
            return (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
        }
    };
    // Copied under the lock, serialized after it.
    let view = shared
        .context
        .history
        .lock()
        .samples
        .view(query.after, &query.jobs);
    Json(view).into_response()
}

/// `GET /api/events?after=N`: the process events numbered above `N`, and
/// `last`, the newest number (smaller than `N` after a restart of the
/// driver, which numbers from 1 again).
async fn events(State(shared): St, RawQuery(query): RawQuery) -> Response {
    let mut after = 0;
    for (key, value) in form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes()) {
        match (&*key, value.parse::<u64>()) {
            ("after", Ok(n)) => after = n,
            _ => {
                let message = "give after=<sequence number>";
                return (StatusCode::BAD_REQUEST, Json(json!({ "error": message })))
                    .into_response();
            }
        }
    }
    let (events, last) = {
        let history = shared.context.history.lock();
        (history.events.after(after), history.events.last_seq())
    };
    Json(json!({ "events": events, "last": last })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_queries() {
        assert_eq!(parse_history_query("").unwrap(), HistoryQuery::default());
        let q = parse_history_query("job=A%3A%3Ab&job=C&after=1700000000.5").unwrap();
        assert_eq!(q.jobs, ["A::b", "C"]);
        assert_eq!(q.after, Some(1_700_000_000.5));
        assert!(parse_history_query("after=soon")
            .unwrap_err()
            .contains("epoch"));
        assert!(parse_history_query("jobs=A")
            .unwrap_err()
            .contains("unknown"));
        let many = vec!["job=x"; MAX_JOBS_PER_REQUEST + 1].join("&");
        assert!(parse_history_query(&many).is_err());
    }

    #[test]
    fn the_policy_allows_only_this_origin() {
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "connect-src 'self'",
        ] {
            assert!(CONTENT_SECURITY_POLICY.contains(directive), "{directive}");
        }
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
        assert!(!CONTENT_SECURITY_POLICY.contains("http"));
    }
}
