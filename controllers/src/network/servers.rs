//! Server reconciler: the ports a server's `spec.networks` asks for (Nova's side of
//! Neutron).
//!
//! # Expected flow
//! - Entry `i` with `network`: a `Port` named [`server_port_name`] owned by the server
//!   (controller owner reference), `deviceOwner: compute:nova`, `deviceId` the server's uid,
//!   the server's security groups, `fixedIp` as its fixed IP request.
//! - Entry with `port`: the user's port is claimed (`deviceId`/`deviceOwner`) with a
//!   compare-and-swap, unless another server holds it (Warning event `PortInUse`, retried).
//! - Once scheduled (`spec.nodeName`), every port of the server gets `spec.bindingHost`.
//! - Owned ports no entry asks for any more are deleted; claimed ports no entry names are
//!   released.
//! - Deletion (finalizer [`FINALIZER`], only on servers with networks): owned ports are
//!   deleted (their own finalizer releases the addresses), claimed ports are released —
//!   a user's port outlives the server.

use std::collections::BTreeSet;
use std::sync::Arc;

use cirrus_client::{Api, ListParams};
use cirrus_crds::kinds::event::EventType;
use cirrus_crds::kinds::port::{FixedIpRequest, server_port_name};
use cirrus_crds::{ObjectMeta, OwnerReference, Port, PortSpec, Server};
use serde_json::json;

use super::{DEVICE_OWNER_COMPUTE, FINALIZER, NetError, NetworkContext, RETRY};
use crate::runtime::{Action, FinalizerEvent, ObjectRef, finalizer};

/// Reconciles one server's ports (the controller's entry point).
pub async fn reconcile(server: Arc<Server>, ctx: Arc<NetworkContext>) -> Result<Action, NetError> {
    let ours = server.metadata.finalizers.iter().any(|f| f == FINALIZER);
    if !ours && server.spec.networks.is_empty() {
        return Ok(Action::await_change());
    }
    let inner = ctx.clone();
    finalizer(&ctx.client, FINALIZER, server, |event| async move {
        match event {
            FinalizerEvent::Apply(s) => apply(s, &inner).await,
            FinalizerEvent::Cleanup(s) => cleanup(s, &inner).await,
        }
    })
    .await
    .map_err(|e| NetError::Finalizer(Box::new(e)))
}

fn owned_by(port: &Port, uid: &str) -> bool {
    port.metadata
        .owner_references
        .iter()
        .any(|o| o.kind == "Server" && o.uid == uid && o.controller == Some(true))
}

