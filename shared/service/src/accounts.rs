//! Accounts: opening, reading and listing them, and their statements.
//!
//! Visibility rule, applied here and nowhere else: a customer sees their own accounts; a banker sees
//! every account. An account the caller may not see is answered as not found, so ids of other people's
//! accounts reveal nothing.

use streambank_domain::{Currency, PageRequest, Violations};
use streambank_store::{accounts, ledger};

use crate::error::{positive_id, required};
use crate::{Account, Bank, Caller, Entry, Error, Page, Result, Transfer};

impl Bank {
    /// Opens an account in `currency` for the caller, with a zero balance; writes `account.opened`.
    #[tracing::instrument(name = "Open an account", skip(self))]
    pub async fn open_account(&self, caller: Caller, currency: &str) -> Result<Account> {
        let mut v = Violations::new();
        let currency = v.check("currency", Currency::parse(currency));
        let Some(currency) = currency else {
            return Err(v.finish().err().unwrap_or_default().into());
        };
        accounts::insert(
            &self.pool,
            caller.user_id,
            currency.code(),
            &Self::event_meta(),
        )
        .await
        .map_err(|e| match streambank_store::constraint_name(&e) {
            Some("accounts_owner_currency_key") => Error::AccountExists {
                currency: currency.to_string(),
            },
            Some("accounts_owner_id_fkey") => Error::UserNotFound,
            _ => Error::db(e),
        })
    }

    /// One account, if the caller may see it.
    #[tracing::instrument(name = "Get an account", skip(self))]
    pub async fn get_account(&self, caller: Caller, account_id: i64) -> Result<Account> {
        let account_id = positive_id(account_id, "id")?;
        crate::retry::read(|| accounts::get(&self.pool, account_id))
            .await?
            .filter(|account| caller.is_banker() || account.owner_id == caller.user_id)
            .ok_or(Error::AccountNotFound(account_id))
    }

    /// The caller's own accounts, in id order.
    #[tracing::instrument(name = "List accounts", skip(self))]
    pub async fn list_accounts(&self, caller: Caller, page: PageRequest) -> Result<Page<Account>> {
        let rows = crate::retry::read(|| {
            accounts::list_by_owner(&self.pool, caller.user_id, page.after, page.fetch_limit())
        })
        .await?;
        Ok(page.into_page(rows, |a| a.id))
    }

    /// An account's statement: its entries, newest first. The ownership check reads the primary; the
    /// entries come from the read replica when there is one ([`crate::replica`]).
    #[tracing::instrument(name = "List entries", skip(self))]
    pub async fn list_entries(
        &self,
        caller: Caller,
        account_id: i64,
        page: PageRequest,
    ) -> Result<Page<Entry>> {
        self.get_account(caller, account_id).await?;
        let rows = self
            .list_read(caller, |db| {
                ledger::list_entries(db, account_id, page.after, page.fetch_limit())
            })
            .await?;
        Ok(page.into_page(rows, |e| e.id))
    }

    /// One transfer, if the caller is a party to it (owns either account) or is a banker.
    #[tracing::instrument(name = "Get a transfer", skip(self))]
    pub async fn get_transfer(&self, caller: Caller, transfer_id: i64) -> Result<Transfer> {
        let transfer_id = positive_id(transfer_id, "id")?;
        let transfer = crate::retry::read(|| ledger::get_transfer(&self.pool, transfer_id))
            .await?
            .ok_or(Error::TransferNotFound(transfer_id))?;
        if caller.is_banker() {
            return Ok(transfer);
        }
        for account_id in [transfer.from_account_id, transfer.to_account_id] {
            match self.get_account(caller, account_id).await {
                Ok(_) => return Ok(transfer),
                Err(Error::AccountNotFound(_)) => {}
                Err(other) => return Err(other),
            }
        }
        Err(Error::TransferNotFound(transfer_id))
    }

    /// The transfers into and out of one of the caller's accounts, newest first (from the read
    /// replica when there is one, after an ownership check on the primary).
    #[tracing::instrument(name = "List transfers", skip(self))]
    pub async fn list_transfers(
        &self,
        caller: Caller,
        account_id: Option<i64>,
        page: PageRequest,
    ) -> Result<Page<Transfer>> {
        let account_id = required(account_id, "account_id")?;
        self.get_account(caller, account_id).await?;
        let rows = self
            .list_read(caller, |db| {
                ledger::list_transfers(db, account_id, page.after, page.fetch_limit())
            })
            .await?;
        Ok(page.into_page(rows, |t| t.id))
    }
}

impl Bank {
    /// The caller's notifications, newest first (from the read replica when there is one).
    #[tracing::instrument(name = "List notifications", skip(self))]
    pub async fn list_notifications(
        &self,
        caller: Caller,
        page: PageRequest,
    ) -> Result<Page<crate::Notification>> {
        let rows = self
            .list_read(caller, |db| {
                streambank_store::notifications::list(
                    db,
                    caller.user_id,
                    page.after,
                    page.fetch_limit(),
                )
            })
            .await?;
        Ok(page.into_page(rows, |n| n.id))
    }
}

impl Bank {
    /// The owner of an account, for consumers that must know whom an event concerns (no caller involved).
    #[tracing::instrument(name = "Find an account's owner", skip(self))]
    pub async fn owner_of(&self, account_id: i64) -> Result<i64> {
        crate::retry::read(|| accounts::get(&self.pool, account_id))
            .await?
            .map(|a| a.owner_id)
            .ok_or(Error::AccountNotFound(account_id))
    }
}
