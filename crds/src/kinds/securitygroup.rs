//! `SecurityGroup`: stateful firewall rules applied to ports (Neutron's security group).
//!
//! The rules are exactly `spec.rules`: nothing is implied. (Neutron adds two allow-all
//! egress rules to every new group; the OpenStack-compatible API adds them to `spec.rules`
//! when a group is created through it, and manifests list egress rules explicitly.)
//! Traffic not matched by a rule is dropped; replies to allowed traffic pass (stateful).

use std::borrow::Cow;
use std::fmt;

use ipnet::IpNet;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::kinds::check_cidr;
use crate::meta::Condition;
use crate::resource::Validate;
use crate::validation::FieldErrors;

crate::kind! {
    /// A named set of firewall rules for ports. Project-scoped; each project has a
    /// `default` group.
    SecurityGroup {
        spec: SecurityGroupSpec,
        status: SecurityGroupStatus,
        plural: "securitygroups",
        singular: "securitygroup",
        short_names: ["sg", "secgroup"],
        scope: Project,
    }
}

/// Traffic direction a rule matches, seen from the server.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Traffic to the server.
    #[default]
    Ingress,
    /// Traffic from the server.
    Egress,
}

/// IP version a rule matches.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Ethertype {
    /// IPv4.
    #[default]
    IPv4,
    /// IPv6.
    IPv6,
}

/// An IP protocol: a name Neutron knows (`tcp`, `udp`, `icmp`, `ipv6-icmp`, `sctp`, `gre`,
/// ...) or a number 0–255. Numbers may be written as integers or strings; they are kept
/// as written. `any` is accepted and means the same as no protocol.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Protocol(pub String);

/// The protocol names Neutron accepts, with their numbers.
pub const PROTOCOL_NAMES: &[(&str, u8)] = &[
    ("ah", 51),
    ("dccp", 33),
    ("egp", 8),
    ("esp", 50),
    ("gre", 47),
    ("hopopt", 0),
    ("icmp", 1),
    ("icmpv6", 58),
    ("igmp", 2),
    ("ipip", 4),
    ("ipv6-encap", 41),
    ("ipv6-frag", 44),
    ("ipv6-icmp", 58),
    ("ipv6-nonxt", 59),
    ("ipv6-opts", 60),
    ("ipv6-route", 43),
    ("ospf", 89),
    ("pgm", 113),
    ("rsvp", 46),
    ("sctp", 132),
    ("tcp", 6),
    ("udp", 17),
    ("udplite", 136),
    ("vrrp", 112),
];

impl Protocol {
    /// The IANA protocol number, if the name or number is known.
    pub fn number(&self) -> Option<u8> {
        let name = self.0.to_ascii_lowercase();
        PROTOCOL_NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, num)| *num)
            .or_else(|| name.parse::<u8>().ok())
    }
}

