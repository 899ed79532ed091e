//! PASETO v4.local: XChaCha20 + BLAKE2b authenticated encryption. The payload is our own JSON claims
//! (times as RFC 3339 strings, as PASETO's registered claims are); expiry is checked here.

use pasetors::Local;
use pasetors::keys::SymmetricKey;
use pasetors::token::UntrustedToken;
use pasetors::version4::{LocalToken, V4};

use crate::{Claims, TokenError, TokenKey, TokenMaker, WireClaims, now};

/// Binds tokens to this application: a token made for another purpose with the same key is refused.
const IMPLICIT_ASSERTION: &[u8] = b"streambank:v1";

pub struct PasetoMaker {
    key: SymmetricKey<V4>,
}

impl std::fmt::Debug for PasetoMaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasetoMaker { key: [redacted] }")
    }
}

impl PasetoMaker {
    pub fn new(key: &TokenKey) -> Result<Self, String> {
        let key = SymmetricKey::<V4>::from(key.bytes())
            .map_err(|e| format!("is not a PASETO v4 key: {e}"))?;
        Ok(Self { key })
    }
}

fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn unix(rfc3339: String) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(&rfc3339)
        .ok()
        .map(|t| t.timestamp())
}

impl TokenMaker for PasetoMaker {
    fn kind(&self) -> &'static str {
        "paseto"
    }

    fn create(&self, claims: &Claims) -> Result<String, TokenError> {
        let payload = serde_json::to_vec(&WireClaims::from_claims(claims, rfc3339))
            .map_err(|_| TokenError::Invalid)?;
        LocalToken::encrypt(&self.key, &payload, None, Some(IMPLICIT_ASSERTION))
            .map_err(|_| TokenError::Invalid)
    }

    fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let untrusted =
            UntrustedToken::<Local, V4>::try_from(token).map_err(|_| TokenError::Invalid)?;
        let trusted = LocalToken::decrypt(&self.key, &untrusted, None, Some(IMPLICIT_ASSERTION))
            .map_err(|_| TokenError::Invalid)?;
        let wire: WireClaims<String> =
            serde_json::from_str(trusted.payload()).map_err(|_| TokenError::Invalid)?;
        let claims = wire.into_claims(unix)?;
        if claims.exp <= now() {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}
