//! Password hashing with argon2id (RFC 9106; OWASP's recommended parameters, the crate's defaults).
//!
//! Hashing costs tens of milliseconds of CPU by design, so it runs on tokio's blocking pool, never on an
//! async worker thread where it would stall every other request.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use streambank_domain::Password;

use crate::Error;

/// Hashes a password into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`), with a fresh
/// random salt.
#[tracing::instrument(name = "Hash a password", skip_all)]
pub async fn hash(password: &Password) -> Result<String, Error> {
    let password = password.clone();
    streambank_telemetry::spawn_blocking_in_span(move || {
        Argon2::default()
            .hash_password(password.expose().as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|e| anyhow::anyhow!("argon2 hashing failed: {e}"))
    })
    .await
    .map_err(|e| anyhow::anyhow!("password hashing task failed: {e}"))?
    .map_err(Error::Internal)
}

/// Checks a password against a stored PHC string. A malformed stored hash counts as a mismatch.
#[tracing::instrument(name = "Verify a password", skip_all)]
pub async fn verify(password: &str, phc: &str) -> Result<bool, Error> {
    let (password, phc) = (password.to_owned(), phc.to_owned());
    streambank_telemetry::spawn_blocking_in_span(move || {
        PasswordHash::new(&phc).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    })
    .await
    .map_err(|e| Error::Internal(anyhow::anyhow!("password verification task failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_differ_per_salt() {
        let password = Password::parse("correct horse battery").expect("valid");
        let first = hash(&password).await.expect("hash");
        let second = hash(&password).await.expect("hash");
        assert!(first.starts_with("$argon2id$"));
        assert_ne!(first, second, "each hash has its own salt");
        assert!(
            verify("correct horse battery", &first)
                .await
                .expect("verify")
        );
        assert!(!verify("wrong horse battery", &first).await.expect("verify"));
        assert!(
            !verify("correct horse battery", "not a phc string")
                .await
                .expect("verify")
        );
    }
}
