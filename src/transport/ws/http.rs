//! The HTTP/1.1 request head on a WebSocket port: the page, the upgrade,
//! or an error status.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha1::{Digest as _, Sha1};

/// The longest request head accepted, in bytes, its blank line included.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// The most header fields a request head may have.
const MAX_HEADERS: usize = 64;
/// The path of the chat's WebSocket endpoint.
pub const WEBSOCKET_PATH: &str = "/ws";
/// Appended to the client's key before hashing (RFC 6455, section 1.3).
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// What the page may load and connect to: itself, and WebSocket to its own
/// host; nothing from other hosts.
const PAGE_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; \
    script-src 'unsafe-inline'; connect-src 'self'; img-src data:; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// What a request head asks for, and the response that answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A valid WebSocket upgrade on [`WEBSOCKET_PATH`]: `101`.
    Upgrade(Vec<u8>),
    /// `GET /`: `200` with the page.
    Page(Vec<u8>),
    /// Anything else: an error status, then the connection closes.
    Refused {
        status: u16,
        reason: &'static str,
        response: Vec<u8>,
    },
}

/// Where the head in a buffer stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Head {
    /// The head is not complete yet, and may still be acceptable.
    Partial,
    /// The head is complete (it took `len` bytes) or was refused.
    Done { outcome: Outcome, len: usize },
}

/// Reads the request head at the start of `bytes` and answers it.
pub(crate) fn read_head(bytes: &[u8], page: &[u8]) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(bytes) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_REQUEST_HEAD => Head::Done {
            outcome: answer(&request, page),
            len,
        },
        Ok(httparse::Status::Partial) if bytes.len() <= MAX_REQUEST_HEAD => Head::Partial,
        Ok(_) => refuse_head(bytes.len(), "request head over 8 KiB"),
        Err(_) => refuse_head(bytes.len(), "not an HTTP/1.x request"),
    }
}

fn refuse_head(len: usize, reason: &'static str) -> Head {
    Head::Done {
        outcome: refused(400, reason, ""),
        len,
    }
}

fn answer(request: &httparse::Request<'_, '_>, page: &[u8]) -> Outcome {
    let (Some(method), Some(target)) = (request.method, request.path) else {
        return refused(400, "not an HTTP/1.x request", "");
    };
    if method != "GET" {
        return refused(405, "method not allowed", "Allow: GET\r\n");
    }
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    match path {
        "/" => Outcome::Page(response(
            "200 OK",
            "text/html; charset=utf-8",
            &format!("Content-Security-Policy: {PAGE_POLICY}\r\nReferrer-Policy: no-referrer\r\n"),
            page,
        )),
        WEBSOCKET_PATH => upgrade(request),
        _ => refused(404, "no such path", ""),
    }
}

/// Checks a request for `/ws` against RFC 6455, section 4.2.1.
fn upgrade(request: &httparse::Request<'_, '_>) -> Outcome {
    if request.version != Some(1) {
        return refused(400, "WebSocket needs HTTP/1.1", "");
    }
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    if !header("Upgrade").is_some_and(|v| has_token(v, "websocket"))
        || !header("Connection").is_some_and(|v| has_token(v, "upgrade"))
    {
        return refused(400, "not a WebSocket upgrade", "");
    }
    if header("Sec-WebSocket-Version").map(<[u8]>::trim_ascii) != Some(b"13") {
        return refused(
            426,
            "unsupported WebSocket version",
            "Sec-WebSocket-Version: 13\r\n",
        );
    }
    let Some(key) = header("Sec-WebSocket-Key").map(<[u8]>::trim_ascii) else {
        return refused(400, "no Sec-WebSocket-Key", "");
    };
    if !BASE64.decode(key).is_ok_and(|nonce| nonce.len() == 16) {
        return refused(400, "bad Sec-WebSocket-Key", "");
    }
    Outcome::Upgrade(
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            accept_key(key)
        )
        .into_bytes(),
    )
}

/// The `Sec-WebSocket-Accept` value for a client's `Sec-WebSocket-Key`.
///
/// ```
/// use chatcore::transport::ws::accept_key;
///
/// // The example of RFC 6455, section 1.3.
/// assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(key: &[u8]) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(key);
    sha1.update(ACCEPT_GUID.as_bytes());
    BASE64.encode(sha1.finalize())
}

/// Whether a comma-separated header value holds `token` (any case).
fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

fn refused(status: u16, reason: &'static str, extra_headers: &str) -> Outcome {
    let status_line = match status {
        400 => "400 Bad Request",
        404 => "404 Not Found",
        405 => "405 Method Not Allowed",
        _ => "426 Upgrade Required",
    };
    let body = format!("{status_line}: {reason}.\n");
    Outcome::Refused {
        status,
        reason,
        response: response(
            status_line,
            "text/plain; charset=utf-8",
            extra_headers,
            body.as_bytes(),
        ),
    }
}

