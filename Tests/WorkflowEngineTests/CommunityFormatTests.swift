import Foundation
import SafeTensors
import TensorCore
import TestSupport
import Testing
import WorkflowEngine

/// load_lora and clip_encode's embeddings in workflows on the tiny model: the conditioning equals
/// diffusers' (lora-reference.safetensors, embeddings-reference.safetensors), and the LoRA's file,
/// its strengths and the embeddings folder's files are part of every downstream cache key.
@Suite struct CommunityFormatTests {
    let folder = TemporaryFolder()

    static let workflow = """
        version: 1
        parameters:
          lora: lora.safetensors
          strength: 1
          second_strength: 0
          prompt: a red circle on a white background
          embeddings: embeddings
        nodes:
          model: {type: load_checkpoint, path: \(TinyModel.folder)}
          styled: {type: load_lora, unet: !ref model.unet, clip: !ref model.clip, path: !param lora,
                   strength_model: !param strength, strength_clip: !param strength}
          twice: {type: load_lora, unet: !ref styled.unet, clip: !ref styled.clip, path: !param lora,
                  strength_model: !param second_strength, strength_clip: !param second_strength}
          positive: {type: clip_encode, clip: !ref twice.clip, text: !param prompt, embeddings: !param embeddings}
          negative: {type: clip_encode, clip: !ref twice.clip, text: ""}
          blank: {type: empty_latent, vae: !ref model.vae, width: 64, height: 64}
          generated: {type: denoise, unet: !ref twice.unet, positive: !ref positive, negative: !ref negative,
                      latent: !ref blank, sampler: euler, steps: 2, cfg: 7.5, seed: 1}
          save_cond: {type: save_tensor, tensor: !ref positive, path: cond.safetensors}
          save_latent: {type: save_tensor, tensor: !ref generated, path: latent.safetensors}
        """

    init() throws {
        let manager = FileManager.default
        try manager.copyItem(atPath: Fixtures.path("lora/kohya.safetensors"), toPath: folder.file("lora.safetensors"))
        try manager.copyItem(atPath: Fixtures.path("embeddings"), toPath: folder.file("embeddings"))
    }

    func run(_ overrides: [String: String] = [:], cache: ResultCache?) throws -> RunReport {
        let graph = try Graph(workflow: Workflow.parse(Self.workflow, path: folder.file("lora.yaml")), registry: TestEngine.registry(),
                              overrides: overrides, currentDirectory: folder.path)
        let report = Executor(graph: graph, options: Executor.Options(cache: cache)).run()
        #expect(report.succeeded, "\(report.nodes.flatMap(\.errors))")
        return report
    }

    func status(_ report: RunReport, _ node: String) -> NodeReport.Status? { report.nodes.first { $0.name == node }?.status }

    func saved(_ name: String) throws -> Tensor { try SafeTensorsFile(path: folder.file(name)).tensor("tensor") }

    @Test func chainedLoRAsMatchDiffusers() throws {
        let reference = try Fixtures.tensors("lora-reference.safetensors")
        _ = try run(cache: nil)
        let expected = try reference.tensor("cond.1.0")
        #expect(try saved("cond.safetensors").maxAbsDifference(expected) <= 1e-5 * expected.maxMagnitude)
        // The same LoRA at 0.5 twice is the LoRA at 1.
        _ = try run(["strength": "0.5", "second_strength": "0.5"], cache: nil)
        #expect(try saved("cond.safetensors").maxAbsDifference(expected) <= 1e-5 * expected.maxMagnitude)
    }

    @Test func embeddingsInAWorkflowMatchDiffusers() throws {
        let reference = try Fixtures.tensors("embeddings-reference.safetensors")
        _ = try run(["strength": "0", "prompt": "a photo of embedding:wobbly-style, in the snow"], cache: nil)
        let expected = try reference.tensor("cond.0")
        #expect(try saved("cond.safetensors").maxAbsDifference(expected) <= 1e-5 * expected.maxMagnitude)
    }

    @Test func loraFileStrengthAndEmbeddingsAreInTheKeys() throws {
        let cache = try ResultCache(folder: folder.file("cache"))
        _ = try run(cache: cache)
        let first = try saved("latent.safetensors")
        let warm = try run(cache: cache)
        for node in ["positive", "negative", "generated"] { #expect(status(warm, node) == .diskHit, "\(node)") }

        let stronger = try run(["second_strength": "0.25"], cache: cache)
        for node in ["positive", "negative", "generated"] { #expect(status(stronger, node) == .ran, "\(node) after a strength change") }

        // Another LoRA under the same file name.
        try FileManager.default.removeItem(atPath: folder.file("lora.safetensors"))
        try FileManager.default.copyItem(atPath: Fixtures.path("lora/peft-no-alpha.safetensors"), toPath: folder.file("lora.safetensors"))
        let replaced = try run(cache: cache)
        for node in ["positive", "negative", "generated"] { #expect(status(replaced, node) == .ran, "\(node) after the file changed") }
        #expect(try saved("latent.safetensors").maxAbsDifference(first) > 1e-3)

        // An embedding file changes: the prompt that may use it is encoded again.
        try SafeTensorsWriter.write(["emb_params": Tensor(shape: [1, 16], values: Array(repeating: 0.1, count: 16))],
                                    to: folder.file("embeddings/extra.safetensors"))
        let newEmbedding = try run(cache: cache)
        #expect(status(newEmbedding, "positive") == .ran)
        #expect(status(newEmbedding, "negative") == .diskHit)
    }

    @Test func badLoRAIsAnErrorNamingNodeAndFile() throws {
        try FileManager.default.copyItem(atPath: Fixtures.path("lora/sdxl.safetensors"), toPath: folder.file("sdxl.safetensors"))
        let graph = try Graph(workflow: Workflow.parse(Self.workflow, path: folder.file("lora.yaml")), registry: TestEngine.registry(),
                              overrides: ["lora": "sdxl.safetensors"], currentDirectory: folder.path)
        let report = Executor(graph: graph, options: Executor.Options(cache: nil)).run()
        #expect(!report.succeeded)
        let errors = report.nodes.first { $0.name == "styled" }?.errors.joined() ?? ""
        #expect(errors.contains("sdxl.safetensors") && errors.contains("SDXL"), "\(errors)")
    }
}
