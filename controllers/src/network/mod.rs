//! The network controller (Neutron's server side): segments, addresses, MACs, the ports
//! servers ask for, DHCP ports and default security groups — all as objects; the node agent
//! makes them real on each host.
//!
//! # What it reconciles
//! - [`ports`]: every `Port` gets a MAC (`fa:16:3e:…`, unique in its network, [`mac`]) and
//!   its fixed addresses from [`ipam`] (a pure function), each made to stick by creating an
//!   `IpAllocation` named after the address — the store's create is the compare-and-swap, a
//!   `409` means "taken, pick the next". Status: `fixedIps`, `macAddress`, phase `DOWN` (the
//!   node agent makes it `ACTIVE`), condition [`ALLOCATED`]. Finalizer [`FINALIZER`]
//!   releases the allocations. A periodic sweep deletes allocations whose port is gone.
//! - [`servers`]: each `spec.networks` entry with `network` gets an owned `Port`
//!   ([`cirrus_crds::kinds::port::server_port_name`]); entries with `port` claim the user's
//!   port; ports follow the server's node (`bindingHost`). On deletion owned ports go,
//!   claimed ones are released and outlive the server.
//! - [`networks`]: a `Network` gets its segment (VXLAN VNI, unique), MTU, subnet list and
//!   one DHCP port per node that has one of its ports bound; a `Subnet` gets its counts.
//! - [`groups`]: every project has the `default` security group.
//!
//! # Guarantees
//! - No address is handed out twice: the allocation's name is the address and the store
//!   refuses a second object with that name, across processes and restarts.
//! - Crash-safe: a port's allocations are labelled with its uid and adopted again by the
//!   next reconcile (also after a restart), so a crash between creating an allocation and
//!   writing the port's status neither leaks nor doubles an address; extra allocations of a
//!   port are released; allocations of vanished ports are swept.
//! - Concurrent reconciles of many ports on one subnet pick distinct addresses: a picked
//!   address is assumed taken in memory until the cache shows it ([`index`]).
//! - Status is written only when it changes, with a resourceVersion compare-and-swap
//!   (re-read and re-applied on conflict, so the node agent's `ACTIVE` is never lost).

pub mod groups;
pub mod index;
pub mod ipam;
pub mod mac;
pub mod networks;
pub mod ports;
pub mod servers;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cirrus_client::{Api, Client, ClientError};
use cirrus_crds::{IpAllocation, Network, Port, Project, Resource, SecurityGroup, Server, Subnet};
use futures::{FutureExt, StreamExt};
use tokio::sync::watch;

use crate::runtime::reflector::{Store, Writer};
use crate::runtime::shared::{cached, shared_watch};
use crate::runtime::watcher;
use crate::runtime::{Config, Controller, FinalizerError, ObjectRef, Recorder, owners};

use index::IpamState;

/// The finalizer the network controller keeps on ports, servers with networks and networks.
pub use cirrus_crds::conventions::NETWORK_FINALIZER as FINALIZER;
/// The port condition saying whether its MAC and addresses are assigned.
pub use cirrus_crds::conventions::PORT_ALLOCATED_CONDITION as ALLOCATED;
pub use cirrus_crds::conventions::{
    DEFAULT_SECURITY_GROUP as DEFAULT_GROUP, DEVICE_OWNER_COMPUTE, DEVICE_OWNER_DHCP,
};
/// How often a port, network or server that can't be completed (missing network, pool
/// exhausted, port in use) is tried again without a change.
pub const RETRY: Duration = Duration::from_secs(10);
/// How often allocations of vanished ports are swept.
pub const SWEEP_PERIOD: Duration = Duration::from_secs(30);

/// Why a reconcile failed (the runtime retries with backoff).
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The API refused or could not be reached.
    #[error("API request failed")]
    Api(#[from] ClientError),
    /// Adding or removing the finalizer, or the finalized step, failed.
    #[error(transparent)]
    Finalizer(#[from] Box<FinalizerError<NetError>>),
}

/// Tuning of the network controller.
#[derive(Clone, Debug)]
pub struct NetworkConfig {
    /// Port reconciles running at once (allocation throughput). Default 64.
    pub port_concurrency: usize,
    /// Resync period of every kind. Default 30 s.
    pub resync: Option<Duration>,
    /// Orphan-allocation sweep period; `None` disables it. Default [`SWEEP_PERIOD`].
    pub sweep: Option<Duration>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            port_concurrency: 64,
            resync: Some(Duration::from_secs(30)),
            sweep: Some(SWEEP_PERIOD),
        }
    }
}

