//! The one check behind the request-response targets (`chunk_protocol`,
//! `sync_protocol`, `search_protocol`): each protocol's messages decoded directly
//! and through its libp2p codec (length-prefixed, bounded frames), in both
//! directions.

use std::fmt::Debug;
use std::io;

use agora_net::{Incoming, Wire};
use futures::executor::block_on;
use futures::io::Cursor;
use libp2p::StreamProtocol;
use libp2p::request_response::Codec;

use crate::Input;

/// One protocol: its codec, its name and the frame bounds it documents.
#[derive(Debug, Clone)]
pub struct Protocol {
    /// The stream protocol name passed to the codec.
    pub name: StreamProtocol,
    /// Largest request frame.
    pub max_request: usize,
    /// Largest response frame.
    pub max_response: usize,
}

/// A message that decoded, in the direction it travels.
#[derive(Debug)]
pub enum Decoded<Req, Resp> {
    /// A request.
    Request(Req),
    /// A response.
    Response(Resp),
    /// Nothing decoded.
    Nothing,
}

/// The fuzz target body. Mode byte: bit 0 picks the direction (request or
/// response), bit 1 whether the data is a bare payload or a stream read through
/// the codec (a big-endian `u32` length, then the frame).
///
/// Asserts: a payload that decodes re-encodes to exactly its bytes; the codec
/// refuses a frame over the protocol's bound (a request as `Incoming::Invalid`,
/// a response as `InvalidData`), fails a truncated one with `UnexpectedEof`, and
/// otherwise gives exactly what decoding the frame gives; what the codec writes
/// is the length prefix plus the encoding, and reads back as the same message.
/// Returns what decoded, for the target's own checks of the message's bounds.
pub fn check_protocol<C, Req, Resp>(bytes: &[u8], protocol: &Protocol) -> Decoded<Req, Resp>
where
    C: Codec<Protocol = StreamProtocol, Request = Incoming<Req>, Response = Resp> + Default,
    Req: Wire + Debug + PartialEq + Clone,
    Resp: Wire + Debug + PartialEq + Clone,
{
    let input = Input::new(bytes);
    let request = input.mode & 1 == 0;
    let framed = input.mode & 2 != 0;
    match (request, framed) {
        (true, false) => payload::<Req>(input.data).map_or(Decoded::Nothing, Decoded::Request),
        (false, false) => payload::<Resp>(input.data).map_or(Decoded::Nothing, Decoded::Response),
        (true, true) => framed_request::<C, Req, Resp>(input.data, protocol),
        (false, true) => framed_response::<C, Req, Resp>(input.data, protocol),
    }
}

fn payload<T: Wire + Debug + PartialEq>(bytes: &[u8]) -> Option<T> {
    let decoded = T::decode(bytes).ok()?;
    assert_eq!(decoded.encode(), bytes, "{decoded:?} re-encodes to other bytes");
    Some(decoded)
}

/// How a stream should read: the frame's announced length and whether it fits.
enum Frame<'a> {
    Complete(&'a [u8]),
    Oversized,
    Truncated,
}

fn frame(stream: &[u8], max: usize) -> Frame<'_> {
    let Some((length, rest)) = stream.split_first_chunk::<4>() else { return Frame::Truncated };
    let length = u32::from_be_bytes(*length) as usize;
    if length > max {
        Frame::Oversized
    } else if rest.len() < length {
        Frame::Truncated
    } else {
        Frame::Complete(&rest[..length])
    }
}

fn framed_request<C, Req, Resp>(stream: &[u8], protocol: &Protocol) -> Decoded<Req, Resp>
where
    C: Codec<Protocol = StreamProtocol, Request = Incoming<Req>, Response = Resp> + Default,
    Req: Wire + Debug + PartialEq + Clone,
{
    let mut codec = C::default();
    let read = block_on(codec.read_request(&protocol.name, &mut Cursor::new(stream)));
    match (frame(stream, protocol.max_request), read) {
        (Frame::Oversized, Ok(Incoming::Invalid(_))) => Decoded::Nothing,
        (Frame::Truncated, Err(error)) if error.kind() == io::ErrorKind::UnexpectedEof => Decoded::Nothing,
        (Frame::Complete(frame), Ok(Incoming::Valid(request))) => {
            assert_eq!(Req::decode(frame).as_ref(), Ok(&request), "the codec and the decoder disagree");
            let mut written = Cursor::new(Vec::new());
            block_on(codec.write_request(&protocol.name, &mut written, Incoming::Valid(request.clone())))
                .expect("a decoded request can be written");
            check_written(written.into_inner(), &request.encode());
            Decoded::Request(request)
        }
        (Frame::Complete(frame), Ok(Incoming::Invalid(_))) => {
            assert!(Req::decode(frame).is_err(), "the codec refused a request that decodes");
            Decoded::Nothing
        }
        (_, read) => panic!("unexpected codec result for a request stream: {read:?}"),
    }
}

fn framed_response<C, Req, Resp>(stream: &[u8], protocol: &Protocol) -> Decoded<Req, Resp>
where
    C: Codec<Protocol = StreamProtocol, Request = Incoming<Req>, Response = Resp> + Default,
    Resp: Wire + Debug + PartialEq + Clone,
{
    let mut codec = C::default();
    let read = block_on(codec.read_response(&protocol.name, &mut Cursor::new(stream)));
    match (frame(stream, protocol.max_response), read) {
        (Frame::Oversized, Err(error)) if error.kind() == io::ErrorKind::InvalidData => Decoded::Nothing,
        (Frame::Truncated, Err(error)) if error.kind() == io::ErrorKind::UnexpectedEof => Decoded::Nothing,
        (Frame::Complete(frame), Ok(response)) => {
            assert_eq!(Resp::decode(frame).as_ref(), Ok(&response), "the codec and the decoder disagree");
            let mut written = Cursor::new(Vec::new());
            block_on(codec.write_response(&protocol.name, &mut written, response.clone()))
                .expect("a decoded response can be written");
            let written = written.into_inner();
            check_written(written.clone(), &response.encode());
            let again = block_on(codec.read_response(&protocol.name, &mut Cursor::new(written)));
            assert_eq!(again.ok().as_ref(), Some(&response), "a written response reads back as another");
            Decoded::Response(response)
        }
        (Frame::Complete(frame), Err(error)) if error.kind() == io::ErrorKind::InvalidData => {
            assert!(Resp::decode(frame).is_err(), "the codec refused a response that decodes");
            Decoded::Nothing
        }
        (_, read) => panic!("unexpected codec result for a response stream: {read:?}"),
    }
}

fn check_written(written: Vec<u8>, payload: &[u8]) {
    let mut expected = (payload.len() as u32).to_be_bytes().to_vec();
    expected.extend_from_slice(payload);
    assert_eq!(written, expected, "the codec wrote something other than the length-prefixed encoding");
}
