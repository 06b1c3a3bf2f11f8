//! Auth material for servers the tests configure: a private CA with
//! server and client certificates (one expired, one from a stranger CA),
//! NKeys, and an operator, account and user JWT for a server in operator
//! mode with a memory resolver. Made fresh in a temporary directory for
//! each use; nothing is committed.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};

/// Certificates and keys, as PEM files in a temporary directory.
pub struct Pki {
    dir: tempfile::TempDir,
    /// The CA's key, to grep output for (a secret).
    pub ca_key_pem: String,
    /// The client key's PEM (a secret).
    pub client_key_pem: String,
}

impl Pki {
    /// A CA; a server certificate for 127.0.0.1 and localhost; a client
    /// certificate; an expired server certificate; and a second CA with
    /// a server certificate of its own.
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("temp dir");
        let (ca, ca_key) = new_ca("jetwire test CA");
        let write = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text).expect("write pem")
        };
        write("ca.pem", &ca.pem());
        let (server, server_key) = leaf(&ca, &ca_key, "server", None);
        write("server.pem", &server.pem());
        write("server-key.pem", &server_key.serialize_pem());
        let (client, client_key) = leaf(&ca, &ca_key, "client", None);
        write("client.pem", &client.pem());
        write("client-key.pem", &client_key.serialize_pem());
        let (expired, expired_key) = leaf(&ca, &ca_key, "expired", Some((2001, 2002)));
        write("expired.pem", &expired.pem());
        write("expired-key.pem", &expired_key.serialize_pem());
        let (other_ca, other_key) = new_ca("a stranger's CA");
        write("other-ca.pem", &other_ca.pem());
        let _ = other_key;
        Pki {
            ca_key_pem: ca_key.serialize_pem(),
            client_key_pem: client_key.serialize_pem(),
            dir,
        }
    }

    /// A file of this PKI: `ca.pem`, `server.pem`, `server-key.pem`,
    /// `client.pem`, `client-key.pem`, `expired.pem`, `expired-key.pem`,
    /// `other-ca.pem`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A nats-server `tls` block with server certificate `cert` (`server`
    /// or `expired`); `verify` asks clients for a certificate.
    pub fn server_tls(&self, cert: &str, verify: bool) -> String {
        let p = |n: &str| self.path(n).display().to_string();
        let mut block = format!(
            "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n",
            p(&format!("{cert}.pem")),
            p(&format!("{cert}-key.pem"))
        );
        if verify {
            block.push_str(&format!("  ca_file: \"{}\"\n  verify: true\n", p("ca.pem")));
        }
        block.push_str("}\n");
        block
    }
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}

fn new_ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let key = KeyPair::generate().expect("ca key");
    let cert = params.self_signed(&key).expect("self-signed ca");
    (cert, key)
}

fn leaf(
    ca: &rcgen::Certificate,
    ca_key: &KeyPair,
    name: &str,
    years: Option<(i32, i32)>,
) -> (rcgen::Certificate, KeyPair) {
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("leaf params");
    params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    if let Some((from, to)) = years {
        params.not_before = rcgen::date_time_ymd(from, 1, 1);
        params.not_after = rcgen::date_time_ymd(to, 1, 1);
    }
    let key = KeyPair::generate().expect("leaf key");
    let cert = params.signed_by(&key, ca, ca_key).expect("signed leaf");
    (cert, key)
}

/// A user NKey: its public key for the server, its seed for the client.
pub fn user_nkey() -> (String, String) {
    let kp = nkeys::KeyPair::new_user();
    (kp.public_key(), kp.seed().expect("seed"))
}

/// An operator, an account with JetStream, and a user of it: the server
/// configuration for operator mode with a memory resolver, and the user's
/// creds file.
pub struct Operator {
    /// The nats-server configuration lines.
    pub server_config: String,
    /// The user's JWT (a secret).
    pub user_jwt: String,
    /// The user's seed (a secret).
    pub user_seed: String,
    /// The creds file's text.
    pub creds: String,
}

impl Operator {
    /// Fresh keys and JWTs.
    pub fn new() -> Operator {
        let operator = nkeys::KeyPair::new_operator();
        let system = nkeys::KeyPair::new_account();
        let account = nkeys::KeyPair::new_account();
        let user = nkeys::KeyPair::new_user();
        let operator_jwt = jwt(
            &operator,
            &operator.public_key(),
            "test-operator",
            serde_json::json!({
                "type": "operator", "version": 2,
                "system_account": system.public_key()
            }),
        );
        // JetStream needs the server's system account.
        let system_jwt = jwt(
            &operator,
            &system.public_key(),
            "SYS",
            serde_json::json!({"type": "account", "version": 2}),
        );
        let account_jwt = jwt(
            &operator,
            &account.public_key(),
            "test-account",
            serde_json::json!({
                "type": "account", "version": 2,
                "limits": {
                    "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                    "wildcards": true, "conn": -1, "leaf": -1,
                    "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1
                },
                "default_permissions": {"pub": {}, "sub": {}}
            }),
        );
        let user_jwt = jwt(
            &account,
            &user.public_key(),
            "test-user",
            serde_json::json!({
                "type": "user", "version": 2,
                "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1
            }),
        );
        let user_seed = user.seed().expect("seed");
        let creds = format!(
            "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
             ************************* IMPORTANT *************************\n\
             NKEY Seed printed below can be used to sign and prove identity.\n\n\
             -----BEGIN USER NKEY SEED-----\n{user_seed}\n------END USER NKEY SEED------\n"
        );
        let server_config = format!(
            "operator: {operator_jwt}\nsystem_account: {sys}\nresolver: MEMORY\nresolver_preload: {{\n  {sys}: {system_jwt}\n  {}: {account_jwt}\n}}\n",
            account.public_key(),
            sys = system.public_key(),
        );
        Operator {
            server_config,
            user_jwt,
            user_seed,
            creds,
        }
    }

    /// Writes the creds file into `dir`.
    pub fn write_creds(&self, dir: &Path) -> PathBuf {
        let path = dir.join("user.creds");
        std::fs::write(&path, &self.creds).expect("write creds");
        path
    }
}

impl Default for Operator {
    fn default() -> Self {
        Operator::new()
    }
}

/// A NATS JWT: `iss` signs claims about `sub`.
fn jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let iat = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let claims = serde_json::json!({
        "jti": format!("J{iat}{}", &subject[1..12]),
        "iat": iat,
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{body}");
    let signature = issuer.sign(signing_input.as_bytes()).expect("sign");
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}
