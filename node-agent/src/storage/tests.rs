//! Unit tests of the parent module (kept apart so the module reads on its own).

use super::*;
use cirrus_crds::kinds::server::ServerVolume;
use cirrus_crds::kinds::volume::VolumeAttachment;
use cirrus_crds::{ObjectMeta, ServerSpec, VolumeSpec};
use cirrus_runtime::watcher::Event;

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: name.into(),
        project: Some("demo".into()),
        ..Default::default()
    }
}

fn held_by(servers: &[&str]) -> Volume {
    let mut v = Volume::new(meta("data"), VolumeSpec::default());
    v.status.attachments = servers
        .iter()
        .map(|s| VolumeAttachment {
            server: s.to_string(),
            device: Some("/dev/vdb".into()),
            node: Some("n1".into()),
            attached_at: None,
        })
        .collect();
    v
}

fn server(name: &str, volumes: &[&str]) -> Server {
    Server::new(
        meta(name),
        ServerSpec {
            volumes: volumes
                .iter()
                .map(|v| ServerVolume {
                    volume: v.to_string(),
                    device: None,
                    delete_on_termination: false,
                })
                .collect(),
            ..Default::default()
        },
    )
}

#[test]
fn attachment_phases_follow_attachments_and_server_specs() {
    let mut writer = Writer::<Server>::new();
    let servers = writer.as_reader();
    // Nothing holds it: available, known servers or not.
    assert_eq!(
        attachment_phase(&held_by(&[]), &servers),
        VolumePhase::Available
    );
    // Servers not known yet: held means in use, never a guessed detaching.
    assert_eq!(
        attachment_phase(&held_by(&["vm"]), &servers),
        VolumePhase::InUse
    );
    writer.apply(&Event::Restarted(vec![
        server("vm", &["data"]),
        server("other", &[]),
    ]));
    assert_eq!(
        attachment_phase(&held_by(&["vm"]), &servers),
        VolumePhase::InUse
    );
    // Held only by servers that no longer want it (or are gone): detaching.
    assert_eq!(
        attachment_phase(&held_by(&["other", "gone"]), &servers),
        VolumePhase::Detaching
    );
    assert_eq!(
        attachment_phase(&held_by(&["other", "vm"]), &servers),
        VolumePhase::InUse
    );
}
