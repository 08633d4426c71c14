#![no_main]
//! Storage pool XML (virStoragePoolDefineXML); sizes are the driver's, any fixed values do.
use libfuzzer_sys::fuzz_target;
use virtmesh_conf_fuzz::{as_text, round_trip};

fuzz_target!(|data: &[u8]| {
    let Some(text) = as_text(data) else { return };
    round_trip(text, virtmesh_conf::storage::PoolDef::parse, |d| {
        d.to_xml(1 << 30, 1 << 20, 1 << 29)
    });
});
