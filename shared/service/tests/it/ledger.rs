//! The service layer against a real Postgres: users, accounts, deposits, transfers, statements, and the
//! outbox rows each change writes in the same statement.

use crate::common::TestBank;
use serde_json::Value;
use streambank_events::EventType;
use streambank_events::payload::{
    AccountOpened, MoneyDeposited, TransferCompleted, UserRegistered,
};
use streambank_service::{Error, PageRequest, RegisterUser, TransferRequest};
use streambank_testkit::fixtures;

/// The payloads of the outbox rows of one event type, oldest first.
async fn events(t: &TestBank, event_type: EventType) -> Vec<Value> {
    sqlx::query_scalar("SELECT payload FROM outbox WHERE event_type = $1 ORDER BY created_at, id")
        .bind(event_type.as_str())
        .fetch_all(&t.db.pool)
        .await
        .expect("read outbox")
}

fn registration(username: &str, email: &str) -> RegisterUser {
    RegisterUser {
        full_name: "Ann Example".into(),
        ..fixtures::registration(username, email)
    }
}

#[tokio::test]
async fn registering_writes_the_user_and_its_event_and_names_are_unique() {
    let t = TestBank::new().await;
    let user = t
        .bank
        .register_user(registration("ann", "Ann@Example.com"))
        .await
        .expect("register");
    assert_eq!(user.role, streambank_service::Role::Customer);
    assert_eq!(user.email_verified_at, None);

    let registered = events(&t, EventType::UserRegistered).await;
    let payload: UserRegistered =
        serde_json::from_value(registered.last().expect("event").clone()).expect("payload shape");
    assert_eq!(
        payload,
        UserRegistered {
            user_id: user.id,
            username: "ann".into(),
            email: "Ann@Example.com".into(),
            full_name: "Ann Example".into()
        }
    );
    assert!(
        !registered
            .last()
            .expect("event")
            .to_string()
            .contains("horse"),
        "no password in events"
    );

    let users_before = t.db.count("users").await;
    let outbox_before = t.db.count("outbox").await;
    assert!(matches!(
        t.bank
            .register_user(registration("ann", "other@example.com"))
            .await,
        Err(Error::UsernameTaken)
    ));
    assert!(matches!(
        t.bank
            .register_user(registration("bob", "ann@EXAMPLE.com"))
            .await,
        Err(Error::EmailTaken)
    ));
    let Err(Error::Validation(bad)) = t.bank.register_user(registration("Bad Name", "nope")).await
    else {
        panic!("expected validation errors");
    };
    assert_eq!(
        bad.iter().map(|v| v.field.as_str()).collect::<Vec<_>>(),
        ["username", "email"]
    );
    assert_eq!(t.db.count("users").await, users_before);
    assert_eq!(t.db.count("outbox").await, outbox_before);
}

#[tokio::test]
async fn accounts_are_one_per_currency_and_private_to_their_owner() {
    let t = TestBank::new().await;
    let ann = t.customer("ann").await;
    let bob = t.customer("bob").await;
    let account = t.bank.open_account(ann, "EUR").await.expect("open");
    assert_eq!(
        (account.owner_id, account.currency.as_str(), account.balance),
        (ann.user_id, "EUR", 0)
    );

    let opened: AccountOpened =
        serde_json::from_value(events(&t, EventType::AccountOpened).await[0].clone())
            .expect("shape");
    assert_eq!(
        opened,
        AccountOpened {
            account_id: account.id,
            owner_id: ann.user_id,
            currency: "EUR".into()
        }
    );

    assert!(matches!(
        t.bank.open_account(ann, "EUR").await,
        Err(Error::AccountExists { .. })
    ));
    assert!(matches!(
        t.bank.open_account(ann, "GBP").await,
        Err(Error::Validation(_))
    ));
    assert_eq!(t.db.count("accounts").await, 1);

    assert!(
        matches!(t.bank.get_account(bob, account.id).await, Err(Error::AccountNotFound(id)) if id == account.id)
    );
    assert!(matches!(
        t.bank
            .list_entries(bob, account.id, PageRequest::first())
            .await,
        Err(Error::AccountNotFound(_))
    ));
    assert_eq!(
        t.bank
            .get_account(t.banker, account.id)
            .await
            .expect("banker sees all")
            .id,
        account.id
    );
    assert_eq!(
        t.bank
            .list_accounts(bob, PageRequest::first())
            .await
            .expect("list")
            .items,
        []
    );
}

