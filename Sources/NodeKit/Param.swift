/// A node parameter declared once, with the Swift type the node reads it as: the description
/// lists it, and `run` reads it typed, so that the name is written in one place.
///
///     static let strength = Param<Double>("strength", .number(0...1), default: 0.75, help: "how much of the image is redrawn")
///     static let description = NodeDescription(name: "denoise", ..., parameters: [strength])
///     let strength = try context[Self.strength]
public struct Param<Value: ParameterType>: ParameterDeclaration {
    /// What the description lists: name, kind, default, help.
    public let spec: NodeDescription.Parameter
    public var name: String { spec.name }

    public init(_ name: String, _ kind: ParameterKind, default defaultValue: Value? = nil, help: String, affectsResult: Bool = true) {
        spec = NodeDescription.Parameter(name, kind, default: defaultValue.map(Value.coding.write), help: help, affectsResult: affectsResult)
    }
}

extension Param where Value: ChoiceParameter {
    /// A choice among the cases of `Value`, by their raw values.
    public init(_ name: String, default defaultValue: Value? = nil, help: String, affectsResult: Bool = true) {
        self.init(name, .choice(Value.allCases.map(\.rawValue)), default: defaultValue, help: help, affectsResult: affectsResult)
    }
}

/// What a node description's parameter list takes: a `Param`, or a plain `NodeDescription.Parameter`.
public protocol ParameterDeclaration: Sendable {
    var spec: NodeDescription.Parameter { get }
}

extension NodeDescription.Parameter: ParameterDeclaration {
    public var spec: NodeDescription.Parameter { self }
}

/// A Swift type a parameter can be read as: `Int`, `Double`, `String`, `Bool`, or a `ChoiceParameter` enum.
public protocol ParameterType: Sendable {
    static var coding: ParameterCoding<Self> { get }
}

/// How values of one Swift type are read from and written as parameter values.
public struct ParameterCoding<Value>: Sendable {
    /// The value as this type, or nil when it is not one.
    public let read: @Sendable (ParameterValue) -> Value?
    public let write: @Sendable (Value) -> ParameterValue
    /// What a value must be, for errors ("an integer").
    public let expected: String
}

extension Int: ParameterType { public static let coding = ParameterCoding<Int>(read: \.intValue, write: ParameterValue.integer, expected: "an integer") }
extension Double: ParameterType { public static let coding = ParameterCoding<Double>(read: \.doubleValue, write: ParameterValue.number, expected: "a number") }
extension String: ParameterType { public static let coding = ParameterCoding<String>(read: \.stringValue, write: ParameterValue.text, expected: "text") }
extension Bool: ParameterType { public static let coding = ParameterCoding<Bool>(read: \.boolValue, write: ParameterValue.boolean, expected: "true or false") }

/// An enum read from a `.choice` parameter by its raw values (`Param<SamplerKind>("sampler", default: .euler, ...)`).
public protocol ChoiceParameter: ParameterType, RawRepresentable<String>, CaseIterable {}

extension ChoiceParameter {
    public static var coding: ParameterCoding<Self> {
        ParameterCoding(read: { $0.stringValue.flatMap(Self.init(rawValue:)) }, write: { .text($0.rawValue) },
                        expected: "one of " + allCases.map(\.rawValue).joined(separator: ", "))
    }
}

extension NodeContext {
    /// A parameter's value as its declared type, or an error naming it.
    public subscript<Value>(_ parameter: Param<Value>) -> Value {
        get throws {
            guard let raw = self.parameter(parameter.name), let value = Value.coding.read(raw) else {
                throw NodeError.invalidInput("parameter '\(parameter.name)' is not \(Value.coding.expected)")
            }
            return value
        }
    }
}
