//! Domain XML rendering: a pure, deterministic function of a [`DomainSpec`], so it can be
//! tested without libvirt and compared by digest.
//!
//! What the XML gives every Cirrus domain, and why:
//! - name `cirrus-<server uid>` and uuid = server uid: deterministic, never duplicated;
//! - `type='kvm'` or `'qemu'` from the spec (the driver checks KVM really works);
//! - a q35 machine with four spare `pcie-root-port` controllers beyond the devices it starts
//!   with, so disks and NICs can be hot-plugged later ("No more available PCI slots" otherwise);
//! - the root disk as virtio `vda`, optional direct kernel boot;
//! - the serial console appended to a file (also the `<console>`), read by `console-log`;
//! - OVS-bridged virtio NICs when the spec has any;
//! - `<metadata>` in the Cirrus namespace with the owning server's uid, project, name and the
//!   spec digest, so orphans can be traced and `domain_ensure` can skip identical redefines.

use std::fmt::Write as _;
use std::path::Path;

use super::{DomainSpec, VirtType};

/// XML namespace of the Cirrus `<metadata>` element.
pub const METADATA_NAMESPACE: &str = "https://cirrus.dev/xmlns/libvirt-domain/1";

/// Number of empty `pcie-root-port` controllers kept for hot-plug.
pub const SPARE_ROOT_PORTS: usize = 4;

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
    // One root port per PCIe device present at boot (root disk, config drive, NICs), plus the
    // spares for hot-plug.
    let at_boot = 1 + usize::from(spec.config_drive.is_some()) + spec.nics.len();
    for _ in 0..(at_boot + SPARE_ROOT_PORTS) {
        let _ = writeln!(x, "    <controller type='pci' model='pcie-root-port'/>");
    }
    let _ = writeln!(x, "    <controller type='usb' model='none'/>");
    let _ = writeln!(x, "    <memballoon model='none'/>");
    let _ = writeln!(x, "  </devices>");
    let _ = writeln!(x, "</domain>");
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
        assert_eq!(xml.matches("model='pcie-root-port'").count(), 7);
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
}
