//! Inputs the fuzz targets (fuzz/, cargo fuzz) found, kept as regression
//! tests.  Each checks what the target checks: no panic, and a document that
//! parses formats to XML that parses again and formats identically (define,
//! dumpxml, define again must not drift), or is rejected with libvirt's
//! error.

use virtmesh_conf::domain::DomainDef;
use virtmesh_conf::network::NetworkDef;

/// Parse, format, re-parse, re-format: both formats must be equal.
fn stable<T, E: std::fmt::Debug>(
    input: &str,
    parse: impl Fn(&str) -> Result<T, E>,
    format: impl Fn(&T) -> String,
) -> String {
    let def = parse(input).expect("input parses");
    let first = format(&def);
    let again = parse(&first).unwrap_or_else(|e| panic!("output does not parse: {e:?}\n{first}"));
    assert_eq!(first, format(&again), "output drifts on re-parse");
    first
}

fn domain_xml(d: &DomainDef) -> String {
    d.to_xml_flags(None, true)
}

/// A console derived from the first serial port is ordered like a parsed
/// <console>: the unknown child after <target>, as in the serial port.
#[test]
fn console_from_serial_keeps_child_order() {
    let xml = stable(
        "<domain type='kvm'>
  <name>vm</name>
  <memory unit='MiB'>256</memory>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>
    <serial type='pty'>
      <gfl oile='/tmp/x.log' append='off'/>
      <target port='0'/>
    </serial>
  </devices>
</domain>",
        DomainDef::parse,
        domain_xml,
    );
    assert!(
        xml.contains(
            "<console type='pty'>\n      <target type='serial' port='0'/>\n      <gfl oile='/tmp/x.log' append='off'/>\n    </console>"
        ),
        "{xml}"
    );
}

/// A nameless element (`<   />`) is not XML; it used to be accepted and
/// formatted as `</>`.
#[test]
fn nameless_element_is_rejected() {
    let e = NetworkDef::parse(
        "<network>
  <name>n</name>
  <ip address='192.168.250.1' netmask='255.255.255.0'>
 tftp<   />
  </ip>
</network>",
    )
    .expect_err("nameless element");
    assert!(
        e.to_string().contains("StartTag: invalid element name"),
        "{e}"
    );
    let e = virtmesh_conf::xml::parse("<a 1b='x'/>").expect_err("bad attribute name");
    assert!(e.to_string().contains("attributes construct error"), "{e}");
}

/// Literal newlines and tabs in attribute values are spaces to any XML
/// parser (libxml2 included); character references keep them, and are
/// formatted back as references so a re-parse reads the same value.
#[test]
fn attribute_whitespace_is_normalised_and_round_trips() {
    let el = virtmesh_conf::xml::parse("<a b='x\n\ty' c='1&#10;2&#9;3'/>").expect("parses");
    assert_eq!(el.attr("b"), Some("x  y"));
    assert_eq!(el.attr("c"), Some("1\n2\t3"));
    let xml = stable(
        "<a b='x\n\ty' c='1&#10;2&#9;3&#13;'/>",
        virtmesh_conf::xml::parse,
        |e| e.to_xml(),
    );
    assert_eq!(xml, "<a b='x  y' c='1&#10;2&#9;3&#13;'/>\n");
}

/// CR LF and lone CR read as LF (XML 1.0 end-of-line handling); a CR
/// from a character reference is formatted as one.
#[test]
fn carriage_returns_round_trip() {
    let el = virtmesh_conf::xml::parse("<a>x\r\ny\rz</a>").expect("parses");
    assert_eq!(el.text(), "x\ny\nz");
    let xml = stable("<a>x&#13;y</a>", virtmesh_conf::xml::parse, |e| e.to_xml());
    assert_eq!(xml, "<a>x&#13;y</a>\n");
}

/// libvirt formats `<clusterSize unit='B'>`; its unit parser takes b, byte
/// and bytes in any case, so a volume's own output must define again.
#[test]
fn volume_cluster_size_in_bytes_defines_again() {
    use virtmesh_conf::storage::VolDef;
    let xml = stable(
        "<volume>
  <name>qcow2-cluster-size.qcow2</name>
  <capacity unit='MiB'>50</capacity>
  <target>
    <format type='qcow2'/>
    <clusterSize unit='KiB'>128</clusterSize>
  </target>
</volume>",
        VolDef::parse,
        |v| v.to_xml("/pool/vol"),
    );
    assert!(xml.contains("131072</clusterSize>"), "{xml}");
}

