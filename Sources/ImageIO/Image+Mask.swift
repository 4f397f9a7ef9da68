import Foundation
import TensorCore

// Masks are one-channel images in [0, 1]; 1 marks the area to repaint.

extension Image {
    /// A mask from this image: its alpha channel (`fromAlpha`), otherwise its luminance.
    public func mask(fromAlpha: Bool = false) -> Image {
        if fromAlpha, let alpha = alpha() { return alpha }
        return luminance()
    }

    /// 1 where the value is at least `level`, else 0 (diffusers binarises inpainting masks at 0.5).
    public func thresholded(_ level: Float = 0.5) -> Image {
        Image(pixels: pixels.map { $0 >= level ? 1 : 0 }, metadata: metadata, bitDepth: bitDepth, embedded: embedded)
    }

    /// 1 - value.
    public func inverted() -> Image {
        Image(pixels: pixels.map { 1 - $0 }, metadata: metadata, bitDepth: bitDepth, embedded: embedded)
    }

    /// Grows (radius > 0, a maximum filter) or shrinks (radius < 0, a minimum filter) the bright
    /// area by `radius` pixels with a square footprint, separably.
    public func grown(by radius: Int) -> Image {
        guard radius != 0 else { return self }
        let r = abs(radius)
        let pick: (Float, Float) -> Float = radius > 0 ? { Swift.max($0, $1) } : { Swift.min($0, $1) }
        let horizontal = Image.slide(pixels, radius: r, horizontal: true, combine: pick)
        return Image(pixels: Image.slide(horizontal, radius: r, horizontal: false, combine: pick), metadata: metadata, bitDepth: bitDepth, embedded: embedded)
    }

    private static func slide(_ t: Tensor, radius: Int, horizontal: Bool, combine: @escaping (Float, Float) -> Float) -> Tensor {
        alongLines(t, horizontal: horizontal) { src, dst, n, stride in
            for i in 0..<n {
                var v = src[i * stride]
                for j in Swift.max(0, i - radius)...Swift.min(n - 1, i + radius) { v = combine(v, src[j * stride]) }
                dst[i * stride] = v
            }
        }
    }

    /// A new (C, H, W) tensor made line by line (rows, or columns when not `horizontal`), in parallel:
    /// `body(source line, target line, length, stride between elements)`.
    private static func alongLines(_ t: Tensor, horizontal: Bool,
                                   _ body: @escaping (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int, Int) -> Void) -> Tensor {
        let (c, h, w) = (t.shape[0], t.shape[1], t.shape[2])
        var out = Tensor(uninitialized: t.shape)
        let src = t.pointer, dst = out.mutablePointer()
        Parallel.forEach(c * (horizontal ? h : w), minimumPerThread: 4) { line in
            let (n, stride) = horizontal ? (w, 1) : (h, w)
            let base = horizontal ? line * w : (line / w) * h * w + line % w
            body(src + base, dst + base, n, stride)
        }
        return out
    }

    /// Gaussian blur with standard deviation `sigma` (kernel radius ceil(3 sigma), edges extended);
    /// used to feather mask edges.
    public func blurred(sigma: Float) -> Image {
        guard sigma > 0 else { return self }
        let radius = Int((3 * sigma).rounded(.up))
        var kernel = (-radius...radius).map { Foundation.exp(-Float($0 * $0) / (2 * sigma * sigma)) }
        let total = kernel.reduce(0, +)
        kernel = kernel.map { $0 / total }
        let horizontal = Image.convolve(pixels, kernel: kernel, horizontal: true)
        return Image(pixels: Image.convolve(horizontal, kernel: kernel, horizontal: false), metadata: metadata, bitDepth: bitDepth, embedded: embedded)
    }

    private static func convolve(_ t: Tensor, kernel: [Float], horizontal: Bool) -> Tensor {
        let radius = kernel.count / 2
        return alongLines(t, horizontal: horizontal) { src, dst, n, stride in
            for i in 0..<n {
                var acc: Float = 0
                for (k, weight) in kernel.enumerated() {
                    let j = Swift.min(Swift.max(i + k - radius, 0), n - 1)
                    acc += src[j * stride] * weight
                }
                dst[i * stride] = acc
            }
        }
    }

    /// The smallest rectangle holding every pixel above `level` (of the first channel), or nil when none is.
    public func boundingBox(above level: Float = 0) -> PixelRect? {
        var (minX, minY, maxX, maxY) = (width, height, -1, -1)
        let p = pixels.pointer
        for y in 0..<height {
            for x in 0..<width where p[y * width + x] > level {
                minX = Swift.min(minX, x); maxX = Swift.max(maxX, x)
                minY = Swift.min(minY, y); maxY = Swift.max(maxY, y)
            }
        }
        return maxX < 0 ? nil : PixelRect(x: minX, y: minY, width: maxX - minX + 1, height: maxY - minY + 1)
    }

