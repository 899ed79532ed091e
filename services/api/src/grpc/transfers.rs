//! `streambank.v1.TransferService`: move money (idempotently with the `idempotency-key` metadata
//! entry, with the REST semantics), read and list transfers.

use streambank_proto::v1 as pb;
use streambank_proto::v1::transfer_service_server::TransferService;
use streambank_service::{Bank, TransferRequest};
use tonic::{Request, Response, Status};

use super::convert::{transfer, transfer_result};
use super::error::status;
use super::layers::caller;
use super::page;
use crate::state::AppState;

#[derive(Debug, Clone)]
pub struct Transfers {
    pub state: AppState,
}

#[tonic::async_trait]
impl TransferService for Transfers {
    async fn create_transfer(
        &self,
        request: Request<pb::CreateTransferRequest>,
    ) -> Result<Response<pb::TransferResult>, Status> {
        let who = caller(&request)?;
        let key = request.metadata().get("idempotency-key");
        let key = Bank::idempotency_key(key.map(|key| key.as_bytes()))
            .map_err(status)?
            .map(str::to_owned);
        let r = request.into_inner();
        let input = TransferRequest {
            from_account_id: r.from_account_id,
            to_account_id: r.to_account_id,
            amount: r.amount,
            currency: &r.currency,
        };
        let result = self
            .state
            .bank
            .transfer(who.caller, key.as_deref(), input)
            .await
            .map_err(status)?;
        Ok(Response::new(transfer_result(result)))
    }

    async fn get_transfer(
        &self,
        request: Request<pb::GetTransferRequest>,
    ) -> Result<Response<pb::Transfer>, Status> {
        let who = caller(&request)?;
        let found = self
            .state
            .bank
            .get_transfer(who.caller, request.get_ref().id)
            .await
            .map_err(status)?;
        Ok(Response::new(transfer(found)))
    }

    async fn list_transfers(
        &self,
        request: Request<pb::ListTransfersRequest>,
    ) -> Result<Response<pb::ListTransfersResponse>, Status> {
        let who = caller(&request)?;
        let r = request.into_inner();
        let page = self
            .state
            .bank
            .list_transfers(
                who.caller,
                r.account_id,
                page(r.page_size, r.page_token.as_deref())?,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListTransfersResponse {
            transfers: page.items.into_iter().map(transfer).collect(),
            next_page_token: page.next_page_token,
        }))
    }
}
