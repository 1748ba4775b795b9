//! HTTP client for the native API (`/apis/cirrus.dev/v1`, see `docs/api.md`).
//!
//! Methods are named resource-first and return the server's JSON as [`serde_json::Value`];
//! failures are a [`ClientError`], with API errors decoded from their Kubernetes `Status`
//! body.

use std::time::Duration;

use cirrus_crds::{API_VERSION, KindInfo, Scope};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The API answered with an error `Status`.
    #[error("Error from server ({reason}): {message}")]
    Status {
        /// HTTP status code.
        code: u16,
        /// The Status `reason` (`NotFound`, `Conflict`, `Invalid`, ...).
        reason: String,
        /// The Status `message`.
        message: String,
        /// The whole Status body.
        body: Value,
    },
    /// Nothing listens at the server address.
    #[error(
        "cannot connect to the Cirrus API at {server} ({reason}); is it running? Start one with `cirrus up`, or point --server / CIRRUS_URL at it"
    )]
    Connect {
        /// The server address.
        server: String,
        /// The innermost cause, e.g. `Connection refused (os error 111)`.
        reason: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The server's TLS certificate is not signed by a CA this client trusts.
    #[error(
        "cannot verify the TLS certificate of the Cirrus API at {server} ({reason}); point OS_CACERT or CIRRUS_CACERT at the cloud's CA certificate (`cirrus up --tls` keeps it in <data-dir>/tls/ca.pem, and its openrc sets OS_CACERT)"
    )]
    Untrusted {
        /// The server address.
        server: String,
        /// The innermost cause, e.g. `invalid peer certificate: UnknownIssuer`.
        reason: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// Any other transport failure.
    #[error("request to {url} failed: {source}")]
    Transport {
        /// The URL tried.
        url: String,
        /// The transport error.
        source: reqwest::Error,
    },
    /// The server's answer is not what the API contract says.
    #[error("unexpected response from {url}: {message}")]
    Decode {
        /// The URL requested.
        url: String,
        /// What was wrong.
        message: String,
    },
    /// The server address is not a URL.
    #[error("invalid server URL {url:?}: {message}")]
    BadUrl {
        /// The address given.
        url: String,
        /// Why it is not usable.
        message: String,
    },
    /// A project-scoped object was addressed without a project.
    #[error("{kind} is project-scoped: a project is needed")]
    MissingProject {
        /// The kind.
        kind: &'static str,
    },
}

impl ClientError {
    /// HTTP status code of an API error.
    pub fn code(&self) -> Option<u16> {
        match self {
            Self::Status { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// True for `404 Not Found`.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }

    /// True for `409` caused by a stale `resourceVersion` (not `AlreadyExists`).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Status { code: 409, reason, .. } if reason != "AlreadyExists")
    }

    /// True for `409 AlreadyExists`.
    pub fn is_already_exists(&self) -> bool {
        matches!(self, Self::Status { code: 409, reason, .. } if reason == "AlreadyExists")
    }

    /// True for `410 Gone` (a compacted resourceVersion).
    pub fn is_gone(&self) -> bool {
        self.code() == Some(410)
    }

    /// An error from a `Status` object (from an error response or an `ERROR` watch event).
    pub fn from_status(code: u16, body: Value) -> Self {
        let reason = body
            .get("reason")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| {
                StatusCode::from_u16(code)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("Unknown")
                    .replace(' ', "")
            });
        let message = body
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| match &body {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
        Self::Status {
            code,
            reason,
            message,
            body,
        }
    }
}

/// Shorthand for results of this module.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// One event of a watch stream.
#[derive(Clone, Debug)]
pub struct WatchEvent {
    /// `ADDED`, `MODIFIED`, `DELETED` or `BOOKMARK` (`ERROR` events become errors).
    pub kind: String,
    /// The object (for `BOOKMARK`, only its `metadata.resourceVersion`).
    pub object: Value,
}

/// An open watch: newline-delimited JSON events read as they arrive.
pub struct WatchStream {
    url: String,
    response: reqwest::Response,
    buffer: Vec<u8>,
}

impl WatchStream {
    /// The next event; `Ok(None)` when the server ended the stream.
    ///
    /// # Errors
    /// Transport failures, undecodable lines, and `ERROR` events (as [`ClientError::Status`],
    /// e.g. `410 Gone` after compaction).
    pub async fn next(&mut self) -> Result<Option<WatchEvent>> {
        loop {
            if let Some(pos) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=pos).collect();
                let line = &line[..line.len() - 1];
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return self.decode(line).map(Some);
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => self.buffer.extend_from_slice(&chunk),
                Ok(None) => {
                    if self.buffer.iter().all(u8::is_ascii_whitespace) {
                        return Ok(None);
                    }
                    let line = std::mem::take(&mut self.buffer);
                    return self.decode(&line).map(Some);
                }
                Err(source) => {
                    return Err(ClientError::Transport {
                        url: self.url.clone(),
                        source,
                    });
                }
            }
        }
    }

