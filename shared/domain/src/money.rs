//! Money: a positive `i64` count of minor units (cents) and an ISO 4217 currency. No floats anywhere.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The currencies StreamBank keeps accounts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Currency {
    #[serde(rename = "USD")]
    Usd,
    #[serde(rename = "EUR")]
    Eur,
    #[serde(rename = "CAD")]
    Cad,
}

impl Currency {
    pub const ALL: [Currency; 3] = [Currency::Usd, Currency::Eur, Currency::Cad];

    /// The ISO 4217 code, as stored in Postgres and sent on the wire.
    pub fn code(self) -> &'static str {
        match self {
            Currency::Usd => "USD",
            Currency::Eur => "EUR",
            Currency::Cad => "CAD",
        }
    }

    /// Parses a request's currency; the message lists what is accepted.
    pub fn parse(code: &str) -> Result<Self, String> {
        code.parse()
    }
}

impl FromStr for Currency {
    type Err = String;

    fn from_str(code: &str) -> Result<Self, Self::Err> {
        Currency::ALL
            .into_iter()
            .find(|c| c.code() == code)
            .ok_or_else(|| "must be one of USD, EUR, CAD".to_owned())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A strictly positive amount of minor units. Deposits and transfers move an `Amount`; the signed
/// amounts of ledger entries are derived from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Amount(i64);

impl Amount {
    pub fn parse(minor_units: i64) -> Result<Self, String> {
        if minor_units > 0 {
            Ok(Self(minor_units))
        } else {
            Err("must be a positive number of minor units (cents)".to_owned())
        }
    }

    pub fn minor_units(self) -> i64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_round_trips_and_rejects_unknown_codes() {
        for currency in Currency::ALL {
            assert_eq!(Currency::parse(currency.code()), Ok(currency));
        }
        assert!(Currency::parse("usd").is_err());
        assert!(Currency::parse("GBP").is_err());
        assert!(Currency::parse("").is_err());
    }

    #[test]
    fn amount_is_strictly_positive() {
        assert_eq!(Amount::parse(1).map(Amount::minor_units), Ok(1));
        assert_eq!(
            Amount::parse(i64::MAX).map(Amount::minor_units),
            Ok(i64::MAX)
        );
        assert!(Amount::parse(0).is_err());
        assert!(Amount::parse(-5).is_err());
        assert!(Amount::parse(i64::MIN).is_err());
    }
}
