//! Hot-plug and unplug of disks and interfaces (virDomainAttachDeviceFlags,
//! virDomainDetachDeviceFlags), live and/or in the config. Live: disks are
//! `blockdev-add` + `device_add`, unplugged by `device_del`, waiting for
//! DEVICE_DELETED, then `blockdev-del`; interfaces get their host link
//! (see `hostnet`) + `netdev_add` + `device_add`. A failed hot-plug undoes
//! what it did, and removes only the links it created.

use super::tune::targets;
use super::*;
use crate::blockdev;
use serde_json::Value;
use virtmesh_conf::Element;

/// How long an unplug may take before we report it unfinished.
const UNPLUG_WAIT: Duration = Duration::from_secs(5);

fn unsupported(dev: &Element) -> VirtError {
    err::qemu(
        ErrorCode::ConfigUnsupported,
        format!(
            "unsupported configuration: live attach/detach of device <{}> of this kind is not supported by the qemu driver yet",
            dev.name
        ),
    )
}

/// libvirt's parse-time defaults apply to a device document as to a
/// definition: a NIC without `<mac>` gets a generated one (QEMU refuses an
/// empty `mac=`), one without `<model>` the default model. The same
/// element then goes to the live guest and the config.
pub(super) fn with_parse_defaults(dev: Element) -> Element {
    if dev.name != "interface" {
        return dev;
    }
    let mut holder = Element::new("devices");
    holder.children.push(virtmesh_conf::Node::Element(dev));
    crate::devices::normalize_interfaces(&mut holder);
    match holder.children.pop() {
        Some(virtmesh_conf::Node::Element(e)) => e,
        // normalize_interfaces edits the element in place; it is still
        // the only child.
        _ => Element::new("interface"),
    }
}

fn parse_json(s: &str) -> Result<Value> {
    serde_json::from_str(s).map_err(|e| err::internal(format!("bad JSON we built: {e}")))
}

impl QemuDriver {
    /// virDomainQemuMonitorCommand: one QMP command on the guest's
    /// monitor (`{"execute": ..., "arguments": ...}`), its `return` value.
    pub async fn monitor_command(&self, r: Option<&pb::ObjectRef>, cmd: &str) -> Result<Value> {
        let dom = self.find(r)?;
        let qmp = self.active(&dom)?;
        let v: Value = serde_json::from_str(cmd).map_err(|e| {
            err::qemu(
                ErrorCode::InvalidArg,
                format!("invalid argument: not a QMP command: {e}"),
            )
        })?;
        let name = v.get("execute").and_then(Value::as_str).ok_or_else(|| {
            err::qemu(
                ErrorCode::InvalidArg,
                "invalid argument: QMP command without 'execute'",
            )
        })?;
        let args = v.get("arguments").cloned().unwrap_or(Value::Null);
        qmp.execute_raw(name, args).await.map_err(err::qmp)
    }

    pub async fn attach_device(
        &self,
        r: Option<&pb::ObjectRef>,
        xml: &str,
        impact: Option<&pb::Impact>,
    ) -> Result<()> {
        let dev = with_parse_defaults(virtmesh_conf::domain::parse_device(xml).map_err(err::conf)?);
        if !matches!(dev.name.as_str(), "disk" | "interface") || !crate::devices::supported(&dev) {
            return Err(unsupported(&dev));
        }
        let dom = self.find(r)?;
        let _job = dom.job.lock().await;
        let (t, live) = {
            let st = dom.lock();
            let t = targets(impact, &st)?;
            let live = st
                .live
                .as_ref()
                .map(|l| (l.qmp.clone(), l.def.clone(), l.links.clone()));
            (t, live)
        };
        if t.config {
            let st = dom.lock();
            if let Some(cfg) = &st.config
                && cfg.find_device(&dev).is_some()
            {
                return Err(duplicate(&dev));
            }
        }
        if t.live
            && let Some((qmp, mut def, mut links)) = live
        {
            if def.find_device(&dev).is_some() {
                return Err(duplicate(&dev));
            }
            let (placed, created) = self.plug(&dom.uuid, &qmp, &def, dev.clone()).await?;
            def.push_device(placed);
            links.extend(created);
            self.update_live(&dom, |l| {
                l.def = def;
                l.links = links;
            });
        }
        if t.config {
            let mut st = dom.lock();
            if let Some(mut cfg) = st.config.clone() {
                let mut d = dev;
                if let Some(a) = cfg
                    .devices_el()
                    .and_then(|ds| crate::devices::hotplug_address(ds, &d, cfg.is_q35()))
                {
                    d.remove_children("address");
                    d.children.push(virtmesh_conf::Node::Element(a));
                }
                cfg.push_device(d);
                self.save_config(&mut st, cfg)?;
            }
        }
        Ok(())
    }

