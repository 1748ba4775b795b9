//! The pure write rules: who may set which field, who writes status, what never changes.
//!
//! [`admit`] decides one write from the writer, the stored object (`None` on create) and the
//! object as it would be stored. It reads nothing, so a table test walks it whole
//! (`tests` below) and every front end gets the same answer for the same write.
//!
//! # Rules
//! - **Status** is written by the controllers (cloud-admin credentials), the node the object
//!   is bound to (the binding itself is checked by [`crate::resources::authz`]) and the API's
//!   own derivations ([`Writer::Api`]: an image's checksum after an upload, a key pair's
//!   fingerprint). A user who is not a cloud admin never writes status: a forged
//!   `Image.status` would hand out another image's data, a forged `Volume.status.node` or
//!   `Server.status.node` would bypass placement or redirect the console proxy, a forged
//!   `Port.status.fixedIps` would claim another guest's metadata.
//! - **Admin-only fields** ([`ADMIN_FIELDS`]): only cloud admins choose a server's node, make
//!   an image public, share a network or make it external, pick its segmentation, or bind a
//!   port to a host — in Nova's, Glance's and Neutron's default policies as here. A write
//!   that leaves such a field as stored passes, so members can still edit the rest.
//! - **Node agents** write status and metadata of what is bound to them; they never change a
//!   spec, their own `Node`'s included (cordoning, zones and allocation ratios are the
//!   operator's), except when they register a `Node` that does not exist yet.
//! - **Immutable once data exists**: an image's `diskFormat` and `containerFormat` cannot
//!   change after its data is uploaded (the bytes were checked against the declared format
//!   only; a switch would make `qemu-img` read them as something else). For everyone.

use cirrus_crds::KindInfo;
use cirrus_store::objects::Part;
use serde_json::Value;

use crate::auth::Caller;
use crate::error::ApiError;

/// Who is writing.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Writer<'a> {
    /// A request's caller (user or node agent).
    Caller(&'a Caller),
    /// The API itself, recording what it derived after its own checks (never a request's
    /// body verbatim).
    Api,
}

impl Writer<'_> {
    fn is_cloud_admin(&self) -> bool {
        match self {
            Writer::Caller(caller) => caller.is_cloud_admin(),
            Writer::Api => true,
        }
    }

    fn node(&self) -> Option<&str> {
        match self {
            Writer::Caller(caller) => caller.node(),
            Writer::Api => None,
        }
    }
}

/// A field only cloud admins may set or change.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AdminField {
    /// The kind (`KindInfo::kind`).
    pub kind: &'static str,
    /// JSON pointer of the field.
    pub pointer: &'static str,
    /// `Some(v)`: only setting the field to `v` is reserved (an image may go `private` or
    /// `shared` freely, only `public` is the admins'); `None`: any change is.
    pub reserved_value: Option<&'static str>,
    /// What the field does, for the refusal.
    pub why: &'static str,
}

/// Every admin-only field (see the module rules).
pub(crate) const ADMIN_FIELDS: &[AdminField] = &[
    AdminField {
        kind: "Server",
        pointer: "/spec/nodeName",
        reserved_value: None,
        why: "only cloud admins choose the node a server runs on (the scheduler binds it)",
    },
    AdminField {
        kind: "Image",
        pointer: "/spec/visibility",
        reserved_value: Some("public"),
        why: "only cloud admins make an image public",
    },
    AdminField {
        kind: "Network",
        pointer: "/spec/shared",
        reserved_value: None,
        why: "only cloud admins share a network with every project",
    },
    AdminField {
        kind: "Network",
        pointer: "/spec/external",
        reserved_value: None,
        why: "only cloud admins make a network external",
    },
    AdminField {
        kind: "Network",
        pointer: "/spec/segmentation",
        reserved_value: None,
        why: "only cloud admins choose a network's segmentation (provider attributes)",
    },
    AdminField {
        kind: "Port",
        pointer: "/spec/bindingHost",
        reserved_value: None,
        why: "only cloud admins bind a port to a host",
    },
];

/// Fields fixed once an image has data.
const IMAGE_FORMAT_FIELDS: &[&str] = &["/spec/diskFormat", "/spec/containerFormat"];

/// Decides a write of `part` by `writer`: `old` is the stored object (`None`: a create),
/// `new` the object as it would be stored.
///
/// # Errors
/// `403 Forbidden` naming the field and the reason, `400 Invalid` (the store's answer to an
/// invalid object) for a change of an immutable field.
pub(crate) fn admit(
    writer: Writer<'_>,
    kind: &KindInfo,
    old: Option<&Value>,
    new: &Value,
    part: Part,
) -> Result<(), ApiError> {
    if part == Part::Status {
        return admit_status(writer, kind);
    }
    if let Some(node) = writer.node() {
        return admit_node_main(node, kind, old, new);
    }
    if !writer.is_cloud_admin() {
        for field in ADMIN_FIELDS.iter().filter(|f| f.kind == kind.kind) {
            if reserved_change(field, old, new) {
                return Err(ApiError::forbidden(format!(
                    "{}: {}",
                    dotted(field.pointer),
                    field.why
                )));
            }
        }
    }
    immutable(kind, old, new)
}

