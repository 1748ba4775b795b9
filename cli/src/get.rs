//! `cirrus get KIND [NAME...] [-o yaml|json|wide|name] [-l SELECTOR] [-w] [-A]`.

use anyhow::bail;
use chrono::Utc;
use cirrus_crds::{KindInfo, Scope};

use crate::Ctx;
use crate::output::{self, Format};
use crate::watch::Change;
use cirrus_client::ListParams;
use cirrus_client::dynamic::{name_of, resource_version_of as resource_version};
use futures::StreamExt;

/// Arguments of `cirrus get`.
#[derive(clap::Args, Debug, Clone)]
pub struct GetArgs {
    /// Kind: name, plural, singular or short name (`flavors`, `flavor`, `fl`, `Flavor`).
    pub kind: String,
    /// Names of objects to show (all when omitted).
    pub names: Vec<String>,
    /// Output format: yaml, json, wide or name (a table by default).
    #[arg(short = 'o', long, default_value = "table")]
    pub output: Format,
    /// Only objects whose labels match (`app=web,tier!=db`, `env in (a,b)`, ...).
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// After listing, keep watching and print changes as they happen.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// List across all projects (project-scoped kinds).
    #[arg(short = 'A', long)]
    pub all_projects: bool,
}

fn scope_project<'a>(kind: &KindInfo, ctx: &'a Ctx, all: bool) -> Option<&'a str> {
    match kind.scope {
        Scope::Project if !all => Some(ctx.project.as_str()),
        _ => None,
    }
}

/// Runs `cirrus get`.
///
/// # Errors
/// Unknown kinds, API failures (a missing named object is reported and makes the command
/// fail after the others are printed).
pub async fn run(ctx: &Ctx, args: GetArgs) -> anyhow::Result<()> {
    let kind = crate::resolve_kind(&args.kind)?;
    let all = args.all_projects && kind.scope == Scope::Project;
    let project = scope_project(kind, ctx, all);
    if all && !args.names.is_empty() {
        bail!("a name can't be combined with --all-projects: use --project");
    }
    let selector = args.selector.clone();
    if let Some(sel) = &selector {
        cirrus_store::selector::LabelSelector::parse(sel)?;
    }

    let (items, list_rv, missing) = if args.names.is_empty() {
        let list = crate::api(&ctx.client, kind, project)
            .list_all_matching(&ListParams {
                label_selector: selector.clone(),
                ..ListParams::default()
            })
            .await?;
        (list.items, Some(list.resource_version), 0)
    } else {
        let mut items = Vec::new();
        let mut missing = 0;
        for name in &args.names {
            match crate::api(&ctx.client, kind, project).get(name).await {
                Ok(obj) => items.push(obj),
                Err(e) if e.is_not_found() => {
                    missing += 1;
                    eprintln!("{}", crate::errors::explain(&e, &ctx.client.base_url));
                }
                Err(e) => return Err(e.into()),
            }
        }
        let rv = items
            .iter()
            .filter_map(resource_version)
            .filter_map(|r| r.parse::<u64>().ok())
            .max();
        (items, rv.map(|r| r.to_string()), missing)
    };

    let single = args.names.len() == 1 && !args.watch;
    let wide = args.output == Format::Wide;
    let mut cols = output::columns(kind, &items, wide, all);
    let now = Utc::now();
    let mut widths = Vec::new();
    match args.output {
        Format::Table | Format::Wide => {
            let mut headers: Vec<String> = cols.iter().map(|c| c.header.clone()).collect();
            let mut rows: Vec<Vec<String>> =
                items.iter().map(|i| output::row(&cols, i, now)).collect();
            if args.watch {
                headers.insert(0, "EVENT".into());
                for r in &mut rows {
                    r.insert(0, "ADDED".into());
                }
                widths = output::widths(&headers, &rows);
                // Room for the longest event type, so rows line up as events arrive.
                widths[0] = widths[0].max("MODIFIED".len());
            }
            if items.is_empty() && !args.watch {
                if missing == 0 {
                    match project {
                        Some(p) => eprintln!("No resources found in project {p}."),
                        None => eprintln!("No resources found."),
                    }
                }
            } else if args.watch {
                // Print the initial rows in the streaming layout so later rows line up.
                println!("{}", output::stream_line(&headers, &mut widths));
                for r in &rows {
                    println!("{}", output::stream_line(r, &mut widths));
                }
            } else {
                println!("{}", output::render_table(&headers, &rows));
            }
        }
        Format::Yaml | Format::Json => {
            let value = if single && items.len() == 1 {
                items[0].clone()
            } else {
                output::as_list(items.clone(), list_rv.as_deref())
            };
            if args.output == Format::Yaml {
                print!("{}", output::to_yaml(&value)?);
            } else {
                println!("{}", output::to_json(&value));
            }
        }
        Format::Name => {
            for item in &items {
                println!("{}", output::object_name(kind, item));
            }
        }
    }
    if missing > 0 && !args.watch {
        return Err(crate::AlreadyReported.into());
    }
    if !args.watch {
        return Ok(());
    }

    // Watch: stream from the listed revision.
    let names: Vec<&str> = args.names.iter().map(String::as_str).collect();
    let mut from = list_rv;
    if cols.is_empty() {
        cols = output::columns(kind, &[], wide, all);
    }
    let api = crate::api(&ctx.client, kind, project);
    let selectors = ListParams {
        label_selector: selector.clone(),
        ..ListParams::default()
    };
    loop {
        let mut stream =
            std::pin::pin!(api.watch_matching(from.as_deref().unwrap_or(""), &selectors));
        while let Some(event) = stream.next().await {
            let event = match event {
                Ok(e) => Change::new(kind, e),
                Err(e) if e.is_gone() => {
                    bail!("the watch expired (410 Gone); run the command again")
                }
                Err(e) if e.is_stream_broken() => {
                    tracing::debug!("watch interrupted: {e}");
                    break;
                }
                Err(e) => return Err(e.into()),
            };
            if let Some(rv) = resource_version(&event.object) {
                from = Some(rv.to_string());
            }
            if event.kind == "BOOKMARK"
                || (!names.is_empty() && !names.contains(&name_of(&event.object)))
            {
                continue;
            }
            match args.output {
                Format::Table | Format::Wide => {
                    let mut cells = output::row(&cols, &event.object, Utc::now());
                    cells.insert(0, event.kind.to_string());
                    println!("{}", output::stream_line(&cells, &mut widths));
                }
                Format::Json => println!("{}", serde_json::to_string(&event.object)?),
                Format::Yaml => print!("---\n{}", output::to_yaml(&event.object)?),
                Format::Name => println!("{}", output::object_name(kind, &event.object)),
            }
        }
    }
}
