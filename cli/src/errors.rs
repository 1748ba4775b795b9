//! How the commands word a [`ClientError`]: an API answer as `kubectl` does
//! (`Error from server (Reason): message`), a server that did not answer with what to do
//! about it, anything else with its chain of causes.

use cirrus_client::{ClientError, ConnectFailure};

/// The message for `err`, from a call to the API at `server`.
pub fn explain(err: &ClientError, server: &str) -> String {
    let server = server.trim_end_matches('/');
    if let ClientError::Api {
        reason, message, ..
    } = err
    {
        return format!("Error from server ({reason}): {message}");
    }
    match err.connect_failure() {
        Some(ConnectFailure::Unreachable { reason }) => format!(
            "error: cannot connect to the Cirrus API at {server} ({reason}); is it running? Start one with `cirrus up`, or point --server / CIRRUS_URL at it"
        ),
        Some(ConnectFailure::Untrusted { reason }) => format!(
            "error: cannot verify the TLS certificate of the Cirrus API at {server} ({reason}); point OS_CACERT or CIRRUS_CACERT at the cloud's CA certificate (`cirrus up --tls` keeps it in <data-dir>/tls/ca.pem, and its openrc sets OS_CACERT)"
        ),
        None => {
            let mut text = format!("error: {err}");
            let mut cause = std::error::Error::source(err);
            while let Some(c) = cause {
                text.push_str(": ");
                text.push_str(&c.to_string());
                cause = c.source();
            }
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_answers_read_like_kubectl() {
        let e = ClientError::from_status(
            409,
            br#"{"kind":"Status","code":409,"reason":"AlreadyExists","message":"flavors \"a\" already exists"}"#,
        );
        assert_eq!(
            explain(&e, "http://x/"),
            "Error from server (AlreadyExists): flavors \"a\" already exists"
        );
        let e = ClientError::from_status(404, b"page not found");
        assert_eq!(
            explain(&e, "http://x"),
            "Error from server (NotFound): page not found"
        );
        let e = ClientError::InvalidObject("a Flavor needs a name".into());
        assert_eq!(
            explain(&e, "http://x"),
            "error: invalid object: a Flavor needs a name"
        );
    }
}
