//! Output formatting shared by the commands: YAML/JSON rendering, `kubectl`-style tables with
//! per-kind columns, ages, and the rows a streaming watch prints.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use cirrus_crds::{KindInfo, Scope};
use comfy_table::{ContentArrangement, Table, presets};
use serde_json::Value;

/// `-o` formats of `get`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The default table.
    Table,
    /// The table with more columns.
    Wide,
    /// YAML (a list prints as a `List`).
    Yaml,
    /// Pretty JSON (a list prints as a `List`).
    Json,
    /// `kind/name` per object.
    Name,
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "table" | "" => Ok(Self::Table),
            "wide" => Ok(Self::Wide),
            "yaml" => Ok(Self::Yaml),
            "json" => Ok(Self::Json),
            "name" => Ok(Self::Name),
            other => Err(format!(
                "unknown output format {other:?}: use yaml, json, wide or name"
            )),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Self::Table => "table",
            Self::Wide => "wide",
            Self::Yaml => "yaml",
            Self::Json => "json",
            Self::Name => "name",
        };
        f.write_str(s)
    }
}

/// An error rendering YAML.
#[derive(Debug, thiserror::Error)]
#[error("cannot render YAML: {0}")]
pub struct RenderError(String);

/// `value` as YAML.
///
/// # Errors
/// When the serializer refuses the value (not expected for JSON values).
pub fn to_yaml(value: &Value) -> Result<String, RenderError> {
    serde_saphyr::to_string(value).map_err(|e| RenderError(e.to_string()))
}

/// `value` as indented JSON.
pub fn to_json(value: &Value) -> String {
    serde_json::to_string_pretty(value).expect("JSON values serialize")
}

/// `kind/name` in lowercase singular form, as `-o name` prints it (and `wait` accepts).
pub fn object_name(kind: &KindInfo, object: &Value) -> String {
    format!(
        "{}/{}",
        kind.singular,
        cirrus_client::dynamic::name_of(object)
    )
}

/// The `List` wrapper `get -o yaml|json` prints for several objects.
pub fn as_list(items: Vec<Value>, resource_version: Option<&str>) -> Value {
    serde_json::json!({
        "apiVersion": cirrus_crds::API_VERSION,
        "kind": "List",
        "metadata": {"resourceVersion": resource_version.unwrap_or("")},
        "items": items,
    })
}

/// Human age of a timestamp relative to `now`, like kubectl (`45s`, `3m20s`, `5h`, `12d`).
pub fn age(created: Option<&str>, now: DateTime<Utc>) -> String {
    let Some(created) = created.and_then(|c| DateTime::parse_from_rfc3339(c).ok()) else {
        return "<unknown>".into();
    };
    let secs = (now - created.with_timezone(&Utc)).num_seconds().max(0);
    human_duration(secs)
}

/// `secs` in kubectl's short form.
pub fn human_duration(secs: i64) -> String {
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    if secs < 120 {
        format!("{secs}s")
    } else if m < 10 {
        let s = secs % 60;
        if s == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{s}s")
        }
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        let mm = m % 60;
        if mm == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{mm}m")
        }
    } else if d < 2 {
        format!("{h}h")
    } else if d < 8 {
        let hh = h % 24;
        if hh == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{hh}h")
        }
    } else if d < 365 * 2 {
        format!("{d}d")
    } else {
        format!("{}y", d / 365)
    }
}

/// Where a column's value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `metadata.name`.
    Name,
    /// `metadata.project`.
    Project,
    /// Age from `metadata.creationTimestamp`.
    Age,
    /// A JSON pointer into the object (`/spec/vcpus`).
    Pointer(String),
    /// The `status` of the condition of this type (`True`/`False`/`Unknown`).
    Condition(String),
}

/// One table column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// Header text (upper case).
    pub header: String,
    /// Where the cell comes from.
    pub source: Source,
}

impl Column {
    fn new(header: &str, source: Source) -> Self {
        Self {
            header: header.to_string(),
            source,
        }
    }

    fn pointer(header: &str, pointer: &str) -> Self {
        Self::new(header, Source::Pointer(pointer.to_string()))
    }

