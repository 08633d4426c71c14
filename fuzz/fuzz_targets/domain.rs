#![no_main]
//! Domain XML (virDomainDefineXML): parse, format with secrets, re-parse.
use libfuzzer_sys::fuzz_target;
use virtmesh_conf_fuzz::{as_text, round_trip};

fuzz_target!(|data: &[u8]| {
    let Some(text) = as_text(data) else { return };
    round_trip(text, virtmesh_conf::domain::DomainDef::parse, |d| {
        d.to_xml_flags(None, true)
    });
});
