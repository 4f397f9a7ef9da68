import DiffusionModels
import Foundation
import ImageIO
import NodeKit
import Sampling
import StableDiffusion
import TensorCore

/// `denoise`: the guided UNet loop: text-to-image, image-to-image and inpainting.
struct Denoise: GenerationDescribing {
    static let sampler = Param<SamplerKind>("sampler", default: .eulerAncestral, help: "the sampler")
    static let schedule = Param<String>("schedule", .choice(["default", "karras"] + TimestepSpacing.allCases.map(\.rawValue)), default: "default",
        help: "timestep spacing (default: the sampler's diffusers default) or Karras sigmas (euler, dpmpp_2m)")
    static let steps = Param<Int>("steps", .integer(1...1000), default: 20, help: "sampling steps of the full schedule")
    static let cfg = Param<Double>("cfg", .number(0...50), default: 7.5, help: "classifier-free guidance scale (1 or less: no guidance)")
    static let seed = Param<Int>("seed", .seed, default: 0, help: "seed of the noise (the same as torch.Generator().manual_seed)")
    static let strength = Param<Double>("strength", .number(0...1), default: 1,
        help: "how much of the schedule to run on the latent: 1 starts from pure noise, less keeps more of the image")
    static let eta = Param<Double>("eta", .number(0...1), default: 0,
        help: "DDIM's eta, TCD's gamma (0: deterministic; TCD's authors use 0.3)")
    static let endAtStep = Param<Int>("end_at_step", .integer(0...1000), default: 0,
        help: "stop after this step of the schedule (0: run to the end), for chained passes")
    static let addNoise = Param<Bool>("add_noise", .boolean, default: true,
        help: "noise the latent to the starting level first (off for a latent left noisy by a previous pass)")
    static let maskGrow = Param<Int>("mask_grow", .integer(-256...256), default: 0, help: "pixels to grow (negative: shrink) the mask")
    static let maskFeather = Param<Double>("mask_feather", .number(0...128), default: 0,
        help: "Gaussian blur (pixels) of the mask edge for the latent blend")
    static let tiled = Param<TileMode>("tiled", default: .auto,
        help: "run the UNet on overlapping tiles and average them every step (MultiDiffusion), for big images: "
            + "auto tiles latents of images over 1 megapixel; on tiles anything larger than one tile; off never tiles")
    static let tileSize = Param<Int>("tile_size", .integer(8...1024), default: 64,
        help: "UNet tile side in latent cells (64: 512 pixels, SD 1.x's training size)")
    static let tileOverlap = Param<Int>("tile_overlap", .integer(1...512), default: 16,
        help: "latent cells neighbouring UNet tiles share at least (averaged with ramps over this width)")
    static let preview = Param<String>("preview", .text, default: "",
        help: "a folder for a live preview PNG of the predicted image (also --preview; relative to the current folder)", affectsResult: false)
    static let previewEvery = Param<Int>("preview_every", .integer(1...1000), default: 1,
        help: "steps between previews (the last step always gets one)", affectsResult: false)
    static let previewTaesd = Param<String>("preview_taesd", .text, default: "",
        help: "TAESD (see load_vae) for full-size previews instead of the linear latent-to-RGB projection", affectsResult: false)
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
            .init("control", .control, optional: true, help: "ControlNets with their control images (apply_controlnet)"),
            .init("time_ids", .tensor, optional: true,
                  help: "SDXL: the size conditioning (sdxl_time_ids); without it the image's size, uncropped"),
        ],
        outputs: [.init("latent", .latent, help: "the denoised latent")],
        parameters: [sampler, schedule, steps, cfg, seed, strength, eta, endAtStep, addNoise, maskGrow, maskFeather, tiled, tileSize, tileOverlap, preview, previewEvery, previewTaesd])

    /// The settings saved images record: steps, sampler, CFG, seed, strength below 1, and the
    /// texts of the clip_encode nodes connected as prompts.
    static func generationParameters(_ node: RunInfo.UpstreamNode, upstream: [String: RunInfo.UpstreamNode]) -> [String: String] {
        var result: [String: String] = [:]
        result["Steps"] = node[steps].map(String.init)
        result["Sampler"] = node[sampler]?.rawValue
        result["CFG scale"] = node[cfg].map { String($0) }
        result["Seed"] = node[seed].map(String.init)
        if let strength = node[strength], strength != 1 { result["Denoising strength"] = String(strength) }
        result["prompt"] = node.inputs["positive"].flatMap { upstream[$0]?[CLIPEncode.text] }
        result["negative"] = node.inputs["negative"].flatMap { upstream[$0]?[CLIPEncode.text] }
        return result
    }

    /// The UNet tiling for `latent`, in latent cells, or nil to run it whole. `auto` tiles the
    /// latents of images over 1 megapixel (at SD's 8 pixels per cell).
    static func tiles(_ context: NodeContext, latent: Tensor) throws -> (size: Int, overlap: Int)? {
        guard try context[Self.tiled].wantsTiles(pixels: latent.shape[2] * latent.shape[3] * 64) else { return nil }
        let (size, overlap) = (try context[Self.tileSize], try context[Self.tileOverlap])
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

        var request = DenoiseRequest(sampler: try context[Self.sampler], steps: try context[Self.steps])
        switch try context[Self.schedule] {
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
        request.strength = try context[Self.strength]
        request.eta = Float(try context[Self.eta])
        let end = try context[Self.endAtStep]
        request.endStep = end > 0 ? end : nil
        request.addNoise = try context[Self.addNoise]

        // The seed's generator gives the starting noise first, then the samplers' step noise.
        let generator = TorchGenerator(seed: UInt64(try context[Self.seed]))
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
            let latentMask = try Denoise.latentMask(mask, latent: latent, grow: try context[Self.maskGrow], feather: try context[Self.maskFeather])
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
                                      guidanceScale: Float(try context[Self.cfg]), inpaintingInputs: inpaintingInputs,
                                      tiles: try Denoise.tiles(context, latent: latent),
                                      controls: try context.controlGuides("control", unet: unet, latent: latent),
                                      added: try Denoise.addedConditions(context, unet: unet, latent: latent))
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

    /// SDXL's pooled texts and time ids (nil for SD 1.x UNets): the time ids from `time_ids`, else
    /// the image's size (the latent's times 8), uncropped.
    static func addedConditions(_ context: NodeContext, unet: UNet, latent: Tensor) throws -> (positive: AddedConditions, negative: AddedConditions)? {
        guard let addition = unet.config.addition else { return nil }
        guard let pooled = context.input("positive")?.pooledValue, let negativePooled = context.input("negative")?.pooledValue else {
            throw NodeError.invalidInput("an SDXL UNet needs SDXL conditioning: clip_encode with an SDXL checkpoint's clip, for 'positive' and 'negative'")
        }
        guard pooled.shape == [1, addition.pooledWidth], negativePooled.shape == [1, addition.pooledWidth] else {
            throw NodeError.invalidInput("the pooled text \(pooled.shape) does not fit this SDXL UNet (width \(addition.pooledWidth))")
        }
        let ids: Tensor
        if let given = context.input("time_ids")?.tensorValue {
            guard given.count == 6 else { throw NodeError.invalidInput("input 'time_ids' has \(given.count) values; SDXL takes 6") }
            ids = given.reshaped([1, 6])
        } else {
            ids = Tensor(shape: [1, 6], values: AddedConditions.timeIds(height: latent.shape[2] * 8, width: latent.shape[3] * 8))
        }
        return (AddedConditions(pooled: pooled, timeIds: ids), AddedConditions(pooled: negativePooled, timeIds: ids))
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
    static let sampler = Param<SamplerKind>("sampler", default: .eulerAncestral, help: "the sampler whose schedule sets the level")
    static let steps = Param<Int>("steps", .integer(1...1000), default: 20, help: "steps of the schedule")
    static let strength = Param<Double>("strength", .number(0...1), default: 0.75, help: "the starting point, as in denoise")
    static let seed = Param<Int>("seed", .seed, default: 0, help: "seed of the noise")
    static let description = NodeDescription(
        name: "add_noise", summary: "Noise a latent to the level a sampler starts from at a given strength.",
        inputs: [.init("latent", .latent, help: "the clean latent"), .init("noise", .tensor, optional: true, help: "the noise instead of the seed's")],
        outputs: [.init("latent", .latent, help: "the noisy latent")],
        parameters: [sampler, steps, strength, seed])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let latent = try context.latent("latent")
        let kind = try context[Self.sampler]
        let strength = try context[Self.strength]
        // LCM and TCD shorten their schedule by the strength and start at its first step.
        let sampler = kind.make(steps: try context[Self.steps], strength: strength)
        let start = kind.schedulesStrength ? 0 : DenoiseLoop.startStep(steps: sampler.timesteps.count, strength: strength)
        guard strength > 0, start < sampler.timesteps.count else { throw NodeError.invalidInput("strength 0 adds no noise") }
        let seed = UInt64(try context[Self.seed])
        let noise = context.input("noise")?.tensorValue?.reshaped(latent.shape) ?? TorchGenerator(seed: seed).randn(latent.shape)
        return ["latent": .latent(sampler.addNoise(latent, noise: noise, step: start))]
    }
}

