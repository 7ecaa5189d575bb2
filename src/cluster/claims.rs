//! Name claims in the names bucket: create-if-absent, so of two nodes asking
//! for one name at once exactly one wins; and their release.
//!
//! A name whose holder has left (its leave applied here) or whose node is
//! dead is taken over with a compare-and-set on the entry's revision, so the
//! name is free from the moment the leave notice can be read, even before
//! the holder's node has deleted the key.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::kv::{CreateErrorKind, Operation, UpdateErrorKind};
use bytes::Bytes;

use super::bridge::{Claim, Ctx};
use super::event::{LinkEvent, Refusal};
use super::names::{name_key, NodeId};

const PAUSE: Duration = Duration::from_millis(50);

/// The value of a claimed name: its node, its member, the name as given.
fn owner_value(node: &NodeId, member: u64, name: &str) -> Bytes {
    Bytes::from(format!("{node}\n{member}\n{name}"))
}

/// The node and member a names-bucket value names.
pub(crate) fn owner(value: &[u8]) -> Option<(NodeId, u64)> {
    let text = std::str::from_utf8(value).ok()?;
    let mut parts = text.splitn(3, '\n');
    let node = NodeId::parse(parts.next()?)?;
    let member = parts.next()?.parse().ok()?;
    Some((node, member))
}

enum Outcome {
    Won(u64),
    Taken,
    Undecided,
}

/// Claims `name` for `member` and tells the sink how it went.
pub(crate) async fn claim(ctx: Arc<Ctx>, member: u64, name: String) {
    let key = name_key(&name);
    let value = owner_value(&ctx.node, member, &name);
    let deadline = Instant::now() + ctx.config.give_up_after;
    let outcome = loop {
        if ctx.is_failed() {
            return;
        }
        if Instant::now() > deadline {
            break Outcome::Undecided;
        }
        match ctx.names.create(&key, value.clone()).await {
            Ok(revision) => break Outcome::Won(revision),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {
                ctx.ok();
                match holder(&ctx, &key, member).await {
                    Holder::Us(revision) => break Outcome::Won(revision),
                    Holder::Gone(revision) => {
                        match ctx.names.update(&key, value.clone(), revision).await {
                            Ok(revision) => break Outcome::Won(revision),
                            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => continue,
                            Err(e) => {
                                log::debug!("room {}: take-over retried: {e}", ctx.config.room)
                            }
                        }
                    }
                    Holder::Other => break Outcome::Taken,
                    Holder::Nobody => continue,
                    Holder::Unknown => {}
                }
            }
            Err(e) => log::debug!("room {}: claim retried: {e}", ctx.config.room),
        }
        tokio::time::sleep(PAUSE).await;
    };
    let to_release = {
        let mut st = ctx.state.lock();
        // Left meanwhile, or the node is saying goodbye: give it back.
        let abandoned = st.abandoned.remove(&member) || st.closing;
        st.claiming.remove(&member);
        match outcome {
            Outcome::Won(revision) if abandoned => Some(revision),
            Outcome::Won(revision) => {
                st.claims.insert(
                    member,
                    Claim {
                        name: name.clone(),
                        key: key.clone(),
                        revision,
                        joined: false,
                    },
                );
                st.emit(LinkEvent::Claimed { member, name });
                None
            }
            _ if abandoned => None,
            Outcome::Taken => {
                st.emit(LinkEvent::Taken { member, name });
                None
            }
            Outcome::Undecided => {
                st.emit(LinkEvent::Refused {
                    member,
                    what: Refusal::Claim,
                });
                None
            }
        }
    };
    if let Some(revision) = to_release {
        release(ctx, key, revision).await;
    }
}

enum Holder {
    /// This very member (an earlier try of ours got through).
    Us(u64),
    /// A member that has left, or whose node is dead: take it over at this
    /// revision.
    Gone(u64),
    /// Someone in the room, or about to join it.
    Other,
    /// The key was deleted meanwhile.
    Nobody,
    /// NATS did not answer.
    Unknown,
}

async fn holder(ctx: &Ctx, key: &str, member: u64) -> Holder {
    let entry = match ctx.names.entry(key).await {
        Ok(Some(entry)) if entry.operation == Operation::Put => entry,
        Ok(_) => return Holder::Nobody,
        Err(_) => return Holder::Unknown,
    };
    let Some((node, held_by)) = owner(&entry.value) else {
        return Holder::Other;
    };
    if node == ctx.node && held_by == member {
        return Holder::Us(entry.revision);
    }
    let gone = ctx.dead.lock().contains(&node) || {
        let st = ctx.state.lock();
        st.roster.has_departed(&node, held_by)
    };
    if gone {
        Holder::Gone(entry.revision)
    } else {
        Holder::Other
    }
}

/// Deletes a name's key if it still holds the claim made at `revision`
/// (a later take-over is left alone). Retries until done or the link fails.
pub(crate) async fn release(ctx: Arc<Ctx>, key: String, revision: u64) {
    loop {
        if ctx.is_failed() {
            return;
        }
        match ctx.names.delete_expect_revision(&key, Some(revision)).await {
            Ok(()) => return,
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => return,
            Err(e) => log::debug!("room {}: release retried: {e}", ctx.config.room),
        }
        tokio::time::sleep(PAUSE).await;
    }
}
