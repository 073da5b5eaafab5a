//! Target 9: the control API's request parser, as the server feeds it each line.

/// One request line (the server reads bytes; a line that is not UTF-8 arrives lossily).
pub fn api_request(data: &[u8]) {
    let line = String::from_utf8_lossy(data);
    let line = line.trim_end_matches(['\n', '\r']);
    if let Ok(request) = ringvisor::api::parse_request(line) {
        // An accepted request must be one a client can send again: round-trip its debug
        // form never panics, and a screenshot path is absolute.
        let _ = format!("{request:?}");
        if let ringvisor::api::Request::Screenshot { path } = &request {
            assert!(
                path.is_absolute(),
                "relative screenshot path {path:?} accepted"
            );
        }
    }
}
