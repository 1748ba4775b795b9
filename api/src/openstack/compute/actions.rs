//! `POST /servers/{id}/action`: Nova's server actions as changes of the server's desired
//! state (`spec.powerState`, `spec.rebootCount` + `rebootType`), refused with Nova's `409`
//! when the server's state does not allow them ([`plan`], pure).

use cirrus_crds::Server;
use cirrus_crds::kinds::server::{PowerState, RebootType};
use serde_json::{Value, json};

use super::server_view::{id_of, nova_state};
use crate::openstack::fault::{Dialect, Fault};

/// What an action does.
#[derive(Debug, Clone, PartialEq)]
pub enum ActionPlan {
    /// Merge-patch `spec` with this (answer `202`).
    Patch(Value),
    /// Answer the last `lines` lines of the console log (all when `None`).
    ConsoleOutput(Option<usize>),
    /// Rebuild from the image these arguments name (`imageRef`, `name`, `metadata`, ...);
    /// the state allows it, the caller resolves the image.
    Rebuild(Value),
}

/// Nova's refusal of `action` for the server in `attr` (`vm_state`/`task_state`) `state`.
fn invalid_state(action: &str, server: &Server, attr: &str, state: &str) -> Fault {
    Fault::conflict(
        Dialect::Compute,
        format!(
            "Cannot '{action}' instance {} while it is in {attr} {state}",
            id_of(server)
        ),
    )
}

/// Refuses unless the server is idle (no task) in one of `vm_states`.
fn require(action: &str, server: &Server, vm_states: &[&str]) -> Result<(), Fault> {
    let state = nova_state(server);
    if let Some(task) = &state.task_state {
        return Err(invalid_state(action, server, "task_state", task));
    }
    if !vm_states.contains(&state.vm_state) {
        return Err(invalid_state(action, server, "vm_state", state.vm_state));
    }
    Ok(())
}

fn power(state: PowerState) -> Value {
    json!({ "powerState": state })
}

/// The console length argument: an integer, a string of one, or null (everything).
fn console_length(args: &Value) -> Result<Option<usize>, Fault> {
    let bad = || {
        Fault::bad_request(
            Dialect::Compute,
            format!(
                "Invalid input for field/attribute length. Value: {}. Must be an integer of at least -1.",
                args["length"]
            ),
        )
    };
    match args.get("length") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(-1) => Ok(None),
            Some(n) if n >= 0 => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
            _ => Err(bad()),
        },
        Some(Value::String(s)) => match s.trim().parse::<i64>() {
            Ok(-1) => Ok(None),
            Ok(n) if n >= 0 => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
            _ => Err(bad()),
        },
        Some(_) => Err(bad()),
    }
}

