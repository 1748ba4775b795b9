//! Block storage (Cinder v3.0) over `Volume` and `VolumeSnapshot` objects.
//!
//! Routes live under `/volume/v3/{project_id}/…` (the catalog URL carries the project, as
//! Cinder's does). The path's project must be the token's, except for cloud admins: any
//! other project answers `404` like every lookup outside the caller's project. Errors use
//! Nova's fault shape (`{"itemNotFound": {"code": 404, "message": …}}`), as Cinder does.
//!
//! - [`discovery`]: version documents (`/volume`, `/volume/v3`), anonymous.
//! - [`volumes`]: create/list/detail/show/update/delete and `metadata`.
//! - [`actions`]: `POST /volumes/{id}/action` (`os-extend`, `os-attach`, `os-detach`,
//!   `os-set_bootable`, `os-reset_status`, `os-force_delete`).
//! - [`snapshots`]: snapshots and their `metadata`.
//! - [`metadata`]: the `…/metadata[/{key}]` routes of both.
//! - [`types`]: one read-only volume type per storage backend.
//! - [`quotas`]: `os-quota-sets` and `limits`, `os-availability-zone`.
//! - [`attach`]: attaching means adding an entry to `Server.spec.volumes` — shared with
//!   Nova's `os-volume_attachments`.
//! - [`render`]: objects → Cinder bodies, and the statuses derived from spec and status.
//!
//! Every response carries `OpenStack-API-Version: volume 3.0` and `Vary`; a request asking
//! for another microversion gets `406` ([`negotiate`]).

pub(crate) mod actions;
pub(crate) mod attach;
pub(crate) mod discovery;
pub(crate) mod metadata;
pub(crate) mod quotas;
pub(crate) mod render;
pub(crate) mod snapshots;
pub(crate) mod types;
pub(crate) mod volumes;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cirrus_auth::Action;
use cirrus_crds::KindInfo;
use cirrus_crds::Resource as _;
use serde_json::Value;

use crate::ApiState;
use crate::auth::Caller;
use crate::openstack::common;
use crate::openstack::fault::{Dialect, Fault};

/// The one error dialect of this service (Nova's fault shape; quota refusals are 413).
pub(crate) const DIALECT: Dialect = Dialect::Volume;

/// The microversion header Cinder reads and answers.
pub const VERSION_HEADER: &str = "openstack-api-version";

/// The only microversion served (minimum and maximum).
pub const VERSION: &str = "3.0";

/// Annotation recording the OpenStack user that created a volume or snapshot (`user_id`).
pub const USER_ANNOTATION: &str = "openstack.org/user-id";

/// Prefix of every project-scoped route.
const P: &str = "/volume/v3/{project_id}";

/// The block-storage routes (version documents included).
pub fn router() -> Router<ApiState> {
    let r = |path: &str| format!("{P}{path}");
    Router::new()
        .route("/volume", get(discovery::root))
        .route("/volume/", get(discovery::root))
        .route("/volume/v3", get(discovery::v3))
        .route("/volume/v3/", get(discovery::v3))
        .route(P, get(discovery::v3))
        .route(&r("/"), get(discovery::v3))
        .route(
            &r("/volumes"),
            get(volumes::list::<false>).post(volumes::create),
        )
        .route(&r("/volumes/detail"), get(volumes::list::<true>))
        .route(
            &r("/volumes/{volume_id}"),
            get(volumes::show)
                .put(volumes::update)
                .delete(volumes::delete),
        )
        .route(&r("/volumes/{volume_id}/action"), post(actions::action))
        .route(
            &r("/volumes/{volume_id}/metadata"),
            get(metadata::show_all::<metadata::OfVolume>)
                .post(metadata::merge_all::<metadata::OfVolume>)
                .put(metadata::replace_all::<metadata::OfVolume>),
        )
        .route(
            &r("/volumes/{volume_id}/metadata/{key}"),
            get(metadata::show_item::<metadata::OfVolume>)
                .put(metadata::set_item::<metadata::OfVolume>)
                .delete(metadata::remove_item::<metadata::OfVolume>),
        )
        .route(
            &r("/snapshots"),
            get(snapshots::list::<false>).post(snapshots::create),
        )
        .route(&r("/snapshots/detail"), get(snapshots::list::<true>))
        .route(
            &r("/snapshots/{snapshot_id}"),
            get(snapshots::show)
                .put(snapshots::update)
                .delete(snapshots::delete),
        )
        .route(
            &r("/snapshots/{snapshot_id}/metadata"),
            get(metadata::show_all::<metadata::OfSnapshot>)
                .post(metadata::merge_all::<metadata::OfSnapshot>)
                .put(metadata::replace_all::<metadata::OfSnapshot>),
        )
        .route(
            &r("/snapshots/{snapshot_id}/metadata/{key}"),
            get(metadata::show_item::<metadata::OfSnapshot>)
                .put(metadata::set_item::<metadata::OfSnapshot>)
                .delete(metadata::remove_item::<metadata::OfSnapshot>),
        )
        .route(&r("/types"), get(types::list))
        .route(&r("/types/{type_id}"), get(types::show))
        .route(
            &r("/os-quota-sets/{target}"),
            get(quotas::show).put(quotas::update).delete(quotas::delete),
        )
        .route(
            &r("/os-quota-sets/{target}/defaults"),
            get(quotas::defaults),
        )
        .route(&r("/limits"), get(quotas::limits))
        .route(&r("/os-availability-zone"), get(quotas::availability_zones))
        .layer(axum::middleware::from_fn(version_header))
}

