//! Traffic between pods, sent and received only inside the pods' network namespaces:
//! a UDP multicast datagram to the mDNS group (224.0.0.251:5353), through the
//! `plexus-e2e-udp` helper run with `nsenter --net=<pod netns>`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};
use crate::pod::Pod;

/// The mDNS multicast group.
pub const MDNS_GROUP: &str = "224.0.0.251";
/// The mDNS port.
pub const MDNS_PORT: &str = "5353";

/// Sends `payload` from `sender` (source address `from`) to the mDNS group and returns what
/// `receiver` got on the interface holding `to` (`"<payload> from <source>:<port>"`).
pub fn multicast(
    helper: &Path,
    sender: &Pod,
    from: &str,
    receiver: &Pod,
    to: &str,
    payload: &str,
) -> Result<String> {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net={}", receiver.netns.display()))
        .arg("--")
        .arg(helper)
        .args(["recv", MDNS_GROUP, MDNS_PORT, to, "3000"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| Error::Spawn {
        program: helper.display().to_string(),
        source,
    })?;
    let stdout = child.stdout.take().ok_or_else(|| Error::Unexpected {
        what: "multicast receiver",
        detail: "no stdout".into(),
    })?;
    let mut lines = BufReader::new(stdout).lines();
    let ready = lines.next().transpose().unwrap_or(None);
    if ready.as_deref() != Some("ready") {
        let out = child.wait_with_output();
        return Err(Error::Unexpected {
            what: "multicast receiver",
            detail: format!(
                "did not get ready: {:?}",
                out.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            ),
        });
    }
    let sent = sender.exec(
        &helper.display().to_string(),
        ["send", MDNS_GROUP, MDNS_PORT, from, payload],
    );
    let got = lines.next().transpose().unwrap_or(None);
    let status = child.wait();
    sent?;
    match (got, status) {
        (Some(line), Ok(s)) if s.success() => Ok(line),
        (got, status) => Err(Error::Unexpected {
            what: "multicast receiver",
            detail: format!("nothing received ({got:?}, {status:?})"),
        }),
    }
}
