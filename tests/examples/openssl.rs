//! Debian's `openssl` for the transport tests: certificates as a user
//! makes them (`openssl req`), fingerprints as `openssl x509` prints them,
//! and `openssl s_client` as a TLS line client. Every run is a child
//! process with bounded waits ([`Proc`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::process::Proc;

/// A directory of this test's own under the system's temporary directory,
/// removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("chatcore-examples-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        TempDir(dir)
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `openssl` with `args` to its end (bounded), and returns its
/// standard output; fails the test if it does not exit 0.
pub(crate) fn openssl(args: &[&str]) -> String {
    let mut command = Command::new("openssl");
    command.args(args);
    let mut proc = Proc::spawn(&format!("openssl {}", args[0]), command);
    proc.close_stdin();
    let mut out = String::new();
    while let Some(line) = proc.next_line() {
        out.push_str(&line);
        out.push('\n');
    }
    let status = proc.wait_exit();
    assert!(
        status.success(),
        "openssl {args:?}: {status}: {}",
        proc.stderr()
    );
    out
}

/// A self-signed certificate for `localhost` and `127.0.0.1` and its key
/// (ECDSA P-256), written by `openssl req` as `<stem>.crt` and `<stem>.key`.
pub(crate) fn make_certificate(dir: &TempDir, stem: &str) -> (PathBuf, PathBuf) {
    let cert = dir.path(&format!("{stem}.crt"));
    let key = dir.path(&format!("{stem}.key"));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=localhost",
        "-addext",
        "subjectAltName=DNS:localhost,IP:127.0.0.1",
        "-keyout",
        path_str(&key),
        "-out",
        path_str(&cert),
    ]);
    (cert, key)
}

pub(crate) fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}

/// The SHA-256 fingerprint `openssl x509` gives the PEM certificate(s) in
/// `pem` (the first), as `AB:CD:...`.
pub(crate) fn fingerprint_of(pem: &Path) -> String {
    let out = openssl(&[
        "x509",
        "-in",
        path_str(pem),
        "-noout",
        "-fingerprint",
        "-sha256",
    ]);
    let (_, hex) = out
        .trim()
        .split_once('=')
        .unwrap_or_else(|| panic!("openssl x509 -fingerprint printed {out:?}"));
    hex.to_ascii_uppercase()
}

/// The certificate the TLS server at `addr` presents, saved as PEM in `dir`
/// (asked of `openssl s_client`, which verifies nothing here).
pub(crate) fn served_certificate(dir: &TempDir, addr: SocketAddr) -> PathBuf {
    let out = openssl(&[
        "s_client",
        "-connect",
        &addr.to_string(),
        "-servername",
        "localhost",
    ]);
    let begin = out
        .find("-----BEGIN CERTIFICATE-----")
        .unwrap_or_else(|| panic!("no certificate in s_client's output:\n{out}"));
    let end_marker = "-----END CERTIFICATE-----";
    let end = out[begin..]
        .find(end_marker)
        .map(|i| begin + i + end_marker.len())
        .expect("the certificate's end");
    let path = dir.path("served.crt");
    std::fs::write(&path, format!("{}\n", &out[begin..end])).expect("write the certificate");
    path
}

/// `openssl s_client` to the TLS listener at `addr` with extra `flags`:
/// lines on its standard input and output, as a person would use it.
pub(crate) fn s_client(addr: SocketAddr, flags: &[&str]) -> Proc {
    let mut command = Command::new("openssl");
    command
        .args(["s_client", "-quiet", "-servername", "localhost", "-connect"])
        .arg(addr.to_string())
        .args(flags);
    Proc::spawn("openssl s_client", command)
}
