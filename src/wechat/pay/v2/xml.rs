//! WeChat Pay API v2's XML: one flat element of text children,
//! `<xml><key><![CDATA[value]]></key>...</xml>`, read into an ordered list of fields and
//! written back the same way.
//!
//! Hand-written on purpose: the shape is this one flat form, so a reader that accepts
//! only it is short enough to audit, and everything a general XML parser would have to be
//! configured to refuse is refused by construction, before anything is expanded: a
//! DOCTYPE (so no external entity, XXE, and no entity bomb, billion laughs), any entity
//! other than the five predefined ones and character references, processing
//! instructions other than the XML declaration, comments, attributes, nesting below the
//! root's children, duplicate keys, another root, trailing content, input that is not
//! UTF-8 (or declares another encoding, as GBK merchants' examples do) and input over a
//! size limit.

use std::fmt::Write;

/// Why a document was refused. [`XmlError::code`] is stable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// Longer than the caller's limit (bytes).
    #[error("XML over {0} bytes")]
    TooLarge(usize),
    /// Not UTF-8.
    #[error("XML is not UTF-8")]
    NotUtf8,
    /// The declaration names an encoding other than UTF-8.
    #[error("XML declares encoding {0:?}; only UTF-8 is accepted")]
    Encoding(String),
    /// A `<!DOCTYPE ...>`: DTDs (and with them every custom entity) are refused.
    #[error("DOCTYPE refused")]
    Doctype,
    /// An entity reference other than `&lt;` `&gt;` `&amp;` `&apos;` `&quot;` `&#..;`.
    #[error("entity &{0}; refused")]
    Entity(String),
    /// A processing instruction other than the leading XML declaration.
    #[error("processing instruction refused")]
    ProcessingInstruction,
    /// The root element is not the expected one.
    #[error("root element <{found}> is not <{expected}>")]
    Root {
        /// What the caller asked for (`xml`, or `root` for a refund's `req_info`).
        expected: &'static str,
        /// What the document has.
        found: String,
    },
    /// An element inside a child of the root.
    #[error("element nested in <{0}>")]
    Nested(String),
    /// The same key twice.
    #[error("duplicate key <{0}>")]
    Duplicate(String),
    /// Something after the root element.
    #[error("content after the root element")]
    Trailing,
    /// Anything else that is not well-formed flat XML (the message says what).
    #[error("malformed XML: {0}")]
    Malformed(&'static str),
}

impl XmlError {
    /// A stable snake_case code for logs, metrics and answers.
    pub fn code(&self) -> &'static str {
        match self {
            XmlError::TooLarge(_) => "too_large",
            XmlError::NotUtf8 => "not_utf8",
            XmlError::Encoding(_) => "unsupported_encoding",
            XmlError::Doctype => "doctype_refused",
            XmlError::Entity(_) => "entity_refused",
            XmlError::ProcessingInstruction => "processing_instruction_refused",
            XmlError::Root { .. } => "wrong_root",
            XmlError::Nested(_) => "nested_element",
            XmlError::Duplicate(_) => "duplicate_key",
            XmlError::Trailing => "trailing_content",
            XmlError::Malformed(_) => "malformed",
        }
    }
}

/// The fields of a document, in document order; keys are unique.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields(Vec<(String, String)>);

impl Fields {
    /// No fields.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key` unless it is absent or empty (WeChat's "not there").
    pub fn non_empty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    /// Sets `key`, replacing its value if present (keeps its place) or appending it.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let (key, value) = (key.into(), value.into());
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let at = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(at).1)
    }

    /// The fields in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// How many fields.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True with no fields.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `<xml><k><![CDATA[v]]></k>...</xml>`.
    pub fn to_xml(&self) -> String {
        write(self.iter())
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Fields {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut fields = Fields::new();
        for (k, v) in iter {
            fields.set(k, v);
        }
        fields
    }
}

/// Writes `<xml><k><![CDATA[v]]></k>...</xml>`. A `]]>` inside a value is split across
/// two CDATA sections, so every value reads back exactly. Keys must be XML names (they are
/// WeChat's field names, constants of the caller).
pub fn write<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    write_root("xml", fields)
}

/// `write` under another root element (a refund notify's `req_info` is `<root>`).
pub fn write_root<'a>(root: &str, fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    debug_assert!(is_name(root), "{root:?} is not an XML name");
    let mut out = format!("<{root}>");
    for (key, value) in fields {
        debug_assert!(is_name(key), "{key:?} is not an XML name");
        let _ = write!(
            out,
            "<{key}><![CDATA[{}]]></{key}>",
            value.replace("]]>", "]]]]><![CDATA[>")
        );
    }
    let _ = write!(out, "</{root}>");
    out
}

