//! Service-level tests: each family's lifecycle and libvirt's errors,
//! called through the generated service traits as a client would.

use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};
use virtmesh_proto::v1::{
    self as pb, DomainState, connect_server::Connect as ConnectSvc,
    domain_server::Domain as DomainSvc, events_server::Events as EventsSvc,
    host_server::Host as HostSvc, interface_server::Interface as IfaceSvc,
    network_server::Network as NetSvc, node_device_server::NodeDevice as NodeDevSvc,
    nw_filter_binding_server::NwFilterBinding as BindingSvc,
    nw_filter_server::NwFilter as NwFilterSvc, object_ref::Key, secret_server::Secret as SecretSvc,
    storage_pool_server::StoragePool as PoolSvc, storage_vol_server::StorageVol as VolSvc,
};
use virtmesh_rpc::{ErrorCode, VirtError};

use crate::TestDriver;

fn req<T>(t: T) -> Request<T> {
    Request::new(t)
}

fn req_uri<T>(uri: &str, t: T) -> Request<T> {
    let mut r = Request::new(t);
    virtmesh_rpc::meta::set_virt_uri(&mut r, uri).expect("valid uri");
    r
}

fn by_name(n: &str) -> pb::ObjectRef {
    pb::ObjectRef {
        key: Some(Key::Name(n.into())),
    }
}

fn ok<T>(r: Result<Response<T>, Status>) -> T {
    match r {
        Ok(r) => r.into_inner(),
        Err(s) => panic!("unexpected error: {s:?}"),
    }
}

fn err<T>(r: Result<Response<T>, Status>) -> VirtError {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(s) => VirtError::from_status(&s),
    }
}

fn fixture(name: &str) -> String {
    let path = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).expect("fixture present")
}

async fn collect<T>(r: Result<Response<crate::BoxStream<T>>, Status>) -> Vec<T> {
    let mut s = ok(r);
    let mut out = Vec::new();
    while let Some(item) = s.next().await {
        out.push(item.expect("stream item"));
    }
    out
}

const VM: &str = "<domain type='test'><name>vm1</name><memory unit='MiB'>128</memory><vcpu>2</vcpu><os><type>hvm</type></os>\
<devices><disk type='file' device='disk'><source file='/x.img'/><target dev='vda'/></disk>\
<interface type='network'><mac address='52:54:00:00:00:01'/><source network='default'/></interface></devices></domain>";

async fn define_vm(d: &TestDriver) -> pb::DomainSummary {
    ok(DomainSvc::define_xml(
        d,
        req(pb::DefineXmlRequest {
            xml: VM.into(),
            validate: false,
        }),
    )
    .await)
}

async fn state(d: &TestDriver, name: &str) -> (i32, String) {
    let s = ok(DomainSvc::get_state(d, req(by_name(name))).await);
    (s.state, s.reason_name)
}

#[tokio::test]
async fn default_host_xml_matches_libvirt() {
    let d = TestDriver::new();
    let live = ok(DomainSvc::get_xml_desc(
        d_ref(&d),
        req(pb::GetXmlDescRequest {
            object: Some(by_name("test")),
            ..Default::default()
        }),
    )
    .await);
    assert_eq!(
        live.xml.trim_end(),
        fixture("test-dumpxml-test.xml").trim_end()
    );
    let inactive = ok(DomainSvc::get_xml_desc(
        &d,
        req(pb::GetXmlDescRequest {
            object: Some(by_name("test")),
            inactive: true,
            ..Default::default()
        }),
    )
    .await);
    assert_eq!(
        inactive.xml.trim_end(),
        fixture("test-dumpxml-test-inactive.xml").trim_end()
    );
    let net = ok(NetSvc::get_xml_desc(
        &d,
        req(pb::GetXmlDescRequest {
            object: Some(by_name("default")),
            ..Default::default()
        }),
    )
    .await);
    assert_eq!(
        net.xml.trim_end(),
        fixture("test-net-dumpxml-default.xml").trim_end()
    );
    let pool = ok(PoolSvc::get_xml_desc(
        &d,
        req(pb::GetXmlDescRequest {
            object: Some(by_name("default-pool")),
            ..Default::default()
        }),
    )
    .await);
    assert_eq!(
        pool.xml.trim_end(),
        fixture("test-pool-dumpxml-default-pool.xml").trim_end()
    );
    let iface = ok(IfaceSvc::get_xml_desc(
        &d,
        req(pb::InterfaceXmlRequest {
            interface: Some(pb::InterfaceRef {
                key: Some(pb::interface_ref::Key::Name("eth1".into())),
            }),
            inactive: false,
        }),
    )
    .await);
    assert_eq!(
        iface.xml.trim_end(),
        fixture("test-iface-dumpxml-eth1.xml").trim_end()
    );
    for dev in ["computer", "scsi_host1", "scsi_host2", "scsi_host11"] {
        let x = ok(NodeDevSvc::get_xml_desc(&d, req(pb::NodeDeviceRef { name: dev.into() })).await);
        assert_eq!(
            x.xml.trim_end(),
            fixture(&format!("test-nodedev-dumpxml-{dev}.xml")).trim_end(),
            "{dev}"
        );
    }
    let caps = ok(HostSvc::get_capabilities(&d, req(())).await);
    assert_eq!(
        caps.xml.trim_end(),
        fixture("test-capabilities.xml").trim_end()
    );
}

fn d_ref(d: &TestDriver) -> &TestDriver {
    d
}

#[tokio::test]
async fn connect_calls() {
    let d = TestDriver::new();
    let open = ok(ConnectSvc::open(&d, req(pb::OpenRequest::default())).await);
    assert_eq!(open.uri, "test:///default");
    assert_eq!(open.driver, "test");
    assert_eq!(ok(ConnectSvc::get_version(&d, req(())).await).version, 2);
    assert_eq!(
        ok(ConnectSvc::get_lib_version(&d, req(())).await).version,
        11_003_000
    );
    assert_eq!(
        ok(ConnectSvc::get_type(&d, req(())).await).hypervisor_type,
        "TEST"
    );
    assert_eq!(
        ok(ConnectSvc::get_max_vcpus(&d, req(pb::MaxVcpusRequest::default())).await).max_vcpus,
        32
    );
    let info = ok(ConnectSvc::get_node_info(&d, req(())).await);
    assert_eq!(
        (
            info.model.as_str(),
            info.memory_kib,
            info.cpus,
            info.mhz,
            info.nodes,
            info.sockets,
            info.cores,
            info.threads
        ),
        ("i686", 3_145_728, 16, 1400, 2, 2, 2, 2)
    );
    assert!(
        !ok(ConnectSvc::get_hostname(&d, req(())).await)
            .hostname
            .is_empty()
    );
    let e = err(
        ConnectSvc::domain_xml_to_native(&d, req(pb::DomainXmlToNativeRequest::default())).await,
    );
    assert_eq!(e.code, ErrorCode::NoSupport);
    let e = err(ConnectSvc::get_uri(&d, req_uri("qemu:///system", ())).await);
    assert_eq!(e.code, ErrorCode::InvalidArg);
    assert!(e.message.contains("qemu:///system"));
}

