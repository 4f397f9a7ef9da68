/// The memory behind one or more `Tensor` views: either owned (64-byte aligned heap memory)
/// or borrowed from an owner such as a memory-mapped file, in which case it is read-only.
@usableFromInline
final class TensorStorage: @unchecked Sendable {
    @usableFromInline let base: UnsafeMutablePointer<Float>
    @usableFromInline let count: Int
    @usableFromInline let isReadOnly: Bool
    private let owner: AnyObject?

    @usableFromInline
    init(count: Int, zeroed: Bool) {
        let bytes = Swift.max(count, 1) * MemoryLayout<Float>.stride
        let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        if zeroed { raw.initializeMemory(as: UInt8.self, repeating: 0, count: bytes) }
        base = raw.bindMemory(to: Float.self, capacity: Swift.max(count, 1))
        self.count = count
        isReadOnly = false
        owner = nil
    }

    init(borrowing pointer: UnsafePointer<Float>, count: Int, owner: AnyObject) {
        base = UnsafeMutablePointer(mutating: pointer)
        self.count = count
        isReadOnly = true
        self.owner = owner
    }

    deinit {
        if owner == nil {
            base.deallocate()
        }
    }
}
