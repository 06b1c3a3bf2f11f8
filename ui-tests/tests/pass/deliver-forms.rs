//! Every form `deliver` takes.
use jetwire::registry::Deliver;
use jetwire::subscribe;

#[subscribe("deliver.a", deliver = "last")]
async fn last(_e: u64) {}

#[subscribe("deliver.b", deliver = "last_per_subject")]
async fn per_subject(_e: u64) {}

#[subscribe("deliver.c", deliver = "seq:42")]
async fn from_42(_e: u64) {}

#[subscribe("deliver.d", deliver = "2026-01-02T03:04:05.5+01:00")]
async fn from_time(_e: u64) {}

fn main() {
    let def = |name: &str| {
        jetwire::registry::handlers()
            .into_iter()
            .find(|h| h.name == name)
            .expect("registered")
    };
    assert_eq!(def("last").deliver(), Deliver::Last);
    assert_eq!(def("per_subject").deliver(), Deliver::LastPerSubject);
    assert_eq!(def("from_42").deliver(), Deliver::Sequence(42));
    assert_eq!(
        def("from_time").deliver(),
        Deliver::Time { unix_seconds: 1_767_319_445, nanos: 500_000_000 }
    );
}
