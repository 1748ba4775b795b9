//! Glance's image API v2 (`/image/v2/...`) over `Image` objects.
//!
//! - **Ids and owners.** An image's id is its `metadata.uid`; its owner is the project it
//!   lives in; its name is [`common::display_name`] (Glance names are free text and need not
//!   be unique, so the object name is the name when free and valid, else generated).
//! - **Visibility** is `spec.visibility`, as in Glance: the owner project sees its images;
//!   every project sees `public` ones and `shared` ones naming it in `spec.members`;
//!   `community` ones are reachable by id everywhere but listed only for the owner (or with
//!   `?visibility=community`). Cloud admins see everything. Anything else is `404`. Only
//!   admins may make an image `public` (`403`, as Glance). Writes need a member of the owner
//!   project.
//! - **Data** goes through the native upload/download ([`crate::images`]): streamed into
//!   the blob store, checked against `disk_format` with `qemu-img`, content-addressed by
//!   SHA-256. So `os_hash_algo` is `sha256` (Glance's `hashing_algorithm` option; clients
//!   verify with whatever algorithm the image names) and `checksum` is the MD5.
//! - **Updates** are JSON patches (`application/openstack-images-v2.1-json-patch`, applied by
//!   [`super::json_patch`])
//!   to the image's Glance document; the difference is written back to the object with a
//!   compare-and-swap on its `resourceVersion`. Read-only attributes answer `403`.
//! - **Members** of shared images and their answers: [`super::image_members`].
//! - **Extra properties** (any top-level key Glance does not define) are strings kept in
//!   `spec.properties`.

use cirrus_crds::Resource as _;
use std::collections::{BTreeSet, HashMap};

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cirrus_auth::Action;
use cirrus_crds::{Image, KindInfo, MemberStatus};
use serde_json::{Map, Value, json};

use crate::ApiState;
use crate::auth::Caller;
use crate::openstack::common::{self, NAME_ANNOTATION};
use crate::openstack::fault::{Dialect, Fault};
use crate::openstack::{json_patch, paging, query_string};

const D: Dialect = Dialect::Image;

/// Glance's default page size (`limit_param_default`).
const DEFAULT_LIMIT: usize = 25;
/// Glance's largest page (`api_limit_max`).
const MAX_LIMIT: usize = 1000;
/// How Glance reads `limit`: [`DEFAULT_LIMIT`] unless given, at most [`MAX_LIMIT`].
const LIMIT: paging::LimitRule = paging::LimitRule {
    default: Some(DEFAULT_LIMIT),
    max: Some(MAX_LIMIT),
    zero_means_all: false,
};

/// The JSON-patch media types Glance accepts on `PATCH`.
const PATCH_TYPES: &[&str] = &[
    "application/openstack-images-v2.1-json-patch",
    "application/openstack-images-v2.0-json-patch",
];

/// Disk formats Glance knows (and `Image.spec.diskFormat` stores).
const DISK_FORMATS: &[&str] = &[
    "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop",
];
/// Container formats Glance knows.
const CONTAINER_FORMATS: &[&str] = &[
    "ami",
    "ari",
    "aki",
    "bare",
    "ovf",
    "ova",
    "docker",
    "compressed",
];
/// Image attributes only the server sets.
const READ_ONLY: &[&str] = &[
    "id",
    "status",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "size",
    "virtual_size",
    "created_at",
    "updated_at",
    "self",
    "file",
    "schema",
    "direct_url",
    "locations",
    "os_hidden",
    "stores",
];
/// Attributes a client may set, besides extra properties.
const WRITABLE: &[&str] = &[
    "name",
    "visibility",
    "protected",
    "tags",
    "min_disk",
    "min_ram",
    "disk_format",
    "container_format",
];

mod list;
mod update;

use list::list;
use update::update;