/// A newline inside an attribute value (here a secret usage under <auth>)
/// is a space once parsed, so the pool formats stably.  (The fuzzer's
/// input had no <secret> at all, which libvirt rejects: "Missing <secret>
/// element in auth".)
#[test]
fn pool_attribute_with_newline_formats_stably() {
    use virtmesh_conf::storage::PoolDef;
    stable(
        "<pool type='rbd'>
  <name>cc-rbd</name>
  <uuid>70179367-5365-50e2-a0ef-4fdcc8c9c016</uuid>
  <source>
    <name>rbdpool</name>
    <host name='mon1.example.org' port='6789'/>
    <auth username='admin' type='ceph'>
      <secret usage='2ec115d7
  sourac909a6fd87'/>
    </auth>
  </source>
</pool>",
        PoolDef::parse,
        |p| p.to_xml(1 << 30, 1 << 20, 1 << 29),
    );
}

/// A newline inside element text (a permissions label) is kept as it is:
/// the nested element used to be indented line by line, which shifted the
/// text after the newline on every define/dumpxml cycle (fuzz target pool).
#[test]
fn pool_label_with_newline_formats_stably() {
    use virtmesh_conf::storage::PoolDef;
    let xml = stable(
        "<pool type='dir'>
  <name>cc-label</name>
  <uuid>c187ecd7-e9ae-5ab5-9e63-71dd8a9675aa</uuid>
  <target>
    <path>/tmp/pool</path>
    <permissions>
      <mode>0750</mode>
      <label>system_u:object_r:
virt_image_t:s0</label>
    </permissions>
  </target>
</pool>",
        PoolDef::parse,
        |p| p.to_xml(1 << 30, 1 << 20, 1 << 29),
    );
    assert!(
        xml.contains("<label>system_u:object_r:\nvirt_image_t:s0</label>"),
        "{xml}"
    );
}

