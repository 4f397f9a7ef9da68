import DiffusionModels
import Foundation
import ImageIO
import NodeKit
import Sampling
import StableDiffusion
import TensorCore

/// `denoise`: the guided UNet loop: text-to-image, image-to-image and inpainting.
struct Denoise: GenerationDescribing {
    static let description = NodeDescription(
        name: "denoise",
        summary: "Run the guided diffusion loop: text-to-image (strength 1), image-to-image (strength < 1) or inpainting (with a mask).",
        inputs: [
            .init("unet", .unet, help: "the UNet"),
            .init("positive", .conditioning, help: "the prompt's conditioning"),
            .init("negative", .conditioning, help: "the negative prompt's conditioning (clip_encode of \"\" for none)"),
            .init("latent", .latent, help: "the starting latent: empty_latent, or vae_encode of an image"),
            .init("mask", .mask, optional: true, help: "inpainting mask (white = repaint); its size is the image's"),
            .init("masked_latent", .latent, optional: true,
                  help: "9-channel inpainting models: vae_encode of the image with the masked area blanked (erase_masked)"),
            .init("noise", .tensor, optional: true, help: "the starting noise instead of drawing it from the seed (same shape as the latent)"),
        ],
        outputs: [.init("latent", .latent, help: "the denoised latent")],
        parameters: [
            .init("sampler", .choice(SamplerKind.allCases.map(\.rawValue)), default: .text("euler_a"), help: "the sampler"),
            .init("schedule", .choice(["default", "karras"] + TimestepSpacing.allCases.map(\.rawValue)), default: .text("default"),
                  help: "timestep spacing (default: the sampler's diffusers default) or Karras sigmas (euler, dpmpp_2m)"),
            .init("steps", .integer(1...1000), default: .integer(20), help: "sampling steps of the full schedule"),
            .init("cfg", .number(0...50), default: .number(7.5), help: "classifier-free guidance scale (1 or less: no guidance)"),
            .init("seed", .seed, default: .integer(0), help: "seed of the noise (the same as torch.Generator().manual_seed)"),
            .init("strength", .number(0...1), default: .number(1),
                  help: "how much of the schedule to run on the latent: 1 starts from pure noise, less keeps more of the image"),
            .init("eta", .number(0...1), default: .number(0), help: "DDIM's eta, TCD's gamma (0: deterministic; TCD's authors use 0.3)"),
            .init("end_at_step", .integer(0...1000), default: .integer(0), help: "stop after this step of the schedule (0: run to the end), for chained passes"),
            .init("add_noise", .boolean, default: .boolean(true), help: "noise the latent to the starting level first (off for a latent left noisy by a previous pass)"),
            .init("mask_grow", .integer(-256...256), default: .integer(0), help: "pixels to grow (negative: shrink) the mask"),
            .init("mask_feather", .number(0...128), default: .number(0), help: "Gaussian blur (pixels) of the mask edge for the latent blend"),
            .init("tiled", .choice(["auto", "on", "off"]), default: .text("auto"),
                  help: "run the UNet on overlapping tiles and average them every step (MultiDiffusion), for big images: "
                        + "auto tiles latents of images over 1 megapixel; on tiles anything larger than one tile; off never tiles"),
            .init("tile_size", .integer(8...1024), default: .integer(64),
                  help: "UNet tile side in latent cells (64: 512 pixels, SD 1.x's training size)"),
            .init("tile_overlap", .integer(1...512), default: .integer(16),
                  help: "latent cells neighbouring UNet tiles share at least (averaged with ramps over this width)"),
            .init("preview", .text, default: .text(""), help: "a folder for a live preview PNG of the predicted image (also --preview; relative to the current folder)",
                  affectsResult: false),
            .init("preview_every", .integer(1...1000), default: .integer(1), help: "steps between previews (the last step always gets one)",
                  affectsResult: false),
            .init("preview_taesd", .text, default: .text(""), help: "TAESD (see load_vae) for full-size previews instead of the linear latent-to-RGB projection",
                  affectsResult: false),
        ])

