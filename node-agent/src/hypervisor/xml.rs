//! Domain XML rendering: a pure, deterministic function of a [`DomainSpec`], so it can be
//! tested without libvirt and compared by digest.
//!
//! What the XML gives every Cirrus domain, and why:
//! - name `cirrus-<server uid>` and uuid = server uid: deterministic, never duplicated;
//! - `type='kvm'` or `'qemu'` from the spec (the driver checks KVM really works);
//! - a q35 machine with eight spare `pcie-root-port` controllers beyond the devices it starts
//!   with, so disks and NICs can be hot-plugged later ("No more available PCI slots" otherwise);
//! - the root disk as virtio `vda`, optional direct kernel boot, the config drive as `vdb`,
//!   then the volumes sorted by target ([`render_volume_disk`], the same XML hot-plug uses:
//!   `cache='none'` so the host page cache holds no guest writes, `type='block'` for block
//!   devices — the one thing rendering reads from the host — and the serial);
//! - the serial console appended to a file (also the `<console>`), read by `console-log`;
//! - OVS-bridged virtio NICs when the spec has any;
//! - `<metadata>` in the Cirrus namespace with the owning server's uid, project, name and the
//!   spec digest, so orphans can be traced and `domain_ensure` can skip identical redefines.

use std::fmt::Write as _;
use std::path::Path;

use super::{DiskFormat, DomainSpec, ROOT_TARGET, VirtType, VolumeDisk};

/// XML namespace of the Cirrus `<metadata>` element.
pub const METADATA_NAMESPACE: &str = "https://cirrus.dev/xmlns/libvirt-domain/1";

/// Number of empty `pcie-root-port` controllers kept for hot-plug: how many volumes a
/// running domain can take beyond those it booted with (more wait for the next boot, where
/// the definition has a port for each).
pub const SPARE_ROOT_PORTS: usize = 8;

/// Escapes text for XML element content and single- or double-quoted attributes.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

fn path(p: &Path) -> String {
    esc(&p.to_string_lossy())
}

/// Extracts the spec digest recorded by [`render_domain_xml`] from a domain's XML (as libvirt
/// returns it), if any.
pub fn spec_digest_from_xml(xml: &str) -> Option<String> {
    let start = xml.find("specDigest>")? + "specDigest>".len();
    let len = xml[start..].find('<')?;
    Some(xml[start..start + len].trim().to_owned())
}

