//! `<bandwidth>` (libvirt's netdev_bandwidth_conf): the QoS of a guest
//! interface, a network, a portgroup or a network port. Rates are in
//! KiB/s, bursts in KiB, as libvirt documents them.

use crate::error::ConfError;
use crate::xml::{Element, Node};

/// One direction's limits (virNetDevBandwidthRate). Zero means unset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rate {
    pub average: u64,
    pub peak: u64,
    pub burst: u64,
    /// Guaranteed minimum; inbound on `type='network'` interfaces only.
    pub floor: u64,
}

/// Inbound (towards the guest) and outbound limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bandwidth {
    pub inbound: Option<Rate>,
    pub outbound: Option<Rate>,
}

/// Where a `<bandwidth>` stands decides what it may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BandwidthContext {
    /// `floor=` is accepted (guest interfaces of type network, ports).
    pub allow_floor: bool,
    /// `classID=` is accepted (network ports: the class the network
    /// driver made for the port's floor).
    pub allow_class_id: bool,
}

impl BandwidthContext {
    pub const NETWORK: Self = BandwidthContext {
        allow_floor: false,
        allow_class_id: false,
    };
    pub const PORT: Self = BandwidthContext {
        allow_floor: true,
        allow_class_id: true,
    };
    pub fn interface(is_network: bool) -> Self {
        BandwidthContext {
            allow_floor: is_network,
            allow_class_id: false,
        }
    }
}

fn number(el: &Element, attr: &str) -> Result<Option<u64>, ConfError> {
    match el.attr(attr) {
        None => Ok(None),
        Some(v) => v.trim().parse::<u64>().map(Some).map_err(|_| {
            ConfError::unsupported(format!("could not convert bandwidth {attr} value '{v}'"))
        }),
    }
}

fn parse_rate(el: &Element) -> Result<Rate, ConfError> {
    let average = number(el, "average")?;
    let has_floor = el.attr("floor").is_some();
    if average.is_none() && !has_floor {
        return Err(ConfError::detail(
            "Missing mandatory average or floor attributes",
        ));
    }
    if (el.attr("peak").is_some() || el.attr("burst").is_some()) && average.is_none() {
        return Err(ConfError::unsupported(
            "'peak' and 'burst' require 'average' attribute",
        ));
    }
    Ok(Rate {
        average: average.unwrap_or(0),
        peak: number(el, "peak")?.unwrap_or(0),
        burst: number(el, "burst")?.unwrap_or(0),
        floor: number(el, "floor")?.unwrap_or(0),
    })
}

impl Bandwidth {
    /// virNetDevBandwidthParse: the limits and the port's class ID.
    /// `None` when neither direction is given (libvirt then drops the
    /// element).
    pub fn parse(
        el: &Element,
        ctx: BandwidthContext,
    ) -> Result<(Option<Bandwidth>, Option<u32>), ConfError> {
        let class_id = match el.attr("classID") {
            None => None,
            Some(_) if !ctx.allow_class_id => {
                return Err(ConfError::detail(
                    "classID attribute not supported on <bandwidth> in this usage context",
                ));
            }
            Some(v) => Some(
                v.trim()
                    .parse::<u32>()
                    .map_err(|_| ConfError::internal(format!("Unable to parse class id '{v}'")))?,
            ),
        };
        let mut bw = Bandwidth::default();
        for (dir, slot) in [("inbound", &mut bw.inbound), ("outbound", &mut bw.outbound)] {
            let mut found = el.children_named(dir);
            let Some(first) = found.next() else { continue };
            if found.next().is_some() {
                return Err(ConfError::detail(format!(
                    "Only one child <{dir}> element allowed"
                )));
            }
            *slot = Some(parse_rate(first)?);
        }
        if bw.inbound.is_some_and(|r| r.floor > 0) && !ctx.allow_floor {
            return Err(ConfError::unsupported(
                "floor attribute is not supported for this config",
            ));
        }
        if bw.outbound.is_some_and(|r| r.floor > 0) {
            return Err(ConfError::unsupported(
                "'floor' attribute allowed only in <inbound> element",
            ));
        }
        let any = bw.inbound.is_some() || bw.outbound.is_some();
        Ok((any.then_some(bw), class_id))
    }

