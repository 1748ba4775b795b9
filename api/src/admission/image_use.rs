//! Shared images are used only once their member accepted them: the admission check on every
//! server and volume that names an image, and the lookups of members' answers
//! ([`cirrus_crds::ImageMember`]) the Glance routes share.
//!
//! Names resolve only to a project's own images and public ones
//! ([`cirrus_crds::Image::findable_by_name_from`]), so only a reference by uid can reach a share;
//! this check finds that image and asks [`cirrus_crds::Image::usable_by`] with the project's
//! answer. The scheduler and the node agents then resolve the same reference by visibility
//! alone: what admission let in runs, and a member's later change of mind does not stop it.

use std::collections::HashMap;

use cirrus_crds::{Image, ImageMember, KindInfo, MemberStatus, Resource, Server, Volume};
use cirrus_store::objects::{Api, ListOptions, ObjectError, ObjectStore};
use serde_json::Value;

use crate::ApiState;
use crate::error::ApiError;

/// `project`'s `ImageMember` for the image with uid `image_uid`, if it answered.
pub(crate) async fn answer_object(
    store: &ObjectStore,
    project: &str,
    image_uid: &str,
) -> Result<Option<ImageMember>, ApiError> {
    match Api::<ImageMember>::in_project(store.clone(), project.to_string())
        .get(image_uid)
        .await
    {
        Ok(member) => Ok(Some(member)),
        Err(ObjectError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `project`'s answer to the share of the image with uid `image_uid`: its `ImageMember`'s
/// status, or `None` when it has not answered (pending).
pub(crate) async fn answer(
    store: &ObjectStore,
    project: &str,
    image_uid: &str,
) -> Result<Option<MemberStatus>, ApiError> {
    Ok(answer_object(store, project, image_uid)
        .await?
        .map(|member| member.spec.member_status))
}

/// Every answer of `project`, by image uid (for listings).
pub(crate) async fn answers(
    store: &ObjectStore,
    project: &str,
) -> Result<HashMap<String, MemberStatus>, ApiError> {
    let members = Api::<ImageMember>::in_project(store.clone(), project.to_string())
        .list()
        .await?;
    Ok(members
        .into_iter()
        .map(|m| (m.metadata.name, m.spec.member_status))
        .collect())
}

/// The image with uid `uid`, in any project.
pub(crate) async fn image_by_uid(
    store: &ObjectStore,
    uid: &str,
) -> Result<Option<Image>, ApiError> {
    let fields = cirrus_store::fields::FieldSelector::parse(&format!("metadata.uid={uid}"))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let options = ListOptions {
        fields,
        ..Default::default()
    };
    let found = store.list(Image::info(), None, &options).await?;
    found
        .items
        .into_iter()
        .next()
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| ApiError::internal(format!("a stored image does not parse: {e}")))
}

/// The image reference an object of `kind` carries, with the field it is in.
fn image_reference(kind: &KindInfo, object: &Value) -> Option<(&'static str, String)> {
    if kind.plural == Server::info().plural {
        let image = object.pointer("/spec/image").and_then(Value::as_str)?;
        return Some(("spec.image", image.to_string()));
    }
    if kind.plural == Volume::info().plural
        && object.pointer("/spec/source/type").and_then(Value::as_str) == Some("image")
    {
        let image = object
            .pointer("/spec/source/name")
            .and_then(Value::as_str)?;
        return Some(("spec.source.name", image.to_string()));
    }
    None
}

/// Refuses a server or volume of `project` that names, by uid, an image shared with the
/// project that the project has not accepted (`400` naming the field and what to do).
/// Anything else passes: unknown references are the scheduler's and validation's to judge.
pub(crate) async fn check(
    state: &ApiState,
    kind: &KindInfo,
    project: Option<&str>,
    object: &Value,
) -> Result<(), ApiError> {
    let (Some(project), Some((field, reference))) = (project, image_reference(kind, object)) else {
        return Ok(());
    };
    if uuid::Uuid::parse_str(&reference).is_err() {
        return Ok(());
    }
    let Some(image) = image_by_uid(&state.store, &reference).await? else {
        return Ok(());
    };
    if !image.offered_to(project) || image.metadata.project.as_deref() == Some(project) {
        return Ok(());
    }
    let answer = answer(&state.store, project, &reference).await?;
    if image.usable_by(project, answer) {
        return Ok(());
    }
    let status = answer.unwrap_or_default().as_str();
    Err(ApiError::bad_request(format!(
        "{field}: image {reference} is shared with project {project:?}, whose answer is \
         {status}: accept the share first (`openstack image set --accept {reference}`, or an \
         ImageMember named {reference} with spec.memberStatus accepted)"
    )))
}

/// [`check`] for an update of `name` whose body (`change`: the whole object or a merge patch)
/// names an image: only a reference that changes is judged, so a member's later refusal
/// does not freeze servers it already runs.
pub(crate) async fn check_change(
    state: &ApiState,
    kind: &'static KindInfo,
    project: Option<&str>,
    name: &str,
    change: &Value,
) -> Result<(), ApiError> {
    let Some((_, wanted)) = image_reference(kind, change) else {
        return Ok(());
    };
    let current = match state.store.get(kind, project, name).await {
        Ok(current) => current,
        // The write itself answers for a missing object.
        Err(ObjectError::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if image_reference(kind, &current).is_some_and(|(_, held)| held == wanted) {
        return Ok(());
    }
    check(state, kind, project, change).await
}