    /// The settings saved images record: steps, sampler, CFG, seed, strength below 1, and the
    /// texts of the clip_encode nodes connected as prompts.
    static func generationParameters(_ node: RunInfo.UpstreamNode, upstream: [String: RunInfo.UpstreamNode]) -> [String: String] {
        var result: [String: String] = [:]
        result["Steps"] = node.parameters["steps"]
        result["Sampler"] = node.parameters["sampler"]
        result["CFG scale"] = node.parameters["cfg"]
        result["Seed"] = node.parameters["seed"]
        if let strength = node.parameters["strength"], strength != "1.0" { result["Denoising strength"] = strength }
        result["prompt"] = node.inputs["positive"].flatMap { upstream[$0]?.parameters["text"] }
        result["negative"] = node.inputs["negative"].flatMap { upstream[$0]?.parameters["text"] }
        return result
    }

    /// The UNet tiling for `latent`, in latent cells, or nil to run it whole. `auto` tiles the
    /// latents of images over 1 megapixel (at SD's 8 pixels per cell).
    static func tiles(_ context: NodeContext, latent: Tensor) throws -> (size: Int, overlap: Int)? {
        guard try tilesRequested(context, pixels: latent.shape[2] * latent.shape[3] * 64) else { return nil }
        let (size, overlap) = (try context.int("tile_size"), try context.int("tile_overlap"))
        guard overlap < size else { throw NodeError.invalidInput("the UNet tile overlap \(overlap) is not less than the tile size \(size)") }
        return (size, overlap)
    }

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let unet = try context.loadedUNet("unet")
        let latent = try context.latent("latent").slice(0..<1)
        guard latent.rank == 4, latent.shape[1] == 4 else {
            throw NodeError.invalidInput("input 'latent' has shape \(latent.shape); expected (1, 4, h, w)")
        }
        let positive = try context.conditioning("positive"), negative = try context.conditioning("negative")
        guard positive.rank == 3, negative.rank == 3, positive.shape[0] == negative.shape[0],
              positive.shape[2] == unet.config.contextDimension, negative.shape[2] == unet.config.contextDimension else {
            throw NodeError.invalidInput("the conditioning \(positive.shape) / \(negative.shape) does not fit this UNet (width \(unet.config.contextDimension))")
        }

        var request = DenoiseRequest(sampler: SamplerKind(rawValue: try context.string("sampler"))!, steps: try context.int("steps"))
        switch try context.string("schedule") {
        case "default": break
        case let other where request.sampler.schedulesStrength:
            throw NodeError.invalidInput("\(request.sampler.rawValue) has its own schedule; schedule '\(other)' does not apply (use default)")
        case "karras":
            guard request.sampler.supportsKarras else {
                throw NodeError.invalidInput("Karras sigmas are available for euler and dpmpp_2m, not \(request.sampler.rawValue)")
            }
            request.karras = true
        case let spacing: request.spacing = TimestepSpacing(rawValue: spacing)
        }
        request.strength = try context.double("strength")
        request.eta = Float(try context.double("eta"))
        let end = try context.int("end_at_step")
        request.endStep = end > 0 ? end : nil
        request.addNoise = try context.bool("add_noise")

        // The seed's generator gives the starting noise first, then the samplers' step noise.
        let generator = TorchGenerator(seed: UInt64(try context.int("seed")))
        let noise: Tensor
        if let given = context.input("noise")?.tensorValue {
            guard given.count == latent.count else { throw NodeError.invalidInput("input 'noise' has \(given.shape), the latent \(latent.shape)") }
            noise = given.reshaped(latent.shape)
        } else {
            noise = generator.randn(latent.shape)
        }

