//! Moving money: deposits (bankers only) and transfers.
//!
//! The store runs each movement as one statement that locks the rows it changes in ascending id order,
//! so concurrent transfers cannot overdraw an account or deadlock. Should Postgres still report a
//! serialization failure or a deadlock, the statement (which wrote nothing) runs again, a bounded number
//! of times, and each retry is counted in [`Stats`](crate::Stats).

use std::time::Duration;

use rand::Rng as _;
use sha2::{Digest as _, Sha256};
use streambank_domain::{Account, Amount, Currency, Entry, Transfer, Violations};
use streambank_store::idempotency::{self, Claim};
use streambank_store::ledger::{
    self, DepositRejection, NewTransfer, TransferRecord, TransferRejection,
};

use crate::error::positive_id;
use crate::{Bank, Caller, Deposit, Error, Result};

/// How many times a transfer runs before a transient failure is reported as [`Error::Busy`].
pub(crate) const MAX_ATTEMPTS: u32 = 5;

/// How long idempotency keys are kept: the contract promises at least 24 hours.
pub const IDEMPOTENCY_KEY_RETENTION: Duration = Duration::from_secs(48 * 3600);

/// A claimed idempotency key whose request has not completed after this long is taken to be abandoned
/// (its process died) and may be claimed again. Longer than any request may run.
const ABANDONED_CLAIM_SECS: f64 = 60.0;

/// A transfer as a client asks for it, before validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferRequest<'a> {
    pub from_account_id: i64,
    pub to_account_id: i64,
    pub amount: i64,
    pub currency: &'a str,
}

/// Parses amount and currency together, so that both are reported when both are bad. A bad amount
/// makes the error [`Error::InvalidAmount`].
fn money(amount: i64, currency: &str, mut v: Violations) -> Result<(Amount, Currency)> {
    let amount = v.check("amount", Amount::parse(amount));
    let currency = v.check("currency", Currency::parse(currency));
    match (amount, currency) {
        (Some(amount), Some(currency)) if v.is_empty() => Ok((amount, currency)),
        (None, _) => Err(Error::InvalidAmount(v.finish().err().unwrap_or_default())),
        _ => Err(Error::Validation(v.finish().err().unwrap_or_default())),
    }
}

impl Bank {
    /// Credits `amount` to an account. Only a banker may deposit; the currency must be the account's.
    /// Writes the entry and a `money.deposited` event with the balance change.
    ///
    /// The caller's role is checked twice: here, from the token's session (cheap, and enough to turn
    /// a customer away), and again by the statement that writes, from the database under a row lock,
    /// so that a banker demoted a moment ago cannot deposit on a stale session.
    #[tracing::instrument(name = "Deposit", skip(self))]
    pub async fn deposit(
        &self,
        caller: Caller,
        account_id: i64,
        amount: i64,
        currency: &str,
    ) -> Result<Deposit> {
        let account_id = positive_id(account_id, "id")?;
        if !caller.is_banker() {
            return Err(Error::BankerOnly);
        }
        let (amount, currency) = money(amount, currency, Violations::new())?;
        let outcome = ledger::deposit(
            &self.pool,
            account_id,
            amount.minor_units(),
            currency.code(),
            caller.user_id,
            &Self::event_meta(),
        )
        .await
        .map_err(Error::db)?;
        if outcome.is_ok() {
            self.wrote(&[caller.user_id]).await;
        }
        outcome.map_err(|rejection| match rejection {
            DepositRejection::NotBanker => Error::BankerOnly,
            DepositRejection::AccountNotFound => Error::AccountNotFound(account_id),
            DepositRejection::CurrencyMismatch { account } => Error::CurrencyMismatch {
                account,
                requested: currency.to_string(),
            },
            DepositRejection::BalanceLimit => Error::BalanceLimit,
        })
    }

    /// The `Idempotency-Key` header as every transport receives it (raw bytes, absent or not), as the
    /// key [`transfer`](Self::transfer) takes: bytes that are not visible ASCII (or tab) cannot be a
    /// key at all, and are malformed; whether the text is a valid key, `transfer` decides.
    pub fn idempotency_key(raw: Option<&[u8]>) -> Result<Option<&str>> {
        let Some(raw) = raw else { return Ok(None) };
        raw.iter()
            .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
            .then(|| std::str::from_utf8(raw).ok())
            .flatten()
            .map(Some)
            .ok_or_else(|| Error::malformed("Idempotency-Key", "must be visible ASCII"))
    }