/// `sdxl_time_ids`: SDXL's size conditioning (ComfyUI's CLIPTextEncodeSDXL sizes): the size the
/// model is told the image had, where it was cropped and the size it aims at.
struct SDXLTimeIds: Node {
    static let width = Param<Int>("width", .integer(1...16384), default: 1024, help: "the original width the model is told")
    static let height = Param<Int>("height", .integer(1...16384), default: 1024, help: "the original height")
    static let cropLeft = Param<Int>("crop_left", .integer(0...16384), default: 0, help: "the crop's left edge (0: uncropped)")
    static let cropTop = Param<Int>("crop_top", .integer(0...16384), default: 0, help: "the crop's top edge")
    static let targetWidth = Param<Int>("target_width", .integer(1...16384), default: 1024, help: "the target width")
    static let targetHeight = Param<Int>("target_height", .integer(1...16384), default: 1024, help: "the target height")
    static let description = NodeDescription(
        name: "sdxl_time_ids", summary: "SDXL's size conditioning (original size, crop, target size) for denoise's time_ids.",
        outputs: [.init("time_ids", .tensor, help: "(1, 6): height, width, crop top, crop left, target height, target width")],
        parameters: [width, height, cropLeft, cropTop, targetWidth, targetHeight])

    static func run(_ context: NodeContext) throws -> [String: Value] {
        let values = [try context[Self.height], try context[Self.width], try context[Self.cropTop], try context[Self.cropLeft],
                      try context[Self.targetHeight], try context[Self.targetWidth]].map(Float.init)
        return ["time_ids": .tensor(Tensor(shape: [1, 6], values: values))]
    }
}