    /// The `<bandwidth>` child of `parent`, parsed.
    pub fn of(parent: &Element, ctx: BandwidthContext) -> Result<Option<Bandwidth>, ConfError> {
        match parent.child("bandwidth") {
            None => Ok(None),
            Some(el) => Ok(Self::parse(el, ctx)?.0),
        }
    }

    /// Put `parent`'s `<bandwidth>` in libvirt's canonical form
    /// (virNetDevBandwidthFormat): numbers re-printed, attributes in
    /// libvirt's order, zero rates and unknown children dropped, the
    /// element itself dropped when nothing is left.
    pub fn canonicalize(parent: &mut Element, ctx: BandwidthContext) -> Result<(), ConfError> {
        let Some(pos) = parent
            .children
            .iter()
            .position(|n| matches!(n, Node::Element(e) if e.name == "bandwidth"))
        else {
            return Ok(());
        };
        let Node::Element(el) = &parent.children[pos] else {
            return Ok(());
        };
        match Self::parse(el, ctx)? {
            (Some(bw), class_id) => {
                parent.children[pos] = Node::Element(bw.to_element(class_id));
            }
            (None, _) => {
                parent.children.remove(pos);
            }
        }
        Ok(())
    }

    pub fn to_element(&self, class_id: Option<u32>) -> Element {
        let mut el = Element::new("bandwidth");
        if let Some(id) = class_id.filter(|&id| id > 0) {
            el.set_attr("classID", id.to_string());
        }
        for (name, rate) in [("inbound", self.inbound), ("outbound", self.outbound)] {
            let Some(r) = rate.filter(|r| r.average > 0 || r.floor > 0) else {
                continue;
            };
            let mut e = Element::new(name);
            for (attr, v) in [
                ("average", r.average),
                ("peak", r.peak),
                ("floor", r.floor),
                ("burst", r.burst),
            ] {
                if v > 0 {
                    e.set_attr(attr, v.to_string());
                }
            }
            el = el.with_child(e);
        }
        el
    }

    /// The guaranteed inbound rate, 0 when none.
    pub fn floor(&self) -> u64 {
        self.inbound.map_or(0, |r| r.floor)
    }
}

/// libvirt's typed-parameter names for bandwidth (VIR_DOMAIN_BANDWIDTH_*,
/// VIR_NETWORK_PORT_BANDWIDTH_*).
pub mod param {
    pub const IN_AVERAGE: &str = "inbound.average";
    pub const IN_PEAK: &str = "inbound.peak";
    pub const IN_BURST: &str = "inbound.burst";
    pub const IN_FLOOR: &str = "inbound.floor";
    pub const OUT_AVERAGE: &str = "outbound.average";
    pub const OUT_PEAK: &str = "outbound.peak";
    pub const OUT_BURST: &str = "outbound.burst";
}

