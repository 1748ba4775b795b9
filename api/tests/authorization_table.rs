//! The table-driven authorization test: every row is a request (a route of the native API or
//! of an OpenStack service, and what it does: read, spec write, status write, a reserved
//! field), every column a caller — anonymous, a reader of project `alpha`, a member of
//! `alpha`, a member of `beta`, the cloud admin, the node agent of the host the fixtures are
//! bound to (`hv-1`) and one of another host (`hv-2`) — and every cell the status code the
//! API must answer.
//!
//! Writes are `dryRun=All` where the route has it, so the fixtures stay as they are and every
//! cell sees the same world; admission and authorization run in full on a dry run.
//!
//! A new route gets its rows here.

use cirrus_auth::Role;
use cirrus_store::objects::Part;
use cirrus_test_utils::{TestApi, client_with_token};
use serde_json::{Value, json};

const ALPHA: &str = "alpha";
const BETA: &str = "beta";

/// The callers, in column order.
const CALLERS: [&str; 7] = [
    "anonymous",
    "reader-alpha",
    "member-alpha",
    "member-beta",
    "admin",
    "node-hv-1",
    "node-hv-2",
];

/// What a row sends.
#[derive(Clone, Debug)]
enum Req {
    Get(String),
    /// Merge patch.
    Patch(String, Value),
    Post(String, Value),
    Put(String, Value),
    Delete(String),
}

/// One row: a name, the request, the expected status per caller (CALLERS order).
struct Row {
    what: &'static str,
    req: Req,
    expect: [u16; 7],
}

fn kind(plural: &str) -> &'static cirrus_crds::KindInfo {
    cirrus_crds::kind_by_plural(plural).unwrap()
}

/// Creates the fixtures through the store (status included, as controllers and nodes write
/// it) and returns the uids the OpenStack rows address.
async fn fixtures(api: &TestApi) -> Value {
    let store = &api.store;
    let put = |plural: &'static str, project: Option<&'static str>, object: Value| {
        let store = store.clone();
        async move {
            let created = store
                .create(kind(plural), project, object.clone(), false)
                .await
                .unwrap_or_else(|e| panic!("fixture {plural}: {e}"));
            if let Some(status) = object.get("status") {
                let name = created["metadata"]["name"].as_str().unwrap().to_string();
                store
                    .patch(
                        kind(plural),
                        project,
                        &name,
                        &json!({ "status": status }),
                        Part::Status,
                        false,
                    )
                    .await
                    .unwrap_or_else(|e| panic!("fixture {plural} status: {e}"));
            }
            created["metadata"]["uid"].as_str().unwrap().to_string()
        }
    };
    for node in ["hv-1", "hv-2"] {
        put(
            "nodes",
            None,
            json!({"metadata": {"name": node}, "spec": {}, "status": {"agentEndpoint": "http://127.0.0.1:9"}}),
        )
        .await;
    }
    put(
        "flavors",
        None,
        json!({"metadata": {"name": "m1"}, "spec": {"vcpus": 1, "ram": 512, "disk": 1}}),
    )
    .await;
    let image = put(
        "images",
        Some(ALPHA),
        json!({"metadata": {"name": "img"}, "spec": {"diskFormat": "raw", "containerFormat": "bare", "properties": {"kernel_id": "kern"}},
               "status": {"phase": "active", "size": 4, "osHashAlgo": "sha256", "osHashValue": "ab"}}),
    )
    .await;
    put(
        "images",
        Some(ALPHA),
        json!({"metadata": {"name": "kern"}, "spec": {"diskFormat": "aki", "containerFormat": "aki"}}),
    )
    .await;
    let network = put(
        "networks",
        Some(ALPHA),
        json!({"metadata": {"name": "net"}, "spec": {}}),
    )
    .await;
    put(
        "ports",
        Some(ALPHA),
        json!({"metadata": {"name": "port"}, "spec": {"network": "net", "bindingHost": "hv-1"}}),
    )
    .await;
    // Alpha's network shared with every project (an admin shared it), and one kept private
    // (`net` is shared by a Neutron row below).
    let private = put(
        "networks",
        Some(ALPHA),
        json!({"metadata": {"name": "priv"}, "spec": {}}),
    )
    .await;
    let public = put(
        "networks",
        Some(ALPHA),
        json!({"metadata": {"name": "pub"}, "spec": {"shared": true}}),
    )
    .await;
    let server = put(
        "servers",
        Some(ALPHA),
        json!({"metadata": {"name": "srv"}, "spec": {"flavor": "m1", "image": "img", "nodeName": "hv-1"}}),
    )
    .await;
    let volume = put(
        "volumes",
        Some(ALPHA),
        json!({"metadata": {"name": "vol"}, "spec": {"size": 1}, "status": {"node": "hv-1", "phase": "available"}}),
    )
    .await;
    let shared = put(
        "images",
        Some(ALPHA),
        json!({"metadata": {"name": "shr"}, "spec": {"visibility": "shared", "members": [BETA], "diskFormat": "raw", "containerFormat": "bare"}}),
    )
    .await;
    json!({"image": image, "shared": shared, "network": network, "public": public, "private": private, "server": server, "volume": volume})
}

