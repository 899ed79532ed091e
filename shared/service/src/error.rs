//! The service layer's errors: one typed variant per thing that can go wrong, never a string to parse.
//!
//! Each variant knows its [`Code`] (the canonical gRPC status, which REST maps to an HTTP status) and a
//! stable `reason` in UPPER_SNAKE case, so that every transport produces the contract's error shape
//! from the same place.

use streambank_domain::FieldViolation;

/// Transport-neutral error classes: the canonical gRPC codes the contract uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    InvalidArgument,
    Unauthenticated,
    PermissionDenied,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    ResourceExhausted,
    Aborted,
    Unavailable,
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A field the request could not carry at all: a missing required id, an id that is not positive.
    /// Answered like a body or path the transport could not read.
    #[error("the request could not be read")]
    Malformed(Vec<FieldViolation>),
    #[error("the request has invalid fields")]
    Validation(Vec<FieldViolation>),
    #[error("the amount must be a positive number of minor units")]
    InvalidAmount(Vec<FieldViolation>),
    #[error("a transfer needs two different accounts")]
    SameAccount,
    #[error("account {0} was not found")]
    AccountNotFound(i64),
    /// The source account exists but is someone else's. Transports answer it exactly like
    /// [`Error::AccountNotFound`], so that other people's account ids are not revealed.
    #[error("account {0} was not found")]
    SourceNotOwned(i64),
    #[error("transfer {0} was not found")]
    TransferNotFound(i64),
    #[error("the user was not found")]
    UserNotFound,
    #[error("the username is already taken")]
    UsernameTaken,
    #[error("the email address is already registered")]
    EmailTaken,
    #[error("the caller already has an account in {currency}")]
    AccountExists { currency: String },
    #[error("only a banker may do this")]
    BankerOnly,
    #[error("the account's currency is {account}, not {requested}")]
    CurrencyMismatch { account: String, requested: String },
    #[error("the source account's balance is too low for this transfer")]
    InsufficientFunds,
    #[error("the balance would exceed the largest amount an account can hold")]
    BalanceLimit,
    /// A transfer's destination is missing, in another currency, or full: one answer for all, so
    /// that a refusal reveals nothing about an account that is not the caller's.
    #[error("the destination account cannot receive this transfer")]
    CannotReceive,
    #[error("the bank is busy; try again")]
    Busy,
    #[error("the username, email or password is wrong")]
    InvalidCredentials,
    #[error("the email address is not verified yet; follow the link in the verification email")]
    EmailNotVerified,
    #[error("the token is missing or invalid")]
    TokenInvalid,
    #[error("the token has expired")]
    TokenExpired,
    #[error("the session has been revoked")]
    TokenRevoked,
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is still being processed")]
    IdempotencyInProgress,
    #[error("the verification link is invalid, used or expired")]
    VerificationInvalid,
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl Error {
    /// The error's class: the canonical gRPC code transports map to their own statuses.
    pub fn code(&self) -> Code {
        self.code_and_reason().0
    }

    /// The stable machine-readable reason of the contract's error body.
    pub fn reason(&self) -> &'static str {
        self.code_and_reason().1
    }

    /// Both, from one table, so that a new variant gets its code and reason side by side.
    fn code_and_reason(&self) -> (Code, &'static str) {
        use Code::*;
        match self {
            Error::Malformed(_) => (InvalidArgument, "MALFORMED_REQUEST"),
            Error::Validation(_) => (InvalidArgument, "VALIDATION_FAILED"),
            Error::InvalidAmount(_) => (InvalidArgument, "INVALID_AMOUNT"),
            Error::SameAccount => (InvalidArgument, "SAME_ACCOUNT"),
            Error::AccountNotFound(_) | Error::SourceNotOwned(_) => (NotFound, "ACCOUNT_NOT_FOUND"),
            Error::TransferNotFound(_) => (NotFound, "TRANSFER_NOT_FOUND"),
            Error::UserNotFound => (NotFound, "USER_NOT_FOUND"),
            Error::UsernameTaken => (AlreadyExists, "USERNAME_TAKEN"),
            Error::EmailTaken => (AlreadyExists, "EMAIL_TAKEN"),
            Error::AccountExists { .. } => (AlreadyExists, "ACCOUNT_EXISTS"),
            Error::BankerOnly => (PermissionDenied, "BANKER_ONLY"),
            Error::CurrencyMismatch { .. } => (FailedPrecondition, "CURRENCY_MISMATCH"),
            Error::InsufficientFunds => (FailedPrecondition, "INSUFFICIENT_FUNDS"),
            Error::BalanceLimit => (FailedPrecondition, "BALANCE_LIMIT"),
            Error::CannotReceive => (FailedPrecondition, "CANNOT_RECEIVE"),
            Error::Busy => (Unavailable, "BUSY"),
            Error::InvalidCredentials => (Unauthenticated, "INVALID_CREDENTIALS"),
            Error::EmailNotVerified => (FailedPrecondition, "EMAIL_NOT_VERIFIED"),
            Error::TokenInvalid => (Unauthenticated, "TOKEN_INVALID"),
            Error::TokenExpired => (Unauthenticated, "TOKEN_EXPIRED"),
            Error::TokenRevoked => (Unauthenticated, "TOKEN_REVOKED"),
            Error::IdempotencyKeyReused => (FailedPrecondition, "IDEMPOTENCY_KEY_REUSED"),
            Error::IdempotencyInProgress => (Aborted, "IDEMPOTENCY_IN_PROGRESS"),
            Error::VerificationInvalid => (FailedPrecondition, "VERIFICATION_INVALID"),
            Error::Internal(_) => (Internal, "INTERNAL"),
        }
    }

    /// The bad fields, for errors about the request's content.
    pub fn violations(&self) -> &[FieldViolation] {
        match self {
            Error::Malformed(v) | Error::Validation(v) | Error::InvalidAmount(v) => v,
            _ => &[],
        }
    }

    /// Wraps an unexpected database failure; its text is logged, never shown to a client.
    pub(crate) fn db(err: sqlx::Error) -> Self {
        Error::Internal(anyhow::Error::new(err).context("database statement failed"))
    }
}

impl Error {
    /// One field the request could not carry.
    pub fn malformed(field: &str, description: &str) -> Self {
        Error::Malformed(vec![FieldViolation {
            field: field.to_owned(),
            description: description.to_owned(),
        }])
    }
}

/// An id is a positive integer, whichever transport it came from (`/v1/accounts/0` and `GetAccount {
/// id: 0 }` are the same mistake).
pub fn positive_id(id: i64, field: &str) -> Result<i64, Error> {
    if id > 0 {
        Ok(id)
    } else {
        Err(Error::malformed(field, "must be a positive integer id"))
    }
}

/// A field every caller must send.
pub fn required<T>(value: Option<T>, field: &str) -> Result<T, Error> {
    value.ok_or_else(|| Error::malformed(field, "is required"))
}

impl From<Vec<FieldViolation>> for Error {
    fn from(violations: Vec<FieldViolation>) -> Self {
        Error::Validation(violations)
    }
}
