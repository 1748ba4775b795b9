//! The scheduler controller: binds each new server to a node.
//!
//! It only loads the inputs of [`place`](super::place) from its caches and writes results:
//! a server without `spec.nodeName` gets one (a compare-and-swap on the server's
//! `resourceVersion`, so a server is never bound twice), plus the `Scheduled` condition and
//! an Event; a server that fits nowhere gets `Scheduled=False` with the node-by-node reason
//! and is retried when nodes or flavors change (and every [`RETRY_UNSCHEDULABLE`]).
//!
//! # Guarantees
//! - One active scheduler: it runs behind leader election on the `scheduler` Lease, so two
//!   scheduler processes never place at once; within the process bindings that the cache has
//!   not seen yet are *assumed* (counted as used) so back-to-back placements never overbook.
//! - Converged servers cost nothing: a bound server is never written again, and status is
//!   written only when the `Scheduled` condition changes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use cirrus_client::{Api, Client, ClientError};
use cirrus_crds::kinds::event::EventType;
use cirrus_crds::kinds::server::ServerPhase;
use cirrus_crds::{
    Condition, ConditionStatus, Flavor, Image, Node, Resource, Server, ServerGroup, Volume,
};
use tokio::sync::watch;

use super::{
    PlacementRequest, SchedulerConfig, candidates, node_usage, place, resolve_hints, volume_nodes,
};
use crate::runtime::reflector::Store;
use crate::runtime::shared::cached;
use crate::runtime::{Action, Config, Controller, ObjectRef, Recorder};

/// How often a server that fits nowhere is tried again even without a node/flavor change
/// (capacity can also appear when other servers are deleted).
pub const RETRY_UNSCHEDULABLE: Duration = Duration::from_secs(15);

/// The condition the scheduler owns.
pub const SCHEDULED: &str = "Scheduled";

/// What the scheduler's reconciler shares.
pub struct SchedulerContext {
    client: Client,
    config: SchedulerConfig,
    servers: Store<Server>,
    nodes: Store<Node>,
    flavors: Store<Flavor>,
    images: Store<Image>,
    /// Volumes, for the servers' volume affinity.
    volumes: Store<Volume>,
    recorder: Recorder,
    /// Bindings written but maybe not yet in the server cache: server key → (uid, node).
    assumed: Mutex<HashMap<ObjectRef, (String, String)>>,
    /// Held while one placement is decided and assumed (in memory, no I/O).
    cycle: Mutex<()>,
}

/// Why one scheduling attempt failed (the next attempt is the retry).
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// The API refused or could not be reached.
    #[error("API request failed")]
    Api(#[from] ClientError),
}

/// Runs the scheduler until `shutdown` resolves; it acts only while `gate` says it leads.
pub async fn run(
    client: Client,
    config: SchedulerConfig,
    gate: watch::Receiver<bool>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let (nodes, node_events) = cached::<Node>(&client);
    let (flavors, flavor_events) = cached::<Flavor>(&client);
    let (images, image_events) = cached::<Image>(&client);
    let (volumes, volume_events) = cached::<Volume>(&client);
    let controller = Controller::new(Api::<Server>::all(client.clone()), Default::default())
        // Placements are decided one at a time under `cycle` (each sees every earlier one
        // through the cache or the assumed set); the binding writes run concurrently, as
        // kube-scheduler's scheduling and binding cycles do.
        .with_config(Config::default())
        .with_leader_gate(gate)
        .graceful_shutdown_on(shutdown);
    let servers = controller.store();
    let unscheduled = {
        let servers = servers.clone();
        move || -> Vec<ObjectRef> {
            servers
                .list()
                .iter()
                .filter(|s| s.spec.node_name.is_none() && s.metadata.deletion_timestamp.is_none())
                .map(|s| ObjectRef::from_obj(s.as_ref()))
                .collect()
        }
    };
    let on_node = unscheduled.clone();
    let on_flavor = unscheduled.clone();
    // A placed volume may pin (or unpin) the unbound servers that use it.
    let on_volume = {
        let servers = servers.clone();
        move |v: &Volume| -> Vec<ObjectRef> {
            servers
                .list()
                .iter()
                .filter(|s| s.spec.node_name.is_none() && s.metadata.deletion_timestamp.is_none())
                .filter(|s| s.metadata.project == v.metadata.project)
                .filter(|s| {
                    s.spec.boot_volume.as_deref() == Some(v.metadata.name.as_str())
                        || s.spec.volumes.iter().any(|e| e.volume == v.metadata.name)
                })
                .map(|s| ObjectRef::from_obj(s.as_ref()))
                .collect()
        }
    };
    let controller = controller
        .watches_stream(volume_events, on_volume)
        .watches_stream(node_events, move |_: &Node| on_node())
        .watches_stream(flavor_events, move |_: &Flavor| on_flavor())
        .watches_stream(image_events, move |_: &Image| unscheduled());
    let ctx = Arc::new(SchedulerContext {
        recorder: Recorder::new(client.clone(), "scheduler", None),
        client,
        config,
        servers,
        nodes,
        flavors,
        images,
        volumes,
        assumed: Mutex::new(HashMap::new()),
        cycle: Mutex::new(()),
    });
    controller.run(reconcile, error_policy, ctx).await;
}

