//! The ledger: deposits, transfers, statements and transfer history.
//!
//! A movement of money is a single SQL statement: it locks what it touches, checks what it must, writes
//! the balances, the entries and the outbox row, and reports back in one row. One statement is one round
//! trip and one implicit transaction, so there is no window between check and write and nothing to roll
//! back by hand. When a check fails the statement writes nothing and its row says which check failed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgExecutor;
use streambank_domain::{Deposit, Entry, Transfer};
use streambank_events::EventType;

use crate::EventMeta;
use streambank_domain::Account;

/// What a completed transfer wrote: the transfer, both accounts as they are now, and both entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferRecord {
    pub transfer: Transfer,
    pub from_account: Account,
    pub to_account: Account,
    pub from_entry: Entry,
    pub to_entry: Entry,
}

/// Why the transfer statement wrote nothing. Checked in this order: everything about the source (the
/// caller's own account) before anything about the destination, so that what a refusal says about the
/// destination never depends on the source's state (an unfunded source is refused for its funds,
/// whether the destination exists or not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferRejection {
    SourceNotFound,
    SourceNotOwned,
    /// The source's currency is not the transfer's.
    SourceCurrencyMismatch {
        from: String,
    },
    InsufficientFunds {
        balance: i64,
    },
    DestinationNotFound,
    /// The destination's currency is not the transfer's.
    DestinationCurrencyMismatch,
    /// The destination's balance would pass `i64::MAX` minor units.
    DestinationBalanceLimit,
}

/// The parameters of one transfer, validated by the service layer.
#[derive(Debug, Clone, Copy)]
pub struct NewTransfer<'a> {
    pub from_account_id: i64,
    pub to_account_id: i64,
    pub amount: i64,
    pub currency: &'a str,
    /// The caller; the source account must be theirs.
    pub caller_id: i64,
}

/// Moves money between two accounts in one statement (`queries/transfer.sql`, which explains the locking).
#[tracing::instrument(name = "Run the transfer statement", skip(db, event), fields(event_id = %event.id))]
pub async fn transfer(
    db: impl PgExecutor<'_>,
    new: NewTransfer<'_>,
    event: &EventMeta,
) -> sqlx::Result<Result<TransferRecord, TransferRejection>> {
    let event_type = EventType::TransferCompleted;
    let row = sqlx::query_file_as!(
        OutcomeRow,
        "queries/transfer.sql",
        new.from_account_id,
        new.to_account_id,
        new.amount,
        new.caller_id,
        new.currency,
        event.id,
        event_type.aggregate().as_str(),
        event_type.as_str(),
        event.traceparent,
    )
    .fetch_one(db)
    .await?;
    Ok(outcome(row, &new))
}

