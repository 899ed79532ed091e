//! Telling database errors apart by their SQLSTATE and constraint name, never by parsing messages.

/// The name of the constraint (or unique index) a statement violated, if that is why it failed.
pub fn constraint_name(err: &sqlx::Error) -> Option<&str> {
    match err {
        sqlx::Error::Database(db) => db.constraint(),
        _ => None,
    }
}

/// True for failures that a retry of the same statement can cure: serialization failures (40001) and
/// deadlocks (40P01). The ledger locks rows in one global order, so neither should happen; the service
/// still retries them a bounded number of times rather than hand them to a caller.
pub fn is_retryable(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40001" | "40P01")))
}

/// True for failures of the connection rather than of the statement: the server is unreachable, went
/// away, or ended this session (`pg_terminate_backend` is 57P01), or the pool had no connection to give.
/// Such a statement never reached the point of committing unless it was the commit itself, so what is
/// safe to run again depends on the caller.
pub fn is_connection_error(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}
