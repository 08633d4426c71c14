//! A small generic XML element tree with libvirt's formatting rules.
//!
//! libvirt's formatters emit a canonical form: two-space indentation,
//! attributes in single quotes in a fixed order, `<x/>` for empty elements
//! and leaf text inline.  The per-document modules normalise a parsed tree
//! into that order; this module only parses and prints.

use quick_xml::Reader;
use quick_xml::events::Event;

/// Why a document could not be parsed.  Displayed as libvirt shows
/// libxml2's errors: the line, the message, then the offending source line
/// with a caret under the position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at line {line}: {message}{context}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
    /// "\n<source line>\n----^", or "\n(null)\n^" for an empty document.
    pub context: String,
}

impl ParseError {
    /// An error at byte offset `pos` of `doc`.
    fn at(doc: &str, pos: usize, message: impl Into<String>) -> Self {
        let pos = clamp_boundary(doc, pos);
        ParseError {
            line: line_of(doc, pos),
            message: message.into(),
            context: context_at(doc, pos),
        }
    }
}

/// The largest char boundary not after `pos`.
fn clamp_boundary(doc: &str, pos: usize) -> usize {
    let mut p = pos.min(doc.len());
    while p > 0 && !doc.is_char_boundary(p) {
        p -= 1;
    }
    p
}

/// libxml2's context: the source line holding `pos` and a caret under it.
fn context_at(doc: &str, pos: usize) -> String {
    if doc.trim().is_empty() {
        return "\n(null)\n^".into();
    }
    let start = doc[..pos].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let end = doc[pos..].find('\n').map(|i| pos + i).unwrap_or(doc.len());
    let line = &doc[start..end];
    let col = doc[start..pos].chars().count();
    format!("\n{line}\n{}^", "-".repeat(col))
}

/// One node of the tree: an element or a run of text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    Text(String),
    /// libvirt formatters that always open and close some elements on two
    /// lines (`<source>` of pools, `<ip>` of networks) even when empty.
    Break,
}

/// An element with its attributes in document order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Node>,
}

impl Element {
    pub fn new(name: impl Into<String>) -> Self {
        Element {
            name: name.into(),
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Builder: add an attribute.
    pub fn with_attr(mut self, key: &str, value: impl Into<String>) -> Self {
        self.set_attr(key, value);
        self
    }

    /// Builder: add a child element.
    pub fn with_child(mut self, child: Element) -> Self {
        self.children.push(Node::Element(child));
        self
    }

    /// Builder: set the text content.
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.set_text(text);
        self
    }

    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Set an attribute, keeping its position when it already exists.
    pub fn set_attr(&mut self, key: &str, value: impl Into<String>) {
        let value = value.into();
        match self.attrs.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.attrs.push((key.to_owned(), value)),
        }
    }

    pub fn remove_attr(&mut self, key: &str) -> Option<String> {
        let pos = self.attrs.iter().position(|(k, _)| k == key)?;
        Some(self.attrs.remove(pos).1)
    }

