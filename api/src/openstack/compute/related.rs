//! The objects a server refers to by name (images, flavors, networks, ports, volumes,
//! security groups, key pairs), read once per request so that translating ids to names and
//! back is a pure lookup ([`Related`]).

use cirrus_crds::meta::ObjectMeta;
use cirrus_crds::{Flavor, Image, Keypair, Network, Port, SecurityGroup, Volume};

use crate::ApiState;
use crate::error::ApiError;
use crate::openstack::common::{self, NAME_ANNOTATION};

/// The objects of one or all projects a server body or a create request refers to.
#[derive(Debug, Default, Clone)]
pub struct Related {
    /// Every image of every project (public ones of other projects are usable).
    pub images: Vec<Image>,
    /// Every flavor (cluster-scoped).
    pub flavors: Vec<Flavor>,
    /// Networks of the project(s) read.
    pub networks: Vec<Network>,
    /// Ports of the project(s) read.
    pub ports: Vec<Port>,
    /// Volumes of the project(s) read.
    pub volumes: Vec<Volume>,
    /// Security groups of the project(s) read.
    pub security_groups: Vec<SecurityGroup>,
    /// Key pairs of the project(s) read.
    pub keypairs: Vec<Keypair>,
}

/// The OpenStack name of an object: its name annotation, else its object name.
pub fn display(meta: &ObjectMeta) -> &str {
    meta.annotations
        .get(NAME_ANNOTATION)
        .map_or(meta.name.as_str(), String::as_str)
}

fn uid(meta: &ObjectMeta) -> &str {
    meta.uid.as_deref().unwrap_or_default()
}

fn in_project(meta: &ObjectMeta, project: &str) -> bool {
    meta.project.as_deref() == Some(project)
}

async fn typed<K: cirrus_crds::Resource>(
    state: &ApiState,
    project: Option<&str>,
) -> Result<Vec<K>, ApiError> {
    let plural = K::PLURAL;
    let items = common::list(state, K::info(), project).await?;
    Ok(items
        .into_iter()
        .filter_map(|v| match serde_json::from_value::<K>(v) {
            Ok(k) => Some(k),
            Err(e) => {
                tracing::warn!(%plural, error = %e, "skipping an object that does not parse");
                None
            }
        })
        .collect())
}

impl Related {
    /// Reads what servers of `project` (`None`: every project) refer to.
    pub async fn load(state: &ApiState, project: Option<&str>) -> Result<Self, ApiError> {
        Ok(Self {
            images: typed(state, None).await?,
            flavors: typed(state, None).await?,
            // Other projects' shared networks are usable too.
            networks: typed::<Network>(state, None)
                .await?
                .into_iter()
                .filter(|n| project.is_none_or(|p| n.usable_by(p)))
                .collect(),
            ports: typed(state, project).await?,
            volumes: typed(state, project).await?,
            security_groups: typed(state, project).await?,
            keypairs: typed(state, project).await?,
        })
    }

    /// The image a server of `project` boots when its spec names `name`: the project's own
    /// image, else a public one ([`Image::findable_by_name_from`], the scheduler's and node
    /// agent's rule).
    pub fn image_for(&self, project: &str, name: &str) -> Option<&Image> {
        if let Some(own) = self
            .images
            .iter()
            .find(|i| i.metadata.name == name && in_project(&i.metadata, project))
        {
            return Some(own);
        }
        let mut others: Vec<&Image> = self
            .images
            .iter()
            .filter(|i| i.metadata.name == name && i.findable_by_name_from(project))
            .collect();
        others.sort_by(|a, b| a.metadata.project.cmp(&b.metadata.project));
        others.into_iter().next()
    }

    /// The image `id` as `project` sees it: by uid any visible to it ([`Image::visible_to`]:
    /// its own, public, community, shared with it — whether the share was accepted is
    /// admission's question, [`crate::admission::image_use`]), by object or display name only
    /// its own and public ones ([`Image::findable_by_name_from`]).
    pub fn image_by_id(&self, project: &str, id: &str) -> Option<&Image> {
        self.images
            .iter()
            .filter(|i| i.visible_to(project))
            .find(|i| uid(&i.metadata) == id)
            .or_else(|| {
                self.images
                    .iter()
                    .filter(|i| i.findable_by_name_from(project))
                    .find(|i| i.metadata.name == id || display(&i.metadata) == id)
            })
    }

    /// The flavor `id` (flavor ids are names).
    pub fn flavor(&self, id: &str) -> Option<&Flavor> {
        self.flavors
            .iter()
            .find(|f| f.metadata.name == id)
            .or_else(|| self.flavors.iter().find(|f| display(&f.metadata) == id))
    }

    /// The network of `project` with uid (else name) `id`.
    pub fn network_by_id(&self, project: &str, id: &str) -> Option<&Network> {
        find(&self.networks, project, id, |n| &n.metadata).or_else(|| {
            // Another project's network only by uid, and only when shared with `project`:
            // a name never reaches outside the project.
            self.networks
                .iter()
                .find(|n| uid(&n.metadata) == id && n.usable_by(project))
        })
    }

    /// The network named `name` a server of `project` is on: its own, else a shared one
    /// of another project.
    pub fn network_named(&self, project: &str, name: &str) -> Option<&Network> {
        let named = |n: &&Network| n.metadata.name == name;
        self.networks
            .iter()
            .filter(named)
            .find(|n| in_project(&n.metadata, project))
            .or_else(|| {
                self.networks
                    .iter()
                    .filter(named)
                    .find(|n| n.usable_by(project))
            })
    }

