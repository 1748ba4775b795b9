//! Authorization of the native resource API: who may read and write which objects.
//!
//! Users follow [`cirrus_auth::authorize`] with the project in the path, plus per-kind rules
//! for cluster-scoped kinds the table there leaves to the API:
//!
//! - flavors are readable by everyone; projects, users and role bindings only by cloud
//!   admins — except a user's own `User`, its token's `Project` and its own bindings;
//!   nodes, leases and everything else cluster-scoped only by cloud admins.
//! - a project-scoped list or watch across projects by a non-admin is narrowed to the
//!   token's project (what `cirrus get -A` shows a member is what it may see).
//! - images of other projects are readable when the caller's project may use them: public
//!   and community ones, and those shared with it (`Image::visible_to`, Glance's visibility;
//!   using a share needs the member's acceptance, `crate::admission::image_use`).
//! - networks of other projects are readable, one by one, when shared with the caller's
//!   project (`Network::usable_by`; its ports name them, `crate::admission::network_use`).
//!
//! Node agents ([`Subject::Node`]) may read every kind but users, role bindings and image
//! members (they
//! serve every project's servers placed on them, and plug networks and volumes for them);
//! single objects bound to another node (servers by `spec.nodeName`, volumes and snapshots
//! by `status.node`, ports by `spec.bindingHost`) answer 404, and so do private images
//! nothing bound to them boots from. They may write only: their own `Node` (status and
//! metadata; its spec is the operator's, see [`crate::admission::policy`]) and heartbeat
//! `Lease` (`node-<name>`), the status of objects bound to them, and on those objects
//! metadata such as finalizers — never a spec, never a create or delete of anything else.

use axum::http::StatusCode;
use cirrus_auth::{Action, Subject};
use cirrus_crds::{KindInfo, Scope};
use cirrus_store::objects::Part;
use serde_json::Value;

use crate::ApiState;
use crate::auth::{Caller, Refusal};
use crate::error::ApiError;

