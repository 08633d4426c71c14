//! The StoragePool and StorageVol services over the driver core.

use crate::driver::StorageDriver;
use crate::error::unimplemented;
use std::pin::Pin;
use tokio::io::AsyncWriteExt;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use virtmesh_proto::v1::{
    self as pb, storage_pool_server::StoragePool, storage_vol_server::StorageVol,
    vol_upload_chunk::Msg,
};

pub type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn stream_of<T: Send + 'static>(items: Vec<T>) -> BoxStream<T> {
    Box::pin(tokio_stream::iter(items.into_iter().map(Ok)))
}

/// The VALIDATE flags ask for a RelaxNG check of the document, which this
/// driver does not do: say so rather than skip it silently.
fn refuse_validate(validate: bool) -> Result<(), Status> {
    if validate {
        return Err(crate::error::no_support(
            "validating the document against libvirt's schema (VALIDATE flag) is not implemented by the virtmesh storage driver",
        )
        .into());
    }
    Ok(())
}

/// The gRPC face of the pool half of [`StorageDriver`].
#[derive(Debug, Clone)]
pub struct PoolService {
    driver: StorageDriver,
}

impl PoolService {
    pub fn new(driver: StorageDriver) -> Self {
        PoolService { driver }
    }
}

/// The gRPC face of the volume half of [`StorageDriver`].
#[derive(Debug, Clone)]
pub struct VolService {
    driver: StorageDriver,
}

impl VolService {
    pub fn new(driver: StorageDriver) -> Self {
        VolService { driver }
    }
}

#[tonic::async_trait]
impl StoragePool for PoolService {
    type ListStream = BoxStream<pb::StoragePoolSummary>;

    async fn list(
        &self,
        request: Request<pb::ListFilter>,
    ) -> Result<Response<Self::ListStream>, Status> {
        Ok(Response::new(stream_of(
            self.driver.list(request.get_ref()),
        )))
    }

    async fn lookup(
        &self,
        request: Request<pb::ObjectRef>,
    ) -> Result<Response<pb::StoragePoolSummary>, Status> {
        Ok(Response::new(self.driver.lookup(Some(request.get_ref()))?))
    }

    async fn lookup_by_volume(
        &self,
        request: Request<pb::VolRef>,
    ) -> Result<Response<pb::StoragePoolSummary>, Status> {
        Ok(Response::new(
            self.driver.lookup_by_volume(Some(request.get_ref()))?,
        ))
    }

    async fn define_xml(
        &self,
        request: Request<pb::DefineXmlRequest>,
    ) -> Result<Response<pb::StoragePoolSummary>, Status> {
        refuse_validate(request.get_ref().validate)?;
        Ok(Response::new(
            self.driver.define_xml(&request.get_ref().xml).await?,
        ))
    }

    async fn create_xml(
        &self,
        request: Request<pb::DefineXmlRequest>,
    ) -> Result<Response<pb::StoragePoolSummary>, Status> {
        refuse_validate(request.get_ref().validate)?;
        Ok(Response::new(
            self.driver.create_xml(&request.get_ref().xml).await?,
        ))
    }

    async fn build(&self, request: Request<pb::ObjectRef>) -> Result<Response<()>, Status> {
        self.driver.build(Some(request.get_ref())).await?;
        Ok(Response::new(()))
    }

    async fn undefine(&self, request: Request<pb::ObjectRef>) -> Result<Response<()>, Status> {
        self.driver.undefine(Some(request.get_ref())).await?;
        Ok(Response::new(()))
    }

    async fn create(
        &self,
        request: Request<pb::ObjectRef>,
    ) -> Result<Response<pb::StoragePoolSummary>, Status> {
        Ok(Response::new(
            self.driver.start(Some(request.get_ref())).await?,
        ))
    }

    async fn destroy(&self, request: Request<pb::ObjectRef>) -> Result<Response<()>, Status> {
        self.driver.destroy(Some(request.get_ref())).await?;
        Ok(Response::new(()))
    }

    async fn delete(&self, request: Request<pb::ObjectRef>) -> Result<Response<()>, Status> {
        self.driver.delete(Some(request.get_ref())).await?;
        Ok(Response::new(()))
    }

    async fn refresh(&self, request: Request<pb::ObjectRef>) -> Result<Response<()>, Status> {
        self.driver.refresh(Some(request.get_ref())).await?;
        Ok(Response::new(()))
    }

    async fn get_xml_desc(
        &self,
        request: Request<pb::GetXmlDescRequest>,
    ) -> Result<Response<pb::XmlDoc>, Status> {
        let r = request.get_ref();
        let xml = self.driver.xml_desc(r.object.as_ref(), r.inactive)?;
        Ok(Response::new(pb::XmlDoc { xml }))
    }

    async fn get_info(
        &self,
        request: Request<pb::ObjectRef>,
    ) -> Result<Response<pb::StoragePoolInfo>, Status> {
        Ok(Response::new(self.driver.info(Some(request.get_ref()))?))
    }

    async fn get_autostart(
        &self,
        request: Request<pb::ObjectRef>,
    ) -> Result<Response<pb::Autostart>, Status> {
        let autostart = self.driver.get_autostart(Some(request.get_ref()))?;
        Ok(Response::new(pb::Autostart { autostart }))
    }

    async fn set_autostart(
        &self,
        request: Request<pb::SetAutostartRequest>,
    ) -> Result<Response<()>, Status> {
        let r = request.get_ref();
        self.driver
            .set_autostart(r.object.as_ref(), r.autostart)
            .await?;
        Ok(Response::new(()))
    }

