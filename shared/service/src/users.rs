//! Users: registration and lookups.

use streambank_domain::{Email, FullName, Password, Role, Username, Violations};
use streambank_store::Timestamp;
use streambank_store::users::{self, NewUser, UserRow};

use crate::{Bank, Error, Result, password};

/// A user as the bank shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub email: String,
    pub full_name: String,
    pub role: Role,
    pub email_verified_at: Option<Timestamp>,
    pub password_changed_at: Timestamp,
    pub created_at: Timestamp,
}

impl TryFrom<UserRow> for User {
    type Error = Error;

    fn try_from(row: UserRow) -> Result<Self> {
        Ok(Self {
            role: row.role.parse().map_err(|e| {
                Error::Internal(anyhow::anyhow!("user {} has an unknown role: {e}", row.id))
            })?,
            id: row.id,
            username: row.username,
            email: row.email,
            full_name: row.full_name,
            email_verified_at: row.email_verified_at,
            password_changed_at: row.password_changed_at,
            created_at: row.created_at,
        })
    }
}

/// A registration as a client sends it, before validation.
#[derive(Debug, Clone, Default)]
pub struct RegisterUser {
    pub username: String,
    pub email: String,
    pub full_name: String,
    pub password: String,
}

/// How an operator's `bankctl users create` differs from a public registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserOptions {
    pub role: Role,
    /// Mark the email address as verified without the emailed link.
    pub verified: bool,
}

impl Default for UserOptions {
    fn default() -> Self {
        Self {
            role: Role::Customer,
            verified: false,
        }
    }
}

struct ValidRegistration {
    username: Username,
    email: Email,
    full_name: FullName,
    password: Password,
}

fn validate(input: &RegisterUser) -> Result<ValidRegistration> {
    let mut v = Violations::new();
    let username = v.check("username", Username::parse(&input.username));
    let email = v.check("email", Email::parse(&input.email));
    let full_name = v.check("full_name", FullName::parse(&input.full_name));
    let password = v.check("password", Password::parse(&input.password));
    match (username, email, full_name, password) {
        (Some(username), Some(email), Some(full_name), Some(password)) => Ok(ValidRegistration {
            username,
            email,
            full_name,
            password,
        }),
        _ => Err(v.finish().err().unwrap_or_default().into()),
    }
}

impl Bank {
    /// Registers a customer with an unverified email address; writes `user.registered`, which makes the
    /// email-verification worker send the link.
    #[tracing::instrument(name = "Register a user", skip_all, fields(username = %input.username))]
    pub async fn register_user(&self, input: RegisterUser) -> Result<User> {
        self.create_user(input, UserOptions::default()).await
    }

    /// Creates a user with a chosen role and verification state: the operator's path (`bankctl users
    /// create`), never reachable from a public API.
    #[tracing::instrument(name = "Create a user", skip_all, fields(username = %input.username, role = %options.role))]
    pub async fn create_user(&self, input: RegisterUser, options: UserOptions) -> Result<User> {
        let valid = validate(&input)?;
        let password_hash = password::hash(&valid.password).await?;
        let new = NewUser {
            username: valid.username.as_str(),
            email: valid.email.as_str(),
            full_name: valid.full_name.as_str(),
            password_hash: &password_hash,
            role: options.role.as_str(),
            verified: options.verified,
        };
        let row = users::insert(&self.pool, new, &Self::event_meta())
            .await
            .map_err(|e| match streambank_store::constraint_name(&e) {
                Some("users_username_key") => Error::UsernameTaken,
                Some("users_email_key") => Error::EmailTaken,
                _ => Error::db(e),
            })?;
        row.try_into()
    }

    #[tracing::instrument(name = "Get a user", skip(self))]
    pub async fn get_user(&self, user_id: i64) -> Result<User> {
        users::get(&self.pool, user_id)
            .await
            .map_err(Error::db)?
            .ok_or(Error::UserNotFound)?
            .try_into()
    }

    /// Gives a user a role (`bankctl users grant-role`).
    #[tracing::instrument(name = "Grant a role", skip(self))]
    pub async fn grant_role(&self, username: &str, role: Role) -> Result<User> {
        users::set_role(&self.pool, username, role.as_str())
            .await
            .map_err(Error::db)?
            .ok_or(Error::UserNotFound)?
            .try_into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_field_is_reported() {
        let input = RegisterUser {
            username: "A".into(),
            email: "nope".into(),
            full_name: String::new(),
            password: "short".into(),
        };
        let Err(Error::Validation(violations)) = validate(&input) else {
            panic!("expected a validation error");
        };
        let fields: Vec<_> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["username", "email", "full_name", "password"]);
    }
}