#[tokio::test]
async fn domain_lifecycle_and_errors() {
    let d = TestDriver::new();
    let s = define_vm(&d).await;
    assert_eq!(s.id, -1);
    assert!(s.persistent);
    assert_eq!(
        state(&d, "vm1").await,
        (DomainState::Shutoff as i32, "unknown".into())
    );
    let started = ok(DomainSvc::create(
        &d,
        req(pb::CreateRequest {
            domain: Some(by_name("vm1")),
            ..Default::default()
        }),
    )
    .await);
    assert_eq!(started.id, 2);
    assert_eq!(
        state(&d, "vm1").await,
        (DomainState::Running as i32, "booted".into())
    );
    let e = err(DomainSvc::create(
        &d,
        req(pb::CreateRequest {
            domain: Some(by_name("vm1")),
            ..Default::default()
        }),
    )
    .await);
    assert_eq!(e.code, ErrorCode::OperationInvalid);
    assert_eq!(
        e.message,
        "Requested operation is not valid: domain is already running"
    );

    ok(DomainSvc::suspend(&d, req(by_name("vm1"))).await);
    assert_eq!(
        state(&d, "vm1").await,
        (DomainState::Paused as i32, "user".into())
    );
    let e = err(DomainSvc::suspend(&d, req(by_name("vm1"))).await);
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            ErrorCode::InternalError,
            "internal error: domain 'vm1' not running"
        )
    );
    ok(DomainSvc::resume(&d, req(by_name("vm1"))).await);
    assert_eq!(
        state(&d, "vm1").await,
        (DomainState::Running as i32, "unpaused".into())
    );
    let e = err(DomainSvc::resume(&d, req(by_name("vm1"))).await);
    assert_eq!(e.message, "internal error: domain 'vm1' not paused");

    let live = ok(DomainSvc::get_xml_desc(
        &d,
        req(pb::GetXmlDescRequest {
            object: Some(by_name("vm1")),
            ..Default::default()
        }),
    )
    .await);
    assert!(live.xml.starts_with("<domain type='test' id='2'>\n"));
    assert!(live.xml.contains("<target dev='testnet0'/>"));
    assert!(live.xml.contains("<target dev='vda' bus='virtio'/>"));

    ok(DomainSvc::shutdown(
        &d,
        req(pb::ShutdownRequest {
            domain: Some(by_name("vm1")),
            mode: 0,
        }),
    )
    .await);
    assert_eq!(
        state(&d, "vm1").await,
        (DomainState::Shutoff as i32, "shutdown".into())
    );
    let e = err(DomainSvc::shutdown(
        &d,
        req(pb::ShutdownRequest {
            domain: Some(by_name("vm1")),
            mode: 0,
        }),
    )
    .await);
    assert_eq!(e.message, "internal error: domain 'vm1' not running");
    let e = err(DomainSvc::destroy(
        &d,
        req(pb::DestroyRequest {
            domain: Some(by_name("vm1")),
            graceful: false,
        }),
    )
    .await);
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            ErrorCode::OperationInvalid,
            "Requested operation is not valid: domain is not running"
        )
    );

    // Ids come from a per-host counter.
    let again = ok(DomainSvc::create(
        &d,
        req(pb::CreateRequest {
            domain: Some(by_name("vm1")),
            ..Default::default()
        }),
    )
    .await);
    assert_eq!(again.id, 3);
    let by_id = ok(DomainSvc::lookup(
        &d,
        req(pb::ObjectRef {
            key: Some(Key::Id(3)),
        }),
    )
    .await);
    assert_eq!(by_id.name, "vm1");
    ok(DomainSvc::destroy(
        &d,
        req(pb::DestroyRequest {
            domain: Some(by_name("vm1")),
            graceful: false,
        }),
    )
    .await);
    assert_eq!(
        state(&d, "vm1").await,
        (DomainState::Shutoff as i32, "destroyed".into())
    );

    ok(DomainSvc::undefine(
        &d,
        req(pb::UndefineRequest {
            domain: Some(by_name("vm1")),
            ..Default::default()
        }),
    )
    .await);
    let e = err(DomainSvc::lookup(&d, req(by_name("vm1"))).await);
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            ErrorCode::NoDomain,
            "Domain not found: no domain with matching name 'vm1'"
        )
    );
    let e = err(DomainSvc::lookup(
        &d,
        req(pb::ObjectRef {
            key: Some(Key::Id(99)),
        }),
    )
    .await);
    assert_eq!(e.code, ErrorCode::NoDomain);
}

#[tokio::test]
async fn define_duplicates_and_xml_errors() {
    let d = TestDriver::new();
    let dup = "<domain type='test'><name>test</name><memory>1024</memory><os><type>hvm</type></os></domain>";
    let e = err(DomainSvc::define_xml(
        &d,
        req(pb::DefineXmlRequest {
            xml: dup.into(),
            validate: false,
        }),
    )
    .await);
    assert_eq!(e.code, ErrorCode::OperationFailed);
    assert_eq!(
        e.message,
        "operation failed: domain 'test' already exists with uuid 6695eb01-f6a4-8304-79aa-97f2502e193f"
    );
    let dup_uuid = "<domain type='test'><name>other</name><uuid>6695eb01-f6a4-8304-79aa-97f2502e193f</uuid><memory>1024</memory><os><type>hvm</type></os></domain>";
    let e = err(DomainSvc::define_xml(
        &d,
        req(pb::DefineXmlRequest {
            xml: dup_uuid.into(),
            validate: false,
        }),
    )
    .await);
    assert_eq!(
        e.message,
        "operation failed: domain 'test' is already defined with uuid 6695eb01-f6a4-8304-79aa-97f2502e193f"
    );
    let e = err(DomainSvc::define_xml(
        &d,
        req(pb::DefineXmlRequest {
            xml: "<domain type='test'><name>x".into(),
            validate: false,
        }),
    )
    .await);
    assert_eq!(e.code, ErrorCode::XmlDetail);
    let e = err(DomainSvc::define_xml(
        &d,
        req(pb::DefineXmlRequest {
            xml: "<domain type='test'><name>x</name><memory>1</memory></domain>".into(),
            validate: false,
        }),
    )
    .await);
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            ErrorCode::XmlError,
            "XML error: an os <type> must be specified"
        )
    );
    let e = err(DomainSvc::define_xml(
        &d,
        req(pb::DefineXmlRequest {
            xml: "<domain type='test'><memory>1</memory><os><type>hvm</type></os></domain>".into(),
            validate: false,
        }),
    )
    .await);
    assert_eq!(e.code, ErrorCode::NoName);
}

#[tokio::test]
async fn define_running_updates_next_boot_config() {
    let d = TestDriver::new();
    // Redefining the running default domain changes only its config.
    let xml = ok(DomainSvc::get_xml_desc(
        &d,
        req(pb::GetXmlDescRequest {
            object: Some(by_name("test")),
            inactive: true,
            ..Default::default()
        }),
    )
    .await)
    .xml;
    let changed = xml.replace(
        "<vcpu placement='static'>2</vcpu>",
        "<vcpu placement='static'>4</vcpu>",
    );
    ok(DomainSvc::define_xml(
        &d,
        req(pb::DefineXmlRequest {
            xml: changed,
            validate: false,
        }),
    )
    .await);
    let live = ok(DomainSvc::get_info(&d, req(by_name("test"))).await);
    assert_eq!(live.nr_virt_cpu, 2);
    let cfg = ok(DomainSvc::get_xml_desc(
        &d,
        req(pb::GetXmlDescRequest {
            object: Some(by_name("test")),
            inactive: true,
            ..Default::default()
        }),
    )
    .await);
    assert!(cfg.xml.contains(">4</vcpu>"));
    ok(DomainSvc::destroy(
        &d,
        req(pb::DestroyRequest {
            domain: Some(by_name("test")),
            graceful: false,
        }),
    )
    .await);
    assert_eq!(
        ok(DomainSvc::get_info(&d, req(by_name("test"))).await).nr_virt_cpu,
        4
    );
}