    /// Plug `dev` into the running guest; returns the device as placed
    /// (address, alias, host link) and the links created for it.
    async fn plug(
        &self,
        uuid: &str,
        qmp: &Qmp,
        def: &DomainDef,
        mut dev: Element,
    ) -> Result<(Element, Vec<crate::hostnet::OwnedLink>)> {
        let q35 = def.is_q35();
        let devices = def
            .devices_el()
            .ok_or_else(|| err::internal("domain has no devices"))?;
        let addr = crate::devices::hotplug_address(devices, &dev, q35).ok_or_else(|| {
            err::qemu(
                ErrorCode::InternalError,
                "internal error: No more available PCI slots",
            )
        })?;
        dev.remove_children("address");
        dev.children.push(virtmesh_conf::Node::Element(addr));
        let loc = crate::devices::bus_addr(&dev, q35);
        if dev.name == "disk" {
            let id = blockdev::disk_id(&dev).ok_or_else(|| unsupported(&dev))?;
            let n = free_node(qmp).await?;
            let mut added: Vec<String> = Vec::new();
            let (storage, format) = blockdev::node_names(n, &dev);
            let result = async {
                for (obj, node) in blockdev::blockdev_objects(n, &dev).iter().zip(
                    [Some(storage.clone()), format.clone()]
                        .into_iter()
                        .flatten(),
                ) {
                    qmp.execute_raw("blockdev-add", parse_json(obj)?)
                        .await
                        .map_err(err::qmp)?;
                    added.push(node);
                }
                let device =
                    blockdev::disk_device(n, &dev, loc, None).ok_or_else(|| unsupported(&dev))?;
                qmp.execute_raw("device_add", parse_json(&device)?)
                    .await
                    .map_err(err::qmp)?;
                Ok::<(), VirtError>(())
            }
            .await;
            if let Err(e) = result {
                for node in added.iter().rev() {
                    let _ = qmp
                        .execute_raw("blockdev-del", serde_json::json!({"node-name": node}))
                        .await;
                }
                return Err(e);
            }
            crate::def::set_alias(&mut dev, &id);
            return Ok((dev, Vec::new()));
        }
        // An interface: the next free netN.
        let used: Vec<String> = devices
            .elements()
            .filter(|d| d.name == "interface")
            .filter_map(crate::def::alias_of)
            .collect();
        let i = (0..)
            .find(|i| !used.contains(&format!("net{i}")))
            .unwrap_or(0);
        let owner = crate::hostnet::Owner {
            uuid,
            name: &def.name(),
            run_dir: &self.inner.cfg.run_dir,
        };
        let net = crate::hostnet::prepare(&self.inner.net, &[&dev], owner)
            .await
            .map_err(VirtError::from)?;
        let created = net.created.clone();
        let result = async {
            let backend = net
                .backends
                .first()
                .ok_or_else(|| err::internal("no backend prepared"))?;
            let mut netdev = parse_json(&blockdev::netdev_json(i, backend, None))?;
            if let crate::hostnet::Backend::Fd(f) = backend {
                use std::os::fd::AsFd;
                let fdname = format!("fd-net{i}");
                qmp.getfd(&fdname, f.as_fd()).await.map_err(err::qmp)?;
                netdev["fd"] = fdname.into();
            }
            qmp.execute_raw("netdev_add", netdev)
                .await
                .map_err(err::qmp)?;
            let device = blockdev::nic_device(i, &dev, loc, None);
            if let Err(e) = qmp.execute_raw("device_add", parse_json(&device)?).await {
                let _ = qmp
                    .execute_raw(
                        "netdev_del",
                        serde_json::json!({"id": format!("hostnet{i}")}),
                    )
                    .await;
                return Err(err::qmp(e));
            }
            Ok::<(), VirtError>(())
        }
        .await;
        if let Err(e) = result {
            crate::hostnet::release(&self.inner.net, &created).await;
            return Err(e);
        }
        if let Some(Some(t)) = net.targets.first() {
            dev.child_or_insert("target").set_attr("dev", t.as_str());
            dev.sort_children(&["mac", "source", "target", "model", "*"]);
        }
        if let Some(Some(port)) = net.ports.first() {
            crate::netport::show_port(&mut dev, port);
        }
        crate::def::set_alias(&mut dev, &format!("net{i}"));
        Ok((dev, created))
    }

