//! The network event loop: each event the actor emits is handed, in a task of
//! its own (at most [`EVENT_SLOTS`] at once), to the part that answers it —
//! `inbound` for requests, `ingest` for announcements and records, `sync` for a
//! newly connected peer that admission lets through. The loop ends when the
//! actor stops or the node shuts down.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agora_net::{NetworkEvent, PeerId, Verdict, peer_address};
use tokio::sync::Semaphore;
use tracing::Instrument;

use super::admission::{Admission, Cooldowns, SyncAdmission, SyncSettings, SyncTicket};
use super::{Network, inbound, ingest, republish, sync};
use crate::NetworkSettings;

/// Network events handled at once.
const EVENT_SLOTS: usize = 256;
/// A peer's addresses are saved (for re-dialing at the next start) at most once
/// in this long.
const SAVE_PEER_COOLDOWN: Duration = Duration::from_secs(600);
/// Peers remembered for each cooldown.
const RECENT_PEERS: usize = 4096;

/// What the event loop remembers about peers.
#[derive(Debug)]
pub(super) struct PeerState {
    /// Whom to pull catalogs from.
    admission: Mutex<SyncAdmission<PeerId>>,
    /// Peers whose addresses were saved recently.
    saved: Mutex<Cooldowns<PeerId>>,
    connected: AtomicUsize,
    /// Set once our records were pushed to a routable peer since we were last alone.
    pushed: AtomicBool,
    /// Set while a republish runs.
    republishing: AtomicBool,
}

impl PeerState {
    pub(super) fn new(settings: &NetworkSettings) -> Self {
        let sync = SyncSettings { enabled: settings.catalog_sync, ..SyncSettings::default() };
        Self {
            admission: Mutex::new(SyncAdmission::new(sync)),
            saved: Mutex::new(Cooldowns::new(SAVE_PEER_COOLDOWN, RECENT_PEERS)),
            connected: AtomicUsize::new(0),
            pushed: AtomicBool::new(false),
            republishing: AtomicBool::new(false),
        }
    }
}

/// Handles events until the actor stops or the node shuts down.
pub(super) async fn run(network: Network, mut events: tokio::sync::mpsc::Receiver<NetworkEvent>) {
    let slots = Arc::new(Semaphore::new(EVENT_SLOTS));
    let cancel = network.services.cancel.clone();
    loop {
        let event = tokio::select! {
            () = cancel.cancelled() => break,
            event = events.recv() => match event {
                Some(event) => event,
                None => break,
            },
        };
        let permit = tokio::select! {
            () = cancel.cancelled() => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let network = network.clone();
        network.services.tasks.clone().spawn(async move {
            on_event(&network, event).await;
            drop(permit);
        });
    }
    tracing::debug!("network event loop ended");
}

async fn on_event(network: &Network, event: NetworkEvent) {
    let (services, handle) = (&network.services, &network.handle);
    match event {
        NetworkEvent::Announcement { id, data } => {
            let source = id.propagation_source();
            let verdict = ingest::judge_announcement(services, &data).await;
            if let Err(reason) = &verdict {
                ingest::strike(services, source, reason).await;
            }
            handle.report_announcement(id, verdict.unwrap_or(Verdict::Reject)).await;
        }
        NetworkEvent::ChunkRequested { peer, request, reply } => {
            async {
                let (response, outcome) = inbound::chunk(services, request).await;
                tracing::Span::current().record("outcome", outcome);
                handle.respond_chunk(reply, response).await;
            }
            .instrument(inbound_span(peer, "artifact"))
            .await;
        }
        NetworkEvent::SyncRequested { peer, request, reply } => {
            async {
                let (response, outcome) = inbound::sync_page(services, request).await;
                tracing::Span::current().record("outcome", outcome);
                handle.respond_sync(reply, response).await;
            }
            .instrument(inbound_span(peer, "sync"))
            .await;
        }
        NetworkEvent::SearchRequested { peer, request, reply } => {
            async {
                let (response, outcome) = inbound::search(services, request).await;
                tracing::Span::current().record("outcome", outcome);
                handle.respond_search(reply, response).await;
            }
            .instrument(inbound_span(peer, "search"))
            .await;
        }
        NetworkEvent::PeerConnected { peer, .. } => {
            network.peers.connected.fetch_add(1, Ordering::SeqCst);
            let score = services.reputation.score(&peer);
            let admission = lock(&network.peers.admission).admit(peer, score, services.clock.now());
            if let Admission::Admitted(ticket) = admission {
                // The sync runs in its own task: the event slot is not held meanwhile.
                let peer = ticket.peer();
                let slot = SyncSlot { peers: network.peers.clone(), ticket: Some(ticket) };
                let network = network.clone();
                services.tasks.spawn(async move {
                    sync::pull(&network.services, &network.handle, peer).await;
                    drop(slot);
                });
            }
        }
        NetworkEvent::PeerDisconnected { .. } => {
            if network.peers.connected.fetch_sub(1, Ordering::SeqCst) == 1 {
                network.peers.pushed.store(false, Ordering::SeqCst);
            }
        }
        NetworkEvent::PeerIdentified { peer, listen_addrs } => {
            // Identified peers are in the routing table: the first one after being
            // alone is where our records can go.
            // One republish at a time, however often the node finds itself alone.
            if !network.peers.pushed.swap(true, Ordering::SeqCst)
                && !network.peers.republishing.swap(true, Ordering::SeqCst)
            {
                let (network, services, handle) = (network.clone(), services.clone(), handle.clone());
                services.tasks.clone().spawn(async move {
                    republish::republish(services, handle).await;
                    network.peers.republishing.store(false, Ordering::SeqCst);
                });
            }
            // Saved for re-dialing at the next start; a peer that keeps
            // reconnecting is written once per cooldown, not per connection.
            if !lock(&network.peers.saved).claim(peer, services.clock.now()) {
                return;
            }
            let addresses: Vec<String> = listen_addrs.iter().map(|a| peer_address(a, peer).to_string()).collect();
            let (peer_id, now) = (peer.to_string(), services.unix_now());
            if let Err(error) = services.blocking(move |store| store.peers().save(&peer_id, &addresses, now)).await {
                tracing::warn!(%peer, %error, "could not remember a peer");
            }
        }
        NetworkEvent::RecordReceived { peer, key, value } => ingest::record(services, handle, peer, key, value).await,
        NetworkEvent::PeerMisbehaved { peer, reason } => ingest::strike(services, peer, &reason).await,
    }
}

/// A sync slot held by one peer's sync: given back to admission when dropped,
/// however the sync ends.
struct SyncSlot {
    peers: Arc<PeerState>,
    ticket: Option<SyncTicket<PeerId>>,
}

impl Drop for SyncSlot {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            lock(&self.peers.admission).finished(ticket);
        }
    }
}

/// The span of one inbound request; `outcome` is recorded when it is answered.
fn inbound_span(peer: PeerId, protocol: &'static str) -> tracing::Span {
    tracing::debug_span!("inbound", %peer, protocol, outcome = tracing::field::Empty)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
