//! `/network/v2.0/security-groups` and `/security-group-rules` over `SecurityGroup`
//! objects.
//!
//! Rules are entries of `SecurityGroup.spec.rules` (no object of their own). A rule's id is
//! [`rule_id`]: a UUIDv5 under the group's uid of the rule's matching fields (direction,
//! ethertype, protocol number, port range, remote prefix, remote group — the fields the
//! model's duplicate check compares), so ids are stable across reads, a duplicate rule has
//! the id of the existing one (409 `SecurityGroupRuleExists`, as Neutron), and creating or
//! deleting a rule is a read-modify-write of the group conditioned on its
//! `resourceVersion` (retried on a lost race), so concurrent rule changes never drop each
//! other.
//!
//! The `default` group: every project has one (the network controller creates it). So that
//! `openstack security group rule create default` works the moment a project first uses the
//! API, before the controller got to it, lists and lookups here create it on demand with the
//! controller's spec (`ensure_default`; an `AlreadyExists` race is fine). It cannot be
//! deleted (native admission: 409), renamed, or shadowed by a new group named `default`.
//! New groups get Neutron's two allow-all egress rules.

use cirrus_crds::Resource as _;
use std::net::IpAddr;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cirrus_auth::Action;
use cirrus_crds::kinds::securitygroup::{Protocol, SecurityGroupRule};
use cirrus_crds::{SecurityGroup, Validate};
use cirrus_store::objects::ObjectError;
use ipnet::IpNet;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::ports::DEFAULT_GROUP;
use super::{
    NET, Scope, body_object, create_object, created, from_api, from_store, invalid, name_attr,
    neutron_field_names, not_found, ok, opt_bool, opt_str, opt_u32, project_of, reject_read_only,
    reject_unknown, set_display_name, standard_attrs, update_object, visible,
};
use super::{listed, new_name, shown};
use crate::ApiState;
use crate::auth::Caller;
use crate::openstack::common;
use crate::openstack::fault::Fault;

/// Attributes a group create may carry.
const CREATE_KEYS: &[&str] = &["name", "description", "stateful", "project_id", "tenant_id"];
/// Attributes a group update may change.
const UPDATE_KEYS: &[&str] = &["name", "description", "stateful"];
/// Attributes a rule create may carry.
const RULE_KEYS: &[&str] = &[
    "security_group_id",
    "direction",
    "ethertype",
    "protocol",
    "port_range_min",
    "port_range_max",
    "remote_ip_prefix",
    "remote_group_id",
    "remote_address_group_id",
    "description",
    "project_id",
    "tenant_id",
];

/// The spec of a project's `default` group: the network controller's
/// (`controllers/src/network/groups.rs`): members reach each other, everything leaves.
pub fn default_group_spec() -> Value {
    json!({
        "description": "Default security group",
        "rules": [
            {"direction": "ingress", "ethertype": "IPv4", "remoteGroup": DEFAULT_GROUP},
            {"direction": "ingress", "ethertype": "IPv6", "remoteGroup": DEFAULT_GROUP},
            {"direction": "egress", "ethertype": "IPv4"},
            {"direction": "egress", "ethertype": "IPv6"},
        ],
        "stateful": true,
    })
}

/// Creates `project`'s `default` group when it is missing (see the module docs).
pub(crate) async fn ensure_default(state: &ApiState, project: &str) -> Result<(), Fault> {
    let groups = cirrus_crds::SecurityGroup::info();
    match state.store.get(groups, Some(project), DEFAULT_GROUP).await {
        Ok(_) => return Ok(()),
        Err(ObjectError::NotFound { .. }) => {}
        Err(e) => return Err(from_store(e)),
    }
    let object = json!({
        "apiVersion": cirrus_crds::API_VERSION,
        "kind": groups.kind,
        "metadata": {"name": DEFAULT_GROUP, "project": project},
        "spec": default_group_spec(),
    });
    match crate::resources::create(
        state,
        crate::admission::Writer::Api,
        groups,
        Some(project),
        object,
        false,
    )
    .await
    {
        Ok(_) => {
            tracing::info!(%project, "created the default security group on first use");
            Ok(())
        }
        Err(e) if e.code() == StatusCode::CONFLICT => Ok(()),
        Err(e) => Err(from_api(e)),
    }
}

