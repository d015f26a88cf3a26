//! Which providers a transfer may use, given how each is connected: direct
//! connections always; a provider reachable only through a relay only when
//! what is left to fetch fits in the relay's circuit limit. Hole punching runs
//! as soon as a relayed connection opens, so the transfer first waits (up to
//! [`DIRECT_WAIT`]) for it to give a direct connection. [`admit`] is the policy,
//! without I/O; [`usable`] asks the network and applies it.

use std::time::Duration;

use agora_net::{NetworkHandle, PeerId, PeerPath};
use futures::future::join_all;

/// How long a transfer waits for hole punching to turn a relayed connection to a
/// provider into a direct one.
pub(crate) const DIRECT_WAIT: Duration = Duration::from_secs(10);

/// What a circuit carries beyond the artifact's bytes (request and response
/// framing, identify, pings), as a fraction of the bytes plus a fixed amount.
const OVERHEAD_FRACTION: f64 = 0.02;
const OVERHEAD_BYTES: u64 = 64 * 1024;

/// Whether a provider on `path` can serve `bytes` more: `Err` says why not.
pub(crate) fn admit(peer: PeerId, path: PeerPath, bytes: u64) -> Result<(), String> {
    match path {
        PeerPath::Direct | PeerPath::NotConnected => Ok(()),
        PeerPath::Relayed { max_bytes: None, .. } => Ok(()),
        PeerPath::Relayed { relay, max_bytes: Some(limit), max_duration } => {
            let needed = bytes.saturating_add((bytes as f64 * OVERHEAD_FRACTION) as u64).saturating_add(OVERHEAD_BYTES);
            if needed <= limit {
                return Ok(());
            }
            let duration = max_duration.map_or_else(String::new, |duration| format!(" and {} s", duration.as_secs()));
            Err(format!(
                "{peer} is reachable only through relay {relay}, whose relay limit is {limit} bytes{duration} per \
                 circuit, less than the {bytes} bytes left to fetch, and hole punching gave no direct connection"
            ))
        }
    }
}

/// The providers a transfer of `bytes` more may use, in their order, and why
/// each of the others may not.
pub(crate) async fn usable(handle: &NetworkHandle, providers: Vec<PeerId>, bytes: u64) -> (Vec<PeerId>, Vec<String>) {
    let paths = join_all(providers.iter().map(|peer| handle.await_direct(*peer, DIRECT_WAIT))).await;
    let mut usable = Vec::new();
    let mut refused = Vec::new();
    for (peer, path) in providers.into_iter().zip(paths) {
        // A provider whose path is unknown is tried: the request itself will say.
        match admit(peer, path.unwrap_or(PeerPath::NotConnected), bytes) {
            Ok(()) => usable.push(peer),
            Err(reason) => refused.push(reason),
        }
    }
    (usable, refused)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn relayed(limit: Option<u64>) -> PeerPath {
        PeerPath::Relayed { relay: PeerId::random(), max_bytes: limit, max_duration: Some(Duration::from_secs(120)) }
    }

    #[test]
    fn direct_providers_serve_anything_and_relayed_ones_only_within_the_limit() {
        let peer = PeerId::random();
        assert_eq!(admit(peer, PeerPath::Direct, u64::MAX), Ok(()));
        assert_eq!(admit(peer, PeerPath::NotConnected, u64::MAX), Ok(()));
        assert_eq!(admit(peer, relayed(None), 1 << 40), Ok(()), "a relay that names no limit is tried");
        assert_eq!(admit(peer, relayed(Some(1024 * 1024)), 512 * 1024), Ok(()));
        let error = admit(peer, relayed(Some(1024 * 1024)), 2 * 1024 * 1024).unwrap_err();
        assert!(error.contains("relay limit is 1048576 bytes and 120 s per circuit"), "{error}");
        assert!(error.contains("2097152 bytes left to fetch") && error.contains(&peer.to_string()), "{error}");
        // The framing counts: an artifact of exactly the limit does not fit.
        assert!(admit(peer, relayed(Some(1024 * 1024)), 1024 * 1024).is_err());
    }
}