/// Renders the libvirt domain XML for `spec`. Pure and deterministic: the same spec always
/// gives the same bytes.
pub fn render_domain_xml(spec: &DomainSpec) -> String {
    let mut x = String::new();
    let name = spec.domain_name();
    let uid = spec.server_uid.hyphenated();
    // `write!` to a String cannot fail.
    let _ = writeln!(x, "<domain type='{}'>", spec.virt_type.as_str());
    let _ = writeln!(x, "  <name>{name}</name>");
    let _ = writeln!(x, "  <uuid>{uid}</uuid>");
    let _ = writeln!(x, "  <metadata>");
    let _ = writeln!(x, "    <cirrus:server xmlns:cirrus='{METADATA_NAMESPACE}'>");
    let _ = writeln!(x, "      <cirrus:uid>{uid}</cirrus:uid>");
    let _ = writeln!(
        x,
        "      <cirrus:project>{}</cirrus:project>",
        esc(&spec.project)
    );
    let _ = writeln!(
        x,
        "      <cirrus:name>{}</cirrus:name>",
        esc(&spec.server_name)
    );
    let _ = writeln!(
        x,
        "      <cirrus:specDigest>{}</cirrus:specDigest>",
        spec.digest()
    );
    let _ = writeln!(x, "    </cirrus:server>");
    let _ = writeln!(x, "  </metadata>");
    let _ = writeln!(x, "  <memory unit='MiB'>{}</memory>", spec.memory_mib);
    let _ = writeln!(
        x,
        "  <currentMemory unit='MiB'>{}</currentMemory>",
        spec.memory_mib
    );
    let _ = writeln!(x, "  <vcpu placement='static'>{}</vcpu>", spec.vcpus);
    let _ = writeln!(x, "  <os>");
    let _ = writeln!(x, "    <type arch='x86_64' machine='q35'>hvm</type>");
    match &spec.kernel_boot {
        Some(kb) => {
            let _ = writeln!(x, "    <kernel>{}</kernel>", path(&kb.kernel));
            if let Some(initrd) = &kb.initrd {
                let _ = writeln!(x, "    <initrd>{}</initrd>", path(initrd));
            }
            let _ = writeln!(x, "    <cmdline>{}</cmdline>", esc(&kb.cmdline));
        }
        None => {
            let _ = writeln!(x, "    <boot dev='hd'/>");
        }
    }
    let _ = writeln!(x, "  </os>");
    let _ = writeln!(x, "  <features>");
    let _ = writeln!(x, "    <acpi/>");
    let _ = writeln!(x, "    <apic/>");
    let _ = writeln!(x, "  </features>");
    match spec.virt_type {
        VirtType::Kvm => {
            let _ = writeln!(x, "  <cpu mode='host-passthrough'/>");
        }
        VirtType::Qemu => {
            let _ = writeln!(x, "  <cpu mode='custom' match='exact'>");
            let _ = writeln!(x, "    <model fallback='allow'>qemu64</model>");
            let _ = writeln!(x, "  </cpu>");
        }
    }
    let _ = writeln!(x, "  <clock offset='utc'/>");
    let _ = writeln!(x, "  <on_poweroff>destroy</on_poweroff>");
    let _ = writeln!(x, "  <on_reboot>restart</on_reboot>");
    let _ = writeln!(x, "  <on_crash>destroy</on_crash>");
    let _ = writeln!(x, "  <devices>");
    let _ = writeln!(x, "    <disk type='file' device='disk'>");
    let _ = writeln!(
        x,
        "      <driver name='qemu' type='qcow2' discard='unmap'/>"
    );
    let _ = writeln!(x, "      <source file='{}'/>", path(&spec.root_disk));
    let _ = writeln!(x, "      <target dev='vda' bus='virtio'/>");
    let _ = writeln!(x, "    </disk>");
    if let Some(iso) = &spec.config_drive {
        let _ = writeln!(x, "    <disk type='file' device='disk'>");
        let _ = writeln!(x, "      <driver name='qemu' type='raw'/>");
        let _ = writeln!(x, "      <source file='{}'/>", path(iso));
        let _ = writeln!(x, "      <target dev='vdb' bus='virtio'/>");
        let _ = writeln!(x, "      <readonly/>");
        let _ = writeln!(x, "    </disk>");
    }
    let mut volumes: Vec<&VolumeDisk> = spec.volumes.iter().collect();
    volumes.sort_by(|a, b| a.target.cmp(&b.target));
    for v in volumes {
        x.push_str(&render_volume_disk(v, "    "));
    }
    for nic in &spec.nics {
        let _ = writeln!(x, "    <interface type='bridge'>");
        let _ = writeln!(x, "      <source bridge='{}'/>", esc(&nic.bridge));
        let _ = writeln!(x, "      <virtualport type='openvswitch'>");
        let _ = writeln!(
            x,
            "        <parameters interfaceid='{}'/>",
            nic.interface_id.hyphenated()
        );
        let _ = writeln!(x, "      </virtualport>");
        if let Some(tag) = nic.vlan_tag {
            let _ = writeln!(x, "      <vlan>");
            let _ = writeln!(x, "        <tag id='{tag}'/>");
            let _ = writeln!(x, "      </vlan>");
        }
        let _ = writeln!(x, "      <target dev='{}'/>", esc(&nic.tap));
        let _ = writeln!(x, "      <mac address='{}'/>", esc(&nic.mac));
        let _ = writeln!(x, "      <model type='virtio'/>");
        if !nic.offload {
            let _ = writeln!(x, "      <driver>");
            let _ = writeln!(
                x,
                "        <host csum='off' gso='off' tso4='off' tso6='off' ecn='off' ufo='off'/>"
            );
            let _ = writeln!(
                x,
                "        <guest csum='off' tso4='off' tso6='off' ecn='off' ufo='off'/>"
            );
            let _ = writeln!(x, "      </driver>");
        }
        if let Some(mtu) = nic.mtu {
            let _ = writeln!(x, "      <mtu size='{mtu}'/>");
        }
        let _ = writeln!(x, "    </interface>");
    }
    let log = path(&spec.console_log);
    let _ = writeln!(x, "    <serial type='file'>");
    let _ = writeln!(x, "      <source path='{log}' append='on'/>");
    let _ = writeln!(x, "      <target port='0'/>");
    let _ = writeln!(x, "    </serial>");
    let _ = writeln!(x, "    <console type='file'>");
    let _ = writeln!(x, "      <source path='{log}' append='on'/>");
    let _ = writeln!(x, "      <target type='serial' port='0'/>");
    let _ = writeln!(x, "    </console>");
    let _ = writeln!(
        x,
        "    <controller type='pci' index='0' model='pcie-root'/>"
    );
    // One root port per PCIe device present at boot (root disk, config drive, volumes, NICs),
    // plus the spares for hot-plug.
    let at_boot =
        1 + usize::from(spec.config_drive.is_some()) + spec.volumes.len() + spec.nics.len();
    for _ in 0..(at_boot + SPARE_ROOT_PORTS) {
        let _ = writeln!(x, "    <controller type='pci' model='pcie-root-port'/>");
    }
    let _ = writeln!(x, "    <controller type='usb' model='none'/>");
    let _ = writeln!(x, "    <memballoon model='none'/>");
    let _ = writeln!(x, "  </devices>");
    let _ = writeln!(x, "</domain>");
    x
}