    /// Reorder attributes: the listed keys first in that order, then the rest
    /// as they came.
    pub fn order_attrs(&mut self, order: &[&str]) {
        let mut sorted = Vec::with_capacity(self.attrs.len());
        for key in order {
            if let Some(pos) = self.attrs.iter().position(|(k, _)| k == key) {
                sorted.push(self.attrs.remove(pos));
            }
        }
        sorted.append(&mut self.attrs);
        self.attrs = sorted;
    }

    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            _ => None,
        })
    }

    pub fn elements_mut(&mut self) -> impl Iterator<Item = &mut Element> {
        self.children.iter_mut().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            _ => None,
        })
    }

    pub fn child(&self, name: &str) -> Option<&Element> {
        self.elements().find(|e| e.name == name)
    }

    pub fn child_mut(&mut self, name: &str) -> Option<&mut Element> {
        self.elements_mut().find(|e| e.name == name)
    }

    /// The child named `name`, created (appended) when missing.
    pub fn child_or_insert(&mut self, name: &str) -> &mut Element {
        let pos = self
            .children
            .iter()
            .position(|n| matches!(n, Node::Element(e) if e.name == name));
        let idx = match pos {
            Some(i) => i,
            None => {
                self.children.push(Node::Element(Element::new(name)));
                self.children.len() - 1
            }
        };
        match &mut self.children[idx] {
            Node::Element(e) => e,
            // The index was chosen among elements just above.
            _ => unreachable!("index points at an element"),
        }
    }

    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> {
        self.elements().filter(move |e| e.name == name)
    }

    /// Remove every child element named `name`; returns how many went.
    pub fn remove_children(&mut self, name: &str) -> usize {
        let before = self.children.len();
        self.children
            .retain(|n| !matches!(n, Node::Element(e) if e.name == name));
        before - self.children.len()
    }

    /// Concatenated text content (direct children only).
    pub fn text(&self) -> String {
        self.children
            .iter()
            .filter_map(|n| match n {
                Node::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Replace all children by one text node.
    pub fn set_text(&mut self, text: impl Into<String>) {
        self.children = vec![Node::Text(text.into())];
    }

    /// Text of the child element `name`, if present.
    pub fn child_text(&self, name: &str) -> Option<String> {
        self.child(name).map(|c| c.text())
    }

    /// Set (creating if needed) the text of child element `name`.
    pub fn set_child_text(&mut self, name: &str, text: impl Into<String>) {
        self.child_or_insert(name).set_text(text);
    }

    /// Sort child elements by a rank; equal ranks keep document order.
    pub fn sort_children_by<F: Fn(&Element) -> usize>(&mut self, rank: F) {
        self.children.sort_by_key(|n| match n {
            Node::Element(e) => rank(e),
            _ => usize::MAX,
        });
    }

    /// Sort child elements: names in `order` first in that order; unknown
    /// names go just before any of `tail` (e.g. alias/address) keeping their
    /// relative order.
    pub fn sort_children(&mut self, order: &[&str]) {
        let unknown = order.iter().position(|n| *n == "*").unwrap_or(order.len());
        self.sort_children_by(|e| order.iter().position(|n| *n == e.name).unwrap_or(unknown));
    }

    /// Parse a whole document and return its root element.
    pub fn parse(doc: &str) -> Result<Element, ParseError> {
        parse(doc)
    }

    /// Format as libxml2's node dump does (double quotes), the way libvirt
    /// returns foreign metadata elements.
    pub fn to_xml_libxml(&self) -> String {
        let mut out = String::new();
        format_element(self, 0, true, &mut out);
        out
    }

    /// Format in libvirt's style with a trailing newline.
    pub fn to_xml(&self) -> String {
        self.to_xml_at(0)
    }

    /// Format nested `depth` levels deep (two spaces each), for a formatter
    /// that writes the surrounding document itself.  Unlike indenting each
    /// line of [`Element::to_xml`], this leaves newlines inside text alone,
    /// as libvirt's virBuffer does (re-indenting them drifts on every
    /// define/dumpxml cycle).
    pub fn to_xml_at(&self, depth: usize) -> String {
        let mut out = String::new();
        format_element(self, depth, false, &mut out);
        out
    }
}

fn line_of(doc: &str, pos: usize) -> usize {
    let end = pos.min(doc.len());
    doc.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

fn utf8(bytes: &[u8], doc: &str, pos: usize) -> Result<String, ParseError> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| ParseError::at(doc, pos, "Input is not proper UTF-8"))
}

/// Resolve character and predefined entity references in `raw`.
fn unescape(raw: &str) -> Option<String> {
    if !raw.contains('&') {
        return Some(raw.to_owned());
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let tail = &rest[amp + 1..];
        let semi = tail.find(';')?;
        out.push_str(&resolve_entity(&tail[..semi])?);
        rest = &tail[semi + 1..];
    }
    out.push_str(rest);
    Some(out)
}

fn resolve_entity(name: &str) -> Option<String> {
    let s = match name {
        "amp" => "&",
        "lt" => "<",
        "gt" => ">",
        "apos" => "'",
        "quot" => "\"",
        _ => {
            let code = if let Some(hex) = name.strip_prefix("#x") {
                u32::from_str_radix(hex, 16).ok()?
            } else if let Some(dec) = name.strip_prefix('#') {
                dec.parse().ok()?
            } else {
                return None;
            };
            return char::from_u32(code).map(String::from);
        }
    };
    Some(s.to_owned())
}

/// XML 1.0's Name production (a letter, `_` or `:` first; then also
/// digits, `.`, `-` and the combining characters).  quick-xml does not
/// check names, and a nameless `<   />` would otherwise be formatted as
/// `</>`, which no parser accepts.
fn is_xml_name(name: &str) -> bool {
    let mut chars = name.chars();
    let start = |c: char| c.is_alphabetic() || c == '_' || c == ':';
    chars.next().is_some_and(start)
        && chars.all(|c| start(c) || c.is_alphanumeric() || matches!(c, '.' | '-' | '\u{b7}'))
}

fn start_element(
    e: &quick_xml::events::BytesStart<'_>,
    doc: &str,
    pos: usize,
) -> Result<Element, ParseError> {
    let err = |message: String| ParseError::at(doc, pos, message);
    let name = utf8(e.name().as_ref(), doc, pos)?;
    if !is_xml_name(&name) {
        return Err(err("StartTag: invalid element name".into()));
    }
    let mut el = Element::new(name);
    for attr in e.attributes() {
        let attr = attr.map_err(|e| err(format!("{e}")))?;
        let key = utf8(attr.key.as_ref(), doc, pos)?;
        if !is_xml_name(&key) {
            return Err(err("attributes construct error".into()));
        }
        // XML 1.0 §3.3.3 (as libxml2): literal tabs and newlines in an
        // attribute value are spaces; only character references keep them.
        let raw = utf8(&attr.value, doc, pos)?.replace(['\t', '\n'], " ");
        if raw.contains('<') {
            return Err(err("Unescaped '<' not allowed in attributes values".into()));
        }
        let value = unescape(&raw)
            .ok_or_else(|| err(format!("EntityRef: expecting ';' in attribute {key}")))?;
        if el.attr(&key).is_some() {
            return Err(err(format!("Attribute {key} redefined")));
        }
        el.attrs.push((key, value));
    }
    Ok(el)
}

/// Parse `doc` into its root element.  Comments, processing instructions and
/// whitespace between elements are dropped, as libvirt's parsers ignore them.
pub fn parse(doc: &str) -> Result<Element, ParseError> {
    // XML 1.0 §2.11: a parser sees every CR LF and lone CR as LF.
    let normalised;
    let doc = if doc.contains('\r') {
        normalised = doc.replace("\r\n", "\n").replace('\r', "\n");
        normalised.as_str()
    } else {
        doc
    };
    let mut reader = Reader::from_str(doc);
    let mut stack: Vec<Element> = Vec::new();
    // Line of each open element, for libxml2's messages.
    let mut lines: Vec<usize> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let pos = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        let event = match reader.read_event() {
            Ok(ev) => ev,
            Err(e) => {
                // quick-xml may report a position inside a multi-byte
                // character; slicing there would panic.
                let at =
                    clamp_boundary(doc, usize::try_from(reader.error_position()).unwrap_or(pos));
                return Err(match &e {
                    quick_xml::Error::IllFormed(
                        quick_xml::errors::IllFormedError::MismatchedEndTag { expected, found },
                    ) => {
                        // libxml2 points just past the offending end tag.
                        let end = doc[at..].find('>').map(|i| at + i + 1).unwrap_or(doc.len());
                        let open_line = lines.last().copied().unwrap_or(1);
                        ParseError::at(
                            doc,
                            end,
                            format!(
                                "Opening and ending tag mismatch: {expected} line {open_line} and {found}"
                            ),
                        )
                    }
                    _ => ParseError::at(doc, at, e.to_string()),
                });
            }
        };
        let err = |message: &str| ParseError::at(doc, pos, message);
        match event {
            Event::Start(e) => {
                if root.is_some() && stack.is_empty() {
                    return Err(err("Extra content at the end of the document"));
                }
                stack.push(start_element(&e, doc, pos)?);
                lines.push(line_of(doc, pos));
            }
            Event::Empty(e) => {
                let el = start_element(&e, doc, pos)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(Node::Element(el)),
                    None if root.is_none() => root = Some(el),
                    None => return Err(err("Extra content at the end of the document")),
                }
            }
            Event::End(_) => {
                let el = stack.pop().ok_or_else(|| err("unexpected end tag"))?;
                lines.pop();
                match stack.last_mut() {
                    Some(parent) => parent.children.push(Node::Element(el)),
                    None => root = Some(el),
                }
            }
            Event::Text(t) => {
                let raw = utf8(&t, doc, pos)?;
                match stack.last_mut() {
                    Some(parent) => {
                        let text = unescape(&raw).ok_or_else(|| err("EntityRef: expecting ';'"))?;
                        push_text(parent, &text);
                    }
                    None => {
                        if !raw.trim().is_empty() {
                            return Err(err(if root.is_none() {
                                "Start tag expected, '<' not found"
                            } else {
                                "Extra content at the end of the document"
                            }));
                        }
                    }
                }
            }
            Event::CData(t) => {
                let raw = utf8(&t, doc, pos)?;
                if let Some(parent) = stack.last_mut() {
                    push_text(parent, &raw);
                }
            }
            Event::GeneralRef(r) => {
                let name = utf8(&r, doc, pos)?;
                let text = resolve_entity(&name)
                    .ok_or_else(|| err(&format!("Entity '{name}' not defined")))?;
                match stack.last_mut() {
                    Some(parent) => push_text(parent, &text),
                    None => return Err(err("Start tag expected, '<' not found")),
                }
            }
            Event::Eof => break,
            // Declarations, comments, PIs and doctypes carry nothing for us.
            _ => {}
        }
    }
    if let Some(open) = stack.last() {
        let open_line = lines.last().copied().unwrap_or(1);
        // libxml2 counts the line at the very end of input but shows the
        // last line with content.
        let mut e = ParseError::at(
            doc,
            doc.trim_end().len(),
            format!(
                "Premature end of data in tag {} line {open_line}",
                open.name
            ),
        );
        e.line = line_of(doc, doc.len());
        return Err(e);
    }
    let mut root = root.ok_or_else(|| ParseError::at(doc, 0, "Document is empty"))?;
    strip_whitespace(&mut root);
    Ok(root)
}

