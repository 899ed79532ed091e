//! Sessions: logging in, refreshing, logging out, and authenticating each request.
//!
//! A token proves who issued it and until when; the session row says whether it still counts, so a
//! logout, a detected refresh-token reuse or a deleted user stops every token of the session at once,
//! including access tokens issued before.
//!
//! Looking the session up costs a query per request, so live sessions are cached in memory, but only
//! while [`Sessions::listen_for_invalidations`] holds a LISTEN connection: triggers notify every process
//! when a session is revoked or deleted or a user's role changes, and the entry is dropped. The process
//! that revokes a session drops its own entry before answering. When the listening connection is lost
//! the cache is cleared and bypassed until it is back, because notifications sent meanwhile are lost.
//! Entries are also re-checked after [`CACHE_TTL`] whatever happens.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use sha2::{Digest as _, Sha256};
use sqlx::PgPool;
use streambank_auth::{Claims, TokenError, TokenMaker, TokenType};
use streambank_domain::Role;
use streambank_store::sessions::{self, NewSession};
use uuid::Uuid;

use crate::{Caller, Error, Result, Timestamp, User, password};

/// Who is calling, as established from an access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authenticated {
    pub caller: Caller,
    pub session_id: Uuid,
}

/// Where a login comes from (recorded on the session).
#[derive(Debug, Clone, Default)]
pub struct ClientMeta {
    pub user_agent: Option<String>,
    pub client_ip: Option<std::net::IpAddr>,
}

/// A token and when it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub token: String,
    pub expires_at: Timestamp,
}

/// What a caller logs in with, as every transport receives it.
#[derive(Debug, Clone, Copy)]
pub struct Credentials<'a> {
    pub username: Option<&'a str>,
    pub email: Option<&'a str>,
    pub password: &'a str,
}

impl Credentials<'_> {
    /// The login to look up: the username when one is given (not blank), else the email address. The
    /// one rule for every transport: an empty `username` next to an `email` logs in by email.
    pub fn identifier(&self) -> &str {
        [self.username, self.email]
            .into_iter()
            .flatten()
            .map(str::trim)
            .find(|login| !login.is_empty())
            .unwrap_or_default()
    }
}

/// A successful login: the new session's tokens and who logged in.
#[derive(Debug, Clone)]
pub struct LoginResult {
    pub session_id: Uuid,
    pub access: IssuedToken,
    pub refresh: IssuedToken,
    pub user: User,
}

#[derive(Debug, Clone)]
pub struct Refreshed {
    pub session_id: Uuid,
    pub access: IssuedToken,
    pub refresh: IssuedToken,
}

/// The longest a cached session is trusted without asking Postgres again.
pub const CACHE_TTL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
struct CachedSession {
    user_id: i64,
    role: Role,
    expires_at: Timestamp,
    cached_at: std::time::Instant,
}

/// Live sessions, usable only while the invalidation listener is connected.
#[derive(Debug, Default)]
struct SessionCache {
    enabled: AtomicBool,
    entries: Mutex<HashMap<Uuid, CachedSession>>,
}

impl SessionCache {
    fn get(&self, id: Uuid) -> Option<CachedSession> {
        if !self.enabled.load(Ordering::Acquire) {
            return None;
        }
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        entries
            .get(&id)
            .copied()
            .filter(|s| s.cached_at.elapsed() < CACHE_TTL)
    }

    fn put(&self, id: Uuid, session: CachedSession) {
        if self.enabled.load(Ordering::Acquire) {
            self.entries
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert(id, session);
        }
    }

    fn remove(&self, id: Uuid) {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&id);
    }

    fn remove_user(&self, user_id: i64) {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .retain(|_, s| s.user_id != user_id);
    }

    /// Stops using the cache and forgets it (the listener lost its connection).
    fn disable(&self) {
        self.enabled.store(false, Ordering::Release);
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
    }

    fn enable(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
        self.enabled.store(true, Ordering::Release);
    }
}

/// Logins and token checks. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Sessions {
    cache: Arc<SessionCache>,
    pool: PgPool,
    tokens: Arc<dyn TokenMaker>,
    access_ttl: Duration,
    refresh_ttl: Duration,
    /// A real argon2id hash of a random password: an unknown user costs a login the same work as a
    /// wrong password, so response times do not reveal which usernames exist.
    dummy_hash: Arc<str>,
}

fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn token_error(err: TokenError) -> Error {
    match err {
        TokenError::Invalid => Error::TokenInvalid,
        TokenError::Expired => Error::TokenExpired,
    }
}

