//! Network and subnet reconcilers: segmentation, MTU, subnet lists, DHCP ports per node,
//! subnet address counts.
//!
//! # Network
//! - Segment: the id in status is kept; else the one in `spec.segmentation`; else the lowest
//!   id of its type (VXLAN VNI by default) no other network has or was just given by this
//!   process (assumed, as addresses are). Local and flat networks have none.
//! - MTU: `spec.mtu`, else 1450 for VXLAN/Geneve (tunnel overhead) and 1500 otherwise.
//! - DHCP: when a subnet has DHCP enabled, one port `<network>-dhcp-<node>` per node with a
//!   port of the network bound to it (owned by the network, `deviceOwner: network:dhcp`,
//!   `deviceId: dhcp:<node>`, port security off); deleted when no port of the network is
//!   bound to that node any more.
//! - Deletion (finalizer [`FINALIZER`]): its DHCP ports and subnets are deleted, then it goes
//!   (the API refuses to delete a network that still has other ports).
//!
//! # Subnet
//! `totalIps` (pool size), `usedIps` (allocations), `Ready` when its network exists. The
//! counts are written at most once per second per subnet, so a burst of allocations costs a
//! handful of status writes, not one per address.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cirrus_client::Api;
use cirrus_crds::kinds::network::{NetworkPhase, NetworkType, Segmentation};
use cirrus_crds::{Condition, Network, ObjectMeta, OwnerReference, Port, PortSpec, Subnet};

use super::ipam::Pools;
use super::{
    DEVICE_OWNER_DHCP, FINALIZER, NetError, NetworkContext, RETRY, condition, write_status,
};
use crate::runtime::{Action, FinalizerEvent, ObjectRef, finalizer};

/// MTU of tunnelled (VXLAN, Geneve) networks: 1500 minus the encapsulation overhead.
pub const TUNNEL_MTU: u32 = 1450;
/// MTU of untunnelled networks.
pub const PLAIN_MTU: u32 = 1500;
/// Least time between two writes of one subnet's counts.
const SUBNET_WRITE_INTERVAL: Duration = Duration::from_secs(1);

pub use cirrus_crds::conventions::dhcp_port_name;

/// Reconciles one network (the controller's entry point).
pub async fn reconcile_network(
    network: Arc<Network>,
    ctx: Arc<NetworkContext>,
) -> Result<Action, NetError> {
    let inner = ctx.clone();
    finalizer(&ctx.client, FINALIZER, network, |event| async move {
        match event {
            FinalizerEvent::Apply(n) => apply_network(n, &inner).await,
            FinalizerEvent::Cleanup(n) => cleanup_network(n, &inner).await,
        }
    })
    .await
    .map_err(|e| NetError::Finalizer(Box::new(e)))
}

fn ports_of(ctx: &NetworkContext, network: &Network) -> Vec<Arc<Port>> {
    ctx.ports
        .list()
        .into_iter()
        .filter(|p| {
            network
                .metadata
                .project
                .as_deref()
                .is_some_and(|project| p.is_on(project, &network.metadata.name))
        })
        .collect()
}

fn subnets_of(ctx: &NetworkContext, network: &Network) -> Vec<Arc<Subnet>> {
    let mut subnets: Vec<Arc<Subnet>> = ctx
        .subnets
        .list()
        .into_iter()
        .filter(|s| {
            s.metadata.project == network.metadata.project
                && s.spec.network == network.metadata.name
        })
        .collect();
    subnets.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    subnets
}

fn segment_id_of(n: &Network, type_: NetworkType) -> Option<u32> {
    let from =
        |s: &Option<Segmentation>| s.as_ref().filter(|s| s.type_ == type_).and_then(|s| s.id);
    from(&n.status.segmentation).or_else(|| from(&n.spec.segmentation))
}

