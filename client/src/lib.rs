//! Typed HTTP client of the Cirrus native API (`cirrus.dev/v1`, see `docs/api.md`).
//!
//! [`Client`] holds the base URL, an optional bearer token and a `reqwest::Client`; [`Api<K>`]
//! is the view of one kind, either across the cloud ([`Api::all`]: cluster-scoped kinds, or
//! all projects of a project-scoped kind for reads) or inside one project
//! ([`Api::in_project`]). Every call decodes into the typed kind and every failure into a
//! [`ClientError`], with the API's Status `code`/`reason` kept so that callers can tell
//! "not found", "someone wrote first" and "compacted" apart.
//!
//! # Guarantees
//! - Writes carry the object's `metadata.resourceVersion` when it has one, so a stale
//!   [`Api::replace`] or a patch holding a resourceVersion fails with `409 Conflict`
//!   ([`ClientError::is_conflict`]) instead of overwriting a newer object.
//! - [`Api::watch`] yields changes after the given revision in order; it ends after an error
//!   (a `410 Gone` is reported as [`ClientError::is_gone`]) or when the server closes the
//!   stream. Resuming and relisting are the caller's job (the controller runtime's watcher).
//!
//! This crate does no retries of its own: [`ClientError::retryable`] says when one may help.

pub mod auth;
mod error;
pub mod images;

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use bytes::BytesMut;
use cirrus_crds::{API_VERSION, Resource, Scope};
use futures::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use error::ClientError;
pub use images::find_image;

/// Result of a client call.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// Where the API is and how to authenticate; cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct Client {
    /// API base URL without a trailing slash, e.g. `http://127.0.0.1:6443`.
    pub base_url: String,
    /// Where the token sent with every request comes from (`None`: no token).
    pub auth: Option<Arc<dyn auth::TokenSource>>,
    /// The HTTP client (connection pool, timeouts).
    pub http: reqwest::Client,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.base_url)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client of the API at `base_url` with a default HTTP client and no token.
    pub fn new(base_url: impl Into<String>) -> Self {
        let base_url = base_url.into().trim_end_matches('/').to_string();
        Self {
            base_url,
            auth: None,
            http: cirrus_tls::default_client(),
        }
    }

    /// The same client, sending the fixed `token`.
    pub fn with_token(self, token: impl Into<String>) -> Self {
        self.with_token_source(Arc::new(auth::StaticToken(token.into())))
    }

    /// The same client, taking its tokens from `source` (e.g. a [`auth::PasswordLogin`]
    /// that renews them).
    pub fn with_token_source(mut self, source: Arc<dyn auth::TokenSource>) -> Self {
        self.auth = Some(source);
        self
    }

    /// The same client, logging in as `user` with `password` (scoped to `project`) at this
    /// API's identity service and renewing the token as needed.
    pub fn with_password(
        self,
        user: impl Into<String>,
        password: impl Into<String>,
        project: Option<String>,
    ) -> Self {
        let login = auth::PasswordLogin::new(&self.base_url, user, password, project);
        self.with_token_source(login)
    }

    /// The token to send now, if the client has a source.
    pub async fn current_token(&self) -> Result<Option<String>> {
        match &self.auth {
            Some(source) => Ok(Some(source.token().await?)),
            None => Ok(None),
        }
    }

    /// `base_url` followed by `segments`, each one percent-encoded as a single path segment
    /// (so a `/`, `?`, `#` or `%` inside a name can never change which route the URL
    /// reaches). The one way to build a native-API URL from names.
    ///
    /// # Errors
    /// [`ClientError::InvalidObject`] for an empty, `.` or `..` segment: URL parsers resolve
    /// dot segments (encoded ones too), so they are refused rather than sent.
    pub fn url(&self, segments: &[&str]) -> Result<String> {
        url_from_segments(&self.base_url, segments)
    }

    /// A request builder carrying the current token.
    pub async fn request(
        &self,
        method: reqwest::Method,
        url: &str,
    ) -> Result<(reqwest::RequestBuilder, Option<String>)> {
        let builder = self.http.request(method, url);
        let token = self.current_token().await?;
        Ok(match &token {
            Some(t) => (
                builder.header(cirrus_crds::conventions::AUTH_HEADER, t),
                token,
            ),
            None => (builder, None),
        })
    }

    /// Sends a request and returns the successful response, or the API's error.
    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<(&'static str, Vec<u8>)>,
    ) -> Result<reqwest::Response> {
        let http_err = |source| ClientError::Http {
            method: method.to_string(),
            url: url.to_string(),
            source,
        };
        let mut retried = false;
        let response = loop {
            let (mut builder, token) = self.request(method.clone(), url).await?;
            if let Some((content_type, body)) = &body {
                builder = builder
                    .header(reqwest::header::CONTENT_TYPE, *content_type)
                    .body(body.clone());
            }
            tracing::trace!(%method, url, "api request");
            let response = builder.send().await.map_err(http_err)?;
            let refused = response.status() == reqwest::StatusCode::UNAUTHORIZED;
            if refused
                && !retried
                && let (Some(source), Some(token)) = (&self.auth, &token)
                && source.refused(token)
            {
                retried = true;
                continue;
            }
            break response;
        };
        if response.status().is_success() {
            return Ok(response);
        }
        let code = response.status().as_u16();
        let body = response.bytes().await.map_err(http_err)?;
        Err(ClientError::from_status(code, &body))
    }

    /// Sends a request and decodes the JSON answer.
    async fn send_json<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<(&'static str, Vec<u8>)>,
    ) -> Result<T> {
        let response = self.send(method.clone(), url, body).await?;
        let bytes = response.bytes().await.map_err(|source| ClientError::Http {
            method: method.to_string(),
            url: url.to_string(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|source| ClientError::Decode {
            url: url.to_string(),
            source,
        })
    }
}

/// Options of a list call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListParams {
    /// Label selector (`a=b`, `a!=b`, `a`, `!a`, `a in (x,y)`, `a notin (x,y)`; comma = and).
    pub label_selector: Option<String>,
    /// Field selector (`spec.nodeName=node-a`, `metadata.name!=x`; comma = and).
    pub field_selector: Option<String>,
    /// Page size; the answer carries a continue token when more remain.
    pub limit: Option<u32>,
    /// Continue token from the previous page (`metadata.continue`).
    pub continue_token: Option<String>,
}

