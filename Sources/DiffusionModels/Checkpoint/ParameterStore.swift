import Foundation
import SafeTensors
import Synchronization
import TensorCore

/// The parameters of one model, by canonical (LDM) name, with strict accounting.
///
/// A module asks for each of its tensors by name and expected shape; the store checks the
/// shape, remembers that the tensor was used, and afterwards `checkAllUsed` reports any key
/// that no module asked for and that is not on the ignore list.
public final class ParameterStore: Sendable {
    /// Where one parameter lives: a file and the name inside it.
    public struct Location: Sendable {
        public let file: SafeTensorsFile
        public let key: String
        /// A part of the stored tensor, for files that store parameters differently.
        public let part: Part?

        /// Rows of the stored tensor (OpenCLIP's fused q/k/v projections), or its transpose
        /// (OpenCLIP's text projection, stored as (width, projection)).
        public enum Part: Sendable, Equatable {
            case rows(Range<Int>)
            case transposed
        }

        public init(file: SafeTensorsFile, key: String, part: Part? = nil) {
            self.file = file
            self.key = key
            self.part = part
        }

        /// Whether the part lies inside a stored tensor of `stored` shape.
        func fits(_ stored: [Int]) -> Bool {
            switch part {
            case nil: return true
            case .rows(let rows): return !stored.isEmpty && stored.count <= 2 && rows.lowerBound >= 0 && rows.upperBound <= stored[0]
            case .transposed: return stored.count == 2
            }
        }

        /// The parameter's shape: the stored one, or that of its part.
        func shape(stored: [Int]) -> [Int] {
            switch part {
            case nil: return stored
            case .rows(let rows): return [rows.count] + stored.dropFirst()
            case .transposed: return stored.count == 2 ? [stored[1], stored[0]] : stored
            }
        }
    }

    /// What the parameters are of, for messages ("UNet", "VAE", "text encoder").
    public let component: String
    /// Keep F16/BF16 matrix weights in the file's precision and widen them at each use
    /// (about half the memory of float32 weights, for a few percent of speed).
    /// Set once by the loader, before the store is shared.
    public var keepsHalfPrecision: Bool {
        get { halfPrecision.load(ordering: .relaxed) }
        set { halfPrecision.store(newValue, ordering: .relaxed) }
    }
    private let halfPrecision = Atomic<Bool>(false)
    private let locations: [String: Location]
    /// LoRA deltas added to some weights (resident float32 once patched); the others stay mapped.
    private let patches: WeightPatches
    /// The parameters asked for so far.
    private let used = Mutex<Set<String>>([])

    /// A store over `locations` (canonical name -> location).
    public init(component: String, locations: [String: Location], patches: WeightPatches = [:]) {
        self.component = component
        self.locations = locations
        self.patches = patches
    }

    /// A store over the same tensors with `patches` added to their weights (a fresh usage record).
    public func patched(_ patches: WeightPatches) -> ParameterStore {
        let store = ParameterStore(component: component, locations: locations, patches: patches)
        store.keepsHalfPrecision = keepsHalfPrecision
        return store
    }

    /// `t` with the deltas of `name`, if any.
    private func patch(_ t: Tensor, _ name: String) -> Tensor {
        patches[name]?.reduce(t) { $1.applied(to: $0) } ?? t
    }

    /// All canonical names.
    public var names: [String] { locations.keys.sorted() }

    /// The stored shape of a parameter, or nil when it is absent.
    public func shape(_ name: String) -> [Int]? {
        locations[name].flatMap { location in location.file.entries[location.key].map { location.shape(stored: $0.shape) } }
    }

    /// Whether a parameter exists (for optional parts such as biases).
    public func contains(_ name: String) -> Bool { locations[name] != nil }

    /// The parameter `name`, which must have `shape`. A stored shape that differs only by
    /// trailing 1s (a linear weight stored as a 1x1 convolution or the reverse) is accepted
    /// and reshaped.
    public func tensor(_ name: String, shape: [Int]) throws -> Tensor {
        let (location, entry) = try claim(name, shape: shape)
        return patch(try converted(location, entry, shape), name)
    }

    /// The stored tensor as float32 in `shape`. F16/BF16 data is widened into a copy, and the
    /// file's pages under it are dropped from resident memory, so that a checkpoint of half the
    /// size does not cost its own size on top of the widened weights.
    private func converted(_ location: Location, _ entry: SafeTensorsFile.Entry, _ shape: [Int]) throws -> Tensor {
        var t = try location.file.tensor(location.key)
        if entry.dtype != .f32 { location.file.releasePages(location.key) }
        switch location.part {
        case nil: break
        case .rows(let rows): t = t.slice(rows).copied()
        case .transposed: t = t.transposedLastTwo()
        }
        return t.shape == shape ? t : t.reshaped(shape)
    }

