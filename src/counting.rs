//! A writer that counts the bytes it passes on: how much of a response or
//! an archive went out, for offsets and the access log.

use std::io::{self, Write};

pub struct Counting<W> {
    pub inner: W,
    pub count: u64,
}

impl<W> Counting<W> {
    pub fn new(inner: W) -> Self {
        Counting { inner, count: 0 }
    }
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
