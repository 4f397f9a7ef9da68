import Foundation
import SafeTensors
import TensorCore
import TestSupport
import Testing

/// `Tensor.resized` against `F.interpolate` (Tests/Fixtures/resample.safetensors, written by
/// tools/reference/fixtures_resample.py): up, down, mixed and to 1x1, in every mode, within 1e-5 of the
/// largest value (PyTorch weighs the 2x2 or 4x4 taps in another order).
@Suite struct ResampleTests {
    @Test func resizingMatchesPyTorch() throws {
        let file = try Fixtures.tensors("resample.safetensors")
        let input = try file.tensor("input")
        for mode in Tensor.Interpolation.allCases {
            for (h, w) in [(20, 26), (26, 34), (9, 11), (13, 40), (1, 1)] {
                let problem = try parityProblem(file, "\(mode.rawValue).\(h)x\(w)", input.resized(height: h, width: w, interpolation: mode), tolerance: 1e-5)
                #expect(problem == nil, "\(problem ?? "")")
            }
        }
    }
}
