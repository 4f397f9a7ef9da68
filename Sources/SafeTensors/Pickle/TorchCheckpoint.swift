import Foundation
import ZIPFoundation

/// What can be wrong with a PyTorch checkpoint; each case names the file.
public enum TorchCheckpointError: Error, CustomStringConvertible, Equatable {
    /// The pickle asks for code or objects outside the allow-list: nothing of it ran.
    case refused(path: String, reason: String)
    /// The file is damaged or not a checkpoint.
    case corrupt(path: String, reason: String)

    public var description: String {
        switch self {
        case let .refused(path, reason): return "\(path): refused: \(reason)"
        case let .corrupt(path, reason): return "\(path): not a readable PyTorch checkpoint: \(reason)"
        }
    }
}

/// A PyTorch checkpoint as `torch.save` writes it (`.pth`, `.pt`, `.ckpt`, `.bin`), read into a
/// safetensors file held in memory, by the restricted `Unpickler`: no code in it runs.
///
/// Both layouts are read: the ZIP archive of PyTorch 1.6 and later (`NAME/data.pkl` and the raw
/// storages in `NAME/data/KEY`), and the older "legacy" stream (a magic-number pickle, a protocol
/// and a system-info pickle, the object pickle, a pickle of the storage keys, then each storage as
/// an 8-byte element count and its bytes).
///
/// The weights are the tensors of the saved object, named by their dict keys joined with dots.
/// When the object is a training checkpoint (a dict with no tensors of its own), its weights are
/// unwrapped first: the value of `state_dict`, else `params_ema`, else `params` (Lightning, BasicSR
/// and Real-ESRGAN files).
/// Values that are not tensors are dropped. Each tensor keeps its dtype and is made contiguous.
public enum TorchCheckpoint {
    /// Whether `prefix` (a file's first bytes) is a PyTorch checkpoint rather than safetensors.
    public static func recognises(_ prefix: Data) -> Bool {
        prefix.starts(with: [0x50, 0x4B, 0x03, 0x04]) || prefix.starts(with: legacyMagic)
    }

    /// Reads the checkpoint at `path`.
    public static func read(path: String) throws -> SafeTensorsFile {
        let file = try MappedFile(path: path)
        let bytes = UnsafeRawBufferPointer(start: file.bytes, count: file.size)
        if bytes.starts(with: legacyMagic) { return try readLegacy(bytes, path: path) }
        let archive: Archive
        do {
            archive = try Archive(url: URL(fileURLWithPath: path), accessMode: .read)
        } catch {
            throw TorchCheckpointError.corrupt(path: path, reason: "neither a ZIP archive nor a legacy pickle (\(error))")
        }
        return try readArchive(archive, path: path)
    }

    /// The first pickle of a legacy file: protocol 2, the LONG1 0x1950a86a20f9469cfc6c, STOP.
    static let legacyMagic: [UInt8] = [0x80, 0x02, 0x8A, 0x0A, 0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19, 0x2E]

    // MARK: - ZIP archive

    static func readArchive(_ archive: Archive, path: String) throws -> SafeTensorsFile {
        // The archive's one folder holds data.pkl; its name varies ("archive", the file's stem).
        guard let pickleEntry = archive.filter({ $0.path.hasSuffix("data.pkl") && $0.path.split(separator: "/").count <= 2 })
            .min(by: { $0.path.count < $1.path.count }) else {
            throw TorchCheckpointError.corrupt(path: path, reason: "a ZIP archive without data.pkl (not saved by torch.save)")
        }
        let prefix = String(pickleEntry.path.dropLast("data.pkl".count))
        let pickle = try extract(archive, pickleEntry, path: path)
        var unpickler = Unpickler(path: path)
        let (root, _) = try pickle.withUnsafeBytes { bytes in
            try unpickler.load(bytes) { machine, id in machine.storage(try typedStorage(id, path: path)) }
        }
        // The storages by name, from one pass over the central directory (the archive's subscript
        // scans it from the start on every lookup).
        var storageEntries: [String: Entry] = [:]
        for entry in archive where entry.path.hasPrefix(prefix + "data/") { storageEntries[String(entry.path.dropFirst(prefix.count + 5))] = entry }
        let declared = bytesByKey(unpickler.storages)
        return try materialise(unpickler, root: root, path: path) { key, body in
            guard let entry = storageEntries[key] else {
                throw TorchCheckpointError.corrupt(path: path, reason: "storage '\(key)' has no \(prefix)data/\(key) in the archive")
            }
            let needed = declared[key] ?? 0
            guard entry.uncompressedSize <= UInt64(needed) + 4096 else {
                throw TorchCheckpointError.corrupt(path: path, reason: "\(entry.path) holds \(entry.uncompressedSize) bytes for a storage of \(needed)")
            }
            try extract(archive, entry, path: path).withUnsafeBytes { try body($0) }
        }
    }

