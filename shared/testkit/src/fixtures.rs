//! People and money for tests, made through the service layer ([`Bank`]) as an operator makes them
//! (`bankctl users create --verified`): no email round trip, no HTTP. Every user has [`PASSWORD`], so
//! a test can log any of them in over REST or gRPC ([`crate::rest::login`]).

use streambank_service::{Account, Bank, Caller, RegisterUser, Role, UserOptions};

/// The password of every user the test helpers make.
pub const PASSWORD: &str = "correct horse battery";

/// A registration of `username` at `email` with [`PASSWORD`].
pub fn registration(username: &str, email: &str) -> RegisterUser {
    RegisterUser {
        username: username.to_owned(),
        email: email.to_owned(),
        full_name: format!("Test {username}"),
        password: PASSWORD.to_owned(),
    }
}

/// A verified user with `role`, at `<username>@example.com`.
pub async fn user(bank: &Bank, username: &str, role: Role) -> Caller {
    user_at(bank, username, &format!("{username}@example.com"), role).await
}

/// A verified user with `role` at `email`. Tests whose emails reach the shared SMTP catcher give their
/// users a domain of their own, so that they read back only their own mail.
pub async fn user_at(bank: &Bank, username: &str, email: &str, role: Role) -> Caller {
    let options = UserOptions {
        role,
        verified: true,
    };
    let user = bank
        .create_user(registration(username, email), options)
        .await
        .unwrap_or_else(|e| panic!("cannot create user {username}: {e}"));
    Caller {
        user_id: user.id,
        role,
    }
}

/// A verified customer at `<username>@example.com`.
pub async fn customer(bank: &Bank, username: &str) -> Caller {
    user(bank, username, Role::Customer).await
}

/// A verified banker at `<username>@example.com`.
pub async fn banker(bank: &Bank, username: &str) -> Caller {
    user(bank, username, Role::Banker).await
}

/// Opens an account in `currency` for `owner` and has `banker` deposit `balance` into it (no deposit
/// when `balance` is 0).
pub async fn funded_account(
    bank: &Bank,
    banker: Caller,
    owner: Caller,
    currency: &str,
    balance: i64,
) -> Account {
    let account = bank
        .open_account(owner, currency)
        .await
        .unwrap_or_else(|e| panic!("cannot open a {currency} account: {e}"));
    if balance == 0 {
        return account;
    }
    bank.deposit(banker, account.id, balance, currency)
        .await
        .unwrap_or_else(|e| panic!("cannot deposit {balance} {currency}: {e}"))
        .account
}
