//! JWT with HS256 only. The accepted algorithm list is exactly `[HS256]`, so `alg: none`, RS256 with an
//! HMAC key confusion, and every other algorithm fail before any claim is read. No leeway on expiry.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

use crate::{Claims, TokenError, TokenKey, TokenMaker, WireClaims};

pub struct JwtMaker {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtMaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtMaker { key: [redacted], algorithm: HS256 }")
    }
}

impl JwtMaker {
    pub fn new(key: &TokenKey) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.set_required_spec_claims(&["exp", "iat", "sub", "jti"]);
        Self {
            encoding: EncodingKey::from_secret(key.bytes()),
            decoding: DecodingKey::from_secret(key.bytes()),
            validation,
        }
    }
}

impl TokenMaker for JwtMaker {
    fn kind(&self) -> &'static str {
        "jwt"
    }

    fn create(&self, claims: &Claims) -> Result<String, TokenError> {
        let wire = WireClaims::from_claims(claims, |t| t);
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &wire, &self.encoding)
            .map_err(|_| TokenError::Invalid)
    }

    fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let data = jsonwebtoken::decode::<WireClaims<i64>>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        data.claims.into_claims(Some)
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;
    use crate::TokenType;
    use crate::tests::{claims, key};

    #[test]
    fn alg_none_and_other_algorithms_are_refused() {
        let maker = JwtMaker::new(&key(b'a'));
        let token = maker
            .create(&claims(TokenType::Access, 60))
            .expect("create");
        let payload = token.split('.').nth(1).expect("payload");
        for header in [
            r#"{"alg":"none","typ":"JWT"}"#,
            r#"{"alg":"HS512","typ":"JWT"}"#,
            r#"{"alg":"RS256","typ":"JWT"}"#,
        ] {
            let forged = format!("{}.{payload}.", URL_SAFE_NO_PAD.encode(header));
            assert_eq!(maker.verify(&forged), Err(TokenError::Invalid), "{header}");
        }
    }
}
