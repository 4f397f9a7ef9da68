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
        spec = NodeDescription.Parameter(name, kind, default: defaultValue?.parameterValue, help: help, affectsResult: affectsResult)
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

/// A Swift type a parameter can be read as.
public protocol ParameterType: Sendable {
    /// The value as this type, or nil when it is not one.
    init?(parameter value: ParameterValue)
    var parameterValue: ParameterValue { get }
    /// What a value must be, for errors ("an integer").
    static var expected: String { get }
}

extension Int: ParameterType {
    public init?(parameter value: ParameterValue) {
        guard let v = value.intValue else { return nil }
        self = v
    }
    public var parameterValue: ParameterValue { .integer(self) }
    public static var expected: String { "an integer" }
}

extension Double: ParameterType {
    public init?(parameter value: ParameterValue) {
        guard let v = value.doubleValue else { return nil }
        self = v
    }
    public var parameterValue: ParameterValue { .number(self) }
    public static var expected: String { "a number" }
}

extension String: ParameterType {
    public init?(parameter value: ParameterValue) {
        guard let v = value.stringValue else { return nil }
        self = v
    }
    public var parameterValue: ParameterValue { .text(self) }
    public static var expected: String { "text" }
}

extension Bool: ParameterType {
    public init?(parameter value: ParameterValue) {
        guard let v = value.boolValue else { return nil }
        self = v
    }
    public var parameterValue: ParameterValue { .boolean(self) }
    public static var expected: String { "true or false" }
}

/// An enum read from a `.choice` parameter by its raw values (`Param<SamplerKind>("sampler", default: .euler, ...)`).
public protocol ChoiceParameter: ParameterType, RawRepresentable<String>, CaseIterable {}

extension ChoiceParameter {
    public init?(parameter value: ParameterValue) {
        guard let text = value.stringValue, let v = Self(rawValue: text) else { return nil }
        self = v
    }
    public var parameterValue: ParameterValue { .text(rawValue) }
    public static var expected: String { "one of " + allCases.map(\.rawValue).joined(separator: ", ") }
}

extension NodeContext {
    /// A parameter's value as its declared type, or an error naming it.
    public subscript<Value>(_ parameter: Param<Value>) -> Value {
        get throws {
            guard let raw = self.parameter(parameter.name), let value = Value(parameter: raw) else {
                throw NodeError.invalidInput("parameter '\(parameter.name)' is not \(Value.expected)")
            }
            return value
        }
    }
}