/// What the action body `{"<action>": args}` does to `server`, or why not.
pub fn plan(body: &Value, server: &Server) -> Result<ActionPlan, Fault> {
    let Some(map) = body.as_object().filter(|m| m.len() == 1) else {
        return Err(Fault::bad_request(
            Dialect::Compute,
            "Malformed request body: an action body names exactly one action.",
        ));
    };
    let (action, args) = map.iter().next().expect("one entry");
    match action.as_str() {
        "os-start" => {
            require("start", server, &["stopped"])?;
            Ok(ActionPlan::Patch(power(PowerState::Running)))
        }
        "os-stop" => {
            require("stop", server, &["active", "error"])?;
            Ok(ActionPlan::Patch(power(PowerState::Stopped)))
        }
        "pause" => {
            require("pause", server, &["active"])?;
            Ok(ActionPlan::Patch(power(PowerState::Paused)))
        }
        "unpause" => {
            require("unpause", server, &["paused"])?;
            Ok(ActionPlan::Patch(power(PowerState::Running)))
        }
        "suspend" => {
            require("suspend", server, &["active"])?;
            Ok(ActionPlan::Patch(power(PowerState::Suspended)))
        }
        "resume" => {
            require("resume", server, &["suspended"])?;
            Ok(ActionPlan::Patch(power(PowerState::Running)))
        }
        "reboot" => {
            let kind = args
                .get("type")
                .and_then(Value::as_str)
                .map(str::to_ascii_uppercase);
            let reboot_type = match kind.as_deref() {
                Some("SOFT") => RebootType::Soft,
                Some("HARD") => RebootType::Hard,
                _ => {
                    return Err(Fault::bad_request(
                        Dialect::Compute,
                        format!(
                            "Invalid input for field/attribute type. Value: {}. 'type' must be one of 'SOFT', 'HARD'.",
                            args.get("type").unwrap_or(&Value::Null)
                        ),
                    ));
                }
            };
            let state = nova_state(server);
            match reboot_type {
                RebootType::Soft => require("reboot", server, &["active"])?,
                RebootType::Hard => {
                    // Nova lets a hard reboot interrupt a soft one, and revive stopped,
                    // paused, suspended and failed servers.
                    let task_ok = matches!(state.task_state.as_deref(), None | Some("rebooting"));
                    if !task_ok {
                        return Err(invalid_state(
                            "reboot",
                            server,
                            "task_state",
                            state.task_state.as_deref().unwrap_or_default(),
                        ));
                    }
                    if !matches!(
                        state.vm_state,
                        "active" | "stopped" | "paused" | "suspended" | "error"
                    ) {
                        return Err(invalid_state("reboot", server, "vm_state", state.vm_state));
                    }
                }
            }
            let reboots = next_count(
                "reboot",
                server,
                "rebootCount",
                server.spec.reboot_count,
                server.status.observed_reboot_count,
            )?;
            Ok(ActionPlan::Patch(json!({
                "rebootCount": reboots,
                "rebootType": reboot_type,
                "powerState": PowerState::Running,
            })))
        }
        "os-getConsoleOutput" => Ok(ActionPlan::ConsoleOutput(console_length(args)?)),
        "rebuild" => {
            require("rebuild", server, &["active", "stopped", "error"])?;
            if !args.is_object() {
                return Err(Fault::bad_request(
                    Dialect::Compute,
                    "Invalid input for field/attribute rebuild. 'imageRef' is a required property",
                ));
            }
            if server.spec.boot_volume.is_some() {
                return Err(Fault::bad_request(
                    Dialect::Compute,
                    format!(
                        "Instance {} boots from a volume: rebuilding volume-backed servers is not supported.",
                        id_of(server)
                    ),
                ));
            }
            Ok(ActionPlan::Rebuild(args.clone()))
        }
        other => Err(Fault::bad_request(
            Dialect::Compute,
            format!("There is no such action: {other}"),
        )),
    }
}

/// The counter a reboot or rebuild request writes: one more than the larger of the spec's
/// and the status' (`field` names the spec's). A counter already at its end (`u64::MAX`,
/// written through the native API) is Nova's `409` naming the action and the field, not an
/// overflow.
pub fn next_count(
    action: &str,
    server: &Server,
    field: &str,
    wanted: u64,
    observed: u64,
) -> Result<u64, Fault> {
    wanted.max(observed).checked_add(1).ok_or_else(|| {
        Fault::conflict(
            Dialect::Compute,
            format!(
                "Cannot '{action}' instance {}: its spec.{field} is at its maximum ({}); \
                 reset it through the native API first.",
                id_of(server),
                u64::MAX
            ),
        )
    })
}

