//! Changing a device in place (virDomainUpdateDeviceFlags), live and/or
//! in the config, for what libvirt's qemu driver changes live:
//! - the medium of a CD-ROM or floppy (`virsh change-media`): tray
//!   opened, medium removed, its block nodes deleted, the new image's
//!   nodes added and inserted, tray closed;
//! - an interface's link state (`set_link`, `virsh domif-setlink`) and
//!   its `<bandwidth>` on the host link (tc);
//! - a VNC password (`set_password`).
//!
//! In the config the device is replaced (disks by target, NICs by MAC,
//! graphics by type), keeping the address and alias it had.

use super::hotplug::{del_nodes, free_node, not_found, top_node, with_parse_defaults};
use super::tune::targets;
use super::*;
use crate::blockdev;
use serde_json::json;
use virtmesh_conf::Element;
use virtmesh_conf::bandwidth::{Bandwidth, BandwidthContext, param};

/// How long a guest may hold a locked tray before an unforced change
/// gives up (libvirt retries CHANGE_MEDIA_RETRIES times).
const TRAY_RETRIES: usize = 10;

fn unsupported_op(msg: String) -> VirtError {
    err::qemu(
        ErrorCode::OperationUnsupported,
        format!("Operation not supported: {msg}"),
    )
}

/// The device `new` replaces in `def` (disks by target, NICs by MAC,
/// graphics by type).
fn find_for_update<'a>(def: &'a DomainDef, new: &Element) -> Option<&'a Element> {
    if new.name == "graphics" {
        return def
            .devices()
            .into_iter()
            .find(|g| g.name == "graphics" && g.attr("type") == new.attr("type"));
    }
    def.find_device(new)
}

/// `new` with what the old device had and the update does not say:
/// address, alias, and (NICs) the host link's name.
fn carry_over(old: &Element, new: &Element) -> Element {
    let mut out = new.clone();
    for kind in ["target", "alias", "address"] {
        if out.child(kind).is_none()
            && let Some(e) = old.child(kind)
        {
            out.children.push(virtmesh_conf::Node::Element(e.clone()));
        }
    }
    if out.name == "disk" {
        virtmesh_conf::devices::sort_device(&mut out, virtmesh_conf::devices::DISK_ORDER);
    } else if out.name == "interface" {
        virtmesh_conf::devices::sort_device(&mut out, virtmesh_conf::devices::INTERFACE_ORDER);
    }
    out
}

fn link_up(iface: &Element) -> bool {
    iface.child("link").and_then(|l| l.attr("state")) != Some("down")
}

