import DiffusionModels
import Foundation
import ImageIO
import NodeKit
import TensorCore

/// Live previews of a denoising pass: every few steps, the clean latents the model predicts are
/// turned into a small PNG, by a fixed linear projection (no model, instant) or by TAESD.
struct LatentPreview {
    /// The PNG written, overwritten at each preview.
    let path: String
    let every: Int
    let taesd: TinyAutoencoder?

    /// The preview settings of a denoise node, or nil when previews are off: the folder from the
    /// `preview` parameter (or `--preview`), one file per node and batch item.
    init?(_ context: NodeContext) throws {
        let folder = try context[Denoise.preview]
        guard !folder.isEmpty else { return nil }
        let taesdPath = try context[Denoise.previewTaesd]
        taesd = taesdPath.isEmpty ? nil : try context.models.model(ModelKey("taesd:" + taesdPath)) { try TinyAutoencoder(path: taesdPath) }
        if let taesd, !taesd.canDecode {
            throw NodeError.invalidInput("preview_taesd \(taesdPath) has no decoder (taesd_decoder.safetensors)")
        }
        every = try context[Denoise.previewEvery]
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let name = context.batchItem.map { "\(context.nodeName)-\($0.stem)" } ?? context.nodeName
        path = URL(fileURLWithPath: folder).appendingPathComponent(name + ".png").path
    }

    /// Whether step `completed` of `total` gets a preview (every `every` steps, and the last).
    func wants(_ completed: Int, of total: Int) -> Bool { completed % every == 0 || completed == total }

    /// Writes the preview of `denoised` (1, 4, h, w) scaled latents.
    func write(_ denoised: Tensor) throws {
        try ImageFile.write(LatentPreview.image(denoised, taesd: taesd), to: path)
    }

    /// The preview image: TAESD's decoding (8x the latent size), or the linear projection at the
    /// latent size, ((rgb + 1) / 2) clamped as ComfyUI's Latent2RGB previewer.
    static func image(_ latents: Tensor, taesd: TinyAutoencoder?) -> Image {
        if let taesd { return Image(modelOutput: taesd.decode(latents.slice(0..<1))) }
        return Image(pixels: LatentRGB.project(latents.slice(0..<1)))
    }
}
