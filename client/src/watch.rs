//! The one reader of the API's watch streams (newline-delimited JSON events), shared by the
//! typed and the dynamic Api: it decodes each line into a [`WatchEvent`] of whatever object
//! type the caller reads (a typed kind or a [`serde_json::Value`]).

use bytes::BytesMut;
use futures::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{Client, ClientError, Result, WatchEvent};

/// The events of the watch at `url` (already carrying its query), in order.
///
/// # Errors
/// The stream yields one `Err` and ends when the watch can't start (a compacted revision is
/// `410 Gone`), when the server reports an `ERROR` event (compaction during the watch is a
/// `410`), when the connection breaks ([`ClientError::StreamBroken`]) or when a line is
/// unreadable. It ends without an error when the server closes it.
pub(crate) fn events<T>(
    client: Client,
    url: String,
) -> impl Stream<Item = Result<WatchEvent<T>>> + Send + 'static
where
    T: DeserializeOwned + Send + 'static,
{
    async_stream::stream! {
        let response = match client.send(reqwest::Method::GET, &url, None).await {
            Ok(response) => response,
            Err(err) => {
                yield Err(err);
                return;
            }
        };
        let mut body = response.bytes_stream();
        let mut buffer = BytesMut::new();
        loop {
            let chunk = match body.next().await {
                Some(Ok(chunk)) => chunk,
                Some(Err(source)) => {
                    yield Err(ClientError::StreamBroken { url: url.clone(), source });
                    return;
                }
                None => break,
            };
            buffer.extend_from_slice(&chunk);
            while let Some(pos) = buffer.iter().position(|b| *b == b'\n') {
                let line = buffer.split_to(pos + 1);
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let event = parse_line::<T>(&url, &line);
                let failed = event.is_err();
                yield event;
                if failed {
                    return;
                }
            }
        }
        // A last line the server did not end with a newline.
        if !buffer.iter().all(u8::is_ascii_whitespace) {
            yield parse_line::<T>(&url, &buffer);
        }
    }
}

/// Decodes one line of a watch stream; an `ERROR` event becomes the Status it carries.
pub(crate) fn parse_line<T: DeserializeOwned>(url: &str, line: &[u8]) -> Result<WatchEvent<T>> {
    #[derive(serde::Deserialize)]
    struct Line {
        #[serde(rename = "type")]
        type_: String,
        object: Value,
    }
    let decode = |source| ClientError::Decode {
        url: url.to_string(),
        source,
    };
    let line: Line = serde_json::from_slice(line).map_err(decode)?;
    let object = |object: Value| serde_json::from_value::<T>(object).map_err(decode);
    match line.type_.as_str() {
        "ADDED" => Ok(WatchEvent::Added(object(line.object)?)),
        "MODIFIED" => Ok(WatchEvent::Modified(object(line.object)?)),
        "DELETED" => Ok(WatchEvent::Deleted(object(line.object)?)),
        "BOOKMARK" => {
            let resource_version = line
                .object
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            Ok(WatchEvent::Bookmark { resource_version })
        }
        "ERROR" => {
            let code = line
                .object
                .get("code")
                .and_then(Value::as_u64)
                .unwrap_or(500) as u16;
            Err(ClientError::from_status(
                code,
                line.object.to_string().as_bytes(),
            ))
        }
        other => Err(ClientError::Decode {
            url: url.to_string(),
            source: serde::de::Error::custom(format!("unknown watch event type {other:?}")),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cirrus_crds::Flavor;

    #[test]
    fn parses_typed_and_untyped_lines() {
        let line = br#"{"type":"ADDED","object":{"apiVersion":"cirrus.dev/v1","kind":"Flavor","metadata":{"name":"a","resourceVersion":"7"},"spec":{"vcpus":1,"ram":512}}}"#;
        let event = parse_line::<Flavor>("u", line).unwrap();
        assert!(matches!(&event, WatchEvent::Added(f) if f.metadata.name == "a"));
        assert_eq!(event.resource_version(), Some("7"));
        let untyped = parse_line::<Value>("u", line).unwrap();
        assert!(matches!(&untyped, WatchEvent::Added(v) if v["metadata"]["name"] == "a"));
        let bookmark = br#"{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"9"}}}"#;
        assert_eq!(
            parse_line::<Flavor>("u", bookmark).unwrap(),
            WatchEvent::Bookmark {
                resource_version: "9".into()
            }
        );
        let gone = br#"{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired","message":"too old"}}"#;
        assert!(parse_line::<Value>("u", gone).unwrap_err().is_gone());
        assert!(matches!(
            parse_line::<Flavor>("u", b"nope"),
            Err(ClientError::Decode { .. })
        ));
        assert!(matches!(
            parse_line::<Value>("u", br#"{"type":"SIDEWAYS","object":{}}"#),
            Err(ClientError::Decode { .. })
        ));
    }
}
