//! Generators: proptest strategies for junk values, mutated bodies, query strings and path
//! segments.

use super::*;

/// Strings that mean something to some parser: addresses, CIDRs, enum words, numbers in
/// text, path tricks, control and bidi characters.
pub(crate) const SPECIAL: &[&str] = &[
    "",
    " ",
    "null",
    "true",
    "False",
    "-1",
    "0",
    "1",
    "2147483648",
    "18446744073709551616",
    "1e999",
    "NaN",
    "-0",
    "0x10",
    "10.0.0.0/24",
    "10.0.0.0/33",
    "10.0.0.1/8",
    "0.0.0.0/0",
    "::/0",
    "fd00::/64",
    "fd00::1/129",
    "fe80::1%eth0",
    "0.0.0.0",
    "10.0.0.5",
    "255.255.255.255",
    "999.1.1.1",
    "1.2.3",
    "fa:16:3e:00:00:01",
    "ff:ff:ff:ff:ff:ff",
    "01:00:5e:00:00:01",
    "../../etc/passwd",
    "/",
    "%00",
    "\u{0}",
    "a\u{0}b",
    "\u{202e}gnp.exe",
    "\u{1f4a5}",
    "é",
    "\u{1d518}\u{1d52b}\u{1d526}",
    "\u{feff}",
    "a\r\nX-Injected: 1",
    "tcp",
    "udp",
    "icmp",
    "6",
    "any",
    "IPv4",
    "IPv6",
    "ingress",
    "egress",
    "SOFT",
    "HARD",
    "qcow2",
    "raw",
    "bare",
    "iso",
    "public",
    "private",
    "shared",
    "community",
    "default",
    "__DEFAULT__",
    "nova",
    "m1.tiny",
    "k1",
    "admin",
    "fuzz",
    "00000000-0000-0000-0000-000000000000",
    "/dev/vdb",
    "/dev/sda",
    "vda",
    "2026-01-01T00:00:00Z",
    "2026-13-45T99:99:99Z",
    "gte:2020-01-01T00:00:00Z",
    "in:a,b",
    "name:asc",
    "id:desc,name",
    "desc",
    "asc",
    "*",
    "%",
    "\\",
    "'",
    "\"",
    "{}",
    "[]",
];

