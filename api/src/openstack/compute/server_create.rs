//! `POST /servers`: Nova's create body translated into a `Server` spec, every reference
//! (image, flavor, networks, ports, volumes, security groups, key pair) resolved from ids to
//! object names and checked before anything is written ([`plan`], pure over [`Related`]).

use std::collections::BTreeMap;
use std::net::IpAddr;

use base64::Engine;
use cirrus_crds::kinds::image::ImagePhase;
use serde_json::{Map, Value, json};

use super::related::{Related, display};
use super::server_view::{ACCESS_V4_ANNOTATION, ACCESS_V6_ANNOTATION, IMAGE_ANNOTATION};
use crate::openstack::fault::{Dialect, Fault};

/// What a create request asks for, resolved: the spec to store and what goes with it.
#[derive(Debug, Clone, PartialEq)]
pub struct CreatePlan {
    /// The server's OpenStack name.
    pub name: String,
    /// The `spec` of the `Server` object.
    pub spec: Value,
    /// Annotations to store (image id, access IPs).
    pub annotations: BTreeMap<String, String>,
    /// Security group names to show in the create response.
    pub security_groups: Vec<String>,
    /// A boot volume to create from an image first (`source_type: image`,
    /// `destination_type: volume`); the caller creates it and names it in `spec.bootVolume`.
    pub new_boot_volume: Option<NewVolume>,
    /// Scheduler hints as sent (`group`, `different_host`, `same_host` with server and group
    /// ids); the caller resolves the ids to names.
    pub hints: Map<String, Value>,
    /// The `adminPass` to answer: the request's, or a generated one (see [`admin_pass`]).
    pub admin_pass: String,
}

/// Characters of generated passwords: Nova's, without the look-alikes (0/O, 1/l/I).
const PASSWORD_CHARS: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// Length of generated passwords (Nova's `generate_password` default).
const PASSWORD_LEN: usize = 12;

/// A random password of [`PASSWORD_LEN`] characters of [`PASSWORD_CHARS`] (rejection
/// sampling, so every character is equally likely).
pub fn generate_password() -> Result<String, getrandom::Error> {
    let limit = 256 - 256 % PASSWORD_CHARS.len();
    let mut out = String::with_capacity(PASSWORD_LEN);
    let mut buf = [0u8; 32];
    while out.len() < PASSWORD_LEN {
        getrandom::fill(&mut buf)?;
        for b in buf {
            if usize::from(b) < limit && out.len() < PASSWORD_LEN {
                out.push(char::from(
                    PASSWORD_CHARS[usize::from(b) % PASSWORD_CHARS.len()],
                ));
            }
        }
    }
    Ok(out)
}

/// The `adminPass` of a create or rebuild answer, as Nova with `enable_instance_password`
/// (its default, and what tempest's `create_server_with_admin_pass` and
/// `rebuild_server_with_admin_pass` schemas require): the request's `adminPass` when given
/// (a string), else a generated one. Cirrus keeps no server password and does not inject it
/// into the guest, like Nova's libvirt driver by default (`inject_password = False`): guests
/// get credentials from key pairs and user data.
pub fn admin_pass(request: &Map<String, Value>) -> Result<String, Fault> {
    match request.get("adminPass") {
        Some(Value::String(given)) => Ok(given.clone()),
        Some(other) => Err(invalid("adminPass", other, "adminPass must be a string.")),
        None => generate_password().map_err(|e| {
            Fault::internal(
                Dialect::Compute,
                format!("could not generate a password: {e}"),
            )
        }),
    }
}

/// A volume Nova would create for a server booting from a new volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVolume {
    /// Size in GiB.
    pub size: u64,
    /// Name of the image object the volume is a copy of.
    pub image: String,
    /// Delete the volume with the server.
    pub delete_on_termination: bool,
}

fn bad(message: impl Into<String>) -> Fault {
    Fault::bad_request(Dialect::Compute, message)
}

/// Nova's schema-error message for `field`.
fn invalid(field: &str, value: &Value, reason: &str) -> Fault {
    let shown = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    bad(format!(
        "Invalid input for field/attribute {field}. Value: {shown}. {reason}"
    ))
}