    fn decode(&self, line: &[u8]) -> Result<WatchEvent> {
        let mut value: Value = serde_json::from_slice(line).map_err(|e| ClientError::Decode {
            url: self.url.clone(),
            message: format!("bad watch event: {e}"),
        })?;
        let kind = value
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let object = value
            .get_mut("object")
            .map(Value::take)
            .unwrap_or(Value::Null);
        if kind == "ERROR" {
            let code = object.get("code").and_then(Value::as_u64).unwrap_or(500) as u16;
            return Err(ClientError::from_status(code, object));
        }
        Ok(WatchEvent { kind, object })
    }
}

/// A client of one Cirrus API server.
#[derive(Clone, Debug)]
pub struct Client {
    base: Url,
    http: reqwest::Client,
    auth: Option<std::sync::Arc<dyn cirrus_client::auth::TokenSource>>,
}

impl Client {
    /// A client for the server at `server` (e.g. `http://127.0.0.1:8080`).
    ///
    /// # Errors
    /// [`ClientError::BadUrl`] when `server` is not an http URL.
    pub fn new(server: &str) -> Result<Self> {
        let bad = |message: String| ClientError::BadUrl {
            url: server.to_string(),
            message,
        };
        let mut base = Url::parse(server).map_err(|e| bad(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(bad(format!(
                "the scheme must be http or https, not {}",
                base.scheme()
            )));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let http = cirrus_tls::http_client()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            base,
            http,
            auth: None,
        })
    }

    /// The same client, authenticating every request with tokens from `auth`.
    pub fn with_auth(
        mut self,
        auth: Option<std::sync::Arc<dyn cirrus_client::auth::TokenSource>>,
    ) -> Self {
        self.auth = auth;
        self
    }

    /// Adds the current token to `request`.
    async fn authed(&self, request: reqwest::RequestBuilder) -> Result<reqwest::RequestBuilder> {
        let Some(auth) = &self.auth else {
            return Ok(request);
        };
        let token = auth.token().await.map_err(|e| match e {
            // The login got no answer: say why (not "unauthorized").
            cirrus_client::ClientError::Http { url, source, .. } => {
                self.transport_error(&url, source)
            }
            e => ClientError::Status {
                code: e.code().unwrap_or(401),
                reason: "Unauthorized".into(),
                message: e.to_string(),
                body: Value::Null,
            },
        })?;
        Ok(request.header(cirrus_crds::conventions::AUTH_HEADER, token))
    }

    /// What a request that got no answer from `url` failed with: nothing listening, a
    /// certificate this client does not trust, or another transport failure.
    fn transport_error(&self, url: &str, source: reqwest::Error) -> ClientError {
        if !source.is_connect() {
            return ClientError::Transport {
                url: url.to_string(),
                source,
            };
        }
        let mut reason = source.to_string();
        let mut chain = reason.clone();
        let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(&source);
        while let Some(c) = cause {
            reason = c.to_string();
            chain.push_str(": ");
            chain.push_str(&reason);
            cause = c.source();
        }
        let server = self.base.as_str().trim_end_matches('/').to_string();
        if chain.to_ascii_lowercase().contains("certificate") {
            return ClientError::Untrusted {
                server,
                reason,
                source,
            };
        }
        ClientError::Connect {
            server,
            reason,
            source,
        }
    }

    /// The server's base URL.
    pub fn base(&self) -> &Url {
        &self.base
    }

    fn url(&self, path: &str) -> Url {
        self.base
            .join(path.trim_start_matches('/'))
            .expect("API paths are valid URL paths")
    }

