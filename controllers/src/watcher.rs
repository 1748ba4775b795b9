//! List+watch of one collection over HTTP, as a stream that survives disconnects.
//!
//! # Expected flow
//! Without a starting version the watcher lists the collection and yields
//! [`Event::Restarted`] with every object, then watches from the list's resourceVersion and
//! yields [`Event::Applied`] / [`Event::Deleted`] per change and [`Event::Bookmark`] as the
//! server reports progress. Given a starting version (a resumed automation) it skips the
//! list and watches from there.
//!
//! # Guarantees
//! - After a dropped connection it re-watches from the last version it yielded: no change is
//!   missed or repeated.
//! - When the server answers `410 Gone` (the version was compacted) it relists and yields
//!   `Restarted` again; the consumer must treat that as the full truth.
//! - Every yielded event carries the version to resume from ([`Event::resource_version`]).
//!
//! # Errors
//! Transient failures (connection refused, 5xx) are yielded as `Err` and retried after a
//! backoff that grows from 500 ms to 30 s; the stream never ends on its own.

use cirrus_client::encode_query_value as encode_query;
use std::time::Duration;

use bytes::BytesMut;
use futures::{Stream, StreamExt};
use serde_json::Value;

/// One thing a watcher learned.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A full list: every object that exists at `resource_version`.
    Restarted {
        /// The objects.
        objects: Vec<Value>,
        /// The list's revision.
        resource_version: String,
    },
    /// An object was created or changed.
    Applied(Value),
    /// An object was deleted (its last state).
    Deleted(Value),
    /// Nothing to report, but the watch has caught up to this version.
    Bookmark(String),
}

impl Event {
    /// The version a consumer can resume from after handling this event.
    pub fn resource_version(&self) -> Option<String> {
        match self {
            Event::Restarted {
                resource_version, ..
            } => Some(resource_version.clone()),
            Event::Applied(o) | Event::Deleted(o) => o
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string),
            Event::Bookmark(rv) => Some(rv.clone()),
        }
    }
}

/// Why one round of list or watch failed.
#[derive(Debug, thiserror::Error)]
pub enum WatcherError {
    /// The API could not be reached or the connection broke.
    #[error("request to {url} failed")]
    Http {
        /// What was requested.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The API answered with an error status.
    #[error("{url} answered {status}: {message}")]
    Status {
        /// What was requested.
        url: String,
        /// HTTP status.
        status: u16,
        /// The Status message.
        message: String,
    },
    /// The API sent something that is not a watch event.
    #[error("unreadable watch event from {url}: {line}")]
    Decode {
        /// What was requested.
        url: String,
        /// The offending line.
        line: String,
    },
}

/// What to watch.
#[derive(Debug, Clone)]
pub struct Config {
    /// API base URL, e.g. `http://127.0.0.1:8080`.
    pub base_url: String,
    /// Collection path, e.g. `/apis/cirrus.dev/v1/projects/demo/servers`.
    pub path: String,
    /// Optional label selector.
    pub label_selector: Option<String>,
    /// Resume watching after this version instead of listing first.
    pub resume_from: Option<String>,
    /// Bearer token, when the API requires one.
    pub token: Option<String>,
}

/// Where the state machine stands.
enum State {
    /// Must list (first start or after 410).
    Empty,
    /// Watch from this version.
    Watching(String),
}

/// Starts a watcher; see the module docs for the contract.
pub fn watch(
    client: reqwest::Client,
    config: Config,
) -> impl Stream<Item = Result<Event, WatcherError>> + Send {
    async_stream::stream! {
        let mut state = match config.resume_from.clone() {
            Some(rv) => State::Watching(rv),
            None => State::Empty,
        };
        let mut backoff = Backoff::default();
        loop {
            match state {
                State::Empty => match list(&client, &config).await {
                    Ok((objects, resource_version)) => {
                        backoff.reset();
                        state = State::Watching(resource_version.clone());
                        yield Ok(Event::Restarted { objects, resource_version });
                    }
                    Err(err) => {
                        yield Err(err);
                        tokio::time::sleep(backoff.next()).await;
                        state = State::Empty;
                    }
                },
                State::Watching(rv) => {
                    let url = watch_url(&config, &rv);
                    let response = match request(&client, &config, &url).await {
                        Ok(response) => response,
                        Err(WatcherError::Status { status: 410, .. }) => {
                            state = State::Empty;
                            continue;
                        }
                        Err(err) => {
                            yield Err(err);
                            tokio::time::sleep(backoff.next()).await;
                            state = State::Watching(rv);
                            continue;
                        }
                    };
                    let mut last = rv;
                    let mut body = response.bytes_stream();
                    let mut buffer = BytesMut::new();
                    let mut expired = false;
                    'stream: while let Some(chunk) = body.next().await {
                        let chunk = match chunk {
                            Ok(chunk) => chunk,
                            Err(source) => {
                                yield Err(WatcherError::Http { url: url.clone(), source });
                                break 'stream;
                            }
                        };
                        buffer.extend_from_slice(&chunk);
                        while let Some(pos) = buffer.iter().position(|b| *b == b'\n') {
                            let line = buffer.split_to(pos + 1);
                            let line = String::from_utf8_lossy(&line).trim().to_string();
                            if line.is_empty() {
                                continue;
                            }
                            match parse_line(&url, &line) {
                                Ok(Parsed::Event(event)) => {
                                    backoff.reset();
                                    if let Some(rv) = event.resource_version() {
                                        last = rv;
                                    }
                                    yield Ok(event);
                                }
                                Ok(Parsed::Expired) => {
                                    expired = true;
                                    break 'stream;
                                }
                                Err(err) => {
                                    yield Err(err);
                                    break 'stream;
                                }
                            }
                        }
                    }
                    if expired {
                        state = State::Empty;
                    } else {
                        tokio::time::sleep(backoff.next()).await;
                        state = State::Watching(last);
                    }
                }
            }
        }
    }
}

