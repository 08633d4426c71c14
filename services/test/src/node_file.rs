//! Building a host from a libvirt "node" document: the built-in default
//! host and `test:///path.xml` custom hosts go through the same code, as in
//! libvirt's testOpenFromFile / testOpenDefault.

use std::path::{Path, PathBuf};

use virtmesh_conf::domain::DomainDef;
use virtmesh_conf::misc::{InterfaceDef, NodeDeviceDef};
use virtmesh_conf::network::NetworkDef;
use virtmesh_conf::storage::{PoolDef, VolDef};
use virtmesh_conf::xml::{self, Element};
use virtmesh_proto::v1::DomainState;
use virtmesh_rpc::{ErrorCode, ErrorDomain, VirtError};

use crate::err::{self, VResult};
use crate::host::{DomainObj, IfaceObj, NetworkObj, NodeInfo, PoolObj, State, VolObj};

/// The default host (libvirt's defaultConnXML, in canonical form for the
/// values libvirt reports back: node devices' vport counts come from sysfs
/// in libvirt, which the test driver leaves at 0).
pub const DEFAULT_NODE_XML: &str = r#"<node>
<domain type='test'>
  <name>test</name>
  <uuid>6695eb01-f6a4-8304-79aa-97f2502e193f</uuid>
  <memory>8388608</memory>
  <currentMemory>2097152</currentMemory>
  <vcpu>2</vcpu>
  <os>
    <type>hvm</type>
  </os>
  <devices>
    <disk type='file' device='disk'>
      <source file='/guest/diskimage1'/>
      <target dev='vda' bus='virtio'/>
      <address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>
    </disk>
    <interface type='network'>
      <mac address='aa:bb:cc:dd:ee:ff'/>
      <source network='default' bridge='virbr0'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x1' function='0x0'/>
    </interface>
    <memballoon model='virtio'>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x2' function='0x0'/>
    </memballoon>
  </devices>
</domain>
<network>
  <name>default</name>
  <uuid>dd8fe884-6c02-601e-7551-cca97df1c5df</uuid>
  <bridge name='virbr0'/>
  <forward/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.2' end='192.168.122.254'/>
    </dhcp>
  </ip>
</network>
<interface type="ethernet" name="eth1">
  <start mode="onboot"/>
  <mac address="aa:bb:cc:dd:ee:ff"/>
  <mtu size="1492"/>
  <protocol family="ipv4">
    <ip address="192.168.0.5" prefix="24"/>
    <route gateway="192.168.0.1"/>
  </protocol>
</interface>
<pool type='dir'>
  <name>default-pool</name>
  <uuid>dfe224cb-28fb-8dd0-c4b2-64eb3f0f4566</uuid>
  <target>
    <path>/default-pool</path>
  </target>
</pool>
<device>
  <name>computer</name>
  <capability type='system'>
    <hardware>
      <vendor>Libvirt</vendor>
      <version>Test driver</version>
      <serial>123456</serial>
      <uuid>11111111-2222-3333-4444-555555555555</uuid>
    </hardware>
    <firmware>
      <vendor>Libvirt</vendor>
      <version>Test Driver</version>
      <release_date>01/22/2007</release_date>
    </firmware>
  </capability>
</device>
<device>
  <name>scsi_host1</name>
  <parent>computer</parent>
  <capability type='scsi_host'>
    <host>1</host>
    <unique_id>0</unique_id>
    <capability type='fc_host'>
      <wwnn>2000000012341234</wwnn>
      <wwpn>1000000012341234</wwpn>
      <fabric_wwn>2000000043214321</fabric_wwn>
    </capability>
    <capability type='vport_ops'>
      <max_vports>0</max_vports>
      <vports>0</vports>
    </capability>
  </capability>
</device>
<device>
  <name>scsi_host2</name>
  <parent>computer</parent>
  <capability type='scsi_host'>
    <host>2</host>
    <unique_id>1</unique_id>
    <capability type='fc_host'>
      <wwnn>2000000056785678</wwnn>
      <wwpn>1000000056785678</wwpn>
      <fabric_wwn>2000000087658765</fabric_wwn>
    </capability>
    <capability type='vport_ops'>
      <max_vports>0</max_vports>
      <vports>0</vports>
    </capability>
  </capability>
</device>
<device>
  <name>scsi_host11</name>
  <parent>scsi_host1</parent>
  <capability type='scsi_host'>
    <host>11</host>
    <unique_id>10</unique_id>
    <capability type='fc_host'>
      <wwnn>2000000034563456</wwnn>
      <wwpn>1000000034563456</wwpn>
      <fabric_wwn>2000000043214321</fabric_wwn>
    </capability>
  </capability>
