//! DHCP namespaces and the metadata proxy against real Open vSwitch, dnsmasq and namespaces.
//!
//! Why this file is long: its tests share one real fixture (an OVS bridge, namespaces standing
//! in for guests, dnsmasq and the metadata proxy) that takes most of its lines; each test is
//! one DHCP or metadata behaviour on it.
//!
//! Each test makes its own OVS bridge (userspace datapath, `fail_mode=standalone` so NORMAL
//! switching works without the firewall's flows) and namespaces standing in for guests: an
//! internal port with the guest's MAC moved into its own namespace, running busybox `udhcpc`.
//! Everything is removed at the end, even on failure. `CIRRUS_SKIP_OVS=1` skips them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use cirrus_node_agent::net::dhcp::{
    DhcpHost, DhcpManager, DhcpNetwork, DhcpPort, DhcpSubnet, DnsmasqAction, InternalPort,
    PlumbingError, PortPlumbing, namespace_name, port_ifname,
};
use cirrus_node_agent::net::metadata_proxy::MetadataProxies;
use cirrus_node_agent::net::netns;

/// False (after printing SKIP) when the tests should not run; panics with instructions when
/// Open vSwitch is needed but unreachable.
fn ovs_available() -> bool {
    if std::env::var("CIRRUS_SKIP_OVS").is_ok_and(|v| v == "1") {
        eprintln!("SKIP: CIRRUS_SKIP_OVS=1");
        return false;
    }
    let ok = Command::new("ovs-vsctl")
        .args(["--timeout=5", "show"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "Open vSwitch is not reachable (ovs-vsctl show failed): start it with \
         `setsid hack/start-ovs.sh start`, or set CIRRUS_SKIP_OVS=1 to skip"
    );
    true
}

fn sh(program: &str, args: &[&str]) -> std::process::Output {
    let out = Command::new(program).args(args).output().expect("spawn");
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The test's port plumbing: `ovs-vsctl` on the test bridge.
struct Vsctl {
    bridge: String,
}

impl PortPlumbing for Vsctl {
    fn ensure_internal(&self, port: &InternalPort) -> Result<(), PlumbingError> {
        let mut args = vec![
            "--timeout=10".to_string(),
            "--may-exist".into(),
            "add-port".into(),
            self.bridge.clone(),
            port.name.clone(),
            "--".into(),
            "set".into(),
            "port".into(),
            port.name.clone(),
            format!("tag={}", port.tag),
            "--".into(),
            "set".into(),
            "interface".into(),
            port.name.clone(),
            "type=internal".into(),
        ];
        for (k, v) in &port.external_ids {
            args.push(format!("external_ids:{k}=\"{v}\""));
        }
        let out = Command::new("ovs-vsctl").args(&args).output()?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into());
        }
        Ok(())
    }

    fn delete(&self, name: &str) -> Result<(), PlumbingError> {
        let out = Command::new("ovs-vsctl")
            .args([
                "--timeout=10",
                "--if-exists",
                "del-port",
                &self.bridge,
                name,
            ])
            .output()?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into());
        }
        Ok(())
    }
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// One test's world: a bridge, a DHCP manager with a state dir, guest namespaces. Dropping
/// it removes everything.
struct Lab {
    n: String,
    bridge: String,
    state: tempfile::TempDir,
    manager: DhcpManager,
    guests: Vec<String>,
    networks: Vec<String>,
}

