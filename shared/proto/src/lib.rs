//! StreamBank's gRPC API (package `streambank.v1`), generated from `proto/` at build time.
//!
//! # Layout
//!
//! - [`v1`]: the messages, the four services' server traits (`user_service_server::UserService`, ...)
//!   and their clients.
//! - [`FILE_DESCRIPTOR_SET`] and [`descriptor_pool`]: the encoded descriptors, with the
//!   `google.api.http` rules kept. gRPC reflection serves these bytes, and the HTTP/JSON gateway builds
//!   its routes and its OpenAPI document from them.
//! - [`HTTP_SUCCESS_STATUS`], [`IDEMPOTENCY_KEY`]: the names of StreamBank's own method options
//!   (`streambank/v1/http.proto`).

#![allow(missing_debug_implementations)]

/// The generated code. Proto comments become its doc comments.
#[allow(clippy::all, clippy::pedantic, rustdoc::all)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/streambank.v1.rs"));
}

/// `google.api.HttpRule` and friends (the gateway reads them through [`descriptor_pool`]).
#[allow(clippy::all, clippy::pedantic, rustdoc::all)]
pub mod google_api {
    include!(concat!(env!("OUT_DIR"), "/google.api.rs"));
}

/// Every file of the API and its imports, as protox encoded them (custom options intact).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/streambank_descriptor.bin"));

/// The full name of the method option that sets a call's HTTP status through the gateway.
pub const HTTP_SUCCESS_STATUS: &str = "streambank.v1.http_success_status";
/// The method option saying that a method honours `idempotency-key` (`streambank/v1/http.proto`).
pub const IDEMPOTENCY_KEY: &str = "streambank.v1.idempotency_key";

/// The services of the API, by full name, in the order the documentation lists them.
pub const SERVICES: &[&str] = &[
    "streambank.v1.UserService",
    "streambank.v1.AccountService",
    "streambank.v1.TransferService",
    "streambank.v1.NotificationService",
];

/// The descriptors, decoded for reflection.
pub fn descriptor_pool() -> prost_reflect::DescriptorPool {
    prost_reflect::DescriptorPool::decode(FILE_DESCRIPTOR_SET)
        .expect("the descriptor set compiled by build.rs decodes")
}

#[cfg(test)]
mod tests {
    use prost_reflect::Value;

    use super::*;

    #[test]
    fn every_method_keeps_its_http_rule() {
        let pool = descriptor_pool();
        let http = pool
            .get_extension_by_name("google.api.http")
            .expect("google.api.http is in the pool");
        let mut methods = 0;
        for service in SERVICES {
            let service = pool.get_service_by_name(service).expect("service");
            for method in service.methods() {
                let options = method.options();
                assert!(
                    options.has_extension(&http),
                    "{} has no google.api.http rule",
                    method.full_name()
                );
                methods += 1;
            }
        }
        assert_eq!(methods, 15);
        let get_account = pool
            .get_service_by_name("streambank.v1.AccountService")
            .and_then(|s| s.methods().find(|m| m.name() == "GetAccount"))
            .expect("GetAccount");
        let options = get_account.options();
        let rule = options.get_extension(&http);
        let Value::Message(rule) = rule.as_ref() else {
            panic!("HttpRule is a message");
        };
        assert_eq!(
            rule.get_field_by_name("get").as_deref(),
            Some(&Value::String("/v1/accounts/{id}".into()))
        );
    }
}