/// Append text, merging with a preceding text node (entity references
/// arrive as separate events).
fn push_text(parent: &mut Element, text: &str) {
    if let Some(Node::Text(prev)) = parent.children.last_mut() {
        prev.push_str(text);
    } else {
        parent.children.push(Node::Text(text.to_owned()));
    }
}

/// Drop whitespace-only text: indentation between elements, and blank
/// content of leaves (libvirt prints those as `<x/>`).  Text beside child
/// elements goes too: libvirt's parsers read element content through
/// XPath and never see such stray text, and kept, it would move around as
/// the children are sorted (a define/dumpxml cycle would not be stable).
fn strip_whitespace(el: &mut Element) {
    let mixed = el.children.iter().any(|n| matches!(n, Node::Element(_)));
    el.children
        .retain(|n| !matches!(n, Node::Text(t) if mixed || t.trim().is_empty()));
    for child in el.elements_mut() {
        strip_whitespace(child);
    }
}

/// Escape text and attribute values the way libvirt's virBufferEscapeString
/// does (all five XML specials).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            // A raw CR would be read back as LF (XML 1.0 §2.11).
            '\r' => out.push_str("&#13;"),
            _ => out.push(c),
        }
    }
    out
}

/// Escape an attribute value: [`escape`], and the characters a parser
/// would otherwise normalise (tab, newline to a space; CR to LF) as
/// character references, so what is formatted parses back to the same
/// value.  (libvirt writes them raw, so its own output drifts there.)
pub fn escape_attr(s: &str) -> String {
    escape(s)
        .replace('\t', "&#9;")
        .replace('\n', "&#10;")
        .replace('\r', "&#13;")
}

