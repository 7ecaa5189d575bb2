//! The TCP examples as real processes: `tcp_server` (first line, flags,
//! signals, logs; its TLS and WebSocket listeners in `examples/transports.rs`)
//! and `tcp_client` with piped standard input, against a `tcp_server`
//! process or an in-process server. Every wait is bounded, and every child
//! process is killed when its test ends, passed or failed (`examples/process.rs`).

mod common;
#[cfg(all(feature = "tls", feature = "websocket"))]
#[path = "examples/openssl.rs"]
mod openssl;
#[path = "examples/process.rs"]
mod process;
#[cfg(all(feature = "tls", feature = "websocket"))]
#[path = "examples/transports.rs"]
mod transports;

use std::net::{SocketAddr, TcpListener};
use std::process::Command;

use common::{Client, TestServer, IO_MODES};
use process::{example, Proc, ServerProc};

/// Every `--io` mode of `tcp_server`; each server test runs over all of them.
const SERVER_IO: &[&str] = &["threads", "events"];

/// A `tcp_client` process with the given flags and piped standard input.
fn client(flags: &[&str]) -> Proc {
    let mut command = Command::new(example("tcp_client"));
    command.args(flags).env_remove("RUST_LOG");
    Proc::spawn("tcp_client", command)
}

/// A `tcp_client` process with `--addr` for `addr` and the extra flags.
fn client_at(addr: SocketAddr, flags: &[&str]) -> Proc {
    let addr = addr.to_string();
    let mut all = vec!["--addr", addr.as_str()];
    all.extend_from_slice(flags);
    client(&all)
}

// ---------------------------------------------------------------------------
// tcp_server
// ---------------------------------------------------------------------------

#[test]
fn server_prints_its_address_first_and_greets_with_name() {
    for io in SERVER_IO {
        let server = ServerProc::start(io, &[]);
        let mut client = Client::connect(server.addr);
        client.expect("NAME");
    }
}

#[test]
fn server_max_clients_flag_refuses_the_extra_connection() {
    for io in SERVER_IO {
        let server = ServerProc::start(io, &["--max-clients", "1"]);
        let mut first = Client::connect(server.addr);
        first.expect("NAME");
        let mut second = Client::connect(server.addr);
        second.expect("Server is full.");
        second.expect_closed();
    }
}

#[test]
fn server_max_line_flag_limits_lines() {
    for io in SERVER_IO {
        let server = ServerProc::start(io, &["--max-line", "8"]);
        let mut ana = server.join("ana");
        ana.send_line("123456789");
        ana.expect("Line too long (max 8 bytes).");
        ana.send_line("12345678");
        ana.expect("ana: 12345678");
    }
}

#[test]
fn server_refuses_limits_that_cannot_work_together() {
    // 100 bytes cannot hold one 4096-byte line: every member would be
    // dropped on its first long line. The server says so and exits 1.
    let mut command = Command::new(example("tcp_server"));
    command
        .args(["--addr", "127.0.0.1:0", "--queue-bytes", "100"])
        .env_remove("RUST_LOG");
    let mut server = Proc::spawn("tcp_server --queue-bytes 100", command);
    server.expect_stdout_end();
    server.expect_exit(1);
    let stderr = server.stderr();
    assert!(
        stderr.contains("queue_bytes is 100") && stderr.contains("max_line 4096"),
        "stderr: {stderr}"
    );
}

#[test]
fn server_queue_bytes_flag_takes_the_smallest_queue_that_works() {
    for io in SERVER_IO {
        // 185 bytes hold one longest line for 16-byte client lines (a
        // 32-character name, 16 carriage returns sent as U+FFFD).
        let server = ServerProc::start(io, &["--max-line", "16", "--queue-bytes", "185"]);
        let mut ana = server.join("ana");
        let mut bob = server.join("bob");
        ana.expect("bob has joined the chat.");
        ana.send_line("\\w bob short");
        bob.expect("priv(ana): short");
        ana.expect_nothing_pending();
    }
}

#[test]
fn server_takes_the_largest_name_timeout_as_never() {
    for io in SERVER_IO {
        let server = ServerProc::start(io, &["--name-timeout", "18446744073709551615"]);
        let mut silent = Client::connect(server.addr);
        silent.expect("NAME");
        // The server survived the deadline arithmetic: it still serves.
        let mut ana = server.join("ana");
        ana.send_line("hi");
        ana.expect("ana: hi");
    }
}