/// Reads a WeChat document whose root is `<xml>`, at most `limit` bytes.
pub fn parse(input: &[u8], limit: usize) -> Result<Fields, XmlError> {
    parse_root(input, "xml", limit)
}

/// Reads a flat document whose root is `<root_name>` (a refund notify's decrypted
/// `req_info` has `<root>`), at most `limit` bytes.
pub fn parse_root(input: &[u8], root_name: &'static str, limit: usize) -> Result<Fields, XmlError> {
    if input.len() > limit {
        return Err(XmlError::TooLarge(limit));
    }
    let text = std::str::from_utf8(input).map_err(|_| XmlError::NotUtf8)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut r = Reader { s: text, at: 0 };
    r.declaration()?;
    r.skip_space();
    r.no_markup_but_element()?;
    let (root, empty) = r.open_tag()?;
    if root != root_name {
        return Err(XmlError::Root {
            expected: root_name,
            found: root.to_owned(),
        });
    }
    let mut fields = Fields::new();
    let mut seen = std::collections::HashSet::new();
    if !empty {
        loop {
            r.skip_space();
            if r.eat("</") {
                r.close_tag(root)?;
                break;
            }
            if r.rest().is_empty() {
                return Err(XmlError::Malformed("unexpected end in the root element"));
            }
            if !r.rest().starts_with('<') {
                return Err(XmlError::Malformed("text directly in the root element"));
            }
            r.no_markup_but_element()?;
            let (key, empty) = r.open_tag()?;
            let value = if empty {
                String::new()
            } else {
                r.content(key)?
            };
            if !seen.insert(key) {
                return Err(XmlError::Duplicate(key.to_owned()));
            }
            fields.0.push((key.to_owned(), value));
        }
    }
    r.skip_space();
    if !r.rest().is_empty() {
        return Err(XmlError::Trailing);
    }
    Ok(fields)
}

/// An XML name as WeChat uses them: ASCII letters, digits, `_`, `-`, `.`, not starting
/// with a digit, `-` or `.` (no namespaces).
fn is_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// XML 1.0's `Char`, less what WeChat never sends: no C0 controls but tab, CR and LF.
fn is_xml_char(c: char) -> bool {
    !c.is_control() || matches!(c, '\t' | '\n' | '\r') || (c as u32) >= 0x7f
}

struct Reader<'a> {
    s: &'a str,
    at: usize,
}

