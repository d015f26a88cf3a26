//! Wire formats of Agora's request-response protocols and gossip messages.
//!
//! Every request and response is one frame: a big-endian `u32` length and that
//! many payload bytes. Each protocol bounds its frames (a peer announcing a
//! larger frame is cut off before anything is allocated), and payloads are
//! decoded strictly: a bad tag, a truncated field or trailing bytes is an error.
//! Signed records travel as their canonical signed bytes
//! (`SignedManifest::to_bytes`, `SignedPackageIndex::to_bytes`); the receiver
//! verifies them, this module does not.

use std::io;
use std::marker::PhantomData;

use agora_core::{ArtifactInfo, Digest, PackageName, PublicKey};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use libp2p::request_response::Codec;

/// The artifact-chunk protocol.
pub const ARTIFACT_PROTOCOL: StreamProtocol = StreamProtocol::new("/agora/artifact/1.0.0");
/// The catalog-sync protocol.
pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/agora/sync/1.0.0");
/// The search fan-out protocol.
pub const SEARCH_PROTOCOL: StreamProtocol = StreamProtocol::new("/agora/search/1.0.0");

/// Largest chunk request frame.
const MAX_CHUNK_REQUEST: usize = 64;
/// Largest chunk response frame: the largest chunk plus its tag.
const MAX_CHUNK_RESPONSE: usize = ArtifactInfo::MAX_CHUNK_SIZE as usize + 16;
/// Largest sync request frame.
const MAX_SYNC_REQUEST: usize = 256;
/// Largest sync response frame.
pub const MAX_SYNC_RESPONSE: usize = 8 * 1024 * 1024;
/// Largest gossip announcement.
pub const MAX_ANNOUNCEMENT: usize = 1024 * 1024;
/// Most entries in one sync page.
pub const MAX_SYNC_PAGE: u16 = 512;
/// Largest search request frame.
pub const MAX_SEARCH_REQUEST: usize = 4 * 1024;
/// Largest search response frame.
pub const MAX_SEARCH_RESPONSE: usize = 4 * 1024 * 1024;
/// Most hits one search request may ask for.
pub const MAX_SEARCH_RESULTS: u16 = 100;
/// Longest search text, in bytes.
pub const MAX_SEARCH_TEXT: usize = 256;
/// Most values in one search filter (categories or tags).
pub const MAX_SEARCH_FILTERS: usize = 8;
/// Longest filter value, in bytes.
const MAX_FILTER_VALUE: usize = 64;

/// A message type with a strict binary form.
pub trait Wire: Sized + Send {
    /// Encodes.
    fn encode(&self) -> Vec<u8>;
    /// Decodes, rejecting anything malformed.
    fn decode(bytes: &[u8]) -> Result<Self, String>;
}

/// Asks a provider for one chunk of an artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRequest {
    /// The artifact.
    pub digest: Digest,
    /// Which chunk, from 0.
    pub index: u32,
}

/// A provider's answer to a [`ChunkRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkResponse {
    /// The chunk's bytes (to be verified against the manifest by the receiver).
    Data(Vec<u8>),
    /// The provider does not hold that artifact.
    NotFound,
    /// The artifact has no chunk with that index.
    OutOfRange,
    /// The provider cannot serve now; try another.
    Unavailable,
}

/// Asks a peer for a page of its catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRequest {
    /// Start after this package name (`None`: from the beginning).
    pub after: Option<PackageName>,
    /// Most packages wanted.
    pub limit: u16,
}

/// One package in a [`SyncResponse`]: its signed index and signed manifests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncEntry {
    /// `SignedPackageIndex` bytes.
    pub index: Vec<u8>,
    /// `SignedManifest` bytes, one per version the peer holds.
    pub manifests: Vec<Vec<u8>>,
}

/// A page of a peer's catalog.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncResponse {
    /// Packages in name order.
    pub entries: Vec<SyncEntry>,
    /// Where the next page starts, or `None` at the end.
    pub next: Option<PackageName>,
}

/// Asks a peer to search its own catalog.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchRequest {
    /// Free text (at most [`MAX_SEARCH_TEXT`] bytes).
    pub text: String,
    /// Category filters (at most [`MAX_SEARCH_FILTERS`], each 1–64 bytes).
    pub categories: Vec<String>,
    /// Tag filters (at most [`MAX_SEARCH_FILTERS`], each 1–64 bytes).
    pub tags: Vec<String>,
    /// Only packages owned by this key.
    pub publisher: Option<PublicKey>,
    /// Most hits wanted, 1 to [`MAX_SEARCH_RESULTS`].
    pub limit: u16,
}

