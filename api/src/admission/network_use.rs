//! Shared networks: a port or server of one project may sit on another project's network
//! only when that network is shared with it ([`cirrus_crds::Network::usable_by`]), and a
//! network other projects' ports use can neither stop being shared nor be deleted.
//!
//! A reference to another project's network names it with `networkProject`
//! (`Port.spec.networkProject`, `Server.spec.networks[].networkProject`). This check runs on
//! every create and on every update that changes such a reference, whichever front end
//! wrote it, so the controllers and node agents can follow the reference without asking
//! again. A network that does not exist and one that is not shared are refused with the
//! same words: a project learns nothing about another's private networks.

use axum::http::StatusCode;
use cirrus_crds::{KindInfo, Network, Port, Resource, Server};
use cirrus_store::fields::FieldSelector;
use cirrus_store::objects::{ListOptions, ObjectError, ObjectStore};
use serde_json::Value;

use crate::error::ApiError;

/// How many using ports a refusal names.
const NAMED: usize = 10;

/// Every reference of `object` (a port or server of `project`) to another project's
/// network: `(field, owner project, network)`.
fn foreign_references(
    kind: &KindInfo,
    project: &str,
    object: &Value,
) -> Vec<(String, String, String)> {
    let text = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_string);
    let mut found = Vec::new();
    if kind.plural == Port::info().plural {
        if let (Some(owner), Some(network)) = (
            text(object, "/spec/networkProject"),
            text(object, "/spec/network"),
        ) {
            found.push(("spec.networkProject".to_string(), owner, network));
        }
    } else if kind.plural == Server::info().plural
        && let Some(entries) = object.pointer("/spec/networks").and_then(Value::as_array)
    {
        for (i, entry) in entries.iter().enumerate() {
            if let (Some(owner), Some(network)) =
                (text(entry, "/networkProject"), text(entry, "/network"))
            {
                found.push((format!("spec.networks[{i}].networkProject"), owner, network));
            }
        }
    }
    found.retain(|(_, owner, _)| owner != project);
    found
}

/// Refuses a port or server of `project` (`object` as it would be stored) that names a
/// network of another project which is not shared with it (`400` naming the field).
/// `current` is the stored object on an update: references it already holds are not judged
/// again, so unsharing a network (refused while in use) never freezes its users.
pub(crate) async fn check(
    store: &ObjectStore,
    kind: &KindInfo,
    project: Option<&str>,
    current: Option<&Value>,
    object: &Value,
) -> Result<(), ApiError> {
    let Some(project) = project else {
        return Ok(());
    };
    let held: Vec<(String, String)> = current
        .map(|c| foreign_references(kind, project, c))
        .unwrap_or_default()
        .into_iter()
        .map(|(_, owner, network)| (owner, network))
        .collect();
    for (field, owner, network) in foreign_references(kind, project, object) {
        if held.contains(&(owner.clone(), network.clone())) {
            continue;
        }
        let usable = match store
            .get(Network::info(), Some(owner.as_str()), &network)
            .await
        {
            Ok(stored) => serde_json::from_value::<Network>(stored)
                .map_err(|e| ApiError::internal(format!("a stored network does not parse: {e}")))?
                .usable_by(project),
            Err(ObjectError::NotFound { .. }) => false,
            Err(e) => return Err(e.into()),
        };
        if !usable {
            return Err(ApiError::bad_request(format!(
                "{field}: project {owner:?} has no network {network:?} shared with project \
                 {project:?}; a network of another project is usable only when its owner \
                 shares it (spec.shared)"
            )));
        }
    }
    Ok(())
}

/// The ports, in every project, on `network` of `project` other than its DHCP ports that
/// are not being deleted; `foreign_only` keeps those of other projects.
pub(crate) async fn ports_on(
    store: &ObjectStore,
    project: &str,
    network: &str,
    foreign_only: bool,
) -> Result<Vec<(String, String)>, ApiError> {
    let fields = FieldSelector::parse(&format!("spec.network={network}"))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let options = ListOptions {
        fields,
        ..Default::default()
    };
    let list = store.list(Port::info(), None, &options).await?;
    let text = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_string);
    Ok(list
        .items
        .iter()
        .filter(|p| {
            p.pointer("/spec/deviceOwner").and_then(Value::as_str)
                != Some(cirrus_crds::conventions::DEVICE_OWNER_DHCP)
        })
        .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
        .filter_map(|p| {
            let own = text(p, "/metadata/project")?;
            let owner = text(p, "/spec/networkProject").unwrap_or_else(|| own.clone());
            let name = text(p, "/metadata/name")?;
            (owner == project && (!foreign_only || own != project)).then_some((own, name))
        })
        .collect())
}

