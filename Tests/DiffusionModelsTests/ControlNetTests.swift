import DiffusionModels
import Foundation
import SafeTensors
import TensorCore
import TestSupport
import Testing

/// ControlNets against diffusers' `ControlNetModel` on tiny random nets
/// (Tests/Fixtures/controlnet, written by tools/reference/fixtures_controlnet.py): the residuals of
/// one call, from every layout users have, and the files that must be refused.
@Suite struct ControlNetTests {
    let reference: SafeTensorsFile

    init() throws {
        reference = try Fixtures.tensors("controlnet-reference.safetensors")
    }

    static let layouts = ["controlnet/tiny-a", "controlnet/tiny-a/diffusion_pytorch_model.safetensors", "controlnet/tiny-a-ldm.safetensors",
                          "controlnet/tiny-a-bare-bf16.safetensors", "controlnet/tiny-a-v10.pth"]

    /// The residuals of one call within 1e-5 (relative to each residual's largest value), plain
    /// and in guess mode, whichever layout the net comes from.
    @Test(arguments: layouts) func residualsMatchDiffusers(layout: String) throws {
        let file = try ControlNetFile(path: Fixtures.path(layout))
        #expect(file.config.hintWidths == [8, 16, 16] && file.config.hintFactor == 4 && !file.config.globalPool)
        #expect(file.config.unet.channelMultipliers == [1, 2, 2] && file.config.unet.attentionLevels == [true, true, false])
        // Single files take their GroupNorm groups and heads from the UNet they go with.
        let net = try file.load(for: try Checkpoint(path: TinyModel.folder).configs.unet)
        let sample = try reference.tensor("residuals.sample"), context = try reference.tensor("residuals.context")
        let hint = try reference.tensor("residuals.hint")
        for (name, guess) in [("residuals", false), ("guess", true)] {
            let result = net(sample, timesteps: [501, 501], context: context, hint: hint, scale: 0.8, guessMode: guess)
            #expect(result.down.count == 9)
            for (i, residual) in result.down.enumerated() {
                if let problem = try parityProblem(reference, "\(name).down.\(i)", residual, tolerance: 1e-5) { Issue.record(Comment(rawValue: "\(layout): \(problem)")) }
            }
            if let problem = try parityProblem(reference, "\(name).mid", result.middle, tolerance: 1e-5) { Issue.record(Comment(rawValue: "\(layout): \(problem)")) }
        }
    }

    /// Files that are not SD 1.x ControlNets are refused, saying what they are.
    @Test func otherModelsAreRefusedByName() throws {
        func message(_ name: String) -> String {
            do { _ = try ControlNetFile(path: Fixtures.path(name)); return "opened" } catch { return "\(error)" }
        }
        #expect(message("controlnet/sd21-like.safetensors").contains("SD 2.x ControlNet"))
        #expect(message("controlnet/t2i-adapter.safetensors").contains("T2I-Adapter"))
        #expect(message("controlnet/sdxl-like.safetensors").contains("SDXL ControlNet"))
        #expect(message("controlnet/control-lora-like.safetensors").contains("Control-LoRA"))
        #expect(message("tiny-sd/unet/diffusion_pytorch_model.safetensors").contains("not a ControlNet"))
        #expect(message("controlnet/missing.safetensors").contains("no such file"))
        // A net for another UNet.
        var other = UNet.Config.sd15
        other.contextDimension = 768
        do {
            _ = try ControlNetFile(path: Fixtures.path("controlnet/tiny-a")).load(for: other)
            Issue.record("a tiny net loaded for SD 1.5's UNet")
        } catch {
            #expect("\(error)".contains("a ControlNet for another UNet"))
        }
    }
}
