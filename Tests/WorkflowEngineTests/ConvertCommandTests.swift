import Foundation
import SafeTensors
import TestSupport
import Testing

/// `sdflow convert`: pickled PyTorch files written as safetensors, run as a user runs it.
@Suite struct ConvertCommandTests {
    let folder = TemporaryFolder()

    @Test func convertsRefusesAndKeepsExistingFiles() throws {
        let output = folder.file("esrgan.safetensors")
        let converted = try TestEngine.run(["convert", Fixtures.path("upscalers/esrgan-x4-old.pth"), output], in: folder.path)
        #expect(converted.status == 0, "\(converted.errors)")
        #expect(converted.output.contains("tensors") && converted.output.contains(output))
        // The same tensors as the pickle, now memory-mapped.
        let (written, pickled) = (try SafeTensorsFile(path: output), try SafeTensorsFile.weights(path: Fixtures.path("upscalers/esrgan-x4-old.pth")))
        #expect(written.names == pickled.names && !written.names.isEmpty)
        #expect(try written.tensor("model.0.weight").maxAbsDifference(try pickled.tensor("model.0.weight")) == 0)
        // An existing output is kept unless asked.
        let again = try TestEngine.run(["convert", Fixtures.path("upscalers/esrgan-x4-old.pth"), output], in: folder.path)
        #expect(again.status != 0 && again.errors.contains("--overwrite"))
        // A malicious pickle is refused, and nothing is written.
        let bad = folder.file("bad.safetensors")
        let refused = try TestEngine.run(["convert", Fixtures.path("pickle/malicious-os-system-zip.pth"), bad], in: folder.path)
        #expect(refused.status != 0 && refused.errors.contains("refused") && refused.errors.contains("os.system"), "\(refused.errors)")
        #expect(!FileManager.default.fileExists(atPath: bad) && !FileManager.default.fileExists(atPath: "/tmp/sdflow-pwned"))
    }
}
