//! `PATCH /v2/images/{id}`: a JSON patch ([`crate::openstack::json_patch`]) applied to the
//! image's Glance document, the difference validated and written back as one merge patch.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Applies one patch operation ([`json_patch`]) to the image document `doc`; a path that
/// leads nowhere is Glance's `409`, any other refusal a `400`.
pub(super) fn apply_op(doc: &mut Value, op: &Value) -> Result<(), Fault> {
    json_patch::Operation::parse(op)
        .and_then(|op| op.apply(doc))
        .map_err(|e| match e {
            json_patch::PatchError::Missing(_) => Fault::conflict(D, e.to_string()),
            other => Fault::bad_request(D, other.to_string()),
        })
}

/// The object merge patch (spec, name annotation) that turns `image`'s document `before`
/// into `after`, validated: read-only attributes `403`, bad values `400`.
pub(super) fn diff_to_patch(
    image: &Value,
    before: &Value,
    after: &Value,
    admin: bool,
) -> Result<Value, Fault> {
    let (Some(old), Some(new)) = (before.as_object(), after.as_object()) else {
        return Err(Fault::bad_request(
            D,
            "The patch must leave the image an object.",
        ));
    };
    let mut spec = Map::new();
    let mut properties = Map::new();
    let mut metadata = json!({"resourceVersion": image["metadata"]["resourceVersion"]});
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let queued = phase(image) == "queued";
    for key in keys {
        let (was, now) = (old.get(key), new.get(key));
        if was == now {
            continue;
        }
        let key = key.as_str();
        match (key, now) {
            (_, _) if READ_ONLY.contains(&key) || key == "owner" => {
                return Err(Fault::forbidden(
                    D,
                    format!("Attribute '{key}' is read-only."),
                ));
            }
            ("name", Some(Value::String(name))) if name.chars().count() <= 255 => {
                let annotation = if *name == common::name(image) {
                    Value::Null
                } else {
                    json!(name)
                };
                metadata["annotations"] = json!({ NAME_ANNOTATION: annotation });
            }
            ("name", _) => {
                return Err(Fault::bad_request(
                    D,
                    "Invalid value for name: must be a string of at most 255 characters",
                ));
            }
            ("disk_format" | "container_format", _) if !queued => {
                return Err(Fault::forbidden(
                    D,
                    format!("Attribute {key} can be only replaced for a queued image."),
                ));
            }
            (_, None) if WRITABLE.contains(&key) => {
                return Err(Fault::forbidden(
                    D,
                    format!("Attribute '{key}' cannot be removed."),
                ));
            }
            (_, None) => {
                properties.insert(key.to_string(), Value::Null);
            }
            (_, Some(value)) => set_attribute(&mut spec, &mut properties, key, value, admin)?,
        }
    }
    if !properties.is_empty() {
        spec.insert("properties".into(), Value::Object(properties));
    }
    Ok(json!({"metadata": metadata, "spec": spec}))
}

/// `PATCH /v2/images/{id}` with a JSON patch.
pub(super) async fn update(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Fault> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let media = content_type.split(';').next().unwrap_or_default().trim();
    if !PATCH_TYPES.contains(&media) {
        return Err(Fault::new(
            D,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Unsupported Content-Type {content_type:?}: use {}",
                PATCH_TYPES[0]
            ),
        ));
    }
    let ops = common::json_body(D, &body)?;
    let ops = ops
        .as_array()
        .ok_or_else(|| Fault::bad_request(D, "A JSON patch is a list of operations."))?;
    let image = find(&state, &caller, &id).await?;
    check_write(&caller, &image)?;
    let before = render(&image);
    let mut after = before.clone();
    for op in ops {
        apply_op(&mut after, op)?;
    }
    let patch = diff_to_patch(&image, &before, &after, caller.is_cloud_admin())?;
    let updated = write_patch(&state, &caller, &image, &patch)
        .await
        .map_err(api_error)?;
    tracing::info!(image = %id, "image updated");
    Ok(Json(render(&updated)).into_response())
}
