import Foundation

/// The EXIF UserComment of a JPEG (APP1 "Exif") or WebP (RIFF "EXIF" chunk) file, where
/// AUTOMATIC1111 records generation parameters for those formats. Reads only the container and
/// the TIFF structure, never the pixels; every offset is checked against the data.
public enum ExifText {
    /// The UserComment text, or nil when the file has none (or is not JPEG or WebP).
    public static func userComment(_ data: Data) -> String? {
        let bytes = [UInt8](data)
        guard let tiff = exifBlock(bytes) else { return nil }
        return userComment(tiff: tiff)
    }

    /// The TIFF data of the EXIF block.
    static func exifBlock(_ b: [UInt8]) -> ArraySlice<UInt8>? {
        if b.starts(with: [0xFF, 0xD8]) {  // JPEG: markers until the image data
            var i = 2
            while i + 4 <= b.count, b[i] == 0xFF {
                let marker = b[i + 1], length = Int(b[i + 2]) << 8 | Int(b[i + 3])
                guard length >= 2, i + 2 + length <= b.count else { return nil }
                let body = b[(i + 4)..<(i + 2 + length)]
                if marker == 0xE1, body.starts(with: Array("Exif\0\0".utf8)) { return body.dropFirst(6) }
                if marker == 0xDA { return nil }  // start of scan: no more metadata
                i += 2 + length
            }
            return nil
        }
        if b.count >= 12, b.starts(with: Array("RIFF".utf8)), b[8..<12].elementsEqual("WEBP".utf8) {
            var i = 12
            while i + 8 <= b.count {
                let size = Int(b[i + 4]) | Int(b[i + 5]) << 8 | Int(b[i + 6]) << 16 | Int(b[i + 7]) << 24
                guard size >= 0, i + 8 + size <= b.count else { return nil }
                if b[i..<(i + 4)].elementsEqual("EXIF".utf8) {
                    let body = b[(i + 8)..<(i + 8 + size)]
                    return body.starts(with: Array("Exif\0\0".utf8)) ? body.dropFirst(6) : body
                }
                i += 8 + size + (size & 1)
            }
        }
        return nil
    }

    /// UserComment (tag 0x9286) in the EXIF sub-IFD (pointer tag 0x8769) of IFD0.
    static func userComment(tiff slice: ArraySlice<UInt8>) -> String? {
        let t = TIFF(Array(slice))
        guard t.bytes.count >= 8 else { return nil }
        let little = t.little
        guard let ifd0 = t.u32(4), let exifField = t.entries(ifd0)[0x8769], let exifIFD = t.u32(exifField.field),
              let comment = t.entries(exifIFD)[0x9286], comment.count > 8 else { return nil }
        let start: Int
        if comment.count <= 4 { start = comment.field } else {
            guard let offset = t.u32(comment.field) else { return nil }
            start = offset
        }
        guard start >= 0, start + comment.count <= t.bytes.count else { return nil }
        let raw = Array(t.bytes[start..<(start + comment.count)])
        let prefix = raw.prefix(8), text = Array(raw.dropFirst(8))
        if prefix.elementsEqual("UNICODE\0".utf8) {
            // piexif (A1111) writes UTF-16 big-endian; some writers follow the TIFF byte order.
            let bigEndian = String(data: Data(text), encoding: .utf16BigEndian)
            let littleEndian = String(data: Data(text), encoding: .utf16LittleEndian)
            let plausible = { (s: String?) in s.map { $0.unicodeScalars.filter { $0.value < 0x3000 }.count * 10 >= $0.unicodeScalars.count * 9 } ?? false }
            let chosen = little && plausible(littleEndian) && !plausible(bigEndian) ? littleEndian : (plausible(bigEndian) ? bigEndian : littleEndian)
            return chosen?.trimmingCharacters(in: CharacterSet(charactersIn: "\0"))
        }
        return String(decoding: text, as: UTF8.self).trimmingCharacters(in: CharacterSet(charactersIn: "\0"))
    }

    /// The EXIF data `tiff` (TIFF header first) with its orientation (tag 0x0112 of IFD0) set to
    /// 1, for pixels already turned upright; unchanged when it has none or is not readable.
    public static func uprighted(_ tiff: Data) -> Data {
        var t = TIFF([UInt8](tiff))
        guard t.bytes.count >= 8, t.bytes[0] == t.bytes[1], t.bytes[0] == 0x49 || t.bytes[0] == 0x4D,
              let ifd0 = t.u32(4), let orientation = t.entries(ifd0)[0x0112], orientation.type == 3,  // SHORT
              orientation.field + 2 <= t.bytes.count else { return tiff }
        (t.bytes[orientation.field], t.bytes[orientation.field + 1]) = t.little ? (1, 0) : (0, 1)
        return Data(t.bytes)
    }
}

/// TIFF data (EXIF's structure) read in its byte order; every read is checked against the data.
private struct TIFF {
    var bytes: [UInt8]
    /// "II" (little-endian) rather than "MM".
    let little: Bool

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
        little = bytes.first == 0x49
    }

    func u16(_ at: Int) -> Int? {
        guard at >= 0, at + 2 <= bytes.count else { return nil }
        let a = Int(bytes[at]), b = Int(bytes[at + 1])
        return little ? a | b << 8 : a << 8 | b
    }

    func u32(_ at: Int) -> Int? {
        guard let lo = u16(little ? at : at + 2), let hi = u16(little ? at + 2 : at) else { return nil }
        return lo | hi << 16
    }

    /// tag -> (type, count, position of the value or offset field) of the IFD at `offset`.
    func entries(_ offset: Int) -> [Int: (type: Int, count: Int, field: Int)] {
        guard let n = u16(offset), n < 1000 else { return [:] }
        var result: [Int: (Int, Int, Int)] = [:]
        for k in 0..<n {
            let e = offset + 2 + 12 * k
            guard let tag = u16(e), let type = u16(e + 2), let count = u32(e + 4) else { break }
            result[tag] = (type, count, e + 8)
        }
        return result
    }
}
