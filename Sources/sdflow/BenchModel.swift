import ArgumentParser
import DiffusionModels
import Foundation
import Sampling
import StableDiffusion
import TensorCore

/// `sdflow bench model PATH`: the measurements of the speed issue on a checkpoint.
struct BenchModel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "Time CLIP, UNet steps, VAE encode/decode and a 20-step 512x512 txt2img on a checkpoint.",
        discussion: """
            Use a release build. Peak resident memory is read after the txt2img run, which comes first.
            `tools/reference/bench_compare.py` runs this and the same measurements in PyTorch side by side.
            """)

    @Argument(help: "A checkpoint (single file or diffusers folder), e.g. the random SD 1.5 model of make_sd15_model.py.")
    var model: String

    @Option(help: "Threads for OpenBLAS and parallel loops.")
    var threads: Int?

    @Option(help: "Repetitions of each row (the best is reported).")
    var repeats = 1

    @Option(help: "Rows to run (comma-separated): load, txt2img512, fast512, clip, unet256, unet512, unet512_cfg1, controlnet512, unet512_controlnet, vae_encode256, vae_decode256, vae_encode512, vae_decode512, taesd_decode512.")
    var only: String?

    @Option(help: "A ControlNet (single file or diffusers folder) for the controlnet512 and unet512_controlnet rows: a step with CFG and a ControlNet against unet512.")
    var controlnet: String?

    @Option(help: "TAESD (folder or taesd_decoder.safetensors) for the fast512 and taesd_decode512 rows.")
    var taesd: String?

    @Flag(help: "Use the fast mode (Winograd F(4x4,3x3) convolutions, bfloat16 GEMMs with AVX-512 BF16).")
    var fast = false

    @Option(help: "F16/BF16 weights: float32 (widened at load) or as-stored (16-bit in memory).")
    var weights = "float32"

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    struct Row: Encodable {
        let name: String
        let seconds: Double
        let gflop: Double
        /// The machine's peak FMA rate (GFLOP/s), for the share of it this row reaches.
        let peak: Double
        var gflops: Double { seconds > 0 ? gflop / seconds : 0 }
        var fractionOfPeak: Double { peak > 0 ? gflops / peak : 0 }

        enum CodingKeys: String, CodingKey { case name, seconds, gflop, gflops, fractionOfPeak = "fraction_of_peak" }
        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(name, forKey: .name)
            try c.encode(seconds, forKey: .seconds)
            try c.encode(gflop, forKey: .gflop)
            try c.encode(gflops, forKey: .gflops)
            try c.encode(fractionOfPeak, forKey: .fractionOfPeak)
        }
    }

    func run() throws {
        let settings = Engine.withMeasuredKernels(try Engine.computeSettings(threads: threads, fast: fast), quiet: true)
        try settings.run { try measure(settings) }
    }

    /// The rows, measured with `settings` (bound by `run`).
    private func measure(_ settings: ComputeSettings) throws {
        if !json { print("float32 GEMM: \(settings.float32Kernel.rawValue), chosen by: \(settings.kernelReason)") }
        let wanted = only.map { Set($0.split(separator: ",").map(String.init)) }
        func include(_ name: String) -> Bool { wanted?.contains(name) ?? true }
        var rows: [Row] = []
        let peak = PeakRate.measure()
        if !json { print(String(format: "peak FMA rate (registers only, all threads): %.1f GFLOP/s", peak)) }
        func time(_ name: String, _ body: () throws -> Void) rethrows {
            guard include(name) else { return }
            var best = Double.infinity, flops = 0.0
            var counted = 0
            while counted < max(repeats, 1) {
                let measuredBefore = KernelTuning.measuredShapes
                let start = DispatchTime.now().uptimeNanoseconds
                (_, flops) = try FLOPCounter.measure(body)
                // A repetition that measured kernels for new shapes (first use here) is run again.
                guard KernelTuning.measuredShapes == measuredBefore else { continue }
                best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
                counted += 1
            }
            rows.append(Row(name: name, seconds: best, gflop: flops / 1e9, peak: peak))
            if !json {
                print(String(format: "%-16@ %9.3f s %10.1f GFLOP %8.1f GFLOP/s %5.0f%% of peak", name as NSString, best, flops / 1e9,
                             flops / 1e9 / best, 100 * flops / 1e9 / best / peak))
            }
        }

        var peakMemory = 0
        var checkpoint: Checkpoint!
        var unet: UNet!, vae: AutoencoderKL!, encoder: CLIPTextEncoder!, tokenizer: CLIPTokenizer!
        let loadStart = DispatchTime.now().uptimeNanoseconds
        guard let storage = Checkpoint.WeightStorage(rawValue: weights) else { throw ValidationError("--weights is float32 or as-stored") }
        checkpoint = try Checkpoint(path: model, weights: storage)
        unet = try checkpoint.loadUNet()
        vae = try checkpoint.loadVAE()
        encoder = try checkpoint.loadTextEncoder()
        tokenizer = try checkpoint.loadTokenizer()
        let loadSeconds = Double(DispatchTime.now().uptimeNanoseconds - loadStart) / 1e9
        if include("load") {
            rows.append(Row(name: "load", seconds: loadSeconds, gflop: 0, peak: peak))
            if !json { print(String(format: "%-16@ %9.3f s", "load" as NSString, loadSeconds)) }
        }

        if checkpoint.isSDXL {
            try measureSDXL(checkpoint, unet: unet, vae: vae, tokenizer: tokenizer, time: time)
            peakMemory = BenchModel.peakResidentBytes()
            try report(rows, peakMemory: peakMemory, peak: peak, settings: settings)
            return
        }
        let ids = [tokenizer.encode("a photo of an astronaut riding a horse on mars").ids, tokenizer.encode("").ids]
        try time("txt2img512") {
            let context = encoder.encode(ids)
            let denoiser = GuidedDenoiser(unet: unet, positive: context.slice(0..<1), negative: context.slice(1..<2), guidanceScale: 7.5)
            let generator = TorchGenerator(seed: 42)
            let noise = generator.randn([1, 4, 64, 64])
            let latents = try DenoiseLoop.run(DenoiseRequest(sampler: .eulerAncestral, steps: 20), denoiser: denoiser,
                                              source: nil, noise: noise, stepNoise: generator)
            _ = vae.decode(latents)
        }
        if include("txt2img512") { peakMemory = BenchModel.peakResidentBytes() }
        // The few-step path: 4 LCM steps at guidance 1 (one UNet pass each) and the TAESD decode.
        let tiny = try taesd.map { try TinyAutoencoder(path: $0) }
        if let tiny {
            try time("fast512") {
                let context = encoder.encode([ids[0]])
                let denoiser = GuidedDenoiser(unet: unet, positive: context, negative: context, guidanceScale: 1)
                let generator = TorchGenerator(seed: 42)
                let latents = try DenoiseLoop.run(DenoiseRequest(sampler: .lcm, steps: 4), denoiser: denoiser, source: nil,
                                                  noise: generator.randn([1, 4, 64, 64]), stepNoise: generator)
                _ = tiny.decode(latents)
            }
        }
        time("clip") { _ = encoder.encode(ids) }
        let context = encoder.encode(ids)
        for size in [256, 512] {
            let latents = Tensor(repeating: 0.1, shape: [2, 4, size / 8, size / 8])
            time("unet\(size)") { _ = unet(latents, timesteps: [500, 500], context: context) }
            if size == 512 {  // guidance 1: the conditional pass alone
                time("unet512_cfg1") { _ = unet(latents.slice(0..<1), timesteps: [500], context: context.slice(0..<1)) }
            }
            if size == 512, let controlnet {
                // The ControlNet runs once per UNet call, on the same CFG batch.
                let net = try ControlNetFile(path: controlnet).load(for: unet.config)
                let hint = Tensor(repeating: 0.5, shape: [2, net.config.hintChannels, 512, 512])
                time("controlnet512") { _ = net(latents, timesteps: [500, 500], context: context, hint: hint, scale: 1) }
                time("unet512_controlnet") {
                    let residuals = net(latents, timesteps: [500, 500], context: context, hint: hint, scale: 1)
                    _ = unet(latents, timesteps: [500, 500], context: context, control: residuals)
                }
            }
            let image = Tensor(repeating: 0.2, shape: [1, 3, size, size])
            time("vae_encode\(size)") { _ = vae.encode(image) }
            let z = Tensor(repeating: 0.1, shape: [1, 4, size / 8, size / 8])
            time("vae_decode\(size)") { _ = vae.decode(z) }
            if size == 512, let tiny { time("taesd_decode512") { _ = tiny.decode(z) } }
        }
        try report(rows, peakMemory: peakMemory, peak: peak, settings: settings)
    }

    /// The rows as JSON, or the peak memory line after the table.
    private func report(_ rows: [Row], peakMemory: Int, peak: Double, settings: ComputeSettings) throws {
        if json {
            let object: [String: Any] = [
                "rows": try rows.map { try JSONSerialization.jsonObject(with: JSONEncoder().encode($0)) },
                "peak_rss_bytes": peakMemory, "peak_gflops": peak, "threads": settings.threads, "convolution": settings.convolution.rawValue,
                "gemm": settings.precision.rawValue,
            ]
            print(String(data: try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]), encoding: .utf8)!)
        } else if peakMemory > 0 {
            print(String(format: "peak resident memory: %.2f GB", Double(peakMemory) / 1e9))
        }
    }

    /// SDXL's rows: sdxl_turbo512 (both text encoders, 1 euler_a step at guidance 1 with trailing
    /// timesteps, the VAE decode: SDXL-Turbo's whole run after loading), unet1024 (one step with
    /// CFG, batch 2), unet512, vae_decode1024.
    private func measureSDXL(_ checkpoint: Checkpoint, unet: UNet, vae: AutoencoderKL, tokenizer: CLIPTokenizer,
                             time: (String, () throws -> Void) throws -> Void) throws {
        let encoders = SDXLTextEncoders(first: try checkpoint.loadTextEncoder(), second: try checkpoint.loadTextEncoder2())
        let prompt = try tokenizer.chunks("a cinematic photo of a fox in the snow", weighting: .a1111)
        try time("sdxl_turbo512") {
            let (context, pooled) = encoders.encode(prompt, weighting: .a1111, emptyIDs: tokenizer.encode("").ids)
            let added = AddedConditions(pooled: pooled, timeIds: Tensor(shape: [1, 6], values: AddedConditions.timeIds(height: 512, width: 512)))
            let denoiser = GuidedDenoiser(unet: unet, positive: context, negative: context, guidanceScale: 1, added: (added, added))
            var request = DenoiseRequest(sampler: .eulerAncestral, steps: 1)
            request.spacing = .trailing
            let generator = TorchGenerator(seed: 42)
            let latents = try DenoiseLoop.run(request, denoiser: denoiser, source: nil, noise: generator.randn([1, 4, 64, 64]), stepNoise: generator)
            _ = vae.decode(latents)
        }
        let (context, pooled) = encoders.encode(prompt, weighting: .a1111, emptyIDs: tokenizer.encode("").ids)
        for size in [1024, 512] {
            let latents = Tensor(repeating: 0.1, shape: [2, 4, size / 8, size / 8])
            let added = AddedConditions(pooled: Tensor.concatenate([pooled, pooled], axis: 0),
                                        timeIds: Tensor(shape: [2, 6], values: Array(repeating: AddedConditions.timeIds(height: size, width: size), count: 2).flatMap { $0 }))
            try time("unet\(size)") { _ = unet(latents, timesteps: [500, 500], context: Tensor.concatenate([context, context], axis: 0), added: added) }
        }
        try time("vae_decode1024") { _ = vae.decode(Tensor(repeating: 0.1, shape: [1, 4, 128, 128])) }
    }

    /// VmHWM from /proc/self/status.
    static func peakResidentBytes() -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            let kb = line.split(separator: " ").compactMap { Int($0) }.first ?? 0
            return kb * 1024
        }
        return 0
    }
}
