/// A dense, contiguous, row-major tensor of `Float`.
///
/// `Tensor` is a value type: copies share storage until one of them is mutated
/// (copy-on-write). Reshapes and slices along the first axis are views that share
/// storage without copying. Images and latents are NCHW, sequences (B, T, C).
public struct Tensor: Sendable {
    /// The extent of every axis, outermost first.
    public private(set) var shape: [Int]
    @usableFromInline var storage: TensorStorage
    /// Element offset of this view into `storage`.
    @usableFromInline var offset: Int

    /// The number of elements (the product of `shape`).
    public let count: Int

    // MARK: - Creation

    /// A tensor of zeros.
    public init(zeros shape: [Int]) {
        let n = Tensor.elementCount(shape)
        self.init(shape: shape, storage: TensorStorage(count: n, zeroed: true), offset: 0)
    }

    /// A tensor whose contents are uninitialised; every element must be written before it is read.
    public init(uninitialized shape: [Int]) {
        let n = Tensor.elementCount(shape)
        self.init(shape: shape, storage: TensorStorage(count: n, zeroed: false), offset: 0)
    }

    /// A tensor with `values` in row-major order; `values.count` must equal the shape's product.
    public init(shape: [Int], values: [Float]) {
        precondition(Tensor.elementCount(shape) == values.count,
                     "Tensor(shape: \(shape)) needs \(Tensor.elementCount(shape)) values, got \(values.count)")
        self.init(uninitialized: shape)
        values.withUnsafeBufferPointer { src in
            storage.base.update(from: src.baseAddress!, count: values.count)
        }
    }

    /// A tensor filled with one value.
    public init(repeating value: Float, shape: [Int]) {
        self.init(uninitialized: shape)
        storage.base.update(repeating: value, count: count)
    }

    /// A tensor that wraps external memory (for example a memory-mapped file) without copying.
    /// `owner` is kept alive as long as any tensor refers to the memory; the memory is read-only.
    public init(shape: [Int], borrowing pointer: UnsafePointer<Float>, owner: AnyObject) {
        let n = Tensor.elementCount(shape)
        self.init(shape: shape, storage: TensorStorage(borrowing: pointer, count: n, owner: owner), offset: 0)
    }

    @usableFromInline
    init(shape: [Int], storage: TensorStorage, offset: Int) {
        self.shape = shape
        self.storage = storage
        self.offset = offset
        self.count = Tensor.elementCount(shape)
        precondition(offset + count <= storage.count, "tensor view out of its storage")
    }

    @inlinable
    static func elementCount(_ shape: [Int]) -> Int {
        var n = 1
        for d in shape {
            precondition(d >= 0, "negative dimension in shape \(shape)")
            n *= d
        }
        return n
    }

    // MARK: - Shape

    /// The number of axes.
    public var rank: Int { shape.count }

    /// A view with another shape and the same elements; one axis may be -1 (inferred).
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var resolved = newShape
        if let inferred = newShape.firstIndex(of: -1) {
            let known = newShape.enumerated().filter { $0.offset != inferred }.reduce(1) { $0 * $1.element }
            precondition(known > 0 && count % known == 0, "cannot reshape \(shape) to \(newShape)")
            resolved[inferred] = count / known
        }
        precondition(Tensor.elementCount(resolved) == count, "cannot reshape \(shape) to \(newShape)")
        return Tensor(shape: resolved, storage: storage, offset: offset)
    }

    /// A view of items `range` along the first axis (for example one half of a batch).
    public func slice(_ range: Range<Int>) -> Tensor {
        precondition(rank >= 1 && range.lowerBound >= 0 && range.upperBound <= shape[0],
                     "slice \(range) out of bounds for shape \(shape)")
        let inner = shape.count > 1 ? count / Swift.max(shape[0], 1) : 1
        var newShape = shape
        newShape[0] = range.count
        return Tensor(shape: newShape, storage: storage, offset: offset + range.lowerBound * inner)
    }

    // MARK: - Element access

    /// Read-only access to the elements in row-major order.
    @inlinable
    public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        try body(UnsafeBufferPointer(start: storage.base + offset, count: count))
    }

    /// Read-only pointer to the first element, valid while this tensor is alive.
    /// Prefer `withUnsafeBufferPointer`; this is for kernels that juggle several tensors.
    @inlinable
    public var pointer: UnsafePointer<Float> { UnsafePointer(storage.base + offset) }

    /// Mutable access; copies the storage first if it is shared or read-only.
    @inlinable
    public mutating func withUnsafeMutableBufferPointer<R>(
        _ body: (UnsafeMutableBufferPointer<Float>) throws -> R
    ) rethrows -> R {
        makeUnique()
        return try body(UnsafeMutableBufferPointer(start: storage.base + offset, count: count))
    }

    /// Mutable pointer to the first element after making the storage unique.
    @inlinable
    public mutating func mutablePointer() -> UnsafeMutablePointer<Float> {
        makeUnique()
        return storage.base + offset
    }

    @inlinable
    mutating func makeUnique() {
        if !isKnownUniquelyReferenced(&storage) || storage.isReadOnly || offset != 0 || storage.count != count {
            let copy = TensorStorage(count: count, zeroed: false)
            copy.base.update(from: storage.base + offset, count: count)
            storage = copy
            offset = 0
        }
    }

    /// The elements as an array (for tests and small values).
    public var scalars: [Float] { withUnsafeBufferPointer { Array($0) } }

    /// The element at a multi-dimensional index (for tests; not for hot loops).
    public subscript(_ index: Int...) -> Float {
        precondition(index.count == rank, "index \(index) has the wrong rank for shape \(shape)")
        var flat = 0
        for (i, d) in zip(index, shape) {
            precondition(i >= 0 && i < d, "index \(index) out of bounds for shape \(shape)")
            flat = flat * d + i
        }
        return storage.base[offset + flat]
    }

    /// A copy with its own storage, so that views of a large tensor can release it.
    public func copied() -> Tensor {
        var result = Tensor(uninitialized: shape)
        result.storage.base.update(from: storage.base + offset, count: count)
        result.offset = 0
        return result
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let preview = withUnsafeBufferPointer { $0.prefix(8).map { String($0) }.joined(separator: ", ") }
        return "Tensor(\(shape), [\(preview)\(count > 8 ? ", ..." : "")])"
    }
}
