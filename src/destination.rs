//! Checking a [`crate::Fanout::destination`] before the embedder connects to it.
//!
//! A fanout's destination is the `provider_domain` of the recipients' `ClientQueueConfig`: bytes
//! that each member chose for its own leaf. The DS cannot know which providers a deployment
//! federates with, so it fans out to whatever the members named. An embedder that resolves such
//! a name with DNS and connects to it lets any member make the hub call hosts of the member's
//! choosing: internal services (server-side request forgery) or a third party, once per
//! message (amplification). [`check_host_name`] refuses what is not a plain public host name;
//! a [`DestinationPolicy`] (the deployment's allow-list) decides the rest.
//!
//! The check belongs to delivery, where the embedder does its I/O, not to joins: which
//! providers a deployment federates with is its own policy and changes while leaves persist
//! (a leaf accepted last year may name a provider dropped today), a syntactically valid name
//! is not yet a safe one, and refusing a leaf would refuse the whole commit that adds it. A
//! refused destination's queues can instead be reported as [`crate::HubEvent::QueueRejected`]
//! ([`crate::Fanout::recipient_queues`]), and the hub proposes removing those clients.

/// The longest host name, in octets, without a trailing dot (RFC 1035 §2.3.4 allows 255 octets
/// on the wire, which leaves 253 characters of text).
pub const MAX_HOST_NAME_LEN: usize = 253;
/// The longest label (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;

/// Why a destination is not a host name mimi-ds accepts (see [`check_host_name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostNameError {
    /// The name is empty.
    #[error("empty host name")]
    Empty,
    /// The name is longer than [`MAX_HOST_NAME_LEN`] octets.
    #[error("host name longer than {MAX_HOST_NAME_LEN} octets")]
    TooLong,
    /// Two dots in a row, a leading dot, or a trailing dot (an absolute name: refused so that
    /// every provider has one spelling).
    #[error("empty label (leading, trailing or doubled dot)")]
    EmptyLabel,
    /// A label is longer than [`MAX_LABEL_LEN`] octets.
    #[error("label longer than {MAX_LABEL_LEN} octets")]
    LabelTooLong,
    /// A byte other than a lowercase letter, a digit, a hyphen or a dot: this refuses ports
    /// (`:`), user information (`@`), paths (`/`), IPv6 literals (`[`, `:`), spaces, non-ASCII
    /// text (use the IDNA A-label, `xn--…`) and uppercase letters.
    #[error("byte 0x{0:02x} is not a lowercase letter, digit, hyphen or dot")]
    InvalidByte(u8),
    /// A label starts or ends with a hyphen (RFC 952, RFC 1123 §2.1).
    #[error("label starts or ends with a hyphen")]
    HyphenAtLabelEdge,
    /// The name has a single label. Resolvers complete such names with their search list
    /// (RFC 1535), so `db` may reach `db.corp.internal`; provider domains are fully qualified.
    #[error("single-label name")]
    SingleLabel,
    /// The last label is a number (decimal, or `0x` and hex digits): the name is, or would be
    /// parsed by `inet_aton` and URL parsers as, an IPv4 address (RFC 3696 §2, WHATWG URL
    /// "ends in a number").
    #[error("numeric last label: an IP address, not a host name")]
    NumericLastLabel,
    /// `localhost` or a name under it, which resolvers answer with the loopback address
    /// (RFC 6761 §6.3).
    #[error("a loopback name (RFC 6761 §6.3)")]
    Loopback,
}

