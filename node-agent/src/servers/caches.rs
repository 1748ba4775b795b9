//! The objects a server reconcile reads, from reflector caches instead of per-reconcile GETs.
//!
//! [`run`](super::run) feeds one cache per kind from the watches it already needs or may
//! make within the node's rights (`api/src/resources/authz.rs`, node rules):
//! - ports bound here (`spec.bindingHost=<node>`): the server's own ports and the node's DHCP
//!   ports (named for the node and bound to it); a port bound elsewhere is not the node's to
//!   read (it answers 404 to a GET as well);
//! - volumes placed here (`status.node=<node>`): the only volumes a node may list;
//! - flavors, networks and subnets, whole: a node may list and watch every one of them.
//!
//! # Guarantees
//! - A cache that has not synced yet (its first list not applied) answers
//!   [`ServerError::NotSynced`]: "not known yet", retried, never positive evidence for ERROR.
//! - The controller applies every event to its cache before the reconcile the event
//!   triggers, so a reconcile woken by a change sees that change.
//!
//! # Caveats
//! A synced cache can still lag a write made a moment ago. Where a miss would be positive
//! evidence (a flavor that does not exist makes ERROR), the reconciler confirms the miss with
//! a GET ([`Caches::flavor`]); every other miss only waits, and the object's arrival wakes the
//! server or its next retry finds it.

use std::sync::Arc;

use cirrus_client::{Api, Client};
use cirrus_crds::{Flavor, Network, Port, Resource, Subnet, Volume};
use cirrus_runtime::{ObjectRef, Store, Writer};

use super::context::ServerError;

/// The read side of the server reconciler's caches (cloned into every reconcile).
#[derive(Debug, Clone)]
pub struct Caches {
    pub(super) ports: Store<Port>,
    pub(super) volumes: Store<Volume>,
    flavors: Store<Flavor>,
    networks: Store<Network>,
    subnets: Store<Subnet>,
}

/// The write side, taken once by [`run`](super::run) to feed the caches from its watches.
#[derive(Debug)]
pub(super) struct CacheWriters {
    pub(super) ports: Writer<Port>,
    pub(super) volumes: Writer<Volume>,
    pub(super) flavors: Writer<Flavor>,
    pub(super) networks: Writer<Network>,
    pub(super) subnets: Writer<Subnet>,
}

impl Caches {
    /// Empty, not-synced caches and their writers.
    pub(super) fn new() -> (Self, CacheWriters) {
        let writers = CacheWriters {
            ports: Writer::new(),
            volumes: Writer::new(),
            flavors: Writer::new(),
            networks: Writer::new(),
            subnets: Writer::new(),
        };
        let caches = Self {
            ports: writers.ports.as_reader(),
            volumes: writers.volumes.as_reader(),
            flavors: writers.flavors.as_reader(),
            networks: writers.networks.as_reader(),
            subnets: writers.subnets.as_reader(),
        };
        (caches, writers)
    }

    /// The flavor `name`; a miss in the cache is confirmed with a GET (a missing flavor is
    /// positive evidence, see the module docs).
    pub(super) async fn flavor(
        &self,
        client: &Client,
        name: &str,
    ) -> Result<Option<Arc<Flavor>>, ServerError> {
        if let Some(flavor) = synced(&self.flavors)?.get(&ObjectRef::cluster(name)) {
            return Ok(Some(flavor));
        }
        Ok(Api::<Flavor>::all(client.clone())
            .get_opt(name)
            .await?
            .map(Arc::new))
    }

    /// The port `name` of `project`, when it is bound to this node.
    pub(super) fn port(&self, project: &str, name: &str) -> Result<Option<Arc<Port>>, ServerError> {
        Ok(synced(&self.ports)?.get(&ObjectRef::in_project(project, name)))
    }

    /// The volume `name` of `project`, when it is placed on this node.
    pub(super) fn volume(
        &self,
        project: &str,
        name: &str,
    ) -> Result<Option<Arc<Volume>>, ServerError> {
        Ok(synced(&self.volumes)?.get(&ObjectRef::in_project(project, name)))
    }

    /// The volumes of `project` placed on this node.
    pub(super) fn project_volumes(&self, project: &str) -> Result<Vec<Arc<Volume>>, ServerError> {
        Ok(synced(&self.volumes)?
            .list()
            .into_iter()
            .filter(|v| v.metadata.project.as_deref() == Some(project))
            .collect())
    }

    /// The network `name` of `project`.
    pub(super) fn network(
        &self,
        project: &str,
        name: &str,
    ) -> Result<Option<Arc<Network>>, ServerError> {
        Ok(synced(&self.networks)?.get(&ObjectRef::in_project(project, name)))
    }

    /// Whether a subnet of network `network` (of `project`) serves DHCP.
    pub(super) fn network_has_dhcp(
        &self,
        project: &str,
        network: &str,
    ) -> Result<bool, ServerError> {
        Ok(synced(&self.subnets)?.list().iter().any(|s| {
            s.metadata.project.as_deref() == Some(project)
                && s.spec.network == network
                && s.spec.enable_dhcp
        }))
    }
}

/// `store`, once its first list has been applied.
fn synced<K: Resource>(store: &Store<K>) -> Result<&Store<K>, ServerError> {
    if store.is_ready() {
        Ok(store)
    } else {
        Err(ServerError::NotSynced(K::KIND))
    }
}