#[tokio::test]
async fn only_bankers_deposit_and_deposits_are_recorded() {
    let t = TestBank::new().await;
    let ann = t.customer("ann").await;
    let account = t.bank.open_account(ann, "USD").await.expect("open");

    assert!(matches!(
        t.bank.deposit(ann, account.id, 100, "USD").await,
        Err(Error::BankerOnly)
    ));
    assert!(matches!(
        t.bank.deposit(t.banker, account.id, 100, "EUR").await,
        Err(Error::CurrencyMismatch { .. })
    ));
    assert!(matches!(
        t.bank.deposit(t.banker, 999_999, 100, "USD").await,
        Err(Error::AccountNotFound(999_999))
    ));
    assert!(matches!(
        t.bank.deposit(t.banker, account.id, 0, "USD").await,
        Err(Error::InvalidAmount(_))
    ));
    assert_eq!(t.db.count("entries").await, 0);

    let deposit = t
        .bank
        .deposit(t.banker, account.id, 2_500, "USD")
        .await
        .expect("deposit");
    assert_eq!(deposit.account.balance, 2_500);
    assert_eq!(
        (deposit.entry.amount, deposit.entry.deposited_by),
        (2_500, Some(t.banker.user_id))
    );
    let deposited: MoneyDeposited =
        serde_json::from_value(events(&t, EventType::MoneyDeposited).await[0].clone())
            .expect("shape");
    assert_eq!(
        deposited,
        MoneyDeposited {
            account_id: account.id,
            amount: 2_500,
            currency: "USD".into(),
            by_user_id: t.banker.user_id
        }
    );

    // A balance can hold at most i64::MAX minor units; the deposit that would pass it is refused.
    assert!(matches!(
        t.bank.deposit(t.banker, account.id, i64::MAX, "USD").await,
        Err(Error::BalanceLimit)
    ));
    assert_eq!(t.balance(account.id).await, 2_500);
}

#[tokio::test]
async fn a_transfer_moves_money_and_writes_entries_and_one_event() {
    let t = TestBank::new().await;
    let ann = t.customer("ann").await;
    let bob = t.customer("bob").await;
    let from = t.account(ann, "USD", 1_000).await;
    let to = t.account(bob, "USD", 0).await;

    let request = TransferRequest {
        from_account_id: from.id,
        to_account_id: to.id,
        amount: 300,
        currency: "USD",
    };
    let result = t.bank.transfer(ann, None, request).await.expect("transfer");
    assert_eq!(result.from_account.balance, 700);
    assert_eq!(t.balance(to.id).await, 300);
    assert_eq!(result.from_entry.amount, -300);
    assert_eq!(result.transfer.amount, 300);
    // The answer is the caller's: the destination's owner and balance are not in it.
    let answer = serde_json::to_value(&result).expect("json");
    assert!(
        answer.get("to_account").is_none() && answer.get("to_entry").is_none(),
        "{answer}"
    );

    let completed: TransferCompleted =
        serde_json::from_value(events(&t, EventType::TransferCompleted).await[0].clone())
            .expect("shape");
    assert_eq!(
        completed,
        TransferCompleted {
            transfer_id: result.transfer.id,
            from_account_id: from.id,
            to_account_id: to.id,
            from_owner_id: ann.user_id,
            to_owner_id: bob.user_id,
            amount: 300,
            currency: "USD".into(),
        }
    );

    // Both parties see it; a third customer does not.
    let carl = t.customer("carl").await;
    assert_eq!(
        t.bank
            .get_transfer(bob, result.transfer.id)
            .await
            .expect("party")
            .id,
        result.transfer.id
    );
    assert!(matches!(
        t.bank.get_transfer(carl, result.transfer.id).await,
        Err(Error::TransferNotFound(_))
    ));
    let history = t
        .bank
        .list_transfers(bob, Some(to.id), PageRequest::first())
        .await
        .expect("history");
    assert_eq!(
        history.items.iter().map(|t| t.id).collect::<Vec<_>>(),
        [result.transfer.id]
    );
}

