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
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        for name in names {
            let t = tensors[name]!
            let bytes = t.count * elementSize
            header[name] = ["dtype": storage.rawValue, "shape": t.shape, "data_offsets": [offset, offset + bytes]] as [String: Any]
            offset += bytes
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        // Pad the header with spaces so the data section starts 8-byte aligned.
        while json.count % 8 != 0 { json.append(0x20) }
        var out = Data(capacity: 8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(json)
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
}
