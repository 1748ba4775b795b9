"""Contract test: Cirrus's OpenStack responses against tempest's own response JSON schemas.

Tempest validates every response it receives with a JSON schema per API call
(tempest/lib/api_schema/response/...): those schemas are the contract our translation
layer must honour. This script makes the calls tempest's service clients make, as the cloud
admin (OS_CLOUD from OS_CLIENT_CONFIG_FILE) and as a member of a project it creates through
Keystone, and checks each response with `RestClient.validate_response` and the schema the
matching tempest client method uses (compute v2.1 and Cinder v3.0).

Prints one line per call (`PASS`/`FAIL`/`SKIP`, who, method, path) and, at the end, every
failure; exits 1 when any call failed. Needs a cloud with a schedulable node (e.g.
`cirrus up --node-agent fake`) and `qemu-img`.
"""

import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
import uuid

import openstack.config
from keystoneauth1 import adapter as ks_adapter
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3 as ks_v3
from tempest.lib.api_schema.response.compute.v2_1 import (
    availability_zone as c_az,
    flavors as c_flavors,
    flavors_extra_specs as c_extra_specs,
    hypervisors as c_hypervisors,
    keypairs as c_keypairs,
    limits as c_limits,
    quotas as c_quotas,
    servers as c_servers,
    services as c_services,
    versions as c_versions,
)
from tempest.lib.api_schema.response.volume import (
    limits as v_limits,
    quotas as v_quotas,
    snapshots as v_snapshots,
    versions as v_versions,
    volume_types as v_types,
    volumes as v_volumes,
)
from tempest.lib.common.jsonschema_validator import FORMAT_CHECKER, JSONSCHEMA_VALIDATOR
from tempest.lib.common.rest_client import RestClient

RUN = uuid.uuid4().hex[:8]
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
FAILURES = []
COUNTS = {"PASS": 0, "FAIL": 0, "SKIP": 0}
WAIT = float(os.environ.get("TEMPEST_SCHEMAS_WAIT", "120"))
# Hollow nodes (`--node-agent fake`) have no host networking: with
# TEMPEST_SCHEMAS_NETWORKS=none servers boot without networks. Their volumes live in an
# in-memory pool. Outside strict mode, volumes that no node provisions within
# TEMPEST_SCHEMAS_VOLUME_WAIT seconds are set `available` by the admin (os-reset_status; only
# possible for the admin's own volumes) and checks that cannot run are skipped.
NETWORKS = os.environ.get("TEMPEST_SCHEMAS_NETWORKS", "create")
# TEMPEST_SCHEMAS_STRICT=1 (CI): a skipped check is a failure and no volume is forced
# `available`: every check must run against what a node really did.
STRICT = os.environ.get("TEMPEST_SCHEMAS_STRICT") == "1"
VOLUME_WAIT = float(os.environ.get("TEMPEST_SCHEMAS_VOLUME_WAIT", "20"))


class Resp(dict):
    """What tempest's validate_response expects of a response: `.status` and a dict of
    lower-case header names."""

    def __init__(self, response):
        super().__init__((k.lower(), v) for k, v in response.headers.items())
        self.status = response.status_code


def violations(schema, body):
    """Every violation of the body schema, one short line each (tempest stops at the
    first and prints the whole schema)."""
    body_schema = schema.get("response_body")
    if not body_schema:
        return f"a body where the schema wants none: {str(body)[:200]}"
    validator = JSONSCHEMA_VALIDATOR(body_schema, format_checker=FORMAT_CHECKER)
    out = []
    for err in sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in err.absolute_path) or "(body)"
        out.append(f"{where}: {err.message[:300]}")
    return "\n      ".join([""] + out) if out else ""


def line(outcome, who, method, path, detail=""):
    COUNTS[outcome] += 1
    text = f"{outcome} {who:<6} {method:<6} {path}"
    if detail:
        text += f"  -- {detail}"
    print(text, flush=True)
    if outcome == "FAIL" or (outcome == "SKIP" and STRICT):
        FAILURES.append(text)