impl Sessions {
    pub async fn new(
        pool: PgPool,
        tokens: Arc<dyn TokenMaker>,
        access_ttl: Duration,
        refresh_ttl: Duration,
    ) -> Result<Self> {
        let random = Uuid::new_v4().to_string();
        let dummy = streambank_domain::Password::parse(&random).map_err(|e| anyhow::anyhow!(e))?;
        let dummy_hash = password::hash(&dummy).await?.into();
        Ok(Self {
            cache: Arc::default(),
            pool,
            tokens,
            access_ttl,
            refresh_ttl,
            dummy_hash,
        })
    }

    fn issue(
        &self,
        user_id: i64,
        role: Role,
        session_id: Uuid,
        typ: TokenType,
        expires_at: Timestamp,
    ) -> Result<IssuedToken> {
        let claims = Claims {
            jti: Uuid::new_v4(),
            user_id,
            session_id,
            role,
            typ,
            iat: Utc::now().timestamp(),
            exp: expires_at.timestamp(),
        };
        let token = self
            .tokens
            .create(&claims)
            .map_err(|e| Error::Internal(anyhow::anyhow!("cannot create a token: {e}")))?;
        Ok(IssuedToken { token, expires_at })
    }

    fn expiry(ttl: Duration) -> Result<Timestamp> {
        let ttl = chrono::Duration::from_std(ttl)
            .map_err(|e| anyhow::anyhow!("token TTL out of range: {e}"))?;
        // Whole seconds: tokens carry Unix seconds.
        let at = Utc::now() + ttl;
        Ok(chrono::DateTime::from_timestamp(at.timestamp(), 0).unwrap_or(at))
    }

    /// Logs in with a username or an email address. An unknown login and a wrong password are the same
    /// error after the same work; an unverified email is reported only once the password is right.
    #[tracing::instrument(name = "Log in", skip_all)]
    pub async fn login(
        &self,
        bank: &crate::Bank,
        credentials: Credentials<'_>,
        meta: ClientMeta,
    ) -> Result<LoginResult> {
        let login = credentials.identifier();
        let password = credentials.password;
        // No stored username or email holds a control character (registration refuses them), and
        // Postgres text cannot hold a NUL at all: such a login is wrong credentials, not a query.
        if login.is_empty()
            || login.len() > 254
            || login.chars().any(char::is_control)
            || password.is_empty()
            || password.len() > 1024
        {
            // Still one argon2 verification, so that timing says nothing about the input either.
            password::verify(password, &self.dummy_hash).await?;
            return Err(Error::InvalidCredentials);
        }
        let credentials = sessions::credentials(&self.pool, login)
            .await
            .map_err(Error::db)?;
        let Some(credentials) = credentials else {
            password::verify(password, &self.dummy_hash).await?;
            return Err(Error::InvalidCredentials);
        };
        if !password::verify(password, &credentials.password_hash).await? {
            return Err(Error::InvalidCredentials);
        }
        if !credentials.email_verified {
            return Err(Error::EmailNotVerified);
        }
        let role: Role = credentials
            .role
            .parse()
            .map_err(|e: String| anyhow::anyhow!(e))?;

        let session_id = Uuid::now_v7();
        let refresh = self.issue(
            credentials.user_id,
            role,
            session_id,
            TokenType::Refresh,
            Self::expiry(self.refresh_ttl)?,
        )?;
        let access = self.issue(
            credentials.user_id,
            role,
            session_id,
            TokenType::Access,
            Self::expiry(self.access_ttl)?,
        )?;
        let client_ip = meta.client_ip.map(|ip| ip.to_string());
        sessions::insert(
            &self.pool,
            NewSession {
                id: session_id,
                user_id: credentials.user_id,
                refresh_token_hash: &hash_token(&refresh.token),
                user_agent: meta.user_agent.as_deref().map(|ua| truncate(ua, 512)),
                client_ip: client_ip.as_deref(),
                expires_at: refresh.expires_at,
            },
        )
        .await
        .map_err(Error::db)?;
        let user = bank.get_user(credentials.user_id).await?;
        Ok(LoginResult {
            session_id,
            access,
            refresh,
            user,
        })
    }

    /// Exchanges a refresh token for a new access token and a new refresh token. The old refresh token
    /// stops working; presenting it again revokes the whole session (someone else may hold a copy).
    #[tracing::instrument(name = "Refresh a session", skip_all)]
    pub async fn refresh(&self, refresh_token: &str) -> Result<Refreshed> {
        let claims = self.tokens.verify(refresh_token).map_err(token_error)?;
        if claims.typ != TokenType::Refresh {
            return Err(Error::TokenInvalid);
        }
        let (state, role) = self.live_session(&claims).await?;
        let presented = hash_token(refresh_token);
        let refresh = self.issue(
            claims.user_id,
            role,
            claims.session_id,
            TokenType::Refresh,
            state.expires_at,
        )?;
        let rotated = sessions::rotate(
            &self.pool,
            claims.session_id,
            &presented,
            &hash_token(&refresh.token),
        )
        .await
        .map_err(Error::db)?;
        if !rotated {
            // A valid refresh token of this session that is no longer the current one: it was rotated out,
            // so two parties hold tokens of one session. Revoke it; both must log in again.
            tracing::warn!(session_id = %claims.session_id, "refresh token reuse detected; revoking the session");
            sessions::revoke(&self.pool, claims.session_id, "refresh_token_reuse")
                .await
                .map_err(Error::db)?;
            self.cache.remove(claims.session_id);
            return Err(Error::TokenRevoked);
        }
        let access = self.issue(
            claims.user_id,
            role,
            claims.session_id,
            TokenType::Access,
            Self::expiry(self.access_ttl)?,
        )?;
        Ok(Refreshed {
            session_id: claims.session_id,
            access,
            refresh,
        })
    }

