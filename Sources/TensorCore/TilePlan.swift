/// How a big image is cut into overlapping tiles that a model processes one at a time, so that
/// memory follows the tile and time grows linearly with pixels. Every tiled path plans here, in
/// one of two layouts:
///
/// - `.diffusers` (`AutoencoderKL.enable_vae_tiling`): along each axis, tiles of `tileSize` start
///   every `tileSize - overlap` (from 0 while the start is inside the image; the last tiles are
///   cut short by the image's edge). `map` runs a model on each tile and joins the results: each
///   tile is blended linearly into the one above and the one to its left over `overlap` (scaled
///   to the output), then cropped to the stride and placed on a grid.
/// - `.fitted`: as few whole tiles as cover the axis with at least `overlap` between neighbours,
///   spread evenly from edge to edge (a model that needs context, such as the UNet, never sees a
///   sliver). `averaged` runs a model on each tile and averages the overlaps, each tile weighted
///   by a ramp over `overlap` at its inner edges (MultiDiffusion's per-step averaging).
public struct TilePlan: Sendable, Equatable {
    /// Where the tiles go along an axis.
    public enum Layout: Sendable { case diffusers, fitted }

    /// The input's extent (rows, columns) and the tiling, all in input units (pixels or latent cells).
    public let height: Int, width: Int, tileSize: Int, overlap: Int
    public let layout: Layout

    /// A plan; `overlap` must be less than `tileSize` and at least 0.
    public init(height: Int, width: Int, tileSize: Int, overlap: Int, layout: Layout = .diffusers) {
        precondition(height > 0 && width > 0 && tileSize > 0 && overlap >= 0 && overlap < tileSize,
                     "TilePlan: \(height)x\(width) in tiles of \(tileSize) overlapping by \(overlap)")
        self.height = height
        self.width = width
        self.tileSize = tileSize
        self.overlap = overlap
        self.layout = layout
    }

    /// Tile starts are this far apart (at least, in the fitted layout).
    public var stride: Int { tileSize - overlap }

    /// The tiles' extents along an axis of `length`.
    public func spans(_ length: Int) -> [Range<Int>] {
        switch layout {
        case .diffusers:
            return Swift.stride(from: 0, to: length, by: stride).map { $0..<Swift.min($0 + tileSize, length) }
        case .fitted:
            guard length > tileSize else { return [0..<length] }
            let count = (length - overlap + stride - 1) / stride  // ceil((length - overlap) / stride) >= 2
            return (0..<count).map { i in
                let start = ((length - tileSize) * i + (count - 1) / 2) / (count - 1)  // rounded
                return start..<(start + tileSize)
            }
        }
    }

    /// The tiles' row ranges, top to bottom.
    public var rows: [Range<Int>] { spans(height) }
    /// The tiles' column ranges, left to right.
    public var columns: [Range<Int>] { spans(width) }
    /// How many tiles the plan has.
    public var tileCount: Int { rows.count * columns.count }
    /// Whether the whole input fits in one tile (diffusers does not tile then).
    public var fitsOneTile: Bool { height <= tileSize && width <= tileSize }

    /// Runs `body` on each tile of `input` (N, C, height, width) and joins the results, which
    /// must be `scale` times the tile's size along each side (a rational number: 8/1 for a VAE
    /// decoder, 1/8 for its encoder); the tile size and the overlap must scale to whole numbers.
    /// Tiles run row by row; only the previous row's results are kept for blending.
    /// Returns (N, C', height * scale, width * scale).
    public func map(_ input: Tensor, scale: (numerator: Int, denominator: Int) = (1, 1), _ body: (Tensor) -> Tensor) -> Tensor {
        precondition(input.rank == 4 && input.shape[2] == height && input.shape[3] == width,
                     "TilePlan.map: input \(input.shape) for a \(height)x\(width) plan")
        let (p, q) = scale
        precondition(tileSize * p % q == 0 && overlap * p % q == 0 && height * p % q == 0 && width * p % q == 0,
                     "TilePlan.map: \(height)x\(width), tiles \(tileSize), overlap \(overlap) do not scale by \(p)/\(q) to whole numbers")
        let blendExtent = overlap * p / q, limit = (tileSize - overlap) * p / q
        var output: Tensor?
        var above: [Tensor] = []
        for (i, rows) in self.rows.enumerated() {
            var row: [Tensor] = []
            for (j, columns) in self.columns.enumerated() {
                var tile = body(input.window(rows: rows, columns: columns))  // (N, C', h', w')
                precondition(tile.shape[2] == rows.count * p / q && tile.shape[3] == columns.count * p / q,
                             "TilePlan.map: a \(rows.count)x\(columns.count) tile gave \(tile.shape)")
                if i > 0 { tile.blend(from: above[j], extent: blendExtent, axis: 2) }
                if j > 0 { tile.blend(from: row[j - 1], extent: blendExtent, axis: 3) }
                if output == nil { output = Tensor(zeros: [tile.shape[0], tile.shape[1], height * p / q, width * p / q]) }
                let kept = tile.window(rows: 0..<Swift.min(limit, tile.shape[2]), columns: 0..<Swift.min(limit, tile.shape[3]))
                output!.paste(kept, row: i * limit, column: j * limit)
                row.append(tile)
            }
            above = row
        }
        return output!
    }
}

