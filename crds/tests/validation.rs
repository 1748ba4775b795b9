//! Table tests of `KindInfo::validate`: good objects pass (and come back normalized), bad
//! ones are refused with the path of the offending field.
//!
//! Why this file is long: it is a table: one row per good or bad object of every kind, each
//! with the field path it must name.

use cirrus_crds::{FieldErrors, find_kind};
use serde_json::{Value, json};

/// Validates `obj` as `kind`.
fn validate(kind: &str, obj: Value) -> Result<Value, FieldErrors> {
    (find_kind(kind)
        .unwrap_or_else(|| panic!("no kind {kind}"))
        .validate)(obj)
}

/// A project-scoped object in project `demo`.
fn obj(name: &str, spec: Value) -> Value {
    json!({"metadata": {"name": name, "project": "demo"}, "spec": spec})
}

/// A cluster-scoped object.
fn cobj(name: &str, spec: Value) -> Value {
    json!({"metadata": {"name": name}, "spec": spec})
}

fn server(extra: Value) -> Value {
    let mut spec =
        json!({"flavor": "m1.tiny", "image": "cirros", "networks": [{"network": "demo-net"}]});
    merge(&mut spec, extra);
    obj("web-0", spec)
}

fn subnet(extra: Value) -> Value {
    let mut spec = json!({"network": "demo-net", "cidr": "10.0.0.0/24"});
    merge(&mut spec, extra);
    obj("demo-subnet", spec)
}

fn rule(r: Value) -> Value {
    obj("web", json!({"rules": [r]}))
}

/// Deep merge of `patch` into `target` (`null` values are kept, to test `null` fields).
fn merge(target: &mut Value, patch: Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().unwrap();
            for (k, v) in p {
                merge(t.entry(k).or_insert(Value::Null), v);
            }
        }
        other => *target = other,
    }
}

const SSH_ED25519: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMbZ8TQz2gEBd9vZlPbF3l2RfH6eWjZKZp2y0xTQmU4L demo@example";