/// The `<disk>` element of one volume, each line prefixed with `indent`: in the domain XML and
/// as the device XML of a hot-plug (`virDomainAttachDeviceFlags`) or unplug.
pub fn render_volume_disk(v: &VolumeDisk, indent: &str) -> String {
    let mut x = String::new();
    let (kind, attr) = if v.is_block_device() {
        ("block", "dev")
    } else {
        ("file", "file")
    };
    let io = if kind == "block" { " io='native'" } else { "" };
    let _ = writeln!(x, "{indent}<disk type='{kind}' device='disk'>");
    let _ = writeln!(
        x,
        "{indent}  <driver name='qemu' type='{}' cache='none'{io}/>",
        v.format.as_str()
    );
    let _ = writeln!(x, "{indent}  <source {attr}='{}'/>", path(&v.path));
    let _ = writeln!(
        x,
        "{indent}  <target dev='{}' bus='virtio'/>",
        esc(&v.target)
    );
    let _ = writeln!(x, "{indent}  <serial>{}</serial>", esc(&v.serial));
    if v.readonly {
        let _ = writeln!(x, "{indent}  <readonly/>");
    }
    let _ = writeln!(x, "{indent}</disk>");
    x
}

/// Undoes [`esc`] (and libvirt's numeric character references for ASCII).
fn unesc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest.find(';') else { break };
        let ent = &rest[1..end];
        let c = match ent {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "apos" => Some('\''),
            "quot" => Some('"'),
            _ => ent
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| ent.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The value of attribute `name` in a start tag's text (`<disk type='file' ...>`).
fn attr(tag: &str, name: &str) -> Option<String> {
    let mut rest = tag;
    loop {
        let i = rest.find(name)?;
        let before = rest[..i].chars().last();
        let after = &rest[i + name.len()..];
        if matches!(before, Some(c) if c.is_whitespace())
            && let Some(after) = after.trim_start().strip_prefix('=')
        {
            let after = after.trim_start();
            let q = after.chars().next()?;
            if q == '\'' || q == '"' {
                let end = after[1..].find(q)?;
                return Some(unesc(&after[1..1 + end]));
            }
        }
        rest = &rest[i + name.len()..];
    }
}

/// The first start tag `<name ...>` (or `<name .../>`) in `body`, as text.
fn tag<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}");
    let mut from = 0;
    while let Some(i) = body[from..].find(&open) {
        let start = from + i;
        let next = body[start + open.len()..].chars().next();
        if matches!(next, Some(c) if c.is_whitespace() || c == '>' || c == '/') {
            let end = body[start..].find('>')?;
            return Some(&body[start..start + end + 1]);
        }
        from = start + open.len();
    }
    None
}