        // Inpainting: the pixel mask binarised at 0.5 (as diffusers), grown, feathered, then at latent size.
        var blend: LatentBlend?
        var inpaintingInputs: (mask: Tensor, maskedImageLatents: Tensor)?
        let inpaintingModel = unet.config.inChannels == 9
        if let mask = context.input("mask")?.maskValue {
            let latentMask = try Denoise.latentMask(mask, latent: latent, grow: try context.int("mask_grow"), feather: try context.double("mask_feather"))
            if inpaintingModel {
                guard let masked = context.input("masked_latent")?.latentValue, masked.shape == latent.shape else {
                    throw NodeError.invalidInput("this is a 9-channel inpainting model: connect 'masked_latent' (vae_encode of erase_masked)")
                }
                inpaintingInputs = (latentMask, masked)
            } else {
                blend = LatentBlend(mask: latentMask, original: latent)
            }
        } else if inpaintingModel {
            // Text-to-image with an inpainting model: everything masked, nothing kept.
            inpaintingInputs = (Tensor(repeating: 1, shape: [1, 1, latent.shape[2], latent.shape[3]]), Tensor(zeros: latent.shape))
        }
        let denoiser = GuidedDenoiser(unet: unet, positive: positive.slice(0..<1), negative: negative.slice(0..<1),
                                      guidanceScale: Float(try context.double("cfg")), inpaintingInputs: inpaintingInputs,
                                      tiles: try Denoise.tiles(context, latent: latent))
        // Strength 1 (and text-to-image) starts from pure noise; below 1 the latent is noised to the start step.
        let source: Tensor? = request.strength >= 1 && blend == nil && inpaintingInputs == nil ? nil : latent
        let preview = try LatentPreview(context)
        var previewError: Error?
        let observe: ((Int, Int, Tensor) -> Void)? = preview.map { preview in
            { completed, total, denoised in
                guard previewError == nil, preview.wants(completed, of: total) else { return }
                do { try preview.write(denoised) } catch { previewError = error }
            }
        }
        do {
            let result = try DenoiseLoop.run(request, denoiser: denoiser, source: source, noise: noise, stepNoise: generator, blend: blend,
                                             progress: { context.progress(completed: $0, total: $1, note: preview.map { "preview: \($0.path)" }) },
                                             isCancelled: { context.isCancelled }, observe: observe)
            if let previewError { context.warn("the live preview could not be written: \(previewError)") }
            return ["latent": .latent(result)]
        } catch DenoiseError.cancelled {
            throw NodeError.cancelled
        } catch let error as DenoiseError {
            throw NodeError.invalidInput(error.description)
        }
    }

    /// A pixel mask as the latent-size mask of the inpainting pipeline (1, 1, h, w).
    static func latentMask(_ mask: Image, latent: Tensor, grow: Int, feather: Double) throws -> Tensor {
        let (h, w) = (latent.shape[2], latent.shape[3])
        // The mask is the image's size; vae_encode centre-crops images to multiples of the VAE's cell.
        let factor = mask.width / w
        guard factor >= 1, mask.height / h == factor, mask.width - w * factor < factor, mask.height - h * factor < factor else {
            throw NodeError.invalidInput("the mask is \(mask.width)x\(mask.height), which does not fit latents of \(w)x\(h)")
        }
        var m = mask.channel(0).fittedToMultiple(of: factor, mode: .crop).thresholded(0.5).grown(by: grow)
        if feather > 0 { m = m.blurred(sigma: Float(feather)) }
        return m.pixels.reshaped([1, 1, m.height, m.width]).resizedNearest(height: h, width: w)
    }
}

/// `add_noise`: a latent noised to the level of a step of a sampler's schedule.
struct AddNoise: Node {
    static let description = NodeDescription(
        name: "add_noise", summary: "Noise a latent to the level a sampler starts from at a given strength.",
        inputs: [.init("latent", .latent, help: "the clean latent"), .init("noise", .tensor, optional: true, help: "the noise instead of the seed's")],
        outputs: [.init("latent", .latent, help: "the noisy latent")],
        parameters: [
            .init("sampler", .choice(SamplerKind.allCases.map(\.rawValue)), default: .text("euler_a"), help: "the sampler whose schedule sets the level"),
            .init("steps", .integer(1...1000), default: .integer(20), help: "steps of the schedule"),
            .init("strength", .number(0...1), default: .number(0.75), help: "the starting point, as in denoise"),
            .init("seed", .seed, default: .integer(0), help: "seed of the noise"),
        ])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let latent = try context.latent("latent")
        let kind = SamplerKind(rawValue: try context.string("sampler"))!
        let strength = try context.double("strength")
        // LCM and TCD shorten their schedule by the strength and start at its first step.
        let sampler = kind.make(steps: try context.int("steps"), strength: strength)
        let start = kind.schedulesStrength ? 0 : DenoiseLoop.startStep(steps: sampler.timesteps.count, strength: strength)
        guard strength > 0, start < sampler.timesteps.count else { throw NodeError.invalidInput("strength 0 adds no noise") }
        let seed = UInt64(try context.int("seed"))
        let noise = context.input("noise")?.tensorValue?.reshaped(latent.shape) ?? TorchGenerator(seed: seed).randn(latent.shape)
        return ["latent": .latent(sampler.addNoise(latent, noise: noise, step: start))]
    }
}
