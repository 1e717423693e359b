//! Transport compression, as Discord sends it: every gateway message continues one
//! stream per connection, so a client keeps one decompression context per connection.
//!
//! - `compress=zlib-stream`: one zlib (deflate with the 2-byte header) context, every
//!   message ends with a sync flush (`00 00 ff ff`).
//! - `compress=zstd-stream`: one zstd context, every message a flushed (never ended)
//!   chunk of one zstd frame; the connection's first message starts with the frame
//!   magic `28 b5 2f fd`. A new connection (a resume too) starts a fresh context.
//!
//! Either way each gateway message is one binary WebSocket message.

use axum::extract::ws::{Message, Utf8Bytes};
use flate2::{Compress, Compression, FlushCompress};
use zstd_safe::zstd_sys::ZSTD_EndDirective;
use zstd_safe::{CCtx, CParameter, InBuffer, OutBuffer};

/// The `compress` a client asked for in the gateway URL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Transport {
    /// No (or an unknown) `compress`: text frames.
    #[default]
    Plain,
    /// `compress=zlib-stream`.
    ZlibStream,
    /// `compress=zstd-stream`.
    ZstdStream,
}

impl Transport {
    /// Reads the `compress` query value. Discord documents only the two stream values;
    /// anything else is ignored (plain text), which is what the simulator always did.
    pub(crate) fn from_query(compress: Option<&str>) -> Self {
        match compress {
            Some("zlib-stream") => Self::ZlibStream,
            Some("zstd-stream") => Self::ZstdStream,
            _ => Self::Plain,
        }
    }
}

/// Turns one connection's outbound gateway messages into WebSocket messages.
pub(crate) enum Encoder {
    Plain,
    Zlib(ZlibStream),
    Zstd(ZstdStream),
}

impl Encoder {
    /// A fresh encoder (a new stream) for one connection.
    pub(crate) fn new(transport: Transport) -> Self {
        match transport {
            Transport::Plain => Self::Plain,
            Transport::ZlibStream => Self::Zlib(ZlibStream::new()),
            Transport::ZstdStream => Self::Zstd(ZstdStream::new()),
        }
    }

    /// One gateway message as the WebSocket message that carries it.
    pub(crate) fn encode(&mut self, text: &Utf8Bytes) -> Message {
        match self {
            Self::Plain => Message::Text(text.clone()),
            Self::Zlib(zlib) => Message::Binary(zlib.compress(text.as_bytes()).into()),
            Self::Zstd(zstd) => Message::Binary(zstd.compress(text.as_bytes()).into()),
        }
    }
}

/// The zlib compressor of one connection.
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

/// The zstd compressor of one connection.
pub(crate) struct ZstdStream {
    context: CCtx<'static>,
}

impl ZstdStream {
    pub(crate) fn new() -> Self {
        let mut context = CCtx::create();
        // Fastest standard level, as for zlib.
        context
            .set_parameter(CParameter::CompressionLevel(1))
            .expect("level 1 is valid");
        // Discord's frames announce a 256 KiB window (frame header `00 40`, seen in a
        // captured HELLO); it also bounds the context's memory to well under 1 MiB.
        context
            .set_parameter(CParameter::WindowLog(18))
            .expect("window log 18 is valid");
        Self { context }
    }

    /// Compresses one gateway message, continuing the connection's frame, and flushes
    /// so the client can decode the message without waiting for the next.
    pub(crate) fn compress(&mut self, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(input.len() / 2 + 64);
        let mut input = InBuffer::around(input);
        loop {
            let filled = out.len();
            let mut output = OutBuffer::around_pos(&mut out, filled);
            let pending = self
                .context
                .compress_stream2(&mut output, &mut input, ZSTD_EndDirective::ZSTD_e_flush)
                .expect("zstd on a healthy context cannot fail");
            // Done when the input is consumed and nothing is left in zstd's buffers.
            if pending == 0 && input.pos == input.src.len() {
                return out;
            }
            out.reserve(out.capacity().max(64));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use flate2::{Decompress, FlushDecompress};
    use zstd_safe::DCtx;

    use super::*;

    const HELLO: &str = r#"{"t":null,"s":null,"op":10,"d":{}}"#;

    #[test]
    fn zlib_messages_share_one_stream_and_end_with_sync_flush() {
        let mut zlib = ZlibStream::new();
        let mut inflate = Decompress::new(true);
        let big = "x".repeat(100_000);
        for text in [HELLO, big.as_str(), "again"] {
            let compressed = zlib.compress(text.as_bytes());
            assert!(compressed.ends_with(&[0, 0, 0xff, 0xff]));
            let mut out = Vec::with_capacity(text.len() + 64);
            inflate
                .decompress_vec(&compressed, &mut out, FlushDecompress::Sync)
                .unwrap();
            assert_eq!(out, text.as_bytes());
        }
    }

    /// Decodes one message with a context kept across messages, as twilight does.
    fn unzstd(context: &mut DCtx<'_>, message: &[u8]) -> Vec<u8> {
        let mut input = InBuffer::around(message);
        let mut out = Vec::with_capacity(message.len() * 4 + 1024);
        loop {
            let filled = out.len();
            let mut output = OutBuffer::around_pos(&mut out, filled);
            context.decompress_stream(&mut output, &mut input).unwrap();
            let full = output.pos() == output.capacity();
            if input.pos == input.src.len() && !full {
                return out;
            }
            out.reserve(out.capacity());
        }
    }

    #[test]
    fn zstd_messages_are_flushed_chunks_of_one_frame() {
        let mut zstd = ZstdStream::new();
        let mut context = DCtx::create();
        // Incompressible-ish text larger than zstd's 128 KiB block.
        let big = (0..40_000u64).fold(String::new(), |mut big, i| {
            let _ = write!(big, "{:x}", i.wrapping_mul(2_654_435_761));
            big
        });
        for (i, text) in [HELLO, big.as_str(), "again", HELLO]
            .into_iter()
            .enumerate()
        {
            let compressed = zstd.compress(text.as_bytes());
            assert_eq!(
                compressed.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]),
                i == 0,
                "only the first message opens the frame"
            );
            assert_eq!(unzstd(&mut context, &compressed), text.as_bytes());
        }
    }

    #[test]
    fn the_frame_header_is_the_one_discord_sends() {
        let hello = ZstdStream::new().compress(HELLO.as_bytes());
        // Magic, then no checksum or content size, then a 2^18 window: the first six
        // bytes of a HELLO captured from Discord (twilight's zstd test fixture).
        assert_eq!(hello[..6], [0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x40]);
    }

    #[test]
    fn every_connection_starts_its_own_stream() {
        let first = ZstdStream::new().compress(HELLO.as_bytes());
        let mut second = ZstdStream::new();
        assert_eq!(second.compress(HELLO.as_bytes()), first);
        assert!(!second.compress(HELLO.as_bytes()).starts_with(&[0x28, 0xb5]));
    }
}
