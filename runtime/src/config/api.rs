//! Which JetStream the app uses: the connected server's own, another
//! domain's (a leaf node's, a hub's), or one an account imports under an
//! API prefix of its own.

use async_nats::jetstream;
use jetwire_grammar::subject;

use crate::config::Config;
use crate::error::Error;

/// The JetStream API's subject prefix when neither a domain nor a prefix
/// is set.
pub(crate) const DEFAULT_API: &str = "$JS.API";

impl Config {
    /// The subject prefix of every JetStream API request jetwire makes:
    /// `$JS.API`, `$JS.<domain>.API` for [`Config::jetstream_domain`], or
    /// [`Config::jetstream_api_prefix`]. Streams, durables and buckets
    /// live in that JetStream; messages are published on their subjects
    /// as usual, and reach the streams wherever the servers carry them.
    ///
    /// ```
    /// let config = jetwire::Config::builder().jetstream_domain("leaf").build().unwrap();
    /// assert_eq!(config.jetstream_api(), "$JS.leaf.API");
    /// assert_eq!(jetwire::Config::default().jetstream_api(), "$JS.API");
    /// ```
    pub fn jetstream_api(&self) -> String {
        fn set(v: &Option<String>) -> Option<&str> {
            v.as_deref().map(str::trim).filter(|v| !v.is_empty())
        }
        match (set(&self.jetstream_domain), set(&self.jetstream_api_prefix)) {
            (Some(domain), _) => format!("$JS.{domain}.API"),
            (None, Some(prefix)) => prefix.to_owned(),
            (None, None) => DEFAULT_API.to_owned(),
        }
    }

    /// A JetStream context on `client` for [`Config::jetstream_api`].
    pub(crate) fn jetstream(&self, client: async_nats::Client) -> jetstream::Context {
        jetstream::with_prefix(client, &self.jetstream_api())
    }

    /// The subject a key-value put of `bucket` goes to, up to the key: the
    /// bucket's own subjects on the default API, else through the API
    /// prefix, which the server maps back onto them (so a put reaches a
    /// bucket in another domain, where `$KV.>` does not cross).
    pub(crate) fn kv_put_prefix(&self, bucket: &str) -> String {
        let api = self.jetstream_api();
        if api == DEFAULT_API {
            format!("$KV.{bucket}.")
        } else {
            format!("{api}.$KV.{bucket}.")
        }
    }

    /// Fails on a domain that is not one subject token, an API prefix that
    /// is not a subject, or both set.
    pub(crate) fn check_jetstream_api(&self) -> Result<(), Error> {
        if let Some(domain) = &self.jetstream_domain
            && (domain.is_empty() || !domain.chars().all(subject::is_token_char))
        {
            return Err(Error::Config(format!(
                "NATS_JS_DOMAIN={domain:?} is not a JetStream domain: write the domain name the server's `jetstream {{ domain: ... }}` sets, letters, digits, `-` and `_`, e.g. NATS_JS_DOMAIN=leaf"
            )));
        }
        if let Some(prefix) = &self.jetstream_api_prefix {
            subject::check(prefix, subject::Usage::Publish).map_err(|e| {
                Error::Config(format!(
                    "NATS_JS_API_PREFIX={prefix:?}: {e}; write the prefix the account imports JetStream under, e.g. JS.hub.API"
                ))
            })?;
            if self.jetstream_domain.is_some() {
                return Err(Error::Config(
                    "NATS_JS_DOMAIN and NATS_JS_API_PREFIX are both set: a domain stands for the prefix $JS.<domain>.API, so set one".into(),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_follows_the_domain_or_the_prefix() {
        let mut c = Config::default();
        assert_eq!(c.jetstream_api(), "$JS.API");
        assert_eq!(c.kv_put_prefix("B"), "$KV.B.");
        c.jetstream_domain = Some("leaf".into());
        assert_eq!(c.jetstream_api(), "$JS.leaf.API");
        assert_eq!(c.kv_put_prefix("B"), "$JS.leaf.API.$KV.B.");
        c.jetstream_domain = None;
        c.jetstream_api_prefix = Some("JS.hub.API".into());
        assert_eq!(c.jetstream_api(), "JS.hub.API");
        c.check_jetstream_api().expect("a prefix alone");
    }

    #[test]
    fn a_bad_domain_or_prefix_is_named() {
        for domain in ["", "a.b", "a b", "a*"] {
            let c = Config {
                jetstream_domain: Some(domain.into()),
                ..Config::default()
            };
            let e = c.check_jetstream_api().expect_err(domain).to_string();
            assert!(e.contains("NATS_JS_DOMAIN"), "{e}");
        }
        let c = Config {
            jetstream_api_prefix: Some("JS.>".into()),
            ..Config::default()
        };
        let e = c.check_jetstream_api().expect_err("wildcard").to_string();
        assert!(e.contains("NATS_JS_API_PREFIX"), "{e}");
        let both = Config {
            jetstream_domain: Some("leaf".into()),
            jetstream_api_prefix: Some("JS.hub.API".into()),
            ..Config::default()
        };
        let e = both.check_jetstream_api().expect_err("both").to_string();
        assert!(e.contains("set one"), "{e}");
    }
}