/// `"name", "name" (project "p"), …` for a refusal of `network_project`'s network: at most
/// [`NAMED`] ports, another project's ones with their project.
fn named(network_project: &str, ports: &[(String, String)]) -> String {
    let mut named = ports
        .iter()
        .take(NAMED)
        .map(|(project, name)| {
            if project == network_project {
                format!("{name:?}")
            } else {
                format!("{name:?} (project {project:?})")
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    if ports.len() > NAMED {
        named.push_str(&format!(" and {} more", ports.len() - NAMED));
    }
    named
}

/// `Ok` when no port uses the object, else the `409 InUse` whose message `describe` writes
/// from the number of `users` and their names ([`named`], for `project`'s object).
pub(crate) fn refuse_while_used(
    project: &str,
    users: &[(String, String)],
    describe: impl FnOnce(usize, String) -> String,
) -> Result<(), ApiError> {
    if users.is_empty() {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "InUse",
        describe(users.len(), named(project, users)),
    ))
}

/// Refuses to stop sharing `network` of `project` (the change from `current` to `proposed`
/// turns `spec.shared` off) while ports of other projects are on it (`409`, as Neutron
/// answers "multiple tenants are using it").
pub(crate) async fn check_unshare(
    store: &ObjectStore,
    kind: &KindInfo,
    project: Option<&str>,
    current: &Value,
    proposed: &Value,
) -> Result<(), ApiError> {
    let shared = |v: &Value| v.pointer("/spec/shared").and_then(Value::as_bool) == Some(true);
    let (Some(project), Some(network)) = (
        project,
        current.pointer("/metadata/name").and_then(Value::as_str),
    ) else {
        return Ok(());
    };
    if kind.plural != Network::info().plural || !shared(current) || shared(proposed) {
        return Ok(());
    }
    let users = ports_on(store, project, network, true).await?;
    refuse_while_used(project, &users, |count, names| {
        format!(
            "spec.shared: network {network:?} of project {project:?} cannot stop being shared \
             while {count} port(s) of other projects use it: {names}"
        )
    })
}

/// Whether a write of `kind` by `project` with this body (`change`: the whole object when
/// `replace`, else a merge patch) can change what [`check`] or [`check_unshare`] judge, so
/// the stored object must be read first.
pub(crate) fn concerns(kind: &KindInfo, project: &str, change: &Value, replace: bool) -> bool {
    let spec_dropped = change.pointer("/spec").is_some_and(Value::is_null);
    if kind.plural == Network::info().plural {
        // Turning `shared` off; a replacement without it does too.
        return match change.pointer("/spec/shared") {
            Some(Value::Bool(true)) => false,
            Some(_) => true,
            None => replace || spec_dropped,
        };
    }
    if kind.plural == Port::info().plural && !replace {
        // A patch of `network` alone moves a foreign reference the port already holds.
        return change.pointer("/spec/network").is_some()
            || change.pointer("/spec/networkProject").is_some();
    }
    !foreign_references(kind, project, change).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_references_to_other_projects_are_foreign() {
        let port = json!({"spec": {"network": "public", "networkProject": "admin"}});
        assert_eq!(
            foreign_references(Port::info(), "demo", &port),
            [(
                "spec.networkProject".to_string(),
                "admin".to_string(),
                "public".to_string()
            )]
        );
        assert!(foreign_references(Port::info(), "admin", &port).is_empty());
        let own = json!({"spec": {"network": "private"}});
        assert!(foreign_references(Port::info(), "demo", &own).is_empty());
        let server = json!({"spec": {"networks": [
            {"network": "private"},
            {"network": "public", "networkProject": "admin"},
            {"port": "p1"},
        ]}});
        assert_eq!(
            foreign_references(Server::info(), "demo", &server),
            [(
                "spec.networks[1].networkProject".to_string(),
                "admin".to_string(),
                "public".to_string()
            )]
        );
    }

    #[test]
    fn writes_that_cannot_change_a_network_reference_need_no_read() {
        let concerns = |kind, change: Value, replace| concerns(kind, "demo", &change, replace);
        assert!(!concerns(
            Port::info(),
            json!({"spec": {"description": "x"}}),
            false
        ));
        assert!(concerns(
            Port::info(),
            json!({"spec": {"network": "n"}}),
            false
        ));
        let foreign = json!({"spec": {"network": "n", "networkProject": "admin"}});
        assert!(concerns(Port::info(), foreign.clone(), true));
        assert!(!concerns(
            Port::info(),
            json!({"spec": {"network": "n"}}),
            true
        ));
        let server = json!({"spec": {"networks": [{"network": "n", "networkProject": "admin"}]}});
        assert!(concerns(Server::info(), server, false));
        assert!(!concerns(
            Server::info(),
            json!({"spec": {"networks": [{"network": "n"}]}}),
            false
        ));
        assert!(!concerns(
            Server::info(),
            json!({"metadata": {"labels": {}}}),
            false
        ));
        assert!(concerns(
            Network::info(),
            json!({"spec": {"shared": false}}),
            false
        ));
        assert!(!concerns(
            Network::info(),
            json!({"spec": {"shared": true}}),
            true
        ));
        assert!(!concerns(
            Network::info(),
            json!({"spec": {"mtu": 1400}}),
            false
        ));
        assert!(concerns(
            Network::info(),
            json!({"spec": {"mtu": 1400}}),
            true
        ));
    }
}