    /// The cell for `object`.
    pub fn cell(&self, object: &Value, now: DateTime<Utc>) -> String {
        match &self.source {
            Source::Name => cirrus_client::dynamic::name_of(object).to_string(),
            Source::Project => cirrus_client::dynamic::project_of(object)
                .unwrap_or("")
                .to_string(),
            Source::Age => age(
                object
                    .pointer("/metadata/creationTimestamp")
                    .and_then(Value::as_str),
                now,
            ),
            Source::Pointer(p) => object.pointer(p).map(scalar_text).unwrap_or_default(),
            Source::Condition(t) => condition(object, t)
                .and_then(|c| c.get("status"))
                .map(scalar_text)
                .unwrap_or_default(),
        }
    }
}

/// The condition of type `type_` in `status.conditions`.
pub fn condition<'a>(object: &'a Value, type_: &str) -> Option<&'a Value> {
    object
        .pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
}

/// A value as a table cell: strings bare, lists joined by commas, maps as compact JSON.
pub fn scalar_text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(scalar_text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Per-kind columns between NAME and AGE: `(header, pointer, wide only)`.
fn kind_columns(kind: &str) -> &'static [(&'static str, &'static str, bool)] {
    match kind {
        "Flavor" => &[
            ("VCPUS", "/spec/vcpus", false),
            ("RAM", "/spec/ram", false),
            ("DISK", "/spec/disk", false),
            ("EPHEMERAL", "/spec/ephemeral", true),
            ("SWAP", "/spec/swap", true),
            ("PUBLIC", "/spec/public", true),
            ("DISABLED", "/spec/disabled", true),
        ],
        "Server" => &[
            ("STATUS", "/status/phase", false),
            ("FLAVOR", "/spec/flavor", false),
            ("IMAGE", "/spec/image", false),
            ("NODE", "/status/node", false),
            ("POWER", "/status/powerState", true),
            ("TASK", "/status/taskState", true),
            ("ZONE", "/spec/availabilityZone", true),
        ],
        "Network" => &[
            ("STATUS", "/status/phase", false),
            ("SUBNETS", "/status/subnets", false),
            ("SHARED", "/spec/shared", true),
            ("EXTERNAL", "/spec/external", true),
            ("MTU", "/status/mtu", true),
        ],
        "Subnet" => &[
            ("NETWORK", "/spec/network", false),
            ("CIDR", "/spec/cidr", false),
            ("GATEWAY", "/spec/gatewayIp", true),
            ("DHCP", "/spec/enableDhcp", true),
            ("USED", "/status/usedIps", true),
            ("TOTAL", "/status/totalIps", true),
        ],
        "Port" => &[
            ("NETWORK", "/spec/network", false),
            ("STATUS", "/status/phase", false),
            ("MAC", "/status/macAddress", false),
            ("DEVICE", "/spec/deviceId", true),
            ("OWNER", "/spec/deviceOwner", true),
            ("HOST", "/spec/bindingHost", true),
        ],
        "Volume" => &[
            ("SIZE", "/spec/size", false),
            ("STATUS", "/status/phase", false),
            ("BOOTABLE", "/spec/bootable", true),
            ("NODE", "/status/node", true),
            ("TYPE", "/spec/volumeType", true),
        ],
        "VolumeSnapshot" => &[
            ("VOLUME", "/spec/volume", false),
            ("STATUS", "/status/phase", false),
            ("SIZE", "/status/size", false),
        ],
        "Node" => &[
            ("VCPUS", "/status/capacity/vcpus", false),
            ("RAM", "/status/capacity/memoryMiB", false),
            ("DISK", "/status/capacity/diskGiB", false),
            ("UNSCHEDULABLE", "/spec/unschedulable", true),
            ("ZONE", "/spec/availabilityZone", true),
            ("HYPERVISOR", "/status/hypervisorType", true),
        ],
        "Image" => &[
            ("STATUS", "/status/phase", false),
            ("VISIBILITY", "/spec/visibility", false),
            ("FORMAT", "/spec/diskFormat", false),
            ("MIN-DISK", "/spec/minDisk", true),
            ("MIN-RAM", "/spec/minRam", true),
        ],
        "FloatingIP" => &[
            ("ADDRESS", "/status/floatingIpAddress", false),
            ("NETWORK", "/spec/floatingNetwork", false),
            ("PORT", "/spec/port", false),
            ("FIXED", "/spec/fixedIpAddress", true),
        ],
        "Keypair" => &[
            ("TYPE", "/spec/type", false),
            ("FINGERPRINT", "/status/fingerprint", false),
        ],
        "Project" => &[
            ("ENABLED", "/spec/enabled", false),
            ("DOMAIN", "/spec/domain", false),
            ("STATUS", "/status/phase", false),
        ],
        "User" => &[
            ("ENABLED", "/spec/enabled", false),
            ("DEFAULT-PROJECT", "/spec/defaultProject", false),
            ("EMAIL", "/spec/email", true),
        ],
        "RoleBinding" => &[
            ("USER", "/spec/user", false),
            ("PROJECT", "/spec/project", false),
            ("ROLE", "/spec/role", false),
        ],
        "ServerGroup" => &[
            ("POLICY", "/spec/policy", false),
            ("MEMBERS", "/status/members", false),
        ],
        "Event" => &[
            ("TYPE", "/spec/type", false),
            ("REASON", "/spec/reason", false),
            ("OBJECT", "/spec/involvedObject/name", false),
            ("COUNT", "/spec/count", true),
            ("MESSAGE", "/spec/message", false),
        ],
        _ => &[],
    }
}

