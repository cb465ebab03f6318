//! Parsing of the endpoints a client is given.

use crate::error::ClientError;

/// Parses a comma-separated list of endpoints, such as
/// `http://127.0.0.1:7000,127.0.0.1:7001`, into normalized URIs.
pub fn parse_endpoints(list: &str) -> Result<Vec<String>, ClientError> {
    let endpoints = list
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(parse_endpoint)
        .collect::<Result<Vec<_>, _>>()?;
    if endpoints.is_empty() {
        return Err(ClientError::InvalidEndpoint {
            endpoint: list.to_string(),
            rule: "the list names no endpoint".to_string(),
        });
    }
    Ok(endpoints)
}

/// Normalizes one endpoint to `http://host:port`. A bare `host:port` gets the
/// `http` scheme; `https` is rejected because this client is built without TLS.
pub fn parse_endpoint(endpoint: &str) -> Result<String, ClientError> {
    let invalid = |rule: &str| ClientError::InvalidEndpoint {
        endpoint: endpoint.to_string(),
        rule: rule.to_string(),
    };

    let trimmed = endpoint.trim();
    let authority = match trimmed.split_once("://") {
        Some(("http", rest)) => rest,
        Some(("https", _)) => return Err(invalid("https is not supported: this client has no TLS")),
        Some(_) => return Err(invalid("the scheme must be http")),
        None => trimmed,
    };
    let authority = authority.strip_suffix('/').unwrap_or(authority);

    if authority.is_empty() {
        return Err(invalid("missing host and port"));
    }
    if authority.contains('/') {
        return Err(invalid("must be host:port without a path"));
    }
    let uri: tonic::transport::Uri = format!("http://{authority}")
        .parse()
        .map_err(|_| invalid("must be host:port, such as 127.0.0.1:7000"))?;
    let Some(parsed) = uri.authority() else {
        return Err(invalid("missing host and port"));
    };
    if parsed.host().is_empty() {
        return Err(invalid("missing host"));
    }
    if parsed.port_u16().is_none() {
        return Err(invalid("missing port, such as 127.0.0.1:7000"));
    }
    Ok(format!("http://{}", parsed.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_host_port_gets_http_scheme() {
        assert_eq!(parse_endpoint("127.0.0.1:7000").unwrap(), "http://127.0.0.1:7000");
    }

    #[test]
    fn http_endpoint_is_kept() {
        assert_eq!(parse_endpoint("http://localhost:7001").unwrap(), "http://localhost:7001");
    }

    #[test]
    fn trailing_slash_and_spaces_are_dropped() {
        assert_eq!(parse_endpoint(" http://127.0.0.1:7002/ ").unwrap(), "http://127.0.0.1:7002");
    }

    #[test]
    fn ipv6_endpoint_is_accepted() {
        assert_eq!(parse_endpoint("[::1]:7000").unwrap(), "http://[::1]:7000");
    }

    #[test]
    fn https_is_rejected() {
        let error = parse_endpoint("https://127.0.0.1:7000").unwrap_err();
        assert!(error.to_string().contains("https"), "{error}");
    }

    #[test]
    fn other_scheme_is_rejected() {
        assert!(parse_endpoint("grpc://127.0.0.1:7000").is_err());
    }

    #[test]
    fn missing_port_is_rejected() {
        let error = parse_endpoint("127.0.0.1").unwrap_err();
        assert!(error.to_string().contains("port"), "{error}");
    }

    #[test]
    fn path_is_rejected() {
        assert!(parse_endpoint("http://127.0.0.1:7000/queue").is_err());
    }

    #[test]
    fn empty_endpoint_is_rejected() {
        assert!(parse_endpoint("http://").is_err());
    }

    #[test]
    fn list_is_split_on_commas() {
        let endpoints = parse_endpoints("http://127.0.0.1:7000, 127.0.0.1:7001,").unwrap();
        assert_eq!(endpoints, vec!["http://127.0.0.1:7000", "http://127.0.0.1:7001"]);
    }

    #[test]
    fn empty_list_is_rejected() {
        assert!(parse_endpoints(" , ").is_err());
    }

    #[test]
    fn list_with_one_bad_entry_is_rejected() {
        assert!(parse_endpoints("127.0.0.1:7000,nope").is_err());
    }
}
