import Foundation
import ImageIO
import SafeTensors
import TensorCore
import TestSupport
import Testing

/// Decoding every PNG and JPEG variant against the pixels pypng/Pillow read
/// (Tests/Fixtures/images, written by tools/reference/fixtures_images.py).
@Suite struct CodecTests {
    let expected: SafeTensorsFile

    init() throws { expected = try Fixtures.tensors("images-expected.safetensors") }

    static let pngs = ["gray1", "gray2", "gray4", "gray4-interlaced", "gray8", "gray16", "graya8", "graya16", "rgb8",
                       "rgb8-interlaced", "rgb16", "rgba8", "rgba16", "rgba16-interlaced", "palette2", "palette4", "palette8",
                       "text"].map { $0 + ".png" }
    static let jpegs = ["baseline", "progressive", "gray", "cmyk", "ycck", "exif3", "exif6", "exif8"].map { $0 + ".jpg" }

    @Test(arguments: pngs)
    func decodesPNG(file: String) throws {
        let image = try ImageFile.read(Fixtures.path("images/" + file))
        let reference = try expected.tensor(file)
        #expect(image.pixels.shape == reference.shape)
        #expect(image.pixels.maxAbsDifference(reference) <= 1e-6, "\(file)")
        #expect(image.bitDepth == (file.contains("16") ? 16 : 8))
    }

    @Test(arguments: jpegs)
    func decodesJPEG(file: String) throws {
        let image = try ImageFile.read(Fixtures.path("images/" + file))
        let reference = try expected.tensor(file)
        #expect(image.pixels.shape == reference.shape, "\(file): \(image.pixels.shape) vs \(reference.shape)")
        guard image.pixels.shape == reference.shape else { return }
        let error = image.pixels.maxAbsDifference(reference) * 255
        print("jpeg \(file): max difference from Pillow \(error) levels")
        #expect(error <= 1.01, "\(file): \(error) levels from Pillow")
    }

    @Test func readsTextChunks() throws {
        let image = try ImageFile.read(Fixtures.path("images/text.png"))
        #expect(image.metadata["parameters"] == "a red circle\nSteps: 20, Seed: 42")
        #expect(image.metadata["sdflow:workflow"] == "prompt: café ☕")
    }

    @Test func pngRoundTrips() throws {
        let folder = TemporaryFolder()
        for channels in 1...4 {
            for depth in [8, 16] {
                let levels = Float(depth == 8 ? 255 : 65535)
                let values = (0..<(channels * 5 * 7)).map { Float(($0 * 7919) % Int(levels + 1)) / levels }
                var image = Image(pixels: Tensor(shape: [channels, 5, 7], values: values))
                image.bitDepth = depth
                let path = folder.file("rt-\(channels)-\(depth).png")
                try ImageFile.write(image, to: path, text: [("sdflow:workflow", "steps: 20 ✓"), ("parameters", "plain")])
                let back = try ImageFile.read(path)
                #expect(back.pixels.maxAbsDifference(image.pixels) <= 1e-6)
                #expect(back.bitDepth == depth)
                #expect(back.metadata == ["sdflow:workflow": "steps: 20 ✓", "parameters": "plain"])
            }
        }
    }

    @Test func jpegRoundTripIsClose() throws {
        let source = try ImageFile.read(Fixtures.path("images/baseline.jpg"))
        let data = try ImageFile.encodeJPEG(source, quality: 100)
        let back = try ImageFile.decode(data, name: "memory.jpg")
        #expect(back.channels == 3 && back.width == source.width)
        let mean = zip(back.pixels.scalars, source.pixels.scalars).map { abs($0 - $1) }.reduce(0, +) / Float(source.pixels.count)
        #expect(mean < 0.05)  // 4:2:0 chroma subsampling loses a little colour detail
    }
}