#[tokio::test]
async fn bad_transfers_get_their_own_error_and_write_nothing() {
    let t = TestBank::new().await;
    let ann = t.customer("ann").await;
    let bob = t.customer("bob").await;
    let ann_usd = t.account(ann, "USD", 500).await;
    let ann_eur = t.account(ann, "EUR", 500).await;
    let bob_usd = t.account(bob, "USD", 500).await;
    let request = |from: i64, to: i64, amount: i64, currency: &'static str| TransferRequest {
        from_account_id: from,
        to_account_id: to,
        amount,
        currency,
    };

    let tables = ["transfers", "entries", "outbox", "accounts"];
    let mut before = Vec::new();
    for table in tables {
        before.push(t.db.count(table).await);
    }

    type Case<'a> = (&'a str, TransferRequest<'a>, fn(&Error) -> bool);
    let cases: Vec<Case<'_>> = vec![
        (
            "zero amount",
            request(ann_usd.id, bob_usd.id, 0, "USD"),
            |e| matches!(e, Error::InvalidAmount(_)),
        ),
        (
            "negative amount",
            request(ann_usd.id, bob_usd.id, -10, "USD"),
            |e| matches!(e, Error::InvalidAmount(_)),
        ),
        (
            "self-transfer",
            request(ann_usd.id, ann_usd.id, 10, "USD"),
            |e| matches!(e, Error::SameAccount),
        ),
        (
            "unknown currency",
            request(ann_usd.id, bob_usd.id, 10, "XYZ"),
            |e| matches!(e, Error::Validation(_)),
        ),
        (
            "currency mismatch with the caller's own account",
            request(ann_usd.id, bob_usd.id, 10, "EUR"),
            |e| matches!(e, Error::CurrencyMismatch { account, .. } if account == "USD"),
        ),
        (
            "a destination in another currency: the one uniform refusal",
            request(ann_eur.id, bob_usd.id, 10, "EUR"),
            |e| matches!(e, Error::CannotReceive),
        ),
        (
            "unknown source",
            request(424_242, bob_usd.id, 10, "USD"),
            |e| matches!(e, Error::AccountNotFound(424_242)),
        ),
        (
            "unknown destination: the same refusal",
            request(ann_usd.id, 424_242, 10, "USD"),
            |e| matches!(e, Error::CannotReceive),
        ),
        (
            "someone else's source",
            request(bob_usd.id, ann_usd.id, 10, "USD"),
            |e| matches!(e, Error::SourceNotOwned(_)),
        ),
        (
            "overdraft",
            request(ann_usd.id, bob_usd.id, 501, "USD"),
            |e| matches!(e, Error::InsufficientFunds),
        ),
        // The source is checked before the destination: an overdraft says the same whether the
        // destination exists or not, so it cannot be used to probe for accounts.
        (
            "overdraft to an unknown destination",
            request(ann_usd.id, 424_242, 501, "USD"),
            |e| matches!(e, Error::InsufficientFunds),
        ),
        (
            "overdraft to a destination in another currency",
            request(ann_eur.id, bob_usd.id, 501, "EUR"),
            |e| matches!(e, Error::InsufficientFunds),
        ),
    ];
    for (name, request, expected) in cases {
        let err = t.bank.transfer(ann, None, request).await.expect_err(name);
        assert!(expected(&err), "{name}: unexpected error {err:?}");
    }

    for (table, before) in tables.into_iter().zip(before) {
        assert_eq!(t.db.count(table).await, before, "{table} changed");
    }
    assert_eq!(t.balance(ann_usd.id).await, 500);
    assert_eq!(t.balance(bob_usd.id).await, 500);
}

/// The whole balance can move: the check is >=, not >.
#[tokio::test]
async fn the_whole_balance_can_move() {
    let t = TestBank::new().await;
    let ann = t.customer("ann").await;
    let bob = t.customer("bob").await;
    let from = t.account(ann, "USD", 500).await.id;
    let to = t.account(bob, "USD", 500).await.id;
    let request = TransferRequest {
        from_account_id: from,
        to_account_id: to,
        amount: 500,
        currency: "USD",
    };
    t.bank
        .transfer(ann, None, request)
        .await
        .expect("exact balance");
    assert_eq!(t.balance(from).await, 0);
}

