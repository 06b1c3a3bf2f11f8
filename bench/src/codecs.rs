//! The payload codecs: the work queue's no-op handler taking a
//! MessagePack or Protocol Buffers payload, against raw decoding the same
//! bytes with rmp-serde or prost.

use jetwire::codec::{MsgPack, Protobuf};
use jetwire::queue;

use crate::setup::{Msg, PbMsg, seen};

#[queue("queue.bench-mp", concurrency = 64)]
pub(crate) async fn bench_msgpack(MsgPack(m): MsgPack<Msg>) {
    seen(&m);
}

#[queue("queue.bench-pb", concurrency = 64)]
pub(crate) async fn bench_protobuf(Protobuf(m): Protobuf<PbMsg>) {
    seen(&Msg {
        id: m.id,
        sent_ns: m.sent_ns,
        body: m.body,
    });
}