    /// URL of the collection of `kind`: in `project` for project-scoped kinds, or across all
    /// projects when `project` is `None`.
    pub fn collection_url(&self, kind: &KindInfo, project: Option<&str>) -> Url {
        let mut url = self.url(&format!("apis/{API_VERSION}"));
        {
            // Each name is one encoded segment: a project name can never change the route.
            let mut segments = url.path_segments_mut().expect("http URLs have paths");
            if let (Scope::Project, Some(p)) = (kind.scope, project) {
                segments.push("projects").push(p);
            }
            segments.push(kind.plural);
        }
        url
    }

    /// The id of the project `project` names: a project of the caller's with that id or
    /// Keystone name (`GET /identity/v3/auth/projects`), else — for admins, who may address
    /// any project — the project of that name (`GET /identity/v3/projects?name=`), else
    /// `project` itself, taken as an id. So `-p` accepts both, as `openstack` takes a
    /// project's name or id.
    pub async fn project_id(&self, project: &str) -> String {
        if self.auth.is_none() {
            return project.to_string();
        }
        let mine = self.url("identity/v3/auth/projects");
        let mut named = self.url("identity/v3/projects");
        named.query_pairs_mut().append_pair("name", project);
        for url in [mine, named] {
            // Refused (not an admin) or unreachable: the command's own call will say why.
            let Ok(answer) = self.json(Method::GET, url, None).await else {
                continue;
            };
            let projects = answer["projects"].as_array().cloned().unwrap_or_default();
            if projects.iter().any(|p| p["id"] == project) {
                return project.to_string();
            }
            if let Some(id) = projects
                .iter()
                .find(|p| p["name"] == project)
                .and_then(|p| p["id"].as_str())
            {
                return id.to_string();
            }
        }
        project.to_string()
    }

