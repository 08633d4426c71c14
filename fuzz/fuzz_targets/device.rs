#![no_main]
//! Device XML (virDomainAttachDevice): the device document alone, then attached to a minimal domain, which must stay stable.
use libfuzzer_sys::fuzz_target;
use virtmesh_conf_fuzz::{as_text, round_trip};

fuzz_target!(|data: &[u8]| {
    let Some(text) = as_text(data) else { return };
    round_trip(text, virtmesh_conf::domain::parse_device, |e| e.to_xml());
    let Ok(dev) = virtmesh_conf::domain::parse_device(text) else {
        return;
    };
    let base =
        "<domain type='test'><name>f</name><memory>1024</memory><os><type>hvm</type></os></domain>";
    let Ok(mut def) = virtmesh_conf::domain::DomainDef::parse(base) else {
        return;
    };
    if def.attach_device(dev).is_ok() {
        let xml = def.to_xml_flags(None, true);
        round_trip(&xml, virtmesh_conf::domain::DomainDef::parse, |d| {
            d.to_xml_flags(None, true)
        });
    }
});