/// The fields that make a rule what it is (the model's duplicate check), canonically:
/// protocol as its number, prefixes normalized, defaults filled in.
fn rule_key(rule: &Value) -> String {
    let typed: Option<SecurityGroupRule> = serde_json::from_value(rule.clone()).ok();
    let key = match typed {
        Some(r) => {
            let protocol = r
                .protocol
                .as_ref()
                .filter(|p| !p.0.eq_ignore_ascii_case("any"))
                .map(|p| match p.number() {
                    Some(n) => Value::from(n),
                    None => Value::from(p.0.to_ascii_lowercase()),
                });
            json!({
                "direction": r.direction,
                "ethertype": r.ethertype,
                "protocol": protocol,
                "port_range_min": r.port_range_min,
                "port_range_max": r.port_range_max,
                "remote_ip_prefix": r.remote_ip_prefix.map(|p| p.to_string()),
                "remote_group": r.remote_group,
            })
        }
        // Not a valid rule (cannot be stored anyway): key on its text.
        None => rule.clone(),
    };
    key.to_string()
}

/// The id of `rule` in the group with uid `group_uid`: UUIDv5(group uid, `rule_key`).
pub fn rule_id(group_uid: &str, rule: &Value) -> String {
    let namespace = Uuid::parse_str(group_uid)
        .unwrap_or_else(|_| Uuid::new_v5(&Uuid::NAMESPACE_OID, group_uid.as_bytes()));
    Uuid::new_v5(&namespace, rule_key(rule).as_bytes()).to_string()
}

/// The Neutron body of `rule` of `group`; `groups` (the group's project) resolve
/// `remote_group_id`.
pub fn render_rule(group: &Value, rule: &Value, groups: &[Value]) -> Value {
    let project = project_of(group);
    let group_uid = common::uid(group);
    let get = |k: &str| rule.get(k).cloned().unwrap_or(Value::Null);
    let remote_group = rule.get("remoteGroup").and_then(Value::as_str).map(|name| {
        groups
            .iter()
            .find(|g| project_of(g) == project && common::name(g) == name)
            .map(common::uid)
            .unwrap_or_else(|| name.to_string())
    });
    let prefix = rule.get("remoteIpPrefix").and_then(Value::as_str);
    let normalized = prefix
        .and_then(|p| p.parse::<IpNet>().ok())
        .map(|p| p.trunc().to_string());
    let protocol = match rule.get("protocol") {
        Some(Value::String(s)) => Value::from(s.clone()),
        Some(Value::Number(n)) => Value::from(n.to_string()),
        _ => Value::Null,
    };
    let mut out = Map::new();
    out.insert("id".into(), Value::from(rule_id(&group_uid, rule)));
    out.insert("security_group_id".into(), Value::from(group_uid));
    out.insert(
        "direction".into(),
        rule.get("direction")
            .cloned()
            .unwrap_or_else(|| Value::from("ingress")),
    );
    out.insert(
        "ethertype".into(),
        rule.get("ethertype")
            .cloned()
            .unwrap_or_else(|| Value::from("IPv4")),
    );
    out.insert("protocol".into(), protocol);
    out.insert("port_range_min".into(), get("portRangeMin"));
    out.insert("port_range_max".into(), get("portRangeMax"));
    out.insert("remote_ip_prefix".into(), json!(prefix));
    out.insert("normalized_cidr".into(), json!(normalized));
    out.insert("remote_group_id".into(), json!(remote_group));
    out.insert("remote_address_group_id".into(), Value::Null);
    out.insert(
        "belongs_to_default_sg".into(),
        Value::from(common::name(group) == DEFAULT_GROUP),
    );
    standard_attrs(group, &mut out);
    out.insert(
        "description".into(),
        Value::from(
            rule.get("description")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        ),
    );
    Value::Object(out)
}

