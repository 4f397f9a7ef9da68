/// Everything that can be wrong with a `.safetensors` file; each case names the file
/// and, where there is one, the tensor.
public enum SafeTensorsError: Error, CustomStringConvertible, Equatable {
    case cannotOpen(path: String, reason: String)
    case truncatedHeader(path: String, size: Int)
    case headerTooLarge(path: String, headerLength: UInt64, fileSize: Int)
    case invalidHeader(path: String, reason: String)
    case unknownDType(path: String, tensor: String, dtype: String)
    case invalidEntry(path: String, tensor: String, reason: String)
    case shapeMismatch(path: String, tensor: String, shape: [Int], dtype: String, byteCount: Int)
    case outOfBounds(path: String, tensor: String, end: Int, dataSize: Int)
    case overlap(path: String, tensor: String, other: String)
    case missingTensor(path: String, tensor: String)
    case unsupportedConversion(path: String, tensor: String, dtype: String)

    public var description: String {
        switch self {
        case let .cannotOpen(path, reason):
            return "\(path): cannot open: \(reason)"
        case let .truncatedHeader(path, size):
            return "\(path): not a safetensors file: \(size) bytes is too short for the 8-byte header length"
        case let .headerTooLarge(path, length, fileSize):
            return "\(path): header claims \(length) bytes but the file has only \(fileSize) (truncated or not a safetensors file)"
        case let .invalidHeader(path, reason):
            return "\(path): invalid safetensors header: \(reason)"
        case let .unknownDType(path, tensor, dtype):
            return "\(path): tensor '\(tensor)' has unknown dtype '\(dtype)'"
        case let .invalidEntry(path, tensor, reason):
            return "\(path): tensor '\(tensor)': \(reason)"
        case let .shapeMismatch(path, tensor, shape, dtype, byteCount):
            return "\(path): tensor '\(tensor)' of shape \(shape) and dtype \(dtype) does not fit its \(byteCount) bytes"
        case let .outOfBounds(path, tensor, end, dataSize):
            return "\(path): data offsets out of bounds for tensor '\(tensor)' (ends at byte \(end) of a \(dataSize)-byte data section; the file may be truncated)"
        case let .overlap(path, tensor, other):
            return "\(path): tensor '\(tensor)' overlaps tensor '\(other)'"
        case let .missingTensor(path, tensor):
            return "\(path): no tensor named '\(tensor)'"
        case let .unsupportedConversion(path, tensor, dtype):
            return "\(path): tensor '\(tensor)' has dtype \(dtype), which cannot be read as float32"
        }
    }
}