/// The id at the end of a reference that may be a URL (`http://.../images/<id>`).
fn ref_id(reference: &str) -> &str {
    reference
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(reference)
}

/// A count field (`min_count`, `max_count`): an integer or a string of one, at least 1.
fn count(server: &Map<String, Value>, field: &str) -> Result<u64, Fault> {
    match server.get(field) {
        None | Some(Value::Null) => Ok(1),
        Some(v) => {
            let n = match v {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.trim().parse().ok(),
                _ => None,
            };
            match n {
                Some(n) if n >= 1 => Ok(n),
                _ => Err(invalid(field, v, "Must be an integer of at least 1.")),
            }
        }
    }
}

/// An optional string field.
fn opt_str<'a>(server: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, Fault> {
    match server.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(invalid(
            field,
            other,
            &format!("{other} is not of type 'string'"),
        )),
    }
}

/// A server name as Nova accepts it: 1-255 characters, no leading or trailing whitespace.
pub fn check_name(value: &Value) -> Result<String, Fault> {
    let Some(name) = value.as_str() else {
        return Err(invalid(
            "name",
            value,
            &format!("{value} is not of type 'string'"),
        ));
    };
    if name.trim().is_empty() || name.chars().count() > 255 || name.trim() != name {
        return Err(invalid(
            "name",
            value,
            "The name must be 1 to 255 characters without leading or trailing whitespace.",
        ));
    }
    Ok(name.to_string())
}

/// Metadata as Nova accepts it: string keys of 1-255 characters, string values of at most
/// 255.
pub fn check_metadata(value: &Value) -> Result<BTreeMap<String, String>, Fault> {
    let Some(map) = value.as_object() else {
        return Err(invalid("metadata", value, "metadata must be an object."));
    };
    let mut out = BTreeMap::new();
    for (k, v) in map {
        let Some(s) = v.as_str() else {
            return Err(invalid(
                &format!("metadata/{k}"),
                v,
                "Metadata values must be strings.",
            ));
        };
        if k.is_empty() || k.chars().count() > 255 || s.chars().count() > 255 {
            return Err(invalid(
                "metadata",
                value,
                "Metadata keys must be 1 to 255 characters and values at most 255.",
            ));
        }
        out.insert(k.clone(), s.to_string());
    }
    Ok(out)
}

/// `boot_index` of a block device mapping (an integer, a string of one, or absent).
fn boot_index(bdm: &Map<String, Value>) -> Option<i64> {
    match bdm.get("boot_index") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
}

fn truthy(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => matches!(s.to_ascii_lowercase().as_str(), "true" | "1" | "yes"),
        _ => false,
    }
}

/// The guest host name Nova derives from a display name: lowercase, spaces and `_` as `-`,
/// other characters outside `[a-z0-9.-]` dropped, at most 63 characters, never empty.
pub fn sanitize_hostname(name: &str) -> String {
    let mut out: String = name
        .to_lowercase()
        .chars()
        .map(|c| if c == ' ' || c == '_' { '-' } else { c })
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
        .collect();
    out = out
        .split('.')
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(".");
    out.truncate(63);
    let out = out.trim_matches(|c| c == '-' || c == '.').to_string();
    if out.is_empty() {
        "server".to_string()
    } else {
        out
    }
}

/// The image `reference` (uid, name or URL) as `project` may boot it with `flavor`, or
/// Nova's `400`.
fn resolve_image<'a>(
    reference: &str,
    project: &str,
    flavor: &cirrus_crds::Flavor,
    related: &'a Related,
) -> Result<&'a cirrus_crds::Image, Fault> {
    let image = related
        .image_by_id(project, reference)
        .filter(|i| i.metadata.deletion_timestamp.is_none())
        .ok_or_else(|| bad(format!("Image {reference} could not be found.")))?;
    if matches!(
        image.status.phase,
        Some(
            ImagePhase::Killed
                | ImagePhase::Deactivated
                | ImagePhase::Deleted
                | ImagePhase::PendingDelete
        )
    ) {
        return Err(bad(format!("Image {reference} is not active.")));
    }
    let image_name = &image.metadata.name;
    let image_project = image.metadata.project.as_deref().unwrap_or_default();
    if image_project != project && image.findable_by_name_from(project) {
        // Named in the spec by name: that name must find this image, not the project's own.
        let shadow = related.image_for(project, image_name);
        if shadow.map(|i| &i.metadata.uid) != Some(&image.metadata.uid) {
            return Err(bad(format!(
                "Image {reference} cannot be used: project {project} has its own image \
                 named {image_name:?}, which its servers boot instead."
            )));
        }
    }
    if flavor.spec.disk != 0 && flavor.spec.disk < image.spec.min_disk {
        return Err(bad("Flavor's disk is too small for requested image."));
    }
    if flavor.spec.ram < image.spec.min_ram {
        return Err(bad("Flavor's memory is too small for requested image."));
    }
    Ok(image)
}

