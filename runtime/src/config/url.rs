//! `NATS_URL`: a list of server URLs, any of which may carry credentials
//! (`nats://user:password@host`, `nats://token@host`). The credentials are
//! taken out into [`Auth`] and the URLs kept without them, so that no
//! server address jetwire or async-nats shows, logs or connects with holds
//! a secret.

use crate::config::Auth;
use crate::error::Error;

/// `memory://`: the app in process, no server.
pub(crate) fn is_memory(url: &str) -> bool {
    url.trim().eq_ignore_ascii_case("memory://")
}

/// The URL list split into entries. A comma starts a new entry only where
/// what follows it starts a URL (`scheme://`); in a list with no scheme at
/// all, where the entry so far has its host (no `@` is still to come in
/// it): so a password may hold a raw `,` in either kind of list, and no
/// part of one is ever taken for a server. Percent-encoding (`%2C`)
/// works in every list.
pub(crate) fn entries(list: &str) -> Vec<&str> {
    let has_scheme = list.contains("://");
    let mut out = Vec::new();
    let mut start = 0;
    for (i, _) in list.match_indices(',') {
        let rest = list[i + 1..].trim_start();
        let ends = if has_scheme {
            starts_url(rest)
        } else {
            // `svc:pa,ss@h`: the entry's credentials go on past the comma
            // when it has no `@` yet and the next piece has one.
            let so_far = &list[start..i];
            let next = rest.split(',').next().unwrap_or_default();
            so_far.contains('@') || !next.contains('@')
        };
        if ends {
            out.push(&list[start..i]);
            start = i + 1;
        }
    }
    out.push(&list[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect()
}

fn starts_url(s: &str) -> bool {
    match s.find("://") {
        Some(i) => {
            i > 0
                && s[..i]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.')
        }
        None => false,
    }
}

/// One entry split into its credentials (still percent-encoded) and the
/// URL without them. The credentials end at the last `@` before the host.
fn split_entry(entry: &str) -> (Option<&str>, String) {
    let (scheme, rest) = match entry.find("://") {
        Some(i) => entry.split_at(i + 3),
        None => ("", entry),
    };
    // The host part ends at the first `/`, `?` or `#` after the last `@`.
    match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), format!("{scheme}{}", &rest[at + 1..])),
        None => (None, entry.to_owned()),
    }
}

/// The URL list without credentials, and the credentials it carried.
/// Entries that carry different credentials are an error: jetwire
/// authenticates to every server of a cluster the same way.
pub(crate) fn take_credentials(list: &str) -> Result<(String, Option<Auth>), Error> {
    let mut urls = Vec::new();
    let mut found: Option<Auth> = None;
    for entry in entries(list) {
        let (userinfo, url) = split_entry(entry);
        urls.push(url);
        let Some(userinfo) = userinfo else { continue };
        let auth = match userinfo.split_once(':') {
            Some((user, password)) => Auth::UserPassword {
                user: decode(user),
                password: decode(password),
            },
            None => Auth::Token(decode(userinfo)),
        };
        match &found {
            Some(seen) if !same(seen, &auth) => {
                return Err(Error::Config(
                    "the URLs in NATS_URL carry different credentials: give one set, in NATS_URL or in NATS_USER and NATS_PASSWORD (or NATS_TOKEN)".into(),
                ));
            }
            _ => found = Some(auth),
        }
    }
    Ok((urls.join(","), found))
}

fn same(a: &Auth, b: &Auth) -> bool {
    match (a, b) {
        (Auth::Token(x), Auth::Token(y)) => x == y,
        (
            Auth::UserPassword {
                user: u1,
                password: p1,
            },
            Auth::UserPassword {
                user: u2,
                password: p2,
            },
        ) => u1 == u2 && p1 == p2,
        _ => false,
    }
}

/// Percent-decoding of URL credentials: `%40` is `@`, `%2C` is `,`. A `%`
/// not followed by two hex digits is kept as it is.
fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// The URL list with the credentials of every entry replaced by `***`.
/// For lists that were never cleaned, such as one a user put in a
/// config by hand after building it.
pub(crate) fn redact(list: &str) -> String {
    entries(list)
        .into_iter()
        .map(|entry| match split_entry(entry) {
            (Some(_), url) => match url.find("://") {
                Some(i) => format!("{}***@{}", &url[..i + 3], &url[i + 3..]),
                None => format!("***@{url}"),
            },
            (None, url) => url,
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(list: &str) -> (String, Option<Auth>) {
        take_credentials(list).expect("one set of credentials")
    }

    #[test]
    fn user_and_password_leave_the_url() {
        let (urls, auth) = creds("nats://svc:s3cret@h1:4222");
        assert_eq!(urls, "nats://h1:4222");
        assert!(
            matches!(auth, Some(Auth::UserPassword { ref user, ref password }) if user == "svc" && password == "s3cret")
        );
    }

    #[test]
    fn a_token_leaves_the_url() {
        let (urls, auth) = creds("tls://tok3n@h1:4222,tls://tok3n@h2:4222");
        assert_eq!(urls, "tls://h1:4222,tls://h2:4222");
        assert!(matches!(auth, Some(Auth::Token(ref t)) if t == "tok3n"));
    }

    #[test]
    fn passwords_may_hold_commas_at_signs_and_colons() {
        for (list, want) in [
            ("nats://u:a,b@h:1,nats://h2:2", "a,b"),
            ("nats://u:a@b@h:1", "a@b"),
            ("nats://u:a:b@h:1", "a:b"),
            ("nats://u:a%2Cb%40c%3Ad@h:1", "a,b@c:d"),
            ("nats://u:100%@h:1", "100%"),
            ("nats://u:%+1%zz@h:1", "%+1%zz"),
        ] {
            let (urls, auth) = creds(list);
            assert!(!urls.contains('@'), "{urls}");
            assert!(
                matches!(auth, Some(Auth::UserPassword { ref password, .. }) if password == want),
                "{list}"
            );
        }
        let (urls, _) = creds("nats://u:a,b@h:1,nats://h2:2");
        assert_eq!(urls, "nats://h:1,nats://h2:2");
    }

    #[test]
    fn lists_without_schemes_split_between_servers() {
        assert_eq!(entries("h1:4222, h2:4222"), ["h1:4222", "h2:4222"]);
        let (urls, auth) = creds("u:p@h1:4222,h2:4222");
        assert_eq!(urls, "h1:4222,h2:4222");
        assert!(matches!(auth, Some(Auth::UserPassword { .. })));
        // A raw comma in a password: no piece of it becomes a server.
        let (urls, auth) = creds("svc:pa,ss@h:4222");
        assert_eq!(urls, "h:4222");
        match auth {
            Some(Auth::UserPassword { user, password }) => {
                assert_eq!((user.as_str(), password.as_str()), ("svc", "pa,ss"));
            }
            other => panic!("{other:?}"),
        }
        let (urls, _) = creds("svc:pa,ss@h1:4222,svc:pa,ss@h2:4222");
        assert_eq!(urls, "h1:4222,h2:4222");
    }

    #[test]
    fn different_credentials_per_server_are_refused() {
        let err = take_credentials("nats://a:1@h1,nats://b:2@h2").expect_err("two sets");
        assert!(err.to_string().contains("NATS_USER"), "{err}");
    }

    #[test]
    fn redaction_hides_every_credential() {
        assert_eq!(
            redact("nats://u:p@h:1,nats://h2"),
            "nats://***@h:1,nats://h2"
        );
        assert_eq!(redact("nats://u:a,b@h:1"), "nats://***@h:1");
        assert_eq!(redact("tok@h3"), "***@h3");
    }
}
