//! `compress=zlib-stream`: one zlib context per connection, every message ending with
//! a sync flush (`00 00 ff ff`), as Discord sends it.

use flate2::{Compress, Compression, FlushCompress};

/// The compressor of one connection.
pub(crate) struct ZlibStream {
    context: Compress,
}

impl ZlibStream {
    pub(crate) fn new() -> Self {
        Self {
            // Fast level: the cost that matters for benchmarks is the client's inflate.
            context: Compress::new(Compression::fast(), true),
        }
    }

    /// Compresses one gateway message, continuing the connection's stream.
    pub(crate) fn compress(&mut self, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(input.len() / 2 + 64);
        let start = self.context.total_in();
        loop {
            let consumed = usize::try_from(self.context.total_in() - start).expect("fits usize");
            self.context
                .compress_vec(&input[consumed..], &mut out, FlushCompress::Sync)
                .expect("deflate on a healthy context cannot fail");
            let consumed = usize::try_from(self.context.total_in() - start).expect("fits usize");
            if consumed == input.len() && out.len() < out.capacity() {
                return out;
            }
            out.reserve(out.capacity().max(64));
        }
    }
}

#[cfg(test)]
mod tests {
    use flate2::{Decompress, FlushDecompress};

    use super::*;

    #[test]
    fn messages_share_one_stream_and_end_with_sync_flush() {
        let mut zlib = ZlibStream::new();
        let mut inflate = Decompress::new(true);
        let big = "x".repeat(100_000);
        for text in [
            r#"{"t":null,"s":null,"op":10,"d":{}}"#,
            big.as_str(),
            "again",
        ] {
            let compressed = zlib.compress(text.as_bytes());
            assert!(compressed.ends_with(&[0, 0, 0xff, 0xff]));
            let mut out = Vec::with_capacity(text.len() + 64);
            inflate
                .decompress_vec(&compressed, &mut out, FlushDecompress::Sync)
                .unwrap();
            assert_eq!(out, text.as_bytes());
        }
    }
}
