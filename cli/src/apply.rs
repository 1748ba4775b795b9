//! `cirrus apply`: make the store hold what the manifests say, with `kubectl apply`'s
//! client-side three-way merge, and optionally prune what an ApplySet no longer holds.
//!
//! # Expected flow
//! 1. Load and validate every manifest locally; on any error print them all and write nothing.
//! 2. With `--prune --applyset NAME`: write the inventory (`ApplySet` NAME, cluster-scoped) as
//!    old ∪ new members.
//! 3. Apply each manifest: create when absent; otherwise PATCH (merge patch, precondition on
//!    `metadata.resourceVersion`, re-read and recompute on `409`), or nothing when the patch
//!    is empty.
//! 4. Prune: delete each old member that is not in the new set and still carries the label
//!    `cirrus.dev/applyset=NAME` (and matches `--selector` when one is given).
//! 5. Write the inventory as exactly the new set (plus members kept because `--selector`
//!    excluded them).
//!
//! # Guarantees
//! - A crash at any step leaves an inventory that is a superset of what the ApplySet owns, so
//!   the next apply can still prune it; nothing unlabelled is ever deleted.
//! - When any object fails to apply, nothing is pruned and the inventory keeps old ∪ new.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{Context, bail};
use cirrus_crds::{KindInfo, Scope};
use serde_json::{Map, Value, json};

use crate::Ctx;
use crate::manifests::{self, Manifest};
use crate::merge::{self, LAST_APPLIED};
use cirrus_client::dynamic::{name_of, resource_version_of as resource_version};
use cirrus_client::{Client, ClientError};
use cirrus_store::selector::{LabelSelector, labels_of};

/// Label every object applied as part of an ApplySet carries; its value is the set's name.
pub const APPLYSET_LABEL: &str = "cirrus.dev/applyset";

/// Kind name of the inventory object.
pub const APPLYSET_KIND: &str = "ApplySet";

/// How many times an update is retried after a `409 Conflict`.
const CONFLICT_RETRIES: usize = 8;

/// `--dry-run` modes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DryRun {
    /// Write for real.
    #[default]
    None,
    /// Send every write with `?dryRun=All`: the server validates and answers, stores nothing.
    Server,
}

/// Arguments of `cirrus apply`.
#[derive(clap::Args, Debug, Clone)]
pub struct ApplyArgs {
    /// Manifest file or directory (`.yaml`, `.yml`, `.json`); `-` reads standard input.
    /// Repeatable.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    /// Read directories recursively.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Delete objects of the ApplySet that the manifests no longer contain.
    #[arg(long)]
    pub prune: bool,
    /// Name of the ApplySet (a cluster-scoped inventory object) that owns what this apply
    /// writes; objects get the label `cirrus.dev/applyset=NAME`. Defaults to the name of the
    /// directory when exactly one directory is given.
    #[arg(long, requires = "prune")]
    pub applyset: Option<String>,
    /// Only apply (and prune) objects whose labels match this selector.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// `server`: ask the server what would happen, without storing anything.
    #[arg(long, value_enum, default_value_t = DryRun::None, num_args = 0..=1, default_missing_value = "server")]
    pub dry_run: DryRun,
}

/// An object ready to apply: the manifest with the apply bookkeeping (last-applied
/// annotation, ApplySet label) added and `status` removed.
#[derive(Clone, Debug)]
pub struct Desired {
    /// Its kind.
    pub kind: &'static KindInfo,
    /// Its project (project-scoped kinds).
    pub project: Option<String>,
    /// Its name.
    pub name: String,
    /// The body to create, and the "desired" input of the three-way merge.
    pub object: Value,
    /// Where it came from, for messages.
    pub origin: String,
}

impl Desired {
    /// `Kind/name`.
    pub fn ident(&self) -> String {
        format!("{}/{}", self.kind.kind, self.name)
    }

    /// The inventory identity of this object.
    pub fn member(&self) -> Member {
        Member {
            kind: self.kind.kind.to_string(),
            project: self.project.clone(),
            name: self.name.clone(),
        }
    }
}

