import Foundation
import TensorCore

/// Resampling filters, with Pillow's kernels and supports.
public enum ResampleFilter: String, Sendable, CaseIterable {
    case nearest, bilinear, bicubic, lanczos

    /// Half-width of the kernel at scale 1.
    var support: Double {
        switch self {
        case .nearest: return 0.5
        case .bilinear: return 1
        case .bicubic: return 2
        case .lanczos: return 3
        }
    }

    /// The kernel: triangle, Keys cubic with a = -0.5, or Lanczos-3 (sinc(x) sinc(x/3)).
    func weight(_ x: Double) -> Double {
        let a = abs(x)
        switch self {
        case .nearest: return a < 0.5 ? 1 : 0
        case .bilinear: return a < 1 ? 1 - a : 0
        case .bicubic:
            let c = -0.5
            if a < 1 { return ((c + 2) * a - (c + 3)) * a * a + 1 }
            if a < 2 { return (((a - 5) * a + 8) * a - 4) * c }
            return 0
        case .lanczos:
            guard a < 3 else { return 0 }
            return sinc(a) * sinc(a / 3)
        }
    }

    private func sinc(_ x: Double) -> Double {
        if x == 0 { return 1 }
        let px = Double.pi * x
        return sin(px) / px
    }
}

/// How an image is fitted to a target size.
public enum ResizeMode: String, Sendable, CaseIterable {
    /// Exactly the target size (aspect ratio may change).
    case exact
    /// Scaled to fit inside the target, keeping the aspect ratio (the result may be smaller on one side).
    case fit
    /// Scaled to cover the target, keeping the aspect ratio, then centre-cropped to it.
    case fill
}

extension Image {
    /// Resamples to `width` x `height` as Pillow's `Image.resize` does: separable convolution
    /// (horizontal pass, then vertical), the kernel widened by the downscale factor so that
    /// shrinking averages instead of aliasing, and the intermediate clamped to [0, 1] as
    /// Pillow's 8-bit passes are. Nearest picks floor((x + 0.5) * scale).
    public func resized(width newWidth: Int, height newHeight: Int, filter: ResampleFilter = .lanczos) -> Image {
        precondition(newWidth > 0 && newHeight > 0, "resize to \(newWidth)x\(newHeight)")
        if newWidth == width && newHeight == height { return self }
        if filter == .nearest {
            let sx = Double(width) / Double(newWidth), sy = Double(height) / Double(newHeight)
            return remapped(width: newWidth, height: newHeight) { x, y in
                (Swift.min(Int((Double(x) + 0.5) * sx), self.width - 1), Swift.min(Int((Double(y) + 0.5) * sy), self.height - 1))
            }
        }
        var planes = pixels
        if newWidth != width {
            planes = Image.resample(planes, axisLength: width, newLength: newWidth, horizontal: true, filter: filter)
        }
        if newHeight != height {
            planes = Image.resample(planes, axisLength: height, newLength: newHeight, horizontal: false, filter: filter)
        }
        return Image(pixels: planes, metadata: metadata, bitDepth: bitDepth, embedded: embedded)
    }

    /// Resizes to the target by `mode`.
    public func resized(toWidth targetWidth: Int, height targetHeight: Int, mode: ResizeMode, filter: ResampleFilter = .lanczos) -> Image {
        switch mode {
        case .exact:
            return resized(width: targetWidth, height: targetHeight, filter: filter)
        case .fit:
            let scale = Swift.min(Double(targetWidth) / Double(width), Double(targetHeight) / Double(height))
            return resized(width: Swift.max(1, Int((Double(width) * scale).rounded())),
                           height: Swift.max(1, Int((Double(height) * scale).rounded())), filter: filter)
        case .fill:
            let scale = Swift.max(Double(targetWidth) / Double(width), Double(targetHeight) / Double(height))
            let w = Swift.max(targetWidth, Int((Double(width) * scale).rounded()))
            let h = Swift.max(targetHeight, Int((Double(height) * scale).rounded()))
            let scaled = resized(width: w, height: h, filter: filter)
            return scaled.cropped(PixelRect(x: (w - targetWidth) / 2, y: (h - targetHeight) / 2, width: targetWidth, height: targetHeight))
        }
    }

