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
