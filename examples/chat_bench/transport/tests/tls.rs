//! `tls` and `wss` against servers with a self-signed certificate.

use super::*;
use std::sync::atomic::AtomicU32;

/// A self-signed certificate for localhost and 127.0.0.1: the server's
/// configuration and the certificate's PEM.
fn certificate() -> (Arc<rustls::ServerConfig>, String) {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let made = rcgen::generate_simple_self_signed(names).expect("certificate");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![made.cert.der().clone()], key)
        .expect("server config");
    (Arc::new(config), pem(made.cert.der()))
}

/// A certificate's PEM text.
fn pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = text
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// Writes `pem` to a file of its own in the temporary directory.
fn pem_file(pem: &str) -> std::path::PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Relaxed);
    let name = format!("chat_bench-ca-{}-{n}.pem", std::process::id());
    let path = std::env::temp_dir().join(name);
    std::fs::write(&path, pem).expect("write the PEM file");
    path
}

#[tokio::test]
async fn tls_carries_lines_and_accepts_a_self_signed_certificate_by_default() {
    let (config, _) = certificate();
    let addr = server(Some(config), echo_lines);
    let (mut reader, mut writer) = connect(&args(addr, "tls", &[])).await.expect("connect");
    writer.write_all(b"over tls\n").await.expect("write");
    let mut lb = LineBuf::new(8192);
    let echo = line(&mut reader, &mut lb).await;
    assert_eq!(echo.as_deref(), Some("echo: over tls"));
}

#[tokio::test]
async fn tls_ca_trusts_that_certificate_and_no_other() {
    let (config, pem) = certificate();
    let (_, other_pem) = certificate();
    let (path, other) = (pem_file(&pem), pem_file(&other_pem));

    let addr = server(Some(config.clone()), echo_lines);
    let ca = path.to_str().expect("a UTF-8 path");
    let (mut reader, mut writer) = connect(&args(addr, "tls", &["--tls-ca", ca]))
        .await
        .expect("connect");
    writer.write_all(b"trusted\n").await.expect("write");
    let mut lb = LineBuf::new(8192);
    let echo = line(&mut reader, &mut lb).await;
    assert_eq!(echo.as_deref(), Some("echo: trusted"));

    let addr = server(Some(config), echo_lines);
    let ca = other.to_str().expect("a UTF-8 path");
    let refused = connect(&args(addr, "tls", &["--tls-ca", ca])).await;
    let error = refused.err().expect("another certificate is refused");
    assert!(error.starts_with("TLS handshake"), "{error}");
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(other);
}

#[tokio::test]
async fn wss_is_websocket_over_tls() {
    let (config, _) = certificate();
    let addr = server(Some(config), websocket);
    let (mut reader, mut writer) = connect(&args(addr, "wss", &[])).await.expect("connect");
    let mut lb = LineBuf::new(8192);
    assert_eq!(line(&mut reader, &mut lb).await.as_deref(), Some("NAME"));
    writer.write_all(b"hi\nQUIT\n").await.expect("write");
    assert_eq!(
        line(&mut reader, &mut lb).await.as_deref(),
        Some("echo: hi")
    );
    assert_eq!(line(&mut reader, &mut lb).await, None);
    assert_eq!(reader.close_code(), Some(1000));
}
