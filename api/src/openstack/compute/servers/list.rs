//! `GET /servers` and `GET /servers/detail`: Nova's list filters parsed from the query,
//! applied to the rendered servers, newest first, paged with [`crate::openstack::paging`].

#[allow(clippy::wildcard_imports)]
use super::*;

/// The list filters Nova applies, parsed.
#[derive(Debug, Default)]
pub(super) struct Filters {
    name: Option<regex::Regex>,
    statuses: Vec<String>,
    flavor: Option<String>,
    image: Option<String>,
    ip: Option<regex::Regex>,
    ip6: Option<regex::Regex>,
    host: Option<String>,
    key_name: Option<String>,
    availability_zone: Option<String>,
    user_id: Option<String>,
    uuid: Option<String>,
    project: Option<String>,
    changes_since: Option<chrono::DateTime<chrono::Utc>>,
    deleted: bool,
    pub(super) all_tenants: bool,
    limit: Option<usize>,
    marker: Option<String>,
}

fn truthy(v: &str) -> bool {
    !matches!(
        v.to_ascii_lowercase().as_str(),
        "0" | "false" | "off" | "no"
    )
}

fn regex_filter(field: &str, value: &str) -> Result<regex::Regex, Fault> {
    regex::Regex::new(value).map_err(|e| {
        Fault::bad_request(
            D,
            format!("Invalid input for query parameter {field}: {value:?} is not a regular expression ({e})."),
        )
    })
}

impl Filters {
    pub(super) fn parse(pairs: &[(String, String)], admin: bool) -> Result<Self, Fault> {
        let mut f = Self::default();
        for (k, v) in pairs {
            match k.as_str() {
                "name" => f.name = Some(regex_filter("name", v)?),
                "status" => f.statuses.push(v.to_ascii_uppercase()),
                "flavor" => f.flavor = Some(v.clone()),
                "image" => f.image = Some(v.clone()),
                "ip" => f.ip = Some(regex_filter("ip", v)?),
                "ip6" => f.ip6 = Some(regex_filter("ip6", v)?),
                "host" | "node" if admin => f.host = Some(v.clone()),
                "key_name" => f.key_name = Some(v.clone()),
                "availability_zone" => f.availability_zone = Some(v.clone()),
                "user_id" => f.user_id = Some(v.clone()),
                "uuid" => f.uuid = Some(v.clone()),
                "project_id" | "tenant_id" if admin => f.project = Some(v.clone()),
                "changes-since" | "changes_since" => {
                    let t = chrono::DateTime::parse_from_rfc3339(v)
                        .map(|t| t.with_timezone(&chrono::Utc))
                        .or_else(|_| {
                            chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S%.f")
                                .map(|t| t.and_utc())
                        })
                        .map_err(|_| {
                            Fault::bad_request(D, format!("Invalid changes-since value {v:?}."))
                        })?;
                    f.changes_since = Some(t);
                }
                "deleted" => f.deleted = truthy(v),
                "all_tenants" => {
                    if !admin {
                        return Err(Fault::forbidden(
                            D,
                            "Policy doesn't allow os_compute_api:servers:index:get_all_tenants to be performed.",
                        ));
                    }
                    f.all_tenants = truthy(v);
                }
                "limit" => {
                    f.limit = paging::limit(Some(v), LIMIT).map_err(|_| {
                        Fault::bad_request(D, format!("limit param must be an integer, got {v:?}"))
                    })?;
                }
                "marker" => f.marker = Some(v.clone()),
                // Nova ignores filters it does not know for non-admins (and sorting is fixed
                // here: newest first).
                _ => {}
            }
        }
        Ok(f)
    }

