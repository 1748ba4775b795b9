//! Mutating admission on create: fields the API fills in before an object is stored.
//!
//! - Every `Port` is created with the network controller's finalizer
//!   (`cirrus.dev/network`) already in `metadata.finalizers` (Kubernetes does the same for
//!   PVCs with `kubernetes.io/pvc-protection`). A port's `IpAllocation`s must be released
//!   when it is deleted, so the controller needs the finalizer on every port anyway; adding
//!   it here saves the controller one write and one watch round trip per port, and closes
//!   the window in which a port deleted before the controller saw it would leave its
//!   allocations to the orphan sweep.
//!
//!   Consequence: deleting a port waits for the network controller (`cirrus controllers`
//!   or `cirrus up`) to release its addresses and drop the finalizer, also for ports created
//!   while no controller was running. A port created with the finalizer removed on a later
//!   update (`metadata.finalizers: []`) is not touched again: only creates are defaulted.
//!
//! Dry-run creates are defaulted too, so they answer what a real create would store.

use cirrus_crds::KindInfo;
use serde_json::Value;

/// The finalizer the network controller keeps on ports (its `FINALIZER`); the controller's
/// tests check that a port created through the API carries it.
pub(super) use cirrus_crds::conventions::NETWORK_FINALIZER;

/// Fills in defaults of a `kind` object about to be created. Leaves anything that is not a
/// JSON object (the store's validation answers that) and every other kind alone.
pub(crate) fn on_create(kind: &'static KindInfo, object: &mut Value) {
    if kind.kind == "Port" {
        ensure_finalizer(object, NETWORK_FINALIZER);
    }
}

/// Appends `finalizer` to `metadata.finalizers` unless it is there; creates `metadata` and
/// the list when missing. A `finalizers` that is not a list is left for validation to
/// reject.
fn ensure_finalizer(object: &mut Value, finalizer: &str) {
    let Some(object) = object.as_object_mut() else {
        return;
    };
    let metadata = object
        .entry("metadata")
        .or_insert_with(|| Value::Object(Default::default()));
    let Some(metadata) = metadata.as_object_mut() else {
        return;
    };
    let finalizers = metadata
        .entry("finalizers")
        .or_insert_with(|| Value::Array(Vec::new()));
    if finalizers.is_null() {
        *finalizers = Value::Array(Vec::new());
    }
    if let Some(list) = finalizers.as_array_mut()
        && !list.iter().any(|f| f.as_str() == Some(finalizer))
    {
        list.push(Value::from(finalizer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kind(plural: &str) -> &'static KindInfo {
        cirrus_crds::kind_by_plural(plural).expect("a known kind")
    }

    #[test]
    fn ports_get_the_network_finalizer_once_and_keep_others() {
        let mut bare = json!({"metadata": {"name": "p"}, "spec": {"network": "n"}});
        on_create(kind("ports"), &mut bare);
        assert_eq!(bare["metadata"]["finalizers"], json!([NETWORK_FINALIZER]));

        let mut other = json!({"metadata": {"name": "p", "finalizers": ["example.com/x"]}});
        on_create(kind("ports"), &mut other);
        assert_eq!(
            other["metadata"]["finalizers"],
            json!(["example.com/x", NETWORK_FINALIZER])
        );

        let mut already = json!({"metadata": {"name": "p", "finalizers": [NETWORK_FINALIZER]}});
        on_create(kind("ports"), &mut already);
        assert_eq!(
            already["metadata"]["finalizers"],
            json!([NETWORK_FINALIZER])
        );

        let mut null = json!({"metadata": {"name": "p", "finalizers": null}});
        on_create(kind("ports"), &mut null);
        assert_eq!(null["metadata"]["finalizers"], json!([NETWORK_FINALIZER]));

        let mut no_meta = json!({"spec": {}});
        on_create(kind("ports"), &mut no_meta);
        assert_eq!(
            no_meta["metadata"]["finalizers"],
            json!([NETWORK_FINALIZER])
        );
    }

    #[test]
    fn other_kinds_and_malformed_bodies_are_left_alone() {
        let mut network = json!({"metadata": {"name": "n"}});
        on_create(kind("networks"), &mut network);
        assert_eq!(network, json!({"metadata": {"name": "n"}}));

        let mut not_object = json!(["x"]);
        on_create(kind("ports"), &mut not_object);
        assert_eq!(not_object, json!(["x"]));

        let mut bad_list = json!({"metadata": {"finalizers": "x"}});
        on_create(kind("ports"), &mut bad_list);
        assert_eq!(
            bad_list["metadata"]["finalizers"],
            json!("x"),
            "left to validation"
        );
    }
}
