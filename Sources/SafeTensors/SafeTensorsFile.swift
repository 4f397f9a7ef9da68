import Foundation
import TensorCore

/// The element types a safetensors header may name.
public enum DType: String, Sendable, CaseIterable {
    case bool = "BOOL", u8 = "U8", i8 = "I8", f8e4m3 = "F8_E4M3", f8e5m2 = "F8_E5M2"
    case i16 = "I16", u16 = "U16", f16 = "F16", bf16 = "BF16"
    case i32 = "I32", u32 = "U32", f32 = "F32"
    case i64 = "I64", u64 = "U64", f64 = "F64"

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .bool, .u8, .i8, .f8e4m3, .f8e5m2: return 1
        case .i16, .u16, .f16, .bf16: return 2
        case .i32, .u32, .f32: return 4
        case .i64, .u64, .f64: return 8
        }
    }
}

/// A read-only, memory-mapped `.safetensors` file.
///
/// The layout is an 8-byte little-endian header length N, N bytes of JSON mapping each
/// tensor name to `{dtype, shape, data_offsets: [begin, end]}` (offsets relative to the data
/// section after the header), and an optional `__metadata__` object of strings.
/// Opening validates every entry: known dtype, byte count equal to shape x dtype size,
/// offsets inside the file, no two tensors overlapping.
public final class SafeTensorsFile: Sendable {
    /// One tensor's header entry.
    public struct Entry: Sendable {
        public let name: String
        public let dtype: DType
        public let shape: [Int]
        /// Byte range inside the data section.
        public let byteRange: Range<Int>
    }

    /// The file's path.
    public let path: String
    /// The `__metadata__` strings (empty when absent).
    public let metadata: [String: String]
    /// Entries by tensor name.
    public let entries: [String: Entry]

    private let file: MappedFile
    private let dataStart: Int

    /// Opens and validates `path`.
    public convenience init(path: String) throws {
        try self.init(MappedFile(path: path))
    }

