//! Objects → Cinder bodies.
//!
//! A volume's `status` is the node agent's `status.phase`, corrected by what the servers
//! declare right now ([`volume_status`]): an `available` volume a live server has just been
//! given is `attaching`, an `in-use` one no live server wants any more is `detaching`, until
//! the node agent reports the outcome. References by name (`spec.source.name`,
//! `status.attachments[].server`) become ids through an [`Index`] of the project's objects.

use std::collections::HashMap;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{Ctx, api_fault, project_of, server_kind, snapshot_kind, volume_kind};
use crate::ApiState;
use crate::openstack::common;
use crate::openstack::fault::Fault;

/// The availability zone shown when a volume names none (Cinder's and Nova's default).
pub const DEFAULT_ZONE: &str = "nova";

/// The volume type shown when a volume names none.
pub const DEFAULT_TYPE: &str = "file";

/// The objects a rendering refers to: servers, volumes and snapshots of some projects.
#[derive(Debug, Default)]
pub(crate) struct Index {
    servers: Vec<Value>,
    volumes: Vec<Value>,
    snapshots: Vec<Value>,
    uids: HashMap<(&'static str, String, String), String>,
}

impl Index {
    /// Reads the servers, volumes and snapshots of `project` (`None`: every project).
    pub async fn load(state: &ApiState, project: Option<&str>) -> Result<Self, Fault> {
        let servers = common::list(state, server_kind(), project)
            .await
            .map_err(api_fault)?;
        let volumes = common::list(state, volume_kind(), project)
            .await
            .map_err(api_fault)?;
        let snapshots = common::list(state, snapshot_kind(), project)
            .await
            .map_err(api_fault)?;
        Ok(Self::new(servers, volumes, snapshots))
    }

    /// The index of these objects.
    pub fn new(servers: Vec<Value>, volumes: Vec<Value>, snapshots: Vec<Value>) -> Self {
        let mut uids = HashMap::new();
        for (kind, list) in [("s", &servers), ("v", &volumes), ("n", &snapshots)] {
            for o in list {
                uids.insert((kind, project_of(o), common::name(o)), common::uid(o));
            }
        }
        Self {
            servers,
            volumes,
            snapshots,
            uids,
        }
    }

    /// The volumes read.
    pub fn volumes(&self) -> &[Value] {
        &self.volumes
    }

    /// The snapshots read.
    pub fn snapshots(&self) -> &[Value] {
        &self.snapshots
    }

    /// Uid of server `name` of `project`.
    pub fn server_uid(&self, project: &str, name: &str) -> Option<&str> {
        self.uids
            .get(&("s", project.to_string(), name.to_string()))
            .map(String::as_str)
    }

    /// Uid of volume `name` of `project`.
    pub fn volume_uid(&self, project: &str, name: &str) -> Option<&str> {
        self.uids
            .get(&("v", project.to_string(), name.to_string()))
            .map(String::as_str)
    }

    /// Uid of snapshot `name` of `project`.
    pub fn snapshot_uid(&self, project: &str, name: &str) -> Option<&str> {
        self.uids
            .get(&("n", project.to_string(), name.to_string()))
            .map(String::as_str)
    }

    /// The live servers of `project` that declare volume `name` (in `spec.volumes` or as
    /// `spec.bootVolume`).
    pub fn users_of(&self, project: &str, name: &str) -> Vec<&Value> {
        self.servers
            .iter()
            .filter(|s| project_of(s) == project && is_live(s) && declares(s, name))
            .collect()
    }

