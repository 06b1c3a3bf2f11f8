//! Payload codecs: the [`Codec`] trait, the wrappers that choose one
//! (`Json`, `MsgPack`, `Cbor`, `Protobuf`), what a value to publish is
//! ([`Encode`]), and the `Content-Type` check on receipt. Pure; a
//! wrapper as a handler's payload is `handler::extract`'s.

/// An error of a codec, as any error type.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A way to write a value as bytes and read it back, named by its
/// `Content-Type`. Implement it on a wrapper type, then `Payload` (to
/// take it as a handler's payload) and [`Encode`] (to publish it), each
/// one line calling `decode` and [`encode`].
pub trait Codec: Sized + Send + 'static {
    /// The `Content-Type` of what it writes, e.g. `application/msgpack`.
    const CONTENT_TYPE: &'static str;

    /// Other content types it reads as its own, e.g. `application/x-msgpack`.
    const ALIASES: &'static [&'static str] = &[];

    /// The value as bytes.
    fn encode(&self) -> Result<Vec<u8>, BoxError>;

    /// The value from bytes.
    fn decode(bytes: &[u8]) -> Result<Self, BoxError>;
}

/// A value that can be published: any `Serialize` value (as JSON), or a
/// codec's wrapper. For a wrapper of your own, [`encode`] is the whole
/// method.
pub trait Encode {
    /// The payload's bytes and the `Content-Type` they are published with.
    fn encoded(&self) -> Result<(Vec<u8>, &'static str), BoxError>;
}

/// [`Encode::encoded`] for a [`Codec`] of your own.
pub fn encode<C: Codec>(value: &C) -> Result<(Vec<u8>, &'static str), BoxError> {
    Ok((value.encode()?, C::CONTENT_TYPE))
}

/// The `Content-Type` of JSON, jetwire's default codec.
pub const JSON: &str = "application/json";

impl<T: serde::Serialize + ?Sized> Encode for T {
    fn encoded(&self) -> Result<(Vec<u8>, &'static str), BoxError> {
        Ok((serde_json::to_vec(self)?, JSON))
    }
}

/// Whether a message with `Content-Type` `got` (if it has one) is for a
/// codec writing `want` (or one of `aliases`); the error names both.
/// Parameters (`; charset=utf-8`) and case do not count.
pub(crate) fn check_content_type(
    got: Option<&str>,
    want: &'static str,
    aliases: &[&str],
) -> Result<(), String> {
    let Some(got) = got else { return Ok(()) };
    let media = got.split(';').next().unwrap_or_default().trim();
    let same = |t: &&str| t.eq_ignore_ascii_case(media);
    if std::iter::once(&want).chain(aliases).any(same) {
        return Ok(());
    }
    Err(format!(
        "the message's Content-Type is `{}`, and this handler reads `{want}`: publish it with the handler's codec, or take the codec it was written with",
        crate::text::bounded(got, 128)
    ))
}

/// `bytes` of content type `content_type` as JSON, for a person to read:
/// JSON (also without a content type), and MessagePack and CBOR where
/// their features are on; `None` for anything else.
pub(crate) fn as_json(content_type: Option<&str>, bytes: &[u8]) -> Option<serde_json::Value> {
    let media = content_type.map(|t| {
        t.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    });
    match media.as_deref() {
        None | Some(JSON) => serde_json::from_slice(bytes).ok(),
        #[cfg(feature = "msgpack")]
        Some("application/msgpack" | "application/x-msgpack" | "application/vnd.msgpack") => {
            rmp_serde::from_slice(bytes).ok()
        }
        #[cfg(feature = "cbor")]
        Some("application/cbor") => ciborium::from_reader(bytes).ok(),
        Some(_) => None,
    }
}

/// What a payload wrapper reads: its content types and its decoding,
/// for a payload type that need not also be `Serialize`.
pub(crate) trait Readable: Sized + Send + 'static {
    const CONTENT_TYPE: &'static str;
    const ALIASES: &'static [&'static str];
    fn read(bytes: &[u8]) -> Result<Self, BoxError>;
}

/// A serde-based codec's wrapper: a payload, a value to publish, a codec.
macro_rules! serde_codec {
    ($(#[$doc:meta])* $name:ident, $ct:expr, [$($alias:expr),*], $encode:expr, $decode:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
        pub struct $name<T>(pub T);

        impl<T> std::ops::Deref for $name<T> {
            type Target = T;
            fn deref(&self) -> &T {
                &self.0
            }
        }

        impl<T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static> Codec for $name<T> {
            const CONTENT_TYPE: &'static str = <Self as Readable>::CONTENT_TYPE;
            const ALIASES: &'static [&'static str] = <Self as Readable>::ALIASES;
            fn encode(&self) -> Result<Vec<u8>, BoxError> {
                $encode(&self.0)
            }
            fn decode(bytes: &[u8]) -> Result<Self, BoxError> {
                <Self as Readable>::read(bytes)
            }
        }

        /// Described as `T` in the AsyncAPI document.
        #[cfg(feature = "asyncapi")]
        impl<T: schemars::JsonSchema> schemars::JsonSchema for $name<T> {
            fn inline_schema() -> bool {
                true
            }
            fn schema_name() -> std::borrow::Cow<'static, str> {
                T::schema_name()
            }
            fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
                generator.subschema_for::<T>()
            }
        }

        impl<T: serde::Serialize> Encode for $name<T> {
            fn encoded(&self) -> Result<(Vec<u8>, &'static str), BoxError> {
                Ok(($encode(&self.0)?, $ct))
            }
        }

        impl<T: serde::de::DeserializeOwned + Send + 'static> Readable for $name<T> {
            const CONTENT_TYPE: &'static str = $ct;
            const ALIASES: &'static [&'static str] = &[$($alias),*];
            fn read(bytes: &[u8]) -> Result<Self, BoxError> {
                $decode(bytes).map($name)
            }
        }
    };
}

