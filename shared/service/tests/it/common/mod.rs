//! Helpers shared by the service-layer tests: a bank on a fresh database and quick ways to make
//! customers, bankers and funded accounts through the service layer itself.

use streambank_service::{Account, Bank, Caller, RegisterUser, Role, UserOptions};
use streambank_testkit::TestDb;

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
        let banker = create(&bank, "the_banker", Role::Banker).await;
        Self { db, bank, banker }
    }

    /// A verified customer called `username`.
    pub async fn customer(&self, username: &str) -> Caller {
        create(&self.bank, username, Role::Customer).await
    }

    /// Opens an account for `owner` and has the banker deposit `balance` into it.
    pub async fn account(&self, owner: Caller, currency: &str, balance: i64) -> Account {
        let account = self
            .bank
            .open_account(owner, currency)
            .await
            .expect("open account");
        if balance > 0 {
            self.bank
                .deposit(self.banker, account.id, balance, currency)
                .await
                .expect("deposit")
                .account
        } else {
            account
        }
    }

    pub async fn balance(&self, account_id: i64) -> i64 {
        self.bank
            .get_account(self.banker, account_id)
            .await
            .expect("account")
            .balance
    }
}

async fn create(bank: &Bank, username: &str, role: Role) -> Caller {
    let input = RegisterUser {
        username: username.to_owned(),
        email: format!("{username}@example.com"),
        full_name: format!("Test {username}"),
        password: "correct horse battery".to_owned(),
    };
    let user = bank
        .create_user(
            input,
            UserOptions {
                role,
                verified: true,
            },
        )
        .await
        .expect("create user");
    Caller {
        user_id: user.id,
        role,
    }
}