    /// Validates the safetensors bytes of `file` (a mapped file, or memory holding a converted one).
    public init(_ file: MappedFile) throws {
        let path = file.path
        self.path = path
        self.file = file
        guard file.size >= 8, let bytes = file.bytes else {
            throw SafeTensorsError.truncatedHeader(path: path, size: file.size)
        }
        let storedLength = UInt64(littleEndian: bytes.loadUnaligned(as: UInt64.self))
        guard storedLength <= UInt64(file.size - 8) else {
            throw SafeTensorsError.headerTooLarge(path: path, headerLength: storedLength, fileSize: file.size)
        }
        let headerLength = Int(storedLength)
        dataStart = 8 + headerLength
        let headerData = Data(bytes: bytes + 8, count: headerLength)
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: headerData)
        } catch {
            throw SafeTensorsError.invalidHeader(path: path, reason: "the header is not valid JSON")
        }
        guard let object = json as? [String: Any] else {
            throw SafeTensorsError.invalidHeader(path: path, reason: "the header is not a JSON object")
        }
        var metadata: [String: String] = [:]
        var entries: [String: Entry] = [:]
        for (name, value) in object {
            if name == "__metadata__" {
                guard let dict = value as? [String: Any] else {
                    throw SafeTensorsError.invalidHeader(path: path, reason: "__metadata__ is not an object")
                }
                for (k, v) in dict {
                    guard let s = v as? String else {
                        throw SafeTensorsError.invalidHeader(path: path, reason: "__metadata__ value for '\(k)' is not a string")
                    }
                    metadata[k] = s
                }
                continue
            }
            entries[name] = try SafeTensorsFile.parseEntry(name: name, value: value, path: path)
        }
        self.metadata = metadata
        self.entries = entries
        try validateLayout(dataSize: file.size - dataStart)
    }

    private static func parseEntry(name: String, value: Any, path: String) throws -> Entry {
        guard let dict = value as? [String: Any] else {
            throw SafeTensorsError.invalidEntry(path: path, tensor: name, reason: "entry is not an object")
        }
        guard let dtypeName = dict["dtype"] as? String else {
            throw SafeTensorsError.invalidEntry(path: path, tensor: name, reason: "missing dtype")
        }
        guard let dtype = DType(rawValue: dtypeName) else {
            throw SafeTensorsError.unknownDType(path: path, tensor: name, dtype: dtypeName)
        }
        guard let shapeValues = dict["shape"] as? [Any], let shape = integers(shapeValues), shape.allSatisfy({ $0 >= 0 }) else {
            throw SafeTensorsError.invalidEntry(path: path, tensor: name, reason: "shape is not a list of non-negative integers")
        }
        guard let offsetValues = dict["data_offsets"] as? [Any], let offsets = integers(offsetValues),
              offsets.count == 2, offsets[0] >= 0, offsets[0] <= offsets[1] else {
            throw SafeTensorsError.invalidEntry(path: path, tensor: name, reason: "data_offsets is not [begin, end] with begin <= end")
        }
        var elements = 1
        for d in shape {
            let (product, overflow) = elements.multipliedReportingOverflow(by: d)
            guard !overflow else {
                throw SafeTensorsError.invalidEntry(path: path, tensor: name, reason: "shape \(shape) is too large")
            }
            elements = product
        }
        let byteCount = offsets[1] - offsets[0]
        let (expected, overflow) = elements.multipliedReportingOverflow(by: dtype.size)
        guard !overflow, expected == byteCount else {
            throw SafeTensorsError.shapeMismatch(path: path, tensor: name, shape: shape, dtype: dtype.rawValue, byteCount: byteCount)
        }
        return Entry(name: name, dtype: dtype, shape: shape, byteRange: offsets[0]..<offsets[1])
    }

    /// JSON numbers as integers, or nil when any is not integral.
    private static func integers(_ values: [Any]) -> [Int]? {
        var result: [Int] = []
        for v in values {
            guard let number = v as? NSNumber else { return nil }
            let d = number.doubleValue
            guard d == d.rounded(), abs(d) <= 9.0e15 else { return nil }
            result.append(Int(d))
        }
        return result
    }

    private func validateLayout(dataSize: Int) throws {
        let sorted = entries.values.sorted { ($0.byteRange.lowerBound, $0.byteRange.upperBound, $0.name) < ($1.byteRange.lowerBound, $1.byteRange.upperBound, $1.name) }
        var previous: Entry?
        for entry in sorted {
            guard entry.byteRange.upperBound <= dataSize else {
                throw SafeTensorsError.outOfBounds(path: path, tensor: entry.name, end: entry.byteRange.upperBound, dataSize: dataSize)
            }
            if let previous, !entry.byteRange.isEmpty, entry.byteRange.lowerBound < previous.byteRange.upperBound {
                throw SafeTensorsError.overlap(path: path, tensor: entry.name, other: previous.name)
            }
            if !entry.byteRange.isEmpty { previous = entry }
        }
    }

    // MARK: - Reading

    /// The whole file's bytes (header and data), valid while this file is alive.
    public var contents: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: file.bytes, count: file.size) }

    /// Tensor names in a stable (sorted) order.
    public var names: [String] { entries.keys.sorted() }

    /// The raw bytes of a tensor, valid while this file is alive.
    public func rawBytes(_ name: String) throws -> UnsafeRawBufferPointer {
        guard let entry = entries[name] else { throw SafeTensorsError.missingTensor(path: path, tensor: name) }
        return UnsafeRawBufferPointer(start: file.bytes! + dataStart + entry.byteRange.lowerBound, count: entry.byteRange.count)
    }

    /// Drops a tensor's whole pages from resident memory, for data that was converted (F16, BF16)
    /// and will not be read again soon: the converted copy and the mapped pages then do not both
    /// count. Reading it again faults the pages back in.
    public func releasePages(_ name: String) {
        guard let entry = entries[name] else { return }
        file.releasePages(offset: dataStart + entry.byteRange.lowerBound, count: entry.byteRange.count)
    }

    /// The tensor as float32. F32 data that is suitably aligned is used in place (no copy);
    /// F16, BF16, F64 and integer data are converted.
    public func tensor(_ name: String) throws -> Tensor {
        guard let entry = entries[name] else { throw SafeTensorsError.missingTensor(path: path, tensor: name) }
        let raw = try rawBytes(name)
        if entry.dtype == .f32, let base = raw.baseAddress, Int(bitPattern: base) % MemoryLayout<Float>.alignment == 0 {
            return Tensor(shape: entry.shape, borrowing: base.assumingMemoryBound(to: Float.self), owner: file)
        }
        return try converted(name, entry, raw, shape: entry.shape)
    }

    /// Rows `rows` of the tensor's first dimension as float32 (shape [rows.count] + the rest), read
    /// and converted from the mapped file alone: an embedding lookup reads a few rows of a large
    /// table, and only their pages become resident.
    public func tensor(_ name: String, rows: Range<Int>) throws -> Tensor {
        guard let entry = entries[name] else { throw SafeTensorsError.missingTensor(path: path, tensor: name) }
        guard let first = entry.shape.first, rows.lowerBound >= 0, rows.upperBound <= first else {
            throw SafeTensorsError.invalidEntry(path: path, tensor: name, reason: "rows \(rows) of a tensor of shape \(entry.shape)")
        }
        let raw = try rawBytes(name)
        let rowBytes = first == 0 ? 0 : raw.count / first
        let slice = UnsafeRawBufferPointer(rebasing: raw[(rows.lowerBound * rowBytes)..<(rows.upperBound * rowBytes)])
        return try converted(name, entry, slice, shape: [rows.count] + entry.shape.dropFirst())
    }

    /// `raw` (data of `entry`'s dtype) converted to a float32 tensor of `shape`.
    private func converted(_ name: String, _ entry: Entry, _ raw: UnsafeRawBufferPointer, shape: [Int]) throws -> Tensor {
        let count = raw.count / entry.dtype.size
        var result = Tensor(uninitialized: shape)
        let dst = result.mutablePointer()
        guard let src = raw.baseAddress else { return result }
        switch entry.dtype {
        case .f32: HalfPrecision.copyUnaligned(src, count: count, to: dst)
        case .f16: HalfPrecision.convertF16(src, count: count, to: dst)
        case .bf16: HalfPrecision.convertBF16(src, count: count, to: dst)
        case .f64: for i in 0..<count { dst[i] = Float(src.loadUnaligned(fromByteOffset: 8 * i, as: Double.self)) }
        case .i64: for i in 0..<count { dst[i] = Float(src.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)) }
        case .i32: for i in 0..<count { dst[i] = Float(src.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)) }
        default:
            throw SafeTensorsError.unsupportedConversion(path: path, tensor: name, dtype: entry.dtype.rawValue)
        }
        return result
    }
}

private extension Comparable {
    func clamped(to range: ClosedRange<Self>) -> Self { Swift.min(Swift.max(self, range.lowerBound), range.upperBound) }
}
