import CKernels
import Foundation

// MARK: - Unary maps

extension Tensor {
    /// Applies `transform` to every element, in parallel.
    @inlinable
    public func map(_ transform: @escaping (Float) -> Float) -> Tensor {
        var result = Tensor(uninitialized: shape)
        let src = pointer
        let dst = result.mutablePointer()
        Parallel.forRanges(count, minimumPerThread: 1 << 14) { range in
            for i in range { dst[i] = transform(src[i]) }
        }
        return result
    }

    /// Applies `transform` to every element in place, in parallel.
    @inlinable
    public mutating func apply(_ transform: @escaping (Float) -> Float) {
        let p = mutablePointer()
        Parallel.forRanges(count, minimumPerThread: 1 << 14) { range in
            for i in range { p[i] = transform(p[i]) }
        }
    }

    /// Applies a vectorised C kernel `(input, output, count)` in parallel chunks.
    @inlinable
    func mapKernel(_ kernel: (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void) -> Tensor {
        var result = Tensor(uninitialized: shape)
        let src = pointer
        let dst = result.mutablePointer()
        Parallel.forRanges(count, minimumPerThread: 1 << 14) { range in
            kernel(src + range.lowerBound, dst + range.lowerBound, range.count)
        }
        return result
    }

    /// ReLU: max(x, 0) (NaN stays NaN).
    public func relu() -> Tensor { mapKernel { sdf_relu($0, $1, $2) } }

    /// ReLU in place (no new buffer when this tensor owns its storage).
    public mutating func applyReLU() {
        let p = mutablePointer()
        Parallel.forRanges(count, minimumPerThread: 1 << 14) { range in sdf_relu(p + range.lowerBound, p + range.lowerBound, range.count) }
    }

    /// SiLU (swish): x * sigmoid(x).
    public func silu() -> Tensor { mapKernel { sdf_silu($0, $1, $2) } }

    /// Exact GELU: 0.5 x (1 + erf(x / sqrt 2)), as `torch.nn.functional.gelu` without approximation.
    public func gelu() -> Tensor { mapKernel { sdf_gelu($0, $1, $2) } }

    /// Quick GELU, as used by CLIP: x * sigmoid(1.702 x).
    public func quickGELU() -> Tensor { mapKernel { sdf_quick_gelu($0, $1, $2) } }

    /// Multiplies every element by `factor`.
    public func scaled(by factor: Float) -> Tensor { map { $0 * factor } }

    /// GEGLU: splits the last axis into halves (value, gate) and returns value * gelu(gate).
    /// (..., 2D) -> (..., D)
    public func geglu() -> Tensor {
        let width = shape[rank - 1]
        precondition(width % 2 == 0, "geglu needs an even last axis, got shape \(shape)")
        let half = width / 2
        let rows = count / Swift.max(width, 1)
        var outShape = shape
        outShape[rank - 1] = half
        var result = Tensor(uninitialized: outShape)
        let src = pointer
        let dst = result.mutablePointer()
        Parallel.forRanges(rows, minimumPerThread: Swift.max(1, 8192 / Swift.max(half, 1))) { range in
            for r in range {
                let value = src + r * width
                sdf_geglu(value, value + half, dst + r * half, half)
            }
        }
        return result
    }
}

// MARK: - Binary ops with broadcasting

extension Tensor {
    /// Element-wise sum with NumPy-style broadcasting.
    public static func + (lhs: Tensor, rhs: Tensor) -> Tensor { lhs.broadcast(rhs, +) }
    /// Element-wise difference with NumPy-style broadcasting.
    public static func - (lhs: Tensor, rhs: Tensor) -> Tensor { lhs.broadcast(rhs, -) }
    /// Element-wise product with NumPy-style broadcasting.
    public static func * (lhs: Tensor, rhs: Tensor) -> Tensor { lhs.broadcast(rhs, *) }

    /// Adds a scalar to every element.
    public static func + (lhs: Tensor, rhs: Float) -> Tensor { lhs.map { $0 + rhs } }
    /// Multiplies every element by a scalar.
    public static func * (lhs: Tensor, rhs: Float) -> Tensor { lhs.map { $0 * rhs } }

    /// In-place sum; `rhs` must broadcast to `self`'s shape.
    public static func += (lhs: inout Tensor, rhs: Tensor) {
        if lhs.shape == rhs.shape {
            let src = rhs.pointer
            let dst = lhs.mutablePointer()
            Parallel.forRanges(lhs.count, minimumPerThread: 1 << 14) { range in
                for i in range { dst[i] += src[i] }
            }
        } else {
            lhs = lhs.broadcast(rhs, +)
        }
    }

