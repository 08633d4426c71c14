//! The state machine over a fake QMP peer.
use super::*;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use virtmesh_proto::v1::event::Kind;

const XML: &str = "<domain type='kvm'><name>sm</name><memory unit='MiB'>128</memory><os><type machine='q35'>hvm</type></os></domain>";

/// A driver whose domain `sm` is "running" on a fake QEMU: the other
/// end of a socket pair, through which the test sends QMP events.
async fn fake_running(persistent: bool) -> (tempfile::TempDir, QemuDriver, UnixStream, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let driver = QemuDriver::new(QemuConfig {
        state_dir: dir.path().join("state"),
        run_dir: dir.path().join("run"),
        emulator: "/nonexistent".into(),
        network: None,
    })
    .await
    .expect("driver");
    // Inserted directly: there is no emulator to probe here.
    let def = DomainDef::parse(XML).expect("valid");
    let uuid = def.uuid();
    driver.insert(uuid.clone(), "sm".into(), persistent.then(|| def.clone()));
    let (ours, mut theirs) = UnixStream::pair().expect("socketpair");
    theirs
        .write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n")
        .await
        .expect("greeting");
    let generation = 42;
    let qmp = Qmp::from_stream(ours, driver.sink(&uuid, generation))
        .await
        .expect("qmp");
    let dom = driver.find_uuid(&uuid).expect("domain");
    let mut st = dom.lock();
    st.live = Some(Live {
        id: 1,
        // No real process: signals to pid 0 are skipped.
        pid: 0,
        def,
        qmp: Arc::new(qmp),
        paths: RunPaths::new(&dir.path().join("run"), &uuid),
        generation,
        starting: false,
        destroying: false,
        saving: false,
        got_shutdown: false,
        fake_reboot: false,
        rebooting: false,
        pause_reason: None,
        ptys: Vec::new(),
        console: None,
        links: Vec::new(),
    });
    st.state = DomainState::Running;
    st.reason = RUNNING_BOOTED;
    drop(st);
    (dir, driver, theirs, uuid)
}

async fn next(rx: &mut tokio::sync::broadcast::Receiver<pb::Event>) -> String {
    let ev = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("event in time")
        .expect("event");
    match ev.kind {
        Some(Kind::DomainLifecycle(l)) => format!("{}/{}", l.r#type, l.detail_name),
        Some(Kind::DomainReboot(_)) => "reboot".into(),
        other => format!("{other:?}"),
    }
}

fn state(driver: &QemuDriver) -> (DomainState, &'static str) {
    let v = driver
        .lookup(Some(&pb::ObjectRef {
            key: Some(pb::object_ref::Key::Name("sm".into())),
        }))
        .expect("lookup");
    (v.state, reason_name(v.state, v.reason))
}

#[test]
fn explicit_state_dir_holds_the_run_dir() {
    let cfg = QemuConfig::system(Some("/srv/vm".into()));
    assert_eq!(cfg.state_dir, PathBuf::from("/srv/vm"));
    assert_eq!(cfg.run_dir, PathBuf::from("/srv/vm/run"));
    assert_eq!(cfg.emulator, PathBuf::from(crate::def::DEFAULT_EMULATOR));
}

#[tokio::test]
async fn state_follows_qmp_events() {
    let (_dir, driver, mut qemu, _) = fake_running(true).await;
    let mut rx = driver.events().subscribe();
    qemu.write_all(b"{\"event\": \"STOP\", \"timestamp\": {}}\n")
        .await
        .expect("write");
    assert_eq!(next(&mut rx).await, "3/paused");
    assert_eq!(state(&driver), (DomainState::Paused, "unknown"));
    qemu.write_all(
        b"{\"event\": \"RESUME\"}\n{\"event\": \"RESET\", \"data\": {\"guest\": true}}\n",
    )
    .await
    .expect("write");
    assert_eq!(next(&mut rx).await, "4/unpaused");
    assert_eq!(next(&mut rx).await, "reboot");
    assert_eq!(state(&driver), (DomainState::Running, "unpaused"));
    qemu.write_all(b"{\"event\": \"SOMETHING_NEW\"}\n{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": true, \"reason\": \"guest-shutdown\"}}\n")
        .await
        .expect("write");
    assert_eq!(next(&mut rx).await, "6/guest");
    assert_eq!(state(&driver), (DomainState::Shutdown, "user"));
    // Our SIGTERM's own SHUTDOWN repeats nothing.
    qemu.write_all(
        b"{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": false, \"reason\": \"host-signal\"}}\n",
    )
    .await
    .expect("write");
    drop(qemu);
    assert_eq!(next(&mut rx).await, "5/shutdown");
    assert_eq!(state(&driver), (DomainState::Shutoff, "shutdown"));
}

#[tokio::test]
async fn unexpected_eof_is_failed_and_transient_domains_vanish() {
    let (_dir, driver, qemu, uuid) = fake_running(false).await;
    let mut rx = driver.events().subscribe();
    drop(qemu);
    assert_eq!(next(&mut rx).await, "5/failed");
    assert!(driver.find_uuid(&uuid).is_none());
    assert!(driver.list().is_empty());
}