fn rules_of(group: &Value) -> Vec<Value> {
    group
        .pointer("/spec/rules")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The Neutron body of `group` with its rules inline.
pub fn render(group: &Value, groups: &[Value]) -> Value {
    let rules: Vec<Value> = rules_of(group)
        .iter()
        .map(|r| render_rule(group, r, groups))
        .collect();
    let mut out = Map::new();
    out.insert("id".into(), Value::from(common::uid(group)));
    out.insert("name".into(), Value::from(common::display_name(group)));
    out.insert("security_group_rules".into(), Value::Array(rules));
    out.insert(
        "stateful".into(),
        Value::from(
            group
                .pointer("/spec/stateful")
                .and_then(Value::as_bool)
                .unwrap_or(true),
        ),
    );
    out.insert("shared".into(), Value::from(false));
    standard_attrs(group, &mut out);
    Value::Object(out)
}

/// The groups the scope sees, its own project's `default` made sure of first.
async fn visible_groups(state: &ApiState, scope: &Scope) -> Result<Vec<Value>, Fault> {
    ensure_default(state, &scope.project).await?;
    visible(state, cirrus_crds::SecurityGroup::info(), scope).await
}

async fn find_group(
    state: &ApiState,
    scope: &Scope,
    id: &str,
) -> Result<(Value, Vec<Value>), Fault> {
    let groups = visible_groups(state, scope).await?;
    let found = groups
        .iter()
        .find(|g| common::uid(g) == id)
        .or_else(|| {
            groups
                .iter()
                .find(|g| common::name(g) == id && project_of(g) == scope.project)
        })
        .cloned()
        .ok_or_else(|| not_found("SecurityGroupNotFound", "Security group", id))?;
    Ok((found, groups))
}

/// `GET /security-groups`.
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, Fault> {
    let scope = Scope::of(caller)?;
    scope.check(Action::Read, &scope.project, "Project")?;
    let groups = visible_groups(&state, &scope).await?;
    let rendered = groups.iter().map(|g| render(g, &groups)).collect();
    listed("security_groups", pairs, rendered)
}

/// `GET /security-groups/{id}`.
pub async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, Fault> {
    let scope = Scope::of(caller)?;
    let (group, groups) = find_group(&state, &scope, &id).await?;
    let body = render(&group, &groups);
    Ok(shown("security_group", pairs, body))
}

fn default_exists() -> Fault {
    Fault::conflict(NET, "Default security group already exists.")
        .with_kind("SecurityGroupDefaultAlreadyExists")
}

/// `POST /security-groups`: the group with Neutron's two egress rules.
pub async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    body: Bytes,
) -> Result<Response, Fault> {
    let scope = Scope::of(caller)?;
    let body = body_object(&body, "security_group")?;
    reject_unknown(&body, CREATE_KEYS)?;
    let project = scope.create_project(&body)?;
    let display = name_attr(&body)?;
    if display == DEFAULT_GROUP {
        ensure_default(&state, &project).await?;
        return Err(default_exists());
    }
    let mut spec = json!({
        "rules": [
            {"direction": "egress", "ethertype": "IPv4"},
            {"direction": "egress", "ethertype": "IPv6"},
        ],
    });
    if let Some(d) = opt_str(&body, "description")?.filter(|d| !d.is_empty()) {
        spec["description"] = Value::from(d);
    }
    if let Some(s) = opt_bool(&body, "stateful")? {
        spec["stateful"] = Value::from(s);
    }
    let stored = create_object(
        &state,
        &scope.caller,
        cirrus_crds::SecurityGroup::info(),
        &project,
        "sg",
        &display,
        spec,
    )
    .await?;
    tracing::info!(%project, group = %common::name(&stored), "security group created through the network API");
    Ok(created(
        "security_group",
        render(&stored, std::slice::from_ref(&stored)),
    ))
}