/// Turns a manifest into what apply sends: adds the ApplySet label when `applyset` is set,
/// records the result (minus `status`) in the last-applied annotation.
pub fn prepare(manifest: &Manifest, default_project: &str, applyset: Option<&str>) -> Desired {
    let mut object = manifest.object.clone();
    let map = object
        .as_object_mut()
        .expect("validated manifests are objects");
    map.remove("status");
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    if let Some(set) = applyset {
        let labels = meta
            .as_object_mut()
            .expect("validated metadata is an object")
            .entry("labels")
            .or_insert_with(|| json!({}));
        labels[APPLYSET_LABEL] = Value::from(set);
    }
    // The last-applied record is the manifest as sent, without the record itself.
    if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.as_object_mut().expect("object").remove("annotations");
        }
    }
    let record = serde_json::to_string(&object).expect("JSON values serialize");
    let meta = object["metadata"]
        .as_object_mut()
        .expect("metadata is an object");
    let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
    annotations[LAST_APPLIED] = Value::from(record);
    Desired {
        kind: manifest.kind,
        project: manifest.effective_project(default_project),
        name: manifest.name().to_string(),
        object,
        origin: format!("{}: document {}", manifest.source, manifest.document),
    }
}

/// What apply would do to one object, given its live state.
#[derive(Clone, Debug)]
pub enum Plan {
    /// It does not exist: create it.
    Create,
    /// It exists and differs: send this merge patch (already carrying the resourceVersion
    /// precondition).
    Patch {
        /// The merge patch.
        patch: Value,
        /// The live object it was computed against.
        live: Value,
    },
    /// It exists and already matches.
    Unchanged {
        /// The live object.
        live: Value,
    },
}

/// The last-applied manifest recorded on a live object, if any.
pub fn last_applied(live: &Value) -> Option<Value> {
    live.pointer("/metadata/annotations")
        .and_then(|a| a.get(LAST_APPLIED))
        .and_then(Value::as_str)
        .and_then(|s| serde_json::from_str(s).ok())
}

/// Plans the write for `desired` against `live`.
pub fn plan(desired: &Desired, live: Option<Value>) -> Plan {
    let Some(live) = live else {
        return Plan::Create;
    };
    let last = last_applied(&live);
    let mut patch = merge::three_way_patch(last.as_ref(), &desired.object, &live);
    if merge::is_empty_patch(&patch) {
        return Plan::Unchanged { live };
    }
    if let Some(rv) = resource_version(&live) {
        let meta = patch
            .as_object_mut()
            .expect("patches of objects are objects")
            .entry("metadata")
            .or_insert_with(|| json!({}));
        meta["resourceVersion"] = Value::from(rv);
    }
    Plan::Patch { patch, live }
}

/// Outcome of applying one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It was created.
    Created,
    /// It was patched.
    Configured,
    /// Nothing to do.
    Unchanged,
}

impl Outcome {
    /// The word apply prints.
    pub fn word(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Configured => "configured",
            Self::Unchanged => "unchanged",
        }
    }
}

/// Applies one object, retrying on `409` by re-reading; returns what happened and the
/// object as the server returned it.
///
/// # Errors
/// API errors other than retryable conflicts, and conflicts that persist.
pub async fn apply_one(
    client: &Client,
    desired: &Desired,
    dry_run: bool,
) -> Result<(Outcome, Value), ClientError> {
    let project = desired.project.as_deref();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let live = crate::api(client, desired.kind, project)
            .get_opt(&desired.name)
            .await?;
        let result = match plan(desired, live) {
            Plan::Create => crate::api(client, desired.kind, project)
                .dry_run(dry_run)
                .create(&desired.object)
                .await
                .map(|v| (Outcome::Created, v)),
            Plan::Patch { patch, .. } => crate::api(client, desired.kind, project)
                .dry_run(dry_run)
                .patch(&desired.name, &patch)
                .await
                .map(|v| (Outcome::Configured, v)),
            Plan::Unchanged { live } => Ok((Outcome::Unchanged, live)),
        };
        match result {
            Err(e)
                if (e.is_conflict() || e.is_already_exists() || e.is_not_found())
                    && attempt < CONFLICT_RETRIES =>
            {
                continue;
            }
            other => return other,
        }
    }
}

/// One entry of an ApplySet inventory.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Member {
    /// Kind name (`Flavor`).
    pub kind: String,
    /// Project, for project-scoped kinds.
    pub project: Option<String>,
    /// Object name.
    pub name: String,
}

impl Member {
    fn from_value(v: &Value) -> Option<Self> {
        Some(Self {
            kind: v.get("kind")?.as_str()?.to_string(),
            project: v.get("project").and_then(Value::as_str).map(str::to_string),
            name: v.get("name")?.as_str()?.to_string(),
        })
    }