extension TilePlan {
    /// Runs `body` on each tile of `input` (N, C, height, width) and averages the results where
    /// tiles overlap, each weighted by a linear ramp over `overlap` from its inner edges (weight
    /// (k + 1) / (overlap + 1) at k from the edge; 1 elsewhere and along the image's border).
    /// `body` gets the tile and where it is, and must return it `scale` times larger along each
    /// side (1 for the UNet, 4 for a 4x upscaler; the ramps scale with it).
    /// Returns (N, C', height * scale, width * scale).
    public func averaged(_ input: Tensor, scale: Int = 1, _ body: (Tensor, _ rows: Range<Int>, _ columns: Range<Int>) -> Tensor) -> Tensor {
        precondition(input.rank == 4 && input.shape[2] == height && input.shape[3] == width && scale >= 1,
                     "TilePlan.averaged: input \(input.shape) for a \(height)x\(width) plan")
        let (outHeight, outWidth, ramped) = (height * scale, width * scale, (overlap + 1) * scale)
        /// A tile's weights along an axis of the output, for its input `range` on an input axis of `length`.
        func ramp(_ range: Range<Int>, _ length: Int) -> [Float] {
            (range.lowerBound * scale..<range.upperBound * scale).map { i in
                var w: Float = 1
                if range.lowerBound > 0 { w = Swift.min(w, Float(i - range.lowerBound * scale + 1) / Float(ramped)) }
                if range.upperBound < length { w = Swift.min(w, Float(range.upperBound * scale - i) / Float(ramped)) }
                return w
            }
        }
        // Tiles form a grid, so the total weight at (y, x) is (sum of row ramps at y) x (sum of column ramps at x).
        var rowWeights = [Float](repeating: 0, count: outHeight), columnWeights = [Float](repeating: 0, count: outWidth)
        for rows in self.rows { for (k, w) in ramp(rows, height).enumerated() { rowWeights[rows.lowerBound * scale + k] += w } }
        for columns in self.columns { for (k, w) in ramp(columns, width).enumerated() { columnWeights[columns.lowerBound * scale + k] += w } }
        var sum: Tensor?
        for rows in self.rows {
            for columns in self.columns {
                let tile = body(input.window(rows: rows, columns: columns), rows, columns)  // (N, C', h * scale, w * scale)
                let (h, w) = (rows.count * scale, columns.count * scale)
                precondition(tile.shape[2] == h && tile.shape[3] == w, "TilePlan.averaged: a tile gave \(tile.shape), not \(h)x\(w)")
                let (wy, wx) = (ramp(rows, height), ramp(columns, width))
                if sum == nil { sum = Tensor(zeros: [tile.shape[0], tile.shape[1], outHeight, outWidth]) }
                let planes = tile.shape[0] * tile.shape[1], (top, left) = (rows.lowerBound * scale, columns.lowerBound * scale)
                let src = tile.pointer, dst = sum!.mutablePointer(), area = outHeight * outWidth
                Parallel.forEach(planes, minimumPerThread: 1) { plane in
                    for y in 0..<h {
                        let s = src + (plane * h + y) * w, d = dst + plane * area + (top + y) * outWidth + left
                        for x in 0..<w { d[x] += s[x] * wy[y] * wx[x] }
                    }
                }
            }
        }
        var result = sum!
        let planes = result.shape[0] * result.shape[1], p = result.mutablePointer()
        Parallel.forEach(planes, minimumPerThread: 1) { plane in
            for y in 0..<outHeight {
                let row = p + (plane * outHeight + y) * outWidth, wy = rowWeights[y]
                for x in 0..<outWidth { row[x] /= wy * columnWeights[x] }
            }
        }
        return result
    }
}

