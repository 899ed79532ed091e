//! `streambank.v1.NotificationService`: what the caller has been told.

use streambank_proto::v1 as pb;
use streambank_proto::v1::notification_service_server::NotificationService;
use tonic::{Request, Response, Status};

use super::convert::notification;
use super::error::status;
use super::layers::caller;
use super::page;
use crate::state::AppState;

#[derive(Debug, Clone)]
pub struct Notifications {
    pub state: AppState,
}

#[tonic::async_trait]
impl NotificationService for Notifications {
    async fn list_notifications(
        &self,
        request: Request<pb::ListNotificationsRequest>,
    ) -> Result<Response<pb::ListNotificationsResponse>, Status> {
        let who = caller(&request)?;
        let r = request.into_inner();
        let page = self
            .state
            .bank
            .list_notifications(who.caller, page(r.page_size, r.page_token.as_deref())?)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListNotificationsResponse {
            notifications: page.items.into_iter().map(notification).collect(),
            next_page_token: page.next_page_token,
        }))
    }
}
