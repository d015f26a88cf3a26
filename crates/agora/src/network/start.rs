//! Starting the network: the `agora-net` actor from the node's settings, then
//! the node's network tasks (event loop, ban enforcement, warm-up), all on the
//! services' task tracker so shutdown waits for them.

use std::sync::Arc;
use std::time::Duration;

use agora_net::{Multiaddr, NetworkConfig};

use super::{Network, bans, events, evidence, republish};
use crate::services::Services;
use crate::{Error, Result};

/// Starts the network of a node whose identity key has `identity_seed`.
pub(crate) async fn start(services: &Arc<Services>, identity_seed: [u8; 32]) -> Result<Network> {
    let settings = &services.config.network;
    let config_error = |message: String| Error::Config { origin: "network".into(), message };
    let parse = |addresses: &[String]| -> Result<Vec<Multiaddr>> {
        addresses
            .iter()
            .map(|a| a.parse().map_err(|e| config_error(format!("`{a}` is not a multiaddr: {e}"))))
            .collect()
    };
    let mut config = NetworkConfig::new(identity_seed);
    config.listen = parse(&settings.listen)?;
    config.bootstrap = parse(&settings.bootstrap)?;
    config.external_addresses = parse(&settings.external_addresses)?;
    config.relay_server = settings.relay_server;
    config.relay_limits = settings.relay.to_limits();
    config.mdns = settings.mdns;
    config.upnp = settings.upnp;
    config.query_timeout = Duration::from_millis(settings.query_timeout_ms);
    config.request_timeout = Duration::from_millis(settings.request_timeout_ms);
    config.metrics = Some(services.metrics.registry());
    config.link = settings.link;
    config.peers = agora_net::PeerBudget::new(settings.max_peers as usize);

    let (handle, events, actor) =
        agora_net::spawn(config, services.validator.clone()).await.map_err(|error| config_error(error.to_string()))?;
    // The actor ends when its handle says shut down (see `Node::shutdown`).
    services.tasks.spawn(async move {
        if let Err(error) = actor.await {
            tracing::error!(%error, "the network task failed");
        }
    });
    let network = Network {
        handle: handle.clone(),
        services: services.clone(),
        peers: Arc::new(events::PeerState::new(&services.config.network)),
    };
    tracing::info!(peer_id = %handle.peer_id(), "network started");
    bans::enforce(services, &handle).await;
    services.tasks.spawn(events::run(network.clone(), events));
    services.tasks.spawn(evidence::gossip(services.clone(), handle.clone()));
    services.tasks.spawn(republish::warm_up(services.clone(), handle));
    Ok(network)
}
