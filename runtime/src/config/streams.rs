//! What jetwire may do to the server ([`Provision`]) and the settings of
//! the streams it creates ([`StreamSettings`]).

use std::time::Duration;

use crate::error::Error;

/// Whether jetwire creates what it needs (`JETWIRE_PROVISION`).
///
/// ```
/// use jetwire::{Config, Provision};
///
/// let config = Config::builder().provision(Provision::Bind).build().unwrap();
/// assert_eq!(config.provision, Provision::Bind);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Provision {
    /// `create`: make every missing stream, durable and bucket, and update
    /// a durable whose options changed. The default.
    #[default]
    Create,
    /// `bind`: never create or update anything; startup fails listing what
    /// is missing and the permissions the app needs. For servers whose
    /// streams and consumers are managed elsewhere (Terraform, NACK, nsc).
    Bind,
}

impl Provision {
    pub(crate) fn parse(value: &str) -> Result<Provision, Error> {
        match value.trim().to_ascii_lowercase().as_str() {
            "create" => Ok(Provision::Create),
            "bind" => Ok(Provision::Bind),
            _ => Err(Error::Config(format!(
                "JETWIRE_PROVISION={value:?}: write `create` (make what is missing) or `bind` (use only what exists)"
            ))),
        }
    }
}

/// Where a stream keeps its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// On disk: survives a server restart. The default.
    File,
    /// In memory: faster, lost when the server stops.
    Memory,
}

/// Settings of a stream jetwire creates. Every field left `None` takes the
/// value from [`Config::streams`](crate::Config::streams), then jetwire's
/// default. Used as the defaults in `Config::streams` (env
/// `JETWIRE_STREAM_*`), and per stream with [`App::stream`](crate::App::stream).
///
/// | field | env | default |
/// |---|---|---|
/// | `max_age` | `JETWIRE_STREAM_MAX_AGE` (`7d`, `12h`) | unlimited |
/// | `max_bytes` | `JETWIRE_STREAM_MAX_BYTES` (`512MB`, `10GB`) | unlimited |
/// | `duplicate_window` | `JETWIRE_STREAM_DUPLICATE_WINDOW` | 2 minutes, or the longest retry schedule of the app's handlers, up to an hour |
/// | `storage` | `JETWIRE_STREAM_STORAGE` (`file`, `memory`) | file |
/// | `replicas` | `JETWIRE_STREAM_REPLICAS` | 1 |
///
/// ```
/// use std::time::Duration;
/// use jetwire::StreamSettings;
///
/// let orders = StreamSettings {
///     max_age: Some(Duration::from_secs(30 * 24 * 3600)),
///     replicas: Some(3),
///     ..StreamSettings::default()
/// };
/// assert_eq!(orders.or(&StreamSettings::default()).replicas, Some(3));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamSettings {
    /// How long a message is kept.
    pub max_age: Option<Duration>,
    /// How many bytes the stream keeps; the oldest go first.
    pub max_bytes: Option<u64>,
    /// How long a `Nats-Msg-Id` is remembered, so a republish within it is
    /// stored once.
    pub duplicate_window: Option<Duration>,
    /// File or memory.
    pub storage: Option<Storage>,
    /// Copies in a cluster: 1 to 5.
    pub replicas: Option<usize>,
}

impl StreamSettings {
    /// These settings, with each unset field taken from `fallback`.
    pub fn or(&self, fallback: &StreamSettings) -> StreamSettings {
        StreamSettings {
            max_age: self.max_age.or(fallback.max_age),
            max_bytes: self.max_bytes.or(fallback.max_bytes),
            duplicate_window: self.duplicate_window.or(fallback.duplicate_window),
            storage: self.storage.or(fallback.storage),
            replicas: self.replicas.or(fallback.replicas),
        }
    }

    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == StreamSettings::default()
    }

    pub(crate) fn check(&self, what: &str) -> Result<(), Error> {
        if let Some(r) = self.replicas
            && !(1..=5).contains(&r)
        {
            return Err(Error::Config(format!(
                "{what}: replicas (JETWIRE_STREAM_REPLICAS) is {r}; NATS supports 1 to 5"
            )));
        }
        if let (Some(age), Some(window)) = (self.max_age, self.duplicate_window)
            && !age.is_zero()
            && window > age
        {
            return Err(Error::Config(format!(
                "{what}: the duplicate window (JETWIRE_STREAM_DUPLICATE_WINDOW, {window:?}) is longer than max age (JETWIRE_STREAM_MAX_AGE, {age:?}); NATS refuses that: shorten the window or keep messages longer"
            )));
        }
        Ok(())
    }
}

