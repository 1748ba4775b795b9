//! `/network/v2.0/extensions`: the Neutron API extensions this translation implements.
//! Clients probe it (`find_extension`) before using optional attributes; only what the
//! routes really serve is listed.

use axum::extract::Path;
use axum::response::Response;
use serde_json::{Value, json};

use super::{not_found, ok};
use crate::auth::Caller;
use crate::openstack::fault::Fault;

/// Date printed as every extension's `updated`.
const UPDATED: &str = "2026-01-01T00:00:00-00:00";

/// `(alias, name, description)` of each supported extension.
pub const EXTENSIONS: &[(&str, &str, &str)] = &[
    (
        "security-group",
        "security-group",
        "The security groups extension.",
    ),
    ("port-security", "Port Security", "Provides port security"),
    (
        "allowed-address-pairs",
        "Allowed Address Pairs",
        "Provides allowed address pairs",
    ),
    (
        "binding",
        "Port Binding",
        "Expose port bindings of a virtual port to external application",
    ),
    (
        "external-net",
        "Neutron external network",
        "Adds external network attribute to network resource.",
    ),
    (
        "provider",
        "Provider Network",
        "Expose mapping of virtual networks to physical networks",
    ),
    (
        "net-mtu",
        "Network MTU",
        "Provides MTU attribute for a network resource.",
    ),
    (
        "project-id",
        "project_id field enabled",
        "Extension that indicates that project_id field is enabled.",
    ),
    (
        "standard-attr-description",
        "standard-attr-description",
        "Extension to add descriptions to standard attributes",
    ),
    (
        "standard-attr-revisions",
        "Resource revision numbers",
        "This extension will display the revision number of neutron resources.",
    ),
    (
        "standard-attr-timestamp",
        "Resource timestamps",
        "Adds created_at and updated_at fields to all Neutron resources that have Neutron standard attributes.",
    ),
    (
        "stateful-security-group",
        "Stateful security group",
        "Indicates if the security group is stateful or not",
    ),
    (
        "quotas",
        "Quota management support",
        "Expose functions for quotas management per project",
    ),
    (
        "quota_details",
        "Quota details management support",
        "Expose functions for quotas usage statistics per project",
    ),
    ("sorting", "Sorting support", "Enabling sorting support"),
    (
        "pagination",
        "Pagination support",
        "Enabling pagination support",
    ),
    (
        "empty-string-filtering",
        "Empty String Filtering Extension",
        "Allow filtering by attributes with empty string value",
    ),
];

fn render(alias: &str, name: &str, description: &str) -> Value {
    json!({
        "alias": alias,
        "name": name,
        "description": description,
        "updated": UPDATED,
        "links": [],
    })
}

/// `GET /extensions`.
pub async fn list(_caller: Caller) -> Response {
    let items: Vec<Value> = EXTENSIONS.iter().map(|(a, n, d)| render(a, n, d)).collect();
    ok("extensions", Value::Array(items))
}

/// `GET /extensions/{alias}`: 404 for an extension not implemented.
pub async fn show(_caller: Caller, Path(alias): Path<String>) -> Result<Response, Fault> {
    EXTENSIONS
        .iter()
        .find(|(a, _, _)| *a == alias)
        .map(|(a, n, d)| ok("extension", render(a, n, d)))
        .ok_or_else(|| not_found("ExtensionNotFound", "Extension", &alias))
}