/// The volumes in a domain's XML as libvirt returns it: `<disk device='disk'>` elements with a
/// `<serial>` on a virtio target other than the root disk's (the config drive has no serial),
/// sorted by target. Disks this driver did not render (no serial, unknown format) are left out.
pub fn volumes_from_xml(xml: &str) -> Vec<VolumeDisk> {
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find("<disk") {
        rest = &rest[i..];
        let Some(end) = rest.find("</disk>") else {
            break;
        };
        let element = &rest[..end];
        rest = &rest[end + "</disk>".len()..];
        let Some(open) = tag(element, "disk") else {
            continue;
        };
        if attr(open, "device").as_deref() != Some("disk") {
            continue;
        }
        let Some(target) = tag(element, "target").and_then(|t| attr(t, "dev")) else {
            continue;
        };
        let serial = element
            .find("<serial>")
            .map(|i| &element[i + "<serial>".len()..])
            .and_then(|s| s.find("</serial>").map(|j| unesc(s[..j].trim())));
        let Some(serial) = serial.filter(|s| !s.is_empty()) else {
            continue;
        };
        if target == ROOT_TARGET {
            continue;
        }
        let source =
            tag(element, "source").and_then(|t| attr(t, "file").or_else(|| attr(t, "dev")));
        let format = tag(element, "driver")
            .and_then(|t| attr(t, "type"))
            .and_then(|f| DiskFormat::parse(&f));
        let (Some(source), Some(format)) = (source, format) else {
            continue;
        };
        out.push(VolumeDisk {
            target,
            path: source.into(),
            format,
            serial,
            readonly: tag(element, "readonly").is_some(),
        });
    }
    out.sort_by(|a, b| a.target.cmp(&b.target));
    out
}

/// The targets (`vda`, `vdb`, ...) of every `<disk>` of a domain XML, any device kind, in
/// document order.
pub fn disk_targets(xml: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find("<disk") {
        rest = &rest[i..];
        let Some(end) = rest.find("</disk>") else {
            break;
        };
        let element = &rest[..end];
        rest = &rest[end + "</disk>".len()..];
        if let Some(target) = tag(element, "target").and_then(|t| attr(t, "dev")) {
            out.push(target);
        }
    }
    out
}

