//! `cirrus bench …`: the benchmarks live in their own binary, `cirrus-bench` (crate
//! `bench/`), so the `cirrus` binary ships no benchmark or test code. This subcommand only
//! replaces the process by the `cirrus-bench` next to the running `cirrus`, with the same
//! arguments (`cirrus bench --help` lists them).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use anyhow::Context;

/// Arguments of `cirrus bench`: everything after it, handed to `cirrus-bench` unchanged.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// What to measure and its options (`cirrus bench --help` lists them).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    args: Vec<OsString>,
}

/// The `cirrus-bench` binary in the directory of the running `cirrus`.
///
/// # Errors
/// When it is not there (it is built by `cargo build --bins` or `-p cirrus-bench`).
fn bench_binary() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("finding the cirrus binary")?;
    let bench = me.with_file_name("cirrus-bench");
    anyhow::ensure!(
        bench.is_file(),
        "{} not found: `cirrus bench` runs the cirrus-bench binary next to {} (build it with \
         `cargo build --bins` or `cargo build -p cirrus-bench`)",
        bench.display(),
        me.display()
    );
    Ok(bench)
}

/// Execs `cirrus-bench` with `args`; returns only on failure.
///
/// # Errors
/// When `cirrus-bench` is missing or cannot be executed.
pub fn exec(args: BenchArgs) -> anyhow::Error {
    let bench = match bench_binary() {
        Ok(bench) => bench,
        Err(e) => return e,
    };
    let err = std::process::Command::new(&bench)
        .arg0("cirrus bench")
        .args(args.args)
        .exec();
    anyhow::Error::new(err).context(format!("executing {}", bench.display()))
}
