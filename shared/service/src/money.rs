//! Moving money: deposits (bankers only) and transfers.
//!
//! The store runs each movement as one statement that locks the rows it changes in ascending id order,
//! so concurrent transfers cannot overdraw an account or deadlock. Should Postgres still report a
//! serialization failure or a deadlock, the statement (which wrote nothing) runs again, a bounded number
//! of times, and each retry is counted in [`Stats`](crate::Stats).

use std::time::Duration;

use rand::Rng as _;
use streambank_domain::{Amount, Currency, Violations};
use streambank_store::ledger::{self, DepositRejection, NewTransfer, TransferRejection};

use crate::{Bank, Caller, Deposit, Error, Result, TransferResult};

/// How many times a transfer runs before a transient failure is reported as [`Error::Busy`].
const MAX_ATTEMPTS: u32 = 5;

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
    #[tracing::instrument(name = "Deposit", skip(self))]
    pub async fn deposit(
        &self,
        caller: Caller,
        account_id: i64,
        amount: i64,
        currency: &str,
    ) -> Result<Deposit> {
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
        outcome.map_err(|rejection| match rejection {
            DepositRejection::AccountNotFound => Error::AccountNotFound(account_id),
            DepositRejection::CurrencyMismatch { account } => Error::CurrencyMismatch {
                account,
                requested: currency.to_string(),
            },
            DepositRejection::BalanceLimit => Error::BalanceLimit,
        })
    }

    /// Moves money from one of the caller's accounts to any account in the same currency. Writes the
    /// transfer, both entries and a `transfer.completed` event, or nothing at all.
    #[tracing::instrument(name = "Transfer", skip(self))]
    pub async fn transfer(
        &self,
        caller: Caller,
        request: TransferRequest<'_>,
    ) -> Result<TransferResult> {
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
        let new = NewTransfer {
            from_account_id: request.from_account_id,
            to_account_id: request.to_account_id,
            amount: amount.minor_units(),
            currency: currency.code(),
            caller_id: caller.user_id,
        };
        let event = Self::event_meta();

        let mut attempt = 1;
        let outcome = loop {
            match ledger::transfer(&self.pool, new, &event).await {
                Ok(outcome) => break outcome,
                Err(e) if streambank_store::is_retryable(&e) && attempt < MAX_ATTEMPTS => {
                    self.stats.count_transfer_retry();
                    tracing::warn!(attempt, error = %e, "transfer hit a transient failure; retrying");
                    let backoff = rand::rng().random_range(1..=(5u64 << attempt));
                    tokio::time::sleep(Duration::from_millis(backoff)).await;
                    attempt += 1;
                }
                Err(e) if streambank_store::is_retryable(&e) => {
                    tracing::error!(attempt, error = %e, "transfer kept failing transiently; giving up");
                    return Err(Error::Busy);
                }
                // The CHECK constraint is the last line of defence; the statement's own check should
                // have caught this first.
                Err(e)
                    if streambank_store::constraint_name(&e)
                        == Some("accounts_balance_nonnegative") =>
                {
                    return Err(Error::InsufficientFunds);
                }
                Err(e) => return Err(Error::db(e)),
            }
        };
        outcome.map_err(|rejection| match rejection {
            TransferRejection::SourceNotFound => Error::AccountNotFound(new.from_account_id),
            TransferRejection::SourceNotOwned => Error::SourceNotOwned(new.from_account_id),
            TransferRejection::DestinationNotFound => Error::AccountNotFound(new.to_account_id),
            TransferRejection::CurrencyMismatch { from, to } => Error::CurrencyMismatch {
                account: if from == new.currency { to } else { from },
                requested: new.currency.to_owned(),
            },
            TransferRejection::InsufficientFunds { .. } => Error::InsufficientFunds,
            TransferRejection::DestinationBalanceLimit => Error::BalanceLimit,
        })
    }
}