    async fn find_sources(
        &self,
        request: Request<pb::FindSourcesRequest>,
    ) -> Result<Response<pb::XmlDoc>, Status> {
        // virConnectFindStoragePoolSources: backends without source
        // discovery say so; the ones that have it (netfs showmount, lvm
        // vgs, iscsi sendtargets) are not built here.
        let ty = request.get_ref().pool_type.as_str();
        match ty {
            "dir" | "fs" | "disk" | "scsi" | "mpath" => Err(crate::error::no_support(format!(
                "pool type '{ty}' does not support source discovery"
            ))
            .into()),
            _ if !crate::driver::BACKENDS.contains(&ty) => {
                Err(crate::error::internal(format!("unknown storage pool type {ty}")).into())
            }
            _ => Err(unimplemented("StoragePool.FindSources").into()),
        }
    }
}

#[tonic::async_trait]
impl StorageVol for VolService {
    type ListStream = BoxStream<pb::StorageVolSummary>;
    type UploadStream = BoxStream<pb::Progress>;
    type DownloadStream = BoxStream<pb::VolDownloadChunk>;

    async fn list(
        &self,
        request: Request<pb::ObjectRef>,
    ) -> Result<Response<Self::ListStream>, Status> {
        Ok(Response::new(stream_of(
            self.driver.list_vols(Some(request.get_ref()))?,
        )))
    }

    async fn lookup(
        &self,
        request: Request<pb::VolRef>,
    ) -> Result<Response<pb::StorageVolSummary>, Status> {
        Ok(Response::new(
            self.driver.lookup_vol(Some(request.get_ref()))?,
        ))
    }

    async fn create_xml(
        &self,
        request: Request<pb::VolCreateRequest>,
    ) -> Result<Response<pb::StorageVolSummary>, Status> {
        let r = request.get_ref();
        refuse_validate(r.validate)?;
        Ok(Response::new(
            self.driver
                .create_vol(r.pool.as_ref(), &r.xml, r.prealloc_metadata)
                .await?,
        ))
    }

    async fn create_xml_from(
        &self,
        request: Request<pb::VolCreateFromRequest>,
    ) -> Result<Response<pb::StorageVolSummary>, Status> {
        let r = request.get_ref();
        if r.prealloc_metadata {
            return Err(crate::error::unsupported(
                "metadata preallocation of clones is not implemented by the virtmesh storage driver",
            )
            .into());
        }
        Ok(Response::new(
            self.driver
                .clone_vol(r.pool.as_ref(), &r.xml, r.clone_from.as_ref())
                .await?,
        ))
    }

    async fn delete(&self, request: Request<pb::VolRef>) -> Result<Response<()>, Status> {
        self.driver.delete_vol(Some(request.get_ref())).await?;
        Ok(Response::new(()))
    }

    async fn wipe(&self, request: Request<pb::VolRef>) -> Result<Response<()>, Status> {
        self.driver.wipe(Some(request.get_ref())).await?;
        Ok(Response::new(()))
    }

    async fn get_xml_desc(
        &self,
        request: Request<pb::VolRef>,
    ) -> Result<Response<pb::XmlDoc>, Status> {
        let xml = self.driver.vol_xml(Some(request.get_ref())).await?;
        Ok(Response::new(pb::XmlDoc { xml }))
    }

    async fn get_info(
        &self,
        request: Request<pb::VolRef>,
    ) -> Result<Response<pb::StorageVolInfo>, Status> {
        Ok(Response::new(
            self.driver.vol_info(Some(request.get_ref())).await?,
        ))
    }

    async fn resize(&self, request: Request<pb::VolResizeRequest>) -> Result<Response<()>, Status> {
        self.driver.resize(request.get_ref()).await?;
        Ok(Response::new(()))
    }

    async fn upload(
        &self,
        request: Request<Streaming<pb::VolUploadChunk>>,
    ) -> Result<Response<Self::UploadStream>, Status> {
        let mut input = request.into_inner();
        let start = match input.next().await {
            Some(Ok(pb::VolUploadChunk {
                msg: Some(Msg::Start(s)),
            })) => s,
            Some(Err(e)) => return Err(e),
            _ => {
                return Err(crate::error::invalid_arg(
                    "the first upload message must name the volume",
                )
                .into());
            }
        };
        let (mut file, total, path) = self.driver.upload_target(&start).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        // Bytes are written as they arrive; progress goes back per chunk.
        tokio::spawn(async move {
            let mut written: u64 = 0;
            while let Some(msg) = input.next().await {
                let data = match msg {
                    Ok(pb::VolUploadChunk {
                        msg: Some(Msg::Data(d)),
                    }) => d,
                    Ok(_) => continue,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                if data.len() as u64 > total - written {
                    let e = crate::error::invalid_arg(format!(
                        "upload is larger than the {total} bytes from the offset to the end of '{path}'"
                    ));
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
                if let Err(e) = file.write_all(&data).await {
                    let e = crate::error::system(format!("cannot write to '{path}'"), &e);
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
                written += data.len() as u64;
                let progress = pb::Progress {
                    processed_bytes: written,
                    total_bytes: total,
                };
                if tx.send(Ok(progress)).await.is_err() {
                    return;
                }
            }
            let done = match file.sync_all().await {
                Ok(()) => Ok(pb::Progress {
                    processed_bytes: written,
                    total_bytes: total,
                }),
                Err(e) => Err(crate::error::system(format!("cannot sync '{path}'"), &e).into()),
            };
            let _ = tx.send(done).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn download(
        &self,
        request: Request<pb::VolDownloadRequest>,
    ) -> Result<Response<Self::DownloadStream>, Status> {
        let range = request.into_inner().range.unwrap_or_default();
        let rx = self.driver.download(&range)?;
        Ok(Response::new(Box::pin(
            ReceiverStream::new(rx).map(|r| r.map_err(Status::from)),
        )))
    }
}