/// How `have`, an existing stream, falls short of `asked`: one line per
/// setting that is weaker (keeps less, for less long, on fewer replicas,
/// in memory where file was asked, or remembers message ids for less
/// long). Nothing is changed: the operator decides.
pub(crate) fn shortfalls(
    have: &async_nats::jetstream::stream::Config,
    asked: &StreamSettings,
) -> Vec<String> {
    use async_nats::jetstream::stream::StorageType;
    let mut out = Vec::new();
    // 0 is unlimited on the server.
    if let Some(age) = asked.max_age
        && !have.max_age.is_zero()
        && (age.is_zero() || have.max_age < age)
    {
        out.push(format!(
            "max age is {:?}, {age:?} asked (JETWIRE_STREAM_MAX_AGE)",
            have.max_age
        ));
    }
    if let Some(bytes) = asked.max_bytes
        && have.max_bytes >= 0
        && u64::try_from(have.max_bytes).unwrap_or(0) < bytes
    {
        out.push(format!(
            "max bytes is {}, {bytes} asked (JETWIRE_STREAM_MAX_BYTES)",
            have.max_bytes
        ));
    }
    if let Some(window) = asked.duplicate_window
        && have.duplicate_window < window
    {
        out.push(format!(
            "duplicate window is {:?}, {window:?} needed: a message republished after that (a retried handler's follow-up, a dead letter, an outbox row) is stored twice (JETWIRE_STREAM_DUPLICATE_WINDOW)",
            have.duplicate_window
        ));
    }
    if asked.storage == Some(Storage::File) && have.storage == StorageType::Memory {
        out.push(
            "storage is memory, file asked: a server restart loses it (JETWIRE_STREAM_STORAGE)"
                .to_owned(),
        );
    }
    if let Some(replicas) = asked.replicas
        && have.num_replicas < replicas
    {
        out.push(format!(
            "{} replicas, {replicas} asked (JETWIRE_STREAM_REPLICAS)",
            have.num_replicas
        ));
    }
    out
}

/// `512`, `512B`, `64KB`, `512MB`, `10GB`, `1TB` (each unit 1024 of the
/// one below; `KiB` and the like work too).
pub(crate) fn parse_bytes(value: &str) -> Option<u64> {
    let v = value.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (number, unit) = v.split_at(split);
    let n: u64 = number.parse().ok()?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

/// `file` or `memory`.
pub(crate) fn parse_storage(value: &str) -> Option<Storage> {
    match value.trim().to_ascii_lowercase().as_str() {
        "file" => Some(Storage::File),
        "memory" | "mem" => Some(Storage::Memory),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_storage_parse() {
        assert_eq!(parse_bytes("512"), Some(512));
        assert_eq!(parse_bytes("64KB"), Some(64 << 10));
        assert_eq!(parse_bytes("10 GiB"), Some(10 << 30));
        assert_eq!(parse_bytes("ten"), None);
        assert_eq!(parse_bytes("1XB"), None);
        assert_eq!(parse_storage("Memory"), Some(Storage::Memory));
        assert_eq!(parse_storage("disk"), None);
    }

    #[test]
    fn overrides_fall_back_field_by_field() {
        let defaults = StreamSettings {
            replicas: Some(3),
            storage: Some(Storage::File),
            ..Default::default()
        };
        let mine = StreamSettings {
            storage: Some(Storage::Memory),
            ..Default::default()
        };
        let both = mine.or(&defaults);
        assert_eq!(both.replicas, Some(3));
        assert_eq!(both.storage, Some(Storage::Memory));
    }

    #[test]
    fn impossible_settings_are_refused() {
        let s = StreamSettings {
            max_age: Some(Duration::from_secs(60)),
            duplicate_window: Some(Duration::from_secs(120)),
            ..Default::default()
        };
        assert!(s.check("x").is_err());
        let s = StreamSettings {
            replicas: Some(0),
            ..Default::default()
        };
        assert!(s.check("x").is_err());
    }
}