#[test]
fn server_name_timeout_flag_closes_a_silent_connection() {
    for io in SERVER_IO {
        let server = ServerProc::start(io, &["--name-timeout", "1"]);
        let mut client = Client::connect(server.addr);
        client.expect("NAME");
        client.expect("Timed out waiting for a name.");
        client.expect_closed();
    }
}

/// Sends `signal` to a server with a member, and checks the shutdown.
fn check_shutdown_on(signal: &str) {
    for io in SERVER_IO {
        let mut server = ServerProc::start(io, &[]);
        let mut ana = server.join("ana");
        server.proc.signal(signal);
        ana.expect("Server is shutting down.");
        ana.expect_closed();
        server.proc.expect_exit(0);
    }
}

#[test]
fn server_shuts_down_on_sigterm() {
    check_shutdown_on("TERM");
}

#[test]
fn server_shuts_down_on_sigint() {
    check_shutdown_on("INT");
}

#[test]
fn server_never_logs_private_messages() {
    for io in SERVER_IO {
        let secrets = [
            format!("s3cret-to-bob-{io}-7f2a"),
            format!("s3cret-to-nobody-{io}-91c4"),
            format!("s3cret-to-self-{io}-e05d"),
        ];
        let mut server = ServerProc::start_with_log(io, &[], Some("debug"));
        let mut ana = server.join("ana");
        let mut bob = server.join("bob");
        ana.expect("bob has joined the chat.");

        ana.send_line(&format!("\\w bob {}", secrets[0]));
        bob.expect(&format!("priv(ana): {}", secrets[0]));
        ana.send_line(&format!("\\w nobody {}", secrets[1]));
        ana.expect("User 'nobody' not found.");
        ana.send_line(&format!("\\w ana {}", secrets[2]));
        ana.expect(&format!("priv(ana): {}", secrets[2]));

        server.proc.signal("TERM");
        ana.expect("Server is shutting down.");
        bob.expect("Server is shutting down.");
        server.proc.expect_exit(0);
        let log = server.proc.stderr();
        // The example's own log line: the log was written, and read whole.
        assert!(log.contains("tcp_server"), "expected log lines: {log:?}");
        for secret in &secrets {
            assert!(!log.contains(secret), "the log holds {secret:?}:\n{log}");
        }
    }
}

// ---------------------------------------------------------------------------
// tcp_client
// ---------------------------------------------------------------------------

#[test]
fn client_with_addr_and_name_chats_then_quits_at_end_of_input() {
    for &io in IO_MODES {
        let server = TestServer::start(io);
        let mut bob = server.join("bob");
        let mut ana = client_at(server.addr, &["--name", "ana"]);
        ana.write_stdin("hello\n  inner  spaces \n");
        ana.close_stdin();
        ana.expect_lines(&[
            "NAME",
            "Welcome to the chat, ana!",
            "ana has joined the chat.",
            "ana: hello",
            "ana:   inner  spaces ",
        ]);
        ana.expect_stdout_end();
        ana.expect_exit(0);
        bob.expect("ana has joined the chat.");
        bob.expect("ana: hello");
        bob.expect("ana:   inner  spaces ");
        bob.expect("ana has left the chat.");
        bob.expect_nothing_pending();
    }
}

#[test]
fn client_against_a_server_process() {
    for io in SERVER_IO {
        let server = ServerProc::start(io, &[]);
        let mut bob = server.join("bob");
        let mut ana = client_at(server.addr, &["--name", "ana"]);
        ana.write_stdin("hi bob\n\\w bob psst\n");
        ana.close_stdin();
        ana.expect_lines(&[
            "NAME",
            "Welcome to the chat, ana!",
            "ana has joined the chat.",
            "ana: hi bob",
        ]);
        ana.expect_stdout_end();
        ana.expect_exit(0);
        bob.expect("ana has joined the chat.");
        bob.expect("ana: hi bob");
        bob.expect("priv(ana): psst");
        bob.expect("ana has left the chat.");
    }
}

#[test]
fn client_asks_for_a_missing_name() {
    for &io in IO_MODES {
        let server = TestServer::start(io);
        let mut bob = server.join("bob");
        let mut ana = client_at(server.addr, &[]);
        ana.write_stdin("ana\nhello\n");
        ana.close_stdin();
        ana.expect_lines(&[
            "Enter your name:",
            "NAME",
            "Welcome to the chat, ana!",
            "ana has joined the chat.",
            "ana: hello",
        ]);
        ana.expect_stdout_end();
        ana.expect_exit(0);
        bob.expect("ana has joined the chat.");
        bob.expect("ana: hello");
        bob.expect("ana has left the chat.");
    }
}

