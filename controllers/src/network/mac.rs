//! MAC addresses for ports: OpenStack's `fa:16:3e` prefix (locally administered, unicast)
//! and three bytes derived from the port's uid.
//!
//! Deriving the bytes from the uid (FNV-1a of uid and attempt number) makes the choice
//! deterministic — a reconcile repeated after a crash picks the same address — while the
//! `in_use` check (the network's ports plus in-flight choices) makes it unique: on a clash
//! the next attempt number gives other bytes.
//!
//! [`MacIndex`] answers `in_use` in O(1): the MACs of the port cache (fed the same watch
//! events) per network, plus the MACs this process chose that the cache may not show yet.

use std::collections::{HashMap, HashSet};

use cirrus_crds::Port;

use crate::runtime::ObjectRef;
use crate::runtime::watcher::Event;

/// OpenStack's default base MAC prefix.
pub const MAC_PREFIX: [u8; 3] = [0xfa, 0x16, 0x3e];

/// How many candidates are tried before giving up (a network with millions of ports).
const ATTEMPTS: u32 = 4096;

/// A `fa:16:3e:xx:xx:xx` address for the port with `seed` (its uid) for which `in_use` is
/// false, or `None` when every attempt clashed.
pub fn generate(seed: &str, in_use: impl Fn(&str) -> bool) -> Option<String> {
    (0..ATTEMPTS)
        .map(|n| candidate(seed, n))
        .find(|mac| !in_use(mac))
}

/// The `n`-th candidate for `seed`.
fn candidate(seed: &str, n: u32) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.bytes().chain(n.to_le_bytes()) {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let [a, b, c, ..] = hash.to_be_bytes();
    let [p, q, r] = MAC_PREFIX;
    format!("{p:02x}:{q:02x}:{r:02x}:{a:02x}:{b:02x}:{c:02x}")
}

/// Which MACs the ports of each network use: the port cache's (`spec.macAddress` and
/// `status.macAddress`, lowercase) and the ones this process chose (until forgotten).
#[derive(Debug, Default)]
pub struct MacIndex {
    /// Cached port → (its network, its uid, the MACs it uses).
    ports: HashMap<ObjectRef, (ObjectRef, String, Vec<String>)>,
    /// Network → MAC → uids of the cached ports using it.
    cached: HashMap<ObjectRef, HashMap<String, HashSet<String>>>,
    /// Port uid → (network, MAC) chosen by this process.
    chosen: HashMap<String, (ObjectRef, String)>,
    /// Network → MAC → uid, the same choices by network.
    chosen_in: HashMap<ObjectRef, HashMap<String, String>>,
}

impl MacIndex {
    /// Applies one watcher event of the port cache.
    pub fn apply(&mut self, event: &Event<Port>) {
        match event {
            Event::Restarted(all) => {
                self.ports.clear();
                self.cached.clear();
                for p in all {
                    self.insert(p);
                }
            }
            Event::Applied(p) => {
                self.remove(&ObjectRef::from_obj(p));
                self.insert(p);
            }
            Event::Deleted(p) => self.remove(&ObjectRef::from_obj(p)),
        }
    }

    fn insert(&mut self, p: &Port) {
        let network = ObjectRef::in_project(p.network_project(), &p.spec.network);
        let uid = p.metadata.uid.clone().unwrap_or_default();
        let mut macs: Vec<String> = [&p.spec.mac_address, &p.status.mac_address]
            .into_iter()
            .flatten()
            .map(|m| m.to_ascii_lowercase())
            .collect();
        macs.dedup();
        let by_mac = self.cached.entry(network.clone()).or_default();
        for mac in &macs {
            by_mac.entry(mac.clone()).or_default().insert(uid.clone());
        }
        self.ports
            .insert(ObjectRef::from_obj(p), (network, uid, macs));
    }

    fn remove(&mut self, port: &ObjectRef) {
        let Some((network, uid, macs)) = self.ports.remove(port) else {
            return;
        };
        if let Some(by_mac) = self.cached.get_mut(&network) {
            for mac in macs {
                if let Some(uids) = by_mac.get_mut(&mac) {
                    uids.remove(&uid);
                    if uids.is_empty() {
                        by_mac.remove(&mac);
                    }
                }
            }
            if by_mac.is_empty() {
                self.cached.remove(&network);
            }
        }
    }

    /// True when a port of `network` other than the one with `uid` uses `mac` (any case),
    /// in the cache or by this process's choice.
    pub fn in_use(&self, network: &ObjectRef, mac: &str, uid: &str) -> bool {
        let mac = mac.to_ascii_lowercase();
        self.cached
            .get(network)
            .and_then(|m| m.get(&mac))
            .is_some_and(|uids| uids.iter().any(|u| u != uid))
            || self
                .chosen_in
                .get(network)
                .and_then(|m| m.get(&mac))
                .is_some_and(|u| u != uid)
    }

