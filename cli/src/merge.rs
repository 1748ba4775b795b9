//! Client-side three-way merge for `cirrus apply`, and RFC 7386 JSON merge patches.
//!
//! Pure functions, no I/O. The model is `kubectl apply`'s client-side apply:
//!
//! - **last applied**: the manifest the previous apply sent (kept on the object in the
//!   [`LAST_APPLIED`] annotation),
//! - **desired**: the manifest being applied now,
//! - **live**: the object as stored, including fields written by controllers and other clients.
//!
//! [`three_way_patch`] computes a JSON merge patch that sets every field the desired manifest
//! states (where live differs), deletes (`null`) every field the last-applied manifest had and
//! the desired one dropped, and leaves every other live field alone. Maps merge key by key,
//! recursively; lists and scalars are replaced wholesale. An explicit `null` in the desired
//! manifest means "this field must be absent". `status` is never part of a patch.
//!
//! # Guarantees
//! - Applying the patch to `live` with `cirrus_store::objects::merge_patch::apply` (what the server runs) yields an object that contains
//!   every non-null field of `desired` with the desired value.
//! - A field absent from both `desired` and `last_applied` is never in the patch.
//! - The patch is empty (`{}`) exactly when nothing needs to change, so "unchanged" costs no
//!   request.

use serde_json::{Map, Value};

/// Annotation holding the compact JSON of the last manifest `cirrus apply` sent.
pub const LAST_APPLIED: &str = "cirrus.dev/last-applied";

/// Top-level fields that apply never writes (controllers own them).
const NEVER_PATCHED: &[&str] = &["status"];

/// Computes the RFC 7386 merge patch that turns `live` into what `desired` asks for, given
/// the manifest applied last time (`None` on the first apply, or when the annotation is
/// missing, in which case nothing is deleted).
pub fn three_way_patch(last_applied: Option<&Value>, desired: &Value, live: &Value) -> Value {
    let empty = Map::new();
    let last = last_applied.and_then(Value::as_object).unwrap_or(&empty);
    let (Some(desired), Some(live)) = (desired.as_object(), live.as_object()) else {
        // Not objects: the whole value is replaced.
        return desired.clone();
    };
    let mut desired = desired.clone();
    let mut last = last.clone();
    for key in NEVER_PATCHED {
        desired.remove(*key);
        last.remove(*key);
    }
    Value::Object(diff_maps(Some(&last), &desired, live))
}

fn diff_maps(
    last: Option<&Map<String, Value>>,
    desired: &Map<String, Value>,
    live: &Map<String, Value>,
) -> Map<String, Value> {
    let mut patch = Map::new();
    for (key, want) in desired {
        let have = live.get(key);
        match (want, have) {
            (Value::Null, None | Some(Value::Null)) => {}
            (Value::Null, Some(_)) => {
                patch.insert(key.clone(), Value::Null);
            }
            (Value::Object(want_map), Some(Value::Object(have_map))) => {
                let last_map = last.and_then(|l| l.get(key)).and_then(Value::as_object);
                let sub = diff_maps(last_map, want_map, have_map);
                if !sub.is_empty() {
                    patch.insert(key.clone(), Value::Object(sub));
                }
            }
            (want, Some(have)) if json_eq(want, have) => {}
            (want, _) => {
                patch.insert(key.clone(), strip_nulls(want));
            }
        }
    }
    if let Some(last) = last {
        for key in last.keys() {
            if !desired.contains_key(key) && live.get(key).is_some_and(|v| !v.is_null()) {
                patch.insert(key.clone(), Value::Null);
            }
        }
    }
    patch
}

