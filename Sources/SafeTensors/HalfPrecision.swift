import CKernels
import TensorCore

/// Conversions between float32 and the 16-bit formats of checkpoints, written as branch-free
/// bit manipulation so that the compiler vectorises them.
public enum HalfPrecision {
    /// IEEE half -> float, exact for normals, subnormals, infinities and NaNs.
    /// The 15 exponent+mantissa bits are shifted into float position and rescaled by 2^112,
    /// which also normalises subnormals; Inf/NaN get the all-ones float exponent.
    @inline(__always)
    public static func floatFromHalf(_ h: UInt16) -> Float {
        let magnitude = UInt32(h & 0x7fff) << 13
        var f = Float(bitPattern: magnitude) * Float(bitPattern: 0x7780_0000)  // 2^112
        if magnitude >= 0x0f80_0000 { f = Float(bitPattern: magnitude | 0x7f80_0000) }
        return Float(bitPattern: f.bitPattern | (UInt32(h & 0x8000) << 16))
    }

    /// float -> IEEE half, rounded to nearest even (as torch's `.half()`).
    @inline(__always)
    public static func halfFromFloat(_ f: Float) -> UInt16 {
        Float16(f).bitPattern
    }

    /// bfloat16 -> float (the high 16 bits of a float).
    @inline(__always)
    public static func floatFromBFloat16(_ b: UInt16) -> Float { Float(bitPattern: UInt32(b) << 16) }

    /// Converts `count` little-endian F16 values at `src` (any alignment) to float.
    public static func convertF16(_ src: UnsafeRawPointer, count: Int, to dst: UnsafeMutablePointer<Float>) {
        Parallel.forRanges(count, minimumPerThread: 1 << 16) { range in
            sdf_f16_to_f32(src + 2 * range.lowerBound, dst + range.lowerBound, range.count)
        }
    }

    /// Converts `count` little-endian BF16 values at `src` (any alignment) to float.
    public static func convertBF16(_ src: UnsafeRawPointer, count: Int, to dst: UnsafeMutablePointer<Float>) {
        for i in 0..<count {
            dst[i] = floatFromBFloat16(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
        }
    }

    /// Copies `count` float32 values from possibly unaligned memory.
    public static func copyUnaligned(_ src: UnsafeRawPointer, count: Int, to dst: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(dst).copyMemory(from: src, byteCount: count * MemoryLayout<Float>.size)
    }
}
