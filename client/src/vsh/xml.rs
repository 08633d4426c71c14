//! Just enough XML reading for the commands virsh answers from a domain's
//! XML (domblklist, domiflist): a small element tree and attribute lookup.

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
}

impl Element {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// `./child/@attr` for the first of `attrs` that is present, as virsh's
    /// XPath unions (`./source/@file|./source/@dev|…`) pick.
    pub fn child_attr(&self, child: &str, attrs: &[&str]) -> Option<&str> {
        let c = self.child(child)?;
        attrs.iter().find_map(|a| c.attr(a))
    }
}

fn element(e: &BytesStart<'_>) -> Result<Element, String> {
    let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
    let mut attrs = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|err| err.to_string())?;
        let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
        let value = a
            .unescape_value()
            .map_err(|err| err.to_string())?
            .into_owned();
        attrs.push((key, value));
    }
    Ok(Element {
        name,
        attrs,
        children: Vec::new(),
    })
}

/// Parse a document into its root element (text content is not kept).
pub fn parse(xml: &str) -> Result<Element, String> {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<Element> = Vec::new();
    loop {
        match reader.read_event().map_err(|e| e.to_string())? {
            Event::Start(e) => stack.push(element(&e)?),
            Event::Empty(e) => {
                let el = element(&e)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => return Ok(el),
                }
            }
            Event::End(_) => {
                let el = stack.pop().ok_or("unbalanced XML")?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => return Ok(el),
                }
            }
            Event::Eof => return Err("no root element".to_owned()),
            _ => {}
        }
    }
}

/// libxml2's attribute-value escaping (xmlAttrSerializeTxtContent).
fn dump_attr(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c => out.push(c),
        }
    }
}

/// libxml2's text escaping (xmlEscapeContent).
fn dump_text(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
}

fn dump_tag(e: &BytesStart<'_>, empty: bool, out: &mut String) -> Result<(), String> {
    let el = element(e)?;
    out.push('<');
    out.push_str(&el.name);
    for (k, v) in &el.attrs {
        out.push(' ');
        out.push_str(k);
        out.push_str("=\"");
        dump_attr(v, out);
        out.push('"');
    }
    out.push_str(if empty { "/>" } else { ">" });
    Ok(())
}

