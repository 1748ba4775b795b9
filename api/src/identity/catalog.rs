//! The service catalog: where each OpenStack service of this cloud answers.
//!
//! Every service is served by the same API process, under a path per service, so the
//! catalog is a pure function of the address clients reached us at (the request's `Host`)
//! and the project (Cinder's endpoints carry it). Each service lists `public`, `internal`
//! and `admin` endpoints with the same URL, with both `region_id` and `region` (old and new
//! clients read one or the other).

use serde_json::{Value, json};

/// The one region.
pub const REGION: &str = "RegionOne";

/// `(service id = type, name, path under the base URL)`; `{project}` is substituted.
const SERVICES: &[(&str, &str, &str)] = &[
    ("identity", "keystone", "/identity"),
    ("compute", "nova", "/compute/v2.1"),
    ("image", "glance", "/image"),
    ("network", "neutron", "/network"),
    ("block-storage", "cinder", "/volume/v3/{project}"),
    ("volumev3", "cinderv3", "/volume/v3/{project}"),
];

const INTERFACES: &[&str] = &["public", "internal", "admin"];

/// The endpoint URL of `path` for `project` (unscoped: the project-less prefix).
fn url(base: &str, path: &str, project: Option<&str>) -> String {
    match project {
        Some(project) => format!("{base}{}", path.replace("{project}", project)),
        None => format!("{base}{}", path.replace("/{project}", "")),
    }
}

/// The catalog a token scoped to `project` carries (Keystone's token `catalog` and
/// `GET /v3/auth/catalog`), with URLs under `base` (`http://host:port`).
pub fn catalog(base: &str, project: Option<&str>) -> Value {
    SERVICES
        .iter()
        .map(|(kind, name, path)| {
            let endpoints: Vec<Value> = INTERFACES
                .iter()
                .map(|interface| {
                    json!({
                        "id": endpoint_id(kind, interface),
                        "interface": interface,
                        "region": REGION,
                        "region_id": REGION,
                        "url": url(base, path, project),
                    })
                })
                .collect();
            json!({"id": kind, "type": kind, "name": name, "endpoints": endpoints})
        })
        .collect()
}

fn endpoint_id(kind: &str, interface: &str) -> String {
    format!("{kind}-{interface}")
}

/// `GET /v3/services` bodies.
pub fn services(base: &str) -> Vec<Value> {
    SERVICES
        .iter()
        .map(|(kind, name, _)| {
            json!({
                "id": kind, "type": kind, "name": name, "enabled": true,
                "description": format!("Cirrus {name}-compatible {kind} service"),
                "links": {"self": format!("{base}/identity/v3/services/{kind}")},
            })
        })
        .collect()
}

/// `GET /v3/endpoints` bodies (Cinder's with Keystone's `$(project_id)s` template).
pub fn endpoints(base: &str) -> Vec<Value> {
    SERVICES
        .iter()
        .flat_map(|(kind, _, path)| {
            INTERFACES.iter().map(move |interface| {
                let templated = format!("{base}{}", path.replace("{project}", "$(project_id)s"));
                json!({
                    "id": endpoint_id(kind, interface),
                    "interface": interface,
                    "region": REGION,
                    "region_id": REGION,
                    "service_id": kind,
                    "url": templated,
                    "enabled": true,
                    "links": {"self": format!("{base}/identity/v3/endpoints/{}", endpoint_id(kind, interface))},
                })
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_has_three_interfaces_with_region_and_region_id() {
        let catalog = catalog("http://h:1", Some("demo"));
        let types: Vec<&str> = catalog
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            [
                "identity",
                "compute",
                "image",
                "network",
                "block-storage",
                "volumev3"
            ]
        );
        for service in catalog.as_array().unwrap() {
            let endpoints = service["endpoints"].as_array().unwrap();
            let interfaces: Vec<&str> = endpoints
                .iter()
                .map(|e| e["interface"].as_str().unwrap())
                .collect();
            assert_eq!(interfaces, ["public", "internal", "admin"]);
            for e in endpoints {
                assert_eq!(e["region"], REGION);
                assert_eq!(e["region_id"], REGION);
            }
        }
        assert_eq!(
            catalog[4]["endpoints"][0]["url"],
            "http://h:1/volume/v3/demo"
        );
        assert_eq!(catalog[1]["endpoints"][0]["url"], "http://h:1/compute/v2.1");
    }
}