    /// Moves money from one of the caller's accounts to any account in the same currency. Writes the
    /// transfer, both entries and a `transfer.completed` event, or nothing at all. With an idempotency
    /// key (the `Idempotency-Key` every transport accepts), a retry is safe: see
    /// [`transfer_with_key`](Self::transfer_with_key).
    #[tracing::instrument(name = "Transfer", skip(self))]
    pub async fn transfer(
        &self,
        caller: Caller,
        key: Option<&str>,
        request: TransferRequest<'_>,
    ) -> Result<TransferResult> {
        match key {
            None => {
                let new = validate_transfer(caller, request)?;
                self.batcher().submit(new, Self::event_meta()).await
            }
            Some(key) => self.transfer_with_key(caller, key, request).await,
        }
    }

    /// A transfer under an `Idempotency-Key`, scoped to the caller: the first request
    /// with a key runs and its result is stored in the same transaction as the transfer; a repeat with
    /// the same request gets that result again without moving money; a repeat with a different request
    /// is [`Error::IdempotencyKeyReused`]; a repeat while the first still runs waits for it and gets its
    /// result. The key's claim lives in the transfer's own transaction, so a request that fails, or
    /// whose process dies, leaves the key free at once, and the client may retry with the same key. (A
    /// claim left by an older version without an answer is [`Error::IdempotencyInProgress`] until it is a
    /// minute old.)
    #[tracing::instrument(name = "Transfer with an idempotency key", skip(self))]
    async fn transfer_with_key(
        &self,
        caller: Caller,
        key: &str,
        request: TransferRequest<'_>,
    ) -> Result<TransferResult> {
        if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
            let mut v = Violations::new();
            v.add(
                "Idempotency-Key",
                "must be 1 to 255 visible ASCII characters",
            );
            return Err(Error::Validation(v.finish().err().unwrap_or_default()));
        }
        let new = validate_transfer(caller, request)?;
        let fingerprint = Sha256::digest(format!(
            "transfer\n{}\n{}\n{}\n{}",
            new.from_account_id, new.to_account_id, new.amount, new.currency
        ));
        let event = Self::event_meta();
        let mut attempt = 1;
        let mut reconnects = 0;
        loop {
            match self
                .transfer_keyed(caller.user_id, key, &fingerprint, new, &event)
                .await
            {
                Ok(outcome) => {
                    if outcome.is_ok() {
                        self.wrote(&[caller.user_id]).await;
                    }
                    return outcome;
                }
                // The connection died: the transaction rolled back, or (if it died in the commit) the
                // transfer and the key's answer committed together. Running it again finds out: the key
                // is claimed anew, or its stored answer is returned.
                // Every idle connection of the pool may have died at once (a restarted or failed-over
                // server, `pg_terminate_backend`), and the pool hands them out without a check: allow
                // one attempt per pooled connection and a few more.
                Err(e)
                    if streambank_store::is_connection_error(&e)
                        && reconnects < self.pool.options().get_max_connections() + 3 =>
                {
                    reconnects += 1;
                    tracing::warn!(error = %e, "the database connection failed mid-transfer; running it again on another");
                    tokio::time::sleep(Duration::from_millis(10 << reconnects.min(4))).await;
                }
                Err(e) => self.after_transfer_failure(e, &mut attempt).await?,
            }
        }
    }

    /// Deletes idempotency keys older than [`IDEMPOTENCY_KEY_RETENTION`]; returns how many. The API runs
    /// it periodically.
    #[tracing::instrument(name = "Expire idempotency keys", skip(self))]
    pub async fn expire_idempotency_keys(&self) -> Result<u64> {
        idempotency::expire(&self.pool, IDEMPOTENCY_KEY_RETENTION.as_secs_f64())
            .await
            .map_err(Error::db)
    }

    /// One attempt of an idempotent transfer, in one transaction: claim the key, move the money, store
    /// the answer, commit. A refusal rolls back, so the key stays free for a corrected retry.
    async fn transfer_keyed(
        &self,
        user_id: i64,
        key: &str,
        fingerprint: &[u8],
        new: NewTransfer<'_>,
        event: &streambank_store::EventMeta,
    ) -> std::result::Result<Result<TransferResult>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let claim =
            idempotency::claim(&mut tx, user_id, key, fingerprint, ABANDONED_CLAIM_SECS).await?;
        if let Some(stored) = stored_outcome(claim, fingerprint) {
            return Ok(stored);
        }
        let result = match ledger::transfer(&mut *tx, new, event).await? {
            Ok(record) => TransferResult::from(record),
            Err(r) => return Ok(Err(rejection(&new, r))),
        };
        let body = serde_json::to_value(&result).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        idempotency::complete(&mut *tx, user_id, key, 201, &body).await?;
        tx.commit().await?;
        Ok(Ok(result))
    }

    /// Decides what a failed transfer statement means: `Ok(())` to run it again (a transient failure,
    /// within the retry budget), or the error to return.
    async fn after_transfer_failure(&self, e: sqlx::Error, attempt: &mut u32) -> Result<()> {
        if streambank_store::is_retryable(&e) && *attempt < MAX_ATTEMPTS {
            self.stats.count_transfer_retry();
            tracing::warn!(attempt = *attempt, error = %e, "transfer hit a transient failure; retrying");
            let backoff = rand::rng().random_range(1..=(5u64 << *attempt));
            tokio::time::sleep(Duration::from_millis(backoff)).await;
            *attempt += 1;
            return Ok(());
        }
        if streambank_store::is_retryable(&e) {
            tracing::error!(attempt = *attempt, error = %e, "transfer kept failing transiently; giving up");
            return Err(Error::Busy);
        }
        // The CHECK constraint is the last line of defence; the statement's own check comes first.
        if streambank_store::constraint_name(&e) == Some("accounts_balance_nonnegative") {
            return Err(Error::InsufficientFunds);
        }
        Err(Error::db(e))
    }
}

