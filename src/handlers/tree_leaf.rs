//! A minimal reader of a ratchet tree (RFC 9420 §12.4.3.3 `optional<Node> ratchet_tree<V>`)
//! that finds one leaf's signature key and verifies nothing.
//!
//! `create_group` uses it to authenticate the requester against the leaf it claims before it
//! imports the tree, which verifies two signatures per leaf (wire-format.md §4.2). The import
//! then checks the whole tree, including this leaf, so nothing here is trusted on its own.

use tls_codec::{DeserializeBytes, TlsDeserializeBytes, TlsSize, VLBytes};

use crate::error::{AuthenticationFailed, RejectReason};
use crate::wire::DecodeError;

/// `Node` (RFC 9420 §7.8), read only as far as this module needs. Only a leaf's
/// `signature_key` is used; every other field is decoded to skip it.
#[allow(dead_code)]
#[derive(TlsDeserializeBytes, TlsSize)]
#[repr(u8)]
enum RawNode {
    #[tls_codec(discriminant = 1)]
    Leaf(Box<RawLeafNode>),
    #[tls_codec(discriminant = 2)]
    Parent(RawParentNode),
}

/// `LeafNode` (RFC 9420 §7.2).
#[allow(dead_code)]
#[derive(TlsDeserializeBytes, TlsSize)]
struct RawLeafNode {
    encryption_key: VLBytes,
    signature_key: VLBytes,
    credential: RawCredential,
    capabilities: RawCapabilities,
    leaf_node_source: RawLeafNodeSource,
    extensions: Vec<RawExtension>,
    signature: VLBytes,
}

/// `Credential` (RFC 9420 §5.3): a type and, for `basic` and `x509` alike, one vector
/// (`opaque identity<V>` or `Certificate certificates<V>`).
#[allow(dead_code)]
#[derive(TlsDeserializeBytes, TlsSize)]
struct RawCredential {
    credential_type: u16,
    content: VLBytes,
}

/// `Capabilities` (RFC 9420 §7.2): five vectors of `uint16`.
#[allow(dead_code)]
#[derive(TlsDeserializeBytes, TlsSize)]
struct RawCapabilities {
    versions: VLBytes,
    cipher_suites: VLBytes,
    extensions: VLBytes,
    proposals: VLBytes,
    credentials: VLBytes,
}

/// `Lifetime` (RFC 9420 §7.2).
#[allow(dead_code)]
#[derive(TlsDeserializeBytes, TlsSize)]
struct RawLifetime {
    not_before: u64,
    not_after: u64,
}

/// `LeafNodeSource` and what it selects (RFC 9420 §7.2).
#[allow(dead_code)]
#[derive(TlsDeserializeBytes, TlsSize)]
#[repr(u8)]
enum RawLeafNodeSource {
    #[tls_codec(discriminant = 1)]
    KeyPackage(RawLifetime),
    #[tls_codec(discriminant = 2)]
    Update,
    #[tls_codec(discriminant = 3)]
    Commit(VLBytes),
}

/// `Extension` (RFC 9420 §7.2).
#[allow(dead_code)]
#[derive(TlsDeserializeBytes, TlsSize)]
struct RawExtension {
    extension_type: u16,
    extension_data: VLBytes,
}

/// `ParentNode` (RFC 9420 §7.1).
#[allow(dead_code)]
#[derive(TlsDeserializeBytes, TlsSize)]
struct RawParentNode {
    encryption_key: VLBytes,
    parent_hash: VLBytes,
    unmerged_leaves: VLBytes,
}

/// The signature key of the leaf at `leaf_index` in an encoded ratchet tree. A tree that does
/// not decode is `malformed_request`; a blank or missing leaf is `authentication_failed`, like
/// any request whose sender is not a member.
pub(crate) fn leaf_signature_key(tree: &[u8], leaf_index: u32) -> Result<Vec<u8>, RejectReason> {
    let nodes = Vec::<Option<RawNode>>::tls_deserialize_exact_bytes(tree).map_err(|e| {
        RejectReason::Malformed(DecodeError::Malformed {
            type_name: "RatchetTree",
            reason: format!("{e:?}"),
        })
    })?;
    // RFC 9420 Appendix C: leaf `i` is node `2i`.
    let node = usize::try_from(leaf_index)
        .ok()
        .and_then(|leaf| leaf.checked_mul(2))
        .and_then(|node| nodes.get(node));
    match node {
        Some(Some(RawNode::Leaf(leaf))) => Ok(leaf.signature_key.as_slice().to_vec()),
        // Rule R-AUTH-4.
        _ => Err(RejectReason::AuthenticationFailed(
            AuthenticationFailed::NoMemberAtLeaf,
        )),
    }
}

#[cfg(all(test, feature = "test-utils"))]
mod tests {
    use openmls::prelude::LeafNodeIndex;
    use tls_codec::Serialize as _;

    use super::leaf_signature_key;
    use crate::error::{AuthenticationFailed, RejectReason};
    use crate::testing::{TestClient, TestDs};

    /// Leaf `i` is node `2i`, blank leaves included: compared with openmls on a tree of three
    /// leaves whose middle one was removed.
    #[test]
    fn finds_each_leafs_key_by_index_and_no_key_for_a_blank_or_missing_leaf() {
        let ds = TestDs::new("hub.example");
        let mut alice = TestClient::new("alice", "alice-1", "a.example");
        alice.create_group(b"g@hub.example", &ds.external_sender);
        let joiners = [
            TestClient::new("bob", "bob-1", "b.example"),
            TestClient::new("carol", "carol-1", "c.example"),
        ];
        let key_packages = joiners
            .iter()
            .map(TestClient::key_package)
            .collect::<Vec<_>>();
        let _ = alice.stage_commit(|b| b.propose_adds(key_packages));
        alice.confirm_commit();
        let _ = alice.stage_commit(|b| b.propose_removals([LeafNodeIndex::new(1)]));
        alice.confirm_commit();
        let tree = alice
            .group()
            .export_ratchet_tree()
            .tls_serialize_detached()
            .unwrap();

        for leaf in [0, 2] {
            let member = alice
                .group()
                .member_at(LeafNodeIndex::new(leaf))
                .expect("a member");
            assert_eq!(
                leaf_signature_key(&tree, leaf).unwrap(),
                member.signature_key,
                "leaf {leaf}"
            );
        }
        for leaf in [1, 3, u32::MAX] {
            assert!(matches!(
                leaf_signature_key(&tree, leaf),
                Err(RejectReason::AuthenticationFailed(
                    AuthenticationFailed::NoMemberAtLeaf
                ))
            ));
        }
        assert!(matches!(
            leaf_signature_key(&tree[..tree.len() - 1], 0),
            Err(RejectReason::Malformed(_))
        ));
    }
}