async fn tokens(api: &TestApi) -> Vec<Option<String>> {
    let reader = api.user_token("reader-a", ALPHA, Role::Reader).await;
    let member = api.user_token("member-a", ALPHA, Role::Member).await;
    let other = api.user_token("member-b", BETA, Role::Member).await;
    let mut out = vec![
        None,
        Some(reader),
        Some(member),
        Some(other),
        Some(api.admin_token.clone()),
    ];
    for node in ["hv-1", "hv-2"] {
        let user = cirrus_api::identity::bootstrap::ensure_user(
            &api.store,
            &format!("node-{node}"),
            "pw",
            Some(node),
        )
        .await
        .unwrap();
        out.push(Some(api.identity.mint(&user, None, None).unwrap()));
    }
    out
}

fn rows(ids: &Value) -> Vec<Row> {
    let v1 = "/apis/cirrus.dev/v1";
    let a = format!("{v1}/projects/{ALPHA}");
    let b = format!("{v1}/projects/{BETA}");
    let dry = "?dryRun=All";
    let id = |k: &str| ids[k].as_str().unwrap().to_string();
    use Req::*;
    // anon, reader-A, member-A, member-B, admin, node-1, node-2
    #[rustfmt::skip]
    let rows = vec![
        // Project-scoped reads.
        Row { what: "get server", req: Get(format!("{a}/servers/srv")), expect: [401, 200, 200, 404, 200, 200, 404] },
        Row { what: "list servers in project", req: Get(format!("{a}/servers")), expect: [401, 200, 200, 404, 200, 403, 403] },
        Row { what: "list servers of own node", req: Get(format!("{v1}/servers?fieldSelector=spec.nodeName%3Dhv-1")), expect: [401, 200, 200, 200, 200, 200, 403] },
        Row { what: "get volume", req: Get(format!("{a}/volumes/vol")), expect: [401, 200, 200, 404, 200, 200, 404] },
        Row { what: "get port", req: Get(format!("{a}/ports/port")), expect: [401, 200, 200, 404, 200, 200, 404] },
        Row { what: "get network", req: Get(format!("{a}/networks/net")), expect: [401, 200, 200, 404, 200, 200, 200] },
        Row { what: "get private image", req: Get(format!("{a}/images/img")), expect: [401, 200, 200, 404, 200, 200, 404] },
        Row { what: "get kernel of a placed server's image", req: Get(format!("{a}/images/kern")), expect: [401, 200, 200, 404, 200, 200, 404] },
        // Spec writes.
        Row { what: "patch server spec", req: Patch(format!("{a}/servers/srv{dry}"), json!({"spec": {"powerState": "Stopped"}})), expect: [401, 403, 200, 404, 200, 403, 404] },
        Row { what: "patch server labels", req: Patch(format!("{a}/servers/srv{dry}"), json!({"metadata": {"labels": {"x": "y"}}})), expect: [401, 403, 200, 404, 200, 200, 404] },
        Row { what: "create server", req: Post(format!("{a}/servers{dry}"), json!({"metadata": {"name": "new"}, "spec": {"flavor": "m1", "image": "img"}})), expect: [401, 403, 201, 404, 201, 403, 403] },
        Row { what: "delete server", req: Delete(format!("{a}/servers/srv{dry}")), expect: [401, 403, 200, 404, 200, 403, 403] },
        // Status writes: controllers (admin) and the bound node only.
        Row { what: "patch server status", req: Patch(format!("{a}/servers/srv/status{dry}"), json!({"status": {"node": "hv-1"}})), expect: [401, 403, 403, 404, 200, 200, 404] },
        Row { what: "patch image status", req: Patch(format!("{a}/images/img/status{dry}"), json!({"status": {"osHashValue": "cd"}})), expect: [401, 403, 403, 404, 200, 403, 403] },
        Row { what: "patch volume status", req: Patch(format!("{a}/volumes/vol/status{dry}"), json!({"status": {"node": "hv-2"}})), expect: [401, 403, 403, 404, 200, 200, 404] },
        Row { what: "patch port status", req: Patch(format!("{a}/ports/port/status{dry}"), json!({"status": {"macAddress": "fa:16:3e:00:00:09"}})), expect: [401, 403, 403, 404, 200, 200, 404] },
        Row { what: "port status with a bad MAC", req: Patch(format!("{a}/ports/port/status{dry}"), json!({"status": {"macAddress": "fa:16:3e:00:00:09\ndhcp-script=/x"}})), expect: [401, 403, 403, 404, 400, 400, 404] },
        // Admin-only fields.
        Row { what: "set server nodeName", req: Patch(format!("{a}/servers/srv{dry}"), json!({"spec": {"nodeName": "hv-2"}})), expect: [401, 403, 403, 404, 200, 403, 404] },
        Row { what: "make image public", req: Patch(format!("{a}/images/img{dry}"), json!({"spec": {"visibility": "public"}})), expect: [401, 403, 403, 404, 200, 403, 403] },
        Row { what: "share image", req: Patch(format!("{a}/images/img{dry}"), json!({"spec": {"visibility": "shared"}})), expect: [401, 403, 200, 404, 200, 403, 403] },
        Row { what: "share network", req: Patch(format!("{a}/networks/net{dry}"), json!({"spec": {"shared": true}})), expect: [401, 403, 403, 404, 200, 403, 403] },
        Row { what: "make network external", req: Patch(format!("{a}/networks/net{dry}"), json!({"spec": {"external": true}})), expect: [401, 403, 403, 404, 200, 403, 403] },
        Row { what: "network segmentation", req: Patch(format!("{a}/networks/net{dry}"), json!({"spec": {"segmentation": {"type": "vlan", "id": 7}}})), expect: [401, 403, 403, 404, 200, 403, 403] },
        Row { what: "rebind port", req: Patch(format!("{a}/ports/port{dry}"), json!({"spec": {"bindingHost": "hv-2"}})), expect: [401, 403, 403, 404, 200, 403, 404] },
        Row { what: "create port bound to a host", req: Post(format!("{a}/ports{dry}"), json!({"metadata": {"name": "p2"}, "spec": {"network": "net", "bindingHost": "hv-1"}})), expect: [401, 403, 403, 404, 201, 403, 403] },
        // Immutable once the image has data: for everyone.
        Row { what: "image diskFormat after upload", req: Patch(format!("{a}/images/img{dry}"), json!({"spec": {"diskFormat": "qcow2"}})), expect: [401, 403, 400, 404, 400, 403, 403] },
        Row { what: "image diskFormat by PUT", req: Put(format!("{a}/images/img{dry}"), json!({"metadata": {"name": "img"}, "spec": {"diskFormat": "qcow2", "containerFormat": "bare"}})), expect: [401, 403, 400, 404, 400, 403, 403] },
        // Cluster-scoped.
        Row { what: "get flavor", req: Get(format!("{v1}/flavors/m1")), expect: [401, 200, 200, 200, 200, 200, 200] },
        Row { what: "create flavor", req: Post(format!("{v1}/flavors{dry}"), json!({"metadata": {"name": "m2"}, "spec": {"vcpus": 1, "ram": 1, "disk": 1}})), expect: [401, 403, 403, 403, 201, 403, 403] },
        Row { what: "get node", req: Get(format!("{v1}/nodes/hv-1")), expect: [401, 404, 404, 404, 200, 200, 200] },
        Row { what: "list nodes", req: Get(format!("{v1}/nodes")), expect: [401, 403, 403, 403, 200, 200, 200] },
        Row { what: "uncordon own node", req: Patch(format!("{v1}/nodes/hv-1{dry}"), json!({"spec": {"unschedulable": false, "cpuAllocationRatio": 64.0}})), expect: [401, 404, 404, 404, 200, 403, 403] },
        Row { what: "node status", req: Patch(format!("{v1}/nodes/hv-1/status{dry}"), json!({"status": {"agentEndpoint": "http://127.0.0.1:10"}})), expect: [401, 404, 404, 404, 200, 200, 403] },
        // Restricted tokens: a node mints only its own metadata token; the console check-back
        // answers only the API's console token (api/tests/restricted_tokens.rs has those).
        Row { what: "metadata token of own node", req: Post(format!("{v1}/nodes/hv-1/metadatatoken"), json!({})), expect: [401, 403, 403, 403, 403, 201, 403] },
        Row { what: "metadata token of a flavor", req: Post(format!("{v1}/flavors/m1/metadatatoken"), json!({})), expect: [401, 404, 404, 404, 404, 404, 404] },
        Row { what: "console access without a console token", req: Get(format!("{a}/servers/srv/consoleaccess")), expect: [401, 403, 403, 403, 403, 403, 403] },
        Row { what: "list users", req: Get(format!("{v1}/users")), expect: [401, 403, 403, 403, 200, 403, 403] },
        Row { what: "list role bindings", req: Get(format!("{v1}/rolebindings")), expect: [401, 403, 403, 403, 200, 403, 403] },
        // The OpenStack front end: the same objects, the same answers.
        Row { what: "nova show server", req: Get(format!("/compute/v2.1/servers/{}", id("server"))), expect: [401, 200, 200, 404, 200, 401, 401] },
        Row { what: "neutron show network", req: Get(format!("/network/v2.0/networks/{}", id("network"))), expect: [401, 200, 200, 404, 200, 401, 401] },
        Row { what: "neutron share network", req: Put(format!("/network/v2.0/networks/{}", id("network")), json!({"network": {"shared": true}})), expect: [401, 403, 403, 404, 200, 401, 401] },
        Row { what: "glance show image", req: Get(format!("/image/v2/images/{}", id("image"))), expect: [401, 200, 200, 404, 200, 404, 404] },
        // Glance members of a shared image (alpha's, offered to beta): the owner side sees
        // them all, the member its own; only the member answers; only the owner withdraws.
        Row { what: "glance list members", req: Get(format!("/image/v2/images/{}/members", id("shared"))), expect: [401, 200, 200, 200, 200, 404, 404] },
        Row { what: "glance show member", req: Get(format!("/image/v2/images/{}/members/{BETA}", id("shared"))), expect: [401, 200, 200, 200, 200, 404, 404] },
        Row { what: "glance add member to private", req: Post(format!("/image/v2/images/{}/members", id("image")), json!({"member": "gamma"})), expect: [401, 403, 403, 404, 403, 404, 404] },
        Row { what: "glance remove a non-member", req: Delete(format!("/image/v2/images/{}/members/gamma", id("shared"))), expect: [401, 403, 404, 403, 404, 404, 404] },
        Row { what: "glance answer for beta", req: Put(format!("/image/v2/images/{}/members/{BETA}", id("shared")), json!({"status": "rejected"})), expect: [401, 403, 403, 200, 403, 404, 404] },
        Row { what: "list beta's image answers", req: Get(format!("{v1}/projects/{BETA}/imagemembers")), expect: [401, 404, 404, 200, 200, 403, 403] },
        // (the answer row above made it)
        Row { what: "get beta's answer", req: Get(format!("{v1}/projects/{BETA}/imagemembers/{}", id("shared"))), expect: [401, 404, 404, 200, 200, 403, 403] },
        Row { what: "answer for beta natively", req: Post(format!("{v1}/projects/{BETA}/imagemembers{dry}"), json!({"metadata": {"name": id("shared")}, "spec": {"memberStatus": "accepted"}})), expect: [401, 404, 404, 201, 201, 403, 403] },
        Row { what: "cinder show volume", req: Get(format!("/volume/v3/{ALPHA}/volumes/{}", id("volume"))), expect: [401, 200, 200, 404, 200, 403, 403] },
        // Keystone (no dry run here: its writes are refused ones or bodies that fail).
        Row { what: "keystone list projects", req: Get("/identity/v3/projects".into()), expect: [401, 403, 403, 403, 200, 403, 403] },
        Row { what: "keystone show own project", req: Get(format!("/identity/v3/projects/{ALPHA}")), expect: [401, 200, 200, 403, 200, 403, 403] },
        Row { what: "keystone show a user", req: Get("/identity/v3/users/member-a".into()), expect: [401, 404, 200, 404, 200, 404, 404] },
        Row { what: "keystone list role assignments", req: Get("/identity/v3/role_assignments".into()), expect: [401, 403, 403, 403, 200, 403, 403] },
        Row { what: "keystone create project (bad name)", req: Post("/identity/v3/projects".into(), json!({"project": {"name": " "}})), expect: [401, 403, 403, 403, 400, 403, 403] },
        Row { what: "keystone rename project (bad name)", req: Patch(format!("/identity/v3/projects/{ALPHA}"), json!({"project": {"name": ""}})), expect: [401, 403, 403, 403, 400, 403, 403] },
        Row { what: "keystone grant an unknown role", req: Put(format!("/identity/v3/projects/{ALPHA}/users/member-b/roles/owner"), json!({})), expect: [401, 403, 403, 403, 404, 403, 403] },
        Row { what: "keystone delete the admin project", req: Delete("/identity/v3/projects/admin".into()), expect: [401, 403, 403, 403, 403, 403, 403] },
        Row { what: "keystone change member-a's password (wrong original)", req: Post("/identity/v3/users/member-a/password".into(), json!({"user": {"original_password": "wrong", "password": "new"}})), expect: [401, 403, 401, 403, 403, 403, 403] },
        // Shared networks: alpha's `pub` is shared, `net` is not. Another project's ports
        // name the owner in networkProject; admission refuses a private one for everyone.
        Row { what: "get another project's shared network", req: Get(format!("{a}/networks/pub")), expect: [401, 200, 200, 200, 200, 200, 200] },
        Row { what: "port on another project's shared network", req: Post(format!("{b}/ports{dry}"), json!({"metadata": {"name": "on-pub"}, "spec": {"network": "pub", "networkProject": ALPHA}})), expect: [401, 404, 404, 201, 201, 403, 403] },
        Row { what: "port on another project's private network", req: Post(format!("{b}/ports{dry}"), json!({"metadata": {"name": "on-priv"}, "spec": {"network": "priv", "networkProject": ALPHA}})), expect: [401, 404, 404, 400, 400, 403, 403] },
        Row { what: "server on another project's private network", req: Post(format!("{b}/servers{dry}"), json!({"metadata": {"name": "s"}, "spec": {"flavor": "m1", "image": "img", "networks": [{"network": "priv", "networkProject": ALPHA}]}})), expect: [401, 404, 404, 400, 400, 403, 403] },
        Row { what: "neutron port on a shared network", req: Post("/network/v2.0/ports".into(), json!({"port": {"network_id": id("public")}})), expect: [401, 403, 201, 201, 201, 401, 401] },
        Row { what: "neutron port on another's private network", req: Post("/network/v2.0/ports".into(), json!({"port": {"network_id": id("private")}})), expect: [401, 403, 201, 404, 201, 401, 401] },
        // (the row above gave `pub` ports of beta and of the admin's project)
        Row { what: "unshare a network others use", req: Patch(format!("{a}/networks/pub{dry}"), json!({"spec": {"shared": false}})), expect: [401, 403, 403, 404, 409, 403, 403] },
        Row { what: "delete a network others use", req: Delete(format!("{a}/networks/pub{dry}")), expect: [401, 403, 409, 404, 409, 403, 403] },
        Row { what: "cinder reset status", req: Post(format!("/volume/v3/{ALPHA}/volumes/{}/action", id("volume")), json!({"os-reset_status": {"status": "available"}})), expect: [401, 403, 403, 404, 202, 403, 403] },
    ];
    rows
}

