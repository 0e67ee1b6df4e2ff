//! A minimal reader of a ratchet tree (RFC 9420 §12.4.3.3 `optional<Node> ratchet_tree<V>`)
//! that finds one leaf's signature key and verifies nothing.
//!
//! `create_group` uses it to authenticate the requester against the leaf it claims before it
//! imports the tree, which verifies two signatures per leaf (wire-format.md §4.2). The import
//! then checks the whole tree, including this leaf, so nothing here is trusted on its own.

use tls_codec::{DeserializeBytes, TlsDeserializeBytes, TlsSize, VLBytes};

use crate::error::RejectReason;
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
        _ => Err(RejectReason::AuthenticationFailed(
            "no member at the sender's leaf",
        )),
    }
}
