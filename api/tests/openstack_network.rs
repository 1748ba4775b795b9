//! Neutron v2.0 over HTTP: the calls `openstack network/subnet/port/security group` and
//! openstacksdk make, against the whole API on an in-memory store. The network controller
//! does not run here: fields it fills in (MAC, addresses, port status) are written into the
//! objects' status through the store to check their rendering, and its port finalizer is
//! removed by hand where a test needs a port gone.
//!
//! Why this file is long: each test is one of Neutron's workflows the CLI and openstacksdk run
//! end to end (networks and subnets, ports, security groups, quotas) against one fixture
//! cloud.

use cirrus_auth::Role;
use cirrus_store::objects::Part;
use cirrus_test_utils::{TestApi, client_with_token};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

struct Cloud {
    api: TestApi,
}

impl Cloud {
    async fn start() -> Self {
        Self {
            api: TestApi::start().await,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/network/v2.0{path}", self.api.base_url)
    }

    async fn member(&self, user: &str, project: &str) -> Client {
        client_with_token(&self.api.user_token(user, project, Role::Member).await)
    }

    fn kind(plural: &str) -> &'static cirrus_crds::KindInfo {
        cirrus_crds::kind_by_plural(plural).unwrap()
    }

    /// The stored object of `plural` in `project` with uid `id`.
    async fn object(&self, plural: &str, project: &str, id: &str) -> Option<Value> {
        let list = self
            .api
            .store
            .list(Self::kind(plural), Some(project), &Default::default())
            .await
            .unwrap();
        list.items.into_iter().find(|o| o["metadata"]["uid"] == id)
    }

    async fn count(&self, plural: &str, project: &str) -> usize {
        self.api
            .store
            .list(Self::kind(plural), Some(project), &Default::default())
            .await
            .unwrap()
            .items
            .len()
    }
}

async fn send(req: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
    };
    (status, body)
}

fn neutron_error(body: &Value) -> (&str, &str) {
    (
        body["NeutronError"]["type"].as_str().unwrap_or_default(),
        body["NeutronError"]["message"].as_str().unwrap_or_default(),
    )
}

