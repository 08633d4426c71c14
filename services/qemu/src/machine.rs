//! The machine-level options of QEMU's command line as libvirt 11.3 builds
//! them from `<features>`, `<cpu>`, `<clock>`, `<pm>` and `<os>`:
//! `-machine` properties, `-accel` options, the CPU's KVM/Hyper-V
//! properties, `-rtc`, the PIT/PM globals and `-boot`.

use crate::def::DomainDef;
use virtmesh_conf::Element;

fn attr<'a>(e: &'a Element, k: &str) -> &'a str {
    e.attr(k).unwrap_or_default()
}

fn features(def: &DomainDef) -> Option<&Element> {
    def.element().child("features")
}

fn feature_state<'a>(def: &'a DomainDef, name: &str) -> Option<&'a str> {
    features(def)?.child(name)?.attr("state")
}

fn timer<'a>(def: &'a DomainDef, name: &str) -> Option<&'a Element> {
    def.element()
        .child("clock")?
        .children_named("timer")
        .find(|t| t.attr("name") == Some(name))
}

/// `-machine TYPE,usb=off,...`.
pub fn machine(def: &DomainDef) -> String {
    let mut m = format!("{},usb=off", def.machine());
    if let Some(s) = feature_state(def, "vmport") {
        m.push_str(&format!(",vmport={s}"));
    }
    if let Some(s) = feature_state(def, "smm") {
        m.push_str(&format!(",smm={s}"));
    }
    match features(def)
        .and_then(|f| f.child("ioapic"))
        .and_then(|i| i.attr("driver"))
    {
        Some("qemu") => m.push_str(",kernel_irqchip=split"),
        Some("kvm") => m.push_str(",kernel_irqchip=on"),
        _ => {}
    }
    if feature_state(def, "ps2") == Some("off") {
        m.push_str(",i8042=off");
    }
    m.push_str(",dump-guest-core=off");
    if !crate::numa::has_numa(def) {
        m.push_str(",memory-backend=pc.ram");
    }
    m.push_str(&crate::numa::machine_props(def));
    if let Some(p) = pflash(def) {
        m.push_str(&format!(",pflash0={}", p.code_node));
        if let Some(n) = &p.vars_node {
            m.push_str(&format!(",pflash1={n}"));
        }
    }
    let useserial = def
        .element()
        .child("os")
        .and_then(|o| o.child("bios"))
        .is_some_and(|b| b.attr("useserial") == Some("yes"));
    if useserial {
        m.push_str(",graphics=off");
    }
    if timer(def, "hpet").is_some_and(|t| t.attr("present") == Some("no")) {
        m.push_str(",hpet=off");
    }
    // libvirt states ACPI explicitly either way.
    m.push_str(if def.has_acpi() {
        ",acpi=on"
    } else {
        ",acpi=off"
    });
    m
}

/// `-accel kvm|tcg[,dirty-ring-size=N]`.
pub fn accel(def: &DomainDef) -> String {
    let mut a = def.virt_type().accel().to_owned();
    if let Some(size) = features(def)
        .and_then(|f| f.child("kvm"))
        .and_then(|k| k.child("dirty-ring"))
        .filter(|d| d.attr("state") == Some("on"))
        .and_then(|d| d.attr("size"))
    {
        a.push_str(&format!(",dirty-ring-size={size}"));
    }
    a
}

/// `-global mch.extended-tseg-mbytes=N` for an SMM TSEG size.
pub fn tseg_global(def: &DomainDef) -> Option<String> {
    let t = features(def)?.child("smm")?.child("tseg")?;
    let n: u64 = t.text().trim().parse().ok()?;
    let mib = match t.attr("unit").unwrap_or("MiB") {
        "GiB" | "G" => n * 1024,
        "KiB" | "K" => n / 1024,
        "B" | "bytes" => n / (1024 * 1024),
        _ => n,
    };
    Some(format!("mch.extended-tseg-mbytes={mib}"))
}

const HYPERV: &[&str] = &[
    "relaxed",
    "vapic",
    "spinlocks",
    "vpindex",
    "runtime",
    "synic",
    "stimer",
    "reset",
    "vendor_id",
    "frequencies",
    "reenlightenment",
    "tlbflush",
    "ipi",
    "evmcs",
    "avic",
    "emsr_bitmap",
    "xmm_input",
];

