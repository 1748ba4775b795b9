//! Running the external tools (`qemu-img`, `losetup`, the lvm2 tools) with captured output
//! and a typed error carrying the command line and its error output.

use std::ffi::OsStr;
use std::process::Command;

use super::VolumeError;

/// The output of a command that succeeded.
pub(crate) struct Output {
    /// Standard output.
    pub stdout: Vec<u8>,
}

/// A printable command line (for errors and logs).
pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        let a = a.to_string_lossy();
        if a.contains(' ') || a.is_empty() {
            s.push('\'');
            s.push_str(&a);
            s.push('\'');
        } else {
            s.push_str(&a);
        }
    }
    s
}

/// Runs `cmd` to completion; a non-zero exit is [`VolumeError::Command`] with its stderr
/// (lvm2's "activation disabled" and "not backed up" warnings filtered out).
pub(crate) fn run(cmd: &mut Command) -> Result<Output, VolumeError> {
    let line = describe(cmd);
    let _span = tracing::debug_span!("cmd", cmd = %line).entered();
    let out = cmd.output().map_err(|e| VolumeError::Command {
        cmd: line.clone(),
        stderr: format!("cannot run it: {e}"),
    })?;
    if out.status.success() {
        Ok(Output { stdout: out.stdout })
    } else {
        Err(VolumeError::Command {
            cmd: line,
            stderr: clean_stderr(&out.stderr),
        })
    }
}

/// A command from its program and arguments.
pub(crate) fn command<I, S>(program: &str, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut c = Command::new(program);
    c.args(args);
    c
}

/// Stderr without the noise lvm2 prints on every call when activation is disabled.
fn clean_stderr(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with("WARNING: Activation disabled")
                && !l.starts_with("WARNING: This metadata update is NOT backed up")
                && !l.contains("leaked on lvm invocation")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_carry_the_command_and_filtered_stderr() {
        let err = run(&mut command(
            "sh",
            [
                "-c",
                "echo '  WARNING: Activation disabled. No device-mapper' >&2; echo boom >&2; exit 3",
            ],
        ))
        .err()
        .unwrap();
        match err {
            VolumeError::Command { cmd, stderr } => {
                assert!(cmd.starts_with("sh -c '"), "{cmd}");
                assert_eq!(stderr, "boom");
            }
            e => panic!("{e:?}"),
        }
        let out = run(&mut command("sh", ["-c", "echo hi"])).unwrap();
        assert_eq!(out.stdout, b"hi\n");
        assert!(matches!(
            run(&mut command("/nonexistent/tool", [""; 0])),
            Err(VolumeError::Command { .. })
        ));
    }
}