fn send(client: &reqwest::Client, base: &str, req: &Req) -> reqwest::RequestBuilder {
    match req {
        Req::Get(p) => client.get(format!("{base}{p}")),
        Req::Delete(p) => client.delete(format!("{base}{p}")),
        Req::Post(p, body) => client.post(format!("{base}{p}")).json(body),
        Req::Put(p, body) => client.put(format!("{base}{p}")).json(body),
        Req::Patch(p, body) => {
            let ct = if p.starts_with("/image/") {
                "application/openstack-images-v2.1-json-patch"
            } else {
                "application/merge-patch+json"
            };
            client
                .patch(format!("{base}{p}"))
                .header("content-type", ct)
                .body(body.to_string())
        }
    }
}

#[tokio::test]
async fn every_route_times_every_caller() {
    let api = TestApi::start().await;
    let ids = fixtures(&api).await;
    let tokens = tokens(&api).await;
    let clients: Vec<reqwest::Client> = tokens
        .iter()
        .map(|t| match t {
            Some(t) => client_with_token(t),
            None => reqwest::Client::new(),
        })
        .collect();
    let rows = rows(&ids);
    let mut wrong = Vec::new();
    for row in &rows {
        for (column, client) in clients.iter().enumerate() {
            let response = send(client, &api.base_url, &row.req)
                .send()
                .await
                .expect("the API answers");
            let got = response.status().as_u16();
            if got != row.expect[column] {
                let body = response.text().await.unwrap_or_default();
                wrong.push(format!(
                    "{:<32} {:<13} expected {} got {got}: {}",
                    row.what,
                    CALLERS[column],
                    row.expect[column],
                    body.chars().take(160).collect::<String>()
                ));
            }
        }
    }
    println!("{} rows x {} callers", rows.len(), CALLERS.len());
    assert!(
        wrong.is_empty(),
        "{} wrong cells:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    // Nothing a dry run judged was written.
    let srv = api
        .store
        .get(kind("servers"), Some(ALPHA), "srv")
        .await
        .unwrap();
    assert_eq!(srv["spec"]["nodeName"], "hv-1");
    assert!(srv["metadata"]["deletionTimestamp"].is_null());
}