    /// Size in GiB of volume `name` of `project`.
    pub fn volume_size(&self, project: &str, name: &str) -> Option<u64> {
        self.volumes
            .iter()
            .find(|v| project_of(v) == project && common::name(v) == name)
            .and_then(|v| v.pointer("/spec/size").and_then(Value::as_u64))
    }
}

/// Whether an object is not being deleted.
pub fn is_live(object: &Value) -> bool {
    object.pointer("/metadata/deletionTimestamp").is_none()
}

/// Whether server `server` names volume `volume` in `spec.volumes` or `spec.bootVolume`.
pub fn declares(server: &Value, volume: &str) -> bool {
    server.pointer("/spec/bootVolume").and_then(Value::as_str) == Some(volume)
        || server
            .pointer("/spec/volumes")
            .and_then(Value::as_array)
            .is_some_and(|l| {
                l.iter()
                    .any(|e| e.get("volume").and_then(Value::as_str) == Some(volume))
            })
}

/// Cinder's status of a volume: being deleted → `deleting` (or the agent's
/// `error_deleting`); never observed → `creating`; `available` but declared by a live
/// server → `attaching`; `available` while `growing` (its size asked for more than the node
/// provisioned, as right after `os-extend`) → `extending`; `in-use` but declared by none →
/// `detaching`; else the phase.
pub fn volume_status(deleting: bool, phase: Option<&str>, declared: bool, growing: bool) -> String {
    match (deleting, phase) {
        (true, Some("error_deleting")) => "error_deleting",
        (true, _) => "deleting",
        (false, None) => "creating",
        (false, Some("available")) if declared => "attaching",
        (false, Some("available")) if growing => "extending",
        (false, Some("in-use")) if !declared => "detaching",
        (false, Some(p)) => p,
    }
    .to_string()
}

/// The status of the volume object `volume` (see [`volume_status`]).
pub(crate) fn status_of(volume: &Value, index: &Index) -> String {
    let declared = !index
        .users_of(&project_of(volume), &common::name(volume))
        .is_empty();
    let wanted = volume.pointer("/spec/size").and_then(Value::as_u64);
    let provisioned = volume.pointer("/status/size").and_then(Value::as_u64);
    let growing = matches!((wanted, provisioned), (Some(w), Some(p)) if w > p);
    volume_status(
        !is_live(volume),
        volume.pointer("/status/phase").and_then(Value::as_str),
        declared,
        growing,
    )
}

/// The snapshot's Cinder status: `deleting` while deleted, `creating` until observed.
pub fn snapshot_status(snapshot: &Value) -> String {
    if !is_live(snapshot) {
        return match snapshot.pointer("/status/phase").and_then(Value::as_str) {
            Some("error_deleting") => "error_deleting",
            _ => "deleting",
        }
        .to_string();
    }
    snapshot
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("creating")
        .to_string()
}

/// A stable attachment id for volume `volume_uid` attached to server `server_uid`: a UUID
/// made of the first 16 bytes of their SHA-256 (Cinder attachment ids are UUIDs; Cirrus
/// has no attachment object, the pair is the attachment).
pub fn attachment_id(volume_uid: &str, server_uid: &str) -> String {
    let digest = Sha256::digest(format!("{volume_uid}/{server_uid}").as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The OpenStack name: the annotation, `null` when it was created without a name.
fn name_field(object: &Value) -> Value {
    let name = common::display_name(object);
    if name.is_empty() {
        Value::Null
    } else {
        Value::from(name)
    }
}

fn str_at(object: &Value, pointer: &str) -> Value {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .map_or(Value::Null, Value::from)
}

fn time_at(object: &Value, pointer: &str) -> Value {
    common::openstack_time(object.pointer(pointer).and_then(Value::as_str))
        .map_or(Value::Null, Value::from)
}

/// The user recorded at creation (`user_id`); an empty string for objects made natively
/// (Cinder's `user_id` is always a string, and so is Nova's for servers).
fn user_of(object: &Value) -> Value {
    Value::from(
        object
            .pointer("/metadata/annotations/openstack.org~1user-id")
            .and_then(Value::as_str)
            .unwrap_or_default(),
    )
}

/// The volume's `links`.
fn volume_links(base: &str, project: &str, id: &str) -> Value {
    json!([
        {"rel": "self", "href": format!("{base}/volume/v3/{project}/volumes/{id}")},
        {"rel": "bookmark", "href": format!("{base}/volume/{project}/volumes/{id}")},
    ])
}

/// The short form in `GET /volumes`: id, name, links.
pub fn volume_summary(volume: &Value, base: &str) -> Value {
    let id = common::uid(volume);
    json!({
        "id": id,
        "name": name_field(volume),
        "links": volume_links(base, &project_of(volume), &id),
    })
}

/// The full volume body (`show`, `detail`, create and update answers). `admin` adds the
/// host attribute (`node@backend#pool`).
pub(crate) fn volume_body(volume: &Value, index: &Index, base: &str, admin: bool) -> Value {
    let id = common::uid(volume);
    let project = project_of(volume);
    let source_type = volume
        .pointer("/spec/source/type")
        .and_then(Value::as_str)
        .unwrap_or("empty");
    let source_name = volume
        .pointer("/spec/source/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let snapshot_id = match source_type {
        "snapshot" => index
            .snapshot_uid(&project, source_name)
            .map_or(Value::Null, Value::from),
        _ => Value::Null,
    };
    let source_volid = match source_type {
        "volume" => index
            .volume_uid(&project, source_name)
            .map_or(Value::Null, Value::from),
        _ => Value::Null,
    };
    let attachments: Vec<Value> = volume
        .pointer("/status/attachments")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|a| {
                    let server = a.get("server").and_then(Value::as_str)?;
                    let server_id = index.server_uid(&project, server)?;
                    Some(json!({
                        "id": id,
                        "attachment_id": attachment_id(&id, server_id),
                        "volume_id": id,
                        "server_id": server_id,
                        "host_name": a.get("node").cloned().unwrap_or(Value::Null),
                        "device": a.get("device").cloned().unwrap_or(Value::Null),
                        "attached_at": common::openstack_time(
                            a.get("attachedAt").and_then(Value::as_str)
                        ),
                    }))
                })
                .collect()
        })
        .unwrap_or_default();
    let bootable = volume
        .pointer("/spec/bootable")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut body = json!({
        "id": id,
        "name": name_field(volume),
        "description": str_at(volume, "/spec/description"),
        "status": status_of(volume, index),
        "size": volume.pointer("/spec/size").and_then(Value::as_u64).unwrap_or(0),
        "availability_zone": volume
            .pointer("/spec/availabilityZone")
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_ZONE),
        "created_at": time_at(volume, "/metadata/creationTimestamp"),
        "updated_at": Value::Null,
        "volume_type": volume
            .pointer("/spec/volumeType")
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_TYPE),
        "snapshot_id": snapshot_id,
        "source_volid": source_volid,
        "bootable": if bootable { "true" } else { "false" },
        "encrypted": false,
        "multiattach": volume.pointer("/spec/multiattach").and_then(Value::as_bool).unwrap_or(false),
        "replication_status": "disabled",
        "consistencygroup_id": Value::Null,
        "attachments": attachments,
        "metadata": volume.pointer("/spec/metadata").cloned().unwrap_or_else(|| json!({})),
        "user_id": user_of(volume),
        "os-vol-tenant-attr:tenant_id": project,
        "os-vol-mig-status-attr:migstat": Value::Null,
        "os-vol-mig-status-attr:name_id": Value::Null,
        "links": volume_links(base, &project, &id),
    });
    if source_type == "image" {
        body["volume_image_metadata"] = json!({"image_name": source_name});
    }
    if admin {
        let host = match (
            volume.pointer("/status/node").and_then(Value::as_str),
            volume.pointer("/status/pool").and_then(Value::as_str),
        ) {
            (Some(node), Some(pool)) => Value::from(format!(
                "{node}@{}#{pool}",
                body["volume_type"].as_str().unwrap_or(DEFAULT_TYPE)
            )),
            // Cinder's host is always `host@backend#pool`: the backend stands for the pool.
            (Some(node), None) => {
                let backend = body["volume_type"].as_str().unwrap_or(DEFAULT_TYPE);
                Value::from(format!("{node}@{backend}#{backend}"))
            }
            _ => Value::Null,
        };
        body["os-vol-host-attr:host"] = host;
    }
    body
}