/// A photo's ICC colour profile and EXIF carried from the file read to the files written
/// (Tests/Fixtures/images/profile*, written by tools/reference/fixtures_profiles.py with Pillow).
@Suite struct EmbeddedMetadataTests {
    let folder = TemporaryFolder()
    let icc = try! Data(contentsOf: URL(fileURLWithPath: Fixtures.path("images/profile.icc")))

    /// The EXIF orientation (tag 0x0112) and the camera model (0x0110) in EXIF data, by a plain scan.
    func orientationAndModel(_ exif: Data?) -> (Int?, Bool) {
        guard let t = exif.map(Array.init), t.count > 8 else { return (nil, false) }
        let little = t[0] == 0x49
        func u16(_ i: Int) -> Int { little ? Int(t[i]) | Int(t[i + 1]) << 8 : Int(t[i]) << 8 | Int(t[i + 1]) }
        let ifd = little ? u16(4) | u16(6) << 16 : u16(6) | u16(4) << 16
        var orientation: Int?
        var model = false
        for k in 0..<u16(ifd) {
            let entry = ifd + 2 + 12 * k
            if u16(entry) == 0x0112 { orientation = u16(entry + 8) }
            if u16(entry) == 0x0110 { model = true }
        }
        return (orientation, model && String(decoding: t, as: UTF8.self).contains("sdflow test"))
    }

    /// A phone-style JPEG (orientation 6): turned upright when read, its profile and EXIF (orientation
    /// now 1, the rest kept) written into the JPEG and the PNG made from it.
    @Test func jpegProfileAndExifCarryOver() throws {
        let photo = try ImageFile.read(Fixtures.path("images/profile.jpg"))
        #expect(photo.width == 11 && photo.height == 17)  // stored 17x11, rotated 90 degrees
        #expect(photo.embedded.iccProfile == icc)
        #expect(orientationAndModel(photo.embedded.exif) == (1, true))
        for ext in ["jpg", "png"] {
            let path = folder.file("out." + ext)
            try ImageFile.write(photo, to: path, quality: 90)
            let back = try ImageFile.read(path)
            #expect(back.embedded == photo.embedded, "\(ext)")
            #expect(back.width == 11 && back.height == 17, "\(ext): not rotated again")
        }
        // What an edit makes keeps them; a new image has none.
        #expect(photo.resized(toWidth: 5, height: 8, mode: .exact, filter: .lanczos).embedded == photo.embedded)
        #expect(Image(width: 4, height: 4, channels: 3).embedded.isEmpty)
    }

    /// A 16-bit PNG with iCCP and eXIf round-trips exactly: every sample, the profile and the EXIF.
    @Test func sixteenBitPNGWithProfileRoundTrips() throws {
        let image = try ImageFile.read(Fixtures.path("images/profile16.png"))
        #expect(image.bitDepth == 16 && image.channels == 3)
        #expect(image.embedded.iccProfile == icc && orientationAndModel(image.embedded.exif) == (1, true))
        let path = folder.file("deep.png")
        try ImageFile.write(image, to: path)
        let back = try ImageFile.read(path)
        #expect(back.bitDepth == 16 && back.pixels.maxAbsDifference(image.pixels) == 0 && back.embedded == image.embedded)
        // Samples that 8 bits cannot hold survive (the fixture adds x to each 8-bit level x 257).
        #expect(image.pixels.scalars.contains { ($0 * 65535).rounded().truncatingRemainder(dividingBy: 257) != 0 })
    }
}

/// Bad files: each gives an error that names the file; none crashes.
@Suite struct BadImageFileTests {
    let folder = TemporaryFolder()

    func failure(_ data: Data, name: String) -> String? {
        let path = folder.file(name)
        _ = FileManager.default.createFile(atPath: path, contents: data)
        do {
            _ = try ImageFile.read(path)
            return nil
        } catch let e as ImageFile.Error {
            #expect(e.path == path)
            #expect(e.description.hasPrefix(path))
            return e.reason
        } catch {
            Issue.record("unexpected error type \(error)")
            return nil
        }
    }