/// Stray text beside child elements is not part of any libvirt document;
/// it is dropped (it used to be kept and moved as devices were sorted).
#[test]
fn stray_text_in_element_content_is_dropped() {
    let xml = stable(
        "<domain type='kvm'>
  <name>vm</name>
  <memory unit='MiB'>256</memory>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>
    <smartcard mode='host-certificates'>
    ( <certificate>cert1</certificate>
      <certificate>cert2</certificate>
      <certificate>cert3</certificate>
      <database>/etc/pki/nssdb</database>
    </smartcard>
  </devices>
</domain>",
        DomainDef::parse,
        domain_xml,
    );
    assert!(!xml.contains('('), "{xml}");
    let el = virtmesh_conf::xml::parse("<a>x<b/>y</a>").expect("parses");
    assert_eq!(el.to_xml(), "<a>\n  <b/>\n</a>\n");
}

fn domain_with_disk(disk: &str) -> String {
    format!(
        "<domain type='kvm'><name>vm</name><memory>1024</memory>\
         <os><type>hvm</type></os><devices>{disk}</devices></domain>"
    )
}

/// Disk names are read as virDiskNameToIndex reads them: "hidmapda" has no
/// disk prefix (it used to be read as index ~2e8 and hang adding IDE
/// controllers); a partition number is allowed.
#[test]
fn disk_names_as_libvirt_reads_them() {
    use virtmesh_conf::devices::disk_index;
    assert_eq!(disk_index("hidmapda"), None);
    assert_eq!(disk_index("sdaa"), Some(26));
    assert_eq!(disk_index("hdb2"), Some(1));
    assert_eq!(disk_index("xvdc"), Some(2));
    assert_eq!(disk_index("sda1x"), None);
    assert_eq!(disk_index("vdzzzzzzzzzzzz"), None);
    let started = std::time::Instant::now();
    stable(
        &domain_with_disk(
            "<disk type=\"file\" device=\"disk\"><source file=\"/tmp/a.raw\"/>\
             <target dev=\"hidmapda\" bus=\"ide\"/></disk>",
        ),
        DomainDef::parse,
        domain_xml,
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

/// A drive address naming a huge controller index is refused instead of
/// adding every controller up to it (libvirt has no bound there).
#[test]
fn huge_drive_controller_index_is_refused() {
    let e = DomainDef::parse(&domain_with_disk(
        "<disk type='file'><source file='/a'/><target dev='sda' bus='scsi'/>\
         <address type='drive' controller='4000000000' bus='0' target='0' unit='0'/></disk>",
    ))
    .expect_err("out of range");
    assert!(e.message.contains("out of range"), "{}", e.message);
    let e = DomainDef::parse(&domain_with_disk(
        "<disk type='file'><source file='/a'/><target dev='hdzzzzz'/></disk>",
    ))
    .expect_err("out of range");
    assert!(e.message.contains("ide controller index"), "{}", e.message);
    // The bound still leaves room for thousands of controllers.
    stable(
        &domain_with_disk(
            "<disk type='file'><source file='/a'/><target dev='sda' bus='scsi'/>\
             <address type='drive' controller='300' bus='0' target='0' unit='0'/></disk>",
        ),
        DomainDef::parse,
        domain_xml,
    );
}

/// Text in an element that a normaliser then gives a child (<forward> gets
/// its <interface>) is not formatted; '<' in an attribute value is not XML.
#[test]
fn text_beside_added_children_and_lt_in_attributes() {
    let xml = stable(
        "<network>
  <name>n</name>
  <forward mode='nat' dev='eth0'>stray</forward>
  <ip address='192.168.231.1' netmask='255.255.255.0'/>
</network>",
        NetworkDef::parse,
        |d| d.to_xml(),
    );
    assert!(!xml.contains("stray"), "{xml}");
    let e = virtmesh_conf::xml::parse("<a b='1<2'/>").expect_err("'<' in attribute");
    assert!(
        e.to_string()
            .contains("Unescaped '<' not allowed in attributes values"),
        "{e}"
    );
}

/// A mismatched end tag after a multi-byte character: quick-xml reports a
/// position inside the character, and slicing there panicked.
#[test]
fn error_position_inside_a_character_does_not_panic() {
    let doc = "\u{feff} <u.ig>\n  <ownerrbind\u{fd7f}>\n    <ownerrbind\u{fd7f}>\nute'ind\u{fd7f}wnerrbinddngeg>\n  <ownerrb>\n  <ownerrbind\u{fd7f}>\n  <owneg>\n'absolute'ind\u{fd7f}w.ig>\n  <ownerrbind\u{fd7f}>\n    <ownerrbind\u{fd7f}>\nute'ind\u{fd7f}wnerrbinddngeg>\n  <ownerrbind\u{fd7f}wnerk>rbinddng>wner>\n  dng>\n  <mwnerrbind\u{fd7f}>\n  <ow>\n  dng>\n  <ownerrbind\u{fd7f}>\n$ <owneg>\n  <ownerrbind\u{fd7f}wnererrbind\u{fd7f}>\n  <ownerrbinbind\u{fd7f}nerrbinddng>wner>\n  dng>\n  <ownerrbind\u{fd7f}>\n  <owneg>\n'absolute'ind\u{fd7f}w.ig>\n  <ownerrbind\u{fd7f}>\n    <ownerrbind\u{fd7f}>\nute'ind\u{fd7f}wnerrbinddngeg>\n  <ownerrbind\u{fd7f}wnerk>rbinddng>wner>\n  dng>\n  <mwnerrbind\u{fd7f}>\n  <ow>\n  dng>\n  <ownerrbind\u{fd7f}>\n$ <owneg>\n  <ownerrbind\u{fd7f}wnererrbind\u{fd7f}>\n  <ownerrbind\u{fd7f}>r</forward <ownerrbind\u{fd7f}>\n  <owneg>\n  <owne<shmemrrbind\u{fff5}wnerrbind\u{fd7f}ar>\n";
    let e = virtmesh_conf::xml::parse(doc).expect_err("not well formed");
    assert!(!e.message.is_empty());
    let e = virtmesh_conf::xml::parse("<a>\u{fd7f}</b\u{fd7f}></a>").expect_err("mismatch");
    assert!(!e.message.is_empty());
}

/// Formatting nested keeps newlines inside text as they are.
#[test]
fn nested_format_leaves_text_newlines_alone() {
    let el = virtmesh_conf::xml::parse("<p><label>a\nb</label></p>").expect("parses");
    assert_eq!(
        el.to_xml_at(2),
        "    <p>\n      <label>a\nb</label>\n    </p>\n"
    );
    assert_eq!(el.to_xml(), el.to_xml_at(0));
}