/// Cinder's volume body without the extended attributes (`os-vol-tenant-attr:*`,
/// `os-vol-mig-status-attr:*`, `os-vol-host-attr:*`) and `volume_image_metadata`: what create
/// and update answer (Cinder adds the extensions to show and detail only; tempest's
/// `create_volume` and `update_volume` schemas refuse them).
pub(crate) fn basic_volume(mut body: Value) -> Value {
    if let Some(map) = body.as_object_mut() {
        map.retain(|k, _| !k.starts_with("os-vol-") && k != "volume_image_metadata");
    }
    body
}

/// Cinder's snapshot body without the extended attributes
/// (`os-extended-snapshot-attributes:*`): the summary list, create and update answers (only
/// show and detail carry them, as in tempest's schemas).
pub(crate) fn basic_snapshot(mut body: Value) -> Value {
    if let Some(map) = body.as_object_mut() {
        map.retain(|k, _| !k.starts_with("os-extended-snapshot-attributes:"));
    }
    body
}

/// The full snapshot body (show and detail). Cinder 3.0 has no `user_id` on snapshots (it
/// came with 3.41), so tempest's schema has none either.
pub(crate) fn snapshot_body(snapshot: &Value, index: &Index) -> Value {
    let project = project_of(snapshot);
    let volume = snapshot
        .pointer("/spec/volume")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let status = snapshot_status(snapshot);
    let size = snapshot
        .pointer("/status/size")
        .and_then(Value::as_u64)
        .or_else(|| index.volume_size(&project, volume))
        .unwrap_or(0);
    json!({
        "id": common::uid(snapshot),
        "name": name_field(snapshot),
        "description": str_at(snapshot, "/spec/description"),
        "status": status,
        "size": size,
        "volume_id": index.volume_uid(&project, volume),
        "created_at": time_at(snapshot, "/metadata/creationTimestamp"),
        "updated_at": Value::Null,
        "metadata": snapshot.pointer("/spec/metadata").cloned().unwrap_or_else(|| json!({})),
        "os-extended-snapshot-attributes:project_id": project,
        "os-extended-snapshot-attributes:progress":
            if status == "available" { "100%" } else { "0%" },
    })
}