    func fixture(_ name: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("images/" + name))) }

    @Test func emptyMissingAndFolder() throws {
        #expect(failure(Data(), name: "empty.png")?.contains("empty") == true)
        #expect(throws: ImageFile.Error.self) { try ImageFile.read(folder.file("nope.png")) }
        #expect(throws: ImageFile.Error.self) { try ImageFile.read(folder.path) }
    }

    @Test func truncatedFiles() throws {
        for name in ["rgb8.png", "rgba16-interlaced.png", "baseline.jpg", "progressive.jpg"] {
            let data = try fixture(name)
            for cut in [data.count / 3, data.count / 2, data.count - 20] {
                let reason = failure(data.prefix(cut), name: "cut-\(cut)-" + name)
                #expect(reason != nil, "\(name) cut at \(cut) was accepted")
                if name.hasSuffix(".jpg") { #expect(reason?.contains("truncated JPEG") == true, "\(reason ?? "")") }
            }
        }
        #expect(failure(try fixture("rgb8.png").prefix(12), name: "header-only.png") != nil)
        #expect(failure(try fixture("baseline.jpg").prefix(40), name: "header-only.jpg") != nil)
    }

    @Test func garbageAndFlippedBytes() throws {
        var random = SystemRandomNumberGenerator()
        #expect(failure(Data((0..<500).map { _ in UInt8.random(in: 0...255, using: &random) }), name: "noise.png")?
                    .contains("not a PNG or JPEG") == true)
        #expect(failure(Data("GIF89a....".utf8), name: "really.gif.png")?.contains("not a PNG or JPEG") == true)
        var png = try fixture("rgb8.png")
        // Corrupt the compressed image data (after the 33-byte signature + IHDR).
        for i in stride(from: 45, to: png.count - 20, by: 3) { png[i] ^= 0x5A }
        #expect(failure(png, name: "flipped.png") != nil)
        var jpeg = try fixture("baseline.jpg")
        for i in 2..<Swift.min(jpeg.count, 200) where i % 2 == 0 { jpeg[i] = 0xFF }
        #expect(failure(jpeg, name: "flipped.jpg") != nil, "a JPEG with its headers overwritten was accepted")
    }

    /// Fuzzing found PNGs of ~160 bytes whose text chunk claims 1.7-1.9 GB: libpng allocated that
    /// much before finding the file too short. Chunk lengths are now checked against the file first.
    @Test func chunksLongerThanTheFileAreRefusedBeforeAllocating() throws {
        for name in ["png-chunk-claims-1.9GB.png", "png-chunk-claims-1.7GB.png"] {
            let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("fuzz/" + name)))
            let reason = failure(data, name: name)
            #expect(reason?.contains("claims") == true && reason?.contains("remain") == true, "\(name): \(reason ?? "accepted")")
        }
    }

    @Test func decompressionBombsAreRefused() throws {
        for name in ["bomb.png", "bomb.jpg"] {
            let reason = failure(try fixture(name), name: name)
            #expect(reason?.contains("over the limit") == true, "\(name): \(reason ?? "accepted")")
        }
        #expect(throws: ImageFile.Error.self) {
            try ImageFile.read(Fixtures.path("images/rgb8.png"), maximumPixels: 100)
        }
    }

    @Test func mislabelledFilesLoadByContent() throws {
        let reason = failure(Data(), name: "placeholder.png")
        #expect(reason != nil)
        let path = folder.file("actually-a-jpeg.png")
        _ = FileManager.default.createFile(atPath: path, contents: try fixture("baseline.jpg"))
        let image = try ImageFile.read(path)
        #expect(image.width == 40 && image.height == 24)
    }

    @Test func unknownExtensionOnWrite() {
        let image = Image(width: 2, height: 2, channels: 3)
        #expect(throws: ImageFile.Error.self) { try ImageFile.write(image, to: folder.file("out.bmp")) }
        #expect(!FileManager.default.fileExists(atPath: folder.file("out.bmp")))
    }
}