    /// Whether the rendered `body` of `server` passes the filters.
    fn accept(&self, server: &Server, body: &Value) -> bool {
        let text = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or_default();
        if let Some(re) = &self.name
            && !re.is_match(text("name"))
        {
            return false;
        }
        if !self.statuses.is_empty() && !self.statuses.iter().any(|s| s == text("status")) {
            return false;
        }
        if let Some(flavor) = &self.flavor
            && body.pointer("/flavor/id").and_then(Value::as_str) != Some(flavor.as_str())
        {
            return false;
        }
        if let Some(image) = &self.image
            && body.pointer("/image/id").and_then(Value::as_str) != Some(image.as_str())
        {
            return false;
        }
        for (re, version) in [(&self.ip, 4), (&self.ip6, 6)] {
            if let Some(re) = re {
                let hit = body["addresses"].as_object().is_some_and(|nets| {
                    nets.values()
                        .flat_map(|l| l.as_array().into_iter().flatten())
                        .any(|a| {
                            a["version"] == version
                                && re.is_match(a["addr"].as_str().unwrap_or_default())
                        })
                });
                if !hit {
                    return false;
                }
            }
        }
        if let Some(host) = &self.host
            && server_view::host_of(server) != Some(host.as_str())
        {
            return false;
        }
        if let Some(k) = &self.key_name
            && body["key_name"].as_str() != Some(k.as_str())
        {
            return false;
        }
        if let Some(az) = &self.availability_zone
            && text("OS-EXT-AZ:availability_zone") != az
        {
            return false;
        }
        if let Some(u) = &self.user_id
            && text("user_id") != u
        {
            return false;
        }
        if let Some(uuid) = &self.uuid
            && id_of(server) != uuid
        {
            return false;
        }
        if let Some(p) = &self.project
            && project_of(server) != p
        {
            return false;
        }
        if let Some(since) = &self.changes_since {
            let updated = chrono::DateTime::parse_from_rfc3339(text("updated"))
                .map(|t| t.with_timezone(&chrono::Utc));
            if updated.is_ok_and(|u| u < *since) {
                return false;
            }
        }
        true
    }
}

/// `GET /servers` and, with `DETAIL`, `GET /servers/detail`: one handler, the two routes
/// differ only in the body of each server (summary or detail).
pub(super) async fn list<const DETAIL: bool>(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, Fault> {
    let detailed = DETAIL;
    let project = scope(&caller)?.to_string();
    let admin = caller.is_cloud_admin();
    let pairs = query_string::pairs(query.as_deref());
    let filters = Filters::parse(&pairs, admin)?;
    let everywhere = filters.all_tenants || (admin && filters.project.is_some());
    let read_project = if everywhere {
        None
    } else {
        Some(project.as_str())
    };
    if let Some(p) = read_project {
        caller
            .check(Action::Read, Some(p))
            .map_err(|r| Fault::refused(D, r, &format!("servers of project {p}")))?;
    }
    if filters.deleted {
        // Deleted servers are gone from the store: there is nothing to list.
        return Ok(ok(StatusCode::OK, json!({"servers": []})));
    }
    let kind = servers_kind();
    let mut servers: Vec<Server> = common::list(&state, kind, read_project)
        .await
        .map_err(api)?
        .into_iter()
        .filter_map(|v| parse(v).ok())
        .collect();
    // Nova's default order: newest first, then by id.
    servers.sort_by(|a, b| {
        b.metadata
            .creation_timestamp
            .cmp(&a.metadata.creation_timestamp)
            .then_with(|| id_of(b).cmp(id_of(a)))
    });
    let related = Related::load(&state, read_project).await.map_err(api)?;
    let mut bodies: Vec<(String, Value)> = servers
        .iter()
        .map(|s| {
            (
                id_of(s).to_string(),
                detail(s, &related, &headers, admin),
                s,
            )
        })
        .filter(|(_, body, s)| filters.accept(s, body))
        .map(|(id, body, s)| {
            let body = if detailed { body } else { summary(s, &headers) };
            (id, body)
        })
        .collect();
    if let Some(marker) = &filters.marker {
        paging::skip_past_marker(&mut bodies, marker, |(id, _)| id == marker)
            .map_err(|_| Fault::bad_request(D, format!("marker [{marker}] not found")))?;
    }
    let mut out = json!({});
    let limit = filters.limit.unwrap_or(MAX_LIMIT);
    paging::truncate(&mut bodies, Some(limit));
    // Nova links a next page whenever a page asked for with `limit` is full.
    if filters.limit.is_some() && bodies.len() == limit && limit > 0 {
        let last = bodies.last().map(|(id, _)| id.clone()).unwrap_or_default();
        let next = paging::next_query(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())), &last);
        let path = if detailed {
            "servers/detail"
        } else {
            "servers"
        };
        out["servers_links"] = json!([{
            "rel": "next",
            "href": format!("{}/compute/v2.1/{path}?{next}", base_url(&headers)),
        }]);
    }
    out["servers"] = Value::Array(bodies.into_iter().map(|(_, b)| b).collect());
    Ok(ok(StatusCode::OK, out))
}