#[tokio::test]
async fn statements_page_newest_first_without_gaps_or_repeats() {
    let t = TestBank::new().await;
    let ann = t.customer("ann").await;
    let bob = t.customer("bob").await;
    let from = t.account(ann, "CAD", 100).await;
    let to = t.account(bob, "CAD", 0).await;
    for amount in 1..=6 {
        let request = TransferRequest {
            from_account_id: from.id,
            to_account_id: to.id,
            amount,
            currency: "CAD",
        };
        t.bank.transfer(ann, None, request).await.expect("transfer");
    }

    let mut amounts = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = PageRequest::parse(Some(4), token.as_deref()).expect("page request");
        let page = t.bank.list_entries(ann, from.id, page).await.expect("page");
        amounts.extend(page.items.iter().map(|e| e.amount));
        token = page.next_page_token;
        if token.is_none() {
            break;
        }
    }
    // Six transfers out, newest first, then the opening deposit.
    assert_eq!(amounts, [-6, -5, -4, -3, -2, -1, 100]);
}

#[tokio::test]
async fn idempotency_keys_are_kept_48_hours_then_expired() {
    let t = TestBank::new().await;
    let ann = t.customer("ann").await;
    sqlx::query(
        "INSERT INTO idempotency_keys (user_id, key, request_fingerprint, created_at)
         VALUES ($1, 'old', '\\x00', now() - interval '49 hours'), ($1, 'day-old', '\\x00', now() - interval '25 hours')",
    )
    .bind(ann.user_id)
    .execute(&t.db.pool)
    .await
    .expect("insert");
    assert_eq!(t.bank.expire_idempotency_keys().await.expect("expire"), 1);
    let left: Vec<String> = sqlx::query_scalar("SELECT key FROM idempotency_keys")
        .fetch_all(&t.db.pool)
        .await
        .expect("keys");
    assert_eq!(
        left,
        ["day-old"],
        "keys younger than 48 hours stay (the contract promises 24)"
    );
}

#[tokio::test]
async fn a_batch_decides_each_transfer_on_its_own_in_order() {
    use streambank_store::EventMeta;
    use streambank_store::ledger::{NewTransfer, TransferRejection, transfer_batch};

    let t = TestBank::new().await;
    let ann = t.customer("ann").await;
    let bob = t.customer("bob").await;
    let carol = t.customer("carol").await;
    let a = t.account(ann, "USD", 100).await.id;
    let b = t.account(bob, "USD", 0).await.id;
    let c = t.account(carol, "EUR", 0).await.id;
    let transfer = |from: i64, to: i64, amount: i64, currency: &'static str, caller: i64| {
        (
            NewTransfer {
                from_account_id: from,
                to_account_id: to,
                amount,
                currency,
                caller_id: caller,
            },
            EventMeta::new(None),
        )
    };
    let batch = [
        transfer(a, b, 60, "USD", ann.user_id),
        transfer(a, b, 60, "USD", ann.user_id), // only 40 left after the first
        transfer(b, a, 10, "USD", bob.user_id), // sees the 60 the first one brought
        transfer(a, b, 30, "USD", ann.user_id), // sees the 10 the third one brought back
        transfer(a, c, 1, "USD", ann.user_id),
        transfer(999_999, b, 1, "USD", ann.user_id),
        transfer(b, a, 1, "USD", ann.user_id),
    ];
    let before = t.db.count("outbox").await;
    let outcomes = transfer_batch(&t.db.pool, &batch).await.expect("batch");
    let balances: Vec<Option<(i64, i64)>> = outcomes
        .iter()
        .map(|o| {
            o.as_ref()
                .ok()
                .map(|r| (r.from_account.balance, r.to_account.balance))
        })
        .collect();
    assert_eq!(
        balances,
        [
            Some((40, 60)),
            None,
            Some((50, 50)),
            Some((20, 80)),
            None,
            None,
            None
        ]
    );
    assert_eq!(
        outcomes[1].as_ref().err(),
        Some(&TransferRejection::InsufficientFunds { balance: 40 })
    );
    assert_eq!(
        outcomes[4].as_ref().err(),
        Some(&TransferRejection::DestinationCurrencyMismatch)
    );
    assert_eq!(
        outcomes[5].as_ref().err(),
        Some(&TransferRejection::SourceNotFound)
    );
    assert_eq!(
        outcomes[6].as_ref().err(),
        Some(&TransferRejection::SourceNotOwned)
    );
    assert_eq!(t.db.count("transfers").await, 3);
    assert_eq!(t.db.count("outbox").await, before + 3);
    let (a_now, b_now): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT balance FROM accounts WHERE id = $1), (SELECT balance FROM accounts WHERE id = $2)",
    )
    .bind(a)
    .bind(b)
    .fetch_one(&t.db.pool)
    .await
    .expect("balances");
    assert_eq!((a_now, b_now), (20, 80));
    // The events are each transfer's own, with the ids the batch was given.
    for (i, outcome) in outcomes.iter().enumerate() {
        let events: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE id = $1")
            .bind(batch[i].1.id)
            .fetch_one(&t.db.pool)
            .await
            .expect("count");
        assert_eq!(events, i64::from(outcome.is_ok()), "transfer {i}");
    }
}