/// Format `el`; `dquote` selects libxml2's double quotes, which libvirt
/// keeps for the foreign elements under `<metadata>` (it dumps them with
/// libxml2 rather than its own formatter).
fn format_element(el: &Element, depth: usize, dquote: bool, out: &mut String) {
    let q = if dquote { '"' } else { '\'' };
    let indent = "  ".repeat(depth);
    out.push_str(&indent);
    out.push('<');
    out.push_str(&el.name);
    for (k, v) in &el.attrs {
        out.push(' ');
        out.push_str(k);
        out.push('=');
        out.push(q);
        out.push_str(&escape_attr(v));
        out.push(q);
    }
    if el.children.is_empty() {
        out.push_str("/>\n");
        return;
    }
    if el.children.iter().all(|n| matches!(n, Node::Break)) {
        out.push_str(">\n");
        out.push_str(&indent);
        out.push_str("</");
        out.push_str(&el.name);
        out.push_str(">\n");
        return;
    }
    let has_elements = el.children.iter().any(|n| matches!(n, Node::Element(_)));
    if !has_elements {
        out.push('>');
        out.push_str(&escape(&el.text()));
        out.push_str("</");
        out.push_str(&el.name);
        out.push_str(">\n");
        return;
    }
    out.push_str(">\n");
    for child in &el.children {
        match child {
            Node::Element(e) => format_element(e, depth + 1, dquote || el.name == "metadata", out),
            // Text beside child elements (left when a normaliser adds a
            // child to an element that had text) is not part of any
            // libvirt document, and the parser drops it: so does output.
            Node::Text(_) | Node::Break => {}
        }
    }
    out.push_str(&indent);
    out.push_str("</");
    out.push_str(&el.name);
    out.push_str(">\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_simple() {
        let doc = "<a x='1' y=\"2\">\n  <b/>\n  <c>text &amp; more</c>\n</a>\n";
        let el = parse(doc).unwrap();
        assert_eq!(
            el.to_xml(),
            "<a x='1' y='2'>\n  <b/>\n  <c>text &amp; more</c>\n</a>\n"
        );
    }

    #[test]
    fn errors_never_panic() {
        for doc in [
            "",
            "this is not xml",
            "<a>",
            "<a></b>",
            "<a/><b/>",
            "<a x='1' x='2'/>",
            "<a>&bogus;</a>",
            "\u{0}<",
        ] {
            assert!(parse(doc).is_err(), "{doc:?} should fail");
        }
    }

    #[test]
    fn unclosed_reports_premature_end() {
        let err = parse("<domain>\n<name>x</name>").unwrap_err();
        assert_eq!(err.message, "Premature end of data in tag domain line 1");
    }
}