class Client:
    """One identity (admin or member) talking to one service through keystoneauth."""

    def __init__(self, who, session, service_type, headers=None):
        self.who = who
        self.adapter = ks_adapter.Adapter(
            session=session,
            service_type=service_type,
            interface="public",
            region_name="RegionOne",
        )
        self.headers = headers or {}

    def endpoint(self):
        return self.adapter.get_endpoint()

    def call(self, method, path, schema, body=None, label=None, raw=None, headers=None):
        """Makes the call and validates its response with `schema`; returns the parsed
        body (or None when the call failed)."""
        label = label or UUID.sub("{id}", path)
        hdrs = dict(self.headers)
        hdrs.update(headers or {})
        kwargs = {"raise_exc": False, "headers": hdrs}
        if body is not None:
            kwargs["json"] = body
        if raw is not None:
            kwargs["data"] = raw
        url = path if path.startswith("http") else self.endpoint().rstrip("/") + path
        try:
            response = self.adapter.request(url, method, **kwargs)
        except Exception as e:  # connection problems are failures too
            line("FAIL", self.who, method, label, f"request failed: {e}")
            return None
        parsed = ""
        if response.content:
            try:
                parsed = response.json()
            except ValueError:
                parsed = response.text
        if response.status_code not in schema["status_code"]:
            line(
                "FAIL",
                self.who,
                method,
                label,
                f"status {response.status_code}, schema wants {schema['status_code']}: "
                f"{str(parsed)[:400]}",
            )
            return None
        try:
            RestClient.validate_response(schema, Resp(response), parsed)
        except Exception as e:
            line("FAIL", self.who, method, label, violations(schema, parsed) or
                 f"{type(e).__name__}: {e}")
            return parsed if isinstance(parsed, dict) else None
        line("PASS", self.who, method, label, f"{response.status_code}")
        return parsed if isinstance(parsed, dict) else {}

    def plain(self, method, path, body=None, raw=None, headers=None, ok=(200, 201, 202, 204)):
        """A setup or polling call that is not validated; raises on an unexpected status."""
        hdrs = dict(self.headers)
        hdrs.update(headers or {})
        kwargs = {"raise_exc": False, "headers": hdrs}
        if body is not None:
            kwargs["json"] = body
        if raw is not None:
            kwargs["data"] = raw
        url = path if path.startswith("http") else self.endpoint().rstrip("/") + path
        response = self.adapter.request(url, method, **kwargs)
        if response.status_code not in ok:
            raise RuntimeError(
                f"{self.who} {method} {path}: {response.status_code} {response.text[:400]}"
            )
        return response.json() if response.content else {}


def wait_for(what, probe, timeout=None):
    timeout = WAIT if timeout is None else timeout
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = probe()
        except Exception as e:  # keep polling through transient errors
            last = e
        if last is True:
            return True
        time.sleep(0.3)
    raise RuntimeError(f"timed out waiting for {what} (last: {last})")


def step(who, what, fn):
    """Runs a setup step; a failure is recorded and returns None (later calls skip)."""
    try:
        return fn()
    except Exception as e:
        line("FAIL", who, "SETUP", what, f"{e}\n{traceback.format_exc(limit=3)}")
        return None


def sessions():
    """The admin's keystoneauth session (from clouds.yaml) and a member's session in a new
    project made through Keystone, and that project's id."""
    region = openstack.config.OpenStackConfig().get_one(cloud=os.environ.get("OS_CLOUD"))
    admin = region.get_session()
    auth_url = region.config["auth"]["auth_url"]
    identity = ks_adapter.Adapter(session=admin, service_type="identity", interface="public")
    project, user, password = f"schemas-{RUN}", f"schemas-{RUN}", f"pw-{RUN}"
    # Keystone generates the ids; the names are what the logins use.
    project_id = identity.post(
        "/v3/projects", json={"project": {"name": project, "domain_id": "default"}}
    ).json()["project"]["id"]
    user_id = identity.post(
        "/v3/users",
        json={"user": {"name": user, "password": password, "domain_id": "default",
                       "default_project_id": project_id}},
    ).json()["user"]["id"]
    identity.put(f"/v3/projects/{project_id}/users/{user_id}/roles/member")
    auth = ks_v3.Password(
        auth_url=auth_url,
        username=user,
        password=password,
        project_name=project,
        user_domain_id="default",
        project_domain_id="default",
    )
    member = ks_session.Session(auth=auth)
    return admin, member, project_id, auth_url