    /// URL of one object.
    ///
    /// # Errors
    /// [`ClientError::MissingProject`] for a project-scoped kind without a project.
    pub fn object_url(
        &self,
        kind: &'static KindInfo,
        project: Option<&str>,
        name: &str,
    ) -> Result<Url> {
        if kind.scope == Scope::Project && project.is_none() {
            return Err(ClientError::MissingProject { kind: kind.kind });
        }
        let mut url = self.collection_url(kind, project);
        url.path_segments_mut()
            .expect("http URLs have paths")
            .push(name);
        Ok(url)
    }

    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<(&str, &Value)>,
    ) -> Result<reqwest::Response> {
        let url_text = url.to_string();
        let mut request = self.authed(self.http.request(method, url)).await?;
        if let Some((content_type, body)) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(serde_json::to_vec(body).expect("JSON values serialize"));
        }
        let response = request
            .send()
            .await
            .map_err(|source| self.transport_error(&url_text, source))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|source| ClientError::Transport {
                url: url_text.clone(),
                source,
            })?;
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).trim().to_string()));
        Err(ClientError::from_status(status.as_u16(), body))
    }

    async fn json(&self, method: Method, url: Url, body: Option<(&str, &Value)>) -> Result<Value> {
        let url_text = url.to_string();
        let response = self.send(method, url, body).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|source| ClientError::Transport {
                url: url_text.clone(),
                source,
            })?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            url: url_text,
            message: e.to_string(),
        })
    }

    fn with_dry_run(mut url: Url, dry_run: bool) -> Url {
        if dry_run {
            url.query_pairs_mut().append_pair("dryRun", "All");
        }
        url
    }

    /// Uploads image data from `path` (streamed, never whole in memory) and returns the
    /// Image as the server recorded it (active, with size and checksums).
    ///
    /// # Errors
    /// The file can't be read; the API refuses the data (`400` wrong format or backing file,
    /// `409` already active, `404` no such image).
    pub async fn image_upload(
        &self,
        project: &str,
        name: &str,
        path: &std::path::Path,
    ) -> Result<Value> {
        let images = cirrus_crds::kind_by_plural("images").expect("images is a kind");
        let mut url = self.object_url(images, Some(project), name)?;
        url.path_segments_mut()
            .expect("http URLs have paths")
            .push("file");
        let url_text = url.to_string();
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| ClientError::Decode {
                url: path.display().to_string(),
                message: format!("cannot open: {e}"),
            })?;
        let length = file.metadata().await.map(|m| m.len()).ok();
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        let mut request = self
            .authed(self.http.put(url))
            .await?
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body);
        if let Some(length) = length {
            request = request.header(reqwest::header::CONTENT_LENGTH, length);
        }
        let response = request
            .send()
            .await
            .map_err(|source| ClientError::Transport {
                url: url_text.clone(),
                source,
            })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|source| ClientError::Transport {
                url: url_text.clone(),
                source,
            })?;
        let body: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).trim().to_string()));
        if status.is_success() {
            Ok(body)
        } else {
            Err(ClientError::from_status(status.as_u16(), body))
        }
    }

    /// Reads a server's console log (text), optionally only its last `tail_bytes` bytes.
    ///
    /// # Errors
    /// `404` (no such server), `409` (not on a node yet), `503` (node agent unreachable).
    pub async fn server_console(
        &self,
        project: &str,
        name: &str,
        tail_bytes: Option<u64>,
    ) -> Result<String> {
        let servers = cirrus_crds::kind_by_plural("servers").expect("servers is a kind");
        let mut url = self.object_url(servers, Some(project), name)?;
        url.path_segments_mut()
            .expect("http URLs have paths")
            .push("console");
        if let Some(tail) = tail_bytes {
            url.query_pairs_mut()
                .append_pair("tailBytes", &tail.to_string());
        }
        let url_text = url.to_string();
        let response = self.send(Method::GET, url, None).await?;
        response
            .text()
            .await
            .map_err(|source| ClientError::Transport {
                url: url_text,
                source,
            })
    }

    /// Reads one object.
    ///
    /// # Errors
    /// `404 NotFound` and every other failure.
    pub async fn object_get(
        &self,
        kind: &'static KindInfo,
        project: Option<&str>,
        name: &str,
    ) -> Result<Value> {
        self.json(Method::GET, self.object_url(kind, project, name)?, None)
            .await
    }

    /// Reads one object, `None` when it does not exist.
    ///
    /// # Errors
    /// Every failure except `404`.
    pub async fn object_get_opt(
        &self,
        kind: &'static KindInfo,
        project: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>> {
        match self.object_get(kind, project, name).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Lists objects (in `project`, or all projects when `None`), filtered by a label
    /// selector; follows `continue` tokens until the list is complete.
    ///
    /// # Errors
    /// Every failure.
    pub async fn object_list(
        &self,
        kind: &'static KindInfo,
        project: Option<&str>,
        selector: Option<&str>,
    ) -> Result<Value> {
        let mut items = Vec::new();
        let mut cont: Option<String> = None;
        loop {
            let mut url = self.collection_url(kind, project);
            let mut pairs: Vec<(&str, &str)> = Vec::new();
            if let Some(sel) = selector.filter(|s| !s.is_empty()) {
                pairs.push(("labelSelector", sel));
            }
            if let Some(token) = &cont {
                pairs.push(("continue", token));
            }
            if !pairs.is_empty() {
                url.query_pairs_mut().extend_pairs(pairs);
            }
            let url_text = url.to_string();
            let mut page = self.json(Method::GET, url, None).await?;
            let Some(Value::Array(page_items)) = page.get_mut("items").map(Value::take) else {
                return Err(ClientError::Decode {
                    url: url_text,
                    message: "list without items".into(),
                });
            };
            items.extend(page_items);
            let next = page
                .pointer("/metadata/continue")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string);
            match next {
                Some(token) => cont = Some(token),
                None => {
                    page["items"] = Value::Array(items);
                    if let Some(meta) = page.get_mut("metadata").and_then(Value::as_object_mut) {
                        meta.remove("continue");
                    }
                    return Ok(page);
                }
            }
        }
    }

    /// Creates an object (`POST`); with `dry_run` nothing is stored.
    ///
    /// # Errors
    /// `409 AlreadyExists`, `400 Invalid`, and every other failure.
    pub async fn object_create(
        &self,
        kind: &'static KindInfo,
        project: Option<&str>,
        object: &Value,
        dry_run: bool,
    ) -> Result<Value> {
        if kind.scope == Scope::Project && project.is_none() {
            return Err(ClientError::MissingProject { kind: kind.kind });
        }
        let url = Self::with_dry_run(self.collection_url(kind, project), dry_run);
        self.json(Method::POST, url, Some(("application/json", object)))
            .await
    }

    /// Applies a JSON merge patch (RFC 7386) to an object; a `metadata.resourceVersion` in
    /// the patch is a precondition.
    ///
    /// # Errors
    /// `409 Conflict` when the precondition fails, and every other failure.
    pub async fn object_patch(
        &self,
        kind: &'static KindInfo,
        project: Option<&str>,
        name: &str,
        patch: &Value,
        dry_run: bool,
    ) -> Result<Value> {
        let url = Self::with_dry_run(self.object_url(kind, project, name)?, dry_run);
        self.json(
            Method::PATCH,
            url,
            Some(("application/merge-patch+json", patch)),
        )
        .await
    }

    /// Replaces an object (`PUT`); its `metadata.resourceVersion`, when present, is a
    /// precondition.
    ///
    /// # Errors
    /// `409 Conflict` when stale, and every other failure.
    pub async fn object_replace(
        &self,
        kind: &'static KindInfo,
        project: Option<&str>,
        name: &str,
        object: &Value,
        dry_run: bool,
    ) -> Result<Value> {
        let url = Self::with_dry_run(self.object_url(kind, project, name)?, dry_run);
        self.json(Method::PUT, url, Some(("application/json", object)))
            .await
    }

    /// Deletes an object; returns the object as it was (or, with finalizers pending, as it
    /// is now, with `deletionTimestamp` set).
    ///
    /// # Errors
    /// `404 NotFound` and every other failure.
    pub async fn object_delete(
        &self,
        kind: &'static KindInfo,
        project: Option<&str>,
        name: &str,
        dry_run: bool,
    ) -> Result<Value> {
        let url = Self::with_dry_run(self.object_url(kind, project, name)?, dry_run);
        self.json(Method::DELETE, url, None).await
    }

    /// Opens a watch on a collection (in `project`, or across all projects), from
    /// `resource_version` (events after it), or from "now" with the current objects first as
    /// `ADDED` when `None`.
    ///
    /// # Errors
    /// `410 Gone` when `resource_version` is compacted, and every other failure.
    pub async fn object_watch(
        &self,
        kind: &'static KindInfo,
        project: Option<&str>,
        resource_version: Option<&str>,
        selector: Option<&str>,
    ) -> Result<WatchStream> {
        let mut url = self.collection_url(kind, project);
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("watch", "true");
            if let Some(rv) = resource_version {
                q.append_pair("resourceVersion", rv);
            }
            if let Some(sel) = selector.filter(|s| !s.is_empty()) {
                q.append_pair("labelSelector", sel);
            }
        }
        let url_text = url.to_string();
        let response = self.send(Method::GET, url, None).await?;
        Ok(WatchStream {
            url: url_text,
            response,
            buffer: Vec::new(),
        })
    }
}