/// `-cpu MODEL,props` with libvirt's order: the model, timers, APIC EOI,
/// PV spinlocks, Hyper-V enlightenments, KVM features.
pub fn cpu(def: &DomainDef) -> String {
    let root = def.element();
    let cpu_el = root.child("cpu");
    let mut c = match def.cpu_mode().as_str() {
        "maximum" => "max,migratable=on".to_owned(),
        "host-passthrough" => {
            let mut c = "host,migratable=on".to_owned();
            if cpu_el
                .and_then(|c| c.child("cache"))
                .is_some_and(|c| c.attr("mode") == Some("passthrough"))
            {
                c.push_str(",host-cache-info=on,l3-cache=off");
            }
            c
        }
        _ => def.cpu_model(),
    };
    if let Some(t) = timer(def, "kvmclock")
        && let Some(p) = t.attr("present")
    {
        c.push_str(&format!(
            ",kvmclock={}",
            if p == "yes" { "on" } else { "off" }
        ));
    }
    let f = features(def);
    if let Some(eoi) = f.and_then(|f| f.child("apic")).and_then(|a| a.attr("eoi")) {
        c.push_str(&format!(",kvm-pv-eoi={eoi}"));
    }
    if let Some(s) = f
        .and_then(|f| f.child("pvspinlock"))
        .and_then(|p| p.attr("state"))
    {
        c.push_str(&format!(",kvm-pv-unhalt={s}"));
    }
    if let Some(hv) = f.and_then(|f| f.child("hyperv")) {
        if attr(hv, "mode") == "passthrough" {
            c.push_str(",hv-passthrough=on");
        } else {
            for name in HYPERV {
                let Some(e) = hv.child(name).filter(|e| e.attr("state") == Some("on")) else {
                    continue;
                };
                match *name {
                    "spinlocks" => {
                        let r: u64 = e
                            .attr("retries")
                            .and_then(|r| r.parse().ok())
                            .unwrap_or(4095);
                        c.push_str(&format!(",hv-spinlocks=0x{r:x}"));
                    }
                    "vendor_id" => c.push_str(&format!(",hv-vendor-id={}", attr(e, "value"))),
                    "stimer" => {
                        c.push_str(",hv-stimer=on");
                        if e.child("direct")
                            .is_some_and(|d| d.attr("state") == Some("on"))
                        {
                            c.push_str(",hv-stimer-direct=on");
                        }
                    }
                    "tlbflush" => {
                        c.push_str(",hv-tlbflush=on");
                        for sub in ["direct", "extended"] {
                            if e.child(sub).is_some_and(|d| d.attr("state") == Some("on")) {
                                c.push_str(&format!(
                                    ",hv-tlbflush-{}=on",
                                    if sub == "extended" { "ext" } else { sub }
                                ));
                            }
                        }
                    }
                    other => c.push_str(&format!(",hv-{}=on", other.replace('_', "-"))),
                }
            }
        }
    }
    if let Some(k) = f.and_then(|f| f.child("kvm")) {
        let on = |n: &str| k.child(n).and_then(|e| e.attr("state"));
        if on("hidden") == Some("on") {
            c.push_str(",kvm=off");
        }
        for (n, prop) in [
            ("hint-dedicated", "kvm-hint-dedicated"),
            ("poll-control", "kvm-poll-control"),
            ("pv-ipi", "kvm-pv-ipi"),
        ] {
            if let Some(s) = on(n) {
                c.push_str(&format!(",{prop}={s}"));
            }
        }
    }
    if let Some(crash) = root.child("devices").and_then(|d| {
        d.children_named("panic")
            .find(|p| p.attr("model") == Some("hyperv"))
    }) {
        let _ = crash;
        c.push_str(",hv-crash");
    }
    c
}

/// A UNIX time as QEMU's `-rtc base=` date.
fn rtc_date(secs: i64) -> String {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// The inverse of [`rtc_date`]: `YYYY-MM-DDTHH:MM:SS` (UTC) as Unix
/// seconds (libvirt's strptime + timegm of `passwdValidTo`).
pub fn utc_seconds(s: &str) -> Option<i64> {
    let (date, time) = s.trim().split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86400 + hh * 3600 + mm * 60 + ss)
}