    static func extract(_ archive: Archive, _ entry: Entry, path: String) throws -> Data {
        var data = Data()
        do {
            _ = try archive.extract(entry, bufferSize: 1 << 20, skipCRC32: true) { data.append($0) }
        } catch {
            throw TorchCheckpointError.corrupt(path: path, reason: "cannot read \(entry.path) from the archive (\(error))")
        }
        return data
    }

    // MARK: - Legacy stream

    static func readLegacy(_ bytes: UnsafeRawBufferPointer, path: String) throws -> SafeTensorsFile {
        var unpickler = Unpickler(path: path)
        var position = legacyMagic.count
        func next() throws -> Unpickler.Value {
            let (value, end) = try unpickler.load(bytes, from: position) { machine, id in
                var storage = try typedStorage(id, path: path)
                // A sixth item, the view metadata (view key, element offset, element count) of the root storage.
                if id.count >= 6, case let .sequence(view) = id[5], let metadata = machine.integersOrNil(view) {
                    (storage.offset, storage.count) = (metadata.offset, metadata.count)
                }
                return machine.storage(storage)
            }
            position = end
            return value
        }
        guard case .int(1001) = try next() else {
            throw TorchCheckpointError.corrupt(path: path, reason: "an unknown legacy protocol version")
        }
        _ = try next()  // system info: byte order and type sizes
        let root = try next()
        guard case let .sequence(keyList) = try next() else {
            throw TorchCheckpointError.corrupt(path: path, reason: "no list of storage keys after the object")
        }
        // Each listed storage: an 8-byte element count, then its data, in the listed order.
        var dataRanges: [String: Range<Int>] = [:]
        let dtypes = Dictionary(unpickler.storages.map { ($0.key, $0.dtype) }, uniquingKeysWith: { first, _ in first })
        for keyValue in unpickler.sequences[keyList] {
            guard case let .string(key) = keyValue, let dtype = dtypes[key] else {
                throw TorchCheckpointError.corrupt(path: path, reason: "a storage key that no tensor uses")
            }
            guard bytes.count - position >= 8 else { throw truncated(path) }
            let count = bytes.loadUnaligned(fromByteOffset: position, as: UInt64.self).littleEndian
            position += 8
            guard count <= UInt64(bytes.count - position) / UInt64(dtype.size) else { throw truncated(path) }
            let length = Int(count) * dtype.size
            dataRanges[key] = position..<(position + length)
            position += length
        }
        return try materialise(unpickler, root: root, path: path) { key, body in
            guard let range = dataRanges[key] else {
                throw TorchCheckpointError.corrupt(path: path, reason: "storage '\(key)' has no data in the file")
            }
            try body(UnsafeRawBufferPointer(rebasing: bytes[range]))
        }
    }

    /// The storage a persistent id names: ("storage", storage type, key, location, element count, ...),
    /// the whole of it (offset 0).
    static func typedStorage(_ id: [Unpickler.Value], path: String) throws -> Unpickler.Storage {
        guard id.count >= 5, case .string("storage") = id[0], case let .global(.storageType(dtype)) = id[1],
              case let .string(key) = id[2], case let .int(count) = id[4], count >= 0 else {
            throw TorchCheckpointError.refused(path: path, reason: "a persistent id that is not a typed storage")
        }
        return Unpickler.Storage(key: key, dtype: dtype, offset: 0, count: count)
    }

