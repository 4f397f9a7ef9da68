import CImageCodecs
import Foundation
import TensorCore

/// Reading and writing PNG and JPEG files.
///
/// The format is recognised by the file's signature, not its extension, so a mislabelled file
/// still loads (and a file that is neither gets a clear error). Every failure names the file.
public enum ImageFile {
    /// The largest image decoded, in pixels (Pillow's limit): larger files are refused before
    /// anything is allocated, as decompression bombs. The same limit holds for writing, and for
    /// the image nodes that make larger images, so sdflow never writes an image it cannot read.
    public static let defaultMaximumPixels = 178_956_970

    /// Why a `width` x `height` image is too large to make or write, or nil.
    public static func sizeProblem(width: Int, height: Int) -> String? {
        let (pixels, overflow) = width.multipliedReportingOverflow(by: height)
        guard overflow || pixels > defaultMaximumPixels else { return nil }
        return "\(width)x\(height) is more than the \(defaultMaximumPixels) pixels sdflow reads (and so writes)"
    }

    /// The supported file formats.
    public enum Format: String, Sendable {
        case png, jpeg

        /// The format a path's extension names, or nil.
        public init?(pathExtension: String) {
            switch pathExtension.lowercased() {
            case "png": self = .png
            case "jpg", "jpeg": self = .jpeg
            default: return nil
            }
        }
    }

    /// Errors reading or writing images.
    public struct Error: Swift.Error, CustomStringConvertible, Equatable {
        public let path: String
        public let reason: String
        public var description: String { "\(path): \(reason)" }
    }

    // MARK: - Reading