#[cfg(test)]
mod robustness {
    /// Every prefix and a set of byte mutations of real documents go
    /// through every parser without panicking.
    #[test]
    fn parsers_never_panic() {
        let docs = [
            "<domain type='test'><name>x</name><uuid>6695eb01-f6a4-8304-79aa-97f2502e193f</uuid><memory unit='MiB'>1</memory><vcpu current='1'>2</vcpu><os><type arch='i686'>hvm</type></os><cpu><numa><cell id='0' cpus='0-1,^1' memory='1'/></numa></cpu><devices><disk type='file'><target dev='sdzz'/><address type='pci' bus='0x1ff'/></disk><interface type='network'><source network='n'/><mac address='01:02:03:04:05:06'/></interface><serial type='tcp'/><graphics type='vnc' listen='1.2.3.4'/><controller type='sata' index='x'/></devices></domain>",
            "<network><name>n</name><forward mode='nat' dev='eth0'/><ip address='10.0.0.1' prefix='33'><dhcp><range start='10.0.0.9' end='10.0.0.2'/><host mac='zz'/></dhcp></ip></network>",
            "<pool type='netfs'><name>p</name><source><host name='h'/></source><target><path>//a//b/</path></target></pool>",
            "<volume><name>v</name><capacity unit='E'>99999</capacity></volume>",
            "<filter name='f' chain='ipv4-x'><rule action='drop' direction='in'><tcp flags='SYN/ACK' state='NEW' srcipmask='255.0.255.0' dscp='99'/></rule></filter>",
            "<secret ephemeral='maybe'><usage type='ceph'><name/></usage></secret>",
        ];
        for doc in docs {
            for end in 0..=doc.len() {
                let Some(prefix) = doc.get(..end) else {
                    continue;
                };
                let _ = crate::domain::DomainDef::parse(prefix);
                let _ = crate::network::NetworkDef::parse(prefix);
                let _ = crate::storage::PoolDef::parse(prefix);
                let _ = crate::storage::VolDef::parse(prefix);
                let _ = crate::misc::NwFilterDef::parse(prefix);
                let _ = crate::misc::SecretDef::parse(prefix);
                let _ = crate::misc::InterfaceDef::parse(prefix);
                let _ = crate::misc::NodeDeviceDef::parse(prefix);
            }
            for (i, _) in doc.char_indices() {
                for repl in ["<", ">", "'", "&", "\"", "/", "0", "-"] {
                    let mut m = doc.to_owned();
                    m.replace_range(i..i + 1, repl);
                    let _ = crate::domain::DomainDef::parse(&m);
                    let _ = crate::network::NetworkDef::parse(&m);
                    let _ = crate::misc::NwFilterDef::parse(&m);
                }
            }
        }
    }
}
