//! The metadata service identifies a server by network + source IP only, and the config drive
//! route serves the same files.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cirrus_test_utils::TestApi;
use serde_json::{Value, json};

struct Client {
    http: reqwest::Client,
    base: String,
    root: String,
}

impl Client {
    async fn create(&self, path: &str, body: Value) -> Value {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        resp.json().await.unwrap()
    }

    async fn status(&self, path: &str, status: Value) {
        let resp = self
            .http
            .patch(format!("{}{path}/status", self.base))
            .header("Content-Type", "application/merge-patch+json")
            .body(json!({ "status": status }).to_string())
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
    }

    /// A metadata request as the proxy sends it.
    async fn metadata(&self, network: &str, ip: &str, path: &str) -> (u16, String) {
        let resp = self
            .http
            .get(format!("{}/metadata{path}", self.root))
            .header("X-Cirrus-Network", network)
            .header("X-Cirrus-Source-Ip", ip)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    /// A server with a compute port holding `ip` on `network`.
    async fn server_with_port(&self, name: &str, network: &str, ip: &str, mac: &str) -> String {
        let server = self
            .create(
                "/projects/demo/servers",
                json!({"metadata": {"name": name}, "spec": {
                    "flavor": "m1", "image": "guest", "keyName": "k1",
                    "userData": STANDARD.encode(format!("#!/bin/sh\necho {name}\n")),
                    "networks": [{"network": network}],
                }}),
            )
            .await;
        let uid = server["metadata"]["uid"].as_str().unwrap().to_string();
        let port = format!("{name}-port");
        self.create(
            "/projects/demo/ports",
            json!({"metadata": {"name": port}, "spec": {
                "network": network, "deviceOwner": "compute:nova", "deviceId": uid,
            }}),
        )
        .await;
        self.status(
            &format!("/projects/demo/ports/{port}"),
            json!({"fixedIps": [{"subnet": format!("{network}-sub"), "ipAddress": ip}],
                   "macAddress": mac}),
        )
        .await;
        uid
    }
}

async fn setup() -> (TestApi, Client) {
    let api = TestApi::start().await;
    let client = Client {
        http: api.client(),
        base: format!("{}/apis/cirrus.dev/v1", api.base_url),
        root: api.base_url.clone(),
    };
    for (net, cidr) in [("net1", "10.0.0.0/24"), ("net2", "10.0.1.0/24")] {
        client
            .create(
                "/projects/demo/networks",
                json!({"metadata": {"name": net}, "spec": {}}),
            )
            .await;
        client
            .create(
                "/projects/demo/subnets",
                json!({"metadata": {"name": format!("{net}-sub")},
                       "spec": {"network": net, "cidr": cidr, "dnsNameservers": ["10.9.9.9"]}}),
            )
            .await;
    }
    client
        .create(
            "/projects/demo/keypairs",
            json!({"metadata": {"name": "k1"}, "spec": {"publicKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPwqlqFRmCfm8TCkhqz8CZLW8ri/uWvVgkg7nO5AHcw3 k1"}}),
        )
        .await;
    (api, client)
}

#[tokio::test]
async fn the_server_is_found_by_network_and_source_ip_only() {
    let (_api, c) = setup().await;
    let a = c
        .server_with_port("vm-a", "net1", "10.0.0.5", "fa:16:3e:00:00:05")
        .await;
    let b = c
        .server_with_port("vm-b", "net1", "10.0.0.6", "fa:16:3e:00:00:06")
        .await;
    // Not a compute port: a DHCP port with an address is never a server.
    c.create(
        "/projects/demo/ports",
        json!({"metadata": {"name": "net1-dhcp"}, "spec": {
            "network": "net1", "deviceOwner": "network:dhcp", "deviceId": a,
        }}),
    )
    .await;
    c.status(
        "/projects/demo/ports/net1-dhcp",
        json!({"fixedIps": [{"subnet": "net1-sub", "ipAddress": "10.0.0.2"}]}),
    )
    .await;

    let (code, body) = c
        .metadata("demo/net1", "10.0.0.5", "/openstack/latest/meta_data.json")
        .await;
    assert_eq!(code, 200, "{body}");
    let meta: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(meta["uuid"], a.as_str());
    assert_eq!(meta["name"], "vm-a");
    assert_eq!(
        meta["public_keys"]["k1"],
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPwqlqFRmCfm8TCkhqz8CZLW8ri/uWvVgkg7nO5AHcw3 k1"
    );

    let (code, body) = c
        .metadata("demo/net1", "10.0.0.6", "/openstack/latest/meta_data.json")
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["uuid"],
        b.as_str()
    );
    let (_, user) = c
        .metadata("demo/net1", "10.0.0.6", "/latest/user-data")
        .await;
    assert_eq!(user, "#!/bin/sh\necho vm-b\n");
    let (_, user) = c
        .metadata("demo/net1", "10.0.0.5", "/openstack/latest/user_data")
        .await;
    assert_eq!(user, "#!/bin/sh\necho vm-a\n");