impl Bandwidth {
    /// `base` with the given typed parameters applied: a direction any
    /// parameter names starts from what `base` had there; one left with
    /// neither average nor floor is removed (libvirt: average 0 clears).
    /// An unknown name is returned as the error.
    pub fn with_params<'a>(
        base: Option<Bandwidth>,
        params: impl IntoIterator<Item = (&'a str, u64)>,
    ) -> Result<Option<Bandwidth>, String> {
        let base = base.unwrap_or_default();
        let (mut inbound, mut outbound) = (base.inbound, base.outbound);
        for (field, value) in params {
            let (dir, slot): (&mut Option<Rate>, fn(&mut Rate) -> &mut u64) = match field {
                param::IN_AVERAGE => (&mut inbound, |r| &mut r.average),
                param::IN_PEAK => (&mut inbound, |r| &mut r.peak),
                param::IN_BURST => (&mut inbound, |r| &mut r.burst),
                param::IN_FLOOR => (&mut inbound, |r| &mut r.floor),
                param::OUT_AVERAGE => (&mut outbound, |r| &mut r.average),
                param::OUT_PEAK => (&mut outbound, |r| &mut r.peak),
                param::OUT_BURST => (&mut outbound, |r| &mut r.burst),
                other => return Err(other.to_owned()),
            };
            *slot(dir.get_or_insert_with(Rate::default)) = value;
        }
        let keep = |r: Option<Rate>| r.filter(|r| r.average > 0 || r.floor > 0);
        let bw = Bandwidth {
            inbound: keep(inbound),
            outbound: keep(outbound),
        };
        Ok((bw.inbound.is_some() || bw.outbound.is_some()).then_some(bw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(xml: &str) -> Element {
        crate::xml::parse(xml).expect("test XML")
    }

    #[test]
    fn canonical_order_and_dropped_parts() {
        let mut iface = el("<interface><bandwidth><outbound burst='064' average='10'/>\
             <inbound floor='5' average='0100' peak='200'/><junk/></bandwidth></interface>");
        Bandwidth::canonicalize(&mut iface, BandwidthContext::interface(true)).expect("valid");
        assert_eq!(
            iface
                .child("bandwidth")
                .map(|b| b.to_xml())
                .unwrap_or_default(),
            "<bandwidth>\n  <inbound average='100' peak='200' floor='5'/>\n  <outbound average='10' burst='64'/>\n</bandwidth>\n"
        );
        let mut empty = el("<interface><bandwidth><junk/></bandwidth></interface>");
        Bandwidth::canonicalize(&mut empty, BandwidthContext::NETWORK).expect("valid");
        assert!(empty.child("bandwidth").is_none());
    }

    #[test]
    fn libvirt_errors() {
        let cases = [
            (
                "<bandwidth><inbound peak='1'/></bandwidth>",
                BandwidthContext::NETWORK,
                "Missing mandatory average or floor attributes",
            ),
            (
                "<bandwidth><inbound floor='1' peak='2'/></bandwidth>",
                BandwidthContext::PORT,
                "unsupported configuration: 'peak' and 'burst' require 'average' attribute",
            ),
            (
                "<bandwidth><inbound average='x'/></bandwidth>",
                BandwidthContext::NETWORK,
                "unsupported configuration: could not convert bandwidth average value 'x'",
            ),
            (
                "<bandwidth><inbound average='1'/><inbound average='2'/></bandwidth>",
                BandwidthContext::NETWORK,
                "Only one child <inbound> element allowed",
            ),
            (
                "<bandwidth><inbound average='1' floor='1'/></bandwidth>",
                BandwidthContext::interface(false),
                "unsupported configuration: floor attribute is not supported for this config",
            ),
            (
                "<bandwidth><outbound average='1' floor='1'/></bandwidth>",
                BandwidthContext::PORT,
                "unsupported configuration: 'floor' attribute allowed only in <inbound> element",
            ),
            (
                "<bandwidth classID='3'><inbound average='1'/></bandwidth>",
                BandwidthContext::NETWORK,
                "classID attribute not supported on <bandwidth> in this usage context",
            ),
        ];
        for (xml, ctx, want) in cases {
            let got = Bandwidth::parse(&el(xml), ctx).expect_err(xml);
            assert_eq!(got.message, want, "{xml}");
        }
    }

    #[test]
    fn typed_parameters_merge_and_clear() {
        let base = Bandwidth {
            inbound: Some(Rate {
                average: 100,
                peak: 200,
                ..Rate::default()
            }),
            outbound: None,
        };
        let merged = Bandwidth::with_params(
            Some(base),
            [(param::IN_AVERAGE, 300), (param::OUT_AVERAGE, 10)],
        )
        .expect("known");
        assert_eq!(
            merged.and_then(|b| b.inbound).map(|r| (r.average, r.peak)),
            Some((300, 200))
        );
        let cleared = Bandwidth::with_params(Some(base), [(param::IN_AVERAGE, 0)]).expect("known");
        assert_eq!(cleared, None);
        assert_eq!(
            Bandwidth::with_params(None, [("inbound.nonsense", 1)]),
            Err("inbound.nonsense".to_owned())
        );
    }

    #[test]
    fn port_keeps_class_id() {
        let (bw, id) = Bandwidth::parse(
            &el("<bandwidth classID='3'><inbound average='1000' floor='200'/></bandwidth>"),
            BandwidthContext::PORT,
        )
        .expect("valid");
        assert_eq!(id, Some(3));
        assert_eq!(bw.map(|b| b.floor()), Some(200));
    }
}
