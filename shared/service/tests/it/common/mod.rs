//! A bank on a fresh database, with a banker, for the service-layer tests; the users and accounts come
//! from `streambank_testkit::fixtures`, through the service layer itself.

use streambank_service::{Account, Bank, Caller};
use streambank_testkit::TestDb;
use streambank_testkit::fixtures;

pub struct TestBank {
    pub db: TestDb,
    pub bank: Bank,
    pub banker: Caller,
}

impl TestBank {
    pub async fn new() -> Self {
        Self::with_max_connections(10).await
    }

    pub async fn with_max_connections(max: u32) -> Self {
        let db = TestDb::with_max_connections(max).await;
        let bank = Bank::new(db.pool.clone());
        let banker = fixtures::banker(&bank, "the_banker").await;
        Self { db, bank, banker }
    }

    /// A verified customer called `username`.
    pub async fn customer(&self, username: &str) -> Caller {
        fixtures::customer(&self.bank, username).await
    }

    /// Opens an account for `owner` and has the banker deposit `balance` into it.
    pub async fn account(&self, owner: Caller, currency: &str, balance: i64) -> Account {
        fixtures::funded_account(&self.bank, self.banker, owner, currency, balance).await
    }

    pub async fn balance(&self, account_id: i64) -> i64 {
        self.bank
            .get_account(self.banker, account_id)
            .await
            .expect("account")
            .balance
    }
}