/// The segment of `network`: kept, requested or the lowest free id of its type.
fn segment(ctx: &NetworkContext, network: &Network) -> Segmentation {
    let type_ = network
        .spec
        .segmentation
        .as_ref()
        .map(|s| s.type_)
        .unwrap_or_default();
    let physical_network = network
        .spec
        .segmentation
        .as_ref()
        .and_then(|s| s.physical_network.clone());
    let max = match type_ {
        NetworkType::Local | NetworkType::Flat => {
            return Segmentation {
                type_,
                id: None,
                physical_network,
            };
        }
        NetworkType::Vlan => 4094,
        NetworkType::Vxlan | NetworkType::Geneve => 16_777_215,
    };
    let key = ObjectRef::from_obj(network);
    if let Some(id) = segment_id_of(network, type_) {
        return Segmentation {
            type_,
            id: Some(id),
            physical_network,
        };
    }
    let mut assumed = ctx.segments.lock().expect("segments lock");
    if let Some(id) = assumed.get(&key) {
        return Segmentation {
            type_,
            id: Some(*id),
            physical_network,
        };
    }
    let used: BTreeSet<u32> = ctx
        .networks
        .list()
        .iter()
        .filter(|n| ObjectRef::from_obj(n.as_ref()) != key)
        .filter_map(|n| segment_id_of(n, type_))
        .chain(
            assumed
                .iter()
                .filter(|(k, _)| **k != key)
                .map(|(_, id)| *id),
        )
        .collect();
    let id = (1..=max).find(|id| !used.contains(id));
    if let Some(id) = id {
        assumed.insert(key, id);
    }
    Segmentation {
        type_,
        id,
        physical_network,
    }
}

async fn apply_network(network: Arc<Network>, ctx: &NetworkContext) -> Result<Action, NetError> {
    ctx.caches_ready().await;
    let segmentation = segment(ctx, &network);
    let mtu = network.spec.mtu.unwrap_or(match segmentation.type_ {
        NetworkType::Vxlan | NetworkType::Geneve => TUNNEL_MTU,
        _ => PLAIN_MTU,
    });
    let subnets = subnets_of(ctx, &network);
    ensure_dhcp_ports(ctx, &network, &subnets).await?;
    let names: Vec<String> = subnets.iter().map(|s| s.metadata.name.clone()).collect();
    let generation = network.metadata.generation;
    let (ok, reason, message) = match segmentation.id {
        None if !matches!(segmentation.type_, NetworkType::Local | NetworkType::Flat) => (
            false,
            "NoFreeSegment",
            format!("no free {:?} segment id", segmentation.type_),
        ),
        _ => (true, "SegmentAssigned", "segment assigned".to_string()),
    };
    write_status(&ctx.client, network.as_ref(), |n: &mut Network| {
        n.status.segmentation = Some(segmentation.clone());
        n.status.mtu = Some(mtu);
        n.status.subnets = names.clone();
        n.status.phase = Some(if ok {
            NetworkPhase::Active
        } else {
            NetworkPhase::Error
        });
        n.status.observed_generation = generation;
        Condition::set(
            &mut n.status.conditions,
            condition("Ready", ok, reason, message.clone(), generation),
        );
    })
    .await?;
    Ok(if ok {
        Action::await_change()
    } else {
        Action::requeue(RETRY)
    })
}