impl ListParams {
    /// Selects objects by label.
    pub fn labels(mut self, selector: impl Into<String>) -> Self {
        self.label_selector = Some(selector.into());
        self
    }

    /// Selects objects by field.
    pub fn fields(mut self, selector: impl Into<String>) -> Self {
        self.field_selector = Some(selector.into());
        self
    }

    /// Limits the page size.
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }
}

/// One page of a list: the objects and the revision they were read at.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectList<K> {
    /// The objects.
    pub items: Vec<K>,
    /// The list's revision (`metadata.resourceVersion`): watch from here to see later changes.
    pub resource_version: String,
    /// Token of the next page, when the list was limited and more remain.
    pub continue_token: Option<String>,
}

/// One change reported by [`Api::watch`].
#[derive(Clone, Debug, PartialEq)]
pub enum WatchEvent<K> {
    /// An object was created (or existed at the start of a watch from revision 0).
    Added(K),
    /// An object was changed.
    Modified(K),
    /// An object was deleted; this is its last state.
    Deleted(K),
    /// No change, but the watch has reached this revision (resume from it).
    Bookmark {
        /// The revision.
        resource_version: String,
    },
}

impl<K: Resource> WatchEvent<K> {
    /// The revision to resume a watch from after handling this event.
    pub fn resource_version(&self) -> Option<&str> {
        match self {
            WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => {
                o.meta().resource_version.as_deref()
            }
            WatchEvent::Bookmark { resource_version } => Some(resource_version),
        }
    }
}

/// Access to the objects of kind `K`, across the cloud or inside one project.
pub struct Api<K> {
    client: Client,
    project: Option<String>,
    _kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Api<K> {
    fn clone(&self) -> Self {
        Self {
            client: self.client.clone(),
            project: self.project.clone(),
            _kind: PhantomData,
        }
    }
}

impl<K> fmt::Debug for Api<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Api")
            .field("kind", &std::any::type_name::<K>())
            .field("project", &self.project)
            .finish()
    }
}

const MERGE_PATCH: &str = "application/merge-patch+json";
const JSON: &str = "application/json";

