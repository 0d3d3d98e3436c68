//! The generated Secrets: superuser, replication and API passwords.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use rand::Rng;

use super::{Credentials, Identity};
use crate::crd::RaleClusterSpec;

/// The three credentials of a cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretRole {
    /// PostgreSQL superuser.
    Superuser,
    /// Replication user.
    Replication,
    /// The agents' REST API.
    Api,
}

impl SecretRole {
    /// All three, in a fixed order.
    pub const ALL: [SecretRole; 3] = [
        SecretRole::Superuser,
        SecretRole::Replication,
        SecretRole::Api,
    ];

    /// Directory name under the secrets mount, and suffix of the generated Secret.
    pub fn as_str(self) -> &'static str {
        match self {
            SecretRole::Superuser => "superuser",
            SecretRole::Replication => "replication",
            SecretRole::Api => "api",
        }
    }
}

/// The Secret used for `role`: the one the spec names, else `<cluster>-<role>`.
pub fn secret_name(cluster: &str, spec: &RaleClusterSpec, role: SecretRole) -> String {
    let named = match role {
        SecretRole::Superuser => &spec.secrets.superuser,
        SecretRole::Replication => &spec.secrets.replication,
        SecretRole::Api => &spec.secrets.api,
    };
    named
        .clone()
        .unwrap_or_else(|| format!("{cluster}-{}", role.as_str()))
}

/// A random password of 32 characters from `[A-Za-z0-9]` (190 bits).
pub fn generate_password() -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..32)
        .map(|_| char::from(CHARS[rng.gen_range(0..CHARS.len())]))
        .collect()
}

pub(super) fn generated_secrets(
    id: &Identity,
    spec: &RaleClusterSpec,
    creds: &Credentials,
) -> Vec<Secret> {
    SecretRole::ALL
        .into_iter()
        .filter(|role| match role {
            SecretRole::Superuser => spec.secrets.superuser.is_none(),
            SecretRole::Replication => spec.secrets.replication.is_none(),
            SecretRole::Api => spec.secrets.api.is_none(),
        })
        .map(|role| {
            let user = match role {
                SecretRole::Superuser => &creds.superuser,
                SecretRole::Replication => &creds.replication_user,
                SecretRole::Api => &creds.api_user,
            };
            Secret {
                metadata: id.meta(secret_name(&id.name, spec, role)),
                type_: Some("kubernetes.io/basic-auth".into()),
                string_data: Some(BTreeMap::from([
                    ("username".to_string(), user.clone()),
                    ("password".to_string(), generate_password()),
                ])),
                ..Secret::default()
            }
        })
        .collect()
}
