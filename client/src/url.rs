//! The one way native-API URLs are built: whole path segments, each percent-encoded, and
//! query values encoded the same way. Typed and dynamic Apis, image data and consoles all go
//! through here, so a name can never reach another route.

use cirrus_crds::{API_VERSION, KindInfo, Scope};

use crate::{ClientError, ListParams, Result};

/// `base` followed by `segments`, each one percent-encoded as a single path segment: what
/// [`crate::Client::url`] builds, for callers holding only a base URL.
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

/// URL of the collection of `kind` under `base`: in `project` for a project-scoped kind, else
/// across projects (or cluster-wide).
///
/// # Errors
/// A project that is not a single path segment.
pub(crate) fn collection_url(base: &str, kind: &KindInfo, project: Option<&str>) -> Result<String> {
    let (group, version) = API_VERSION
        .split_once('/')
        .expect("the API version is group/version");
    match (kind.scope, project) {
        (Scope::Project, Some(project)) => url_from_segments(
            base,
            &["apis", group, version, "projects", project, kind.plural],
        ),
        _ => url_from_segments(base, &["apis", group, version, kind.plural]),
    }
}

/// URL of one object of `kind` (a project-scoped kind needs a project), followed by
/// `subresource` segments (`status`, `file`, `console`).
///
/// # Errors
/// [`ClientError::ProjectRequired`] without a project for a project-scoped kind,
/// [`ClientError::InvalidObject`] for an empty name or one that is a dot segment.
pub(crate) fn object_url(
    base: &str,
    kind: &KindInfo,
    project: Option<&str>,
    name: &str,
    subresource: &[&str],
) -> Result<String> {
    if kind.scope == Scope::Project && project.is_none() {
        return Err(ClientError::ProjectRequired { kind: kind.kind });
    }
    if name.is_empty() {
        return Err(ClientError::InvalidObject(format!(
            "a {} needs a name",
            kind.kind
        )));
    }
    let mut segments = vec![name];
    segments.extend_from_slice(subresource);
    url_from_segments(&collection_url(base, kind, project)?, &segments)
}

/// A query string being built: `?key=value&...`, every value encoded.
#[derive(Debug, Default)]
pub(crate) struct Query(Vec<String>);

impl Query {
    /// Adds `key=value`.
    pub(crate) fn push(&mut self, key: &str, value: &str) -> &mut Self {
        self.0.push(format!("{key}={}", encode(value)));
        self
    }

    /// Adds `key=value` when `value` is given and not empty (the API reads an empty
    /// selector, token or revision as none).
    pub(crate) fn push_opt(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            self.push(key, value);
        }
        self
    }

    /// The selectors, page size and continue token of a list call.
    pub(crate) fn list(params: &ListParams) -> Self {
        let mut query = Self::default();
        query
            .push_opt("fieldSelector", params.field_selector.as_deref())
            .push_opt("labelSelector", params.label_selector.as_deref());
        if let Some(limit) = params.limit {
            query.push("limit", &limit.to_string());
        }
        query.push_opt("continue", params.continue_token.as_deref());
        query
    }

    /// The query of a watch from `resource_version` (empty: from now, current objects
    /// first) with the selectors of `params`.
    pub(crate) fn watch(resource_version: &str, params: &ListParams) -> Self {
        let mut query = Self::default();
        query
            .push("watch", "true")
            .push_opt("resourceVersion", Some(resource_version))
            .push_opt("labelSelector", params.label_selector.as_deref())
            .push_opt("fieldSelector", params.field_selector.as_deref());
        query
    }

    /// `url` with this query appended.
    pub(crate) fn on(&self, url: String) -> String {
        if self.0.is_empty() {
            return url;
        }
        format!("{url}?{}", self.0.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cirrus_crds::{Flavor, Resource, Server};

    #[test]
    fn encodes_queries() {
        assert_eq!(encode("a in (x,y)"), "a%20in%20%28x%2Cy%29");
        let params = ListParams::default().labels("app=web").limit(5);
        assert_eq!(
            Query::list(&params).on("u".into()),
            "u?labelSelector=app%3Dweb&limit=5"
        );
        assert_eq!(
            Query::watch("", &ListParams::default().labels("")).on("u".into()),
            "u?watch=true",
            "an empty revision or selector is left out"
        );
    }

    #[test]
    fn urls_follow_scope() {
        let base = "http://h:1";
        assert_eq!(
            object_url(base, Flavor::info(), Some("ignored"), "m1", &[]).unwrap(),
            "http://h:1/apis/cirrus.dev/v1/flavors/m1"
        );
        assert_eq!(
            object_url(base, Server::info(), Some("demo"), "vm", &["console"]).unwrap(),
            "http://h:1/apis/cirrus.dev/v1/projects/demo/servers/vm/console"
        );
        assert!(matches!(
            object_url(base, Server::info(), None, "vm", &[]),
            Err(ClientError::ProjectRequired { kind: "Server" })
        ));
        assert!(object_url(base, Server::info(), Some(".."), "vm", &[]).is_err());
    }
}
