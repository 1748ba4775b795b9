use super::*;

const GROUP: &str = "6f1e3b1c-0d7e-4a53-9c52-2c1f7d0f9a10";

#[test]
fn rule_ids_are_stable_and_follow_the_duplicate_rule() {
    let a = json!({"direction": "ingress", "ethertype": "IPv4", "protocol": "icmp", "remoteIpPrefix": "0.0.0.0/0"});
    let same_by_number =
        json!({"protocol": "1", "remoteIpPrefix": "0.0.0.0/0", "description": "x"});
    let other = json!({"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp",
                       "portRangeMin": 22, "portRangeMax": 22});
    assert_eq!(rule_id(GROUP, &a), rule_id(GROUP, &a));
    assert_eq!(
        rule_id(GROUP, &a),
        rule_id(GROUP, &same_by_number),
        "defaults and protocol numbers"
    );
    assert_ne!(rule_id(GROUP, &a), rule_id(GROUP, &other));
    assert_ne!(
        rule_id(GROUP, &a),
        rule_id("7f1e3b1c-0d7e-4a53-9c52-2c1f7d0f9a10", &a)
    );
    assert_eq!(
        Uuid::parse_str(&rule_id(GROUP, &a))
            .unwrap()
            .get_version_num(),
        5
    );
}

#[test]
fn rules_translate_and_validate_with_neutron_names() {
    let groups = vec![json!({"metadata": {"name": "web", "project": "demo", "uid": "w-uid"}})];
    let body = json!({"direction": "ingress", "protocol": "ICMP", "port_range_min": 8,
                      "remote_ip_prefix": "10.0.0.5/24", "ethertype": "ipv4"});
    let rule = native_rule(body.as_object().unwrap(), &groups, "demo").unwrap();
    assert_eq!(
        rule,
        json!({"direction": "ingress", "ethertype": "IPv4", "protocol": "icmp",
                            "portRangeMin": 8, "remoteIpPrefix": "10.0.0.0/24"})
    );
    let body = json!({"direction": "egress", "protocol": "tcp", "port_range_min": 80, "port_range_max": 22});
    let err = native_rule(body.as_object().unwrap(), &groups, "demo").unwrap_err();
    assert!(err.message.contains("port_range_max"), "{}", err.message);
    let body = json!({"direction": "ingress", "remote_group_id": "w-uid", "ethertype": "IPv6", "protocol": "icmp"});
    let rule = native_rule(body.as_object().unwrap(), &groups, "demo").unwrap();
    assert_eq!(rule["remoteGroup"], "web");
    assert_eq!(rule["protocol"], "ipv6-icmp");
    let body = json!({"direction": "sideways"});
    assert!(
        native_rule(body.as_object().unwrap(), &groups, "demo")
            .unwrap_err()
            .message
            .contains("direction")
    );
    let body = json!({"direction": "ingress", "remote_group_id": "nope"});
    assert_eq!(
        native_rule(body.as_object().unwrap(), &groups, "demo")
            .unwrap_err()
            .code,
        StatusCode::NOT_FOUND
    );
    let body = json!({"direction": "ingress", "protocol": "bogus"});
    assert!(
        native_rule(body.as_object().unwrap(), &groups, "demo")
            .unwrap_err()
            .message
            .contains("protocol")
    );
}

#[test]
fn renders_rules_with_group_ids() {
    let group = json!({"metadata": {"name": "default", "project": "demo", "uid": GROUP},
                       "spec": default_group_spec()});
    let body = render(&group, std::slice::from_ref(&group));
    let rules = body["security_group_rules"].as_array().unwrap();
    assert_eq!(rules.len(), 4);
    assert_eq!(rules[0]["remote_group_id"], GROUP);
    assert_eq!(rules[0]["security_group_id"], GROUP);
    assert_eq!(rules[2]["direction"], "egress");
    assert_eq!(rules[2]["remote_group_id"], Value::Null);
    assert_eq!(rules[0]["belongs_to_default_sg"], true);
    assert_eq!(body["description"], "Default security group");
}
