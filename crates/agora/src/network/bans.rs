//! Enforcing bans: reputation decides who is banned and until when
//! ([`crate::reputation`]); this task blocks and unblocks those peers in the
//! swarm, and lifts bans whose time ran out. It holds no policy of its own.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use agora_net::{NetworkHandle, PeerId};
use tokio::sync::broadcast::error::RecvError;

use crate::reputation::BanChange;
use crate::services::Services;

/// How often expired bans are lifted.
const BAN_CHECK_INTERVAL: Duration = Duration::from_secs(15);

/// Blocks every peer banned now (bans survive restarts), then starts the task
/// that follows reputation's ban changes.
pub(super) async fn enforce(services: &Arc<Services>, handle: &NetworkHandle) {
    // Subscribed before the catch-up, so no ban falls between the two.
    let changes = services.reputation.ban_changes();
    let mut blocked = HashSet::new();
    resync(&services.reputation.banned(), &mut blocked, handle).await;
    services.tasks.spawn(run(services.clone(), handle.clone(), changes, blocked));
}

/// Makes the swarm's blocks match `banned`: blocks the new ones, unblocks the
/// ones whose ban ended. `blocked` is what this task blocked (at most the banned
/// peers, so bounded by reputation's own table).
async fn resync(banned: &[PeerId], blocked: &mut HashSet<PeerId>, handle: &NetworkHandle) {
    let now: HashSet<PeerId> = banned.iter().copied().collect();
    for peer in blocked.difference(&now) {
        handle.set_blocked(*peer, false).await;
    }
    for peer in now.difference(blocked) {
        handle.set_blocked(*peer, true).await;
    }
    *blocked = now;
}

async fn run(
    services: Arc<Services>,
    handle: NetworkHandle,
    mut changes: tokio::sync::broadcast::Receiver<BanChange>,
    mut blocked: HashSet<PeerId>,
) {
    let mut ticks = tokio::time::interval(BAN_CHECK_INTERVAL);
    loop {
        tokio::select! {
            () = services.cancel.cancelled() => break,
            _ = ticks.tick() => services.reputation.expire_bans().await,
            change = changes.recv() => match change {
                Ok(BanChange::Banned(peer)) => {
                    blocked.insert(peer);
                    handle.set_blocked(peer, true).await;
                }
                Ok(BanChange::Lifted(peer)) => {
                    blocked.remove(&peer);
                    handle.set_blocked(peer, false).await;
                }
                Err(RecvError::Lagged(missed)) => {
                    // Fell behind: the banned set itself is the truth.
                    tracing::warn!(missed, "ban changes lagged; re-reading every ban");
                    resync(&services.reputation.banned(), &mut blocked, &handle).await;
                }
                Err(RecvError::Closed) => break,
            },
        }
    }
}
