#!/bin/sh
# Copy the conformance fixtures into fuzz/corpus/<target>/ as seed corpora
# (the corpus directory is not committed; this script rebuilds it).
# Usage: fuzz/seed.sh            (from anywhere)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
fix="$here/../tests/fixtures/conformance"
corpus="$here/corpus"

# seed TARGET FILE...: copy each existing file under a name unique to its path.
seed() {
    target=$1
    shift
    mkdir -p "$corpus/$target"
    for f in "$@"; do
        [ -f "$f" ] || continue
        name=$(echo "${f#"$fix"/}" | tr '/' '_')
        cp "$f" "$corpus/$target/$name"
    done
}

seed domain "$fix"/domain-generic/*/*.xml "$fix"/domain-qemu/*/*.xml \
    "$fix"/reference/test-dumpxml-*.xml
seed network "$fix"/network/*/*.xml "$fix"/reference/test-net-dumpxml-*.xml
seed nwfilter "$fix"/nwfilter/*/*.xml
seed secret "$fix"/secret/*/*.xml
seed pool "$fix"/storage/pool-*/*.xml "$fix"/reference/test-pool-dumpxml-*.xml
seed volume "$fix"/storage/vol-*/*.xml
seed interface "$fix"/reference/test-iface-dumpxml-*.xml
seed nodedev "$fix"/reference/test-nodedev-dumpxml-*.xml

# Device documents: every <devices> child of the domain fixtures, one per
# file (what virsh attach-device is given).
mkdir -p "$corpus/device"
python3 - "$fix" "$corpus/device" <<'PY'
import glob, os, sys, xml.etree.ElementTree as ET
fix, out = sys.argv[1], sys.argv[2]
n = 0
for f in sorted(glob.glob(f"{fix}/domain-*/*/input.xml")):
    try:
        devs = ET.parse(f).getroot().find("devices")
    except ET.ParseError:
        continue
    for d in [] if devs is None else devs:
        with open(os.path.join(out, f"dev-{n:05d}.xml"), "w") as fh:
            fh.write(ET.tostring(d, encoding="unicode"))
        n += 1
PY

# The filter binding has no conformance fixtures; one document per shape
# the nwfilter driver writes (virNWFilterBindingDefFormat).
mkdir -p "$corpus/nwfilter_binding"
cat > "$corpus/nwfilter_binding/binding-basic.xml" <<'XML'
<filterbinding>
  <owner>
    <name>guest</name>
    <uuid>7cbf6b6c-4e36-4f6b-9c6b-2b7d6b1d2f11</uuid>
  </owner>
  <portdev name='vnet0'/>
  <linkdev name='eth0'/>
  <mac address='52:54:00:12:34:56'/>
  <filterref filter='clean-traffic'>
    <parameter name='IP' value='192.168.122.5'/>
    <parameter name='CTRL_IP_LEARNING' value='dhcp'/>
  </filterref>
</filterbinding>
XML

# Host interfaces: one document per type virInterfaceDefParseXML knows
# (the reference dump above is an ethernet one).
cat > "$corpus/interface/iface-bridge.xml" <<'XML'
<interface type='bridge' name='br0'>
  <start mode='onboot'/>
  <mtu size='1500'/>
  <protocol family='ipv4'>
    <dhcp peerdns='no'/>
  </protocol>
  <protocol family='ipv6'>
    <autoconf/>
    <ip address='fd00::1' prefix='64'/>
    <route gateway='fd00::fffe'/>
  </protocol>
  <bridge stp='off' delay='0.01'>
    <interface type='ethernet' name='eth0'>
      <mac address='ab:bb:cc:dd:ee:ff'/>
    </interface>
    <interface type='vlan' name='eth0.42'>
      <vlan tag='42'>
        <interface name='eth0'/>
      </vlan>
    </interface>
  </bridge>
</interface>
XML
cat > "$corpus/interface/iface-bond.xml" <<'XML'
<interface type='bond' name='bond0'>
  <start mode='none'/>
  <bond mode='active-backup'>
    <miimon freq='100' updelay='10' carrier='ioctl'/>
    <interface type='ethernet' name='eth1'>
      <mac address='aa:bb:cc:dd:ee:fe'/>
    </interface>
    <interface type='ethernet' name='eth2'/>
  </bond>
</interface>
XML
cat > "$corpus/interface/iface-vlan.xml" <<'XML'
<interface type='vlan' name='eth0.42'>
  <start mode='hotplug'/>
  <link speed='1000' state='up'/>
  <vlan tag='42'>
    <interface name='eth0'/>
  </vlan>
</interface>
XML

# The generic tree sees every document.
mkdir -p "$corpus/xml"
for d in "$corpus"/*/; do
    [ "$d" = "$corpus/xml/" ] && continue
    cp "$d"* "$corpus/xml/" 2>/dev/null || true
done
# A libFuzzer dictionary per target (-dict=corpus/<target>.dict): the
# element and attribute names and attribute values its seeds use.
python3 - "$corpus" <<'PY'
import os, re, sys
corpus = sys.argv[1]
def esc(s):
    return "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "\\x%02x" % b
                   for c in s for b in ([ord(c)] if ord(c) < 128 else c.encode()))
for t in sorted(os.listdir(corpus)):
    d = os.path.join(corpus, t)
    if not os.path.isdir(d):
        continue
    toks = set()
    for f in os.listdir(d):
        # Only the seeds: what the fuzzer added is named by its SHA-1.
        if re.fullmatch(r"[0-9a-f]{40}", f):
            continue
        try:
            text = open(os.path.join(d, f), encoding="utf-8", errors="replace").read()
        except FileNotFoundError:
            continue
        for m in re.finditer(r"<(/?[A-Za-z_][\w:.-]*)", text):
            toks.add("<" + m.group(1))
        for m in re.finditer(r"\s([A-Za-z_][\w:.-]*)=(['\"])([^'\"]{0,40})\2", text):
            toks.add(" %s='" % m.group(1))
            toks.add("'%s'" % m.group(3))
    with open(os.path.join(corpus, t + ".dict"), "w") as fh:
        for tok in sorted(toks):
            fh.write('"%s"\n' % esc(tok))
PY
for d in "$corpus"/*/; do
    echo "$(basename "$d"): $(ls "$d" | wc -l) seeds"
done
