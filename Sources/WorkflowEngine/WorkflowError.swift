/// A position in a workflow file (1-based line and column).
public struct SourceLocation: Sendable, Equatable, CustomStringConvertible {
    public let file: String
    public let line: Int
    public let column: Int

    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }

    public var description: String { "\(file):\(line):\(column)" }
}

/// A mistake in a workflow, found before anything runs: where it is, what is wrong and,
/// where there is one, a hint ("did you mean ...").
public struct WorkflowError: Error, CustomStringConvertible, Equatable {
    public enum Kind: String, Sendable {
        case syntax, unknownNodeType, unknownParameter, unknownPort, wrongType, valueOutOfRange, missingValue
        case missingNode, cycle, missingFile, badOverride, noOutputs
    }

    public let kind: Kind
    public let location: SourceLocation?
    public let message: String
    public let hint: String?

    public init(_ kind: Kind, at location: SourceLocation?, _ message: String, hint: String? = nil) {
        self.kind = kind
        self.location = location
        self.message = message
        self.hint = hint
    }

    public var description: String {
        let place = location.map { "\($0): " } ?? ""
        return "\(place)error: \(message)" + (hint.map { "\n  hint: \($0)" } ?? "")
    }
}

/// Several workflow errors at once (validation reports all it finds).
public struct WorkflowErrors: Error, CustomStringConvertible {
    public let errors: [WorkflowError]

    public var description: String { errors.map(\.description).joined(separator: "\n") }
}

/// The closest candidate to `word` by edit distance, for "did you mean" hints (nil when nothing is close).
func closest(_ word: String, in candidates: [String]) -> String? {
    func distance(_ a: [Character], _ b: [Character]) -> Int {
        var previous = Array(0...b.count)
        for (i, ca) in a.enumerated() {
            var current = [i + 1]
            for (j, cb) in b.enumerated() {
                current.append(Swift.min(previous[j + 1] + 1, current[j] + 1, previous[j] + (ca == cb ? 0 : 1)))
            }
            previous = current
        }
        return previous[b.count]
    }
    let scored = candidates.map { ($0, distance(Array(word.lowercased()), Array($0.lowercased()))) }
    guard let best = scored.min(by: { $0.1 < $1.1 }) else { return nil }
    return best.1 <= Swift.max(2, word.count / 3) ? best.0 : nil
}
