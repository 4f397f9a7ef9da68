import Crypto
import Foundation

/// One of `count` disjoint parts of every batch (`--shard I/N`, I from 0 to N-1). An item
/// belongs to the shard `SHA-256(its path relative to the folder) mod N`, not to a position in
/// the list, so adding or removing files does not move the other items to another shard, and
/// N processes (or Slurm array tasks) that share an output and a cache folder write every
/// output exactly once.
public struct Shard: Sendable, Equatable, CustomStringConvertible {
    public let index: Int
    public let count: Int

    /// A `--shard` value that is not `I/N` with 0 <= I < N.
    public struct ParseError: Error, CustomStringConvertible {
        public let description: String
    }

    public init(index: Int, count: Int) throws {
        guard count >= 1, (0..<count).contains(index) else {
            throw ParseError(description: "shard \(index)/\(count): expected I/N with N >= 1 and 0 <= I < N (shards count from 0)")
        }
        self.index = index
        self.count = count
    }

    /// Parses `I/N`.
    public init(parsing text: String) throws {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let index = Int(parts[0]), let count = Int(parts[1]) else {
            throw ParseError(description: "--shard \(text): expected I/N, e.g. 0/4 for the first of four shards")
        }
        try self.init(index: index, count: count)
    }

    /// The shard an item with this relative path belongs to.
    public static func of(_ relativePath: String, count: Int) -> Int {
        let digest = SHA256.hash(data: Data(relativePath.utf8))
        let value = digest.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        return Int(value % UInt64(count))
    }

    public func contains(_ relativePath: String) -> Bool { Shard.of(relativePath, count: count) == index }

    public var description: String { "\(index)/\(count)" }
}
