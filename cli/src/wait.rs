//! `cirrus wait KIND/NAME --for=condition=Ready[=True|False] | --for=delete [--timeout 60s]`,
//! and the watch-based waiting `delete --wait` shares.
//!
//! Waiting reads the object once, then watches its collection from the object's
//! `resourceVersion` (or, when it does not exist yet, from "now" with current objects first),
//! so no change is missed and nothing polls. A watch that ends or expires (`410`) is reopened
//! after a fresh read.

use std::time::Duration;

use anyhow::{Context, bail};
use cirrus_crds::KindInfo;
use serde_json::Value;

use crate::Ctx;
use crate::output::condition;
use crate::watch::Change;
use cirrus_client::dynamic::{name_of, resource_version_of as resource_version};
use cirrus_client::{Client, ClientError, ListParams};
use futures::StreamExt;

/// What to wait for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WaitFor {
    /// `status.conditions[type]` has this status (`True`, `False`, `Unknown`).
    Condition {
        /// Condition type, e.g. `Ready`.
        type_: String,
        /// Expected status.
        status: String,
    },
    /// The object is gone.
    Delete,
}

impl std::str::FromStr for WaitFor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "delete" {
            return Ok(Self::Delete);
        }
        let Some(rest) = s.strip_prefix("condition=") else {
            return Err(format!(
                "unknown --for {s:?}: use condition=TYPE[=STATUS] or delete"
            ));
        };
        let (type_, status) = match rest.split_once('=') {
            Some((t, s)) => (t, s),
            None => (rest, "True"),
        };
        if type_.is_empty() {
            return Err("--for=condition= needs a condition type".into());
        }
        let status = match status.to_ascii_lowercase().as_str() {
            "true" => "True",
            "false" => "False",
            "unknown" => "Unknown",
            other => {
                return Err(format!(
                    "condition status must be True, False or Unknown, got {other:?}"
                ));
            }
        };
        Ok(Self::Condition {
            type_: type_.to_string(),
            status: status.to_string(),
        })
    }
}

impl std::fmt::Display for WaitFor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Condition { type_, status } => write!(f, "condition {type_}={status}"),
            Self::Delete => write!(f, "deletion"),
        }
    }
}

/// Parses `60s`, `5m`, `1h30m`, `500ms`, or a bare number of seconds.
///
/// # Errors
/// A message naming the bad input.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs)
            .map_err(|e| format!("invalid duration {s:?}: {e}"));
    }
    let mut total = Duration::ZERO;
    let mut number = String::new();
    let mut chars = s.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphabetic() {
                unit.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let value: f64 = number
            .parse()
            .map_err(|_| format!("invalid duration {s:?}"))?;
        number.clear();
        let secs = match unit.as_str() {
            "ms" => value / 1000.0,
            "s" => value,
            "m" => value * 60.0,
            "h" => value * 3600.0,
            "d" => value * 86400.0,
            _ => {
                return Err(format!(
                    "invalid duration {s:?}: unknown unit {unit:?} (use ms, s, m, h)"
                ));
            }
        };
        total += Duration::try_from_secs_f64(secs)
            .map_err(|e| format!("invalid duration {s:?}: {e}"))?;
        any = true;
    }
    if !number.is_empty() || !any {
        return Err(format!("invalid duration {s:?}: use e.g. 30s, 5m, 1h"));
    }
    Ok(total)
}

