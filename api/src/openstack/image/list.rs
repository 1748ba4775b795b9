//! `GET /v2/images`: Glance's list filters (`name`, `visibility`, `member_status`, `tag`,
//! `in:` operators, sizes), its sort keys (`sort=` or `sort_key`/`sort_dir`, newest first by
//! default) and marker pages ([`crate::openstack::paging`]) over the rendered images.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Glance's `member_status` list filter: `accepted` unless asked (`None`: `all`).
fn member_status_filter(query: &ListQuery) -> Result<Option<MemberStatus>, Fault> {
    match query.member_status.as_deref() {
        None => Ok(Some(MemberStatus::Accepted)),
        Some("all") => Ok(None),
        Some(word) => MemberStatus::parse(word).map(Some).ok_or_else(|| {
            Fault::bad_request(
                D,
                format!(
                    "Invalid member_status value: {word} (one of pending, accepted, rejected, all)"
                ),
            )
        }),
    }
}

/// Query parameters of `GET /v2/images` (repeated `tag`s are read from the raw query).
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct ListQuery {
    name: Option<String>,
    visibility: Option<String>,
    status: Option<String>,
    owner: Option<String>,
    id: Option<String>,
    disk_format: Option<String>,
    container_format: Option<String>,
    protected: Option<String>,
    os_hidden: Option<String>,
    size_min: Option<String>,
    size_max: Option<String>,
    limit: Option<String>,
    marker: Option<String>,
    sort_key: Option<String>,
    sort_dir: Option<String>,
    sort: Option<String>,
    member_status: Option<String>,
}

/// A value filter with Glance's optional `in:a,b` operator.
fn matches_filter(filter: Option<&str>, value: &str) -> bool {
    match filter {
        None => true,
        Some(f) => match f.strip_prefix("in:") {
            Some(list) => list.split(',').any(|v| v.trim() == value),
            None => f == value,
        },
    }
}

fn parse_bool(field: &str, value: &str) -> Result<bool, Fault> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(Fault::bad_request(
            D,
            format!("Invalid value {value:?} for {field}: expected true or false"),
        )),
    }
}

/// The sort keys and directions a list asks for (`sort=name:asc,created_at` or
/// `sort_key`/`sort_dir`); Glance's default is `created_at` descending.
fn sort_keys(query: &ListQuery) -> Result<Vec<(String, bool)>, Fault> {
    const KEYS: &[&str] = &[
        "name",
        "status",
        "container_format",
        "disk_format",
        "size",
        "id",
        "created_at",
        "updated_at",
        "min_disk",
        "min_ram",
        "visibility",
        "owner",
    ];
    let dir = |d: &str| {
        paging::descending(d).map_err(|paging::BadDirection(other)| {
            Fault::bad_request(D, format!("Invalid sort direction: {other}"))
        })
    };
    let mut keys = Vec::new();
    if let Some(sort) = &query.sort {
        for part in sort.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, d) = part.split_once(':').unwrap_or((part, "desc"));
            keys.push((key.trim().to_string(), dir(d.trim())?));
        }
    } else if let Some(sort_key) = &query.sort_key {
        let names: Vec<&str> = sort_key.split(',').map(str::trim).collect();
        let dirs: Vec<&str> = query
            .sort_dir
            .as_deref()
            .map(|d| d.split(',').collect())
            .unwrap_or_default();
        let paired =
            paging::sort_keys(&names, &dirs, true).map_err(|paging::BadDirection(other)| {
                Fault::bad_request(D, format!("Invalid sort direction: {other}"))
            })?;
        keys.extend(paired.into_iter().map(|(k, desc)| (k.to_string(), desc)));
    }
    if let Some((bad, _)) = keys.iter().find(|(k, _)| !KEYS.contains(&k.as_str())) {
        return Err(Fault::bad_request(
            D,
            format!("Unsupported sort_key: {bad}"),
        ));
    }
    if keys.is_empty() {
        keys.push(("created_at".into(), true));
    }
    Ok(keys)
}