/// What a request does.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Op<'a> {
    /// GET of one object.
    Get,
    /// List or watch, with the request's field selector.
    List(Option<&'a str>),
    /// POST of a new object.
    Create,
    /// PUT of `part` with the whole new object.
    Update(Part, &'a Value),
    /// PATCH of `part` with a merge patch.
    Patch(Part, &'a Value),
    /// DELETE.
    Delete,
}

impl Op<'_> {
    fn action(&self) -> Action {
        match self {
            Op::Get | Op::List(_) => Action::Read,
            _ => Action::Write,
        }
    }
}

/// Decides `op` on `kind` in `project` (`name`: the addressed object). For a list by a
/// non-admin across projects, returns the project the list must be narrowed to.
pub(crate) async fn authorize(
    state: &ApiState,
    caller: &Caller,
    kind: &'static KindInfo,
    project: Option<&str>,
    name: Option<&str>,
    op: Op<'_>,
) -> Result<Option<String>, ApiError> {
    match &caller.subject {
        Subject::Node { name: node } => {
            authorize_node(state, node, kind, project, name, op).await?;
            Ok(None)
        }
        Subject::User(_) => authorize_user(state, caller, kind, project, name, op).await,
    }
}

async fn authorize_user(
    state: &ApiState,
    caller: &Caller,
    kind: &'static KindInfo,
    project: Option<&str>,
    name: Option<&str>,
    op: Op<'_>,
) -> Result<Option<String>, ApiError> {
    if caller.is_cloud_admin() {
        return Ok(None);
    }
    let action = op.action();
    if kind.scope == Scope::Cluster {
        return authorize_cluster_kind(caller, kind, name, op).map(|()| None);
    }
    let Some(project) = project else {
        // Across projects: narrow to the token's project.
        return match caller.project() {
            Some(own) => Ok(Some(own.to_string())),
            None => Err(ApiError::forbidden(
                "an unscoped token may not list project objects: log in to a project",
            )),
        };
    };
    match caller.check(action, Some(project)) {
        Ok(()) => Ok(None),
        Err(Refusal::Forbidden) => Err(forbidden(kind, project)),
        Err(Refusal::NotFound) => {
            if matches!(op, Op::Get)
                && let Some(name) = name
                && is_readable_across(state, caller, kind, project, name).await?
            {
                return Ok(None);
            }
            Err(not_found(kind, Some(project), name))
        }
    }
}

fn authorize_cluster_kind(
    caller: &Caller,
    kind: &'static KindInfo,
    name: Option<&str>,
    op: Op<'_>,
) -> Result<(), ApiError> {
    let user = caller.user().expect("user subjects only");
    let reading = matches!(op, Op::Get | Op::List(_));
    let own = match kind.plural {
        "flavors" => {
            return if reading {
                Ok(())
            } else {
                Err(forbidden(kind, ""))
            };
        }
        "users" => name == Some(user.name.as_str()),
        "projects" => name.is_some() && name == caller.project(),
        _ => false,
    };
    if reading && own {
        return Ok(());
    }
    if own {
        return Err(forbidden(kind, ""));
    }
    match (op, name) {
        (Op::List(_), _) | (Op::Create, _) => Err(forbidden(kind, "")),
        _ => Err(not_found(kind, None, name)),
    }
}

async fn authorize_node(
    state: &ApiState,
    node: &str,
    kind: &'static KindInfo,
    project: Option<&str>,
    name: Option<&str>,
    op: Op<'_>,
) -> Result<(), ApiError> {
    // Image members are projects' answers to shares: admission used them, nodes never do.
    if matches!(kind.plural, "users" | "rolebindings" | "imagemembers") {
        return Err(ApiError::forbidden(format!(
            "node {node:?} may not access {}",
            kind.plural
        )));
    }
    let own = |prefix: &str| name == Some(format!("{prefix}{node}").as_str());
    match (kind.plural, op) {
        (_, Op::List(fields)) => return node_list(node, kind, fields),
        ("nodes", _) if own("") => return Ok(()),
        ("leases", Op::Create | Op::Update(..) | Op::Patch(..) | Op::Get) if own("node-") => {
            return Ok(());
        }
        ("nodes" | "leases", Op::Get) => return Ok(()),
        (_, Op::Create | Op::Delete) => return Err(node_forbidden(node, kind)),
        _ => {}
    }
    let binding_pointer = match kind.plural {
        "servers" => Some("/spec/nodeName"),
        "volumes" | "volumesnapshots" => Some("/status/node"),
        "ports" => Some("/spec/bindingHost"),
        _ => None,
    };
    let Some(name) = name else {
        return Err(node_forbidden(node, kind));
    };
    if kind.plural == "images" && matches!(op, Op::Get) {
        return node_may_read_image(state, node, project, name).await;
    }
    if matches!(op, Op::Get) && binding_pointer.is_none() {
        return Ok(());
    }
    let Some(pointer) = binding_pointer else {
        return Err(node_forbidden(node, kind));
    };
    let current = state.store.get(kind, project, name).await?;
    let bound_here = current.pointer(pointer).and_then(Value::as_str) == Some(node);
    // A port is also the node's when it belongs to a server bound here (DHCP ports are
    // named for the node).
    if !bound_here {
        return Err(not_found(kind, project, Some(name)));
    }
    match op {
        Op::Get => Ok(()),
        Op::Update(Part::Status, _) | Op::Patch(Part::Status, _) => Ok(()),
        Op::Patch(Part::Main, patch) if patch.get("spec").is_none() => Ok(()),
        Op::Update(Part::Main, body) if body.get("spec") == current.get("spec") => Ok(()),
        _ => Err(node_forbidden(node, kind)),
    }
}

/// A node agent's list or watch: of the kinds bound to nodes, only what is bound to it — the
/// request must select on the binding (`spec.nodeName=<node>` for servers, `status.node=<node>`
/// for volumes and snapshots); other kinds (networks, ports, groups, images, flavors) it
/// needs whole to serve DHCP and firewall rules for every port on its networks.
fn node_list(node: &str, kind: &KindInfo, fields: Option<&str>) -> Result<(), ApiError> {
    let binding = match kind.plural {
        "servers" => "spec.nodeName",
        "volumes" | "volumesnapshots" => "status.node",
        _ => return Ok(()),
    };
    let wanted = format!("{binding}={node}");
    let selected = fields
        .unwrap_or_default()
        .split(',')
        .any(|term| term.trim() == wanted || term.trim() == format!("{binding}=={node}"));
    if selected {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "node {node:?} may list {} only with fieldSelector={wanted}",
            kind.plural
        )))
    }
}

