#![no_main]
//! Network filter XML (virNWFilterDefineXML).
use libfuzzer_sys::fuzz_target;
use virtmesh_conf_fuzz::{as_text, round_trip};

fuzz_target!(|data: &[u8]| {
    let Some(text) = as_text(data) else { return };
    round_trip(text, virtmesh_conf::misc::NwFilterDef::parse, |d| {
        d.to_xml()
    });
});