fn admit_status(writer: Writer<'_>, kind: &KindInfo) -> Result<(), ApiError> {
    if writer.is_cloud_admin() || writer.node().is_some() {
        return Ok(());
    }
    Err(ApiError::forbidden(format!(
        "status: the status of {} is written by the controllers and the node it is bound to, \
         not by users",
        kind.plural
    )))
}

/// A node agent's write of an object's main part: metadata (finalizers, labels) yes, spec
/// no — but it registers its own `Node` with the spec it starts from.
fn admit_node_main(
    node: &str,
    kind: &KindInfo,
    old: Option<&Value>,
    new: &Value,
) -> Result<(), ApiError> {
    let Some(old) = old else {
        // Creates are limited to its own Node and Lease by authorization.
        return Ok(());
    };
    if kind.kind == "Lease" {
        // Its heartbeat `Lease` (`node-<name>`, the only one authorization lets it write)
        // is renewed in spec.
        return Ok(());
    }
    if normalized(old.get("spec")) == normalized(new.get("spec")) {
        return Ok(());
    }
    Err(ApiError::forbidden(format!(
        "spec: node {node:?} may not change the spec of {} {:?}: only its status and metadata \
         (cordoning, zones and allocation ratios are the operator's)",
        kind.singular,
        name_of(new)
    )))
}

/// Whether `new` sets or changes `field` in a way only admins may.
fn reserved_change(field: &AdminField, old: Option<&Value>, new: &Value) -> bool {
    let before = normalized(old.and_then(|o| o.pointer(field.pointer)));
    let after = normalized(new.pointer(field.pointer));
    if before == after {
        return false;
    }
    match field.reserved_value {
        Some(reserved) => after.and_then(Value::as_str) == Some(reserved),
        None => true,
    }
}

/// A field's value with "unset" spelled one way: absent, `null`, `false`, `""`, `{}` and
/// `[]` are all the default.
fn normalized(value: Option<&Value>) -> Option<&Value> {
    match value {
        None | Some(Value::Null) | Some(Value::Bool(false)) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::Object(m)) if m.is_empty() => None,
        Some(Value::Array(a)) if a.is_empty() => None,
        other => other,
    }
}

fn immutable(kind: &KindInfo, old: Option<&Value>, new: &Value) -> Result<(), ApiError> {
    let Some(old) = old else {
        return Ok(());
    };
    if kind.kind != "Image" || !has_data(old) {
        return Ok(());
    }
    for pointer in IMAGE_FORMAT_FIELDS {
        let (before, after) = (old.pointer(pointer), new.pointer(pointer));
        if before != after {
            return Err(ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "Invalid",
                format!(
                    "{}: cannot change from {} to {} once the image has data: the data was \
                     checked against the declared format only; upload a new image instead",
                    dotted(pointer),
                    before.unwrap_or(&Value::Null),
                    after.unwrap_or(&Value::Null)
                ),
            ));
        }
    }
    Ok(())
}

/// Whether an image has data: a recorded hash or size, or any phase past `queued`.
pub(crate) fn has_data(image: &Value) -> bool {
    let status = |p: &str| image.pointer(p).filter(|v| !v.is_null());
    status("/status/osHashValue").is_some()
        || status("/status/size").is_some()
        || status("/status/location").is_some()
        || !matches!(
            image.pointer("/status/phase").and_then(Value::as_str),
            None | Some("queued" | "Queued")
        )
}

fn dotted(pointer: &str) -> String {
    pointer.trim_start_matches('/').replace('/', ".")
}

