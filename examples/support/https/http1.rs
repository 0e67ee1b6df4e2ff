//! HTTP/1.1 message parsing shared by server and client.

use std::io::{self, BufRead, Read};
use std::net::TcpStream;

use super::*;

// HTTP/1.1 message parsing shared by server and client.

pub(super) enum HeadError {
    /// Not a single byte arrived (EOF, reset, timeout): the error says which.
    Nothing(io::Error),
    /// The head exceeded [`MAX_HEAD`].
    TooLarge,
    /// The connection ended in the middle of the head, or a line is not valid.
    Malformed,
    /// An I/O error after part of the head arrived.
    Io(io::Error),
}

/// Reads a header section up to and including its empty line, at most [`MAX_HEAD`] bytes.
pub(super) fn read_head(r: &mut impl BufRead) -> Result<Vec<u8>, HeadError> {
    let mut head = Vec::new();
    loop {
        let room = MAX_HEAD - head.len();
        if room == 0 {
            return Err(HeadError::TooLarge);
        }
        let start = head.len();
        match r.by_ref().take(room as u64).read_until(b'\n', &mut head) {
            Ok(0) if head.is_empty() => {
                return Err(HeadError::Nothing(io::ErrorKind::UnexpectedEof.into()))
            }
            Ok(0) => return Err(HeadError::Malformed), // EOF inside the head.
            Ok(_) => {}
            Err(e) if head.is_empty() => return Err(HeadError::Nothing(e)),
            Err(e) => return Err(HeadError::Io(e)),
        }
        if head.last() != Some(&b'\n') {
            return Err(if head.len() == MAX_HEAD {
                HeadError::TooLarge
            } else {
                HeadError::Malformed
            });
        }
        if start > 0 && matches!(&head[start..], b"\r\n" | b"\n") {
            return Ok(head);
        }
    }
}

/// Splits a head into its start line and header fields; `None` if any line is invalid.
pub(super) fn parse_head(head: &[u8]) -> Option<(&str, Vec<(String, String)>)> {
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let start = lines.next()?;
    if start.bytes().any(|b| b.is_ascii_control()) {
        return None;
    }
    let mut headers = Vec::new();
    for line in lines.take_while(|l| !l.is_empty()) {
        // No whitespace before the colon (RFC 9112 §5.1) and no obsolete line folding.
        let (name, value) = line.split_once(':')?;
        let value = value.trim_matches([' ', '\t']);
        if !is_token(name) || !is_field_value(value) {
            return None;
        }
        headers.push((name.to_owned(), value.to_owned()));
    }
    Some((start, headers))
}

/// `Some(None)` without `Content-Length`, `None` if invalid or conflicting.
pub(super) fn content_length(headers: &[(String, String)]) -> Option<Option<u64>> {
    let mut len = None;
    for (_, value) in headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let value: u64 = value.parse().ok()?;
        if len.is_some_and(|l| l != value) {
            return None;
        }
        len = Some(value);
    }
    Some(len)
}

pub(super) fn read_body(r: &mut impl Read, len: u64) -> io::Result<Vec<u8>> {
    // Grow as data arrives rather than trusting the declared length for the allocation.
    let mut body = Vec::with_capacity(len.min(64 * 1024) as usize);
    r.by_ref().take(len).read_to_end(&mut body)?;
    if (body.len() as u64) < len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(body)
}

pub(super) fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Whether any `name` header lists `token` (comma-separated, case-insensitive).
pub(super) fn has_token(headers: &[(String, String)], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

pub(super) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

pub(super) fn is_field_value(s: &str) -> bool {
    s.bytes().all(|b| b == b'\t' || !b.is_ascii_control())
}

pub(super) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

pub(super) fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

pub(super) fn set_timeouts(tcp: &TcpStream) -> io::Result<()> {
    tcp.set_read_timeout(Some(IO_TIMEOUT))?;
    tcp.set_write_timeout(Some(IO_TIMEOUT))?;
    // Requests and responses are written in one piece; don't wait for more.
    tcp.set_nodelay(true)
}

pub(super) fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "",
    }
}
