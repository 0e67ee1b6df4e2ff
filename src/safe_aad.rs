//! The SafeAAD framing of an MLS message's `authenticated_data` (draft-ietf-mls-extensions-08
//! §4.9; docs/wire-format.md §14.2), read in one place for every component that puts an item
//! there:
//!
//! - the identity link keys of a pseudonymous group's commits (`AddAAD`, component 0xF1D8,
//!   [`crate::pseudonym::group_links`]), read by the hub and by members;
//! - the sealed connection response of a responder's external commit (component 0xF1DA,
//!   [`crate::connection`]), read by the initiator;
//! - the franking tag of an application message (`frank_aad`, component 0x0020,
//!   [`crate::franking`]), read by the hub.
//!
//! ```text
//! struct { ComponentID component_id; opaque aad_item_data<V>; } SafeAADItem;  /* uint16 ID */
//! struct { SafeAADItem aad_items<V>; } SafeAAD;
//! ```
//!
//! The SafeAAD comes first in `authenticated_data`; bytes after it are the application's and are
//! not examined. Its items are "sorted in increasing numerical order of the component_id" (§4.9);
//! mimi-ds reads that strictly, as openmls 0.9 does: an item whose component ID is below its
//! predecessor's is [`SafeAadError::Unsorted`], one equal to it [`SafeAadError::Duplicate`].
//! Each component then has at most one item, so no reader has to choose between two. Items of
//! components a reader does not know (GREASE values among them, §5.1) are ignored.
//!
//! Decoding a [`SafeAad`] with `tls_codec` alone does not check the order (so that tests and
//! fuzzers can build and round-trip any item list); read authenticated data with
//! [`SafeAad::parse_prefix`], and build it with [`SafeAad::from_items`], which sorts.

use tls_codec::{
    DeserializeBytes as _, Serialize as _, TlsDeserializeBytes, TlsSerialize, TlsSize, VLBytes,
};

use crate::wire::DecodeError;

/// `struct { ComponentID component_id; opaque aad_item_data<V>; } SafeAADItem`
/// (draft-ietf-mls-extensions-08 §4.9; `ComponentID` is a uint16, as in openmls 0.9).
#[derive(Debug, Clone, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct SafeAadItem {
    /// The component the item belongs to.
    pub component_id: u16,
    /// The component's data.
    pub aad_item_data: VLBytes,
}

impl SafeAadItem {
    /// An item of `component_id` holding `data`.
    pub fn new(component_id: u16, data: Vec<u8>) -> Self {
        Self {
            component_id,
            aad_item_data: data.into(),
        }
    }
}

/// `struct { SafeAADItem aad_items<V>; } SafeAAD`: the prefix of a message's
/// `authenticated_data`, items in strictly increasing `component_id` order.
#[derive(Debug, Clone, Default, PartialEq, Eq, TlsSerialize, TlsDeserializeBytes, TlsSize)]
pub struct SafeAad {
    /// The items.
    pub aad_items: Vec<SafeAadItem>,
}

/// Why `authenticated_data` does not begin with a well-formed SafeAAD (draft-ietf-mls-extensions-08
/// §4.9; docs/wire-format.md §14.2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SafeAadError {
    /// The bytes do not begin with a `SafeAAD` (a truncated or over-long item list).
    #[error("the authenticated data does not begin with a SafeAAD: {0}")]
    Undecodable(DecodeError),
    /// An item's component ID is below its predecessor's.
    #[error("SafeAAD item {next:#06x} follows {previous:#06x}: not in increasing order")]
    Unsorted {
        /// The predecessor's component ID.
        previous: u16,
        /// The out-of-order item's component ID.
        next: u16,
    },
    /// Two items have the same component ID.
    #[error("two SafeAAD items of component {component_id:#06x}")]
    Duplicate {
        /// The repeated component ID.
        component_id: u16,
    },
}

impl SafeAad {
    /// The SafeAAD of `items`, sorted by component ID (so callers may give them in any order).
    /// Two items of one component are [`SafeAadError::Duplicate`].
    pub fn from_items(mut items: Vec<SafeAadItem>) -> Result<Self, SafeAadError> {
        items.sort_by_key(|item| item.component_id);
        let aad = Self { aad_items: items };
        aad.check_order()?;
        Ok(aad)
    }

    /// Checks that the component IDs strictly increase: the first item out of order is
    /// [`SafeAadError::Unsorted`], a repeated one [`SafeAadError::Duplicate`].
    pub fn check_order(&self) -> Result<(), SafeAadError> {
        for pair in self.aad_items.windows(2) {
            let (previous, next) = (pair[0].component_id, pair[1].component_id);
            match next.cmp(&previous) {
                std::cmp::Ordering::Greater => {}
                std::cmp::Ordering::Equal => {
                    return Err(SafeAadError::Duplicate { component_id: next })
                }
                std::cmp::Ordering::Less => return Err(SafeAadError::Unsorted { previous, next }),
            }
        }
        Ok(())
    }