    fn to_value(&self, uid: Option<&str>) -> Value {
        let mut m = Map::new();
        m.insert("kind".into(), Value::from(self.kind.clone()));
        if let Some(p) = &self.project {
            m.insert("project".into(), Value::from(p.clone()));
        }
        m.insert("name".into(), Value::from(self.name.clone()));
        if let Some(uid) = uid {
            m.insert("uid".into(), Value::from(uid));
        }
        Value::Object(m)
    }

    /// `Kind/name` (with the project when there is one: `Kind/project/name`).
    pub fn ident(&self) -> String {
        match &self.project {
            Some(p) => format!("{}/{p}/{}", self.kind, self.name),
            None => format!("{}/{}", self.kind, self.name),
        }
    }
}

/// The ApplySet inventory, read from and written to the server.
struct Inventory {
    kind: &'static KindInfo,
    name: String,
}

impl Inventory {
    fn new(name: &str) -> anyhow::Result<Self> {
        let kind = cirrus_crds::all_kinds()
            .into_iter()
            .find(|k| k.kind == APPLYSET_KIND)
            .context("--prune needs the ApplySet kind, which this build does not have")?;
        if kind.scope != Scope::Cluster {
            bail!("ApplySet is expected to be cluster-scoped");
        }
        if let Some(problem) = cirrus_crds::validation::name_problem(name) {
            bail!("invalid --applyset name {name:?}: {problem}");
        }
        Ok(Self {
            kind,
            name: name.to_string(),
        })
    }