def make_qcow2():
    path = os.path.join(tempfile.mkdtemp(prefix="tempest-schemas-"), "disk.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", path, "64M"], check=True)
    with open(path, "rb") as f:
        return f.read()


def versions_checks(compute, volume):
    """Version documents of compute (/compute, /compute/v2.1) and block storage."""
    root = compute.endpoint().rstrip("/").rsplit("/", 1)[0]
    compute.call("GET", root + "/", c_versions.list_versions, label="/compute/")
    compute.call("GET", compute.endpoint().rstrip("/") + "/", c_versions.get_one_version,
                 label="/compute/v2.1/")
    # The volume endpoint is /volume/v3/<project>: versions at /volume/, v3 at /volume/v3/.
    vroot = volume.endpoint().rstrip("/").rsplit("/", 2)[0]
    volume.call("GET", vroot + "/", v_versions.list_versions, label="/volume/")
    volume.call("GET", vroot + "/v3/", v_versions.volume_api_version_details,
                label="/volume/v3/")


def flavor_checks(admin, member):
    """Flavors: admin create/show/extra specs/delete, everyone list/detail/show."""
    fid = f"schemas-flavor-{RUN}"
    created = admin.call(
        "POST", "/flavors", c_flavors.create_update_get_flavor_details,
        body={"flavor": {"name": fid, "id": fid, "ram": 128, "vcpus": 1, "disk": 1}},
    )
    for c in (admin, member):
        c.call("GET", "/flavors", c_flavors.list_flavors)
        c.call("GET", "/flavors/detail", c_flavors.list_flavors_details)
        c.call("GET", "/flavors/detail?minRam=64&limit=2", c_flavors.list_flavors_details)
    if created is None:
        return
    for c in (admin, member):
        c.call("GET", f"/flavors/{fid}", c_flavors.create_update_get_flavor_details)
    specs = "/flavors/%s/os-extra_specs" % fid
    admin.call("POST", specs, c_extra_specs.set_get_flavor_extra_specs,
               body={"extra_specs": {"hw:cpu_policy": "shared", "k2": "v2"}})
    for c in (admin, member):
        c.call("GET", specs, c_extra_specs.set_get_flavor_extra_specs)
        c.call("GET", specs + "/k2", c_extra_specs.set_get_flavor_extra_specs_key)
    admin.call("PUT", specs + "/k2", c_extra_specs.set_get_flavor_extra_specs_key,
               body={"k2": "v3"})
    admin.call("DELETE", specs + "/k2", c_extra_specs.unset_flavor_extra_specs)
    admin.call("DELETE", f"/flavors/{fid}", c_flavors.delete_flavor)


def keypair_checks(c):
    """Key pairs: generate, import, list, show, delete."""
    name = f"kp-{c.who}-{RUN}"
    created = c.call("POST", "/os-keypairs", c_keypairs.create_keypair,
                     body={"keypair": {"name": name}})
    pub = (created or {}).get("keypair", {}).get("public_key")
    if pub:
        imported = f"kpi-{c.who}-{RUN}"
        c.call("POST", "/os-keypairs", c_keypairs.create_keypair,
               body={"keypair": {"name": imported, "public_key": pub}},
               label="/os-keypairs (import)")
        c.call("DELETE", f"/os-keypairs/{imported}", c_keypairs.delete_keypair)
    c.call("GET", "/os-keypairs", c_keypairs.list_keypairs)
    if created is not None:
        c.call("GET", f"/os-keypairs/{name}", c_keypairs.get_keypair)
    return name if created is not None else None


def server_status(c, sid):
    return c.plain("GET", f"/servers/{sid}")["server"]["status"]


def wait_server(c, sid, want):
    return wait_for(f"server {sid} {want}",
             lambda: server_status(c, sid) == want or server_status(c, sid))


