//! `bankctl` as an operator runs it: the real binary against the real Postgres.

use streambank_testkit::{TestDb, server_url_with_database};

use crate::common::{bankctl, bankctl_with, stderr, stdout};

#[tokio::test]
async fn migrate_creates_the_database_and_is_idempotent() {
    let name = TestDb::unique_name();
    let url = server_url_with_database(&name);

    let first = bankctl(&url, &["migrate"]);
    assert!(
        first.status.success(),
        "first migrate failed: {}",
        stderr(&first)
    );
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations"))
        .expect("migrations folder")
        .count();
    assert_eq!(
        stdout(&first),
        format!(
            "database {name} created: {migrations} migration(s) applied now, {migrations} in all"
        )
    );

    let second = bankctl(&url, &["migrate"]);
    assert!(
        second.status.success(),
        "second migrate failed: {}",
        stderr(&second)
    );
    assert!(
        stdout(&second).contains("ready: 0 migration(s) applied now"),
        "{}",
        stdout(&second)
    );

    let admin = TestDb::new().await;
    let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_one(&admin.pool)
        .await
        .expect("query");
    assert_eq!(tables, 1);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&admin.pool)
    .await
    .expect("drop");
}

#[test]
fn migrate_says_in_one_line_when_postgres_is_unreachable() {
    let output = bankctl("postgres://postgres@127.0.0.1:1/streambank", &["migrate"]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert_eq!(err.lines().count(), 1, "one line, got: {err}");
    assert!(
        err.starts_with("bankctl: cannot reach Postgres at 127.0.0.1:1"),
        "{err}"
    );
}

#[tokio::test]
async fn an_operator_creates_the_first_banker_and_grants_roles() {
    let db = TestDb::new().await;
    let create = bankctl(
        &db.url,
        &[
            "users",
            "create",
            "--username",
            "first_banker",
            "--email",
            "banker@example.com",
            "--full-name",
            "First Banker",
            "--password",
            "a long passphrase",
            "--role",
            "banker",
            "--verified",
        ],
    );
    assert!(create.status.success(), "{}", stderr(&create));
    assert!(
        stdout(&create).starts_with("created user first_banker"),
        "{}",
        stdout(&create)
    );

    let (role, verified): (String, bool) = sqlx::query_as(
        "SELECT role, email_verified_at IS NOT NULL FROM users WHERE username = 'first_banker'",
    )
    .fetch_one(&db.pool)
    .await
    .expect("query");
    assert_eq!((role.as_str(), verified), ("banker", true));

    let invalid = bankctl(
        &db.url,
        &[
            "users",
            "create",
            "--username",
            "X",
            "--email",
            "x",
            "--full-name",
            "X",
            "--password",
            "short",
        ],
    );
    assert!(!invalid.status.success());
    let err = stderr(&invalid);
    for field in ["username", "email", "password"] {
        assert!(err.contains(field), "{field} not reported in: {err}");
    }

    let customer = bankctl(
        &db.url,
        &[
            "users",
            "create",
            "--username",
            "cust",
            "--email",
            "c@example.com",
            "--full-name",
            "C",
            "--password",
            "a long passphrase",
        ],
    );
    assert!(customer.status.success(), "{}", stderr(&customer));
    let grant = bankctl(
        &db.url,
        &[
            "users",
            "grant-role",
            "--username",
            "cust",
            "--role",
            "banker",
        ],
    );
    assert_eq!(stdout(&grant), "user cust now has role banker");
    let missing = bankctl(
        &db.url,
        &[
            "users",
            "grant-role",
            "--username",
            "nobody",
            "--role",
            "banker",
        ],
    );
    assert!(!missing.status.success());
    assert_eq!(stderr(&missing), "bankctl: the user was not found");
}

#[tokio::test]
async fn migrate_at_info_prints_no_postgres_notices_and_no_colour_codes() {
    let name = TestDb::unique_name();
    let url = server_url_with_database(&name);
    for run in ["first", "second"] {
        let output = bankctl_with(&url, &["migrate"], &[("RUST_LOG", "info")]);
        assert!(output.status.success(), "{run}: {}", stderr(&output));
        let err = stderr(&output);
        // The second run's `CREATE TABLE IF NOT EXISTS _sqlx_migrations` makes Postgres say
        // "relation ... already exists, skipping": nothing to act on, so not at info.
        assert!(!err.contains("already exists"), "{run}: {err}");
        assert!(
            !err.contains('\u{1b}'),
            "{run}: colour codes into a pipe: {err}"
        );
    }
    let admin = TestDb::new().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&admin.pool)
    .await
    .expect("drop");
}