extension Tensor {
    /// The spatial window `rows` x `columns` of an NCHW tensor, copied: (N, C, rows, columns).
    public func window(rows: Range<Int>, columns: Range<Int>) -> Tensor {
        precondition(rank == 4 && rows.lowerBound >= 0 && rows.upperBound <= shape[2] && columns.lowerBound >= 0 && columns.upperBound <= shape[3],
                     "window \(rows) x \(columns) out of \(shape)")
        let (planes, h, w) = (shape[0] * shape[1], shape[2], shape[3])
        var result = Tensor(uninitialized: [shape[0], shape[1], rows.count, columns.count])
        let src = pointer, dst = result.mutablePointer(), (height, width) = (rows.count, columns.count)
        Parallel.forEach(planes, minimumPerThread: Swift.max(1, 16384 / Swift.max(height * width, 1))) { plane in
            for y in 0..<height {
                (dst + (plane * height + y) * width).update(from: src + (plane * h + rows.lowerBound + y) * w + columns.lowerBound, count: width)
            }
        }
        return result
    }

    /// Writes `part` (N, C, h, w) into this NCHW tensor with its top-left corner at (`row`, `column`).
    public mutating func paste(_ part: Tensor, row: Int, column: Int) {
        precondition(rank == 4 && part.rank == 4 && part.shape[0] == shape[0] && part.shape[1] == shape[1]
                     && row >= 0 && column >= 0 && row + part.shape[2] <= shape[2] && column + part.shape[3] <= shape[3],
                     "paste \(part.shape) at (\(row), \(column)) out of \(shape)")
        let (planes, h, w, ph, pw) = (shape[0] * shape[1], shape[2], shape[3], part.shape[2], part.shape[3])
        let src = part.pointer, dst = mutablePointer()
        Parallel.forEach(planes, minimumPerThread: Swift.max(1, 16384 / Swift.max(ph * pw, 1))) { plane in
            for y in 0..<ph { (dst + (plane * h + row + y) * w + column).update(from: src + (plane * ph + y) * pw, count: pw) }
        }
    }

    /// Blends the start of this NCHW tile along `axis` (2: rows, 3: columns) into the end of its
    /// neighbour `previous`, as diffusers' `blend_v`/`blend_h`: over e = min(extent, both sizes)
    /// lines, line k becomes previous[end - e + k] * (1 - k/e) + self[k] * (k/e).
    mutating func blend(from previous: Tensor, extent: Int, axis: Int) {
        precondition(rank == 4 && previous.rank == 4 && (axis == 2 || axis == 3) && previous.shape[5 - axis] == shape[5 - axis]
                     && previous.shape[0] == shape[0] && previous.shape[1] == shape[1], "blend: \(previous.shape) into \(shape) along \(axis)")
        let e = Swift.min(extent, previous.shape[axis], shape[axis])
        guard e > 0 else { return }
        let (planes, h, w, ph, pw) = (shape[0] * shape[1], shape[2], shape[3], previous.shape[2], previous.shape[3])
        let src = previous.pointer, dst = mutablePointer()
        Parallel.forEach(planes, minimumPerThread: Swift.max(1, 4096 / Swift.max(e * (axis == 2 ? w : h), 1))) { plane in
            let a = src + plane * ph * pw, b = dst + plane * h * w
            for k in 0..<e {
                let t = Double(k) / Double(e)
                let (keep, take) = (Float(1 - t), Float(t))
                if axis == 2 {
                    let ra = a + (ph - e + k) * pw, rb = b + k * w
                    for x in 0..<w { rb[x] = ra[x] * keep + rb[x] * take }
                } else {
                    for y in 0..<h { b[y * w + k] = a[y * pw + pw - e + k] * keep + b[y * w + k] * take }
                }
            }
        }
    }
}
