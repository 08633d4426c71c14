"""A Python client built from proto/ with grpcio-tools: define, start and
list a domain through the gateway. Usage: client.py GATEWAY_ADDR STUBS_DIR"""

import sys

sys.path.insert(0, sys.argv[2])

import grpc  # noqa: E402
from virtmesh.v1 import common_pb2, domain_pb2, domain_pb2_grpc  # noqa: E402

XML = """<domain type='test'>
  <name>py-vm</name>
  <memory unit='MiB'>64</memory>
  <os><type>hvm</type></os>
</domain>"""

channel = grpc.insecure_channel(sys.argv[1])
domains = domain_pb2_grpc.DomainStub(channel)
md = (("virt-uri", "test:///default"),)

defined = domains.DefineXML(common_pb2.DefineXmlRequest(xml=XML), metadata=md)
assert defined.name == "py-vm" and defined.id == -1, defined
started = domains.Create(
    domain_pb2.CreateRequest(domain=common_pb2.ObjectRef(name="py-vm")), metadata=md
)
assert started.id > 0, started
running = {
    d.name: d
    for d in domains.List(
        domain_pb2.ListDomainsRequest(running=True), metadata=md
    )
}
assert "py-vm" in running and "test" in running, running
assert running["py-vm"].state == domain_pb2.DOMAIN_STATE_RUNNING

try:
    domains.Lookup(common_pb2.ObjectRef(name="nope"), metadata=md)
    raise SystemExit("lookup of a missing domain succeeded")
except grpc.RpcError as e:
    assert e.code() == grpc.StatusCode.NOT_FOUND, e
    assert "no domain with matching name 'nope'" in e.details(), e.details()

print("python client ok:", sorted(running))