async fn apply(server: Arc<Server>, ctx: &NetworkContext) -> Result<Action, NetError> {
    ctx.caches_ready().await;
    let project = server.metadata.project.clone().unwrap_or_default();
    let uid = server.metadata.uid.clone().unwrap_or_default();
    let name = &server.metadata.name;
    let node = server.spec.node_name.clone();
    super::groups::ensure_default_group(ctx, &project).await;
    let api = Api::<Port>::in_project(ctx.client.clone(), project.clone());
    let mut wanted_owned = BTreeSet::new();
    let mut wanted_claimed = BTreeSet::new();
    let mut waiting = false;
    for (i, entry) in server.spec.networks.iter().enumerate() {
        if let Some(network) = &entry.network {
            let port_name = server_port_name(name, &uid, i);
            wanted_owned.insert(port_name.clone());
            match ctx.ports.get(&ObjectRef::in_project(&project, &port_name)) {
                None => {
                    let port = Port::new(
                        ObjectMeta {
                            name: port_name.clone(),
                            project: Some(project.clone()),
                            owner_references: vec![OwnerReference {
                                api_version: cirrus_crds::API_VERSION.into(),
                                kind: "Server".into(),
                                name: name.clone(),
                                uid: uid.clone(),
                                controller: Some(true),
                                block_owner_deletion: Some(true),
                            }],
                            ..Default::default()
                        },
                        PortSpec {
                            network: network.clone(),
                            network_project: entry.network_project.clone(),
                            fixed_ips: entry
                                .fixed_ip
                                .map(|ip| {
                                    vec![FixedIpRequest {
                                        subnet: None,
                                        ip_address: Some(ip),
                                    }]
                                })
                                .unwrap_or_default(),
                            security_groups: server.spec.security_groups.clone(),
                            device_owner: Some(DEVICE_OWNER_COMPUTE.into()),
                            device_id: Some(uid.clone()),
                            binding_host: node.clone(),
                            ..Default::default()
                        },
                    );
                    match api.create(&port).await {
                        Ok(_) => tracing::info!(server = %name, port = %port_name, "created port"),
                        Err(err) if err.is_already_exists() => {}
                        Err(err) => return Err(err.into()),
                    }
                }
                Some(port) => {
                    if node.is_some() && port.spec.binding_host != node {
                        let patch = json!({"spec": {"bindingHost": node}});
                        match api.patch(&port_name, &patch).await {
                            Ok(_) => {}
                            Err(err) if err.is_not_found() => {}
                            Err(err) => return Err(err.into()),
                        }
                    }
                }
            }
        } else if let Some(port_name) = &entry.port {
            wanted_claimed.insert(port_name.clone());
            let Some(port) = ctx.ports.get(&ObjectRef::in_project(&project, port_name)) else {
                let message = format!("port {port_name:?} does not exist in project {project:?}");
                let _ = ctx
                    .recorder
                    .publish(
                        server.as_ref(),
                        EventType::Warning,
                        "PortNotFound",
                        &message,
                    )
                    .await;
                waiting = true;
                continue;
            };
            match port.spec.device_id.as_deref() {
                Some(holder) if holder != uid => {
                    let holder_name = ctx
                        .servers
                        .list()
                        .iter()
                        .find(|s| s.metadata.uid.as_deref() == Some(holder))
                        .map(|s| s.metadata.name.clone())
                        .unwrap_or_else(|| holder.to_string());
                    let message = format!("port {port_name:?} is in use by {holder_name:?}");
                    let _ = ctx
                        .recorder
                        .publish(server.as_ref(), EventType::Warning, "PortInUse", &message)
                        .await;
                    waiting = true;
                    continue;
                }
                _ => {}
            }
            let claimed = port.spec.device_id.as_deref() == Some(uid.as_str())
                && port.spec.device_owner.as_deref() == Some(DEVICE_OWNER_COMPUTE)
                && (node.is_none() || port.spec.binding_host == node);
            if !claimed {
                // Conditioned on the version we saw: two servers never both claim it.
                let mut spec = json!({"deviceId": uid, "deviceOwner": DEVICE_OWNER_COMPUTE});
                if let Some(node) = &node {
                    spec["bindingHost"] = json!(node);
                }
                let patch = json!({
                    "metadata": {"resourceVersion": port.metadata.resource_version},
                    "spec": spec,
                });
                match api.patch(port_name, &patch).await {
                    Ok(_) => tracing::info!(server = %name, port = %port_name, "claimed port"),
                    Err(err) if err.is_conflict() || err.is_not_found() => waiting = true,
                    Err(err) => return Err(err.into()),
                }
            }
        }
    }
    // Ports this server has but no entry asks for any more.
    for port in ctx.ports.list() {
        if port.metadata.project.as_deref() != Some(project.as_str())
            || port.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        if owned_by(&port, &uid) && !wanted_owned.contains(&port.metadata.name) {
            match api.delete(&port.metadata.name).await {
                Ok(_) => {}
                Err(err) if err.is_not_found() => {}
                Err(err) => return Err(err.into()),
            }
        } else if !owned_by(&port, &uid)
            && port.spec.device_id.as_deref() == Some(uid.as_str())
            && !wanted_claimed.contains(&port.metadata.name)
        {
            release(&api, &port).await?;
        }
    }
    Ok(if waiting {
        Action::requeue(RETRY)
    } else {
        Action::await_change()
    })
}

/// Clears a user port's claim (device and binding), conditioned on the version seen.
async fn release(api: &Api<Port>, port: &Port) -> Result<(), NetError> {
    let patch = json!({
        "metadata": {"resourceVersion": port.metadata.resource_version},
        "spec": {"deviceId": null, "deviceOwner": null, "bindingHost": null},
    });
    match api.patch(&port.metadata.name, &patch).await {
        Ok(_) => {
            tracing::info!(port = %port.metadata.name, "released port");
            Ok(())
        }
        Err(err) if err.is_not_found() => Ok(()),
        Err(err) => Err(err.into()),
    }
}

async fn cleanup(server: Arc<Server>, ctx: &NetworkContext) -> Result<Action, NetError> {
    let project = server.metadata.project.clone().unwrap_or_default();
    let uid = server.metadata.uid.clone().unwrap_or_default();
    let api = Api::<Port>::in_project(ctx.client.clone(), project);
    // The store, not the cache: a port created just before the deletion must not be missed.
    let ports = api
        .list_all_matching(&ListParams::default().fields(format!("spec.deviceId={uid}")))
        .await?
        .items;
    for port in &ports {
        if owned_by(port, &uid) {
            match api.delete(&port.metadata.name).await {
                Ok(_) => tracing::info!(port = %port.metadata.name, "deleted the server's port"),
                Err(err) if err.is_not_found() => {}
                Err(err) => return Err(err.into()),
            }
        } else {
            release(&api, port).await?;
        }
    }
    Ok(Action::await_change())
}