/// `PUT /security-groups/{id}`: name, description, stateful.
pub async fn update(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Fault> {
    let scope = Scope::of(caller)?;
    let body = body_object(&body, "security_group")?;
    reject_read_only(
        &body,
        &["id", "tenant_id", "project_id", "security_group_rules"],
    )?;
    reject_unknown(&body, UPDATE_KEYS)?;
    let (group, groups) = find_group(&state, &scope, &id).await?;
    let project = project_of(&group);
    scope.check(Action::Write, &project, &format!("Security group {id}"))?;
    let display = new_name(&body)?;
    let is_default = common::name(&group) == DEFAULT_GROUP;
    if let Some(d) = &display {
        if is_default && d != DEFAULT_GROUP {
            return Err(
                Fault::conflict(NET, "Updating default security group name not allowed.")
                    .with_kind("SecurityGroupCannotUpdateDefault"),
            );
        }
        if !is_default && d == DEFAULT_GROUP {
            return Err(default_exists());
        }
    }
    let updated = update_object(
        &state,
        &scope.caller,
        cirrus_crds::SecurityGroup::info(),
        &project,
        &common::name(&group),
        |object| {
            if body.contains_key("description") {
                match opt_str(&body, "description")?.filter(|d| !d.is_empty()) {
                    Some(d) => object["spec"]["description"] = Value::from(d),
                    None => {
                        if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
                            spec.remove("description");
                        }
                    }
                }
            }
            if let Some(s) = opt_bool(&body, "stateful")? {
                object["spec"]["stateful"] = Value::from(s);
            }
            if let Some(d) = &display {
                set_display_name(object, d);
            }
            Ok(())
        },
    )
    .await?;
    Ok(ok("security_group", render(&updated, &groups)))
}

