//! Listing every object family in one call each: the contract streams lists
//! (no message-size ceiling at 10k objects); these drain the stream.

use virtmesh_proto::v1;

use crate::connection::{Connection, collect};
use crate::error::Result;

impl Connection {
    /// virConnectListAllDomains with libvirt's filter flags.
    pub async fn list_domains(
        &self,
        req: v1::ListDomainsRequest,
    ) -> Result<Vec<v1::DomainSummary>> {
        collect(self.domain().list(req).await?).await
    }

    pub async fn list_networks(&self, filter: v1::ListFilter) -> Result<Vec<v1::NetworkSummary>> {
        collect(self.network().list(filter).await?).await
    }

    pub async fn list_pools(&self, filter: v1::ListFilter) -> Result<Vec<v1::StoragePoolSummary>> {
        collect(self.storage_pool().list(filter).await?).await
    }

    /// The volumes of one pool.
    pub async fn list_volumes(&self, pool: v1::ObjectRef) -> Result<Vec<v1::StorageVolSummary>> {
        collect(self.storage_vol().list(pool).await?).await
    }

    pub async fn list_interfaces(
        &self,
        filter: v1::ListFilter,
    ) -> Result<Vec<v1::InterfaceSummary>> {
        collect(self.interface().list(filter).await?).await
    }

    pub async fn list_node_devices(
        &self,
        req: v1::ListNodeDevicesRequest,
    ) -> Result<Vec<v1::NodeDeviceSummary>> {
        collect(self.node_device().list(req).await?).await
    }

    pub async fn list_secrets(
        &self,
        req: v1::ListSecretsRequest,
    ) -> Result<Vec<v1::SecretSummary>> {
        collect(self.secret().list(req).await?).await
    }

    pub async fn list_nwfilters(&self) -> Result<Vec<v1::NwFilterSummary>> {
        collect(self.nwfilter().list(()).await?).await
    }

    pub async fn list_nwfilter_bindings(&self) -> Result<Vec<v1::NwFilterBindingSummary>> {
        collect(self.nwfilter_binding().list(()).await?).await
    }

    pub async fn list_snapshots(
        &self,
        req: v1::SnapshotListRequest,
    ) -> Result<Vec<v1::SnapshotSummary>> {
        collect(self.domain().snapshot_list(req).await?).await
    }
}
