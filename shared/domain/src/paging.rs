//! Keyset paging. A page token is opaque to clients: it encodes the id of the last row of the previous
//! page, so the next page is an index range scan (`id < $after` or `id > $after`) and never an OFFSET
//! that gets slower, and skips or repeats rows, as the table changes underneath.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

/// A validated request for one page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// How many rows to return (1..=100).
    pub size: i64,
    /// The id of the last row already seen, if this is not the first page.
    pub after: Option<i64>,
}

/// A page of results and the token for the next one (`None` on the last page).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: Option<String>,
}

const TOKEN_VERSION: u8 = 1;

impl PageRequest {
    pub const DEFAULT_SIZE: i64 = 20;
    pub const MAX_SIZE: i64 = 100;

    /// Parses `page_size` and `page_token` as a client sent them.
    pub fn parse(
        size: Option<i64>,
        token: Option<&str>,
    ) -> Result<Self, Vec<(&'static str, String)>> {
        let mut bad = Vec::new();
        let size = size.unwrap_or(Self::DEFAULT_SIZE);
        if !(1..=Self::MAX_SIZE).contains(&size) {
            bad.push((
                "page_size",
                format!("must be between 1 and {}", Self::MAX_SIZE),
            ));
        }
        let after = match token.filter(|t| !t.is_empty()) {
            None => None,
            Some(token) => match decode_token(token) {
                Some(id) => Some(id),
                None => {
                    bad.push((
                        "page_token",
                        "is not a page token this server issued".to_owned(),
                    ));
                    None
                }
            },
        };
        if bad.is_empty() {
            Ok(Self { size, after })
        } else {
            Err(bad)
        }
    }

    /// The first page of the default size.
    pub fn first() -> Self {
        Self {
            size: Self::DEFAULT_SIZE,
            after: None,
        }
    }

    /// How many rows to fetch: one more than the page, to learn whether another page follows.
    pub fn fetch_limit(&self) -> i64 {
        self.size + 1
    }

    /// Cuts the rows fetched with [`fetch_limit`](Self::fetch_limit) into a page.
    pub fn into_page<T>(self, mut rows: Vec<T>, id_of: impl Fn(&T) -> i64) -> Page<T> {
        let more = rows.len() as i64 > self.size;
        rows.truncate(self.size as usize);
        let next_page_token = if more {
            rows.last().map(|r| encode_token(id_of(r)))
        } else {
            None
        };
        Page {
            items: rows,
            next_page_token,
        }
    }
}

fn encode_token(id: i64) -> String {
    let mut bytes = [0u8; 9];
    bytes[0] = TOKEN_VERSION;
    bytes[1..].copy_from_slice(&id.to_be_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

fn decode_token(token: &str) -> Option<i64> {
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    let (version, id) = bytes.split_first()?;
    let id = i64::from_be_bytes(id.try_into().ok()?);
    (*version == TOKEN_VERSION && id > 0).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_rejected() {
        let token = encode_token(42);
        assert_eq!(
            PageRequest::parse(Some(5), Some(&token)),
            Ok(PageRequest {
                size: 5,
                after: Some(42)
            })
        );
        assert_eq!(PageRequest::parse(None, None), Ok(PageRequest::first()));
        let errors =
            PageRequest::parse(Some(0), Some("not-a-token!")).expect_err("both fields are bad");
        assert_eq!(
            errors.iter().map(|(f, _)| *f).collect::<Vec<_>>(),
            ["page_size", "page_token"]
        );
        assert!(PageRequest::parse(Some(101), None).is_err());
        assert!(PageRequest::parse(Some(1), Some(&URL_SAFE_NO_PAD.encode([1u8; 3]))).is_err());
    }

    #[test]
    fn pages_know_whether_more_follow() {
        let request = PageRequest {
            size: 2,
            after: None,
        };
        let page = request.into_page(vec![9, 8, 7], |id| *id);
        assert_eq!(page.items, [9, 8]);
        let next =
            PageRequest::parse(Some(2), page.next_page_token.as_deref()).expect("token parses");
        assert_eq!(next.after, Some(8));
        let last = request.into_page(vec![9, 8], |id| *id);
        assert_eq!(last.next_page_token, None);
    }
}