/// What every network reconciler shares: the client, the caches and the in-memory
/// assumptions.
pub struct NetworkContext {
    client: Client,
    recorder: Recorder,
    networks: Store<Network>,
    subnets: Store<Subnet>,
    ports: Store<Port>,
    servers: Store<Server>,
    groups: Store<SecurityGroup>,
    allocations: Store<IpAllocation>,
    /// The allocation index and assumed addresses.
    ipam: Arc<Mutex<IpamState>>,
    /// MACs in use per network: the port cache's plus the ones chosen here.
    macs: Arc<Mutex<mac::MacIndex>>,
    /// Segment ids chosen but maybe not yet in the network cache.
    segments: Mutex<HashMap<ObjectRef, u32>>,
    /// Projects whose default group this process created.
    ensured_groups: Mutex<HashSet<String>>,
    /// When each subnet's status was last written (counts are written at most once a second).
    subnet_writes: Mutex<HashMap<ObjectRef, Instant>>,
}

impl NetworkContext {
    /// Waits until every cache has its first list.
    async fn caches_ready(&self) {
        self.networks.wait_until_ready().await;
        self.subnets.wait_until_ready().await;
        self.ports.wait_until_ready().await;
        self.allocations.wait_until_ready().await;
        self.groups.wait_until_ready().await;
    }

    fn lock_ipam(&self) -> std::sync::MutexGuard<'_, IpamState> {
        self.ipam.lock().expect("ipam lock")
    }
}

/// Runs the network controller until `shutdown` resolves; it acts only while `gate` says it
/// leads.
pub async fn run(
    client: Client,
    config: NetworkConfig,
    gate: watch::Receiver<bool>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let shutdown = shutdown.boxed().shared();
    let controller_config = |concurrency: usize| Config {
        concurrency,
        resync: config.resync,
    };
    // One watch per kind, shared by the controllers that need it (each extra watch costs the
    // API an encode and this process a decode of every change).
    let [port_main, port_for_networks, port_for_servers] = shared_watch::<Port, 3>(&client);
    // The port events also feed the MAC index (as the allocation events feed the IPAM one).
    let macs = Arc::new(Mutex::new(mac::MacIndex::default()));
    let port_main = {
        let index = macs.clone();
        port_main.map(move |event| {
            if let Ok(event) = &event {
                index.lock().expect("macs lock").apply(event);
            }
            event
        })
    };
    let [subnet_main, subnet_for_ports, subnet_for_networks] = shared_watch::<Subnet, 3>(&client);
    let [network_main, network_for_ports] = shared_watch::<Network, 2>(&client);
    let port_ctl = Controller::for_stream(port_main)
        .with_config(controller_config(config.port_concurrency))
        .with_leader_gate(gate.clone())
        .graceful_shutdown_on(shutdown.clone());
    let network_ctl = Controller::for_stream(network_main)
        .with_config(controller_config(16))
        .with_leader_gate(gate.clone())
        .graceful_shutdown_on(shutdown.clone());
    let subnet_ctl = Controller::for_stream(subnet_main)
        .with_config(controller_config(16))
        .with_leader_gate(gate.clone())
        .graceful_shutdown_on(shutdown.clone());
    let server_ctl = Controller::new(Api::<Server>::all(client.clone()), Default::default())
        .with_config(controller_config(16))
        .with_leader_gate(gate.clone())
        .graceful_shutdown_on(shutdown.clone());
    let project_ctl = Controller::new(Api::<Project>::all(client.clone()), Default::default())
        .with_config(controller_config(4))
        .with_leader_gate(gate.clone())
        .graceful_shutdown_on(shutdown.clone());

    let ports = port_ctl.store();
    let networks = network_ctl.store();
    let subnets = subnet_ctl.store();
    let servers = server_ctl.store();
    let (groups, group_events) = cached::<SecurityGroup>(&client);

    // The allocation cache feeds the IPAM index as well as the reflector.
    let ipam = Arc::new(Mutex::new(IpamState::default()));
    let mut alloc_writer = Writer::<IpAllocation>::new();
    let allocations = alloc_writer.as_reader();
    let index = ipam.clone();
    let alloc_events =
        watcher::watcher(Api::<IpAllocation>::all(client.clone()), Default::default()).map(
            move |event| {
                if let Ok(event) = &event {
                    alloc_writer.apply(event);
                    index.lock().expect("ipam lock").apply(event);
                }
                event
            },
        );

    // Ports that failed for want of their network or subnets are woken when those change
    // (ports still on their first attempt are woken by their own changes).
    let unallocated = {
        let ports = ports.clone();
        move |project: Option<&str>, network: &str| -> Vec<ObjectRef> {
            ports
                .list()
                .iter()
                .filter(|p| project.is_some_and(|project| p.is_on(project, network)))
                .filter(|p| {
                    cirrus_crds::Condition::find(&p.status.conditions, ALLOCATED)
                        .is_some_and(|c| c.status == cirrus_crds::ConditionStatus::False)
                })
                .map(|p| ObjectRef::from_obj(p.as_ref()))
                .collect()
        }
    };
    let on_subnet = unallocated.clone();
    let port_ctl = port_ctl
        .watches_stream(subnet_for_ports, move |s: &Subnet| {
            on_subnet(s.metadata.project.as_deref(), &s.spec.network)
        })
        .watches_stream(network_for_ports, move |n: &Network| {
            unallocated(n.metadata.project.as_deref(), &n.metadata.name)
        });
    let network_ctl = network_ctl
        // Only bound ports and DHCP ports matter to a network (its DHCP ports per node).
        .watches_stream(port_for_networks, |p: &Port| {
            if p.spec.binding_host.is_some()
                || p.spec.device_owner.as_deref() == Some(DEVICE_OWNER_DHCP)
            {
                network_of(Some(p.network_project()), &p.spec.network)
            } else {
                Vec::new()
            }
        })
        .watches_stream(subnet_for_networks, |s: &Subnet| {
            network_of(s.metadata.project.as_deref(), &s.spec.network)
        });
    let subnet_ctl = subnet_ctl.watches_stream(alloc_events, |a: &IpAllocation| {
        network_of(a.metadata.project.as_deref(), &a.spec.subnet)
    });
    let server_ctl = server_ctl.watches_stream(port_for_servers, owners::<Server, Port>);
    let project_ctl = project_ctl.watches_stream(group_events, |g: &SecurityGroup| {
        match (&g.metadata.project, g.metadata.name == DEFAULT_GROUP) {
            (Some(project), true) => vec![ObjectRef::cluster(project)],
            _ => Vec::new(),
        }
    });

    let ctx = Arc::new(NetworkContext {
        recorder: Recorder::new(client.clone(), "network-controller", None),
        client,
        networks,
        subnets,
        ports,
        servers,
        groups,
        allocations,
        ipam,
        macs,
        segments: Mutex::new(HashMap::new()),
        ensured_groups: Mutex::new(HashSet::new()),
        subnet_writes: Mutex::new(HashMap::new()),
    });
    let sweeper = ports::sweep_loop(ctx.clone(), config.sweep, gate, shutdown.clone());
    tokio::join!(
        port_ctl.run(ports::reconcile, error_policy, ctx.clone()),
        network_ctl.run(networks::reconcile_network, error_policy, ctx.clone()),
        subnet_ctl.run(networks::reconcile_subnet, error_policy, ctx.clone()),
        server_ctl.run(servers::reconcile, error_policy, ctx.clone()),
        project_ctl.run(groups::reconcile_project, error_policy, ctx.clone()),
        sweeper,
    );
}