</device>
</node>
"#;

/// The test driver's domain XML namespace (runstate, transient, ...).
const TEST_NS: &str = "http://libvirt.org/schemas/domain/test";

fn read_failed(path: &Path, e: std::io::Error) -> VirtError {
    VirtError::new(
        ErrorCode::OpenFailed,
        ErrorDomain::Test,
        format!("failed to open file '{}': {e}", path.display()),
    )
}

fn conf_err(e: virtmesh_conf::ConfError) -> VirtError {
    err::conf(e, ErrorDomain::Test)
}

/// Load a node file from disk.
pub fn load_file(path: &str) -> VResult<State> {
    let p = PathBuf::from(path);
    let text = std::fs::read_to_string(&p).map_err(|e| read_failed(&p, e))?;
    build(&text, p.parent())
}

/// An element of the node document, or the file its `file=` names
/// (relative to the node file's directory).
fn resolve(el: &Element, dir: Option<&Path>) -> VResult<Element> {
    let Some(file) = el.attr("file") else {
        return Ok(el.clone());
    };
    let path = match dir {
        Some(d) if !Path::new(file).is_absolute() => d.join(file),
        _ => PathBuf::from(file),
    };
    let text = std::fs::read_to_string(&path).map_err(|e| read_failed(&path, e))?;
    let root = xml::parse(&text).map_err(|e| conf_err(e.into()))?;
    if root.name != el.name {
        return Err(err::conf(
            virtmesh_conf::ConfError::xml(format!(
                "unexpected root element <{}>, expecting <{}>",
                root.name, el.name
            )),
            ErrorDomain::Test,
        ));
    }
    Ok(root)
}

fn parse_u32(node: &Element, name: &str, what: &str) -> VResult<Option<u32>> {
    match node.child_text(name) {
        None => Ok(None),
        Some(t) => t.trim().parse().map(Some).map_err(|_| {
            VirtError::new(
                ErrorCode::XmlError,
                ErrorDomain::Test,
                format!("XML error: invalid node cpu {what} value"),
            )
        }),
    }
}

fn node_info(node: &Element) -> VResult<NodeInfo> {
    let mut info = NodeInfo::default();
    if let Some(cpu) = node.child("cpu") {
        if let Some(v) = parse_u32(cpu, "nodes", "nodes")? {
            info.nodes = v;
        }
        if let Some(v) = parse_u32(cpu, "sockets", "sockets")? {
            info.sockets = v;
        }
        if let Some(v) = parse_u32(cpu, "cores", "cores")? {
            info.cores = v;
        }
        if let Some(v) = parse_u32(cpu, "threads", "threads")? {
            info.threads = v;
        }
        info.cpus = info
            .cores
            .saturating_mul(info.threads)
            .saturating_mul(info.sockets)
            .saturating_mul(info.nodes);
        if let Some(active) = parse_u32(cpu, "active", "active")? {
            info.cpus = info.cpus.min(active);
        }
        if let Some(v) = parse_u32(cpu, "mhz", "mhz")? {
            info.mhz = v;
        }
        if let Some(m) = cpu.child_text("model") {
            info.model = m.trim().to_owned();
        }
    }
    if let Some(mem) = node.child_text("memory") {
        info.memory_kib = mem.trim().parse().map_err(|_| {
            VirtError::new(
                ErrorCode::XmlError,
                ErrorDomain::Test,
                "XML error: invalid node memory value",
            )
        })?;
    }
    Ok(info)
}

/// Pull the test namespace's runtime hints out of a domain element.
fn take_test_ns(el: &mut Element) -> (DomainState, bool, bool) {
    let prefix = el
        .attrs
        .iter()
        .find(|(k, v)| k.starts_with("xmlns:") && v == TEST_NS)
        .map(|(k, _)| k.trim_start_matches("xmlns:").to_owned());
    let mut state = DomainState::Running;
    let mut transient = false;
    let mut managed_save = false;
    if let Some(p) = prefix {
        el.attrs
            .retain(|(k, v)| !(k.starts_with("xmlns:") && v == TEST_NS));
        for child in el.elements() {
            if child.name == format!("{p}:runstate") {
                if let Some(s) = child
                    .text()
                    .trim()
                    .parse::<i32>()
                    .ok()
                    .and_then(|n| DomainState::try_from(n).ok())
                {
                    state = s;
                }
            } else if child.name == format!("{p}:transient") {
                transient = true;
            } else if child.name == format!("{p}:hasmanagedsave") {
                managed_save = true;
            }
        }
        let pre = format!("{p}:");
        el.children
            .retain(|n| !matches!(n, virtmesh_conf::Node::Element(c) if c.name.starts_with(&pre)));
    }
    (state, transient, managed_save)
}