def server_checks(c, image_id, flavor, network_id, keypair, volume_c):
    """Servers: create, list, detail, show, update, ips, metadata, actions, console,
    volume attachments, delete."""
    body = {"server": {"name": f"srv-{c.who}-{RUN}", "imageRef": image_id,
                       "flavorRef": flavor, "metadata": {"a": "1"}}}
    body["server"]["networks"] = [{"uuid": network_id}] if network_id else "none"
    if keypair:
        body["server"]["key_name"] = keypair
    created = c.call("POST", "/servers", c_servers.create_server_with_admin_pass, body=body)
    sid = ((created or {}).get("server") or {}).get("id")
    if not sid:
        line("SKIP", c.who, "*", "/servers/{id}/...", "no server was created")
        return
    c.call("GET", "/servers", c_servers.list_servers)
    c.call("GET", "/servers/detail", c_servers.list_servers_detail)
    c.call("GET", f"/servers/{sid}", c_servers.get_server, label="/servers/{id} (BUILD)")
    if step(c.who, "server ACTIVE", lambda: wait_server(c, sid, "ACTIVE")) is None:
        return
    c.call("GET", f"/servers/{sid}", c_servers.get_server, label="/servers/{id} (ACTIVE)")
    c.call("GET", "/servers?name=srv-&limit=1", c_servers.list_servers)
    c.call("GET", "/servers/detail?status=ACTIVE", c_servers.list_servers_detail)
    c.call("PUT", f"/servers/{sid}", c_servers.update_server,
           body={"server": {"name": f"srv-{c.who}-{RUN}-renamed"}})
    ips = c.call("GET", f"/servers/{sid}/ips", c_servers.list_addresses)
    for net in ((ips or {}).get("addresses") or {}):
        c.call("GET", f"/servers/{sid}/ips/{net}", c_servers.list_addresses_by_network,
               label="/servers/{id}/ips/{network}")

    meta = f"/servers/{sid}/metadata"
    c.call("PUT", meta, c_servers.set_server_metadata, body={"metadata": {"k": "v"}})
    c.call("POST", meta, c_servers.update_server_metadata, body={"metadata": {"k2": "v2"}})
    c.call("GET", meta, c_servers.list_server_metadata)
    c.call("GET", meta + "/k", c_servers.set_show_server_metadata_item)
    c.call("PUT", meta + "/k3", c_servers.set_show_server_metadata_item,
           body={"meta": {"k3": "v3"}})
    c.call("DELETE", meta + "/k3", c_servers.delete_server_metadata_item)

    action = f"/servers/{sid}/action"
    c.call("POST", action, c_servers.get_console_output,
           body={"os-getConsoleOutput": {"length": 10}}, label=action + " os-getConsoleOutput")

    def act(name, payload, then):
        c.call("POST", action, c_servers.server_actions_common_schema,
               body={name: payload}, label=f"/servers/{{id}}/action {name}")
        step(c.who, f"server {then} after {name}", lambda: wait_server(c, sid, then))

    act("os-stop", None, "SHUTOFF")
    c.call("GET", f"/servers/{sid}", c_servers.get_server, label="/servers/{id} (SHUTOFF)")
    act("os-start", None, "ACTIVE")
    act("reboot", {"type": "SOFT"}, "ACTIVE")
    act("reboot", {"type": "HARD"}, "ACTIVE")
    act("pause", None, "PAUSED")
    c.call("GET", f"/servers/{sid}", c_servers.get_server, label="/servers/{id} (PAUSED)")
    act("unpause", None, "ACTIVE")
    act("suspend", None, "SUSPENDED")
    act("resume", None, "ACTIVE")
    rebuilt = c.call("POST", action, c_servers.rebuild_server_with_admin_pass,
                     body={"rebuild": {"imageRef": image_id}},
                     label="/servers/{id}/action rebuild")
    if rebuilt is not None:
        step(c.who, "server ACTIVE after rebuild", lambda: wait_server(c, sid, "ACTIVE"))

    try:
        vid = make_volume(volume_c, f"att-{c.who}-{RUN}")
    except RuntimeError as e:
        vid = None
        line("SKIP", c.who, "*", "/servers/{id}/os-volume_attachments",
             f"no available volume: {e}")
    if vid:
        att = f"/servers/{sid}/os-volume_attachments"
        c.call("POST", att, c_servers.attach_volume,
               body={"volumeAttachment": {"volumeId": vid}})
        try:
            wait_volume(volume_c, vid, "in-use", VOLUME_WAIT)
        except RuntimeError as e:
            line("SKIP", c.who, "*", "(volume in-use)", f"not attached by any node: {e}")
        volume_c.call("GET", f"/volumes/{vid}", v_volumes.show_volume,
                      label="/volumes/{id} (attaching or in-use)")
        c.call("GET", att, c_servers.list_volume_attachments)
        c.call("GET", f"{att}/{vid}", c_servers.show_volume_attachment,
               label=att.replace(sid, "{id}") + "/{volume}")
        c.call("GET", f"/servers/{sid}", c_servers.get_server,
               label="/servers/{id} (volume attached)")
        c.call("DELETE", f"{att}/{vid}", c_servers.detach_volume,
               label=att.replace(sid, "{id}") + "/{volume}")
        step(c.who, "volume available", lambda: make_available(volume_c, vid))
        volume_c.call("DELETE", f"/volumes/{vid}", v_volumes.delete_volume,
                      label="/volumes/{id} (after detach)")

    c.call("DELETE", f"/servers/{sid}", c_servers.delete_server)
    c.call("GET", "/servers/detail", c_servers.list_servers_detail,
           label="/servers/detail (deleting)")
    if c.who == "admin":
        c.call("GET", "/servers/detail?all_tenants=1", c_servers.list_servers_detail)
    step(c.who, "server gone", lambda: wait_for(
        f"server {sid} gone",
        lambda: c.plain("GET", f"/servers/{sid}", ok=(200, 404)).get("server") is None))


