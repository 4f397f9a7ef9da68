import TensorCore

/// Tiled encoding and decoding of images too big to process whole (diffusers'
/// `enable_vae_tiling()`, the same rule at the same settings): tiles of `tileSize` pixels
/// overlapping by `overlap` pixels, blended linearly over the overlap.
///
/// Tiled results differ from an untiled pass: the GroupNorm layers normalise each tile by its
/// own statistics, and the mid-block attention sees only its tile. Colours can shift slightly
/// from tile to tile (the blending hides the seams), as diffusers' documentation says of its
/// tiling too. An image that fits in one tile is processed whole.
public struct VAETiling: Sendable, Equatable, Hashable {
    /// Tile side in image pixels (a multiple of the VAE's 8).
    public var tileSize: Int
    /// Pixels shared by neighbouring tiles (a multiple of 8, less than `tileSize`).
    public var overlap: Int

    /// diffusers' defaults for SD 1.x: 512-pixel tiles (its VAE's `sample_size`), overlap factor 0.25.
    public static let standard = VAETiling(tileSize: 512, overlap: 128)

    public init(tileSize: Int, overlap: Int) {
        self.tileSize = tileSize
        self.overlap = overlap
    }

    /// Why these settings cannot tile a VAE with `downscale`-pixel cells, or nil.
    public func problem(downscale: Int) -> String? {
        if tileSize < downscale || tileSize % downscale != 0 { return "the tile size \(tileSize) is not a multiple of \(downscale)" }
        if overlap < 0 || overlap % downscale != 0 { return "the overlap \(overlap) is not a multiple of \(downscale)" }
        if overlap >= tileSize { return "the overlap \(overlap) is not less than the tile size \(tileSize)" }
        return nil
    }

    /// `body` on the whole NCHW `input`, or, with a `tiling` and an input larger than one tile, on its
    /// tiles joined by `TilePlan.map`. `unit`: pixels per input cell (1 for images, the VAE's
    /// downscale for latents); `scale`: output size over input size.
    static func apply(_ tiling: VAETiling?, to input: Tensor, unit: Int, scale: (numerator: Int, denominator: Int),
                      _ body: (Tensor) -> Tensor) -> Tensor {
        guard let tiling else { return body(input) }
        let plan = TilePlan(height: input.shape[2], width: input.shape[3], tileSize: tiling.tileSize / unit, overlap: tiling.overlap / unit)
        return plan.fitsOneTile ? body(input) : plan.map(input, scale: scale, body)
    }

    /// Why `vae` should not process a `width` x `height` image whole with `available` bytes of memory
    /// (the pass would need more than that), or nil.
    public static func untiledProblem(_ vae: any LatentAutoencoder, width: Int, height: Int, available: Int?) -> String? {
        let needed = vae.untiledBytes(pixels: width * height)
        guard let available, needed > available else { return nil }
        func gigabytes(_ n: Int) -> String { String(format: "%.1f GB", Double(n) / 1e9) }
        return "a \(width)x\(height) image untiled needs about \(gigabytes(needed)) of memory and \(gigabytes(available)) is available: "
            + "set tiled: auto or on (tiles of tile_size pixels take memory by the tile, not the image)"
    }

    /// The images that sdflow tiles when a workflow leaves it to decide (`tiled: auto`, for the VAE
    /// and the UNet): above this many pixels the untiled pass's memory and time grow faster than the
    /// pixels (attention is quadratic in them), so tiling is both smaller and faster.
    public static let automaticAbovePixels = 1024 * 1024
}
