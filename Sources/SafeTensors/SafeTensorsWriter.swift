import Foundation
import TensorCore

/// Writes tensors to a `.safetensors` file as F32 or F16, with string metadata.
///
/// The file appears atomically: it is written to a temporary file in the same folder and
/// renamed into place, so a reader (or a crash) never sees half a file.
public enum SafeTensorsWriter {
    /// The dtypes the writer produces.
    public enum StorageType: String, Sendable { case f32 = "F32", f16 = "F16" }

    /// Writes `tensors` (name -> tensor) to `path`.
    public static func write(_ tensors: [String: Tensor], metadata: [String: String] = [:],
                             storage: StorageType = .f32, to path: String) throws {
        let data = try encode(tensors, metadata: metadata, storage: storage)
        try AtomicFile.write(data, to: path)
    }

    /// The file's bytes.
    public static func encode(_ tensors: [String: Tensor], metadata: [String: String] = [:],
                              storage: StorageType = .f32) throws -> Data {
        let names = tensors.keys.sorted()
        let elementSize = storage == .f32 ? 4 : 2
        let layout = try layout(names.map { EntryLayout(name: $0, dtype: storage == .f32 ? .f32 : .f16, shape: tensors[$0]!.shape,
                                                         byteCount: tensors[$0]!.count * elementSize) }, metadata: metadata)
        var out = Data(capacity: layout.fileSize)
        out.append(layout.header)
        for name in names {
            tensors[name]!.withUnsafeBufferPointer { buffer in
                switch storage {
                case .f32:
                    out.append(UnsafeBufferPointer(start: buffer.baseAddress, count: buffer.count))
                case .f16:
                    let halves = buffer.map { HalfPrecision.halfFromFloat($0).littleEndian }
                    halves.withUnsafeBufferPointer { out.append($0) }
                }
            }
        }
        return out
    }

    /// One tensor of a file to be written.
    public struct EntryLayout: Sendable {
        public var name: String
        public var dtype: DType
        public var shape: [Int]
        public var byteCount: Int

        public init(name: String, dtype: DType, shape: [Int], byteCount: Int) {
            self.name = name
            self.dtype = dtype
            self.shape = shape
            self.byteCount = byteCount
        }
    }

    /// Where a file's parts go: the header (with its 8-byte length, padded so that the data starts
    /// 8-byte aligned), where the data starts, each entry's offset inside the data (entries in the
    /// order given, back to back), and the whole size.
    public static func layout(_ entries: [EntryLayout], metadata: [String: String] = [:]) throws
        -> (header: Data, dataStart: Int, offsets: [Int], fileSize: Int) {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offsets: [Int] = []
        var offset = 0
        for entry in entries {
            offsets.append(offset)
            header[entry.name] = ["dtype": entry.dtype.rawValue, "shape": entry.shape, "data_offsets": [offset, offset + entry.byteCount]] as [String: Any]
            offset += entry.byteCount
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }
        var out = Data(capacity: 8 + json.count)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(json)
        return (out, out.count, offsets, out.count + offset)
    }
}
