//! The server controller: the watch of the servers bound to this node, the related watches
//! that wake them (their ports, their volumes) and feed the reconciler's caches
//! ([`super::caches`]), and [`run`].

use std::sync::Arc;

use cirrus_client::Api;
use cirrus_crds::{Flavor, Network, Port, Server, Subnet, Volume};
use cirrus_runtime::reflector::reflector;
use cirrus_runtime::{Config, Controller, ObjectRef, watcher};

use super::context::{ServerContext, lock};
use super::{error_policy, reconcile};

/// Runs the server controller for `ctx`'s node (servers with `spec.nodeName=<node>`) until
/// `shutdown` completes.
pub async fn run(
    ctx: Arc<ServerContext>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let Some(writers) = lock(&ctx.cache_writers).take() else {
        tracing::error!("the server controller of this context runs already");
        return;
    };
    let everything = watcher::Config::default;
    let api = Api::<Server>::all(ctx.client.clone());
    let controller = Controller::new(
        api,
        watcher::Config::fields(format!("spec.nodeName={}", ctx.node_name)),
    )
    .with_config(Config {
        concurrency: ctx.config.concurrency,
        resync: Some(ctx.config.resync),
    })
    .graceful_shutdown_on(shutdown);
    // A port bound here that changes (gets its address, is attached) wakes its server: the
    // port's deviceId is the server's uid.
    let servers = controller.store();
    let controller = controller.watches_stream(
        reflector(
            writers.ports,
            watcher::watcher(
                Api::<Port>::all(ctx.client.clone()),
                watcher::Config::fields(format!("spec.bindingHost={}", ctx.node_name)),
            ),
        ),
        move |port: &Port| {
            let Some(device) = port.spec.device_id.as_deref() else {
                return Vec::new();
            };
            servers
                .list()
                .iter()
                .filter(|s| s.metadata.uid.as_deref() == Some(device))
                .map(|s| ObjectRef::from_obj(s.as_ref()))
                .collect()
        },
    );
    // A volume placed here that changes (made, available) wakes the servers that use it, and
    // those it still lists as attached (a detached volume whose report lost a race).
    let servers = controller.store();
    let controller = controller.watches_stream(
        reflector(
            writers.volumes,
            watcher::watcher(
                Api::<Volume>::all(ctx.client.clone()),
                watcher::Config::fields(format!("status.node={}", ctx.node_name)),
            ),
        ),
        move |volume: &Volume| {
            servers
                .list()
                .iter()
                .filter(|s| {
                    s.metadata.project == volume.metadata.project
                        && (s
                            .spec
                            .volumes
                            .iter()
                            .any(|v| v.volume == volume.metadata.name)
                            || s.spec.boot_volume.as_deref() == Some(volume.metadata.name.as_str())
                            || volume
                                .status
                                .attachments
                                .iter()
                                .any(|a| a.server == s.metadata.name))
                })
                .map(|s| ObjectRef::from_obj(s.as_ref()))
                .collect()
        },
    );
    // Flavors, networks and subnets only feed their caches: a server waiting on one retries.
    let controller = controller
        .watches_stream(
            reflector(
                writers.flavors,
                watcher::watcher(Api::<Flavor>::all(ctx.client.clone()), everything()),
            ),
            |_: &Flavor| Vec::new(),
        )
        .watches_stream(
            reflector(
                writers.networks,
                watcher::watcher(Api::<Network>::all(ctx.client.clone()), everything()),
            ),
            |_: &Network| Vec::new(),
        )
        .watches_stream(
            reflector(
                writers.subnets,
                watcher::watcher(Api::<Subnet>::all(ctx.client.clone()), everything()),
            ),
            |_: &Subnet| Vec::new(),
        );
    controller.run(reconcile, error_policy, ctx).await;
}