fn json_encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, BoxError> {
    Ok(serde_json::to_vec(value)?)
}

fn json_decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, BoxError> {
    Ok(serde_json::from_slice(bytes)?)
}

serde_codec!(
    /// JSON, jetwire's default: a bare payload type is read as `Json<T>`.
    Json,
    JSON,
    [],
    json_encode,
    json_decode
);

#[cfg(feature = "msgpack")]
fn msgpack_encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, BoxError> {
    Ok(rmp_serde::to_vec_named(value)?)
}

#[cfg(feature = "msgpack")]
fn msgpack_decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, BoxError> {
    Ok(rmp_serde::from_slice(bytes)?)
}

#[cfg(feature = "msgpack")]
serde_codec!(
    /// MessagePack (feature `msgpack`), maps with field names, as
    /// `rmp_serde::to_vec_named` writes them.
    MsgPack,
    "application/msgpack",
    ["application/x-msgpack", "application/vnd.msgpack"],
    msgpack_encode,
    msgpack_decode
);

#[cfg(feature = "cbor")]
fn cbor_encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, BoxError> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out)?;
    Ok(out)
}

#[cfg(feature = "cbor")]
fn cbor_decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, BoxError> {
    Ok(ciborium::from_reader(bytes)?)
}

#[cfg(feature = "cbor")]
serde_codec!(
    /// CBOR, RFC 8949 (feature `cbor`).
    Cbor,
    "application/cbor",
    [],
    cbor_encode,
    cbor_decode
);

/// Protocol Buffers (feature `protobuf`): any `prost::Message`.
#[cfg(feature = "protobuf")]
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Protobuf<T>(pub T);

#[cfg(feature = "protobuf")]
impl<T> std::ops::Deref for Protobuf<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

#[cfg(feature = "protobuf")]
impl<T: prost::Message + Default + 'static> Codec for Protobuf<T> {
    const CONTENT_TYPE: &'static str = <Self as Readable>::CONTENT_TYPE;
    const ALIASES: &'static [&'static str] = <Self as Readable>::ALIASES;
    fn encode(&self) -> Result<Vec<u8>, BoxError> {
        Ok(self.0.encode_to_vec())
    }
    fn decode(bytes: &[u8]) -> Result<Self, BoxError> {
        <Self as Readable>::read(bytes)
    }
}

#[cfg(feature = "protobuf")]
impl<T: prost::Message + Default + 'static> Encode for Protobuf<T> {
    fn encoded(&self) -> Result<(Vec<u8>, &'static str), BoxError> {
        encode(self)
    }
}

#[cfg(feature = "protobuf")]
impl<T: prost::Message + Default + 'static> Readable for Protobuf<T> {
    const CONTENT_TYPE: &'static str = "application/protobuf";
    const ALIASES: &'static [&'static str] =
        &["application/x-protobuf", "application/vnd.google.protobuf"];
    fn read(bytes: &[u8]) -> Result<Self, BoxError> {
        Ok(Protobuf(T::decode(bytes)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_compare_without_parameters_or_case() {
        assert!(check_content_type(None, JSON, &[]).is_ok());
        assert!(check_content_type(Some("application/json"), JSON, &[]).is_ok());
        assert!(check_content_type(Some("Application/JSON; charset=utf-8"), JSON, &[]).is_ok());
        assert!(
            check_content_type(
                Some("application/x-msgpack"),
                "application/msgpack",
                &["application/x-msgpack"]
            )
            .is_ok()
        );
        let err =
            check_content_type(Some("application/msgpack"), JSON, &[]).expect_err("another codec");
        assert!(err.contains("`application/msgpack`"), "{err}");
        assert!(err.contains("`application/json`"), "{err}");
    }

    #[test]
    fn json_round_trips_and_is_what_a_bare_value_publishes() {
        let (bytes, ct) = Json(vec![1u8, 2]).encoded().expect("encodes");
        assert_eq!(ct, JSON);
        assert_eq!(bytes, b"[1,2]");
        assert_eq!(
            vec![1u8, 2].encoded().expect("encodes"),
            (bytes.clone(), JSON)
        );
        let back = <Json<Vec<u8>> as Codec>::decode(&bytes).expect("decodes");
        assert_eq!(back.0, [1, 2]);
    }
}
