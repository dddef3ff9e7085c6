//! Who may use the mixer. On loopback, only this computer can connect, so
//! no token is asked (but the `Host` header must name loopback, which stops
//! DNS-rebinding pages). Opened to the network, every request must carry
//! the access token the controller prints at start (and shows as a QR
//! code), and a WebSocket must come from the mixer's own origin.
//!
//! Invariant: [`Access::allows`] is the only gate; every route calls it.

use std::net::SocketAddr;

/// The access policy of one mixer instance.
#[derive(Clone, Debug)]
pub struct Access {
    /// The token, when one is required (non-loopback listen).
    token: Option<String>,
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No token, or the wrong one.
    #[error("an access token is required: open the link the controller printed")]
    Token,
    /// A loopback mixer reached under a foreign host name.
    #[error("this mixer only answers to localhost")]
    Host,
    /// A WebSocket from another origin.
    #[error("cross-origin WebSocket refused")]
    Origin,
}

impl Access {
    /// The policy for a mixer listening on `listen`: a fresh random token
    /// unless it is loopback.
    ///
    /// # Errors
    /// If the system has no randomness for the token.
    pub fn for_listen(listen: SocketAddr) -> Result<Access, getrandom::Error> {
        if listen.ip().is_loopback() {
            return Ok(Access { token: None });
        }
        let mut b = [0u8; 16];
        getrandom::fill(&mut b)?;
        Ok(Access {
            token: Some(b.iter().map(|x| format!("{x:02x}")).collect()),
        })
    }

    /// A policy with a given token (tests).
    #[must_use]
    pub fn with_token(token: Option<String>) -> Access {
        Access { token }
    }

    /// The token, if one is required.
    #[must_use]
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Whether a request may pass: `token` is what it presented (query
    /// `token=` or `Authorization: Bearer`), `host` its `Host` header.
    ///
    /// # Errors
    /// [`Denied::Token`] or [`Denied::Host`].
    pub fn allows(&self, token: Option<&str>, host: Option<&str>) -> Result<(), Denied> {
        match &self.token {
            Some(expected) => {
                if token.is_some_and(|t| constant_time_eq(t.as_bytes(), expected.as_bytes())) {
                    Ok(())
                } else {
                    Err(Denied::Token)
                }
            }
            None => {
                if host.is_some_and(is_loopback_host) {
                    Ok(())
                } else {
                    Err(Denied::Host)
                }
            }
        }
    }

    /// Whether a WebSocket upgrade's `Origin` matches the page it was
    /// served from (`Host`).
    ///
    /// # Errors
    /// [`Denied::Origin`].
    pub fn origin_ok(origin: Option<&str>, host: Option<&str>) -> Result<(), Denied> {
        let (Some(origin), Some(host)) = (origin, host) else {
            return Err(Denied::Origin);
        };
        let rest = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .ok_or(Denied::Origin)?;
        if rest.eq_ignore_ascii_case(host) {
            Ok(())
        } else {
            Err(Denied::Origin)
        }
    }
}

/// Whether a `Host` header names this computer.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Compares without stopping at the first difference, so response timing
/// does not reveal how much of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The access URL as a QR code drawn with text blocks, for a terminal.
#[must_use]
pub fn qr_text(url: &str) -> Option<String> {
    let code = qrcode::QrCode::new(url.as_bytes()).ok()?;
    Some(
        code.render::<qrcode::render::unicode::Dense1x2>()
            .dark_color(qrcode::render::unicode::Dense1x2::Light)
            .light_color(qrcode::render::unicode::Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_needs_no_token_but_a_loopback_host() {
        let a = Access::for_listen("127.0.0.1:8080".parse().expect("addr")).expect("random");
        assert!(a.token().is_none());
        assert_eq!(a.allows(None, Some("127.0.0.1:8080")), Ok(()));
        assert_eq!(a.allows(None, Some("localhost:8080")), Ok(()));
        assert_eq!(a.allows(None, Some("[::1]:8080")), Ok(()));
        assert_eq!(a.allows(None, Some("evil.example:8080")), Err(Denied::Host));
        assert_eq!(a.allows(None, None), Err(Denied::Host));
    }

    #[test]
    fn the_network_needs_the_token() {
        let a = Access::for_listen("0.0.0.0:8080".parse().expect("addr")).expect("random");
        let t = a.token().expect("a token").to_owned();
        assert_eq!(t.len(), 32);
        assert_eq!(a.allows(Some(&t), Some("192.168.1.5:8080")), Ok(()));
        assert_eq!(a.allows(None, Some("192.168.1.5:8080")), Err(Denied::Token));
        assert_eq!(
            a.allows(Some("0000"), Some("192.168.1.5:8080")),
            Err(Denied::Token)
        );
        let other = Access::for_listen("0.0.0.0:8080".parse().expect("addr")).expect("random");
        assert_ne!(other.token(), a.token(), "fresh per start");
    }

    #[test]
    fn websocket_origin_must_be_the_page() {
        assert_eq!(
            Access::origin_ok(Some("http://192.168.1.5:8080"), Some("192.168.1.5:8080")),
            Ok(())
        );
        for (o, h) in [
            (Some("http://evil.example"), Some("192.168.1.5:8080")),
            (Some("null"), Some("192.168.1.5:8080")),
            (None, Some("192.168.1.5:8080")),
            (Some("http://192.168.1.5:8080"), None),
            (Some("http://192.168.1.5:80801"), Some("192.168.1.5:8080")),
        ] {
            assert_eq!(Access::origin_ok(o, h), Err(Denied::Origin), "{o:?} {h:?}");
        }
    }

    #[test]
    fn qr_code_renders() {
        let q = qr_text("http://192.168.1.5:8080/?token=00112233445566778899aabbccddeeff")
            .expect("fits a QR code");
        assert!(q.lines().count() > 10);
    }
}
