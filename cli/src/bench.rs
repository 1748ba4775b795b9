//! `cirrus bench`: measurements reported as ratios against a baseline in the same run.

/// Arguments of `cirrus bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// What to measure: `store` or `api`.
    pub target: String,
}

/// Runs the benchmark and prints its report.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("cirrus bench: not wired yet")
}
