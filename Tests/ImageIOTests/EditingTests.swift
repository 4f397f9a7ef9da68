import Foundation
import ImageIO
import SafeTensors
import TensorCore
import TestSupport
import Testing

/// Resizing against Pillow, and the geometry and mask edits.
@Suite struct EditingTests {
    @Test(arguments: ResampleFilter.allCases)
    func resizeMatchesPillow(filter: ResampleFilter) throws {
        let expected = try Fixtures.tensors("images-expected.safetensors")
        let source = Image(pixels: try expected.tensor("resize.source"))
        for (w, h) in [(64, 40), (16, 11), (37, 12), (50, 23), (9, 5)] {
            let reference = try expected.tensor("resize.\(filter.rawValue).\(w)x\(h)")
            let ours = source.resized(width: w, height: h, filter: filter)
            // Compare as the 8-bit values both would save.
            let quantised = ours.pixels.map { (($0 * 255).rounded()) / 255 }
            let levels = quantised.maxAbsDifference(reference) * 255
            #expect(levels <= 1.001, "\(filter) \(w)x\(h): \(levels) levels from Pillow")
        }
    }

    @Test func resizeModes() {
        let image = Image(width: 40, height: 20, channels: 3, value: 0.5)
        let fit = image.resized(toWidth: 16, height: 16, mode: .fit)
        #expect(fit.width == 16 && fit.height == 8)
        let fill = image.resized(toWidth: 16, height: 16, mode: .fill)
        #expect(fill.width == 16 && fill.height == 16)
        #expect(fill.pixels.maxAbsDifference(Tensor(repeating: 0.5, shape: [3, 16, 16])) < 1e-5)
        #expect(image.resized(toWidth: 10, height: 30, mode: .exact).height == 30)
        let odd = Image(width: 515, height: 301, channels: 3)
        for mode in Image.MultipleFit.allCases {
            let fitted = odd.fittedToMultiple(of: 8, mode: mode)
            #expect(fitted.width % 8 == 0 && fitted.height % 8 == 0, "\(mode)")
        }
        #expect(odd.fittedToMultiple(of: 8, mode: .crop).width == 512)
        #expect(odd.fittedToMultiple(of: 8, mode: .pad).height == 304)
    }

    @Test func cropPadAndOrientation() {
        let values = (0..<12).map(Float.init)
        let image = Image(pixels: Tensor(shape: [1, 3, 4], values: values.map { $0 / 11 }))
        let crop = image.cropped(PixelRect(x: 1, y: 1, width: 2, height: 3))
        #expect(crop.pixels.scalars.map { ($0 * 11).rounded() } == [5, 6, 9, 10, 0, 0])  // below the image: 0
        let reflect = image.padded(top: 0, bottom: 0, left: 2, right: 1, mode: .reflect)
        #expect(reflect.pixels.scalars.prefix(7).map { ($0 * 11).rounded() } == [2, 1, 0, 1, 2, 3, 2])
        let edge = image.padded(top: 1, bottom: 0, left: 1, right: 0, mode: .edge)
        #expect(edge.pixels.scalars.prefix(5).map { ($0 * 11).rounded() } == [0, 0, 1, 2, 3])
        let constant = image.padded(top: 0, bottom: 1, left: 0, right: 0, mode: .constant(1))
        #expect(constant.pixels.scalars.suffix(4) == [1, 1, 1, 1])
        // EXIF 6 is a clockwise quarter turn: the top-left pixel moves to the top-right.
        let turned = image.oriented(exif: 6)
        #expect(turned.width == 3 && turned.height == 4)
        #expect((turned.pixels[0, 0, 2] * 11).rounded() == 0 && (turned.pixels[0, 0, 0] * 11).rounded() == 8)
        for o in 1...8 {
            let back = image.oriented(exif: o)
            #expect(back.width * back.height == 12)
        }
    }

