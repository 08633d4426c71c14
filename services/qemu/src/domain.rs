//! The Domain service over the driver core.

use crate::driver::{QemuDriver, reason_name};
use crate::error::unimplemented;
use std::pin::Pin;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};
use virtmesh_proto::v1::{self as pb, DomainState, ShutdownMode, domain_server::Domain};
use virtmesh_rpc::VirtError;

pub type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The gRPC face of [`QemuDriver`].
#[derive(Debug, Clone)]
pub struct DomainService {
    driver: QemuDriver,
}

impl DomainService {
    pub fn new(driver: QemuDriver) -> Self {
        DomainService { driver }
    }
}

/// VIR_DOMAIN_SAVE_RUNNING / _PAUSED: how a restore resumes the guest.
fn run_after(running: bool, paused: bool) -> Result<Option<bool>, Status> {
    match (running, paused) {
        (true, true) => Err(VirtError::new(
            virtmesh_rpc::ErrorCode::InvalidArg,
            virtmesh_rpc::ErrorDomain::Qemu,
            "invalid argument: Flags 'VIR_DOMAIN_SAVE_RUNNING' and 'VIR_DOMAIN_SAVE_PAUSED' are mutually exclusive",
        )
        .into()),
        (true, false) => Ok(Some(true)),
        (false, true) => Ok(Some(false)),
        (false, false) => Ok(None),
    }
}

fn unimpl<T>(call: &str) -> Result<T, Status> {
    Err(unimplemented(call).into())
}

fn ok<T>(r: Result<T, VirtError>) -> Result<Response<T>, Status> {
    r.map(Response::new).map_err(Status::from)
}

/// Only the ACPI button is implemented; other modes need a guest agent,
/// initctl or signals to QEMU's init, which phase 1 does not have.
fn check_mode(mode: i32) -> Result<(), Status> {
    match ShutdownMode::try_from(mode) {
        Ok(ShutdownMode::Default) | Ok(ShutdownMode::AcpiPowerBtn) => Ok(()),
        _ => Err(VirtError::new(
            virtmesh_rpc::ErrorCode::ArgumentUnsupported,
            virtmesh_rpc::ErrorDomain::Qemu,
            format!("argument unsupported: shutdown mode {mode} is not supported"),
        )
        .into()),
    }
}

/// libvirt's list filters: within a pair, neither or both means no filter.
fn list_filter(
    driver: &QemuDriver,
    req: &pb::ListDomainsRequest,
    v: &crate::driver::DomView,
) -> bool {
    let pair = |a: bool, b: bool, is_a: bool| a == b || (a && is_a) || (b && !is_a);
    let f = req.filter.unwrap_or_default();
    let state_ok = {
        let any = req.running || req.paused || req.shutoff || req.other;
        !any || (req.running && v.state == DomainState::Running)
            || (req.paused && v.state == DomainState::Paused)
            || (req.shutoff && v.state == DomainState::Shutoff)
            || (req.other
                && !matches!(
                    v.state,
                    DomainState::Running | DomainState::Paused | DomainState::Shutoff
                ))
    };
    pair(f.active, f.inactive, v.is_active())
        && pair(f.persistent, f.transient, v.persistent)
        && pair(f.autostart, f.no_autostart, v.autostart)
        && pair(
            req.managed_save,
            req.no_managed_save,
            driver.has_managed_save_named(&v.name),
        )
        && pair(
            req.has_snapshot,
            req.no_snapshot,
            driver.snapshot_count(&v.name) > 0,
        )
        && state_ok
}

#[tonic::async_trait]
impl Domain for DomainService {
    type ListStream = BoxStream<pb::DomainSummary>;
    type GetAllStatsStream = BoxStream<pb::DomainStats>;
    type OpenConsoleStream = BoxStream<pb::ConsoleOutput>;
    type SnapshotListStream = BoxStream<pb::SnapshotSummary>;

