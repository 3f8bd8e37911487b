//! The API's own OpenAPI 3 document, served at `/openapi.json` and kept in
//! step with the router by the test below.

/// The document, as written in `openapi.json`.
pub const SPEC: &str = include_str!("openapi.json");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::router::ENDPOINTS;
    use std::collections::BTreeSet;

    /// Every (method, path) of the router is in the spec, and every one of
    /// the spec is routed; HEAD is implied by GET.
    #[test]
    fn spec_and_router_agree() {
        let spec: serde_json::Value = serde_json::from_str(SPEC).expect("valid JSON");
        assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
        let in_spec: BTreeSet<(String, String)> = spec["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, ops)| {
                ops.as_object()
                    .unwrap()
                    .keys()
                    .filter(|k| *k != "parameters")
                    .map(move |method| (method.to_ascii_uppercase(), path.clone()))
            })
            .collect();
        let routed: BTreeSet<(String, String)> = ENDPOINTS
            .iter()
            .flat_map(|(methods, path)| {
                methods
                    .split(", ")
                    .filter(|m| *m != "HEAD")
                    .map(|m| (m.to_owned(), (*path).to_owned()))
            })
            .collect();
        let missing: Vec<_> = routed.difference(&in_spec).collect();
        let extra: Vec<_> = in_spec.difference(&routed).collect();
        assert!(
            missing.is_empty(),
            "routes missing from the spec: {missing:?}"
        );
        assert!(
            extra.is_empty(),
            "spec paths the router does not serve: {extra:?}"
        );
        // Every operation documents its errors as {"detail"}.
        for (path, ops) in spec["paths"].as_object().unwrap() {
            for (method, op) in ops.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                assert!(
                    responses.contains_key("400"),
                    "{method} {path} documents 400"
                );
            }
        }
    }
}
