//! The volume controller (and the scheduler's volume affinity) against a real in-process API
//! over the embedded store.

use std::collections::BTreeMap;
use std::time::Duration;

use cirrus_client::Api;
use cirrus_crds::kinds::node::{NodeResources, StorageBackend, StoragePool};
use cirrus_crds::kinds::server::ServerVolume;
use cirrus_crds::kinds::volume::{CREATED_FOR_SERVER_ANNOTATION, VolumePhase};
use cirrus_crds::{
    Condition, ConditionStatus, Flavor, FlavorSpec, Node, NodeSpec, ObjectMeta, Server, ServerSpec,
    Volume, VolumeSpec,
};

use super::placement::GIB;
use cirrus_test_utils::{eventually, meta_in};

use super::*;
use crate::scheduler::SchedulerConfig;

const P: &str = "demo";

/// The shared harness (project `demo` without quota limits); the volume tests' helpers are
/// methods of this wrapper.
struct Harness(cirrus_test_utils::Harness);

impl std::ops::Deref for Harness {
    type Target = cirrus_test_utils::Harness;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Harness {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

async fn harness() -> Harness {
    let h = cirrus_test_utils::harness().await;
    h.api.unlimited_project("demo").await;
    Harness(h)
}

type Pools<'a> = &'a [(&'a str, StorageBackend, u64)];

impl Harness {
    fn start_volume_controller(&mut self) {
        self.start_volume_controller_with_grace(Duration::from_secs(120));
    }

    /// The volume controller with `orphan_grace` for volumes made for a server.
    fn start_volume_controller_with_grace(&mut self, orphan_grace: Duration) {
        let config = VolumeConfig {
            concurrency: 16,
            resync: Some(Duration::from_secs(5)),
            orphan_grace,
        };
        let (client, gate) = (self.client.clone(), self.gate.clone());
        self.tasks.push(tokio::spawn(run(
            client,
            config,
            gate,
            std::future::pending(),
        )));
    }

    fn start_scheduler(&mut self) {
        let (client, gate) = (self.client.clone(), self.gate.clone());
        self.tasks
            .push(tokio::spawn(crate::scheduler::controller::run(
                client,
                SchedulerConfig::default(),
                gate,
                std::future::pending(),
            )));
    }

    fn volumes(&self) -> Api<Volume> {
        Api::in_project(self.client.clone(), P)
    }

    fn servers(&self) -> Api<Server> {
        Api::in_project(self.client.clone(), P)
    }

    /// A Ready node with `memory_mib` of RAM and `pools` (name, backend, free GiB; total is
    /// twice the free).
    async fn node(&self, name: &str, memory_mib: u64, pools: Pools<'_>) {
        let api = Api::<Node>::all(self.client.clone());
        let mut node = api
            .create(&Node::new(
                ObjectMeta {
                    name: name.into(),
                    ..Default::default()
                },
                NodeSpec {
                    reserved_host_memory_mib: 0,
                    ..Default::default()
                },
            ))
            .await
            .unwrap();
        node.status.capacity = NodeResources {
            vcpus: 8,
            memory_mib,
            disk_gib: 100,
        };
        node.status.conditions = vec![Condition {
            type_: "Ready".into(),
            status: ConditionStatus::True,
            reason: "AgentReady".into(),
            ..Default::default()
        }];
        node.status.storage_pools = pools
            .iter()
            .map(|(pool, backend, free)| StoragePool {
                name: (*pool).into(),
                backend: *backend,
                total_bytes: 2 * free * GIB,
                free_bytes: free * GIB,
                capabilities: Vec::new(),
            })
            .collect();
        api.replace_status(&node).await.unwrap();
    }

    async fn volume(&self, name: &str, gib: u64, volume_type: Option<&str>) -> Volume {
        self.volumes()
            .create(&Volume::new(
                meta(name),
                VolumeSpec {
                    size: gib,
                    volume_type: volume_type.map(str::to_owned),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
    }

    async fn server(&self, name: &str, spec: ServerSpec) -> Server {
        self.servers()
            .create(&Server::new(meta(name), spec))
            .await
            .unwrap()
    }

    async fn flavor(&self, name: &str, ram: u64) {
        Api::<Flavor>::all(self.client.clone())
            .create(&Flavor::new(
                ObjectMeta {
                    name: name.into(),
                    ..Default::default()
                },
                FlavorSpec {
                    vcpus: 1,
                    ram,
                    disk: 1,
                    ..Default::default()
                },
            ))
            .await
            .unwrap();
    }

    /// Waits until `name` satisfies `check`, returning it.
    async fn wait_volume(&self, name: &str, what: &str, check: impl Fn(&Volume) -> bool) -> Volume {
        let api = self.volumes();
        eventually(what, WAIT, async || {
            api.get_opt(name).await.unwrap().filter(|v| check(v))
        })
        .await
    }
}

fn meta(name: &str) -> ObjectMeta {
    meta_in(P, name)
}

fn attached(volumes: &[(&str, bool)]) -> Vec<ServerVolume> {
    volumes
        .iter()
        .map(|(v, dot)| ServerVolume {
            volume: (*v).into(),
            device: None,
            delete_on_termination: *dot,
        })
        .collect()
}

fn scheduled(v: &Volume) -> Option<&Condition> {
    Condition::find(&v.status.conditions, SCHEDULED)
}

/// How long a state may take to appear.
const WAIT: Duration = Duration::from_secs(20);

use StorageBackend::{File, Lvm};

#[tokio::test(flavor = "multi_thread")]
async fn volumes_go_to_the_roomiest_pool_of_their_backend() {
    let mut h = harness().await;
    h.node(
        "node-a",
        4096,
        &[("/var/vols", File, 100), ("vg-a", Lvm, 10)],
    )
    .await;
    h.node(
        "node-b",
        4096,
        &[("vg-b", Lvm, 50), ("/srv/vols", File, 20)],
    )
    .await;
    h.start_volume_controller();
    h.volume("fast", 20, Some("lvm")).await;
    h.volume("plain", 5, None).await;
    let fast = h
        .wait_volume("fast", "fast placed", |v| v.status.node.is_some())
        .await;
    assert_eq!(fast.status.node.as_deref(), Some("node-b"));
    assert_eq!(fast.status.pool.as_deref(), Some("vg-b"));
    assert_eq!(fast.status.phase, Some(VolumePhase::Creating));
    let cond = scheduled(&fast).unwrap();
    assert_eq!(cond.status, ConditionStatus::True);
    assert!(cond.message.contains("vg-b"), "{}", cond.message);
    let plain = h
        .wait_volume("plain", "plain placed", |v| v.status.node.is_some())
        .await;
    assert_eq!(plain.status.node.as_deref(), Some("node-a"));
    assert_eq!(plain.status.pool.as_deref(), Some("/var/vols"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_volume_that_fits_nowhere_says_why() {
    let mut h = harness().await;
    h.node("node-a", 4096, &[("vg-a", Lvm, 10)]).await;
    h.node("node-b", 4096, &[("/var/vols", File, 500)]).await;
    h.start_volume_controller();
    h.volume("huge", 100, Some("lvm")).await;
    h.volume("odd", 1, Some("ceph")).await;
    let huge = h
        .wait_volume("huge", "huge refused", |v| scheduled(v).is_some())
        .await;
    assert_eq!(huge.status.node, None);
    assert_eq!(huge.status.phase, Some(VolumePhase::Creating));
    let cond = scheduled(&huge).unwrap();
    assert_eq!(cond.status, ConditionStatus::False);
    assert_eq!(cond.reason, volumes::REASON_NO_POOL);
    assert_eq!(
        cond.message,
        "no storage pool can hold 100 GiB of lvm (0/2 nodes fit): node-a: pool vg-a has 10 \
         GiB free; node-b: no lvm pool"
    );
    let odd = h
        .wait_volume("odd", "odd refused", |v| scheduled(v).is_some())
        .await;
    assert_eq!(
        scheduled(&odd).unwrap().reason,
        volumes::REASON_UNKNOWN_TYPE
    );
    // Room appears: the volume is placed (woken by the node's change).
    h.node("node-c", 4096, &[("vg-c", Lvm, 200)]).await;
    let huge = h
        .wait_volume("huge", "huge placed", |v| v.status.node.is_some())
        .await;
    assert_eq!(huge.status.node.as_deref(), Some("node-c"));
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_volumes_never_overbook_a_pool() {
    let mut h = harness().await;
    // 2 × 50 GiB of LVM; 24 volumes of 5 GiB ask for 120.
    h.node("node-a", 4096, &[("vg", Lvm, 50)]).await;
    h.node("node-b", 4096, &[("vg", Lvm, 50)]).await;
    h.start_volume_controller();
    let creates = (0..24).map(|i| {
        let api = h.volumes();
        async move {
            api.create(&Volume::new(
                meta(&format!("vol-{i:02}")),
                VolumeSpec {
                    size: 5,
                    volume_type: Some("lvm".into()),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
        }
    });
    futures::future::join_all(creates).await;
    let api = h.volumes();
    let all = eventually("every volume decided", WAIT, async || {
        let list = api.list_all(None).await.ok()?.items;
        list.iter().all(|v| scheduled(v).is_some()).then_some(list)
    })
    .await;
    let mut per_pool: BTreeMap<(String, String), u64> = BTreeMap::new();
    for v in &all {
        if let (Some(node), Some(pool)) = (&v.status.node, &v.status.pool) {
            *per_pool.entry((node.clone(), pool.clone())).or_default() += v.spec.size;
        }
    }
    for (pool, gib) in &per_pool {
        assert!(*gib <= 50, "{pool:?} holds {gib} GiB > 50 GiB free");
    }
    let placed: u64 = per_pool.values().sum();
    assert_eq!(placed, 100, "every GiB that fits is used: {per_pool:?}");
    let refused = all.iter().filter(|v| v.status.node.is_none()).count();
    assert_eq!(refused, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_servers_volume_waits_for_the_server_and_follows_it() {
    let mut h = harness().await;
    h.node("node-a", 4096, &[("/var/vols", File, 500)]).await;
    h.node("node-b", 4096, &[("/var/vols", File, 20)]).await;
    h.start_volume_controller();
    h.server(
        "web",
        ServerSpec {
            flavor: "m1".into(),
            image: Some("img".into()),
            volumes: attached(&[("data", false), ("big", false)]),
            ..Default::default()
        },
    )
    .await;
    h.volume("data", 10, None).await;
    let data = h
        .wait_volume("data", "data waiting", |v| scheduled(v).is_some())
        .await;
    let cond = scheduled(&data).unwrap();
    assert_eq!(cond.status, ConditionStatus::False);
    assert_eq!(cond.reason, volumes::REASON_WAITING);
    assert!(cond.message.contains("server web"), "{}", cond.message);
    assert_eq!(data.status.node, None);
    // The server is bound to the smaller node: its volumes go there, not to the roomiest.
    let mut web = h.servers().get("web").await.unwrap();
    web.spec.node_name = Some("node-b".into());
    h.servers().replace(&web).await.unwrap();
    let data = h
        .wait_volume("data", "data placed", |v| v.status.node.is_some())
        .await;
    assert_eq!(data.status.node.as_deref(), Some("node-b"));
    // Made once data's placement is counted, so the refusal's numbers are deterministic.
    h.volume("big", 30, None).await;
    let big = h
        .wait_volume("big", "big refused on node-b", |v| {
            scheduled(v).is_some_and(|c| c.reason == volumes::REASON_NO_POOL)
        })
        .await;
    assert_eq!(big.status.node, None);
    assert_eq!(
        scheduled(&big).unwrap().message,
        "the volume must be on node node-b (server web runs there) but it can't hold 30 GiB \
         of file (0/1 nodes fit): node-b: pool /var/vols has 10 GiB free"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_goes_to_its_placed_volumes() {
    let mut h = harness().await;
    h.flavor("m1", 1024).await;
    // node-a has more RAM (the scheduler would pick it), node-b more storage (the volume
    // controller picks it).
    h.node("node-a", 16384, &[("/var/vols", File, 20)]).await;
    h.node("node-b", 4096, &[("/var/vols", File, 500)]).await;
    h.start_volume_controller();
    h.start_scheduler();
    h.volume("root", 10, None).await;
    h.volume("elsewhere", 10, None).await;
    h.wait_volume("root", "root placed", |v| v.status.node.is_some())
        .await;
    // Pin "elsewhere" to node-a by hand (as if placed for an earlier server).
    let mut elsewhere = h
        .wait_volume("elsewhere", "placed", |v| v.status.node.is_some())
        .await;
    elsewhere.status.node = Some("node-a".into());
    h.volumes().replace_status(&elsewhere).await.unwrap();

    h.server(
        "db",
        ServerSpec {
            flavor: "m1".into(),
            boot_volume: Some("root".into()),
            volumes: attached(&[("root", true)]),
            ..Default::default()
        },
    )
    .await;
    h.server(
        "split",
        ServerSpec {
            flavor: "m1".into(),
            boot_volume: Some("root".into()),
            volumes: attached(&[("elsewhere", false)]),
            ..Default::default()
        },
    )
    .await;
    let servers = h.servers();
    let db = eventually("db bound", WAIT, async || {
        servers
            .get("db")
            .await
            .ok()
            .filter(|s| s.spec.node_name.is_some())
    })
    .await;
    assert_eq!(db.spec.node_name.as_deref(), Some("node-b"));
    let split = eventually("split refused", WAIT, async || {
        servers.get("split").await.ok().filter(|s| {
            Condition::find(&s.status.conditions, "Scheduled")
                .is_some_and(|c| c.status == ConditionStatus::False)
        })
    })
    .await;
    assert_eq!(split.spec.node_name, None);
    let message = &Condition::find(&split.status.conditions, "Scheduled")
        .unwrap()
        .message;
    assert_eq!(
        message,
        "0/2 nodes are available: 2 can't hold all the server's volumes, which are on \
         different nodes (elsewhere on node-a, root on node-b)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_on_termination_volumes_go_with_the_server_others_stay() {
    let mut h = harness().await;
    h.node("node-a", 4096, &[("/var/vols", File, 500)]).await;
    h.start_volume_controller();
    for v in ["root", "scratch", "keep"] {
        h.volume(v, 1, None).await;
    }
    h.server(
        "web",
        ServerSpec {
            flavor: "m1".into(),
            boot_volume: Some("root".into()),
            volumes: attached(&[("root", true), ("scratch", true), ("keep", false)]),
            ..Default::default()
        },
    )
    .await;
    let servers = h.servers();
    eventually("the finalizer", WAIT, async || {
        let s = servers.get("web").await.ok()?;
        s.metadata
            .finalizers
            .contains(&SERVER_FINALIZER.to_owned())
            .then_some(())
    })
    .await;
    // Bind it so its volumes are placed, as in real life.
    let mut web = servers.get("web").await.unwrap();
    web.spec.node_name = Some("node-a".into());
    servers.replace(&web).await.unwrap();
    servers.delete("web").await.unwrap();
    eventually("the server gone", WAIT, async || {
        servers
            .get_opt("web")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    let volumes = h.volumes();
    let names = eventually("deleteOnTermination volumes gone", WAIT, async || {
        let names: Vec<String> = volumes
            .list_all(None)
            .await
            .ok()?
            .items
            .into_iter()
            .map(|v| v.metadata.name)
            .collect();
        (names.len() == 1).then_some(names)
    })
    .await;
    assert_eq!(names, ["keep"]);
    // A server that no longer asks for deleteOnTermination loses the finalizer.
    h.server(
        "app",
        ServerSpec {
            flavor: "m1".into(),
            image: Some("img".into()),
            volumes: attached(&[("keep", true)]),
            ..Default::default()
        },
    )
    .await;
    let app = eventually("the finalizer on app", WAIT, async || {
        let s = servers.get("app").await.ok()?;
        s.metadata
            .finalizers
            .contains(&SERVER_FINALIZER.to_owned())
            .then_some(s)
    })
    .await;
    let mut app = app;
    app.spec.volumes = attached(&[("keep", false)]);
    servers.replace(&app).await.unwrap();
    eventually("the finalizer removed", WAIT, async || {
        let s = servers.get("app").await.ok()?;
        s.metadata.finalizers.is_empty().then_some(())
    })
    .await;
    servers.delete("app").await.unwrap();
    assert!(servers.get_opt("app").await.unwrap().is_none());
    assert!(volumes.get_opt("keep").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_volume_in_use_is_refused_naming_the_servers() {
    let h = harness().await;
    h.volume("data", 1, None).await;
    h.volume("root", 1, None).await;
    h.server(
        "web",
        ServerSpec {
            flavor: "m1".into(),
            image: Some("img".into()),
            volumes: attached(&[("data", false)]),
            ..Default::default()
        },
    )
    .await;
    h.server(
        "db",
        ServerSpec {
            flavor: "m1".into(),
            boot_volume: Some("root".into()),
            ..Default::default()
        },
    )
    .await;
    let err = h.volumes().delete("data").await.unwrap_err();
    assert_eq!(err.code(), Some(409));
    assert_eq!(err.reason(), Some("InUse"));
    assert!(err.to_string().contains("\"web\""), "{err}");
    let err = h.volumes().delete("root").await.unwrap_err();
    assert!(err.to_string().contains("\"db\""), "{err}");
    // Once the server is gone the volume can be deleted.
    h.servers().delete("web").await.unwrap();
    h.volumes().delete("data").await.unwrap();
    assert!(h.volumes().get_opt("data").await.unwrap().is_none());
}

/// A volume made for `server` (as the compute API makes a new boot volume).
async fn volume_for(h: &Harness, name: &str, server: &str) -> Volume {
    let mut m = meta(name);
    m.annotations
        .insert(CREATED_FOR_SERVER_ANNOTATION.into(), server.into());
    h.volumes()
        .create(&Volume::new(
            m,
            VolumeSpec {
                size: 1,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_volume_made_for_a_server_that_never_came_is_deleted_after_the_grace() {
    let mut h = harness().await;
    h.node("node-a", 4096, &[("/var/vols", File, 500)]).await;
    h.start_volume_controller_with_grace(Duration::from_secs(2));
    let orphan = volume_for(&h, "orphan", "never-made").await;
    let adopted = volume_for(&h, "adopted", "web").await;
    h.volume("plain", 1, None).await;
    h.server(
        "web",
        ServerSpec {
            flavor: "m1".into(),
            boot_volume: Some("adopted".into()),
            ..Default::default()
        },
    )
    .await;
    let kept = h
        .wait_volume("adopted", "the annotation dropped", |v| {
            !v.metadata
                .annotations
                .contains_key(CREATED_FOR_SERVER_ANNOTATION)
        })
        .await;
    assert_eq!(kept.metadata.uid, adopted.metadata.uid);
    let volumes = h.volumes();
    eventually("the orphan deleted", WAIT, async || {
        volumes
            .get_opt("orphan")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    // Its event says why.
    let events = Api::<cirrus_crds::Event>::in_project(h.client.clone(), P);
    eventually("an OrphanDeleted event for the orphan", WAIT, async || {
        let events = events.list_all(None).await.ok()?;
        events
            .items
            .iter()
            .any(|e| {
                e.spec.reason == "OrphanDeleted"
                    && e.spec.involved_object.uid == orphan.metadata.uid
            })
            .then_some(())
    })
    .await;
    // The server's volume and the ordinary one stay (well past the grace).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(volumes.get_opt("adopted").await.unwrap().is_some());
    assert!(volumes.get_opt("plain").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_made_within_the_grace_adopts_its_volume() {
    let mut h = harness().await;
    h.node("node-a", 4096, &[("/var/vols", File, 500)]).await;
    h.start_volume_controller_with_grace(Duration::from_secs(3));
    volume_for(&h, "root", "late").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    h.server(
        "late",
        ServerSpec {
            flavor: "m1".into(),
            image: Some("img".into()),
            volumes: attached(&[("root", false)]),
            ..Default::default()
        },
    )
    .await;
    h.wait_volume("root", "adopted", |v| {
        !v.metadata
            .annotations
            .contains_key(CREATED_FOR_SERVER_ANNOTATION)
    })
    .await;
    // Deleting the server later does not take the volume (no deleteOnTermination).
    h.servers().delete("late").await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(h.volumes().get_opt("root").await.unwrap().is_some());
}
