//! Attaching and detaching: the one model behind Cinder's `os-attach`/`os-detach` and Nova's
//! `os-volume_attachments` — an entry in the server's `spec.volumes` (docs/storage.md). The
//! node agent hot-plugs it and reports `in-use` / `detaching` / `available` in the volume's
//! status; these functions only check the request and write the server.

use serde_json::{Value, json};

use super::render::{self, Index};
use super::{DIALECT, modify, project_of, server_kind};
use crate::ApiState;
use crate::auth::Caller;
use crate::openstack::common;
use crate::openstack::fault::Fault;

/// `400` unless `device` is absent or a `/dev/<lowercase letters and digits>` path (what
/// `Server.spec.volumes[].device` accepts).
pub fn check_device(device: Option<&str>) -> Result<(), Fault> {
    let Some(device) = device else {
        return Ok(());
    };
    let ok = device.strip_prefix("/dev/").is_some_and(|d| {
        !d.is_empty()
            && d.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    });
    if ok {
        Ok(())
    } else {
        Err(Fault::bad_request(
            DIALECT,
            format!(
                "The supplied device path ({device}) is invalid: give /dev/<name>, e.g. /dev/vdc."
            ),
        ))
    }
}

/// Why `volume` can't be attached to `server` now, as a `400`/`409` fault; `Ok` when it can.
/// Rules (Nova's and Cinder's): the server is not being deleted (`409`); the volume is
/// not being deleted, not already on this server, not used by another live server unless
/// multiattach, and `available` (`400` "Invalid volume").
pub(crate) fn check_attach(server: &Value, volume: &Value, index: &Index) -> Result<(), Fault> {
    let server_id = common::uid(server);
    let volume_id = common::uid(volume);
    let volume_name = common::name(volume);
    if !render::is_live(server) {
        return Err(Fault::conflict(
            DIALECT,
            format!(
                "Cannot 'attach_volume' instance {server_id} while it is in task_state deleting"
            ),
        ));
    }
    if project_of(server) != project_of(volume) {
        return Err(Fault::bad_request(
            DIALECT,
            format!(
                "Invalid volume: volume {volume_id} belongs to another project than server {server_id}."
            ),
        ));
    }
    if render::declares(server, &volume_name) {
        return Err(Fault::bad_request(
            DIALECT,
            format!(
                "Invalid volume: volume {volume_id} is already attached to server {server_id}."
            ),
        ));
    }
    let status = render::status_of(volume, index);
    let multiattach = volume
        .pointer("/spec/multiattach")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let others = index.users_of(&project_of(volume), &volume_name);
    if let Some(other) = others.first()
        && !multiattach
    {
        return Err(Fault::bad_request(
            DIALECT,
            format!(
                "Invalid volume: volume {volume_id} is in use by server {} (status {status}); \
                 it must be available to attach (detach it first, or create it with multiattach).",
                common::uid(other)
            ),
        ));
    }
    let attachable =
        status == "available" || (multiattach && matches!(status.as_str(), "in-use" | "attaching"));
    if !attachable {
        return Err(Fault::bad_request(
            DIALECT,
            format!(
                "Invalid volume: volume {volume_id} status must be available to attach, but the \
                 current status is {status}."
            ),
        ));
    }
    Ok(())
}

/// Attaches `volume` to `server` (both objects as read, same project): checks
/// [`check_attach`], then appends `{volume, device, deleteOnTermination}` to the server's
/// `spec.volumes`.
pub(crate) async fn attach(
    state: &ApiState,
    caller: &Caller,
    server: &Value,
    volume: &Value,
    device: Option<&str>,
    delete_on_termination: bool,
) -> Result<(), Fault> {
    check_device(device)?;
    let project = project_of(server);
    let index = Index::load(state, Some(&project)).await?;
    check_attach(server, volume, &index)?;
    let volume_name = common::name(volume);
    let volume_id = common::uid(volume);
    let server_id = common::uid(server);
    modify(
        state,
        caller,
        server_kind(),
        &project,
        &common::name(server),
        |object| {
            if render::declares(object, &volume_name) {
                return Err(Fault::bad_request(
                    DIALECT,
                    format!("Invalid volume: volume {volume_id} is already attached to server {server_id}."),
                ));
            }
            if !render::is_live(object) {
                return Err(Fault::conflict(
                    DIALECT,
                    format!("Cannot 'attach_volume' instance {server_id} while it is in task_state deleting"),
                ));
            }
            let mut entry = json!({ "volume": volume_name });
            if let Some(d) = device {
                entry["device"] = Value::from(d);
            }
            if delete_on_termination {
                entry["deleteOnTermination"] = Value::Bool(true);
            }
            let spec = object
                .get_mut("spec")
                .and_then(Value::as_object_mut)
                .ok_or_else(|| Fault::internal(DIALECT, "server object has no spec"))?;
            let volumes = spec
                .entry("volumes")
                .or_insert_with(|| Value::Array(Vec::new()));
            if volumes.is_null() {
                *volumes = Value::Array(Vec::new());
            }
            volumes
                .as_array_mut()
                .ok_or_else(|| Fault::internal(DIALECT, "server spec.volumes is not a list"))?
                .push(entry);
            Ok(())
        },
    )
    .await?;
    // Two attaches of one volume to two servers may both pass the check above. Each looks
    // again after its own write; one that sees another server declaring the volume backs
    // out. The later of two writes always sees the earlier one (unless that one has already
    // backed out), so two servers never both keep a single-attach volume.
    let multiattach = volume
        .pointer("/spec/multiattach")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if !multiattach {
        let after = Index::load(state, Some(&project)).await?;
        let rival = after
            .users_of(&project, &volume_name)
            .into_iter()
            .find(|s| common::name(s) != common::name(server))
            .map(common::uid);
        if let Some(rival) = rival {
            detach(state, caller, server, volume).await?;
            return Err(Fault::conflict(
                DIALECT,
                format!(
                    "Volume {volume_id} was attached to server {rival} at the same time; it \
                     stays there. Try again after detaching it."
                ),
            ));
        }
    }
    tracing::info!(server = %common::name(server), volume = %volume_name, %project, "volume attached (spec)");
    Ok(())
}

