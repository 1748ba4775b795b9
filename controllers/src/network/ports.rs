//! Port reconciler: MAC, fixed addresses (IPAM + `IpAllocation` compare-and-swap), status,
//! release on deletion, and the sweep of allocations whose port is gone.
//!
//! # Expected flow
//! 1. A port appears; the finalizer [`FINALIZER`] is added.
//! 2. What it wants is worked out: its `fixedIps` requests, or one address per IP version
//!    from the network's subnets (Neutron's default). Allocations it already holds (labelled
//!    with its uid, from the cache or created by this process) are matched first.
//! 3. Each unmet request picks an address under the IPAM lock (assumed taken at once) and
//!    creates the `IpAllocation`; `409 AlreadyExists` means another port won it: if the
//!    winner is this port (an earlier attempt whose answer was lost) it is adopted, else the
//!    next address is tried.
//! 4. Held allocations no request matches are released.
//! 5. Status: `fixedIps`, `macAddress`, phase `DOWN` unless the node agent set `ACTIVE`,
//!    condition [`ALLOCATED`] (False with `NetworkNotFound`, `SubnetNotOnNetwork`,
//!    `NoSubnetForAddress`, `AddressInUse`, `InvalidAddress`, `PoolExhausted`,
//!    `MacAddressInUse`, plus a Warning event).
//! 6. Deletion: every allocation labelled with the port's uid is deleted, then the
//!    finalizer goes.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cirrus_client::{Api, ClientError};
use cirrus_crds::kinds::event::EventType;
use cirrus_crds::kinds::ipallocation::{PORT_UID_LABEL, SUBNET_LABEL, allocation_name};
use cirrus_crds::kinds::network::NetworkPhase;
use cirrus_crds::kinds::port::FixedIp;
use cirrus_crds::{Condition, IpAllocation, IpAllocationSpec, ObjectMeta, Port, Subnet};
use futures::FutureExt;
use futures::future::Shared;
use tokio::sync::watch;

use super::ipam::{IpamError, Pools, Request};
use super::{ALLOCATED, FINALIZER, NetError, NetworkContext, RETRY, condition, mac, write_status};
use crate::runtime::{Action, FinalizerEvent, ObjectRef, finalizer};

/// Attempts per request before a subnet is reported as contended (only reachable when other
/// writers keep taking the addresses this process picks).
const MAX_ATTEMPTS: usize = 256;
/// Allocations younger than this are never swept (their port may not be cached yet).
const SWEEP_MIN_AGE: Duration = Duration::from_secs(10);

/// Why a port can't get what it asks for: a condition reason and a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// CamelCase reason.
    pub reason: &'static str,
    /// What is wrong, naming the subnet, address or network.
    pub message: String,
}

