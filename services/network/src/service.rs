//! The Network service over the driver core.

use crate::driver::NetworkDriver;
use std::pin::Pin;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use virtmesh_proto::v1::{self as pb, network_server::Network};

pub type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn stream_of<T: Send + 'static>(items: Vec<T>) -> BoxStream<T> {
    Box::pin(tokio_stream::iter(items.into_iter().map(Ok)))
}

/// The gRPC face of [`NetworkDriver`].
#[derive(Debug, Clone)]
pub struct NetworkService {
    driver: NetworkDriver,
}

impl NetworkService {
    pub fn new(driver: NetworkDriver) -> Self {
        NetworkService { driver }
    }
}

#[tonic::async_trait]
impl Network for NetworkService {
    type ListStream = BoxStream<pb::NetworkSummary>;
    type GetDHCPLeasesStream = BoxStream<pb::DhcpLease>;
    type PortListStream = BoxStream<pb::NetworkPortSummary>;

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
    ) -> Result<Response<pb::NetworkSummary>, Status> {
        Ok(Response::new(self.driver.lookup(Some(request.get_ref()))?))
    }

    async fn define_xml(
        &self,
        request: Request<pb::DefineXmlRequest>,
    ) -> Result<Response<pb::NetworkSummary>, Status> {
        Ok(Response::new(
            self.driver.define_xml(&request.get_ref().xml).await?,
        ))
    }

    async fn create_xml(
        &self,
        request: Request<pb::DefineXmlRequest>,
    ) -> Result<Response<pb::NetworkSummary>, Status> {
        Ok(Response::new(
            self.driver.create_xml(&request.get_ref().xml).await?,
        ))
    }

    async fn undefine(&self, request: Request<pb::ObjectRef>) -> Result<Response<()>, Status> {
        self.driver.undefine(Some(request.get_ref())).await?;
        Ok(Response::new(()))
    }

    async fn create(
        &self,
        request: Request<pb::ObjectRef>,
    ) -> Result<Response<pb::NetworkSummary>, Status> {
        Ok(Response::new(
            self.driver.create(Some(request.get_ref())).await?,
        ))
    }

    async fn destroy(&self, request: Request<pb::ObjectRef>) -> Result<Response<()>, Status> {
        self.driver.destroy(Some(request.get_ref())).await?;
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
    ) -> Result<Response<pb::NetworkInfo>, Status> {
        Ok(Response::new(self.driver.info(Some(request.get_ref()))?))
    }

    async fn get_bridge_name(
        &self,
        request: Request<pb::ObjectRef>,
    ) -> Result<Response<pb::BridgeName>, Status> {
        let bridge = self.driver.bridge_name(Some(request.get_ref()))?;
        Ok(Response::new(pb::BridgeName { bridge }))
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

    async fn update(
        &self,
        request: Request<pb::NetworkUpdateRequest>,
    ) -> Result<Response<()>, Status> {
        self.driver.update(request.get_ref()).await?;
        Ok(Response::new(()))
    }

    async fn get_dhcp_leases(
        &self,
        request: Request<pb::DhcpLeasesRequest>,
    ) -> Result<Response<Self::GetDHCPLeasesStream>, Status> {
        let r = request.get_ref();
        let mac = Some(r.mac.as_str()).filter(|m| !m.is_empty());
        let leases = self.driver.dhcp_leases(r.network.as_ref(), mac).await?;
        Ok(Response::new(stream_of(leases)))
    }

    async fn port_create_xml(
        &self,
        request: Request<pb::PortCreateRequest>,
    ) -> Result<Response<pb::NetworkPortSummary>, Status> {
        let r = request.get_ref();
        Ok(Response::new(
            self.driver
                .port_create(r.network.as_ref(), &r.xml, r.reclaim)
                .await?,
        ))
    }

    async fn port_list(
        &self,
        request: Request<pb::ObjectRef>,
    ) -> Result<Response<Self::PortListStream>, Status> {
        Ok(Response::new(stream_of(
            self.driver.port_list(Some(request.get_ref()))?,
        )))
    }

    async fn port_lookup(
        &self,
        request: Request<pb::PortRef>,
    ) -> Result<Response<pb::NetworkPortSummary>, Status> {
        Ok(Response::new(self.driver.port_lookup(request.get_ref())?))
    }

    async fn port_get_xml_desc(
        &self,
        request: Request<pb::PortRef>,
    ) -> Result<Response<pb::XmlDoc>, Status> {
        let xml = self.driver.port_xml(request.get_ref())?;
        Ok(Response::new(pb::XmlDoc { xml }))
    }

    async fn port_delete(&self, request: Request<pb::PortRef>) -> Result<Response<()>, Status> {
        self.driver.port_delete(request.get_ref()).await?;
        Ok(Response::new(()))
    }

    async fn port_get_parameters(
        &self,
        request: Request<pb::PortRef>,
    ) -> Result<Response<pb::PortParameters>, Status> {
        Ok(Response::new(
            self.driver.port_parameters(request.get_ref())?,
        ))
    }

    async fn port_set_parameters(
        &self,
        request: Request<pb::PortSetParametersRequest>,
    ) -> Result<Response<()>, Status> {
        self.driver.port_set_parameters(request.get_ref()).await?;
        Ok(Response::new(()))
    }
}