/// The microversion a request's `OpenStack-API-Version` header asks of the volume service:
/// `Ok` when it is absent, names another service, is `latest` or is exactly 3.0; `400` when
/// unparseable, `406` for a version not served.
pub fn negotiate(header: Option<&str>) -> Result<(), Fault> {
    let Some(header) = header else {
        return Ok(());
    };
    for entry in header.split(',') {
        let mut words = entry.split_whitespace();
        let (Some(service), Some(version)) = (words.next(), words.next()) else {
            continue;
        };
        if !service.eq_ignore_ascii_case("volume") && !service.eq_ignore_ascii_case("block-storage")
        {
            continue;
        }
        if version.eq_ignore_ascii_case("latest") {
            return Ok(());
        }
        let parsed = version
            .split_once('.')
            .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)));
        return match parsed {
            Some((3, 0)) => Ok(()),
            Some(_) => Err(Fault::new(
                DIALECT,
                StatusCode::NOT_ACCEPTABLE,
                format!(
                    "Version {version} is not supported by the API. Minimum is {VERSION} and \
                     maximum is {VERSION}."
                ),
            )),
            None => Err(Fault::bad_request(
                DIALECT,
                format!(
                    "API Version String {version} is of invalid format. Must be of format MajorNum.MinorNum."
                ),
            )),
        };
    }
    Ok(())
}

/// Middleware: refuses microversions not served and stamps `OpenStack-API-Version` and
/// `Vary` on every answer.
async fn version_header(request: Request, next: Next) -> Response {
    let asked = request
        .headers()
        .get(VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut response = match negotiate(asked.as_deref()) {
        Ok(()) => next.run(request).await,
        Err(fault) => fault.into_response(),
    };
    let headers = response.headers_mut();
    headers.insert(VERSION_HEADER, HeaderValue::from_static("volume 3.0"));
    headers.append(
        header::VARY,
        HeaderValue::from_static("OpenStack-API-Version"),
    );
    response
}

/// Who acts, in which project: the path's project, checked against the token.
#[derive(Clone, Debug)]
pub(crate) struct Ctx {
    /// The project the request acts in (the path's).
    pub project: String,
    /// Cloud admin: may see and act on every project.
    pub admin: bool,
    /// The user's name (`user_id`).
    pub user: String,
    /// The caller, for the writes admission judges.
    pub caller: Caller,
}

impl Ctx {
    /// Authorizes `action` in the path's `project_id`: another project is `404`, a reader
    /// writing `403`; a node agent's token is refused.
    pub fn new(caller: &Caller, project_id: &str, action: Action) -> Result<Self, Fault> {
        let Some(user) = caller.user() else {
            return Err(Fault::forbidden(
                DIALECT,
                "The block-storage API serves users, not node agents.",
            ));
        };
        caller
            .check(action, Some(project_id))
            .map_err(|r| Fault::refused(DIALECT, r, &format!("Project {project_id}")))?;
        Ok(Self {
            project: project_id.to_string(),
            admin: caller.is_cloud_admin(),
            user: user.name.clone(),
            caller: caller.clone(),
        })
    }
}

/// The `Volume` kind.
pub(crate) fn volume_kind() -> &'static KindInfo {
    cirrus_crds::Volume::info()
}

/// The `VolumeSnapshot` kind.
pub(crate) fn snapshot_kind() -> &'static KindInfo {
    cirrus_crds::VolumeSnapshot::info()
}

/// The `Server` kind.
pub(crate) fn server_kind() -> &'static KindInfo {
    cirrus_crds::Server::info()
}

/// A native error in this service's dialect.
pub(crate) fn api_fault(error: impl Into<crate::error::ApiError>) -> Fault {
    Fault::from_api(DIALECT, error.into())
}

