/// Rewrites the URL-valued attributes of an HTML document, as a Kubernetes apiserver does for `text/html` responses
/// of its service and pod proxy (k8s.io/apimachinery `pkg/util/proxy`: the `atomsToAttrs` table and `rewriteHTML`).
///
/// A small tokenizer in the spirit of the HTML5 one: comments, doctypes and processing instructions are copied;
/// the contents of raw-text elements (`script`, `style`, `textarea`, `title`, ...) are never parsed as markup; in a
/// start tag whose name is in the table, each listed attribute's value is decoded (character references), passed to
/// the URL rewriter and, when it changed, written back double-quoted and escaped. Everything else is copied byte for
/// byte (the apiserver re-serialises whole tags; the attribute values that matter come out the same). CSS `url()`
/// and URLs built by scripts are not touched, exactly as on a real apiserver.
public enum HTMLRewriter {
    /// Tag → attributes holding URLs (the apiserver's table: 25 tags).
    public static let urlAttributes: [String: Set<String>] = [
        "a": ["href"],
        "applet": ["codebase"],
        "area": ["href"],
        "audio": ["src"],
        "base": ["href"],
        "blockquote": ["cite"],
        "body": ["background"],
        "button": ["formaction"],
        "command": ["icon"],
        "del": ["cite"],
        "embed": ["src"],
        "form": ["action"],
        "frame": ["longdesc", "src"],
        "head": ["profile"],
        "html": ["manifest"],
        "iframe": ["longdesc", "src"],
        "img": ["longdesc", "src", "usemap"],
        "input": ["src", "usemap", "formaction"],
        "ins": ["cite"],
        "link": ["href"],
        "object": ["classid", "codebase", "data", "usemap"],
        "q": ["cite"],
        "script": ["src"],
        "source": ["src"],
        "video": ["poster", "src"],
    ]

    /// Elements whose content is text up to their end tag (Go's tokenizer's raw-text set).
    static let rawTextElements: Set<String> = [
        "iframe", "noembed", "noframes", "noscript", "plaintext", "script", "style", "textarea", "title", "xmp",
    ]

    public static func rewrite(_ html: [UInt8], _ rewriteURL: (String) -> String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(html.count + html.count / 8)
        var i = 0
        let n = html.count
        while i < n {
            guard html[i] == UInt8(ascii: "<"), i + 1 < n else {
                out.append(html[i])
                i += 1
                continue
            }
            let next = html[i + 1]
            if next == UInt8(ascii: "!") || next == UInt8(ascii: "?") || next == UInt8(ascii: "/") {
                let end: Int
                if html[i...].starts(with: Array("<!--".utf8)) {
                    end = find(Array("-->".utf8), in: html, from: i + 4).map { $0 + 3 } ?? n
                } else {
                    end = (html[i...].firstIndex(of: UInt8(ascii: ">")) ?? (n - 1)) + 1
                }
                out += html[i..<end]
                i = end
                continue
            }
            guard isASCIILetter(next) else {
                out.append(html[i])
                i += 1
                continue
            }
            let tag = StartTag.parse(html, at: i)
            guard tag.complete else {
                // A tag cut off by the end of the document is copied as it is.
                out += html[i...]
                break
            }
            let attributes = urlAttributes[tag.name] ?? []
            var copied = i
            for attribute in tag.attributes where attributes.contains(attribute.name) {
                guard let valueRange = attribute.valueRange, let quotedRange = attribute.quotedRange else { continue }
                let original = decodeCharacterReferences(html[valueRange])
                let rewritten = rewriteURL(original)
                guard rewritten != original else { continue }
                out += html[copied..<quotedRange.lowerBound]
                out.append(UInt8(ascii: "\""))
                out += escapeAttribute(rewritten)
                out.append(UInt8(ascii: "\""))
                copied = quotedRange.upperBound
            }
            out += html[copied..<tag.end]
            i = tag.end
            if rawTextElements.contains(tag.name), !tag.selfClosing {
                let close = findEndTag(tag.name, in: html, from: i) ?? n
                out += html[i..<close]
                i = close
            }
        }
        return out
    }

    // MARK: Tokenizing

    struct Attribute {
        var name: String
        /// The value without quotes; nil for an attribute without `=`.
        var valueRange: Range<Int>?
        /// The value with its quotes, if any (what gets replaced).
        var quotedRange: Range<Int>?
    }

    struct StartTag {
        var name: String
        var attributes: [Attribute]
        var selfClosing: Bool
        /// Index just past the `>` (or the end of the input).
        var end: Int
        /// False when the input ended before the tag's `>`.
        var complete = true