impl Lab {
    fn new() -> Self {
        let n = format!(
            "{}{}",
            std::process::id() % 100_000,
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let bridge = format!("h3b{n}");
        sh(
            "ovs-vsctl",
            &[
                "--timeout=10",
                "--may-exist",
                "add-br",
                &bridge,
                "--",
                "set",
                "bridge",
                &bridge,
                "datapath_type=netdev",
                "fail_mode=standalone",
            ],
        );
        sh("ip", &["link", "set", &bridge, "up"]);
        let state = tempfile::tempdir().unwrap();
        let manager = DhcpManager::new(
            state.path().join("dhcp"),
            Box::new(Vsctl {
                bridge: bridge.clone(),
            }),
        );
        Self {
            n,
            bridge,
            state,
            manager,
            guests: Vec::new(),
            networks: Vec::new(),
        }
    }

    /// A network `10.77.0.0/24` on tag 5 with the DHCP port at .2 and `hosts`.
    fn network(&mut self, hosts: Vec<DhcpHost>) -> DhcpNetwork {
        let uid = format!("h3net-{}", self.n);
        self.networks.push(uid.clone());
        let port_uid = format!("{}-d0c0-4000-8000-000000000001", self.n);
        DhcpNetwork {
            network_uid: uid,
            project: "demo".into(),
            name: "net1".into(),
            tag: 5,
            mtu: 1400,
            subnets: vec![DhcpSubnet {
                cidr: "10.77.0.0/24".parse().unwrap(),
                gateway: Some("10.77.0.1".parse().unwrap()),
                dns_servers: vec!["10.77.0.53".parse().unwrap()],
                host_routes: vec![],
                enable_dhcp: true,
            }],
            port: DhcpPort {
                ifname: port_ifname(&port_uid),
                uid: port_uid,
                mac: "fa:16:3e:77:00:02".into(),
                ips: vec!["10.77.0.2/24".parse().unwrap()],
            },
            hosts,
        }
    }

    /// A guest namespace with an internal port (tag 5) carrying `mac`; returns its name.
    fn guest(&mut self, mac: &str) -> String {
        let name = format!("h3g{}{}", self.n, self.guests.len());
        let ns = format!("h3guest-{name}");
        netns::create(&ns).unwrap();
        self.guests.push(ns.clone());
        Vsctl {
            bridge: self.bridge.clone(),
        }
        .ensure_internal(&InternalPort {
            name: name.clone(),
            tag: 5,
            external_ids: BTreeMap::new(),
        })
        .unwrap();
        netns::move_link(&name, &ns).unwrap();
        netns::configure_link(
            &ns,
            &name,
            &netns::LinkConfig {
                mac: Some(mac.into()),
                ..Default::default()
            },
        )
        .unwrap();
        ns
    }

    fn script(&self) -> PathBuf {
        let path = self.state.path().join("udhcpc.script");
        if !path.exists() {
            std::fs::write(
                &path,
                "#!/bin/sh\ncase \"$1\" in bound|renew)\n  \
                 echo \"ip=$ip mask=$mask router=$router dns=$dns mtu=$mtu lease=$lease \
                 staticroutes=$staticroutes\" > \"$LEASE_OUT\";;\nesac\n",
            )
            .unwrap();
            sh("chmod", &["755", path.to_str().unwrap()]);
        }
        path
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for uid in &self.networks {
            let _ = self.manager.remove(uid, None);
        }
        for ns in &self.guests {
            let _ = netns::delete(ns);
        }
        let _ = Command::new("ovs-vsctl")
            .args(["--timeout=10", "--if-exists", "del-br", &self.bridge])
            .output();
    }
}

/// What udhcpc got, as `key=value` pairs, and how long it took; `None`: no lease.
fn dhcp(lab: &Lab, ns: &str, tries: u32) -> (Option<BTreeMap<String, String>>, Duration) {
    let out_file = lab.state.path().join(format!("lease-{ns}"));
    let _ = std::fs::remove_file(&out_file);
    let iface = netns::exec(ns, &["ip", "-j", "link", "show"]).unwrap();
    let links: serde_json::Value = serde_json::from_slice(&iface.stdout).unwrap();
    let ifname = links
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ifname"].as_str().unwrap().to_string())
        .find(|n| n != "lo")
        .unwrap();
    let start = Instant::now();
    let status = netns::command(
        ns,
        "busybox",
        &[
            "udhcpc",
            "-i",
            &ifname,
            "-n",
            "-q",
            "-O",
            "staticroutes",
            "-O",
            "mtu",
            "-t",
            &tries.to_string(),
            "-T",
            "1",
            "-s",
            lab.script().to_str().unwrap(),
        ],
    )
    .env("LEASE_OUT", &out_file)
    .output()
    .unwrap();
    let took = start.elapsed();
    if !status.status.success() {
        return (None, took);
    }
    let text = std::fs::read_to_string(&out_file).unwrap_or_default();
    let mut fields = BTreeMap::new();
    for pair in text.split_whitespace() {
        if let Some((k, v)) = pair.split_once('=') {
            fields.insert(k.to_string(), v.to_string());
        }
    }
    // staticroutes has spaces: take it from the raw line.
    if let Some((_, routes)) = text.trim().split_once("staticroutes=") {
        fields.insert("staticroutes".into(), routes.to_string());
    }
    (Some(fields), took)
}

fn process_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !matches!(
            s.rsplit_once(") ").and_then(|(_, r)| r.chars().next()),
            Some('Z' | 'X')
        )
    })
}

