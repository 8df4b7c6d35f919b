//! Worker files with `protocol = "http"` (driveshaft's endpoints): the keys
//! only they take (`url`, `headers`, `request_format`), the keys that make no
//! sense without a process and are errors there (`command`, `max_rss`,
//! `start_timeout`, `stop_signal`, and the isolation keys `user`, `group`,
//! `umask`, `rlimits`), and the endpoint such a file declares.
//!
//! Kept apart from the general worker-file checks so that the rules of one
//! protocol read in one place.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::error::{ConfigError, ConfigErrors};
use super::worker_file::{Protocol, WorkerFile};

/// How a job travels in the request body.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum RequestFormat {
    /// A JSON object, as driveshaft's README shows it (the default).
    #[default]
    Json,
    /// `multipart/form-data` with the same four fields, as driveshaft's code
    /// posts them: endpoints written for driveshaft read `$_POST`.
    Form,
}

impl RequestFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestFormat::Json => "json",
            RequestFormat::Form => "form",
        }
    }
}

/// Where an `http` job's slots send their jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpEndpoint {
    /// An `http://` or `https://` URL, checked to parse.
    pub url: String,
    /// Sent with every request, after the driver's own `Content-Type`
    /// (so a worker file may replace it).
    pub headers: Vec<(String, String)>,
    pub format: RequestFormat,
}

/// The per-job keys an `http` worker file must not set, with their spans:
/// a second, lenient reading of the file (the strict one has no spans for
/// them).
#[derive(Deserialize, Default)]
struct ProcessOnlyKeys {
    #[serde(default)]
    defaults: AttrSpans,
    #[serde(default)]
    overrides: AttrSpans,
    #[serde(default)]
    jobs: BTreeMap<String, AttrSpans>,
}

#[derive(Deserialize, Default)]
struct AttrSpans {
    max_rss: Option<Spanned<toml::Value>>,
    start_timeout: Option<Spanned<toml::Value>>,
}

/// Checks the protocol-specific keys of a worker file. Returns the endpoint
/// of a valid `http` file; `None` for other protocols or on errors (which
/// are pushed to `errors`, each with file, key and line).
pub fn check(
    wf: &WorkerFile,
    path: &Path,
    source: &str,
    errors: &mut ConfigErrors,
) -> Option<HttpEndpoint> {
    let err_at = |key: &str, offset: usize, msg: String| {
        ConfigError::new(msg)
            .in_file(path)
            .at_key(key)
            .at_offset(source, offset)
    };
    if wf.protocol != Protocol::Http {
        let http_only = [
            ("url", wf.url.as_ref().map(|u| u.span().start)),
            ("headers", wf.headers.as_ref().map(|h| h.span().start)),
            (
                "request_format",
                wf.request_format.as_ref().map(|f| f.span().start),
            ),
        ];
        for (key, offset) in http_only {
            if let Some(offset) = offset {
                errors.push(err_at(
                    key,
                    offset,
                    format!("`{key}` applies only to protocol = \"http\""),
                ));
            }
        }
        if wf.command.is_none() {
            errors.push(
                ConfigError::new(format!(
                    "`command` is required for protocol = \"{}\"",
                    wf.protocol.as_str()
                ))
                .in_file(path)
                .at_key("command"),
            );
        }
        return None;
    }

    let before = errors.0.len();
    if let Some(command) = &wf.command {
        errors.push(err_at(
            "command",
            command.span().start,
            "`command` does not apply to protocol = \"http\": the endpoint at `url` runs the jobs"
                .into(),
        ));
    }
    check_process_only_keys(path, source, errors);
    let isolation = [
        (
            "stop_signal",
            wf.stop_signal.as_ref().map(|v| v.span().start),
        ),
        ("user", wf.user.as_ref().map(|v| v.span().start)),
        ("group", wf.group.as_ref().map(|v| v.span().start)),
        ("umask", wf.umask.as_ref().map(|v| v.span().start)),
        ("rlimits", wf.rlimits.values().map(|v| v.span().start).min()),
    ];
    for (key, offset) in isolation {
        if let Some(offset) = offset {
            errors.push(err_at(
                key,
                offset,
                format!("`{key}` does not apply to protocol = \"http\": there is no process"),
            ));
        }
    }
    let url = match &wf.url {
        None => {
            errors.push(
                ConfigError::new("protocol = \"http\" needs `url`, the endpoint to POST jobs to")
                    .in_file(path)
                    .at_key("url"),
            );
            None
        }
        Some(url) => match check_url(url.get_ref()) {
            Ok(()) => Some(url.get_ref().clone()),
            Err(msg) => {
                errors.push(err_at("url", url.span().start, msg));
                None
            }
        },
    };
    let mut headers = Vec::new();
    if let Some(declared) = &wf.headers {
        for (name, value) in declared.get_ref() {
            match check_header(name, value) {
                Ok(()) => headers.push((name.clone(), value.clone())),
                Err(msg) => errors.push(err_at(
                    &format!("headers.{name}"),
                    declared.span().start,
                    msg,
                )),
            }
        }
    }
    let format = wf
        .request_format
        .as_ref()
        .map(|f| *f.get_ref())
        .unwrap_or_default();
    if errors.0.len() > before {
        return None;
    }
    Some(HttpEndpoint {
        url: url?,
        headers,
        format,
    })
}

