//! The canonical binary encoding that signatures cover and that crosses the wire.
//!
//! Every encoded value starts with a domain tag naming its type and format version
//! (`agora/manifest/v1`), so a signature over one kind of record can never be
//! replayed as another. Integers are big-endian, strings and byte strings carry a
//! `u32` length, lists carry a `u32` count, options a `0`/`1` byte. Decoding is
//! strict: bounded lengths, no trailing bytes, no out-of-range flags.

use crate::{Digest, Error, PublicKey, Result};

/// Upper bound on any single string or byte string, to stop hostile length prefixes.
const MAX_FIELD_LEN: usize = 1 << 20;

pub(crate) struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    pub(crate) fn new(domain: &str) -> Self {
        let mut encoder = Self { buf: Vec::with_capacity(256) };
        encoder.str(domain);
        encoder
    }

    pub(crate) fn u8(&mut self, value: u8) {
        self.buf.push(value);
    }

    pub(crate) fn u32(&mut self, value: u32) {
        self.buf.extend_from_slice(&value.to_be_bytes());
    }

    pub(crate) fn u64(&mut self, value: u64) {
        self.buf.extend_from_slice(&value.to_be_bytes());
    }

    pub(crate) fn bool(&mut self, value: bool) {
        self.u8(u8::from(value));
    }

    pub(crate) fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    pub(crate) fn str(&mut self, value: &str) {
        self.len(value.len());
        self.buf.extend_from_slice(value.as_bytes());
    }

    pub(crate) fn opt_str(&mut self, value: Option<&str>) {
        match value {
            None => self.u8(0),
            Some(text) => {
                self.u8(1);
                self.str(text);
            }
        }
    }

    pub(crate) fn strs<S: AsRef<str>>(&mut self, values: &[S]) {
        self.len(values.len());
        for value in values {
            self.str(value.as_ref());
        }
    }

    pub(crate) fn digest(&mut self, digest: &Digest) {
        self.raw(digest.as_bytes());
    }

    pub(crate) fn public_key(&mut self, key: &PublicKey) {
        self.raw(key.as_bytes());
    }

    pub(crate) fn len(&mut self, len: usize) {
        // Every length we encode was bounded by validation far below u32::MAX.
        self.u32(u32::try_from(len).unwrap_or(u32::MAX));
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.buf
    }
}

pub(crate) struct Decoder<'a> {
    what: &'static str,
    input: &'a [u8],
}

impl<'a> Decoder<'a> {
    pub(crate) fn new(what: &'static str, domain: &str, input: &'a [u8]) -> Result<Self> {
        let mut decoder = Self { what, input };
        let tag = decoder.str()?;
        if tag != domain {
            return Err(decoder.error(format!("expected domain tag `{domain}`, found `{}`", tag.escape_debug())));
        }
        Ok(decoder)
    }

    pub(crate) fn error(&self, reason: impl Into<String>) -> Error {
        Error::Decode { what: self.what, reason: reason.into() }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.input.len() < n {
            return Err(self.error(format!("truncated: needed {n} more bytes, {} left", self.input.len())));
        }
        let (head, tail) = self.input.split_at(n);
        self.input = tail;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub(crate) fn bool(&mut self) -> Result<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(self.error(format!("expected a 0 or 1 flag, found {other}"))),
        }
    }

    /// A `u32` count, checked against `max` and against the bytes left (each
    /// element takes at least `min_element_len` bytes).
    pub(crate) fn count(&mut self, max: usize, min_element_len: usize) -> Result<usize> {
        let count = self.u32()? as usize;
        if count > max {
            return Err(self.error(format!("count {count} exceeds the limit of {max}")));
        }
        if count.saturating_mul(min_element_len) > self.input.len() {
            return Err(self.error(format!("count {count} does not fit in the {} bytes left", self.input.len())));
        }
        Ok(count)
    }

    pub(crate) fn str(&mut self) -> Result<&'a str> {
        let len = self.count(MAX_FIELD_LEN, 1)?;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes).map_err(|_| self.error("string is not valid UTF-8"))
    }

    pub(crate) fn string(&mut self) -> Result<String> {
        self.str().map(str::to_owned)
    }

    pub(crate) fn opt_string(&mut self) -> Result<Option<String>> {
        if self.bool()? { self.string().map(Some) } else { Ok(None) }
    }

    pub(crate) fn strings(&mut self, max: usize) -> Result<Vec<String>> {
        let count = self.count(max, 4)?;
        (0..count).map(|_| self.string()).collect()
    }

    pub(crate) fn digest(&mut self) -> Result<Digest> {
        Ok(Digest::from_bytes(self.array()?))
    }

    pub(crate) fn public_key(&mut self) -> Result<PublicKey> {
        Ok(PublicKey::from_bytes(&self.array()?)?)
    }

    pub(crate) fn finish(self) -> Result<()> {
        if self.input.is_empty() { Ok(()) } else { Err(self.error(format!("{} trailing bytes", self.input.len()))) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_lengths_are_rejected_before_allocating() {
        let mut encoder = Encoder::new("t");
        encoder.u32(u32::MAX);
        let bytes = encoder.finish();
        let mut decoder = Decoder::new("test", "t", &bytes).unwrap();
        assert!(decoder.strings(10).is_err());
        let mut decoder = Decoder::new("test", "t", &bytes).unwrap();
        assert!(decoder.str().is_err());
    }

    #[test]
    fn wrong_domain_and_trailing_bytes_are_rejected() {
        let mut encoder = Encoder::new("a");
        encoder.u8(7);
        let bytes = encoder.finish();
        assert!(Decoder::new("test", "b", &bytes).is_err());
        let decoder = Decoder::new("test", "a", &bytes).unwrap();
        assert!(decoder.finish().is_err());
    }
}
