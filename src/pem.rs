//! PEM (RFC 7468): the one encoder and decoder of `-----BEGIN …-----` blocks.
//!
//! Stage: key material at the edges (`CEDARGATE_PUBLIC_KEY_FILE`, the development issuer's
//! key file, test keys). Decoding goes through x509-parser's PEM reader, which checks the
//! armour and the base64; encoding writes 64-character lines.

/// One PEM block: its label (`PUBLIC KEY`, `CERTIFICATE`, …) and its DER contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub label: String,
    pub der: Vec<u8>,
}

/// Every PEM block in `bytes`, in order; an error when any block is malformed.
pub fn decode(bytes: &[u8]) -> Result<Vec<Block>, String> {
    x509_parser::pem::Pem::iter_from_buffer(bytes)
        .map(|b| {
            b.map(|p| Block {
                label: p.label,
                der: p.contents,
            })
            .map_err(|e| format!("it is not valid PEM: {e}"))
        })
        .collect()
}

/// The DER of the only block labelled `label`, when there is exactly one.
#[cfg(any(test, feature = "dev"))]
pub fn decode_one(bytes: &[u8], label: &str) -> Option<Vec<u8>> {
    let blocks = decode(bytes).ok()?;
    let mut matching = blocks.into_iter().filter(|b| b.label == label);
    let first = matching.next()?;
    matching.next().is_none().then_some(first.der)
}

/// `der` as a PEM block labelled `label`.
#[cfg(any(test, feature = "dev"))]
pub fn encode(label: &str, der: &[u8]) -> String {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    let mut rest = b64.as_str();
    while !rest.is_empty() {
        let (line, tail) = rest.split_at(rest.len().min(64));
        out.push_str(line);
        out.push('\n');
        rest = tail;
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let der: Vec<u8> = (0..200u8).collect();
        let text = encode("PUBLIC KEY", &der);
        assert!(text.lines().all(|l| l.len() <= 64));
        assert_eq!(decode_one(text.as_bytes(), "PUBLIC KEY"), Some(der.clone()));
        assert_eq!(decode_one(text.as_bytes(), "CERTIFICATE"), None);
        let two = format!("{text}{text}");
        assert_eq!(decode(two.as_bytes()).unwrap().len(), 2);
        assert_eq!(decode_one(two.as_bytes(), "PUBLIC KEY"), None);
        assert!(decode(b"-----BEGIN X-----\n!!!\n-----END X-----\n").is_err());
        assert!(decode(b"no pem here").unwrap().is_empty());
    }
}
