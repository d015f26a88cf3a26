//! Gossiping the equivocation proofs this node stores, so every node flags the
//! owner: a proof found here (two indexes of one sequence arrived) or received
//! from a peer is announced once, when it is first stored.

use std::sync::Arc;

use agora_net::{Announcement, NetworkHandle, Wire};
use tokio::sync::broadcast::error::RecvError;

use crate::services::Services;

/// Announces each newly stored proof until the node shuts down.
pub(super) async fn gossip(services: Arc<Services>, handle: NetworkHandle) {
    let mut stored = services.evidence.subscribe();
    loop {
        let (name, owner) = tokio::select! {
            () = services.cancel.cancelled() => break,
            next = stored.recv() => match next {
                Ok(found) => found,
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "equivocation proofs arrived faster than they could be announced");
                    continue;
                }
                Err(RecvError::Closed) => break,
            },
        };
        let store = services.store.clone();
        let (key, package) = (owner, name.clone());
        let proof = crate::blocking::run(move || store.packages().equivocation(&package, &key)).await;
        let proof = match proof {
            Ok(Some(proof)) => proof,
            Ok(None) => continue,
            Err(error) => {
                tracing::warn!(%error, package = %name, "could not read an equivocation proof back");
                continue;
            }
        };
        let announced = handle.announce(Announcement::Equivocation { proof: proof.to_bytes() }.encode()).await;
        tracing::info!(package = %name, %owner, announced = ?announced.is_ok(), "announced an equivocation proof");
    }
}
