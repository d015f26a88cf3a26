//! Two real network tasks over TCP on 127.0.0.1 (or memory ports): records,
//! providers, chunks, sync and gossip go through the actor and come back as
//! events and answers.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use agora_core::{ArtifactInfo, PackageMetadata, Publisher, SecretKey};
use agora_net::{
    Announcement, ChunkRequest, ChunkResponse, Multiaddr, NetworkConfig, NetworkEvent, NetworkHandle, PeerBudget,
    RecordKey, SearchEntry, SearchRequest, SearchResponse, SignatureValidator, SyncRequest, SyncResponse, Verdict,
    Wire, peer_address,
};
use tokio::sync::mpsc;
use tokio::time::timeout;

const DEADLINE: Duration = Duration::from_secs(20);

struct Peer {
    handle: NetworkHandle,
    events: mpsc::Receiver<NetworkEvent>,
    address: Multiaddr,
}

async fn start(bootstrap: Vec<Multiaddr>) -> Peer {
    start_on("/ip4/127.0.0.1/tcp/0", bootstrap).await
}

async fn start_on(listen: &str, bootstrap: Vec<Multiaddr>) -> Peer {
    start_with(listen, bootstrap, |_| {}).await
}

async fn start_with(listen: &str, bootstrap: Vec<Multiaddr>, tweak: impl FnOnce(&mut NetworkConfig)) -> Peer {
    let mut config = NetworkConfig::new(SecretKey::generate().to_bytes());
    config.listen = vec![listen.parse().unwrap()];
    config.bootstrap = bootstrap;
    tweak(&mut config);
    let (handle, events, _task) = agora_net::spawn(config, Arc::new(SignatureValidator)).await.unwrap();
    let status = handle.status().await.unwrap();
    let address = peer_address(&status.listen_addrs[0], handle.peer_id());
    Peer { handle, events, address }
}

/// Waits for the first event `pick` accepts, with a deadline.
async fn next_matching<T>(
    events: &mut mpsc::Receiver<NetworkEvent>,
    mut pick: impl FnMut(NetworkEvent) -> Option<T>,
) -> T {
    timeout(DEADLINE, async {
        loop {
            let event = events.recv().await.expect("network task alive");
            if let Some(value) = pick(event) {
                return value;
            }
        }
    })
    .await
    .expect("event before the deadline")
}