/// The `Ctx` project, or every project for a cloud admin asking `all_tenants`.
pub(crate) fn list_scope(ctx: &Ctx, all_tenants: bool) -> Option<&str> {
    if ctx.admin && all_tenants {
        None
    } else {
        Some(ctx.project.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_follows_phase_and_declarations() {
        assert_eq!(volume_status(false, None, false, false), "creating");
        assert_eq!(
            volume_status(false, Some("available"), false, false),
            "available"
        );
        assert_eq!(
            volume_status(false, Some("available"), true, false),
            "attaching"
        );
        assert_eq!(
            volume_status(false, Some("available"), false, true),
            "extending"
        );
        assert_eq!(volume_status(false, Some("in-use"), true, true), "in-use");
        assert_eq!(volume_status(false, Some("in-use"), true, false), "in-use");
        assert_eq!(
            volume_status(false, Some("in-use"), false, false),
            "detaching"
        );
        assert_eq!(
            volume_status(false, Some("detaching"), false, false),
            "detaching"
        );
        assert_eq!(volume_status(false, Some("error"), true, false), "error");
        assert_eq!(
            volume_status(true, Some("available"), false, false),
            "deleting"
        );
        assert_eq!(
            volume_status(true, Some("error_deleting"), false, false),
            "error_deleting"
        );
    }

    #[test]
    fn attachment_ids_are_stable_uuids() {
        let a = attachment_id("v1", "s1");
        assert_eq!(a, attachment_id("v1", "s1"));
        assert_ne!(a, attachment_id("v1", "s2"));
        let groups: Vec<usize> = a.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12]);
    }

    fn object(kind: &str, project: &str, name: &str, uid: &str, spec: Value) -> Value {
        json!({"kind": kind, "metadata": {"name": name, "project": project, "uid": uid,
            "creationTimestamp": "2026-01-02T03:04:05.123Z"}, "spec": spec})
    }

    #[test]
    fn volume_body_translates_names_to_ids() {
        let server = object(
            "Server",
            "p",
            "web",
            "srv-uid",
            json!({"volumes": [{"volume": "data"}]}),
        );
        let snap = object(
            "VolumeSnapshot",
            "p",
            "snap",
            "snap-uid",
            json!({"volume": "base"}),
        );
        let mut volume = object(
            "Volume",
            "p",
            "data",
            "vol-uid",
            json!({"size": 3, "source": {"type": "snapshot", "name": "snap"}, "bootable": true}),
        );
        volume["metadata"]["annotations"] =
            json!({"openstack.org/name": "My data", "openstack.org/user-id": "alice"});
        volume["status"] = json!({"phase": "in-use", "node": "n1", "pool": "vols",
            "attachments": [{"server": "web", "device": "/dev/vdc", "node": "n1"}]});
        let index = Index::new(vec![server], vec![volume.clone()], vec![snap]);
        let body = volume_body(&volume, &index, "http://h", true);
        assert_eq!(body["name"], "My data");
        assert_eq!(body["status"], "in-use");
        assert_eq!(body["snapshot_id"], "snap-uid");
        assert_eq!(body["bootable"], "true");
        assert_eq!(body["user_id"], "alice");
        assert_eq!(body["volume_type"], DEFAULT_TYPE);
        assert_eq!(body["os-vol-tenant-attr:tenant_id"], "p");
        assert_eq!(body["os-vol-host-attr:host"], "n1@file#vols");
        assert_eq!(body["created_at"], "2026-01-02T03:04:05Z");
        let att = &body["attachments"][0];
        assert_eq!(att["server_id"], "srv-uid");
        assert_eq!(att["device"], "/dev/vdc");
        assert_eq!(att["host_name"], "n1");
        assert_eq!(att["attachment_id"], attachment_id("vol-uid", "srv-uid"));
        assert_eq!(
            body["links"][0]["href"],
            "http://h/volume/v3/p/volumes/vol-uid"
        );
        let plain = volume_body(&volume, &index, "http://h", false);
        assert!(plain.get("os-vol-host-attr:host").is_none());
        let basic = basic_volume(body);
        assert!(
            basic
                .as_object()
                .unwrap()
                .keys()
                .all(|k| !k.starts_with("os-vol-"))
        );
        assert_eq!(basic["user_id"], "alice");
        let from_image =
            basic_volume(json!({"id": "v", "volume_image_metadata": {"image_name": "i"}}));
        assert!(
            from_image.get("volume_image_metadata").is_none(),
            "create and update answers carry no image metadata (tempest's schemas)"
        );
        volume["status"] = json!({"phase": "available", "node": "n1"});
        let index = Index::new(vec![], vec![volume.clone()], vec![]);
        let body = volume_body(&volume, &index, "http://h", true);
        assert_eq!(body["os-vol-host-attr:host"], "n1@file#file");
    }

    #[test]
    fn snapshot_size_falls_back_to_the_volume() {
        let volume = object("Volume", "p", "base", "vol-uid", json!({"size": 7}));
        let snap = object(
            "VolumeSnapshot",
            "p",
            "s",
            "snap-uid",
            json!({"volume": "base"}),
        );
        let index = Index::new(vec![], vec![volume], vec![snap.clone()]);
        let body = snapshot_body(&snap, &index);
        assert_eq!(body["size"], 7);
        assert_eq!(body["status"], "creating");
        assert_eq!(body["volume_id"], "vol-uid");
        assert_eq!(body["name"], "s");
        assert_eq!(body["os-extended-snapshot-attributes:progress"], "0%");
        assert!(body.get("user_id").is_none());
        let basic = basic_snapshot(body);
        assert!(
            basic
                .get("os-extended-snapshot-attributes:project_id")
                .is_none()
        );
        assert_eq!(basic["id"], "snap-uid");
    }
}
