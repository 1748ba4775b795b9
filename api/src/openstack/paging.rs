//! Marker pagination, the one way every OpenStack list here pages (Nova's servers and
//! flavors, Glance's images, Cinder's volumes and snapshots, every Neutron list).
//!
//! A list is sorted first, then [`skip_past_marker`] drops what precedes the page and
//! [`truncate`] keeps at most `limit` items; [`next_query`] renders the query of the next
//! page. What the services differ in is a parameter: how `limit` is read ([`LimitRule`]),
//! what identifies the marker item, and the words and status of a refusal (each caller maps
//! [`LimitError`] and [`MarkerNotFound`] to its own fault).

use std::cmp::Ordering;

use serde_json::Value;

use super::query_string;

/// How a service reads its `limit` parameter.
#[derive(Clone, Copy, Debug, Default)]
pub struct LimitRule {
    /// The page size when no `limit` is given (`None`: everything).
    pub default: Option<usize>,
    /// The largest page, whatever `limit` asks (`None`: no cap).
    pub max: Option<usize>,
    /// Whether `limit=0` means no limit (Neutron) rather than an empty page.
    pub zero_means_all: bool,
}

/// Why a `limit` was refused (each holds the text given).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// It is not an integer.
    #[error("limit {0:?} is not an integer")]
    NotAnInteger(String),
    /// It is a negative integer.
    #[error("limit {0} is negative")]
    Negative(String),
}

impl LimitError {
    /// The `limit` text refused.
    pub fn text(&self) -> &str {
        match self {
            Self::NotAnInteger(text) | Self::Negative(text) => text,
        }
    }
}

/// The page size `text` (the `limit` parameter, `None` when absent) asks for under `rule`;
/// `Ok(None)` means no limit.
pub fn limit(text: Option<&str>, rule: LimitRule) -> Result<Option<usize>, LimitError> {
    let Some(text) = text else {
        return Ok(rule.default);
    };
    let n: i64 = text
        .parse()
        .map_err(|_| LimitError::NotAnInteger(text.to_string()))?;
    let n = usize::try_from(n).map_err(|_| LimitError::Negative(text.to_string()))?;
    if n == 0 && rule.zero_means_all {
        return Ok(None);
    }
    Ok(Some(rule.max.map_or(n, |max| n.min(max))))
}

/// The marker names no item of the list.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("marker {0} could not be found")]
pub struct MarkerNotFound(pub String);

/// Drops every item of (sorted) `items` up to and including the first `is_marker` picks: what
/// remains follows the marker. `Err` leaves `items` as they were.
pub fn skip_past_marker<T>(
    items: &mut Vec<T>,
    marker: &str,
    is_marker: impl Fn(&T) -> bool,
) -> Result<(), MarkerNotFound> {
    let at = items
        .iter()
        .position(is_marker)
        .ok_or_else(|| MarkerNotFound(marker.to_string()))?;
    items.drain(..=at);
    Ok(())
}

/// Keeps the first `limit` of `items` (`None`: all); whether any were dropped, i.e. whether
/// a next page follows.
pub fn truncate<T>(items: &mut Vec<T>, limit: Option<usize>) -> bool {
    match limit {
        Some(limit) if items.len() > limit => {
            items.truncate(limit);
            true
        }
        _ => false,
    }
}

/// The query string of the page after the one ending with `last`: `pairs` in their order
/// without any `marker`, then `marker=<last>`, every component encoded.
pub fn next_query<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    last: &'a str,
) -> String {
    query_string::render(
        pairs
            .into_iter()
            .filter(|(k, _)| *k != "marker")
            .chain([("marker", last)]),
    )
}

/// Why a sort direction was refused: the text given.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not asc or desc")]
pub struct BadDirection(pub String);

/// Whether sort direction `text` is descending (`asc`/`desc`).
pub fn descending(text: &str) -> Result<bool, BadDirection> {
    match text {
        "asc" => Ok(false),
        "desc" => Ok(true),
        other => Err(BadDirection(other.to_string())),
    }
}

/// `keys` each paired with whether it sorts descending: the direction at its position in
/// `dirs`, else the last one given, else `default_descending`.
pub fn sort_keys<'a>(
    keys: &[&'a str],
    dirs: &[&str],
    default_descending: bool,
) -> Result<Vec<(&'a str, bool)>, BadDirection> {
    keys.iter()
        .enumerate()
        .map(|(i, key)| {
            let desc = match dirs.get(i).or(dirs.last()) {
                Some(dir) => descending(dir.trim())?,
                None => default_descending,
            };
            Ok((*key, desc))
        })
        .collect()
}

/// How two rendered attribute values order: numbers by value, strings and booleans as
/// such, an absent or `null` value first, anything else by its JSON text.
pub fn compare_values(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        (None | Some(Value::Null), None | Some(Value::Null)) => Ordering::Equal,
        (None | Some(Value::Null), _) => Ordering::Less,
        (_, None | Some(Value::Null)) => Ordering::Greater,
        (Some(x), Some(y)) => x.to_string().cmp(&y.to_string()),
    }
}