async fn create(c: &Cloud, http: &Client, collection: &str, key: &str, body: Value) -> Value {
    let (status, got) = send(
        http.post(c.url(&format!("/{collection}")))
            .json(&json!({ key: body })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "create {collection}: {got}");
    got[key].clone()
}

#[tokio::test]
async fn version_documents_are_anonymous() {
    let c = Cloud::start().await;
    let anonymous = Client::new();
    for path in ["/network", "/network/"] {
        let (status, body) = send(anonymous.get(format!("{}{path}", c.api.base_url))).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert_eq!(body["versions"][0]["id"], "v2.0");
        assert_eq!(body["versions"][0]["status"], "CURRENT");
        let href = body["versions"][0]["links"][0]["href"].as_str().unwrap();
        assert!(href.ends_with("/network/v2.0/"), "{href}");
    }
    for path in ["/network/v2.0", "/network/v2.0/"] {
        let (status, body) = send(anonymous.get(format!("{}{path}", c.api.base_url))).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        let collections: Vec<&str> = body["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["collection"].as_str().unwrap())
            .collect();
        assert!(collections.contains(&"networks") && collections.contains(&"security-group-rules"));
    }
    let (status, _) = send(anonymous.get(c.url("/networks"))).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the resources need a token"
    );
    let http = c.member("alice", "demo").await;
    let (status, body) = send(http.get(c.url("/extensions"))).await;
    assert_eq!(status, StatusCode::OK);
    let aliases: Vec<&str> = body["extensions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["alias"].as_str().unwrap())
        .collect();
    for wanted in [
        "security-group",
        "port-security",
        "allowed-address-pairs",
        "binding",
        "project-id",
    ] {
        assert!(aliases.contains(&wanted), "{wanted} in {aliases:?}");
    }
    let (status, _) = send(http.get(c.url("/extensions/security-group"))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = send(http.get(c.url("/extensions/router"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(neutron_error(&body).0, "ExtensionNotFound");
}

#[tokio::test]
async fn network_subnet_port_crud_filters_and_in_use_checks() {
    let c = Cloud::start().await;
    let http = c.member("alice", "demo").await;

    // `openstack network create net1` sends only the name and admin_state_up.
    let net = create(
        &c,
        &http,
        "networks",
        "network",
        json!({"name": "net1", "admin_state_up": true}),
    )
    .await;
    let net_id = net["id"].as_str().unwrap().to_string();
    assert_eq!(net["name"], "net1");
    assert_eq!(net["status"], "ACTIVE");
    assert_eq!(net["project_id"], "demo");
    assert_eq!(net["tenant_id"], "demo");
    assert_eq!(net["shared"], false);
    assert_eq!(net["router:external"], false);
    assert_eq!(net["port_security_enabled"], true);
    assert_eq!(net["subnets"], json!([]));
    assert!(
        net.get("provider:network_type").is_none(),
        "provider attributes are admin-only"
    );
    let stored = c
        .object("networks", "demo", &net_id)
        .await
        .expect("a Network object");
    assert_eq!(stored["metadata"]["name"], "net1");

    // A free-text name keeps its display name in the annotation.
    let other = create(
        &c,
        &http,
        "networks",
        "network",
        json!({"name": "My Net", "mtu": 1400, "description": "d"}),
    )
    .await;
    assert_eq!(other["name"], "My Net");
    assert_eq!(other["mtu"], 1400);
    assert_eq!(other["description"], "d");

    let (status, body) = send(http.get(c.url("/networks?name=net1"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["networks"].as_array().unwrap().len(), 1);
    assert_eq!(body["networks"][0]["id"], net_id.as_str());
    let (_, body) = send(http.get(c.url("/networks?fields=id&fields=name"))).await;
    assert_eq!(body["networks"].as_array().unwrap().len(), 2);
    assert_eq!(
        body["networks"][0].as_object().unwrap().len(),
        2,
        "fields= projects"
    );
    let (_, body) = send(http.get(c.url("/networks?shared=true"))).await;
    assert!(body["networks"].as_array().unwrap().is_empty());

    // Rename: the display name changes, the object name does not.
    let (status, body) = send(
        http.put(c.url(&format!("/networks/{net_id}")))
            .json(&json!({"network": {"name": "net-one", "admin_state_up": false}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["network"]["name"], "net-one");
    assert_eq!(body["network"]["admin_state_up"], false);
    let stored = c.object("networks", "demo", &net_id).await.unwrap();
    assert_eq!(stored["metadata"]["name"], "net1");
    assert_eq!(stored["spec"]["adminStateUp"], false);

    // `openstack subnet create --subnet-range 10.0.0.0/24 --network net1 sub1`.
    let subnet = create(
        &c,
        &http,
        "subnets",
        "subnet",
        json!({"name": "sub1", "network_id": net_id, "cidr": "10.0.0.0/24", "ip_version": 4,
               "dns_nameservers": ["10.0.0.53"]}),
    )
    .await;
    let subnet_id = subnet["id"].as_str().unwrap().to_string();
    assert_eq!(subnet["network_id"], net_id.as_str());
    assert_eq!(subnet["gateway_ip"], "10.0.0.1");
    assert_eq!(subnet["enable_dhcp"], true);
    assert_eq!(
        subnet["allocation_pools"],
        json!([{"start": "10.0.0.2", "end": "10.0.0.254"}])
    );
    assert_eq!(subnet["dns_nameservers"], json!(["10.0.0.53"]));
    let no_gw = create(
        &c,
        &http,
        "subnets",
        "subnet",
        json!({"name": "v6", "network_id": net_id, "cidr": "fd00::/64", "ip_version": 6, "gateway_ip": null}),
    )
    .await;
    assert_eq!(no_gw["gateway_ip"], Value::Null);
    assert_eq!(no_gw["ip_version"], 6);

    let (_, body) = send(http.get(c.url(&format!("/networks/{net_id}")))).await;
    let mut expected = vec![subnet_id.clone(), no_gw["id"].as_str().unwrap().to_string()];
    expected.sort();
    assert_eq!(body["network"]["subnets"], json!(expected));
    let (_, body) =
        send(http.get(c.url(&format!("/subnets?network_id={net_id}&ip_version=4")))).await;
    assert_eq!(body["subnets"].as_array().unwrap().len(), 1);
    assert_eq!(body["subnets"][0]["id"], subnet_id.as_str());
    let (_, body) = send(http.get(c.url("/subnets?cidr=fd00::/64"))).await;
    assert_eq!(body["subnets"][0]["name"], "v6");

    // Overlapping ranges on one network are refused.
    let (status, body) = send(http.post(c.url("/subnets")).json(&json!({"subnet": {
        "network_id": net_id, "cidr": "10.0.0.128/25", "ip_version": 4}})))
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(neutron_error(&body).1.contains("overlaps"), "{body}");

    // Subnet update: gateway to none, DHCP off, a name.
    let (status, body) = send(
        http.put(c.url(&format!("/subnets/{subnet_id}")))
            .json(&json!({"subnet": {"name": "sub-one", "enable_dhcp": false}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["subnet"]["name"], "sub-one");
    assert_eq!(body["subnet"]["enable_dhcp"], false);
    let (status, body) = send(
        http.put(c.url(&format!("/subnets/{subnet_id}")))
            .json(&json!({"subnet": {"cidr": "10.9.0.0/24"}})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "cidr is read-only: {body}");

    // A port with a fixed address.
    let port = create(
        &c,
        &http,
        "ports",
        "port",
        json!({"network_id": net_id, "name": "p1",
               "fixed_ips": [{"subnet_id": subnet_id, "ip_address": "10.0.0.5"}],
               "allowed_address_pairs": [{"ip_address": "10.0.0.100"}]}),
    )
    .await;
    let port_id = port["id"].as_str().unwrap().to_string();
    assert_eq!(port["network_id"], net_id.as_str());
    assert_eq!(port["status"], "DOWN");
    assert_eq!(
        port["fixed_ips"],
        json!([]),
        "addresses come from the controller"
    );
    assert_eq!(port["port_security_enabled"], true);
    assert_eq!(
        port["security_groups"].as_array().unwrap().len(),
        1,
        "the default group"
    );
    let stored = c.object("ports", "demo", &port_id).await.unwrap();
    assert_eq!(stored["spec"]["network"], "net1");
    assert_eq!(
        stored["spec"]["fixedIps"],
        json!([{"subnet": "sub1", "ipAddress": "10.0.0.5"}])
    );
    assert_eq!(
        stored["metadata"]["finalizers"],
        json!(["cirrus.dev/network"])
    );

    // What the controller and node agent would write, rendered.
    let port_name = stored["metadata"]["name"].as_str().unwrap().to_string();
    c.api
        .store
        .patch(
            Cloud::kind("ports"),
            Some("demo"),
            &port_name,
            &json!({"status": {"phase": "ACTIVE", "macAddress": "fa:16:3e:00:00:05",
                               "fixedIps": [{"subnet": "sub1", "ipAddress": "10.0.0.5"}], "vifType": "ovs"}}),
            Part::Status,
            false,
        )
        .await
        .unwrap();
    let server_port = create(
        &c,
        &http,
        "ports",
        "port",
        json!({"network_id": net_id, "device_owner": "compute:nova", "device_id": "3f2504e0-4f89-11d3-9a0c-0305e82c3301"}),
    )
    .await;
    assert_eq!(server_port["name"], "");
    let (status, body) = send(http.get(c.url(&format!("/ports/{port_id}")))).await;
    assert_eq!(status, StatusCode::OK);
    let shown = &body["port"];
    assert_eq!(shown["status"], "ACTIVE");
    assert_eq!(shown["mac_address"], "fa:16:3e:00:00:05");
    assert_eq!(
        shown["fixed_ips"],
        json!([{"subnet_id": subnet_id, "ip_address": "10.0.0.5"}])
    );
    assert_eq!(shown["binding:vif_type"], "ovs");
    assert_eq!(
        shown["allowed_address_pairs"],
        json!([{"ip_address": "10.0.0.100", "mac_address": "fa:16:3e:00:00:05"}])
    );
    for (query, ids) in [
        ("fixed_ips=ip_address%3D10.0.0.5", vec![port_id.as_str()]),
        ("mac_address=fa:16:3e:00:00:05", vec![port_id.as_str()]),
        (
            "device_owner=compute:nova",
            vec![server_port["id"].as_str().unwrap()],
        ),
        ("status=ACTIVE", vec![port_id.as_str()]),
        ("name=p1", vec![port_id.as_str()]),
    ] {
        let (_, body) = send(http.get(c.url(&format!("/ports?{query}")))).await;
        let got: Vec<&str> = body["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap())
            .collect();
        assert_eq!(got, ids, "{query}");
    }
    let (_, body) = send(http.get(c.url(&format!("/ports?network_id={net_id}")))).await;
    assert_eq!(body["ports"].as_array().unwrap().len(), 2);

    // Port update: name, groups off with port security off.
    let (status, body) = send(http.put(c.url(&format!("/ports/{port_id}"))).json(
        &json!({"port": {"name": "p-one", "port_security_enabled": false,
                                   "allowed_address_pairs": [], "security_groups": []}}),
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["port"]["name"], "p-one");
    assert_eq!(body["port"]["port_security_enabled"], false);
    assert_eq!(body["port"]["security_groups"], json!([]));

    // In use: the network has ports, the subnet has addresses.
    let (status, body) = send(http.delete(c.url(&format!("/networks/{net_id}")))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(neutron_error(&body).0, "NetworkInUse");
    let (status, body) = send(http.delete(c.url(&format!("/subnets/{subnet_id}")))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(neutron_error(&body).0, "SubnetInUse");

    // Port delete: 204 and gone for Neutron clients at once, while the controller's
    // finalizer (removed by hand here) would release the addresses.
    for id in [&port_id, &server_port["id"].as_str().unwrap().to_string()] {
        let (status, body) = send(http.delete(c.url(&format!("/ports/{id}")))).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
        let (status, _) = send(http.get(c.url(&format!("/ports/{id}")))).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let marked = c.object("ports", "demo", id).await.unwrap();
        assert!(marked["metadata"]["deletionTimestamp"].is_string());
        let name = marked["metadata"]["name"].as_str().unwrap().to_string();
        c.api
            .store
            .patch(
                Cloud::kind("ports"),
                Some("demo"),
                &name,
                &json!({"metadata": {"finalizers": []}}),
                Part::Main,
                false,
            )
            .await
            .unwrap();
    }
    let (status, body) = send(http.get(c.url(&format!("/ports/{port_id}")))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(neutron_error(&body).0, "PortNotFound");
    let (status, _) = send(http.delete(c.url(&format!("/subnets/{subnet_id}")))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = send(http.delete(c.url(&format!("/networks/{net_id}")))).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert!(c.object("networks", "demo", &net_id).await.is_none());
}

#[tokio::test]
async fn security_groups_and_rules() {
    let c = Cloud::start().await;
    let http = c.member("alice", "demo").await;

    // The CLI resolves `default` by listing with name=default: it exists at once.
    let (status, body) = send(http.get(c.url("/security-groups?name=default"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let groups = body["security_groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1);
    let default_id = groups[0]["id"].as_str().unwrap().to_string();
    assert_eq!(groups[0]["project_id"], "demo");
    assert_eq!(
        groups[0]["security_group_rules"].as_array().unwrap().len(),
        4
    );

    // `openstack security group rule create --proto icmp default`.
    let icmp = json!({"security_group_rule": {"protocol": "icmp", "direction": "ingress",
        "ethertype": "IPv4", "remote_ip_prefix": "0.0.0.0/0", "security_group_id": default_id}});
    let (status, body) = send(http.post(c.url("/security-group-rules")).json(&icmp)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let rule = &body["security_group_rule"];
    let rule_id = rule["id"].as_str().unwrap().to_string();
    assert_eq!(rule["protocol"], "icmp");
    assert_eq!(rule["security_group_id"], default_id.as_str());
    assert_eq!(rule["remote_ip_prefix"], "0.0.0.0/0");
    assert_eq!(rule["port_range_min"], Value::Null);

    let (status, body) = send(http.post(c.url("/security-group-rules")).json(&icmp)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (kind, message) = neutron_error(&body);
    assert_eq!(kind, "SecurityGroupRuleExists");
    assert!(message.contains(&rule_id), "{message}");

    // ICMP type/code as the port range; a TCP port.
    let (status, body) = send(http.post(c.url("/security-group-rules")).json(&json!({"security_group_rule": {
        "protocol": "icmp", "direction": "ingress", "ethertype": "IPv4", "port_range_min": 8, "port_range_max": 0,
        "remote_ip_prefix": "10.0.0.0/8", "security_group_id": default_id}}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = send(http.post(c.url("/security-group-rules")).json(
        &json!({"security_group_rule": {
        "protocol": "tcp", "direction": "ingress", "port_range_min": 22, "port_range_max": 22,
        "security_group_id": default_id}}),
    ))
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let ssh_id = body["security_group_rule"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    let (_, body) = send(http.get(c.url(&format!(
        "/security-group-rules?security_group_id={default_id}&protocol=icmp"
    ))))
    .await;
    assert_eq!(body["security_group_rules"].as_array().unwrap().len(), 2);
    let (_, body) = send(http.get(c.url("/security-group-rules?direction=egress"))).await;
    assert_eq!(body["security_group_rules"].as_array().unwrap().len(), 2);
    let (status, body) = send(http.get(c.url(&format!("/security-group-rules/{rule_id}")))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["security_group_rule"]["id"], rule_id.as_str());
    let (_, body) = send(http.get(c.url(&format!("/security-groups/{default_id}")))).await;
    assert_eq!(
        body["security_group"]["security_group_rules"]
            .as_array()
            .unwrap()
            .len(),
        7
    );

    // A bad port range names the field; nothing is added.
    let (status, body) = send(http.post(c.url("/security-group-rules")).json(
        &json!({"security_group_rule": {
        "protocol": "tcp", "direction": "ingress", "port_range_min": 80, "port_range_max": 22,
        "security_group_id": default_id}}),
    ))
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(neutron_error(&body).1.contains("port_range_max"), "{body}");

    let (status, _) = send(http.delete(c.url(&format!("/security-group-rules/{ssh_id}")))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = send(http.get(c.url(&format!("/security-group-rules/{ssh_id}")))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(neutron_error(&body).0, "SecurityGroupRuleNotFound");
    let stored = c
        .object("securitygroups", "demo", &default_id)
        .await
        .unwrap();
    assert_eq!(stored["spec"]["rules"].as_array().unwrap().len(), 6);

    // A new group: Neutron's two egress rules; a rule naming another group.
    let web = create(
        &c,
        &http,
        "security-groups",
        "security_group",
        json!({"name": "web", "description": "web tier"}),
    )
    .await;
    let web_id = web["id"].as_str().unwrap().to_string();
    let rules = web["security_group_rules"].as_array().unwrap();
    assert_eq!(rules.len(), 2);
    assert!(rules.iter().all(|r| r["direction"] == "egress"));
    let (status, body) = send(http.post(c.url("/security-group-rules")).json(
        &json!({"security_group_rule": {
        "direction": "ingress", "protocol": "tcp", "port_range_min": 80, "port_range_max": 80,
        "remote_group_id": default_id, "security_group_id": web_id}}),
    ))
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["security_group_rule"]["remote_group_id"],
        default_id.as_str()
    );
    let stored = c.object("securitygroups", "demo", &web_id).await.unwrap();
    assert_eq!(stored["spec"]["rules"][2]["remoteGroup"], "default");

    let (status, body) = send(
        http.put(c.url(&format!("/security-groups/{web_id}")))
            .json(&json!({"security_group": {"name": "web servers"}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["security_group"]["name"], "web servers");

    // `default` is protected and reserved.
    let (status, body) = send(http.delete(c.url(&format!("/security-groups/{default_id}")))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _) = send(
        http.post(c.url("/security-groups"))
            .json(&json!({"security_group": {"name": "default"}})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = send(
        http.put(c.url(&format!("/security-groups/{default_id}")))
            .json(&json!({"security_group": {"name": "renamed"}})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // A group in use by a port can't go.
    let net = create(&c, &http, "networks", "network", json!({"name": "n"})).await;
    let port = create(
        &c,
        &http,
        "ports",
        "port",
        json!({"network_id": net["id"], "security_groups": [web_id]}),
    )
    .await;
    assert_eq!(port["security_groups"], json!([web_id]));
    let (status, body) = send(http.delete(c.url(&format!("/security-groups/{web_id}")))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(neutron_error(&body).0, "SecurityGroupInUse");
    let (status, _) = send(
        http.put(c.url(&format!("/ports/{}", port["id"].as_str().unwrap())))
            .json(&json!({"port": {"security_groups": [default_id]}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = send(http.delete(c.url(&format!("/security-groups/{web_id}")))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(c.object("securitygroups", "demo", &web_id).await.is_none());
}

#[tokio::test]
async fn projects_see_only_their_own_and_shared_networks() {
    let c = Cloud::start().await;
    let alice = c.member("alice", "demo").await;
    let bob = c.member("bob", "other").await;
    let admin = c.api.client();

    let net = create(
        &c,
        &alice,
        "networks",
        "network",
        json!({"name": "private"}),
    )
    .await;
    let net_id = net["id"].as_str().unwrap();
    let subnet = create(
        &c,
        &alice,
        "subnets",
        "subnet",
        json!({"network_id": net_id, "cidr": "10.0.0.0/24", "ip_version": 4}),
    )
    .await;
    let port = create(&c, &alice, "ports", "port", json!({"network_id": net_id})).await;

    let (_, body) = send(bob.get(c.url("/networks"))).await;
    assert!(body["networks"].as_array().unwrap().is_empty(), "{body}");
    let (_, body) = send(bob.get(c.url("/ports"))).await;
    assert!(body["ports"].as_array().unwrap().is_empty());
    let (_, body) = send(bob.get(c.url("/subnets"))).await;
    assert!(body["subnets"].as_array().unwrap().is_empty());
    let (_, body) = send(bob.get(c.url("/security-groups"))).await;
    let groups = body["security_groups"].as_array().unwrap();
    assert!(groups.iter().all(|g| g["project_id"] == "other"), "{body}");
    for path in [
        format!("/networks/{net_id}"),
        format!("/subnets/{}", subnet["id"].as_str().unwrap()),
        format!("/ports/{}", port["id"].as_str().unwrap()),
    ] {
        let (status, _) = send(bob.get(c.url(&path))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        let (status, _) = send(bob.delete(c.url(&path))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let (status, body) = send(bob.post(c.url("/subnets")).json(&json!({"subnet": {
        "network_id": net_id, "cidr": "10.1.0.0/24", "ip_version": 4}})))
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(neutron_error(&body).0, "NetworkNotFound");
    let (status, _) = send(
        bob.post(c.url("/networks"))
            .json(&json!({"network": {"name": "x", "project_id": "demo"}})),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "no creating in another project"
    );

    // Quotas: Neutron's defaults, usage counted from the project's objects; others' 403
    // (Neutron's policy refusal; see openstack_quotas.rs for writes).
    let (status, body) = send(alice.get(c.url("/quotas/demo/details"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["quota"]["network"],
        json!({"limit": 100, "used": 1, "reserved": 0})
    );
    assert_eq!(body["quota"]["port"]["used"], 1);
    assert_eq!(
        body["quota"]["security_group"]["used"], 1,
        "the default group"
    );
    assert_eq!(body["quota"]["security_group_rule"]["used"], 4);
    let (_, body) = send(alice.get(c.url("/quotas/demo"))).await;
    assert_eq!(body["quota"]["subnet"], 100);
    let (status, _) = send(bob.get(c.url("/quotas/demo"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Admin sees everything, filters by project, and may share.
    let (_, body) = send(admin.get(c.url("/networks?project_id=demo"))).await;
    let nets = body["networks"].as_array().unwrap();
    assert_eq!(nets.len(), 1);
    assert_eq!(nets[0]["provider:network_type"], "vxlan");
    let shared = create(
        &c,
        &admin,
        "networks",
        "network",
        json!({"name": "public", "shared": true}),
    )
    .await;
    let (_, body) = send(bob.get(c.url("/networks"))).await;
    let nets = body["networks"].as_array().unwrap();
    assert_eq!(nets.len(), 1, "{body}");
    assert_eq!(nets[0]["id"], shared["id"]);
    let (status, _) =
        send(bob.delete(c.url(&format!("/networks/{}", shared["id"].as_str().unwrap())))).await;
    assert_ne!(
        status,
        StatusCode::NO_CONTENT,
        "others' shared networks are read-only"
    );

    // Sharing and provider attributes are admin-only; readers read only.
    let (status, body) = send(
        bob.post(c.url("/networks"))
            .json(&json!({"network": {"name": "s", "shared": true}})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(neutron_error(&body).0, "PolicyNotAuthorized");
    let (status, _) = send(
        bob.post(c.url("/networks"))
            .json(&json!({"network": {"name": "s", "provider:network_type": "vlan"}})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let reader = client_with_token(&c.api.user_token("rita", "demo", Role::Reader).await);
    let (status, body) = send(reader.get(c.url("/networks"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["networks"].as_array().unwrap().len(), 2);
    let (status, _) = send(
        reader
            .post(c.url("/networks"))
            .json(&json!({"network": {"name": "r"}})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(c.count("networks", "demo").await, 1);
}

#[tokio::test]
async fn bad_input_is_400_naming_the_field_and_nothing_is_half_created() {
    let c = Cloud::start().await;
    let http = c.member("alice", "demo").await;
    let net = create(&c, &http, "networks", "network", json!({"name": "n"})).await;
    let net_id = net["id"].as_str().unwrap();

    let cases = [
        (
            "/subnets",
            json!({"subnet": {"network_id": net_id, "cidr": "10.0.0.300/24", "ip_version": 4}}),
            "cidr",
        ),
        (
            "/subnets",
            json!({"subnet": {"network_id": net_id, "cidr": "10.0.0.1/24", "ip_version": 4}}),
            "cidr",
        ),
        (
            "/subnets",
            json!({"subnet": {"network_id": net_id, "cidr": "10.0.0.0/24", "ip_version": 6}}),
            "ip_version",
        ),
        (
            "/subnets",
            json!({"subnet": {"network_id": net_id, "cidr": "10.0.0.0/24", "gateway_ip": "10.9.9.9"}}),
            "gateway_ip",
        ),
        (
            "/subnets",
            json!({"subnet": {"network_id": net_id, "cidr": "10.0.0.0/24",
            "allocation_pools": [{"start": "10.0.0.10", "end": "10.1.0.20"}]}}),
            "allocation_pools[0].end",
        ),
        (
            "/subnets",
            json!({"subnet": {"network_id": net_id, "cidr": "10.0.0.0/24", "bogus": 1}}),
            "bogus",
        ),
        (
            "/subnets",
            json!({"subnet": {"cidr": "10.0.0.0/24"}}),
            "network_id",
        ),
        (
            "/networks",
            json!({"network": {"name": "m", "mtu": 20}}),
            "mtu",
        ),
        (
            "/networks",
            json!({"network": {"name": "m", "admin_state_up": "maybe"}}),
            "admin_state_up",
        ),
        ("/networks", json!({"nets": {}}), "network"),
        (
            "/ports",
            json!({"port": {"network_id": net_id, "fixed_ips": [{"ip_address": "10.0.0.x"}]}}),
            "fixed_ips[0].ip_address",
        ),
        (
            "/ports",
            json!({"port": {"network_id": net_id, "mac_address": "zz:16:3e:00:00:01"}}),
            "mac_address",
        ),
        (
            "/ports",
            json!({"port": {"network_id": net_id, "port_security_enabled": false,
            "allowed_address_pairs": [{"ip_address": "10.0.0.9"}]}}),
            "allowed_address_pairs",
        ),
    ];
    for (path, body, field) in cases {
        let (status, got) = send(http.post(c.url(path)).json(&body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}: {got}");
        let (_, message) = neutron_error(&got);
        assert!(
            message.contains(field),
            "{path} {body}: message {message:?} should name {field}"
        );
    }
    let (status, body) = send(
        http.post(c.url("/networks"))
            .body("{not json")
            .header("content-type", "application/json"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let missing = "6f1e3b1c-0d7e-4a53-9c52-2c1f7d0f9a10";
    for (path, body, kind) in [
        (
            "/subnets",
            json!({"subnet": {"network_id": missing, "cidr": "10.0.0.0/24", "ip_version": 4}}),
            "NetworkNotFound",
        ),
        (
            "/ports",
            json!({"port": {"network_id": missing}}),
            "NetworkNotFound",
        ),
        (
            "/ports",
            json!({"port": {"network_id": net_id, "fixed_ips": [{"subnet_id": missing}]}}),
            "SubnetNotFound",
        ),
        (
            "/ports",
            json!({"port": {"network_id": net_id, "security_groups": [missing]}}),
            "SecurityGroupNotFound",
        ),
        (
            "/security-group-rules",
            json!({"security_group_rule": {"security_group_id": missing, "direction": "ingress"}}),
            "SecurityGroupNotFound",
        ),
    ] {
        let (status, got) = send(http.post(c.url(path)).json(&body)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path} {body}: {got}");
        assert_eq!(neutron_error(&got).0, kind, "{got}");
    }
    for path in [
        "/networks/",
        "/subnets/",
        "/ports/",
        "/security-groups/",
        "/security-group-rules/",
    ] {
        let (status, got) = send(http.get(c.url(&format!("{path}{missing}")))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {got}");
        assert!(
            got["NeutronError"]["message"]
                .as_str()
                .unwrap()
                .contains(missing)
        );
    }

    assert_eq!(
        c.count("networks", "demo").await,
        1,
        "only the first network"
    );
    assert_eq!(c.count("subnets", "demo").await, 0);
    assert_eq!(c.count("ports", "demo").await, 0);
}

#[tokio::test]
async fn concurrent_rule_creates_all_land() {
    let c = Cloud::start().await;
    let http = c.member("alice", "demo").await;
    let (_, body) = send(http.get(c.url("/security-groups?name=default"))).await;
    let group = body["security_groups"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let creates = (1000..1012).map(|port| {
        let http = http.clone();
        let url = c.url("/security-group-rules");
        let group = group.clone();
        async move {
            send(http.post(url).json(&json!({"security_group_rule": {
                "security_group_id": group, "direction": "ingress", "protocol": "tcp",
                "port_range_min": port, "port_range_max": port}})))
            .await
        }
    });
    let results = futures::future::join_all(creates).await;
    for (status, body) in &results {
        assert_eq!(*status, StatusCode::CREATED, "{body}");
    }
    let stored = c.object("securitygroups", "demo", &group).await.unwrap();
    assert_eq!(
        stored["spec"]["rules"].as_array().unwrap().len(),
        4 + 12,
        "no write lost"
    );
}

#[tokio::test]
async fn a_member_puts_ports_on_an_admins_shared_network_and_the_admin_cannot_pull_it_away() {
    let c = Cloud::start().await;
    let admin = client_with_token(&c.api.admin_token);
    let bob = c.member("bob", "demo").await;
    let shared = create(
        &c,
        &admin,
        "networks",
        "network",
        json!({"name": "public", "shared": true}),
    )
    .await;
    let shared_id = shared["id"].as_str().unwrap().to_string();
    let subnet = create(
        &c,
        &admin,
        "subnets",
        "subnet",
        json!({"network_id": shared_id, "cidr": "10.30.0.0/24", "ip_version": 4}),
    )
    .await;
    let private = create(&c, &admin, "networks", "network", json!({"name": "ops"})).await;

    // Bob's port on the shared network is bob's; it may ask for the admin's subnet.
    let port = create(
        &c,
        &bob,
        "ports",
        "port",
        json!({"network_id": shared_id, "fixed_ips": [{"subnet_id": subnet["id"]}]}),
    )
    .await;
    assert_eq!(port["project_id"], "demo");
    assert_eq!(port["network_id"], shared["id"]);
    let stored = c
        .object("ports", "demo", port["id"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(stored["spec"]["network"], "public");
    assert_eq!(stored["spec"]["networkProject"], "admin");
    assert_eq!(
        stored["spec"]["fixedIps"][0]["subnet"],
        common_name(&c, &subnet).await
    );
    let (status, body) =
        send(bob.get(c.url(&format!("/ports/{}", port["id"].as_str().unwrap())))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["port"]["network_id"], shared["id"]);
    // Listed too, with the shared network's id and the admin's subnet.
    c.api
        .store
        .patch(
            Cloud::kind("ports"),
            Some("demo"),
            stored["metadata"]["name"].as_str().unwrap(),
            &json!({"status": {"fixedIps": [{"subnet": stored["spec"]["fixedIps"][0]["subnet"], "ipAddress": "10.30.0.5"}]}}),
            Part::Status,
            false,
        )
        .await
        .unwrap();
    let (_, body) = send(bob.get(c.url("/ports"))).await;
    let listed = &body["ports"][0];
    assert_eq!(listed["network_id"], shared["id"], "{body}");
    assert_eq!(listed["fixed_ips"][0]["subnet_id"], subnet["id"], "{body}");

    // The admin's unshared network is invisible to bob.
    let (status, body) = send(
        bob.post(c.url("/ports"))
            .json(&json!({"port": {"network_id": private["id"]}})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(neutron_error(&body).0, "NetworkNotFound");

    // While bob's port is there the admin can neither unshare nor delete the network.
    let network_url = c.url(&format!("/networks/{shared_id}"));
    let (status, body) = send(
        admin
            .put(&network_url)
            .json(&json!({"network": {"shared": false}})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = send(admin.delete(&network_url)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body.to_string().contains("demo"),
        "names bob's project: {body}"
    );
    assert_eq!(c.count("ports", "demo").await, 1);
}

/// The object name of the Neutron resource `rendered` (stored under its uid).
async fn common_name(c: &Cloud, rendered: &Value) -> String {
    let id = rendered["id"].as_str().unwrap();
    let stored = c.object("subnets", "admin", id).await.unwrap();
    stored["metadata"]["name"].as_str().unwrap().to_string()
}
