mod common;

use chatcore::ServerConfig;
use common::{each_transport, TRANSPORTS};

#[test]
fn two_members_chat() {
    each_transport(TRANSPORTS, ServerConfig::default(), |server, kind| {
        let mut ana = server.join_over(kind, "ana");
        let mut bob = server.join_over(kind, "bob");
        ana.expect("bob has joined the chat.");
        ana.send_line("hello");
        ana.expect("ana: hello");
        bob.expect("ana: hello");
        bob.expect_nothing_pending();
    });
}