impl<K: Resource> Api<K> {
    /// Cluster-scoped kinds; for project-scoped kinds, reads (list, watch) across all
    /// projects, and object calls on objects that carry their project.
    pub fn all(client: Client) -> Self {
        Self {
            client,
            project: None,
            _kind: PhantomData,
        }
    }

    /// Objects of a project-scoped kind in `project`. For a cluster-scoped kind the project
    /// is ignored.
    pub fn in_project(client: Client, project: impl Into<String>) -> Self {
        let project = match K::SCOPE {
            Scope::Project => Some(project.into()),
            Scope::Cluster => None,
        };
        Self {
            client,
            project,
            _kind: PhantomData,
        }
    }

    /// The Api that addresses `obj` itself: its project for a project-scoped kind.
    pub fn for_object(client: Client, obj: &K) -> Self {
        match (&obj.meta().project, K::SCOPE) {
            (Some(project), Scope::Project) => Self::in_project(client, project.clone()),
            _ => Self::all(client),
        }
    }

    /// The client this Api talks through.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The project this Api is limited to, if any.
    pub fn project(&self) -> Option<&str> {
        self.project.as_deref()
    }

    /// URL of the collection in `project` (or across projects / cluster-wide).
    fn collection_url(&self, project: Option<&str>) -> String {
        let base = &self.client.base_url;
        match (K::SCOPE, project) {
            (Scope::Project, Some(p)) => format!(
                "{base}/apis/{API_VERSION}/projects/{}/{}",
                encode(p),
                K::PLURAL
            ),
            _ => format!("{base}/apis/{API_VERSION}/{}", K::PLURAL),
        }
    }

    /// URL of one object, which for a project-scoped kind needs a project.
    fn object_url(&self, project: Option<&str>, name: &str) -> Result<String> {
        let project = project.or(self.project.as_deref());
        if K::SCOPE == Scope::Project && project.is_none() {
            return Err(ClientError::ProjectRequired { kind: K::KIND });
        }
        if name.is_empty() {
            return Err(ClientError::InvalidObject(format!(
                "a {} needs a name",
                K::KIND
            )));
        }
        Ok(format!("{}/{}", self.collection_url(project), encode(name)))
    }

    /// URL of an object we hold, preferring the Api's project and falling back to the
    /// object's own.
    fn url_of(&self, obj: &K) -> Result<String> {
        let meta = obj.meta();
        let project = self.project.as_deref().or(meta.project.as_deref());
        self.object_url(project, &meta.name)
    }

    /// Reads one object.
    ///
    /// # Errors
    /// `404` ([`ClientError::is_not_found`]) when it does not exist.
    pub async fn get(&self, name: &str) -> Result<K> {
        let url = self.object_url(None, name)?;
        self.client
            .send_json(reqwest::Method::GET, &url, None)
            .await
    }