impl Failure {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// One address a port wants: from one of `candidates` (in order), optionally exactly `ip`.
#[derive(Debug)]
struct Want {
    candidates: Vec<Arc<Subnet>>,
    ip: Option<IpAddr>,
}

impl Want {
    fn accepts(&self, a: &IpAllocation) -> bool {
        self.candidates
            .iter()
            .any(|s| s.metadata.name == a.spec.subnet)
            && self.ip.is_none_or(|ip| ip == a.spec.ip_address)
    }
}

/// Reconciles one port (the controller's entry point).
pub async fn reconcile(port: Arc<Port>, ctx: Arc<NetworkContext>) -> Result<Action, NetError> {
    let inner = ctx.clone();
    finalizer(&ctx.client, FINALIZER, port, |event| async move {
        match event {
            FinalizerEvent::Apply(port) => apply(port, &inner).await,
            FinalizerEvent::Cleanup(port) => cleanup(port, &inner).await,
        }
    })
    .await
    .map_err(|e| NetError::Finalizer(Box::new(e)))
}

/// The subnets of the port's network, oldest first (name breaks ties).
fn subnets_of(ctx: &NetworkContext, project: &str, network: &str) -> Vec<Arc<Subnet>> {
    let mut subnets: Vec<Arc<Subnet>> = ctx
        .subnets
        .list()
        .into_iter()
        .filter(|s| s.metadata.project.as_deref() == Some(project))
        .filter(|s| s.spec.network == network && s.metadata.deletion_timestamp.is_none())
        .collect();
    subnets.sort_by(|a, b| {
        (a.metadata.creation_timestamp, &a.metadata.name)
            .cmp(&(b.metadata.creation_timestamp, &b.metadata.name))
    });
    subnets
}

/// What `port` wants, given its network's subnets.
fn wants(port: &Port, subnets: &[Arc<Subnet>]) -> Result<Vec<Want>, Failure> {
    let network = &port.spec.network;
    if port.spec.fixed_ips.is_empty() {
        return Ok([4u8, 6]
            .iter()
            .map(|v| Want {
                candidates: subnets
                    .iter()
                    .filter(|s| s.spec.ip_version() == *v)
                    .cloned()
                    .collect(),
                ip: None,
            })
            .filter(|w| !w.candidates.is_empty())
            .collect());
    }
    let mut wants = Vec::new();
    for (i, request) in port.spec.fixed_ips.iter().enumerate() {
        let subnet = match (&request.subnet, request.ip_address) {
            (Some(name), _) => subnets
                .iter()
                .find(|s| &s.metadata.name == name)
                .cloned()
                .ok_or_else(|| {
                    Failure::new(
                        "SubnetNotOnNetwork",
                        format!(
                            "spec.fixedIps[{i}].subnet: subnet {name:?} is not a subnet of network {network:?}"
                        ),
                    )
                })?,
            (None, Some(ip)) => subnets
                .iter()
                .find(|s| s.spec.cidr.contains(&ip))
                .cloned()
                .ok_or_else(|| {
                    Failure::new(
                        "NoSubnetForAddress",
                        format!(
                            "spec.fixedIps[{i}].ipAddress: no subnet of network {network:?} contains {ip}"
                        ),
                    )
                })?,
            (None, None) => continue,
        };
        wants.push(Want {
            candidates: vec![subnet],
            ip: request.ip_address,
        });
    }
    Ok(wants)
}

async fn apply(port: Arc<Port>, ctx: &NetworkContext) -> Result<Action, NetError> {
    ctx.caches_ready().await;
    let project = port.metadata.project.clone().unwrap_or_default();
    let uid = port.metadata.uid.clone().unwrap_or_default();
    super::groups::ensure_default_group(ctx, &project).await;

    // The network, its subnets and the addresses are the network's project's: the port's
    // own, or the owner of a network shared with it.
    let owner = port.network_project().to_string();
    let network_ref = ObjectRef::in_project(&owner, &port.spec.network);
    let (fixed, failure) = match ctx.networks.get(&network_ref) {
        None => {
            let failure = Failure::new(
                "NetworkNotFound",
                format!(
                    "network {:?} does not exist in project {owner:?}",
                    port.spec.network
                ),
            );
            (port.status.fixed_ips.clone(), Some(failure))
        }
        // Admission let only a shared network in; one unshared since keeps what it holds
        // but gets nothing new.
        Some(network) if !network.usable_by(&project) => {
            let failure = Failure::new(
                "NetworkNotShared",
                format!(
                    "network {:?} of project {owner:?} is not shared with project {project:?}",
                    port.spec.network
                ),
            );
            (port.status.fixed_ips.clone(), Some(failure))
        }
        Some(_) => {
            let subnets = subnets_of(ctx, &owner, &port.spec.network);
            match wants(&port, &subnets) {
                Err(failure) => (port.status.fixed_ips.clone(), Some(failure)),
                Ok(wants) => allocate_all(ctx, &port, &owner, &uid, &wants).await?,
            }
        }
    };
    let (mac, mac_failure) = match choose_mac(ctx, &port, &network_ref, &uid) {
        Ok(mac) => (Some(mac), None),
        Err(f) => (port.status.mac_address.clone(), Some(f)),
    };
    let failure = failure.or(mac_failure);
    let generation = port.metadata.generation;
    let cond = match &failure {
        None => condition(
            ALLOCATED,
            true,
            "Allocated",
            format!(
                "MAC {} and {} address(es) assigned",
                mac.as_deref().unwrap_or("-"),
                fixed.len()
            ),
            generation,
        ),
        Some(f) => condition(ALLOCATED, false, f.reason, f.message.clone(), generation),
    };
    let changed_condition = Condition::find(&port.status.conditions, ALLOCATED).is_none_or(|c| {
        c.status != cond.status || c.reason != cond.reason || c.message != cond.message
    });
    write_status(&ctx.client, port.as_ref(), |p: &mut Port| {
        p.status.fixed_ips = fixed.clone();
        p.status.mac_address = mac.clone();
        if matches!(p.status.phase, None | Some(NetworkPhase::Build)) {
            p.status.phase = Some(NetworkPhase::Down);
        }
        p.status.observed_generation = generation;
        Condition::set(&mut p.status.conditions, cond.clone());
    })
    .await?;
    match failure {
        Some(f) => {
            if changed_condition {
                tracing::warn!(port = %port.metadata.name, reason = f.reason, "{}", f.message);
                let _ = ctx
                    .recorder
                    .publish(port.as_ref(), EventType::Warning, f.reason, &f.message)
                    .await;
            }
            Ok(Action::requeue(RETRY))
        }
        None => Ok(Action::await_change()),
    }
}

/// Meets every want (held allocations first, then new ones) and releases held allocations
/// no want matches; allocations live in `project`, the network's. Returns the addresses in
/// want order and the first failure.
async fn allocate_all(
    ctx: &NetworkContext,
    port: &Port,
    project: &str,
    uid: &str,
    wants: &[Want],
) -> Result<(Vec<FixedIp>, Option<Failure>), NetError> {
    let mut held = ctx.lock_ipam().held_by(uid);
    // When a race left the port holding more than it wants, every controller must keep the
    // same one — the address its status already shows, else the lowest — or two of them
    // would each release the other's pick.
    let shown: Vec<IpAddr> = port.status.fixed_ips.iter().map(|f| f.ip_address).collect();
    held.sort_by_key(|a| (!shown.contains(&a.spec.ip_address), a.spec.ip_address));
    let mut assigned: Vec<Option<IpAllocation>> = vec![None; wants.len()];
    for (slot, want) in assigned.iter_mut().zip(wants) {
        if let Some(pos) = held.iter().position(|a| want.accepts(a)) {
            *slot = Some(held.remove(pos));
        }
    }
    let mut failure = None;
    for (slot, want) in assigned.iter_mut().zip(wants) {
        if slot.is_some() {
            continue;
        }
        match allocate(ctx, port, project, uid, want).await? {
            Ok(a) => *slot = Some(a),
            Err(f) => {
                failure.get_or_insert(f);
            }
        }
    }
    // What is held but wanted no more (changed fixedIps, a deleted subnet, a duplicate from
    // a crashed or concurrent attempt) is released.
    let api = Api::<IpAllocation>::in_project(ctx.client.clone(), project);
    for extra in held {
        match api.delete(&extra.metadata.name).await {
            Ok(_) => {}
            Err(err) if err.is_not_found() => {}
            Err(err) => return Err(err.into()),
        }
        tracing::info!(port = %port.metadata.name, address = %extra.spec.ip_address, "released an allocation no request matches");
        ctx.lock_ipam().released(&extra, Instant::now());
    }
    let fixed = assigned
        .into_iter()
        .flatten()
        .map(|a| FixedIp {
            subnet: a.spec.subnet,
            ip_address: a.spec.ip_address,
        })
        .collect();
    Ok((fixed, failure))
}

/// Allocates one address for `want`: picks under the lock, then creates the allocation.
async fn allocate(
    ctx: &NetworkContext,
    port: &Port,
    project: &str,
    uid: &str,
    want: &Want,
) -> Result<Result<IpAllocation, Failure>, NetError> {
    let api = Api::<IpAllocation>::in_project(ctx.client.clone(), project);
    let request = want.ip.map_or(Request::Any, Request::Specific);
    let mut exhausted = Vec::new();
    for subnet in &want.candidates {
        let name = &subnet.metadata.name;
        let key = (project.to_string(), name.clone());
        let pools = Pools::of(&subnet.spec);
        for _ in 0..MAX_ATTEMPTS {
            let picked = ctx.lock_ipam().pick(&key, &pools, request, Instant::now());
            let ip = match picked {
                Ok(ip) => ip,
                // A specific address the cache shows taken: the cache may be behind (this
                // port's own allocation it has not seen yet, or one already deleted), so the
                // store decides.
                Err(IpamError::Taken { ip }) if want.ip.is_some() => {
                    match api.get_opt(&allocation_name(name, ip)).await? {
                        Some(existing) if existing.spec.port_uid == uid => {
                            ctx.lock_ipam().created(existing.clone());
                            return Ok(Ok(existing));
                        }
                        Some(_) => return Ok(Err(ipam_failure(name, &IpamError::Taken { ip }))),
                        None => {
                            ctx.lock_ipam().assume(&key, ip, Instant::now());
                            ip
                        }
                    }
                }
                Err(IpamError::Exhausted { size }) => {
                    exhausted.push(format!("subnet {name:?} ({size} addresses)"));
                    break;
                }
                Err(err) => return Ok(Err(ipam_failure(name, &err))),
            };
            let alloc = IpAllocation::new(
                ObjectMeta {
                    name: allocation_name(name, ip),
                    project: Some(project.to_string()),
                    labels: [
                        (SUBNET_LABEL.to_string(), name.clone()),
                        (PORT_UID_LABEL.to_string(), uid.to_string()),
                    ]
                    .into(),
                    ..Default::default()
                },
                IpAllocationSpec {
                    subnet: name.clone(),
                    ip_address: ip,
                    port: port.metadata.name.clone(),
                    port_uid: uid.to_string(),
                    port_project: port.metadata.project.clone().filter(|own| own != project),
                },
            );
            match api.create(&alloc).await {
                Ok(created) => {
                    ctx.lock_ipam().created(created.clone());
                    return Ok(Ok(created));
                }
                Err(err) if err.is_already_exists() => {
                    // Lost the race, or won it earlier and lost the answer.
                    if let Some(existing) = api.get_opt(&alloc.metadata.name).await?
                        && existing.spec.port_uid == uid
                    {
                        ctx.lock_ipam().created(existing.clone());
                        return Ok(Ok(existing));
                    }
                    // Taken by another port: it stays assumed until the cache shows it.
                    if want.ip.is_some() {
                        return Ok(Err(ipam_failure(name, &IpamError::Taken { ip })));
                    }
                }
                Err(err) => {
                    ctx.lock_ipam().unassume(&key, &ip);
                    return Err(err.into());
                }
            }
        }
        if exhausted.is_empty() {
            return Ok(Err(Failure::new(
                "AllocationContention",
                format!("subnet {name:?}: lost {MAX_ATTEMPTS} allocation races in a row"),
            )));
        }
    }
    Ok(Err(Failure::new(
        "PoolExhausted",
        format!(
            "no free address for network {:?}: {} exhausted",
            port.spec.network,
            exhausted.join(", ")
        ),
    )))
}

fn ipam_failure(subnet: &str, err: &IpamError) -> Failure {
    let reason = match err {
        IpamError::Exhausted { .. } => "PoolExhausted",
        IpamError::Taken { .. } => "AddressInUse",
        _ => "InvalidAddress",
    };
    let message = match err {
        IpamError::Taken { ip } => {
            format!("subnet {subnet:?}: {ip} is already allocated to another port")
        }
        other => format!("subnet {subnet:?}: {other}"),
    };
    Failure::new(reason, message)
}

/// The port's MAC: the requested one (if no other port of the network has it), the one
/// already assigned, or a new `fa:16:3e:…` one unique in the network.
fn choose_mac(
    ctx: &NetworkContext,
    port: &Port,
    network: &ObjectRef,
    uid: &str,
) -> Result<String, Failure> {
    let mut macs = ctx.macs.lock().expect("macs lock");
    if let Some(requested) = &port.spec.mac_address {
        if macs.in_use(network, requested, uid) {
            return Err(Failure::new(
                "MacAddressInUse",
                format!(
                    "spec.macAddress: {requested} is used by another port of network {:?}",
                    network.name
                ),
            ));
        }
        return Ok(requested.to_ascii_lowercase());
    }
    if let Some(assigned) = &port.status.mac_address {
        return Ok(assigned.clone());
    }
    if let Some(mac) = macs.chosen(uid, network) {
        return Ok(mac);
    }
    let mac = mac::generate(uid, |m| macs.in_use(network, m, uid)).ok_or_else(|| {
        Failure::new(
            "MacAddressExhausted",
            format!("no free MAC address in network {:?}", network.name),
        )
    })?;
    macs.choose(uid, network, &mac);
    Ok(mac)
}

async fn cleanup(port: Arc<Port>, ctx: &NetworkContext) -> Result<Action, NetError> {
    let uid = port.metadata.uid.clone().unwrap_or_default();
    // The allocations are the network's project's (the port's own, or a shared network's).
    let api = Api::<IpAllocation>::in_project(ctx.client.clone(), port.network_project());
    // The store is the truth here (the cache may lag behind this process's own creates).
    let mut held = api
        .list_all(Some(&format!("{PORT_UID_LABEL}={uid}")))
        .await?
        .items;
    for a in ctx.lock_ipam().held_by(&uid) {
        if !held.iter().any(|h| h.metadata.name == a.metadata.name) {
            held.push(a);
        }
    }
    for a in &held {
        match api.delete(&a.metadata.name).await {
            Ok(_) => {}
            Err(err) if err.is_not_found() => {}
            Err(err) => return Err(err.into()),
        }
        ctx.lock_ipam().released(a, Instant::now());
    }
    if !held.is_empty() {
        tracing::info!(port = %port.metadata.name, released = held.len(), "released the port's addresses");
    }
    ctx.macs.lock().expect("macs lock").forget(&uid);
    Ok(Action::await_change())
}

/// Deletes allocations whose port no longer exists (a port deleted while no controller ran
/// and without the finalizer, an allocation created by a controller that crashed before the
/// port's status was written and whose port is gone). Returns how many were deleted.
///
/// # Errors
/// API failures (the next sweep tries again).
pub async fn sweep(ctx: &NetworkContext) -> Result<usize, ClientError> {
    ctx.caches_ready().await;
    let live: std::collections::HashSet<String> = ctx
        .ports
        .list()
        .iter()
        .filter_map(|p| p.metadata.uid.clone())
        .collect();
    let now = chrono::Utc::now();
    let candidates: Vec<Arc<IpAllocation>> = ctx
        .allocations
        .list()
        .into_iter()
        .filter(|a| !live.contains(&a.spec.port_uid))
        .filter(|a| {
            a.metadata
                .creation_timestamp
                .is_some_and(|t| (now - t).to_std().unwrap_or_default() >= SWEEP_MIN_AGE)
        })
        .filter(|a| !ctx.lock_ipam().in_flight(&a.spec.port_uid))
        .collect();
    let mut swept = 0;
    for a in candidates {
        let project = a.metadata.project.clone().unwrap_or_default();
        let port_project = a
            .spec
            .port_project
            .clone()
            .unwrap_or_else(|| project.clone());
        // Ask the store, not the cache, whether the port is really gone.
        let port = Api::<Port>::in_project(ctx.client.clone(), port_project)
            .get_opt(&a.spec.port)
            .await?;
        if port.is_some_and(|p| p.metadata.uid.as_deref() == Some(a.spec.port_uid.as_str())) {
            continue;
        }
        match Api::<IpAllocation>::in_project(ctx.client.clone(), project)
            .delete(&a.metadata.name)
            .await
        {
            Ok(_) => swept += 1,
            Err(err) if err.is_not_found() => {}
            Err(err) => return Err(err),
        }
        ctx.lock_ipam().released(&a, Instant::now());
        tracing::info!(allocation = %a.metadata.name, port = %a.spec.port, "swept an allocation of a vanished port");
    }
    Ok(swept)
}

/// Runs [`sweep`] every `period` while leading, until `shutdown`.
pub(super) async fn sweep_loop(
    ctx: Arc<NetworkContext>,
    period: Option<Duration>,
    mut gate: watch::Receiver<bool>,
    shutdown: Shared<futures::future::BoxFuture<'static, ()>>,
) {
    let Some(period) = period else {
        return;
    };
    let work = async move {
        loop {
            tokio::time::sleep(period).await;
            if !*gate.borrow_and_update() {
                continue;
            }
            match sweep(&ctx).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(swept = n, "swept orphaned allocations"),
                Err(err) => tracing::warn!(error = %err, "allocation sweep failed"),
            }
        }
    };
    futures::future::select(work.boxed(), shutdown).await;
}