    /// The bytes each stored key must hold for `storages` (the furthest any of them reaches).
    static func bytesByKey(_ storages: some Sequence<Unpickler.Storage>) -> [String: Int] {
        var result: [String: Int] = [:]
        for s in storages { result[s.key] = Swift.max(result[s.key] ?? 0, (s.offset + s.count) * s.dtype.size) }
        return result
    }

    static func truncated(_ path: String) -> TorchCheckpointError {
        .corrupt(path: path, reason: "the file ends inside the storage data (truncated?)")
    }

    // MARK: - Tensors

    /// The weights' names and tensor indices: the root unwrapped and flattened.
    static func weights(_ unpickler: Unpickler, root: Unpickler.Value, path: String) throws -> [(name: String, tensor: Int)] {
        var root = root
        if case let .dict(d) = root, !unpickler.dicts[d].contains(where: { if case .tensor = $0.value { true } else { false } }) {
            for wrapper in ["state_dict", "params_ema", "params"] {
                if let inner = unpickler.dicts[d].first(where: { if case .string(wrapper) = $0.key { true } else { false } }),
                   case .dict = inner.value {
                    root = inner.value
                    break
                }
            }
        }
        var result: [(name: String, tensor: Int)] = []
        var seen: Set<String> = []
        func walk(_ value: Unpickler.Value, _ name: String, depth: Int) throws {
            guard depth <= 32 else { throw TorchCheckpointError.corrupt(path: path, reason: "containers nested deeper than 32 levels") }
            switch value {
            case let .tensor(t):
                guard seen.insert(name).inserted else { throw TorchCheckpointError.corrupt(path: path, reason: "two tensors are named '\(name)'") }
                result.append((name, t))
            case let .dict(d):
                for (key, item) in unpickler.dicts[d] {
                    let part: String
                    switch key {
                    case let .string(s): part = s
                    case let .int(i): part = String(i)
                    default: continue
                    }
                    try walk(item, name.isEmpty ? part : name + "." + part, depth: depth + 1)
                }
            case let .sequence(s):
                for (i, item) in unpickler.sequences[s].enumerated() { try walk(item, name.isEmpty ? String(i) : name + ".\(i)", depth: depth + 1) }
            default:
                break
            }
        }
        try walk(root, "", depth: 0)
        if case .tensor = root { result = [("tensor", result[0].tensor)] }
        return result
    }