    pub async fn detach_device(
        &self,
        r: Option<&pb::ObjectRef>,
        xml: &str,
        impact: Option<&pb::Impact>,
    ) -> Result<()> {
        let dev = virtmesh_conf::domain::parse_device(xml).map_err(err::conf)?;
        if !matches!(dev.name.as_str(), "disk" | "interface") {
            return Err(unsupported(&dev));
        }
        let dom = self.find(r)?;
        let _job = dom.job.lock().await;
        let (t, live) = {
            let st = dom.lock();
            let t = targets(impact, &st)?;
            let live = st.live.as_ref().map(|l| (l.qmp.clone(), l.def.clone()));
            (t, live)
        };
        if t.config {
            let st = dom.lock();
            if st
                .config
                .as_ref()
                .and_then(|c| c.find_device(&dev))
                .is_none()
            {
                return Err(not_found(&dev));
            }
        }
        if t.live
            && let Some((qmp, def)) = live
        {
            let found = def
                .find_device(&dev)
                .cloned()
                .ok_or_else(|| not_found(&dev))?;
            self.unplug(&dom, &qmp, &found).await?;
        }
        if t.config {
            let mut st = dom.lock();
            if let Some(mut cfg) = st.config.clone() {
                cfg.remove_device(&dev);
                self.save_config(&mut st, cfg)?;
            }
        }
        Ok(())
    }

    /// Drop an unplugged device from the live state; returns the links of
    /// ours it used, for release.
    fn forget_device(&self, dom: &Dom, found: &Element) -> Vec<crate::hostnet::OwnedLink> {
        let mut released = Vec::new();
        self.update_live(dom, |l| {
            l.def.remove_device(found);
            // The link of this NIC, if we created it.
            if found.name == "interface"
                && let Some(t) = found.child("target").and_then(|t| t.attr("dev"))
            {
                released = l.links.iter().filter(|k| k.name == t).cloned().collect();
                l.links.retain(|k| k.name != t);
            }
        });
        released
    }

    /// `device_del`, then wait for DEVICE_DELETED. When the guest ejects
    /// in time, the backend and links go now; when it does not, the
    /// request stays sent (libvirt's semantics: success, the device goes
    /// when the guest lets it) and a task finishes the job on a late
    /// DEVICE_DELETED.
    async fn unplug(&self, dom: &Arc<Dom>, qmp: &Arc<Qmp>, dev: &Element) -> Result<()> {
        let id = crate::def::alias_of(dev).ok_or_else(|| {
            err::qemu(
                ErrorCode::OperationFailed,
                "operation failed: device has no alias to unplug it by",
            )
        })?;
        // The disk's top node, before the device that holds it goes.
        let top = if dev.name == "disk" {
            top_node(qmp, &id).await
        } else {
            None
        };
        let mut events = qmp.subscribe();
        qmp.execute_raw("device_del", serde_json::json!({"id": id}))
            .await
            .map_err(err::qmp)?;
        let in_time = tokio::time::timeout(UNPLUG_WAIT, wait_deleted(&mut events, &id))
            .await
            .unwrap_or(false);
        if in_time {
            self.finish_unplug(dom, qmp, dev, &id, top).await;
            return Ok(());
        }
        tracing::info!("device {id}: unplug requested, waiting for the guest");
        let (this, dom, qmp, dev) = (self.clone(), dom.clone(), qmp.clone(), dev.clone());
        tokio::spawn(async move {
            // False: the monitor closed, the guest is gone, and stopping
            // it released everything already.
            let deleted = tokio::select! {
                d = wait_deleted(&mut events, &id) => d,
                // Our own Arc keeps a sender alive: watch the monitor too.
                () = qmp.closed() => false,
            };
            if deleted {
                this.finish_unplug(&dom, &qmp, &dev, &id, top).await;
            }
        });
        Ok(())
    }

    /// After DEVICE_DELETED: drop the block nodes or netdev, forget the
    /// device and release the link of ours it used.
    async fn finish_unplug(
        &self,
        dom: &Arc<Dom>,
        qmp: &Qmp,
        dev: &Element,
        id: &str,
        top: Option<String>,
    ) {
        if let Some(top) = top {
            del_nodes(qmp, &top).await;
        } else if let Some(n) = id.strip_prefix("net") {
            let _ = qmp
                .execute_raw(
                    "netdev_del",
                    serde_json::json!({"id": format!("hostnet{n}")}),
                )
                .await;
        }
        let released = self.forget_device(dom, dev);
        crate::hostnet::release(&self.inner.net, &released).await;
    }
}