/// Columns of `get` for `kind` given the objects to show: NAME (and PROJECT with
/// `all_projects` for project-scoped kinds), per-kind columns that at least one object has a
/// value for, `PHASE` and `READY` when any object reports them, generic spec scalars in wide
/// mode for kinds without a column list, and AGE.
pub fn columns(kind: &KindInfo, items: &[Value], wide: bool, all_projects: bool) -> Vec<Column> {
    let mut cols = Vec::new();
    if all_projects && kind.scope == Scope::Project {
        cols.push(Column::new("PROJECT", Source::Project));
    }
    cols.push(Column::new("NAME", Source::Name));
    let specific = kind_columns(kind.kind);
    let any = |pointer: &str| {
        items
            .iter()
            .any(|i| i.pointer(pointer).is_some_and(|v| !v.is_null()))
    };
    for (header, pointer, wide_only) in specific {
        // Default spec columns always show (so an empty list still has headers); status and
        // wide-only columns only when some object has a value for them.
        let optional = *wide_only || pointer.starts_with("/status");
        if (*wide_only && !wide) || (optional && !any(pointer)) {
            continue;
        }
        cols.push(Column::pointer(header, pointer));
    }
    if specific.is_empty() {
        if any("/status/phase") {
            cols.push(Column::pointer("PHASE", "/status/phase"));
        }
        if wide {
            for key in spec_scalar_keys(items).into_iter().take(8) {
                cols.push(Column::pointer(
                    &key.to_uppercase(),
                    &format!("/spec/{key}"),
                ));
            }
        }
    }
    if items.iter().any(|i| condition(i, "Ready").is_some()) {
        cols.push(Column::new("READY", Source::Condition("Ready".into())));
    }
    cols.push(Column::new("AGE", Source::Age));
    cols
}

/// Top-level `spec` keys holding scalars in any of `items`, in first-seen order.
fn spec_scalar_keys(items: &[Value]) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for item in items {
        if let Some(spec) = item.get("spec").and_then(Value::as_object) {
            for (k, v) in spec {
                if matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_))
                    && !keys.contains(k)
                {
                    keys.push(k.clone());
                }
            }
        }
    }
    keys
}

/// The cells of one row.
pub fn row(cols: &[Column], object: &Value, now: DateTime<Utc>) -> Vec<String> {
    cols.iter().map(|c| c.cell(object, now)).collect()
}

