//! The gateway's routing and failure behaviour with real processes.

mod common;

use common::Mesh;
use std::time::{Duration, Instant};
use virtmesh_proto::v1::domain_client::DomainClient;
use virtmesh_proto::v1::{ListDomainsRequest, ObjectRef, object_ref};
use virtmesh_rpc::client::{ChannelOptions, channel};
use virtmesh_rpc::{ErrorCode, ListenAddr, VirtError};

fn client(mesh: &Mesh) -> DomainClient<tonic::transport::Channel> {
    let addr: ListenAddr = mesh.gateway.addr.parse().expect("gateway address");
    DomainClient::new(channel(&addr, &ChannelOptions::default()))
}

fn by_name(name: &str) -> ObjectRef {
    ObjectRef {
        key: Some(object_ref::Key::Name(name.to_owned())),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_service_fails_fast_and_a_restart_restores_it() {
    let mut mesh = Mesh::start();
    let mut domains = client(&mesh);
    let found = domains
        .lookup(by_name("test"))
        .await
        .expect("lookup through the gateway");
    assert_eq!(
        found.into_inner().uuid,
        "6695eb01-f6a4-8304-79aa-97f2502e193f"
    );

    mesh.test.kill();
    let started = Instant::now();
    let status = domains
        .lookup(by_name("test"))
        .await
        .expect_err("service is down");
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
    let err = VirtError::from_status(&status);
    assert_eq!(err.code, ErrorCode::NoConnect, "{err:?}");
    assert!(err.message.contains("test:///default"), "{}", err.message);
    assert!(err.message.contains(&mesh.test.addr), "{}", err.message);

    mesh.restart_test();
    let mut ok = false;
    for _ in 0..30 {
        if domains.lookup(by_name("test")).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "calls did not recover after the service restarted");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_scheme_is_a_clear_error() {
    let mesh = Mesh::start();
    let mut domains = client(&mesh);
    let mut req = tonic::Request::new(ListDomainsRequest::default());
    virtmesh_rpc::meta::set_virt_uri(&mut req, "xen:///system").expect("uri header");
    let started = Instant::now();
    let status = match domains.list(req).await {
        Ok(_) => panic!("xen:/// has no service"),
        Err(s) => s,
    };
    assert!(started.elapsed() < Duration::from_secs(1));
    let err = VirtError::from_status(&status);
    assert_eq!(err.code, ErrorCode::NoConnect);
    assert!(err.message.contains("xen:///system"), "{}", err.message);
}

#[tokio::test(flavor = "multi_thread")]
async fn starting_a_running_domain_is_operation_invalid() {
    let mesh = Mesh::start();
    let mut domains = client(&mesh);
    let status = domains
        .create(virtmesh_proto::v1::CreateRequest {
            domain: Some(by_name("test")),
            ..Default::default()
        })
        .await
        .expect_err("test is running");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    let err = VirtError::from_status(&status);
    assert_eq!(err.code, ErrorCode::OperationInvalid);
    assert_eq!(
        err.message,
        "Requested operation is not valid: domain is already running"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn list_streams_through_the_gateway() {
    let mesh = Mesh::start();
    let mut domains = client(&mesh);
    let mut stream = domains
        .list(ListDomainsRequest::default())
        .await
        .expect("list")
        .into_inner();
    let mut names = Vec::new();
    while let Some(d) = stream.message().await.expect("stream item") {
        names.push(d.name);
    }
    assert_eq!(names, vec!["test".to_owned()]);
}
