//! What the port reconcilers know about taken addresses: an index of the `IpAllocation`
//! cache by subnet and by port, plus what this process has *assumed* but the cache has not
//! shown yet.
//!
//! # Why
//! Many ports of one subnet are reconciled at once. Each picks an address from the IPAM
//! function and creates its `IpAllocation`; if they only saw the cache, they would all pick
//! the same lowest free address and all but one would lose the create race (409) and retry,
//! again and again. So a picked address is *assumed* (counted as taken) under one lock from
//! the moment it is picked until the cache shows the allocation (or the create failed), as
//! the scheduler assumes bindings. Allocations this process created are likewise remembered
//! per port until the cache has them, so a port reconciled again right away never allocates
//! a second address.
//!
//! # Guarantees
//! - [`IpamState::is_taken`] is true for every address the cache shows allocated in the
//!   subnet and every address assumed in it less than [`ASSUME_TTL`] ago.
//! - [`IpamState::held_by`] returns every allocation the cache shows for a port plus every
//!   one this process created for it that the cache does not show yet, minus those this
//!   process released.
//! - [`IpamState::pick`] answers what [`ipam::allocate_in`] would with [`IpamState::is_taken`]
//!   and assumes the answer. It keeps, per subnet, a scan start below which every pool
//!   address is taken (moved up past each address it hands out, moved down to any address
//!   that is freed: a deleted allocation, a released or unassumed address), so a subnet
//!   filled one port at a time costs O(1) per pick instead of a scan from the bottom. An
//!   address whose assumption merely expired ([`ASSUME_TTL`]) is not seen as freed: it is
//!   found again by the full scan `pick` runs before it ever reports a subnet exhausted.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use cirrus_crds::IpAllocation;
use cirrus_crds::kinds::ipallocation::PORT_UID_LABEL;

use super::ipam::{self, IpamError, Pools, Request};
use crate::runtime::watcher::Event;

/// How long an address picked but never seen in the cache stays assumed taken (a create
/// that lost to an allocation deleted right after, a response lost in a crash).
pub const ASSUME_TTL: Duration = Duration::from_secs(60);

/// `(project, subnet name)`.
pub type SubnetKey = (String, String);

/// The allocation index and the assumptions, behind one lock in the context.
#[derive(Debug, Default)]
pub struct IpamState {
    /// Cached allocations by `(project, name)`.
    by_name: HashMap<(String, String), IpAllocation>,
    /// Cached allocations: subnet → address → allocation name.
    by_subnet: HashMap<SubnetKey, HashMap<IpAddr, (String, String)>>,
    /// Cached allocations: port uid → allocation names (`(project, name)`).
    by_port: HashMap<String, HashSet<(String, String)>>,
    /// Addresses picked and not yet seen in the cache.
    assumed: HashMap<SubnetKey, HashMap<IpAddr, Instant>>,
    /// Allocations this process created, per port uid, until the cache shows them.
    created: HashMap<String, Vec<IpAllocation>>,
    /// Allocations this process deleted, until the cache drops them: `(project, name)` and
    /// the object's uid (an allocation created again under the same name, for this or
    /// another port, is a different object and is held again).
    released: HashMap<ReleasedKey, Instant>,
    /// Allocations the cache saw deleted, for [`ASSUME_TTL`]: a create answered after the
    /// cache already saw that allocation come and go (another controller released it) must
    /// not be held as this process's own.
    gone: HashMap<ReleasedKey, Instant>,
    /// Per subnet: the pools last scanned and the address (as an integer) below which
    /// every one of their addresses is taken.
    scan_start: HashMap<SubnetKey, (Pools, u128)>,
}

fn subnet_key(a: &IpAllocation) -> SubnetKey {
    (
        a.metadata.project.clone().unwrap_or_default(),
        a.spec.subnet.clone(),
    )
}

fn name_key(a: &IpAllocation) -> (String, String) {
    (
        a.metadata.project.clone().unwrap_or_default(),
        a.metadata.name.clone(),
    )
}

type ReleasedKey = ((String, String), Option<String>);

fn released_key(a: &IpAllocation) -> ReleasedKey {
    (name_key(a), a.metadata.uid.clone())
}

fn port_uid(a: &IpAllocation) -> String {
    a.metadata
        .labels
        .get(PORT_UID_LABEL)
        .cloned()
        .unwrap_or_else(|| a.spec.port_uid.clone())
}

