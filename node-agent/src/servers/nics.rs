//! The server's NICs: one per `spec.networks` entry, from its ports, on the network's local
//! VLAN of the integration bridge, once the network's DHCP server runs on this node.

use std::collections::BTreeMap;

use cirrus_crds::Server;
use cirrus_crds::conventions::dhcp_port_name;
use cirrus_crds::kinds::network::NetworkPhase;
use cirrus_crds::kinds::port::server_port_name;
use cirrus_crds::kinds::server::{AddressType, ServerAddress};
use uuid::Uuid;

use super::context::{ServerContext, ServerError};
use super::prepare::{PrepFailure, PrepStep};
use crate::hypervisor::NicSpec;

impl ServerContext {
    /// The server's NICs (one per `spec.networks` entry, in order) and its addresses, from
    /// its ports. Every port must exist, be attached to this server (`deviceId`), be bound to
    /// this node and have its MAC; otherwise the server waits for the network controller.
    pub(super) async fn nics(
        &self,
        server: &Server,
        uid: Uuid,
        project: &str,
    ) -> Result<(Vec<NicSpec>, BTreeMap<String, Vec<ServerAddress>>), PrepFailure> {
        let mut nics = Vec::new();
        let mut addresses: BTreeMap<String, Vec<ServerAddress>> = BTreeMap::new();
        if server.spec.networks.is_empty() {
            return Ok((nics, addresses));
        }
        let Some(host) = &self.network else {
            return Err(PrepFailure::new(
                PrepStep::Network,
                "NetworkingUnavailable",
                false,
                ServerError::Prepare(
                    "this node has no integration bridge (Open vSwitch is not available)".into(),
                ),
            ));
        };
        let uid_text = uid.hyphenated().to_string();
        let not_known = |e: ServerError| PrepFailure::not_known(PrepStep::Network, e);
        for (i, entry) in server.spec.networks.iter().enumerate() {
            let name = entry
                .port
                .clone()
                .unwrap_or_else(|| server_port_name(&server.metadata.name, &uid_text, i));
            let Some(port) = self.caches.port(project, &name).map_err(not_known)? else {
                return Err(PrepFailure::waiting_for_ports(format!(
                    "waiting for port {name:?}"
                )));
            };
            if port.spec.device_id.as_deref() != Some(uid_text.as_str()) {
                return Err(PrepFailure::waiting_for_ports(format!(
                    "port {name:?} is not attached to this server yet"
                )));
            }
            if port.spec.binding_host.as_deref() != Some(self.node_name.as_str()) {
                return Err(PrepFailure::waiting_for_ports(format!(
                    "port {name:?} is not bound to node {:?} yet",
                    self.node_name
                )));
            }
            let (Some(mac), Some(port_uid)) = (
                port.status.mac_address.clone(),
                port.metadata
                    .uid
                    .as_deref()
                    .and_then(|u| Uuid::try_parse(u).ok()),
            ) else {
                return Err(PrepFailure::waiting_for_ports(format!(
                    "port {name:?} has no MAC address yet"
                )));
            };
            // The network, its subnets and DHCP ports are the network's project's: the
            // server's own, or the owner of a network shared with it.
            let owner = port.network_project().to_string();
            let network = self
                .caches
                .network(&owner, &port.spec.network)
                .map_err(not_known)?
                .ok_or_else(|| {
                    PrepFailure::waiting_for_ports(format!(
                        "network {:?} of port {name:?} does not exist",
                        port.spec.network
                    ))
                })?;
            // Like Nova waiting for Neutron's network-vif-plugged: a guest booted before its
            // network's DHCP server runs on this node would come up without an address.
            let dhcp_subnets = self
                .caches
                .network_has_dhcp(&owner, &port.spec.network)
                .map_err(not_known)?;
            if dhcp_subnets {
                let dhcp_port = dhcp_port_name(&port.spec.network, &self.node_name);
                let ready = self
                    .caches
                    .port(&owner, &dhcp_port)
                    .map_err(not_known)?
                    .is_some_and(|p| p.status.phase == Some(NetworkPhase::Active));
                if !ready {
                    return Err(PrepFailure::waiting_for_ports(format!(
                        "DHCP for network {:?} is not running on this node yet (port {dhcp_port:?})",
                        port.spec.network
                    )));
                }
            }
            let network_uid = network.metadata.uid.clone().unwrap_or_default();
            let tag = host.local_vlan(&network_uid).map_err(|e| {
                PrepFailure::new(
                    PrepStep::Network,
                    "LocalVlanUnavailable",
                    false,
                    ServerError::Prepare(e.to_string()),
                )
            })?;
            nics.push(NicSpec {
                bridge: host.bridge().to_string(),
                interface_id: port_uid,
                mac: mac.clone(),
                tap: NicSpec::tap_name(port_uid),
                vlan_tag: Some(tag),
                mtu: network.status.mtu,
                offload: host.nic_offload(),
            });
            let list = addresses.entry(port.spec.network.clone()).or_default();
            for ip in &port.status.fixed_ips {
                list.push(ServerAddress {
                    ip: ip.ip_address,
                    version: if ip.ip_address.is_ipv4() { 4 } else { 6 },
                    mac: Some(mac.clone()),
                    type_: AddressType::Fixed,
                    port: Some(name.clone()),
                });
            }
        }
        Ok((nics, addresses))
    }
}