/// Access to `K` in the project of `server`.
fn in_project_of<K: Resource>(client: &Client, server: &Server) -> Api<K> {
    let project = server.metadata.project.clone().unwrap_or_default();
    Api::in_project(client.clone(), project)
}

fn error_policy(_server: Arc<Server>, err: &SchedulerError, _ctx: Arc<SchedulerContext>) -> Action {
    tracing::warn!(error = %err, "scheduling attempt failed");
    Action::backoff()
}

async fn reconcile(
    server: Arc<Server>,
    ctx: Arc<SchedulerContext>,
) -> Result<Action, SchedulerError> {
    let key = ObjectRef::from_obj(server.as_ref());
    if server.metadata.deletion_timestamp.is_some() || server.spec.node_name.is_some() {
        ctx.forget_assumed(&key, &server);
        return Ok(Action::await_change());
    }
    ctx.nodes.wait_until_ready().await;
    ctx.flavors.wait_until_ready().await;
    ctx.images.wait_until_ready().await;
    ctx.volumes.wait_until_ready().await;
    let api = Api::<Server>::for_object(ctx.client.clone(), server.as_ref());

    let Some(flavor) = ctx.flavors.get(&ObjectRef::cluster(&server.spec.flavor)) else {
        let message = format!("flavor {:?} does not exist", server.spec.flavor);
        ctx.unschedulable(&api, &server, "FlavorNotFound", &message)
            .await?;
        return Ok(Action::requeue(RETRY_UNSCHEDULABLE));
    };
    let image_properties = match &server.spec.image {
        Some(image) => match ctx.find_image(&server, image) {
            Some(found) => Some(found.spec.properties.clone()),
            None => {
                let message =
                    format!("image {image:?} does not exist or is not visible to this project");
                ctx.unschedulable(&api, &server, "ImageNotFound", &message)
                    .await?;
                return Ok(Action::requeue(RETRY_UNSCHEDULABLE));
            }
        },
        None => None,
    };
    let group = match &server.spec.scheduler_hints.group {
        Some(name) => {
            in_project_of::<ServerGroup>(&ctx.client, &server)
                .get_opt(name)
                .await?
        }
        None => None,
    };

    // The server's volumes as the store has them now: a volume placed a moment ago may not
    // be in the cache yet, and binding the server elsewhere would split it from its disk.
    let mut volumes = Vec::new();
    let names = server
        .spec
        .boot_volume
        .iter()
        .chain(server.spec.volumes.iter().map(|v| &v.volume));
    for name in names {
        if let Some(volume) = in_project_of::<Volume>(&ctx.client, &server)
            .get_opt(name)
            .await?
        {
            volumes.push(volume);
        }
    }

    let decision = {
        let _cycle = ctx.cycle.lock().expect("cycle lock");
        let decision = ctx.decide(
            &server,
            &flavor,
            image_properties.as_ref(),
            group.as_ref(),
            &volumes,
        );
        if let Ok(placement) = &decision {
            ctx.assume(&key, &server, &placement.node);
        }
        decision
    };
    match decision {
        Ok(placement) => {
            let mut bound = server.as_ref().clone();
            bound.spec.node_name = Some(placement.node.clone());
            let bound = match api.replace(&bound).await {
                Ok(bound) => bound,
                Err(err) => {
                    ctx.forget_assumed(&key, &server);
                    return match err {
                        // Someone changed the server meanwhile: place again from the new version.
                        err if err.is_conflict() => Ok(Action::requeue(Duration::ZERO)),
                        err if err.is_not_found() => Ok(Action::await_change()),
                        err => Err(err.into()),
                    };
                }
            };
            let message = format!(
                "assigned to node {} ({} of {} nodes fit)",
                placement.node, placement.feasible, placement.total
            );
            tracing::info!(node = %placement.node, "scheduled");
            // The condition and the Event are written off the binding path (both retry on
            // their own conflicts).
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let written = ctx
                    .set_scheduled(&api, bound, ConditionStatus::True, "Scheduled", &message)
                    .await;
                if let Err(err) = written {
                    tracing::warn!(error = %err, "writing the Scheduled condition failed");
                }
                let _ = ctx
                    .recorder
                    .publish(server.as_ref(), EventType::Normal, "Scheduled", &message)
                    .await;
            });
            Ok(Action::await_change())
        }
        Err(no_valid_host) => {
            let message = no_valid_host.message();
            ctx.unschedulable(&api, &server, "NoValidHost", &message)
                .await?;
            Ok(Action::requeue(RETRY_UNSCHEDULABLE))
        }
    }
}