    /// Reads one object, `None` when it does not exist.
    pub async fn get_opt(&self, name: &str) -> Result<Option<K>> {
        match self.get(name).await {
            Ok(obj) => Ok(Some(obj)),
            Err(err) if err.is_not_found() => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Lists one page of objects.
    ///
    /// # Errors
    /// `410 Gone` when the continue token's revision has been compacted.
    pub async fn list(&self, params: &ListParams) -> Result<ObjectList<K>> {
        let mut query = Vec::new();
        if let Some(selector) = &params.field_selector {
            query.push(format!("fieldSelector={}", encode(selector)));
        }
        if let Some(selector) = &params.label_selector {
            query.push(format!("labelSelector={}", encode(selector)));
        }
        if let Some(limit) = params.limit {
            query.push(format!("limit={limit}"));
        }
        if let Some(token) = &params.continue_token {
            query.push(format!("continue={}", encode(token)));
        }
        let mut url = self.collection_url(self.project.as_deref());
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query.join("&"));
        }
        let page: Value = self
            .client
            .send_json(reqwest::Method::GET, &url, None)
            .await?;
        let decode = |source| ClientError::Decode {
            url: url.clone(),
            source,
        };
        let items = match page.get("items") {
            Some(items) => serde_json::from_value(items.clone()).map_err(decode)?,
            None => Vec::new(),
        };
        let text = |pointer: &str| {
            page.pointer(pointer)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        Ok(ObjectList {
            items,
            resource_version: text("/metadata/resourceVersion").unwrap_or_else(|| "0".into()),
            continue_token: text("/metadata/continue"),
        })
    }

    /// Lists every object, following continue tokens (pages of 500, one consistent snapshot).
    pub async fn list_all(&self, label_selector: Option<&str>) -> Result<ObjectList<K>> {
        let selectors = ListParams {
            label_selector: label_selector.map(str::to_string),
            ..ListParams::default()
        };
        self.list_all_matching(&selectors).await
    }

    /// Lists every object matching the label and field selectors of `selectors` (its limit
    /// and continue token are ignored), following continue tokens.
    pub async fn list_all_matching(&self, selectors: &ListParams) -> Result<ObjectList<K>> {
        let mut params = ListParams {
            limit: Some(500),
            continue_token: None,
            ..selectors.clone()
        };
        let mut all = self.list(&params).await?;
        while let Some(token) = all.continue_token.take() {
            params.continue_token = Some(token);
            let page = self.list(&params).await?;
            all.items.extend(page.items);
            all.continue_token = page.continue_token;
        }
        Ok(all)
    }

    /// Creates `obj` (in the Api's project, else the object's own). The answer is the stored
    /// object with uid, resourceVersion, generation and creationTimestamp set.
    ///
    /// # Errors
    /// `409 AlreadyExists` when the name is taken ([`ClientError::is_already_exists`]),
    /// `400 Invalid` naming the bad field.
    pub async fn create(&self, obj: &K) -> Result<K> {
        let project = self.project.as_deref().or(obj.meta().project.as_deref());
        if K::SCOPE == Scope::Project && project.is_none() {
            return Err(ClientError::ProjectRequired { kind: K::KIND });
        }
        let url = self.collection_url(project);
        let body = to_json(obj)?;
        self.client
            .send_json(reqwest::Method::POST, &url, Some((JSON, body)))
            .await
    }

    /// Replaces `obj` (spec, labels, annotations, finalizers, ...; not status). When
    /// `obj.metadata.resourceVersion` is set it must still be the stored one.
    ///
    /// # Errors
    /// `409 Conflict` when it is stale ([`ClientError::is_conflict`]).
    pub async fn replace(&self, obj: &K) -> Result<K> {
        let url = self.url_of(obj)?;
        self.client
            .send_json(reqwest::Method::PUT, &url, Some((JSON, to_json(obj)?)))
            .await
    }

    /// Replaces only `obj.status`, with the same resourceVersion precondition as
    /// [`Api::replace`].
    pub async fn replace_status(&self, obj: &K) -> Result<K> {
        let url = format!("{}/status", self.url_of(obj)?);
        self.client
            .send_json(reqwest::Method::PUT, &url, Some((JSON, to_json(obj)?)))
            .await
    }

    /// Applies a JSON merge patch (RFC 7386) to the stored object. A
    /// `metadata.resourceVersion` in the patch is a precondition.
    ///
    /// # Errors
    /// `409 Conflict` when that precondition fails, `404` when the object is gone.
    pub async fn patch(&self, name: &str, patch: &Value) -> Result<K> {
        let url = self.object_url(None, name)?;
        self.client
            .send_json(
                reqwest::Method::PATCH,
                &url,
                Some((MERGE_PATCH, patch.to_string().into_bytes())),
            )
            .await
    }

    /// Applies a JSON merge patch to the status of the stored object.
    pub async fn patch_status(&self, name: &str, patch: &Value) -> Result<K> {
        let url = format!("{}/status", self.object_url(None, name)?);
        self.client
            .send_json(
                reqwest::Method::PATCH,
                &url,
                Some((MERGE_PATCH, patch.to_string().into_bytes())),
            )
            .await
    }

    /// Deletes an object. With finalizers pending the answer is the object, still there, with
    /// `deletionTimestamp` set; otherwise it is the object's last state.
    pub async fn delete(&self, name: &str) -> Result<K> {
        let url = self.object_url(None, name)?;
        self.client
            .send_json(reqwest::Method::DELETE, &url, None)
            .await
    }

    /// [`Self::delete`] of the object only while it is the one with `uid`: a cleanup that
    /// names an object must not take a newer one that reuses its name (a `409` then).
    pub async fn delete_if_uid(&self, name: &str, uid: &str) -> Result<K> {
        let url = self.object_url(None, name)?;
        let options = serde_json::json!({"preconditions": {"uid": uid}});
        self.client
            .send_json(
                reqwest::Method::DELETE,
                &url,
                Some((JSON, options.to_string().into_bytes())),
            )
            .await
    }

    /// Watches the collection for changes after `resource_version` (`"0"` or empty: the
    /// current objects first, as `Added`), optionally filtered by a label selector.
    ///
    /// # Errors
    /// The stream yields one `Err` and ends when the watch can't start (a compacted revision
    /// is `410 Gone`), when the server reports an error event (compaction during the watch is
    /// a `410`), or when the connection breaks or sends something unreadable. It ends without
    /// an error when the server closes it.
    pub fn watch(
        &self,
        resource_version: &str,
        label_selector: Option<&str>,
    ) -> impl Stream<Item = Result<WatchEvent<K>>> + Send + 'static + use<K> {
        let selectors = ListParams {
            label_selector: label_selector.map(str::to_string),
            ..ListParams::default()
        };
        self.watch_matching(resource_version, &selectors)
    }