    async fn list(
        &self,
        request: Request<pb::ListDomainsRequest>,
    ) -> Result<Response<Self::ListStream>, Status> {
        let req = request.into_inner();
        let items: Vec<Result<pb::DomainSummary, Status>> = self
            .driver
            .list()
            .into_iter()
            .filter(|v| list_filter(&self.driver, &req, v))
            .map(|v| {
                let mut s = v.summary();
                s.has_managed_save = self.driver.has_managed_save_named(&v.name);
                s.has_snapshot = self.driver.snapshot_count(&v.name) > 0;
                Ok(s)
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(items))))
    }

    async fn lookup(
        &self,
        request: Request<pb::ObjectRef>,
    ) -> Result<Response<pb::DomainSummary>, Status> {
        ok(self
            .driver
            .lookup(Some(request.get_ref()))
            .map(|v| v.summary()))
    }

    async fn define_xml(
        &self,
        request: Request<pb::DefineXmlRequest>,
    ) -> Result<Response<pb::DomainSummary>, Status> {
        ok(self
            .driver
            .define(&request.get_ref().xml)
            .await
            .map(|v| v.summary()))
    }

    async fn create_xml(
        &self,
        request: Request<pb::CreateXmlRequest>,
    ) -> Result<Response<pb::DomainSummary>, Status> {
        let req = request.into_inner();
        if req.autodestroy {
            return unimpl("CreateXML(autodestroy)");
        }
        ok(self
            .driver
            .create_xml(&req.xml, req.start_paused)
            .await
            .map(|v| v.summary()))
    }

    async fn undefine(
        &self,
        request: Request<pb::UndefineRequest>,
    ) -> Result<Response<()>, Status> {
        let req = request.get_ref();
        ok(self
            .driver
            .undefine_with_save(
                req.domain.as_ref(),
                req.managed_save,
                crate::driver::NvramOnUndefine::from_flags(req.nvram, req.keep_nvram),
                req.snapshots_metadata,
            )
            .await)
    }

    async fn create(
        &self,
        request: Request<pb::CreateRequest>,
    ) -> Result<Response<pb::DomainSummary>, Status> {
        let req = request.into_inner();
        if req.autodestroy {
            return unimpl("Create(autodestroy)");
        }
        ok(self
            .driver
            .start(req.domain.as_ref(), req.start_paused)
            .await
            .map(|v| v.summary()))
    }

    async fn shutdown(
        &self,
        request: Request<pb::ShutdownRequest>,
    ) -> Result<Response<()>, Status> {
        let req = request.into_inner();
        check_mode(req.mode)?;
        ok(self.driver.shutdown(req.domain.as_ref()).await)
    }

    async fn destroy(&self, request: Request<pb::DestroyRequest>) -> Result<Response<()>, Status> {
        let req = request.into_inner();
        ok(self.driver.destroy(req.domain.as_ref(), req.graceful).await)
    }

    async fn suspend(&self, request: Request<pb::ObjectRef>) -> Result<Response<()>, Status> {
        ok(self.driver.suspend(Some(request.get_ref())).await)
    }

    async fn resume(&self, request: Request<pb::ObjectRef>) -> Result<Response<()>, Status> {
        ok(self.driver.resume(Some(request.get_ref())).await)
    }

    async fn reboot(&self, request: Request<pb::RebootRequest>) -> Result<Response<()>, Status> {
        let req = request.into_inner();
        check_mode(req.mode)?;
        ok(self.driver.reboot(req.domain.as_ref()).await)
    }

    async fn reset(&self, request: Request<pb::ObjectRef>) -> Result<Response<()>, Status> {
        ok(self.driver.reset(Some(request.get_ref())).await)
    }

    async fn get_xml_desc(
        &self,
        request: Request<pb::GetXmlDescRequest>,
    ) -> Result<Response<pb::XmlDoc>, Status> {
        let req = request.into_inner();
        ok(self.driver.lookup(req.object.as_ref()).map(|v| {
            let xml = match (&v.config, req.inactive) {
                (Some(config), true) => config.to_xml_for_client(None, req.secure),
                _ if v.is_active() => v.def.to_xml_for_client(Some(v.id), req.secure),
                _ => v.def.to_xml_for_client(None, req.secure),
            };
            pb::XmlDoc { xml }
        }))
    }

    async fn get_info(
        &self,
        request: Request<pb::ObjectRef>,
    ) -> Result<Response<pb::DomainInfo>, Status> {
        ok(self
            .driver
            .lookup(Some(request.get_ref()))
            .map(|v| pb::DomainInfo {
                state: v.state as i32,
                max_mem_kib: v.def.max_memory_kib(),
                memory_kib: v.def.current_memory_kib(),
                nr_virt_cpu: v.def.vcpus(),
                cpu_time_ns: v.pid.map(crate::process::cpu_time_ns).unwrap_or(0),
                os_type: v.def.os_type(),
                persistent: v.persistent,
                autostart: false,
                has_managed_save: self.driver.has_managed_save_named(&v.name),
                id: v.id,
                uuid: v.uuid.clone(),
                name: v.name.clone(),
            }))
    }

    async fn get_state(
        &self,
        request: Request<pb::ObjectRef>,
    ) -> Result<Response<pb::DomainStateInfo>, Status> {
        ok(self
            .driver
            .lookup(Some(request.get_ref()))
            .map(|v| pb::DomainStateInfo {
                state: v.state as i32,
                reason: v.reason,
                reason_name: reason_name(v.state, v.reason).to_owned(),
            }))
    }

    async fn get_autostart(
        &self,
        request: Request<pb::ObjectRef>,
    ) -> Result<Response<pb::Autostart>, Status> {
        ok(self
            .driver
            .lookup(Some(request.get_ref()))
            .map(|v| pb::Autostart {
                autostart: v.autostart,
            }))
    }

    async fn set_autostart(
        &self,
        request: Request<pb::SetAutostartRequest>,
    ) -> Result<Response<()>, Status> {
        let req = request.into_inner();
        ok(self
            .driver
            .set_autostart(req.object.as_ref(), req.autostart))
    }

    async fn attach_device(
        &self,
        request: Request<pb::DeviceRequest>,
    ) -> Result<Response<()>, Status> {
        let req = request.into_inner();
        ok(self
            .driver
            .attach_device(req.domain.as_ref(), &req.device_xml, req.impact.as_ref())
            .await)
    }
    async fn detach_device(
        &self,
        request: Request<pb::DeviceRequest>,
    ) -> Result<Response<()>, Status> {
        let req = request.into_inner();
        ok(self
            .driver
            .detach_device(req.domain.as_ref(), &req.device_xml, req.impact.as_ref())
            .await)
    }
    async fn update_device(
        &self,
        request: Request<pb::DeviceRequest>,
    ) -> Result<Response<()>, Status> {
        let req = request.into_inner();
        ok(self
            .driver
            .update_device(
                req.domain.as_ref(),
                &req.device_xml,
                req.impact.as_ref(),
                req.force,
            )
            .await)
    }
    async fn get_interface_parameters(
        &self,
        request: Request<pb::InterfaceParametersRequest>,
    ) -> Result<Response<pb::InterfaceParameters>, Status> {
        let req = request.into_inner();
        ok(self
            .driver
            .interface_parameters(req.domain.as_ref(), &req.interface, req.impact.as_ref())
            .map(|params| pb::InterfaceParameters {
                params: params
                    .into_iter()
                    .map(|(field, value)| pb::InterfaceParameter {
                        field: field.to_owned(),
                        value,
                    })
                    .collect(),
            }))
    }
    async fn set_interface_parameters(
        &self,
        request: Request<pb::SetInterfaceParametersRequest>,
    ) -> Result<Response<()>, Status> {
        let req = request.into_inner();
        let params: Vec<(String, u64)> =
            req.params.into_iter().map(|p| (p.field, p.value)).collect();
        ok(self
            .driver
            .set_interface_parameters(
                req.domain.as_ref(),
                &req.interface,
                &params,
                req.impact.as_ref(),
            )
            .await)
    }
    async fn set_vcpus(
        &self,
        request: Request<pb::SetVcpusRequest>,
    ) -> Result<Response<()>, Status> {
        let req = request.into_inner();
        if req.guest {
            return unimpl("SetVcpus(guest)");
        }
        ok(self
            .driver
            .set_vcpus(
                req.domain.as_ref(),
                req.count,
                req.impact.as_ref(),
                req.maximum,
            )
            .await)
    }
    async fn set_memory(
        &self,
        request: Request<pb::SetMemoryRequest>,
    ) -> Result<Response<()>, Status> {
        let req = request.into_inner();
        ok(self
            .driver
            .set_memory(
                req.domain.as_ref(),
                req.memory_kib,
                req.impact.as_ref(),
                req.maximum,
            )
            .await)
    }
    async fn get_metadata(
        &self,
        request: Request<pb::GetMetadataRequest>,
    ) -> Result<Response<pb::Metadata>, Status> {
        ok(self
            .driver
            .get_metadata(request.get_ref())
            .map(|value| pb::Metadata { value }))
    }
    async fn set_metadata(
        &self,
        request: Request<pb::SetMetadataRequest>,
    ) -> Result<Response<()>, Status> {
        ok(self.driver.set_metadata(request.get_ref()).await)
    }
    async fn block_stats(
        &self,
        request: Request<pb::BlockStatsRequest>,
    ) -> Result<Response<pb::BlockStatsReply>, Status> {
        let req = request.get_ref();
        ok(self
            .driver
            .block_stats(req.domain.as_ref(), &req.disk)
            .await
            .map(|s| pb::BlockStatsReply {
                rd_req: s.rd_req,
                rd_bytes: s.rd_bytes,
                wr_req: s.wr_req,
                wr_bytes: s.wr_bytes,
                // QEMU keeps no error counter: libvirt's "unsupported".
                errs: -1,
            }))
    }
    async fn interface_stats(
        &self,
        request: Request<pb::InterfaceStatsRequest>,
    ) -> Result<Response<pb::InterfaceStatsReply>, Status> {
        let req = request.get_ref();
        ok(self
            .driver
            .interface_stats(req.domain.as_ref(), &req.interface)
            .map(|s| pb::InterfaceStatsReply {
                rx_bytes: s.rx_bytes,
                rx_packets: s.rx_packets,
                rx_errs: s.rx_errs,
                rx_drop: s.rx_drop,
                tx_bytes: s.tx_bytes,
                tx_packets: s.tx_packets,
                tx_errs: s.tx_errs,
                tx_drop: s.tx_drop,
            }))
    }
    async fn memory_stats(
        &self,
        request: Request<pb::ObjectRef>,
    ) -> Result<Response<pb::MemoryStatsReply>, Status> {
        ok(self
            .driver
            .memory_stats(Some(request.get_ref()))
            .await
            .map(|stats| pb::MemoryStatsReply { stats }))
    }
    async fn get_all_stats(
        &self,
        request: Request<pb::GetAllStatsRequest>,
    ) -> Result<Response<Self::GetAllStatsStream>, Status> {
        let req = request.into_inner();
        let filter = req.filter.unwrap_or_default();
        // Every group this driver has is always returned; a request for
        // groups it does not know gets what it has, as libvirt does.
        let stats = self
            .driver
            .all_stats(|v| list_filter(&self.driver, &filter, v))
            .await;
        Ok(Response::new(Box::pin(tokio_stream::iter(
            stats.into_iter().map(Ok),
        ))))
    }
    async fn interface_addresses(
        &self,
        request: Request<pb::InterfaceAddressesRequest>,
    ) -> Result<Response<pb::InterfaceAddressesReply>, Status> {
        let req = request.get_ref();
        ok(self
            .driver
            .interface_addresses(req.domain.as_ref(), req.source())
            .await
            .map(|interfaces| pb::InterfaceAddressesReply { interfaces }))
    }
    async fn open_console(
        &self,
        request: Request<Streaming<pb::ConsoleInput>>,
    ) -> Result<Response<Self::OpenConsoleStream>, Status> {
        let mut input = request.into_inner();
        let open = match input.message().await? {
            Some(pb::ConsoleInput {
                msg: Some(pb::console_input::Msg::Open(open)),
            }) => open,
            _ => {
                return Err(VirtError::new(
                    virtmesh_rpc::ErrorCode::InvalidArg,
                    virtmesh_rpc::ErrorDomain::Qemu,
                    "invalid argument: the first console message must name the domain",
                )
                .into());
            }
        };
        let (pty, cancel) =
            self.driver
                .console_pty(open.domain.as_ref(), &open.dev_name, open.force)?;
        let stream = crate::console::session(&pty, input, cancel)?;
        Ok(Response::new(stream))
    }
    async fn managed_save(&self, request: Request<pb::ObjectRef>) -> Result<Response<()>, Status> {
        ok(self.driver.managed_save(Some(request.get_ref())).await)
    }
    async fn has_managed_save(
        &self,
        request: Request<pb::ObjectRef>,
    ) -> Result<Response<pb::HasManagedSaveReply>, Status> {
        ok(self
            .driver
            .has_managed_save(Some(request.get_ref()))
            .map(|has_managed_save| pb::HasManagedSaveReply { has_managed_save }))
    }
    async fn managed_save_remove(
        &self,
        request: Request<pb::ObjectRef>,
    ) -> Result<Response<()>, Status> {
        ok(self
            .driver
            .managed_save_remove(Some(request.get_ref()))
            .await)
    }
    async fn save(&self, request: Request<pb::SaveRequest>) -> Result<Response<()>, Status> {
        let req = request.into_inner();
        let run_after = run_after(req.running, req.paused)?;
        ok(self
            .driver
            .save_to_file(
                req.domain.as_ref(),
                std::path::Path::new(&req.path),
                run_after,
            )
            .await)
    }
    async fn restore(
        &self,
        request: Request<pb::RestoreRequest>,
    ) -> Result<Response<pb::DomainSummary>, Status> {
        let req = request.into_inner();
        let run_after = run_after(req.running, req.paused)?;
        ok(self
            .driver
            .restore_from_file(std::path::Path::new(&req.path), run_after)
            .await
            .map(|v| v.summary()))
    }
    async fn snapshot_create_xml(
        &self,
        request: Request<pb::SnapshotCreateRequest>,
    ) -> Result<Response<pb::SnapshotSummary>, Status> {
        ok(self.driver.snapshot_create(request.get_ref()).await)
    }
    async fn snapshot_list(
        &self,
        request: Request<pb::SnapshotListRequest>,
    ) -> Result<Response<Self::SnapshotListStream>, Status> {
        let list = self.driver.snapshot_list(request.get_ref())?;
        Ok(Response::new(Box::pin(tokio_stream::iter(
            list.into_iter().map(Ok),
        ))))
    }
    async fn snapshot_lookup(
        &self,
        request: Request<pb::SnapshotRef>,
    ) -> Result<Response<pb::SnapshotSummary>, Status> {
        ok(self.driver.snapshot_lookup(request.get_ref()))
    }
    async fn snapshot_get_xml_desc(
        &self,
        request: Request<pb::SnapshotRef>,
    ) -> Result<Response<pb::XmlDoc>, Status> {
        ok(self
            .driver
            .snapshot_xml(request.get_ref())
            .map(|xml| pb::XmlDoc { xml }))
    }
    async fn snapshot_current(
        &self,
        request: Request<pb::ObjectRef>,
    ) -> Result<Response<pb::SnapshotSummary>, Status> {
        ok(self.driver.snapshot_current(Some(request.get_ref())))
    }
    async fn snapshot_revert(
        &self,
        request: Request<pb::SnapshotRef>,
    ) -> Result<Response<()>, Status> {
        ok(self.driver.snapshot_revert(request.get_ref()).await)
    }
    async fn snapshot_delete(
        &self,
        request: Request<pb::SnapshotDeleteRequest>,
    ) -> Result<Response<()>, Status> {
        ok(self.driver.snapshot_delete(request.get_ref()).await)
    }
}
