//! Who may connect: networks of peer addresses (`--allow`, `--legacy-allow`), checked on
//! every connection before anything is read from it.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

/// A list of networks, such as `192.168.1.0/24,fd00::/8,10.0.0.7` (a bare address is a
/// network of one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Networks(Vec<IpNet>);

impl Networks {
    /// Whether `ip` is in one of the networks. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`,
    /// how a dual-stack socket shows IPv4 peers) count as their IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }
}

impl FromStr for Networks {
    type Err = String;

    fn from_str(list: &str) -> Result<Self, String> {
        let networks = list
            .split(',')
            .map(str::trim)
            .map(|item| {
                if item.is_empty() {
                    return Err(format!(
                        "an empty network in {list:?}; give networks as CIDR separated by \
                         commas, such as 192.168.1.0/24,fd00::/8"
                    ));
                }
                item.parse::<IpNet>()
                    .map(|net| net.trunc())
                    .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!(
                            "{item:?} is not a network or an address; give a CIDR network such \
                             as 192.168.1.0/24 or fd00::/8, or one address such as 10.0.0.7"
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Networks(networks))
    }
}

impl fmt::Display for Networks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, net) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{net}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn networks_hold_their_addresses_and_no_others() {
        let nets: Networks = "192.168.1.0/24, fd00::/8,10.0.0.7"
            .parse()
            .expect("networks");
        assert!(nets.contains(ip("192.168.1.200")));
        assert!(!nets.contains(ip("192.168.2.1")));
        assert!(nets.contains(ip("fd12::1")));
        assert!(!nets.contains(ip("fe80::1")));
        assert!(nets.contains(ip("10.0.0.7")));
        assert!(!nets.contains(ip("10.0.0.8")));
        // How a dual-stack socket shows an IPv4 peer.
        assert!(nets.contains(ip("::ffff:192.168.1.9")));
        assert_eq!(nets.to_string(), "192.168.1.0/24,fd00::/8,10.0.0.7/32");
    }

    #[test]
    fn host_bits_in_a_network_are_dropped() {
        let nets: Networks = "192.168.1.77/24".parse().expect("networks");
        assert_eq!(nets.to_string(), "192.168.1.0/24");
    }

    #[test]
    fn bad_lists_say_what_is_wrong() {
        let error = "192.168.1.0/24,,10.0.0.1"
            .parse::<Networks>()
            .expect_err("an empty item");
        assert!(error.contains("an empty network"), "{error}");
        let error = "192.168.1.0/33"
            .parse::<Networks>()
            .expect_err("a prefix too long");
        assert!(
            error.contains("\"192.168.1.0/33\" is not a network"),
            "{error}"
        );
        assert!("kitchen".parse::<Networks>().is_err());
    }

    proptest! {
        #[test]
        fn a_network_contains_exactly_the_addresses_sharing_its_prefix(
            net in any::<u32>(), prefix in 0u8..=32, probe in any::<u32>()
        ) {
            let text = format!("{}/{prefix}", std::net::Ipv4Addr::from(net));
            let nets: Networks = text.parse().expect("a network");
            let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
            let inside = (probe & mask) == (net & mask);
            prop_assert_eq!(nets.contains(IpAddr::from(std::net::Ipv4Addr::from(probe))), inside);
        }

        #[test]
        fn any_text_parses_or_errs_without_panicking(text in ".{0,40}") {
            let _ = text.parse::<Networks>();
        }
    }
}