    /// Reads and decodes an image file; JPEG EXIF orientation is applied; the ICC profile and EXIF are kept in `embedded`.
    public static func read(_ path: String, maximumPixels: Int = defaultMaximumPixels) throws -> Image {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
            throw Error(path: path, reason: "no such file")
        }
        guard !isFolder.boolValue, let data = FileManager.default.contents(atPath: path) else {
            throw Error(path: path, reason: isFolder.boolValue ? "is a folder, not an image" : "cannot read the file")
        }
        return try decode(data, name: path, maximumPixels: maximumPixels)
    }

    /// The format of encoded image bytes, from their signature.
    public static func format(of data: Data) -> Format? {
        if data.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return .png }
        if data.starts(with: [0xFF, 0xD8, 0xFF]) { return .jpeg }
        return nil
    }

    /// Decodes PNG or JPEG bytes; `name` is used in errors.
    public static func decode(_ data: Data, name: String, maximumPixels: Int = defaultMaximumPixels) throws -> Image {
        guard !data.isEmpty else { throw Error(path: name, reason: "the file is empty (0 bytes)") }
        guard let format = format(of: data) else {
            throw Error(path: name, reason: "not a PNG or JPEG image (unrecognised signature)")
        }
        var decoded = sdf_image()
        var message = [CChar](repeating: 0, count: Int(SDF_ERROR_SIZE))
        let status = data.withUnsafeBytes { bytes -> Int32 in
            let base = bytes.bindMemory(to: UInt8.self).baseAddress!
            switch format {
            case .png: return sdf_png_decode(base, bytes.count, UInt64(maximumPixels), &decoded, &message)
            case .jpeg: return sdf_jpeg_decode(base, bytes.count, UInt64(maximumPixels), &decoded, &message)
            }
        }
        defer { sdf_image_free(&decoded) }
        guard status == 0 else {
            throw Error(path: name, reason: "corrupt or unsupported \(format == .png ? "PNG" : "JPEG"): \(messageText(message))")
        }
        var image = planarImage(decoded)
        image.metadata = texts(decoded)
        if let icc = decoded.icc, decoded.icc_size > 0 { image.embedded.iccProfile = Data(bytes: icc, count: decoded.icc_size) }
        if let exif = decoded.exif, decoded.exif_size > 0 { image.embedded.exif = ExifText.uprighted(Data(bytes: exif, count: decoded.exif_size)) }
        return image.oriented(exif: Int(decoded.orientation))
    }

    private static func planarImage(_ d: sdf_image) -> Image {
        let (w, h, c) = (Int(d.width), Int(d.height), Int(d.channels))
        var pixels = Tensor(uninitialized: [c, h, w])
        let dst = pixels.mutablePointer()
        let plane = w * h
        if d.bytes_per_sample == 2 {
            let src = d.pixels.assumingMemoryBound(to: UInt16.self)
            Parallel.forRanges(plane, minimumPerThread: 1 << 14) { range in
                for i in range { for ch in 0..<c { dst[ch * plane + i] = Float(src[i * c + ch]) / 65535 } }
            }
        } else {
            let src = d.pixels.assumingMemoryBound(to: UInt8.self)
            Parallel.forRanges(plane, minimumPerThread: 1 << 14) { range in
                for i in range { for ch in 0..<c { dst[ch * plane + i] = Float(src[i * c + ch]) / 255 } }
            }
        }
        return Image(pixels: pixels, bitDepth: 8 * Int(d.bytes_per_sample))
    }

    private static func texts(_ d: sdf_image) -> [String: String] {
        var result: [String: String] = [:]
        for i in 0..<Int(d.text_count) {
            let t = d.texts[i]
            let key = String(cString: t.key)
            // tEXt and zTXt hold Latin-1; iTXt holds UTF-8.
            let text = t.utf8 != 0 ? String(cString: t.text)
                : String(String.UnicodeScalarView(UnsafeBufferPointer(start: t.text, count: strlen(t.text))
                    .map { Unicode.Scalar(UInt8(bitPattern: $0)) }))
            result[key] = text
        }
        return result
    }

    // MARK: - Writing

    /// PNG bytes: 8-bit, or 16-bit with `bitDepth: 16`; `text` becomes text chunks (ASCII as tEXt, other as iTXt).
    public static func encodePNG(_ image: Image, bitDepth: Int = 8, text: [(key: String, value: String)] = []) throws -> Data {
        let (w, h, c) = (image.width, image.height, image.channels)
        let plane = w * h
        let src = image.pixels.pointer
        let bytes = bitDepth == 16 ? 2 : 1
        var interleaved = [UInt8](repeating: 0, count: plane * c * bytes)
        interleaved.withUnsafeMutableBytes { raw in
            if bytes == 2 {
                let dst = raw.bindMemory(to: UInt16.self).baseAddress!
                Parallel.forRanges(plane, minimumPerThread: 1 << 14) { range in
                    for i in range { for ch in 0..<c { dst[i * c + ch] = quantize16(src[ch * plane + i]) } }
                }
            } else {
                let dst = raw.bindMemory(to: UInt8.self).baseAddress!
                Parallel.forRanges(plane, minimumPerThread: 1 << 14) { range in
                    for i in range { for ch in 0..<c { dst[i * c + ch] = quantize8(src[ch * plane + i]) } }
                }
            }
        }
        let keys = text.map { strdup($0.key) }, values = text.map { strdup($0.value) }
        defer { (keys + values).forEach { free($0) } }
        var chunks = zip(keys, values).map { sdf_text(key: $0, text: $1, utf8: 1) }
        var output: UnsafeMutablePointer<UInt8>?
        var size = 0
        var message = [CChar](repeating: 0, count: Int(SDF_ERROR_SIZE))
        let status = interleaved.withUnsafeBytes { raw in
            withEmbedded(image.embedded) { embedded in
                sdf_png_encode(raw.baseAddress, Int32(w), Int32(h), Int32(c), Int32(bytes), &chunks, Int32(chunks.count), embedded,
                               &output, &size, &message)
            }
        }
        guard status == 0, let output else {
            throw Error(path: "PNG", reason: messageText(message))
        }
        defer { free(output) }
        return Data(bytes: output, count: size)
    }

    /// JPEG bytes (baseline, 4:2:0) at `quality` 1-100; alpha is dropped.
    public static func encodeJPEG(_ image: Image, quality: Int = 95) throws -> Data {
        let source = image.channels <= 2 ? image.channel(0) : image.rgb()
        let (w, h, c) = (source.width, source.height, source.channels)
        let plane = w * h
        let src = source.pixels.pointer
        var interleaved = [UInt8](repeating: 0, count: plane * c)
        for i in 0..<plane { for ch in 0..<c { interleaved[i * c + ch] = quantize8(src[ch * plane + i]) } }
        var output: UnsafeMutablePointer<UInt8>?
        var size = 0
        var message = [CChar](repeating: 0, count: Int(SDF_ERROR_SIZE))
        let status = withEmbedded(image.embedded) { sdf_jpeg_encode(interleaved, Int32(w), Int32(h), Int32(c), Int32(quality), $0, &output, &size, &message) }
        guard status == 0, let output else { throw Error(path: "JPEG", reason: messageText(message)) }
        defer { free(output) }
        return Data(bytes: output, count: size)
    }

    /// `body` with the C view of `embedded` (valid only inside it).
    private static func withEmbedded<T>(_ embedded: Image.Embedded, _ body: (UnsafePointer<sdf_embedded>) -> T) -> T {
        let icc = embedded.iccProfile ?? Data(), exif = embedded.exif ?? Data()
        return icc.withUnsafeBytes { iccBytes in
            exif.withUnsafeBytes { exifBytes in
                var view = sdf_embedded(icc: iccBytes.bindMemory(to: UInt8.self).baseAddress, icc_size: iccBytes.count,
                                        exif: exifBytes.bindMemory(to: UInt8.self).baseAddress, exif_size: exifBytes.count)
                return body(&view)
            }
        }
    }

    /// The text of a C codec's NUL-terminated message buffer.
    private static func messageText(_ message: [CChar]) -> String {
        String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Encodes by the path's extension (.png, .jpg/.jpeg) and writes atomically: a crash or
    /// Ctrl-C never leaves half a file. The image's ICC profile and EXIF go into the file.
    public static func write(_ image: Image, to path: String, text: [(key: String, value: String)] = [], quality: Int = 95) throws {
        let ext = URL(fileURLWithPath: path).pathExtension
        guard let format = Format(pathExtension: ext) else {
            throw Error(path: path, reason: "unknown image extension '.\(ext)' (use .png, .jpg or .jpeg)")
        }
        if let problem = sizeProblem(width: image.width, height: image.height) { throw Error(path: path, reason: problem) }
        let data: Data
        do {
            data = format == .png ? try encodePNG(image, bitDepth: image.bitDepth, text: text) : try encodeJPEG(image, quality: quality)
        } catch let e as Error {
            throw Error(path: path, reason: e.reason)
        }
        try AtomicFile.write(data, to: path)
    }

    /// [0, 1] -> 0...255, rounded half to even (as numpy's round in diffusers' postprocessing).
    @inline(__always)
    static func quantize8(_ v: Float) -> UInt8 { UInt8(Swift.min(Swift.max(v * 255, 0), 255).rounded(.toNearestOrEven)) }

    @inline(__always)
    static func quantize16(_ v: Float) -> UInt16 { UInt16(Swift.min(Swift.max(v * 65535, 0), 65535).rounded(.toNearestOrEven)) }
}
