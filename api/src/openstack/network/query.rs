//! List queries the Neutron way, applied to rendered bodies: attribute filters, `fields`,
//! sorting and `limit`/`marker` pagination.
//!
//! - **Filters.** Any query key that is an attribute of the rendered resource filters on it;
//!   repeating a key means any of the values (`name=a&name=b`). Strings compare exactly,
//!   booleans accept `true`/`false`/`1`/`0` (any case), numbers their decimal form, lists
//!   match when an element matches (`security_groups=<id>`). Keys that are not attributes
//!   of the resource are ignored, as Neutron does without the filter-validation extension.
//! - `fixed_ips=ip_address=10.0.0.5` / `fixed_ips=subnet_id=<id>` /
//!   `fixed_ips=ip_address_substr=10.0.`: ports with one address matching every given part.
//! - **Order.** By `sort_key` (repeatable) and `sort_dir` (`asc`/`desc`), else by `id`, so
//!   that `marker` pagination is stable.
//! - **Pagination.** `marker=<id>`: what follows that item; `limit=<n>`: at most n items.
//! - **Fields.** `fields=a&fields=b`: only those attributes (as Neutron, `id` is not added).

use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::{NET, invalid};
use crate::openstack::fault::Fault;
use crate::openstack::paging::{self, compare_values};

/// How Neutron reads `limit`: no default, no cap, `0` means all.
const LIMIT: paging::LimitRule = paging::LimitRule {
    default: None,
    max: None,
    zero_means_all: true,
};

/// Query keys that are not attribute filters.
const CONTROL: &[&str] = &[
    "fields",
    "limit",
    "marker",
    "sort_key",
    "sort_dir",
    "page_reverse",
    "all_tenants",
    "all_projects",
    "verbose",
];

/// A parsed list query string.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    pairs: Vec<(String, String)>,
}

impl ListQuery {
    /// The query of `pairs` (`axum::extract::Query<Vec<(String, String)>>`).
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Self { pairs }
    }

    /// Every value given for `key`.
    pub fn values(&self, key: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The attribute filters, grouped by key in query order.
    fn filters(&self) -> Vec<(&str, Vec<&str>)> {
        let mut grouped: Vec<(&str, Vec<&str>)> = Vec::new();
        for (k, v) in &self.pairs {
            if CONTROL.contains(&k.as_str()) {
                continue;
            }
            match grouped.iter_mut().find(|(g, _)| g == k) {
                Some((_, values)) => values.push(v),
                None => grouped.push((k, vec![v])),
            }
        }
        grouped
    }

    /// Filters, sorts, pages and projects `items` (rendered resources).
    pub fn apply(&self, items: Vec<Value>) -> Result<Vec<Value>, Fault> {
        let filters = self.filters();
        let mut kept: Vec<Value> = items
            .into_iter()
            .filter(|item| {
                let Some(map) = item.as_object() else {
                    return false;
                };
                filters.iter().all(|(k, vs)| matches(map, k, vs))
            })
            .collect();
        let mut keys: Vec<&str> = self.values("sort_key");
        if keys.is_empty() {
            keys.push("id");
        }
        let sort = paging::sort_keys(&keys, &self.values("sort_dir"), false).map_err(
            |paging::BadDirection(other)| {
                invalid("sort_dir", format_args!("'{other}' is not asc or desc"))
            },
        )?;
        kept.sort_by(|a, b| {
            paging::compare_by(a, b, &sort).then_with(|| compare_values(a.get("id"), b.get("id")))
        });
        if let Some(marker) = self.values("marker").last().filter(|m| !m.is_empty()) {
            let is_marker = |i: &Value| i.get("id").and_then(Value::as_str) == Some(marker);
            if paging::skip_past_marker(&mut kept, marker, is_marker).is_err() {
                if keys != ["id"] {
                    return Err(Fault::not_found(
                        NET,
                        format!("Marker {marker} could not be found."),
                    )
                    .with_kind("MarkerNotFound"));
                }
                // The marker is gone (deleted meanwhile): resume after where it was.
                let marker = Value::from(*marker);
                let reverse = sort[0].1;
                kept.retain(|i| {
                    let ord = compare_values(i.get("id"), Some(&marker));
                    if reverse {
                        ord == Ordering::Less
                    } else {
                        ord == Ordering::Greater
                    }
                });
            }
        }
        let text = self.values("limit").last().copied();
        let limit = paging::limit(text, LIMIT).map_err(|e| match e {
            paging::LimitError::NotAnInteger(limit) => {
                invalid("limit", format_args!("'{limit}' is not an integer"))
            }
            paging::LimitError::Negative(_) => invalid("limit", "must not be negative"),
        })?;
        paging::truncate(&mut kept, limit);
        if self.values("fields").is_empty() {
            return Ok(kept);
        }
        Ok(kept
            .into_iter()
            .map(|item| self.select_fields(item))
            .collect())
    }

    /// `item` with only the `fields` this query names, or whole when it names none: a
    /// single resource answers `?fields=` the way a list does.
    pub fn select_fields(&self, item: Value) -> Value {
        let fields = self.values("fields");
        if fields.is_empty() {
            item
        } else {
            project(item, &fields)
        }
    }
}

/// `item` with only `fields` (the ones it has).
pub fn project(item: Value, fields: &[&str]) -> Value {
    match item {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(k, _)| fields.contains(&k.as_str()))
                .collect(),
        ),
        other => other,
    }
}