impl IpamState {
    /// Applies one watcher event of the allocation cache.
    pub fn apply(&mut self, event: &Event<IpAllocation>) {
        match event {
            Event::Restarted(all) => {
                self.scan_start.clear();
                self.by_name.clear();
                self.by_subnet.clear();
                self.by_port.clear();
                for a in all {
                    self.insert(a);
                }
            }
            Event::Applied(a) => self.insert(a),
            Event::Deleted(a) => self.remove(a),
        }
    }

    fn insert(&mut self, a: &IpAllocation) {
        let key = subnet_key(a);
        if let Some(assumed) = self.assumed.get_mut(&key) {
            assumed.remove(&a.spec.ip_address);
        }
        let uid = port_uid(a);
        if let Some(created) = self.created.get_mut(&uid) {
            created.retain(|c| c.metadata.name != a.metadata.name);
            if created.is_empty() {
                self.created.remove(&uid);
            }
        }
        self.by_port.entry(uid).or_default().insert(name_key(a));
        self.by_subnet
            .entry(key)
            .or_default()
            .insert(a.spec.ip_address, name_key(a));
        self.by_name.insert(name_key(a), a.clone());
    }

    fn remove(&mut self, a: &IpAllocation) {
        let now = Instant::now();
        self.gone
            .retain(|_, at| now.duration_since(*at) < ASSUME_TTL);
        self.gone.insert(released_key(a), now);
        if let Some(created) = self.created.get_mut(&port_uid(a)) {
            created.retain(|c| released_key(c) != released_key(a));
        }
        let key = subnet_key(a);
        self.freed(&key, &a.spec.ip_address);
        if let Some(map) = self.by_subnet.get_mut(&key)
            && map.get(&a.spec.ip_address) == Some(&name_key(a))
        {
            map.remove(&a.spec.ip_address);
        }
        self.by_name.remove(&name_key(a));
        let uid = port_uid(a);
        if let Some(names) = self.by_port.get_mut(&uid) {
            names.remove(&name_key(a));
            if names.is_empty() {
                self.by_port.remove(&uid);
            }
        }
        self.released.remove(&released_key(a));
    }

    /// True when `ip` is allocated in the subnet or assumed taken.
    pub fn is_taken(&self, subnet: &SubnetKey, ip: &IpAddr, now: Instant) -> bool {
        self.by_subnet
            .get(subnet)
            .is_some_and(|m| m.contains_key(ip))
            || self
                .assumed
                .get(subnet)
                .and_then(|m| m.get(ip))
                .is_some_and(|at| now.duration_since(*at) < ASSUME_TTL)
    }

    /// Marks `ip` taken until the cache shows it (or [`ASSUME_TTL`] passes).
    pub fn assume(&mut self, subnet: &SubnetKey, ip: IpAddr, now: Instant) {
        self.assumed
            .entry(subnet.clone())
            .or_default()
            .insert(ip, now);
    }

    /// Forgets an assumption (the create failed for a reason other than a lost race).
    pub fn unassume(&mut self, subnet: &SubnetKey, ip: &IpAddr) {
        if let Some(m) = self.assumed.get_mut(subnet) {
            m.remove(ip);
        }
        self.freed(subnet, ip);
    }

    /// `ip` may be free now: the subnet's scan must start at or below it.
    fn freed(&mut self, subnet: &SubnetKey, ip: &IpAddr) {
        if let Some((_, start)) = self.scan_start.get_mut(subnet) {
            *start = (*start).min(ipam::to_int(*ip));
        }
    }

    /// Picks an address of `pools` for `request` in the subnet that nothing holds or
    /// assumes, and assumes it (see the module's guarantees): the lowest free one for
    /// [`Request::Any`].
    ///
    /// # Errors
    /// As [`ipam::allocate_in`]; `Exhausted` only after a scan of the whole pools.
    pub fn pick(
        &mut self,
        subnet: &SubnetKey,
        pools: &Pools,
        request: Request,
        now: Instant,
    ) -> Result<IpAddr, IpamError> {
        let start = match request {
            Request::Any => self
                .scan_start
                .get(subnet)
                .filter(|(scanned, _)| scanned == pools)
                .map_or(0, |(_, start)| *start),
            Request::Specific(_) => 0,
        };
        let picked = {
            let cached = self.by_subnet.get(subnet);
            let assumed = self.assumed.get(subnet);
            let taken = |ip: &IpAddr| {
                cached.is_some_and(|m| m.contains_key(ip))
                    || assumed
                        .and_then(|m| m.get(ip))
                        .is_some_and(|at| now.duration_since(*at) < ASSUME_TTL)
            };
            match ipam::allocate_from(pools, taken, request, start) {
                Err(IpamError::Exhausted { .. }) if start > 0 => {
                    ipam::allocate_from(pools, taken, request, 0)
                }
                other => other,
            }
        };
        if let Ok(ip) = picked {
            self.assume(subnet, ip, now);
            if request == Request::Any && pools.ascending() {
                // Everything below `ip` was taken and `ip` is assumed now.
                self.scan_start.insert(
                    subnet.clone(),
                    (pools.clone(), ipam::to_int(ip).saturating_add(1)),
                );
            }
        } else if start > 0 {
            self.scan_start.remove(subnet);
        }
        picked
    }

