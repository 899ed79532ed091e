//! StreamBank's domain types.
//!
//! Parse, don't validate: every value that crosses into the bank from outside (a username, an email
//! address, an amount of money, a page token) is turned into a type whose constructor is the only way in.
//! Code past the edge holds a `Username` or an `Amount`, never a string or an integer it has to re-check.
//! This crate does no I/O and knows no transport.
//!
//! # Layout
//!
//! - [`validation`]: [`FieldViolation`] and [`Violations`], how bad input is reported: every bad field at
//!   once, by name.
//! - [`money`]: [`Currency`] and [`Amount`] (positive minor units); money is never a float.
//! - [`user`]: [`Username`], [`Email`], [`FullName`], [`Password`] and [`Role`].
//! - [`paging`]: [`PageRequest`] and the opaque page token used for keyset paging.
//! - [`records`]: what the bank has written, as read back ([`Account`], [`Entry`], [`Transfer`],
//!   [`Deposit`], [`Notification`]).

pub mod money;
pub mod paging;
pub mod records;
pub mod user;
pub mod validation;

pub use money::{Amount, Currency};
pub use paging::{Page, PageRequest};
pub use records::{Account, Deposit, Entry, Notification, Transfer};
pub use user::{Email, FullName, Password, Role, Username};
pub use validation::{FieldViolation, Violations};