    /// Networks a server of `project` without explicit networks may attach to, as Nova
    /// picks them: the project's own (not external, not being deleted), else the shared
    /// ones of other projects.
    pub fn project_networks(&self, project: &str) -> Vec<&Network> {
        let candidates = || {
            self.networks
                .iter()
                .filter(|n| !n.spec.external && n.metadata.deletion_timestamp.is_none())
        };
        let own: Vec<&Network> = candidates()
            .filter(|n| in_project(&n.metadata, project))
            .collect();
        if !own.is_empty() {
            return own;
        }
        candidates().filter(|n| n.usable_by(project)).collect()
    }

    /// The port of `project` with uid (else name) `id`.
    pub fn port_by_id(&self, project: &str, id: &str) -> Option<&Port> {
        find(&self.ports, project, id, |p| &p.metadata)
    }

    /// Ports of `project` attached to the server with uid `server_uid`.
    pub fn ports_of(&self, project: &str, server_uid: &str) -> Vec<&Port> {
        self.ports
            .iter()
            .filter(|p| {
                in_project(&p.metadata, project) && p.spec.device_id.as_deref() == Some(server_uid)
            })
            .collect()
    }

    /// The volume of `project` with uid (else name) `id`.
    pub fn volume_by_id(&self, project: &str, id: &str) -> Option<&Volume> {
        find(&self.volumes, project, id, |v| &v.metadata)
    }

    /// The volume of `project` named `name`.
    pub fn volume_named(&self, project: &str, name: &str) -> Option<&Volume> {
        self.volumes
            .iter()
            .find(|v| v.metadata.name == name && in_project(&v.metadata, project))
    }

    /// The security group of `project` with uid, object name or display name `id`.
    pub fn security_group(&self, project: &str, id: &str) -> Option<&SecurityGroup> {
        find(&self.security_groups, project, id, |g| &g.metadata)
    }

    /// The key pair of `project` named `name` (object or display name).
    pub fn keypair(&self, project: &str, name: &str) -> Option<&Keypair> {
        self.keypairs
            .iter()
            .filter(|k| in_project(&k.metadata, project))
            .find(|k| k.metadata.name == name)
            .or_else(|| {
                self.keypairs
                    .iter()
                    .filter(|k| in_project(&k.metadata, project))
                    .find(|k| display(&k.metadata) == name)
            })
    }
}

/// The object of `project` whose uid is `id`, else whose object name, else display name.
fn find<'a, T>(
    items: &'a [T],
    project: &str,
    id: &str,
    meta: impl Fn(&T) -> &ObjectMeta,
) -> Option<&'a T> {
    let mine = || items.iter().filter(|i| in_project(meta(i), project));
    mine()
        .find(|i| uid(meta(i)) == id)
        .or_else(|| mine().find(|i| meta(i).name == id))
        .or_else(|| mine().find(|i| display(meta(i)) == id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cirrus_crds::ImageSpec;
    use cirrus_crds::kinds::image::Visibility;

    fn image(project: &str, name: &str, uid: &str, visibility: Visibility) -> Image {
        Image::new(
            ObjectMeta {
                name: name.into(),
                project: Some(project.into()),
                uid: Some(uid.into()),
                ..Default::default()
            },
            ImageSpec {
                visibility,
                ..Default::default()
            },
        )
    }

    #[test]
    fn own_images_win_and_private_images_of_others_stay_hidden() {
        let related = Related {
            images: vec![
                image("admin", "cirros", "u-pub", Visibility::Public),
                image("demo", "cirros", "u-own", Visibility::Private),
                image("other", "secret", "u-priv", Visibility::Private),
            ],
            ..Default::default()
        };
        assert_eq!(
            related
                .image_for("demo", "cirros")
                .unwrap()
                .metadata
                .uid
                .as_deref(),
            Some("u-own")
        );
        assert_eq!(
            related
                .image_for("alt", "cirros")
                .unwrap()
                .metadata
                .uid
                .as_deref(),
            Some("u-pub")
        );
        assert!(related.image_for("demo", "secret").is_none());
        assert!(related.image_by_id("demo", "u-priv").is_none());
        assert_eq!(
            related
                .image_by_id("demo", "u-pub")
                .unwrap()
                .metadata
                .project
                .as_deref(),
            Some("admin")
        );
    }

    /// A community or shared image of another project never stands in for a name; it is
    /// used by uid, and the server then names it by uid.
    #[test]
    fn names_find_own_and_public_images_only() {
        let mut shared = image("evil", "ubuntu", "u-shared", Visibility::Shared);
        shared.spec.members = vec!["demo".into()];
        let related = Related {
            images: vec![
                image("evil", "ubuntu", "u-comm", Visibility::Community),
                shared,
                image("admin", "debian", "u-pub", Visibility::Public),
            ],
            ..Default::default()
        };
        assert!(related.image_for("demo", "ubuntu").is_none());
        assert!(related.image_by_id("demo", "ubuntu").is_none());
        let by_uid = related.image_by_id("demo", "u-comm").unwrap();
        assert_eq!(by_uid.reference_from("demo"), "u-comm");
        let shared = related.image_by_id("demo", "u-shared").unwrap();
        assert_eq!(shared.reference_from("demo"), "u-shared");
        assert!(related.image_by_id("other", "u-shared").is_none());
        let public = related.image_for("demo", "debian").unwrap();
        assert_eq!(public.reference_from("demo"), "debian");
    }
}