/// Arguments of `cirrus wait`.
#[derive(clap::Args, Debug, Clone)]
pub struct WaitArgs {
    /// The object: `KIND/NAME` (or `KIND NAME`).
    pub target: String,
    /// The name, when the kind is given separately.
    pub name: Option<String>,
    /// `condition=TYPE[=True|False|Unknown]` or `delete`.
    #[arg(long = "for")]
    pub for_: WaitFor,
    /// Give up after this long (`30s`, `5m`, ...).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// True when `object` (None: absent) satisfies `what`.
pub fn satisfied(what: &WaitFor, object: Option<&Value>) -> bool {
    match (what, object) {
        (WaitFor::Delete, None) => true,
        (WaitFor::Delete, Some(_)) => false,
        (WaitFor::Condition { .. }, None) => false,
        (WaitFor::Condition { type_, status }, Some(obj)) => condition(obj, type_)
            .and_then(|c| c.get("status"))
            .and_then(Value::as_str)
            .is_some_and(|s| s == status),
    }
}

/// Waits, without a deadline, until the object satisfies `what`. Use with a timeout.
///
/// # Errors
/// API failures other than a watch ending or expiring.
pub async fn wait_until(
    client: &Client,
    kind: &'static KindInfo,
    project: Option<&str>,
    name: &str,
    what: &WaitFor,
) -> Result<(), ClientError> {
    loop {
        let current = crate::api(client, kind, project).get_opt(name).await?;
        if satisfied(what, current.as_ref()) {
            return Ok(());
        }
        // Watch from the object's own revision: every later change to it is an event after
        // it. Absent: watch from now, current objects first.
        let from = current
            .as_ref()
            .and_then(resource_version)
            .map(str::to_string);
        let uid = current
            .as_ref()
            .and_then(|c| c.pointer("/metadata/uid"))
            .cloned();
        let mut stream = std::pin::pin!(
            crate::api(client, kind, project)
                .watch_matching(from.as_deref().unwrap_or(""), &ListParams::default())
        );
        while let Some(event) = stream.next().await {
            match event.map(|e| Change::new(kind, e)) {
                Ok(event) => {
                    if event.kind == "BOOKMARK" || name_of(&event.object) != name {
                        continue;
                    }
                    let gone = event.kind == "DELETED";
                    if gone && *what == WaitFor::Delete {
                        // A delete of an older incarnation does not count when we saw a newer
                        // one; the uid tells them apart.
                        let same = uid
                            .as_ref()
                            .is_none_or(|u| event.object.pointer("/metadata/uid") == Some(u));
                        if same {
                            return Ok(());
                        }
                        continue;
                    }
                    let state = if gone { None } else { Some(&event.object) };
                    if satisfied(what, state) {
                        return Ok(());
                    }
                }
                Err(e) if e.is_gone() => break,
                Err(e) if e.is_stream_broken() => {
                    tracing::debug!("watch interrupted: {e}");
                    break;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Waits up to `timeout`; on timeout the error says what was last seen.
///
/// # Errors
/// Timeouts and API failures.
pub async fn wait_with_timeout(
    client: &Client,
    kind: &'static KindInfo,
    project: Option<&str>,
    name: &str,
    what: &WaitFor,
    timeout: Duration,
) -> anyhow::Result<()> {
    let ident = format!("{}/{name}", kind.singular);
    match tokio::time::timeout(timeout, wait_until(client, kind, project, name, what)).await {
        Ok(result) => result.with_context(|| format!("waiting for {what} of {ident}")),
        Err(_) => {
            let seen = match crate::api(client, kind, project).get_opt(name).await {
                Ok(None) => "it does not exist".to_string(),
                Ok(Some(obj)) => match what {
                    WaitFor::Condition { type_, .. } => match condition(&obj, type_) {
                        Some(c) => format!(
                            "{type_}={}{}",
                            c.get("status").and_then(Value::as_str).unwrap_or("?"),
                            c.get("message")
                                .and_then(Value::as_str)
                                .map(|m| format!(" ({m})"))
                                .unwrap_or_default()
                        ),
                        None => format!("it has no {type_} condition"),
                    },
                    WaitFor::Delete => match obj.pointer("/metadata/deletionTimestamp") {
                        Some(_) => format!(
                            "it is being deleted, finalizers pending: {}",
                            obj.pointer("/metadata/finalizers")
                                .map(crate::output::scalar_text)
                                .unwrap_or_default()
                        ),
                        None => "it still exists".to_string(),
                    },
                },
                Err(e) => format!("cannot read it: {e}"),
            };
            bail!(
                "timed out after {} waiting for {what} of {ident}: {seen}",
                humanize(timeout)
            )
        }
    }
}

fn humanize(d: Duration) -> String {
    if d.subsec_millis() != 0 && d.as_secs() < 10 {
        format!("{}ms", d.as_millis())
    } else {
        crate::output::human_duration(d.as_secs() as i64)
    }
}

/// Splits `KIND/NAME` (or `KIND` + separate `NAME`).
///
/// # Errors
/// A missing name.
pub fn split_target(target: &str, name: Option<&str>) -> anyhow::Result<(String, String)> {
    match (target.split_once('/'), name) {
        (Some((k, n)), None) if !k.is_empty() && !n.is_empty() => {
            Ok((k.to_string(), n.to_string()))
        }
        (None, Some(n)) => Ok((target.to_string(), n.to_string())),
        _ => bail!("expected KIND/NAME (e.g. flavor/m1.small), got {target:?}"),
    }
}

/// Runs `cirrus wait`.
///
/// # Errors
/// Timeouts, unknown kinds, API failures.
pub async fn run(ctx: &Ctx, args: WaitArgs) -> anyhow::Result<()> {
    let (kind, name) = split_target(&args.target, args.name.as_deref())?;
    let kind = crate::resolve_kind(&kind)?;
    let project = match kind.scope {
        cirrus_crds::Scope::Project => Some(ctx.project.as_str()),
        cirrus_crds::Scope::Cluster => None,
    };
    wait_with_timeout(&ctx.client, kind, project, &name, &args.for_, args.timeout).await?;
    match &args.for_ {
        WaitFor::Delete => println!("{}/{name} deleted", kind.singular),
        WaitFor::Condition { type_, .. } => {
            println!("{}/{name} condition met ({type_})", kind.singular)
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5m3").is_err());
    }

    #[test]
    fn wait_for_parsing() {
        assert_eq!(
            "condition=Ready".parse::<WaitFor>().unwrap(),
            WaitFor::Condition {
                type_: "Ready".into(),
                status: "True".into()
            }
        );
        assert_eq!(
            "condition=Ready=false".parse::<WaitFor>().unwrap(),
            WaitFor::Condition {
                type_: "Ready".into(),
                status: "False".into()
            }
        );
        assert_eq!("delete".parse::<WaitFor>().unwrap(), WaitFor::Delete);
        assert!("ready".parse::<WaitFor>().is_err());
        assert!("condition=Ready=maybe".parse::<WaitFor>().is_err());
    }

    #[test]
    fn satisfaction() {
        let ready = WaitFor::Condition {
            type_: "Ready".into(),
            status: "True".into(),
        };
        let obj = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        assert!(satisfied(&ready, Some(&obj)));
        assert!(!satisfied(&ready, None));
        assert!(!satisfied(&ready, Some(&json!({}))));
        assert!(satisfied(&WaitFor::Delete, None));
        assert!(!satisfied(&WaitFor::Delete, Some(&obj)));
    }

    #[test]
    fn targets() {
        assert_eq!(
            split_target("flavor/m1", None).unwrap(),
            ("flavor".into(), "m1".into())
        );
        assert_eq!(
            split_target("flavor", Some("m1")).unwrap(),
            ("flavor".into(), "m1".into())
        );
        assert!(split_target("flavor", None).is_err());
    }
}