/// Renders a header and rows as a borderless table with kubectl's three-space gaps.
pub fn render_table(headers: &[String], rows: &[Vec<String>]) -> String {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .force_no_tty()
        .set_header(headers.to_vec());
    for r in rows {
        table.add_row(r.clone());
    }
    for col in table.column_iter_mut() {
        col.set_padding((0, 3));
    }
    table
        .lines()
        .map(|l| l.trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Fixed-width rendering for streamed rows (`get -w`): each cell padded to `widths`, which
/// grow when a wider cell arrives.
pub fn stream_line(cells: &[String], widths: &mut Vec<usize>) -> String {
    if widths.len() < cells.len() {
        widths.resize(cells.len(), 0);
    }
    let mut line = String::new();
    for (i, cell) in cells.iter().enumerate() {
        let len = cell.chars().count();
        widths[i] = widths[i].max(len);
        if i + 1 == cells.len() {
            line.push_str(cell);
        } else {
            line.push_str(cell);
            line.push_str(&" ".repeat(widths[i] - len + 3));
        }
    }
    line
}

/// Column widths of a header and rows (for continuing a table as a stream).
pub fn widths(headers: &[String], rows: &[Vec<String>]) -> Vec<usize> {
    let mut w: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < w.len() {
                w[i] = w[i].max(c.chars().count());
            }
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ages() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(200), "3m20s");
        assert_eq!(human_duration(1800), "30m");
        assert_eq!(human_duration(4 * 3600 + 60), "4h1m");
        assert_eq!(human_duration(3 * 86400), "3d");
        assert_eq!(human_duration(800 * 86400), "2y");
        let now = Utc::now();
        let created = (now - chrono::Duration::seconds(30)).to_rfc3339();
        assert_eq!(age(Some(&created), now), "30s");
        assert_eq!(age(None, now), "<unknown>");
    }

    #[test]
    fn flavor_columns() {
        let flavor = cirrus_crds::find_kind("flavors").unwrap();
        let items = vec![
            json!({"metadata": {"name": "m1"}, "spec": {"vcpus": 2, "ram": 1024, "disk": 10, "swap": 0}}),
        ];
        let cols = columns(flavor, &items, false, true);
        let headers: Vec<&str> = cols.iter().map(|c| c.header.as_str()).collect();
        assert_eq!(headers, ["NAME", "VCPUS", "RAM", "DISK", "AGE"]);
        let wide = columns(flavor, &items, true, false);
        assert!(wide.iter().any(|c| c.header == "SWAP"));
        assert!(
            !wide.iter().any(|c| c.header == "EPHEMERAL"),
            "no value anywhere"
        );
        let r = row(&cols, &items[0], Utc::now());
        assert_eq!(&r[..4], ["m1", "2", "1024", "10"]);
    }

    #[test]
    fn ready_condition_column() {
        let flavor = cirrus_crds::find_kind("flavors").unwrap();
        let items = vec![
            json!({"metadata": {"name": "m1"}, "spec": {}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
        ];
        let cols = columns(flavor, &items, false, false);
        let ready = cols.iter().find(|c| c.header == "READY").unwrap();
        assert_eq!(ready.cell(&items[0], Utc::now()), "True");
    }

    #[test]
    fn table_rendering() {
        let t = render_table(
            &["NAME".into(), "AGE".into()],
            &[
                vec!["a-long-name".into(), "5s".into()],
                vec!["b".into(), "10m".into()],
            ],
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "NAME          AGE");
        assert_eq!(lines[1], "a-long-name   5s");
        assert_eq!(lines[2], "b             10m");
        let mut w = widths(&["NAME".into(), "AGE".into()], &[]);
        assert_eq!(
            stream_line(&["xy".into(), "1s".into()], &mut w),
            "xy     1s"
        );
    }

    #[test]
    fn yaml_roundtrip() {
        let v = json!({"kind": "List", "items": [{"a": "1", "b": 2, "c": [true, null]}]});
        let y = to_yaml(&v).unwrap();
        let back: Value = serde_saphyr::from_str(&y).unwrap();
        assert_eq!(back, v);
    }
}

#[cfg(test)]
mod column_schema_tests {
    use super::*;

    /// The schema node at `node`, following `$ref` into `$defs`.
    fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
        match node.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let name = r.trim_start_matches("#/$defs/");
                resolve(root, &root["$defs"][name])
            }
            None => node,
        }
    }

    /// Whether the JSON pointer `path` names a field the schema allows.
    fn has_path(root: &Value, node: &Value, segments: &[&str]) -> bool {
        let node = resolve(root, node);
        let Some((first, rest)) = segments.split_first() else {
            return true;
        };
        for alternatives in ["anyOf", "oneOf", "allOf"] {
            if let Some(branches) = node.get(alternatives).and_then(Value::as_array)
                && branches.iter().any(|b| has_path(root, b, segments))
            {
                return true;
            }
        }
        if let Some(next) = node.get("properties").and_then(|p| p.get(*first)) {
            return has_path(root, next, rest);
        }
        node.get("additionalProperties")
            .is_some_and(Value::is_object)
    }

    #[test]
    fn every_kind_column_names_a_field_of_its_kind() {
        for kind in cirrus_crds::all_kinds() {
            let schema = serde_json::to_value((kind.schema)()).unwrap();
            for (header, pointer, _) in kind_columns(kind.kind) {
                let segments: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
                assert!(
                    has_path(&schema, &schema, &segments),
                    "{}: column {header} reads {pointer}, which the schema does not have",
                    kind.kind
                );
            }
        }
    }
}
