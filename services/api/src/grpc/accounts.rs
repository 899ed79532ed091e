//! `streambank.v1.AccountService`: open, read, list; statements; deposits.

use streambank_proto::v1 as pb;
use streambank_proto::v1::account_service_server::AccountService;
use tonic::{Request, Response, Status};

use super::convert::{account, entry};
use super::error::status;
use super::layers::caller;
use super::page;
use crate::state::AppState;

#[derive(Debug, Clone)]
pub struct Accounts {
    pub state: AppState,
}

#[tonic::async_trait]
impl AccountService for Accounts {
    async fn open_account(
        &self,
        request: Request<pb::OpenAccountRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        let who = caller(&request)?;
        let r = request.into_inner();
        let opened = self
            .state
            .bank
            .open_account(who.caller, &r.currency)
            .await
            .map_err(status)?;
        Ok(Response::new(account(opened)))
    }

    async fn list_accounts(
        &self,
        request: Request<pb::ListAccountsRequest>,
    ) -> Result<Response<pb::ListAccountsResponse>, Status> {
        let who = caller(&request)?;
        let r = request.into_inner();
        let page = self
            .state
            .bank
            .list_accounts(who.caller, page(r.page_size, r.page_token.as_deref())?)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListAccountsResponse {
            accounts: page.items.into_iter().map(account).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn get_account(
        &self,
        request: Request<pb::GetAccountRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        let who = caller(&request)?;
        let found = self
            .state
            .bank
            .get_account(who.caller, request.get_ref().id)
            .await
            .map_err(status)?;
        Ok(Response::new(account(found)))
    }

    async fn list_entries(
        &self,
        request: Request<pb::ListEntriesRequest>,
    ) -> Result<Response<pb::ListEntriesResponse>, Status> {
        let who = caller(&request)?;
        let r = request.into_inner();
        let page = self
            .state
            .bank
            .list_entries(
                who.caller,
                r.id,
                page(r.page_size, r.page_token.as_deref())?,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListEntriesResponse {
            entries: page.items.into_iter().map(entry).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn deposit(
        &self,
        request: Request<pb::DepositRequest>,
    ) -> Result<Response<pb::DepositResponse>, Status> {
        let who = caller(&request)?;
        let r = request.into_inner();
        let deposit = self
            .state
            .bank
            .deposit(who.caller, r.id, r.amount, &r.currency)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DepositResponse {
            account: Some(account(deposit.account)),
            entry: Some(entry(deposit.entry)),
        }))
    }
}
