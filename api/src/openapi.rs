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
    schemas.insert("DeleteOptions".into(), delete_options_schema());
    let mut paths = Map::new();
    for kind in cirrus_crds::all_kinds() {
        let mut schema = serde_json::to_value((kind.schema)()).expect("schemas serialize");
        hoist_definitions(&mut schema, &mut schemas);
        schemas.insert(kind.kind.to_string(), schema);
        schemas.insert(format!("{}List", kind.kind), list_schema(kind));
        add_paths(kind, &mut paths);
    }
    add_image_file_path(&mut paths);
    add_restricted_token_paths(&mut paths);
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

/// The optional body of a `DELETE` (Kubernetes' `DeleteOptions`, preconditions only).
fn delete_options_schema() -> Value {
    json!({
        "type": "object",
        "description": "Delete only while the object still matches the preconditions (409 otherwise).",
        "additionalProperties": false,
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "preconditions": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "uid": {"type": "string", "description": "the object's metadata.uid"},
                    "resourceVersion": {"type": "string", "description": "the object's metadata.resourceVersion"},
                },
            },
        },
    })
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
                       "requestBody": {"required": false, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/DeleteOptions"}}}},
                       "responses": {"200": ok(&object_ref, "deleted, or marked for deletion while finalizers remain"), "default": error}},
        }),
    );
    if kind.plural == "servers" {
        paths.insert(
            format!("{base}/{{name}}/console"),
            json!({
                "get": {"operationId": "server_console", "summary": "The server's serial console log, proxied from its node agent",
                        "parameters": base_params.iter().cloned().chain([query("tailBytes", "only the last N bytes")]).collect::<Vec<_>>(),
                        "responses": {"200": {"description": "console log", "content": {"text/plain": {"schema": {"type": "string"}}}},
                                      "409": error, "503": error, "default": error}},
            }),
        );
    }
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

/// `PUT`/`GET /apis/cirrus.dev/v1/projects/{project}/images/{name}/file`: image data.
fn add_image_file_path(paths: &mut Map<String, Value>) {
    let error = json!({"description": "failure", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Status"}}}});
    let path_param = |name: &str| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}});
    let params = vec![path_param("project"), path_param("name")];
    let hex = |description: &str| json!({"description": description, "schema": {"type": "string"}});
    let header = |name: &str, description: &str| json!({"name": name, "in": "header", "required": false, "schema": {"type": "string"}, "description": description});
    let data =
        json!({"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}});
    paths.insert(
        "/apis/cirrus.dev/v1/projects/{project}/images/{name}/file".into(),
        json!({
            "get": {
                "operationId": "image_download",
                "summary": "Download an image's data (streamed)",
                "parameters": params,
                "responses": {
                    "200": {"description": "the data", "content": data, "headers": {
                        "Content-Length": {"description": "size in bytes", "schema": {"type": "integer"}},
                        "Content-MD5": hex("MD5 of the data, hex (Glance's checksum)"),
                        "X-Checksum-Sha256": hex("SHA-256 of the data, hex"),
                        "ETag": hex("the SHA-256, quoted"),
                    }},
                    "204": {"description": "the image has no data yet (queued or saving)"},
                    "403": error, "404": error, "503": error, "default": error,
                },
            },
            "put": {
                "operationId": "image_upload",
                "summary": "Upload an image's data (streamed); checked against spec.diskFormat with qemu-img; a qcow2 with a backing or external data file is refused",
                "parameters": params.iter().cloned().chain([
                    header("X-Checksum-Sha256", "expected SHA-256, hex; a mismatch makes the image killed"),
                    header("Content-MD5", "expected MD5, hex or base64; a mismatch makes the image killed"),
                ]).collect::<Vec<_>>(),
                "requestBody": {"required": true, "content": data},
                "responses": {
                    "200": {"description": "stored: the Image, active, with size, virtualSize, checksum, osHashAlgo, osHashValue",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Image"}}}},
                    "400": error, "404": error, "409": error, "413": error, "415": error, "503": error, "default": error,
                },
            },
        }),
    );
}

/// The restricted-token routes (`api/src/restricted.rs`): a node agent's metadata-proxy token
/// and the console check-back a node agent makes with the API's console token.
fn add_restricted_token_paths(paths: &mut Map<String, Value>) {
    let error = json!({"description": "failure", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Status"}}}});
    let path_param = |name: &str| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}});
    let text = json!({"type": "string"});
    paths.insert(
        "/apis/cirrus.dev/v1/nodes/{name}/metadatatoken".into(),
        json!({
            "post": {
                "operationId": "node_metadata_token",
                "summary": "A system:metadata:<node> token for the node's metadata proxies (10 min); only that node's agent, with its node token, may ask",
                "parameters": [path_param("name")],
                "responses": {
                    "201": {"description": "the token", "content": {"application/json": {"schema": {
                        "type": "object",
                        "required": ["apiVersion", "kind", "node", "token", "expiresAt"],
                        "properties": {"apiVersion": text, "kind": {"const": "MetadataToken"}, "node": text,
                                       "token": text, "expiresAt": {"type": "string", "format": "date-time"}},
                    }}}},
                    "401": error, "403": error, "404": error, "default": error,
                },
            },
        }),
    );
    paths.insert(
        "/apis/cirrus.dev/v1/projects/{project}/servers/{name}/consoleaccess".into(),
        json!({
            "get": {
                "operationId": "server_console_access",
                "summary": "What a node agent checks before serving a console log: only the system:console:<uid> token the API sent, for that server",
                "parameters": [path_param("project"), path_param("name")],
                "responses": {
                    "200": {"description": "the server the token is for", "content": {"application/json": {"schema": {
                        "type": "object",
                        "required": ["apiVersion", "kind", "project", "name", "serverUid"],
                        "properties": {"apiVersion": text, "kind": {"const": "ConsoleAccess"}, "project": text,
                                       "name": text, "serverUid": text, "node": {"type": ["string", "null"]}},
                    }}}},
                    "401": error, "403": error, "404": error, "default": error,
                },
            },
        }),
    );
}
