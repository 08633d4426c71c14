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
}
