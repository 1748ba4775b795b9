//! `…/servers/{id}/metadata[/{key}]`: a server's metadata read, replaced, merged and
//! changed key by key, each write a merge patch of `spec.metadata`.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Writes `metadata` as the server's whole metadata (keys not in it are removed).
async fn write_metadata(
    state: &ApiState,
    caller: &Caller,
    server: &Server,
    metadata: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, Fault> {
    if metadata.len() > 128 {
        return Err(Fault::forbidden(
            D,
            "Quota exceeded for metadata_items: at most 128 metadata items.",
        ));
    }
    let patch = metadata_patch(&server.spec.metadata, metadata);
    let updated = patch_server(
        state,
        caller,
        server,
        &json!({
            "metadata": {"resourceVersion": server.metadata.resource_version},
            "spec": {"metadata": patch},
        }),
        "The server changed while its metadata was being written; retry.",
    )
    .await?;
    Ok(parse(updated)?.spec.metadata)
}

fn metadata_body(body: &Bytes, key: &str) -> Result<BTreeMap<String, String>, Fault> {
    let body = json_body(D, body)?;
    let Some(meta) = body.get(key) else {
        return Err(Fault::bad_request(
            D,
            format!("Invalid input for field/attribute {key}. '{key}' is a required property"),
        ));
    };
    check_metadata(meta)
}

/// `GET /servers/{id}/metadata`.
pub(super) async fn metadata_get(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Fault> {
    let server = find_server(&state, &caller, &id, Action::Read).await?;
    Ok(ok(
        StatusCode::OK,
        json!({ "metadata": server.spec.metadata }),
    ))
}

/// `PUT /servers/{id}/metadata`: replaces all metadata.
pub(super) async fn metadata_replace(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Fault> {
    let server = find_server(&state, &caller, &id, Action::Write).await?;
    let wanted = metadata_body(&body, "metadata")?;
    let written = write_metadata(&state, &caller, &server, &wanted).await?;
    Ok(ok(StatusCode::OK, json!({ "metadata": written })))
}

/// `POST /servers/{id}/metadata`: adds or changes the given keys.
pub(super) async fn metadata_merge(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Fault> {
    let server = find_server(&state, &caller, &id, Action::Write).await?;
    let mut wanted = server.spec.metadata.clone();
    wanted.extend(metadata_body(&body, "metadata")?);
    let written = write_metadata(&state, &caller, &server, &wanted).await?;
    Ok(ok(StatusCode::OK, json!({ "metadata": written })))
}

/// `GET /servers/{id}/metadata/{key}`.
pub(super) async fn metadata_item_get(
    State(state): State<ApiState>,
    caller: Caller,
    Path((id, key)): Path<(String, String)>,
) -> Result<Response, Fault> {
    let server = find_server(&state, &caller, &id, Action::Read).await?;
    match server.spec.metadata.get(&key) {
        Some(v) => Ok(ok(StatusCode::OK, json!({ "meta": { key: v } }))),
        None => Err(Fault::not_found(D, "Metadata item was not found")),
    }
}

/// `PUT /servers/{id}/metadata/{key}`: sets one key (`{"meta": {key: value}}`).
pub(super) async fn metadata_item_put(
    State(state): State<ApiState>,
    caller: Caller,
    Path((id, key)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, Fault> {
    let server = find_server(&state, &caller, &id, Action::Write).await?;
    let item = metadata_body(&body, "meta")?;
    if item.len() != 1 {
        return Err(Fault::bad_request(
            D,
            "Request body contains too many items",
        ));
    }
    let Some(value) = item.get(&key) else {
        return Err(Fault::bad_request(D, "Request body and URI mismatch"));
    };
    let mut wanted = server.spec.metadata.clone();
    wanted.insert(key.clone(), value.clone());
    write_metadata(&state, &caller, &server, &wanted).await?;
    Ok(ok(StatusCode::OK, json!({ "meta": { key: value } })))
}

/// `DELETE /servers/{id}/metadata/{key}`.
pub(super) async fn metadata_item_delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path((id, key)): Path<(String, String)>,
) -> Result<Response, Fault> {
    let server = find_server(&state, &caller, &id, Action::Write).await?;
    if !server.spec.metadata.contains_key(&key) {
        return Err(Fault::not_found(D, "Metadata item was not found"));
    }
    let mut wanted = server.spec.metadata.clone();
    wanted.remove(&key);
    write_metadata(&state, &caller, &server, &wanted).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
