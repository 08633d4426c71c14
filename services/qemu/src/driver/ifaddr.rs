//! virDomainInterfaceAddresses: the guest's addresses as the host sees
//! them. `lease`: the DHCP leases the network service's dnsmasq handed to
//! each `type='network'` interface's MAC (libvirt's
//! virDomainNetDHCPInterfaces); `arp`: the host's neighbour table for the
//! guest's MACs (libvirt's qemuARPGetInterfaces); `agent` needs a guest
//! agent channel, which this driver does not support.

use super::*;
use virtmesh_conf::Element;

/// One host interface of the guest as `domifaddr` names it.
struct Nic {
    name: String,
    mac: String,
    network: Option<String>,
}

fn nics(def: &DomainDef) -> Vec<Nic> {
    def.devices()
        .into_iter()
        .filter(|d| d.name == "interface")
        .map(|d: &Element| Nic {
            name: d
                .child("target")
                .and_then(|t| t.attr("dev"))
                .unwrap_or_default()
                .to_owned(),
            mac: hostnet::mac_of(d).to_ascii_lowercase(),
            network: (d.attr("type") == Some("network"))
                .then(|| d.child("source").and_then(|s| s.attr("network")))
                .flatten()
                .map(str::to_owned),
        })
        .collect()
}

impl QemuDriver {
    pub async fn interface_addresses(
        &self,
        r: Option<&pb::ObjectRef>,
        source: pb::AddressSource,
    ) -> Result<Vec<pb::DomainInterface>> {
        let dom = self.find(r)?;
        let def = dom
            .lock()
            .live
            .as_ref()
            .map(|l| l.def.clone())
            .ok_or_else(err::not_running)?;
        match source {
            pb::AddressSource::Lease => self.lease_addresses(&def).await,
            pb::AddressSource::Arp => Ok(arp_addresses(
                &def,
                &std::fs::read_to_string("/proc/net/arp").unwrap_or_default(),
            )),
            pb::AddressSource::Agent => Err(err::qemu(
                ErrorCode::ArgumentUnsupported,
                "argument unsupported: QEMU guest agent is not configured",
            )),
        }
    }

    /// Interfaces without a lease are left out, as libvirt does.
    async fn lease_addresses(&self, def: &DomainDef) -> Result<Vec<pb::DomainInterface>> {
        let mut out = Vec::new();
        for nic in nics(def) {
            let Some(network) = &nic.network else {
                continue;
            };
            let leases = self.inner.net.leases(network, &nic.mac).await?;
            if leases.is_empty() {
                continue;
            }
            out.push(pb::DomainInterface {
                name: nic.name,
                hwaddr: nic.mac,
                addrs: leases
                    .into_iter()
                    .map(|l| pb::IpAddress {
                        family: l.family,
                        address: l.ipaddr,
                        prefix: l.prefix,
                    })
                    .collect(),
            });
        }
        Ok(out)
    }
}

/// `/proc/net/arp` entries (complete ones: flags not 0) whose MAC is one of
/// the guest's; the prefix is unknown there (0), as in libvirt.
fn arp_addresses(def: &DomainDef, table: &str) -> Vec<pb::DomainInterface> {
    let entries: Vec<(&str, String)> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4 && f[2] != "0x0").then(|| (f[0], f[3].to_ascii_lowercase()))
        })
        .collect();
    nics(def)
        .into_iter()
        .filter_map(|nic| {
            let addrs: Vec<pb::IpAddress> = entries
                .iter()
                .filter(|(_, mac)| *mac == nic.mac)
                .map(|(ip, _)| pb::IpAddress {
                    family: "ipv4".into(),
                    address: (*ip).to_owned(),
                    prefix: 0,
                })
                .collect();
            (!addrs.is_empty()).then_some(pb::DomainInterface {
                name: nic.name,
                hwaddr: nic.mac,
                addrs,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arp_entries_for_the_guest_macs_only() {
        let def = DomainDef::parse(
            "<domain type='qemu'><name>g</name><memory>65536</memory><os><type>hvm</type></os>\
             <devices><interface type='bridge'><mac address='52:54:00:AA:00:01'/><source bridge='br0'/>\
             <target dev='vnet3'/></interface></devices></domain>",
        )
        .expect("def");
        let table = "IP address       HW type     Flags       HW address            Mask     Device\n\
                     10.0.0.5         0x1         0x2         52:54:00:aa:00:01     *        br0\n\
                     10.0.0.6         0x1         0x0         52:54:00:aa:00:01     *        br0\n\
                     10.0.0.7         0x1         0x2         52:54:00:aa:00:02     *        br0\n";
        let got = arp_addresses(&def, table);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].name, "vnet3");
        assert_eq!(got[0].hwaddr, "52:54:00:aa:00:01");
        assert_eq!(got[0].addrs.len(), 1);
        assert_eq!(got[0].addrs[0].address, "10.0.0.5");
    }
}