/// `DELETE /security-groups/{id}`: 204; 409 while ports use it, and for `default`.
pub async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Fault> {
    let scope = Scope::of(caller)?;
    let (group, _) = find_group(&state, &scope, &id).await?;
    let project = project_of(&group);
    scope.check(Action::Write, &project, &format!("Security group {id}"))?;
    let name = common::name(&group);
    let ports = common::list(&state, cirrus_crds::Port::info(), Some(&project))
        .await
        .map_err(from_api)?;
    let users: Vec<String> = ports
        .iter()
        .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
        .filter(|p| {
            p.pointer("/spec/securityGroups")
                .and_then(Value::as_array)
                .is_some_and(|g| g.iter().any(|g| g.as_str() == Some(name.as_str())))
        })
        .map(common::uid)
        .collect();
    if !users.is_empty() {
        return Err(Fault::conflict(
            NET,
            format!(
                "Security Group {id} in use by port(s) {}.",
                users.join(", ")
            ),
        )
        .with_kind("SecurityGroupInUse"));
    }
    let preconditions = cirrus_store::objects::Preconditions::default();
    crate::resources::delete_with(
        &state,
        cirrus_crds::SecurityGroup::info(),
        Some(&project),
        &name,
        &preconditions,
        scope.admin,
        false,
    )
    .await
    .map_err(|e| match (e.code(), e.reason()) {
        (StatusCode::CONFLICT, "InUse") => {
            Fault::conflict(NET, format!("Security Group {id} in use: {}", e.message()))
                .with_kind("SecurityGroupInUse")
        }
        (StatusCode::CONFLICT, _) => Fault::conflict(
            NET,
            format!(
                "Insufficient rights for removing default security group: {}",
                e.message()
            ),
        )
        .with_kind("SecurityGroupCannotRemoveDefault"),
        _ => from_api(e),
    })?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /security-group-rules`.
pub async fn list_rules(
    State(state): State<ApiState>,
    caller: Caller,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, Fault> {
    let scope = Scope::of(caller)?;
    scope.check(Action::Read, &scope.project, "Project")?;
    let groups = visible_groups(&state, &scope).await?;
    let rendered = groups
        .iter()
        .flat_map(|g| {
            rules_of(g)
                .into_iter()
                .map(|r| render_rule(g, &r, &groups))
                .collect::<Vec<_>>()
        })
        .collect();
    listed("security_group_rules", pairs, rendered)
}

/// The group holding rule `id` and the rule, among the groups the scope sees.
async fn find_rule(
    state: &ApiState,
    scope: &Scope,
    id: &str,
) -> Result<(Value, Value, Vec<Value>), Fault> {
    let groups = visible_groups(state, scope).await?;
    for g in &groups {
        let uid = common::uid(g);
        if let Some(rule) = rules_of(g).into_iter().find(|r| rule_id(&uid, r) == id) {
            return Ok((g.clone(), rule, groups.clone()));
        }
    }
    Err(not_found(
        "SecurityGroupRuleNotFound",
        "Security group rule",
        id,
    ))
}

/// `GET /security-group-rules/{id}`.
pub async fn show_rule(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, Fault> {
    let scope = Scope::of(caller)?;
    let (group, rule, groups) = find_rule(&state, &scope, &id).await?;
    let body = render_rule(&group, &rule, &groups);
    Ok(shown("security_group_rule", pairs, body))
}

/// A remote prefix the Neutron way: a bare address is a host route; host bits are cleared.
fn parse_prefix(text: &str) -> Result<IpNet, Fault> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    text.parse::<IpNet>().map(|n| n.trunc()).map_err(|_| {
        invalid(
            "remote_ip_prefix",
            format_args!("'{text}' is not a valid IP prefix"),
        )
    })
}

/// The stored (native) form of the rule in a create body; `groups` are the project's
/// groups (for `remote_group_id`). Validated alone with the model's rule checks, errors
/// naming Neutron's attributes.
fn native_rule(body: &Map<String, Value>, groups: &[Value], project: &str) -> Result<Value, Fault> {
    let mut rule = Map::new();
    let direction = opt_str(body, "direction")?
        .ok_or_else(|| invalid("direction", "direction is required (ingress or egress)"))?;
    if direction != "ingress" && direction != "egress" {
        return Err(invalid(
            "direction",
            format_args!("'{direction}' is not in [ingress, egress]"),
        ));
    }
    rule.insert("direction".into(), Value::from(direction));
    let ethertype = match opt_str(body, "ethertype")?.map(|e| e.to_ascii_lowercase()) {
        None => "IPv4",
        Some(e) if e == "ipv4" => "IPv4",
        Some(e) if e == "ipv6" => "IPv6",
        Some(e) => {
            return Err(invalid(
                "ethertype",
                format_args!("'{e}' is not in [IPv4, IPv6]"),
            ));
        }
    };
    rule.insert("ethertype".into(), Value::from(ethertype));
    let protocol = match body.get("protocol") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.to_ascii_lowercase()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(other) => {
            return Err(invalid(
                "protocol",
                format_args!("'{other}' is not a protocol name or number"),
            ));
        }
    };
    if let Some(p) = protocol {
        // Neutron takes `icmp` with IPv6 as ICMPv6.
        let p = if ethertype == "IPv6" && (p == "icmp" || p == "1") {
            "ipv6-icmp".to_string()
        } else {
            p
        };
        if Protocol(p.clone()).number().is_none() && p != "any" {
            return Err(invalid(
                "protocol",
                format_args!(
                    "protocol '{p}' is not supported: use a name like tcp, udp, icmp or a number 0-255"
                ),
            ));
        }
        rule.insert("protocol".into(), Value::from(p));
    }
    for (key, native) in [
        ("port_range_min", "portRangeMin"),
        ("port_range_max", "portRangeMax"),
    ] {
        if let Some(v) = opt_u32(body, key)? {
            rule.insert(native.into(), Value::from(v));
        }
    }
    if let Some(prefix) = opt_str(body, "remote_ip_prefix")? {
        rule.insert(
            "remoteIpPrefix".into(),
            Value::from(parse_prefix(&prefix)?.to_string()),
        );
    }
    if let Some(remote) = opt_str(body, "remote_group_id")? {
        let group = groups
            .iter()
            .find(|g| {
                project_of(g) == project && (common::uid(g) == remote || common::name(g) == remote)
            })
            .ok_or_else(|| not_found("SecurityGroupNotFound", "Security group", &remote))?;
        rule.insert("remoteGroup".into(), Value::from(common::name(group)));
    }
    if body
        .get("remote_address_group_id")
        .is_some_and(|v| !v.is_null())
    {
        return Err(invalid(
            "remote_address_group_id",
            "address groups are not supported",
        ));
    }
    if let Some(d) = opt_str(body, "description")?.filter(|d| !d.is_empty()) {
        rule.insert("description".into(), Value::from(d));
    }
    let rule = Value::Object(rule);
    check_rule(&rule)?;
    Ok(rule)
}

/// The model's checks of one rule, errors in Neutron's words.
fn check_rule(rule: &Value) -> Result<(), Fault> {
    let probe = json!({
        "apiVersion": cirrus_crds::API_VERSION,
        "kind": "SecurityGroup",
        "metadata": {"name": "probe", "project": "probe"},
        "spec": {"rules": [rule]},
    });
    let group: SecurityGroup = serde_json::from_value(probe).map_err(|e| {
        Fault::bad_request(NET, format!("Invalid security group rule: {e}"))
            .with_kind("InvalidInput")
    })?;
    let mut errors = cirrus_crds::FieldErrors::default();
    group.validate(&mut errors);
    let Some(first) = errors.0.first() else {
        return Ok(());
    };
    let field = first.field.trim_start_matches("spec.rules[0].");
    let field = neutron_field_names(&format!("spec.{field}"));
    let field = field.replace("remote_group", "remote_group_id");
    Err(invalid(&field, &first.reason))
}

/// `POST /security-group-rules`: appends the rule to its group; 409 for a duplicate.
pub async fn create_rule(
    State(state): State<ApiState>,
    caller: Caller,
    body: Bytes,
) -> Result<Response, Fault> {
    let scope = Scope::of(caller)?;
    let body = body_object(&body, "security_group_rule")?;
    reject_unknown(&body, RULE_KEYS)?;
    let Some(group_id) = opt_str(&body, "security_group_id")? else {
        return Err(invalid(
            "security_group_id",
            "security_group_id is required",
        ));
    };
    let (group, groups) = find_group(&state, &scope, &group_id).await?;
    let project = project_of(&group);
    scope.check(
        Action::Write,
        &project,
        &format!("Security group {group_id}"),
    )?;
    let explicit = ["project_id", "tenant_id"]
        .iter()
        .any(|k| body.get(*k).is_some_and(|v| !v.is_null()));
    if explicit && scope.create_project(&body)? != project {
        return Err(invalid(
            "project_id",
            format_args!("a rule belongs to its group's project {project}"),
        ));
    }
    let rule = native_rule(&body, &groups, &project)?;
    // A rule is not an object of its own: count it against the quota here.
    crate::quota::check_more(&state.store, &project, "security_group_rule", 1)
        .await
        .map_err(|e| Fault::from_api(NET, e))?;
    let uid = common::uid(&group);
    let id = rule_id(&uid, &rule);
    let updated = update_object(
        &state,
        &scope.caller,
        cirrus_crds::SecurityGroup::info(),
        &project,
        &common::name(&group),
        |object| {
            if common::uid(object) != uid {
                return Err(not_found(
                    "SecurityGroupNotFound",
                    "Security group",
                    &group_id,
                ));
            }
            let mut rules = rules_of(object);
            if rules.iter().any(|r| rule_id(&uid, r) == id) {
                return Err(Fault::conflict(
                    NET,
                    format!("Security group rule already exists. Rule id is {id}."),
                )
                .with_kind("SecurityGroupRuleExists"));
            }
            rules.push(rule.clone());
            object["spec"]["rules"] = Value::Array(rules);
            Ok(())
        },
    )
    .await?;
    tracing::info!(%project, group = %common::name(&updated), rule = %id, "security group rule added");
    Ok(created(
        "security_group_rule",
        render_rule(&updated, &rule, &groups),
    ))
}

/// `DELETE /security-group-rules/{id}`: removes the rule from its group; 204.
pub async fn delete_rule(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Fault> {
    let scope = Scope::of(caller)?;
    let (group, _, _) = find_rule(&state, &scope, &id).await?;
    let project = project_of(&group);
    scope.check(
        Action::Write,
        &project,
        &format!("Security group rule {id}"),
    )?;
    let uid = common::uid(&group);
    update_object(
        &state,
        &scope.caller,
        cirrus_crds::SecurityGroup::info(),
        &project,
        &common::name(&group),
        |object| {
            let rules = rules_of(object);
            if common::uid(object) != uid || !rules.iter().any(|r| rule_id(&uid, r) == id) {
                return Err(not_found(
                    "SecurityGroupRuleNotFound",
                    "Security group rule",
                    &id,
                ));
            }
            let kept: Vec<Value> = rules
                .into_iter()
                .filter(|r| rule_id(&uid, r) != id)
                .collect();
            object["spec"]["rules"] = Value::Array(kept);
            Ok(())
        },
    )
    .await?;
    tracing::info!(%project, group = %common::name(&group), rule = %id, "security group rule removed");
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests;