#[tokio::test]
async fn the_batch_function_refuses_waves_in_which_two_transfers_share_an_account() {
    let t = TestBank::new().await;
    let ann = t.customer("ann").await;
    let bob = t.customer("bob").await;
    let carol = t.customer("carol").await;
    let a = t.account(ann, "USD", 100).await.id;
    let b = t.account(bob, "USD", 100).await.id;
    let c = t.account(carol, "USD", 0).await.id;
    struct Case {
        from: [i64; 2],
        to: [i64; 2],
        waves: [i32; 2],
        accepted: bool,
    }
    let callers = [ann.user_id, bob.user_id];
    // Both credit c in wave 1; both touch b in wave 1 (one credits it, the other debits it); and the
    // same pairs numbered correctly, which must pass.
    let cases = [
        Case {
            from: [a, b],
            to: [c, c],
            waves: [1, 1],
            accepted: false,
        },
        Case {
            from: [a, b],
            to: [b, c],
            waves: [1, 1],
            accepted: false,
        },
        Case {
            from: [a, b],
            to: [b, c],
            waves: [1, 2],
            accepted: true,
        },
    ];
    for Case {
        from,
        to,
        waves,
        accepted,
    } in cases
    {
        let before = (
            t.db.count("transfers").await,
            t.db.count("entries").await,
            t.db.count("outbox").await,
        );
        let ids: Vec<uuid::Uuid> = from.iter().map(|_| uuid::Uuid::new_v4()).collect();
        let answer: Result<Vec<(i64, Option<i64>)>, sqlx::Error> = sqlx::query_as(
            "SELECT r_ord, r_transfer_id FROM transfer_batch($1, $2, $3, $4, $5, $6, $7, $8, \
             'transfer', 'transfer.completed') ORDER BY r_ord",
        )
        .bind(from)
        .bind(to)
        .bind([10_i64; 2])
        .bind(callers)
        .bind(["USD"; 2])
        .bind(&ids)
        .bind([""; 2])
        .bind(waves)
        .fetch_all(&t.db.pool)
        .await;
        let after = (
            t.db.count("transfers").await,
            t.db.count("entries").await,
            t.db.count("outbox").await,
        );
        if accepted {
            let rows = answer.expect("correctly numbered waves are accepted");
            assert!(rows.iter().all(|(_, id)| id.is_some()), "{rows:?}");
            assert_eq!(after, (before.0 + 2, before.1 + 4, before.2 + 2));
        } else {
            let error = answer.expect_err("waves that share an account are refused");
            assert!(
                error.to_string().contains("share an account"),
                "the refusal says why: {error}"
            );
            assert_eq!(after, before, "a refused batch writes nothing");
        }
    }
    let balances: Vec<i64> =
        sqlx::query_scalar("SELECT balance FROM accounts WHERE id = ANY($1) ORDER BY id")
            .bind([a, b, c])
            .fetch_all(&t.db.pool)
            .await
            .expect("balances");
    assert_eq!(balances, [90, 100, 10]);
}
