mod common;

use common::{TestServer, IO_MODES};

#[test]
fn two_members_chat() {
    for &io in IO_MODES {
        let server = TestServer::start(io);
        let mut ana = server.join("ana");
        let mut bob = server.join("bob");
        ana.expect("bob has joined the chat.");
        ana.send_line("hello");
        ana.expect("ana: hello");
        bob.expect("ana: hello");
        bob.expect_nothing_pending();
    }
}