/// `max_rss` and `start_timeout` wherever a job's attributes may stand.
fn check_process_only_keys(path: &Path, source: &str, errors: &mut ConfigErrors) {
    // The strict reading succeeded, so this lenient one does too.
    let Ok(keys) = toml::from_str::<ProcessOnlyKeys>(source) else {
        return;
    };
    let tables = [
        ("defaults".to_string(), &keys.defaults),
        ("overrides".to_string(), &keys.overrides),
    ]
    .into_iter()
    .chain(keys.jobs.iter().map(|(k, a)| (format!("jobs.{k}"), a)));
    for (table, attrs) in tables {
        let set = [
            (
                "max_rss",
                attrs.max_rss.as_ref(),
                "there is no process to measure",
            ),
            (
                "start_timeout",
                attrs.start_timeout.as_ref(),
                "a slot starts at once",
            ),
        ];
        for (key, value, why) in set {
            if let Some(value) = value {
                errors.push(
                    ConfigError::new(format!(
                        "`{key}` does not apply to protocol = \"http\" ({why})"
                    ))
                    .in_file(path)
                    .at_key(format!("{table}.{key}"))
                    .at_offset(source, value.span().start),
                );
            }
        }
    }
}

fn check_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(format!("`{url}` must start with http:// or https://")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("`{url}` names no host"));
    }
    Ok(())
}

fn check_header(name: &str, value: &str) -> Result<(), String> {
    http::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("`{name}` is not a valid HTTP header name"))?;
    http::HeaderValue::from_str(value).map_err(|_| {
        format!("the value of header `{name}` holds characters HTTP does not allow")
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(source: &str) -> (Option<HttpEndpoint>, Vec<ConfigError>) {
        let path = Path::new("W.toml");
        let wf = WorkerFile::parse(path, source).expect("parses");
        let mut errors = ConfigErrors::default();
        let endpoint = check(&wf, path, source, &mut errors);
        (endpoint, errors.0)
    }

    #[test]
    fn the_spec_example_yields_its_endpoint() {
        let (endpoint, errors) = checked(
            "protocol = \"http\"\nurl = \"http://127.0.0.1:8080/job.php\"\nheaders = { Authorization = \"Bearer x\" }\n[jobs.Sum]\nmax_processes = 16\ntimeout = 30\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        let endpoint = endpoint.unwrap();
        assert_eq!(endpoint.url, "http://127.0.0.1:8080/job.php");
        assert_eq!(
            endpoint.headers,
            vec![("Authorization".to_string(), "Bearer x".to_string())]
        );
        assert_eq!(endpoint.format, RequestFormat::Json);
    }

    #[test]
    fn process_keys_are_errors_with_key_and_line() {
        let (endpoint, errors) = checked(
            "protocol = \"http\"\nurl = \"https://example.org/j\"\ncommand = \"./w\"\n[defaults]\nstart_timeout = 5\n[jobs.a]\nmax_rss = 100\n",
        );
        assert!(endpoint.is_none());
        let found: Vec<(String, usize)> = errors
            .iter()
            .map(|e| (e.key.clone().unwrap(), e.position.unwrap().0))
            .collect();
        assert_eq!(
            found,
            vec![
                ("command".to_string(), 3),
                ("defaults.start_timeout".to_string(), 5),
                ("jobs.a.max_rss".to_string(), 7),
            ]
        );
        assert!(errors.iter().all(|e| e.file.is_some()));
    }

    #[test]
    fn isolation_keys_are_errors_too() {
        let (_, errors) = checked(
            "protocol = \"http\"\nurl = \"http://127.0.0.1/\"\numask = \"0027\"\nrlimits = { nofile = 10 }\n[jobs.a]\n",
        );
        let found: Vec<(&str, usize)> = errors
            .iter()
            .map(|e| (e.key.as_deref().unwrap(), e.position.unwrap().0))
            .collect();
        assert_eq!(found, vec![("umask", 3), ("rlimits", 4)]);
    }

    #[test]
    fn url_must_be_there_and_be_http() {
        let (_, errors) = checked("protocol = \"http\"\n[jobs.a]\n");
        assert_eq!(errors[0].key.as_deref(), Some("url"));
        for bad in ["ftp://h/x", "not a url", "/job.php", "http:///x"] {
            let (_, errors) = checked(&format!("protocol = \"http\"\nurl = \"{bad}\"\n[jobs.a]\n"));
            assert_eq!(errors.len(), 1, "{bad}: {errors:?}");
            assert_eq!(errors[0].key.as_deref(), Some("url"));
            assert_eq!(errors[0].position.map(|p| p.0), Some(2), "{bad}");
        }
    }

    #[test]
    fn bad_headers_name_the_header() {
        let (_, errors) = checked(
            "protocol = \"http\"\nurl = \"http://127.0.0.1/\"\nheaders = { \"Bad Name\" = \"x\", Ok = \"line\\nbreak\" }\n[jobs.a]\n",
        );
        let keys: Vec<&str> = errors.iter().filter_map(|e| e.key.as_deref()).collect();
        assert_eq!(keys, vec!["headers.Bad Name", "headers.Ok"]);
    }

    #[test]
    fn http_keys_elsewhere_and_a_missing_command_are_errors() {
        let (_, errors) =
            checked("url = \"http://127.0.0.1/\"\nrequest_format = \"form\"\n[jobs.a]\n");
        let keys: Vec<&str> = errors.iter().filter_map(|e| e.key.as_deref()).collect();
        assert_eq!(keys, vec!["url", "request_format", "command"]);
    }

    #[test]
    fn request_format_is_json_or_form() {
        let (endpoint, _) = checked(
            "protocol = \"http\"\nurl = \"http://127.0.0.1/\"\nrequest_format = \"form\"\n[jobs.a]\n",
        );
        assert_eq!(endpoint.unwrap().format, RequestFormat::Form);
        let err = WorkerFile::parse(
            Path::new("W.toml"),
            "protocol = \"http\"\nurl = \"http://127.0.0.1/\"\nrequest_format = \"xml\"\n[jobs.a]\n",
        )
        .unwrap_err();
        assert_eq!(err.position.map(|p| p.0), Some(3));
    }
}
