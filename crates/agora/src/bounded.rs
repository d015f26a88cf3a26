//! [`BoundedReader`]: at most a given number of bytes from a reader, then an
//! error, with a flag that says the limit was the cause. The archive and `.crate`
//! readers put it behind their gzip decoders, so a decompression bomb costs no
//! more than the limit.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

/// Yields at most `limit` bytes of `inner`; on a read past them (when `inner`
/// has more) sets the shared flag and fails.
#[derive(Debug)]
pub(crate) struct BoundedReader<R> {
    inner: R,
    remaining: u64,
    exceeded: Rc<Cell<bool>>,
}

impl<R> BoundedReader<R> {
    /// Reads `inner` up to `limit` bytes; `exceeded` turns true when it has more.
    pub(crate) fn new(inner: R, limit: u64, exceeded: Rc<Cell<bool>>) -> Self {
        Self { inner, remaining: limit, exceeded }
    }

    /// The reader inside.
    pub(crate) fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for BoundedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.remaining == 0 {
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? == 0 {
                return Ok(0);
            }
            self.exceeded.set(true);
            return Err(io::Error::other("size limit reached"));
        }
        let max = usize::try_from(self.remaining).unwrap_or(usize::MAX).min(buf.len());
        let read = self.inner.read(&mut buf[..max])?;
        self.remaining -= read as u64;
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_up_to_the_limit_then_fails_only_if_there_is_more() {
        let exceeded = Rc::new(Cell::new(false));
        let mut exact = BoundedReader::new(&b"abcd"[..], 4, Rc::clone(&exceeded));
        let mut out = Vec::new();
        exact.read_to_end(&mut out).unwrap();
        assert_eq!((out.as_slice(), exceeded.get()), (&b"abcd"[..], false));
        let mut over = BoundedReader::new(&b"abcde"[..], 4, Rc::clone(&exceeded));
        assert!(over.read_to_end(&mut Vec::new()).is_err());
        assert!(exceeded.get());
    }
}