def compute_info_checks(admin, member, project):
    """Limits, quotas, availability zones, hypervisors, services."""
    for c, proj in ((admin, "admin"), (member, project)):
        c.call("GET", "/limits", c_limits.get_limit)
        c.call("GET", f"/os-quota-sets/{proj}", c_quotas.get_quota_set)
        c.call("GET", f"/os-quota-sets/{proj}/defaults", c_quotas.get_quota_set)
        c.call("GET", f"/os-quota-sets/{proj}/detail", c_quotas.get_quota_set_details)
        c.call("GET", "/os-availability-zone", c_az.list_availability_zone_list)
    admin.call("PUT", f"/os-quota-sets/{project}", c_quotas.update_quota_set,
               body={"quota_set": {"instances": 20, "key_pairs": 50}})
    admin.call("GET", "/os-availability-zone/detail", c_az.list_availability_zone_list_detail)
    hyps = admin.call("GET", "/os-hypervisors", c_hypervisors.list_search_hypervisors)
    admin.call("GET", "/os-hypervisors/detail", c_hypervisors.list_hypervisors_detail)
    admin.call("GET", "/os-hypervisors/statistics", c_hypervisors.get_hypervisor_statistics)
    for h in ((hyps or {}).get("hypervisors") or [])[:1]:
        admin.call("GET", f"/os-hypervisors/{h['id']}", c_hypervisors.get_hypervisor,
                   label="/os-hypervisors/{id}")
        admin.call("GET", f"/os-hypervisors/{h['hypervisor_hostname']}/search",
                   c_hypervisors.list_search_hypervisors,
                   label="/os-hypervisors/{hostname}/search")
    services = admin.call("GET", "/os-services", c_services.list_services)
    computes = [x for x in ((services or {}).get("services") or [])
                if x.get("binary") == "nova-compute"]
    for svc in computes[:1]:
        # Disable (cordon) and enable again at once: servers are created later.
        target = {"host": svc["host"], "binary": "nova-compute"}
        admin.call("PUT", "/os-services/disable", c_services.enable_disable_service,
                   body=target)
        admin.call("PUT", "/os-services/enable", c_services.enable_disable_service,
                   body=target)


def volume_status(v, vid):
    return v.plain("GET", f"/volumes/{vid}")["volume"]["status"]


def wait_volume(v, vid, want, timeout=None):
    return wait_for(f"volume {vid} {want}",
             lambda: volume_status(v, vid) == want or volume_status(v, vid), timeout)


def make_available(v, vid):
    """Waits until the volume is available; when no node provisions it (hollow nodes), the
    admin resets its status."""
    try:
        wait_volume(v, vid, "available", VOLUME_WAIT)
        return True
    except RuntimeError:
        if v.who != "admin" or STRICT:
            raise
    v.plain("POST", f"/volumes/{vid}/action",
            body={"os-reset_status": {"status": "available"}})
    print(f"NOTE {v.who:<6} volume {vid} not provisioned by any node: status reset to "
          "available", flush=True)
    wait_volume(v, vid, "available", 10)
    return True