/// How rendered items `a` and `b` order by `keys` (attribute, descending), the first key
/// that tells them apart deciding; `Equal` when none does (callers add their tie-break).
pub fn compare_by(a: &Value, b: &Value, keys: &[(&str, bool)]) -> Ordering {
    keys.iter()
        .map(|(key, desc)| {
            let ord = compare_values(a.get(*key), b.get(*key));
            if *desc { ord.reverse() } else { ord }
        })
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn limits_follow_each_rule() {
        let nova = LimitRule {
            default: Some(1000),
            max: Some(1000),
            zero_means_all: false,
        };
        let glance = LimitRule {
            default: Some(25),
            ..nova
        };
        let neutron = LimitRule {
            zero_means_all: true,
            ..LimitRule::default()
        };
        // (the `limit` text, the rule, what it reads as)
        type Row<'a> = (
            Option<&'a str>,
            LimitRule,
            Result<Option<usize>, LimitError>,
        );
        let table: &[Row] = &[
            (None, nova, Ok(Some(1000))),
            (None, glance, Ok(Some(25))),
            (None, neutron, Ok(None)),
            (Some("2"), nova, Ok(Some(2))),
            (Some("5000"), nova, Ok(Some(1000))),
            (Some("5000"), neutron, Ok(Some(5000))),
            (Some("0"), nova, Ok(Some(0))),
            (Some("0"), neutron, Ok(None)),
            (Some("-1"), nova, Err(LimitError::Negative("-1".into()))),
            (Some("x"), nova, Err(LimitError::NotAnInteger("x".into()))),
            (
                Some(""),
                neutron,
                Err(LimitError::NotAnInteger(String::new())),
            ),
            (
                Some("1.5"),
                glance,
                Err(LimitError::NotAnInteger("1.5".into())),
            ),
        ];
        for (text, rule, want) in table {
            assert_eq!(limit(*text, *rule), *want, "{text:?} under {rule:?}");
            if let Err(e) = want {
                assert_eq!(e.text(), text.unwrap_or_default());
            }
        }
    }

    #[test]
    fn pages_follow_the_marker_and_the_limit() {
        // (marker, limit, page, more)
        type Row = (
            Option<&'static str>,
            Option<usize>,
            &'static [&'static str],
            bool,
        );
        let table: &[Row] = &[
            (None, None, &["a", "b", "c", "d"], false),
            (None, Some(2), &["a", "b"], true),
            (None, Some(4), &["a", "b", "c", "d"], false),
            (None, Some(0), &[], true),
            (Some("b"), None, &["c", "d"], false),
            (Some("b"), Some(1), &["c"], true),
            (Some("d"), Some(1), &[], false),
        ];
        for (marker, limit, page, more) in table {
            let mut items = vec!["a", "b", "c", "d"];
            if let Some(m) = marker {
                skip_past_marker(&mut items, m, |i| i == m).unwrap();
            }
            assert_eq!(truncate(&mut items, *limit), *more, "{marker:?} {limit:?}");
            assert_eq!(&items, page, "{marker:?} {limit:?}");
        }
        let mut items = vec!["a", "b"];
        assert_eq!(
            skip_past_marker(&mut items, "zz", |i| *i == "zz"),
            Err(MarkerNotFound("zz".into()))
        );
        assert_eq!(
            items,
            ["a", "b"],
            "a missing marker leaves the list as it was"
        );
    }

    #[test]
    fn next_queries_move_the_marker_to_the_end() {
        // (the query, the last item's id, the next page's query)
        type Row<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let table: &[Row] = &[
            (&[], "x", "marker=x"),
            (&[("limit", "2")], "x", "limit=2&marker=x"),
            (
                &[("marker", "old"), ("status", "ACTIVE"), ("limit", "1")],
                "id 2",
                "status=ACTIVE&limit=1&marker=id%202",
            ),
            (
                &[("name", "a:b"), ("marker", "")],
                "y",
                "name=a%3Ab&marker=y",
            ),
        ];
        for (pairs, last, want) in table {
            assert_eq!(next_query(pairs.iter().copied(), last), *want);
        }
    }

    #[test]
    fn sort_keys_take_their_direction_or_the_last_or_the_default() {
        // (keys, directions, the default, the keys with their directions)
        type Row<'a> = (
            &'a [&'a str],
            &'a [&'a str],
            bool,
            Result<Vec<(&'a str, bool)>, BadDirection>,
        );
        let table: &[Row] = &[
            (&["id"], &[], false, Ok(vec![("id", false)])),
            (&["name"], &[], true, Ok(vec![("name", true)])),
            (
                &["name", "size"],
                &["desc"],
                false,
                Ok(vec![("name", true), ("size", true)]),
            ),
            (
                &["name", "size"],
                &["asc", "desc"],
                true,
                Ok(vec![("name", false), ("size", true)]),
            ),
            (&["name"], &[" desc "], false, Ok(vec![("name", true)])),
            (&["name"], &["up"], false, Err(BadDirection("up".into()))),
        ];
        for (keys, dirs, default, want) in table {
            assert_eq!(sort_keys(keys, dirs, *default), *want, "{keys:?} {dirs:?}");
        }
    }

    #[test]
    fn values_order_by_kind_with_absent_first() {
        let table = [
            (json!(1), json!(2), Ordering::Less),
            (json!(2.5), json!(2), Ordering::Greater),
            (json!("a"), json!("b"), Ordering::Less),
            (json!(false), json!(true), Ordering::Less),
            (Value::Null, json!("a"), Ordering::Less),
            (json!(0), Value::Null, Ordering::Greater),
            (Value::Null, Value::Null, Ordering::Equal),
        ];
        for (a, b, want) in table {
            assert_eq!(compare_values(Some(&a), Some(&b)), want, "{a} vs {b}");
        }
        assert_eq!(compare_values(None, Some(&json!(1))), Ordering::Less);
        let x = json!({"name": "a", "size": 2});
        let y = json!({"name": "a", "size": 1});
        assert_eq!(
            compare_by(&x, &y, &[("name", false), ("size", false)]),
            Ordering::Greater
        );
        assert_eq!(compare_by(&x, &y, &[("size", true)]), Ordering::Less);
        assert_eq!(compare_by(&x, &y, &[("name", false)]), Ordering::Equal);
    }
}