fn good_cases() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "flavor",
            "Flavor",
            cobj("m1.tiny", json!({"vcpus": 1, "ram": 512, "disk": 1})),
        ),
        (
            "node",
            "Node",
            cobj(
                "node-a",
                json!({"unschedulable": true, "traits": ["HW_CPU_X86_AVX2"]}),
            ),
        ),
        ("node empty", "Node", cobj("node-a", json!({}))),
        (
            "project",
            "Project",
            cobj("demo", json!({"description": "Demo"})),
        ),
        (
            "user",
            "User",
            cobj(
                "alice",
                json!({"email": "alice@example.com", "defaultProject": "demo",
            "passwordHash": "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g"}),
            ),
        ),
        (
            "rolebinding",
            "RoleBinding",
            cobj(
                "alice-demo",
                json!({"user": "alice", "project": "demo", "role": "member"}),
            ),
        ),
        (
            "applyset",
            "ApplySet",
            cobj(
                "gitops",
                json!({"members": [
            {"kind": "Server", "project": "demo", "name": "web-0", "uid": "0d9b"},
            {"kind": "Flavor", "name": "m1.tiny"}]}),
            ),
        ),
        (
            "image",
            "Image",
            obj(
                "cirros",
                json!({"visibility": "public", "diskFormat": "qcow2",
            "source": {"url": "https://download.cirros-cloud.net/0.6.2/cirros-0.6.2-x86_64-disk.img"},
            "properties": {"hw_disk_bus": "virtio", "os_distro": "cirros"}, "minRam": 64}),
            ),
        ),
        ("server", "Server", server(json!({}))),
        (
            "server full",
            "Server",
            server(json!({
            "networks": [{"network": "demo-net", "fixedIp": "10.0.0.10"}, {"port": "p1"}],
            "securityGroups": ["default"], "keyName": "demo", "userData": "I2Nsb3VkLWNvbmZpZwo=",
            "metadata": {"role": "web"}, "schedulerHints": {"group": "web", "differentHost": ["web-1"]},
            "powerState": "Stopped", "rebootCount": 2, "rebootType": "hard", "configDrive": true,
            "volumes": [{"volume": "data", "device": "/dev/vdb", "deleteOnTermination": true}],
            "hostname": "web-0.example.com"})),
        ),
        (
            "server boot volume",
            "Server",
            obj("db", json!({"flavor": "m1.small", "bootVolume": "db-root"})),
        ),
        (
            "network",
            "Network",
            obj(
                "demo-net",
                json!({"mtu": 1450, "segmentation": {"type": "vxlan", "id": 1001}}),
            ),
        ),
        (
            "network vlan",
            "Network",
            obj(
                "ext",
                json!({"external": true, "shared": true,
            "segmentation": {"type": "vlan", "id": 100, "physicalNetwork": "physnet1"}}),
            ),
        ),
        ("subnet", "Subnet", subnet(json!({}))),
        (
            "subnet full",
            "Subnet",
            subnet(json!({"gatewayIp": "10.0.0.1", "ipVersion": 4,
            "allocationPools": [{"start": "10.0.0.10", "end": "10.0.0.100"}, {"start": "10.0.0.200", "end": "10.0.0.254"}],
            "dnsNameservers": ["8.8.8.8"], "hostRoutes": [{"destination": "192.168.0.0/16", "nexthop": "10.0.0.254"}]})),
        ),
        (
            "subnet no gateway",
            "Subnet",
            subnet(json!({"gatewayIp": null})),
        ),
        (
            "subnet v6",
            "Subnet",
            subnet(
                json!({"cidr": "fd00:1::/64", "ipv6RaMode": "slaac", "ipv6AddressMode": "slaac"}),
            ),
        ),
        (
            "port",
            "Port",
            obj(
                "p1",
                json!({"network": "demo-net", "fixedIps": [{"subnet": "demo-subnet", "ipAddress": "10.0.0.5"}],
            "macAddress": "fa:16:3e:00:00:01", "allowedAddressPairs": [{"ipAddress": "10.0.0.0/24"}, {"ipAddress": "10.0.0.99"}]}),
            ),
        ),
        (
            "router",
            "Router",
            obj(
                "r1",
                json!({"externalGateway": {"network": "public"},
            "interfaces": [{"subnet": "demo-subnet"}, {"port": "p1"}],
            "routes": [{"destination": "172.16.0.0/12", "nexthop": "10.0.0.254"}]}),
            ),
        ),
        (
            "floatingip",
            "FloatingIP",
            obj(
                "fip-1",
                json!({"floatingNetwork": "public", "port": "p1", "fixedIpAddress": "10.0.0.5"}),
            ),
        ),
        (
            "sg ssh",
            "SecurityGroup",
            rule(
                json!({"direction": "ingress", "protocol": "tcp", "portRangeMin": 22, "portRangeMax": 22, "remoteIpPrefix": "0.0.0.0/0"}),
            ),
        ),
        (
            "sg icmp",
            "SecurityGroup",
            rule(json!({"protocol": "icmp", "portRangeMin": 8, "portRangeMax": 0})),
        ),
        (
            "sg protocol number",
            "SecurityGroup",
            rule(json!({"protocol": 6, "portRangeMin": 80, "portRangeMax": 443})),
        ),
        (
            "sg any egress v6",
            "SecurityGroup",
            rule(json!({"direction": "egress", "ethertype": "IPv6"})),
        ),
        (
            "sg remote group",
            "SecurityGroup",
            rule(
                json!({"protocol": "udp", "portRangeMin": 53, "portRangeMax": 53, "remoteGroup": "default"}),
            ),
        ),
        ("volume", "Volume", obj("data", json!({"size": 10}))),
        (
            "volume from image",
            "Volume",
            obj(
                "root",
                json!({"size": 1, "source": {"type": "image", "name": "cirros"}, "bootable": true}),
            ),
        ),
        (
            "snapshot",
            "VolumeSnapshot",
            obj("data-snap", json!({"volume": "data", "force": true})),
        ),
        (
            "keypair",
            "Keypair",
            obj("demo", json!({"publicKey": SSH_ED25519})),
        ),
        (
            "servergroup",
            "ServerGroup",
            obj(
                "web",
                json!({"policy": "anti-affinity", "rules": {"maxServerPerHost": 2}}),
            ),
        ),
        (
            "servergroup soft",
            "ServerGroup",
            obj("web", json!({"policy": "soft-anti-affinity"})),
        ),
        (
            "event",
            "Event",
            obj(
                "web-0.17a2",
                json!({
            "involvedObject": {"kind": "Server", "name": "web-0", "project": "demo"},
            "reason": "Scheduled", "message": "Scheduled to node-a", "type": "Normal",
            "count": 1, "firstTimestamp": "2025-01-01T00:00:00Z", "lastTimestamp": "2025-01-01T00:00:00Z",
            "source": {"component": "scheduler"}}),
            ),
        ),
    ]
}

