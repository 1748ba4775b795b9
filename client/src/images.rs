//! Resolving an image name the way OpenStack users expect: the project's own image first,
//! then one another project made visible to it.

use cirrus_crds::Image;

use crate::{Api, Client, ClientError, ListParams};

/// The image `name` (or uid, as OpenStack clients give it) as `project` sees it: by name the
/// project's own image, else a public one ([`Image::findable_by_name_from`]); by uid any image
/// visible to the project ([`Image::visible_to`]: also community images and those shared
/// with it). `Ok(None)` is positive evidence that no such image is visible. The scheduler and
/// the node agent both resolve by these rules, so they always agree; whether a share was
/// accepted ([`Image::usable_by`]) was decided when the server or volume was admitted (a
/// member's later change of mind does not stop what already runs, as in Glance).
///
/// # Errors
/// API failures.
pub async fn find_image(
    client: &Client,
    project: &str,
    name: &str,
) -> Result<Option<Image>, ClientError> {
    if let Some(own) = Api::<Image>::in_project(client.clone(), project)
        .get_opt(name)
        .await?
    {
        return Ok(Some(own));
    }
    let params = ListParams::default().fields(format!("metadata.name={name}"));
    if let Some(found) = Api::<Image>::all(client.clone())
        .list_all_matching(&params)
        .await?
        .items
        .into_iter()
        .find(|i| i.findable_by_name_from(project))
    {
        return Ok(Some(found));
    }
    // OpenStack clients name images by id (`kernel_id` properties, `imageRef`): the uid.
    if !looks_like_uid(name) {
        return Ok(None);
    }
    let params = ListParams::default().fields(format!("metadata.uid={name}"));
    Ok(Api::<Image>::all(client.clone())
        .list_all_matching(&params)
        .await?
        .items
        .into_iter()
        .find(|i| i.visible_to(project)))
}

/// Whether `text` has the shape of an object uid (a UUID), so a lookup by uid may find it.
fn looks_like_uid(text: &str) -> bool {
    text.len() == 36
        && text.chars().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod uid_tests {
    #[test]
    fn uids_are_recognised() {
        assert!(super::looks_like_uid(
            "0b6c1c9e-3f43-4c1e-9a4e-5d1f0c2b7a10"
        ));
        assert!(!super::looks_like_uid("guest-kernel"));
    }
}