enum Parsed {
    Event(Event),
    Expired,
}

fn parse_line(url: &str, line: &str) -> Result<Parsed, WatcherError> {
    let decode = || WatcherError::Decode {
        url: url.to_string(),
        line: line.to_string(),
    };
    let value: Value = serde_json::from_str(line).map_err(|_| decode())?;
    let object = value.get("object").cloned().ok_or_else(decode)?;
    match value.get("type").and_then(Value::as_str) {
        Some("ADDED") | Some("MODIFIED") => Ok(Parsed::Event(Event::Applied(object))),
        Some("DELETED") => Ok(Parsed::Event(Event::Deleted(object))),
        Some("BOOKMARK") => {
            let rv = object
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .ok_or_else(decode)?;
            Ok(Parsed::Event(Event::Bookmark(rv.to_string())))
        }
        Some("ERROR") if object.get("code").and_then(Value::as_u64) == Some(410) => {
            Ok(Parsed::Expired)
        }
        Some("ERROR") => Err(WatcherError::Status {
            url: url.to_string(),
            status: object.get("code").and_then(Value::as_u64).unwrap_or(500) as u16,
            message: object
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        }),
        _ => Err(decode()),
    }
}

fn watch_url(config: &Config, rv: &str) -> String {
    let mut url = format!(
        "{}{}?watch=true&resourceVersion={}",
        config.base_url,
        config.path,
        encode_query(rv)
    );
    if let Some(selector) = &config.label_selector {
        url.push_str("&labelSelector=");
        url.push_str(&encode_query(selector));
    }
    url
}

async fn list(
    client: &reqwest::Client,
    config: &Config,
) -> Result<(Vec<Value>, String), WatcherError> {
    let mut objects = Vec::new();
    let mut continue_token: Option<String> = None;
    loop {
        let mut url = format!("{}{}?limit=500", config.base_url, config.path);
        if let Some(selector) = &config.label_selector {
            url.push_str("&labelSelector=");
            url.push_str(&encode_query(selector));
        }
        if let Some(token) = &continue_token {
            url.push_str("&continue=");
            url.push_str(&encode_query(token));
        }
        let response = request(client, config, &url).await?;
        let page: Value = response.json().await.map_err(|source| WatcherError::Http {
            url: url.clone(),
            source,
        })?;
        if let Some(items) = page.get("items").and_then(Value::as_array) {
            objects.extend(items.iter().cloned());
        }
        let rv = page
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("0")
            .to_string();
        continue_token = page
            .pointer("/metadata/continue")
            .and_then(Value::as_str)
            .map(str::to_string);
        if continue_token.is_none() {
            return Ok((objects, rv));
        }
    }
}

async fn request(
    client: &reqwest::Client,
    config: &Config,
    url: &str,
) -> Result<reqwest::Response, WatcherError> {
    let mut builder = client.get(url);
    if let Some(token) = &config.token {
        builder = builder.bearer_auth(token);
    }
    let response = builder.send().await.map_err(|source| WatcherError::Http {
        url: url.to_string(),
        source,
    })?;
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    Err(WatcherError::Status {
        url: url.to_string(),
        status,
        message: body
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
    })
}

/// Exponential backoff, 500 ms doubling to 30 s, reset after a success.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            next: Duration::from_millis(500),
        }
    }
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(Duration::from_secs(30));
        now
    }
    fn reset(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events() {
        let line = r#"{"type":"ADDED","object":{"metadata":{"name":"a","resourceVersion":"7"}}}"#;
        let Parsed::Event(event) = parse_line("u", line).unwrap() else {
            panic!()
        };
        assert_eq!(event.resource_version().as_deref(), Some("7"));
        let gone = r#"{"type":"ERROR","object":{"kind":"Status","code":410,"message":"too old"}}"#;
        assert!(matches!(parse_line("u", gone).unwrap(), Parsed::Expired));
        let bookmark = r#"{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"9"}}}"#;
        let Parsed::Event(Event::Bookmark(rv)) = parse_line("u", bookmark).unwrap() else {
            panic!()
        };
        assert_eq!(rv, "9");
        assert!(parse_line("u", "not json").is_err());
    }

    #[test]
    fn backoff_grows_and_resets() {
        let mut b = Backoff::default();
        assert_eq!(b.next(), Duration::from_millis(500));
        assert_eq!(b.next(), Duration::from_secs(1));
        for _ in 0..10 {
            b.next();
        }
        assert_eq!(b.next(), Duration::from_secs(30));
        b.reset();
        assert_eq!(b.next(), Duration::from_millis(500));
    }

    #[test]
    fn encodes_selectors() {
        assert_eq!(encode_query("a in (x,y)"), "a%20in%20%28x%2Cy%29");
    }
}