    /// Records an allocation this process created for its port.
    pub fn created(&mut self, a: IpAllocation) {
        // Already cached as this port's (an entry of the same name for another port is a
        // deleted allocation whose event has not arrived yet).
        if self
            .by_name
            .get(&name_key(&a))
            .is_some_and(|cached| port_uid(cached) == port_uid(&a))
        {
            return;
        }
        // Already seen deleted: it was released (by another controller) before this answer.
        if self.gone.contains_key(&released_key(&a)) {
            return;
        }
        self.created.entry(port_uid(&a)).or_default().push(a);
    }

    /// Records that this process deleted the allocation (it stops being held at once).
    pub fn released(&mut self, a: &IpAllocation, now: Instant) {
        let uid = port_uid(a);
        if let Some(created) = self.created.get_mut(&uid) {
            created.retain(|c| c.metadata.name != a.metadata.name);
        }
        self.unassume(&subnet_key(a), &a.spec.ip_address);
        self.released.insert(released_key(a), now);
        self.released
            .retain(|_, at| now.duration_since(*at) < ASSUME_TTL);
    }

    /// Every allocation the port with `uid` holds (cache plus own creations, minus own
    /// releases), sorted by name.
    pub fn held_by(&self, uid: &str) -> Vec<IpAllocation> {
        let mut held: Vec<IpAllocation> = Vec::new();
        if let Some(names) = self.by_port.get(uid) {
            for key in names {
                if let Some(a) = self.by_name.get(key)
                    && !self.released.contains_key(&released_key(a))
                {
                    held.push(a.clone());
                }
            }
        }
        if let Some(created) = self.created.get(uid) {
            for a in created {
                if !held.iter().any(|h| h.metadata.name == a.metadata.name)
                    && !self.released.contains_key(&released_key(a))
                {
                    held.push(a.clone());
                }
            }
        }
        held.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        held
    }

    /// How many addresses the cache shows allocated in the subnet.
    pub fn used(&self, subnet: &SubnetKey) -> usize {
        self.by_subnet.get(subnet).map_or(0, HashMap::len)
    }

    /// Every cached allocation (for the orphan sweep).
    pub fn all(&self) -> Vec<IpAllocation> {
        self.by_name.values().cloned().collect()
    }

