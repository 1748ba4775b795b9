//! The OpenAPI 3.1 document of the native API, generated from the kinds' JSON Schemas.
//!
//! Checked in as `api/openapi.json`; a test fails when it drifts from the code
//! (regenerate with `CIRRUS_UPDATE_OPENAPI=1 cargo test -p cirrus-api --test openapi`).

use axum::response::{IntoResponse, Response};
use cirrus_crds::{KindInfo, Scope};
use serde_json::{Map, Value, json};

/// `GET /openapi/v3`.
pub async fn serve() -> Response {
    axum::Json(document()).into_response()
}

/// Builds the whole document.
pub fn document() -> Value {
    let mut schemas = Map::new();
    schemas.insert("Status".into(), status_schema());
    let mut paths = Map::new();
    for kind in cirrus_crds::all_kinds() {
        let mut schema = serde_json::to_value((kind.schema)()).expect("schemas serialize");
        hoist_definitions(&mut schema, &mut schemas);
        schemas.insert(kind.kind.to_string(), schema);
        schemas.insert(format!("{}List", kind.kind), list_schema(kind));
        add_paths(kind, &mut paths);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Cirrus native API",
            "version": cirrus_crds::API_VERSION,
            "description": "Kubernetes-style resource API of Cirrus. See docs/api.md for semantics.",
        },
        "paths": paths,
        "components": { "schemas": schemas },
    })
}

/// Moves `$defs` of a generated schema into `components.schemas` and points refs there.
fn hoist_definitions(schema: &mut Value, schemas: &mut Map<String, Value>) {
    if let Some(Value::Object(defs)) = schema.as_object_mut().and_then(|m| m.remove("$defs")) {
        for (name, mut def) in defs {
            rewrite_refs(&mut def);
            schemas.entry(name).or_insert(def);
        }
    }
    if let Some(map) = schema.as_object_mut() {
        map.remove("$schema");
    }
    rewrite_refs(schema);
}

fn rewrite_refs(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                if key == "$ref" {
                    if let Value::String(target) = inner
                        && let Some(name) = target.strip_prefix("#/$defs/")
                    {
                        *target = format!("#/components/schemas/{name}");
                    }
                } else {
                    rewrite_refs(inner);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

fn status_schema() -> Value {
    json!({
        "type": "object",
        "description": "Why a request failed (Kubernetes Status).",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string", "const": "Status"},
            "status": {"type": "string"},
            "code": {"type": "integer"},
            "reason": {"type": "string"},
            "message": {"type": "string"},
            "details": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "kind": {"type": "string"},
                    "causes": {"type": "array", "items": {
                        "type": "object",
                        "properties": {
                            "field": {"type": "string"},
                            "reason": {"type": "string"},
                            "message": {"type": "string"}
                        }
                    }}
                }
            }
        }
    })
}

fn list_schema(kind: &KindInfo) -> Value {
    json!({
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string", "const": format!("{}List", kind.kind)},
            "metadata": {"type": "object", "properties": {
                "resourceVersion": {"type": "string"},
                "continue": {"type": "string"}
            }},
            "items": {"type": "array", "items": {"$ref": format!("#/components/schemas/{}", kind.kind)}}
        }
    })
}

fn add_paths(kind: &KindInfo, paths: &mut Map<String, Value>) {
    let object_ref = json!({"$ref": format!("#/components/schemas/{}", kind.kind)});
    let list_ref = json!({"$ref": format!("#/components/schemas/{}List", kind.kind)});
    let ok = |schema: &Value, what: &str| json!({"description": what, "content": {"application/json": {"schema": schema}}});
    let error = json!({"description": "failure", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Status"}}}});
    let query = |name: &str, description: &str| json!({"name": name, "in": "query", "required": false, "schema": {"type": "string"}, "description": description});
    let path_param = |name: &str| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}});
    let dry_run = query("dryRun", "`All`: validate and answer without storing");
    let (base, mut base_params) = match kind.scope {
        Scope::Cluster if kind.plural == "projects" => {
            ("/apis/cirrus.dev/v1/projects".to_string(), vec![])
        }
        Scope::Cluster => (format!("/apis/cirrus.dev/v1/{}", kind.plural), vec![]),
        Scope::Project => (
            format!("/apis/cirrus.dev/v1/projects/{{project}}/{}", kind.plural),
            vec![path_param("project")],
        ),
    };
    let list_params: Vec<Value> = base_params
        .iter()
        .cloned()
        .chain([
            query("labelSelector", "only objects whose labels match"),
            query(
                "fieldSelector",
                "only objects whose fields match, e.g. spec.nodeName=node-a",
            ),
            query("limit", "page size"),
            query("continue", "token of the next page"),
            query(
                "watch",
                "`true`: stream ADDED/MODIFIED/DELETED/BOOKMARK/ERROR events as JSON lines",
            ),
            query(
                "resourceVersion",
                "watch: changes after this revision (410 when compacted)",
            ),
            query("timeoutSeconds", "watch: end the stream after this long"),
        ])
        .collect();
    let write_body =
        json!({"required": true, "content": {"application/json": {"schema": object_ref}}});
    let patch_body = json!({"required": true, "content": {"application/merge-patch+json": {"schema": {"type": "object"}}}});
    let k = kind.kind;
    paths.insert(
        base.clone(),
        json!({
            "get": {"operationId": format!("{}_list", kind.singular), "summary": format!("List or watch {k} objects"),
                    "parameters": list_params, "responses": {"200": ok(&list_ref, "the list (or, with watch, an event stream)"), "410": error, "default": error}},
            "post": {"operationId": format!("{}_create", kind.singular), "summary": format!("Create a {k}"),
                     "parameters": base_params.iter().cloned().chain([dry_run.clone()]).collect::<Vec<_>>(),
                     "requestBody": write_body, "responses": {"201": ok(&object_ref, "created"), "default": error}},
        }),
    );
    base_params.push(path_param("name"));
    let with_dry_run: Vec<Value> = base_params.iter().cloned().chain([dry_run]).collect();
    paths.insert(
        format!("{base}/{{name}}"),
        json!({
            "get": {"operationId": format!("{}_get", kind.singular), "parameters": base_params, "responses": {"200": ok(&object_ref, "the object"), "default": error}},
            "put": {"operationId": format!("{}_replace", kind.singular), "parameters": with_dry_run, "requestBody": write_body,
                    "responses": {"200": ok(&object_ref, "replaced"), "409": error, "default": error}},
            "patch": {"operationId": format!("{}_patch", kind.singular), "parameters": with_dry_run, "requestBody": patch_body,
                      "responses": {"200": ok(&object_ref, "patched"), "409": error, "default": error}},
            "delete": {"operationId": format!("{}_delete", kind.singular), "parameters": with_dry_run,
                       "responses": {"200": ok(&object_ref, "deleted, or marked for deletion while finalizers remain"), "default": error}},
        }),
    );
    paths.insert(
        format!("{base}/{{name}}/status"),
        json!({
            "get": {"operationId": format!("{}_get_status", kind.singular), "parameters": base_params, "responses": {"200": ok(&object_ref, "the object"), "default": error}},
            "put": {"operationId": format!("{}_replace_status", kind.singular), "parameters": with_dry_run, "requestBody": write_body,
                    "responses": {"200": ok(&object_ref, "status replaced"), "409": error, "default": error}},
            "patch": {"operationId": format!("{}_patch_status", kind.singular), "parameters": with_dry_run, "requestBody": patch_body,
                      "responses": {"200": ok(&object_ref, "status patched"), "409": error, "default": error}},
        }),
    );
}