/// A push-mode `<domainbackup>` that copies only the disk at `target` into the new qcow2
/// file `dest` (full copy, no backing file); every other disk of `all_targets` is listed
/// with `backup='no'` so libvirt never copies (or refuses on) them.
pub fn render_backup_xml(target: &str, dest: &std::path::Path, all_targets: &[String]) -> String {
    let mut x = String::from("<domainbackup mode='push'>\n  <disks>\n");
    for t in all_targets {
        if t == target {
            x.push_str(&format!(
                "    <disk name='{}' backup='yes' type='file'>\n      <driver type='qcow2'/>\n      <target file='{}'/>\n    </disk>\n",
                esc(t),
                esc(&dest.to_string_lossy())
            ));
        } else {
            x.push_str(&format!("    <disk name='{}' backup='no'/>\n", esc(t)));
        }
    }
    x.push_str("  </disks>\n</domainbackup>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypervisor::{KernelBoot, NicSpec};
    use uuid::Uuid;

    fn spec() -> DomainSpec {
        DomainSpec {
            server_uid: Uuid::parse_str("6f1c2a7e-8d7b-4c1e-9a55-0b8e6f2d3c41").unwrap(),
            server_name: "web-1".into(),
            project: "demo".into(),
            virt_type: VirtType::Qemu,
            vcpus: 1,
            memory_mib: 256,
            root_disk: "/var/lib/cirrus/instances/6f1c2a7e/root.qcow2".into(),
            kernel_boot: Some(KernelBoot {
                kernel: "/var/lib/cirrus/images/k/vmlinuz".into(),
                initrd: Some("/var/lib/cirrus/images/r/initrd.img".into()),
                cmdline: "console=ttyS0 quiet panic=-1 cirrus.marker=web-1".into(),
            }),
            console_log: "/var/lib/cirrus/instances/6f1c2a7e/console.log".into(),
            nics: vec![],
            config_drive: None,
            volumes: Vec::new(),
        }
    }

    const EXPECTED_TCG_KERNEL_BOOT: &str = "\
<domain type='qemu'>
  <name>cirrus-6f1c2a7e-8d7b-4c1e-9a55-0b8e6f2d3c41</name>
  <uuid>6f1c2a7e-8d7b-4c1e-9a55-0b8e6f2d3c41</uuid>
  <metadata>
    <cirrus:server xmlns:cirrus='https://cirrus.dev/xmlns/libvirt-domain/1'>
      <cirrus:uid>6f1c2a7e-8d7b-4c1e-9a55-0b8e6f2d3c41</cirrus:uid>
      <cirrus:project>demo</cirrus:project>
      <cirrus:name>web-1</cirrus:name>
      <cirrus:specDigest>DIGEST</cirrus:specDigest>
    </cirrus:server>
  </metadata>
  <memory unit='MiB'>256</memory>
  <currentMemory unit='MiB'>256</currentMemory>
  <vcpu placement='static'>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>/var/lib/cirrus/images/k/vmlinuz</kernel>
    <initrd>/var/lib/cirrus/images/r/initrd.img</initrd>
    <cmdline>console=ttyS0 quiet panic=-1 cirrus.marker=web-1</cmdline>
  </os>
  <features>
    <acpi/>
    <apic/>
  </features>
  <cpu mode='custom' match='exact'>
    <model fallback='allow'>qemu64</model>
  </cpu>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' discard='unmap'/>
      <source file='/var/lib/cirrus/instances/6f1c2a7e/root.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='file'>
      <source path='/var/lib/cirrus/instances/6f1c2a7e/console.log' append='on'/>
      <target port='0'/>
    </serial>
    <console type='file'>
      <source path='/var/lib/cirrus/instances/6f1c2a7e/console.log' append='on'/>
      <target type='serial' port='0'/>
    </console>
    <controller type='pci' index='0' model='pcie-root'/>
    <controller type='pci' model='pcie-root-port'/>
    <controller type='pci' model='pcie-root-port'/>
    <controller type='pci' model='pcie-root-port'/>
    <controller type='pci' model='pcie-root-port'/>
    <controller type='pci' model='pcie-root-port'/>
    <controller type='pci' model='pcie-root-port'/>
    <controller type='pci' model='pcie-root-port'/>
    <controller type='pci' model='pcie-root-port'/>
    <controller type='pci' model='pcie-root-port'/>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
";

    #[test]
    fn tcg_with_direct_kernel_boot() {
        let s = spec();
        let expected = EXPECTED_TCG_KERNEL_BOOT.replace("DIGEST", &s.digest());
        assert_eq!(render_domain_xml(&s), expected);
        assert_eq!(spec_digest_from_xml(&expected), Some(s.digest()));
    }

    #[test]
    fn kvm_disk_boot_with_nics_and_escaping() {
        let mut s = spec();
        s.virt_type = VirtType::Kvm;
        s.kernel_boot = None;
        s.server_name = "a<b>&'c\"".into();
        s.nics = vec![
            NicSpec {
                bridge: "br-int".into(),
                interface_id: Uuid::parse_str("11111111-2222-4333-8444-555555555555").unwrap(),
                mac: "52:54:00:aa:bb:01".into(),
                tap: "tap11111111-22".into(),
                vlan_tag: Some(7),
                mtu: Some(1450),
                offload: true,
            },
            NicSpec {
                bridge: "br-int".into(),
                interface_id: Uuid::parse_str("11111111-2222-4333-8444-666666666666").unwrap(),
                mac: "52:54:00:aa:bb:02".into(),
                tap: "tap11111111-23".into(),
                vlan_tag: None,
                mtu: None,
                offload: false,
            },
        ];
        let xml = render_domain_xml(&s);
        assert!(xml.starts_with("<domain type='kvm'>\n"));
        assert!(xml.contains("  <cpu mode='host-passthrough'/>\n"));
        assert!(xml.contains("    <boot dev='hd'/>\n"));
        assert!(!xml.contains("<kernel>"));
        assert!(xml.contains("<cirrus:name>a&lt;b&gt;&amp;&apos;c&quot;</cirrus:name>"));
        let nic = "    <interface type='bridge'>
      <source bridge='br-int'/>
      <virtualport type='openvswitch'>
        <parameters interfaceid='11111111-2222-4333-8444-555555555555'/>
      </virtualport>
      <vlan>
        <tag id='7'/>
      </vlan>
      <target dev='tap11111111-22'/>
      <mac address='52:54:00:aa:bb:01'/>
      <model type='virtio'/>
      <mtu size='1450'/>
    </interface>
";
        assert!(xml.contains(nic), "{xml}");
        assert_eq!(xml.matches("<host csum='off'").count(), 1, "{xml}");
        assert_eq!(xml.matches("<interface type='bridge'>").count(), 2);
        // disk + 2 NICs + 4 spares
        assert_eq!(xml.matches("model='pcie-root-port'").count(), 11);
    }

    fn vol(target: &str, path: &str, serial: &str) -> VolumeDisk {
        VolumeDisk {
            target: target.into(),
            path: path.into(),
            format: DiskFormat::Qcow2,
            serial: serial.into(),
            readonly: false,
        }
    }

    #[test]
    fn volumes_render_after_the_config_drive_and_parse_back() {
        let mut s = spec();
        s.config_drive = Some("/var/lib/cirrus/instances/6f1c2a7e/config.iso".into());
        let mut ro = vol("vdd", "/dev/cirrus-test-nonexistent/lv", "bbbb-2");
        ro.format = DiskFormat::Raw;
        ro.readonly = true;
        // Unsorted on purpose: rendered (and digested) sorted by target.
        s.volumes = vec![ro.clone(), vol("vdc", "/srv/v/a&b.qcow2", "aaaa-1")];
        let xml = render_domain_xml(&s);
        let vdc = "    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file='/srv/v/a&amp;b.qcow2'/>
      <target dev='vdc' bus='virtio'/>
      <serial>aaaa-1</serial>
    </disk>
    <disk type='block' device='disk'>
      <driver name='qemu' type='raw' cache='none' io='native'/>
      <source dev='/dev/cirrus-test-nonexistent/lv'/>
      <target dev='vdd' bus='virtio'/>
      <serial>bbbb-2</serial>
      <readonly/>
    </disk>
";
        assert!(xml.contains(vdc), "{xml}");
        let cd = xml.find("<target dev='vdb'").unwrap();
        assert!(cd < xml.find("<target dev='vdc'").unwrap());
        // root + config drive + 2 volumes + 4 spares
        assert_eq!(xml.matches("model='pcie-root-port'").count(), 12);
        // The config drive (no serial) and the root disk are not volumes.
        assert_eq!(
            volumes_from_xml(&xml),
            vec![vol("vdc", "/srv/v/a&b.qcow2", "aaaa-1"), ro.clone()]
        );
        let mut reordered = s.clone();
        reordered.volumes.reverse();
        assert_eq!(reordered.digest(), s.digest());
        let mut plain = s.clone();
        plain.volumes.clear();
        assert_ne!(plain.digest(), s.digest());
        assert!(plain.same_except_volumes(&s));
        plain.memory_mib += 1;
        assert!(!plain.same_except_volumes(&s));
        s.validate_volumes().unwrap();
    }

    #[test]
    fn volumes_parse_from_libvirts_own_formatting() {
        // As `virsh dumpxml` prints a running domain (addresses, aliases, backing store).
        let xml = r#"<domain type='qemu' id='3'>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' discard='unmap'/>
      <source file='/x/root.qcow2' index='2'/>
      <backingStore/>
      <target dev='vda' bus='virtio'/>
      <alias name='virtio-disk0'/>
    </disk>
    <disk type="block" device="disk">
      <driver name="qemu" type="raw" cache="none" io="native"/>
      <source dev="/dev/loop7" index="3"/>
      <backingStore/>
      <target dev="vdc" bus="virtio"/>
      <serial>0123456789abcdef0123</serial>
      <alias name="virtio-disk2"/>
      <address type="pci" domain="0x0000" bus="0x07" slot="0x00" function="0x0"/>
    </disk>
    <disk type='file' device='cdrom'>
      <target dev='sda' bus='sata'/>
      <serial>cd</serial>
    </disk>
  </devices>
</domain>"#;
        let v = volumes_from_xml(xml);
        assert_eq!(
            v,
            vec![VolumeDisk {
                target: "vdc".into(),
                path: "/dev/loop7".into(),
                format: DiskFormat::Raw,
                serial: "0123456789abcdef0123".into(),
                readonly: false,
            }]
        );
    }

    #[test]
    fn volume_checks() {
        let mut s = spec();
        s.volumes = vec![vol("vdb", "/a", "s1")];
        s.validate_volumes().unwrap();
        s.config_drive = Some("/c.iso".into());
        assert!(s.validate_volumes().unwrap_err().contains("config drive"));
        s.volumes = vec![vol("vdc", "/a", "s1"), vol("vdc", "/b", "s2")];
        assert!(s.validate_volumes().is_err());
        s.volumes = vec![vol("vdc", "/a", "s1"), vol("vdd", "/b", "s1")];
        assert!(s.validate_volumes().is_err());
        for bad in ["vda", "sdb", "vdbb", "vd1"] {
            s.volumes = vec![vol(bad, "/a", "s1")];
            assert!(s.validate_volumes().is_err(), "{bad}");
        }
        s.volumes = vec![vol("vdc", "/a", "012345678901234567890")];
        assert!(s.validate_volumes().is_err());
        let uid = Uuid::parse_str("6f1c2a7e-8d7b-4c1e-9a55-0b8e6f2d3c41").unwrap();
        assert_eq!(VolumeDisk::serial_for(uid), "6f1c2a7e-8d7b-4c1e-9");
        use crate::hypervisor::pick_volume_target;
        assert_eq!(pick_volume_target([], false).as_deref(), Some("vdb"));
        assert_eq!(pick_volume_target([], true).as_deref(), Some("vdc"));
        assert_eq!(
            pick_volume_target(["vdb", "vdc"], false).as_deref(),
            Some("vdd")
        );
        let all: Vec<String> = (b'b'..=b'z').map(|c| format!("vd{}", c as char)).collect();
        assert_eq!(
            pick_volume_target(all.iter().map(String::as_str), false),
            None
        );
    }

    #[test]
    fn specs_without_volumes_keep_their_digest() {
        // The JSON form (and so the digest) of a spec without volumes has no `volumes` key.
        let json = serde_json::to_string(&spec()).unwrap();
        assert!(!json.contains("volumes"), "{json}");
    }

    #[test]
    fn digest_is_stable_and_sensitive() {
        let a = spec();
        assert_eq!(a.digest(), spec().digest());
        assert_eq!(render_domain_xml(&a), render_domain_xml(&spec()));
        let mut b = spec();
        b.memory_mib = 512;
        assert_ne!(a.digest(), b.digest());
        let mut c = spec();
        c.kernel_boot.as_mut().unwrap().cmdline.push_str(" x");
        assert_ne!(a.digest(), c.digest());
    }

    #[test]
    fn backup_xml_copies_one_disk_and_excludes_the_others() {
        let xml = "<domain><devices><disk type='file' device='disk'><target dev='vda' bus='virtio'/></disk>\
            <disk type='file' device='cdrom'><target dev='vdb'/></disk>\
            <interface type='bridge'><target dev='tap123'/></interface>\
            <disk type='file' device='disk'><target dev='vdc'/><serial>s</serial></disk></devices></domain>";
        let targets = disk_targets(xml);
        assert_eq!(targets, ["vda", "vdb", "vdc"]);
        let b = render_backup_xml("vdc", std::path::Path::new("/p/.snap-x.part"), &targets);
        assert!(b.contains("<disk name='vda' backup='no'/>"), "{b}");
        assert!(b.contains("<disk name='vdb' backup='no'/>"), "{b}");
        assert!(
            b.contains("<disk name='vdc' backup='yes' type='file'>\n      <driver type='qcow2'/>\n      <target file='/p/.snap-x.part'/>"),
            "{b}"
        );
        assert!(b.starts_with("<domainbackup mode='push'>"), "{b}");
    }
}