    /// Writes the weights as a safetensors file in memory. `withStorage(key, body)` gives `body`
    /// the bytes stored under `key`; each storage is read once.
    static func materialise(_ unpickler: Unpickler, root: Unpickler.Value, path: String,
                            withStorage: (String, (UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws -> SafeTensorsFile {
        let weights = try weights(unpickler, root: root, path: path)
        var entries: [SafeTensorsWriter.EntryLayout] = []
        for (name, index) in weights {
            let view = unpickler.tensors[index], storage = unpickler.storages[view.storage]
            let count = try elementCount(view.shape, path: path, name: name)
            guard count <= storage.count else {
                throw TorchCheckpointError.corrupt(path: path, reason: "tensor '\(name)' of shape \(view.shape) is larger than its storage of \(storage.count) elements")
            }
            entries.append(.init(name: name, dtype: storage.dtype, shape: view.shape, byteCount: count * storage.dtype.size))
        }
        // Views of one storage may repeat it (tied weights), but not without bound: a small crafted file
        // must not ask for gigabytes.
        let storageBytes = bytesByKey(weights.map { unpickler.storages[unpickler.tensors[$0.tensor].storage] })
        let total = entries.reduce(0) { $0 + $1.byteCount }
        guard total <= 4 * storageBytes.values.reduce(0, +) + (1 << 20) else {
            throw TorchCheckpointError.corrupt(path: path, reason: "its tensors repeat their storages more than four times over (\(total) bytes)")
        }
        let layout = try SafeTensorsWriter.layout(entries)
        let file = try MappedFile(anonymousSize: layout.fileSize, path: path) { out in
            layout.header.withUnsafeBytes { out.copyMemory(from: $0) }
            let byKey = Dictionary(grouping: weights.indices) { unpickler.storages[unpickler.tensors[weights[$0].tensor].storage].key }
            for key in byKey.keys.sorted() {
                try withStorage(key) { data in
                    for i in byKey[key]! {
                        let (name, index) = weights[i]
                        let view = unpickler.tensors[index], storage = unpickler.storages[view.storage]
                        let target = UnsafeMutableRawBufferPointer(rebasing: out[(layout.dataStart + layout.offsets[i])...].prefix(entries[i].byteCount))
                        try copy(view, of: storage, from: data, to: target, path: path, name: name)
                    }
                }
            }
        }
        return try SafeTensorsFile(file)
    }

    static func elementCount(_ shape: [Int], path: String, name: String) throws -> Int {
        var count = 1
        for d in shape {
            let (product, overflow) = count.multipliedReportingOverflow(by: d)
            guard !overflow, product <= 1 << 40 else { throw TorchCheckpointError.corrupt(path: path, reason: "tensor '\(name)' has an impossible shape \(shape)") }
            count = product
        }
        return count
    }

    /// Copies the strided view's elements, in order, into `target`, checking every index against
    /// the bytes the storage really has.
    static func copy(_ view: Unpickler.TensorView, of storage: Unpickler.Storage, from data: UnsafeRawBufferPointer,
                     to target: UnsafeMutableRawBufferPointer, path: String, name: String) throws {
        let size = storage.dtype.size
        guard target.count > 0, let source = data.baseAddress, let destination = target.baseAddress else { return }
        // The last element's index, overflow-checked: it must lie inside the storage and the data.
        var last = storage.offset &+ view.offset
        var fits = storage.offset >= 0 && last >= storage.offset
        for (d, s) in zip(view.shape, view.strides) {
            let (step, o1) = (d - 1).multipliedReportingOverflow(by: s)
            let (sum, o2) = last.addingReportingOverflow(step)
            fits = fits && !o1 && !o2
            last = sum
        }
        let (end, o3) = (last &+ 1).multipliedReportingOverflow(by: size)
        guard fits, !o3, last - storage.offset < storage.count, end <= data.count else {
            throw TorchCheckpointError.corrupt(path: path, reason: "tensor '\(name)' reaches past the end of its storage (truncated or damaged file)")
        }
        let base = storage.offset + view.offset
        let rank = view.shape.count
        // Runs along the last dimension are contiguous when its stride is 1.
        let inner = rank == 0 ? 1 : view.shape[rank - 1]
        let innerStride = rank == 0 ? 1 : view.strides[rank - 1]
        var index = [Int](repeating: 0, count: Swift.max(rank - 1, 0))
        var written = 0
        while written < target.count {
            var element = base
            for k in 0..<index.count { element += index[k] * view.strides[k] }
            if innerStride == 1 {
                (destination + written).copyMemory(from: source + element * size, byteCount: inner * size)
                written += inner * size
            } else {
                for j in 0..<inner {
                    (destination + written).copyMemory(from: source + (element + j * innerStride) * size, byteCount: size)
                    written += size
                }
            }
            var k = index.count - 1
            while k >= 0 {
                index[k] += 1
                if index[k] < view.shape[k] { break }
                index[k] = 0
                k -= 1
            }
        }
    }
}

extension Unpickler {
    /// A legacy view's (key, element offset, element count) metadata.
    func integersOrNil(_ sequence: Int) -> (offset: Int, count: Int)? {
        let items = sequences[sequence]
        guard items.count == 3, case let .int(offset) = items[1], case let .int(count) = items[2], offset >= 0, count >= 0 else { return nil }
        return (offset, count)
    }
}

extension SafeTensorsFile {
    /// The weights file users have at `path`: a `.safetensors` file (memory-mapped), or a PyTorch
    /// checkpoint (`.pth`, `.pt`, `.ckpt`, `.bin`) read by the restricted unpickler into memory.
    public static func weights(path: String) throws -> SafeTensorsFile {
        let prefix = FileHandle(forReadingAtPath: path).map { handle in
            defer { try? handle.close() }
            return (try? handle.read(upToCount: 16)) ?? Data()
        } ?? Data()
        return TorchCheckpoint.recognises(prefix) ? try TorchCheckpoint.read(path: path) : try SafeTensorsFile(path: path)
    }
}
