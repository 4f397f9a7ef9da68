import TensorCore

/// A fixed linear map from SD 1.x latents to RGB, for instant previews without a decoder
/// (ComfyUI's `latent_rgb_factors` of `latent_formats.SD15`).
public enum LatentRGB {
    /// rgb = latent (4 channels) x this (4 x 3).
    public static let sd15Factors: [[Float]] = [
        [0.3512, 0.2297, 0.3227],
        [0.3250, 0.4974, 0.2350],
        [-0.2829, 0.1762, 0.2721],
        [-0.2120, -0.2616, -0.7177],
    ]

    /// Scaled latents (1, 4, h, w) -> an RGB image (3, h, w) in [0, 1]: the projection, then
    /// (rgb + 1) / 2 clamped, as ComfyUI's Latent2RGB previewer.
    public static func project(_ latents: Tensor) -> Tensor {
        precondition(latents.rank == 4 && latents.shape[1] == 4, "LatentRGB: expected (N, 4, h, w), got \(latents.shape)")
        let (h, w) = (latents.shape[2], latents.shape[3]), plane = h * w
        var rgb = Tensor(zeros: [3, h, w])
        let src = latents.pointer, dst = rgb.mutablePointer()
        for c in 0..<3 {
            for i in 0..<plane {
                var v: Float = 0
                for k in 0..<4 { v += src[k * plane + i] * sd15Factors[k][c] }
                dst[c * plane + i] = Swift.min(Swift.max((v + 1) / 2, 0), 1)
            }
        }
        return rgb
    }
}
