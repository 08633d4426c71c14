#![no_main]
//! Storage volume XML (virStorageVolCreateXML / CreateXMLFrom in a
//! directory pool), under each of libvirt's capacity rules; the key/path
//! is the driver's, any fixed one does.
use libfuzzer_sys::fuzz_target;
use virtmesh_conf::storage::{Capacity, VolDef};
use virtmesh_conf_fuzz::{as_text, round_trip};

const PATH: &str = "/var/lib/libvirt/images/vol";

fuzz_target!(|data: &[u8]| {
    let Some(text) = as_text(data) else { return };
    round_trip(text, VolDef::parse, |v| v.to_xml(PATH));
    for rule in [Capacity::OptionalWithBacking, Capacity::Optional] {
        round_trip(
            text,
            |t| VolDef::parse_for(t, Some(("raw", &["raw", "qcow2", "vmdk"])), rule),
            |v| v.to_xml(PATH),
        );
    }
});
