//! `bankctl demo` against live processes: the API, the relay and the worker (which mails the
//! verification links to maildev, whose API the demo reads them from), run twice on one database.

use streambank_testkit::TestDb;
use streambank_testkit::process::Stack;

use crate::common::bankctl_ok;

fn demo(stack: &Stack, database_url: &str) -> String {
    let mail_url = streambank_testkit::maildev::url();
    let args: &[&str] = &[
        "demo",
        "--api-url",
        &stack.rest_base,
        "--mail-url",
        &mail_url,
        "--mail-wait-secs",
        "30",
    ];
    bankctl_ok(
        database_url,
        args,
        &[("STREAM_PREFIX", stack.stream_prefix.as_str())],
    )
}

#[tokio::test]
async fn the_demo_makes_a_transfer_over_the_api_and_can_run_again() {
    let db = TestDb::new().await;
    let mut stack = Stack::start(&db.url, &[]).await;

    let first = demo(&stack, &db.url);
    for expected in [
        "1. banker banker_",
        "2. POST /v1/users -> customer ann_",
        "2. POST /v1/users -> customer bob_",
        "3. POST /v1/sessions",
        "4. POST /v1/accounts -> EUR account",
        "/deposits (as banker_",
        "-> balance 100.00 EUR",
        "5. POST /v1/transfers",
        "now 75.00 EUR",
        "now 25.00 EUR",
        "export ANN_TOKEN=",
        "redis-cli XRANGE ",
        "/trace/",
        "demo done: trace id ",
    ] {
        assert!(first.contains(expected), "no {expected:?} in:\n{first}");
    }
    // The addresses were verified with the emailed links, as a person would (the worker and maildev
    // are running here), not behind the API's back.
    assert_eq!(
        first.matches("its link answered 200 OK").count(),
        2,
        "{first}"
    );

    // Again, on the same database: new names, a second transfer.
    let second = demo(&stack, &db.url);
    assert!(second.contains("demo done"), "{second}");
    stack.assert_running();
    let (users, transfers): (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM transfers)")
            .fetch_one(&db.pool)
            .await
            .expect("count");
    assert_eq!((users, transfers), (6, 2));
}
