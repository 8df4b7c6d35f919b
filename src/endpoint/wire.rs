//! driveshaft's wire format, both ways, as pure functions: a Gearman job to
//! a request body, and an HTTP answer to the job's outcome.
//!
//! Request: the four fields `function_name`, `job_handle`, `unique` and
//! `workload`, as a JSON object (driveshaft's README) or as
//! `multipart/form-data` (what driveshaft's code posts). JSON cannot carry
//! bytes, so a workload that is not UTF-8 travels as `workload_base64`.
//!
//! Response: a 2xx with `{"gearman_ret": 0, "response_string": "..."}`
//! (or `response_base64`) completes the job; anything else fails it with a
//! message saying what came back.

use base64::Engine;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

use crate::config::RequestFormat;

/// How much of a body an error message quotes.
const QUOTE_MAX: usize = 200;

/// One Gearman job, as gearmand assigned it.
#[derive(Debug, Clone, Copy)]
pub struct JobFields<'a> {
    pub function_name: &'a [u8],
    pub job_handle: &'a [u8],
    pub unique: &'a [u8],
    pub workload: &'a [u8],
}

/// A request body and its `Content-Type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    pub content_type: String,
    pub bytes: Bytes,
}

/// What the endpoint's answer means for the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// WORK_COMPLETE with this result.
    Done(Bytes),
    /// WORK_FAIL; the message goes to the client (as WORK_WARNING) and to
    /// the console's last-error column.
    Failed(String),
}

pub fn encode(job: &JobFields, format: RequestFormat) -> Body {
    match format {
        RequestFormat::Json => encode_json(job),
        RequestFormat::Form => encode_form(job),
    }
}

/// driveshaft's request object; borrowed, as it is made once per job.
#[derive(Serialize)]
struct JsonJob<'a> {
    function_name: Cow<'a, str>,
    job_handle: Cow<'a, str>,
    unique: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    workload: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    workload_base64: Option<String>,
}

fn encode_json(job: &JobFields) -> Body {
    let (workload, workload_base64) = match std::str::from_utf8(job.workload) {
        Ok(text) => (Some(text), None),
        Err(_) => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(job.workload)),
        ),
    };
    let object = JsonJob {
        function_name: String::from_utf8_lossy(job.function_name),
        job_handle: String::from_utf8_lossy(job.job_handle),
        unique: String::from_utf8_lossy(job.unique),
        workload,
        workload_base64,
    };
    Body {
        content_type: "application/json".into(),
        bytes: serde_json::to_vec(&object)
            .expect("strings always serialize")
            .into(),
    }
}

/// `multipart/form-data`: the workload goes as raw bytes, so no field needs
/// an encoding of its own.
fn encode_form(job: &JobFields) -> Body {
    let fields: [(&str, &[u8]); 4] = [
        ("function_name", job.function_name),
        ("job_handle", job.job_handle),
        ("unique", job.unique),
        ("workload", job.workload),
    ];
    let boundary = boundary_for(&fields);
    let mut bytes = Vec::with_capacity(job.workload.len() + 512);
    for (name, value) in fields {
        bytes.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        bytes.extend_from_slice(
            format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
        );
        bytes.extend_from_slice(value);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Body {
        content_type: format!("multipart/form-data; boundary={boundary}"),
        bytes: bytes.into(),
    }
}

/// A boundary that occurs in none of the values.
fn boundary_for(fields: &[(&str, &[u8])]) -> String {
    (0u64..)
        .map(|n| format!("gearman-driver-{n:016x}"))
        .find(|b| !fields.iter().any(|(_, v)| contains(v, b.as_bytes())))
        .expect("some boundary is free")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[derive(Deserialize)]
struct Reply {
    gearman_ret: Option<serde_json::Value>,
    response_string: Option<serde_json::Value>,
    response_base64: Option<serde_json::Value>,
}

/// The outcome of an answer with this status and body.
pub fn interpret(status: u16, body: &[u8]) -> Outcome {
    if !(200..300).contains(&status) {
        return Outcome::Failed(format!("HTTP {status}: {}", quote(body)));
    }
    match parse_reply(body) {
        Ok(outcome) => outcome,
        Err(why) => Outcome::Failed(format!("bad response: {why}; body: {}", quote(body))),
    }
}

fn parse_reply(body: &[u8]) -> Result<Outcome, String> {
    let reply: Reply = serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => "not a JSON object".to_string(),
        _ => format!("not JSON ({e})"),
    })?;
    let ret = match reply.gearman_ret {
        None => return Err("no gearman_ret".into()),
        Some(v) => v
            .as_u64()
            .ok_or_else(|| format!("gearman_ret {v} is not a non-negative integer"))?,
    };
    let result = match (reply.response_base64, reply.response_string) {
        (Some(serde_json::Value::String(b64)), _) => base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map(Bytes::from)
            .map_err(|e| format!("response_base64 is not base64 ({e})"))?,
        (Some(_), _) => return Err("response_base64 is not a string".into()),
        (None, Some(serde_json::Value::String(s))) => Bytes::from(s),
        (None, Some(_)) => return Err("response_string is not a string".into()),
        (None, None) => return Err("no response_string".into()),
    };
    if ret == 0 {
        return Ok(Outcome::Done(result));
    }
    let message = String::from_utf8_lossy(&result).trim().to_string();
    Ok(Outcome::Failed(if message.is_empty() {
        format!("gearman_ret {ret}")
    } else {
        message
    }))
}