async fn wait_for<F: std::future::Future<Output = bool>>(mut condition: impl FnMut() -> F) {
    timeout(DEADLINE, async {
        while !condition().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("condition before the deadline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_chunks_sync_and_gossip_between_two_tasks() {
    let mut a = start(vec![]).await;
    let mut b = start(vec![a.address.clone()]).await;
    next_matching(&mut a.events, |e| matches!(e, NetworkEvent::PeerConnected { .. }).then_some(())).await;
    // Kademlia routes to a peer once identify told it where the peer listens.
    for peer in [&a.handle, &b.handle] {
        wait_for(|| async { peer.status().await.unwrap().routing_table_size >= 1 }).await;
    }

    // A signed index stored by A is found by B through the DHT.
    let publisher = Publisher::new(SecretKey::generate());
    let metadata = PackageMetadata::new("netpkg".parse().unwrap(), "1.0.0".parse().unwrap(), "network test");
    let content = b"artifact bytes".repeat(1000);
    let info = ArtifactInfo::compute(&content, 4096).unwrap();
    let (manifest, index) = publisher.publish(metadata, info.clone(), None, 1).unwrap();
    let key = RecordKey::Index("netpkg".parse().unwrap());
    a.handle.put_record(key.clone(), index.to_bytes()).await.unwrap();
    let found = b.handle.get_record(key).await.unwrap();
    assert_eq!(found, Some(index.to_bytes()));
    assert_eq!(b.handle.get_record(RecordKey::Index("absent".parse().unwrap())).await.unwrap(), None);

    // B finds A as the provider of the artifact and asks for a chunk; A's node answers.
    a.handle.start_providing(info.digest).await.unwrap();
    let providers = b.handle.get_providers(info.digest).await.unwrap();
    assert_eq!(providers, vec![a.handle.peer_id()]);
    let request = ChunkRequest { digest: info.digest, index: 1 };
    let asking = b.handle.clone();
    let answer = tokio::spawn(async move { asking.request_chunk(providers[0], request).await });
    let reply = next_matching(&mut a.events, |e| match e {
        NetworkEvent::ChunkRequested { request: asked, reply, .. } if asked == request => Some(reply),
        _ => None,
    })
    .await;
    a.handle.respond_chunk(reply, ChunkResponse::Data(content[4096..8192].to_vec())).await;
    assert_eq!(answer.await.unwrap().unwrap(), ChunkResponse::Data(content[4096..8192].to_vec()));

    // Sync: B asks A for a page.
    let asking = b.handle.clone();
    let peer = a.handle.peer_id();
    let answer = tokio::spawn(async move { asking.request_sync(peer, SyncRequest { after: None, limit: 10 }).await });
    let reply = next_matching(&mut a.events, |e| match e {
        NetworkEvent::SyncRequested { reply, .. } => Some(reply),
        _ => None,
    })
    .await;
    a.handle.respond_sync(reply, SyncResponse::default()).await;
    assert_eq!(answer.await.unwrap().unwrap(), SyncResponse::default());

    // Search: B asks A; A's node answers with its hit.
    let asking = b.handle.clone();
    let search = SearchRequest { text: "netpkg".into(), limit: 5, ..SearchRequest::default() };
    let sent = search.clone();
    let answer = tokio::spawn(async move { asking.request_search(peer, sent).await });
    let (asker, reply) = next_matching(&mut a.events, |e| match e {
        NetworkEvent::SearchRequested { peer, request, reply } if request == search => Some((peer, reply)),
        _ => None,
    })
    .await;
    assert_eq!(asker, b.handle.peer_id());
    let hits = SearchResponse { entries: vec![SearchEntry { index: index.to_bytes(), manifest: manifest.to_bytes() }] };
    a.handle.respond_search(reply, hits.clone()).await;
    assert_eq!(answer.await.unwrap().unwrap(), hits);

    // Gossip: an announcement from A reaches B, which must report a verdict.
    let announcement = Announcement::Publish { manifest: manifest.to_bytes(), index: index.to_bytes() };
    let data = announcement.encode();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    // The mesh needs a heartbeat or two; retry the publish until B hears it.
    let received = loop {
        let _ = a.handle.announce(data.clone()).await;
        if let Ok(Some(event)) = timeout(Duration::from_millis(500), async {
            loop {
                match b.events.recv().await {
                    Some(NetworkEvent::Announcement { id, data }) => return Some((id, data)),
                    Some(_) => continue,
                    None => return None,
                }
            }
        })
        .await
        {
            break event;
        }
        assert!(tokio::time::Instant::now() < deadline, "announcement never arrived");
    };
    assert_eq!(Announcement::decode(&received.1).unwrap(), announcement);
    assert_eq!(received.0.propagation_source(), a.handle.peer_id());
    b.handle.report_announcement(received.0, Verdict::Accept).await;

    let status = b.handle.status().await.unwrap();
    assert_eq!(status.connected_peers, vec![a.handle.peer_id()]);
    a.handle.shutdown().await;
    b.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_addresses_and_lone_nodes() {
    let lone = start(vec![]).await;
    // A lone node keeps its record locally; the put reports that no peer took it.
    let publisher = Publisher::new(SecretKey::generate());
    let metadata = PackageMetadata::new("alone".parse().unwrap(), "1.0.0".parse().unwrap(), "x");
    let info = ArtifactInfo::compute(b"x", 4096).unwrap();
    let (_, index) = publisher.publish(metadata, info, None, 1).unwrap();
    let key = RecordKey::Index("alone".parse().unwrap());
    let _ = lone.handle.put_record(key.clone(), index.to_bytes()).await;
    assert_eq!(lone.handle.get_record(key).await.unwrap(), Some(index.to_bytes()));
    assert_eq!(lone.handle.announce(vec![1, 2, 3]).await, Ok(false));

    let error = lone.handle.dial("/ip4/127.0.0.1/tcp/1".parse().unwrap()).await.unwrap_err();
    assert!(error.to_string().contains("/p2p/"), "{error}");
    let own = lone.address.clone();
    assert!(lone.handle.dial(own).await.is_err());
    let mut config = NetworkConfig::new(SecretKey::generate().to_bytes());
    config.bootstrap = vec!["/ip4/127.0.0.1/tcp/9".parse().unwrap()];
    assert!(agora_net::spawn(config, Arc::new(SignatureValidator)).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_ports_carry_lookups_and_report_their_cost() {
    let a = start_on("/memory/0", vec![]).await;
    assert!(a.address.to_string().starts_with("/memory/"), "listening on {}", a.address);
    let b = start_on("/memory/0", vec![a.address.clone()]).await;
    for peer in [&a.handle, &b.handle] {
        wait_for(|| async { peer.status().await.unwrap().routing_table_size >= 1 }).await;
    }
    let publisher = Publisher::new(SecretKey::generate());
    let metadata = PackageMetadata::new("rampkg".parse().unwrap(), "1.0.0".parse().unwrap(), "memory test");
    let (_, index) = publisher.publish(metadata, ArtifactInfo::compute(b"ram", 4096).unwrap(), None, 1).unwrap();
    let key = RecordKey::Index("rampkg".parse().unwrap());
    a.handle.put_record(key.clone(), index.to_bytes()).await.unwrap();
    let (found, stats) = b.handle.get_record_with_stats(key).await.unwrap();
    assert_eq!(found, Some(index.to_bytes()));
    assert!(stats.requests >= 1 && stats.successes >= 1, "the lookup asked nobody: {stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_over_its_peer_budget_disconnects_idle_peers_and_still_reaches_them() {
    // Gossipsub keeps every connection open, so without trimming the hub would
    // stay connected to all 20 spokes for good.
    let budget = PeerBudget { high_water: 4, low_water: 2, grace: Duration::from_millis(300) };
    let mut hub = start_with("/memory/0", vec![], |config| config.peers = budget).await;
    let mut spokes = Vec::new();
    for _ in 0..20 {
        spokes.push(start_on("/memory/0", vec![hub.address.clone()]).await);
    }
    // Down to the peers in the hub's gossip mesh, at most 12 (gossipsub's
    // mesh_n_high), which trimming spares: at least 8 disconnections.
    let mut disconnections = 0;
    timeout(DEADLINE, async {
        loop {
            while let Ok(event) = hub.events.try_recv() {
                disconnections += usize::from(matches!(event, NetworkEvent::PeerDisconnected { .. }));
            }
            if disconnections >= 8 && hub.handle.connected_peers().await.unwrap().len() <= 12 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the hub trimmed its peers before the deadline");

    // A spoke the hub let go is still a request away: the hub dials it again,
    // which counts as a new connection.
    let opened = hub.handle.connections_established();
    assert!(opened >= 20, "one connection per spoke at least, counted {opened}");
    let connected = hub.handle.connected_peers().await.unwrap();
    let trimmed = spokes.iter_mut().find(|spoke| !connected.contains(&spoke.handle.peer_id())).unwrap();
    let request = ChunkRequest { digest: agora_core::Digest::of(b"anything"), index: 0 };
    let (asking, peer) = (hub.handle.clone(), trimmed.handle.peer_id());
    let answer = tokio::spawn(async move { asking.request_chunk(peer, request).await });
    let reply = next_matching(&mut trimmed.events, |e| match e {
        NetworkEvent::ChunkRequested { reply, .. } => Some(reply),
        _ => None,
    })
    .await;
    trimmed.handle.respond_chunk(reply, ChunkResponse::NotFound).await;
    assert_eq!(answer.await.unwrap().unwrap(), ChunkResponse::NotFound);
    assert!(hub.handle.connections_established() > opened, "reaching a trimmed spoke opened no connection");
}
