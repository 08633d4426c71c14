//! Graphics on QEMU's command line (`-vnc`, `-spice`, `-display
//! egl-headless`) and the autoport allocation of a real start: the first
//! free TCP port from 5900 on the listen address, recorded in the live
//! definition (`port='5900' autoport='yes'`) as libvirt shows it.

use crate::cmdline::Args;
use crate::def::DomainDef;
use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use virtmesh_conf::Element;

/// The first port VNC and SPICE autoport hand out (display :0).
pub const PORT_MIN: u16 = 5900;
const PORT_MAX: u16 = 65535;
/// How long a handed-out port is skipped even if it still binds: the
/// window between our probe and QEMU's own bind.
const RESERVE: Duration = Duration::from_secs(30);

static HANDED_OUT: Mutex<Option<HashMap<u16, Instant>>> = Mutex::new(None);

fn attr<'a>(dev: &'a Element, k: &str) -> &'a str {
    dev.attr(k).unwrap_or_default()
}

/// The address a VNC/SPICE server listens on: the first `<listen
/// type='address'>`, else qemu.conf's default (127.0.0.1).
fn listen_addr(g: &Element) -> Option<String> {
    let first = g.child("listen");
    match first.map(|l| attr(l, "type")) {
        None | Some("address") => Some(
            first
                .and_then(|l| l.attr("address"))
                .or_else(|| g.attr("listen"))
                .unwrap_or("127.0.0.1")
                .to_owned(),
        ),
        _ => None,
    }
}

fn wants_autoport(g: &Element) -> bool {
    if listen_addr(g).is_none() {
        return false;
    }
    let auto = g.attr("autoport") == Some("yes");
    match attr(g, "type") {
        "vnc" => auto || g.attr("port").is_none_or(|p| p == "-1" || p == "0"),
        "spice" => auto,
        _ => false,
    }
}

/// A free port on `addr` from 5900 up, not handed out recently.
fn free_port(addr: &str) -> Option<u16> {
    let mut guard = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    let map = guard.get_or_insert_with(HashMap::new);
    map.retain(|_, t| t.elapsed() < RESERVE);
    let port = (PORT_MIN..PORT_MAX)
        .find(|p| !map.contains_key(p) && TcpListener::bind((addr, *p)).is_ok())?;
    map.insert(port, Instant::now());
    Some(port)
}

/// Give every autoport VNC/SPICE server of a starting guest its port
/// (in the definition that becomes the live one).
pub fn assign_ports(def: &mut DomainDef) {
    def.for_each_device_mut("graphics", &mut |g: &mut Element| {
        if !wants_autoport(g) {
            return;
        }
        let addr = listen_addr(g).unwrap_or_else(|| "127.0.0.1".into());
        // The live XML names the address qemu.conf's default gave it.
        if let Some(l) = g.child_mut("listen")
            && l.attr("type") == Some("address")
            && l.attr("address").is_none()
        {
            l.set_attr("address", addr.as_str());
        }
        if g.attr("listen").is_none() {
            g.set_attr("listen", addr.as_str());
        }
        if let Some(p) = free_port(&addr) {
            g.set_attr("port", p.to_string());
            g.set_attr("autoport", "yes");
            g.order_attrs(&[
                "type",
                "socket",
                "port",
                "tlsPort",
                "autoport",
                "websocket",
                "listen",
            ]);
        }
    });
}

/// The port of a graphics server: its own, or for autoport without one
/// (DomainXMLToNative) what libvirt's preview shows (VNC :0, SPICE 5901).
fn port_of(g: &Element) -> u16 {
    match g.attr("port").and_then(|p| p.parse::<i32>().ok()) {
        Some(p) if p > 0 => u16::try_from(p).unwrap_or(PORT_MIN),
        _ if attr(g, "type") == "spice" => PORT_MIN + 1,
        _ => PORT_MIN,
    }
}

fn gl_opts(g: &Element) -> String {
    match g.child("gl").filter(|gl| gl.attr("enable") == Some("yes")) {
        Some(gl) => match gl.attr("rendernode") {
            Some(r) => format!(",gl=on,rendernode={r}"),
            None => ",gl=on".to_owned(),
        },
        None => String::new(),
    }
}

