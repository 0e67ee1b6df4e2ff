//! Who a leaf belongs to: the pluggable credential check (DS-04 §"Update client": "the DS MUST
//! validate the new credential"; the rule is left to the deployment).
//!
//! The DS needs two things from a credential: whether it is acceptable at all, and which
//! *user* the client belongs to, because several MIMI operations are defined over users
//! (add_users adds new users, remove_users removes all of a user's clients, add_clients and
//! remove_clients act on the sender's own user). The embedding server knows its identity
//! system (X.509 chains, provider-signed credentials, pseudonymous credentials under MIMIMI);
//! mimi-ds does not, so it asks a [`CredentialValidator`].

use openmls::prelude::{BasicCredential, Credential, CredentialType};

/// Why a credential was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("credential refused: {0}")]
pub struct CredentialRejection(pub String);

/// Validates credentials and names the user a client belongs to. Called for every leaf that
/// joins (group creation, Adds, external commits) and every leaf whose credential changes.
pub trait CredentialValidator: Send + Sync {
    /// Checks `credential`, presented with `signature_key`, and returns the user it belongs
    /// to. The returned bytes are only compared for equality; all clients of one user must
    /// return the same value.
    fn validate(
        &self,
        credential: &Credential,
        signature_key: &[u8],
    ) -> Result<Vec<u8>, CredentialRejection>;
}

/// The default validator: BasicCredentials carry no proof of identity, so they are refused
/// unless the deployment opts in (tests, closed deployments that authenticate clients out of
/// band). An accepted BasicCredential's identity must be a MIMI client URI
/// `mimi://<domain>/d/<user>/<device>`; its user is `mimi://<domain>/u/<user>`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BasicCredentialValidator {
    accept_basic_credentials: bool,
}

impl BasicCredentialValidator {
    /// Refuses every credential (the default until a deployment configures its own).
    pub fn reject_all() -> Self {
        Self {
            accept_basic_credentials: false,
        }
    }

    /// Accepts BasicCredentials holding a MIMI client URI.
    pub fn accept_basic_credentials() -> Self {
        Self {
            accept_basic_credentials: true,
        }
    }
}

/// Splits a client URI `mimi://<domain>/d/<user>/<device>` into its user URI.
pub fn user_of_client_uri(identity: &[u8]) -> Option<Vec<u8>> {
    let uri = std::str::from_utf8(identity).ok()?;
    let rest = uri.strip_prefix("mimi://")?;
    let mut parts = rest.split('/');
    let (domain, kind, user, device) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let well_formed = parts.next().is_none()
        && kind == "d"
        && [domain, user, device].iter().all(|p| !p.is_empty());
    well_formed.then(|| format!("mimi://{domain}/u/{user}").into_bytes())
}

impl CredentialValidator for BasicCredentialValidator {
    fn validate(
        &self,
        credential: &Credential,
        _signature_key: &[u8],
    ) -> Result<Vec<u8>, CredentialRejection> {
        if credential.credential_type() != CredentialType::Basic {
            return Err(CredentialRejection(
                "only BasicCredentials are understood by the default validator".into(),
            ));
        }
        if !self.accept_basic_credentials {
            return Err(CredentialRejection(
                "BasicCredentials are not accepted by this DS".into(),
            ));
        }
        let basic = BasicCredential::try_from(credential.clone())
            .map_err(|_| CredentialRejection("malformed BasicCredential".into()))?;
        user_of_client_uri(basic.identity()).ok_or_else(|| {
            CredentialRejection("identity is not a mimi://<domain>/d/<user>/<device> URI".into())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_uris_name_their_user() {
        assert_eq!(
            user_of_client_uri(b"mimi://a.example/d/alice/phone"),
            Some(b"mimi://a.example/u/alice".to_vec())
        );
        for bad in [
            &b"mimi://a.example/u/alice"[..],
            b"mimi://a.example/d/alice",
            b"https://a.example/d/a/b",
            b"mimi:///d/a/b",
            b"mimi://a/d/a/b/c",
            b"\xff",
        ] {
            assert_eq!(
                user_of_client_uri(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn basic_credentials_need_opt_in() {
        let credential: Credential =
            BasicCredential::new(b"mimi://a.example/d/alice/phone".to_vec()).into();
        assert!(BasicCredentialValidator::reject_all()
            .validate(&credential, &[])
            .is_err());
        assert_eq!(
            BasicCredentialValidator::accept_basic_credentials()
                .validate(&credential, &[])
                .unwrap(),
            b"mimi://a.example/u/alice"
        );
    }
}
