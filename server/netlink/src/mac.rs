//! [`MacAddr`]: a 48-bit Ethernet address, parsed from and shown as `aa:bb:cc:dd:ee:ff`.
//!
//! Pure data, no I/O.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// An Ethernet (EUI-48) address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The address octets.
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// Builds an address from a netlink attribute payload; `None` unless it is 6 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<MacAddr> {
        <[u8; 6]>::try_from(bytes).ok().map(MacAddr)
    }

    /// A random locally administered unicast address (what the kernel would assign).
    pub fn random() -> MacAddr {
        let mut b = random_bytes::<6>();
        b[0] = (b[0] & 0xfe) | 0x02;
        MacAddr(b)
    }

    /// True for a multicast/broadcast address (lowest bit of the first octet).
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl FromStr for MacAddr {
    type Err = Error;

    /// Accepts `aa:bb:cc:dd:ee:ff` and `aa-bb-cc-dd-ee-ff`, any hex case (like Go's
    /// `net.ParseMAC` for 48-bit addresses).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || Error::InvalidMac {
            input: s.to_string(),
        };
        let sep = if s.contains(':') { ':' } else { '-' };
        let mut out = [0u8; 6];
        let mut parts = s.split(sep);
        for slot in out.iter_mut() {
            let part = parts.next().ok_or_else(invalid)?;
            if part.len() != 2 || !part.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(invalid());
            }
            *slot = u8::from_str_radix(part, 16).map_err(|_| invalid())?;
        }
        if parts.next().is_some() {
            return Err(invalid());
        }
        Ok(MacAddr(out))
    }
}

/// `N` random bytes from the kernel (getrandom(2)); falls back to time+pid mixing if the
/// syscall is unavailable, which only weakens uniqueness, never correctness.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // SAFETY: buf is a valid writable buffer of N bytes for the duration of the call.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), N, 0) };
    if n != N as isize {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
            ^ u128::from(std::process::id()) << 64;
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (seed >> ((i % 16) * 8)) as u8 ^ (i as u8).wrapping_mul(0x9d);
        }
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays_colon_form() {
        let mac: MacAddr = "0A:1b:2C:3d:4E:5f".parse().unwrap();
        assert_eq!(mac.0, [0x0a, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f]);
        assert_eq!(mac.to_string(), "0a:1b:2c:3d:4e:5f");
    }

    #[test]
    fn parses_dash_form() {
        let mac: MacAddr = "02-00-00-00-00-01".parse().unwrap();
        assert_eq!(mac.0, [2, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn rejects_bad_inputs() {
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:01:02",
            "02:00:00:00:00:1",
            "02:00:00:00:00:0g",
            "0200.0000.0001",
            "02:00-00:00:00:01",
            "+2:00:00:00:00:01",
        ] {
            let err = bad.parse::<MacAddr>().unwrap_err();
            assert!(matches!(err, Error::InvalidMac { .. }), "{bad}");
            assert!(err.to_string().contains("aa:bb:cc:dd:ee:ff"));
        }
    }

    #[test]
    fn random_is_local_unicast_and_varies() {
        let a = MacAddr::random();
        let b = MacAddr::random();
        assert_eq!(a.0[0] & 0x03, 0x02);
        assert!(!a.is_multicast());
        assert_ne!(a, b);
    }

    #[test]
    fn from_slice_requires_six_bytes() {
        assert_eq!(
            MacAddr::from_slice(&[1, 2, 3, 4, 5, 6]),
            Some(MacAddr([1, 2, 3, 4, 5, 6]))
        );
        assert_eq!(MacAddr::from_slice(&[1, 2, 3]), None);
    }
}
