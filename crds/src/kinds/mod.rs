//! One module per kind, plus the small checks several kinds share (CIDRs, MAC addresses,
//! base64, metadata maps, references to other objects by name).

pub mod applyset;
pub mod event;
pub mod flavor;
pub mod floatingip;
pub mod image;
pub mod imagemember;
pub mod ipallocation;
pub mod keypair;
pub mod lease;
pub mod network;
pub mod node;
pub mod port;
pub mod project;
pub mod rolebinding;
pub mod router;
pub mod securitygroup;
pub mod server;
pub mod servergroup;
pub mod subnet;
pub mod tokenrevocation;
pub mod user;
pub mod volume;
pub mod volumesnapshot;

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::validation::{FieldErrors, name_problem};

/// Serde default helper: `true`.
pub(crate) fn default_true() -> bool {
    true
}

/// Serde skip helper: true for `false`.
pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}

/// Serde skip helper: true for `0`.
pub(crate) fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Records a problem at `path` when `name` is not a valid object name (a reference to
/// another object).
pub(crate) fn check_ref(errors: &mut FieldErrors, path: impl Into<String>, name: &str) {
    if let Some(problem) = name_problem(name) {
        errors.add(path, problem);
    }
}

/// Records a problem at `path` when `name` is set and not a valid object name.
pub(crate) fn check_opt_ref(
    errors: &mut FieldErrors,
    path: impl Into<String>,
    name: &Option<String>,
) {
    if let Some(name) = name {
        check_ref(errors, path, name);
    }
}

/// Records a problem for every entry of a list of object references.
pub(crate) fn check_refs(errors: &mut FieldErrors, path: &str, names: &[String]) {
    for (i, name) in names.iter().enumerate() {
        check_ref(errors, format!("{path}[{i}]"), name);
    }
}

/// Records a problem when `net` has host bits set (`10.0.0.1/24` instead of `10.0.0.0/24`),
/// as Neutron does.
pub(crate) fn check_cidr(errors: &mut FieldErrors, path: impl Into<String>, net: &IpNet) {
    if net.addr() != net.network() {
        errors.add(
            path,
            format!(
                "{net} has host bits set; did you mean {}/{}?",
                net.network(),
                net.prefix_len()
            ),
        );
    }
}

/// Serde `deserialize_with` for CIDR fields: a clear message naming the bad value.
pub(crate) fn de_cidr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<IpNet, D::Error> {
    let text = <String as serde::Deserialize>::deserialize(d)?;
    parse_cidr(&text).map_err(serde::de::Error::custom)
}

/// Serde `deserialize_with` for optional CIDR fields.
pub(crate) fn de_opt_cidr<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<IpNet>, D::Error> {
    let text = <Option<String> as serde::Deserialize>::deserialize(d)?;
    text.map(|t| parse_cidr(&t).map_err(serde::de::Error::custom))
        .transpose()
}

fn parse_cidr(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>().map_err(|_| {
        format!("{text:?} is not a CIDR: use address/prefix like 10.0.0.0/24 or fd00::/64")
    })
}

/// 4 or 6.
pub(crate) fn ip_version(ip: &IpAddr) -> u8 {
    if ip.is_ipv4() { 4 } else { 6 }
}

/// 4 or 6.
pub(crate) fn net_version(net: &IpNet) -> u8 {
    match net {
        IpNet::V4(_) => 4,
        IpNet::V6(_) => 6,
    }
}

/// Why `mac` is not a usable unicast MAC address (`fa:16:3e:12:34:56`), if it is not.
pub(crate) fn mac_problem(mac: &str) -> Option<String> {
    let parts: Vec<&str> = mac.split(':').collect();
    if parts.len() != 6
        || parts
            .iter()
            .any(|p| p.len() != 2 || !p.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return Some(format!(
            "{mac:?} is not a MAC address: use six colon-separated hex octets like fa:16:3e:00:00:01"
        ));
    }
    let first = u8::from_str_radix(parts[0], 16).unwrap_or(0);
    if first & 1 == 1 {
        return Some(format!("{mac:?} is a multicast address"));
    }
    if parts.iter().all(|p| *p == "00") {
        return Some("the all-zero MAC address is not allowed".into());
    }
    None
}

/// Decodes standard base64 (RFC 4648 alphabet, `=` padding optional, ASCII whitespace and
/// line breaks ignored).
///
/// # Errors
/// A message naming the first offending character or the bad length.
pub(crate) fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    fn value(c: u8) -> Option<u8> {
        match c {
            b'A'..=b'Z' => Some(c - b'A'),
            b'a'..=b'z' => Some(c - b'a' + 26),
            b'0'..=b'9' => Some(c - b'0' + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let bytes: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let body_len = bytes.iter().rposition(|b| *b != b'=').map_or(0, |i| i + 1);
    let padding = bytes.len() - body_len;
    if padding > 2 || (padding > 0 && !bytes.len().is_multiple_of(4)) {
        return Err("is not valid base64: bad padding".into());
    }
    let body = &bytes[..body_len];
    if body.len() % 4 == 1 {
        return Err("is not valid base64: bad length".into());
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for (i, c) in body.iter().enumerate() {
        let Some(v) = value(*c) else {
            return Err(format!(
                "is not valid base64: unexpected character {:?} at offset {i}",
                *c as char
            ));
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

/// Records problems with a free-form metadata map as Nova and Cinder limit them: keys 1 to
/// 255 characters, values at most 255.
pub(crate) fn check_metadata(errors: &mut FieldErrors, path: &str, map: &BTreeMap<String, String>) {
    for (key, value) in map {
        if key.is_empty() || key.chars().count() > 255 {
            errors.add(
                format!("{path}[{key:?}]"),
                "keys must be 1 to 255 characters",
            );
        }
        if value.chars().count() > 255 {
            errors.add(
                format!("{path}[{key:?}]"),
                "values must be at most 255 characters",
            );
        }
    }
}

/// Records a problem when an optional free-text field is longer than `max` characters.
pub(crate) fn check_len(errors: &mut FieldErrors, path: &str, text: &Option<String>, max: usize) {
    if let Some(text) = text {
        let n = text.chars().count();
        if n > max {
            errors.add(path, format!("must be at most {max} characters, got {n}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVsbG8").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVs\nbG8h").unwrap(), b"hello!");
        assert_eq!(base64_decode("").unwrap(), b"");
        assert!(base64_decode("aGVsbG8*").is_err());
        assert!(base64_decode("a").is_err());
        assert!(base64_decode("aGVsbG8===").is_err());
    }

    #[test]
    fn macs() {
        assert!(mac_problem("fa:16:3e:00:00:01").is_none());
        assert!(mac_problem("FA:16:3E:00:00:01").is_none());
        assert!(mac_problem("01:00:5e:00:00:01").is_some());
        assert!(mac_problem("fa:16:3e:00:00").is_some());
        assert!(mac_problem("00:00:00:00:00:00").is_some());
    }
}
