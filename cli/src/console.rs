//! `cirrus console-log server NAME`: a server's serial console, as `openstack console log
//! show` prints it.

use crate::Ctx;

/// Arguments of `cirrus console-log`.
#[derive(clap::Args, Debug, Clone)]
pub struct ConsoleArgs {
    /// `server NAME`, `server/NAME` or just `NAME`.
    #[arg(required = true, num_args = 1..=2)]
    pub target: Vec<String>,
    /// Only the last this many bytes.
    #[arg(long)]
    pub tail_bytes: Option<u64>,
}

/// Prints the console log.
///
/// # Errors
/// An unknown kind, or the API's answer (404, 409 before the server has a node, 503 when the
/// node agent is unreachable).
pub async fn run(ctx: &Ctx, args: ConsoleArgs) -> anyhow::Result<()> {
    let name = match args.target.as_slice() {
        [kind, name] => {
            anyhow::ensure!(
                crate::resolve_kind(kind)?.plural == "servers",
                "only servers have a console log"
            );
            name.clone()
        }
        [one] => match one.split_once('/') {
            Some((kind, name)) => {
                anyhow::ensure!(
                    crate::resolve_kind(kind)?.plural == "servers",
                    "only servers have a console log"
                );
                name.to_string()
            }
            None => one.clone(),
        },
        _ => unreachable!("clap enforces 1 or 2 arguments"),
    };
    let log = ctx
        .client
        .server_console(&ctx.project, &name, args.tail_bytes)
        .await?;
    print!("{log}");
    Ok(())
}