    /// The session a token names, if it is still alive and still the token's user's, with the user's
    /// current role.
    async fn live_session(&self, claims: &Claims) -> Result<(sessions::SessionState, Role)> {
        let state = crate::retry::read(|| sessions::state(&self.pool, claims.session_id))
            .await?
            .filter(|s| s.user_id == claims.user_id)
            .ok_or(Error::TokenRevoked)?;
        if state.revoked_at.is_some() {
            return Err(Error::TokenRevoked);
        }
        if state.expires_at <= Utc::now() {
            return Err(Error::TokenExpired);
        }
        let role = state.role.parse().map_err(|e: String| anyhow::anyhow!(e))?;
        Ok((state, role))
    }

    /// Revokes the caller's session: every token of it stops working at once.
    #[tracing::instrument(name = "Log out", skip(self))]
    pub async fn logout(&self, who: Authenticated) -> Result<()> {
        sessions::revoke(&self.pool, who.session_id, "logout")
            .await
            .map_err(Error::db)?;
        self.cache.remove(who.session_id);
        Ok(())
    }

    /// Checks an access token and its session; the caller's role is the user's current role.
    #[tracing::instrument(name = "Authenticate", skip_all)]
    pub async fn authenticate(&self, access_token: &str) -> Result<Authenticated> {
        let claims = self.tokens.verify(access_token).map_err(token_error)?;
        if claims.typ != TokenType::Access {
            return Err(Error::TokenInvalid);
        }
        if let Some(cached) = self
            .cache
            .get(claims.session_id)
            .filter(|s| s.user_id == claims.user_id)
        {
            if cached.expires_at <= Utc::now() {
                return Err(Error::TokenExpired);
            }
            let caller = Caller {
                user_id: cached.user_id,
                role: cached.role,
            };
            return Ok(Authenticated {
                caller,
                session_id: claims.session_id,
            });
        }
        let (state, role) = self.live_session(&claims).await?;
        let cached = CachedSession {
            user_id: claims.user_id,
            role,
            expires_at: state.expires_at,
            cached_at: std::time::Instant::now(),
        };
        self.cache.put(claims.session_id, cached);
        let caller = Caller {
            user_id: claims.user_id,
            role,
        };
        Ok(Authenticated {
            caller,
            session_id: claims.session_id,
        })
    }

    /// Keeps the session cache honest; run it for the life of the process (the API spawns it). Until it
    /// has a LISTEN connection, and whenever it loses it, every request asks Postgres.
    pub async fn listen_for_invalidations(self) {
        const CHANNELS: [&str; 2] = ["session_revoked", "user_changed"];
        loop {
            let mut listener = match sqlx::postgres::PgListener::connect_with(&self.pool).await {
                Ok(listener) => listener,
                Err(e) => {
                    tracing::warn!(error = %e, "session invalidation listener cannot connect; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if listener.listen_all(CHANNELS).await.is_ok() {
                self.cache.enable();
                loop {
                    match listener.try_recv().await {
                        Ok(Some(notification)) => {
                            let payload = notification.payload();
                            match notification.channel() {
                                "session_revoked" => {
                                    if let Ok(id) = payload.parse() {
                                        self.cache.remove(id);
                                    }
                                }
                                _ => {
                                    if let Ok(user_id) = payload.parse() {
                                        self.cache.remove_user(user_id);
                                    }
                                }
                            }
                        }
                        // The connection dropped, so whatever was notified meanwhile is lost: forget the
                        // cache. The listener has already reconnected and listens again (it reconnects
                        // eagerly, and an error would have been returned had that failed).
                        Ok(None) => {
                            tracing::warn!(
                                "session invalidation listener reconnected; cache cleared"
                            );
                            self.cache.enable();
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "session invalidation listener failed; cache cleared");
                            self.cache.disable();
                            break;
                        }
                    }
                }
            }
            self.cache.disable();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Whether the in-memory session cache is in use (the invalidation listener is connected).
    pub fn cache_enabled(&self) -> bool {
        self.cache.enabled.load(Ordering::Acquire)
    }
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
