import Sampling
import SafeTensors
import TensorCore
import TestSupport
import Testing

/// `TorchGenerator` against `torch.randn(shape, generator=torch.Generator().manual_seed(seed))`
/// (Tests/Fixtures/randn.safetensors, written by tools/reference/fixtures_random.py).
@Suite struct TorchGeneratorTests {
    @Test func matchesTorchRandn() throws {
        let file = try Fixtures.tensors("randn.safetensors")
        let cases = Set(file.names.map { String($0.split(separator: ".")[0]) })
        #expect(cases.count == 7)
        var worst: Float = 0, equal = 0, total = 0
        for name in cases.sorted() {
            let generator = TorchGenerator(seed: UInt64(file.metadata[name]!)!)
            var i = 0
            while let expected = try? file.tensor("\(name).\(i)") {
                let actual = generator.randn(expected.shape)
                #expect(actual.shape == expected.shape)
                let error = actual.maxAbsDifference(expected)
                #expect(error <= 1e-6, "\(name).\(i): max-abs error \(error)")
                worst = max(worst, error)
                equal += zip(actual.scalars, expected.scalars).filter { $0 == $1 }.count
                total += expected.count
                i += 1
            }
        }
        print("randn: max-abs error \(worst); \(equal) of \(total) values bit-equal")
    }
}
