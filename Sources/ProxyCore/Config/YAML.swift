internal import CYaml

/// A YAML document as a tree, composed from libyaml's (`libyaml-dev`) event parser: what kubeconfig loading needs
/// and nothing more. Aliases are resolved to the anchored node; tags are not interpreted (kubeconfig fields are
/// read as strings, booleans and lists by `Kubeconfig.parse`).
///
/// proxyd uses libyaml directly instead of a Swift YAML package: the packages available depend on all of
/// Foundation (CoreFoundation and ICU), which costs the daemon tens of MB of binary and about 7 MB of resident
/// memory for one file read at start-up.
indirect enum YAMLNode: Equatable {
    case scalar(String)
    case sequence([YAMLNode])
    /// Pairs in document order (a repeated key keeps its first value for lookups).
    case mapping([YAMLPair])

    /// YAML 1.1 null: empty, `~`, `null`, `Null`, `NULL`.
    var isNull: Bool {
        if case .scalar(let s) = self { return ["", "~", "null", "Null", "NULL"].contains(s) }
        return false
    }

    var scalar: String? {
        if case .scalar(let s) = self { return s }
        return nil
    }

    var sequence: [YAMLNode]? {
        if case .sequence(let items) = self { return items }
        return nil
    }

    var mapping: [YAMLPair]? {
        if case .mapping(let pairs) = self { return pairs }
        return nil
    }

    /// YAML 1.1 booleans, as Yams and go-yaml v2 read them: true/yes/on and false/no/off in any case.
    var bool: Bool? {
        switch scalar?.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: return nil
        }
    }

    /// The value of the first pair whose key is the scalar `key`.
    subscript(key: String) -> YAMLNode? {
        mapping?.first { $0.key.scalar == key }?.value
    }
}

struct YAMLPair: Equatable {
    var key: YAMLNode
    var value: YAMLNode
}

/// A syntax error, with libyaml's fixed problem text and 1-based positions (never an excerpt of the document).
struct YAMLError: Error, Equatable {
    /// "line L, column C", or "offset N" for encoding errors, when known.
    var position: String?
    var message: String
}

enum YAMLParser {
    /// Composes the single document of `bytes`; `nil` for an empty stream.
    static func compose(_ bytes: [UInt8]) throws(YAMLError) -> YAMLNode? {
        let parser = UnsafeMutablePointer<yaml_parser_t>.allocate(capacity: 1)
        defer { parser.deallocate() }
        guard yaml_parser_initialize(parser) != 0 else { throw YAMLError(message: "out of memory while parsing YAML") }
        defer { yaml_parser_delete(parser) }
        let result: Result<YAMLNode?, YAMLError> = bytes.withUnsafeBufferPointer { buffer in
            yaml_parser_set_input_string(parser, buffer.baseAddress, buffer.count)
            var composer = Composer()
            return composer.run(parser)
        }
        return try result.get()
    }

    private struct Composer {
        private enum Frame {
            case sequence(anchor: String?, items: [YAMLNode])
            case mapping(anchor: String?, pairs: [YAMLPair], pendingKey: YAMLNode?)
        }
        private var stack: [Frame] = []
        private var anchors: [String: YAMLNode] = [:]
        private var root: YAMLNode?
        private var documents = 0

        mutating func run(_ parser: UnsafeMutablePointer<yaml_parser_t>) -> Result<YAMLNode?, YAMLError> {
            var event = yaml_event_t()
            while true {
                guard yaml_parser_parse(parser, &event) != 0 else { return .failure(Self.error(of: parser)) }
                defer { yaml_event_delete(&event) }
                switch event.type {
                case YAML_STREAM_END_EVENT:
                    return .success(root)
                case YAML_DOCUMENT_START_EVENT:
                    documents += 1
                    if documents > 1 {
                        let mark = event.start_mark
                        return .failure(YAMLError(
                            position: "line \(mark.line + 1), column \(mark.column + 1)",
                            message: "expected a single document in the stream, but found another document"))
                    }
                case YAML_SCALAR_EVENT:
                    let s = event.data.scalar
                    let value = String(decoding: UnsafeBufferPointer(start: s.value, count: s.length), as: UTF8.self)
                    if let failure = add(.scalar(value), anchor: Self.string(s.anchor), mark: event.start_mark) {
                        return .failure(failure)
                    }
                case YAML_SEQUENCE_START_EVENT:
                    stack.append(.sequence(anchor: Self.string(event.data.sequence_start.anchor), items: []))
                case YAML_MAPPING_START_EVENT:
                    stack.append(.mapping(anchor: Self.string(event.data.mapping_start.anchor), pairs: [], pendingKey: nil))
                case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                    let node: YAMLNode
                    let anchor: String?
                    switch stack.removeLast() {
                    case .sequence(let a, let items):
                        node = .sequence(items)
                        anchor = a
                    case .mapping(let a, let pairs, _):
                        node = .mapping(pairs)
                        anchor = a
                    }
                    if let failure = add(node, anchor: anchor, mark: event.start_mark) { return .failure(failure) }
                case YAML_ALIAS_EVENT:
                    let name = Self.string(event.data.alias.anchor) ?? ""
                    guard let node = anchors[name] else {
                        let mark = event.start_mark
                        return .failure(YAMLError(
                            position: "line \(mark.line + 1), column \(mark.column + 1)", message: "found undefined alias"))
                    }
                    if let failure = add(node, anchor: nil, mark: event.start_mark) { return .failure(failure) }
                default:
                    break  // stream start, document end
                }
            }
        }

        /// Attaches a finished node to its parent (or makes it the root).
        private mutating func add(_ node: YAMLNode, anchor: String?, mark: yaml_mark_t) -> YAMLError? {
            if let anchor { anchors[anchor] = node }
            guard let top = stack.popLast() else {
                root = node
                return nil
            }
            switch top {
            case .sequence(let a, var items):
                items.append(node)
                stack.append(.sequence(anchor: a, items: items))
            case .mapping(let a, var pairs, let pendingKey):
                if let key = pendingKey {
                    pairs.append(YAMLPair(key: key, value: node))
                    stack.append(.mapping(anchor: a, pairs: pairs, pendingKey: nil))
                } else {
                    stack.append(.mapping(anchor: a, pairs: pairs, pendingKey: node))
                }
            }
            return nil
        }

        private static func string(_ pointer: UnsafeMutablePointer<yaml_char_t>?) -> String? {
            guard let pointer else { return nil }
            return String(cString: pointer)
        }

        private static func error(of parser: UnsafeMutablePointer<yaml_parser_t>) -> YAMLError {
            let p = parser.pointee
            let problem = p.problem.map { String(cString: $0) } ?? "cannot parse YAML"
            switch p.error {
            case YAML_MEMORY_ERROR:
                return YAMLError(message: "out of memory while parsing YAML")
            case YAML_READER_ERROR:
                return YAMLError(position: "offset \(p.problem_offset)", message: problem)
            default:
                var message = problem
                if let context = p.context.map({ String(cString: $0) }) {
                    message += " (\(context) at line \(p.context_mark.line + 1), column \(p.context_mark.column + 1))"
                }
                return YAMLError(
                    position: "line \(p.problem_mark.line + 1), column \(p.problem_mark.column + 1)", message: message)
            }
        }
    }
}