    /// `self` where the mask is 1, `background` where it is 0, blended in between:
    /// out = self * m + background * (1 - m). Both images must have the same size and channels.
    public func composited(over background: Image, mask: Image) -> Image {
        precondition(width == background.width && height == background.height && width == mask.width && height == mask.height
                     && channels == background.channels, "composite: sizes or channels differ")
        let c = channels, plane = width * height
        var out = Tensor(uninitialized: pixels.shape)
        let fg = pixels.pointer, bg = background.pixels.pointer, m = mask.pixels.pointer, dst = out.mutablePointer()
        Parallel.forRanges(plane, minimumPerThread: 1 << 14) { range in
            for i in range {
                let a = m[i]
                for ch in 0..<c { dst[ch * plane + i] = fg[ch * plane + i] * a + bg[ch * plane + i] * (1 - a) }
            }
        }
        return Image(pixels: out, metadata: background.metadata, bitDepth: background.bitDepth, embedded: background.embedded)
    }
}

/// "Only masked" inpainting, as A1111 does it: the masked area of a large photo, with some
/// context around it, is cut out, processed at full model resolution, and pasted back.
public struct MaskCrop: Sendable, Equatable {
    /// The region of the original image that was cut out.
    public let region: PixelRect

    /// A crop of a known region (to paste back a cut-out made earlier).
    public init(region: PixelRect) { self.region = region }

    /// The region around the mask's bounding box, grown by `padding` pixels on every side, then
    /// widened to the aspect ratio of `targetWidth` x `targetHeight` and clipped to the image.
    /// Nil when the mask is empty.
    public init?(mask: Image, padding: Int, targetWidth: Int, targetHeight: Int) {
        guard let box = mask.boundingBox() else { return nil }
        var x0 = box.x - padding, y0 = box.y - padding
        var x1 = box.x + box.width + padding, y1 = box.y + box.height + padding
        // Widen the shorter side so the crop has the target's aspect ratio.
        let aspect = Double(targetWidth) / Double(targetHeight)
        let (w, h) = (Double(x1 - x0), Double(y1 - y0))
        if w / h < aspect {
            let extra = Int((h * aspect - w).rounded(.up))
            x0 -= extra / 2; x1 += extra - extra / 2
        } else {
            let extra = Int((w / aspect - h).rounded(.up))
            y0 -= extra / 2; y1 += extra - extra / 2
        }
        // Shift inside the image where possible, then clip.
        if x0 < 0 { x1 -= x0; x0 = 0 }
        if y0 < 0 { y1 -= y0; y0 = 0 }
        if x1 > mask.width { x0 -= x1 - mask.width; x1 = mask.width }
        if y1 > mask.height { y0 -= y1 - mask.height; y1 = mask.height }
        x0 = Swift.max(x0, 0); y0 = Swift.max(y0, 0)
        region = PixelRect(x: x0, y: y0, width: x1 - x0, height: y1 - y0)
    }

    /// The cut-out of `image`, resized to the target size.
    public func cut(_ image: Image, width: Int, height: Int, filter: ResampleFilter = .lanczos) -> Image {
        image.cropped(region).resized(width: width, height: height, filter: filter)
    }

    /// `processed` (the cut-out after editing, any size) scaled back to the region and blended into
    /// `original` through `mask` (full size; feather it first for soft edges). Pixels where the
    /// mask is 0 keep their original values exactly.
    public func pasteBack(_ processed: Image, into original: Image, mask: Image, filter: ResampleFilter = .lanczos) -> Image {
        let patch = processed.resized(width: region.width, height: region.height, filter: filter)
        var placed = original
        let c = original.channels, (w, h) = (original.width, original.height)
        let patchRGB = patch.channels == c ? patch : (c >= 3 ? patch.rgb() : patch.luminance())
        let dst = placed.pixels.mutablePointer(), src = patchRGB.pixels.pointer
        for ch in 0..<Swift.min(c, patchRGB.channels) {
            for y in 0..<region.height {
                for x in 0..<region.width {
                    dst[(ch * h + region.y + y) * w + region.x + x] = src[(ch * region.height + y) * region.width + x]
                }
            }
        }
        withExtendedLifetime(patchRGB) {}  // src points into it
        return placed.composited(over: original, mask: mask)
    }
}