/// One DHCP port per node with a port of the network bound, none elsewhere.
async fn ensure_dhcp_ports(
    ctx: &NetworkContext,
    network: &Network,
    subnets: &[Arc<Subnet>],
) -> Result<(), NetError> {
    let project = network.metadata.project.clone().unwrap_or_default();
    let ports = ports_of(ctx, network);
    let dhcp = subnets.iter().any(|s| s.spec.enable_dhcp);
    let nodes: BTreeSet<String> = if dhcp {
        ports
            .iter()
            .filter(|p| p.spec.device_owner.as_deref() != Some(DEVICE_OWNER_DHCP))
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| p.spec.binding_host.clone())
            .collect()
    } else {
        BTreeSet::new()
    };
    let api = Api::<Port>::in_project(ctx.client.clone(), project.clone());
    let uid = network.metadata.uid.clone().unwrap_or_default();
    for node in &nodes {
        let name = dhcp_port_name(&network.metadata.name, node);
        if ports.iter().any(|p| p.metadata.name == name) {
            continue;
        }
        let port = Port::new(
            ObjectMeta {
                name: name.clone(),
                project: Some(project.clone()),
                owner_references: vec![OwnerReference {
                    api_version: cirrus_crds::API_VERSION.into(),
                    kind: "Network".into(),
                    name: network.metadata.name.clone(),
                    uid: uid.clone(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }],
                ..Default::default()
            },
            PortSpec {
                network: network.metadata.name.clone(),
                port_security_enabled: Some(false),
                device_owner: Some(DEVICE_OWNER_DHCP.into()),
                device_id: Some(format!("dhcp:{node}")),
                binding_host: Some(node.clone()),
                ..Default::default()
            },
        );
        match api.create(&port).await {
            Ok(_) => tracing::info!(network = %network.metadata.name, %node, "created DHCP port"),
            Err(err) if err.is_already_exists() => {}
            Err(err) => return Err(err.into()),
        }
    }
    for port in ports
        .iter()
        .filter(|p| p.spec.device_owner.as_deref() == Some(DEVICE_OWNER_DHCP))
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.metadata.owner_references.iter().any(|o| o.uid == uid))
    {
        let node = port.spec.binding_host.clone().unwrap_or_default();
        if nodes.contains(&node) {
            continue;
        }
        match api.delete(&port.metadata.name).await {
            Ok(_) => tracing::info!(network = %network.metadata.name, %node, "deleted DHCP port"),
            Err(err) if err.is_not_found() => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

async fn cleanup_network(network: Arc<Network>, ctx: &NetworkContext) -> Result<Action, NetError> {
    ctx.caches_ready().await;
    let project = network.metadata.project.clone().unwrap_or_default();
    let ports = Api::<Port>::in_project(ctx.client.clone(), project.clone());
    for port in ports_of(ctx, &network)
        .iter()
        .filter(|p| p.spec.device_owner.as_deref() == Some(DEVICE_OWNER_DHCP))
    {
        match ports.delete(&port.metadata.name).await {
            Ok(_) => {}
            Err(err) if err.is_not_found() => {}
            Err(err) => return Err(err.into()),
        }
    }
    let subnets = Api::<Subnet>::in_project(ctx.client.clone(), project);
    for subnet in subnets_of(ctx, &network) {
        match subnets.delete(&subnet.metadata.name).await {
            Ok(_) => {}
            Err(err) if err.is_not_found() => {}
            Err(err) => return Err(err.into()),
        }
    }
    ctx.segments
        .lock()
        .expect("segments lock")
        .remove(&ObjectRef::from_obj(network.as_ref()));
    Ok(Action::await_change())
}

/// Reconciles one subnet's status (the controller's entry point).
pub async fn reconcile_subnet(
    subnet: Arc<Subnet>,
    ctx: Arc<NetworkContext>,
) -> Result<Action, NetError> {
    if subnet.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    ctx.caches_ready().await;
    let key = ObjectRef::from_obj(subnet.as_ref());
    let project = subnet.metadata.project.clone().unwrap_or_default();
    let total = u64::try_from(Pools::of(&subnet.spec).size()).unwrap_or(u64::MAX);
    let used = ctx
        .lock_ipam()
        .used(&(project.clone(), subnet.metadata.name.clone())) as u64;
    let network_exists = ctx
        .networks
        .get(&ObjectRef::in_project(&project, &subnet.spec.network))
        .is_some();
    let generation = subnet.metadata.generation;
    let ready = condition(
        "Ready",
        network_exists,
        if network_exists {
            "NetworkFound"
        } else {
            "NetworkNotFound"
        },
        if network_exists {
            format!("{used} of {total} addresses in use")
        } else {
            format!("network {:?} does not exist", subnet.spec.network)
        },
        generation,
    );
    // Only the counts changed: write them at most once per interval.
    let only_counts = subnet.status.total_ips == Some(total)
        && Condition::find(&subnet.status.conditions, "Ready")
            .is_some_and(|c| c.status == ready.status && c.reason == ready.reason)
        && subnet.status.observed_generation == generation;
    if only_counts && subnet.status.used_ips != Some(used) {
        let last = ctx
            .subnet_writes
            .lock()
            .expect("subnet writes lock")
            .get(&key)
            .copied();
        if let Some(wait) = last
            .map(|at| at.elapsed())
            .filter(|e| *e < SUBNET_WRITE_INTERVAL)
            .map(|e| SUBNET_WRITE_INTERVAL - e)
        {
            return Ok(Action::requeue(wait));
        }
    }
    let written = write_status(&ctx.client, subnet.as_ref(), |s: &mut Subnet| {
        s.status.total_ips = Some(total);
        s.status.used_ips = Some(used);
        s.status.observed_generation = generation;
        Condition::set(&mut s.status.conditions, ready.clone());
    })
    .await?;
    if written {
        ctx.subnet_writes
            .lock()
            .expect("subnet writes lock")
            .insert(key, Instant::now());
    }
    Ok(if network_exists {
        Action::await_change()
    } else {
        Action::requeue(RETRY)
    })
}