/// The image routes: version documents under `/image`, the v2 API under `/image/v2`.
pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/image", get(root_versions))
        .route("/image/", get(root_versions))
        .route("/image/versions", get(versions))
        .route("/image/v2/images", get(list).post(create))
        .route(
            "/image/v2/images/{id}",
            get(show).patch(update).delete(delete),
        )
        .route("/image/v2/images/{id}/file", get(download).put(upload))
        .merge(super::image_members::router())
        .route("/image/v2/schemas/image", get(image_schema))
        .route("/image/v2/schemas/images", get(images_schema))
}

pub(super) fn kind() -> &'static KindInfo {
    cirrus_crds::Image::info()
}

pub(super) fn api_error(e: crate::error::ApiError) -> Fault {
    Fault::from_api(D, e)
}

pub(super) fn not_found(id: &str) -> Fault {
    Fault::not_found(D, format!("No image found with ID {id}"))
}

/// `GET /image`, `/image/versions`: the v2 versions, newest `CURRENT`.
/// `GET /image/`: the version list with Glance's `300 Multiple Choices` (tempest checks it;
/// `/image/versions` answers the same list with `200`).
async fn root_versions(headers: HeaderMap) -> Response {
    (StatusCode::MULTIPLE_CHOICES, versions(headers).await).into_response()
}

/// `GET /image/versions`: the API versions served.
async fn versions(headers: HeaderMap) -> Json<Value> {
    let href = format!("{}/image/v2/", common::base_url(&headers));
    let versions: Vec<Value> = (0..=9)
        .rev()
        .map(|minor| {
            json!({
                "id": format!("v2.{minor}"),
                "status": if minor == 9 { "CURRENT" } else { "SUPPORTED" },
                "links": [{"rel": "self", "href": href}],
            })
        })
        .collect();
    Json(json!({ "versions": versions }))
}

/// The project the caller acts in; Glance needs a project-scoped token.
fn scope(caller: &Caller) -> Result<&str, Fault> {
    caller
        .project()
        .ok_or_else(|| Fault::forbidden(D, "Images need a token scoped to a project."))
}

pub(super) fn owner(image: &Value) -> &str {
    image
        .pointer("/metadata/project")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn visibility(image: &Value) -> &str {
    image["spec"]["visibility"].as_str().unwrap_or("private")
}

/// The typed image of a stored document (its metadata and spec), for the visibility rules
/// that live with the kind; `None` for a document that does not parse (shown to no one).
pub(crate) fn typed(image: &Value) -> Option<Image> {
    let meta = serde_json::from_value(image.get("metadata")?.clone()).ok()?;
    let spec = serde_json::from_value(image.get("spec")?.clone()).ok()?;
    Some(Image::new(meta, spec))
}

/// Whether the caller (admin, or acting in `project`) may see `image` at all
/// ([`Image::visible_to`]: a share whatever the member's answer).
fn can_see(admin: bool, project: Option<&str>, image: &Value) -> bool {
    if image.pointer("/metadata/deletionTimestamp").is_some() {
        return false;
    }
    admin || project.is_some_and(|p| typed(image).is_some_and(|i| i.visible_to(p)))
}

/// The image with id `id` the caller may see, else `404`.
pub(super) async fn find(state: &ApiState, caller: &Caller, id: &str) -> Result<Value, Fault> {
    let project = caller.project();
    common::list(state, kind(), None)
        .await
        .map_err(api_error)?
        .into_iter()
        .find(|i| common::uid(i) == id)
        .filter(|i| can_see(caller.is_cloud_admin(), project, i))
        .ok_or_else(|| not_found(id))
}

/// Writes the merge patch `patch` to `image` through the native admission, as `caller`: the
/// one write of every Glance change (attributes, members).
pub(super) async fn write_patch(
    state: &ApiState,
    caller: &Caller,
    image: &Value,
    patch: &Value,
) -> Result<Value, crate::error::ApiError> {
    crate::resources::write(
        state,
        crate::admission::Writer::Caller(caller),
        kind(),
        Some(owner(image)),
        &common::name(image),
        crate::resources::Change::MergePatch(patch),
        cirrus_store::objects::Part::Main,
        false,
    )
    .await
}

/// `Ok` when the caller may change `image` (a member of its project, or an admin); `403`
/// for images it only sees.
pub(super) fn check_write(caller: &Caller, image: &Value) -> Result<(), Fault> {
    caller
        .check(Action::Write, Some(owner(image)))
        .map_err(|_| {
            Fault::forbidden(
                D,
                format!(
                    "You are not permitted to modify image {}: it belongs to another project or your role is read-only.",
                    common::uid(image)
                ),
            )
        })
}

fn phase(image: &Value) -> String {
    image
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("queued")
        .to_string()
}

/// When the image last changed, as far as the object tells: its creation or the last
/// condition transition.
fn updated_at(image: &Value) -> Option<String> {
    let created = image
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str);
    let latest = image
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c["lastTransitionTime"].as_str())
        .chain(created)
        .filter_map(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .max()?;
    common::openstack_time(Some(&latest.to_rfc3339()))
}