/// Build a host's state from a node document.
pub fn build(text: &str, dir: Option<&Path>) -> VResult<State> {
    let node = xml::parse(text).map_err(|e| conf_err(e.into()))?;
    if node.name != "node" {
        return Err(VirtError::new(
            ErrorCode::XmlError,
            ErrorDomain::Test,
            format!(
                "XML error: unexpected root element <{}>, expecting <node>",
                node.name
            ),
        ));
    }
    let mut st = State::new();
    st.node_info = node_info(&node)?;
    for child in node.elements() {
        match child.name.as_str() {
            "domain" => {
                let mut el = resolve(child, dir)?;
                let (state, transient, managed_save) = take_test_ns(&mut el);
                let def = DomainDef::from_element(el).map_err(conf_err)?;
                let mut obj = DomainObj::new(def, !transient);
                obj.managed_save = managed_save;
                if state != DomainState::Shutoff {
                    obj.id = st.alloc_id();
                    if obj.persistent {
                        obj.new_def = Some(obj.def.clone());
                    }
                    obj.state = state;
                    // libvirt reports domains loaded from the node document
                    // with reason "unknown".
                    obj.reason = 0;
                }
                st.domains.push(obj);
            }
            "network" => {
                let def = NetworkDef::from_element(resolve(child, dir)?).map_err(conf_err)?;
                st.networks.push(NetworkObj {
                    def,
                    active: true,
                    persistent: true,
                    autostart: false,
                });
            }
            "interface" => {
                let def = InterfaceDef::from_element(resolve(child, dir)?).map_err(conf_err)?;
                st.ifaces.push(IfaceObj { def, active: true });
            }
            "pool" => {
                let el = resolve(child, dir)?;
                let def = PoolDef::from_element(el.clone()).map_err(conf_err)?;
                let mut pool = PoolObj::new(def);
                pool.active = true;
                for vol_el in el.children_named("volume") {
                    let vol_el = resolve(vol_el, dir)?;
                    let vdef = VolDef::parse(&vol_el.to_xml()).map_err(conf_err)?;
                    let path = format!("{}/{}", pool.def.target_path(), vdef.name);
                    pool.vols.push(VolObj {
                        def: vdef,
                        path,
                        data: Vec::new(),
                    });
                }
                st.pools.push(pool);
            }
            "device" => {
                let def = NodeDeviceDef::from_element(resolve(child, dir)?).map_err(conf_err)?;
                st.nodedevs.push(def);
            }
            _ => {}
        }
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_host_builds() {
        let st = build(DEFAULT_NODE_XML, None).unwrap();
        assert_eq!(st.domains.len(), 1);
        assert_eq!(st.domains[0].id, 1);
        assert_eq!(st.next_dom_id, 2);
        assert_eq!(st.networks.len(), 1);
        assert_eq!(st.pools.len(), 1);
        assert_eq!(st.ifaces.len(), 1);
        assert_eq!(st.nodedevs.len(), 4);
        assert_eq!(st.node_info, NodeInfo::default());
    }

    #[test]
    fn custom_node_file_with_includes() {
        let dir = std::env::temp_dir().join(format!("vm-node-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("dom.xml"),
            "<domain type='test'><name>fromfile</name><memory>1024</memory><os><type>hvm</type></os></domain>",
        )
        .unwrap();
        let node = "<node><cpu><mhz>6000</mhz><model>i986</model><active>50</active><nodes>4</nodes><sockets>4</sockets><cores>4</cores><threads>2</threads></cpu><memory>8192000</memory>\
<domain file='dom.xml'/>\
<domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test'><name>off</name><memory>1024</memory><os><type>hvm</type></os><test:runstate>5</test:runstate></domain>\
<pool type='dir'><name>p</name><target><path>/p</path></target><volume><name>v</name><capacity>100</capacity></volume></pool></node>";
        let path = dir.join("node.xml");
        std::fs::write(&path, node).unwrap();
        let st = load_file(path.to_str().unwrap()).unwrap();
        assert_eq!(st.node_info.cpus, 50);
        assert_eq!(st.node_info.mhz, 6000);
        assert_eq!(st.node_info.model, "i986");
        assert_eq!(st.domains[0].name(), "fromfile");
        assert!(st.domains[0].is_active());
        assert!(!st.domains[1].is_active());
        assert_eq!(st.pools[0].vols[0].path, "/p/v");
        std::fs::remove_dir_all(&dir).ok();
    }
}