/// `metadata.resourceVersion` of an object or list.
pub fn resource_version(value: &Value) -> Option<&str> {
    value
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
}

/// `metadata.name` of an object.
pub fn name_of(value: &Value) -> &str {
    value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// `metadata.project` of an object.
pub fn project_of(value: &Value) -> Option<&str> {
    value.pointer("/metadata/project").and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn urls() {
        let c = Client::new("http://127.0.0.1:9/base").unwrap();
        let flavor = cirrus_crds::find_kind("flavor").unwrap();
        assert_eq!(
            c.collection_url(flavor, Some("p")).as_str(),
            "http://127.0.0.1:9/base/apis/cirrus.dev/v1/flavors"
        );
        assert_eq!(
            c.object_url(flavor, None, "m1.small").unwrap().as_str(),
            "http://127.0.0.1:9/base/apis/cirrus.dev/v1/flavors/m1.small"
        );
        assert!(
            Client::new("https://x").is_ok(),
            "https is served with --tls"
        );
        let err = Client::new("ftp://x").unwrap_err().to_string();
        assert!(err.contains("http or https"), "{err}");
        assert!(Client::new("not a url").is_err());
    }

    #[test]
    fn status_errors() {
        let e = ClientError::from_status(
            409,
            json!({"kind":"Status","code":409,"reason":"AlreadyExists","message":"flavors \"a\" already exists"}),
        );
        assert!(e.is_already_exists());
        assert!(!e.is_conflict());
        assert_eq!(
            e.to_string(),
            "Error from server (AlreadyExists): flavors \"a\" already exists"
        );
        let e = ClientError::from_status(404, json!("page not found"));
        assert!(e.is_not_found());
        assert_eq!(
            e.to_string(),
            "Error from server (NotFound): page not found"
        );
    }
}