fn bridge_ports(bridge: &str) -> Vec<String> {
    String::from_utf8(sh("ovs-vsctl", &["--timeout=10", "list-ports", bridge]).stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn host(mac: &str, ip: &str) -> DhcpHost {
    DhcpHost {
        mac: mac.into(),
        ip: ip.parse().unwrap(),
        hostname: None,
    }
}

#[test]
fn real_dhcp_fixed_ips_reload_restart_and_remove() {
    if !ovs_available() {
        return;
    }
    let mut lab = Lab::new();
    let mut net = lab.network(vec![host("fa:16:3e:77:00:05", "10.77.0.5")]);
    let t = Instant::now();
    assert_eq!(lab.manager.ensure(&net).unwrap(), DnsmasqAction::Started);
    eprintln!(
        "MEASURE ensure (namespace + port + dnsmasq) took {:?}",
        t.elapsed()
    );
    let ns = namespace_name(&net.network_uid);
    assert!(netns::exists(&ns));
    let addrs = netns::addresses(&ns, &net.port.ifname).unwrap();
    assert!(
        addrs.contains(&"10.77.0.2/24".parse().unwrap()),
        "{addrs:?}"
    );
    assert!(
        addrs.contains(&"169.254.169.254/32".parse().unwrap()),
        "{addrs:?}"
    );
    let pid = lab.manager.pid(&net.network_uid).expect("dnsmasq runs");

    // The known guest gets exactly its fixed IP, the router, MTU and the metadata route.
    let guest_a = lab.guest("fa:16:3e:77:00:05");
    let (lease, took) = dhcp(&lab, &guest_a, 3);
    let lease = lease.expect("the known MAC gets a lease");
    eprintln!("MEASURE lease obtained in {took:?}: {lease:?}");
    assert_eq!(lease["ip"], "10.77.0.5");
    assert_eq!(lease["mask"], "24");
    assert_eq!(lease["router"], "10.77.0.1");
    assert_eq!(lease["dns"], "10.77.0.53");
    assert_eq!(lease["mtu"], "1400");
    assert_eq!(lease["lease"], "86400");
    assert_eq!(
        lease["staticroutes"],
        "169.254.169.254/32 10.77.0.2 0.0.0.0/0 10.77.0.1"
    );

    // A MAC not in the hosts list gets nothing.
    let guest_b = lab.guest("fa:16:3e:77:00:06");
    let (lease, _) = dhcp(&lab, &guest_b, 2);
    assert!(lease.is_none(), "unknown MAC got {lease:?}");

    // Nothing changed: nothing done.
    assert_eq!(lab.manager.ensure(&net).unwrap(), DnsmasqAction::Unchanged);
    assert_eq!(lab.manager.pid(&net.network_uid), Some(pid));

    // A new host: reload (SIGHUP), same process, and the guest gets its address.
    net.hosts.push(host("fa:16:3e:77:00:06", "10.77.0.6"));
    let t = Instant::now();
    assert_eq!(lab.manager.ensure(&net).unwrap(), DnsmasqAction::Reloaded);
    assert_eq!(
        lab.manager.pid(&net.network_uid),
        Some(pid),
        "reload keeps the process"
    );
    let (lease, took) = dhcp(&lab, &guest_b, 3);
    eprintln!(
        "MEASURE host added -> lease for it in {:?} (udhcpc {took:?})",
        t.elapsed()
    );
    assert_eq!(
        lease.expect("the added MAC gets a lease")["ip"],
        "10.77.0.6"
    );

    // dnsmasq killed behind the agent's back: ensure starts it again.
    sh("kill", &["-9", &pid.to_string()]);
    let deadline = Instant::now() + Duration::from_secs(3);
    while process_alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(lab.manager.ensure(&net).unwrap(), DnsmasqAction::Started);
    let new_pid = lab
        .manager
        .pid(&net.network_uid)
        .expect("dnsmasq runs again");
    assert_ne!(new_pid, pid);
    let (lease, _) = dhcp(&lab, &guest_a, 3);
    assert_eq!(lease.expect("lease after restart")["ip"], "10.77.0.5");
    // Only this lab's network: other tests (run in parallel) have DHCP namespaces of their own.
    assert!(lab.manager.present().unwrap().contains(&net.network_uid));

    // The DHCP port deleted from the switch behind the agent's back (its device goes with
    // it): ensure plugs a new one and restarts dnsmasq on it.
    sh(
        "ovs-vsctl",
        &["--timeout=10", "del-port", &lab.bridge, &net.port.ifname],
    );
    assert_eq!(lab.manager.ensure(&net).unwrap(), DnsmasqAction::Restarted);
    assert!(bridge_ports(&lab.bridge).contains(&net.port.ifname));
    let new_pid = lab.manager.pid(&net.network_uid).expect("dnsmasq runs");
    let (lease, _) = dhcp(&lab, &guest_a, 3);
    assert_eq!(lease.expect("lease after replug")["ip"], "10.77.0.5");
    assert_eq!(lab.manager.ensure(&net).unwrap(), DnsmasqAction::Unchanged);

    // Remove leaves nothing: no namespace, port, process or files.
    lab.manager
        .remove(&net.network_uid, Some(&net.port.ifname))
        .unwrap();
    assert!(!netns::exists(&ns));
    assert!(!bridge_ports(&lab.bridge).contains(&net.port.ifname));
    assert!(!process_alive(new_pid), "dnsmasq {new_pid} still runs");
    assert!(!lab.manager.paths(&net.network_uid).dir.exists());
    assert!(!lab.manager.present().unwrap().contains(&net.network_uid));
    // And again: idempotent.
    lab.manager.remove(&net.network_uid, None).unwrap();
}

/// A guest namespace configured the way a DHCP client configures itself: address, then
/// the option 121 routes (so 169.254.169.254 goes via the DHCP port).
fn dhcp_configured_guest(lab: &mut Lab, mac: &str) -> String {
    let ifname = format!("h3g{}{}", lab.n, lab.guests.len());
    let guest = lab.guest(mac);
    let (lease, _) = dhcp(lab, &guest, 3);
    let lease = lease.expect("lease");
    let cidr = format!("{}/{}", lease["ip"], lease["mask"]);
    netns::exec(&guest, &["ip", "addr", "add", &cidr, "dev", &ifname]).unwrap();
    let routes: Vec<&str> = lease["staticroutes"].split_whitespace().collect();
    for pair in routes.chunks(2) {
        netns::exec(&guest, &["ip", "route", "replace", pair[0], "via", pair[1]]).unwrap();
    }
    guest
}

/// A stand-in metadata service: answers with what it was asked.
async fn echo_server() -> (String, tokio::task::JoinHandle<()>) {
    use axum::http::HeaderMap;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(|uri: axum::http::Uri, headers: HeaderMap| async move {
        let h = |n: &str| {
            headers
                .get_all(n)
                .iter()
                .map(|v| v.to_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        axum::Json(serde_json::json!({
            "path": uri.to_string(),
            "network": h("x-cirrus-network"),
            "source": h("x-cirrus-source-ip"),
            "forwarded": h("forwarded"),
        }))
    });
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, task)
}

fn curl(ns: &str, url: &str, extra: &[&str]) -> Result<String, String> {
    let mut args = vec!["-sS", "--max-time", "5", url];
    args.extend_from_slice(extra);
    let out = netns::command(ns, "curl", &args).output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_metadata_proxy_forwards_with_network_and_peer_address() {
    if !ovs_available() {
        return;
    }
    let (api_url, echo) = echo_server().await;
    let mut lab = Lab::new();
    let net = lab.network(vec![host("fa:16:3e:77:00:05", "10.77.0.5")]);
    let ns = namespace_name(&net.network_uid);
    let guest = tokio::task::block_in_place(|| {
        lab.manager.ensure(&net).unwrap();
        dhcp_configured_guest(&mut lab, "fa:16:3e:77:00:05")
    });

    let proxies = MetadataProxies::new(cirrus_client::Client::new(api_url.clone()));
    assert!(proxies.ensure(&net.network_uid, &ns, "demo/net1").unwrap());
    assert!(
        !proxies.ensure(&net.network_uid, &ns, "demo/net1").unwrap(),
        "idempotent"
    );

    let url = "http://169.254.169.254/openstack/latest/meta_data.json";
    let g = guest.clone();
    let body = tokio::task::spawn_blocking(move || {
        curl(
            &g,
            url,
            &[
                "-H",
                "X-Cirrus-Source-Ip: 10.77.0.99",
                "-H",
                "X-Cirrus-Network: evil/other",
                "-H",
                "Forwarded: for=10.77.0.99",
            ],
        )
    })
    .await
    .unwrap()
    .expect("the guest reaches the proxy");
    let got: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(got["path"], "/metadata/openstack/latest/meta_data.json");
    assert_eq!(got["network"], serde_json::json!(["demo/net1"]));
    assert_eq!(got["source"], serde_json::json!(["10.77.0.5"]));
    assert_eq!(got["forwarded"], serde_json::json!([]));

    // The metadata address is not reachable from the agent's own namespace.
    let direct = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_millis(500))
        .send()
        .await;
    assert!(direct.is_err() || direct.unwrap().text().await.unwrap() != body);

    // Stopped: the guest's connection is refused.
    assert!(proxies.stop(&net.network_uid));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let g = guest.clone();
    let after = tokio::task::spawn_blocking(move || curl(&g, url, &[]))
        .await
        .unwrap();
    assert!(after.is_err(), "proxy still answers: {after:?}");
    echo.abort();
    tokio::task::block_in_place(|| drop(lab));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_metadata_end_to_end_through_the_api() {
    use base64::Engine;
    if !ovs_available() {
        return;
    }
    let api = cirrus_test_utils::TestApi::start().await;
    let base = format!("{}/apis/cirrus.dev/v1/projects/demo", api.base_url);
    let http = api.client();
    let post = |path: &str, body: serde_json::Value| {
        let req = http.post(format!("{base}{path}")).json(&body);
        async move {
            let resp = req.send().await.unwrap();
            assert!(resp.status().is_success(), "{}", resp.status());
            resp.json::<serde_json::Value>().await.unwrap()
        }
    };
    post(
        "/networks",
        serde_json::json!({"metadata": {"name": "net1"}, "spec": {}}),
    )
    .await;
    post(
        "/subnets",
        serde_json::json!({"metadata": {"name": "sub1"},
            "spec": {"network": "net1", "cidr": "10.77.0.0/24"}}),
    )
    .await;
    let user_data = "#!/bin/sh\necho MARKER-h3\n";
    let server = post(
        "/servers",
        serde_json::json!({"metadata": {"name": "vm-a"}, "spec": {
            "flavor": "m1", "image": "guest", "networks": [{"network": "net1"}],
            "userData": base64::engine::general_purpose::STANDARD.encode(user_data)}}),
    )
    .await;
    let uid = server["metadata"]["uid"].as_str().unwrap().to_string();
    post(
        "/ports",
        serde_json::json!({"metadata": {"name": "vm-a-port"}, "spec": {
            "network": "net1", "deviceOwner": "compute:nova", "deviceId": uid}}),
    )
    .await;
    let resp = http
        .patch(format!("{base}/ports/vm-a-port/status"))
        .header("Content-Type", "application/merge-patch+json")
        .body(
            serde_json::json!({"status": {
                "fixedIps": [{"subnet": "sub1", "ipAddress": "10.77.0.5"}],
                "macAddress": "fa:16:3e:77:00:05"}})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());

    let mut lab = Lab::new();
    let net = lab.network(vec![
        host("fa:16:3e:77:00:05", "10.77.0.5"),
        host("fa:16:3e:77:00:06", "10.77.0.6"),
    ]);
    let ns = namespace_name(&net.network_uid);
    let (guest_a, guest_b) = tokio::task::block_in_place(|| {
        lab.manager.ensure(&net).unwrap();
        let a = dhcp_configured_guest(&mut lab, "fa:16:3e:77:00:05");
        let b = dhcp_configured_guest(&mut lab, "fa:16:3e:77:00:06");
        (a, b)
    });
    let proxies = MetadataProxies::new(
        cirrus_client::Client::new(api.base_url.clone()).with_token(api.admin_token.clone()),
    );
    proxies.ensure(&net.network_uid, &ns, "demo/net1").unwrap();

    let fetch = |ns: String, path: &'static str| {
        tokio::task::spawn_blocking(move || {
            curl(
                &ns,
                &format!("http://169.254.169.254{path}"),
                &[
                    "-H",
                    "X-Cirrus-Source-Ip: 10.77.0.5",
                    "-w",
                    "\n%{http_code}",
                ],
            )
        })
    };
    let meta = fetch(guest_a.clone(), "/openstack/latest/meta_data.json")
        .await
        .unwrap()
        .unwrap();
    let (body, code) = meta.rsplit_once('\n').unwrap();
    assert_eq!(code, "200", "{body}");
    let meta: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(meta["uuid"], uid.as_str());
    assert_eq!(meta["name"], "vm-a");
    let user = fetch(guest_a.clone(), "/openstack/latest/user_data")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user, format!("{user_data}\n200"));
    // Guest B claims A's address in a header: it is nobody, so it gets nothing.
    let other = fetch(guest_b, "/openstack/latest/meta_data.json")
        .await
        .unwrap()
        .unwrap();
    assert!(other.ends_with("\n404"), "{other}");
    assert!(!other.contains(&uid), "{other}");
    proxies.stop(&net.network_uid);
    tokio::task::block_in_place(|| drop(lab));
}

/// Sends `request` byte for byte over TCP from inside namespace `ns` (a guest) to
/// 169.254.169.254:80 and reads until the proxy closes: the status code and the whole
/// answer. The socket is made by a thread that entered the namespace, so it lives there.
fn raw_http(ns: &str, request: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    let stream = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let handle = std::fs::File::open(netns::path(ns)).unwrap();
                rustix::thread::move_into_link_name_space(
                    handle.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .unwrap();
                std::net::TcpStream::connect(("169.254.169.254", 80))
            })
            .join()
            .unwrap()
    })
    .expect("the guest reaches the proxy");
    // A safety net against a hung proxy, not a measurement.
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut stream = stream;
    // The proxy may answer and close before reading everything (an oversized request).
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !answer.is_empty() => {
                break;
            }
            Err(e) => panic!("reading the proxy's answer: {e}"),
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let code = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    (code, text)
}