/// Checks that `name` is a host name a Queueing Service can be reached at, and nothing an
/// address parser or resolver treats specially. Accepted, and only this:
///
/// * two or more labels separated by single dots, no leading or trailing dot;
/// * each label 1 to 63 octets of lowercase ASCII letters `a-z`, digits `0-9` and hyphens, not
///   starting or ending with a hyphen (RFC 1035 §2.3.1 as relaxed by RFC 1123 §2.1: a label may
///   start with a digit); IDNA A-labels (`xn--…`) pass as such, their Punycode is not decoded;
/// * at most 253 octets in all;
/// * the last label is not a number (so no IPv4 address in any notation);
/// * not `localhost` nor a name under it.
///
/// Uppercase letters are refused although DNS compares names case-insensitively: the DS groups
/// fanout by the exact bytes members sent and Queueing Services compare `recipient_domain`
/// byte-wise, so one lowercase spelling per provider keeps an allow-list comparison exact.
///
/// A name that passes is syntactically harmless, not trusted: `internal-db.corp.example` passes
/// too. Which providers to call is the [`DestinationPolicy`]'s decision.
pub fn check_host_name(name: &str) -> Result<(), HostNameError> {
    if name.is_empty() {
        return Err(HostNameError::Empty);
    }
    if name.len() > MAX_HOST_NAME_LEN {
        return Err(HostNameError::TooLong);
    }
    if let Some(&bad) = name
        .as_bytes()
        .iter()
        .find(|b| !(b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.')))
    {
        return Err(HostNameError::InvalidByte(bad));
    }
    let labels: Vec<&str> = name.split('.').collect();
    for label in &labels {
        if label.is_empty() {
            return Err(HostNameError::EmptyLabel);
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(HostNameError::LabelTooLong);
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(HostNameError::HyphenAtLabelEdge);
        }
    }
    let (Some(last), true) = (labels.last(), labels.len() >= 2) else {
        return Err(HostNameError::SingleLabel);
    };
    if is_number(last) {
        return Err(HostNameError::NumericLastLabel);
    }
    if *last == "localhost" {
        return Err(HostNameError::Loopback);
    }
    Ok(())
}

/// Whether an IPv4 parser would read `label` as a number (WHATWG URL "ends in a number": all
/// decimal digits, or `0x` followed by hex digits). Only lowercase reaches here.
fn is_number(label: &str) -> bool {
    let digits = label.strip_prefix("0x").unwrap_or(label);
    let hex = digits.len() < label.len();
    digits
        .bytes()
        .all(|b| b.is_ascii_digit() || (hex && b.is_ascii_hexdigit()))
}

/// The deployment's decision on which providers it delivers to: typically the providers it
/// federates with, from its own configuration. Called with a destination that already passed
/// [`check_host_name`]. Any `Fn(&str) -> bool` is a policy.
pub trait DestinationPolicy {
    /// Whether fanout may be delivered to `destination`.
    fn allows(&self, destination: &str) -> bool;
}

impl<F: Fn(&str) -> bool + ?Sized> DestinationPolicy for F {
    fn allows(&self, destination: &str) -> bool {
        self(destination)
    }
}

/// Why [`crate::Fanout::check_destination`] refused a destination.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DestinationRefusal {
    /// Not a host name [`check_host_name`] accepts.
    #[error("destination {destination:?} is not an acceptable host name: {reason}")]
    HostName {
        /// The destination as the members wrote it (lossily decoded, at most 64 characters).
        destination: String,
        /// What is wrong with it.
        reason: HostNameError,
    },
    /// The [`DestinationPolicy`] does not allow it.
    #[error("destination {destination:?} is not allowed by the delivery policy")]
    NotAllowed {
        /// The destination (a host name [`check_host_name`] accepts).
        destination: String,
    },
}

/// At most 64 characters of what a member chose, for an error message.
pub(crate) fn shortened(name: &str) -> String {
    const SHOWN: usize = 64;
    match name.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("{}…", &name[..end]),
        None => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_name_table() {
        let label63 = "a".repeat(63);
        let label64 = "a".repeat(64);
        // 4 labels of 63 and one dot each: 63*4 + 3 = 255; trimmed to exactly 253 and 254.
        let long = format!("{label63}.{label63}.{label63}.{label63}");
        let name253 = format!("{}.example", &long[..253 - ".example".len()]);
        let name254 = format!("{}.example", &long[..254 - ".example".len()]);
        let ok_63 = format!("{label63}.example");
        let bad_64 = format!("{label64}.example");
        use HostNameError::*;
        let table: &[(&str, Result<(), HostNameError>)] = &[
            ("alpha.example", Ok(())),
            ("qs.provider-1.example", Ok(())),
            ("1and1.example", Ok(())),
            ("a.b", Ok(())),
            ("xn--bcher-kva.example", Ok(())),
            ("example.xn--p1ai", Ok(())),
            ("localhost.example", Ok(())),
            ("0x1g.example", Ok(())),
            ("example.0x1g", Ok(())),
            (ok_63.as_str(), Ok(())),
            (name253.as_str(), Ok(())),
            ("", Err(Empty)),
            (name254.as_str(), Err(TooLong)),
            (bad_64.as_str(), Err(LabelTooLong)),
            ("a..b", Err(EmptyLabel)),
            (".example", Err(EmptyLabel)),
            ("alpha.example.", Err(EmptyLabel)),
            (".", Err(EmptyLabel)),
            ("-a.example", Err(HyphenAtLabelEdge)),
            ("a-.example", Err(HyphenAtLabelEdge)),
            ("xn--.example", Err(HyphenAtLabelEdge)),
            ("Alpha.example", Err(InvalidByte(b'A'))),
            ("ALPHA.EXAMPLE", Err(InvalidByte(b'A'))),
            ("localhost:8080", Err(InvalidByte(b':'))),
            ("alpha.example:443", Err(InvalidByte(b':'))),
            ("[::1]", Err(InvalidByte(b'['))),
            ("::1", Err(InvalidByte(b':'))),
            ("user@alpha.example", Err(InvalidByte(b'@'))),
            ("alpha.example/path", Err(InvalidByte(b'/'))),
            ("a_b.example", Err(InvalidByte(b'_'))),
            ("a b.example", Err(InvalidByte(b' '))),
            ("alpha.example\0", Err(InvalidByte(0))),
            ("bücher.example", Err(InvalidByte(0xc3))),
            ("localhost", Err(SingleLabel)),
            ("db", Err(SingleLabel)),
            ("127.0.0.1", Err(NumericLastLabel)),
            ("10.1", Err(NumericLastLabel)),
            ("2130706433", Err(SingleLabel)),
            ("0x7f.0.0.1", Err(NumericLastLabel)),
            ("1.0x7f", Err(NumericLastLabel)),
            ("example.123", Err(NumericLastLabel)),
            ("example.0x", Err(NumericLastLabel)),
            ("foo.localhost", Err(Loopback)),
        ];
        for (name, expected) in table {
            assert_eq!(check_host_name(name), *expected, "{name:?}");
        }
    }

    #[test]
    fn closures_are_policies() {
        let federation = ["alpha.example", "beta.example"];
        let policy = |d: &str| federation.contains(&d);
        assert!(policy.allows("beta.example"));
        assert!(!DestinationPolicy::allows(&policy, "gamma.example"));
        let dynamic: &dyn DestinationPolicy = &policy;
        assert!(dynamic.allows("alpha.example"));
    }

    #[test]
    fn shortened_names_stay_short() {
        let long = "é".repeat(1000);
        assert_eq!(shortened(&long).chars().count(), 65);
        assert_eq!(shortened("alpha.example"), "alpha.example");
    }
}
