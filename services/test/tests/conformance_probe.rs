//! A developer probe over libvirt's recorded conformance corpus, calling
//! the driver in-process (the workspace's tests/conformance.rs is the real
//! gate).  Ignored by default; run with
//! `CONFORMANCE_DIR=... cargo test -p virtmesh-test-driver --test conformance_probe -- --ignored --nocapture`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::collapsible_if)]

use std::path::PathBuf;

use tonic::Request;
use virtmesh_proto::v1::{
    self as pb, domain_server::Domain, network_server::Network, nw_filter_server::NwFilter,
    secret_server::Secret, storage_pool_server::StoragePool,
};
use virtmesh_rpc::VirtError;
use virtmesh_test_driver::TestDriver;

fn corpus() -> PathBuf {
    std::env::var("CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("/work/shared/conformance"))
}

fn normalise(text: &str, input: &str) -> String {
    let mut s = text.replace("\r\n", "\n").trim_end_matches('\n').to_owned();
    if !input.contains("<uuid>") {
        if let Some(a) = s.find("<uuid>") {
            if let Some(b) = s[a..].find("</uuid>") {
                s.replace_range(a + 6..a + b, "@UUID@");
            }
        }
    }
    if input.starts_with("<network") && !input.contains("<mac ") {
        if let Some(start) = s.find("<mac address='") {
            let from = start + "<mac address='".len();
            if let Some(len) = s[from..].find('\'') {
                s.replace_range(from..from + len, "@MAC@");
            }
        }
    }
    s
}

fn def(xml: &str) -> Request<pb::DefineXmlRequest> {
    Request::new(pb::DefineXmlRequest {
        xml: xml.into(),
        validate: false,
    })
}

fn uref(u: &str) -> pb::ObjectRef {
    pb::ObjectRef {
        key: Some(pb::object_ref::Key::Uuid(u.into())),
    }
}

fn xreq(u: &str) -> Request<pb::GetXmlDescRequest> {
    Request::new(pb::GetXmlDescRequest {
        object: Some(uref(u)),
        inactive: true,
        ..Default::default()
    })
}

async fn one(d: &TestDriver, kind: &str, input: &str) -> Result<String, VirtError> {
    let st = |e: tonic::Status| VirtError::from_status(&e);
    match kind {
        "domain-generic" => {
            let u = Domain::define_xml(d, def(input))
                .await
                .map_err(st)?
                .into_inner()
                .uuid;
            let x = Domain::get_xml_desc(d, xreq(&u))
                .await
                .map_err(st)?
                .into_inner()
                .xml;
            let _ = Domain::undefine(
                d,
                Request::new(pb::UndefineRequest {
                    domain: Some(uref(&u)),
                    ..Default::default()
                }),
            )
            .await;
            Ok(x)
        }
        "network" => {
            let u = Network::define_xml(d, def(input))
                .await
                .map_err(st)?
                .into_inner()
                .uuid;
            let x = Network::get_xml_desc(d, xreq(&u))
                .await
                .map_err(st)?
                .into_inner()
                .xml;
            let _ = Network::undefine(d, Request::new(uref(&u))).await;
            Ok(x)
        }
        "storage" => {
            let u = StoragePool::define_xml(d, def(input))
                .await
                .map_err(st)?
                .into_inner()
                .uuid;
            let x = StoragePool::get_xml_desc(d, xreq(&u))
                .await
                .map_err(st)?
                .into_inner()
                .xml;
            let _ = StoragePool::undefine(d, Request::new(uref(&u))).await;
            Ok(x)
        }
        "secret" => {
            let u = Secret::define_xml(d, def(input))
                .await
                .map_err(st)?
                .into_inner()
                .uuid;
            let r = pb::SecretRef {
                key: Some(pb::secret_ref::Key::Uuid(u)),
            };
            Ok(Secret::get_xml_desc(d, Request::new(r))
                .await
                .map_err(st)?
                .into_inner()
                .xml)
        }
        _ => {
            let u = NwFilter::define_xml(d, def(input))
                .await
                .map_err(st)?
                .into_inner()
                .uuid;
            Ok(NwFilter::get_xml_desc(d, Request::new(uref(&u)))
                .await
                .map_err(st)?
                .into_inner()
                .xml)
        }
    }
}

#[tokio::test]
#[ignore = "developer probe over an external corpus"]
async fn probe() {
    let only = std::env::var("KIND").ok();
    for kind in ["domain-generic", "network", "storage", "secret", "nwfilter"] {
        if only.as_deref().is_some_and(|k| k != kind) {
            continue;
        }
        let mut dirs: Vec<_> = std::fs::read_dir(corpus().join(kind))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        dirs.sort();
        let (mut ok, mut total, mut code_ok, mut inv) = (0, 0, 0, 0);
        for dir in dirs {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            if kind == "storage" && name.contains("vol-") {
                continue;
            }
            let Ok(input) = std::fs::read_to_string(dir.join("input.xml")) else {
                continue;
            };
            // A fresh driver per case keeps setups from leaking.
            let d = TestDriver::new();
            for n in 1.. {
                let Ok(setup) = std::fs::read_to_string(dir.join(format!("setup-{n}.xml"))) else {
                    break;
                };
                let _ = one(&d, kind, &setup).await;
            }
            let got = one(&d, kind, &input).await;
            if let Ok(expected) = std::fs::read_to_string(dir.join("output.xml")) {
                total += 1;
                match got {
                    Ok(x) if normalise(&x, &input) == normalise(&expected, &input) => ok += 1,
                    Ok(x) => println!(
                        "DIFF {kind}/{name}\n--- expected\n{}\n--- got\n{}",
                        normalise(&expected, &input),
                        normalise(&x, &input)
                    ),
                    Err(e) => println!("REJECTED {kind}/{name}: {} {}", e.code.name(), e.message),
                }
            } else if let Ok(error) = std::fs::read_to_string(dir.join("error.txt")) {
                inv += 1;
                let code = error.lines().next().unwrap_or("");
                match got {
                    Err(e) if e.code.name() == code => {
                        code_ok += 1;
                        let want = error.split_once('\n').map(|x| x.1).unwrap_or("").trim_end();
                        if e.message.trim_end() != want {
                            println!("MSG {kind}/{name}: got {:?} want {:?}", e.message, want);
                        }
                    }
                    Err(e) => println!(
                        "CODE {kind}/{name}: got {} {} want {}",
                        e.code.name(),
                        e.message,
                        error.replace('\n', " | ")
                    ),
                    Ok(_) => println!(
                        "ACCEPTED {kind}/{name}: want {}",
                        error.replace('\n', " | ")
                    ),
                }
            }
        }
        println!("SUMMARY {kind}: valid {ok}/{total}, invalid code {code_ok}/{inv}");
    }
}
