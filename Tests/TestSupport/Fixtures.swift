import Foundation
import SafeTensors
import TensorCore

/// Access to the committed reference fixtures under `Tests/Fixtures` (written by the
/// `tools/reference/fixtures_*.py` scripts; docs/testing.md lists them).
public enum Fixtures {
    /// The `Tests/Fixtures` folder of this checkout.
    public static let folder: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")

    /// The path of a fixture file or folder.
    public static func path(_ name: String) -> String { folder.appendingPathComponent(name).path }

    /// Opens a fixture safetensors file.
    public static func tensors(_ name: String) throws -> SafeTensorsFile {
        try SafeTensorsFile(path: path(name))
    }
}

/// A fresh temporary folder, removed when the value is deinitialised.
public final class TemporaryFolder {
    public let path: String

    public init() {
        path = NSTemporaryDirectory() + "sdflow-test-" + UUID().uuidString
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    /// A path inside the folder.
    public func file(_ name: String) -> String { path + "/" + name }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// Records the max-abs error of a comparison so that test logs show the parity figures.
public func parityReport(_ label: String, actual: Tensor, expected: Tensor) -> (error: Float, scale: Float) {
    let error = actual.maxAbsDifference(expected)
    let scale = expected.maxMagnitude
    print("parity \(label): max-abs error \(error) (reference max \(scale), relative \(error / Swift.max(scale, 1e-30)))")
    return (error, scale)
}

/// Compares `actual` with the reference tensor `key` of `file`: the same shape, and a max-abs
/// error within `tolerance` x the reference's largest magnitude (the figures are printed).
/// Returns what is wrong, or nil.
public func parityProblem(_ file: SafeTensorsFile, _ key: String, _ actual: Tensor, tolerance: Float = 1e-4) throws -> String? {
    let expected = try file.tensor(key)
    guard actual.shape == expected.shape else { return "\(key): shape \(actual.shape), the reference's \(expected.shape)" }
    let (error, scale) = parityReport(key, actual: actual, expected: expected)
    return error <= tolerance * scale ? nil : "\(key): max-abs error \(error), reference max \(scale)"
}