    let (code, body) = c
        .metadata(
            "demo/net1",
            "10.0.0.5",
            "/openstack/latest/network_data.json",
        )
        .await;
    assert_eq!(code, 200);
    let nd: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(nd["links"][0]["ethernet_mac_address"], "fa:16:3e:00:00:05");
    assert_eq!(nd["networks"][0]["ip_address"], "10.0.0.5");
    assert_eq!(nd["services"][0]["address"], "10.9.9.9");
    let (_, id) = c
        .metadata("demo/net1", "10.0.0.5", "/latest/meta-data/local-ipv4")
        .await;
    assert_eq!(id, "10.0.0.5");

    // The same address on another network, an unknown address, the DHCP port's address,
    // an unknown network: nothing.
    for (net, ip) in [
        ("demo/net2", "10.0.0.5"),
        ("demo/net1", "10.0.0.99"),
        ("demo/net1", "10.0.0.2"),
        ("demo/nope", "10.0.0.5"),
        ("other/net1", "10.0.0.5"),
    ] {
        let (code, body) = c
            .metadata(net, ip, "/openstack/latest/meta_data.json")
            .await;
        assert_eq!(code, 404, "{net} {ip}: {body}");
        assert!(!body.contains(&a) && !body.contains(&b), "{body}");
    }
    // Without the proxy's headers: refused.
    let resp = c
        .http
        .get(format!(
            "{}/metadata/openstack/latest/meta_data.json",
            c.root
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    // Unknown path for a known server.
    let (code, _) = c
        .metadata("demo/net1", "10.0.0.5", "/openstack/latest/nope")
        .await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn the_config_drive_route_serves_the_same_files() {
    let (_api, c) = setup().await;
    let uid = c
        .server_with_port("vm-c", "net2", "10.0.1.7", "fa:16:3e:00:01:07")
        .await;
    let files: Value = c
        .http
        .get(format!("{}/projects/demo/servers/vm-c/configdrive", c.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let file = |p: &str| STANDARD.decode(files[p].as_str().unwrap()).unwrap();
    let meta: Value = serde_json::from_slice(&file("openstack/latest/meta_data.json")).unwrap();
    assert_eq!(meta["uuid"], uid.as_str());
    assert_eq!(
        file("openstack/latest/user_data"),
        b"#!/bin/sh\necho vm-c\n"
    );
    let (_, served) = c
        .metadata("demo/net2", "10.0.1.7", "/openstack/latest/meta_data.json")
        .await;
    assert_eq!(served.as_bytes(), file("openstack/latest/meta_data.json"));
    let ec2: Value = serde_json::from_slice(&file("ec2/latest/meta-data.json")).unwrap();
    assert_eq!(ec2["local-ipv4"], "10.0.1.7");

    let resp = c
        .http
        .get(format!("{}/projects/demo/servers/nope/configdrive", c.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
}

#[tokio::test]
async fn a_guest_of_another_project_on_a_shared_network_gets_its_own_metadata() {
    let (_api, c) = setup().await;
    let _own = c
        .server_with_port("vm-a", "net1", "10.0.0.5", "fa:16:3e:00:00:05")
        .await;
    let resp = c
        .http
        .patch(format!("{}/projects/demo/networks/net1", c.base))
        .header("Content-Type", "application/merge-patch+json")
        .body(json!({"spec": {"shared": true}}).to_string())
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    // Project `tenant`'s server on demo's shared net1.
    let server = c
        .create(
            "/projects/tenant/servers",
            json!({"metadata": {"name": "vm-t"}, "spec": {
                "flavor": "m1", "image": "guest",
                "networks": [{"network": "net1", "networkProject": "demo"}],
            }}),
        )
        .await;
    let uid = server["metadata"]["uid"].as_str().unwrap().to_string();
    c.create(
        "/projects/tenant/ports",
        json!({"metadata": {"name": "vm-t-port"}, "spec": {
            "network": "net1", "networkProject": "demo",
            "deviceOwner": "compute:nova", "deviceId": uid,
        }}),
    )
    .await;
    c.status(
        "/projects/tenant/ports/vm-t-port",
        json!({"fixedIps": [{"subnet": "net1-sub", "ipAddress": "10.0.0.7"}],
               "macAddress": "fa:16:3e:00:00:07"}),
    )
    .await;

    // The proxy of demo/net1 asks for 10.0.0.7: the tenant's server, with the shared
    // network's subnet in its network data.
    let (code, body) = c
        .metadata("demo/net1", "10.0.0.7", "/openstack/latest/meta_data.json")
        .await;
    assert_eq!(code, 200, "{body}");
    let meta: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(meta["uuid"], uid.as_str());
    assert_eq!(meta["project_id"], "tenant");
    let (_, body) = c
        .metadata(
            "demo/net1",
            "10.0.0.7",
            "/openstack/latest/network_data.json",
        )
        .await;
    let nd: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(nd["networks"][0]["ip_address"], "10.0.0.7");
    assert_eq!(nd["services"][0]["address"], "10.9.9.9");
    // The owner's guest is still its own; the tenant has no net1 of its own.
    let (_, body) = c
        .metadata("demo/net1", "10.0.0.5", "/openstack/latest/meta_data.json")
        .await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["name"],
        "vm-a"
    );
    let (code, _) = c
        .metadata(
            "tenant/net1",
            "10.0.0.7",
            "/openstack/latest/meta_data.json",
        )
        .await;
    assert_eq!(code, 404);
}
