//! The cloud under fuzz: the API on an in-memory store, its seeded objects and callers.

use super::*;

/// Who sends the requests.
pub(crate) struct Who {
    pub(crate) name: &'static str,
    pub(crate) http: reqwest::Client,
}

/// The API with project `fuzz` (member `fuzzer`), its seeded objects, and the ids.
pub(crate) struct Cloud {
    pub(crate) api: TestApi,
    pub(crate) admin: Who,
    pub(crate) member: Who,
    pub(crate) ids: BTreeMap<&'static str, String>,
    /// Native paths of the seeded objects (and their status) with a valid merge patch.
    pub(crate) planted: Vec<(String, Value)>,
}

/// A client sending `token` that opens a connection per request: a refused request whose
/// body the server did not read ends its connection, which must not fail the next request.
pub(crate) fn unpooled(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "x-auth-token",
        reqwest::header::HeaderValue::from_str(token).expect("tokens are header-safe"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .pool_max_idle_per_host(0)
        .build()
        .expect("an HTTP client")
}

pub(crate) async fn must(resp: reqwest::Response, what: &str) -> Value {
    let status = resp.status();
    let text = resp.text().await.expect("a body");
    assert!(status.is_success(), "seeding {what}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

impl Cloud {
    pub(crate) async fn start() -> Self {
        let api = TestApi::start().await;
        let member_token = api.user_token("fuzzer", PROJECT, Role::Member).await;
        // No quota stops a create the fuzz means to reach the validation of.
        api.unlimited_project(PROJECT).await;
        api.unlimited_project("admin").await;
        let admin = unpooled(&api.admin_token);
        let member = unpooled(&member_token);
        let base = api.base_url.clone();
        let native = format!("{base}/apis/cirrus.dev/v1");
        let mut ids = BTreeMap::new();

        must(
            admin
                .post(format!("{native}/flavors"))
                .json(&json!({"metadata": {"name": "m1.tiny"},
                    "spec": {"vcpus": 1, "ram": 512, "disk": 1}}))
                .send()
                .await
                .unwrap(),
            "flavor",
        )
        .await;
        let image = must(
            admin
                .post(format!("{native}/projects/admin/images"))
                .json(
                    &json!({"metadata": {"name": "cirros"}, "spec": {"visibility": "public",
                    "diskFormat": "qcow2", "containerFormat": "bare"}}),
                )
                .send()
                .await
                .unwrap(),
            "image",
        )
        .await;
        api.store
            .patch(
                cirrus_crds::kind_by_plural("images").unwrap(),
                Some("admin"),
                "cirros",
                &json!({"status": {"phase": "active", "size": 1024, "virtualSize": 1_073_741_824}}),
                Part::Status,
                false,
            )
            .await
            .unwrap();
        ids.insert(
            "image",
            image["metadata"]["uid"].as_str().unwrap().to_string(),
        );

        let net = format!("{base}/network/v2.0");
        let network = must(
            member
                .post(format!("{net}/networks"))
                .json(&json!({"network": {"name": "net1"}}))
                .send()
                .await
                .unwrap(),
            "network",
        )
        .await;
        ids.insert("network", network["network"]["id"].as_str().unwrap().into());
        let subnet = must(
            member
                .post(format!("{net}/subnets"))
                .json(
                    &json!({"subnet": {"network_id": ids["network"], "cidr": "10.0.0.0/24",
                    "ip_version": 4, "name": "sub1"}}),
                )
                .send()
                .await
                .unwrap(),
            "subnet",
        )
        .await;
        ids.insert("subnet", subnet["subnet"]["id"].as_str().unwrap().into());
        let port = must(
            member
                .post(format!("{net}/ports"))
                .json(&json!({"port": {"network_id": ids["network"], "name": "port1"}}))
                .send()
                .await
                .unwrap(),
            "port",
        )
        .await;
        ids.insert("port", port["port"]["id"].as_str().unwrap().into());
        let sg = must(
            member
                .post(format!("{net}/security-groups"))
                .json(&json!({"security_group": {"name": "sg1", "description": "fuzz"}}))
                .send()
                .await
                .unwrap(),
            "security group",
        )
        .await;
        ids.insert("sg", sg["security_group"]["id"].as_str().unwrap().into());
        // Both callers' `default` groups exist before the fuzz (they are made on demand).
        for http in [&admin, &member] {
            must(
                http.get(format!("{net}/security-groups"))
                    .send()
                    .await
                    .unwrap(),
                "default security groups",
            )
            .await;
        }

        let nova = format!("{base}/compute/v2.1");
        must(
            member
                .post(format!("{nova}/os-keypairs"))
                .json(&json!({"keypair": {"name": "k1", "public_key": KEY}}))
                .send()
                .await
                .unwrap(),
            "keypair",
        )
        .await;
        let server = must(
            member
                .post(format!("{nova}/servers"))
                .json(
                    &json!({"server": {"name": "web-0", "imageRef": ids["image"],
                    "flavorRef": "m1.tiny", "networks": [{"uuid": ids["network"]}]}}),
                )
                .send()
                .await
                .unwrap(),
            "server",
        )
        .await;
        ids.insert("server", server["server"]["id"].as_str().unwrap().into());

        let cinder = format!("{base}/volume/v3/{PROJECT}");
        let volume = must(
            member
                .post(format!("{cinder}/volumes"))
                .json(&json!({"volume": {"size": 1, "name": "vol1"}}))
                .send()
                .await
                .unwrap(),
            "volume",
        )
        .await;
        ids.insert("volume", volume["volume"]["id"].as_str().unwrap().into());
        // What the node agent would report once the volume is made.
        api.store
            .patch(
                cirrus_crds::kind_by_plural("volumes").unwrap(),
                Some(PROJECT),
                "vol1",
                &json!({"status": {"phase": "available"}}),
                Part::Status,
                false,
            )
            .await
            .unwrap();
        let snapshot = must(
            member
                .post(format!("{cinder}/snapshots"))
                .json(&json!({"snapshot": {"volume_id": ids["volume"], "name": "snap1"}}))
                .send()
                .await
                .unwrap(),
            "snapshot",
        )
        .await;
        ids.insert(
            "snapshot",
            snapshot["snapshot"]["id"].as_str().unwrap().into(),
        );

        let glance = format!("{base}/image/v2");
        let own = must(
            member
                .post(format!("{glance}/images"))
                .json(&json!({"name": "own", "disk_format": "raw", "container_format": "bare"}))
                .send()
                .await
                .unwrap(),
            "own image",
        )
        .await;
        ids.insert("own_image", own["id"].as_str().unwrap().into());

        // The seeded objects' specs, and statuses as controllers would write them, for the
        // native merge patches that plant junk the OpenStack routes then read.
        let mut planted = Vec::new();
        for (plural, project, name) in [
            ("servers", Some(PROJECT), "web-0"),
            ("volumes", Some(PROJECT), "vol1"),
            ("volumesnapshots", Some(PROJECT), "snap1"),
            ("networks", Some(PROJECT), "net1"),
            ("subnets", Some(PROJECT), "sub1"),
            ("ports", Some(PROJECT), "port1"),
            ("securitygroups", Some(PROJECT), "sg1"),
            ("keypairs", Some(PROJECT), "k1"),
            ("images", Some(PROJECT), "own"),
            ("flavors", None, "m1.tiny"),
        ] {
            let object = api
                .store
                .get(cirrus_crds::kind_by_plural(plural).unwrap(), project, name)
                .await
                .unwrap_or_else(|e| panic!("seeded {plural}/{name}: {e}"));
            let path = match project {
                Some(p) => format!("/apis/cirrus.dev/v1/projects/{p}/{plural}/{name}"),
                None => format!("/apis/cirrus.dev/v1/{plural}/{name}"),
            };
            planted.push((path.clone(), json!({"spec": object["spec"]})));
            let status = match plural {
                "servers" => json!({"phase": "ACTIVE", "powerState": "Running",
                    "node": "node-x", "observedRebootCount": 0, "observedRebuildCount": 0}),
                "volumes" => json!({"phase": "available", "size": 1}),
                "images" => json!({"phase": "active", "size": 1024,
                    "virtualSize": 1_073_741_824, "checksum": "0"}),
                _ => continue,
            };
            planted.push((format!("{path}/status"), json!({ "status": status })));
        }

        Self {
            api,
            admin: Who {
                name: "admin",
                http: admin,
            },
            member: Who {
                name: "member",
                http: member,
            },
            ids,
            planted,
        }
    }

    /// Every route under fuzz: first native merge patches of the seeded objects (junk the
    /// native admission lets in, which the OpenStack routes must then read and render), then
    /// the OpenStack routes, quota updates last (a fuzzed quota may refuse later creates).
    pub(crate) fn routes(&self) -> Vec<Route> {
        let mut routes: Vec<Route> = self
            .planted
            .iter()
            .map(|(path, body)| Route {
                content_type: "application/merge-patch+json",
                ..Route::body(Method::PATCH, path.clone(), vec![body.clone()])
            })
            .collect();
        routes.extend(self.openstack_routes());
        routes
    }

    /// The OpenStack routes under fuzz.
    pub(crate) fn openstack_routes(&self) -> Vec<Route> {
        let i = &self.ids;
        let (image, network, subnet, port, sg, server, volume, snapshot, own) = (
            &i["image"],
            &i["network"],
            &i["subnet"],
            &i["port"],
            &i["sg"],
            &i["server"],
            &i["volume"],
            &i["snapshot"],
            &i["own_image"],
        );
        let nova = "/compute/v2.1";
        let net = "/network/v2.0";
        let cinder = format!("/volume/v3/{PROJECT}");
        let glance = "/image/v2";
        let user_data = "IyEvYmluL3NoCmVjaG8gaGkK";
        vec![
            // Compute.
            Route::body(
                Method::POST,
                format!("{nova}/servers"),
                vec![
                    json!({"server": {"name": "fz", "imageRef": image, "flavorRef": "m1.tiny",
                        "networks": [{"uuid": network}], "key_name": "k1",
                        "metadata": {"role": "web"}, "user_data": user_data,
                        "security_groups": [{"name": "default"}],
                        "availability_zone": "nova", "accessIPv4": "192.0.2.1",
                        "min_count": 1, "max_count": 1, "adminPass": "s3cret"}}),
                    json!({"server": {"name": "fz-port", "imageRef": image,
                        "flavorRef": "m1.tiny",
                        "networks": [{"port": port}, {"uuid": network, "fixed_ip": "10.0.0.9"}]}}),
                    json!({"server": {"name": "fz-bfv", "imageRef": "", "flavorRef": "m1.tiny",
                        "networks": "none", "block_device_mapping_v2": [{"boot_index": 0,
                        "uuid": image, "source_type": "image", "destination_type": "volume",
                        "volume_size": 1, "delete_on_termination": true}]}}),
                    json!({"server": {"name": "fz-vol", "flavorRef": "m1.tiny",
                        "networks": "auto", "block_device_mapping_v2": [{"boot_index": 0,
                        "uuid": volume, "source_type": "volume",
                        "destination_type": "volume"}]},
                        "os:scheduler_hints": {"different_host": [server]}}),
                ],
            ),
            Route::body(
                Method::PUT,
                format!("{nova}/servers/{server}"),
                vec![
                    json!({"server": {"name": "web-0b", "accessIPv4": "192.0.2.2",
                    "accessIPv6": "2001:db8::2", "description": "d"}}),
                ],
            ),
            Route::body(
                Method::POST,
                format!("{nova}/servers/{server}/action"),
                vec![
                    json!({"reboot": {"type": "SOFT"}}),
                    json!({"os-stop": null}),
                    json!({"os-start": null}),
                    json!({"pause": null}),
                    json!({"os-getConsoleOutput": {"length": 10}}),
                    json!({"rebuild": {"imageRef": image, "name": "web-0",
                        "metadata": {"a": "b"}, "adminPass": "x"}}),
                ],
            ),
            Route::body(
                Method::PUT,
                format!("{nova}/servers/{server}/metadata"),
                vec![json!({"metadata": {"role": "web", "tier": "1"}})],
            ),
            Route::body(
                Method::POST,
                format!("{nova}/servers/{server}/metadata"),
                vec![json!({"metadata": {"extra": "x"}})],
            ),
            Route::body(
                Method::PUT,
                format!("{nova}/servers/{server}/metadata/role"),
                vec![json!({"meta": {"role": "db"}})],
            ),
            Route::body(
                Method::POST,
                format!("{nova}/servers/{server}/os-volume_attachments"),
                vec![json!({"volumeAttachment": {"volumeId": volume, "device": "/dev/vdb"}})],
            ),
            Route::body(
                Method::POST,
                format!("{nova}/flavors"),
                vec![
                    json!({"flavor": {"name": "fz.small", "ram": 512, "vcpus": 1, "disk": 1,
                        "id": "fz-small", "swap": 0, "OS-FLV-EXT-DATA:ephemeral": 0,
                        "rxtx_factor": 1.0, "os-flavor-access:is_public": true,
                        "description": "d"}}),
                    json!({"flavor": {"name": "fz.auto", "ram": 64, "vcpus": 2, "disk": 0,
                        "id": null}}),
                ],
            ),
            Route::body(
                Method::POST,
                format!("{nova}/flavors/m1.tiny/os-extra_specs"),
                vec![json!({"extra_specs": {"hw:cpu_policy": "dedicated", "quota:x": "1"}})],
            ),
            Route::body(
                Method::PUT,
                format!("{nova}/flavors/m1.tiny/os-extra_specs/hw:cpu_policy"),
                vec![json!({"hw:cpu_policy": "shared"})],
            ),
            Route::body(
                Method::POST,
                format!("{nova}/flavors/m1.tiny/action"),
                vec![json!({"addTenantAccess": {"tenant": PROJECT}})],
            ),
            Route::body(
                Method::POST,
                format!("{nova}/os-keypairs"),
                vec![
                    json!({"keypair": {"name": "kp", "public_key": KEY}}),
                    json!({"keypair": {"name": "gen", "type": "ssh"}}),
                ],
            ),
            Route::body(
                Method::PUT,
                format!("{nova}/os-services/disable"),
                vec![json!({"host": "node-a", "binary": "nova-compute",
                    "disabled_reason": "fuzz"})],
            ),
            // Image.
            Route::body(
                Method::POST,
                format!("{glance}/images"),
                vec![
                    json!({"name": "img", "disk_format": "qcow2", "container_format": "bare",
                    "visibility": "private", "min_disk": 0, "min_ram": 0, "protected": false,
                    "tags": ["a", "b"], "os_distro": "cirros", "id": null}),
                ],
            ),
            Route {
                content_type: PATCH,
                ..Route::body(
                    Method::PATCH,
                    format!("{glance}/images/{own}"),
                    vec![
                        json!([{"op": "replace", "path": "/name", "value": "own2"},
                            {"op": "add", "path": "/hw_disk_bus", "value": "virtio"},
                            {"op": "add", "path": "/tags/-", "value": "t"}]),
                        json!([{"op": "remove", "path": "/hw_disk_bus"},
                            {"op": "replace", "path": "/min_ram", "value": 128},
                            {"op": "replace", "path": "/visibility", "value": "shared"}]),
                    ],
                )
            },
            Route::body(
                Method::POST,
                format!("{glance}/images/{own}/members"),
                vec![json!({"member": "admin"})],
            ),
            // Network.
            Route::body(
                Method::POST,
                format!("{net}/networks"),
                vec![
                    json!({"network": {"name": "n", "admin_state_up": true, "shared": false,
                    "mtu": 1450, "port_security_enabled": true, "description": "d",
                    "router:external": false, "availability_zone_hints": []}}),
                ],
            ),
            Route::body(
                Method::PUT,
                format!("{net}/networks/{network}"),
                vec![json!({"network": {"name": "net1", "admin_state_up": true,
                    "description": "x", "mtu": 1400}})],
            ),
            Route::body(
                Method::POST,
                format!("{net}/subnets"),
                vec![
                    json!({"subnet": {"network_id": network, "cidr": "10.1.0.0/24",
                        "ip_version": 4, "gateway_ip": "10.1.0.1", "name": "s",
                        "allocation_pools": [{"start": "10.1.0.10", "end": "10.1.0.20"}],
                        "dns_nameservers": ["192.0.2.53"], "enable_dhcp": true,
                        "host_routes": [{"destination": "10.2.0.0/24",
                            "nexthop": "10.1.0.5"}]}}),
                    json!({"subnet": {"network_id": network, "cidr": "fd00:1::/64",
                        "ip_version": 6, "ipv6_address_mode": "slaac",
                        "ipv6_ra_mode": "slaac"}}),
                ],
            ),
            Route::body(
                Method::PUT,
                format!("{net}/subnets/{subnet}"),
                vec![json!({"subnet": {"name": "sub1", "gateway_ip": "10.0.0.1",
                    "dns_nameservers": [], "enable_dhcp": true,
                    "allocation_pools": [{"start": "10.0.0.2", "end": "10.0.0.254"}]}})],
            ),
            Route::body(
                Method::POST,
                format!("{net}/ports"),
                vec![json!({"port": {"network_id": network, "name": "p",
                    "fixed_ips": [{"subnet_id": subnet, "ip_address": "10.0.0.50"}],
                    "security_groups": [sg], "admin_state_up": true,
                    "mac_address": "fa:16:3e:00:00:01",
                    "allowed_address_pairs": [{"ip_address": "10.0.0.60"}],
                    "device_id": "", "device_owner": "", "port_security_enabled": true,
                    "binding:vnic_type": "normal"}})],
            ),
            Route::body(
                Method::PUT,
                format!("{net}/ports/{port}"),
                vec![json!({"port": {"name": "port1", "security_groups": [sg],
                    "admin_state_up": true, "allowed_address_pairs": [],
                    "fixed_ips": [{"subnet_id": subnet}]}})],
            ),
            Route::body(
                Method::POST,
                format!("{net}/security-groups"),
                vec![json!({"security_group": {"name": "g", "description": "d",
                    "stateful": true}})],
            ),
            Route::body(
                Method::PUT,
                format!("{net}/security-groups/{sg}"),
                vec![json!({"security_group": {"name": "sg1", "description": "e"}})],
            ),
            Route::body(
                Method::POST,
                format!("{net}/security-group-rules"),
                vec![
                    json!({"security_group_rule": {"security_group_id": sg,
                        "direction": "ingress", "ethertype": "IPv4", "protocol": "tcp",
                        "port_range_min": 22, "port_range_max": 22,
                        "remote_ip_prefix": "0.0.0.0/0", "description": "ssh"}}),
                    json!({"security_group_rule": {"security_group_id": sg,
                        "direction": "egress", "ethertype": "IPv6", "protocol": "icmp",
                        "port_range_min": 8, "port_range_max": 0,
                        "remote_group_id": sg}}),
                ],
            ),
            // Block storage.
            Route::body(
                Method::POST,
                format!("{cinder}/volumes"),
                vec![
                    json!({"volume": {"size": 1, "name": "v", "description": "d",
                        "volume_type": "__DEFAULT__", "metadata": {"a": "b"},
                        "availability_zone": "nova"}}),
                    json!({"volume": {"size": 1, "imageRef": image}}),
                    json!({"volume": {"size": 2, "source_volid": volume}}),
                    json!({"volume": {"snapshot_id": snapshot}}),
                ],
            ),
            Route::body(
                Method::PUT,
                format!("{cinder}/volumes/{volume}"),
                vec![json!({"volume": {"name": "vol1", "description": "x",
                    "metadata": {"k": "v"}}})],
            ),
            Route::body(
                Method::POST,
                format!("{cinder}/volumes/{volume}/action"),
                vec![
                    json!({"os-extend": {"new_size": 2}}),
                    json!({"os-set_bootable": {"bootable": true}}),
                    json!({"os-update_readonly_flag": {"readonly": false}}),
                    json!({"os-reset_status": {"status": "available"}}),
                ],
            ),
            Route::body(
                Method::POST,
                format!("{cinder}/volumes/{volume}/metadata"),
                vec![json!({"metadata": {"k": "v"}})],
            ),
            Route::body(
                Method::POST,
                format!("{cinder}/snapshots"),
                vec![
                    json!({"snapshot": {"volume_id": volume, "name": "s", "force": true,
                    "description": "d", "metadata": {"a": "b"}}}),
                ],
            ),
            Route::body(
                Method::PUT,
                format!("{cinder}/snapshots/{snapshot}"),
                vec![json!({"snapshot": {"name": "snap1", "description": "x"}})],
            ),
            // Lists with junk query strings.
            Route::query(format!("{nova}/servers")),
            Route::query(format!("{nova}/servers/detail")),
            Route::query(format!("{nova}/flavors")),
            Route::query(format!("{nova}/flavors/detail")),
            Route::query(format!("{nova}/os-keypairs")),
            Route::query(format!("{nova}/os-hypervisors/detail")),
            Route::query(format!("{nova}/os-services")),
            Route::query(format!("{nova}/limits")),
            Route::query(format!("{nova}/servers/{server}/os-volume_attachments")),
            Route::query(format!("{nova}/servers/{server}/action")),
            Route::query(format!("{glance}/images")),
            Route::query(format!("{net}/networks")),
            Route::query(format!("{net}/subnets")),
            Route::query(format!("{net}/ports")),
            Route::query(format!("{net}/security-groups")),
            Route::query(format!("{net}/security-group-rules")),
            Route::query(format!("{cinder}/volumes")),
            Route::query(format!("{cinder}/volumes/detail")),
            Route::query(format!("{cinder}/snapshots/detail")),
            // Shows with junk ids.
            Route::segment(format!("{nova}/servers/{{}}")),
            Route::segment(format!("{nova}/flavors/{{}}")),
            Route::segment(format!("{nova}/os-keypairs/{{}}")),
            Route::segment(format!("{nova}/os-hypervisors/{{}}")),
            Route::segment(format!("{glance}/images/{{}}")),
            Route::segment(format!("{net}/ports/{{}}")),
            Route::segment(format!("{cinder}/volumes/{{}}")),
            Route::segment("/volume/v3/{}/volumes".to_string()),
            // Quotas (last).
            Route::body(
                Method::PUT,
                format!("{nova}/os-quota-sets/{PROJECT}"),
                vec![
                    json!({"quota_set": {"instances": 100, "cores": 200, "ram": 512_000,
                    "key_pairs": 100, "force": true}}),
                ],
            ),
            Route::body(
                Method::PUT,
                format!("{net}/quotas/{PROJECT}"),
                vec![json!({"quota": {"network": 100, "port": 500, "subnet": 100,
                    "security_group": 100, "security_group_rule": 1000}})],
            ),
            Route::body(
                Method::PUT,
                format!("{cinder}/os-quota-sets/{PROJECT}"),
                vec![json!({"quota_set": {"volumes": 100, "gigabytes": 1000,
                    "snapshots": 100}})],
            ),
        ]
    }

    /// The seeded objects' ids and names (junk that refers to something real).
    pub(crate) fn id_pool(&self) -> Vec<String> {
        let mut out: Vec<String> = self.ids.values().cloned().collect();
        out.extend(
            [
                "web-0", "net1", "sub1", "port1", "sg1", "vol1", "snap1", "cirros", "own",
            ]
            .map(String::from),
        );
        out
    }

    /// The store's current revision (a count-only read).
    pub(crate) async fn revision(&self) -> i64 {
        self.api
            .store
            .current_revision()
            .await
            .expect("the store answers")
    }

    /// The store's revision and its whole key space at `revision` (`None`: now).
    pub(crate) async fn keyspace(&self, revision: Option<i64>) -> (i64, BTreeMap<String, Vec<u8>>) {
        let mut options = GetOptions::new().with_prefix();
        if let Some(r) = revision {
            options = options.with_revision(r);
        }
        let resp = self
            .api
            .store
            .client()
            .kv_client()
            .get("/cirrus/", Some(options))
            .await
            .expect("the store answers");
        let rev = resp.header().map(|h| h.revision()).unwrap_or_default();
        let keys = resp
            .kvs()
            .iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(kv.key()).into_owned(),
                    kv.value().to_vec(),
                )
            })
            .collect();
        (rev, keys)
    }

    /// What changed in the store between `before` and now (keys added, removed, changed).
    pub(crate) async fn changes_since(&self, before: i64) -> Vec<String> {
        let (_, old) = self.keyspace(Some(before)).await;
        let (_, new) = self.keyspace(None).await;
        let mut out = Vec::new();
        for (k, v) in &new {
            match old.get(k) {
                None => out.push(format!("+{k}")),
                Some(o) if o != v => out.push(format!("~{k}")),
                Some(_) => {}
            }
        }
        out.extend(
            old.keys()
                .filter(|k| !new.contains_key(*k))
                .map(|k| format!("-{k}")),
        );
        out
    }
}
