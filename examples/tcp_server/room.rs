//! `tcp_server`'s room: the in-process room (`--history`).

use std::sync::Arc;

use chatcore::room::Room;
use chatcore::ChatRoom;

/// The flags that choose the room.
#[derive(Debug, clap::Args)]
pub struct RoomArgs {
    /// Public lines replayed to each newcomer, right after its welcome.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub history: usize,
}

/// The room the server serves.
pub struct ServerRoom {
    room: Room,
}

impl ServerRoom {
    /// Makes the room the flags ask for.
    pub fn open(args: &RoomArgs) -> Result<ServerRoom, String> {
        Ok(ServerRoom {
            room: Arc::new(ChatRoom::with_history(args.history)).into(),
        })
    }

    /// The room, for the server.
    pub fn room(&self) -> Room {
        self.room.clone()
    }
}