/// The project an object lives in (`metadata.project`).
pub(crate) fn project_of(object: &Value) -> String {
    object
        .pointer("/metadata/project")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The object of `kind` whose id (uid, or name) is `id`, in `project`; cloud admins
/// (`admin`) also find other projects' objects by uid.
pub(crate) async fn find(
    state: &ApiState,
    kind: &'static KindInfo,
    project: &str,
    admin: bool,
    id: &str,
) -> Result<Option<Value>, Fault> {
    if let Some(found) = common::find_by_uid(state, kind, Some(project), id)
        .await
        .map_err(api_fault)?
    {
        return Ok(Some(found));
    }
    if !admin {
        return Ok(None);
    }
    let all = common::list(state, kind, None).await.map_err(api_fault)?;
    Ok(all.into_iter().find(|o| common::uid(o) == id))
}

/// Read-modify-write of one object: `change` edits the stored object, which is written back
/// conditionally on its resourceVersion; a lost race reads again and retries.
pub(crate) async fn modify(
    state: &ApiState,
    caller: &Caller,
    kind: &'static KindInfo,
    project: &str,
    name: &str,
    change: impl FnMut(&mut Value) -> Result<(), Fault>,
) -> Result<Value, Fault> {
    let to_fault = |e: crate::error::ApiError| {
        if e.code() == StatusCode::CONFLICT {
            Fault::conflict(
                DIALECT,
                format!("{} {name} keeps changing; try again.", kind.kind),
            )
        } else {
            api_fault(e)
        }
    };
    common::update_object(state, caller, kind, project, name, 16, to_fault, change).await
}

/// `true`/`false` as OpenStack services parse them (`oslo_utils.strutils.bool_from_string`,
/// strict): JSON booleans, or the strings `true/false/yes/no/on/off/1/0` in any case.
pub(crate) fn parse_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_i64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "1" | "t" | "true" | "on" | "y" | "yes" => Some(true),
            "0" | "f" | "false" | "off" | "n" | "no" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A query flag such as `all_tenants`: present and true-ish.
pub(crate) fn query_flag(query: &std::collections::HashMap<String, String>, key: &str) -> bool {
    query
        .get(key)
        .is_some_and(|v| v.is_empty() || parse_bool(&Value::from(v.as_str())) == Some(true))
}

/// The non-null member `key` of a request object (clients send `null` for unset fields).
pub(crate) fn field<'a>(body: &'a Value, key: &str) -> Option<&'a Value> {
    body.get(key).filter(|v| !v.is_null())
}

/// A string member `key`, `400` naming it when it is not a string.
pub(crate) fn string_field(body: &Value, key: &str) -> Result<Option<String>, Fault> {
    match field(body, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(Fault::bad_request(
            DIALECT,
            format!(
                "Invalid input for field/attribute {key}. Value: {other}. It must be a string."
            ),
        )),
    }
}

/// A `metadata` member: an object of strings, `400` naming the bad key otherwise.
pub(crate) fn metadata_field(
    body: &Value,
    key: &str,
) -> Result<Option<std::collections::BTreeMap<String, String>>, Fault> {
    let Some(value) = field(body, key) else {
        return Ok(None);
    };
    let Some(map) = value.as_object() else {
        return Err(Fault::bad_request(
            DIALECT,
            format!(
                "Invalid input for field/attribute {key}. Value: {value}. It must be an object of strings."
            ),
        ));
    };
    let mut out = std::collections::BTreeMap::new();
    for (k, v) in map {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => {
                return Err(Fault::bad_request(
                    DIALECT,
                    format!(
                        "Invalid input for field/attribute {key}. Value of {k:?} is {other}; it must be a string."
                    ),
                ));
            }
        };
        out.insert(k.clone(), text);
    }
    Ok(Some(out))
}

/// The object under `key` of a request body (`{"volume": {...}}`), `400` when missing.
pub(crate) fn envelope<'a>(body: &'a Value, key: &str) -> Result<&'a Value, Fault> {
    body.get(key).filter(|v| v.is_object()).ok_or_else(|| {
        Fault::bad_request(
            DIALECT,
            format!("Missing required element '{key}' in request body."),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn microversions_other_than_3_0_are_refused() {
        assert!(negotiate(None).is_ok());
        assert!(negotiate(Some("volume 3.0")).is_ok());
        assert!(negotiate(Some("volume latest")).is_ok());
        assert!(
            negotiate(Some("compute 2.90")).is_ok(),
            "another service's version"
        );
        assert_eq!(
            negotiate(Some("volume 3.42")).unwrap_err().code,
            StatusCode::NOT_ACCEPTABLE
        );
        assert_eq!(
            negotiate(Some("compute 2.1, volume 3.5")).unwrap_err().code,
            StatusCode::NOT_ACCEPTABLE
        );
        assert_eq!(
            negotiate(Some("volume three")).unwrap_err().code,
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn booleans_parse_like_oslo() {
        assert_eq!(parse_bool(&json!(true)), Some(true));
        assert_eq!(parse_bool(&json!("False")), Some(false));
        assert_eq!(parse_bool(&json!("yes")), Some(true));
        assert_eq!(parse_bool(&json!("maybe")), None);
        assert_eq!(parse_bool(&json!(null)), None);
    }

    #[test]
    fn metadata_must_be_strings() {
        let body = json!({"metadata": {"a": "1", "b": 2}});
        let map = metadata_field(&body, "metadata").unwrap().unwrap();
        assert_eq!(map.get("b").map(String::as_str), Some("2"));
        let bad = json!({"metadata": {"a": {"x": 1}}});
        let err = metadata_field(&bad, "metadata").unwrap_err();
        assert!(err.message.contains("\"a\""), "{}", err.message);
        assert!(
            metadata_field(&json!({"metadata": null}), "metadata")
                .unwrap()
                .is_none()
        );
    }
}