/// Detaches `volume` from `server`: removes its `spec.volumes` entry. `404` when the server
/// does not have it; `400` for the boot volume (the root disk can't be detached).
pub(crate) async fn detach(
    state: &ApiState,
    caller: &Caller,
    server: &Value,
    volume: &Value,
) -> Result<(), Fault> {
    let project = project_of(server);
    let volume_name = common::name(volume);
    let volume_id = common::uid(volume);
    let server_id = common::uid(server);
    modify(
        state,
        caller,
        server_kind(),
        &project,
        &common::name(server),
        |object| {
            if object.pointer("/spec/bootVolume").and_then(Value::as_str)
                == Some(volume_name.as_str())
            {
                return Err(Fault::bad_request(
                    DIALECT,
                    format!("Cannot detach a root device volume: volume {volume_id} is the boot volume of server {server_id}."),
                ));
            }
            let list = object
                .pointer_mut("/spec/volumes")
                .and_then(Value::as_array_mut);
            let Some(list) = list.filter(|l| {
                l.iter()
                    .any(|e| e.get("volume").and_then(Value::as_str) == Some(volume_name.as_str()))
            }) else {
                return Err(Fault::not_found(
                    DIALECT,
                    format!("Volume {volume_id} is not attached to server {server_id}."),
                ));
            };
            list.retain(|e| e.get("volume").and_then(Value::as_str) != Some(volume_name.as_str()));
            Ok(())
        },
    )
    .await?;
    tracing::info!(server = %common::name(server), volume = %volume_name, %project, "volume detached (spec)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(kind: &str, name: &str, uid: &str, spec: Value, status: Value) -> Value {
        json!({"kind": kind, "metadata": {"name": name, "project": "p", "uid": uid},
            "spec": spec, "status": status})
    }

    #[test]
    fn devices_must_be_dev_paths() {
        assert!(check_device(None).is_ok());
        assert!(check_device(Some("/dev/vdc")).is_ok());
        assert!(check_device(Some("vdc")).is_err());
        assert!(check_device(Some("/dev/../x")).is_err());
    }

    #[test]
    fn attach_rules() {
        let free = obj(
            "Volume",
            "v",
            "v-uid",
            json!({"size": 1}),
            json!({"phase": "available"}),
        );
        let creating = obj("Volume", "c", "c-uid", json!({"size": 1}), json!({}));
        let s1 = obj("Server", "s1", "s1-uid", json!({"flavor": "f"}), json!({}));
        let s2 = obj(
            "Server",
            "s2",
            "s2-uid",
            json!({"flavor": "f", "volumes": [{"volume": "v"}]}),
            json!({}),
        );
        let idle = Index::new(vec![s1.clone()], vec![free.clone()], vec![]);
        assert!(check_attach(&s1, &free, &idle).is_ok());
        let err = check_attach(&s1, &creating, &idle).unwrap_err();
        assert!(
            err.message.contains("current status is creating"),
            "{}",
            err.message
        );
        let busy = Index::new(vec![s1.clone(), s2.clone()], vec![free.clone()], vec![]);
        let err = check_attach(&s1, &free, &busy).unwrap_err();
        assert_eq!(err.code.as_u16(), 400);
        assert!(
            err.message.contains("in use by server s2-uid"),
            "{}",
            err.message
        );
        let err = check_attach(&s2, &free, &busy).unwrap_err();
        assert!(err.message.contains("already attached"), "{}", err.message);
        let mut shared = free.clone();
        shared["spec"]["multiattach"] = Value::Bool(true);
        assert!(
            check_attach(&s1, &shared, &busy).is_ok(),
            "multiattach volumes may be shared"
        );
        let mut gone = s1.clone();
        gone["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert_eq!(
            check_attach(&gone, &free, &idle).unwrap_err().code.as_u16(),
            409
        );
    }
}
