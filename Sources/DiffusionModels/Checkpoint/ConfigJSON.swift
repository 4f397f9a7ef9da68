import Foundation

/// Typed access to a model's `config.json`, with errors that name the file and key.
struct ConfigJSON {
    let path: String
    private let object: [String: Any]

    init(path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CheckpointError.invalidConfig(path: path, reason: "missing or unreadable")
        }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw CheckpointError.invalidConfig(path: path, reason: "not a JSON object")
        }
        self.path = path
        self.object = object
    }

    /// Whether `key` is present and not null.
    func has(_ key: String) -> Bool { object[key] != nil && !(object[key] is NSNull) }

    func int(_ key: String, default value: Int) throws -> Int {
        guard has(key) else { return value }
        guard let n = object[key] as? NSNumber, n.doubleValue == n.doubleValue.rounded() else { throw wrong(key, "an integer") }
        return n.intValue
    }

    func double(_ key: String, default value: Double) throws -> Double {
        guard has(key) else { return value }
        guard let n = object[key] as? NSNumber else { throw wrong(key, "a number") }
        return n.doubleValue
    }

    func bool(_ key: String, default value: Bool) throws -> Bool {
        guard has(key) else { return value }
        guard let b = object[key] as? Bool else { throw wrong(key, "true or false") }
        return b
    }

    func string(_ key: String) -> String? { object[key] as? String }

    func ints(_ key: String, default value: [Int]) throws -> [Int] {
        guard has(key) else { return value }
        guard let list = object[key] as? [NSNumber] else { throw wrong(key, "a list of integers") }
        return list.map(\.intValue)
    }

    func strings(_ key: String, default value: [String]) throws -> [String] {
        guard has(key) else { return value }
        guard let list = object[key] as? [String] else { throw wrong(key, "a list of strings") }
        return list
    }

    /// diffusers' `block_out_channels` as the first level's width and every level's multiple of it.
    func levels(_ key: String, default value: [Int]) throws -> (base: Int, multipliers: [Int]) {
        let blocks = try ints(key, default: value)
        guard let first = blocks.first, first > 0, blocks.allSatisfy({ $0 % first == 0 }) else {
            throw CheckpointError.invalidConfig(path: path, reason: "\(key) \(blocks) are not multiples of the first")
        }
        return (first, blocks.map { $0 / first })
    }

    private func wrong(_ key: String, _ expected: String) -> CheckpointError {
        .invalidConfig(path: path, reason: "'\(key)' is not \(expected)")
    }
}