def make_volume(v, name):
    vol = v.plain("POST", "/volumes", body={"volume": {"size": 1, "name": name}})["volume"]
    make_available(v, vol["id"])
    return vol["id"]


def volume_checks(v, project):
    """Cinder: volumes, snapshots, types, quotas, limits."""
    created = v.call("POST", "/volumes", v_volumes.create_volume,
                     body={"volume": {"size": 1, "name": f"vol-{v.who}-{RUN}",
                                      "description": "schemas", "metadata": {"a": "b"}}})
    vid = ((created or {}).get("volume") or {}).get("id")
    v.call("GET", "/volumes", v_volumes.list_volumes_no_detail)
    v.call("GET", "/volumes/detail", v_volumes.list_volumes_with_detail)
    types = v.call("GET", "/types", v_types.list_volume_types)
    for t in ((types or {}).get("volume_types") or [])[:1]:
        v.call("GET", f"/types/{t['id']}", v_types.show_volume_type, label="/types/{id}")
    v.call("GET", "/types/default", v_types.show_volume_type)
    v.call("GET", f"/os-quota-sets/{project}", v_quotas.show_quota_set)
    v.call("GET", f"/os-quota-sets/{project}?usage=True", v_quotas.show_quota_set_usage)
    v.call("GET", f"/os-quota-sets/{project}/defaults", v_quotas.show_quota_set)
    v.call("GET", "/limits", v_limits.show_limits)
    if not vid:
        line("SKIP", v.who, "*", "/volumes/{id}/...", "no volume was created")
        return
    v.call("GET", f"/volumes/{vid}", v_volumes.show_volume, label="/volumes/{id} (creating)")
    try:
        make_available(v, vid)
        ready = True
    except RuntimeError as e:
        ready = False
        line("SKIP", v.who, "*", "/volumes/{id} (available)", f"not provisioned: {e}")
    if not ready:
        v.call("PUT", f"/volumes/{vid}", v_volumes.update_volume,
               body={"volume": {"name": f"vol-{v.who}-{RUN}-renamed"}},
               label="/volumes/{id} (not available)")
        v.call("DELETE", f"/volumes/{vid}", v_volumes.delete_volume,
               label="/volumes/{id} (not available)")
        return
    v.call("GET", f"/volumes/{vid}", v_volumes.show_volume, label="/volumes/{id}")
    v.call("PUT", f"/volumes/{vid}", v_volumes.update_volume,
           body={"volume": {"name": f"vol-{v.who}-{RUN}-renamed", "description": "d2"}},
           label="/volumes/{id}")
    v.call("GET", f"/volumes/{vid}/metadata", v_volumes.show_volume_metadata,
           label="/volumes/{id}/metadata")
    v.call("POST", f"/volumes/{vid}/metadata", v_volumes.create_volume_metadata,
           body={"metadata": {"c": "d"}}, label="/volumes/{id}/metadata")
    v.call("PUT", f"/volumes/{vid}/metadata", v_volumes.update_volume_metadata,
           body={"metadata": {"e": "f"}}, label="/volumes/{id}/metadata")
    v.call("POST", f"/volumes/{vid}/action", v_volumes.extend_volume,
           body={"os-extend": {"new_size": 2}}, label="/volumes/{id}/action os-extend")
    step(v.who, "volume available after extend", lambda: make_available(v, vid))

    snap = v.call("POST", "/snapshots", v_snapshots.create_snapshot,
                  body={"snapshot": {"volume_id": vid, "name": f"snap-{v.who}-{RUN}",
                                     "description": "s"}})
    sid = ((snap or {}).get("snapshot") or {}).get("id")
    v.call("GET", "/snapshots", v_snapshots.list_snapshots_no_detail)
    v.call("GET", "/snapshots/detail", v_snapshots.list_snapshots_with_detail)
    if sid:
        v.call("GET", f"/snapshots/{sid}", v_snapshots.show_snapshot, label="/snapshots/{id}")
        try:
            wait_for("snapshot available", lambda: v.plain(
                "GET", f"/snapshots/{sid}")["snapshot"]["status"] == "available", VOLUME_WAIT)
            v.call("GET", f"/snapshots/{sid}", v_snapshots.show_snapshot,
                   label="/snapshots/{id} (available)")
        except RuntimeError:
            line("SKIP", v.who, "GET", "/snapshots/{id} (available)",
                 "no node provisions snapshots")
        v.call("PUT", f"/snapshots/{sid}", v_snapshots.update_snapshot,
               body={"snapshot": {"name": f"snap-{v.who}-{RUN}-renamed"}},
               label="/snapshots/{id}")
        v.call("DELETE", f"/snapshots/{sid}", v_snapshots.delete_snapshot,
               label="/snapshots/{id}")
        try:
            wait_for("snapshot gone", lambda: v.plain(
                "GET", f"/snapshots/{sid}", ok=(200, 404)).get("snapshot") is None,
                VOLUME_WAIT)
        except RuntimeError:
            line("SKIP", v.who, "DELETE", "/volumes/{id}", "its snapshot is still deleting")
            return
    v.call("DELETE", f"/volumes/{vid}", v_volumes.delete_volume, label="/volumes/{id}")