#[tokio::test]
async fn transient_domains() {
    let d = TestDriver::new();
    let xml = "<domain type='test'><name>tr</name><memory>1024</memory><os><type>hvm</type></os></domain>";
    let s = ok(DomainSvc::create_xml(
        &d,
        req(pb::CreateXmlRequest {
            xml: xml.into(),
            ..Default::default()
        }),
    )
    .await);
    assert!(!s.persistent);
    assert_eq!(s.state, DomainState::Running as i32);
    let e = err(DomainSvc::create_xml(
        &d,
        req(pb::CreateXmlRequest {
            xml: xml.into(),
            ..Default::default()
        }),
    )
    .await);
    assert!(
        e.message
            .starts_with("operation failed: domain 'tr' already exists with uuid ")
    );
    ok(DomainSvc::destroy(
        &d,
        req(pb::DestroyRequest {
            domain: Some(by_name("tr")),
            graceful: false,
        }),
    )
    .await);
    assert_eq!(
        err(DomainSvc::lookup(&d, req(by_name("tr"))).await).code,
        ErrorCode::NoDomain
    );

    // Undefining a running persistent domain leaves it transient.
    ok(DomainSvc::undefine(
        &d,
        req(pb::UndefineRequest {
            domain: Some(by_name("test")),
            ..Default::default()
        }),
    )
    .await);
    let t = ok(DomainSvc::lookup(&d, req(by_name("test"))).await);
    assert!(!t.persistent);
    assert_eq!(t.id, 1);
    let e = err(DomainSvc::set_autostart(
        &d,
        req(pb::SetAutostartRequest {
            object: Some(by_name("test")),
            autostart: true,
        }),
    )
    .await);
    assert_eq!(
        e.message,
        "Requested operation is not valid: cannot set autostart for transient domain"
    );
    ok(DomainSvc::destroy(
        &d,
        req(pb::DestroyRequest {
            domain: Some(by_name("test")),
            graceful: false,
        }),
    )
    .await);
    assert!(
        collect(DomainSvc::list(&d, req(pb::ListDomainsRequest::default())).await)
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn list_filters() {
    let d = TestDriver::new();
    define_vm(&d).await;
    let all = collect(DomainSvc::list(&d, req(pb::ListDomainsRequest::default())).await).await;
    assert_eq!(all.len(), 2);
    let active = collect(
        DomainSvc::list(
            &d,
            req(pb::ListDomainsRequest {
                filter: Some(pb::ListFilter {
                    active: true,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        )
        .await,
    )
    .await;
    assert_eq!(
        active.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["test"]
    );
    // Both of a pair set means no filter.
    let both = collect(
        DomainSvc::list(
            &d,
            req(pb::ListDomainsRequest {
                filter: Some(pb::ListFilter {
                    active: true,
                    inactive: true,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        )
        .await,
    )
    .await;
    assert_eq!(both.len(), 2);
    let shutoff = collect(
        DomainSvc::list(
            &d,
            req(pb::ListDomainsRequest {
                shutoff: true,
                ..Default::default()
            }),
        )
        .await,
    )
    .await;
    assert_eq!(
        shutoff.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["vm1"]
    );
}

#[tokio::test]
async fn info_stats_and_devices() {
    let d = TestDriver::new();
    let info = ok(DomainSvc::get_info(&d, req(by_name("test"))).await);
    assert_eq!(
        (info.max_mem_kib, info.memory_kib, info.nr_virt_cpu, info.id),
        (8_388_608, 2_097_152, 2, 1)
    );
    assert_eq!(info.os_type, "linux");
    let bs = ok(DomainSvc::block_stats(
        &d,
        req(pb::BlockStatsRequest {
            domain: Some(by_name("test")),
            disk: "vda".into(),
        }),
    )
    .await);
    assert!(bs.rd_req > 0);
    let e = err(DomainSvc::block_stats(
        &d,
        req(pb::BlockStatsRequest {
            domain: Some(by_name("test")),
            disk: "vdz".into(),
        }),
    )
    .await);
    assert_eq!(e.message, "invalid argument: invalid path: vdz");
    let e = err(DomainSvc::interface_stats(
        &d,
        req(pb::InterfaceStatsRequest {
            domain: Some(by_name("test")),
            interface: "nope".into(),
        }),
    )
    .await);
    assert_eq!(
        e.message,
        "invalid argument: 'nope' is not a known interface"
    );
    ok(DomainSvc::interface_stats(
        &d,
        req(pb::InterfaceStatsRequest {
            domain: Some(by_name("test")),
            interface: "testnet0".into(),
        }),
    )
    .await);
    let ms = ok(DomainSvc::memory_stats(&d, req(by_name("test"))).await);
    assert_eq!(ms.stats.get("actual"), Some(&2_097_152));
    let addrs = ok(DomainSvc::interface_addresses(
        &d,
        req(pb::InterfaceAddressesRequest {
            domain: Some(by_name("test")),
            source: 0,
        }),
    )
    .await);
    assert_eq!(addrs.interfaces[0].addrs[0].address, "192.168.122.3");

    let stats =
        collect(DomainSvc::get_all_stats(&d, req(pb::GetAllStatsRequest::default())).await).await;
    let fields: Vec<&str> = stats[0].params.iter().map(|p| p.field.as_str()).collect();
    for f in [
        "state.state",
        "state.reason",
        "cpu.time",
        "balloon.current",
        "balloon.maximum",
        "vcpu.current",
        "vcpu.maximum",
    ] {
        assert!(fields.contains(&f), "{f}");
    }

    let e = err(DomainSvc::set_vcpus(
        &d,
        req(pb::SetVcpusRequest {
            domain: Some(by_name("test")),
            count: 40,
            ..Default::default()
        }),
    )
    .await);
    assert_eq!(
        e.message,
        "invalid argument: requested cpu amount exceeds maximum supported amount (40 > 32)"
    );
    let e = err(DomainSvc::set_vcpus(
        &d,
        req(pb::SetVcpusRequest {
            domain: Some(by_name("test")),
            count: 3,
            ..Default::default()
        }),
    )
    .await);
    assert_eq!(
        e.message,
        "invalid argument: requested cpu amount exceeds maximum (3 > 2)"
    );
    ok(DomainSvc::set_vcpus(
        &d,
        req(pb::SetVcpusRequest {
            domain: Some(by_name("test")),
            count: 1,
            ..Default::default()
        }),
    )
    .await);
    assert_eq!(
        ok(DomainSvc::get_info(&d, req(by_name("test"))).await).nr_virt_cpu,
        1
    );
    let e = err(DomainSvc::set_memory(
        &d,
        req(pb::SetMemoryRequest {
            domain: Some(by_name("test")),
            memory_kib: 9_000_000,
            ..Default::default()
        }),
    )
    .await);
    assert_eq!(
        e.message,
        "invalid argument: cannot set memory higher than max memory"
    );
    ok(DomainSvc::set_memory(
        &d,
        req(pb::SetMemoryRequest {
            domain: Some(by_name("test")),
            memory_kib: 1_000_000,
            ..Default::default()
        }),
    )
    .await);
    assert_eq!(
        ok(DomainSvc::get_info(&d, req(by_name("test"))).await).memory_kib,
        1_000_000
    );

    let disk = "<disk type='file' device='disk'><source file='/b.img'/><target dev='vdb'/></disk>";
    ok(DomainSvc::attach_device(
        &d,
        req(pb::DeviceRequest {
            domain: Some(by_name("test")),
            device_xml: disk.into(),
            ..Default::default()
        }),
    )
    .await);
    let e = err(DomainSvc::attach_device(
        &d,
        req(pb::DeviceRequest {
            domain: Some(by_name("test")),
            device_xml: disk.into(),
            ..Default::default()
        }),
    )
    .await);
    assert_eq!(e.message, "operation failed: target vdb already exists");
    let xml = ok(DomainSvc::get_xml_desc(
        &d,
        req(pb::GetXmlDescRequest {
            object: Some(by_name("test")),
            ..Default::default()
        }),
    )
    .await)
    .xml;
    assert!(xml.contains("<target dev='vdb' bus='virtio'/>"));
    ok(DomainSvc::detach_device(
        &d,
        req(pb::DeviceRequest {
            domain: Some(by_name("test")),
            device_xml: disk.into(),
            ..Default::default()
        }),
    )
    .await);
    let e = err(DomainSvc::detach_device(
        &d,
        req(pb::DeviceRequest {
            domain: Some(by_name("test")),
            device_xml: disk.into(),
            ..Default::default()
        }),
    )
    .await);
    assert_eq!(e.code, ErrorCode::DeviceMissing);
    let nic = "<interface type='network'><mac address='52:54:00:aa:bb:cc'/><source network='default'/></interface>";
    ok(DomainSvc::attach_device(
        &d,
        req(pb::DeviceRequest {
            domain: Some(by_name("test")),
            device_xml: nic.into(),
            ..Default::default()
        }),
    )
    .await);
    let xml = ok(DomainSvc::get_xml_desc(
        &d,
        req(pb::GetXmlDescRequest {
            object: Some(by_name("test")),
            ..Default::default()
        }),
    )
    .await)
    .xml;
    assert!(xml.contains("<target dev='testnet1'/>"));
}

#[tokio::test]
async fn metadata() {
    let d = TestDriver::new();
    let get = |t: pb::MetadataType, uri: &str| pb::GetMetadataRequest {
        domain: Some(by_name("test")),
        r#type: t as i32,
        uri: uri.into(),
        impact: None,
    };
    let e = err(DomainSvc::get_metadata(&d, req(get(pb::MetadataType::Title, ""))).await);
    assert_eq!(e.code, ErrorCode::NoDomainMetadata);
    ok(DomainSvc::set_metadata(
        &d,
        req(pb::SetMetadataRequest {
            domain: Some(by_name("test")),
            r#type: pb::MetadataType::Title as i32,
            value: "hello".into(),
            ..Default::default()
        }),
    )
    .await);
    assert_eq!(
        ok(DomainSvc::get_metadata(&d, req(get(pb::MetadataType::Title, ""))).await).value,
        "hello"
    );
    ok(DomainSvc::set_metadata(
        &d,
        req(pb::SetMetadataRequest {
            domain: Some(by_name("test")),
            r#type: pb::MetadataType::Element as i32,
            value: "<foo>bar</foo>".into(),
            key: "app".into(),
            uri: "http://app.example/".into(),
            impact: None,
        }),
    )
    .await);
    let v = ok(DomainSvc::get_metadata(
        &d,
        req(get(pb::MetadataType::Element, "http://app.example/")),
    )
    .await);
    assert_eq!(
        v.value,
        "<app:foo xmlns:app=\"http://app.example/\">bar</app:foo>"
    );
    let xml = ok(DomainSvc::get_xml_desc(
        &d,
        req(pb::GetXmlDescRequest {
            object: Some(by_name("test")),
            ..Default::default()
        }),
    )
    .await)
    .xml;
    assert!(xml.contains("  <title>hello</title>\n  <metadata>\n"));
}

#[tokio::test]
async fn managed_save_and_snapshots() {
    let d = TestDriver::new();
    ok(DomainSvc::managed_save(&d, req(by_name("test"))).await);
    assert_eq!(
        state(&d, "test").await,
        (DomainState::Shutoff as i32, "saved".into())
    );
    assert!(ok(DomainSvc::has_managed_save(&d, req(by_name("test"))).await).has_managed_save);
    let e = err(DomainSvc::undefine(
        &d,
        req(pb::UndefineRequest {
            domain: Some(by_name("test")),
            ..Default::default()
        }),
    )
    .await);
    assert_eq!(e.code, ErrorCode::OperationInvalid);
    ok(DomainSvc::create(
        &d,
        req(pb::CreateRequest {
            domain: Some(by_name("test")),
            ..Default::default()
        }),
    )
    .await);
    assert!(!ok(DomainSvc::has_managed_save(&d, req(by_name("test"))).await).has_managed_save);

    let snap = |name: &str| pb::SnapshotCreateRequest {
        domain: Some(by_name("test")),
        xml: format!("<domainsnapshot><name>{name}</name></domainsnapshot>"),
        ..Default::default()
    };
    ok(DomainSvc::snapshot_create_xml(&d, req(snap("s1"))).await);
    ok(DomainSvc::destroy(
        &d,
        req(pb::DestroyRequest {
            domain: Some(by_name("test")),
            graceful: false,
        }),
    )
    .await);
    let s2 = ok(DomainSvc::snapshot_create_xml(&d, req(snap("s2"))).await);
    assert_eq!(
        (s2.parent.as_str(), s2.state.as_str(), s2.current),
        ("s1", "shutoff", true)
    );
    let list = collect(
        DomainSvc::snapshot_list(
            &d,
            req(pb::SnapshotListRequest {
                domain: Some(by_name("test")),
                ..Default::default()
            }),
        )
        .await,
    )
    .await;
    assert_eq!(list.len(), 2);
    let roots = collect(
        DomainSvc::snapshot_list(
            &d,
            req(pb::SnapshotListRequest {
                domain: Some(by_name("test")),
                roots: true,
                ..Default::default()
            }),
        )
        .await,
    )
    .await;
    assert_eq!(roots[0].name, "s1");
    let sref = |n: &str| pb::SnapshotRef {
        domain: Some(by_name("test")),
        name: n.into(),
    };
    ok(DomainSvc::snapshot_revert(&d, req(sref("s1"))).await);
    assert_eq!(
        state(&d, "test").await,
        (DomainState::Running as i32, "from snapshot".into())
    );
    assert_eq!(
        ok(DomainSvc::snapshot_current(&d, req(by_name("test"))).await).name,
        "s1"
    );
    let x = ok(DomainSvc::snapshot_get_xml_desc(&d, req(sref("s2"))).await);
    assert!(x.xml.contains("<state>shutoff</state>"));
    let e = err(DomainSvc::snapshot_lookup(&d, req(sref("nope"))).await);
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            ErrorCode::NoDomainSnapshot,
            "Domain snapshot not found: no domain snapshot with matching name 'nope'"
        )
    );
    ok(DomainSvc::snapshot_delete(
        &d,
        req(pb::SnapshotDeleteRequest {
            snapshot: Some(sref("s1")),
            children: true,
            ..Default::default()
        }),
    )
    .await);
    assert!(
        collect(
            DomainSvc::snapshot_list(
                &d,
                req(pb::SnapshotListRequest {
                    domain: Some(by_name("test")),
                    ..Default::default()
                })
            )
            .await
        )
        .await
        .is_empty()
    );
}

#[tokio::test]
async fn events_stream_lifecycle() {
    let d = TestDriver::new();
    let mut watch = ok(EventsSvc::watch(
        &d,
        req(pb::WatchRequest {
            families: vec![pb::EventFamily::Domain as i32],
            ..Default::default()
        }),
    )
    .await);
    define_vm(&d).await;
    ok(DomainSvc::create(
        &d,
        req(pb::CreateRequest {
            domain: Some(by_name("vm1")),
            ..Default::default()
        }),
    )
    .await);
    ok(DomainSvc::suspend(&d, req(by_name("vm1"))).await);
    ok(DomainSvc::resume(&d, req(by_name("vm1"))).await);
    ok(DomainSvc::destroy(
        &d,
        req(pb::DestroyRequest {
            domain: Some(by_name("vm1")),
            graceful: false,
        }),
    )
    .await);
    ok(DomainSvc::undefine(
        &d,
        req(pb::UndefineRequest {
            domain: Some(by_name("vm1")),
            ..Default::default()
        }),
    )
    .await);
    // Network events are filtered out of a domain-only watch.
    ok(NetSvc::destroy(&d, req(by_name("default"))).await);
    let mut got = Vec::new();
    for _ in 0..6 {
        let ev = watch.next().await.expect("event").expect("ok");
        match ev.kind {
            Some(pb::event::Kind::DomainLifecycle(l)) => {
                got.push((l.r#type, l.detail, l.detail_name))
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let want = [
        (0, 0, "added"),
        (2, 0, "booted"),
        (3, 0, "paused"),
        (4, 0, "unpaused"),
        (5, 1, "destroyed"),
        (1, 0, "removed"),
    ];
    let want: Vec<(i32, i32, String)> = want
        .iter()
        .map(|(a, b, c)| (*a, *b, (*c).to_owned()))
        .collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn network_lifecycle() {
    let d = TestDriver::new();
    let xml = "<network><name>n2</name><bridge name='br9'/><forward/><ip address='10.0.0.1' netmask='255.255.255.0'/></network>";
    let s = ok(NetSvc::define_xml(
        &d,
        req(pb::DefineXmlRequest {
            xml: xml.into(),
            validate: false,
        }),
    )
    .await);
    assert!(!s.active && s.persistent);
    ok(NetSvc::create(&d, req(by_name("n2"))).await);
    let e = err(NetSvc::create(&d, req(by_name("n2"))).await);
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            ErrorCode::OperationInvalid,
            "Requested operation is not valid: Network 'n2' is already running"
        )
    );
    assert_eq!(
        ok(NetSvc::get_bridge_name(&d, req(by_name("n2"))).await).bridge,
        "br9"
    );
    ok(NetSvc::destroy(&d, req(by_name("n2"))).await);
    ok(NetSvc::undefine(&d, req(by_name("n2"))).await);
    let e = err(NetSvc::lookup(&d, req(by_name("n2"))).await);
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            ErrorCode::NoNetwork,
            "Network not found: no network with matching name 'n2'"
        )
    );
    ok(NetSvc::define_xml(
        &d,
        req(pb::DefineXmlRequest {
            xml: xml.into(),
            validate: false,
        }),
    )
    .await);
    let e = err(NetSvc::create_xml(
        &d,
        req(pb::DefineXmlRequest {
            xml: xml.into(),
            validate: false,
        }),
    )
    .await);
    assert!(
        e.message
            .starts_with("operation failed: network 'n2' already exists with uuid ")
    );
    let active = collect(
        NetSvc::list(
            &d,
            req(pb::ListFilter {
                active: true,
                ..Default::default()
            }),
        )
        .await,
    )
    .await;
    assert_eq!(active.len(), 1);
}

#[tokio::test]
async fn pools_and_volumes() {
    let d = TestDriver::new();
    let pool = || Some(by_name("default-pool"));
    let vol = "<volume><name>v1</name><capacity unit='M'>10</capacity><allocation>0</allocation></volume>";
    let s = ok(VolSvc::create_xml(
        &d,
        req(pb::VolCreateRequest {
            pool: pool(),
            xml: vol.into(),
            ..Default::default()
        }),
    )
    .await);
    assert_eq!(
        (s.key.as_str(), s.path.as_str()),
        ("/default-pool/v1", "/default-pool/v1")
    );
    let e = err(VolSvc::create_xml(
        &d,
        req(pb::VolCreateRequest {
            pool: pool(),
            xml: vol.into(),
            ..Default::default()
        }),
    )
    .await);
    assert_eq!(e.message, "operation failed: storage vol already exists");
    let vref = pb::VolRef {
        by: Some(pb::vol_ref::By::Path("/default-pool/v1".into())),
    };
    let x = ok(VolSvc::get_xml_desc(&d, req(vref.clone())).await);
    assert!(x.xml.contains("<capacity unit='bytes'>10485760</capacity>"));
    ok(VolSvc::resize(
        &d,
        req(pb::VolResizeRequest {
            volume: Some(vref.clone()),
            capacity: 20 << 20,
            ..Default::default()
        }),
    )
    .await);
    assert_eq!(
        ok(VolSvc::get_info(&d, req(vref.clone())).await).capacity,
        20 << 20
    );
    let e = err(VolSvc::resize(
        &d,
        req(pb::VolResizeRequest {
            volume: Some(vref.clone()),
            capacity: 1,
            ..Default::default()
        }),
    )
    .await);
    assert_eq!(e.code, ErrorCode::InvalidArg);
    ok(VolSvc::delete(&d, req(vref.clone())).await);
    let e = err(VolSvc::get_info(&d, req(vref)).await);
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            ErrorCode::NoStorageVol,
            "Storage volume not found: no storage vol with matching path '/default-pool/v1'"
        )
    );

    let e = err(PoolSvc::create(&d, req(by_name("default-pool"))).await);
    assert_eq!(
        e.message,
        "Requested operation is not valid: storage pool 'default-pool' is active"
    );
    ok(PoolSvc::destroy(&d, req(by_name("default-pool"))).await);
    let e = err(PoolSvc::destroy(&d, req(by_name("default-pool"))).await);
    assert_eq!(
        e.message,
        "Requested operation is not valid: storage pool 'default-pool' is not active"
    );
    let e = err(VolSvc::list(&d, req(by_name("default-pool"))).await);
    assert_eq!(
        e.message,
        "Requested operation is not valid: storage pool is not active"
    );
    ok(PoolSvc::undefine(&d, req(by_name("default-pool"))).await);
    let e = err(PoolSvc::lookup(&d, req(by_name("default-pool"))).await);
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            ErrorCode::NoStoragePool,
            "Storage pool not found: no storage pool with matching name 'default-pool'"
        )
    );
    let p2 = "<pool type='dir'><name>p2</name><target><path>/p2</path></target></pool>";
    ok(PoolSvc::define_xml(
        &d,
        req(pb::DefineXmlRequest {
            xml: p2.into(),
            validate: false,
        }),
    )
    .await);
    let info = ok(PoolSvc::get_info(&d, req(by_name("p2"))).await);
    assert_eq!(info.capacity, 107_374_182_400);
}

#[tokio::test]
async fn interfaces() {
    let d = TestDriver::new();
    let iref = |n: &str| pb::InterfaceRef {
        key: Some(pb::interface_ref::Key::Name(n.into())),
    };
    let xml =
        "<interface type='ethernet' name='eth2'><mac address='aa:bb:cc:dd:ee:01'/></interface>";
    let s = ok(IfaceSvc::define_xml(
        &d,
        req(pb::DefineXmlRequest {
            xml: xml.into(),
            validate: false,
        }),
    )
    .await);
    assert!(!s.active);
    ok(IfaceSvc::create(&d, req(iref("eth2"))).await);
    let e = err(IfaceSvc::create(&d, req(iref("eth2"))).await);
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            ErrorCode::OperationInvalid,
            "Requested operation is not valid"
        )
    );
    ok(IfaceSvc::destroy(&d, req(iref("eth2"))).await);
    ok(IfaceSvc::undefine(&d, req(iref("eth2"))).await);
    let e = err(IfaceSvc::lookup(&d, req(iref("eth2"))).await);
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            ErrorCode::NoInterface,
            "Interface not found: no interface with matching name 'eth2'"
        )
    );
    let by_mac = ok(IfaceSvc::lookup(
        &d,
        req(pb::InterfaceRef {
            key: Some(pb::interface_ref::Key::Mac("aa:bb:cc:dd:ee:ff".into())),
        }),
    )
    .await);
    assert_eq!(by_mac.name, "eth1");
    ok(IfaceSvc::change_begin(&d, req(())).await);
    ok(IfaceSvc::undefine(&d, req(iref("eth1"))).await);
    ok(IfaceSvc::change_rollback(&d, req(())).await);
    ok(IfaceSvc::lookup(&d, req(iref("eth1"))).await);
    let e = err(IfaceSvc::change_commit(&d, req(())).await);
    assert_eq!(
        e.message,
        "Requested operation is not valid: no transaction running, nothing to be committed."
    );
}

#[tokio::test]
async fn node_devices() {
    let d = TestDriver::new();
    let all = collect(NodeDevSvc::list(&d, req(pb::ListNodeDevicesRequest::default())).await).await;
    assert_eq!(all.len(), 4);
    let scsi = collect(
        NodeDevSvc::list(
            &d,
            req(pb::ListNodeDevicesRequest {
                caps: vec!["scsi_host".into()],
                ..Default::default()
            }),
        )
        .await,
    )
    .await;
    let mut names: Vec<String> = scsi.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(names, ["scsi_host1", "scsi_host11", "scsi_host2"]);
    let e = err(NodeDevSvc::get_xml_desc(
        &d,
        req(pb::NodeDeviceRef {
            name: "nope".into(),
        }),
    )
    .await);
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            ErrorCode::NoNodeDevice,
            "Node device not found: no node device with matching name 'nope'"
        )
    );
    ok(NodeDevSvc::destroy(
        &d,
        req(pb::NodeDeviceRef {
            name: "scsi_host11".into(),
        }),
    )
    .await);
    assert_eq!(
        collect(NodeDevSvc::list(&d, req(pb::ListNodeDevicesRequest::default())).await)
            .await
            .len(),
        3
    );
    let found = ok(NodeDevSvc::lookup_scsi_host_by_wwn(
        &d,
        req(pb::WwnRequest {
            wwnn: "2000000012341234".into(),
            wwpn: "1000000012341234".into(),
        }),
    )
    .await);
    assert_eq!(found.name, "scsi_host1");
}