/// The `index`-th `<name>` child of the root's `<devices>` as virsh's
/// virXMLNodeToString writes it (libxml2's xmlNodeDump): double-quoted
/// attributes, the document's own whitespace inside the element, no
/// trailing newline. Direct children named in `drop` are left out, as
/// virsh unlinks `<backingStore>` before detaching a disk.
pub fn dump_device(xml: &str, name: &str, index: usize, drop: &[&str]) -> Result<String, String> {
    let mut reader = Reader::from_str(xml);
    // Names of the open elements, root first.
    let mut path: Vec<String> = Vec::new();
    let mut seen = 0usize;
    let mut out = String::new();
    // Depth of the element being dumped (its own entry in `path`), and
    // the depth of a dropped subtree being skipped.
    let mut capture: Option<usize> = None;
    let mut skip: Option<usize> = None;
    // The last thing written is a start tag: libxml2 writes an element
    // without content as `<x/>`, however the document spelled it.
    let mut bare = false;
    let in_devices = |path: &[String]| path.len() == 2 && path[1] == "devices";
    loop {
        let ev = reader.read_event().map_err(|e| e.to_string())?;
        match &ev {
            Event::Start(e) | Event::Empty(e) => {
                let empty = matches!(ev, Event::Empty(_));
                let tag = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                if capture.is_none() && in_devices(&path) && tag == name {
                    seen += 1;
                    if seen == index + 1 {
                        capture = Some(path.len() + 1);
                    }
                }
                if let Some(depth) = capture {
                    let child = path.len() + 1 == depth + 1;
                    if skip.is_none() && child && drop.contains(&tag.as_str()) {
                        skip = Some(path.len() + 1);
                    }
                    if skip.is_none() {
                        dump_tag(e, empty, &mut out)?;
                        bare = !empty;
                    }
                }
                if empty {
                    if capture == Some(path.len() + 1) {
                        return Ok(out);
                    }
                    if skip == Some(path.len() + 1) {
                        skip = None;
                    }
                } else {
                    path.push(tag);
                }
            }
            Event::End(_) => {
                let depth = path.len();
                if capture.is_some() && skip.is_none() && bare {
                    out.pop();
                    out.push_str("/>");
                    bare = false;
                } else if capture.is_some() && skip.is_none() {
                    out.push_str("</");
                    out.push_str(path.last().map(String::as_str).unwrap_or_default());
                    out.push('>');
                }
                path.pop();
                if skip == Some(depth) {
                    skip = None;
                }
                if capture == Some(depth) {
                    return Ok(out);
                }
            }
            Event::Text(t) if capture.is_some() && skip.is_none() => {
                bare = false;
                let raw = String::from_utf8_lossy(t.as_ref());
                dump_text(&raw, &mut out);
            }
            Event::CData(t) if capture.is_some() && skip.is_none() => {
                bare = false;
                out.push_str("<![CDATA[");
                out.push_str(&String::from_utf8_lossy(t.as_ref()));
                out.push_str("]]>");
            }
            Event::Comment(t) if capture.is_some() && skip.is_none() => {
                bare = false;
                out.push_str("<!--");
                out.push_str(&String::from_utf8_lossy(t.as_ref()));
                out.push_str("-->");
            }
            Event::GeneralRef(r) if capture.is_some() && skip.is_none() => {
                bare = false;
                let name = String::from_utf8_lossy(r.as_ref()).into_owned();
                let text = match name.as_str() {
                    "amp" => "&".to_owned(),
                    "lt" => "<".to_owned(),
                    "gt" => ">".to_owned(),
                    "quot" => "\"".to_owned(),
                    "apos" => "'".to_owned(),
                    n => n
                        .strip_prefix("#x")
                        .map(|h| u32::from_str_radix(h, 16))
                        .or_else(|| n.strip_prefix('#').map(str::parse::<u32>))
                        .and_then(Result::ok)
                        .and_then(char::from_u32)
                        .map(String::from)
                        .ok_or_else(|| format!("unknown entity '&{n};'"))?,
                };
                dump_text(&text, &mut out);
            }
            Event::Eof => return Err(format!("no <{name}> number {index} in the document")),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_elements_and_attributes() {
        let xml = "<domain type='test'><devices><disk type='file' device='disk'>\
                   <source file='/a&amp;b'/><target dev='vda' bus='virtio'/></disk></devices></domain>";
        let root = parse(xml).expect("valid XML");
        assert_eq!(root.name, "domain");
        let disk = root
            .child("devices")
            .and_then(|d| d.child("disk"))
            .expect("a disk");
        assert_eq!(disk.attr("device"), Some("disk"));
        assert_eq!(disk.child_attr("source", &["dev", "file"]), Some("/a&b"));
        assert_eq!(disk.child_attr("target", &["dev"]), Some("vda"));
        assert!(parse("<a><b></a>").is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn dumps_a_device_like_libxml2() {
        let xml = "<domain type='kvm'>\n  <name>a</name>\n  <devices>\n    \
                   <disk type='file' device='disk'>\n      <source file='/a&amp;b'/>\n      \
                   <backingStore type='file'>\n        <format type='raw'/>\n      </backingStore>\n      \
                   <target dev='vda' bus='virtio'/>\n      <serial>x&lt;y&apos;</serial>\n    </disk>\n    \
                   <disk type='file'><target dev='vdb'></target></disk>\n  </devices>\n</domain>\n";
        assert_eq!(
            dump_device(xml, "disk", 0, &["backingStore"]).expect("dumped"),
            "<disk type=\"file\" device=\"disk\">\n      <source file=\"/a&amp;b\"/>\n      \
             \n      <target dev=\"vda\" bus=\"virtio\"/>\n      <serial>x&lt;y'</serial>\n    </disk>"
        );
        assert_eq!(
            dump_device(xml, "disk", 1, &[]).expect("dumped"),
            "<disk type=\"file\"><target dev=\"vdb\"/></disk>"
        );
        assert!(dump_device(xml, "disk", 2, &[]).is_err());
        assert!(dump_device(xml, "interface", 0, &[]).is_err());
    }
}