#[test]
fn good_objects_pass() {
    for (name, kind, obj) in good_cases() {
        let out = validate(kind, obj.clone())
            .unwrap_or_else(|e| panic!("case {name:?}: {kind} refused: {e}"));
        assert_eq!(out["apiVersion"], "cirrus.dev/v1", "{name}");
        assert_eq!(out["kind"], kind, "{name}");
        // Normalization is idempotent: the normalized object validates to itself.
        let again = validate(kind, out.clone()).unwrap();
        assert_eq!(
            again, out,
            "case {name:?} is not stable under normalization"
        );
    }
}

fn bad_cases() -> Vec<(&'static str, &'static str, Value, &'static str)> {
    vec![
        // Structure: unknown fields at every level, wrong types, bad enums.
        (
            "unknown top-level",
            "Server",
            {
                let mut s = server(json!({}));
                s["bogus"] = json!(1);
                s
            },
            "bogus",
        ),
        (
            "unknown in metadata",
            "Server",
            {
                let mut s = server(json!({}));
                s["metadata"]["bogus"] = json!(1);
                s
            },
            "metadata.bogus",
        ),
        (
            "unknown in spec",
            "Server",
            server(json!({"bogus": 1})),
            "spec.bogus",
        ),
        (
            "unknown nested",
            "Server",
            server(json!({"networks": [{"network": "n", "bogus": 1}]})),
            "spec.networks[0].bogus",
        ),
        (
            "unknown in status",
            "Server",
            {
                let mut s = server(json!({}));
                s["status"] = json!({"phase": "ACTIVE", "bogus": 1});
                s
            },
            "status.bogus",
        ),
        (
            "wrong type",
            "Flavor",
            cobj("m1", json!({"vcpus": "two", "ram": 512})),
            "spec.vcpus",
        ),
        (
            "negative",
            "Flavor",
            cobj("m1", json!({"vcpus": -1, "ram": 512})),
            "spec.vcpus",
        ),
        (
            "missing required",
            "Server",
            obj("web-0", json!({"image": "cirros"})),
            "spec.flavor",
        ),
        (
            "bad enum powerState",
            "Server",
            server(json!({"powerState": "running"})),
            "spec.powerState",
        ),
        (
            "bad enum role",
            "RoleBinding",
            cobj("rb", json!({"user": "a", "project": "b", "role": "owner"})),
            "spec.role",
        ),
        (
            "bad enum policy",
            "ServerGroup",
            obj("g", json!({"policy": "anti_affinity"})),
            "spec.policy",
        ),
        (
            "bad enum visibility",
            "Image",
            obj("i", json!({"visibility": "everyone"})),
            "spec.visibility",
        ),
        (
            "bad disk format",
            "Image",
            obj("i", json!({"diskFormat": "qcow3"})),
            "spec.diskFormat",
        ),
        (
            "bad status phase",
            "Server",
            {
                let mut s = server(json!({}));
                s["status"] = json!({"phase": "RUNNING"});
                s
            },
            "status.phase",
        ),
        (
            "wrong kind",
            "Server",
            {
                let mut s = server(json!({}));
                s["kind"] = json!("Volume");
                s
            },
            "kind",
        ),
        (
            "wrong apiVersion",
            "Server",
            {
                let mut s = server(json!({}));
                s["apiVersion"] = json!("v1");
                s
            },
            "apiVersion",
        ),
        // Metadata.
        (
            "bad name",
            "Server",
            obj("Web_0", json!({"flavor": "m1.tiny", "image": "cirros"})),
            "metadata.name",
        ),
        ("empty name", "Network", obj("", json!({})), "metadata.name"),
        (
            "cluster kind with project",
            "Flavor",
            json!({"metadata": {"name": "m1", "project": "demo"}, "spec": {"vcpus": 1, "ram": 1}}),
            "metadata.project",
        ),
        (
            "bad project",
            "Network",
            json!({"metadata": {"name": "n", "project": "Demo"}}),
            "metadata.project",
        ),
        (
            "bad label",
            "Network",
            json!({"metadata": {"name": "n", "project": "demo", "labels": {"a b": "c"}}}),
            "metadata.labels[\"a b\"]",
        ),
        // Server semantics.
        (
            "no image nor volume",
            "Server",
            obj("web-0", json!({"flavor": "m1.tiny"})),
            "spec.image",
        ),
        (
            "image and volume",
            "Server",
            server(json!({"bootVolume": "v"})),
            "spec.bootVolume",
        ),
        (
            "network and port",
            "Server",
            server(json!({"networks": [{"network": "n", "port": "p"}]})),
            "spec.networks[0].port",
        ),
        (
            "network entry empty",
            "Server",
            server(json!({"networks": [{}]})),
            "spec.networks[0]",
        ),
        (
            "fixed ip on port",
            "Server",
            server(json!({"networks": [{"port": "p", "fixedIp": "10.0.0.3"}]})),
            "spec.networks[0].fixedIp",
        ),
        (
            "bad fixed ip",
            "Server",
            server(json!({"networks": [{"network": "n", "fixedIp": "10.0.0.300"}]})),
            "spec.networks[0].fixedIp",
        ),
        (
            "bad flavor ref",
            "Server",
            server(json!({"flavor": "M1"})),
            "spec.flavor",
        ),
        (
            "user data not base64",
            "Server",
            server(json!({"userData": "#cloud-config\nusers: []"})),
            "spec.userData",
        ),
        (
            "user data too big",
            "Server",
            server(json!({"userData": "A".repeat(90_000)})),
            "spec.userData",
        ),
        (
            "bad device",
            "Server",
            server(json!({"volumes": [{"volume": "v", "device": "vdb"}]})),
            "spec.volumes[0].device",
        ),
        (
            "volume twice",
            "Server",
            server(json!({"volumes": [{"volume": "v"}, {"volume": "v"}]})),
            "spec.volumes[1].volume",
        ),
        (
            "bad hostname",
            "Server",
            server(json!({"hostname": "web_0"})),
            "spec.hostname",
        ),
        (
            "metadata value type",
            "Server",
            server(json!({"metadata": {"a": 1}})),
            "spec.metadata.a",
        ),
        (
            "bad reboot type",
            "Server",
            server(json!({"rebootType": "HARD"})),
            "spec.rebootType",
        ),
        // Subnet semantics.
        (
            "bad cidr",
            "Subnet",
            subnet(json!({"cidr": "10.0.0.0/33"})),
            "spec.cidr",
        ),
        (
            "cidr garbage",
            "Subnet",
            subnet(json!({"cidr": "ten"})),
            "spec.cidr",
        ),
        (
            "cidr host bits",
            "Subnet",
            subnet(json!({"cidr": "10.0.0.1/24"})),
            "spec.cidr",
        ),
        (
            "gateway outside cidr",
            "Subnet",
            subnet(json!({"gatewayIp": "10.0.1.1"})),
            "spec.gatewayIp",
        ),
        (
            "gateway broadcast",
            "Subnet",
            subnet(json!({"gatewayIp": "10.0.0.255"})),
            "spec.gatewayIp",
        ),
        (
            "gateway wrong family",
            "Subnet",
            subnet(json!({"gatewayIp": "fd00::1"})),
            "spec.gatewayIp",
        ),
        (
            "version mismatch",
            "Subnet",
            subnet(json!({"ipVersion": 6})),
            "spec.ipVersion",
        ),
        (
            "version invalid",
            "Subnet",
            subnet(json!({"ipVersion": 5})),
            "spec.ipVersion",
        ),
        (
            "pool outside cidr",
            "Subnet",
            subnet(json!({"allocationPools": [{"start": "10.0.0.10", "end": "10.0.1.10"}]})),
            "spec.allocationPools[0].end",
        ),
        (
            "pool reversed",
            "Subnet",
            subnet(json!({"allocationPools": [{"start": "10.0.0.50", "end": "10.0.0.10"}]})),
            "spec.allocationPools[0]",
        ),
        (
            "pool contains default gateway",
            "Subnet",
            subnet(json!({"allocationPools": [{"start": "10.0.0.1", "end": "10.0.0.10"}]})),
            "spec.allocationPools[0]",
        ),
        (
            "pool contains gateway",
            "Subnet",
            subnet(
                json!({"gatewayIp": "10.0.0.254", "allocationPools": [{"start": "10.0.0.2", "end": "10.0.0.254"}]}),
            ),
            "spec.allocationPools[0]",
        ),
        (
            "pools overlap",
            "Subnet",
            subnet(
                json!({"allocationPools": [{"start": "10.0.0.2", "end": "10.0.0.20"}, {"start": "10.0.0.20", "end": "10.0.0.30"}]}),
            ),
            "spec.allocationPools[1]",
        ),
        (
            "route family",
            "Subnet",
            subnet(json!({"hostRoutes": [{"destination": "fd00::/8", "nexthop": "10.0.0.1"}]})),
            "spec.hostRoutes[0].destination",
        ),
        (
            "v6 modes on v4",
            "Subnet",
            subnet(json!({"ipv6RaMode": "slaac"})),
            "spec.ipv6RaMode",
        ),
        (
            "bad network ref",
            "Subnet",
            subnet(json!({"network": ""})),
            "spec.network",
        ),
        // Network, port, router, floating IP.
        (
            "vlan id range",
            "Network",
            obj("n", json!({"segmentation": {"type": "vlan", "id": 5000}})),
            "spec.segmentation.id",
        ),
        (
            "flat with id",
            "Network",
            obj("n", json!({"segmentation": {"type": "flat", "id": 5}})),
            "spec.segmentation.id",
        ),
        (
            "bad mtu",
            "Network",
            obj("n", json!({"mtu": 10})),
            "spec.mtu",
        ),
        (
            "bad mac",
            "Port",
            obj(
                "p",
                json!({"network": "n", "macAddress": "zz:16:3e:00:00:01"}),
            ),
            "spec.macAddress",
        ),
        (
            "multicast mac",
            "Port",
            obj(
                "p",
                json!({"network": "n", "macAddress": "01:00:5e:00:00:01"}),
            ),
            "spec.macAddress",
        ),
        (
            "empty fixed ip",
            "Port",
            obj("p", json!({"network": "n", "fixedIps": [{}]})),
            "spec.fixedIps[0]",
        ),
        (
            "sg without port security",
            "Port",
            obj(
                "p",
                json!({"network": "n", "portSecurityEnabled": false, "securityGroups": ["default"]}),
            ),
            "spec.securityGroups",
        ),
        (
            "bad address pair",
            "Port",
            obj(
                "p",
                json!({"network": "n", "allowedAddressPairs": [{"ipAddress": "nope"}]}),
            ),
            "spec.allowedAddressPairs[0].ipAddress",
        ),
        (
            "interface both",
            "Router",
            obj("r", json!({"interfaces": [{"subnet": "s", "port": "p"}]})),
            "spec.interfaces[0]",
        ),
        (
            "interface neither",
            "Router",
            obj("r", json!({"interfaces": [{}]})),
            "spec.interfaces[0]",
        ),
        (
            "fip fixed without port",
            "FloatingIP",
            obj(
                "f",
                json!({"floatingNetwork": "public", "fixedIpAddress": "10.0.0.5"}),
            ),
            "spec.fixedIpAddress",
        ),
        // Security group rules.
        (
            "port range order",
            "SecurityGroup",
            rule(json!({"protocol": "tcp", "portRangeMin": 443, "portRangeMax": 80})),
            "spec.rules[0].portRangeMax",
        ),
        (
            "port zero",
            "SecurityGroup",
            rule(json!({"protocol": "tcp", "portRangeMin": 0, "portRangeMax": 80})),
            "spec.rules[0].portRangeMin",
        ),
        (
            "port too big",
            "SecurityGroup",
            rule(json!({"protocol": "udp", "portRangeMin": 1, "portRangeMax": 70000})),
            "spec.rules[0].portRangeMax",
        ),
        (
            "ports without protocol",
            "SecurityGroup",
            rule(json!({"portRangeMin": 22, "portRangeMax": 22})),
            "spec.rules[0].portRangeMin",
        ),
        (
            "ports on gre",
            "SecurityGroup",
            rule(json!({"protocol": "gre", "portRangeMin": 1, "portRangeMax": 2})),
            "spec.rules[0].portRangeMin",
        ),
        (
            "icmp type range",
            "SecurityGroup",
            rule(json!({"protocol": "icmp", "portRangeMin": 300})),
            "spec.rules[0].portRangeMin",
        ),
        (
            "icmp code range",
            "SecurityGroup",
            rule(json!({"protocol": "icmp", "portRangeMin": 8, "portRangeMax": 256})),
            "spec.rules[0].portRangeMax",
        ),
        (
            "icmp code without type",
            "SecurityGroup",
            rule(json!({"protocol": "icmp", "portRangeMax": 0})),
            "spec.rules[0].portRangeMax",
        ),
        (
            "unknown protocol",
            "SecurityGroup",
            rule(json!({"protocol": "tcpp"})),
            "spec.rules[0].protocol",
        ),
        (
            "protocol number range",
            "SecurityGroup",
            rule(json!({"protocol": 300})),
            "spec.rules[0].protocol",
        ),
        (
            "ipv6-icmp on IPv4",
            "SecurityGroup",
            rule(json!({"protocol": "ipv6-icmp"})),
            "spec.rules[0].protocol",
        ),
        (
            "prefix family",
            "SecurityGroup",
            rule(json!({"ethertype": "IPv6", "remoteIpPrefix": "10.0.0.0/8"})),
            "spec.rules[0].remoteIpPrefix",
        ),
        (
            "bad prefix",
            "SecurityGroup",
            rule(json!({"remoteIpPrefix": "10.0.0.0/40"})),
            "spec.rules[0].remoteIpPrefix",
        ),
        (
            "prefix and group",
            "SecurityGroup",
            rule(json!({"remoteIpPrefix": "10.0.0.0/8", "remoteGroup": "default"})),
            "spec.rules[0].remoteGroup",
        ),
        (
            "bad direction",
            "SecurityGroup",
            rule(json!({"direction": "in"})),
            "spec.rules[0].direction",
        ),
        (
            "bad ethertype",
            "SecurityGroup",
            rule(json!({"ethertype": "ipv4"})),
            "spec.rules[0].ethertype",
        ),
        (
            "duplicate rule",
            "SecurityGroup",
            obj(
                "web",
                json!({"rules": [{"protocol": "tcp", "portRangeMin": 22, "portRangeMax": 22}, {"protocol": "6", "portRangeMin": 22, "portRangeMax": 22}]}),
            ),
            "spec.rules[1]",
        ),
        // Volumes, keypairs, groups, events, identity.
        (
            "volume size zero",
            "Volume",
            obj("v", json!({"size": 0})),
            "spec.size",
        ),
        (
            "volume source without name",
            "Volume",
            obj("v", json!({"size": 1, "source": {"type": "snapshot"}})),
            "spec.source.name",
        ),
        (
            "volume bad source type",
            "Volume",
            obj(
                "v",
                json!({"size": 1, "source": {"type": "backup", "name": "b"}}),
            ),
            "spec.source.type",
        ),
        (
            "snapshot without volume",
            "VolumeSnapshot",
            obj("s", json!({"force": true})),
            "spec.volume",
        ),
        (
            "key type",
            "Keypair",
            obj("k", json!({"publicKey": "ssh-foo AAAA"})),
            "spec.publicKey",
        ),
        (
            "key body",
            "Keypair",
            obj("k", json!({"publicKey": "ssh-rsa not*base64"})),
            "spec.publicKey",
        ),
        (
            "key body mismatch",
            "Keypair",
            obj(
                "k",
                json!({"publicKey": SSH_ED25519.replace("ssh-ed25519", "ssh-rsa")}),
            ),
            "spec.publicKey",
        ),
        (
            "key missing",
            "Keypair",
            obj("k", json!({})),
            "spec.publicKey",
        ),
        (
            "max per host on affinity",
            "ServerGroup",
            obj(
                "g",
                json!({"policy": "affinity", "rules": {"maxServerPerHost": 2}}),
            ),
            "spec.rules.maxServerPerHost",
        ),
        (
            "event reason",
            "Event",
            obj(
                "e",
                json!({"involvedObject": {"kind": "Server", "name": "web-0"}, "reason": "scheduled", "source": {"component": "scheduler"}}),
            ),
            "spec.reason",
        ),
        (
            "event type",
            "Event",
            obj(
                "e",
                json!({"involvedObject": {"kind": "Server", "name": "web-0"}, "reason": "Scheduled", "type": "Error", "source": {"component": "scheduler"}}),
            ),
            "spec.type",
        ),
        (
            "event times",
            "Event",
            obj(
                "e",
                json!({"involvedObject": {"kind": "Server", "name": "web-0"}, "reason": "Scheduled", "source": {"component": "s"},
            "firstTimestamp": "2025-01-02T00:00:00Z", "lastTimestamp": "2025-01-01T00:00:00Z"}),
            ),
            "spec.lastTimestamp",
        ),
        (
            "password hash",
            "User",
            cobj("alice", json!({"passwordHash": "hunter2"})),
            "spec.passwordHash",
        ),
        (
            "email",
            "User",
            cobj("alice", json!({"email": "alice"})),
            "spec.email",
        ),
        (
            "project domain",
            "Project",
            cobj("demo", json!({"domain": "other"})),
            "spec.domain",
        ),
        (
            "applyset duplicate",
            "ApplySet",
            cobj(
                "a",
                json!({"members": [{"kind": "Flavor", "name": "m1"}, {"kind": "Flavor", "name": "m1"}]}),
            ),
            "spec.members[1]",
        ),
        (
            "applyset kind",
            "ApplySet",
            cobj("a", json!({"members": [{"kind": "flavor", "name": "m1"}]})),
            "spec.members[0].kind",
        ),
        (
            "shared members",
            "Image",
            obj("i", json!({"members": ["other"]})),
            "spec.members",
        ),
        (
            "node ratio",
            "Node",
            cobj("n", json!({"cpuAllocationRatio": 0.0})),
            "spec.cpuAllocationRatio",
        ),
        (
            "node trait",
            "Node",
            cobj("n", json!({"traits": ["avx2"]})),
            "spec.traits[0]",
        ),
    ]
}