/// The last `lines` lines of `log` (all of it when `None`).
pub fn tail_lines(log: &str, lines: Option<usize>) -> String {
    let Some(n) = lines else {
        return log.to_string();
    };
    let trimmed = log.strip_suffix('\n').unwrap_or(log);
    let all: Vec<&str> = trimmed.split('\n').collect();
    let start = all.len().saturating_sub(n);
    let mut out = all[start..].join("\n");
    if n > 0 && log.ends_with('\n') {
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use cirrus_crds::ServerSpec;
    use cirrus_crds::kinds::server::ServerPhase;
    use cirrus_crds::meta::ObjectMeta;

    fn server(phase: ServerPhase, wanted: PowerState) -> Server {
        let mut s = Server::new(
            ObjectMeta {
                name: "vm".into(),
                uid: Some("u-1".into()),
                ..Default::default()
            },
            ServerSpec {
                flavor: "m1".into(),
                power_state: wanted,
                ..Default::default()
            },
        );
        s.status.phase = Some(phase);
        s
    }

    #[test]
    fn stop_and_start_follow_the_vm_state() {
        let active = server(ServerPhase::Active, PowerState::Running);
        assert_eq!(
            plan(&json!({"os-stop": null}), &active).unwrap(),
            ActionPlan::Patch(json!({"powerState": "Stopped"}))
        );
        let refused = plan(&json!({"os-start": null}), &active).unwrap_err();
        assert_eq!(refused.code, 409);
        assert_eq!(
            refused.message,
            "Cannot 'start' instance u-1 while it is in vm_state active"
        );
        let stopping = server(ServerPhase::Active, PowerState::Stopped);
        let refused = plan(&json!({"os-stop": {}}), &stopping).unwrap_err();
        assert!(
            refused.message.ends_with("task_state powering-off"),
            "{}",
            refused.message
        );
    }

    #[test]
    fn reboots_bump_the_count_and_hard_ones_revive_stopped_servers() {
        let mut active = server(ServerPhase::Active, PowerState::Running);
        active.spec.reboot_count = 2;
        active.status.observed_reboot_count = 2;
        assert_eq!(
            plan(&json!({"reboot": {"type": "SOFT"}}), &active).unwrap(),
            ActionPlan::Patch(
                json!({"rebootCount": 3, "rebootType": "soft", "powerState": "Running"})
            )
        );
        let stopped = server(ServerPhase::Shutoff, PowerState::Stopped);
        assert_eq!(
            plan(&json!({"reboot": {"type": "SOFT"}}), &stopped)
                .unwrap_err()
                .code,
            409
        );
        assert!(matches!(
            plan(&json!({"reboot": {"type": "hard"}}), &stopped).unwrap(),
            ActionPlan::Patch(_)
        ));
        assert_eq!(
            plan(&json!({"reboot": {"type": "WARM"}}), &active)
                .unwrap_err()
                .code,
            400
        );
    }

    #[test]
    fn pause_suspend_and_unknown_actions() {
        let active = server(ServerPhase::Active, PowerState::Running);
        assert_eq!(
            plan(&json!({"pause": null}), &active).unwrap(),
            ActionPlan::Patch(json!({"powerState": "Paused"}))
        );
        assert_eq!(
            plan(&json!({"suspend": null}), &active).unwrap(),
            ActionPlan::Patch(json!({"powerState": "Suspended"}))
        );
        assert_eq!(
            plan(&json!({"unpause": null}), &active).unwrap_err().code,
            409
        );
        let paused = server(ServerPhase::Paused, PowerState::Paused);
        assert_eq!(
            plan(&json!({"unpause": null}), &paused).unwrap(),
            ActionPlan::Patch(json!({"powerState": "Running"}))
        );
        assert!(matches!(
            plan(&json!({"rebuild": {"imageRef": "x"}}), &active).unwrap(),
            ActionPlan::Rebuild(_)
        ));
        assert_eq!(
            plan(&json!({"rebuild": {"imageRef": "x"}}), &paused)
                .unwrap_err()
                .code,
            409
        );
        let fault = plan(&json!({"shelve": null}), &active).unwrap_err();
        assert_eq!(
            (fault.code.as_u16(), fault.message.as_str()),
            (400, "There is no such action: shelve")
        );
        let building = server(ServerPhase::Build, PowerState::Running);
        assert_eq!(
            plan(&json!({"os-stop": null}), &building).unwrap_err().code,
            409
        );
    }

    #[test]
    fn console_output_takes_the_last_lines() {
        let active = server(ServerPhase::Active, PowerState::Running);
        assert_eq!(
            plan(&json!({"os-getConsoleOutput": {"length": "2"}}), &active).unwrap(),
            ActionPlan::ConsoleOutput(Some(2))
        );
        assert_eq!(
            plan(&json!({"os-getConsoleOutput": {"length": -1}}), &active).unwrap(),
            ActionPlan::ConsoleOutput(None)
        );
        assert_eq!(tail_lines("a\nb\nc\n", Some(2)), "b\nc\n");
        assert_eq!(tail_lines("a\nb\nc", Some(5)), "a\nb\nc");
        assert_eq!(tail_lines("a\nb\n", None), "a\nb\n");
    }
}