/// What of an interface's definition cannot change while it runs.
fn fixed_part(iface: &Element) -> (Option<&str>, Vec<(String, String)>, Option<&str>) {
    let source = iface
        .child("source")
        .map(|s| {
            s.attrs
                .iter()
                .filter(|(k, _)| k != "portid" && k != "bridge")
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let model = iface.child("model").and_then(|m| m.attr("type"));
    (iface.attr("type"), source, model)
}

impl QemuDriver {
    pub async fn update_device(
        &self,
        r: Option<&pb::ObjectRef>,
        xml: &str,
        impact: Option<&pb::Impact>,
        force: bool,
    ) -> Result<()> {
        let dev = with_parse_defaults(virtmesh_conf::domain::parse_device(xml).map_err(err::conf)?);
        let dom = self.find(r)?;
        let _job = dom.job.lock().await;
        let (t, live) = {
            let st = dom.lock();
            let t = targets(impact, &st)?;
            (t, st.live.as_ref().map(|l| (l.qmp.clone(), l.def.clone())))
        };
        if !matches!(dev.name.as_str(), "disk" | "interface" | "graphics") {
            let which = if t.live { "live" } else { "persistent" };
            return Err(unsupported_op(format!(
                "{which} update of device '{}' is not supported",
                dev.name
            )));
        }
        if t.config {
            let st = dom.lock();
            let cfg = st
                .config
                .as_ref()
                .ok_or_else(|| err::internal("no config"))?;
            if find_for_update(cfg, &dev).is_none() {
                return Err(not_found(&dev));
            }
        }
        if t.live
            && let Some((qmp, mut def)) = live
        {
            let old = find_for_update(&def, &dev)
                .cloned()
                .ok_or_else(|| not_found(&dev))?;
            let updated = match dev.name.as_str() {
                "disk" => self.update_disk(&qmp, &old, &dev, force).await?,
                "interface" => self.update_interface(&qmp, &old, &dev).await?,
                _ => update_graphics(&qmp, &old, &dev).await?,
            };
            def.replace_device(&old, updated);
            self.update_live(&dom, |l| {
                l.def = def;
            });
        }
        if t.config {
            let mut st = dom.lock();
            if let Some(mut cfg) = st.config.clone()
                && let Some(old) = find_for_update(&cfg, &dev).cloned()
            {
                let new = carry_over(&old, &dev);
                cfg.replace_device(&old, new);
                self.save_config(&mut st, cfg)?;
            }
        }
        Ok(())
    }

    /// qemuDomainChangeDiskLive: only a removable drive's medium changes.
    async fn update_disk(
        &self,
        qmp: &crate::qmp::Qmp,
        old: &Element,
        new: &Element,
        force: bool,
    ) -> Result<Element> {
        let merged = carry_over(old, new);
        if blockdev::disk_source(old) == blockdev::disk_source(new) {
            return Ok(merged);
        }
        if !matches!(old.attr("device"), Some("cdrom" | "floppy")) {
            return Err(unsupported_op(
                "disk source can be changed only in removable drives".into(),
            ));
        }
        let id = blockdev::live_disk_id(old)
            .ok_or_else(|| err::internal("missing disk device alias name"))?;
        let old_top = top_node(qmp, &id).await;
        qmp.execute_raw("blockdev-open-tray", json!({"id": id, "force": force}))
            .await
            .map_err(err::qmp)?;
        // The guest may hold the tray shut a moment (or for good).
        let mut removed = Err(err::internal("unreachable"));
        for _ in 0..TRAY_RETRIES {
            removed = qmp
                .execute_raw("blockdev-remove-medium", json!({"id": id}))
                .await
                .map(|_| ())
                .map_err(err::qmp);
            if removed.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        removed.map_err(|e| {
            err::qemu(
                ErrorCode::OperationFailed,
                format!("operation failed: Unable to eject media: {}", e.message),
            )
        })?;
        if let Some(top) = old_top {
            del_nodes(qmp, &top).await;
        }
        if blockdev::disk_source(new).is_some() {
            let n = free_node(qmp).await?;
            let (storage, format) = blockdev::node_names(n, &merged);
            let mut added = Vec::new();
            let inserted = async {
                for (obj, node) in blockdev::blockdev_objects(n, &merged).iter().zip(
                    [Some(storage.clone()), format.clone()]
                        .into_iter()
                        .flatten(),
                ) {
                    let v: serde_json::Value = serde_json::from_str(obj)
                        .map_err(|e| err::internal(format!("bad JSON we built: {e}")))?;
                    qmp.execute_raw("blockdev-add", v).await.map_err(err::qmp)?;
                    added.push(node);
                }
                let top = format.clone().unwrap_or_else(|| storage.clone());
                qmp.execute_raw(
                    "blockdev-insert-medium",
                    json!({"id": id, "node-name": top}),
                )
                .await
                .map_err(err::qmp)?;
                Ok::<(), VirtError>(())
            }
            .await;
            if let Err(e) = inserted {
                for node in added.iter().rev() {
                    let _ = qmp
                        .execute_raw("blockdev-del", json!({"node-name": node}))
                        .await;
                }
                return Err(e);
            }
        }
        qmp.execute_raw("blockdev-close-tray", json!({"id": id}))
            .await
            .map_err(err::qmp)?;
        Ok(merged)
    }

    /// qemuDomainChangeNet, for what can change under a running guest:
    /// the link state and the QoS on the host link.
    async fn update_interface(
        &self,
        qmp: &crate::qmp::Qmp,
        old: &Element,
        new: &Element,
    ) -> Result<Element> {
        if fixed_part(old) != fixed_part(new) {
            return Err(unsupported_op(format!(
                "cannot change the type, source or model of network interface {} of a running domain (only its link state and bandwidth)",
                crate::hostnet::mac_of(old)
            )));
        }
        let mut updated = old.clone();
        if link_up(old) != link_up(new) {
            let alias = old
                .child("alias")
                .and_then(|a| a.attr("name"))
                .ok_or_else(|| err::internal("missing network device alias name"))?;
            qmp.execute_raw("set_link", json!({"name": alias, "up": link_up(new)}))
                .await
                .map_err(err::qmp)?;
            updated.remove_children("link");
            if let Some(l) = new.child("link") {
                updated
                    .children
                    .push(virtmesh_conf::Node::Element(l.clone()));
            }
        }
        if old.child("bandwidth") != new.child("bandwidth") {
            let ctx = BandwidthContext::interface(false);
            let bw = Bandwidth::of(new, ctx).map_err(err::conf)?;
            shape_live(old, bw.as_ref()).await?;
            set_bandwidth_el(&mut updated, bw.as_ref());
        }
        virtmesh_conf::devices::sort_device(&mut updated, virtmesh_conf::devices::INTERFACE_ORDER);
        Ok(updated)
    }

    /// virDomainGetInterfaceParameters: the interface's bandwidth as
    /// libvirt's seven typed parameters, from the live definition (or,
    /// with `config` alone, the persistent one).
    pub fn interface_parameters(
        &self,
        r: Option<&pb::ObjectRef>,
        device: &str,
        impact: Option<&pb::Impact>,
    ) -> Result<Vec<(&'static str, u64)>> {
        let dom = self.find(r)?;
        let st = dom.lock();
        let t = targets(impact, &st)?;
        let def = match (&st.live, t.live || !t.config) {
            (Some(l), true) => &l.def,
            _ => st
                .config
                .as_ref()
                .ok_or_else(|| err::internal("no config"))?,
        };
        let iface = find_interface(def, device)?;
        let ctx = BandwidthContext::interface(iface.attr("type") == Some("network"));
        let bw = Bandwidth::of(iface, ctx)
            .map_err(err::conf)?
            .unwrap_or_default();
        let (i, o) = (
            bw.inbound.unwrap_or_default(),
            bw.outbound.unwrap_or_default(),
        );
        Ok(vec![
            (param::IN_AVERAGE, i.average),
            (param::IN_PEAK, i.peak),
            (param::IN_BURST, i.burst),
            (param::IN_FLOOR, i.floor),
            (param::OUT_AVERAGE, o.average),
            (param::OUT_PEAK, o.peak),
            (param::OUT_BURST, o.burst),
        ])
    }

    /// virDomainSetInterfaceParameters: the given fields merged into the
    /// interface's bandwidth (an average of 0 clears that direction), on
    /// the host link and/or in the config.
    pub async fn set_interface_parameters(
        &self,
        r: Option<&pb::ObjectRef>,
        device: &str,
        params: &[(String, u64)],
        impact: Option<&pb::Impact>,
    ) -> Result<()> {
        let dom = self.find(r)?;
        let _job = dom.job.lock().await;
        let merge = |iface: &Element| {
            let ctx = BandwidthContext::interface(iface.attr("type") == Some("network"));
            let old = Bandwidth::of(iface, ctx).map_err(err::conf)?;
            Bandwidth::with_params(old, params.iter().map(|(k, v)| (k.as_str(), *v))).map_err(
                |other| {
                    err::qemu(
                        ErrorCode::ArgumentUnsupported,
                        format!("argument unsupported: parameter '{other}' not supported"),
                    )
                },
            )
        };
        let (t, live_def) = {
            let st = dom.lock();
            let t = targets(impact, &st)?;
            (t, st.live.as_ref().map(|l| l.def.clone()))
        };
        if t.live
            && let Some(mut def) = live_def
        {
            let old = find_interface(&def, device)?.clone();
            let bw = merge(&old)?;
            shape_live(&old, bw.as_ref()).await?;
            let mut updated = old.clone();
            set_bandwidth_el(&mut updated, bw.as_ref());
            def.replace_device(&old, updated);
            self.update_live(&dom, |l| {
                l.def = def;
            });
        }
        if t.config {
            let mut st = dom.lock();
            if let Some(mut cfg) = st.config.clone() {
                let old = find_interface(&cfg, device)?.clone();
                let bw = merge(&old)?;
                let mut updated = old.clone();
                set_bandwidth_el(&mut updated, bw.as_ref());
                cfg.replace_device(&old, updated);
                self.save_config(&mut st, cfg)?;
            }
        }
        Ok(())
    }
}

/// virDomainNetFind: an interface by MAC or host device name.
fn find_interface<'a>(def: &'a DomainDef, device: &str) -> Result<&'a Element> {
    let by_mac = virtmesh_util::netlink::parse_mac(device).is_some();
    def.devices()
        .into_iter()
        .find(|d| {
            d.name == "interface"
                && if by_mac {
                    crate::hostnet::mac_of(d).eq_ignore_ascii_case(device)
                } else {
                    d.child("target").and_then(|t| t.attr("dev")) == Some(device)
                }
        })
        .ok_or_else(|| {
            err::qemu(
                ErrorCode::InvalidArg,
                format!("invalid argument: '{device}' is not a known interface"),
            )
        })
}

/// An interface's new limits on its running host link (cleared with
/// `None`), as at start: bridge taps swapped, macvtap/ethernet not.
async fn shape_live(iface: &Element, bw: Option<&Bandwidth>) -> Result<()> {
    if iface.attr("type") == Some("network") {
        return Err(unsupported_op(
            "changing the bandwidth of an interface of type 'network' (its network port's) is not implemented".into(),
        ));
    }
    let ifname = iface
        .child("target")
        .and_then(|t| t.attr("dev"))
        .ok_or_else(|| err::internal("interface has no host link to shape"))?;
    let shares_view = matches!(iface.attr("type"), Some("direct" | "ethernet"));
    crate::hostnet::shape_link(ifname, bw, shares_view)
        .await
        .map_err(VirtError::from)
}

/// Replace an interface's `<bandwidth>` (none with `None`).
fn set_bandwidth_el(iface: &mut Element, bw: Option<&Bandwidth>) {
    iface.remove_children("bandwidth");
    if let Some(bw) = bw {
        iface
            .children
            .push(virtmesh_conf::Node::Element(bw.to_element(None)));
    }
    virtmesh_conf::devices::sort_device(iface, virtmesh_conf::devices::INTERFACE_ORDER);
}

/// qemuDomainChangeGraphics for VNC: a new password takes effect at once.
async fn update_graphics(qmp: &crate::qmp::Qmp, old: &Element, new: &Element) -> Result<Element> {
    if old.attr("type") != Some("vnc") {
        return Err(unsupported_op(format!(
            "live update of {} graphics is not supported",
            old.attr("type").unwrap_or_default()
        )));
    }
    let mut updated = old.clone();
    let changed = |k: &str| old.attr(k) != new.attr(k);
    if changed("passwd") || changed("passwdValidTo") {
        crate::graphics::set_password(qmp, new)
            .await
            .map_err(err::qmp)?;
        for k in ["passwd", "passwdValidTo"] {
            match new.attr(k) {
                Some(v) => updated.set_attr(k, v),
                None => {
                    updated.remove_attr(k);
                }
            }
        }
    }
    Ok(updated)
}