    /// The location and stored entry of `name`, checked against `shape` and marked as used.
    private func claim(_ name: String, shape: [Int]) throws -> (Location, SafeTensorsFile.Entry) {
        guard let location = locations[name], let entry = location.file.entries[location.key] else {
            throw CheckpointError.missingTensor(component: component, name: name, expectedShape: shape)
        }
        guard location.fits(entry.shape), ParameterStore.compatible(location.shape(stored: entry.shape), shape) else {
            throw CheckpointError.shapeMismatch(component: component, name: location.key, file: location.file.path,
                                                expected: shape, found: location.shape(stored: entry.shape))
        }
        used.withLock { _ = $0.insert(name) }
        return (location, entry)
    }

    static func compatible(_ stored: [Int], _ expected: [Int]) -> Bool {
        func trimmed(_ s: [Int]) -> [Int] {
            var s = s
            while s.count > 1 && s.last == 1 { s.removeLast() }
            return s
        }
        return stored == expected || trimmed(stored) == trimmed(expected)
    }

    /// A layer's weight matrix (or embedding table) as float32: used in place from an F32 file;
    /// from an F16/BF16 file widened into a copy that `Weight.releaseWidenedCopies()` may drop, or
    /// with `keepsHalfPrecision` left in the memory-mapped file and widened at each use.
    public func weight(_ name: String, shape: [Int]) throws -> Weight {
        let (location, entry) = try claim(name, shape: shape)
        guard entry.dtype == .f16 || entry.dtype == .bf16, patches[name] == nil, location.part == nil else {
            return Weight(resident: patch(try converted(location, entry, shape), name))
        }
        if keepsHalfPrecision { return Weight(file: location.file, key: location.key, shape: shape) }
        return Weight(widened: try WidenedCopy(file: location.file, key: location.key, shape: shape))
    }

    /// Throws when a stored parameter was never used and is not matched by `ignoring`
    /// (prefixes or exact names of keys that are expected but not needed).
    public func checkAllUsed(ignoring ignored: [String] = []) throws {
        let asked = used.withLock { $0 }
        let unused = locations.keys.filter { !asked.contains($0) && !ignored.contains(where: $0.hasPrefix) }.sorted()
        if let first = unused.first {
            let location = locations[first]!
            throw CheckpointError.unexpectedTensor(component: component, name: location.key, file: location.file.path,
                                                   count: unused.count)
        }
    }

    /// A view of the parameters under `prefix` (joined with ".").
    public func scope(_ prefix: String) -> ParameterScope { ParameterScope(store: self, prefix: prefix) }
}

/// A position in a model's parameter tree: a store plus a dotted prefix.
/// `scope["in_layers"]["0"].tensor("weight", ...)` reads `<prefix>.in_layers.0.weight`.
public struct ParameterScope: Sendable {
    public let store: ParameterStore
    public let prefix: String

    /// The child scope `<prefix>.<name>`.
    public subscript(_ name: String) -> ParameterScope {
        ParameterScope(store: store, prefix: path(name))
    }

    /// The child scope `<prefix>.<index>`.
    public subscript(_ index: Int) -> ParameterScope { self[String(index)] }

    /// The full name of a child.
    public func path(_ name: String) -> String { prefix.isEmpty ? name : prefix + "." + name }

    /// Reads `<prefix>.<name>`, which must have `shape`.
    public func tensor(_ name: String, shape: [Int]) throws -> Tensor {
        try store.tensor(path(name), shape: shape)
    }

    /// Reads the weight matrix `<prefix>.<name>` (see `ParameterStore.weight`).
    public func weight(_ name: String, shape: [Int]) throws -> Weight {
        try store.weight(path(name), shape: shape)
    }

    /// Whether `<prefix>.<name>` exists.
    public func contains(_ name: String) -> Bool { store.contains(path(name)) }
}

/// A weight matrix (or embedding table) as float32: resident, widened from the checkpoint's
/// F16/BF16 into a droppable copy, or widened from it at each use.
public struct Weight: Sendable {
    private enum Storage {
        case resident(Tensor)
        case widened(WidenedCopy)
        case perUse(SafeTensorsFile, key: String)
    }
    private let storage: Storage
    public let shape: [Int]

    init(resident: Tensor) {
        storage = .resident(resident)
        shape = resident.shape
    }

    init(widened copy: WidenedCopy) {
        storage = .widened(copy)
        shape = copy.shape
    }

    init(file: SafeTensorsFile, key: String, shape: [Int]) {
        storage = .perUse(file, key: key)
        self.shape = shape
    }

    /// The weights as float32 (a fresh conversion when they are kept in half precision, or when
    /// their widened copy was dropped).
    public func tensor() -> Tensor {
        switch storage {
        case .resident(let t): return t
        case .widened(let copy): return copy.tensor()
        case .perUse(let file, let key): return WidenedCopy.widen(file, key, shape, releasingPages: false)
        }
    }

    /// Whether the weights are held as a float32 copy widened from F16/BF16 (false once
    /// `releaseWidenedCopies` dropped it, until the next use widens them again).
    public var isWidenedCopyResident: Bool {
        if case .widened(let copy) = storage { return copy.isResident }
        return false
    }