/// Until DEVICE_DELETED for `id` (true) or the monitor's end (false).
pub(super) async fn wait_deleted(
    events: &mut tokio::sync::broadcast::Receiver<crate::qmp::QmpEvent>,
    id: &str,
) -> bool {
    loop {
        match events.recv().await {
            Ok(ev)
                if ev.name == "DEVICE_DELETED"
                    && ev.data.get("device").and_then(Value::as_str) == Some(id) =>
            {
                return true;
            }
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return false,
        }
    }
}

fn duplicate(dev: &Element) -> VirtError {
    let what = match dev.name.as_str() {
        "disk" => format!(
            "target {} already exists",
            dev.child("target")
                .and_then(|t| t.attr("dev"))
                .unwrap_or_default()
        ),
        _ => format!(
            "interface with MAC {} already exists",
            crate::hostnet::mac_of(dev)
        ),
    };
    err::qemu(
        ErrorCode::OperationFailed,
        format!("operation failed: {what}"),
    )
}

pub(super) fn not_found(dev: &Element) -> VirtError {
    match dev.name.as_str() {
        "disk" => err::qemu(
            ErrorCode::DeviceMissing,
            format!(
                "device not found: no target device {}",
                dev.child("target")
                    .and_then(|t| t.attr("dev"))
                    .unwrap_or_default()
            ),
        ),
        _ => err::qemu(
            ErrorCode::DeviceMissing,
            format!(
                "device not found: no device matching MAC address {} found",
                crate::hostnet::mac_of(dev)
            ),
        ),
    }
}

/// Delete a disk's block nodes: `top`, and its storage node below when
/// `top` is a format node. Failures are ignored: a node QEMU no longer
/// has is gone already.
pub(super) async fn del_nodes(qmp: &Qmp, top: &str) {
    let _ = qmp
        .execute_raw("blockdev-del", serde_json::json!({"node-name": top}))
        .await;
    if let Some(storage) = top.strip_suffix("-format") {
        let _ = qmp
            .execute_raw(
                "blockdev-del",
                serde_json::json!({"node-name": format!("{storage}-storage")}),
            )
            .await;
    }
}

/// The first `libvirt-N-*` node number QEMU does not use yet.
pub(super) async fn free_node(qmp: &Qmp) -> Result<usize> {
    let nodes = qmp
        .execute_raw("query-named-block-nodes", serde_json::json!({"flat": true}))
        .await
        .map_err(err::qmp)?;
    let names: Vec<String> = nodes
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| {
                    n.get("node-name")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default();
    Ok((1..)
        .find(|n| {
            !names
                .iter()
                .any(|x| x.starts_with(&format!("libvirt-{n}-")))
        })
        .unwrap_or(1000))
}

/// The node a disk device reads (`query-block`'s `inserted.node-name`).
pub(super) async fn top_node(qmp: &Qmp, id: &str) -> Option<String> {
    let blocks = qmp.execute_raw("query-block", Value::Null).await.ok()?;
    blocks.as_array()?.iter().find_map(|b| {
        let qdev = b.get("qdev").and_then(Value::as_str)?;
        let ours = qdev == id || qdev.contains(&format!("/{id}/"));
        ours.then(|| {
            b.get("inserted")?
                .get("node-name")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hotplugged_nic_gets_libvirts_defaults() {
        let dev = virtmesh_conf::domain::parse_device(
            "<interface type='bridge'><source bridge='br0'/></interface>",
        )
        .expect("parses");
        let dev = with_parse_defaults(dev);
        let mac = dev
            .child("mac")
            .and_then(|m| m.attr("address"))
            .expect("a generated MAC");
        assert!(mac.starts_with("52:54:00:") && mac.len() == 17, "{mac}");
        assert_eq!(
            dev.child("model").and_then(|m| m.attr("type")),
            Some("rtl8139")
        );
        // A given MAC and a disk are left alone.
        let given = with_parse_defaults(
            virtmesh_conf::domain::parse_device(
                "<interface type='user'><mac address='52:54:00:00:00:07'/><model type='virtio'/></interface>",
            )
            .expect("parses"),
        );
        assert_eq!(
            given.child("mac").and_then(|m| m.attr("address")),
            Some("52:54:00:00:00:07")
        );
        let disk = "<disk type='file'><source file='/x'/><target dev='vdb'/></disk>";
        let d = virtmesh_conf::domain::parse_device(disk).expect("parses");
        assert_eq!(with_parse_defaults(d.clone()), d);
    }
}
