//! StreamBank's access and refresh tokens.
//!
//! One trait, [`TokenMaker`] (create and verify), with two implementations chosen at start by
//! `TOKEN_KIND`: [`PasetoMaker`] (PASETO v4.local: authenticated encryption, the claims are unreadable
//! without the key) and [`JwtMaker`] (JWT HS256, the algorithm pinned so `alg: none` and every other
//! algorithm are refused). A token proves who issued it and until when it is valid; whether its session
//! is still alive is checked against Postgres by the service layer, so revocation takes effect at once.
//!
//! # Layout
//!
//! - [`Claims`] and [`TokenType`]: what a token says (architecture §7).
//! - [`TokenKey`]: the 32-byte symmetric key, checked when the process starts.
//! - [`TokenMaker`], [`PasetoMaker`], [`JwtMaker`], and [`maker`] to pick one by name.
//! - [`bearer_token`]: the token out of an `Authorization: Bearer ...` value (REST header, gRPC metadata).

mod jwt;
mod paseto;

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretSlice};
use serde::{Deserialize, Serialize};
use streambank_domain::Role;
use uuid::Uuid;

pub use jwt::JwtMaker;
pub use paseto::PasetoMaker;

/// Access tokens authorize requests; refresh tokens only buy new access tokens. Neither is accepted in
/// place of the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenType {
    Access,
    Refresh,
}

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The token's own id.
    pub jti: Uuid,
    /// The user (`sub`).
    pub user_id: i64,
    /// The session the token belongs to (`sid`); revoking the session revokes the token.
    pub session_id: Uuid,
    pub role: Role,
    pub typ: TokenType,
    /// Issued at, in Unix seconds.
    pub iat: i64,
    /// Expires at, in Unix seconds.
    pub exp: i64,
}

/// Why a token was refused. Both mean 401; they differ only in the reason given to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Malformed, tampered with, made with another key or algorithm, or with claims that do not parse.
    #[error("the token is invalid")]
    Invalid,
    #[error("the token has expired")]
    Expired,
}

/// Creates and verifies tokens.
pub trait TokenMaker: Send + Sync + std::fmt::Debug {
    /// The name of the token format (`paseto` or `jwt`).
    fn kind(&self) -> &'static str;
    fn create(&self, claims: &Claims) -> Result<String, TokenError>;
    /// Checks integrity and expiry and returns the claims. The caller checks `typ`.
    fn verify(&self, token: &str) -> Result<Claims, TokenError>;
}

/// The symmetric key both formats use: exactly 32 bytes.
#[derive(Debug, Clone)]
pub struct TokenKey(SecretSlice<u8>);

impl TokenKey {
    pub const LEN: usize = 32;

    /// Accepts exactly 32 bytes (for example 32 ASCII characters); the message says what was wrong
    /// without repeating the key.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.len() != Self::LEN {
            return Err(format!(
                "must be exactly {} bytes, got {}",
                Self::LEN,
                raw.len()
            ));
        }
        Ok(Self(SecretSlice::from(raw.as_bytes().to_vec())))
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        self.0.expose_secret()
    }
}

/// The token in an `authorization` value of the form `Bearer <token>` (the scheme in any case); `None`
/// for any other scheme or an empty token.
pub fn bearer_token(authorization: Option<&str>) -> Option<&str> {
    authorization
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
}

/// The token formats (`TOKEN_KIND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenKind {
    /// PASETO v4.local: authenticated encryption, no algorithm in the token to tamper with.
    #[default]
    Paseto,
    /// JWT signed with HS256.
    Jwt,
}

impl std::str::FromStr for TokenKind {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        match raw {
            "paseto" => Ok(Self::Paseto),
            "jwt" => Ok(Self::Jwt),
            other => Err(format!("must be paseto or jwt, got {other:?}")),
        }
    }
}

impl std::fmt::Display for TokenKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Paseto => "paseto",
            Self::Jwt => "jwt",
        })
    }
}

/// The token maker of this kind, with this key.
pub fn maker(kind: TokenKind, key: &TokenKey) -> Result<Arc<dyn TokenMaker>, String> {
    match kind {
        TokenKind::Paseto => Ok(Arc::new(PasetoMaker::new(key)?)),
        TokenKind::Jwt => Ok(Arc::new(JwtMaker::new(key))),
    }
}

