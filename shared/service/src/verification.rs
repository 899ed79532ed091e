//! Email verification: the secret sent by email, and the link that uses it.
//!
//! The secret is 32 bytes from a CSPRNG (rand's ThreadRng, seeded from the operating system), sent once (hex in the link) and stored
//! only as its SHA-256; a database leak does not reveal usable links.

use chrono::Utc;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use streambank_store::verifications;
use uuid::Uuid;

use crate::{Bank, Error, Result};

/// How long a verification link works.
pub const VERIFICATION_TTL: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// A verification to send: its id and the secret code for the link. `Debug` hides the code.
#[derive(Clone, PartialEq, Eq)]
pub struct NewVerification {
    pub id: i64,
    pub code: String,
}

impl std::fmt::Debug for NewVerification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewVerification")
            .field("id", &self.id)
            .field("code", &"[redacted]")
            .finish()
    }
}

/// What opening a verification link did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailVerification {
    /// This call verified the address.
    Verified { user_id: i64 },
    /// The link had already worked: the address was verified before and nothing changed.
    AlreadyVerified { user_id: i64 },
}

impl EmailVerification {
    pub fn user_id(self) -> i64 {
        match self {
            Self::Verified { user_id } | Self::AlreadyVerified { user_id } => user_id,
        }
    }
}

fn hash(code: &str) -> Vec<u8> {
    Sha256::digest(code.as_bytes()).to_vec()
}

impl Bank {
    /// Creates the verification for the `user.registered` event `event_id` (or renews the secret of its
    /// unused one, after a crash before its email was recorded). `None` when it was already used.
    #[tracing::instrument(name = "Create an email verification", skip(self, email))]
    pub async fn create_email_verification(
        &self,
        user_id: i64,
        email: &str,
        event_id: Uuid,
    ) -> Result<Option<NewVerification>> {
        let mut secret = [0u8; 32];
        // ThreadRng is a CSPRNG (ChaCha12, seeded and periodically reseeded from the OS).
        rand::rng().fill_bytes(&mut secret);
        let code: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        let id = verifications::insert(
            &self.pool,
            user_id,
            email,
            &hash(&code),
            event_id,
            Utc::now() + VERIFICATION_TTL,
        )
        .await
        .map_err(Error::db)?;
        Ok(id.map(|id| NewVerification { id, code }))
    }

    /// Uses the link from the email. Wrong and expired codes are one error and change nothing; a link
    /// opened again after it worked is not an error (the address is verified) but says so.
    #[tracing::instrument(name = "Verify an email address", skip(self, code))]
    pub async fn verify_email_link(&self, id: i64, code: &str) -> Result<EmailVerification> {
        if id <= 0 || code.len() != 64 || !code.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::VerificationInvalid);
        }
        let secret_hash = hash(&code.to_ascii_lowercase());
        if let Some(user_id) =
            verifications::use_verification(&self.pool, id, &secret_hash, &Self::event_meta())
                .await
                .map_err(Error::db)?
        {
            return Ok(EmailVerification::Verified { user_id });
        }
        verifications::used_by(&self.pool, id, &secret_hash)
            .await
            .map_err(Error::db)?
            .map(|user_id| EmailVerification::AlreadyVerified { user_id })
            .ok_or(Error::VerificationInvalid)
    }

    /// [`Bank::verify_email_link`] for callers that only need the user: both outcomes are a success.
    pub async fn verify_email(&self, id: i64, code: &str) -> Result<i64> {
        self.verify_email_link(id, code)
            .await
            .map(|outcome| outcome.user_id())
    }

    /// Marks a user verified without a link (tests and operators).
    #[tracing::instrument(name = "Verify a user directly", skip(self))]
    pub async fn mark_email_verified(&self, user_id: i64) -> Result<()> {
        let verification = self
            .create_email_verification(
                user_id,
                &self.get_user(user_id).await?.email,
                Uuid::now_v7(),
            )
            .await?
            .ok_or_else(|| anyhow::anyhow!("a fresh event id already had a verification"))?;
        self.verify_email(verification.id, &verification.code)
            .await
            .map(|_| ())
    }
}
