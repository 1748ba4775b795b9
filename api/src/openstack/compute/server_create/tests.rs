use super::*;
use cirrus_crds::kinds::image::Visibility;
use cirrus_crds::meta::ObjectMeta;
use cirrus_crds::{Flavor, FlavorSpec, Image, ImageSpec, Network, NetworkSpec, Port, PortSpec};

fn meta(project: Option<&str>, name: &str, uid: &str) -> ObjectMeta {
    ObjectMeta {
        name: name.into(),
        project: project.map(str::to_string),
        uid: Some(uid.into()),
        ..Default::default()
    }
}

fn related() -> Related {
    let mut used = Port::new(
        meta(Some("demo"), "taken", "port-taken"),
        PortSpec {
            network: "net1".into(),
            ..Default::default()
        },
    );
    used.spec.device_id = Some("other-server".into());
    Related {
        images: vec![
            Image::new(
                meta(Some("admin"), "cirros", "img-pub"),
                ImageSpec {
                    visibility: Visibility::Public,
                    ..Default::default()
                },
            ),
            Image::new(
                meta(Some("other"), "secret", "img-priv"),
                ImageSpec::default(),
            ),
        ],
        flavors: vec![Flavor::new(
            meta(None, "m1.tiny", "f-1"),
            FlavorSpec::default(),
        )],
        networks: vec![
            Network::new(meta(Some("demo"), "net1", "net-1"), NetworkSpec::default()),
            Network::new(meta(Some("demo"), "net2", "net-2"), NetworkSpec::default()),
        ],
        ports: vec![
            Port::new(
                meta(Some("demo"), "free", "port-free"),
                PortSpec {
                    network: "net1".into(),
                    ..Default::default()
                },
            ),
            used,
        ],
        ..Default::default()
    }
}

fn body(extra: Value) -> Value {
    let mut server = json!({"name": "web 1", "imageRef": "img-pub", "flavorRef": "m1.tiny",
        "networks": [{"uuid": "net-1"}]});
    for (k, v) in extra.as_object().unwrap() {
        server[k] = v.clone();
    }
    json!({ "server": server })
}

fn message(f: Fault) -> String {
    f.message
}

#[test]
fn references_become_object_names() {
    let plan = plan(
        &body(
            json!({"networks": [{"uuid": "net-2", "fixed_ip": "10.0.0.5"}, {"port": "port-free"}],
            "metadata": {"a": "b"}, "user_data": "aGVsbG8=", "config_drive": true}),
        ),
        "demo",
        false,
        &related(),
    )
    .unwrap();
    assert_eq!(plan.name, "web 1");
    assert_eq!(
        plan.spec,
        json!({"flavor": "m1.tiny", "image": "cirros",
            "networks": [{"network": "net2", "fixedIp": "10.0.0.5"}, {"port": "free"}],
            "metadata": {"a": "b"}, "userData": "aGVsbG8=", "configDrive": true})
    );
    assert_eq!(plan.annotations[IMAGE_ANNOTATION], "img-pub");
    assert_eq!(plan.security_groups, ["default"]);
}

#[test]
fn unknown_references_and_bad_fields_are_400_naming_them() {
    let r = related();
    let cases = [
        (
            json!({"flavorRef": "m1.x"}),
            "Flavor m1.x could not be found.",
        ),
        (
            json!({"imageRef": "nope"}),
            "Image nope could not be found.",
        ),
        (
            json!({"imageRef": "img-priv"}),
            "Image img-priv could not be found.",
        ),
        (
            json!({"networks": [{"uuid": "net-9"}]}),
            "Network net-9 could not be found.",
        ),
        (
            json!({"networks": [{"port": "port-9"}]}),
            "Port port-9 could not be found.",
        ),
        (
            json!({"user_data": "not base64!"}),
            "User data needs to be valid base 64",
        ),
        (json!({"key_name": "k"}), "Invalid key_name provided."),
        (
            json!({"security_groups": [{"name": "web"}]}),
            "Security group web not found.",
        ),
        (json!({"max_count": 3}), "max_count"),
        (json!({"name": " padded"}), "field/attribute name"),
        (json!({"metadata": {"a": 1}}), "metadata/a"),
    ];
    for (extra, expected) in cases {
        let fault = plan(&body(extra.clone()), "demo", false, &r).unwrap_err();
        assert_eq!(fault.code, 400, "{extra}");
        assert!(
            message(fault.clone()).contains(expected),
            "{extra}: {}",
            fault.message
        );
    }
    let missing = plan(
        &json!({"server": {"flavorRef": "m1.tiny"}}),
        "demo",
        false,
        &r,
    )
    .unwrap_err();
    assert!(missing.message.contains("'name' is a required property"));
    let used = plan(
        &body(json!({"networks": [{"port": "port-taken"}]})),
        "demo",
        false,
        &r,
    )
    .unwrap_err();
    assert_eq!(used.code, 409);
}

#[test]
fn no_networks_means_the_only_one_and_several_are_ambiguous() {
    let mut r = related();
    let ambiguous = plan(&body(json!({"networks": []})), "demo", false, &r).unwrap_err();
    assert_eq!(ambiguous.code, 409);
    r.networks.pop();
    let one = plan(&body(json!({"networks": []})), "demo", false, &r).unwrap();
    assert_eq!(one.spec["networks"], json!([{"network": "net1"}]));
    let none = plan(&body(json!({"networks": "none"})), "demo", false, &r).unwrap();
    assert!(none.spec.get("networks").is_none());
}

#[test]
fn forced_hosts_are_for_admins() {
    let r = related();
    let fault = plan(
        &body(json!({"availability_zone": "nova:node-1"})),
        "demo",
        false,
        &r,
    )
    .unwrap_err();
    assert_eq!(fault.code, 403);
    let admin = plan(
        &body(json!({"availability_zone": "nova:node-1"})),
        "demo",
        true,
        &r,
    )
    .unwrap();
    assert_eq!(admin.spec["nodeName"], "node-1");
    assert_eq!(admin.spec["availabilityZone"], "nova");
}

#[test]
fn hostnames_follow_novas_sanitizing() {
    assert_eq!(sanitize_hostname("My Web_Server!"), "my-web-server");
    assert_eq!(sanitize_hostname("***"), "server");
}

#[test]
fn admin_pass_is_the_requested_one_or_a_fresh_random_one() {
    let given = json!({"adminPass": "s3cret"});
    assert_eq!(admin_pass(given.as_object().unwrap()).unwrap(), "s3cret");
    let refused = admin_pass(json!({"adminPass": 5}).as_object().unwrap()).unwrap_err();
    assert_eq!(refused.code.as_u16(), 400);
    let a = admin_pass(&Map::new()).unwrap();
    let b = admin_pass(&Map::new()).unwrap();
    assert_eq!(a.len(), PASSWORD_LEN);
    assert!(a.bytes().all(|c| PASSWORD_CHARS.contains(&c)), "{a}");
    assert_ne!(a, b);
}