def setup_image(admin_image, data):
    """A public qcow2 image with data, uploaded through Glance; returns its id."""
    image = admin_image.plain(
        "POST", "/v2/images",
        body={"name": f"schemas-img-{RUN}", "disk_format": "qcow2",
              "container_format": "bare", "visibility": "public"})
    admin_image.plain("PUT", f"/v2/images/{image['id']}/file", raw=data,
                      headers={"Content-Type": "application/octet-stream"})
    return image["id"]


def setup_network(member_net):
    net = member_net.plain("POST", "/v2.0/networks",
                           body={"network": {"name": f"schemas-net-{RUN}"}})["network"]
    member_net.plain("POST", "/v2.0/subnets",
                     body={"subnet": {"network_id": net["id"], "ip_version": 4,
                                      "cidr": "10.97.0.0/24", "name": f"schemas-sub-{RUN}"}})
    return net["id"]


def main():
    admin_s, member_s, project, _ = sessions()
    admin = Client("admin", admin_s, "compute")
    member = Client("member", member_s, "compute")
    admin_v = Client("admin", admin_s, "block-storage")
    member_v = Client("member", member_s, "block-storage")

    versions_checks(admin, admin_v)
    flavor_checks(admin, member)
    compute_info_checks(admin, member, project)
    keypairs = {c.who: keypair_checks(c) for c in (admin, member)}

    flavor = f"schemas-{RUN}"
    image_id = step("admin", "flavor and image", lambda: (
        Client("admin", admin_s, "compute").plain(
            "POST", "/flavors",
            body={"flavor": {"name": flavor, "id": flavor, "ram": 128, "vcpus": 1,
                             "disk": 1}}),
        setup_image(Client("admin", admin_s, "image"), make_qcow2()),
    )[1])
    nets = {"admin": None, "member": None}
    if NETWORKS != "none":
        nets = {
            "admin": step("admin", "network", lambda: setup_network(
                Client("admin", admin_s, "network"))),
            "member": step("member", "network", lambda: setup_network(
                Client("member", member_s, "network"))),
        }
    for v, proj in ((admin_v, "admin"), (member_v, project)):
        volume_checks(v, proj)
    admin_v.call("PUT", f"/os-quota-sets/{project}", v_quotas.update_quota_set,
                 body={"quota_set": {"volumes": 20}})
    if image_id:
        for c, v in ((member, member_v), (admin, admin_v)):
            server_checks(c, image_id, flavor, nets[c.who], keypairs[c.who], v)
    for c in (admin, member):
        if keypairs[c.who]:
            c.call("DELETE", f"/os-keypairs/{keypairs[c.who]}", c_keypairs.delete_keypair)

    print(f"\n{COUNTS['PASS']} passed, {COUNTS['FAIL']} failed, {COUNTS['SKIP']} skipped")
    if FAILURES:
        print("FAILURES:")
        for f in FAILURES:
            print("  " + f)
        return 1
    print("TEMPEST-SCHEMAS-OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
