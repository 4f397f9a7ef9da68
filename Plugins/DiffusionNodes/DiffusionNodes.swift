import NodeKit

/// The built-in diffusion pack: checkpoints, text encoding, the VAE, the denoise loop, upscaler
/// models and tensors. Uses NodeKit and the model libraries, not the workflow engine.
public enum DiffusionNodes {
    public static let pack = NodePack(name: "diffusion", version: "1", nodes: [
        LoadCheckpoint.self, LoadLoRA.self, LoadVAE.self, CLIPEncode.self, VAEEncode.self, VAEDecode.self, EmptyLatent.self,
        Denoise.self, AddNoise.self, UpscaleLatent.self, LoadUpscaler.self, UpscaleImage.self, LoadTensor.self, SaveTensor.self, EraseMasked.self,
        LoadControlNet.self, ApplyControlNet.self, SDXLTimeIds.self,
    ])
}
