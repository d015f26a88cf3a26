//! What a transfer reports while it runs: [`TransferProgress`], sent to watchers
//! (the CLI's progress bar, the HTTP API's progress stream).

use agora_core::{ArtifactInfo, Digest};
use serde::{Deserialize, Serialize};

/// Where a transfer stands; sent to watchers (the CLI's progress bar, the API).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TransferProgress {
    /// The artifact.
    pub digest: Digest,
    /// Its size.
    pub total_bytes: u64,
    /// Bytes verified so far (including resumed ones).
    pub received_bytes: u64,
    /// Bytes that were already verified in the staging file when the transfer began.
    pub resumed_bytes: u64,
    /// Chunks in all.
    pub chunks_total: usize,
    /// Chunks verified so far.
    pub chunks_done: usize,
    /// What each provider did.
    pub providers: Vec<ProviderProgress>,
    /// The phase.
    pub state: TransferState,
}

/// One provider's part in a transfer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProviderProgress {
    /// Its peer id.
    pub peer: String,
    /// Chunks it served that verified.
    pub chunks: usize,
    /// Why it was dropped, if it was.
    pub dropped: Option<String>,
}

/// Phase of a transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "phase", content = "detail")]
pub enum TransferState {
    /// Looking for providers.
    Finding,
    /// Downloading chunks.
    Running,
    /// Checking the whole artifact.
    Verifying,
    /// Stored and verified.
    Done,
    /// Gave up.
    Failed(String),
}

impl TransferProgress {
    /// A transfer of `info` that has not started.
    pub fn new(info: &ArtifactInfo) -> Self {
        Self {
            digest: info.digest,
            total_bytes: info.size,
            received_bytes: 0,
            resumed_bytes: 0,
            chunks_total: info.chunks.len(),
            chunks_done: 0,
            providers: Vec::new(),
            state: TransferState::Finding,
        }
    }

    /// Marks the transfer done: every byte in.
    pub fn done(&mut self) {
        self.received_bytes = self.total_bytes;
        self.chunks_done = self.chunks_total;
        self.state = TransferState::Done;
    }
}