/// What a claim that found an existing key means for this request: `None` when the key is ours to run.
fn stored_outcome(claim: Claim, fingerprint: &[u8]) -> Option<Result<TransferResult>> {
    match claim {
        Claim::Started => None,
        Claim::Existing {
            fingerprint: stored,
            ..
        } if stored[..] != fingerprint[..] => Some(Err(Error::IdempotencyKeyReused)),
        Claim::Existing { status: None, .. } => Some(Err(Error::IdempotencyInProgress)),
        Claim::Existing {
            body: Some(body), ..
        } => Some(serde_json::from_value(body).map_err(|e| {
            Error::Internal(anyhow::anyhow!(
                "stored idempotent response does not parse: {e}"
            ))
        })),
        Claim::Existing { body: None, .. } => Some(Err(Error::Internal(anyhow::anyhow!(
            "completed idempotency key without a body"
        )))),
    }
}

/// Parses a transfer request; every bad field is reported at once.
fn validate_transfer<'a>(
    caller: Caller,
    request: TransferRequest<'a>,
) -> Result<NewTransfer<'static>> {
    let mut v = Violations::new();
    if request.from_account_id <= 0 {
        v.add("from_account_id", "must be a positive account id");
    }
    if request.to_account_id <= 0 {
        v.add("to_account_id", "must be a positive account id");
    }
    let (amount, currency) = money(request.amount, request.currency, v)?;
    if request.from_account_id == request.to_account_id {
        return Err(Error::SameAccount);
    }
    Ok(NewTransfer {
        from_account_id: request.from_account_id,
        to_account_id: request.to_account_id,
        amount: amount.minor_units(),
        currency: currency.code(),
        caller_id: caller.user_id,
    })
}

/// What the caller is told about a refused transfer. About the source (the caller's own account) it
/// says what is wrong; about the destination (someone else's) one thing only, whatever the cause, so
/// that a refusal reveals neither the destination's existence, nor its currency, nor its balance:
/// [`Error::CannotReceive`].
pub(crate) fn rejection(new: &NewTransfer<'_>, rejection: TransferRejection) -> Error {
    match rejection {
        TransferRejection::SourceNotFound => Error::AccountNotFound(new.from_account_id),
        TransferRejection::SourceNotOwned => Error::SourceNotOwned(new.from_account_id),
        TransferRejection::SourceCurrencyMismatch { from } => Error::CurrencyMismatch {
            account: from,
            requested: new.currency.to_owned(),
        },
        TransferRejection::InsufficientFunds { .. } => Error::InsufficientFunds,
        TransferRejection::DestinationNotFound
        | TransferRejection::DestinationCurrencyMismatch
        | TransferRejection::DestinationBalanceLimit => Error::CannotReceive,
    }
}

/// What the caller of a transfer is shown: the transfer, and the caller's own account and entry as they
/// are after it. The destination is someone else's account: its owner and balance are not the
/// caller's to see, so they are not in the answer (issue 22); its id is in `transfer`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TransferResult {
    pub transfer: Transfer,
    pub from_account: Account,
    pub from_entry: Entry,
}

impl From<TransferRecord> for TransferResult {
    fn from(record: TransferRecord) -> Self {
        Self {
            transfer: record.transfer,
            from_account: record.from_account,
            from_entry: record.from_entry,
        }
    }
}