/// The Glance document of `image`.
pub fn render(image: &Value) -> Value {
    let id = common::uid(image);
    let spec = &image["spec"];
    let status = &image["status"];
    let name = common::display_name(image);
    let mut body = Map::new();
    if let Some(properties) = spec["properties"].as_object() {
        for (key, value) in properties {
            body.insert(key.clone(), value.clone());
        }
    }
    let created = common::openstack_time(
        image
            .pointer("/metadata/creationTimestamp")
            .and_then(Value::as_str),
    );
    let core = json!({
        "id": id,
        "name": name,
        "status": phase(image),
        "visibility": visibility(image),
        "protected": spec["protected"].as_bool().unwrap_or(false),
        "os_hidden": false,
        "owner": owner(image),
        "checksum": status.get("checksum").cloned().unwrap_or(Value::Null),
        "os_hash_algo": status.get("osHashAlgo").cloned().unwrap_or(Value::Null),
        "os_hash_value": status.get("osHashValue").cloned().unwrap_or(Value::Null),
        "size": status.get("size").cloned().unwrap_or(Value::Null),
        "virtual_size": status.get("virtualSize").cloned().unwrap_or(Value::Null),
        "min_disk": spec["minDisk"].as_u64().unwrap_or(0),
        "min_ram": spec["minRam"].as_u64().unwrap_or(0),
        "disk_format": spec["diskFormat"].as_str().unwrap_or("qcow2"),
        "container_format": spec["containerFormat"].as_str().unwrap_or("bare"),
        "tags": spec["tags"].as_array().cloned().unwrap_or_default(),
        "created_at": created,
        "updated_at": updated_at(image),
        "self": format!("/v2/images/{id}"),
        "file": format!("/v2/images/{id}/file"),
        "schema": "/v2/schemas/image",
    });
    for (key, value) in core.as_object().expect("an object") {
        body.insert(key.clone(), value.clone());
    }
    Value::Object(body)
}

/// `GET /v2/images/{id}`.
async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Fault> {
    let image = find(&state, &caller, &id).await?;
    Ok(Json(render(&image)).into_response())
}

/// A validated create request.
#[derive(Debug, Default, PartialEq)]
struct NewImage {
    name: Option<String>,
    owner: Option<String>,
    spec: Map<String, Value>,
}

fn one_of(field: &str, value: &Value, allowed: &[&str]) -> Result<String, Fault> {
    match value.as_str() {
        Some(v) if allowed.contains(&v) => Ok(v.to_string()),
        _ => Err(Fault::bad_request(
            D,
            format!(
                "Invalid value {value} for {field}: use one of {}",
                allowed.join(", ")
            ),
        )),
    }
}

fn count(field: &str, value: &Value) -> Result<u64, Fault> {
    value.as_u64().ok_or_else(|| {
        Fault::bad_request(
            D,
            format!("Invalid value {value} for {field}: must be a non-negative integer"),
        )
    })
}