fn matches(item: &Map<String, Value>, key: &str, wanted: &[&str]) -> bool {
    if key == "fixed_ips" {
        return fixed_ips_match(item.get(key), wanted);
    }
    match item.get(key) {
        // Not an attribute of this resource: ignored.
        None => true,
        Some(value) => wanted.iter().any(|w| value_matches(value, w)),
    }
}

fn value_matches(value: &Value, wanted: &str) -> bool {
    match value {
        Value::String(s) => s == wanted,
        Value::Bool(b) => parse_bool(wanted) == Some(*b),
        Value::Number(n) => n.to_string() == wanted.trim(),
        Value::Null => wanted.is_empty() || wanted == "None" || wanted == "null",
        Value::Array(items) => items.iter().any(|i| value_matches(i, wanted)),
        Value::Object(_) => false,
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// `fixed_ips=ip_address=..`/`subnet_id=..`/`ip_address_substr=..`: some address of the
/// port matches every part given (several values of one part: any of them).
fn fixed_ips_match(ips: Option<&Value>, wanted: &[&str]) -> bool {
    let mut parts: Vec<(&str, Vec<&str>)> = Vec::new();
    for w in wanted {
        let (k, v) = w.split_once('=').unwrap_or(("ip_address", w));
        match parts.iter_mut().find(|(p, _)| *p == k) {
            Some((_, vs)) => vs.push(v),
            None => parts.push((k, vec![v])),
        }
    }
    let Some(Value::Array(ips)) = ips else {
        return false;
    };
    ips.iter().any(|ip| {
        parts.iter().all(|(k, vs)| {
            let field = |name: &str| ip.get(name).and_then(Value::as_str).unwrap_or_default();
            match *k {
                "ip_address_substr" => vs.iter().any(|v| field("ip_address").contains(v)),
                other => vs.iter().any(|v| field(other) == *v),
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(s: &[(&str, &str)]) -> ListQuery {
        ListQuery::new(
            s.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn ids(v: &[Value]) -> Vec<&str> {
        v.iter().map(|i| i["id"].as_str().unwrap()).collect()
    }

    fn items() -> Vec<Value> {
        vec![
            json!({"id": "c", "name": "web", "shared": false, "mtu": 1450, "router:external": false,
                   "security_groups": ["g1"], "fixed_ips": [{"subnet_id": "s1", "ip_address": "10.0.0.5"}]}),
            json!({"id": "a", "name": "db", "shared": true, "mtu": 1500, "router:external": false,
                   "security_groups": [], "fixed_ips": [{"subnet_id": "s2", "ip_address": "10.1.0.5"}]}),
            json!({"id": "b", "name": "web", "shared": false, "mtu": 1450, "router:external": false,
                   "security_groups": ["g1", "g2"], "fixed_ips": []}),
        ]
    }

    #[test]
    fn filters_by_strings_booleans_numbers_and_lists() {
        assert_eq!(
            ids(&q(&[("name", "web")]).apply(items()).unwrap()),
            ["b", "c"]
        );
        assert_eq!(
            ids(&q(&[("name", "web"), ("name", "db")])
                .apply(items())
                .unwrap()),
            ["a", "b", "c"]
        );
        assert_eq!(
            ids(&q(&[("shared", "True")]).apply(items()).unwrap()),
            ["a"]
        );
        assert_eq!(
            ids(&q(&[("mtu", "1450"), ("name", "web")])
                .apply(items())
                .unwrap()),
            ["b", "c"]
        );
        assert_eq!(
            ids(&q(&[("security_groups", "g2")]).apply(items()).unwrap()),
            ["b"]
        );
        assert_eq!(
            ids(&q(&[("router:external", "false")]).apply(items()).unwrap()),
            ["a", "b", "c"]
        );
        assert_eq!(
            ids(&q(&[("not_an_attribute", "x")]).apply(items()).unwrap()),
            ["a", "b", "c"]
        );
    }

    #[test]
    fn fixed_ips_filters_match_one_address() {
        let by_ip = q(&[("fixed_ips", "ip_address=10.0.0.5")])
            .apply(items())
            .unwrap();
        assert_eq!(ids(&by_ip), ["c"]);
        let both = q(&[
            ("fixed_ips", "ip_address=10.0.0.5"),
            ("fixed_ips", "subnet_id=s2"),
        ]);
        assert!(
            both.apply(items()).unwrap().is_empty(),
            "one address must match both"
        );
        let substr = q(&[("fixed_ips", "ip_address_substr=10.1.")])
            .apply(items())
            .unwrap();
        assert_eq!(ids(&substr), ["a"]);
    }

    #[test]
    fn sorts_pages_and_projects() {
        let desc = q(&[("sort_key", "name"), ("sort_dir", "desc")])
            .apply(items())
            .unwrap();
        assert_eq!(ids(&desc), ["b", "c", "a"]);
        let page = q(&[("limit", "1"), ("marker", "a")])
            .apply(items())
            .unwrap();
        assert_eq!(ids(&page), ["b"]);
        let gone = q(&[("marker", "bb")]).apply(items()).unwrap();
        assert_eq!(
            ids(&gone),
            ["c"],
            "a deleted marker resumes after its place"
        );
        let fields = q(&[("fields", "id"), ("fields", "name"), ("name", "db")])
            .apply(items())
            .unwrap();
        assert_eq!(fields, vec![json!({"id": "a", "name": "db"})]);
        assert!(q(&[("limit", "x")]).apply(items()).is_err());
        assert!(q(&[("sort_dir", "up")]).apply(items()).is_err());
    }
}