impl Serialize for Protocol {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Protocol;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a protocol name like tcp, udp or icmp, or a number 0-255")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Protocol, E> {
                Ok(Protocol(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Protocol, E> {
                Ok(Protocol(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Protocol, E> {
                Ok(Protocol(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Protocol {
    fn schema_name() -> Cow<'static, str> {
        "Protocol".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "An IP protocol name (tcp, udp, icmp, ipv6-icmp, ...) or number 0-255.",
            "anyOf": [
                {"type": "string"},
                {"type": "integer", "minimum": 0, "maximum": 255}
            ]
        })
    }
}

/// One allow rule.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecurityGroupRule {
    /// Ingress or egress.
    #[serde(default)]
    pub direction: Direction,
    /// IPv4 or IPv6.
    #[serde(default)]
    pub ethertype: Ethertype,
    /// Protocol matched; absent or `null`: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// Lowest port (TCP, UDP, SCTP, DCCP, UDP-Lite), or the ICMP type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_range_min: Option<u32>,
    /// Highest port, or the ICMP code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_range_max: Option<u32>,
    /// Remote addresses matched (source for ingress, destination for egress); absent with
    /// no `remoteGroup`: any address.
    #[serde(
        default,
        deserialize_with = "crate::kinds::de_opt_cidr",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub remote_ip_prefix: Option<IpNet>,
    /// Name of a `SecurityGroup` whose members' addresses are matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_group: Option<String>,
    /// Human-readable description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Desired state of a security group.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecurityGroupSpec {
    /// Human-readable description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Allow rules; everything else is dropped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<SecurityGroupRule>,
    /// Stateful (connection tracking) rules; stateless groups need rules for replies.
    #[serde(default = "crate::kinds::default_true")]
    pub stateful: bool,
}

/// Observed state of a security group.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecurityGroupStatus {
    /// The `metadata.generation` last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Observations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Protocols whose rules may name port ranges.
const PORT_PROTOCOLS: &[u8] = &[6, 17, 33, 132, 136];

impl SecurityGroupRule {
    fn validate(&self, path: &str, errors: &mut FieldErrors) {
        let proto = self
            .protocol
            .as_ref()
            .filter(|p| !p.0.eq_ignore_ascii_case("any"));
        let number = match proto {
            None => None,
            Some(p) => match p.number() {
                Some(n) => Some(n),
                None => {
                    errors.add(
                        format!("{path}.protocol"),
                        format!("unknown protocol {:?}: use a name like tcp, udp, icmp or a number 0-255", p.0),
                    );
                    return;
                }
            },
        };
        let (min, max) = (self.port_range_min, self.port_range_max);
        match number {
            _ if min.is_none() && max.is_none() => {}
            None => errors.add(
                format!("{path}.portRangeMin"),
                "a port range needs a protocol (tcp, udp, ...)",
            ),
            Some(1) | Some(58) => {
                if let Some(t) = min.filter(|t| *t > 255) {
                    errors.add(
                        format!("{path}.portRangeMin"),
                        format!("ICMP type must be 0-255, got {t}"),
                    );
                }
                if let Some(c) = max.filter(|c| *c > 255) {
                    errors.add(
                        format!("{path}.portRangeMax"),
                        format!("ICMP code must be 0-255, got {c}"),
                    );
                }
                if min.is_none() && max.is_some() {
                    errors.add(
                        format!("{path}.portRangeMax"),
                        "an ICMP code needs an ICMP type (portRangeMin)",
                    );
                }
            }
            Some(n) if PORT_PROTOCOLS.contains(&n) => {
                for (field, v) in [("portRangeMin", min), ("portRangeMax", max)] {
                    if let Some(v) = v.filter(|v| !(1..=65535).contains(v)) {
                        errors.add(
                            format!("{path}.{field}"),
                            format!("ports must be 1-65535, got {v}"),
                        );
                    }
                }
                match (min, max) {
                    (Some(lo), Some(hi)) if lo > hi => errors.add(
                        format!("{path}.portRangeMax"),
                        format!("{hi} is below portRangeMin {lo}"),
                    ),
                    (Some(_), None) | (None, Some(_)) => errors.add(
                        format!("{path}.portRangeMax"),
                        "give both portRangeMin and portRangeMax (equal for one port)",
                    ),
                    _ => {}
                }
            }
            Some(_) => errors.add(
                format!("{path}.portRangeMin"),
                "only tcp, udp, sctp, dccp, udplite and icmp rules have port ranges",
            ),
        }
        if self.ethertype == Ethertype::IPv4 && number == Some(58) {
            errors.add(format!("{path}.protocol"), "ipv6-icmp needs ethertype IPv6");
        }
        if let Some(prefix) = &self.remote_ip_prefix {
            check_cidr(errors, format!("{path}.remoteIpPrefix"), prefix);
            let v6 = matches!(prefix, IpNet::V6(_));
            if v6 != (self.ethertype == Ethertype::IPv6) {
                errors.add(
                    format!("{path}.remoteIpPrefix"),
                    format!("{prefix} does not match ethertype {:?}", self.ethertype),
                );
            }
            if self.remote_group.is_some() {
                errors.add(
                    format!("{path}.remoteGroup"),
                    "give remoteIpPrefix or remoteGroup, not both",
                );
            }
        }
        crate::kinds::check_opt_ref(errors, format!("{path}.remoteGroup"), &self.remote_group);
        crate::kinds::check_len(
            errors,
            &format!("{path}.description"),
            &self.description,
            255,
        );
    }
}

impl Validate for SecurityGroup {
    fn validate(&self, errors: &mut FieldErrors) {
        let spec = &self.spec;
        crate::kinds::check_len(errors, "spec.description", &spec.description, 255);
        for (i, rule) in spec.rules.iter().enumerate() {
            let path = format!("spec.rules[{i}]");
            rule.validate(&path, errors);
            let same = |r: &SecurityGroupRule| {
                r.direction == rule.direction
                    && r.ethertype == rule.ethertype
                    && r.protocol.as_ref().and_then(Protocol::number)
                        == rule.protocol.as_ref().and_then(Protocol::number)
                    && r.port_range_min == rule.port_range_min
                    && r.port_range_max == rule.port_range_max
                    && r.remote_ip_prefix == rule.remote_ip_prefix
                    && r.remote_group == rule.remote_group
            };
            if let Some(j) = spec.rules[..i].iter().position(same) {
                errors.add(path, format!("duplicate of spec.rules[{j}]"));
            }
        }
    }
}