        /// Parses `<name attr=value ...>` starting at `start` (which holds `<` followed by a letter).
        static func parse(_ html: [UInt8], at start: Int) -> StartTag {
            let n = html.count
            var i = start + 1
            let nameStart = i
            while i < n, !isSpace(html[i]), html[i] != UInt8(ascii: "/"), html[i] != UInt8(ascii: ">") { i += 1 }
            let name = lowercased(html[nameStart..<i])
            var attributes: [Attribute] = []
            var selfClosing = false
            while i < n {
                while i < n, isSpace(html[i]) { i += 1 }
                guard i < n else { break }
                if html[i] == UInt8(ascii: ">") {
                    return StartTag(name: name, attributes: attributes, selfClosing: selfClosing, end: i + 1)
                }
                if html[i] == UInt8(ascii: "/") {
                    selfClosing = true
                    i += 1
                    continue
                }
                selfClosing = false
                let attributeStart = i
                i += 1  // the first character may be `=`
                while i < n, !isSpace(html[i]), html[i] != UInt8(ascii: "/"), html[i] != UInt8(ascii: ">"),
                    html[i] != UInt8(ascii: "=")
                {
                    i += 1
                }
                var attribute = Attribute(name: lowercased(html[attributeStart..<i]))
                var j = i
                while j < n, isSpace(html[j]) { j += 1 }
                if j < n, html[j] == UInt8(ascii: "=") {
                    j += 1
                    while j < n, isSpace(html[j]) { j += 1 }
                    if j < n, html[j] == UInt8(ascii: "\"") || html[j] == UInt8(ascii: "'") {
                        let quote = html[j]
                        guard let close = html[(j + 1)...].firstIndex(of: quote) else { break }
                        attribute.valueRange = (j + 1)..<close
                        attribute.quotedRange = j..<(close + 1)
                        i = close + 1
                    } else {
                        var k = j
                        while k < n, !isSpace(html[k]), html[k] != UInt8(ascii: ">") { k += 1 }
                        attribute.valueRange = j..<k
                        attribute.quotedRange = j..<k
                        i = k
                    }
                }
                attributes.append(attribute)
            }
            return StartTag(name: name, attributes: attributes, selfClosing: selfClosing, end: n, complete: false)
        }
    }

    /// Index of `</name` (case-insensitive, followed by space, `/` or `>`) at or after `from`.
    static func findEndTag(_ name: String, in html: [UInt8], from: Int) -> Int? {
        let nameBytes = Array(name.utf8)
        var i = from
        while let lt = html[i...].firstIndex(of: UInt8(ascii: "<")) {
            let after = lt + 2 + nameBytes.count
            if after <= html.count, html[lt + 1] == UInt8(ascii: "/"),
                lowercased(html[(lt + 2)..<(lt + 2 + nameBytes.count)]) == name,
                after == html.count || isSpace(html[after]) || html[after] == UInt8(ascii: ">") || html[after] == UInt8(ascii: "/")
            {
                return lt
            }
            i = lt + 1
        }
        return nil
    }

    static func find(_ needle: [UInt8], in html: [UInt8], from: Int) -> Int? {
        guard needle.count <= html.count else { return nil }
        var i = from
        while i + needle.count <= html.count {
            if html[i..<(i + needle.count)].elementsEqual(needle) { return i }
            i += 1
        }
        return nil
    }

    // MARK: Attribute values

    /// Decodes the character references that occur in URLs: `&amp;` `&lt;` `&gt;` `&quot;` `&apos;` and numeric ones.
    /// Anything else stays as written.
    static func decodeCharacterReferences(_ bytes: ArraySlice<UInt8>) -> String {
        let text = String(decoding: bytes, as: UTF8.self)
        guard text.contains("&") else { return text }
        var out = ""
        var rest = Substring(text)
        while let amp = rest.firstIndex(of: "&") {
            out += rest[..<amp]
            rest = rest[amp...]
            guard let semicolon = rest.prefix(12).firstIndex(of: ";") else {
                out.append("&")
                rest = rest.dropFirst()
                continue
            }
            let name = rest[rest.index(after: rest.startIndex)..<semicolon]
            var decoded: String?
            switch name {
            case "amp": decoded = "&"
            case "lt": decoded = "<"
            case "gt": decoded = ">"
            case "quot": decoded = "\""
            case "apos": decoded = "'"
            default:
                if name.hasPrefix("#x") || name.hasPrefix("#X"), let value = UInt32(name.dropFirst(2), radix: 16) {
                    decoded = Unicode.Scalar(value).map { String(Character($0)) }
                } else if name.hasPrefix("#"), let value = UInt32(name.dropFirst()) {
                    decoded = Unicode.Scalar(value).map { String(Character($0)) }
                }
            }
            if let decoded {
                out += decoded
                rest = rest[rest.index(after: semicolon)...]
            } else {
                out.append("&")
                rest = rest.dropFirst()
            }
        }
        return out + rest
    }

    /// `value` with `& " ' < >` as character references (for attribute values and text).
    static func escaped(_ value: String) -> String {
        String(decoding: escapeAttribute(value), as: UTF8.self)
    }

    static func escapeAttribute(_ value: String) -> [UInt8] {
        var out: [UInt8] = []
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "&"): out += Array("&amp;".utf8)
            case UInt8(ascii: "\""): out += Array("&quot;".utf8)
            case UInt8(ascii: "'"): out += Array("&#39;".utf8)
            case UInt8(ascii: "<"): out += Array("&lt;".utf8)
            case UInt8(ascii: ">"): out += Array("&gt;".utf8)
            default: out.append(byte)
            }
        }
        return out
    }

    private static func isSpace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0C || byte == 0x0D
    }

    private static func isASCIILetter(_ byte: UInt8) -> Bool {
        (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
    }

    private static func lowercased(_ bytes: ArraySlice<UInt8>) -> String {
        String(decoding: bytes.map { (0x41...0x5A).contains($0) ? $0 + 0x20 : $0 }, as: UTF8.self)
    }
}

extension HTMLRewriter.Attribute {
    init(name: String) {
        self.init(name: name, valueRange: nil, quotedRange: nil)
    }
}
