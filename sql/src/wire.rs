//! How rows hold what the tables cannot type: headers as JSON.

/// Headers as stored: a JSON list of `[name, value]`.
pub(crate) fn encode_headers(headers: &jetwire::async_nats::HeaderMap) -> String {
    encode_pairs(&header_pairs(headers))
}

/// Headers as `(name, value)` pairs, sorted by name only, and stable: the
/// values of a repeated header keep their order.
pub(crate) fn header_pairs(headers: &jetwire::async_nats::HeaderMap) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = headers
        .iter()
        .flat_map(|(name, values)| {
            values
                .iter()
                .map(move |v| (name.to_string(), v.as_str().to_owned()))
        })
        .collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    pairs
}

/// Header pairs as stored (already in their order).
pub(crate) fn encode_pairs(pairs: &[(String, String)]) -> String {
    serde_json::to_string(pairs).unwrap_or_else(|_| "[]".to_owned())
}

/// Header pairs from their stored form; `None` if it is not that form.
pub(crate) fn decode_pairs(text: &str) -> Option<Vec<(String, String)>> {
    serde_json::from_str(text).ok()
}

/// Headers to publish; `None` if a name is not a header name.
pub(crate) fn header_map(pairs: &[(String, String)]) -> Option<jetwire::async_nats::HeaderMap> {
    let mut headers = jetwire::async_nats::HeaderMap::new();
    for (name, value) in pairs {
        let name: jetwire::async_nats::HeaderName = name.parse().ok()?;
        headers.append(name, value.as_str());
    }
    Some(headers)
}

/// Headers from their stored form; `None` if it is not that form.
#[cfg(test)]
fn decode_headers(text: &str) -> Option<jetwire::async_nats::HeaderMap> {
    header_map(&decode_pairs(text)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_survive_the_table() {
        let mut h = jetwire::async_nats::HeaderMap::new();
        h.insert("Nats-Msg-Id", "0190-abc");
        h.append("X-Many", "1");
        h.append("X-Many", "2");
        let text = encode_headers(&h);
        let back = decode_headers(&text).expect("decodes");
        assert_eq!(
            back.get("Nats-Msg-Id").map(|v| v.as_str()),
            Some("0190-abc")
        );
        assert_eq!(back.get_all("X-Many").count(), 2);
        let mut order = jetwire::async_nats::HeaderMap::new();
        order.append("X-Many", "2");
        order.append("X-Many", "1");
        let back = decode_headers(&encode_headers(&order)).expect("decodes");
        let values: Vec<&str> = back.get_all("X-Many").map(|v| v.as_str()).collect();
        assert_eq!(values, ["2", "1"], "a repeated header keeps its order");
        assert!(decode_headers("{not a list").is_none());
        assert!(decode_headers(r#"[["bad name", "x"]]"#).is_none());
    }
}