fn tag_list(value: &Value) -> Result<Vec<String>, Fault> {
    let bad = || Fault::bad_request(D, "tags must be a list of strings of 1 to 255 characters");
    let mut tags: Vec<String> = Vec::new();
    for tag in value.as_array().ok_or_else(bad)? {
        let tag = tag
            .as_str()
            .filter(|t| !t.is_empty() && t.chars().count() <= 255)
            .ok_or_else(bad)?;
        if !tags.iter().any(|t| t == tag) {
            tags.push(tag.to_string());
        }
    }
    Ok(tags)
}

/// Sets the `spec` field for Glance attribute `key` to `value` (validated), or records an
/// extra property. `Ok(false)` for keys that are not spec fields (`name`).
fn set_attribute(
    spec: &mut Map<String, Value>,
    properties: &mut Map<String, Value>,
    key: &str,
    value: &Value,
    admin: bool,
) -> Result<(), Fault> {
    match key {
        "visibility" => {
            let v = one_of(key, value, &["public", "private", "shared", "community"])?;
            if v == "public" && !admin {
                return Err(Fault::forbidden(
                    D,
                    "You are not authorized to complete publicize_image action: only admins may make an image public.",
                ));
            }
            spec.insert("visibility".into(), json!(v));
        }
        "protected" => {
            let p = value.as_bool().ok_or_else(|| {
                Fault::bad_request(
                    D,
                    format!("Invalid value {value} for protected: must be a boolean"),
                )
            })?;
            spec.insert("protected".into(), json!(p));
        }
        "min_disk" => {
            spec.insert("minDisk".into(), json!(count(key, value)?));
        }
        "min_ram" => {
            spec.insert("minRam".into(), json!(count(key, value)?));
        }
        "disk_format" => {
            spec.insert(
                "diskFormat".into(),
                json!(one_of(key, value, DISK_FORMATS)?),
            );
        }
        "container_format" => {
            spec.insert(
                "containerFormat".into(),
                json!(one_of(key, value, CONTAINER_FORMATS)?),
            );
        }
        "tags" => {
            spec.insert("tags".into(), json!(tag_list(value)?));
        }
        _ if READ_ONLY.contains(&key) => {
            return Err(Fault::forbidden(
                D,
                format!("Attribute '{key}' is read-only."),
            ));
        }
        _ => {
            let text = value.as_str().ok_or_else(|| {
                Fault::bad_request(
                    D,
                    format!(
                        "Invalid value {value} for property {key}: extra properties must be strings"
                    ),
                )
            })?;
            if key.is_empty() || key.chars().count() > 255 || text.chars().count() > 255 {
                return Err(Fault::bad_request(
                    D,
                    format!(
                        "Property {key:?}: keys are 1 to 255 characters and values at most 255"
                    ),
                ));
            }
            properties.insert(key.to_string(), json!(text));
        }
    }
    Ok(())
}

/// Validates the body of `POST /v2/images`.
fn parse_create(body: &Value, admin: bool) -> Result<NewImage, Fault> {
    let body = body
        .as_object()
        .ok_or_else(|| Fault::bad_request(D, "The request body must be a JSON object."))?;
    let mut new = NewImage::default();
    let mut properties = Map::new();
    for (key, value) in body {
        match key.as_str() {
            "name" => match value {
                Value::Null => {}
                Value::String(s) if s.chars().count() <= 255 => new.name = Some(s.clone()),
                _ => {
                    return Err(Fault::bad_request(
                        D,
                        "Invalid value for name: must be a string of at most 255 characters",
                    ));
                }
            },
            "id" => {
                return Err(Fault::bad_request(
                    D,
                    "Attribute 'id' cannot be chosen: image ids are assigned by the server.",
                ));
            }
            "owner" => match value {
                Value::Null => {}
                Value::String(s) => new.owner = Some(s.clone()),
                _ => return Err(Fault::bad_request(D, "owner must be a string")),
            },
            "os_hidden" if value == &json!(false) => {}
            "properties" | "members" => {
                return Err(Fault::bad_request(
                    D,
                    format!("Attribute '{key}' is reserved."),
                ));
            }
            _ if value.is_null() => {}
            _ => set_attribute(&mut new.spec, &mut properties, key, value, admin)?,
        }
    }
    if !properties.is_empty() {
        new.spec
            .insert("properties".into(), Value::Object(properties));
    }
    Ok(new)
}