    /// Pillow's `precompute_coeffs` and one pass of `ImagingResample` over every plane of (C, H, W).
    static func resample(_ input: Tensor, axisLength n: Int, newLength m: Int, horizontal: Bool, filter: ResampleFilter) -> Tensor {
        let scale = Double(n) / Double(m)
        let filterScale = Swift.max(scale, 1)
        let support = filter.support * filterScale
        // Each output position i reads counts[i] inputs from starts[i], with weights at i * stride.
        // All are computed here from n and m, so the loops below index raw memory without checks.
        let stride = Swift.max(1, Int((support * 2).rounded(.up)) + 2)
        var starts = [Int](repeating: 0, count: m), counts = [Int](repeating: 0, count: m)
        var weights = [Float](repeating: 0, count: m * stride)
        for i in 0..<m {
            let center = (Double(i) + 0.5) * scale
            let lo = Swift.max(Int(center - support + 0.5), 0)
            let hi = Swift.min(Swift.min(Int(center + support + 0.5), n), lo + stride)
            let k = (lo..<Swift.max(lo, hi)).map { filter.weight((Double($0) - center + 0.5) / filterScale) }
            let total = k.reduce(0, +)
            starts[i] = lo
            counts[i] = k.count
            for (j, value) in k.enumerated() { weights[i * stride + j] = Float(total != 0 ? value / total : value) }
        }
        let (c, h, w) = (input.shape[0], input.shape[1], input.shape[2])
        let (oh, ow) = horizontal ? (h, m) : (m, w)
        var out = Tensor(uninitialized: [c, oh, ow])
        let src = input.pointer, dst = out.mutablePointer()
        starts.withUnsafeBufferPointer { starts in counts.withUnsafeBufferPointer { counts in weights.withUnsafeBufferPointer { weights in
            let wp = weights.baseAddress!
            Parallel.forEach(c * oh, minimumPerThread: 8) { row in
                let ch = row / oh, y = row % oh
                let outRow = dst + row * ow
                if horizontal {
                    let inRow = src + (ch * h + y) * w
                    for x in 0..<ow {
                        let inputs = inRow + starts[x], k = wp + x * stride
                        var acc: Float = 0
                        for j in 0..<counts[x] { acc += inputs[j] * k[j] }
                        outRow[x] = Swift.min(Swift.max(acc, 0), 1)
                    }
                } else {
                    let plane = src + ch * h * w
                    for x in 0..<ow { outRow[x] = 0 }
                    for j in 0..<counts[y] {
                        let inRow = plane + (starts[y] + j) * w, wt = wp[y * stride + j]
                        for x in 0..<ow { outRow[x] += inRow[x] * wt }
                    }
                    for x in 0..<ow { outRow[x] = Swift.min(Swift.max(outRow[x], 0), 1) }
                }
            }
        } } }
        return out
    }

    /// Makes both sides multiples of `multiple` (8 for SD's VAE): by cropping the excess
    /// (centred), padding with edge pixels, or resizing to the nearest multiple.
    public func fittedToMultiple(of multiple: Int, mode: MultipleFit, filter: ResampleFilter = .lanczos) -> Image {
        func down(_ v: Int) -> Int { Swift.max(multiple, v / multiple * multiple) }
        func up(_ v: Int) -> Int { (v + multiple - 1) / multiple * multiple }
        switch mode {
        case .crop:
            let (w, h) = (down(width), down(height))
            return cropped(PixelRect(x: (width - w) / 2, y: (height - h) / 2, width: w, height: h))
        case .pad:
            let (dw, dh) = (up(width) - width, up(height) - height)
            return padded(top: dh / 2, bottom: dh - dh / 2, left: dw / 2, right: dw - dw / 2, mode: .edge)
        case .resize:
            func nearest(_ v: Int) -> Int { Swift.max(multiple, Int((Double(v) / Double(multiple)).rounded()) * multiple) }
            return resized(width: nearest(width), height: nearest(height), filter: filter)
        }
    }

    /// Ways to reach a size multiple.
    public enum MultipleFit: String, Sendable, CaseIterable { case crop, pad, resize }
}
