//! The gateway's OpenAPI document: what `streambank-gateway` generates from the descriptors, with
//! StreamBank's public methods ([`crate::contract::PUBLIC_METHODS`]) and the constraints the server
//! enforces ([`crate::contract::constraints`]). The committed copy `docs/openapi/gateway.json` is
//! compared with it by a test.

use prost_reflect::DescriptorPool;
use serde_json::Value;
use streambank_gateway::RouteTable;

use crate::contract::{PUBLIC_METHODS, constraints};

/// The document for the services in `pool`, as committed in `docs/openapi/gateway.json`.
pub fn document_json(pool: &DescriptorPool) -> anyhow::Result<String> {
    let routes = RouteTable::from_pool(pool)?;
    Ok(serde_json::to_string_pretty(&document(pool, &routes))? + "\n")
}

/// The document for `routes`.
pub fn document(pool: &DescriptorPool, routes: &RouteTable) -> Value {
    let mut document = streambank_gateway::openapi::document(pool, routes, PUBLIC_METHODS);
    // The constraints the server enforces on ids, amounts, currencies and page sizes (errors are
    // documented by each operation's `default` answer).
    constraints::state_constraints(&mut document);
    document
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn doc() -> Value {
        let pool = streambank_proto::descriptor_pool();
        let routes = RouteTable::from_pool(&pool).expect("routes");
        document(&pool, &routes)
    }

    fn deposit_and_others_have_no_idempotency_header(doc: &Value) -> bool {
        let Some(paths) = doc["paths"].as_object() else {
            return false;
        };
        paths.iter().all(|(path, item)| {
            item.as_object().is_some_and(|ops| {
                ops.iter().all(|(verb, op)| {
                    let has = op["parameters"]
                        .as_array()
                        .is_some_and(|ps| ps.iter().any(|p| p["name"] == "Idempotency-Key"));
                    has == (path == "/v1/transfers" && verb == "post")
                })
            })
        })
    }

    #[test]
    fn every_route_is_documented_with_its_parameters_and_schemas() {
        let doc = doc();
        assert_eq!(doc["openapi"], "3.1.0");
        let entries = &doc["paths"]["/v1/accounts/{id}/entries"]["get"];
        assert_eq!(entries["operationId"], "AccountService_ListEntries");
        assert_eq!(
            entries["description"],
            "An account's statement, newest first."
        );
        let params = entries["parameters"].as_array().expect("parameters");
        assert_eq!(params[0]["name"], "id");
        assert_eq!(params[0]["in"], "path");
        // Ids are positive: the constraint the server enforces is stated.
        assert_eq!(
            params[0]["schema"],
            json!({"type": "integer", "format": "int64", "minimum": 1})
        );
        assert_eq!(params[1]["name"], "page_size");
        assert_eq!(params[1]["in"], "query");
        assert_eq!(params[1]["description"], "1 to 100; default 20.");
        assert_eq!(
            params[1]["schema"],
            json!({"type": "integer", "format": "int64", "minimum": 1, "maximum": 100}),
            "a query parameter is never null"
        );
        assert_eq!(entries["security"], json!([{"bearer": []}]));

        // The idempotency option documents the header on the methods that honour it, and only there.
        let transfer = &doc["paths"]["/v1/transfers"]["post"];
        assert_eq!(
            transfer["parameters"][0]["name"], "Idempotency-Key",
            "{transfer}"
        );
        assert_eq!(transfer["parameters"][0]["in"], "header");
        assert!(
            deposit_and_others_have_no_idempotency_header(&doc),
            "only CreateTransfer takes the header"
        );

        let deposit = &doc["paths"]["/v1/accounts/{id}/deposits"]["post"];
        assert!(deposit["responses"]["201"].is_object());
        let body = &deposit["requestBody"]["content"]["application/json"]["schema"];
        assert!(body["properties"]["amount"].is_object());
        assert!(body["properties"]["id"].is_null(), "the path binds id");

        let logout = &doc["paths"]["/v1/sessions/current"]["delete"];
        assert!(logout["responses"]["204"]["content"].is_null());

        for public in ["/v1/users", "/v1/sessions", "/v1/sessions/refresh"] {
            assert!(
                doc["paths"][public]["post"]["security"].is_null(),
                "{public} is public"
            );
        }
        assert!(doc["paths"]["/v1/users/verify-email"]["get"]["security"].is_null());

        let entry = &doc["components"]["schemas"]["Entry"];
        assert_eq!(
            entry["properties"]["created_at"],
            json!({"type": "string", "format": "date-time"})
        );
        assert_eq!(
            entry["properties"]["transfer_id"]["type"],
            json!(["integer", "null"])
        );
        assert_eq!(
            entry["required"],
            json!(["id", "account_id", "amount", "created_at"])
        );
        assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
        assert!(doc["components"]["schemas"]["Empty"].is_null());
        assert!(
            doc["components"]["schemas"]["DepositRequest"].is_null(),
            "the deposit body is inline, without the path's id"
        );
    }
}