/// Translates a create body (`{"server": {...}}`) of `project` into a [`CreatePlan`].
/// `admin` allows `availability_zone: "zone:host"` (placing on a host, as Nova's admins
/// may).
pub fn plan(
    body: &Value,
    project: &str,
    admin: bool,
    related: &Related,
) -> Result<CreatePlan, Fault> {
    let Some(server) = body.get("server").and_then(Value::as_object) else {
        return Err(invalid("server", body, "'server' is a required property"));
    };
    let Some(name_value) = server.get("name") else {
        return Err(invalid(
            "server",
            &Value::Object(server.clone()),
            "'name' is a required property",
        ));
    };
    let name = check_name(name_value)?;
    let min = count(server, "min_count")?;
    let max = count(server, "max_count")?;
    if min > max {
        return Err(bad("min_count must be <= max_count"));
    }
    if max > 1 {
        return Err(bad(format!(
            "Invalid input for field/attribute max_count. Value: {max}. Cirrus creates one \
             server per request: min_count and max_count must be 1."
        )));
    }
    let mut spec = Map::new();
    let mut annotations = BTreeMap::new();

    // Flavor.
    let flavor_ref = match server.get("flavorRef") {
        Some(Value::String(s)) if !s.is_empty() => ref_id(s).to_string(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => {
            return Err(invalid(
                "flavorRef",
                other,
                "flavorRef must be a non-empty string.",
            ));
        }
        None => {
            return Err(invalid(
                "server",
                &Value::Object(server.clone()),
                "'flavorRef' is a required property",
            ));
        }
    };
    let flavor = related
        .flavor(&flavor_ref)
        .filter(|f| !f.spec.disabled && f.metadata.deletion_timestamp.is_none())
        .ok_or_else(|| bad(format!("Flavor {flavor_ref} could not be found.")))?;
    spec.insert("flavor".into(), Value::from(flavor.metadata.name.clone()));

    // Root disk: imageRef, or a block device mapping with boot_index 0.
    let image_ref = opt_str(server, "imageRef")?
        .map(ref_id)
        .filter(|s| !s.is_empty());
    let mut boot_volume: Option<(String, bool)> = None;
    let mut image_from_bdm: Option<String> = None;
    let mut data_volumes: Vec<Value> = Vec::new();
    let mut new_boot_volume: Option<NewVolume> = None;
    if server.contains_key("block_device_mapping") {
        return Err(bad(
            "block_device_mapping (v1) is not supported: use block_device_mapping_v2.",
        ));
    }
    if let Some(bdms) = server.get("block_device_mapping_v2") {
        let Some(list) = bdms.as_array() else {
            return Err(invalid("block_device_mapping_v2", bdms, "Must be a list."));
        };
        for entry in list {
            let Some(bdm) = entry.as_object() else {
                return Err(invalid(
                    "block_device_mapping_v2",
                    entry,
                    "Entries must be objects.",
                ));
            };
            let source = bdm
                .get("source_type")
                .and_then(Value::as_str)
                .unwrap_or("volume");
            let destination = bdm
                .get("destination_type")
                .and_then(Value::as_str)
                .unwrap_or(if source == "image" { "local" } else { "volume" });
            let uuid = bdm.get("uuid").and_then(Value::as_str).map(ref_id);
            let delete = truthy(bdm.get("delete_on_termination"));
            let index = boot_index(bdm);
            match (source, destination) {
                ("image", "local") => {
                    let Some(uuid) = uuid else {
                        return Err(bad(
                            "Block device mapping is invalid: an image mapping needs uuid.",
                        ));
                    };
                    if index == Some(0) {
                        image_from_bdm = Some(uuid.to_string());
                    } else {
                        return Err(bad(
                            "Block device mapping is invalid: an image can only be the boot disk (boot_index 0).",
                        ));
                    }
                }
                ("volume", "volume") => {
                    let Some(uuid) = uuid else {
                        return Err(bad(
                            "Block device mapping is invalid: a volume mapping needs uuid.",
                        ));
                    };
                    let volume = related
                        .volume_by_id(project, uuid)
                        .filter(|v| v.metadata.deletion_timestamp.is_none())
                        .ok_or_else(|| bad(format!("Volume {uuid} could not be found.")))?;
                    let vname = volume.metadata.name.clone();
                    if index == Some(0) {
                        if !volume.spec.bootable {
                            return Err(bad(format!("Block Device {uuid} is not bootable.")));
                        }
                        boot_volume = Some((vname, delete));
                    } else {
                        let mut v = json!({ "volume": vname });
                        if let Some(device) = bdm.get("device_name").and_then(Value::as_str) {
                            let device = if device.starts_with("/dev/") {
                                device.to_string()
                            } else {
                                format!("/dev/{device}")
                            };
                            v["device"] = Value::from(device);
                        }
                        if delete {
                            v["deleteOnTermination"] = Value::Bool(true);
                        }
                        data_volumes.push(v);
                    }
                }
                ("image", "volume") if index == Some(0) => {
                    let Some(uuid) = uuid else {
                        return Err(bad(
                            "Block device mapping is invalid: an image mapping needs uuid.",
                        ));
                    };
                    let size = match bdm.get("volume_size") {
                        Some(Value::Number(n)) => n.as_u64(),
                        Some(Value::String(s)) => s.trim().parse().ok(),
                        _ => None,
                    }
                    .filter(|n| (1..=crate::openstack::common::MAX_INT).contains(n))
                    .ok_or_else(|| {
                        bad(format!(
                            "Block device mapping is invalid: booting from a new volume needs \
                             volume_size (GiB, 1 to {}).",
                            crate::openstack::common::MAX_INT
                        ))
                    })?;
                    let image = resolve_image(uuid, project, flavor, related)?;
                    new_boot_volume = Some(NewVolume {
                        size,
                        image: image.reference_from(project),
                        delete_on_termination: delete,
                    });
                }
                ("blank", "local") => {
                    // Swap and ephemeral disks come from the flavor.
                }
                (source, destination) => {
                    return Err(bad(format!(
                        "Block device mapping with source_type {source} and destination_type \
                         {destination} is not supported: create the volume first (openstack \
                         volume create --image/--snapshot ...) and boot from it with \
                         source_type volume."
                    )));
                }
            }
        }
    }
    let image_ref = if new_boot_volume.is_some() {
        None
    } else {
        image_ref
    };
    match (&boot_volume, image_ref.or(image_from_bdm.as_deref())) {
        (Some((vname, delete)), _) => {
            spec.insert("bootVolume".into(), Value::from(vname.clone()));
            if *delete {
                data_volumes.insert(0, json!({"volume": vname, "deleteOnTermination": true}));
            }
        }
        (None, Some(reference)) => {
            let image = resolve_image(reference, project, flavor, related)?;
            spec.insert("image".into(), Value::from(image.reference_from(project)));
            if let Some(uid) = &image.metadata.uid {
                annotations.insert(IMAGE_ANNOTATION.to_string(), uid.clone());
            }
        }
        (None, None) if new_boot_volume.is_some() => {}
        (None, None) => return Err(bad("Missing imageRef attribute")),
    }
    if !data_volumes.is_empty() {
        spec.insert("volumes".into(), Value::Array(data_volumes));
    }

    // Networks.
    let networks = match server.get("networks") {
        None | Some(Value::Null) => auto_networks(project, related)?,
        Some(Value::String(s)) if s == "auto" => auto_networks(project, related)?,
        Some(Value::String(s)) if s == "none" => Vec::new(),
        Some(Value::Array(list)) if list.is_empty() => auto_networks(project, related)?,
        Some(Value::Array(list)) => {
            let mut out = Vec::new();
            for entry in list {
                out.push(network_entry(entry, project, related)?);
            }
            out
        }
        Some(other) => {
            return Err(invalid(
                "networks",
                other,
                "networks must be a list, \"auto\" or \"none\".",
            ));
        }
    };
    if !networks.is_empty() {
        spec.insert("networks".into(), Value::Array(networks));
    }

    // Security groups.
    let mut groups = Vec::new();
    let mut group_names = Vec::new();
    if let Some(value) = server.get("security_groups") {
        let Some(list) = value.as_array() else {
            return Err(invalid("security_groups", value, "Must be a list."));
        };
        for entry in list {
            let Some(wanted) = entry.get("name").and_then(Value::as_str) else {
                return Err(invalid(
                    "security_groups",
                    entry,
                    "'name' is a required property",
                ));
            };
            match related.security_group(project, wanted) {
                Some(g) => {
                    if !groups.contains(&g.metadata.name) {
                        groups.push(g.metadata.name.clone());
                        group_names.push(display(&g.metadata).to_string());
                    }
                }
                // The network controller makes each project's `default` group on demand.
                None if wanted == "default" => {
                    if !groups.iter().any(|g| g == "default") {
                        groups.push("default".into());
                        group_names.push("default".into());
                    }
                }
                None => return Err(bad(format!("Security group {wanted} not found."))),
            }
        }
    }
    if !groups.is_empty() {
        spec.insert("securityGroups".into(), json!(groups));
    }
    if group_names.is_empty() {
        group_names.push("default".into());
    }

    // Key pair, user data, metadata, zone, config drive, description, access IPs.
    if let Some(key) = opt_str(server, "key_name")? {
        let keypair = related
            .keypair(project, key)
            .ok_or_else(|| bad("Invalid key_name provided."))?;
        spec.insert("keyName".into(), Value::from(keypair.metadata.name.clone()));
    }
    if let Some(data) = opt_str(server, "user_data")? {
        let compact: String = data.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let decoded = base64::engine::general_purpose::STANDARD.decode(compact.as_bytes());
        match decoded {
            Ok(bytes) if bytes.len() <= cirrus_crds::kinds::server::MAX_USER_DATA_BYTES => {
                spec.insert("userData".into(), Value::from(compact));
            }
            Ok(bytes) => {
                return Err(bad(format!(
                    "Invalid input for field/attribute user_data: it decodes to {} bytes; at most {} are allowed.",
                    bytes.len(),
                    cirrus_crds::kinds::server::MAX_USER_DATA_BYTES
                )));
            }
            Err(e) => {
                return Err(bad(format!(
                    "Invalid input for field/attribute user_data. User data needs to be valid base 64 ({e})."
                )));
            }
        }
    }
    if let Some(meta) = server.get("metadata") {
        let meta = check_metadata(meta)?;
        if meta.len() > 128 {
            return Err(Fault::forbidden(
                Dialect::Compute,
                "Quota exceeded for metadata_items: at most 128 metadata items.",
            ));
        }
        if !meta.is_empty() {
            spec.insert("metadata".into(), json!(meta));
        }
    }
    if let Some(zone) = opt_str(server, "availability_zone")? {
        let mut parts = zone.splitn(3, ':');
        let az = parts.next().unwrap_or_default();
        let host = parts.next().filter(|h| !h.is_empty());
        if let Some(host) = host {
            if !admin {
                return Err(Fault::forbidden(
                    Dialect::Compute,
                    "Policy doesn't allow os_compute_api:servers:create:forced_host to be performed.",
                ));
            }
            spec.insert("nodeName".into(), Value::from(host));
        }
        if !az.is_empty() {
            spec.insert("availabilityZone".into(), Value::from(az));
        }
    }
    if truthy(server.get("config_drive")) {
        spec.insert("configDrive".into(), Value::Bool(true));
    }
    if let Some(description) = opt_str(server, "description")? {
        spec.insert("description".into(), Value::from(description));
    }
    for (field, annotation, v4) in [
        ("accessIPv4", ACCESS_V4_ANNOTATION, true),
        ("accessIPv6", ACCESS_V6_ANNOTATION, false),
    ] {
        if let Some(ip) = opt_str(server, field)?.filter(|s| !s.is_empty()) {
            check_ip(field, ip, v4)?;
            annotations.insert(annotation.to_string(), ip.to_string());
        }
    }
    let hints = match body
        .get("OS-SCH-HNT:scheduler_hints")
        .or_else(|| body.get("os:scheduler_hints"))
    {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map.clone(),
        Some(other) => return Err(invalid("os:scheduler_hints", other, "Must be an object.")),
    };
    Ok(CreatePlan {
        name,
        spec: Value::Object(spec),
        annotations,
        security_groups: group_names,
        new_boot_volume,
        hints,
        admin_pass: admin_pass(server)?,
    })
}

/// Whether `ip` is an address of the family the field wants.
pub fn check_ip(field: &str, ip: &str, v4: bool) -> Result<(), Fault> {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) if v4 => Ok(()),
        Ok(IpAddr::V6(_)) if !v4 => Ok(()),
        _ => Err(invalid(
            field,
            &Value::from(ip),
            &format!("'{ip}' is not a '{}'", if v4 { "ipv4" } else { "ipv6" }),
        )),
    }
}