    /// Applies `op` element-wise after broadcasting both operands to a common shape.
    public func broadcast(_ other: Tensor, _ op: @escaping (Float, Float) -> Float) -> Tensor {
        let outShape = Tensor.broadcastShape(shape, other.shape)
        var result = Tensor(uninitialized: outShape)
        let dst = result.mutablePointer()
        let a = pointer, b = other.pointer
        if shape == other.shape {
            Parallel.forRanges(count, minimumPerThread: 1 << 14) { range in
                for i in range { dst[i] = op(a[i], b[i]) }
            }
            return result
        }
        let aStrides = Tensor.broadcastStrides(shape, to: outShape)
        let bStrides = Tensor.broadcastStrides(other.shape, to: outShape)
        // Iterate over all but the last axis; the last axis is a simple strided loop.
        let last = outShape.last ?? 1
        let rows = result.count / Swift.max(last, 1)
        let aLast = aStrides.last ?? 0, bLast = bStrides.last ?? 0
        Parallel.forRanges(rows, minimumPerThread: Swift.max(1, 8192 / Swift.max(last, 1))) { range in
            for row in range {
                var rem = row, aOff = 0, bOff = 0
                for axis in stride(from: outShape.count - 2, through: 0, by: -1) {
                    let idx = rem % outShape[axis]
                    rem /= outShape[axis]
                    aOff += idx * aStrides[axis]
                    bOff += idx * bStrides[axis]
                }
                let out = dst + row * last
                for i in 0..<last { out[i] = op(a[aOff + i * aLast], b[bOff + i * bLast]) }
            }
        }
        return result
    }

    /// The NumPy broadcast of two shapes.
    public static func broadcastShape(_ a: [Int], _ b: [Int]) -> [Int] {
        let rank = Swift.max(a.count, b.count)
        let pa = Array(repeating: 1, count: rank - a.count) + a
        let pb = Array(repeating: 1, count: rank - b.count) + b
        return zip(pa, pb).map { x, y in
            precondition(x == y || x == 1 || y == 1, "shapes \(a) and \(b) do not broadcast")
            return Swift.max(x, y)
        }
    }

    /// Element strides of `shape` viewed as `target` (0 on broadcast axes).
    static func broadcastStrides(_ shape: [Int], to target: [Int]) -> [Int] {
        let padded = Array(repeating: 1, count: target.count - shape.count) + shape
        var strides = Array(repeating: 0, count: target.count)
        var s = 1
        for axis in stride(from: target.count - 1, through: 0, by: -1) {
            strides[axis] = padded[axis] == 1 ? 0 : s
            s *= padded[axis]
        }
        return strides
    }
}

// MARK: - Reductions (for tests and reports)

extension Tensor {
    /// The largest absolute element, 0 for an empty tensor.
    /// Whether any element is NaN or infinite (a damaged model or input gives such values, and
    /// they would silently turn into a black image).
    public var hasNonFinite: Bool {
        withUnsafeBufferPointer { values in
            var bad = 0
            for v in values where !v.isFinite { bad += 1 }
            return bad > 0
        }
    }

    public var maxMagnitude: Float { withUnsafeBufferPointer { $0.reduce(0) { Swift.max($0, abs($1)) } } }

    /// The largest absolute difference from another tensor of the same shape.
    public func maxAbsDifference(_ other: Tensor) -> Float {
        precondition(shape == other.shape, "maxAbsDifference: shapes \(shape) and \(other.shape) differ")
        return withUnsafeBufferPointer { a in
            other.withUnsafeBufferPointer { b in
                var m: Float = 0
                for i in 0..<a.count {
                    let d = abs(a[i] - b[i])
                    if d.isNaN { return .nan }
                    m = Swift.max(m, d)
                }
                return m
            }
        }
    }

    /// The mean of all elements, accumulated in double precision.
    public var mean: Double {
        withUnsafeBufferPointer { $0.reduce(0.0) { $0 + Double($1) } } / Double(Swift.max(count, 1))
    }
}

// MARK: - Per-channel bias

extension Tensor {
    /// Adds a per-image, per-channel value to an NCHW tensor: (N, C, H, W) + bias (N, C).
    /// This is how a ResBlock adds its timestep embedding.
    public func addingChannelBias(_ bias: Tensor) -> Tensor {
        precondition(rank == 4 && bias.count == shape[0] * shape[1],
                     "addingChannelBias: bias \(bias.shape) does not match \(shape)")
        var result = Tensor(uninitialized: shape)
        let plane = shape[2] * shape[3]
        let src = pointer, b = bias.pointer, dst = result.mutablePointer()
        Parallel.forEach(shape[0] * shape[1], minimumPerThread: Swift.max(1, 16384 / Swift.max(plane, 1))) { i in
            let value = b[i]
            for j in 0..<plane { dst[i * plane + j] = src[i * plane + j] + value }
        }
        return result
    }
}
