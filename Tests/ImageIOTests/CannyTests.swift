import Foundation
import ImageIO
import TensorCore
import TestSupport
import Testing

/// Canny edges against OpenCV's `cv2.Canny` on the RGB arrays of five photo-like images at three
/// threshold pairs (Tests/Fixtures/canny, written by tools/reference/fixtures_canny.py): equal
/// pixel for pixel.
@Suite struct CannyTests {
    @Test(arguments: 0..<5) func edgesEqualOpenCV(photo: Int) throws {
        let image = try ImageFile.read(Fixtures.path("canny/photo\(photo).png"))
        for (low, high) in [(100.0, 200.0), (50, 150), (200, 100)] {
            let expected = try ImageFile.read(Fixtures.path("canny/photo\(photo)-\(Int(low))-\(Int(high)).png"))
            let edges = image.cannyEdges(low: low, high: high)
            #expect(edges.width == image.width && edges.height == image.height && edges.channels == 1)
            let wrong = zip(edges.pixels.scalars, expected.pixels.scalars).filter { $0 != $1 }.count
            let count = expected.pixels.scalars.filter { $0 > 0 }.count
            #expect(wrong == 0, "photo\(photo) at (\(low), \(high)): \(wrong) pixels differ from OpenCV's (\(count) edge pixels)")
            #expect(count > 0)
        }
    }
}