/// The reference of the object named `name` in `project` (a port's network, an
/// allocation's subnet).
fn network_of(project: Option<&str>, name: &str) -> Vec<ObjectRef> {
    match project {
        Some(project) => vec![ObjectRef::in_project(project, name)],
        None => Vec::new(),
    }
}

fn error_policy<K>(
    _obj: Arc<K>,
    err: &NetError,
    _ctx: Arc<NetworkContext>,
) -> crate::runtime::Action {
    tracing::warn!(error = %err, source = ?std::error::Error::source(err), "network reconcile failed");
    crate::runtime::Action::backoff()
}

/// Writes the status `mutate` makes of `obj`'s, when it differs; on a conflict re-reads the
/// object and applies `mutate` to the newer version (other writers, like the node agent,
/// keep their fields). Returns whether something was written.
async fn write_status<K: Resource + PartialEq>(
    client: &Client,
    obj: &K,
    mutate: impl Fn(&mut K),
) -> Result<bool, ClientError> {
    let api = Api::<K>::for_object(client.clone(), obj);
    let mut current = obj.clone();
    for _ in 0..8 {
        let mut next = current.clone();
        mutate(&mut next);
        if next == current {
            return Ok(false);
        }
        match api.replace_status(&next).await {
            Ok(_) => return Ok(true),
            Err(err) if err.is_conflict() => match api.get_opt(&current.meta().name).await? {
                Some(latest) => current = latest,
                None => return Ok(false),
            },
            Err(err) if err.is_not_found() => return Ok(false),
            Err(err) => return Err(err),
        }
    }
    Ok(false)
}

/// A condition observed now against `generation`.
fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
) -> cirrus_crds::Condition {
    cirrus_crds::Condition {
        type_: type_.into(),
        status: if ok {
            cirrus_crds::ConditionStatus::True
        } else {
            cirrus_crds::ConditionStatus::False
        },
        reason: reason.into(),
        message: message.into(),
        last_transition_time: Some(chrono::Utc::now()),
        observed_generation: generation,
    }
}
