"""openstacksdk round trip against Cirrus: create a network, subnet and server, list and
show them, delete everything and wait until it is gone. Cloud from OS_CLOUD /
OS_CLIENT_CONFIG_FILE. Prints SDK-ROUND-TRIP-OK on success; any failure raises."""

import time

import openstack

conn = openstack.connect()

net = conn.network.create_network(name="sdk-net")
subnet = conn.network.create_subnet(
    network_id=net.id, name="sdk-sub", ip_version=4, cidr="10.93.9.0/24"
)
assert subnet.cidr == "10.93.9.0/24", subnet

image = conn.image.find_image("osc-guest", ignore_missing=False)
flavor = conn.compute.find_flavor("m1.tiny", ignore_missing=False)
server = conn.compute.create_server(
    name="sdk-web",
    image_id=image.id,
    flavor_id=flavor.id,
    networks=[{"uuid": net.id}],
)
server = conn.compute.wait_for_server(server, status="ACTIVE", wait=240)
assert server.status == "ACTIVE", server.status

listed = [s.name for s in conn.compute.servers()]
assert "sdk-web" in listed, listed
shown = conn.compute.get_server(server.id)
assert shown.name == "sdk-web", shown
addresses = [a["addr"] for addrs in shown.addresses.values() for a in addrs]
assert any(a.startswith("10.93.9.") for a in addresses), shown.addresses
ports = list(conn.network.ports(device_id=server.id))
assert len(ports) == 1, ports

conn.compute.delete_server(server)
conn.compute.wait_for_delete(server, wait=120)
assert "sdk-web" not in [s.name for s in conn.compute.servers()]

# The server's port goes with the server, asynchronously (its finalizer releases the
# address): the network is deletable once the port is gone.
deadline = time.time() + 60
while list(conn.network.ports(network_id=net.id, device_owner="compute:nova")):
    assert time.time() < deadline, "the server's port outlived it"
    time.sleep(0.5)
conn.network.delete_subnet(subnet)
conn.network.delete_network(net)
assert conn.network.find_network("sdk-net") is None

print("SDK-ROUND-TRIP-OK")
