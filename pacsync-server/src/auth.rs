//! Credentials: password hashes, random tokens, signed access tokens, and
//! who a request acts as.

use std::fmt;

use anyhow::Context as _;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::settings::Secret;

/// How long an admin user's access token lasts.
pub const USER_TOKEN_SECS: i64 = 12 * 3600;
/// How long a machine's access token lasts; it renews with its refresh token.
pub const MACHINE_TOKEN_SECS: i64 = 15 * 60;
/// How long a machine's refresh token lasts unused.
pub const REFRESH_TOKEN_SECS: i64 = 90 * 24 * 3600;
const ISSUER: &str = "pacsync-server";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who a request acts as, once its token checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    User {
        id: String,
        name: String,
        role: Role,
    },
    Machine {
        endpoint_id: String,
    },
    /// An API token for automation, with the role it was made with.
    Token {
        id: String,
        name: String,
        role: Role,
    },
}

impl Principal {
    /// How the audit log and histories name this caller.
    pub fn actor(&self) -> String {
        match self {
            Principal::User { name, .. } => format!("user:{name}"),
            Principal::Machine { endpoint_id } => format!("machine:{endpoint_id}"),
            Principal::Token { name, .. } => format!("token:{name}"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    /// `user` or `machine`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// The machine's session generation the token was issued for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// The user's session (`store::sessions`) the token belongs to; a
    /// user token without one is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
}

/// Signs and checks access tokens (HS256).
pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Keys(***)")
    }
}

impl Keys {
    pub fn new(secret: &Secret) -> Keys {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = 5;
        Keys {
            encoding: EncodingKey::from_secret(secret.expose().as_bytes()),
            decoding: DecodingKey::from_secret(secret.expose().as_bytes()),
            validation,
        }
    }

    pub fn issue_user(
        &self,
        id: &str,
        role: Role,
        session: &str,
        now_secs: i64,
    ) -> anyhow::Result<String> {
        self.sign(&Claims {
            sub: id.to_owned(),
            kind: "user".into(),
            role: Some(role),
            generation: None,
            sid: Some(session.to_owned()),
            iat: now_secs,
            exp: now_secs + USER_TOKEN_SECS,
            iss: ISSUER.into(),
        })
    }

    pub fn issue_machine(
        &self,
        endpoint_id: &str,
        generation: i64,
        now_secs: i64,
    ) -> anyhow::Result<String> {
        self.sign(&Claims {
            sub: endpoint_id.to_owned(),
            kind: "machine".into(),
            role: None,
            generation: Some(generation),
            sid: None,
            iat: now_secs,
            exp: now_secs + MACHINE_TOKEN_SECS,
            iss: ISSUER.into(),
        })
    }

    pub fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .context("signing an access token")
    }

    /// The claims of a valid, unexpired token signed by us.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .ok()
            .map(|d| d.claims)
    }
}

/// `n` random bytes as hex, from the OS.
pub fn random_hex(n: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
    Ok(hex::encode(buf))
}

/// A new bearer secret with a recognisable prefix (`pse_` enrollment,
/// `psr_` refresh).
pub fn new_token(prefix: &str) -> anyhow::Result<String> {
    Ok(format!("{prefix}{}", random_hex(32)?))
}

/// Tokens are 256 random bits, so a plain sha256 is enough to store them:
/// nothing to brute-force, and lookup by hash stays an index hit.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing password: {e}"))
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_themselves() {
        let h = hash_password("correct horse").expect("hash");
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn tokens_verify_and_tampering_fails() {
        let keys = Keys::new(&Secret::new("k".repeat(32)));
        let now = crate::store::now_ms() / 1000;
        let t = keys.issue_machine("e1", 3, now).expect("sign");
        let c = keys.verify(&t).expect("valid");
        assert_eq!((c.sub.as_str(), c.generation), ("e1", Some(3)));
        let mut bad = t.clone();
        bad.pop();
        bad.push(if t.ends_with('A') { 'B' } else { 'A' });
        assert!(keys.verify(&bad).is_none());
        let other = Keys::new(&Secret::new("j".repeat(32)));
        assert!(other.verify(&t).is_none());
        let expired = keys
            .sign(&Claims {
                sub: "e1".into(),
                kind: "machine".into(),
                role: None,
                generation: Some(0),
                sid: None,
                iat: now - 1000,
                exp: now - 600,
                iss: ISSUER.into(),
            })
            .expect("sign");
        assert!(keys.verify(&expired).is_none());
    }
}
