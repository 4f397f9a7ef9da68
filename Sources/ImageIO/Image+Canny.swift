import TensorCore

extension Image {
    /// The edges of the image as OpenCV's `cv2.Canny(image, low, high)` finds them in its 8-bit
    /// pixels (3x3 Sobel, L1 gradient), equal to it pixel for pixel: what ControlNet's canny
    /// preprocessors (controlnet_aux, A1111, ComfyUI's aux nodes) give the canny ControlNet.
    ///
    /// - Every channel is used, as OpenCV does with an RGB array: at each pixel the channel with the
    ///   largest gradient (the first of equals) gives the gradient.
    /// - Sobel reads replicated border pixels; non-maximum suppression sees zero outside the image.
    /// - Pixels whose gradient is over `high` are edges, and so are those over `low` connected to
    ///   them (8-connectivity). The thresholds are swapped when `low > high`.
    ///
    /// Returns a one-channel image of 0 and 1 of the same size.
    public func cannyEdges(low: Double, high: Double) -> Image {
        let (w, h, channels) = (width, height, Swift.min(self.channels, 3))
        let (lowT, highT) = low > high ? (high, low) : (low, high)
        let lowI = Int32(Swift.max(Swift.min(lowT.rounded(.down), 1e6), -1e6))
        let highI = Int32(Swift.max(Swift.min(highT.rounded(.down), 1e6), -1e6))
        // 8-bit pixels, as the image file held them.
        let bytes: [Int32] = pixels.withUnsafeBufferPointer { p in
            (0..<(channels * w * h)).map { Int32((Swift.min(Swift.max(p[$0], 0), 1) * 255).rounded()) }
        }
        // Per pixel: the gradient (dx, dy) of the channel with the largest |dx| + |dy|.
        var dx = [Int32](repeating: 0, count: w * h), dy = dx, magnitude = dx
        for y in 0..<h {
            let (up, down) = (Swift.max(y - 1, 0), Swift.min(y + 1, h - 1))
            for x in 0..<w {
                let (left, right) = (Swift.max(x - 1, 0), Swift.min(x + 1, w - 1))
                var best: (m: Int32, dx: Int32, dy: Int32) = (-1, 0, 0)
                for c in 0..<channels {
                    let plane = c * w * h
                    func p(_ yy: Int, _ xx: Int) -> Int32 { bytes[plane + yy * w + xx] }
                    let gx = (p(up, right) - p(up, left)) + 2 * (p(y, right) - p(y, left)) + (p(down, right) - p(down, left))
                    let gy = (p(down, left) - p(up, left)) + 2 * (p(down, x) - p(up, x)) + (p(down, right) - p(up, right))
                    let m = abs(gx) + abs(gy)
                    if m > best.m { best = (m, gx, gy) }
                }
                (magnitude[y * w + x], dx[y * w + x], dy[y * w + x]) = best
            }
        }
        // Non-maximum suppression into a map with a border: 0 = candidate, 1 = not an edge, 2 = edge.
        let mw = w + 2
        var map = [UInt8](repeating: 1, count: mw * (h + 2))
        var stack: [Int] = []
        func mag(_ y: Int, _ x: Int) -> Int32 { y < 0 || y >= h || x < 0 || x >= w ? 0 : magnitude[y * w + x] }
        let tg22: Int64 = 13573  // tan(22.5 degrees) in 1.15 fixed point
        for y in 0..<h {
            for x in 0..<w {
                let m = magnitude[y * w + x]
                guard m > lowI else { continue }
                let (gx, gy) = (dx[y * w + x], dy[y * w + x])
                let ax = Int64(abs(gx)), ay = Int64(abs(gy)) << 15
                let tg22x = ax * tg22, tg67x = tg22x + (ax << 16)
                let isMaximum: Bool
                if ay < tg22x {  // horizontal gradient
                    isMaximum = m > mag(y, x - 1) && m >= mag(y, x + 1)
                } else if ay > tg67x {  // vertical gradient
                    isMaximum = m > mag(y - 1, x) && m >= mag(y + 1, x)
                } else if (gx ^ gy) < 0 {  // diagonal, opposite signs
                    isMaximum = m > mag(y - 1, x + 1) && m > mag(y + 1, x - 1)
                } else {
                    isMaximum = m > mag(y - 1, x - 1) && m > mag(y + 1, x + 1)
                }
                guard isMaximum else { continue }
                let index = (y + 1) * mw + x + 1
                if m > highI {
                    map[index] = 2
                    stack.append(index)
                } else {
                    map[index] = 0
                }
            }
        }
        // Hysteresis: candidates connected to an edge become edges.
        let neighbours = [-mw - 1, -mw, -mw + 1, -1, 1, mw - 1, mw, mw + 1]
        while let index = stack.popLast() {
            for offset in neighbours where map[index + offset] == 0 {
                map[index + offset] = 2
                stack.append(index + offset)
            }
        }
        var edges = Tensor(zeros: [1, h, w])
        let out = edges.mutablePointer()
        for y in 0..<h {
            for x in 0..<w where map[(y + 1) * mw + x + 1] == 2 { out[y * w + x] = 1 }
        }
        return Image(pixels: edges)
    }
}