/// `-rtc base=...[,clock=vm][,driftfix=slew]`.
pub fn rtc(def: &DomainDef) -> String {
    let clock = def.element().child("clock");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(0))
        .unwrap_or(0);
    let mut r = match def.clock_offset().as_str() {
        "localtime" => "base=localtime".to_owned(),
        "variable" => {
            let adj: i64 = clock
                .and_then(|c| c.attr("adjustment"))
                .and_then(|a| a.parse().ok())
                .unwrap_or(0);
            format!("base={}", rtc_date(now + adj))
        }
        "absolute" => {
            let start: i64 = clock
                .and_then(|c| c.attr("start"))
                .and_then(|a| a.parse().ok())
                .unwrap_or(0);
            format!("base={}", rtc_date(start))
        }
        _ => "base=utc".to_owned(),
    };
    if let Some(t) = timer(def, "rtc") {
        match t.attr("track") {
            Some("guest") => r.push_str(",clock=vm"),
            Some("wall") => r.push_str(",clock=host"),
            Some("realtime") => r.push_str(",clock=rt"),
            _ => {}
        }
        if t.attr("tickpolicy") == Some("catchup") {
            r.push_str(",driftfix=slew");
        }
    }
    r
}

/// `-global kvm-pit.lost_tick_policy=...` for a PIT tick policy.
pub fn pit_global(def: &DomainDef) -> Option<String> {
    let policy = match timer(def, "pit")?.attr("tickpolicy")? {
        "delay" => "delay",
        "catchup" => "slew",
        "discard" => "discard",
        _ => return None,
    };
    Some(format!("kvm-pit.lost_tick_policy={policy}"))
}

/// The S3/S4 globals of `<pm>`.
pub fn pm_globals(def: &DomainDef) -> Vec<String> {
    let Some(pm) = def.element().child("pm") else {
        return Vec::new();
    };
    let dev = if def.is_q35() { "ICH9-LPC" } else { "PIIX4_PM" };
    let mut v = Vec::new();
    for (el, key) in [
        ("suspend-to-mem", "disable_s3"),
        ("suspend-to-disk", "disable_s4"),
    ] {
        if let Some(e) = pm.child(el).and_then(|e| e.attr("enabled")) {
            v.push(format!("{dev}.{key}={}", if e == "no" { 1 } else { 0 }));
        }
    }
    v
}

/// `-boot [menu=on,][reboot-timeout=N,][splash-time=N,]strict=on`.
pub fn boot(def: &DomainDef) -> String {
    let os = def.element().child("os");
    let mut b = String::new();
    if let Some(m) = os.and_then(|o| o.child("bootmenu")) {
        if m.attr("enable") == Some("yes") {
            b.push_str("menu=on,");
        } else if m.attr("enable") == Some("no") {
            b.push_str("menu=off,");
        }
    }
    if let Some(t) = os
        .and_then(|o| o.child("bios"))
        .and_then(|bios| bios.attr("rebootTimeout"))
    {
        b.push_str(&format!("reboot-timeout={t},"));
    }
    if let Some(t) = os
        .and_then(|o| o.child("bootmenu"))
        .filter(|m| m.attr("enable") == Some("yes"))
        .and_then(|m| m.attr("timeout"))
    {
        b.push_str(&format!("splash-time={t},"));
    }
    b.push_str("strict=on");
    b
}

