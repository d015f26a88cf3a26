//! Link shaping for simulations and tests: [`LinkConditions`] and the wrapper
//! that applies them to a raw connection, below Noise, so every protocol on the
//! connection feels them.
//!
//! The wrapper delays what it *reads*: each chunk taken from the inner stream is
//! stamped `arrival + latency` and handed on only once that instant has passed
//! (one tokio timer per connection, no extra task). With the same conditions on
//! both nodes, each direction of a link gets the latency once, so a round trip
//! costs twice the one-way latency. Loss on a reliable stream shows up as a
//! retransmission: with probability `loss` a chunk is held another
//! [`RETRANSMISSION_PENALTY`], and everything behind it waits too (head-of-line
//! blocking, like TCP). A chunk is whatever one read of the inner stream returns,
//! at most 16 KiB.
//!
//! Not a network emulator: no bandwidth limit, no reordering, no dropped
//! connections. Held bytes are bounded by [`MAX_HELD_BYTES`]; past that the
//! wrapper stops reading and the sender feels backpressure, so a shaped link
//! carries at most about `MAX_HELD_BYTES / latency` bytes a second.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};

use crate::handle::NetworkError;

/// Extra delay of a chunk that was "lost": one retransmission timeout (Linux
/// TCP's minimum RTO).
pub const RETRANSMISSION_PENALTY: Duration = Duration::from_millis(200);
/// Most bytes a shaped connection holds back before it stops reading.
pub const MAX_HELD_BYTES: usize = 256 * 1024;
/// Longest one-way latency accepted.
pub const MAX_LATENCY: Duration = Duration::from_secs(60);
/// Largest read from the inner stream: one chunk.
const READ_CHUNK: usize = 16 * 1024;

/// Injected one-way latency and loss of every link of a node — a knob for
/// simulations and tests, off by default.
///
/// Loss decisions come from a xorshift generator seeded per connection from a
/// process-wide counter: reproducible for a given order of connections, no OS
/// randomness.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConditions {
    latency: Duration,
    loss: f64,
}

impl LinkConditions {
    /// `latency` added to everything this node receives (at most
    /// [`MAX_LATENCY`]); `loss` the probability (0 to 1) that a received chunk
    /// waits an extra [`RETRANSMISSION_PENALTY`].
    pub fn new(latency: Duration, loss: f64) -> Result<Self, NetworkError> {
        let invalid = |reason: String| NetworkError::InvalidLink(reason);
        if latency > MAX_LATENCY {
            return Err(invalid(format!("latency must be at most {MAX_LATENCY:?}, found {latency:?}")));
        }
        if !(0.0..=1.0).contains(&loss) {
            return Err(invalid(format!("loss must be a fraction from 0 to 1, found {loss}")));
        }
        Ok(Self { latency, loss })
    }

    /// The one-way latency.
    pub fn latency(&self) -> Duration {
        self.latency
    }

    /// The probability of a retransmission penalty per chunk.
    pub fn loss(&self) -> f64 {
        self.loss
    }

    /// Whether these conditions change anything.
    fn is_active(&self) -> bool {
        !self.latency.is_zero() || self.loss > 0.0
    }
}

/// A raw connection with [`LinkConditions`] applied to what it reads; writes
/// pass straight through. Without conditions it only forwards.
pub(crate) struct Shaped<S> {
    inner: S,
    shaping: Option<Box<Shaping>>,
}