/// One hit in a [`SearchResponse`]: the package's signed index and the signed
/// manifest of its default version, for the asker to verify and store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchEntry {
    /// `SignedPackageIndex` bytes.
    pub index: Vec<u8>,
    /// `SignedManifest` bytes.
    pub manifest: Vec<u8>,
}

/// A peer's hits, best first, at most the request's `limit`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchResponse {
    /// The hits.
    pub entries: Vec<SearchEntry>,
}

/// A gossip announcement on the `agora/v1/announce` topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announcement {
    /// A new version: its signed manifest and the index that lists it.
    Publish {
        /// `SignedManifest` bytes.
        manifest: Vec<u8>,
        /// `SignedPackageIndex` bytes.
        index: Vec<u8>,
    },
    /// An index update (yank or unyank).
    Index {
        /// `SignedPackageIndex` bytes.
        index: Vec<u8>,
    },
    /// Proof that an owner signed two different indexes with one sequence.
    Equivocation {
        /// `agora_core::Equivocation` bytes.
        proof: Vec<u8>,
    },
}

impl Wire for ChunkRequest {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(36);
        out.extend_from_slice(self.digest.as_bytes());
        out.extend_from_slice(&self.index.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut reader = Reader::new(bytes);
        let digest = Digest::from_bytes(reader.array()?);
        let index = reader.u32()?;
        reader.finish()?;
        Ok(Self { digest, index })
    }
}

impl Wire for ChunkResponse {
    fn encode(&self) -> Vec<u8> {
        match self {
            Self::Data(bytes) => {
                let mut out = Vec::with_capacity(bytes.len() + 1);
                out.push(0);
                out.extend_from_slice(bytes);
                out
            }
            Self::NotFound => vec![1],
            Self::OutOfRange => vec![2],
            Self::Unavailable => vec![3],
        }
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        match bytes.split_first() {
            Some((0, data)) => Ok(Self::Data(data.to_vec())),
            Some((1, [])) => Ok(Self::NotFound),
            Some((2, [])) => Ok(Self::OutOfRange),
            Some((3, [])) => Ok(Self::Unavailable),
            Some((tag, _)) => Err(format!("unknown chunk response tag {tag} or trailing bytes")),
            None => Err("empty chunk response".into()),
        }
    }
}

impl Wire for SyncRequest {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        write_opt_name(&mut out, self.after.as_ref());
        out.extend_from_slice(&self.limit.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut reader = Reader::new(bytes);
        let after = reader.opt_name()?;
        let limit = u16::from_be_bytes(reader.array()?);
        reader.finish()?;
        if limit == 0 || limit > MAX_SYNC_PAGE {
            return Err(format!("sync page limit {limit} is outside 1..={MAX_SYNC_PAGE}"));
        }
        Ok(Self { after, limit })
    }
}

impl Wire for SyncResponse {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        write_opt_name(&mut out, self.next.as_ref());
        write_len(&mut out, self.entries.len());
        for entry in &self.entries {
            write_bytes(&mut out, &entry.index);
            write_len(&mut out, entry.manifests.len());
            for manifest in &entry.manifests {
                write_bytes(&mut out, manifest);
            }
        }
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut reader = Reader::new(bytes);
        let next = reader.opt_name()?;
        let count = reader.count(usize::from(MAX_SYNC_PAGE))?;
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            let index = reader.bytes()?.to_vec();
            let manifest_count = reader.count(10_000)?;
            let manifests =
                (0..manifest_count).map(|_| reader.bytes().map(<[u8]>::to_vec)).collect::<Result<_, _>>()?;
            entries.push(SyncEntry { index, manifests });
        }
        reader.finish()?;
        Ok(Self { entries, next })
    }
}