/// `-smbios` lines from `<sysinfo type='smbios'>` when `<os><smbios
/// mode='sysinfo'>` asks for them, and `-fw_cfg` entries.
pub fn sysinfo(def: &DomainDef) -> Vec<(&'static str, String)> {
    let root = def.element();
    let mut out = Vec::new();
    let esc = |v: &str| v.replace(',', ",,");
    let smbios_mode = root
        .child("os")
        .and_then(|o| o.child("smbios"))
        .and_then(|s| s.attr("mode"));
    for si in root.children_named("sysinfo") {
        match si.attr("type") {
            Some("smbios") if smbios_mode == Some("sysinfo") => {
                for (name, ty) in [("bios", 0), ("system", 1), ("baseBoard", 2), ("chassis", 3)] {
                    let Some(sec) = si.child(name) else { continue };
                    let mut line = format!("type={ty}");
                    for e in sec.children_named("entry") {
                        line.push_str(&format!(",{}={}", attr(e, "name"), esc(e.text().trim())));
                    }
                    out.push(("-smbios", line));
                }
                if let Some(oem) = si.child("oemStrings") {
                    let mut line = "type=11".to_owned();
                    for e in oem.children_named("entry") {
                        line.push_str(&format!(",value={}", esc(e.text().trim())));
                    }
                    out.push(("-smbios", line));
                }
            }
            Some("fwcfg") => {
                for e in si.children_named("entry") {
                    let name = attr(e, "name");
                    match e.attr("file") {
                        Some(f) => out.push(("-fw_cfg", format!("name={name},file={}", esc(f)))),
                        None => out.push((
                            "-fw_cfg",
                            format!("name={name},string={}", esc(e.text().trim())),
                        )),
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// `-acpitable` for `<os><acpi><table>`.
pub fn acpi_tables(def: &DomainDef) -> Vec<String> {
    def.element()
        .child("os")
        .and_then(|o| o.child("acpi"))
        .map(|a| {
            a.children_named("table")
                .map(|t| {
                    format!(
                        "sig={},file={}",
                        attr(t, "type").to_ascii_uppercase(),
                        t.text().trim().replace(',', ",,")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A pflash loader's block nodes: the firmware code (pflash0) and the
/// guest's NVRAM (pflash1), as libvirt names and layers them.
pub struct Pflash {
    /// The `-blockdev` arguments, in order.
    pub blockdevs: Vec<String>,
    pub code_node: String,
    pub vars_node: Option<String>,
    /// `<loader secure='yes'>`: flash writes only from SMM.
    pub secure: bool,
}

/// The pflash nodes of a `<loader type='pflash'>`, if there is one.
pub fn pflash(def: &DomainDef) -> Option<Pflash> {
    use crate::argv::json_object;
    let os = def.element().child("os")?;
    let loader = os
        .child("loader")
        .filter(|l| l.attr("type") == Some("pflash"))?;
    let code = loader.text().trim().to_owned();
    if code.is_empty() {
        return None;
    }
    let readonly = loader.attr("readonly") == Some("yes");
    let mut blockdevs = vec![
        json_object(&[
            ("driver", "file".into()),
            ("filename", code.into()),
            ("node-name", "libvirt-pflash0-storage".into()),
            ("auto-read-only", true.into()),
            ("discard", "unmap".into()),
        ]),
        json_object(&[
            ("node-name", "libvirt-pflash0-format".into()),
            ("read-only", readonly.into()),
            ("driver", loader.attr("format").unwrap_or("raw").into()),
            ("file", "libvirt-pflash0-storage".into()),
        ]),
    ];
    let nvram = os
        .child("nvram")
        .map(|n| {
            (
                n.text().trim().to_owned(),
                n.attr("format").unwrap_or("raw"),
            )
        })
        .filter(|(path, _)| !path.is_empty());
    let vars_node = nvram.map(|(path, format)| {
        blockdevs.push(json_object(&[
            ("driver", "file".into()),
            ("filename", path.into()),
            ("node-name", "libvirt-pflash1-storage".into()),
            ("read-only", false.into()),
        ]));
        // A raw store is used as the file itself; other formats get a
        // format layer, as for the code.
        if format == "raw" {
            return "libvirt-pflash1-storage".to_owned();
        }
        blockdevs.push(json_object(&[
            ("node-name", "libvirt-pflash1-format".into()),
            ("read-only", false.into()),
            ("driver", format.into()),
            ("file", "libvirt-pflash1-storage".into()),
        ]));
        "libvirt-pflash1-format".to_owned()
    });
    Some(Pflash {
        blockdevs,
        code_node: "libvirt-pflash0-format".into(),
        vars_node,
        secure: loader.attr("secure") == Some("yes"),
    })
}

/// `-bios` for a ROM loader.
pub fn bios(def: &DomainDef) -> Option<String> {
    let l = def.element().child("os")?.child("loader")?;
    (l.attr("type") == Some("rom")).then(|| l.text().trim().to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn rtc_dates() {
        assert_eq!(super::rtc_date(0), "1970-01-01T00:00:00");
        assert_eq!(super::rtc_date(1_700_000_000), "2023-11-14T22:13:20");
        for secs in [0, 1_700_000_000, 951_782_400, 4_102_444_799] {
            assert_eq!(super::utc_seconds(&super::rtc_date(secs)), Some(secs));
        }
        assert_eq!(super::utc_seconds("2026-13-01T00:00:00"), None);
        assert_eq!(super::utc_seconds("yesterday"), None);
    }
}