/// The claims as both formats carry them on the wire (`sub` is a string, as JWT requires).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireClaims<T> {
    jti: Uuid,
    sub: String,
    sid: Uuid,
    role: Role,
    typ: TokenType,
    iat: T,
    exp: T,
}

impl<T> WireClaims<T> {
    fn from_claims(claims: &Claims, time: impl Fn(i64) -> T) -> Self {
        Self {
            jti: claims.jti,
            sub: claims.user_id.to_string(),
            sid: claims.session_id,
            role: claims.role,
            typ: claims.typ,
            iat: time(claims.iat),
            exp: time(claims.exp),
        }
    }

    fn into_claims(self, time: impl Fn(T) -> Option<i64>) -> Result<Claims, TokenError> {
        Ok(Claims {
            jti: self.jti,
            user_id: self.sub.parse().map_err(|_| TokenError::Invalid)?,
            session_id: self.sid,
            role: self.role,
            typ: self.typ,
            iat: time(self.iat).ok_or(TokenError::Invalid)?,
            exp: time(self.exp).ok_or(TokenError::Invalid)?,
        })
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[cfg(test)]
mod tests {
    #[test]
    fn bearer_tokens_are_read_from_the_header_value() {
        assert_eq!(super::bearer_token(Some("Bearer abc")), Some("abc"));
        assert_eq!(super::bearer_token(Some("bearer  abc ")), Some("abc"));
        assert_eq!(super::bearer_token(Some("Basic abc")), None);
        assert_eq!(super::bearer_token(Some("Bearer ")), None);
        assert_eq!(super::bearer_token(Some("abc")), None);
        assert_eq!(super::bearer_token(None), None);
    }

    use super::*;

    pub(crate) fn claims(typ: TokenType, ttl: i64) -> Claims {
        let now = now();
        Claims {
            jti: Uuid::new_v4(),
            user_id: 42,
            session_id: Uuid::new_v4(),
            role: Role::Customer,
            typ,
            iat: now,
            exp: now + ttl,
        }
    }

    pub(crate) fn key(fill: u8) -> TokenKey {
        TokenKey::parse(&String::from_utf8(vec![fill; 32]).expect("ascii")).expect("32 bytes")
    }

    #[test]
    fn keys_must_be_32_bytes() {
        assert!(TokenKey::parse(&"k".repeat(31)).is_err());
        assert!(TokenKey::parse(&"k".repeat(33)).is_err());
        assert!(TokenKey::parse(&"k".repeat(32)).is_ok());
        assert!(
            !format!("{:?}", key(b'z')).contains("zzzz"),
            "the key is never printed"
        );
    }

    #[test]
    fn both_makers_round_trip_and_refuse_what_they_should() {
        for kind in [TokenKind::Paseto, TokenKind::Jwt] {
            let maker = maker(kind, &key(b'a')).expect("maker");
            let other = super::maker(kind, &key(b'b')).expect("maker");
            let claims = claims(TokenType::Access, 60);
            let token = maker.create(&claims).expect("create");
            assert_eq!(maker.verify(&token), Ok(claims.clone()), "{kind}");

            assert_eq!(
                other.verify(&token),
                Err(TokenError::Invalid),
                "{kind}: another key"
            );
            let mut tampered = token.clone().into_bytes();
            let i = tampered.len() - 5;
            tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(tampered).expect("ascii");
            assert_eq!(
                maker.verify(&tampered),
                Err(TokenError::Invalid),
                "{kind}: tampered"
            );
            assert_eq!(maker.verify(""), Err(TokenError::Invalid), "{kind}: empty");
            assert_eq!(
                maker.verify("not.a.token"),
                Err(TokenError::Invalid),
                "{kind}: garbage"
            );

            let expired = maker
                .create(&super::tests::claims(TokenType::Access, -1))
                .expect("create");
            assert_eq!(
                maker.verify(&expired),
                Err(TokenError::Expired),
                "{kind}: expired"
            );
        }
        assert!("rot13".parse::<TokenKind>().is_err());
        assert_eq!("jwt".parse::<TokenKind>(), Ok(TokenKind::Jwt));
    }
}