impl Wire for SearchRequest {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        write_bytes(&mut out, self.text.as_bytes());
        for values in [&self.categories, &self.tags] {
            write_len(&mut out, values.len());
            for value in values {
                write_bytes(&mut out, value.as_bytes());
            }
        }
        match &self.publisher {
            None => out.push(0),
            Some(key) => {
                out.push(1);
                out.extend_from_slice(key.as_bytes());
            }
        }
        out.extend_from_slice(&self.limit.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut reader = Reader::new(bytes);
        let text = reader.string(MAX_SEARCH_TEXT, "search text")?;
        let mut filters = [Vec::new(), Vec::new()];
        for (values, what) in filters.iter_mut().zip(["category", "tag"]) {
            let count = reader.count(MAX_SEARCH_FILTERS)?;
            for _ in 0..count {
                let value = reader.string(MAX_FILTER_VALUE, what)?;
                if value.is_empty() {
                    return Err(format!("empty {what} filter"));
                }
                values.push(value);
            }
        }
        let [categories, tags] = filters;
        let publisher = match reader.array::<1>()?[0] {
            0 => None,
            1 => Some(PublicKey::from_bytes(&reader.array()?).map_err(|error| error.to_string())?),
            tag => return Err(format!("bad option tag {tag}")),
        };
        let limit = u16::from_be_bytes(reader.array()?);
        reader.finish()?;
        if limit == 0 || limit > MAX_SEARCH_RESULTS {
            return Err(format!("search limit {limit} is outside 1..={MAX_SEARCH_RESULTS}"));
        }
        Ok(Self { text, categories, tags, publisher, limit })
    }
}

impl Wire for SearchResponse {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        write_len(&mut out, self.entries.len());
        for entry in &self.entries {
            write_bytes(&mut out, &entry.index);
            write_bytes(&mut out, &entry.manifest);
        }
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut reader = Reader::new(bytes);
        let count = reader.count(usize::from(MAX_SEARCH_RESULTS))?;
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            let index = reader.bytes()?.to_vec();
            let manifest = reader.bytes()?.to_vec();
            entries.push(SearchEntry { index, manifest });
        }
        reader.finish()?;
        Ok(Self { entries })
    }
}

impl Wire for Announcement {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Self::Publish { manifest, index } => {
                out.push(0);
                write_bytes(&mut out, manifest);
                write_bytes(&mut out, index);
            }
            Self::Index { index } => {
                out.push(1);
                write_bytes(&mut out, index);
            }
            Self::Equivocation { proof } => {
                out.push(2);
                write_bytes(&mut out, proof);
            }
        }
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut reader = Reader::new(bytes);
        let announcement = match reader.array::<1>()?[0] {
            0 => Self::Publish { manifest: reader.bytes()?.to_vec(), index: reader.bytes()?.to_vec() },
            1 => Self::Index { index: reader.bytes()?.to_vec() },
            2 => Self::Equivocation { proof: reader.bytes()?.to_vec() },
            tag => return Err(format!("unknown announcement tag {tag}")),
        };
        reader.finish()?;
        Ok(announcement)
    }
}

/// An inbound request as the codec decoded it. Garbage is not an I/O error (which
/// libp2p would only log): it reaches the actor, which counts it against the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming<T> {
    /// A well-formed request.
    Valid(T),
    /// Bytes that did not decode, or a frame over the limit, with the reason.
    Invalid(String),
}

/// A request-response codec for one protocol: bounded length-prefixed frames
/// holding [`Wire`] messages.
#[derive(Debug)]
pub struct FrameCodec<Req, Resp> {
    max_request: usize,
    max_response: usize,
    _types: PhantomData<fn() -> (Req, Resp)>,
}

impl<Req, Resp> Clone for FrameCodec<Req, Resp> {
    fn clone(&self) -> Self {
        Self { max_request: self.max_request, max_response: self.max_response, _types: PhantomData }
    }
}

impl<Req, Resp> FrameCodec<Req, Resp> {
    const fn new(max_request: usize, max_response: usize) -> Self {
        Self { max_request, max_response, _types: PhantomData }
    }
}

/// The artifact-chunk codec.
pub type ChunkCodec = FrameCodec<ChunkRequest, ChunkResponse>;
/// The catalog-sync codec.
pub type SyncCodec = FrameCodec<SyncRequest, SyncResponse>;
/// The search codec.
pub type SearchCodec = FrameCodec<SearchRequest, SearchResponse>;

impl Default for ChunkCodec {
    fn default() -> Self {
        Self::new(MAX_CHUNK_REQUEST, MAX_CHUNK_RESPONSE)
    }
}

impl Default for SyncCodec {
    fn default() -> Self {
        Self::new(MAX_SYNC_REQUEST, MAX_SYNC_RESPONSE)
    }
}

impl Default for SearchCodec {
    fn default() -> Self {
        Self::new(MAX_SEARCH_REQUEST, MAX_SEARCH_RESPONSE)
    }
}