    /// The MAC this process chose for the port with `uid` in `network`, if any.
    pub fn chosen(&self, uid: &str, network: &ObjectRef) -> Option<String> {
        self.chosen
            .get(uid)
            .filter(|(n, _)| n == network)
            .map(|(_, m)| m.clone())
    }

    /// Records that this process gave `mac` to the port with `uid` in `network`.
    pub fn choose(&mut self, uid: &str, network: &ObjectRef, mac: &str) {
        self.forget(uid);
        let mac = mac.to_ascii_lowercase();
        self.chosen_in
            .entry(network.clone())
            .or_default()
            .insert(mac.clone(), uid.to_string());
        self.chosen.insert(uid.to_string(), (network.clone(), mac));
    }

    /// Drops this process's choice for the port with `uid` (it was deleted).
    pub fn forget(&mut self, uid: &str) {
        if let Some((network, mac)) = self.chosen.remove(uid)
            && let Some(m) = self.chosen_in.get_mut(&network)
        {
            if m.get(&mac).is_some_and(|u| u == uid) {
                m.remove(&mac);
            }
            if m.is_empty() {
                self.chosen_in.remove(&network);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cirrus_crds::{ObjectMeta, PortSpec};
    use std::collections::HashSet;

    fn port(name: &str, uid: &str, network: &str, status_mac: Option<&str>) -> Port {
        let mut p = Port::new(
            ObjectMeta {
                name: name.into(),
                project: Some("p".into()),
                uid: Some(uid.into()),
                ..Default::default()
            },
            PortSpec {
                network: network.into(),
                ..Default::default()
            },
        );
        p.status.mac_address = status_mac.map(str::to_string);
        p
    }

    #[test]
    fn index_follows_the_cache_and_the_choices() {
        let net = ObjectRef::in_project("p", "n");
        let other_net = ObjectRef::in_project("p", "m");
        let mac = "fa:16:3e:00:00:01";
        let mut index = MacIndex::default();
        index.apply(&Event::Applied(port(
            "a",
            "ua",
            "n",
            Some("FA:16:3E:00:00:01"),
        )));
        assert!(
            index.in_use(&net, mac, "ub"),
            "case-insensitive, another port"
        );
        assert!(!index.in_use(&net, mac, "ua"), "its own");
        assert!(!index.in_use(&other_net, mac, "ub"), "only in its network");
        // The port's MAC changes, then it is deleted.
        index.apply(&Event::Applied(port(
            "a",
            "ua",
            "n",
            Some("fa:16:3e:00:00:02"),
        )));
        assert!(!index.in_use(&net, mac, "ub"));
        assert!(index.in_use(&net, "fa:16:3e:00:00:02", "ub"));
        index.apply(&Event::Deleted(port("a", "ua", "n", None)));
        assert!(!index.in_use(&net, "fa:16:3e:00:00:02", "ub"));
        // Choices count until forgotten.
        index.choose("ub", &net, mac);
        assert_eq!(index.chosen("ub", &net).as_deref(), Some(mac));
        assert_eq!(index.chosen("ub", &other_net), None);
        assert!(index.in_use(&net, mac, "uc"));
        assert!(!index.in_use(&net, mac, "ub"));
        index.forget("ub");
        assert!(!index.in_use(&net, mac, "uc"));
        // A restart replaces the cache side.
        index.apply(&Event::Applied(port("x", "ux", "n", Some(mac))));
        index.apply(&Event::Restarted(vec![port(
            "y",
            "uy",
            "n",
            Some("fa:16:3e:00:00:03"),
        )]));
        assert!(!index.in_use(&net, mac, "uc"));
        assert!(index.in_use(&net, "fa:16:3e:00:00:03", "uc"));
    }

    #[test]
    fn prefixed_deterministic_and_unique() {
        let first = generate("uid-1", |_| false).unwrap();
        assert!(first.starts_with("fa:16:3e:"), "{first}");
        assert_eq!(first.len(), 17);
        assert_eq!(first, generate("uid-1", |_| false).unwrap());
        let second = generate("uid-1", |m| m == first).unwrap();
        assert_ne!(first, second);
        let mut seen = HashSet::new();
        for i in 0..5000 {
            let mac = generate(&format!("port-{i}"), |m| seen.contains(m)).unwrap();
            assert!(seen.insert(mac));
        }
        assert_eq!(generate("x", |_| true), None);
    }
}