/// The graphics arguments, after `-audiodev` and before the video devices.
pub fn argv(a: &mut Args, graphics: &[&Element], audios: &[&Element]) {
    let audiodev = audios
        .first()
        .and_then(|x| x.attr("id"))
        .map(|id| format!(",audiodev=audio{id}"))
        .unwrap_or_default();
    for g in graphics {
        match attr(g, "type") {
            "vnc" => {
                let first = g.child("listen").map(|l| attr(l, "type").to_owned());
                let mut v = match first.as_deref() {
                    Some("none") => "none".to_owned(),
                    Some("socket") => format!(
                        "vnc=unix:{}",
                        g.child("listen")
                            .and_then(|l| l.attr("socket"))
                            .or_else(|| g.attr("socket"))
                            .unwrap_or_default()
                    ),
                    _ => {
                        let host = listen_addr(g).unwrap_or_else(|| "127.0.0.1".into());
                        let display = port_of(g).saturating_sub(PORT_MIN);
                        let mut v = format!("{host}:{display}");
                        if let Some(ws) = g.attr("websocket") {
                            v.push_str(&format!(",websocket={ws}"));
                        }
                        v
                    }
                };
                if let Some(share) = g.attr("sharePolicy") {
                    v.push_str(&format!(",share={share}"));
                }
                if g.attr("passwd").is_some() {
                    // Fail closed: QEMU refuses logins until the
                    // password is set over QMP.
                    v.push_str(",password=on");
                }
                if g.attr("powerControl") == Some("yes") {
                    v.push_str(",power-control=on");
                }
                v.push_str(&audiodev);
                a.opt("-vnc", v);
                if let Some(k) = g.attr("keymap") {
                    a.opt("-k", k);
                }
            }
            "spice" => {
                let mut v = match listen_addr(g) {
                    Some(host) => format!("port={},addr={host}", port_of(g)),
                    None => "port=0".to_owned(),
                };
                v.push_str(",disable-ticketing=on");
                v.push_str(&gl_opts(g));
                v.push_str(",seamless-migration=on");
                a.opt("-spice", v);
            }
            "egl-headless" => {
                let mut v = "egl-headless".to_owned();
                if let Some(r) = g.child("gl").and_then(|gl| gl.attr("rendernode")) {
                    v.push_str(&format!(",rendernode={r}"));
                }
                a.opt("-display", v);
            }
            _ => {}
        }
    }
}

/// Give QEMU the VNC password before the guest runs, as libvirt does at
/// start (qemuDomainChangeGraphicsPasswords): the command line only says
/// `password=on`, so until this QEMU refuses every login.
pub async fn set_passwords(
    qmp: &crate::qmp::Qmp,
    def: &DomainDef,
) -> Result<(), crate::qmp::QmpError> {
    for g in def.devices() {
        if g.name == "graphics" && attr(g, "type") == "vnc" && g.attr("passwd").is_some() {
            set_password(qmp, g).await?;
        }
    }
    Ok(())
}

/// One VNC password and its expiry (`passwdValidTo`, UTC) on the guest.
pub async fn set_password(qmp: &crate::qmp::Qmp, g: &Element) -> Result<(), crate::qmp::QmpError> {
    let password = g.attr("passwd").unwrap_or_default();
    qmp.execute_raw(
        "set_password",
        serde_json::json!({ "protocol": "vnc", "password": password }),
    )
    .await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    qmp.execute_raw(
        "expire_password",
        serde_json::json!({ "protocol": "vnc", "time": expire_time(g, now) }),
    )
    .await?;
    Ok(())
}

/// QEMU's expire_password time for a graphics device, as libvirt computes
/// it: "never" without `passwdValidTo`, "now" once it has passed, else
/// the absolute Unix time.
pub fn expire_time(g: &Element, now: i64) -> String {
    match g
        .attr("passwdValidTo")
        .and_then(crate::machine::utc_seconds)
    {
        None => "never".into(),
        Some(t) if t <= now => "now".into(),
        Some(t) => t.to_string(),
    }
}

/// Whether a real start can serve this graphics device: VNC only (SPICE
/// and GL need pieces the driver does not set up yet).
pub fn start_supported(g: &Element) -> bool {
    attr(g, "type") == "vnc" && g.child("gl").is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_expiry_as_libvirt_computes_it() {
        let g = |valid: Option<&str>| {
            let mut e = Element::new("graphics").with_attr("type", "vnc");
            if let Some(v) = valid {
                e.set_attr("passwdValidTo", v);
            }
            e
        };
        let now = 1_700_000_000; // 2023-11-14T22:13:20
        assert_eq!(expire_time(&g(None), now), "never");
        assert_eq!(expire_time(&g(Some("2023-11-14T22:13:20")), now), "now");
        assert_eq!(
            expire_time(&g(Some("2023-11-14T23:13:20")), now),
            "1700003600"
        );
    }
}