/// The start of a body, on one line, for an error message.
pub fn quote(body: &[u8]) -> String {
    let cut = &body[..body.len().min(QUOTE_MAX)];
    let text = String::from_utf8_lossy(cut);
    let mut line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if body.len() > QUOTE_MAX {
        line.push_str("...");
    }
    if line.is_empty() {
        line.push_str("(empty)");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job<'a>(workload: &'a [u8]) -> JobFields<'a> {
        JobFields {
            function_name: b"Sum",
            job_handle: b"H:localhost:6",
            unique: b"57a7b604-659a-11e5-9442-04013e647701",
            workload,
        }
    }

    #[test]
    fn json_request_is_driveshafts() {
        let body = encode(&job(b"[1,2]"), RequestFormat::Json);
        assert_eq!(body.content_type, "application/json");
        let v: serde_json::Value = serde_json::from_slice(&body.bytes).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "function_name": "Sum",
                "job_handle": "H:localhost:6",
                "unique": "57a7b604-659a-11e5-9442-04013e647701",
                "workload": "[1,2]",
            })
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_go_as_base64() {
        let body = encode(&job(b"\xff\x00ab"), RequestFormat::Json);
        let v: serde_json::Value = serde_json::from_slice(&body.bytes).unwrap();
        assert_eq!(v["workload_base64"], "/wBhYg==");
        assert!(v.get("workload").is_none());
    }

    #[test]
    fn form_request_carries_raw_bytes_and_a_boundary_not_in_them() {
        let tricky = b"x--gearman-driver-0000000000000000y\xff";
        let body = encode(&job(tricky), RequestFormat::Form);
        let boundary = body
            .content_type
            .strip_prefix("multipart/form-data; boundary=")
            .unwrap();
        assert_eq!(boundary, "gearman-driver-0000000000000001");
        let sep = format!("--{boundary}\r\n");
        let parts: Vec<&[u8]> = split(&body.bytes, sep.as_bytes());
        assert_eq!(parts.len(), 5, "preamble and four fields");
        let last = parts[4];
        let expected: Vec<u8> = [
            &b"Content-Disposition: form-data; name=\"workload\"\r\n\r\n"[..],
            tricky,
            format!("\r\n--{boundary}--\r\n").as_bytes(),
        ]
        .concat();
        assert_eq!(last, &expected[..]);
    }

    fn split<'a>(mut hay: &'a [u8], sep: &[u8]) -> Vec<&'a [u8]> {
        let mut out = Vec::new();
        while let Some(i) = hay.windows(sep.len()).position(|w| w == sep) {
            out.push(&hay[..i]);
            hay = &hay[i + sep.len()..];
        }
        out.push(hay);
        out
    }

    #[test]
    fn answers_map_to_outcomes() {
        let cases: &[(u16, &str, Outcome)] = &[
            (
                200,
                r#"{"gearman_ret": 0, "response_string": "3"}"#,
                Outcome::Done(Bytes::from("3")),
            ),
            (
                201,
                r#"{"gearman_ret": 0, "response_base64": "/wA="}"#,
                Outcome::Done(Bytes::from_static(b"\xff\x00")),
            ),
            (
                200,
                r#"{"gearman_ret": 25, "response_string": "no such shop"}"#,
                Outcome::Failed("no such shop".into()),
            ),
            (
                200,
                r#"{"gearman_ret": 25, "response_string": ""}"#,
                Outcome::Failed("gearman_ret 25".into()),
            ),
            (
                500,
                "<h1>Internal\n  Server Error</h1>",
                Outcome::Failed("HTTP 500: <h1>Internal Server Error</h1>".into()),
            ),
            (404, "", Outcome::Failed("HTTP 404: (empty)".into())),
        ];
        for (status, body, expected) in cases {
            assert_eq!(&interpret(*status, body.as_bytes()), expected, "{body}");
        }
    }

    #[test]
    fn malformed_answers_are_bad_responses_that_say_why() {
        let cases = [
            ("garbage", "bad response: not JSON"),
            ("[1,2]", "bad response: not a JSON object"),
            (
                r#"{"response_string": "x"}"#,
                "bad response: no gearman_ret",
            ),
            (
                r#"{"gearman_ret": -1, "response_string": "x"}"#,
                "bad response: gearman_ret -1 is not a non-negative integer",
            ),
            (
                r#"{"gearman_ret": 0, "response_string": 3}"#,
                "bad response: response_string is not a string",
            ),
            (r#"{"gearman_ret": 0}"#, "bad response: no response_string"),
            (
                r#"{"gearman_ret": 0, "response_base64": "%%"}"#,
                "bad response: response_base64 is not base64",
            ),
        ];
        for (body, start) in cases {
            match interpret(200, body.as_bytes()) {
                Outcome::Failed(m) => {
                    assert!(m.starts_with(start), "{body}: {m}");
                    assert!(m.ends_with(&quote(body.as_bytes())), "{m}");
                }
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn quotes_are_cut_and_on_one_line() {
        let long = "a ".repeat(300);
        let q = quote(long.as_bytes());
        assert!(q.ends_with("..."));
        assert!(q.len() <= QUOTE_MAX + 3);
        assert!(!quote(b"a\nb").contains('\n'));
    }
}