impl<Req: Wire + 'static, Resp: Wire + 'static> Codec for FrameCodec<Req, Resp> {
    type Protocol = StreamProtocol;
    type Request = Incoming<Req>;
    type Response = Resp;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Incoming<Req>> {
        let frame = match read_frame(io, self.max_request).await {
            Ok(frame) => frame,
            Err(error) if error.kind() == io::ErrorKind::InvalidData => {
                return Ok(Incoming::Invalid(error.to_string()));
            }
            Err(error) => return Err(error),
        };
        Ok(match Req::decode(&frame) {
            Ok(request) => Incoming::Valid(request),
            Err(reason) => Incoming::Invalid(reason),
        })
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Resp> {
        let frame = read_frame(io, self.max_response).await?;
        Resp::decode(&frame).map_err(invalid_data)
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Incoming<Req>,
    ) -> io::Result<()> {
        match request {
            Incoming::Valid(request) => write_frame(io, &request.encode(), self.max_request).await,
            Incoming::Invalid(reason) => Err(io::Error::new(io::ErrorKind::InvalidInput, reason)),
        }
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: Resp,
    ) -> io::Result<()> {
        write_frame(io, &response.encode(), self.max_response).await
    }
}

fn invalid_data(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
    let mut length = [0u8; 4];
    io.read_exact(&mut length).await?;
    let length = u32::from_be_bytes(length) as usize;
    if length > max {
        return Err(invalid_data(format!("frame of {length} bytes exceeds the limit of {max}")));
    }
    let mut frame = vec![0u8; length];
    io.read_exact(&mut frame).await?;
    Ok(frame)
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, frame: &[u8], max: usize) -> io::Result<()> {
    if frame.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("frame of {} bytes exceeds the limit of {max}", frame.len()),
        ));
    }
    io.write_all(&(frame.len() as u32).to_be_bytes()).await?;
    io.write_all(frame).await?;
    io.close().await
}

fn write_len(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&(len as u32).to_be_bytes());
}

fn write_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

fn write_opt_name(out: &mut Vec<u8>, name: Option<&PackageName>) {
    match name {
        None => out.push(0),
        Some(name) => {
            out.push(1);
            write_bytes(out, name.as_str().as_bytes());
        }
    }
}