#[tokio::test]
async fn secrets() {
    let d = TestDriver::new();
    let uuid = "11111111-2222-3333-4444-555555555555";
    let sref = || pb::SecretRef {
        key: Some(pb::secret_ref::Key::Uuid(uuid.into())),
    };
    let xml = format!(
        "<secret ephemeral='no' private='no'><uuid>{uuid}</uuid><usage type='volume'><volume>/a/b</volume></usage></secret>"
    );
    ok(SecretSvc::define_xml(
        &d,
        req(pb::DefineXmlRequest {
            xml: xml.clone(),
            validate: false,
        }),
    )
    .await);
    let e = err(SecretSvc::get_value(&d, req(sref())).await);
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            ErrorCode::NoSecret,
            format!("Secret not found: secret '{uuid}' does not have a value").as_str()
        )
    );
    ok(SecretSvc::set_value(
        &d,
        req(pb::SetSecretValueRequest {
            secret: Some(sref()),
            value: b"hello".to_vec(),
        }),
    )
    .await);
    assert_eq!(
        ok(SecretSvc::get_value(&d, req(sref())).await).value,
        b"hello"
    );
    let by_usage = ok(SecretSvc::lookup(
        &d,
        req(pb::SecretRef {
            key: Some(pb::secret_ref::Key::Usage(pb::SecretUsage {
                r#type: pb::SecretUsageType::SecretUsageVolume as i32,
                id: "/a/b".into(),
            })),
        }),
    )
    .await);
    assert_eq!(by_usage.uuid, uuid);
    let other = "<secret ephemeral='no' private='no'><usage type='volume'><volume>/a/b</volume></usage></secret>";
    let e = err(SecretSvc::define_xml(
        &d,
        req(pb::DefineXmlRequest {
            xml: other.into(),
            validate: false,
        }),
    )
    .await);
    assert_eq!(
        e.message,
        format!("internal error: a secret with UUID {uuid} already defined for use with /a/b")
    );
    let private = xml.replace("private='no'", "private='yes'");
    ok(SecretSvc::define_xml(
        &d,
        req(pb::DefineXmlRequest {
            xml: private,
            validate: false,
        }),
    )
    .await);
    let e = err(SecretSvc::get_value(&d, req(sref())).await);
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            ErrorCode::InvalidSecret,
            "Invalid secret: secret is private"
        )
    );
    let e = err(SecretSvc::define_xml(
        &d,
        req(pb::DefineXmlRequest {
            xml,
            validate: false,
        }),
    )
    .await);
    assert_eq!(
        e.message,
        "internal error: cannot change private flag on existing secret"
    );
    ok(SecretSvc::undefine(&d, req(sref())).await);
    let e = err(SecretSvc::lookup(&d, req(sref())).await);
    assert_eq!(e.code, ErrorCode::NoSecret);
}

