//! The etcd `KV` gRPC service: reads are served from a redb snapshot on the calling task,
//! writes are handed to the group-commit writer.

use std::pin::Pin;
use std::sync::Arc;

use etcd_client::proto::{
    PbCompactionRequest, PbCompactionResponse, PbDeleteRequest, PbDeleteResponse, PbKvService,
    PbPutRequest, PbPutResponse, PbRangeRequest, PbRangeResponse, PbRangeStreamResponse,
    PbTxnOpResponse, PbTxnRequest, PbTxnResponse,
};
use futures::Stream;
use tonic::{Request, Response, Status};

use super::compactor;
use super::read;
use super::server::Core;
use super::writer::{WriteOp, WriteOutcome};

/// The etcd `KV` gRPC service.
#[derive(Clone)]
pub(crate) struct KvService {
    pub core: Arc<Core>,
}

impl KvService {
    fn do_range(&self, r: &PbRangeRequest) -> Result<PbRangeResponse, Status> {
        let snap = self.core.engine.snapshot()?;
        let mut resp = read::range(&snap.kv, &snap.hist, r, snap.current, snap.compact)?;
        resp.header = Some(self.core.header(snap.current));
        Ok(resp)
    }
}

fn fill_txn_headers(core: &Core, t: &mut PbTxnResponse, rev: i64) {
    t.header = Some(core.header(rev));
    for r in &mut t.responses {
        match &mut r.response {
            Some(PbTxnOpResponse::ResponseRange(x)) => x.header = Some(core.header(rev)),
            Some(PbTxnOpResponse::ResponsePut(x)) => x.header = Some(core.header(rev)),
            Some(PbTxnOpResponse::ResponseDeleteRange(x)) => x.header = Some(core.header(rev)),
            Some(PbTxnOpResponse::ResponseTxn(x)) => fill_txn_headers(core, x, rev),
            None => {}
        }
    }
}

type RangeStream =
    Pin<Box<dyn Stream<Item = Result<PbRangeStreamResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl PbKvService for KvService {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn range(
        &self,
        req: Request<PbRangeRequest>,
    ) -> Result<Response<PbRangeResponse>, Status> {
        self.do_range(req.get_ref()).map(Response::new)
    }

    type RangeStreamStream = RangeStream;

    async fn range_stream(
        &self,
        req: Request<PbRangeRequest>,
    ) -> Result<Response<Self::RangeStreamStream>, Status> {
        let resp = self.do_range(req.get_ref())?;
        let item = PbRangeStreamResponse {
            range_response: Some(resp),
        };
        Ok(Response::new(Box::pin(futures::stream::iter([Ok(item)]))))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn put(&self, req: Request<PbPutRequest>) -> Result<Response<PbPutResponse>, Status> {
        let reply = self
            .core
            .writer
            .submit(WriteOp::Put(req.into_inner()))
            .await?;
        let WriteOutcome::Put(mut resp) = reply.outcome else {
            return Err(Status::internal("unexpected writer outcome"));
        };
        resp.header = Some(self.core.header(reply.rev));
        Ok(Response::new(resp))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn delete_range(
        &self,
        req: Request<PbDeleteRequest>,
    ) -> Result<Response<PbDeleteResponse>, Status> {
        let reply = self
            .core
            .writer
            .submit(WriteOp::Delete(req.into_inner()))
            .await?;
        let WriteOutcome::Delete(mut resp) = reply.outcome else {
            return Err(Status::internal("unexpected writer outcome"));
        };
        resp.header = Some(self.core.header(reply.rev));
        Ok(Response::new(resp))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn txn(&self, req: Request<PbTxnRequest>) -> Result<Response<PbTxnResponse>, Status> {
        let t = req.into_inner();
        let reply = self.core.writer.submit(WriteOp::Txn(t)).await?;
        let WriteOutcome::Txn(mut resp) = reply.outcome else {
            return Err(Status::internal("unexpected writer outcome"));
        };
        fill_txn_headers(&self.core, &mut resp, reply.rev);
        Ok(Response::new(resp))
    }

    /// Logical compaction at once; the physical steps run in the background, or before the
    /// reply when the request asks for `physical` (as etcd does).
    #[tracing::instrument(skip_all, fields(revision = req.get_ref().revision))]
    async fn compact(
        &self,
        req: Request<PbCompactionRequest>,
    ) -> Result<Response<PbCompactionResponse>, Status> {
        let req = req.into_inner();
        let reply = self
            .core
            .writer
            .submit(WriteOp::Compact(req.revision))
            .await?;
        if req.physical {
            compactor::drain(&self.core.writer, self.core.compaction_step).await?;
        } else {
            self.core.compact_wake.notify_one();
        }
        Ok(Response::new(PbCompactionResponse {
            header: Some(self.core.header(reply.rev)),
        }))
    }
}
