//! One image visibility rule, walked as a table through every part that resolves an image.
//!
//! Project `vis-a` owns five images, one per visibility (private, shared and accepted by
//! `vis-b`, shared and still pending for `vis-b`, community, public). For each of the three
//! projects (the owner, the member, a stranger) and each image the table below says whether
//! the project may see the image (look at it by id) and use it (boot from it). Each cell is
//! checked through:
//! - native authorization (`GET /apis/cirrus.dev/v1/projects/vis-a/images/{name}`);
//! - Glance (`GET /image/v2/images/{id}`);
//! - native admission (a `Server` naming the image by uid);
//! - Nova (`POST /compute/v2.1/servers` with `imageRef`);
//! - Cinder (`POST /volume/v3/{project}/volumes` with `imageRef`);
//! - the scheduler and the node agent: every server admitted above becomes ACTIVE on a hollow
//!   node, which needs both to resolve the image as the server's project sees it, and every
//!   volume becomes available, which needs the node agent's volume reconciler to.

mod common;

use std::time::Duration;

use common::{Cloud, Proc, client_with_token, eventually, login};
use serde_json::{Value, json};

const OWNER: &str = "vis-a";
const MEMBER: &str = "vis-b";
const STRANGER: &str = "vis-c";

/// One image of the owner and what each project may do with it: `(sees, uses)` for the
/// owner, the member and the stranger, in that order.
struct Row {
    name: &'static str,
    visibility: &'static str,
    members: &'static [&'static str],
    accepted_by_member: bool,
    may: [(bool, bool); 3],
}

const TABLE: [Row; 5] = [
    Row {
        name: "img-private",
        visibility: "private",
        members: &[],
        accepted_by_member: false,
        may: [(true, true), (false, false), (false, false)],
    },
    Row {
        name: "img-shared-accepted",
        visibility: "shared",
        members: &[MEMBER],
        accepted_by_member: true,
        may: [(true, true), (true, true), (false, false)],
    },
    Row {
        name: "img-shared-pending",
        visibility: "shared",
        members: &[MEMBER],
        accepted_by_member: false,
        // Glance shows a pending share to the member (so it can decide) but does not let
        // it boot from the image until it accepts.
        may: [(true, true), (true, false), (false, false)],
    },
    Row {
        name: "img-community",
        visibility: "community",
        members: &[],
        accepted_by_member: false,
        may: [(true, true), (true, true), (true, true)],
    },
    Row {
        name: "img-public",
        visibility: "public",
        members: &[],
        accepted_by_member: false,
        may: [(true, true), (true, true), (true, true)],
    },
];

/// A project's member user, logged in.
struct Actor {
    project: &'static str,
    http: reqwest::blocking::Client,
}

fn make_member(cloud: &Cloud, project: &'static str) -> Actor {
    let user = format!("user-{project}");
    let password = common::random_hex();
    cloud.post_ok(
        "/users",
        json!({"metadata": {"name": user}, "spec": {"password": password}}),
    );
    cloud.post_ok(
        "/rolebindings",
        json!({"metadata": {"name": format!("{user}-member")},
               "spec": {"user": user, "project": project, "role": "member"}}),
    );
    let (status, token) = login(&cloud.base, &user, &password, Some(project));
    assert_eq!(status, 201, "{user} logs in to {project}");
    Actor {
        project,
        http: client_with_token(&token.expect("a token")),
    }
}

/// Creates the owner's images (with data, as `openstack image create --file` would) and the
/// member's answer to the accepted share; returns each row's image uid.
fn make_images(cloud: &Cloud, disk: &std::path::Path) -> Vec<String> {
    TABLE
        .iter()
        .map(|row| {
            cloud.post_ok(
                &format!("/projects/{OWNER}/images"),
                json!({"metadata": {"name": row.name},
                       "spec": {"visibility": row.visibility, "members": row.members,
                                "diskFormat": "qcow2", "containerFormat": "bare"}}),
            );
            let upload = cloud.cli(&[
                "upload-image",
                row.name,
                disk.to_str().unwrap(),
                "-p",
                OWNER,
            ]);
            assert!(
                upload.status.success(),
                "{}",
                String::from_utf8_lossy(&upload.stderr)
            );
            let image = cloud.get_json(&format!("/projects/{OWNER}/images/{}", row.name));
            let uid = image["metadata"]["uid"].as_str().unwrap().to_string();
            if row.accepted_by_member {
                cloud.post_ok(
                    &format!("/projects/{MEMBER}/imagemembers"),
                    json!({"metadata": {"name": uid}, "spec": {"memberStatus": "accepted"}}),
                );
            }
            uid
        })
        .collect()
}

/// The status `actor` gets for `request`, with the body for the failure message.
fn status_of(request: reqwest::blocking::RequestBuilder) -> (u16, String) {
    let resp = request.send().expect("the API answers");
    let status = resp.status().as_u16();
    (status, resp.text().unwrap_or_default())
}