    /// The current object (if any) and its members.
    async fn read(
        &self,
        client: &Client,
    ) -> Result<(Option<Value>, Vec<(Member, Option<String>)>), ClientError> {
        let live = crate::api(client, self.kind, None)
            .get_opt(&self.name)
            .await?;
        let members = live
            .as_ref()
            .and_then(|l| l.pointer("/spec/members"))
            .and_then(Value::as_array)
            .map(|ms| {
                ms.iter()
                    .filter_map(|m| {
                        Member::from_value(m).map(|member| {
                            (
                                member,
                                m.get("uid").and_then(Value::as_str).map(str::to_string),
                            )
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok((live, members))
    }

    /// Writes the member list computed by `compute` from the current members, creating the
    /// inventory when absent; re-reads and recomputes on conflict.
    async fn write<F>(&self, client: &Client, compute: F) -> Result<(), ClientError>
    where
        F: Fn(&[(Member, Option<String>)]) -> Vec<(Member, Option<String>)>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (live, current) = self.read(client).await?;
            let mut members = compute(&current);
            members.sort();
            members.dedup_by(|a, b| a.0 == b.0);
            let values: Vec<Value> = members
                .iter()
                .map(|(m, uid)| m.to_value(uid.as_deref()))
                .collect();
            let result = match live {
                None => {
                    let body = json!({
                        "apiVersion": cirrus_crds::API_VERSION,
                        "kind": APPLYSET_KIND,
                        "metadata": {"name": self.name},
                        "spec": {"members": values},
                    });
                    crate::api(client, self.kind, None)
                        .create(&body)
                        .await
                        .map(drop)
                }
                Some(live) => {
                    let unchanged = live
                        .pointer("/spec/members")
                        .is_some_and(|m| merge::json_eq(m, &Value::Array(values.clone())));
                    if unchanged {
                        return Ok(());
                    }
                    let patch = json!({
                        "metadata": {"resourceVersion": resource_version(&live)},
                        "spec": {"members": values},
                    });
                    crate::api(client, self.kind, None)
                        .patch(&self.name, &patch)
                        .await
                        .map(drop)
                }
            };
            match result {
                Err(e)
                    if (e.is_conflict() || e.is_already_exists()) && attempt < CONFLICT_RETRIES =>
                {
                    continue;
                }
                other => return other,
            }
        }
    }
}

/// Runs `cirrus apply`.
///
/// # Errors
/// Invalid manifests (nothing written), API errors (reported per object; the command fails
/// when any object failed), inventory errors.
pub async fn run(ctx: &Ctx, args: ApplyArgs) -> anyhow::Result<()> {
    let selector = args
        .selector
        .as_deref()
        .map(LabelSelector::parse)
        .transpose()?
        .unwrap_or_default();
    let manifests = manifests::load(&args.files, args.recursive)?;
    let dry_run = args.dry_run == DryRun::Server;
    let suffix = if dry_run { " (server dry run)" } else { "" };
    let applyset_name = match (&args.applyset, args.prune) {
        (Some(name), true) => Some(name.clone()),
        (None, true) => Some(default_applyset_name(&args.files).context(
            "--prune needs --applyset NAME (it defaults to the directory name only when one directory is given)",
        )?),
        (_, false) => None,
    };
    let applyset = applyset_name.as_deref();

    let desired: Vec<Desired> = manifests
        .iter()
        .filter(|m| selector.matches_object(&m.object))
        .map(|m| prepare(m, &ctx.project, applyset))
        .collect();
    check_duplicates(&desired)?;

    let inventory = applyset.map(Inventory::new).transpose()?;
    let new_members: Vec<Member> = desired.iter().map(Desired::member).collect();
    let mut old_members: Vec<(Member, Option<String>)> = Vec::new();
    if let Some(inv) = &inventory {
        old_members = inv.read(&ctx.client).await?.1;
        if !dry_run {
            // (1) old ∪ new, so a crash during apply leaves everything prunable.
            inv.write(&ctx.client, |current| {
                let mut all = current.to_vec();
                all.extend(new_members.iter().map(|m| (m.clone(), None)));
                all
            })
            .await
            .context("writing the ApplySet inventory (old ∪ new)")?;
        }
    }

    // (2) apply.
    let mut failures = 0usize;
    let mut applied: Vec<(Member, Option<String>)> = Vec::new();
    for d in &desired {
        match apply_one(&ctx.client, d, dry_run).await {
            Ok((outcome, object)) => {
                println!("{} {}{suffix}", d.ident(), outcome.word());
                let uid = object
                    .pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                applied.push((d.member(), uid));
            }
            Err(e) => {
                failures += 1;
                eprintln!("{}: {} ({}): {e}", d.origin, d.ident(), project_note(d));
            }
        }
    }
    if failures > 0 {
        if inventory.is_some() {
            eprintln!("not pruning: {failures} object(s) failed to apply");
        }
        bail!("{failures} object(s) failed to apply");
    }

    // (3) prune, (4) inventory = new set.
    if let Some(inv) = &inventory {
        let new_set: BTreeSet<&Member> = new_members.iter().collect();
        let mut kept: Vec<(Member, Option<String>)> = Vec::new();
        for (member, uid) in old_members.iter().filter(|(m, _)| !new_set.contains(m)) {
            match prune_one(&ctx.client, inv, member, uid.as_deref(), &selector, dry_run).await {
                Ok(PruneOutcome::Pruned) => println!("{} pruned{suffix}", member.ident()),
                Ok(PruneOutcome::Gone) => {}
                Ok(PruneOutcome::NotOwned) => {
                    println!(
                        "{} not pruned: it no longer carries {APPLYSET_LABEL}={}",
                        member.ident(),
                        inv.name
                    )
                }
                Ok(PruneOutcome::Recreated) => println!(
                    "{} not pruned: it was recreated since it was applied (uid differs)",
                    member.ident()
                ),
                Ok(PruneOutcome::NotSelected) => kept.push((member.clone(), uid.clone())),
                Err(e) => {
                    failures += 1;
                    eprintln!("{}: prune failed: {e}", member.ident());
                    kept.push((member.clone(), uid.clone()));
                }
            }
        }
        if !dry_run {
            inv.write(&ctx.client, |_| {
                let mut all = applied.clone();
                all.extend(kept.iter().cloned());
                all
            })
            .await
            .context("writing the ApplySet inventory")?;
        }
        if failures > 0 {
            bail!("{failures} object(s) failed to prune");
        }
    }
    Ok(())
}

/// The ApplySet name derived from a single directory argument: its last path component,
/// lowercased, with characters not allowed in names replaced by `-`.
pub fn default_applyset_name(files: &[PathBuf]) -> Option<String> {
    let [only] = files else { return None };
    if !only.is_dir() {
        return None;
    }
    let absolute = std::path::absolute(only).ok()?;
    let base = absolute.components().rev().find_map(|c| match c {
        std::path::Component::Normal(n) => n.to_str(),
        _ => None,
    })?;
    let name: String = base
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let name = name
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string();
    (!name.is_empty()).then_some(name)
}

fn project_note(d: &Desired) -> String {
    match &d.project {
        Some(p) => format!("project {p}"),
        None => "cluster-scoped".into(),
    }
}

/// Two manifests for the same object are a mistake in the input.
fn check_duplicates(desired: &[Desired]) -> anyhow::Result<()> {
    let mut seen: std::collections::BTreeMap<Member, &str> = Default::default();
    for d in desired {
        if let Some(first) = seen.insert(d.member(), &d.origin) {
            bail!(
                "{}: {} is also defined in {first}",
                d.origin,
                d.member().ident()
            );
        }
    }
    Ok(())
}

/// What prune did with one old member.
enum PruneOutcome {
    /// Deleted.
    Pruned,
    /// Already gone.
    Gone,
    /// It no longer carries this set's label: someone else owns it now.
    NotOwned,
    /// Its uid differs from the one recorded: a different object with the same name.
    Recreated,
    /// `--selector` excludes it: left alone and kept in the inventory.
    NotSelected,
}

async fn prune_one(
    client: &Client,
    inv: &Inventory,
    member: &Member,
    recorded_uid: Option<&str>,
    selector: &LabelSelector,
    dry_run: bool,
) -> Result<PruneOutcome, ClientError> {
    let Some(kind) = cirrus_crds::all_kinds()
        .into_iter()
        .find(|k| k.kind == member.kind)
    else {
        return Ok(PruneOutcome::NotOwned);
    };
    let project = member.project.as_deref();
    let Some(live) = crate::api(client, kind, project)
        .get_opt(&member.name)
        .await?
    else {
        return Ok(PruneOutcome::Gone);
    };
    if labels_of(&live).get(APPLYSET_LABEL) != Some(&inv.name) {
        return Ok(PruneOutcome::NotOwned);
    }
    let live_uid = live.pointer("/metadata/uid").and_then(Value::as_str);
    if recorded_uid.is_some_and(|u| Some(u) != live_uid) {
        return Ok(PruneOutcome::Recreated);
    }
    if !selector.matches_object(&live) {
        return Ok(PruneOutcome::NotSelected);
    }
    debug_assert_eq!(name_of(&live), member.name);
    match crate::api(client, kind, project)
        .dry_run(dry_run)
        .delete(&member.name)
        .await
    {
        Ok(_) => Ok(PruneOutcome::Pruned),
        Err(e) if e.is_not_found() => Ok(PruneOutcome::Gone),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(object: Value) -> Manifest {
        manifests::check_document("t.yaml", 1, object).unwrap()
    }

    fn flavor(vcpus: u32) -> Value {
        json!({"apiVersion": "cirrus.dev/v1", "kind": "Flavor", "metadata": {"name": "m1"}, "spec": {"vcpus": vcpus, "ram": 512}})
    }

    #[test]
    fn prepare_records_last_applied_and_label() {
        let mut obj = flavor(1);
        obj["status"] = json!({"conditions": []});
        let d = prepare(&manifest(obj), "default", Some("set1"));
        assert!(d.object.get("status").is_none());
        assert_eq!(d.object["metadata"]["labels"][APPLYSET_LABEL], "set1");
        let record = last_applied(&d.object).unwrap();
        assert_eq!(record["metadata"]["labels"][APPLYSET_LABEL], "set1");
        assert!(record["metadata"].get("annotations").is_none());
        assert_eq!(d.project, None);
    }

    #[test]
    fn plan_unchanged_then_configured() {
        let d = prepare(&manifest(flavor(1)), "default", None);
        assert!(matches!(plan(&d, None), Plan::Create));
        // What the server would store: the create body plus bookkeeping and defaults.
        let mut live = d.object.clone();
        live["metadata"]["uid"] = json!("u1");
        live["metadata"]["resourceVersion"] = json!("7");
        live["spec"]["rxtxFactor"] = json!(1.0);
        live["metadata"]["labels"] = json!({"set-out-of-band": "yes"});
        assert!(matches!(
            plan(&d, Some(live.clone())),
            Plan::Unchanged { .. }
        ));
        let d2 = prepare(&manifest(flavor(4)), "default", None);
        let Plan::Patch { patch, .. } = plan(&d2, Some(live)) else {
            panic!("expected a patch")
        };
        assert_eq!(patch["spec"], json!({"vcpus": 4}));
        assert_eq!(patch["metadata"]["resourceVersion"], "7");
        assert!(patch["metadata"].get("labels").is_none());
        assert!(patch["metadata"]["annotations"][LAST_APPLIED].is_string());
    }

    #[test]
    fn applyset_name_from_directory() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("My_Apps");
        std::fs::create_dir(&sub).unwrap();
        assert_eq!(
            default_applyset_name(std::slice::from_ref(&sub)).as_deref(),
            Some("my-apps")
        );
        assert_eq!(default_applyset_name(&[sub.clone(), sub.clone()]), None);
        assert_eq!(default_applyset_name(&[sub.join("x.yaml")]), None);
    }

    #[test]
    fn duplicates_rejected() {
        let d = prepare(&manifest(flavor(1)), "default", None);
        assert!(check_duplicates(&[d.clone(), d]).is_err());
    }
}
