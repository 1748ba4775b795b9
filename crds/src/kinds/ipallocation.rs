//! `IpAllocation`: one address of a subnet given to one port — the record whose creation
//! makes the address taken.
//!
//! The network controller's IPAM picks a free address, then *creates* the allocation named
//! after the subnet and the address ([`allocation_name`]). The store refuses a second object
//! with that name (`409 AlreadyExists`), so creating it is the compare-and-swap that
//! guarantees no address is handed out twice, even by racing controllers. Allocations are
//! labelled with the subnet ([`SUBNET_LABEL`]) and the port's uid ([`PORT_UID_LABEL`]) so a
//! restarted controller finds what a port already holds, and releases it when the port goes.

use std::net::IpAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kinds::check_ref;
use crate::meta::Condition;
use crate::resource::Validate;
use crate::validation::FieldErrors;

crate::kind! {
    /// One address of a `Subnet` allocated to one `Port`. Project-scoped (the subnet's
    /// project); written by the network controller.
    IpAllocation {
        spec: IpAllocationSpec,
        status: IpAllocationStatus,
        plural: "ipallocations",
        singular: "ipallocation",
        short_names: ["ipa", "ipalloc"],
        scope: Project,
    }
}

/// Label carrying the subnet name of an allocation.
pub const SUBNET_LABEL: &str = "cirrus.dev/subnet";
/// Label carrying the uid of the port holding an allocation.
pub const PORT_UID_LABEL: &str = "cirrus.dev/port-uid";

/// What is allocated to whom.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IpAllocationSpec {
    /// Name of the `Subnet` the address belongs to.
    pub subnet: String,
    /// The address.
    pub ip_address: IpAddr,
    /// Name of the `Port` holding it.
    pub port: String,
    /// Uid of that port: a recreated port with the same name does not inherit it.
    pub port_uid: String,
    /// Project of that port when it is not the allocation's (a port of another project on
    /// a shared network: the allocation lives with the subnet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_project: Option<String>,
}

impl Default for IpAllocationSpec {
    fn default() -> Self {
        Self {
            subnet: String::new(),
            ip_address: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            port: String::new(),
            port_uid: String::new(),
            port_project: None,
        }
    }
}

/// Observed state of an allocation (nothing but conditions so far).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IpAllocationStatus {
    /// Observations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The name of the allocation of `ip` in `subnet`: `<subnet>.<ip>` with IPv6 colons written
/// as `-` (`net1-v4.10.0.0.5`, `net1-v6.fd00--5`). One address, one name: that is what makes
/// creating it a compare-and-swap.
pub fn allocation_name(subnet: &str, ip: IpAddr) -> String {
    format!("{subnet}.{}", ip.to_string().replace(':', "-"))
}

impl Validate for IpAllocation {
    fn validate(&self, errors: &mut FieldErrors) {
        let spec = &self.spec;
        check_ref(errors, "spec.subnet", &spec.subnet);
        check_ref(errors, "spec.port", &spec.port);
        if spec.port_uid.is_empty() || spec.port_uid.len() > 64 {
            errors.add(
                "spec.portUid",
                "must be the port's uid (1 to 64 characters)",
            );
        }
        if spec.ip_address.is_unspecified() {
            errors.add(
                "spec.ipAddress",
                "must be a real address, not 0.0.0.0 or ::",
            );
        }
        let want = allocation_name(&spec.subnet, spec.ip_address);
        if !self.metadata.name.is_empty() && self.metadata.name != want {
            errors.add(
                "metadata.name",
                format!(
                    "must be {want:?} (subnet and address), got {:?}",
                    self.metadata.name
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::ObjectMeta;
    use crate::resource::Resource;

    fn alloc(name: &str, ip: &str) -> IpAllocation {
        IpAllocation::new(
            ObjectMeta {
                name: name.into(),
                project: Some("demo".into()),
                ..Default::default()
            },
            IpAllocationSpec {
                subnet: "sub".into(),
                ip_address: ip.parse().unwrap(),
                port: "p".into(),
                port_uid: "u-1".into(),
                port_project: None,
            },
        )
    }

    #[test]
    fn names() {
        assert_eq!(
            allocation_name("sub", "10.0.0.5".parse().unwrap()),
            "sub.10.0.0.5"
        );
        assert_eq!(
            allocation_name("sub", "fd00::5".parse().unwrap()),
            "sub.fd00--5"
        );
    }

    #[test]
    fn validation_names_fields() {
        let ok = serde_json::to_value(alloc("sub.10.0.0.5", "10.0.0.5")).unwrap();
        assert!((IpAllocation::info().validate)(ok).is_ok());
        let v6 = serde_json::to_value(alloc("sub.fd00--5", "fd00::5")).unwrap();
        assert!((IpAllocation::info().validate)(v6).is_ok());
        let wrong = serde_json::to_value(alloc("sub.10.0.0.6", "10.0.0.5")).unwrap();
        let errors = (IpAllocation::info().validate)(wrong).unwrap_err();
        assert_eq!(errors.0[0].field, "metadata.name");
        let mut bad = alloc("sub.0.0.0.0", "0.0.0.0");
        bad.spec.port_uid.clear();
        let errors =
            (IpAllocation::info().validate)(serde_json::to_value(bad).unwrap()).unwrap_err();
        let fields: Vec<&str> = errors.0.iter().map(|e| e.field.as_str()).collect();
        assert!(fields.contains(&"spec.portUid"), "{fields:?}");
        assert!(fields.contains(&"spec.ipAddress"), "{fields:?}");
    }
}
