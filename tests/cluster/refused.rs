//! A line the room cannot take is never dropped silently: when the stream
//! refuses it (its storage is full), the sender gets `Message not sent: the
//! room is unavailable.` (PROTOCOL.md, "One room across servers").

use crate::common::Io;
use crate::nats::NatsServer;
use crate::nodes::{link_config, Node};

#[test]
fn a_line_the_full_stream_refuses_gets_its_sender_an_error_line() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let mut config = link_config(&nats, "full", 0);
    // A stream of 4 KiB: a few 500-byte lines fill it.
    config.max_bytes = 4096;
    let node = Node::start("a", config, Io::Events);
    let mut ana = node.join("ana");
    let text = "x".repeat(500);
    let (mut echoed, mut refused) = (0, 0);
    for k in 0..40 {
        ana.send_line(&format!("{k} {text}"));
        // Each line comes back, or is refused: never neither.
        let line = ana.line();
        if line == "Message not sent: the room is unavailable." {
            refused += 1;
            break;
        }
        assert_eq!(line, format!("ana: {k} {text}"), "line {k}");
        echoed += 1;
    }
    assert_eq!(refused, 1, "the stream never refused a line");
    assert!(echoed > 0, "the stream took no line at all");
}