    /// True while this process has created allocations for `uid` the cache does not show.
    pub fn in_flight(&self, uid: &str) -> bool {
        self.created.get(uid).is_some_and(|c| !c.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cirrus_crds::kinds::ipallocation::{SUBNET_LABEL, allocation_name};
    use cirrus_crds::{IpAllocationSpec, ObjectMeta};

    fn alloc(ip: &str, uid: &str) -> IpAllocation {
        let ip: IpAddr = ip.parse().unwrap();
        IpAllocation::new(
            ObjectMeta {
                name: allocation_name("s", ip),
                project: Some("p".into()),
                labels: [
                    (SUBNET_LABEL.to_string(), "s".to_string()),
                    (PORT_UID_LABEL.to_string(), uid.to_string()),
                ]
                .into(),
                ..Default::default()
            },
            IpAllocationSpec {
                subnet: "s".into(),
                ip_address: ip,
                port: "port".into(),
                port_uid: uid.into(),
                port_project: None,
            },
        )
    }

    #[test]
    fn assumed_until_seen_then_cached() {
        let key: SubnetKey = ("p".into(), "s".into());
        let now = Instant::now();
        let mut state = IpamState::default();
        let ip: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(!state.is_taken(&key, &ip, now));
        state.assume(&key, ip, now);
        assert!(state.is_taken(&key, &ip, now));
        assert!(!state.is_taken(&key, &ip, now + ASSUME_TTL));
        let a = alloc("10.0.0.2", "u1");
        state.created(a.clone());
        assert_eq!(state.held_by("u1").len(), 1);
        assert!(state.in_flight("u1"));
        state.apply(&Event::Applied(a.clone()));
        assert!(!state.in_flight("u1"));
        assert_eq!(state.held_by("u1").len(), 1, "held through the cache now");
        assert!(state.is_taken(&key, &ip, now + ASSUME_TTL));
        assert_eq!(state.used(&key), 1);
        state.released(&a, now);
        assert!(state.held_by("u1").is_empty(), "released at once");
        state.apply(&Event::Deleted(a));
        assert!(!state.is_taken(&key, &ip, now));
        assert_eq!(state.used(&key), 0);
    }

    #[test]
    fn pick_hands_out_the_lowest_free_address_and_rescans_what_is_freed() {
        let key: SubnetKey = ("p".into(), "s".into());
        let spec = cirrus_crds::kinds::subnet::SubnetSpec {
            network: "n".into(),
            cidr: "10.0.0.0/29".parse().unwrap(), // gateway .1, pool .2-.6
            ..Default::default()
        };
        let pools = Pools::of(&spec);
        let now = Instant::now();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let mut state = IpamState::default();
        // Another controller's allocation of .3 is in the cache.
        state.apply(&Event::Applied(alloc("10.0.0.3", "other")));
        let pick = |state: &mut IpamState, at| state.pick(&key, &pools, Request::Any, at);
        assert_eq!(pick(&mut state, now), Ok(ip("10.0.0.2")));
        assert_eq!(
            pick(&mut state, now),
            Ok(ip("10.0.0.4")),
            "skips the cached .3"
        );
        assert_eq!(pick(&mut state, now), Ok(ip("10.0.0.5")));
        // .2 is unassumed (its create failed): the next pick goes back down to it.
        state.unassume(&key, &ip("10.0.0.2"));
        assert_eq!(pick(&mut state, now), Ok(ip("10.0.0.2")));
        // .3 is deleted: found again.
        state.apply(&Event::Deleted(alloc("10.0.0.3", "other")));
        assert_eq!(pick(&mut state, now), Ok(ip("10.0.0.3")));
        assert_eq!(pick(&mut state, now), Ok(ip("10.0.0.6")));
        assert_eq!(pick(&mut state, now), Err(IpamError::Exhausted { size: 5 }));
        // Every assumption expires without an event: the full rescan before reporting
        // exhaustion finds the lowest again.
        let later = now + ASSUME_TTL;
        assert_eq!(pick(&mut state, later), Ok(ip("10.0.0.2")));
        assert_eq!(pick(&mut state, later), Ok(ip("10.0.0.3")));
        // Specific requests ignore the scan start.
        assert_eq!(
            state.pick(&key, &pools, Request::Specific(ip("10.0.0.6")), later),
            Ok(ip("10.0.0.6"))
        );
        assert!(state.is_taken(&key, &ip("10.0.0.6"), later), "assumed");
    }

    #[test]
    fn an_allocation_created_again_under_a_released_name_is_held() {
        let now = Instant::now();
        let with_uid = |uid: &str| {
            let mut a = alloc("10.0.0.2", "u1");
            a.metadata.uid = Some(uid.into());
            a
        };
        let mut state = IpamState::default();
        let first = with_uid("alloc-1");
        state.apply(&Event::Applied(first.clone()));
        // The deletion's watch event overtakes its answer, so the release is recorded last.
        state.apply(&Event::Deleted(first.clone()));
        state.released(&first, now);
        assert!(state.held_by("u1").is_empty());
        // Another controller creates the same address for the same port again.
        state.apply(&Event::Applied(with_uid("alloc-2")));
        let held = state.held_by("u1");
        assert_eq!(held.len(), 1, "a new object, not the released one");
        assert_eq!(held[0].metadata.uid.as_deref(), Some("alloc-2"));
    }

    #[test]
    fn restart_replaces_the_index() {
        let mut state = IpamState::default();
        state.apply(&Event::Applied(alloc("10.0.0.2", "u1")));
        state.apply(&Event::Restarted(vec![alloc("10.0.0.3", "u2")]));
        assert!(state.held_by("u1").is_empty());
        assert_eq!(state.held_by("u2").len(), 1);
        assert_eq!(state.all().len(), 1);
    }
}
