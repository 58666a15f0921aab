//! Golden tests of the network-status text.

use super::*;

const EXAMPLE: &str = r#"[{
    "name": "cbr0",
    "interface": "eth0",
    "ips": [
        "10.244.1.73"
    ],
    "mac": "0a:58:0a:f4:01:49",
    "default": true,
    "dns": {},
    "gateway": [
        "10.244.1.1"
    ]
},{
    "name": "default/macvlan-conf",
    "interface": "net1",
    "ips": [
        "192.168.1.205"
    ],
    "mac": "86:1d:96:ff:55:0d",
    "dns": {}
}]"#;

fn result(json: &str) -> cni::Result {
    cni::Result::parse(json.as_bytes(), "1.0.0").unwrap()
}

/// A flannel (bridge plugin) result: bridge, host veth, pod eth0.
const FLANNEL: &str = r#"{"cniVersion":"0.3.1","interfaces":[{"name":"cni0","mac":"b2:3a:1e:2c:4d:5e"},{"name":"veth8d7a3b2c","mac":"ee:11:22:33:44:55"},{"name":"eth0","mac":"0a:58:0a:f4:01:49","sandbox":"/var/run/netns/cni-9f2a"}],"ips":[{"version":"4","interface":2,"address":"10.244.1.73/24","gateway":"10.244.1.1"}],"routes":[{"dst":"10.244.0.0/16"},{"dst":"0.0.0.0/0","gw":"10.244.1.1"}],"dns":{}}"#;

const MACVLAN: &str = r#"{"cniVersion":"1.0.0","interfaces":[{"name":"net1","mac":"86:1d:96:ff:55:0d","sandbox":"/var/run/netns/cni-9f2a"}],"ips":[{"interface":0,"address":"192.168.1.205/24"}],"dns":{}}"#;

#[test]
fn multus_reference_example_is_reproduced_exactly() {
    let flannel = result(FLANNEL);
    let macvlan = result(MACVLAN);
    let statuses = build(&[
        Attachment {
            network: "cbr0",
            primary: true,
            result: &flannel,
            device_info: None,
        },
        Attachment {
            network: "default/macvlan-conf",
            primary: false,
            result: &macvlan,
            device_info: None,
        },
    ]);
    assert_eq!(render(&statuses), EXAMPLE);
    assert_eq!(parse(EXAMPLE).unwrap(), statuses);
}

#[test]
fn zero_interface_results_produce_no_entry() {
    let passthru = result(r#"{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.9/24"}],"dns":{}}"#);
    let att = Attachment {
        network: "default/passthru",
        primary: false,
        result: &passthru,
        device_info: None,
    };
    assert!(statuses(&att).is_empty());
    assert_eq!(render(&build(&[att])), "[]");
}

#[test]
fn single_interface_outside_the_sandbox_keeps_ips_only() {
    let r = result(
        r#"{"cniVersion":"1.0.0","interfaces":[{"name":"host0","mac":"aa:bb:cc:dd:ee:ff","mtu":1400}],"ips":[{"address":"10.0.0.9/24"},{"address":"fd00::9/64"}],"routes":[{"dst":"::/0","gw":"fd00::1"},{"dst":"0.0.0.0/0"}],"dns":{"nameservers":["10.0.0.1"],"search":["svc.local"]}}"#,
    );
    let att = Attachment {
        network: "ns1/host",
        primary: true,
        result: &r,
        device_info: None,
    };
    assert_eq!(
        render(&statuses(&att)),
        r#"[{
    "name": "ns1/host",
    "ips": [
        "10.0.0.9",
        "fd00::9"
    ],
    "default": true,
    "dns": {
        "nameservers": [
            "10.0.0.1"
        ],
        "search": [
            "svc.local"
        ]
    },
    "gateway": [
        "fd00::1"
    ]
}]"#
    );
}

#[test]
fn multi_interface_rules_for_default_and_unattributed_ips() {
    // Two sandbox interfaces; the gatewayed address is on index 2 → that one is default.
    // The address without an interface index goes to the last sandbox interface.
    let r = result(
        r#"{"cniVersion":"1.0.0","interfaces":[{"name":"br0"},{"name":"eth0","mac":"02:00:00:00:00:01","sandbox":"/p","mtu":1500},{"name":"eth1","mac":"02:00:00:00:00:02","sandbox":"/p"}],"ips":[{"interface":1,"address":"10.0.0.2/24"},{"interface":2,"address":"10.1.0.2/24","gateway":"10.1.0.1"},{"address":"10.2.0.2/24"},{"interface":0,"address":"10.3.0.1/24"}]}"#,
    );
    let dev = serde_json::json!({"type": "pci", "version": "1.1.0", "pci": {"pci-address": "0000:03:00.1"}});
    let att = Attachment {
        network: "cluster",
        primary: true,
        result: &r,
        device_info: Some(&dev),
    };
    assert_eq!(
        render(&statuses(&att)),
        r#"[{
    "name": "cluster",
    "interface": "eth0",
    "ips": [
        "10.0.0.2"
    ],
    "mac": "02:00:00:00:00:01",
    "mtu": 1500,
    "dns": {},
    "device-info": {
        "type": "pci",
        "version": "1.1.0",
        "pci": {
            "pci-address": "0000:03:00.1"
        }
    }
},{
    "name": "cluster",
    "interface": "eth1",
    "ips": [
        "10.1.0.2",
        "10.2.0.2"
    ],
    "mac": "02:00:00:00:00:02",
    "default": true,
    "dns": {},
    "device-info": {
        "type": "pci",
        "version": "1.1.0",
        "pci": {
            "pci-address": "0000:03:00.1"
        }
    }
}]"#
    );
    // Not primary: nobody is default.
    let secondary = Attachment {
        primary: false,
        device_info: None,
        ..att
    };
    assert!(statuses(&secondary).iter().all(|s| !s.default));
}

#[test]
fn primary_without_gatewayed_address_defaults_the_first_sandbox_interface() {
    let r = result(
        r#"{"cniVersion":"1.0.0","interfaces":[{"name":"a","sandbox":"/p"},{"name":"b","sandbox":"/p"}],"ips":[{"interface":1,"address":"10.0.0.2/24"}]}"#,
    );
    let s = statuses(&Attachment {
        network: "n",
        primary: true,
        result: &r,
        device_info: None,
    });
    assert_eq!(
        s.iter()
            .map(|s| (s.interface.as_str(), s.default))
            .collect::<Vec<_>>(),
        [("a", true), ("b", false)]
    );
    assert!(s[0].ips.is_empty());
    assert_eq!(s[1].ips, ["10.0.0.2"]);
}

#[test]
fn parse_rejects_garbage_and_accepts_foreign_fields() {
    assert!(matches!(parse("{"), Err(Error::Parse { .. })));
    let s = parse(r#"[{"name":"x","dns":{},"unknown":1}]"#).unwrap();
    assert_eq!(s[0].name, "x");
    assert_eq!(render(&[]), "[]");
}
