#!/bin/bash
# Byte-for-byte comparison of vsh against real virsh on the test driver.
#
# Runs a list of commands through `virsh -c test:///default` (one process,
# so state carries over like it does in the mesh) and through vsh against a
# fresh virtmesh test service + gateway, then diffs stdout and stderr.
# Lines that legitimately differ (CPU time, random UUIDs of new objects,
# dominfo's Security label which no contract call reports yet) are dropped.
#
# usage: client/scripts/compare-with-virsh.sh [CASES_FILE...]
#   VIRTMESH=path/to/virtmesh  VSH=path/to/vsh  (default: target/debug/…)
# Without arguments every file in client/scripts/cases/ is run.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
VIRTMESH=${VIRTMESH:-$root/target/debug/virtmesh}
VSH=${VSH:-$root/target/debug/vsh}
command -v virsh >/dev/null || { echo "virsh is not installed" >&2; exit 2; }
[ -x "$VIRTMESH" ] && [ -x "$VSH" ] || { echo "build virtmesh and vsh first" >&2; exit 2; }

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT

# The XML documents the cases refer to, by bare file name.
cat > "$work/d.xml" <<'EOF'
<domain type='test'>
  <name>vm1</name>
  <memory unit='KiB'>1048576</memory>
  <vcpu>1</vcpu>
  <os><type>hvm</type></os>
</domain>
EOF
cat > "$work/n.xml" <<'EOF'
<network>
  <name>net1</name>
  <bridge name='virbr5'/>
</network>
EOF
cat > "$work/p.xml" <<'EOF'
<pool type='dir'>
  <name>pool1</name>
  <target><path>/tmp/pool1</path></target>
</pool>
EOF
cat > "$work/v.xml" <<'EOF'
<volume>
  <name>vol1.img</name>
  <capacity unit='G'>1</capacity>
</volume>
EOF
echo '<domain>' > "$work/bad.xml"
cat > "$work/if.xml" <<'EOF2'
<interface type='ethernet' name='eth9'>
  <mac address='aa:bb:cc:dd:ee:09'/>
</interface>
EOF2
cat > "$work/nd.xml" <<'EOF2'
<device>
  <parent>scsi_host1</parent>
  <capability type='scsi_host'>
    <capability type='fc_host'>
    </capability>
  </capability>
</device>
EOF2
cat > "$work/cpu.xml" <<'EOF2'
<cpu>
  <arch>i686</arch>
  <model>pentium3</model>
</cpu>
EOF2
cat > "$work/dev.xml" <<'EOF2'
<interface type='network'>
  <mac address='52:54:00:11:22:33'/>
  <source network='default'/>
</interface>
EOF2

# Start a process, remember its pid (in this shell, not a subshell, so the
# trap can stop it) and wait for its "listening on ADDR" line into $addr.
start() {
  local log=$1; shift
  RUST_LOG=warn "$@" > "$log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    addr=$(sed -n 's/^listening on //p' "$log" | head -1)
    [ -n "$addr" ] && return 0
    sleep 0.1
  done
  echo "timed out waiting for $*" >&2; cat "$log" >&2; return 1
}

fresh_mesh() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  pids=()
  rm -rf "$work/state"; mkdir -p "$work/state"
  start "$work/test.log" "$VIRTMESH" service test --listen 127.0.0.1:0 --state-dir "$work/state/test" || exit 2
  test_addr=$addr
  cat > "$work/virtmesh.toml" <<EOF
[gateway]
listen = "127.0.0.1:0"
default_uri = "test:///default"

[[service]]
name = "test"
listen = "$test_addr"
schemes = ["test"]
families = ["*"]
EOF
  start "$work/gw.log" "$VIRTMESH" gateway --config "$work/virtmesh.toml" --listen 127.0.0.1:0 --state-dir "$work/state/gw" || exit 2
  gw_addr=$addr
  # Ready means routable end to end, not just listening.
  for _ in $(seq 50); do
    "$VSH" --gateway "$gw_addr" -q uri >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "the mesh did not become ready" >&2; cat "$work/test.log" "$work/gw.log" >&2; exit 2
}

cases=("$@")
[ ${#cases[@]} -eq 0 ] && cases=("$here"/cases/*.txt)
status=0
drop='CPU time:|Security label:|^UUID:'
for f in "${cases[@]}"; do
  fresh_mesh
  mapfile -t cmds < <(grep -v '^#' "$f" | grep -v '^$')
  (cd "$work" && virsh -c test:///default "$(printf '%s; ' "${cmds[@]}")" > virsh.out 2> virsh.err)
  : > "$work/vsh.out"; : > "$work/vsh.err"
  for c in "${cmds[@]}"; do
    read -r -a argv <<< "$c"
    (cd "$work" && "$VSH" --gateway "$gw_addr" "${argv[@]}" >> vsh.out 2>> vsh.err)
  done
  echo "== $(basename "$f")"
  if diff <(grep -vE "$drop" "$work/virsh.out") <(grep -vE "$drop" "$work/vsh.out"); then
    echo "stdout: identical"
  else
    status=1
  fi
  if diff "$work/virsh.err" "$work/vsh.err"; then echo "stderr: identical"; else status=1; fi
done
exit $status