#[test]
fn bad_objects_name_the_field() {
    let mut failures = Vec::new();
    for (name, kind, obj, field) in bad_cases() {
        match validate(kind, obj) {
            Ok(_) => failures.push(format!(
                "case {name:?}: {kind} accepted, wanted an error at {field}"
            )),
            Err(errors) => {
                if !errors.0.iter().any(|e| e.field == field) {
                    failures.push(format!(
                        "case {name:?}: wanted an error at {field}, got: {errors}"
                    ));
                }
                for e in &errors.0 {
                    assert!(!e.reason.contains(" at line "), "case {name:?}: {e}");
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn defaults_are_filled_in() {
    let out = validate(
        "Server",
        obj("web-0", json!({"flavor": "m1.tiny", "image": "cirros"})),
    )
    .unwrap();
    assert_eq!(out["spec"]["powerState"], "Running");
    assert_eq!(out["spec"]["rebootType"], "soft");
    let out = validate("Network", obj("n", json!({}))).unwrap();
    assert_eq!(out["spec"]["adminStateUp"], true);
    assert_eq!(out["spec"]["portSecurityEnabled"], true);
    let out = validate("Project", cobj("demo", json!({}))).unwrap();
    assert_eq!(out["spec"]["enabled"], true);
    assert_eq!(out["spec"]["domain"], "default");
}

#[test]
fn subnet_gateway_semantics() {
    use cirrus_crds::Subnet;
    let parse =
        |v: Value| -> Subnet { serde_json::from_value(validate("Subnet", v).unwrap()).unwrap() };
    let s = parse(subnet(json!({})));
    assert_eq!(s.spec.gateway(), Some("10.0.0.1".parse().unwrap()));
    assert_eq!(s.spec.ip_version(), 4);
    let s = parse(subnet(json!({"gatewayIp": null})));
    assert_eq!(s.spec.gateway(), None);
    let s = parse(subnet(json!({"gatewayIp": "10.0.0.254"})));
    assert_eq!(s.spec.gateway(), Some("10.0.0.254".parse().unwrap()));
    let s = parse(subnet(json!({"cidr": "fd00::/64"})));
    assert_eq!(s.spec.gateway(), Some("fd00::1".parse().unwrap()));
    assert_eq!(s.spec.ip_version(), 6);
}

#[test]
fn all_errors_are_reported_at_once() {
    let errors = validate(
        "Subnet",
        subnet(json!({"network": "Bad", "gatewayIp": "10.9.9.9", "ipVersion": 6})),
    )
    .unwrap_err();
    let fields: Vec<&str> = errors.0.iter().map(|e| e.field.as_str()).collect();
    for f in ["spec.network", "spec.gatewayIp", "spec.ipVersion"] {
        assert!(fields.contains(&f), "{f} missing from {errors}");
    }
}