/// A stand-in metadata service that records every path it is asked for.
async fn recording_server() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push(uri.to_string());
            "recorded\n"
        }
    });
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, seen, task)
}

/// Raw requests a guest could send to get past the metadata tree: each must be refused
/// (`4xx`) by the proxy itself.
fn traversal_attempts(api_port: u16) -> Vec<(&'static str, Vec<u8>)> {
    let get = |target: &str| {
        format!("GET {target} HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\n\r\n")
            .into_bytes()
    };
    let long_path = format!("/openstack/{}", "a".repeat(4000));
    let long_query = format!("/openstack?{}", "q".repeat(4000));
    let mut attempts = vec![
        ("dot-dot", get("/../apis/cirrus.dev/v1/nodes")),
        ("dot-dot inside", get("/openstack/../../apis/cirrus.dev/v1/nodes")),
        ("dot-dot under latest", get("/latest/meta-data/../../../apis/cirrus.dev/v1/nodes")),
        ("%2e%2e", get("/%2e%2e/apis/cirrus.dev/v1/nodes")),
        ("%2E%2e", get("/%2E%2e/apis/cirrus.dev/v1/projects/demo/servers")),
        ("mixed dots", get("/openstack/.%2e/%2e./apis/cirrus.dev/v1/nodes")),
        ("dot segment", get("/openstack/./latest/meta_data.json")),
        ("%2f", get("/openstack%2f..%2f..%2fapis%2fcirrus.dev%2fv1%2fnodes")),
        ("%5c", get("/openstack%5c..%5c..%5capis%5ccirrus.dev%5cv1%5cnodes")),
        ("backslash", get("/openstack\\..\\..\\apis/cirrus.dev/v1/nodes")),
        ("double slash", get("//apis/cirrus.dev/v1/nodes")),
        ("double-encoded", get("/openstack/%252e%252e/%252e%252e/apis/cirrus.dev/v1/nodes")),
        (
            "absolute-form to the API",
            get(&format!("http://127.0.0.1:{api_port}/apis/cirrus.dev/v1/nodes")),
        ),
        (
            "absolute-form to metadata",
            get("http://169.254.169.254/openstack/latest/meta_data.json"),
        ),
        (
            "authority-form",
            b"CONNECT 127.0.0.1:80 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        ("not metadata", get("/apis/cirrus.dev/v1/nodes")),
        ("metadata prefix", get("/metadata/openstack/latest/meta_data.json")),
        ("identity", get("/identity/v3/auth/tokens")),
        ("encoded CRLF", get("/openstack%0d%0aX-Cirrus-Source-Ip:%2010.77.0.6/latest")),
        ("encoded NUL", get("/openstack%00/latest/meta_data.json")),
        ("NUL", get("/openstack\0/latest/meta_data.json")),
        (
            "CRLF in the path",
            b"GET /openstack\r\nX-Cirrus-Source-Ip: 10.77.0.6\r\n HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                .to_vec(),
        ),
        (
            "LF in the path",
            b"GET /openstack/latest\nHost: x HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        ("oversized path", get(&long_path)),
        ("oversized query", get(&long_query)),
        (
            "POST",
            b"POST /openstack/latest/meta_data.json HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                .to_vec(),
        ),
    ];
    let pad = "p".repeat(16 * 1024);
    attempts.push((
        "oversized header",
        format!(
            "GET /openstack/latest/meta_data.json HTTP/1.1\r\nHost: x\r\nX-Pad: {pad}\r\nConnection: close\r\n\r\n"
        )
        .into_bytes(),
    ));
    attempts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_metadata_proxy_refuses_what_is_not_the_guests_own_metadata() {
    use cirrus_node_agent::net::metadata_proxy::metadata_client;
    if !ovs_available() {
        return;
    }
    let api = cirrus_test_utils::TestApi::start().await;
    let api_port: u16 = api.base_url.rsplit(':').next().unwrap().parse().unwrap();
    let v1 = format!("{}/apis/cirrus.dev/v1", api.base_url);
    let base = format!("{v1}/projects/demo");
    let http = api.client();
    let post = |url: String, body: serde_json::Value| {
        let req = http.post(url).json(&body);
        async move {
            let resp = req.send().await.unwrap();
            assert!(resp.status().is_success(), "{}", resp.status());
            resp.json::<serde_json::Value>().await.unwrap()
        }
    };
    for node in ["h3n", "h3-other-node"] {
        post(
            format!("{v1}/nodes"),
            serde_json::json!({"metadata": {"name": node}}),
        )
        .await;
    }
    post(
        format!("{base}/networks"),
        serde_json::json!({"metadata": {"name": "net1"}, "spec": {}}),
    )
    .await;
    post(
        format!("{base}/subnets"),
        serde_json::json!({"metadata": {"name": "sub1"},
            "spec": {"network": "net1", "cidr": "10.77.0.0/24"}}),
    )
    .await;
    let mut uids = Vec::new();
    for (name, node, ip, mac) in [
        ("vm-a", "h3n", "10.77.0.5", "fa:16:3e:77:00:05"),
        ("vm-b", "h3-other-node", "10.77.0.6", "fa:16:3e:77:00:06"),
    ] {
        let server = post(
            format!("{base}/servers"),
            serde_json::json!({"metadata": {"name": name}, "spec": {
                "flavor": "m1", "image": "guest", "nodeName": node,
                "networks": [{"network": "net1"}]}}),
        )
        .await;
        let uid = server["metadata"]["uid"].as_str().unwrap().to_string();
        let port = format!("{name}-port");
        post(
            format!("{base}/ports"),
            serde_json::json!({"metadata": {"name": port}, "spec": {
                "network": "net1", "deviceOwner": "compute:nova", "deviceId": uid}}),
        )
        .await;
        let resp = http
            .patch(format!("{base}/ports/{port}/status"))
            .header("Content-Type", "application/merge-patch+json")
            .body(
                serde_json::json!({"status": {
                    "fixedIps": [{"subnet": "sub1", "ipAddress": ip}], "macAddress": mac}})
                .to_string(),
            )
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success());
        uids.push(uid);
    }
    let (mine, theirs) = (uids[0].clone(), uids[1].clone());
    // Nothing of these may ever reach the guest.
    let secrets = [
        theirs.as_str(),
        "h3-other-node",
        "\"items\"",
        "NodeList",
        "vm-b",
    ];

    // The node agent's credentials: its node token, and the restricted metadata token the
    // proxies get with it.
    let node_user =
        cirrus_api::identity::bootstrap::ensure_user(&api.store, "node-h3n", "pw", Some("h3n"))
            .await
            .unwrap();
    let node_client = cirrus_client::Client::new(api.base_url.clone())
        .with_token(api.identity.mint(&node_user, None, None).unwrap());
    let proxies = MetadataProxies::new(metadata_client(&node_client, "h3n"));

    let mut lab = Lab::new();
    let net = lab.network(vec![host("fa:16:3e:77:00:05", "10.77.0.5")]);
    let ns = namespace_name(&net.network_uid);
    let guest = tokio::task::block_in_place(|| {
        lab.manager.ensure(&net).unwrap();
        dhcp_configured_guest(&mut lab, "fa:16:3e:77:00:05")
    });
    proxies.ensure(&net.network_uid, &ns, "demo/net1").unwrap();
    let raw = |request: Vec<u8>| {
        let guest = guest.clone();
        tokio::task::spawn_blocking(move || raw_http(&guest, &request))
    };

    // The raw client works: the guest's own metadata, even when it claims another address.
    let own = b"GET /openstack/latest/meta_data.json HTTP/1.1\r\nHost: evil.example\r\n\
        X-Cirrus-Source-Ip: 10.77.0.6\r\nX-Cirrus-Network: demo/net1\r\nConnection: close\r\n\r\n";
    let (code, answer) = raw(own.to_vec()).await.unwrap();
    assert_eq!(code, 200, "{answer}");
    assert!(answer.contains(&mine), "{answer}");
    for secret in secrets {
        assert!(!answer.contains(secret), "{secret} in {answer}");
    }

    for (what, request) in traversal_attempts(api_port) {
        let (code, answer) = raw(request).await.unwrap();
        assert!((400..500).contains(&code), "{what}: {answer}");
        for secret in secrets.iter().chain([&mine.as_str()]) {
            assert!(!answer.contains(secret), "{what}: {secret} in {answer}");
        }
    }

    // The same attempts against a proxy whose upstream records what it is asked: nothing of
    // them is forwarded at all, only the guest's own metadata path.
    let (recorder, seen, recorder_task) = recording_server().await;
    proxies.use_api(cirrus_client::Client::new(recorder));
    assert!(
        !proxies.ensure(&net.network_uid, &ns, "demo/net1").unwrap(),
        "the running proxy forwards with the new client"
    );
    for (what, request) in traversal_attempts(api_port) {
        let (code, answer) = raw(request).await.unwrap();
        assert!((400..500).contains(&code), "{what}: {answer}");
    }
    assert_eq!(seen.lock().unwrap().clone(), Vec::<String>::new());
    let (code, _) = raw(own.to_vec()).await.unwrap();
    assert_eq!(code, 200);
    assert_eq!(
        seen.lock().unwrap().clone(),
        vec!["/metadata/openstack/latest/meta_data.json".to_string()]
    );
    recorder_task.abort();
    proxies.stop(&net.network_uid);
    tokio::task::block_in_place(|| drop(lab));
}