impl SchedulerContext {
    /// Decides where `server` goes from the caches, the assumed bindings and its `volumes`
    /// as just read (pure given them; the caller holds the scheduling cycle).
    fn decide(
        &self,
        server: &Server,
        flavor: &Flavor,
        image_properties: Option<&BTreeMap<String, String>>,
        group: Option<&ServerGroup>,
        volumes: &[Volume],
    ) -> Result<super::Placement, super::NoValidHost> {
        let servers = self.servers_with_assumed();
        let flavors: BTreeMap<String, Arc<Flavor>> = self
            .flavors
            .list()
            .into_iter()
            .map(|f| (f.metadata.name.clone(), f))
            .collect();
        let usage = node_usage(servers.iter(), |name| flavors.get(name).map(|f| &f.spec));
        let nodes: Vec<Node> = self
            .nodes
            .list()
            .iter()
            .map(|n| n.as_ref().clone())
            .collect();
        let hints = resolve_hints(server, &servers, group);
        let mut request =
            PlacementRequest::for_server(server, &flavor.spec, image_properties, hints);
        request.volume_nodes = volume_nodes(server, volumes);
        place(&request, &candidates(&nodes, &usage), &self.config)
    }
}

impl SchedulerContext {
    /// Every cached server, with assumed bindings applied.
    fn servers_with_assumed(&self) -> Vec<Server> {
        let assumed = self.assumed.lock().expect("assumed lock");
        self.servers
            .list()
            .iter()
            .map(|s| {
                let mut s = s.as_ref().clone();
                if s.spec.node_name.is_none() {
                    let key = ObjectRef::from_obj(&s);
                    if let Some((uid, node)) = assumed.get(&key)
                        && s.metadata.uid.as_deref() == Some(uid.as_str())
                    {
                        s.spec.node_name = Some(node.clone());
                    }
                }
                s
            })
            .collect()
    }

    fn assume(&self, key: &ObjectRef, server: &Server, node: &str) {
        let uid = server.metadata.uid.clone().unwrap_or_default();
        self.assumed
            .lock()
            .expect("assumed lock")
            .insert(key.clone(), (uid, node.to_string()));
    }

    /// Drops the assumption once the cache shows the binding (or the server is going).
    fn forget_assumed(&self, key: &ObjectRef, _server: &Server) {
        self.assumed.lock().expect("assumed lock").remove(key);
    }

    /// The image `name` (or uid) as `server`'s project sees it, from the cache, by the rules
    /// [`cirrus_client::find_image`] applies through the API: by name its own image, else a
    /// public one ([`Image::findable_by_name_from`]); by uid any visible to it
    /// ([`Image::visible_to`]; the share's acceptance was checked at admission).
    fn find_image(&self, server: &Server, name: &str) -> Option<Arc<Image>> {
        let project = server.metadata.project.as_deref().unwrap_or_default();
        if let Some(own) = self.images.get(&ObjectRef::in_project(project, name)) {
            return Some(own);
        }
        let all = self.images.list();
        let mut others: Vec<&Arc<Image>> = all
            .iter()
            .filter(|i| i.metadata.name == name && i.findable_by_name_from(project))
            .collect();
        others.sort_by(|a, b| a.metadata.project.cmp(&b.metadata.project));
        if let Some(found) = others.first() {
            return Some(Arc::clone(found));
        }
        all.iter()
            .find(|i| i.metadata.uid.as_deref() == Some(name) && i.visible_to(project))
            .cloned()
    }

    async fn unschedulable(
        &self,
        api: &Api<Server>,
        server: &Arc<Server>,
        reason: &str,
        message: &str,
    ) -> Result<(), ClientError> {
        let changed = self
            .set_scheduled(
                api,
                server.as_ref().clone(),
                ConditionStatus::False,
                reason,
                message,
            )
            .await?;
        if changed {
            let _ = self
                .recorder
                .publish(
                    server.as_ref(),
                    EventType::Warning,
                    "FailedScheduling",
                    message,
                )
                .await;
        }
        Ok(())
    }

    /// Writes the `Scheduled` condition (and phase BUILD for a new server) when it changed.
    /// Other writers (the node agent) may update the status meanwhile: on a conflict the
    /// newest version is read and the condition applied to it again, so it is never lost.
    async fn set_scheduled(
        &self,
        api: &Api<Server>,
        mut server: Server,
        status: ConditionStatus,
        reason: &str,
        message: &str,
    ) -> Result<bool, ClientError> {
        for _ in 0..5 {
            let condition = Condition {
                type_: SCHEDULED.into(),
                status,
                reason: reason.into(),
                message: message.into(),
                last_transition_time: Some(Utc::now()),
                observed_generation: server.metadata.generation,
            };
            let mut changed = Condition::set(&mut server.status.conditions, condition);
            if server.status.phase.is_none() {
                server.status.phase = Some(ServerPhase::Build);
                changed = true;
            }
            if !changed {
                return Ok(false);
            }
            match api.replace_status(&server).await {
                Ok(_) => return Ok(true),
                Err(err) if err.is_conflict() => match api.get_opt(&server.metadata.name).await? {
                    Some(latest) => server = latest,
                    None => return Ok(false),
                },
                Err(err) if err.is_not_found() => return Ok(false),
                Err(err) => return Err(err),
            }
        }
        Ok(false)
    }
}