/// Networks when the request names none: the only one it may use (its own, else a shared
/// one), none when there is none, and Nova's refusal when there are several.
fn auto_networks(project: &str, related: &Related) -> Result<Vec<Value>, Fault> {
    let networks = related.project_networks(project);
    match networks.as_slice() {
        [] => Ok(Vec::new()),
        [only] => {
            let mut entry = json!({ "network": only.metadata.name });
            if let Some(owner) = only.metadata.project.as_deref().filter(|o| *o != project) {
                entry["networkProject"] = Value::from(owner);
            }
            Ok(vec![entry])
        }
        _ => Err(Fault::conflict(
            Dialect::Compute,
            "Multiple possible networks found, use a Network ID to be more specific.",
        )),
    }
}

/// One `networks` entry (`{uuid, port, fixed_ip, tag}`) as a `spec.networks` entry.
fn network_entry(entry: &Value, project: &str, related: &Related) -> Result<Value, Fault> {
    let Some(map) = entry.as_object() else {
        return Err(invalid("networks", entry, "Entries must be objects."));
    };
    for key in map.keys() {
        if !matches!(key.as_str(), "uuid" | "port" | "fixed_ip" | "tag") {
            return Err(invalid(
                "networks",
                entry,
                &format!("Additional properties are not allowed ('{key}' was unexpected)"),
            ));
        }
    }
    let text = |k: &str| map.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    let mut out = Map::new();
    if let Some(port_id) = text("port") {
        let port = related
            .port_by_id(project, port_id)
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .ok_or_else(|| bad(format!("Port {port_id} could not be found.")))?;
        if port
            .spec
            .device_id
            .as_deref()
            .is_some_and(|d| !d.is_empty())
        {
            return Err(Fault::conflict(
                Dialect::Compute,
                format!("Port {port_id} is still in use."),
            ));
        }
        out.insert("port".into(), Value::from(port.metadata.name.clone()));
    } else if let Some(net_id) = text("uuid") {
        let network = related
            .network_by_id(project, net_id)
            .filter(|n| n.metadata.deletion_timestamp.is_none())
            .ok_or_else(|| bad(format!("Network {net_id} could not be found.")))?;
        out.insert("network".into(), Value::from(network.metadata.name.clone()));
        if let Some(owner) = network
            .metadata
            .project
            .as_deref()
            .filter(|o| *o != project)
        {
            out.insert("networkProject".into(), Value::from(owner));
        }
        if let Some(ip) = text("fixed_ip") {
            let parsed: IpAddr = ip.parse().map_err(|_| {
                invalid(
                    "fixed_ip",
                    &Value::from(ip),
                    &format!("'{ip}' is not a 'ipv4' or 'ipv6'"),
                )
            })?;
            out.insert("fixedIp".into(), Value::from(parsed.to_string()));
        }
    } else {
        return Err(invalid(
            "networks",
            entry,
            "Each network needs a uuid or a port.",
        ));
    }
    if let Some(tag) = text("tag") {
        out.insert("tag".into(), Value::from(tag));
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests;
