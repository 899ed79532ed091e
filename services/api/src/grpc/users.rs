//! `streambank.v1.UserService`: registration, the verification link, the caller, and sessions.

use streambank_proto::v1 as pb;
use streambank_proto::v1::user_service_server::UserService;
use streambank_service::{ClientMeta, Credentials, RegisterUser};
use tonic::{Request, Response, Status};

use super::convert::{timestamp, user};
use super::error::status;
use super::layers::{caller, client_addr};
use crate::state::AppState;

#[derive(Debug, Clone)]
pub struct Users {
    pub state: AppState,
}

#[tonic::async_trait]
impl UserService for Users {
    async fn create_user(
        &self,
        request: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let r = request.into_inner();
        let input = RegisterUser {
            username: r.username,
            email: r.email,
            full_name: r.full_name,
            password: r.password,
        };
        let registered = self.state.bank.register_user(input).await.map_err(status)?;
        Ok(Response::new(user(registered)))
    }

    async fn verify_email(
        &self,
        request: Request<pb::VerifyEmailRequest>,
    ) -> Result<Response<pb::VerifyEmailResponse>, Status> {
        let r = request.into_inner();
        let user_id = self
            .state
            .bank
            .verify_email(r.id, &r.code)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::VerifyEmailResponse {
            verified: true,
            user_id,
        }))
    }

    async fn get_me(
        &self,
        request: Request<pb::GetMeRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let who = caller(&request)?;
        let me = self
            .state
            .bank
            .get_user(who.caller.user_id)
            .await
            .map_err(status)?;
        Ok(Response::new(user(me)))
    }

    async fn login(
        &self,
        request: Request<pb::LoginRequest>,
    ) -> Result<Response<pb::LoginResponse>, Status> {
        let headers = request.metadata().clone().into_headers();
        let meta = ClientMeta {
            user_agent: super::peer::user_agent(request.extensions(), &headers),
            client_ip: client_addr(request.extensions(), &headers, &self.state.trusted_proxies),
        };
        let r = request.into_inner();
        let result = self
            .state
            .sessions
            .login(
                &self.state.bank,
                Credentials {
                    username: Some(&r.username),
                    email: Some(&r.email),
                    password: &r.password,
                },
                meta,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::LoginResponse {
            session_id: result.session_id.to_string(),
            access_token: result.access.token,
            access_token_expires_at: timestamp(result.access.expires_at),
            refresh_token: result.refresh.token,
            refresh_token_expires_at: timestamp(result.refresh.expires_at),
            user: Some(user(result.user)),
        }))
    }

    async fn refresh(
        &self,
        request: Request<pb::RefreshRequest>,
    ) -> Result<Response<pb::RefreshResponse>, Status> {
        let r = request.into_inner();
        let refreshed = self
            .state
            .sessions
            .refresh(&r.refresh_token)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::RefreshResponse {
            session_id: refreshed.session_id.to_string(),
            access_token: refreshed.access.token,
            access_token_expires_at: timestamp(refreshed.access.expires_at),
            refresh_token: refreshed.refresh.token,
            refresh_token_expires_at: timestamp(refreshed.refresh.expires_at),
        }))
    }

    async fn logout(&self, request: Request<pb::LogoutRequest>) -> Result<Response<()>, Status> {
        let who = caller(&request)?;
        self.state.sessions.logout(who).await.map_err(status)?;
        Ok(Response::new(()))
    }
}