#[tokio::test]
async fn nwfilters_and_bindings() {
    let d = TestDriver::new();
    let f1 = "<filter name='f1' chain='root'><uuid>16989360-7a73-569d-855a-3447b51bb939</uuid><rule action='accept' direction='in'><tcp dstportstart='22'/></rule></filter>";
    ok(NwFilterSvc::define_xml(
        &d,
        req(pb::DefineXmlRequest {
            xml: f1.into(),
            validate: false,
        }),
    )
    .await);
    let x = ok(NwFilterSvc::get_xml_desc(&d, req(by_name("f1"))).await);
    assert!(
        x.xml
            .contains("<rule action='accept' direction='in' priority='500'>")
    );
    let other =
        "<filter name='f1' chain='root'><uuid>26989360-7a73-569d-855a-3447b51bb939</uuid></filter>";
    let e = err(NwFilterSvc::define_xml(
        &d,
        req(pb::DefineXmlRequest {
            xml: other.into(),
            validate: false,
        }),
    )
    .await);
    assert_eq!(
        e.message,
        "operation failed: filter 'f1' already exists with uuid 16989360-7a73-569d-855a-3447b51bb939"
    );
    let binding = "<filterbinding><owner><name>test</name><uuid>6695eb01-f6a4-8304-79aa-97f2502e193f</uuid></owner><portdev name='vnet0'/><mac address='52:54:00:00:00:01'/><filterref filter='f1'/></filterbinding>";
    ok(BindingSvc::create_xml(
        &d,
        req(pb::DefineXmlRequest {
            xml: binding.into(),
            validate: false,
        }),
    )
    .await);
    let e = err(NwFilterSvc::undefine(&d, req(by_name("f1"))).await);
    assert_eq!(e.code, ErrorCode::OperationInvalid);
    let b = ok(BindingSvc::lookup(
        &d,
        req(pb::BindingRef {
            port_dev: "vnet0".into(),
        }),
    )
    .await);
    assert_eq!(b.filter_name, "f1");
    ok(BindingSvc::delete(
        &d,
        req(pb::BindingRef {
            port_dev: "vnet0".into(),
        }),
    )
    .await);
    let e = err(BindingSvc::get_xml_desc(
        &d,
        req(pb::BindingRef {
            port_dev: "vnet0".into(),
        }),
    )
    .await);
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            ErrorCode::NoNwfilterBinding,
            "Network filter binding not found: no nwfilter binding for port dev 'vnet0'"
        )
    );
    ok(NwFilterSvc::undefine(&d, req(by_name("f1"))).await);
    let e = err(NwFilterSvc::lookup(&d, req(by_name("f1"))).await);
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            ErrorCode::NoNwfilter,
            "Network filter not found: no nwfilter with matching name 'f1'"
        )
    );
}