fn name_of(object: &Value) -> &str {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Caller, RawToken};
    use cirrus_auth::{Role, Subject, UserSubject};
    use serde_json::json;

    fn user(project: &str, role: Role) -> Caller {
        Caller {
            subject: Subject::User(UserSubject {
                name: "u".into(),
                uid: "u-uid".into(),
                project: Some(project.into()),
                role: Some(role),
            }),
            token: RawToken::default(),
        }
    }

    fn node(name: &str) -> Caller {
        Caller {
            subject: Subject::Node { name: name.into() },
            token: RawToken::default(),
        }
    }

    fn kind(plural: &str) -> &'static KindInfo {
        cirrus_crds::kind_by_plural(plural).unwrap()
    }

    /// One case: what, who, the kind's plural, stored object, new object, part, allowed.
    type Case<'a> = (
        &'a str,
        Writer<'a>,
        &'a str,
        Option<Value>,
        Value,
        Part,
        bool,
    );

    /// The whole table: writer × kind × old → new × part, and whether it passes.
    #[test]
    fn write_rules_table() {
        let member = user("demo", Role::Member);
        let admin = user(cirrus_auth::ADMIN_PROJECT, Role::Admin);
        let hv1 = node("hv-1");
        let server = json!({"metadata": {"name": "s"}, "spec": {"flavor": "m1"}});
        let placed =
            json!({"metadata": {"name": "s"}, "spec": {"flavor": "m1", "nodeName": "hv-1"}});
        let image = |vis: &str, fmt: &str, phase: Option<&str>| {
            let mut i = json!({"metadata": {"name": "i"},
                "spec": {"visibility": vis, "diskFormat": fmt, "containerFormat": "bare"}});
            if let Some(p) = phase {
                i["status"] = json!({"phase": p, "osHashValue": "ab"});
            }
            i
        };
        let net = |shared: bool| json!({"metadata": {"name": "n"}, "spec": {"shared": shared}});
        let port = |host: Option<&str>| json!({"metadata": {"name": "p"}, "spec": {"network": "n", "bindingHost": host}});
        let node_obj = |unschedulable: bool| json!({"metadata": {"name": "hv-1"}, "spec": {"unschedulable": unschedulable}});
        let lease = |renewed: i64| json!({"metadata": {"name": "node-hv-1"}, "spec": {"renewTime": renewed}});
        let m = Writer::Caller(&member);
        let a = Writer::Caller(&admin);
        let n = Writer::Caller(&hv1);
        let api = Writer::Api;
        use Part::*;
        #[rustfmt::skip]
        let table: Vec<Case> = vec![
            ("member creates a server",              m, "servers", None, server.clone(), Main, true),
            ("member creates a placed server",       m, "servers", None, placed.clone(), Main, false),
            ("member moves a server",                m, "servers", Some(server.clone()), placed.clone(), Main, false),
            ("member edits a placed server",         m, "servers", Some(placed.clone()), placed.clone(), Main, true),
            ("admin places a server",                a, "servers", Some(server.clone()), placed.clone(), Main, true),
            ("member writes server status",          m, "servers", Some(server.clone()), server.clone(), Status, false),
            ("admin writes server status",           a, "servers", Some(server.clone()), server.clone(), Status, true),
            ("node writes server status",            n, "servers", Some(placed.clone()), placed.clone(), Status, true),
            ("node changes a server spec",           n, "servers", Some(placed.clone()), server.clone(), Main, false),
            ("api writes image status",              api, "images", Some(image("private", "raw", None)), image("private", "raw", Some("active")), Status, true),
            ("member makes an image public",         m, "images", Some(image("private", "raw", None)), image("public", "raw", None), Main, false),
            ("member creates a public image",        m, "images", None, image("public", "raw", None), Main, false),
            ("member shares an image",               m, "images", Some(image("private", "raw", None)), image("shared", "raw", None), Main, true),
            ("member makes an image community",      m, "images", None, image("community", "raw", None), Main, true),
            ("admin makes an image public",          a, "images", Some(image("private", "raw", None)), image("public", "raw", None), Main, true),
            ("member edits a public image's rest",   m, "images", Some(image("public", "raw", None)), image("public", "raw", None), Main, true),
            ("format change before data",            m, "images", Some(image("private", "raw", None)), image("private", "qcow2", None), Main, true),
            ("format change after data (member)",    m, "images", Some(image("private", "raw", Some("active"))), image("private", "qcow2", Some("active")), Main, false),
            ("format change after data (admin)",     a, "images", Some(image("private", "raw", Some("active"))), image("private", "qcow2", Some("active")), Main, false),
            ("member writes image status",           m, "images", Some(image("private", "raw", None)), image("private", "raw", Some("active")), Status, false),
            ("member shares a network",              m, "networks", Some(net(false)), net(true), Main, false),
            ("member creates a shared network",      m, "networks", None, net(true), Main, false),
            ("member creates a network",             m, "networks", None, net(false), Main, true),
            ("admin shares a network",               a, "networks", Some(net(false)), net(true), Main, true),
            ("member binds a port",                  m, "ports", None, port(Some("hv-1")), Main, false),
            ("member creates a port",                m, "ports", None, port(None), Main, true),
            ("member writes port status",            m, "ports", Some(port(None)), port(None), Status, false),
            ("node uncordons itself",                n, "nodes", Some(node_obj(true)), node_obj(false), Main, false),
            ("node registers itself",                n, "nodes", None, node_obj(false), Main, true),
            ("node writes its node status",          n, "nodes", Some(node_obj(true)), node_obj(true), Status, true),
            ("node edits its node labels",           n, "nodes", Some(node_obj(true)), node_obj(true), Main, true),
            ("admin uncordons a node",               a, "nodes", Some(node_obj(true)), node_obj(false), Main, true),
            ("node renews its lease",                n, "leases", Some(lease(1)), lease(2), Main, true),
        ];
        for (what, writer, plural, old, new, part, allowed) in table {
            let got = admit(writer, kind(plural), old.as_ref(), &new, part);
            assert_eq!(got.is_ok(), allowed, "{what}: {got:?}");
            if let Err(e) = got {
                assert!(
                    e.message().contains("spec") || e.message().contains("status"),
                    "{what}: the refusal names the field: {}",
                    e.message()
                );
            }
        }
    }
}
