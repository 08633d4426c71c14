#![no_main]
//! Storage volume XML (virStorageVolCreateXML in a directory pool), with
//! capacity required and with it optional (a backing store may give it);
//! the key/path is the driver's, any fixed one does.
use libfuzzer_sys::fuzz_target;
use virtmesh_conf::storage::VolDef;
use virtmesh_conf_fuzz::{as_text, round_trip};

fuzz_target!(|data: &[u8]| {
    let Some(text) = as_text(data) else { return };
    round_trip(text, VolDef::parse, |v| {
        v.to_xml("/var/lib/libvirt/images/vol")
    });
    round_trip(
        text,
        |t| VolDef::parse_for(t, Some(("raw", &["raw", "qcow2", "vmdk"])), true),
        |v| v.to_xml("/var/lib/libvirt/images/vol"),
    );
});
