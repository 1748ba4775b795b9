//! Glance's image members over HTTP, as `openstack image add project`, `image set --accept`
//! and `image member list` use them: the owner offers a shared image, only the member answers,
//! and only an accepted share is listed for the member and usable by its servers and volumes
//! (through both front ends); withdrawing the offer removes the answer.

use cirrus_auth::Role;
use cirrus_store::objects::Part;
use cirrus_test_utils::{TestApi, client_with_token};
use serde_json::{Value, json};

/// Sends `request` and expects `status`; the JSON body (or null).
async fn send(request: reqwest::RequestBuilder, status: u16) -> Value {
    let resp = request.send().await.unwrap();
    let code = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert_eq!(code, status, "{text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

fn listed(body: &Value) -> Vec<String> {
    body["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_share_is_used_only_once_the_member_accepts_it() {
    let api = TestApi::start().await;
    let base = api.base_url.clone();
    let image_url = |path: &str| format!("{base}/image/v2{path}");
    let alice = client_with_token(&api.user_token("alice", "project-a", Role::Member).await);
    let bob = client_with_token(&api.user_token("bob", "project-b", Role::Member).await);
    let bob_reader = client_with_token(&api.user_token("bobr", "project-b", Role::Reader).await);
    let carol = client_with_token(&api.user_token("carol", "project-c", Role::Member).await);
    let admin = api.client();

    // A private image cannot have members.
    let private = send(
        alice
            .post(image_url("/images"))
            .json(&json!({"name": "mine", "disk_format": "raw", "visibility": "private"})),
        201,
    )
    .await;
    let private_id = private["id"].as_str().unwrap().to_string();
    let refused = send(
        alice
            .post(image_url(&format!("/images/{private_id}/members")))
            .json(&json!({"member": "project-b"})),
        403,
    )
    .await;
    assert!(
        refused.to_string().contains("Only shared images"),
        "{refused}"
    );

    let image = send(
        alice
            .post(image_url("/images"))
            .json(&json!({"name": "app", "disk_format": "raw", "visibility": "shared"})),
        201,
    )
    .await;
    let id = image["id"].as_str().unwrap().to_string();
    // The data is there (as after an upload) so a volume may be made from it.
    api.store
        .patch(
            cirrus_crds::kind_by_plural("images").unwrap(),
            Some("project-a"),
            &api_name(&api, &id).await,
            &json!({"status": {"phase": "active", "size": 1024, "virtualSize": 1u64 << 30}}),
            Part::Status,
            false,
        )
        .await
        .unwrap();
    let members = image_url(&format!("/images/{id}/members"));

    // Bad input names the field; a member cannot add itself; the offer starts pending.
    let bad = send(alice.post(&members).json(&json!({})), 400).await;
    assert!(bad.to_string().contains("member is required"), "{bad}");
    send(
        bob.post(&members).json(&json!({"member": "project-b"})),
        404,
    )
    .await;
    let offered = send(
        alice.post(&members).json(&json!({"member": "project-b"})),
        200,
    )
    .await;
    assert_eq!(offered["status"], "pending");
    assert_eq!(offered["member_id"], "project-b");
    assert_eq!(offered["image_id"], id);
    send(
        alice.post(&members).json(&json!({"member": "project-b"})),
        409,
    )
    .await;
    send(
        alice.post(&members).json(&json!({"member": "project-c"})),
        200,
    )
    .await;

    // The member sees it by id and its own membership only; it is not in its list yet.
    send(bob.get(image_url(&format!("/images/{id}"))), 200).await;
    let seen = send(bob.get(&members), 200).await;
    assert_eq!(seen["members"].as_array().unwrap().len(), 1, "{seen}");
    assert_eq!(seen["members"][0]["member_id"], "project-b");
    let owners = send(alice.get(&members), 200).await;
    assert_eq!(owners["members"].as_array().unwrap().len(), 2, "{owners}");
    send(bob.get(format!("{members}/project-c")), 404).await;
    let list = send(bob.get(image_url("/images")), 200).await;
    assert!(
        !listed(&list).contains(&id),
        "pending shares are not listed"
    );
    let pending = send(bob.get(image_url("/images?member_status=pending")), 200).await;
    assert!(listed(&pending).contains(&id));
    send(bob.get(image_url("/images?member_status=maybe")), 400).await;

    // Not usable before the answer: a native server and a Cinder volume both refused.
    send(admin
            .post(format!("{base}/apis/cirrus.dev/v1/flavors"))
            .json(&json!({"metadata": {"name": "small"}, "spec": {"vcpus": 1, "ram": 256, "disk": 1}})),
        201,
    )
    .await;
    let server = json!({"metadata": {"name": "web"}, "spec": {"flavor": "small", "image": id}});
    let servers = format!("{base}/apis/cirrus.dev/v1/projects/project-b/servers");
    let refused = send(bob.post(&servers).json(&server), 400).await;
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("spec.image")
            && message.contains("pending")
            && message.contains("--accept"),
        "{refused}"
    );
    let volumes = format!("{base}/volume/v3/project-b/volumes");
    let volume = json!({"volume": {"size": 1, "imageRef": id, "name": "data"}});
    let refused = send(bob.post(&volumes).json(&volume), 400).await;
    assert!(refused.to_string().contains("accept"), "{refused}");

    // Only the member answers; a reader may not; the owner may not answer for it.
    let answer = |status: &str| json!({"status": status});
    send(
        alice
            .put(format!("{members}/project-b"))
            .json(&answer("accepted")),
        403,
    )
    .await;
    send(
        bob_reader
            .put(format!("{members}/project-b"))
            .json(&answer("accepted")),
        403,
    )
    .await;
    send(
        carol
            .put(format!("{members}/project-b"))
            .json(&answer("accepted")),
        403,
    )
    .await;
    let bad = send(
        bob.put(format!("{members}/project-b"))
            .json(&answer("maybe")),
        400,
    )
    .await;
    assert!(
        bad.to_string().contains("pending, accepted, rejected"),
        "{bad}"
    );
    let accepted = send(
        bob.put(format!("{members}/project-b"))
            .json(&answer("accepted")),
        200,
    )
    .await;
    assert_eq!(accepted["status"], "accepted");
    let owners = send(alice.get(format!("{members}/project-b")), 200).await;
    assert_eq!(owners["status"], "accepted", "the owner sees the answer");

    // Accepted: listed, and usable through both front ends.
    let list = send(bob.get(image_url("/images")), 200).await;
    assert!(listed(&list).contains(&id));
    send(bob.post(&servers).json(&server), 201).await;
    send(bob.post(&volumes).json(&volume), 202).await;
    // Carol did not answer: still refused for her.
    let carols = format!("{base}/apis/cirrus.dev/v1/projects/project-c/servers");
    send(carol.post(&carols).json(&server), 400).await;

    // Changing its mind: rejected shares leave the list; what runs keeps running.
    send(
        bob.put(format!("{members}/project-b"))
            .json(&answer("rejected")),
        200,
    )
    .await;
    let list = send(bob.get(image_url("/images")), 200).await;
    assert!(!listed(&list).contains(&id));
    let again = json!({"metadata": {"name": "web-2"}, "spec": {"flavor": "small", "image": id}});
    send(bob.post(&servers).json(&again), 400).await;
    send(bob.get(format!("{servers}/web")), 200).await;

    // Only the owner withdraws; withdrawing removes the answer (a new offer is pending).
    send(bob.delete(format!("{members}/project-b")), 403).await;
    send(alice.delete(format!("{members}/project-b")), 204).await;
    send(alice.delete(format!("{members}/project-b")), 404).await;
    let answers = format!("{base}/apis/cirrus.dev/v1/projects/project-b/imagemembers/{id}");
    send(admin.get(&answers), 404).await;
    let reoffered = send(
        alice.post(&members).json(&json!({"member": "project-b"})),
        200,
    )
    .await;
    assert_eq!(reoffered["status"], "pending");
}

/// The object name of the image with uid `id`.
async fn api_name(api: &TestApi, id: &str) -> String {
    let images = cirrus_crds::kind_by_plural("images").unwrap();
    let all = api
        .store
        .list(images, None, &Default::default())
        .await
        .unwrap();
    all.items
        .iter()
        .find(|i| i["metadata"]["uid"] == id)
        .and_then(|i| i["metadata"]["name"].as_str())
        .unwrap()
        .to_string()
}