#[tokio::test]
async fn hosts_are_separate_per_uri() {
    let d = TestDriver::new();
    let dir = std::env::temp_dir().join(format!("vm-host-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("tmpdir");
    let node = dir.join("node.xml");
    std::fs::write(
        &node,
        "<node><domain type='test'><name>custom</name><memory>1024</memory><os><type>hvm</type></os></domain></node>",
    )
    .expect("write node file");
    let uri = format!("test://{}", node.display());
    let open = ok(ConnectSvc::open(&d, req_uri(&uri, pb::OpenRequest::default())).await);
    assert_eq!(open.uri, uri);
    let names: Vec<String> =
        collect(DomainSvc::list(&d, req_uri(&uri, pb::ListDomainsRequest::default())).await)
            .await
            .into_iter()
            .map(|s| s.name)
            .collect();
    assert_eq!(names, ["custom"]);
    // The default host is unaffected, and the custom host keeps its state.
    ok(DomainSvc::destroy(
        &d,
        req_uri(
            &uri,
            pb::DestroyRequest {
                domain: Some(by_name("custom")),
                graceful: false,
            },
        ),
    )
    .await);
    assert_eq!(ok(DomainSvc::lookup(&d, req(by_name("test"))).await).id, 1);
    assert_eq!(
        ok(DomainSvc::lookup(&d, req_uri(&uri, by_name("custom"))).await).id,
        -1
    );
    let e = err(ConnectSvc::open(
        &d,
        req_uri("test:///nonexistent/node.xml", pb::OpenRequest::default()),
    )
    .await);
    assert_eq!(e.code, ErrorCode::OpenFailed);
    std::fs::remove_dir_all(&dir).ok();
}

/// Upload and download through a real in-process server, as streaming
/// calls need the transport.
#[tokio::test]
async fn volume_upload_download_over_grpc() {
    use pb::storage_vol_client::StorageVolClient;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let routes = crate::routes(TestDriver::new());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_routes(routes)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
    });
    let mut client = loop {
        match StorageVolClient::connect(format!("http://{addr}")).await {
            Ok(c) => break c,
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    };
    let vol = "<volume><name>up</name><capacity>1024</capacity></volume>";
    client
        .create_xml(pb::VolCreateRequest {
            pool: Some(by_name("default-pool")),
            xml: vol.into(),
            ..Default::default()
        })
        .await
        .expect("create");
    let vref = pb::VolRef {
        by: Some(pb::vol_ref::By::Path("/default-pool/up".into())),
    };
    let msgs = vec![
        pb::VolUploadChunk {
            msg: Some(pb::vol_upload_chunk::Msg::Start(pb::VolTransferStart {
                volume: Some(vref.clone()),
                offset: 0,
                length: 10,
                sparse: false,
            })),
        },
        pb::VolUploadChunk {
            msg: Some(pb::vol_upload_chunk::Msg::Data(b"hello".to_vec())),
        },
        pb::VolUploadChunk {
            msg: Some(pb::vol_upload_chunk::Msg::Data(b"world".to_vec())),
        },
    ];
    let mut progress = client
        .upload(tokio_stream::iter(msgs))
        .await
        .expect("upload")
        .into_inner();
    let mut last = None;
    while let Some(p) = progress.next().await {
        last = Some(p.expect("progress"));
    }
    assert_eq!(
        last.map(|p| (p.processed_bytes, p.total_bytes)),
        Some((10, 10))
    );
    let mut down = client
        .download(pb::VolDownloadRequest {
            range: Some(pb::VolTransferStart {
                volume: Some(vref),
                offset: 0,
                length: 12,
                sparse: false,
            }),
        })
        .await
        .expect("download")
        .into_inner();
    let mut data = Vec::new();
    while let Some(c) = down.next().await {
        data.extend(c.expect("chunk").data);
    }
    assert_eq!(data, b"helloworld\0\0");

    let mut domains = pb::domain_client::DomainClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let open = pb::ConsoleInput {
        msg: Some(pb::console_input::Msg::Open(pb::ConsoleOpen {
            domain: Some(by_name("test")),
            ..Default::default()
        })),
    };
    let status = domains
        .open_console(tokio_stream::iter(vec![open]))
        .await
        .expect_err("console is unsupported");
    assert_eq!(VirtError::from_status(&status).code, ErrorCode::NoSupport);
}

#[tokio::test]
async fn events_filters_and_lagging_subscribers() {
    let d = TestDriver::new();
    // Only vm1's events, whatever the family.
    let mut only_vm1 = ok(EventsSvc::watch(
        &d,
        req(pb::WatchRequest {
            object_name: "vm1".into(),
            ..Default::default()
        }),
    )
    .await);
    // A subscriber that never reads until the end: it must not hold up
    // anyone, and it skips what it missed.
    let mut lagging = ok(EventsSvc::watch(&d, req(pb::WatchRequest::default())).await);
    for _ in 0..(crate::events::CAPACITY + 10) {
        ok(DomainSvc::suspend(&d, req(by_name("test"))).await);
        ok(DomainSvc::resume(&d, req(by_name("test"))).await);
    }
    define_vm(&d).await;
    let ev = only_vm1.next().await.expect("event").expect("ok");
    match ev.kind {
        Some(pb::event::Kind::DomainLifecycle(l)) => {
            assert_eq!(l.domain.map(|o| o.name), Some("vm1".to_owned()));
            assert_eq!(l.detail_name, "added");
        }
        other => panic!("unexpected {other:?}"),
    }
    // The lagging stream still delivers (newer) events, without error.
    let ev = lagging.next().await.expect("event still flows");
    assert!(ev.is_ok());
}

#[tokio::test]
async fn events_other_families() {
    let d = TestDriver::new();
    let mut w = ok(EventsSvc::watch(
        &d,
        req(pb::WatchRequest {
            families: vec![
                pb::EventFamily::Network as i32,
                pb::EventFamily::StoragePool as i32,
                pb::EventFamily::Secret as i32,
                pb::EventFamily::NodeDevice as i32,
            ],
            ..Default::default()
        }),
    )
    .await);
    ok(NetSvc::destroy(&d, req(by_name("default"))).await);
    ok(NetSvc::create(&d, req(by_name("default"))).await);
    ok(PoolSvc::destroy(&d, req(by_name("default-pool"))).await);
    let sec = "<secret ephemeral='no' private='no'><uuid>11111111-2222-3333-4444-555555555555</uuid></secret>";
    ok(SecretSvc::define_xml(
        &d,
        req(pb::DefineXmlRequest {
            xml: sec.into(),
            validate: false,
        }),
    )
    .await);
    ok(NodeDevSvc::destroy(
        &d,
        req(pb::NodeDeviceRef {
            name: "scsi_host11".into(),
        }),
    )
    .await);
    // Domain events are filtered out.
    ok(DomainSvc::suspend(&d, req(by_name("test"))).await);
    let mut kinds = Vec::new();
    for _ in 0..5 {
        let ev = w.next().await.expect("event").expect("ok");
        kinds.push(match ev.kind {
            Some(pb::event::Kind::NetworkLifecycle(n)) => format!("net:{}", n.r#type),
            Some(pb::event::Kind::PoolLifecycle(p)) => format!("pool:{}", p.r#type),
            Some(pb::event::Kind::SecretLifecycle(s)) => format!("secret:{}", s.r#type),
            Some(pb::event::Kind::NodedevLifecycle(n)) => {
                format!("nodedev:{}:{}", n.device, n.r#type)
            }
            other => panic!("unexpected {other:?}"),
        });
    }
    assert_eq!(
        kinds,
        [
            "net:3",
            "net:2",
            "pool:3",
            "secret:0",
            "nodedev:scsi_host11:1"
        ]
    );
}

#[tokio::test]
async fn config_only_changes_wait_for_next_boot() {
    let d = TestDriver::new();
    let disk = "<disk type='file' device='disk'><source file='/c.img'/><target dev='vdc'/></disk>";
    ok(DomainSvc::attach_device(
        &d,
        req(pb::DeviceRequest {
            domain: Some(by_name("test")),
            device_xml: disk.into(),
            impact: Some(pb::Impact {
                config: true,
                ..Default::default()
            }),
            force: false,
        }),
    )
    .await);
    let xml = |inactive| pb::GetXmlDescRequest {
        object: Some(by_name("test")),
        inactive,
        ..Default::default()
    };
    assert!(
        !ok(DomainSvc::get_xml_desc(&d, req(xml(false))).await)
            .xml
            .contains("vdc")
    );
    assert!(
        ok(DomainSvc::get_xml_desc(&d, req(xml(true))).await)
            .xml
            .contains("vdc")
    );
    ok(DomainSvc::destroy(
        &d,
        req(pb::DestroyRequest {
            domain: Some(by_name("test")),
            graceful: false,
        }),
    )
    .await);
    assert!(
        ok(DomainSvc::get_xml_desc(&d, req(xml(false))).await)
            .xml
            .contains("vdc")
    );
    // Live changes need a running domain.
    let e = err(DomainSvc::attach_device(
        &d,
        req(pb::DeviceRequest {
            domain: Some(by_name("test")),
            device_xml: disk.into(),
            impact: Some(pb::Impact {
                live: true,
                ..Default::default()
            }),
            force: false,
        }),
    )
    .await);
    assert_eq!(
        e.message,
        "Requested operation is not valid: domain is not running"
    );
}

#[tokio::test]
async fn reboot_reset_and_lifecycle_actions() {
    let d = TestDriver::new();
    ok(DomainSvc::reboot(
        &d,
        req(pb::RebootRequest {
            domain: Some(by_name("test")),
            mode: 0,
        }),
    )
    .await);
    assert_eq!(
        state(&d, "test").await,
        (DomainState::Running as i32, "booted".into())
    );
    ok(DomainSvc::reset(&d, req(by_name("test"))).await);
    // on_poweroff='restart' keeps the guest running after shutdown.
    let xml = "<domain type='test'><name>r</name><memory>1024</memory><os><type>hvm</type></os><on_poweroff>restart</on_poweroff></domain>";
    ok(DomainSvc::create_xml(
        &d,
        req(pb::CreateXmlRequest {
            xml: xml.into(),
            ..Default::default()
        }),
    )
    .await);
    ok(DomainSvc::shutdown(
        &d,
        req(pb::ShutdownRequest {
            domain: Some(by_name("r")),
            mode: 0,
        }),
    )
    .await);
    assert_eq!(state(&d, "r").await.0, DomainState::Running as i32);
    ok(DomainSvc::destroy(
        &d,
        req(pb::DestroyRequest {
            domain: Some(by_name("r")),
            graceful: false,
        }),
    )
    .await);
    let e = err(DomainSvc::reboot(
        &d,
        req(pb::RebootRequest {
            domain: Some(by_name("r")),
            mode: 0,
        }),
    )
    .await);
    assert_eq!(e.code, ErrorCode::NoDomain);
}

#[tokio::test]
async fn npiv_vhba_create_and_destroy() {
    let d = TestDriver::new();
    let xml = "<device><parent>scsi_host1</parent><capability type='scsi_host'><capability type='fc_host'><wwnn>2000000098769876</wwnn><wwpn>1000000098769876</wwpn></capability></capability></device>";
    let s = ok(NodeDevSvc::create_xml(
        &d,
        req(pb::DefineXmlRequest {
            xml: xml.into(),
            validate: false,
        }),
    )
    .await);
    assert_eq!(
        (s.name.as_str(), s.parent.as_str()),
        ("scsi_host12", "scsi_host1")
    );
    let e = err(NodeDevSvc::create_xml(
        &d,
        req(pb::DefineXmlRequest {
            xml: xml.replace("scsi_host1<", "computer<"),
            validate: false,
        }),
    )
    .await);
    assert_eq!(e.code, ErrorCode::InvalidArg);
    ok(NodeDevSvc::destroy(
        &d,
        req(pb::NodeDeviceRef {
            name: "scsi_host12".into(),
        }),
    )
    .await);
    let e = err(NodeDevSvc::destroy(
        &d,
        req(pb::NodeDeviceRef {
            name: "computer".into(),
        }),
    )
    .await);
    assert_eq!(e.code, ErrorCode::InvalidArg);
}

#[tokio::test]
async fn uuids_in_any_form() {
    let d = TestDriver::new();
    for u in [
        "6695EB01-F6A4-8304-79AA-97F2502E193F",
        "6695eb01f6a4830479aa97f2502e193f",
    ] {
        let s = ok(DomainSvc::lookup(
            &d,
            req(pb::ObjectRef {
                key: Some(Key::Uuid(u.into())),
            }),
        )
        .await);
        assert_eq!(s.name, "test");
    }
    let e = err(DomainSvc::lookup(
        &d,
        req(pb::ObjectRef {
            key: Some(Key::Uuid("not-a-uuid".into())),
        }),
    )
    .await);
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            ErrorCode::NoDomain,
            "Domain not found: no domain with matching uuid 'not-a-uuid'"
        )
    );
    let e = err(DomainSvc::block_stats(
        &d,
        req(pb::BlockStatsRequest {
            domain: Some(by_name("test")),
            disk: String::new(),
        }),
    )
    .await);
    assert_eq!(
        e.message,
        "Operation not supported: summary statistics are not supported yet"
    );
}

#[tokio::test]
async fn network_update_sections() {
    use pb::{NetworkUpdateCommand as C, NetworkUpdateSection as S};
    let d = TestDriver::new();
    let upd = |c: C, s: S, xml: &str| pb::NetworkUpdateRequest {
        network: Some(by_name("default")),
        command: c as i32,
        section: s as i32,
        parent_index: -1,
        xml: xml.into(),
        live: false,
        config: false,
    };
    let host = "<host mac='52:54:00:00:00:01' ip='192.168.122.10'/>";
    ok(NetSvc::update(&d, req(upd(C::AddLast, S::NetworkSectionIpDhcpHost, host))).await);
    let xml = ok(NetSvc::get_xml_desc(
        &d,
        req(pb::GetXmlDescRequest {
            object: Some(by_name("default")),
            ..Default::default()
        }),
    )
    .await)
    .xml;
    assert!(xml.contains("      <range start='192.168.122.2' end='192.168.122.254'/>\n      <host mac='52:54:00:00:00:01' ip='192.168.122.10'/>\n"));
    let e = err(NetSvc::update(&d, req(upd(C::AddLast, S::NetworkSectionIpDhcpHost, host))).await);
    assert_eq!(
        e.message,
        "Requested operation is not valid: there is an existing dhcp host entry in network 'default' that matches \"<host mac='52:54:00:00:00:01' name='(null)' ip='192.168.122.10'/>\""
    );
    ok(NetSvc::update(
        &d,
        req(upd(
            C::Modify,
            S::NetworkSectionIpDhcpHost,
            "<host mac='52:54:00:00:00:01' ip='192.168.122.11'/>",
        )),
    )
    .await);
    ok(NetSvc::update(
        &d,
        req(upd(
            C::Delete,
            S::NetworkSectionIpDhcpHost,
            "<host mac='52:54:00:00:00:01'/>",
        )),
    )
    .await);
    let e = err(NetSvc::update(
        &d,
        req(upd(
            C::Delete,
            S::NetworkSectionIpDhcpHost,
            "<host mac='52:54:00:00:00:09'/>",
        )),
    )
    .await);
    assert_eq!(
        e.message,
        "Requested operation is not valid: couldn't locate a matching dhcp host entry in network 'default'"
    );
    ok(NetSvc::update(
        &d,
        req(upd(
            C::AddLast,
            S::NetworkSectionDnsHost,
            "<host ip='192.168.122.5'><hostname>foo</hostname></host>",
        )),
    )
    .await);
    let xml = ok(NetSvc::get_xml_desc(
        &d,
        req(pb::GetXmlDescRequest {
            object: Some(by_name("default")),
            ..Default::default()
        }),
    )
    .await)
    .xml;
    assert!(xml.contains("  <bridge name='virbr0' stp='on' delay='0'/>\n  <dns>\n    <host ip='192.168.122.5'>\n      <hostname>foo</hostname>\n    </host>\n  </dns>\n  <ip "));
    let e = err(NetSvc::update(
        &d,
        req(upd(
            C::AddLast,
            S::NetworkSectionBridge,
            "<bridge name='x'/>",
        )),
    )
    .await);
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            ErrorCode::OperationUnsupported,
            "Operation not supported: can't update 'bridge' section of network 'default'"
        )
    );
}

#[tokio::test]
async fn host_cpu_calls() {
    let d = TestDriver::new();
    let caps = ok(HostSvc::get_domain_capabilities(
        &d,
        req(pb::DomainCapabilitiesRequest::default()),
    )
    .await);
    assert!(
        caps.xml
            .starts_with("<domainCapabilities>\n  <domain>test</domain>\n  <arch>i686</arch>\n")
    );
    let models = ok(HostSvc::get_cpu_model_names(
        &d,
        req(pb::CpuModelNamesRequest {
            arch: "i686".into(),
        }),
    )
    .await);
    assert_eq!(models.models.len(), 150);
    assert_eq!(models.models[0], "486");
    let base = ok(HostSvc::baseline_cpu(
        &d,
        req(pb::BaselineCpuRequest {
            cpu_xmls: vec![
                "<cpu><arch>i686</arch><model>pentium3</model><feature name='sse2'/></cpu>".into(),
            ],
            ..Default::default()
        }),
    )
    .await);
    assert_eq!(
        base.xml,
        "<cpu mode='custom' match='exact'>\n  <model fallback='forbid'>pentium3</model>\n  <feature policy='require' name='sse2'/>\n</cpu>\n"
    );
    assert_eq!(
        ok(HostSvc::get_free_memory(&d, req(())).await).bytes,
        3 * 1024 * 1024
    );
    let e = err(HostSvc::compare_cpu(&d, req(pb::CompareCpuRequest::default())).await);
    assert_eq!(e.code, ErrorCode::NoSupport);
}