#[test]
fn one_visibility_rule_for_every_part_that_resolves_images() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = Cloud::start(&dir.path().join("data"), &[]);
    let base = cloud.base.clone();
    let unlimited = json!({"instances": -1, "cores": -1, "ram": -1, "volumes": -1,
                           "gigabytes": -1});
    for project in [OWNER, MEMBER, STRANGER] {
        cloud.create_project(project, unlimited.clone());
    }
    let actors = [
        make_member(&cloud, OWNER),
        make_member(&cloud, MEMBER),
        make_member(&cloud, STRANGER),
    ];
    cloud.post_ok(
        "/flavors",
        json!({"metadata": {"name": "vis-small"}, "spec": {"vcpus": 1, "ram": 64, "disk": 1}}),
    );
    let uids = make_images(&cloud, &common::tiny_qcow2(dir.path()));

    let _agent = Proc::start(
        &[
            "node-agent".into(),
            "--driver".into(),
            "fake".into(),
            "--node".into(),
            "hollow-vis".into(),
            "--server".into(),
            base.clone(),
            "--state-dir".into(),
            dir.path().join("hollow").display().to_string(),
        ],
        &cloud.node_env("hollow-vis"),
        &dir.path().join("agent.log"),
    );

    // (project, the server's name or, for Nova's, its id)
    let mut admitted_servers: Vec<(&str, String)> = Vec::new();
    // (project, name) of native servers naming an image the project cannot see
    let mut failed_servers: Vec<(&str, String)> = Vec::new();
    let mut admitted_volumes = Vec::new();
    for (row, uid) in TABLE.iter().zip(&uids) {
        for (actor, &(sees, uses)) in actors.iter().zip(&row.may) {
            let cell = format!("{} as {}", row.name, actor.project);
            let http = &actor.http;

            let (status, body) = status_of(http.get(format!(
                "{base}/apis/cirrus.dev/v1/projects/{OWNER}/images/{}",
                row.name
            )));
            assert_eq!(
                status == 200,
                sees,
                "native read of {cell}: {status} {body}"
            );
            if !sees {
                assert!(matches!(status, 403 | 404), "{cell}: {status} {body}");
            }

            let (status, body) = status_of(http.get(format!("{base}/image/v2/images/{uid}")));
            let expected = if sees { 200 } else { 404 };
            assert_eq!(status, expected, "Glance read of {cell}: {body}");

            // Natively a reference the project cannot see is an unknown reference, judged
            // later as one (no answer may tell an invisible image from a missing one): the
            // server is admitted and fails with the image not found. Only a share the
            // project has not accepted is refused at once, naming the field.
            let native_name = format!("n-{}", row.name);
            let (status, body) = status_of(
                http.post(format!(
                    "{base}/apis/cirrus.dev/v1/projects/{}/servers",
                    actor.project
                ))
                .json(&json!({"metadata": {"name": native_name},
                              "spec": {"flavor": "vis-small", "image": uid}})),
            );
            if sees && !uses {
                assert_eq!(status, 400, "native boot of {cell}: {body}");
                assert!(body.contains("spec.image"), "{cell}: {body}");
            } else {
                assert_eq!(status, 201, "native boot of {cell}: {body}");
                let outcome = if uses {
                    &mut admitted_servers
                } else {
                    &mut failed_servers
                };
                outcome.push((actor.project, native_name));
            }

            let nova_name = format!("nova-{}", row.name);
            let (status, body) = status_of(http.post(format!("{base}/compute/v2.1/servers")).json(
                &json!({"server": {
                    "name": nova_name, "imageRef": uid, "flavorRef": "vis-small",
                    "networks": "none"}}),
            ));
            let expected = if uses { 202 } else { 400 };
            assert_eq!(status, expected, "Nova boot of {cell}: {body}");
            if uses {
                let answer: Value = serde_json::from_str(&body).unwrap();
                let id = answer["server"]["id"].as_str().unwrap().to_string();
                admitted_servers.push((actor.project, id));
            }

            let (status, body) = status_of(
                http.post(format!("{base}/volume/v3/{}/volumes", actor.project))
                    .json(&json!({"volume": {"name": format!("vol-{}", row.name),
                                             "size": 1, "imageRef": uid}})),
            );
            let expected = if uses { 202 } else { 400 };
            assert_eq!(status, expected, "Cinder create of {cell}: {body}");
            if uses {
                let id: Value = serde_json::from_str(&body).unwrap();
                admitted_volumes.push((actor.project, id["volume"]["id"].clone()));
            }
        }
    }

    // The scheduler placed every admitted server and the node agent found its image.
    let long = Duration::from_secs(120);
    for (project, name) in &admitted_servers {
        let listed = eventually(&format!("{project}/{name} ACTIVE"), long, || {
            let list = cloud.get_json(&format!("/projects/{project}/servers"));
            let server = list["items"]
                .as_array()?
                .iter()
                .find(|s| {
                    s["metadata"]["name"] == name.as_str() || s["metadata"]["uid"] == name.as_str()
                })?
                .clone();
            (server["status"]["phase"] == "ACTIVE").then_some(server)
        });
        assert_eq!(listed["spec"]["nodeName"], "hollow-vis", "{project}/{name}");
    }
    // The scheduler does not find an image the project cannot see: the server waits,
    // unschedulable, saying why (as for an image that does not exist yet).
    for (project, name) in &failed_servers {
        let condition = eventually(&format!("{project}/{name} ImageNotFound"), long, || {
            let server = cloud.get_json(&format!("/projects/{project}/servers/{name}"));
            server["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "Scheduled" && c["status"] == "False")
                .cloned()
        });
        assert_eq!(condition["reason"], "ImageNotFound", "{project}/{name}");
        let server = cloud.get_json(&format!("/projects/{project}/servers/{name}"));
        assert!(
            server["spec"]["nodeName"].is_null(),
            "never placed: {server}"
        );
        assert_ne!(server["status"]["phase"], "ACTIVE", "{server}");
    }
    // The node agent's volume reconciler found every admitted volume's image.
    for (project, id) in &admitted_volumes {
        eventually(&format!("volume {id} of {project} available"), long, || {
            let list = cloud.get_json(&format!("/projects/{project}/volumes"));
            let volume = list["items"]
                .as_array()?
                .iter()
                .find(|v| v["metadata"]["uid"] == *id)?
                .clone();
            (volume["status"]["phase"] == "available").then_some(())
        });
    }
}