impl<'a> Reader<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.at..]
    }

    fn eat(&mut self, prefix: &str) -> bool {
        if self.rest().starts_with(prefix) {
            self.at += prefix.len();
            true
        } else {
            false
        }
    }

    fn skip_space(&mut self) {
        let rest = self.rest();
        self.at += rest.len() - rest.trim_start_matches([' ', '\t', '\r', '\n']).len();
    }

    /// The optional `<?xml version="1.0" encoding="UTF-8"?>` at the very start.
    fn declaration(&mut self) -> Result<(), XmlError> {
        let rest = self.rest();
        let is_decl =
            rest.starts_with("<?xml") && rest[5..].starts_with([' ', '\t', '\r', '\n', '?']);
        if !is_decl {
            return Ok(());
        }
        let end = rest
            .find("?>")
            .ok_or(XmlError::Malformed("unterminated XML declaration"))?;
        let body = &rest[5..end];
        if let Some(at) = body.find("encoding") {
            let value = body[at + "encoding".len()..]
                .trim_start()
                .strip_prefix('=')
                .map(str::trim_start)
                .and_then(|v| {
                    let quote = v.chars().next().filter(|q| matches!(q, '"' | '\''))?;
                    v[1..].split(quote).next()
                })
                .ok_or(XmlError::Malformed(
                    "unreadable encoding in the declaration",
                ))?;
            if !matches!(value.to_ascii_lowercase().as_str(), "utf-8" | "utf8") {
                return Err(XmlError::Encoding(value.to_owned()));
            }
        }
        self.at += end + 2;
        Ok(())
    }

    /// At a `<`: refuses every markup that is not an element start, with its own error.
    fn no_markup_but_element(&self) -> Result<(), XmlError> {
        let rest = self.rest();
        if rest.starts_with("<!DOCTYPE") || rest.starts_with("<!doctype") {
            Err(XmlError::Doctype)
        } else if rest.starts_with("<?") {
            Err(XmlError::ProcessingInstruction)
        } else if rest.starts_with("<!--") {
            Err(XmlError::Malformed("comments are not accepted"))
        } else if rest.starts_with("<!") {
            Err(XmlError::Malformed(
                "markup declaration or CDATA outside a field",
            ))
        } else if rest.starts_with('<') {
            Ok(())
        } else if rest.is_empty() {
            Err(XmlError::Malformed("no root element"))
        } else {
            Err(XmlError::Malformed("text outside an element"))
        }
    }

    /// `<name>` or `<name/>`; returns the name and whether it was empty.
    fn open_tag(&mut self) -> Result<(&'a str, bool), XmlError> {
        if !self.eat("<") {
            return Err(XmlError::Malformed("expected an element"));
        }
        let rest = self.rest();
        let end = rest
            .find(['>', '/', ' ', '\t', '\r', '\n'])
            .ok_or(XmlError::Malformed("unterminated start tag"))?;
        let name = &rest[..end];
        if !is_name(name) {
            return Err(XmlError::Malformed("bad element name"));
        }
        self.at += end;
        self.skip_space();
        if self.eat("/>") {
            Ok((name, true))
        } else if self.eat(">") {
            Ok((name, false))
        } else {
            Err(XmlError::Malformed("attributes are not accepted"))
        }
    }

    /// After `</`: the rest of the end tag of `name`.
    fn close_tag(&mut self, name: &str) -> Result<(), XmlError> {
        if !self.eat(name) {
            return Err(XmlError::Malformed("end tag does not match its start tag"));
        }
        self.skip_space();
        if !self.eat(">") {
            return Err(XmlError::Malformed("end tag does not match its start tag"));
        }
        Ok(())
    }

    /// The text of field `key` up to and including its end tag: character data, CDATA
    /// sections and references, concatenated.
    fn content(&mut self, key: &str) -> Result<String, XmlError> {
        let mut value = String::new();
        loop {
            let rest = self.rest();
            let stop = rest.find(['<', '&']).unwrap_or(rest.len());
            let text = &rest[..stop];
            if text.contains("]]>") {
                return Err(XmlError::Malformed("]]> in character data"));
            }
            push_chars(&mut value, text)?;
            self.at += stop;
            let rest = self.rest();
            if rest.is_empty() {
                return Err(XmlError::Malformed("unexpected end in a field"));
            } else if rest.starts_with("<![CDATA[") {
                self.at += "<![CDATA[".len();
                let rest = self.rest();
                let end = rest
                    .find("]]>")
                    .ok_or(XmlError::Malformed("unterminated CDATA section"))?;
                push_chars(&mut value, &rest[..end])?;
                self.at += end + 3;
            } else if let Some(after) = rest.strip_prefix('&') {
                let name_len = after
                    .bytes()
                    .take_while(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'#' | b'_' | b'-' | b'.')
                    })
                    .count();
                if after.as_bytes().get(name_len) != Some(&b';') || name_len == 0 {
                    return Err(XmlError::Malformed("& that does not start a reference"));
                }
                value.push(reference(&after[..name_len])?);
                self.at += name_len + 2;
            } else if self.eat("</") {
                self.close_tag(key)?;
                return Ok(value);
            } else {
                self.no_markup_but_element()?;
                return Err(XmlError::Nested(key.to_owned()));
            }
        }
    }
}

fn push_chars(value: &mut String, text: &str) -> Result<(), XmlError> {
    if !text.chars().all(is_xml_char) {
        return Err(XmlError::Malformed("control character"));
    }
    value.push_str(text);
    Ok(())
}

/// The character a reference (between `&` and `;`) stands for; nothing is ever looked up
/// beyond XML's five predefined entities.
fn reference(name: &str) -> Result<char, XmlError> {
    let numeric = |digits: &str, radix| {
        u32::from_str_radix(digits, radix)
            .ok()
            .filter(|_| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(char::from_u32)
            .filter(|&c| c != '\0' && is_xml_char(c))
            .ok_or(XmlError::Malformed("bad character reference"))
    };
    match name {
        "lt" => Ok('<'),
        "gt" => Ok('>'),
        "amp" => Ok('&'),
        "apos" => Ok('\''),
        "quot" => Ok('"'),
        _ => {
            if let Some(hex) = name.strip_prefix("#x") {
                numeric(hex, 16)
            } else if let Some(dec) = name.strip_prefix('#') {
                numeric(dec, 10)
            } else {
                Err(XmlError::Entity(name.to_owned()))
            }
        }
    }
}

#[cfg(test)]
mod tests;