    /// Rows `rows` of the first dimension (an embedding lookup): from a half-precision file only
    /// these rows are read and widened.
    public func rows(_ rows: Range<Int>) -> Tensor {
        switch storage {
        case .resident(let t): return t.slice(rows)
        case .widened(let copy): return copy.tensor().slice(rows)
        case .perUse(let file, let key):
            // The entry was validated when the checkpoint was opened and `rows` is checked by the caller.
            guard let t = try? file.tensor(key, rows: rows) else { preconditionFailure("rows \(rows) of weight '\(key)' unreadable") }
            return t.reshaped([rows.count] + shape.dropFirst())
        }
    }

    /// Drops every widened float32 copy of F16/BF16 weights (the UNet's, with `--weights float32`)
    /// from memory, as `MappedFile.releaseResidentPages` drops an F32 file's pages: called before
    /// work that does not need them (the VAE decoder), so that an F16 checkpoint's peak is no
    /// higher than an F32 one's. The next use widens them again (about a second for SD 1.5's UNet).
    /// Returns whether there was a copy to drop.
    @discardableResult
    public static func releaseWidenedCopies() -> Bool {
        WidenedCopy.releaseAll()
    }
}

/// The float32 copy of one F16/BF16 tensor, widened when made and again at the first use after
/// `releaseAll`. The file's pages under it are dropped once it is widened, so the checkpoint
/// does not cost its own size on top of the copy.
final class WidenedCopy: Sendable {
    let file: SafeTensorsFile
    let key: String
    let shape: [Int]
    private let copy: Mutex<Tensor?>

    /// Every copy made, weakly, for `releaseAll`.
    private static let all = Mutex<[Weak]>([])
    private struct Weak: Sendable { weak var copy: WidenedCopy? }

    init(file: SafeTensorsFile, key: String, shape: [Int]) throws {
        self.file = file
        self.key = key
        self.shape = shape
        let widened = try file.tensor(key)
        file.releasePages(key)
        copy = Mutex(widened.shape == shape ? widened : widened.reshaped(shape))
        WidenedCopy.all.withLock { list in
            list.removeAll { $0.copy == nil }
            list.append(Weak(copy: self))
        }
    }

    /// The copy, widened again if it was dropped.
    func tensor() -> Tensor {
        copy.withLock { t in
            if let t { return t }
            let widened = WidenedCopy.widen(file, key, shape, releasingPages: true)
            t = widened
            return widened
        }
    }

    /// Whether the copy is in memory.
    var isResident: Bool { copy.withLock { $0 != nil } }

    /// `key` of `file` as float32 in `shape`; `releasingPages` drops the file's pages under it
    /// from resident memory afterwards (not for weights widened at every use, which read them again).
    static func widen(_ file: SafeTensorsFile, _ key: String, _ shape: [Int], releasingPages: Bool) -> Tensor {
        // The entry was validated when the checkpoint was opened, so reading it cannot fail.
        guard let t = try? file.tensor(key) else { preconditionFailure("weight '\(key)' became unreadable") }
        if releasingPages { file.releasePages(key) }
        return t.shape == shape ? t : t.reshaped(shape)
    }

    /// Drops every copy; returns whether one was resident.
    static func releaseAll() -> Bool {
        let copies = all.withLock { list in
            list.removeAll { $0.copy == nil }
            return list.compactMap(\.copy)
        }
        var dropped = false
        for c in copies {
            c.copy.withLock { t in
                if t != nil { dropped = true }
                t = nil
            }
        }
        return dropped
    }
}

/// Errors loading a checkpoint; each names the tensor or file.
public enum CheckpointError: Error, CustomStringConvertible, Equatable {
    case missingTensor(component: String, name: String, expectedShape: [Int])
    case shapeMismatch(component: String, name: String, file: String, expected: [Int], found: [Int])
    case unexpectedTensor(component: String, name: String, file: String, count: Int)
    case notACheckpoint(path: String, reason: String)
    case unsupportedModel(path: String, reason: String)
    case invalidConfig(path: String, reason: String)

    public var description: String {
        switch self {
        case let .missingTensor(component, name, shape):
            return "\(component): the checkpoint has no tensor '\(name)' (expected shape \(shape))"
        case let .shapeMismatch(component, name, file, expected, found):
            return "\(file): \(component) tensor '\(name)' has shape \(found), expected \(expected)"
        case let .unexpectedTensor(component, name, file, count):
            let more = count > 1 ? " (and \(count - 1) more unused tensors)" : ""
            return "\(file): unexpected \(component) tensor '\(name)'\(more); this does not look like an SD 1.x \(component)"
        case let .notACheckpoint(path, reason):
            return "\(path): not a Stable Diffusion checkpoint: \(reason)"
        case let .unsupportedModel(path, reason):
            return "\(path): unsupported model: \(reason)"
        case let .invalidConfig(path, reason):
            return "\(path): invalid config: \(reason)"
        }
    }
}