struct Reader<'a> {
    input: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(input: &'a [u8]) -> Self {
        Self { input }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.input.len() < n {
            return Err(format!("truncated: needed {n} bytes, {} left", self.input.len()));
        }
        let (head, tail) = self.input.split_at(n);
        self.input = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn count(&mut self, max: usize) -> Result<usize, String> {
        let count = self.u32()? as usize;
        if count > max || count > self.input.len() {
            return Err(format!("count {count} is over the limit or longer than the message"));
        }
        Ok(count)
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn string(&mut self, max: usize, what: &str) -> Result<String, String> {
        let bytes = self.bytes()?;
        if bytes.len() > max {
            return Err(format!("{what} of {} bytes exceeds the limit of {max}", bytes.len()));
        }
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
    }

    fn opt_name(&mut self) -> Result<Option<PackageName>, String> {
        match self.array::<1>()?[0] {
            0 => Ok(None),
            1 => {
                let text = std::str::from_utf8(self.bytes()?).map_err(|_| "package name is not UTF-8".to_owned())?;
                PackageName::parse(text).map(Some).map_err(|error| error.to_string())
            }
            tag => Err(format!("bad option tag {tag}")),
        }
    }

    fn finish(self) -> Result<(), String> {
        if self.input.is_empty() { Ok(()) } else { Err(format!("{} trailing bytes", self.input.len())) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let request = ChunkRequest { digest: Digest::of(b"x"), index: 7 };
        assert_eq!(ChunkRequest::decode(&request.encode()), Ok(request));
        for response in [
            ChunkResponse::Data(vec![1, 2, 3]),
            ChunkResponse::NotFound,
            ChunkResponse::OutOfRange,
            ChunkResponse::Unavailable,
        ] {
            assert_eq!(ChunkResponse::decode(&response.encode()), Ok(response));
        }
        let sync = SyncRequest { after: Some("abc".parse().unwrap()), limit: 10 };
        assert_eq!(SyncRequest::decode(&sync.encode()), Ok(sync));
        let page = SyncResponse {
            entries: vec![SyncEntry { index: vec![1; 10], manifests: vec![vec![2; 5], vec![3; 6]] }],
            next: Some("zzz".parse().unwrap()),
        };
        assert_eq!(SyncResponse::decode(&page.encode()), Ok(page));
        let announcement = Announcement::Publish { manifest: vec![1, 2], index: vec![3] };
        assert_eq!(Announcement::decode(&announcement.encode()), Ok(announcement));
        let search = SearchRequest {
            text: "json parser".into(),
            categories: vec!["encoding".into()],
            tags: vec!["serde".into(), "fast".into()],
            publisher: Some(agora_core::SecretKey::generate().public_key()),
            limit: 100,
        };
        assert_eq!(SearchRequest::decode(&search.encode()), Ok(search));
        let plain = SearchRequest { limit: 1, ..SearchRequest::default() };
        assert_eq!(SearchRequest::decode(&plain.encode()), Ok(plain));
        let hits = SearchResponse { entries: vec![SearchEntry { index: vec![1; 4], manifest: vec![2; 7] }] };
        assert_eq!(SearchResponse::decode(&hits.encode()), Ok(hits));
        assert_eq!(SearchResponse::decode(&SearchResponse::default().encode()), Ok(SearchResponse::default()));
    }

    #[test]
    fn search_requests_are_bounded() {
        let request = |limit: u16| SearchRequest { limit, ..SearchRequest::default() };
        assert!(SearchRequest::decode(&request(0).encode()).is_err());
        assert!(SearchRequest::decode(&request(101).encode()).is_err());
        let long = SearchRequest { text: "x".repeat(MAX_SEARCH_TEXT + 1), ..request(1) };
        assert!(SearchRequest::decode(&long.encode()).unwrap_err().contains("exceeds the limit"));
        let many = SearchRequest { tags: vec!["t".into(); MAX_SEARCH_FILTERS + 1], ..request(1) };
        assert!(SearchRequest::decode(&many.encode()).is_err());
        let empty = SearchRequest { categories: vec![String::new()], ..request(1) };
        assert!(SearchRequest::decode(&empty.encode()).is_err());
        let mut trailing = request(5).encode();
        trailing.push(0);
        assert!(SearchRequest::decode(&trailing).is_err());
        // The largest well-formed request fits in one request frame.
        let largest = SearchRequest {
            text: "x".repeat(MAX_SEARCH_TEXT),
            categories: vec!["c".repeat(MAX_FILTER_VALUE); MAX_SEARCH_FILTERS],
            tags: vec!["t".repeat(MAX_FILTER_VALUE); MAX_SEARCH_FILTERS],
            publisher: Some(agora_core::SecretKey::generate().public_key()),
            limit: MAX_SEARCH_RESULTS,
        };
        assert!(largest.encode().len() <= MAX_SEARCH_REQUEST);
        let too_many = {
            let mut out = Vec::new();
            write_len(&mut out, usize::from(MAX_SEARCH_RESULTS) + 1);
            out.extend(std::iter::repeat_n(0u8, 8 * 101));
            out
        };
        assert!(SearchResponse::decode(&too_many).is_err());
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(ChunkRequest::decode(&[0; 35]).is_err());
        assert!(ChunkRequest::decode(&[0; 37]).is_err());
        assert!(ChunkResponse::decode(&[]).is_err());
        assert!(ChunkResponse::decode(&[9]).is_err());
        assert!(SyncRequest::decode(&[1, 0, 0, 0, 3, b'A', b'B', b'C', 0, 1]).is_err());
        assert!(SyncRequest::decode(&[0, 0, 0]).is_err());
        assert!(SyncResponse::decode(&[0, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(Announcement::decode(&[7]).is_err());
        assert!(Announcement::decode(&[1, 0, 0, 0, 9, 1]).is_err());
    }

    #[tokio::test]
    async fn oversized_frames_are_refused_before_allocation() {
        let mut codec = ChunkCodec::default();
        let mut reader = futures::io::Cursor::new(vec![0xff, 0xff, 0xff, 0xff]);
        let request = codec.read_request(&ARTIFACT_PROTOCOL, &mut reader).await.unwrap();
        assert!(matches!(request, Incoming::Invalid(reason) if reason.contains("exceeds the limit")));
        let mut reader = futures::io::Cursor::new(vec![0, 0, 0, 3, 1, 2, 3]);
        let request = codec.read_request(&ARTIFACT_PROTOCOL, &mut reader).await.unwrap();
        assert!(matches!(request, Incoming::Invalid(_)));
    }
}
