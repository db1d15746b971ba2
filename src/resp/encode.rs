//! Encoding the commands turnstile itself sends upstream (service AUTH, rewritten HELLO).

use bytes::{Bytes, BytesMut};
use redis_protocol::resp2::{encode::extend_encode_borrowed, types::BorrowedFrame};

/// Encodes `args` as a RESP multibulk command.
pub fn command(args: &[&[u8]]) -> Bytes {
    let frames: Vec<BorrowedFrame<'_>> = args.iter().map(|a| BorrowedFrame::BulkString(a)).collect();
    let mut buf = BytesMut::new();
    // Encoding bulk strings into a growable buffer cannot fail.
    extend_encode_borrowed(&mut buf, &BorrowedFrame::Array(&frames), false)
        .expect("encoding a multibulk of bulk strings into a BytesMut");
    buf.freeze()
}

#[cfg(test)]
mod tests {
    #[test]
    fn encodes_a_multibulk() {
        assert_eq!(&super::command(&[b"AUTH", b"pw"])[..], b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n");
    }
}