/// Field names the valid bodies use (collected from them) plus a few every API knows:
/// random objects use them as keys, so junk lands on fields the handlers read.
pub(crate) fn field_names(routes: &[Route]) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    out.push(k.clone());
                    walk(v, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out: Vec<String> = [
        "id",
        "name",
        "description",
        "tenant_id",
        "project_id",
        "metadata",
        "tags",
        "status",
        "force",
        "links",
        "",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for route in routes {
        if let Shape::Body(valid) = &route.shape {
            valid.iter().for_each(|v| walk(v, &mut out));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Junk strings: special ones, the seeded objects' ids and names, random unicode, control
/// characters, long repetitions and huge ones.
pub(crate) fn junk_string(ids: &[String]) -> BoxedStrategy<String> {
    let ids = ids.to_vec();
    prop_oneof![
        6 => prop::sample::select(SPECIAL).prop_map(str::to_string),
        4 => prop::sample::select(ids),
        4 => "\\PC{0,24}",
        2 => ".{0,12}",
        2 => "[a-z0-9-]{1,70}",
        1 => ("\\PC{1,3}", 1usize..4000).prop_map(|(s, n)| s.repeat(n)),
        1 => (1usize..200_000).prop_map(|n| "x".repeat(n)),
    ]
    .boxed()
}

/// A JSON number: edge cases (ports, limits, `i32`/`i64`/`u64` bounds, fractions, huge
/// floats) and random ones.
pub(crate) fn number() -> BoxedStrategy<Value> {
    let edge: Vec<Value> = vec![
        json!(0),
        json!(-1),
        json!(1),
        json!(2),
        json!(22),
        json!(65535),
        json!(65536),
        json!(4095),
        json!(4096),
        json!(i32::MAX),
        json!(i64::from(i32::MAX) + 1),
        json!(u32::MAX),
        json!(i64::MIN),
        json!(i64::MAX),
        json!(u64::MAX),
        json!(0.5),
        json!(-0.0),
        json!(1e300),
        json!(-1e300),
        json!(9_007_199_254_740_993_u64),
    ];
    prop_oneof![
        4 => prop::sample::select(edge),
        2 => any::<i64>().prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
    ]
    .boxed()
}

/// A JSON scalar: nulls, booleans, numbers, junk strings.
pub(crate) fn leaf(ids: &[String]) -> BoxedStrategy<Value> {
    prop_oneof![
        2 => Just(Value::Null),
        2 => any::<bool>().prop_map(Value::from),
        5 => number(),
        6 => junk_string(ids).prop_map(Value::String),
    ]
    .boxed()
}

/// Any JSON value: scalars, arrays and objects (keys mostly field names) nested a few
/// levels deep.
pub(crate) fn junk_value(ids: &[String], fields: &[String]) -> BoxedStrategy<Value> {
    let fields = fields.to_vec();
    let key_ids = ids.to_vec();
    leaf(ids)
        .prop_recursive(4, 48, 6, move |inner| {
            let key = prop_oneof![
                4 => prop::sample::select(fields.clone()),
                1 => junk_string(&key_ids),
            ];
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((key, inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
        .boxed()
}

/// Every JSON pointer in `v`, the root (`""`) included.
pub(crate) fn pointers(v: &Value) -> Vec<String> {
    fn walk(v: &Value, at: String, out: &mut Vec<String>) {
        out.push(at.clone());
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    let escaped = k.replace('~', "~0").replace('/', "~1");
                    walk(v, format!("{at}/{escaped}"), out);
                }
            }
            Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    walk(v, format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, String::new(), &mut out);
    out
}

/// `body` with `edits` applied, each at the pointer its index selects.
pub(crate) fn mutate(mut body: Value, edits: &[(prop::sample::Index, Edit)]) -> Value {
    for (at, edit) in edits {
        let all = pointers(&body);
        let pointer = at.get(&all).clone();
        match edit {
            Edit::Leaf {
                number,
                string,
                other,
            } => {
                let leaves: Vec<&String> = all
                    .iter()
                    .filter(|p| {
                        body.pointer(p)
                            .is_some_and(|v| !v.is_object() && !v.is_array())
                    })
                    .collect();
                if leaves.is_empty() {
                    continue;
                }
                let pointer = at.get(&leaves).to_string();
                if let Some(slot) = body.pointer_mut(&pointer) {
                    *slot = match slot {
                        Value::Number(_) => number.clone(),
                        Value::String(_) => Value::String(string.clone()),
                        _ => other.clone(),
                    };
                }
            }
            Edit::Replace(v) => {
                if let Some(slot) = body.pointer_mut(&pointer) {
                    *slot = v.clone();
                }
            }
            Edit::Remove => {
                let Some((parent, last)) = pointer.rsplit_once('/') else {
                    continue; // the root stays
                };
                let last = last.replace("~1", "/").replace("~0", "~");
                match body.pointer_mut(parent) {
                    Some(Value::Object(m)) => {
                        m.remove(&last);
                    }
                    Some(Value::Array(a)) => {
                        if let Ok(i) = last.parse::<usize>()
                            && i < a.len()
                        {
                            a.remove(i);
                        }
                    }
                    _ => {}
                }
            }
            Edit::Insert(k, v) => match body.pointer_mut(&pointer) {
                Some(Value::Object(m)) => {
                    m.insert(k.clone(), v.clone());
                }
                Some(Value::Array(a)) => a.push(v.clone()),
                Some(slot) => *slot = json!({ k.clone(): v.clone() }),
                None => {}
            },
            Edit::Wrap => {
                if let Some(slot) = body.pointer_mut(&pointer) {
                    *slot = Value::Array(vec![slot.take()]);
                }
            }
            Edit::Stringify => {
                if let Some(slot) = body.pointer_mut(&pointer) {
                    let text = match &*slot {
                        Value::String(s) => format!("{s}{s}"),
                        other => other.to_string(),
                    };
                    *slot = Value::String(text);
                }
            }
        }
    }
    body
}

/// Bodies that are not JSON, or are JSON only a parser's limits care about.
pub(crate) fn raw_body(valid: &[Value]) -> BoxedStrategy<Body> {
    let first = valid.first().cloned().unwrap_or(json!({}));
    let text = serde_json::to_string(&first).expect("JSON");
    let cut = text.clone();
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64).prop_map(Body::Raw),
        Just(Body::Raw(Vec::new())),
        Just(Body::Raw(b"   \n".to_vec())),
        Just(Body::Raw(b"{".to_vec())),
        Just(Body::Raw(b"{\"a\": 1e99999}".to_vec())),
        Just(Body::Raw(b"{\"a\": \"\\ud800\"}".to_vec())),
        Just(Body::Raw(b"\xef\xbb\xbf{}".to_vec())),
        (1usize..2000)
            .prop_map(|n| Body::Raw(format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes())),
        (1usize..200).prop_map(|n| Body::Raw(
            format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n)).into_bytes()
        )),
        any::<prop::sample::Index>().prop_map(move |i| {
            let at = i.index(cut.len().max(1));
            Body::Raw(cut.as_bytes()[..at.min(cut.len())].to_vec())
        }),
        Just(Body::Raw(
            // Every key twice, the second value junk.
            text.replacen('{', "{\"name\": 5, \"name\": null, ", 2)
                .into_bytes()
        )),
        Just(Body::Raw(
            format!("{{\"x\": \"{}\"}}", "y".repeat(1024 * 1024 + 1)).into_bytes()
        )),
    ]
    .boxed()
}

pub(crate) fn edit(ids: &[String], fields: &[String]) -> BoxedStrategy<Edit> {
    let value = junk_value(ids, fields);
    let key = prop_oneof![
        3 => prop::sample::select(fields.to_vec()),
        1 => junk_string(ids),
    ];
    let number = prop_oneof![3 => number(), 1 => leaf(ids)];
    let leaf_edit =
        (number, junk_string(ids), leaf(ids)).prop_map(|(number, string, other)| Edit::Leaf {
            number,
            string,
            other,
        });
    prop_oneof![
        8 => leaf_edit,
        3 => value.clone().prop_map(Edit::Replace),
        2 => Just(Edit::Remove),
        2 => (key, value).prop_map(|(k, v)| Edit::Insert(k, v)),
        1 => Just(Edit::Wrap),
        2 => Just(Edit::Stringify),
    ]
    .boxed()
}

pub(crate) fn body_input(
    valid: &[Value],
    ids: &[String],
    fields: &[String],
) -> BoxedStrategy<Input> {
    let envelopes: Vec<String> = valid
        .iter()
        .filter_map(|v| v.as_object()?.keys().next().cloned())
        .chain(std::iter::once("x".to_string()))
        .collect();
    let mutated = (
        prop::sample::select(valid.to_vec()),
        prop::collection::vec((any::<prop::sample::Index>(), edit(ids, fields)), 1..3),
    )
        .prop_map(|(body, edits)| Body::Json(mutate(body, &edits)));
    let enveloped = (prop::sample::select(envelopes), junk_value(ids, fields))
        .prop_map(|(k, v)| Body::Json(json!({ k: v })));
    prop_oneof![
        6 => mutated,
        2 => enveloped,
        1 => junk_value(ids, fields).prop_map(Body::Json),
        1 => raw_body(valid),
    ]
    .prop_map(Input::Body)
    .boxed()
}

/// Query keys the list routes of the four APIs read, and some they do not.
pub(crate) const QUERY_KEYS: &[&str] = &[
    "limit",
    "marker",
    "offset",
    "page_reverse",
    "sort_key",
    "sort_dir",
    "sort",
    "fields",
    "name",
    "id",
    "status",
    "all_tenants",
    "all_projects",
    "project_id",
    "tenant_id",
    "changes-since",
    "changes-before",
    "minRam",
    "minDisk",
    "is_public",
    "visibility",
    "member_status",
    "owner",
    "tag",
    "tags",
    "os_hidden",
    "protected",
    "disk_format",
    "container_format",
    "size_min",
    "size_max",
    "created_at",
    "updated_at",
    "network_id",
    "subnet_id",
    "cidr",
    "ip_version",
    "gateway_ip",
    "device_id",
    "device_owner",
    "mac_address",
    "fixed_ips",
    "security_groups",
    "security_group_id",
    "shared",
    "admin_state_up",
    "router:external",
    "direction",
    "ethertype",
    "protocol",
    "port_range_min",
    "remote_ip_prefix",
    "image",
    "flavor",
    "host",
    "node",
    "ip",
    "ip6",
    "deleted",
    "availability_zone",
    "metadata",
    "bootable",
    "with_count",
    "volume_id",
    "user_id",
    "binary",
    "detailed",
    "tailBytes",
];

/// Percent-encodes `s` for a query, each byte either as itself (when harmless) or `%XX`,
/// as `mask` says; `&`, `=`, `#`, `+` and non-ASCII are always encoded.
pub(crate) fn encode(s: &str, mask: u64) -> String {
    let mut out = String::new();
    for (i, b) in s.bytes().enumerate() {
        let raw_ok = b.is_ascii_alphanumeric() || b"-_.~:,*!$'()/?@".contains(&b);
        if raw_ok && (mask >> (i % 64)) & 1 == 0 {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

pub(crate) fn query_input(ids: &[String]) -> BoxedStrategy<Input> {
    let key = prop_oneof![
        6 => prop::sample::select(QUERY_KEYS).prop_map(str::to_string),
        1 => junk_string(ids).prop_map(|s| s.chars().take(40).collect()),
    ];
    let value = prop_oneof![
        1 => Just(String::new()),
        6 => junk_string(ids).prop_map(|s| s.chars().take(2000).collect()),
        2 => any::<i64>().prop_map(|n| n.to_string()),
        1 => prop::sample::select(vec!["%", "%zz", "%e2%82", "%C0%AF", "+", "a&", "=="])
            .prop_map(|s| format!("RAW:{s}")),
    ];
    let pair = (key, value, any::<u64>()).prop_map(|(k, v, mask)| match v.strip_prefix("RAW:") {
        // Deliberately broken escapes, sent as they are.
        Some(raw) => format!("{}={raw}", encode(&k, mask)),
        None => format!("{}={}", encode(&k, mask), encode(&v, mask.rotate_left(7))),
    });
    let pairs = prop::collection::vec(pair, 0..8);
    (pairs, any::<bool>(), any::<prop::sample::Index>())
        .prop_map(|(mut pairs, repeat, at)| {
            if repeat && !pairs.is_empty() {
                // The same key twice (or more), as Neutron filters allow.
                let again = at.get(&pairs).clone();
                pairs.push(again.clone());
                pairs.push(again);
            }
            // Under the URL length clients and servers accept (64 KiB); hyper answers
            // longer ones itself.
            let mut query = pairs.join("&");
            query.truncate(query.floor_char_boundary(16 * 1024));
            Input::Query(query)
        })
        .boxed()
}

pub(crate) fn segment_input(ids: &[String]) -> BoxedStrategy<Input> {
    (junk_string(ids), any::<u64>())
        .prop_map(|(s, mask)| {
            let s: String = s.chars().take(300).collect();
            Input::Segment(encode(&s, mask))
        })
        .boxed()
}