/// A node reads an image (its object or its data) only when it is public or community, or
/// when something bound to the node boots from it: a server placed there (in the image's own
/// project, or in a project it is shared with) naming it in `spec.image`, or a volume placed
/// there made from it. Other projects' private images answer 404, like to their users.
async fn node_may_read_image(
    state: &ApiState,
    node: &str,
    project: Option<&str>,
    name: &str,
) -> Result<(), ApiError> {
    let images = cirrus_crds::kind_by_plural("images").expect("images is a kind");
    let stored = state.store.get(images, project, name).await?;
    let Some(image) = crate::openstack::image::typed(&stored) else {
        return Err(not_found(images, project, Some(name)));
    };
    if matches!(
        image.spec.visibility,
        cirrus_crds::kinds::image::Visibility::Public
            | cirrus_crds::kinds::image::Visibility::Community
    ) {
        return Ok(());
    }
    let owner = project.unwrap_or_default();
    // What is bound here was admitted (a share's acceptance included): visibility decides.
    let may_use = |server_project: &str| image.visible_to(server_project);
    let bound = |binding: &str| {
        cirrus_store::fields::FieldSelector::parse(&format!("{binding}={node}"))
            .map(|fields| cirrus_store::objects::ListOptions {
                fields,
                ..Default::default()
            })
            .map_err(|e| ApiError::internal(e.to_string()))
    };
    let servers = cirrus_crds::kind_by_plural("servers").expect("servers is a kind");
    let placed = state
        .store
        .list(servers, None, &bound("spec.nodeName")?)
        .await?;
    let uid = image.metadata.uid.as_deref();
    let names_it = |reference: Option<&str>| {
        reference.is_some() && (reference == Some(name) || reference == uid)
    };
    let boots_here = placed.items.iter().any(|s| {
        names_it(s.pointer("/spec/image").and_then(Value::as_str))
            && may_use(
                s.pointer("/metadata/project")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
            )
    });
    if boots_here {
        return Ok(());
    }
    // The kernel and ramdisk of an AMI-style image a server placed here boots: its
    // `kernel_id` / `ramdisk_id` properties name them in the image's own project.
    for server in &placed.items {
        let server_project = server
            .pointer("/metadata/project")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(boot) = server.pointer("/spec/image").and_then(Value::as_str) else {
            continue;
        };
        let boot_image = match state.store.get(images, Some(server_project), boot).await {
            Ok(found) => found,
            Err(cirrus_store::objects::ObjectError::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        let boot_project = boot_image
            .pointer("/metadata/project")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let names_this = ["kernel_id", "ramdisk_id"].iter().any(|key| {
            names_it(
                boot_image
                    .pointer(&format!("/spec/properties/{key}"))
                    .and_then(Value::as_str),
            )
        });
        if names_this && boot_project == owner {
            return Ok(());
        }
    }
    let volumes = cirrus_crds::kind_by_plural("volumes").expect("volumes is a kind");
    let placed = state
        .store
        .list(volumes, None, &bound("status.node")?)
        .await?;
    let copied_here = placed.items.iter().any(|v| {
        v.pointer("/spec/source/type").and_then(Value::as_str) == Some("image")
            && names_it(v.pointer("/spec/source/name").and_then(Value::as_str))
            && may_use(
                v.pointer("/metadata/project")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
            )
    });
    if copied_here {
        return Ok(());
    }
    Err(not_found(images, project, Some(name)))
}

/// Whether the caller's project may read `name` of another `project`, named exactly: an
/// image visible to it — public, community, or shared with it, answered or not
/// ([`cirrus_crds::Image::visible_to`]; using it needs the answer, see
/// [`crate::admission::image_use`]) — or a network shared with it
/// ([`cirrus_crds::Network::usable_by`]; its ports may name it, see
/// [`crate::admission::network_use`]).
async fn is_readable_across(
    state: &ApiState,
    caller: &Caller,
    kind: &KindInfo,
    project: &str,
    name: &str,
) -> Result<bool, ApiError> {
    let reader = caller.project().unwrap_or_default();
    Ok(match kind.plural {
        "images" => stored::<cirrus_crds::Image>(state, project, name)
            .await?
            .is_some_and(|image| image.visible_to(reader)),
        "networks" => stored::<cirrus_crds::Network>(state, project, name)
            .await?
            .is_some_and(|network| network.usable_by(reader)),
        _ => false,
    })
}

/// The object `name` of kind `K` in `project`, if there is one.
async fn stored<K: cirrus_crds::Resource>(
    state: &ApiState,
    project: &str,
    name: &str,
) -> Result<Option<K>, ApiError> {
    let api = cirrus_store::objects::Api::<K>::in_project(state.store.clone(), project.to_string());
    match api.get(name).await {
        Ok(object) => Ok(Some(object)),
        Err(cirrus_store::objects::ObjectError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn node_forbidden(node: &str, kind: &KindInfo) -> ApiError {
    ApiError::forbidden(format!(
        "node {node:?} may only write the status of {} bound to it",
        kind.plural
    ))
}

fn forbidden(kind: &KindInfo, project: &str) -> ApiError {
    let place = if project.is_empty() {
        String::new()
    } else {
        format!(" in project {project:?}")
    };
    ApiError::new(
        StatusCode::FORBIDDEN,
        "Forbidden",
        format!("your role may not change {}{place}", kind.plural),
    )
}

/// The same 404 the store gives for a missing object, so a refusal tells nothing.
fn not_found(kind: &KindInfo, project: Option<&str>, name: Option<&str>) -> ApiError {
    match (project, name) {
        (Some(project), Some(name)) => ApiError::not_found(format!(
            "{} {name:?} not found in project {project:?}",
            kind.singular
        )),
        (None, Some(name)) => ApiError::not_found(format!("{} {name:?} not found", kind.singular)),
        (Some(project), None) => ApiError::not_found(format!("project {project:?} not found")),
        (None, None) => ApiError::not_found(format!("{} not found", kind.plural)),
    }
}

/// Removes what no response may carry: a user's password hash.
pub(crate) fn redact(kind: &KindInfo, object: &mut Value) {
    if kind.plural == "users"
        && let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut)
    {
        spec.remove("passwordHash");
    }
}