/// Moves money for many transfers in one call and one transaction (`transfer_batch` in `migrations/`,
/// which explains the locking and the waves): one round trip and one commit for all of them. Each
/// transfer succeeds or is rejected on its own, as if the batch ran one transfer at a time in the order
/// given; the answers come back in that order.
#[tracing::instrument(name = "Run the transfer batch statement", skip_all, fields(transfers = batch.len()))]
pub async fn transfer_batch(
    db: impl PgExecutor<'_>,
    batch: &[(NewTransfer<'_>, EventMeta)],
) -> sqlx::Result<Vec<Result<TransferRecord, TransferRejection>>> {
    let event_type = EventType::TransferCompleted;
    let column =
        |f: fn(&NewTransfer<'_>) -> i64| batch.iter().map(|(t, _)| f(t)).collect::<Vec<_>>();
    let from_ids = column(|t| t.from_account_id);
    let to_ids = column(|t| t.to_account_id);
    let amounts = column(|t| t.amount);
    let callers = column(|t| t.caller_id);
    let currencies: Vec<String> = batch.iter().map(|(t, _)| t.currency.to_owned()).collect();
    let event_ids: Vec<uuid::Uuid> = batch.iter().map(|(_, e)| e.id).collect();
    let traceparents: Vec<String> = batch
        .iter()
        .map(|(_, e)| e.traceparent.clone().unwrap_or_default())
        .collect();
    let waves = waves(
        batch
            .iter()
            .map(|(t, _)| (t.from_account_id, t.to_account_id)),
    );
    let rows = sqlx::query_as!(
        OutcomeRow,
        r#"
        SELECT r_from_owner_id AS "from_owner_id?", r_from_currency AS "from_currency?",
               r_from_balance AS "from_balance?", r_to_owner_id AS "to_owner_id?",
               r_to_currency AS "to_currency?", r_to_balance AS "to_balance?",
               r_transfer_id AS "transfer_id?", r_transfer_created_at AS "transfer_created_at?",
               r_from_balance_after AS "from_balance_after?", r_from_created_at AS "from_created_at?",
               r_to_balance_after AS "to_balance_after?", r_to_created_at AS "to_created_at?",
               r_from_entry_id AS "from_entry_id?", r_from_entry_created_at AS "from_entry_created_at?",
               r_to_entry_id AS "to_entry_id?", r_to_entry_created_at AS "to_entry_created_at?"
        FROM transfer_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
        ORDER BY r_ord
        "#,
        &from_ids,
        &to_ids,
        &amounts,
        &callers,
        &currencies,
        &event_ids,
        &traceparents,
        &waves,
        event_type.aggregate().as_str(),
        event_type.as_str(),
    )
    .fetch_all(db)
    .await?;
    if rows.len() != batch.len() {
        return Err(sqlx::Error::Protocol(format!(
            "transfer_batch answered {} rows for {} transfers",
            rows.len(),
            batch.len()
        )));
    }
    Ok(rows
        .into_iter()
        .zip(batch)
        .map(|(row, (new, _))| outcome(row, new))
        .collect())
}

/// Numbers each transfer's wave for `transfer_batch`: one more than the highest wave of any earlier
/// transfer that shares an account with it. No account appears twice in a wave, and a transfer's wave
/// comes after those of every earlier transfer on its accounts, so running the waves in order is running
/// the transfers in order.
fn waves(accounts: impl Iterator<Item = (i64, i64)>) -> Vec<i32> {
    let mut last: std::collections::HashMap<i64, i32> = std::collections::HashMap::new();
    accounts
        .map(|(from, to)| {
            let latest = |account| last.get(&account).copied().unwrap_or(0);
            let wave = 1 + latest(from).max(latest(to));
            last.insert(from, wave);
            last.insert(to, wave);
            wave
        })
        .collect()
}

/// What the transfer statement (or the batch function, per transfer) answers: the accounts as they were
/// found, and, when the transfer happened, what it wrote.
#[derive(Debug)]
struct OutcomeRow {
    from_owner_id: Option<i64>,
    from_currency: Option<String>,
    from_balance: Option<i64>,
    to_owner_id: Option<i64>,
    to_currency: Option<String>,
    #[allow(dead_code)]
    to_balance: Option<i64>,
    transfer_id: Option<i64>,
    transfer_created_at: Option<DateTime<Utc>>,
    from_balance_after: Option<i64>,
    from_created_at: Option<DateTime<Utc>>,
    to_balance_after: Option<i64>,
    to_created_at: Option<DateTime<Utc>>,
    from_entry_id: Option<i64>,
    from_entry_created_at: Option<DateTime<Utc>>,
    to_entry_id: Option<i64>,
    to_entry_created_at: Option<DateTime<Utc>>,
}

fn outcome(row: OutcomeRow, new: &NewTransfer<'_>) -> Result<TransferRecord, TransferRejection> {
    let completed = (|| {
        let transfer = Transfer {
            id: row.transfer_id?,
            from_account_id: new.from_account_id,
            to_account_id: new.to_account_id,
            amount: new.amount,
            currency: new.currency.to_owned(),
            created_at: row.transfer_created_at?,
        };
        Some(TransferRecord {
            from_account: Account {
                id: new.from_account_id,
                owner_id: new.caller_id,
                currency: new.currency.to_owned(),
                balance: row.from_balance_after?,
                created_at: row.from_created_at?,
            },
            to_account: Account {
                id: new.to_account_id,
                owner_id: row.to_owner_id?,
                currency: new.currency.to_owned(),
                balance: row.to_balance_after?,
                created_at: row.to_created_at?,
            },
            from_entry: Entry {
                id: row.from_entry_id?,
                account_id: new.from_account_id,
                amount: -new.amount,
                transfer_id: Some(transfer.id),
                deposited_by: None,
                created_at: row.from_entry_created_at?,
            },
            to_entry: Entry {
                id: row.to_entry_id?,
                account_id: new.to_account_id,
                amount: new.amount,
                transfer_id: Some(transfer.id),
                deposited_by: None,
                created_at: row.to_entry_created_at?,
            },
            transfer,
        })
    })();
    if let Some(record) = completed {
        return Ok(record);
    }

    Err(
        match (row.from_owner_id, row.from_currency, row.to_currency) {
            (None, _, _) => TransferRejection::SourceNotFound,
            (Some(owner), _, _) if owner != new.caller_id => TransferRejection::SourceNotOwned,
            (_, Some(from), _) if from != new.currency => {
                TransferRejection::SourceCurrencyMismatch { from }
            }
            (_, _, to) => match row.from_balance {
                Some(balance) if balance < new.amount => {
                    TransferRejection::InsufficientFunds { balance }
                }
                _ => match to {
                    None => TransferRejection::DestinationNotFound,
                    Some(to) if to != new.currency => {
                        TransferRejection::DestinationCurrencyMismatch
                    }
                    Some(_) => TransferRejection::DestinationBalanceLimit,
                },
            },
        },
    )
}

/// Why the deposit statement wrote nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DepositRejection {
    /// The depositor is not a banker, as of the statement itself (a token may be older than a
    /// demotion; the role is read again, and locked, where the money is written).
    NotBanker,
    AccountNotFound,
    CurrencyMismatch {
        account: String,
    },
    /// The balance would pass `i64::MAX` minor units.
    BalanceLimit,
}

/// Credits an account and writes its entry and `money.deposited` event, in one statement, if
/// `by_user_id` is a banker.
///
/// The role is checked in the statement that writes, under a `FOR SHARE` lock on the user's row: a
/// role change (an `UPDATE` of that row) either commits first, and then this statement sees it and
/// writes nothing, or waits until this statement has committed. So no deposit commits after the
/// demotion of its banker has committed, whichever API replica serves it and however fresh its
/// session cache is (issue 22).
#[tracing::instrument(name = "Run the deposit statement", skip(db, event), fields(event_id = %event.id))]
pub async fn deposit(
    db: impl PgExecutor<'_>,
    account_id: i64,
    amount: i64,
    currency: &str,
    by_user_id: i64,
    event: &EventMeta,
) -> sqlx::Result<Result<Deposit, DepositRejection>> {
    let event_type = EventType::MoneyDeposited;
    let row = sqlx::query!(
        r#"
        WITH banker AS MATERIALIZED (
            SELECT id FROM users WHERE id = $4 AND role = 'banker' FOR SHARE
        ), credited AS (
            UPDATE accounts SET balance = balance + $2::bigint
            WHERE id = $1 AND currency = $3 AND balance <= 9223372036854775807 - $2::bigint
              AND EXISTS (SELECT 1 FROM banker)
            RETURNING id, owner_id, currency, balance, created_at
        ), entry AS (
            INSERT INTO entries (account_id, amount, deposited_by)
            SELECT id, $2::bigint, $4 FROM credited
            RETURNING id, created_at
        ), event AS (
            INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, payload, traceparent)
            SELECT $5, $6, c.id::text, $7,
                   jsonb_build_object('account_id', c.id, 'amount', $2::bigint, 'currency', c.currency,
                                      'by_user_id', $4::bigint),
                   $8
            FROM credited c
        )
        SELECT EXISTS (SELECT 1 FROM banker) AS "banker!",
               a.currency AS "account_currency?",
               c.owner_id AS "owner_id?", c.balance AS "balance?", c.created_at AS "account_created_at?",
               e.id AS "entry_id?", e.created_at AS "entry_created_at?"
        FROM (SELECT 1) AS one
        LEFT JOIN accounts a ON a.id = $1
        LEFT JOIN credited c ON true
        LEFT JOIN entry e ON true
        "#,
        account_id,
        amount,
        currency,
        by_user_id,
        event.id,
        event_type.aggregate().as_str(),
        event_type.as_str(),
        event.traceparent,
    )
    .fetch_one(db)
    .await?;

    if let (
        Some(owner_id),
        Some(balance),
        Some(account_created_at),
        Some(entry_id),
        Some(entry_created_at),
    ) = (
        row.owner_id,
        row.balance,
        row.account_created_at,
        row.entry_id,
        row.entry_created_at,
    ) {
        return Ok(Ok(Deposit {
            account: Account {
                id: account_id,
                owner_id,
                currency: currency.to_owned(),
                balance,
                created_at: account_created_at,
            },
            entry: Entry {
                id: entry_id,
                account_id,
                amount,
                transfer_id: None,
                deposited_by: Some(by_user_id),
                created_at: entry_created_at,
            },
        }));
    }
    if !row.banker {
        return Ok(Err(DepositRejection::NotBanker));
    }
    Ok(Err(match row.account_currency {
        None => DepositRejection::AccountNotFound,
        Some(account) if account != currency => DepositRejection::CurrencyMismatch { account },
        Some(_) => DepositRejection::BalanceLimit,
    }))
}

/// An account's entries, newest first, before the keyset cursor `before`.
#[tracing::instrument(name = "List an account's entries", skip(db))]
pub async fn list_entries(
    db: impl PgExecutor<'_>,
    account_id: i64,
    before: Option<i64>,
    limit: i64,
) -> sqlx::Result<Vec<Entry>> {
    sqlx::query_as!(
        Entry,
        r#"
        SELECT id, account_id, amount, transfer_id, deposited_by, created_at
        FROM entries
        WHERE account_id = $1 AND id < COALESCE($2, 9223372036854775807)
        ORDER BY id DESC
        LIMIT $3
        "#,
        account_id,
        before,
        limit
    )
    .fetch_all(db)
    .await
}

#[tracing::instrument(name = "Fetch a transfer", skip(db))]
pub async fn get_transfer(db: impl PgExecutor<'_>, id: i64) -> sqlx::Result<Option<Transfer>> {
    sqlx::query_as!(
        Transfer,
        "SELECT id, from_account_id, to_account_id, amount, currency, created_at FROM transfers WHERE id = $1",
        id
    )
    .fetch_optional(db)
    .await
}

/// The transfers into or out of an account, newest first, before the keyset cursor `before`.
/// Two index range scans (one per side) merged, rather than one scan filtering an OR.
#[tracing::instrument(name = "List an account's transfers", skip(db))]
pub async fn list_transfers(
    db: impl PgExecutor<'_>,
    account_id: i64,
    before: Option<i64>,
    limit: i64,
) -> sqlx::Result<Vec<Transfer>> {
    sqlx::query_as!(
        Transfer,
        r#"
        SELECT id AS "id!", from_account_id AS "from_account_id!", to_account_id AS "to_account_id!",
               amount AS "amount!", currency AS "currency!", created_at AS "created_at!"
        FROM (
            (SELECT * FROM transfers
             WHERE from_account_id = $1 AND id < COALESCE($2, 9223372036854775807)
             ORDER BY id DESC LIMIT $3)
            UNION ALL
            (SELECT * FROM transfers
             WHERE to_account_id = $1 AND id < COALESCE($2, 9223372036854775807)
             ORDER BY id DESC LIMIT $3)
        ) AS both_sides
        ORDER BY id DESC
        LIMIT $3
        "#,
        account_id,
        before,
        limit
    )
    .fetch_all(db)
    .await
}

#[cfg(test)]
mod tests {
    use super::waves;

    #[test]
    fn a_transfer_waits_for_every_earlier_transfer_on_its_accounts() {
        let batch = [(1, 2), (3, 4), (2, 3), (5, 6), (1, 1), (6, 7), (4, 1)];
        assert_eq!(waves(batch.into_iter()), [1, 1, 2, 1, 2, 2, 3]);
    }

    #[test]
    fn no_account_appears_twice_in_a_wave() {
        let batch: Vec<(i64, i64)> = (0..200).map(|i| ((i * 7) % 13, (i * 5 + 1) % 11)).collect();
        let waves = waves(batch.iter().copied());
        for wave in 1..=waves.iter().copied().max().unwrap_or(0) {
            let mut seen = std::collections::HashSet::new();
            for (&(from, to), _) in batch.iter().zip(&waves).filter(|(_, w)| **w == wave) {
                assert!(seen.insert(from), "account {from} twice in wave {wave}");
                assert!(
                    from == to || seen.insert(to),
                    "account {to} twice in wave {wave}"
                );
            }
        }
    }
}