    /// [`Api::watch`] with the label and field selectors of `selectors`.
    pub fn watch_matching(
        &self,
        resource_version: &str,
        selectors: &ListParams,
    ) -> impl Stream<Item = Result<WatchEvent<K>>> + Send + 'static + use<K> {
        let mut url = format!(
            "{}?watch=true&resourceVersion={}",
            self.collection_url(self.project.as_deref()),
            encode(resource_version)
        );
        if let Some(selector) = &selectors.label_selector {
            url.push_str("&labelSelector=");
            url.push_str(&encode(selector));
        }
        if let Some(selector) = &selectors.field_selector {
            url.push_str("&fieldSelector=");
            url.push_str(&encode(selector));
        }
        let client = self.client.clone();
        async_stream::stream! {
            let response = match client.send(reqwest::Method::GET, &url, None).await {
                Ok(response) => response,
                Err(err) => {
                    yield Err(err);
                    return;
                }
            };
            let mut body = response.bytes_stream();
            let mut buffer = BytesMut::new();
            while let Some(chunk) = body.next().await {
                let chunk = match chunk {
                    Ok(chunk) => chunk,
                    Err(source) => {
                        yield Err(ClientError::Http { method: "GET".into(), url: url.clone(), source });
                        return;
                    }
                };
                buffer.extend_from_slice(&chunk);
                while let Some(pos) = buffer.iter().position(|b| *b == b'\n') {
                    let line = buffer.split_to(pos + 1);
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    match parse_watch_line::<K>(&url, &line) {
                        Ok(event) => yield Ok(event),
                        Err(err) => {
                            yield Err(err);
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// Decodes one line of a watch stream; an `ERROR` event becomes the Status it carries.
fn parse_watch_line<K: Resource>(url: &str, line: &[u8]) -> Result<WatchEvent<K>> {
    #[derive(serde::Deserialize)]
    struct Line {
        #[serde(rename = "type")]
        type_: String,
        object: Value,
    }
    let decode = |source| ClientError::Decode {
        url: url.to_string(),
        source,
    };
    let line: Line = serde_json::from_slice(line).map_err(decode)?;
    let typed = |object: Value| serde_json::from_value::<K>(object).map_err(decode);
    match line.type_.as_str() {
        "ADDED" => Ok(WatchEvent::Added(typed(line.object)?)),
        "MODIFIED" => Ok(WatchEvent::Modified(typed(line.object)?)),
        "DELETED" => Ok(WatchEvent::Deleted(typed(line.object)?)),
        "BOOKMARK" => {
            let resource_version = line
                .object
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            Ok(WatchEvent::Bookmark { resource_version })
        }
        "ERROR" => {
            let code = line
                .object
                .get("code")
                .and_then(Value::as_u64)
                .unwrap_or(500) as u16;
            Err(ClientError::from_status(
                code,
                line.object.to_string().as_bytes(),
            ))
        }
        other => Err(ClientError::Decode {
            url: url.to_string(),
            source: serde::de::Error::custom(format!("unknown watch event type {other:?}")),
        }),
    }
}

fn to_json<K: Resource>(obj: &K) -> Result<Vec<u8>> {
    serde_json::to_vec(obj).map_err(|e| ClientError::InvalidObject(e.to_string()))
}

/// `base` followed by `segments`, each one percent-encoded as a single path segment: what
/// [`Client::url`] builds, for callers holding only a base URL.
///
/// # Errors
/// [`ClientError::InvalidObject`] for an empty, `.` or `..` segment.
pub fn url_from_segments(base: &str, segments: &[&str]) -> Result<String> {
    let mut url = base.trim_end_matches('/').to_string();
    for segment in segments {
        if matches!(*segment, "" | "." | "..") {
            return Err(ClientError::InvalidObject(format!(
                "{segment:?} cannot be a URL path segment (empty or a dot segment)"
            )));
        }
        url.push('/');
        url.push_str(&encode(segment));
    }
    Ok(url)
}

/// `value` percent-encoded for a query string value (unreserved characters stay).
pub fn encode_query_value(value: &str) -> String {
    encode(value)
}

/// Percent-encodes a path segment or query value.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use cirrus_crds::{Flavor, Server};

    #[test]
    fn urls_follow_scope() {
        let client = Client::new("http://h:1/");
        let flavors = Api::<Flavor>::in_project(client.clone(), "ignored");
        assert_eq!(flavors.project(), None);
        assert_eq!(
            flavors.object_url(None, "m1").unwrap(),
            "http://h:1/apis/cirrus.dev/v1/flavors/m1"
        );
        let servers = Api::<Server>::in_project(client.clone(), "demo");
        assert_eq!(
            servers.object_url(None, "vm").unwrap(),
            "http://h:1/apis/cirrus.dev/v1/projects/demo/servers/vm"
        );
        let all = Api::<Server>::all(client);
        assert_eq!(
            all.collection_url(None),
            "http://h:1/apis/cirrus.dev/v1/servers"
        );
        assert!(matches!(
            all.object_url(None, "vm"),
            Err(ClientError::ProjectRequired { kind: "Server" })
        ));
    }

    #[test]
    fn parses_watch_lines() {
        let line = br#"{"type":"ADDED","object":{"apiVersion":"cirrus.dev/v1","kind":"Flavor","metadata":{"name":"a","resourceVersion":"7"},"spec":{"vcpus":1,"ram":512}}}"#;
        let event = parse_watch_line::<Flavor>("u", line).unwrap();
        assert!(matches!(&event, WatchEvent::Added(f) if f.metadata.name == "a"));
        assert_eq!(event.resource_version(), Some("7"));
        let bookmark = br#"{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"9"}}}"#;
        assert_eq!(
            parse_watch_line::<Flavor>("u", bookmark).unwrap(),
            WatchEvent::Bookmark {
                resource_version: "9".into()
            }
        );
        let gone = br#"{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired","message":"too old"}}"#;
        assert!(parse_watch_line::<Flavor>("u", gone).unwrap_err().is_gone());
        assert!(matches!(
            parse_watch_line::<Flavor>("u", b"nope"),
            Err(ClientError::Decode { .. })
        ));
    }

    #[test]
    fn encodes_queries() {
        assert_eq!(encode("a in (x,y)"), "a%20in%20%28x%2Cy%29");
    }

    #[test]
    fn urls_are_built_from_whole_segments() {
        let client = Client::new("http://127.0.0.1:6443/");
        assert_eq!(
            client
                .url(&[
                    "apis",
                    "cirrus.dev",
                    "v1",
                    "projects",
                    "demo",
                    "images",
                    "web"
                ])
                .unwrap(),
            "http://127.0.0.1:6443/apis/cirrus.dev/v1/projects/demo/images/web"
        );
        // Nothing inside a segment can reach another route.
        let url = client
            .url(&["projects", "../admin", "x?y#z", "%2e%2e", "a%2Fb"])
            .unwrap();
        assert_eq!(
            url,
            "http://127.0.0.1:6443/projects/..%2Fadmin/x%3Fy%23z/%252e%252e/a%252Fb"
        );
        let parsed = reqwest::Url::parse(&url).unwrap();
        assert_eq!(parsed.path_segments().unwrap().count(), 5);
        // Dot and empty segments, which URL parsers resolve or collapse, are refused.
        for bad in ["..", ".", ""] {
            assert!(client.url(&["a", bad, "b"]).is_err(), "{bad:?}");
        }
    }
}
