//! The StoragePool and StorageVol services over the driver core.

use crate::driver::StorageDriver;
use crate::error::unimplemented;
use std::pin::Pin;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};
use virtmesh_proto::v1::{
    self as pb, storage_pool_server::StoragePool, storage_vol_server::StorageVol,
};

pub type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn stream_of<T: Send + 'static>(items: Vec<T>) -> BoxStream<T> {
    Box::pin(tokio_stream::iter(items.into_iter().map(Ok)))
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
        Ok(Response::new(
            self.driver.define_xml(&request.get_ref().xml).await?,
        ))
    }

    async fn create_xml(
        &self,
        request: Request<pb::DefineXmlRequest>,
    ) -> Result<Response<pb::StoragePoolSummary>, Status> {
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
        _: Request<pb::FindSourcesRequest>,
    ) -> Result<Response<pb::XmlDoc>, Status> {
        Err(unimplemented("FindSources").into())
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
        Ok(Response::new(
            self.driver
                .create_vol(r.pool.as_ref(), &r.xml, r.prealloc_metadata)
                .await?,
        ))
    }

    async fn create_xml_from(
        &self,
        _: Request<pb::VolCreateFromRequest>,
    ) -> Result<Response<pb::StorageVolSummary>, Status> {
        Err(unimplemented("StorageVol.CreateXMLFrom").into())
    }

    async fn delete(&self, request: Request<pb::VolRef>) -> Result<Response<()>, Status> {
        self.driver.delete_vol(Some(request.get_ref())).await?;
        Ok(Response::new(()))
    }

    async fn wipe(&self, _: Request<pb::VolRef>) -> Result<Response<()>, Status> {
        Err(unimplemented("StorageVol.Wipe").into())
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

    async fn resize(&self, _: Request<pb::VolResizeRequest>) -> Result<Response<()>, Status> {
        Err(unimplemented("StorageVol.Resize").into())
    }

    async fn upload(
        &self,
        _: Request<Streaming<pb::VolUploadChunk>>,
    ) -> Result<Response<Self::UploadStream>, Status> {
        Err(unimplemented("StorageVol.Upload").into())
    }

    async fn download(
        &self,
        _: Request<pb::VolDownloadRequest>,
    ) -> Result<Response<Self::DownloadStream>, Status> {
        Err(unimplemented("StorageVol.Download").into())
    }
}