    @Test func maskOperations() {
        var mask = Image(width: 9, height: 7, channels: 1)
        let p = mask.pixels.mutablePointer()
        p[3 * 9 + 4] = 1  // one pixel in the middle
        #expect(mask.boundingBox() == PixelRect(x: 4, y: 3, width: 1, height: 1))
        let grown = mask.grown(by: 2)
        #expect(grown.boundingBox() == PixelRect(x: 2, y: 1, width: 5, height: 5))
        #expect(grown.grown(by: -2).boundingBox() == PixelRect(x: 4, y: 3, width: 1, height: 1))
        #expect(mask.inverted().pixels.scalars.filter { $0 == 0 }.count == 1)
        let blurred = grown.blurred(sigma: 1.5)
        #expect(blurred.pixels[0, 3, 4] < 1 && blurred.pixels[0, 3, 0] > 0)
        let centred = grown.padded(top: 8, bottom: 8, left: 8, right: 8, mode: .constant(0)).blurred(sigma: 1.5)
        #expect(abs(centred.pixels.scalars.reduce(0, +) - 25) < 1e-3)  // away from the edges blurring keeps the mass
        #expect(blurred.thresholded(0.5).pixels.scalars.allSatisfy { $0 == 0 || $0 == 1 })
        #expect(Image(width: 3, height: 3, channels: 1).boundingBox() == nil)
        let rgba = Image(pixels: Tensor(repeating: 0.25, shape: [4, 2, 2]))
        #expect(rgba.mask(fromAlpha: true).pixels.scalars == [0.25, 0.25, 0.25, 0.25])
    }

    @Test func onlyMaskedCropAndPasteBackKeepOutsidePixels() throws {
        let photo = try ImageFile.read(Fixtures.path("images/rgb8.png")).resized(width: 120, height: 80, filter: .bilinear)
        var mask = Image(width: 120, height: 80, channels: 1)
        let m = mask.pixels.mutablePointer()
        for y in 30..<40 { for x in 50..<70 { m[y * 120 + x] = 1 } }
        let crop = try #require(MaskCrop(mask: mask, padding: 8, targetWidth: 64, targetHeight: 64))
        #expect(crop.region.width == crop.region.height)  // the target's aspect ratio
        #expect(crop.region.x <= 42 && crop.region.x + crop.region.width >= 78)
        let cut = crop.cut(photo, width: 64, height: 64)
        #expect(cut.width == 64 && cut.height == 64)
        let edited = Image(width: 64, height: 64, channels: 3, value: 1)  // "inpainted" white
        let feathered = mask.blurred(sigma: 2)
        let result = crop.pasteBack(edited, into: photo, mask: feathered)
        let (r, o, f) = (result.pixels.pointer, photo.pixels.pointer, feathered.pixels.pointer)
        var changedOutside = 0
        for i in 0..<(120 * 80) where f[i] == 0 {
            for c in 0..<3 where r[c * 9600 + i] != o[c * 9600 + i] { changedOutside += 1 }
        }
        #expect(changedOutside == 0)
        #expect(result.pixels[0, 35, 60] > 0.99)
    }

    @Test func compositeAndTensors() {
        let white = Image(width: 2, height: 1, channels: 3, value: 1), black = Image(width: 2, height: 1, channels: 3)
        let mask = Image(pixels: Tensor(shape: [1, 1, 2], values: [1, 0.25]))
        let mixed = white.composited(over: black, mask: mask)
        #expect(mixed.pixels.scalars == [1, 0.25, 1, 0.25, 1, 0.25])
        let t = mixed.tensor()
        #expect(t.shape == [1, 3, 1, 2] && t.scalars.first == 1 && t.scalars[1] == -0.5)
        #expect(Image(modelOutput: t).pixels.maxAbsDifference(mixed.pixels) < 1e-6)
        #expect(Image(modelOutput: Tensor(shape: [1, 1, 1, 2], values: [-3, 3])).pixels.scalars == [0, 1])
    }
}