/// A complete response that closes the connection after its body.
fn response(status_line: &str, content_type: &str, extra_headers: &str, body: &[u8]) -> Vec<u8> {
    let head = format!(
        "HTTP/1.1 {status_line}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nCache-Control: no-store\r\n\
         X-Content-Type-Options: nosniff\r\n{extra_headers}Connection: close\r\n\r\n",
        body.len()
    );
    let mut out = Vec::with_capacity(head.len() + body.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPGRADE: &str = "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\
        Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

    fn outcome(head: &str) -> Outcome {
        match read_head(head.as_bytes(), b"<p>page</p>") {
            Head::Done { outcome, len } => {
                assert!(len <= head.len());
                outcome
            }
            Head::Partial => panic!("partial: {head:?}"),
        }
    }

    fn status(head: &str) -> u16 {
        match outcome(head) {
            Outcome::Upgrade(_) => 101,
            Outcome::Page(_) => 200,
            Outcome::Refused {
                status, response, ..
            } => {
                let text = String::from_utf8(response).unwrap();
                assert!(text.starts_with(&format!("HTTP/1.1 {status} ")), "{text}");
                assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
                status
            }
        }
    }

    #[test]
    fn get_root_serves_the_page_as_utf8_html() {
        let Outcome::Page(response) = outcome("GET / HTTP/1.1\r\nHost: x\r\n\r\n") else {
            panic!("no page");
        };
        let text = String::from_utf8(response).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("\r\nContent-Type: text/html; charset=utf-8\r\n"));
        assert!(text.contains("\r\nContent-Length: 11\r\n"));
        assert!(text.contains("connect-src 'self'"));
        assert!(text.ends_with("\r\n\r\n<p>page</p>"));
        assert_eq!(
            status("GET /?v=2 HTTP/1.0\r\n\r\n"),
            200,
            "a query is ignored"
        );
    }

    #[test]
    fn upgrade_answers_101_with_the_rfc_accept_value() {
        let Outcome::Upgrade(response) = outcome(UPGRADE) else {
            panic!("no upgrade");
        };
        let text = String::from_utf8(response).unwrap();
        assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(text.contains("\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(text.contains("\r\nUpgrade: websocket\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn other_paths_are_404_and_other_methods_405() {
        assert_eq!(status("GET /index.html HTTP/1.1\r\n\r\n"), 404);
        assert_eq!(status("GET /ws/ HTTP/1.1\r\n\r\n"), 404);
        assert_eq!(status("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"), 405);
        assert_eq!(status("HEAD / HTTP/1.1\r\n\r\n"), 405);
        assert_eq!(status(&UPGRADE.replace("GET", "PUT")), 405);
        let Outcome::Refused { response, .. } = outcome("DELETE /ws HTTP/1.1\r\n\r\n") else {
            panic!()
        };
        assert!(String::from_utf8(response)
            .unwrap()
            .contains("\r\nAllow: GET\r\n"));
    }

    #[test]
    fn a_bad_upgrade_is_400_and_a_wrong_version_426() {
        assert_eq!(status("GET /ws HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
        assert_eq!(status(&UPGRADE.replace("HTTP/1.1", "HTTP/1.0")), 400);
        assert_eq!(
            status(&UPGRADE.replace("Upgrade: websocket", "Upgrade: h2c")),
            400
        );
        assert_eq!(
            status(&UPGRADE.replace("keep-alive, Upgrade", "close")),
            400
        );
        assert_eq!(
            status(&UPGRADE.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ=")),
            400
        );
        assert_eq!(status(&UPGRADE.replace("Sec-WebSocket-Key", "X-Key")), 400);
        assert_eq!(status(&UPGRADE.replace("Version: 13", "Version: 8")), 426);
    }

    #[test]
    fn header_names_and_tokens_are_case_insensitive() {
        let head = UPGRADE
            .replace("Upgrade: websocket", "upgrade: WebSocket")
            .replace("Connection: keep-alive, Upgrade", "CONNECTION: upgrade");
        assert_eq!(status(&head), 101);
    }

    #[test]
    fn not_http_is_400() {
        assert_eq!(status("\x16\x03\x01\x02\x00\x01\x00\x01\x03\x03"), 400);
        assert_eq!(status("hello there\r\n\r\n"), 400);
        assert_eq!(status("GET / SPDY/3\r\n\r\n"), 400);
    }

    #[test]
    fn head_over_8_kib_is_400_and_up_to_8_kib_waits() {
        let start = "GET / HTTP/1.1\r\nX-Pad: ";
        let mut head = String::from(start);
        head.push_str(&"a".repeat(MAX_REQUEST_HEAD - start.len()));
        assert_eq!(head.len(), MAX_REQUEST_HEAD);
        assert_eq!(read_head(head.as_bytes(), b""), Head::Partial);
        head.push('a');
        assert_eq!(status(&head), 400);

        // A complete head of exactly 8 KiB is fine; one byte more is not.
        let end = "\r\n\r\n";
        let mut head = String::from(start);
        head.push_str(&"a".repeat(MAX_REQUEST_HEAD - start.len() - end.len()));
        head.push_str(end);
        assert_eq!(status(&head), 200);
        let mut head = String::from(start);
        head.push_str(&"a".repeat(MAX_REQUEST_HEAD - start.len() - end.len() + 1));
        head.push_str(end);
        assert_eq!(status(&head), 400);
    }

    #[test]
    fn a_partial_head_waits() {
        for cut in 0..UPGRADE.len() {
            assert_eq!(
                read_head(&UPGRADE.as_bytes()[..cut], b""),
                Head::Partial,
                "{cut}"
            );
        }
    }
}
