//! Framing throughput of [`LineCodec`]: how fast a read buffer full of
//! complete lines is turned into frames.
//!
//! Each iteration decodes 1 MiB of input (lines of 64 bytes or 1 KiB, the
//! terminator included) from one [`BytesMut`] until `decode` returns `None`,
//! then consumes them.
//! Copying the input into a fresh buffer happens in the untimed setup, so
//! the figure is the codec alone: finding each `\n`, dropping a `\r`,
//! checking UTF-8 and handing out the line. Target (issue 4): >= 1 GiB/s.
//!
//! Run: `cargo bench --bench codec`.

use std::hint::black_box;
use std::time::Duration;

use bytes::BytesMut;
use chatcore::protocol::{Frame, LineCodec, DEFAULT_MAX_LINE};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

/// Input per iteration.
const INPUT_BYTES: usize = 1 << 20;

/// `INPUT_BYTES` of lines, each exactly `line_len` bytes long including its
/// terminator (`\n`, or `\r\n` when `crlf`), with printable ASCII text.
fn lines(line_len: usize, crlf: bool) -> Vec<u8> {
    let terminator: &[u8] = if crlf { b"\r\n" } else { b"\n" };
    let text_len = line_len - terminator.len();
    let mut line: Vec<u8> = (0..text_len).map(|i| b'a' + (i % 26) as u8).collect();
    line.extend_from_slice(terminator);
    let mut input = Vec::with_capacity(INPUT_BYTES);
    while input.len() + line_len <= INPUT_BYTES {
        input.extend_from_slice(&line);
    }
    input
}

/// Decodes every frame in `buf`; returns how many lines there were.
fn decode_all(codec: &mut LineCodec, buf: &mut BytesMut) -> usize {
    let mut count = 0;
    while let Some(frame) = codec.decode(buf) {
        debug_assert!(matches!(frame, Frame::Line(_)));
        black_box(frame);
        count += 1;
    }
    codec.consume(buf);
    count
}

fn framing(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));

    for (name, line_len, crlf) in [
        ("lf_64B", 64, false),
        ("lf_1KiB", 1024, false),
        ("crlf_64B", 64, true),
        ("crlf_1KiB", 1024, true),
    ] {
        let input = lines(line_len, crlf);
        let expected = input.len() / line_len;
        {
            // Sanity check, outside the measurement.
            let mut buf = BytesMut::from(&input[..]);
            let mut codec = LineCodec::new(DEFAULT_MAX_LINE);
            assert_eq!(decode_all(&mut codec, &mut buf), expected);
            assert!(buf.is_empty());
        }
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_function(name, |b| {
            let mut codec = LineCodec::new(DEFAULT_MAX_LINE);
            b.iter_batched_ref(
                || BytesMut::from(&input[..]),
                |buf| decode_all(&mut codec, buf),
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, framing);
criterion_main!(benches);