#[test]
fn client_asks_for_a_missing_address() {
    for &io in IO_MODES {
        let server = TestServer::start(io);
        let mut ana = client(&[]);
        ana.write_stdin(&format!("127.0.0.1\n{}\nana\nhello\n", server.addr.port()));
        ana.close_stdin();
        ana.expect_lines(&[
            "Enter server IP address:",
            "Enter server port:",
            "Enter your name:",
            "NAME",
            "Welcome to the chat, ana!",
            "ana has joined the chat.",
            "ana: hello",
        ]);
        ana.expect_stdout_end();
        ana.expect_exit(0);
    }
}

#[test]
fn client_exits_with_1_when_its_flag_name_is_taken() {
    for &io in IO_MODES {
        let server = TestServer::start(io);
        let mut first = server.join("ana");
        // Standard input stays open: the rejection alone ends the client.
        let mut ana = client_at(server.addr, &["--name", "ana"]);
        ana.expect_lines(&["NAME", "Name 'ana' is already taken."]);
        ana.expect_stdout_end();
        ana.expect_exit(1);
        first.expect_nothing_pending();
    }
}

#[test]
fn client_exits_with_1_when_its_flag_name_is_invalid() {
    for &io in IO_MODES {
        let server = TestServer::start(io);
        let mut ana = client_at(server.addr, &["--name", "\\ana"]);
        ana.expect_lines(&[
            "NAME",
            "Invalid name: names have 1 to 32 characters, no spaces, none of : ( ) , and do not start with '\\'.",
        ]);
        ana.expect_stdout_end();
        ana.expect_exit(1);
    }
}

#[test]
fn client_asks_again_when_its_typed_name_is_taken() {
    for &io in IO_MODES {
        let server = TestServer::start(io);
        let mut first = server.join("ana");
        let mut bea = client_at(server.addr, &[]);
        // All at once: the second line must be taken as the next name, not
        // sent as chat.
        bea.write_stdin("ana\nbea\nhello\n");
        bea.close_stdin();
        bea.expect_lines(&[
            "Enter your name:",
            "NAME",
            "Name 'ana' is already taken.",
            "NAME",
            "Enter your name:",
            "Welcome to the chat, bea!",
            "bea has joined the chat.",
            "bea: hello",
        ]);
        bea.expect_stdout_end();
        bea.expect_exit(0);
        first.expect("bea has joined the chat.");
        first.expect("bea: hello");
        first.expect("bea has left the chat.");
        first.expect_nothing_pending();
    }
}

#[test]
fn client_quits_when_input_ends_with_no_name_to_send() {
    for &io in IO_MODES {
        let server = TestServer::start(io);
        let mut first = server.join("ana");
        let mut other = client_at(server.addr, &[]);
        other.write_stdin("ana\n");
        other.close_stdin();
        other.expect_lines(&[
            "Enter your name:",
            "NAME",
            "Name 'ana' is already taken.",
            "NAME",
            "Enter your name:",
        ]);
        other.expect_stdout_end();
        other.expect_exit(0);
        first.expect_nothing_pending();
        server.wait_members(1);
    }
}

#[test]
fn client_exits_with_0_when_the_server_shuts_down_while_it_waits_on_input() {
    for &io in IO_MODES {
        let server = TestServer::start(io);
        let mut ana = client_at(server.addr, &["--name", "ana"]);
        ana.expect_lines(&[
            "NAME",
            "Welcome to the chat, ana!",
            "ana has joined the chat.",
        ]);
        // Standard input stays open.
        server.trigger_shutdown();
        ana.expect_lines(&["Server is shutting down."]);
        ana.expect_stdout_end();
        ana.expect_exit(0);
        assert!(ana.stdin.is_some(), "standard input was kept open");
    }
}

#[test]
fn client_exits_with_1_when_it_cannot_connect() {
    // A port that was just free: nothing listens there any more.
    let addr = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind 127.0.0.1:0");
    let mut ana = client_at(addr, &["--name", "ana"]);
    ana.expect_stdout_end();
    ana.expect_exit(1);
    let error = ana.stderr();
    assert!(!error.is_empty(), "a message on standard error");
}
