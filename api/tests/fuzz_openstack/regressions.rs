//! Requests the fuzz found answered with a 5xx, a panic or a half-written store, kept as
//! fixed rows: each must now be a 4xx that names the field, with the store unchanged, and
//! the routes that broke on what they let in must answer.

use super::*;

/// `(caller, method, path, body, status, a word the message must hold)`.
type Row = (&'static str, Method, String, Value, u16, &'static str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sizes_beyond_openstack_max_int_are_refused_naming_the_field() {
    let cloud = Cloud::start().await;
    let (image, network, server, volume) = (
        cloud.ids["image"].clone(),
        cloud.ids["network"].clone(),
        cloud.ids["server"].clone(),
        cloud.ids["volume"].clone(),
    );
    let huge = json!(i64::MAX);
    let cinder = format!("/volume/v3/{PROJECT}");
    let rows: Vec<Row> = vec![
        // Two such volumes in a project without quota limits made every later quota
        // usage sum overflow (api/src/quota.rs add_usage): `PUT os-quota-sets` and
        // `PUT /network/v2.0/quotas/...` panicked.
        (
            "member",
            Method::POST,
            format!("{cinder}/volumes"),
            json!({"volume": {"size": huge}}),
            400,
            "size",
        ),
        (
            "member",
            Method::POST,
            format!("{cinder}/volumes"),
            json!({"volume": {"size": "9223372036854775807"}}),
            400,
            "size",
        ),
        (
            "member",
            Method::POST,
            format!("{cinder}/volumes/{volume}/action"),
            json!({"os-extend": {"new_size": huge}}),
            400,
            "new_size",
        ),
        (
            "member",
            Method::POST,
            format!("{cinder}/volumes/{volume}/action"),
            json!({"os-extend": {"new_size": 2_147_483_648_u64}}),
            400,
            "new_size",
        ),
        // Flavors as big: the `ram` and `cores` sums of the servers on them.
        (
            "admin",
            Method::POST,
            "/compute/v2.1/flavors".into(),
            json!({"flavor": {"name": "big", "ram": huge, "vcpus": 1, "disk": 1}}),
            400,
            "ram",
        ),
        (
            "admin",
            Method::POST,
            "/compute/v2.1/flavors".into(),
            json!({"flavor": {"name": "big", "ram": 1, "vcpus": 4_294_967_296_u64,
                "disk": 1}}),
            400,
            "vcpus",
        ),
        (
            "admin",
            Method::POST,
            "/compute/v2.1/flavors".into(),
            json!({"flavor": {"name": "big", "ram": 1, "vcpus": 1, "disk": huge}}),
            400,
            "disk",
        ),
        (
            "admin",
            Method::POST,
            "/compute/v2.1/flavors".into(),
            json!({"flavor": {"name": "big", "ram": 1, "vcpus": 1, "disk": 1,
                "swap": huge}}),
            400,
            "swap",
        ),
        // A new boot volume as big.
        (
            "member",
            Method::POST,
            "/compute/v2.1/servers".into(),
            json!({"server": {"name": "bfv", "flavorRef": "m1.tiny",
                "networks": [{"uuid": network}], "block_device_mapping_v2": [{
                    "boot_index": 0, "uuid": image, "source_type": "image",
                    "destination_type": "volume", "volume_size": huge}]}}),
            400,
            "volume_size",
        ),
        // What used to panic on them answers.
        (
            "admin",
            Method::PUT,
            format!("/compute/v2.1/os-quota-sets/{PROJECT}"),
            json!({"quota_set": {"cores": 2}}),
            200,
            "cores",
        ),
        (
            "admin",
            Method::PUT,
            format!("/network/v2.0/quotas/{PROJECT}"),
            json!({"quota": {"network": "100"}}),
            200,
            "network",
        ),
        (
            "member",
            Method::GET,
            format!("/compute/v2.1/servers/{server}"),
            Value::Null,
            200,
            "web-0",
        ),
    ];
    check_rows(&cloud, rows).await;
}

/// Sends each row, checking its status and message, and that a refused one wrote nothing.
async fn check_rows(cloud: &Cloud, rows: Vec<Row>) {
    for (who, method, path, body, status, word) in rows {
        let http = if who == "admin" {
            &cloud.admin.http
        } else {
            &cloud.member.http
        };
        let before = cloud.revision().await;
        let mut req = http.request(method.clone(), format!("{}{path}", cloud.api.base_url));
        if !body.is_null() {
            req = req.json(&body);
        }
        let resp = req
            .send()
            .await
            .expect("an answer, not a dropped connection");
        let got = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert_eq!(got, status, "{method} {path} {body} as {who}: {text}");
        assert!(
            text.contains(word),
            "{method} {path}: {text} does not name {word}"
        );
        if got >= 400 {
            assert_eq!(
                cloud.revision().await,
                before,
                "{method} {path} was refused but wrote"
            );
        }
    }
}

/// Values the native API lets into the store — a member's server counters at `u64`'s
/// end, an admin's flavor of `i64::MAX` MiB, a node of `u64::MAX` MiB and what runs on
/// it — used to overflow the arithmetic of the routes that read them (a panic, the
/// connection dropped): `reboot` and `rebuild` (`counter + 1`), `/limits` (the project's
/// `ram` and `cores` sums), `os-hypervisors` (per-node sums, free = total − used) and
/// their statistics (the sums over nodes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_stored_values_answer_instead_of_overflowing() {
    let cloud = Cloud::start().await;
    let base = cloud.api.base_url.clone();
    let native = format!("{base}/apis/cirrus.dev/v1");
    let server = cloud.ids["server"].clone();
    let servers = cirrus_crds::kind_by_plural("servers").unwrap();
    // The member's own server, its counters at their end (a native merge patch).
    let resp = cloud
        .member
        .http
        .patch(format!("{native}/projects/{PROJECT}/servers/web-0"))
        .header("content-type", "application/merge-patch+json")
        .body(json!({"spec": {"rebootCount": u64::MAX, "rebuildCount": u64::MAX}}).to_string())
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    cloud
        .api
        .store
        .patch(
            servers,
            Some(PROJECT),
            "web-0",
            &json!({"status": {"phase": "ACTIVE", "powerState": "Running",
                "node": "node-x"}}),
            Part::Status,
            false,
        )
        .await
        .unwrap();
    // The admin's huge flavor, two servers on it, and two huge nodes.
    let admin = &cloud.admin.http;
    let planted = [
        (
            "flavors".to_string(),
            json!({"metadata": {"name": "huge"},
                "spec": {"vcpus": u32::MAX, "ram": i64::MAX, "disk": i64::MAX,
                    "ephemeral": i64::MAX}}),
        ),
        (
            format!("projects/{PROJECT}/servers"),
            json!({"metadata": {"name": "big-1"},
                "spec": {"flavor": "huge", "image": "cirros", "nodeName": "node-x"}}),
        ),
        (
            format!("projects/{PROJECT}/servers"),
            json!({"metadata": {"name": "big-2"},
                "spec": {"flavor": "huge", "image": "cirros", "nodeName": "node-x"}}),
        ),
        (
            "nodes".to_string(),
            json!({"metadata": {"name": "node-x"}, "spec": {}}),
        ),
        (
            "nodes".to_string(),
            json!({"metadata": {"name": "node-y"}, "spec": {}}),
        ),
    ];
    for (path, body) in planted {
        let resp = admin
            .post(format!("{native}/{path}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        assert!(
            status.is_success(),
            "{path}: {}",
            resp.text().await.unwrap()
        );
    }
    for node in ["node-x", "node-y"] {
        cloud
            .api
            .store
            .patch(
                cirrus_crds::kind_by_plural("nodes").unwrap(),
                None,
                node,
                &json!({"status": {"capacity": {"vcpus": u32::MAX,
                    "memoryMiB": u64::MAX, "diskGiB": i64::MAX},
                    "hypervisorVersion": "18446744073709551615.99999999999999999.1"}}),
                Part::Status,
                false,
            )
            .await
            .unwrap();
    }
    let rows: Vec<Row> = vec![
        (
            "member",
            Method::POST,
            format!("/compute/v2.1/servers/{server}/action"),
            json!({"reboot": {"type": "HARD"}}),
            409,
            "reboot",
        ),
        (
            "member",
            Method::POST,
            format!("/compute/v2.1/servers/{server}/action"),
            json!({"rebuild": {"imageRef": cloud.ids["image"]}}),
            409,
            "rebuild",
        ),
        (
            "member",
            Method::GET,
            "/compute/v2.1/limits".into(),
            Value::Null,
            200,
            "totalRAMUsed",
        ),
        (
            "admin",
            Method::GET,
            "/compute/v2.1/os-hypervisors/detail".into(),
            Value::Null,
            200,
            "free_ram_mb",
        ),
        (
            "admin",
            Method::GET,
            "/compute/v2.1/os-hypervisors/statistics".into(),
            Value::Null,
            200,
            "free_disk_gb",
        ),
    ];
    check_rows(&cloud, rows).await;
}