    /// Reads the SafeAAD at the beginning of `authenticated_data` and returns it with the
    /// application's bytes after it. Empty `authenticated_data` is a SafeAAD with no items (the
    /// message carries nothing for any component). Refused: bytes that do not begin with a
    /// `SafeAAD`, and items not in strictly increasing component order.
    pub fn parse_prefix(authenticated_data: &[u8]) -> Result<(Self, &[u8]), SafeAadError> {
        if authenticated_data.is_empty() {
            return Ok((Self::default(), authenticated_data));
        }
        let (aad, application_data) =
            Self::tls_deserialize_bytes(authenticated_data).map_err(|e| {
                SafeAadError::Undecodable(DecodeError::Malformed {
                    type_name: "SafeAAD",
                    reason: format!("{e:?}"),
                })
            })?;
        aad.check_order()?;
        Ok((aad, application_data))
    }

    /// The data of the item of `component_id`, if there is one. Meaningful on a SafeAAD whose
    /// order was checked ([`Self::parse_prefix`], [`Self::from_items`]): then there is at most
    /// one.
    pub fn item(&self, component_id: u16) -> Option<&[u8]> {
        self.aad_items
            .iter()
            .find(|item| item.component_id == component_id)
            .map(|item| item.aad_item_data.as_slice())
    }

    /// The `authenticated_data` of a message: this SafeAAD, then `application_data`.
    pub fn to_authenticated_data(
        &self,
        application_data: &[u8],
    ) -> Result<Vec<u8>, tls_codec::Error> {
        let mut out = self.tls_serialize_detached()?;
        out.extend_from_slice(application_data);
        Ok(out)
    }
}

/// The data of the item of `component_id` in the SafeAAD at the beginning of
/// `authenticated_data` ([`SafeAad::parse_prefix`]): what one component reads.
pub fn item_of(
    authenticated_data: &[u8],
    component_id: u16,
) -> Result<Option<Vec<u8>>, SafeAadError> {
    let (aad, _application_data) = SafeAad::parse_prefix(authenticated_data)?;
    Ok(aad.item(component_id).map(<[u8]>::to_vec))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(ids: &[u16]) -> Vec<u8> {
        SafeAad {
            aad_items: ids
                .iter()
                .map(|&id| SafeAadItem::new(id, vec![id as u8]))
                .collect(),
        }
        .tls_serialize_detached()
        .unwrap()
    }

    #[test]
    fn items_are_built_sorted_and_read_back() {
        let aad = SafeAad::from_items(vec![
            SafeAadItem::new(0xF1DA, b"response".to_vec()),
            SafeAadItem::new(0xF1D8, b"links".to_vec()),
        ])
        .unwrap();
        let ids: Vec<u16> = aad.aad_items.iter().map(|i| i.component_id).collect();
        assert_eq!(ids, [0xF1D8, 0xF1DA]);
        let bytes = aad.to_authenticated_data(b"app").unwrap();
        let (parsed, rest) = SafeAad::parse_prefix(&bytes).unwrap();
        assert_eq!(parsed, aad);
        assert_eq!(rest, b"app");
        assert_eq!(parsed.item(0xF1D8), Some(&b"links"[..]));
        assert_eq!(item_of(&bytes, 0xF1DA).unwrap(), Some(b"response".to_vec()));
        assert_eq!(item_of(&bytes, 0x0020).unwrap(), None);
    }

    #[test]
    fn duplicates_unsorted_and_undecodable_prefixes_are_refused() {
        assert_eq!(
            SafeAad::from_items(vec![
                SafeAadItem::new(1, vec![]),
                SafeAadItem::new(1, vec![2])
            ]),
            Err(SafeAadError::Duplicate { component_id: 1 })
        );
        assert_eq!(
            SafeAad::parse_prefix(&raw(&[3, 2])).unwrap_err(),
            SafeAadError::Unsorted {
                previous: 3,
                next: 2
            }
        );
        assert_eq!(
            SafeAad::parse_prefix(&raw(&[2, 5, 5])).unwrap_err(),
            SafeAadError::Duplicate { component_id: 5 }
        );
        assert!(matches!(
            SafeAad::parse_prefix(b"\x05ab"),
            Err(SafeAadError::Undecodable(_))
        ));
    }

    #[test]
    fn empty_authenticated_data_has_no_items() {
        let (aad, rest) = SafeAad::parse_prefix(&[]).unwrap();
        assert!(aad.aad_items.is_empty());
        assert!(rest.is_empty());
        // The zero-length item list reads the same.
        let (aad, rest) = SafeAad::parse_prefix(&[0, 9]).unwrap();
        assert!(aad.aad_items.is_empty());
        assert_eq!(rest, [9]);
    }
}