/// Filters, sorts and pages rendered images; returns the page and whether more follow.
pub(super) fn select(
    images: Vec<Value>,
    admin: bool,
    project: Option<&str>,
    answers: &HashMap<String, MemberStatus>,
    query: &ListQuery,
    tags: &[String],
) -> Result<(Vec<Value>, bool), Fault> {
    let member_status = member_status_filter(query)?;
    let limit = paging::limit(query.limit.as_deref(), LIMIT).map_err(|e| {
        Fault::bad_request(
            D,
            format!("limit param must be an integer, got {:?}", e.text()),
        )
    })?;
    let wanted_visibility = query.visibility.as_deref();
    if let Some(v) = wanted_visibility
        && !["public", "private", "shared", "community", "all"].contains(&v)
    {
        return Err(Fault::bad_request(
            D,
            format!("Invalid visibility value: {v}"),
        ));
    }
    // Attributes a listed image must equal exactly when the query names them.
    let exact_filters = [
        ("name", &query.name),
        ("status", &query.status),
        ("owner", &query.owner),
        ("id", &query.id),
        ("disk_format", &query.disk_format),
        ("container_format", &query.container_format),
    ];
    let protected = query
        .protected
        .as_deref()
        .map(|v| parse_bool("protected", v))
        .transpose()?;
    if let Some(hidden) = query.os_hidden.as_deref()
        && parse_bool("os_hidden", hidden)?
    {
        // No image is hidden here.
        return Ok((Vec::new(), false));
    }
    let size = |field: &str, v: &Option<String>| {
        v.as_deref()
            .map(|s| {
                s.parse::<u64>().map_err(|_| {
                    Fault::bad_request(D, format!("{field} must be a non-negative integer"))
                })
            })
            .transpose()
    };
    let size_min = size("size_min", &query.size_min)?;
    let size_max = size("size_max", &query.size_max)?;
    let mut selected: Vec<Value> = images
        .iter()
        // What the caller sees ([`can_see`]), shares by the member's answer (accepted unless
        // asked otherwise); each document parsed once.
        .filter(|i| {
            if i.pointer("/metadata/deletionTimestamp").is_some() {
                return false;
            }
            admin
                || project.is_some_and(|p| {
                    typed(i).is_some_and(|image| {
                        let uid = image.metadata.uid.as_deref().unwrap_or_default();
                        let answer = answers.get(uid).copied().unwrap_or_default();
                        image.visible_to(p)
                            && (!image.offered_to(p) || image.listed_for(p, answer, member_status))
                    })
                })
        })
        .filter(|i| match wanted_visibility {
            None => {
                // Community images are listed only for their owner (and admins).
                visibility(i) != "community" || admin || project == Some(owner(i))
            }
            Some("all") => true,
            Some(v) => visibility(i) == v,
        })
        .map(render)
        .filter(|i| {
            exact_filters.iter().all(|(field, wanted)| {
                matches_filter(wanted.as_deref(), i[*field].as_str().unwrap_or_default())
            })
        })
        .filter(|i| protected.is_none_or(|p| i["protected"].as_bool() == Some(p)))
        .filter(|i| size_min.is_none_or(|m| i["size"].as_u64().is_some_and(|s| s >= m)))
        .filter(|i| size_max.is_none_or(|m| i["size"].as_u64().is_some_and(|s| s <= m)))
        .filter(|i| {
            let have: BTreeSet<&str> = i["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            tags.iter().all(|t| have.contains(t.as_str()))
        })
        .collect();
    let keys = sort_keys(query)?;
    let keys: Vec<(&str, bool)> = keys.iter().map(|(k, desc)| (k.as_str(), *desc)).collect();
    selected.sort_by(|a, b| {
        paging::compare_by(a, b, &keys)
            .then_with(|| paging::compare_values(b.get("id"), a.get("id")))
    });
    if let Some(marker) = query.marker.as_deref() {
        paging::skip_past_marker(&mut selected, marker, |i| i["id"] == marker).map_err(|_| {
            Fault::bad_request(
                D,
                format!("Invalid marker. Image {marker} could not be found."),
            )
        })?;
    }
    let more = paging::truncate(&mut selected, limit);
    Ok((selected, more))
}

/// The `tag` parameters of a raw query string (Glance takes several).
pub(super) fn tags_of(raw: Option<&str>) -> Vec<String> {
    let pairs = query_string::pairs(raw);
    query_string::values(&pairs, "tag")
        .into_iter()
        .map(str::to_string)
        .collect()
}

/// `GET /v2/images`.
pub(super) async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    uri: axum::http::Uri,
    Query(query): Query<ListQuery>,
) -> Result<Response, Fault> {
    let project = scope(&caller)?.to_string();
    let images = common::list(&state, kind(), None)
        .await
        .map_err(api_error)?;
    let tags = tags_of(uri.query());
    let answers = crate::admission::image_use::answers(&state.store, &project)
        .await
        .map_err(api_error)?;
    let (page, more) = select(
        images,
        caller.is_cloud_admin(),
        Some(&project),
        &answers,
        &query,
        &tags,
    )?;
    let mut body = json!({
        "images": page,
        "first": "/v2/images",
        "schema": "/v2/schemas/images",
    });
    if more && let Some(last) = page.last() {
        // The same query with the marker moved to the last image of this page (and Glance's
        // default page size when none was asked).
        let default_limit = DEFAULT_LIMIT.to_string();
        let pairs = query_string::pairs(uri.query());
        let given = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let limit = query
            .limit
            .is_none()
            .then_some(("limit", default_limit.as_str()));
        let next = paging::next_query(given.chain(limit), last["id"].as_str().unwrap_or_default());
        body["next"] = json!(format!("/v2/images?{next}"));
    }
    Ok(Json(body).into_response())
}
