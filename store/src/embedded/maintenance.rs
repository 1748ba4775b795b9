//! The etcd `Maintenance` and `Cluster` gRPC services, reduced to what a single-member store
//! can answer truthfully: `Status` (so `etcdctl endpoint status` works), `Alarm` (never any
//! alarm), `Defragment` (a no-op: redb reuses freed pages) and `MemberList` (one member, this
//! server). Membership changes, hashes, snapshots and leader moves are `Unimplemented`.

use std::pin::Pin;
use std::sync::Arc;

use etcd_client::proto::{
    PbAlarmRequest, PbAlarmResponse, PbClusterService, PbDefragmentRequest, PbDefragmentResponse,
    PbDowngradeRequest, PbDowngradeResponse, PbHashKvRequest, PbHashKvResponse, PbHashRequest,
    PbHashResponse, PbMaintenanceService, PbMember, PbMemberAddRequest, PbMemberAddResponse,
    PbMemberListRequest, PbMemberListResponse, PbMemberPromoteRequest, PbMemberPromoteResponse,
    PbMemberRemoveRequest, PbMemberRemoveResponse, PbMemberUpdateRequest, PbMemberUpdateResponse,
    PbMoveLeaderRequest, PbMoveLeaderResponse, PbSnapshotRequest, PbSnapshotResponse,
    PbStatusRequest, PbStatusResponse,
};
use futures::Stream;
use tonic::{Request, Response, Status};

use super::error::EtcdError;
use super::schema::{MEMBER_ID, RAFT_TERM};
use super::server::Core;

/// etcd version this server reports (the API level it implements).
pub const REPORTED_VERSION: &str = "3.4.0";

/// The etcd `Maintenance` gRPC service.
#[derive(Clone)]
pub(crate) struct MaintenanceService {
    pub core: Arc<Core>,
}

type SnapshotStream =
    Pin<Box<dyn Stream<Item = Result<PbSnapshotResponse, Status>> + Send + 'static>>;

fn unsupported<T>(what: &'static str) -> Result<T, Status> {
    Err(EtcdError::Unsupported(what).to_status())
}

#[tonic::async_trait]
impl PbMaintenanceService for MaintenanceService {
    async fn alarm(
        &self,
        _r: Request<PbAlarmRequest>,
    ) -> Result<Response<PbAlarmResponse>, Status> {
        Ok(Response::new(PbAlarmResponse {
            header: Some(self.core.header(self.core.hub.current_rev())),
            alarms: Vec::new(),
        }))
    }

    async fn status(
        &self,
        _r: Request<PbStatusRequest>,
    ) -> Result<Response<PbStatusResponse>, Status> {
        let rev = self.core.hub.current_rev();
        let size = self.core.engine.db_size();
        Ok(Response::new(PbStatusResponse {
            header: Some(self.core.header(rev)),
            version: REPORTED_VERSION.to_string(),
            db_size: size,
            leader: MEMBER_ID,
            raft_index: rev as u64,
            raft_term: RAFT_TERM,
            raft_applied_index: rev as u64,
            errors: Vec::new(),
            db_size_in_use: size,
            is_learner: false,
            ..Default::default()
        }))
    }

    async fn defragment(
        &self,
        _r: Request<PbDefragmentRequest>,
    ) -> Result<Response<PbDefragmentResponse>, Status> {
        Ok(Response::new(PbDefragmentResponse {
            header: Some(self.core.header(self.core.hub.current_rev())),
        }))
    }

    async fn hash(&self, _r: Request<PbHashRequest>) -> Result<Response<PbHashResponse>, Status> {
        unsupported("Hash")
    }

    async fn hash_kv(
        &self,
        _r: Request<PbHashKvRequest>,
    ) -> Result<Response<PbHashKvResponse>, Status> {
        unsupported("HashKV")
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(
        &self,
        _r: Request<PbSnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        unsupported("Snapshot")
    }

    async fn move_leader(
        &self,
        _r: Request<PbMoveLeaderRequest>,
    ) -> Result<Response<PbMoveLeaderResponse>, Status> {
        unsupported("MoveLeader")
    }

    async fn downgrade(
        &self,
        _r: Request<PbDowngradeRequest>,
    ) -> Result<Response<PbDowngradeResponse>, Status> {
        unsupported("Downgrade")
    }
}

/// The etcd `Cluster` gRPC service (one member: this server).
#[derive(Clone)]
pub(crate) struct ClusterService {
    pub core: Arc<Core>,
}

impl ClusterService {
    fn member(&self) -> PbMember {
        PbMember {
            id: MEMBER_ID,
            name: "cirrus-etcd".to_string(),
            peer_ur_ls: Vec::new(),
            client_ur_ls: self.core.endpoints.clone(),
            is_learner: false,
        }
    }
}

#[tonic::async_trait]
impl PbClusterService for ClusterService {
    async fn member_add(
        &self,
        _r: Request<PbMemberAddRequest>,
    ) -> Result<Response<PbMemberAddResponse>, Status> {
        unsupported("MemberAdd")
    }

    async fn member_remove(
        &self,
        _r: Request<PbMemberRemoveRequest>,
    ) -> Result<Response<PbMemberRemoveResponse>, Status> {
        unsupported("MemberRemove")
    }

    async fn member_update(
        &self,
        _r: Request<PbMemberUpdateRequest>,
    ) -> Result<Response<PbMemberUpdateResponse>, Status> {
        unsupported("MemberUpdate")
    }

    async fn member_list(
        &self,
        _r: Request<PbMemberListRequest>,
    ) -> Result<Response<PbMemberListResponse>, Status> {
        Ok(Response::new(PbMemberListResponse {
            header: Some(self.core.header(self.core.hub.current_rev())),
            members: vec![self.member()],
        }))
    }

    async fn member_promote(
        &self,
        _r: Request<PbMemberPromoteRequest>,
    ) -> Result<Response<PbMemberPromoteResponse>, Status> {
        unsupported("MemberPromote")
    }
}