/// `value` without any `null` map entries (a merge patch can't carry "absent" inside a value
/// that replaces a non-object).
fn strip_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// JSON equality where numbers compare by value (`1` equals `1.0`): a YAML manifest's `1`
/// and the server's `1.0` for a float field are the same setting.
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                x == y
            } else if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                x == y
            } else {
                x.as_f64() == y.as_f64()
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// True when `patch` changes nothing (`{}` or `null`).
pub fn is_empty_patch(patch: &Value) -> bool {
    match patch {
        Value::Object(map) => map.is_empty(),
        Value::Null => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patch(last: Option<Value>, desired: Value, live: Value) -> Value {
        let p = three_way_patch(last.as_ref(), &desired, &live);
        // Invariant: the patched live object holds every desired field.
        let mut merged = live.clone();
        cirrus_store::objects::merge_patch::apply(&mut merged, &p);
        assert_contains(&merged, &desired);
        p
    }

    fn assert_contains(merged: &Value, desired: &Value) {
        match desired {
            Value::Object(map) => {
                for (k, v) in map {
                    if k == "status" {
                        continue;
                    }
                    if v.is_null() {
                        assert!(merged.get(k).is_none(), "{k} should be absent in {merged}");
                    } else {
                        assert_contains(&merged[k], v);
                    }
                }
            }
            other => assert!(json_eq(merged, other), "{merged} != {other}"),
        }
    }

    #[test]
    fn first_apply_sets_only_what_differs() {
        let p = patch(
            None,
            json!({"spec": {"vcpus": 2, "ram": 1024}}),
            json!({"spec": {"vcpus": 1, "ram": 1024, "disk": 10}}),
        );
        assert_eq!(p, json!({"spec": {"vcpus": 2}}));
    }

    #[test]
    fn removed_field_is_deleted() {
        let p = patch(
            Some(json!({"spec": {"vcpus": 2, "description": "x"}})),
            json!({"spec": {"vcpus": 2}}),
            json!({"spec": {"vcpus": 2, "description": "x"}}),
        );
        assert_eq!(p, json!({"spec": {"description": null}}));
    }

    #[test]
    fn removed_field_already_gone_is_not_sent() {
        let p = patch(
            Some(json!({"spec": {"vcpus": 2, "description": "x"}})),
            json!({"spec": {"vcpus": 2}}),
            json!({"spec": {"vcpus": 2}}),
        );
        assert!(is_empty_patch(&p));
    }

    #[test]
    fn controller_owned_field_is_kept() {
        let live = json!({
            "metadata": {"name": "a", "uid": "u1", "labels": {"app": "x", "owner": "ctl"},
                          "annotations": {"set-by": "controller"}},
            "spec": {"vcpus": 1, "node": "n1"},
            "status": {"phase": "Running"}
        });
        let last = json!({"metadata": {"name": "a", "labels": {"app": "x"}}, "spec": {"vcpus": 1}});
        let desired =
            json!({"metadata": {"name": "a", "labels": {"app": "y"}}, "spec": {"vcpus": 1}});
        let p = patch(Some(last), desired, live);
        assert_eq!(p, json!({"metadata": {"labels": {"app": "y"}}}));
    }

    #[test]
    fn nested_maps_merge_key_by_key() {
        let last = json!({"spec": {"a": {"b": {"c": 1, "d": 2}}}});
        let desired = json!({"spec": {"a": {"b": {"c": 1, "e": 3}}}});
        let live = json!({"spec": {"a": {"b": {"c": 1, "d": 2, "z": 9}, "y": 8}}});
        let p = patch(Some(last), desired, live);
        assert_eq!(p, json!({"spec": {"a": {"b": {"d": null, "e": 3}}}}));
    }

    #[test]
    fn whole_map_removed() {
        let last = json!({"spec": {"extraSpecs": {"a": "1"}, "vcpus": 1}});
        let desired = json!({"spec": {"vcpus": 1}});
        let live = json!({"spec": {"extraSpecs": {"a": "1", "b": "2"}, "vcpus": 1}});
        let p = patch(Some(last), desired, live);
        assert_eq!(p, json!({"spec": {"extraSpecs": null}}));
    }

    #[test]
    fn lists_are_replaced_wholesale() {
        let last = json!({"spec": {"nets": [{"name": "a"}, {"name": "b"}]}});
        let desired = json!({"spec": {"nets": [{"name": "a"}]}});
        let live = json!({"spec": {"nets": [{"name": "a", "ip": "10.0.0.2"}, {"name": "b"}]}});
        let p = patch(Some(last), desired, live);
        assert_eq!(p, json!({"spec": {"nets": [{"name": "a"}]}}));
        let same = patch(None, json!({"l": [1, 2]}), json!({"l": [1, 2]}));
        assert!(is_empty_patch(&same));
    }

    #[test]
    fn explicit_null_deletes() {
        let p = patch(
            None,
            json!({"spec": {"description": null}}),
            json!({"spec": {"description": "x"}}),
        );
        assert_eq!(p, json!({"spec": {"description": null}}));
        let p = patch(
            None,
            json!({"spec": {"description": null}}),
            json!({"spec": {}}),
        );
        assert!(is_empty_patch(&p));
    }

    #[test]
    fn nulls_inside_replacing_value_are_stripped() {
        let p = patch(
            None,
            json!({"spec": {"a": {"b": null, "c": 1}}}),
            json!({"spec": {"a": 5}}),
        );
        assert_eq!(p, json!({"spec": {"a": {"c": 1}}}));
    }

    #[test]
    fn status_is_never_sent() {
        let p = patch(
            Some(json!({"status": {"x": 1}})),
            json!({"spec": {"a": 1}, "status": {"phase": "Mine"}}),
            json!({"spec": {"a": 1}, "status": {"phase": "Running", "x": 1}}),
        );
        assert!(is_empty_patch(&p), "{p}");
    }

    #[test]
    fn numbers_compare_by_value() {
        let p = three_way_patch(
            None,
            &json!({"spec": {"rxtxFactor": 1}}),
            &json!({"spec": {"rxtxFactor": 1.0}}),
        );
        assert!(is_empty_patch(&p));
        assert!(!json_eq(&json!(1), &json!(2)));
        assert!(!json_eq(&json!(1), &json!("1")));
    }

    #[test]
    fn type_change_replaces() {
        let p = patch(
            None,
            json!({"spec": {"a": "x"}}),
            json!({"spec": {"a": {"b": 1}}}),
        );
        assert_eq!(p, json!({"spec": {"a": "x"}}));
        let p = patch(
            None,
            json!({"spec": {"a": {"b": 1}}}),
            json!({"spec": {"a": "x"}}),
        );
        assert_eq!(p, json!({"spec": {"a": {"b": 1}}}));
    }
}
