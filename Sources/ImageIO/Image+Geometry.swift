import TensorCore

/// A rectangle in pixels.
public struct PixelRect: Equatable, Sendable, CustomStringConvertible {
    public var x: Int, y: Int, width: Int, height: Int

    public init(x: Int, y: Int, width: Int, height: Int) {
        self.x = x; self.y = y; self.width = width; self.height = height
    }

    public var description: String { "\(width)x\(height)+\(x)+\(y)" }
}

/// How `padded` fills the new border.
public enum PaddingMode: Equatable, Sendable {
    /// A constant value in every channel.
    case constant(Float)
    /// The nearest edge pixel repeated.
    case edge
    /// Mirrored without repeating the edge pixel (numpy's and PyTorch's "reflect").
    case reflect
}

extension Image {
    /// An image of the given size whose pixel (x, y) is this image's pixel `source(x, y)`,
    /// or 0 where `source` returns nil.
    func remapped(width: Int, height: Int, _ source: (Int, Int) -> (Int, Int)?) -> Image {
        let c = channels, inPlane = self.width * self.height, outPlane = width * height
        var out = Tensor(zeros: [c, height, width])
        let src = pixels.pointer, dst = out.mutablePointer()
        let inWidth = self.width
        for y in 0..<height {
            for x in 0..<width {
                guard let (sx, sy) = source(x, y) else { continue }
                for ch in 0..<c { dst[ch * outPlane + y * width + x] = src[ch * inPlane + sy * inWidth + sx] }
            }
        }
        return Image(pixels: out, metadata: metadata, bitDepth: bitDepth, embedded: embedded)
    }

    /// The image turned upright for an EXIF orientation (1-8), as Pillow's `ImageOps.exif_transpose`.
    public func oriented(exif orientation: Int) -> Image {
        let (w, h) = (width, height)
        switch orientation {
        case 2: return remapped(width: w, height: h) { (w - 1 - $0, $1) }          // mirror left-right
        case 3: return remapped(width: w, height: h) { (w - 1 - $0, h - 1 - $1) }  // rotate 180
        case 4: return remapped(width: w, height: h) { ($0, h - 1 - $1) }          // mirror top-bottom
        case 5: return remapped(width: h, height: w) { ($1, $0) }                  // transpose
        case 6: return remapped(width: h, height: w) { ($1, h - 1 - $0) }          // rotate 90 clockwise
        case 7: return remapped(width: h, height: w) { (w - 1 - $1, h - 1 - $0) }  // transverse
        case 8: return remapped(width: h, height: w) { (w - 1 - $1, $0) }          // rotate 90 counter-clockwise
        default: return self
        }
    }

    /// The pixels inside `rect`; parts of `rect` outside the image are 0 (as Pillow's `crop`).
    public func cropped(_ rect: PixelRect) -> Image {
        remapped(width: rect.width, height: rect.height) { x, y in
            let (sx, sy) = (x + rect.x, y + rect.y)
            return sx >= 0 && sy >= 0 && sx < self.width && sy < self.height ? (sx, sy) : nil
        }
    }

    /// The image with a border added on each side.
    public func padded(top: Int, bottom: Int, left: Int, right: Int, mode: PaddingMode) -> Image {
        let (w, h) = (width, height)
        func index(_ i: Int, _ n: Int) -> Int? {
            if i >= 0 && i < n { return i }
            switch mode {
            case .constant: return nil
            case .edge: return Swift.min(Swift.max(i, 0), n - 1)
            case .reflect:
                guard n > 1 else { return 0 }
                let period = 2 * (n - 1)
                var j = i % period
                if j < 0 { j += period }
                return j < n ? j : period - j
            }
        }
        var result = remapped(width: w + left + right, height: h + top + bottom) { x, y in
            guard let sx = index(x - left, w), let sy = index(y - top, h) else { return nil }
            return (sx, sy)
        }
        if case .constant(let value) = mode, value != 0 {
            let c = channels, (ow, oh) = (result.width, result.height)
            let dst = result.pixels.mutablePointer()
            for ch in 0..<c {
                for y in 0..<oh where y < top || y >= top + h {
                    for x in 0..<ow { dst[(ch * oh + y) * ow + x] = value }
                }
                for y in top..<(top + h) {
                    for x in 0..<ow where x < left || x >= left + w { dst[(ch * oh + y) * ow + x] = value }
                }
            }
        }
        return result
    }
}