impl<S> Shaped<S> {
    pub(crate) fn new(inner: S, conditions: Option<LinkConditions>) -> Self {
        let shaping = conditions.filter(LinkConditions::is_active).map(|conditions| Box::new(Shaping::new(conditions)));
        Self { inner, shaping }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Shaped<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let Some(shaping) = this.shaping.as_deref_mut() else {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        shaping.fill(&mut this.inner, cx);
        shaping.release(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Shaped<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// Seeds of successive connections' loss generators.
static CONNECTIONS: AtomicU64 = AtomicU64::new(0);

/// The read side's state: chunks read but not yet due, in arrival order.
struct Shaping {
    conditions: LinkConditions,
    /// xorshift64 state, never zero.
    random: u64,
    held: VecDeque<Held>,
    held_bytes: usize,
    /// Bytes of the front chunk already handed out.
    offset: usize,
    /// Release time of the newest held entry: no later chunk leaves before it.
    last_release: Option<Instant>,
    /// The inner stream ended (or failed); its end is queued.
    inner_done: bool,
    /// Wakes the reader when the front chunk is due.
    timer: Option<Pin<Box<Sleep>>>,
}

struct Held {
    release: Instant,
    payload: Payload,
}

enum Payload {
    Data(Vec<u8>),
    /// End of the stream, or the error it failed with.
    End(Option<io::Error>),
}

impl Shaping {
    fn new(conditions: LinkConditions) -> Self {
        let seed = CONNECTIONS.fetch_add(1, Ordering::Relaxed);
        Self {
            conditions,
            random: splitmix64(seed) | 1,
            held: VecDeque::new(),
            held_bytes: 0,
            offset: 0,
            last_release: None,
            inner_done: false,
            timer: None,
        }
    }

    /// Reads from `inner` until it has nothing more, ends, or the held bytes
    /// reach [`MAX_HELD_BYTES`]. When it stops on `Pending`, `inner` will wake `cx`.
    fn fill<S: AsyncRead + Unpin>(&mut self, inner: &mut S, cx: &mut Context<'_>) {
        let mut chunk = [0u8; READ_CHUNK];
        while !self.inner_done && self.held_bytes < MAX_HELD_BYTES {
            match Pin::new(&mut *inner).poll_read(cx, &mut chunk) {
                Poll::Pending => break,
                Poll::Ready(Ok(0)) => self.end(None),
                Poll::Ready(Ok(read)) => {
                    let penalty = if self.lost() { RETRANSMISSION_PENALTY } else { Duration::ZERO };
                    self.held_bytes += read;
                    self.hold(Payload::Data(chunk[..read].to_vec()), penalty);
                }
                Poll::Ready(Err(error)) if error.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(error)) => self.end(Some(error)),
            }
        }
    }

    fn end(&mut self, error: Option<io::Error>) {
        self.inner_done = true;
        self.hold(Payload::End(error), Duration::ZERO);
    }

    fn hold(&mut self, payload: Payload, penalty: Duration) {
        let mut release = Instant::now() + self.conditions.latency + penalty;
        // In order: nothing overtakes a delayed chunk.
        if let Some(last) = self.last_release {
            release = release.max(last);
        }
        self.last_release = Some(release);
        self.held.push_back(Held { release, payload });
    }

    /// Hands out the front chunk if it is due; else arms the timer for it.
    fn release(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        loop {
            let Some(front) = self.held.front_mut() else {
                // Nothing held: `fill` left the inner stream registered with `cx`.
                return if self.inner_done { Poll::Ready(Ok(0)) } else { Poll::Pending };
            };
            if front.release > Instant::now() {
                let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(front.release)));
                if timer.deadline() != front.release {
                    timer.as_mut().reset(front.release);
                }
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => continue,
                    Poll::Pending => return Poll::Pending,
                }
            }
            return match &mut front.payload {
                Payload::Data(bytes) => {
                    let copied = (bytes.len() - self.offset).min(buf.len());
                    buf[..copied].copy_from_slice(&bytes[self.offset..self.offset + copied]);
                    self.offset += copied;
                    if self.offset == bytes.len() {
                        self.held_bytes -= bytes.len();
                        self.offset = 0;
                        self.held.pop_front();
                    }
                    Poll::Ready(Ok(copied))
                }
                Payload::End(error) => {
                    let error = error.take();
                    self.held.pop_front();
                    Poll::Ready(error.map_or(Ok(0), Err))
                }
            };
        }
    }

    /// Whether the next chunk pays the retransmission penalty.
    fn lost(&mut self) -> bool {
        if self.conditions.loss <= 0.0 {
            return false;
        }
        self.random ^= self.random << 13;
        self.random ^= self.random >> 7;
        self.random ^= self.random << 17;
        // The top 53 bits as a fraction in [0, 1).
        let fraction = (self.random >> 11) as f64 / (1u64 << 53) as f64;
        fraction < self.conditions.loss
    }
}

fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use std::time::Instant as StdInstant;

    use futures::{AsyncReadExt, AsyncWriteExt, FutureExt};
    use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};

    use super::*;

    type Pipe = Compat<tokio::io::DuplexStream>;

    /// A writer end and a shaped reader end of an in-memory pipe.
    fn pipe(latency_ms: u64, loss: f64) -> (Pipe, Shaped<Pipe>) {
        let (writer, reader) = tokio::io::duplex(4 << 20);
        let conditions = LinkConditions::new(Duration::from_millis(latency_ms), loss).unwrap();
        (writer.compat(), Shaped::new(reader.compat(), Some(conditions)))
    }

    /// Writes `message` and times how long until all of it was read back.
    async fn one_way(writer: &mut Pipe, reader: &mut Shaped<Pipe>, message: &[u8]) -> Duration {
        let started = StdInstant::now();
        writer.write_all(message).await.unwrap();
        let mut received = vec![0; message.len()];
        reader.read_exact(&mut received).await.unwrap();
        assert_eq!(received, message);
        started.elapsed()
    }

    #[tokio::test]
    async fn bytes_arrive_intact_in_order_and_not_before_the_latency() {
        let (mut writer, mut reader) = pipe(40, 0.0);
        let message: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let sender = tokio::spawn(async move {
            for piece in message.chunks(7_000) {
                writer.write_all(piece).await.unwrap();
            }
            writer.close().await.unwrap();
            message
        });
        let started = StdInstant::now();
        let mut first = [0u8; 1];
        reader.read_exact(&mut first).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(40), "the first byte came after {:?}", started.elapsed());
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).await.unwrap();
        let message = sender.await.unwrap();
        assert_eq!(first[0], message[0]);
        assert!(rest == message[1..], "the bytes changed on the way");
    }

    #[tokio::test]
    async fn no_loss_adds_no_penalty_and_full_loss_adds_it_to_every_chunk() {
        let (mut writer, mut reader) = pipe(30, 0.0);
        let clean = one_way(&mut writer, &mut reader, b"ping").await;
        assert!(clean >= Duration::from_millis(30), "{clean:?}");
        assert!(clean < Duration::from_millis(30) + RETRANSMISSION_PENALTY / 2, "loss 0 delayed it: {clean:?}");

        let (mut writer, mut reader) = pipe(30, 1.0);
        let lossy = one_way(&mut writer, &mut reader, b"ping").await;
        assert!(lossy >= Duration::from_millis(30) + RETRANSMISSION_PENALTY, "loss 1 did not delay it: {lossy:?}");
    }

    #[tokio::test]
    async fn loss_alone_shapes_the_link() {
        let (mut writer, mut reader) = pipe(0, 1.0);
        let lossy = one_way(&mut writer, &mut reader, b"ping").await;
        assert!(lossy >= RETRANSMISSION_PENALTY, "{lossy:?}");
    }

    #[tokio::test]
    async fn a_full_hold_stops_reading_until_the_reader_catches_up() {
        let (mut writer, mut reader) = pipe(10_000, 0.0);
        writer.write_all(&vec![7; 2 << 20]).await.unwrap();
        let mut buf = [0u8; 1024];
        assert!(reader.read(&mut buf).now_or_never().is_none(), "nothing is due before the latency");
        let shaping = reader.shaping.as_deref().unwrap();
        assert!(shaping.held_bytes >= MAX_HELD_BYTES, "it read only {} bytes", shaping.held_bytes);
        assert!(shaping.held_bytes < MAX_HELD_BYTES + READ_CHUNK, "it held {} bytes", shaping.held_bytes);
        assert!(!shaping.inner_done);
    }

    #[tokio::test]
    async fn without_conditions_it_only_forwards() {
        let (writer, reader) = tokio::io::duplex(1024);
        let (mut writer, mut reader) = (writer.compat(), Shaped::new(reader.compat(), None));
        assert!(reader.shaping.is_none());
        writer.write_all(b"plain").await.unwrap();
        writer.close().await.unwrap();
        let mut received = Vec::new();
        reader.read_to_end(&mut received).await.unwrap();
        assert_eq!(received, b"plain");
        let idle = LinkConditions::new(Duration::ZERO, 0.0).unwrap();
        assert!(Shaped::new((), Some(idle)).shaping.is_none(), "zero latency and loss shape nothing");
    }

    #[test]
    fn conditions_are_checked() {
        assert!(LinkConditions::new(Duration::from_millis(5), 0.5).is_ok());
        assert!(LinkConditions::new(Duration::from_millis(5), 1.5).is_err());
        assert!(LinkConditions::new(Duration::from_millis(5), -0.1).is_err());
        assert!(LinkConditions::new(Duration::from_millis(5), f64::NAN).is_err());
        assert!(LinkConditions::new(MAX_LATENCY + Duration::from_millis(1), 0.0).is_err());
    }
}