/// `POST /v2/images`: creates a `queued` image in the caller's project (or, for admins, in
/// `owner`'s), `shared` unless the body says otherwise, as Glance does.
async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    body: Bytes,
) -> Result<Response, Fault> {
    let own = scope(&caller)?.to_string();
    let mut new = parse_create(&common::json_body(D, &body)?, caller.is_cloud_admin())?;
    // Glance's default since Ocata: `shared`, which is private until members are added.
    new.spec
        .entry("visibility")
        .or_insert_with(|| json!("shared"));
    let project = new.owner.clone().unwrap_or(own.clone());
    if project != own && !caller.is_cloud_admin() {
        return Err(Fault::forbidden(
            D,
            "You are not permitted to create images owned by another project.",
        ));
    }
    caller
        .check(Action::Write, Some(&project))
        .map_err(|_| Fault::forbidden(D, "You are not permitted to create images."))?;
    let wanted = new.name.clone().unwrap_or_default();
    let (object_name, _) =
        common::object_name_for(&state, kind(), Some(&project), "image", &wanted)
            .await
            .map_err(api_error)?;
    let mut metadata = json!({ "name": object_name });
    if object_name != wanted {
        metadata["annotations"] = json!({ NAME_ANNOTATION: wanted });
    }
    let object = json!({
        "apiVersion": cirrus_crds::API_VERSION,
        "kind": "Image",
        "metadata": metadata,
        "spec": Value::Object(new.spec),
    });
    let created = crate::resources::create(
        &state,
        crate::admission::Writer::Caller(&caller),
        kind(),
        Some(&project),
        object,
        false,
    )
    .await
    .map_err(api_error)?;
    tracing::info!(%project, image = %object_name, id = %common::uid(&created), "image created");
    let id = common::uid(&created);
    let mut response = (StatusCode::CREATED, Json(render(&created))).into_response();
    if let Ok(location) = format!("/v2/images/{id}").parse() {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// `DELETE /v2/images/{id}`: `204`; `403` while protected.
async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Fault> {
    let image = find(&state, &caller, &id).await?;
    check_write(&caller, &image)?;
    if image["spec"]["protected"].as_bool().unwrap_or(false) {
        return Err(Fault::forbidden(
            D,
            format!("Image {id} is protected and cannot be deleted."),
        ));
    }
    crate::resources::delete(
        &state,
        kind(),
        Some(owner(&image)),
        &common::name(&image),
        false,
    )
    .await
    .map_err(api_error)?;
    tracing::info!(image = %id, "image deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `PUT /v2/images/{id}/file`: streams the data into the blob store (the native upload);
/// `204` when the image is `active`.
async fn upload(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, Fault> {
    let image = find(&state, &caller, &id).await?;
    check_write(&caller, &image)?;
    let target = (owner(&image).to_string(), common::name(&image));
    crate::images::upload(State(state), caller, Path(target), headers, body)
        .await
        .map_err(api_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /v2/images/{id}/file`: streams the data; `204` while there is none.
async fn download(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Fault> {
    let image = find(&state, &caller, &id).await?;
    let target = (owner(&image).to_string(), common::name(&image));
    crate::images::download(State(state), caller, Path(target))
        .await
        .map_err(api_error)
}

/// The JSON schema of one image document (what `GET /v2/schemas/image` serves).
pub fn schema() -> Value {
    let string_or_null = json!({"type": ["null", "string"]});
    json!({
        "name": "image",
        "additionalProperties": {"type": "string"},
        "links": [
            {"href": "{self}", "rel": "self"},
            {"href": "{file}", "rel": "enclosure"},
            {"href": "{schema}", "rel": "describedby"},
        ],
        "properties": {
            "id": {"type": "string", "readOnly": true, "description": "An identifier for the image",
                   "pattern": "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$"},
            "name": {"type": ["null", "string"], "maxLength": 255, "description": "Descriptive name for the image"},
            "status": {"type": "string", "readOnly": true, "description": "Status of the image",
                       "enum": ["queued", "saving", "active", "killed", "deleted", "uploading", "importing", "pending_delete", "deactivated"]},
            "visibility": {"type": "string", "enum": ["community", "public", "private", "shared"],
                           "description": "Scope of image accessibility"},
            "protected": {"type": "boolean", "description": "If true, image will not be deletable."},
            "os_hidden": {"type": "boolean", "description": "If true, image will not appear in default image list response."},
            "checksum": {"type": ["null", "string"], "readOnly": true, "maxLength": 32, "description": "md5 hash of image contents."},
            "os_hash_algo": {"type": ["null", "string"], "readOnly": true, "maxLength": 64, "description": "Algorithm to calculate the os_hash_value"},
            "os_hash_value": {"type": ["null", "string"], "readOnly": true, "maxLength": 128, "description": "Hexdigest of the image contents using the algorithm specified by the os_hash_algo"},
            "owner": {"type": ["null", "string"], "maxLength": 255, "description": "Owner of the image"},
            "size": {"type": ["null", "integer"], "readOnly": true, "description": "Size of image file in bytes"},
            "virtual_size": {"type": ["null", "integer"], "readOnly": true, "description": "Virtual size of image in bytes"},
            "container_format": {"type": ["null", "string"], "enum": [null, "ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed"],
                                 "description": "Format of the container"},
            "disk_format": {"type": ["null", "string"], "enum": [null, "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop"],
                            "description": "Format of the disk"},
            "created_at": {"type": "string", "readOnly": true, "description": "Date and time of image registration"},
            "updated_at": {"type": "string", "readOnly": true, "description": "Date and time of the last image modification"},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 255}, "description": "List of strings related to the image"},
            "direct_url": {"type": "string", "readOnly": true, "description": "URL to access the image file kept in external store"},
            "min_ram": {"type": "integer", "description": "Amount of ram (in MB) required to boot image."},
            "min_disk": {"type": "integer", "description": "Amount of disk space (in GB) required to boot image."},
            "self": {"type": "string", "readOnly": true, "description": "An image self url"},
            "file": {"type": "string", "readOnly": true, "description": "An image file url"},
            "schema": {"type": "string", "readOnly": true, "description": "An image schema url"},
            "locations": {"type": "array", "items": {"type": "object"}, "description": "A set of URLs to access the image file kept in external store"},
            "kernel_id": string_or_null,
            "ramdisk_id": string_or_null,
            "instance_uuid": {"type": "string", "description": "Metadata which can be used to record which instance this image is associated with."},
            "architecture": {"type": "string", "description": "Operating system architecture"},
            "os_distro": {"type": "string", "description": "Common name of operating system distribution"},
            "os_version": {"type": "string", "description": "Operating system version as specified by the distributor"},
        },
    })
}

/// `GET /v2/schemas/image`.
async fn image_schema() -> Json<Value> {
    Json(schema())
}

/// `GET /v2/schemas/images`: the list document's schema.
async fn images_schema() -> Json<Value> {
    Json(json!({
        "name": "images",
        "links": [
            {"href": "{first}", "rel": "first"},
            {"href": "{next}", "rel": "next"},
            {"href": "{schema}", "rel": "describedby"},
        ],
        "properties": {
            "images": {"type": "array", "items": schema()},
            "first": {"type": "string"},
            "next": {"type": "string"},
            "schema": {"type": "string"},
        },
    }))
}

#[cfg(test)]
mod tests;
