//! MAC addresses for ports: OpenStack's `fa:16:3e` prefix (locally administered, unicast)
//! and three bytes derived from the port's uid.
//!
//! Deriving the bytes from the uid (FNV-1a of uid and attempt number) makes the choice
//! deterministic — a reconcile repeated after a crash picks the same address — while the
//! `in_use` check (the network's ports plus in-flight choices) makes it unique: on a clash
//! the next attempt number gives other bytes.

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

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
