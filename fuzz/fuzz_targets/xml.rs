#![no_main]
//! The generic element tree every kind is built on (libxml2-like parse and format).
use libfuzzer_sys::fuzz_target;
use virtmesh_conf_fuzz::{as_text, round_trip};

fuzz_target!(|data: &[u8]| {
    let Some(text) = as_text(data) else { return };
    round_trip(text, virtmesh_conf::xml::parse, |e| e.to_xml());
    round_trip(text, virtmesh_conf::xml::parse, |e| e.to_xml_libxml());
});
